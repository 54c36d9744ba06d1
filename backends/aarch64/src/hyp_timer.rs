//! [`HypTimer`]: the EL2 physical timer (`CNTHP_*_EL2`) as a deadline
//! multiplexer, and [`SoftTimers`] on it for each vCPU.

use arch_timer_virt::{SoftTimer, SoftTimers, Ticks, TimerCtl};

use crate::registers::{Register, RegisterFile, WritableRegister};

/// The most slots a [`HypTimer`] can have: one bit each in [`Expired`].
pub const MAX_SLOTS: usize = 64;

/// The hypervisor's one-shot deadlines on this CPU, folded into the EL2
/// physical timer (`CNTHP_CTL_EL2`/`CNTHP_CVAL_EL2`, PPI 26 on most
/// systems): the library's [`SoftTimers`] of every vCPU that runs here,
/// and the hypervisor's own deadlines (its scheduler tick), side by side.
///
/// `N` slots, each empty or holding one deadline on the physical count.
/// The hypervisor gives each vCPU two of them ([`VcpuSlots`]) and keeps
/// others for itself. Arming and cancelling only change the table in
/// memory (so the [`SoftTimers`] view [`vcpu`](Self::vcpu) hands to
/// [`VcpuTimer`](arch_timer_virt::VcpuTimer) borrows no register);
/// [`program`](Self::program) writes the earliest deadline to the
/// hardware, skipping the writes when it is already there. The contract:
///
/// - call [`program`](Self::program) before each guest entry and before
///   each wait for an interrupt (the deadlines armed since then reach the
///   hardware there);
/// - when the EL2 physical timer's PPI is taken, call
///   [`expire`](Self::expire): it empties the slots whose deadline has
///   passed, returns them, and programs the next deadline (the timer's
///   interrupt is level-sensitive: this is what lowers it).
///
/// Plain data plus a record of what the hardware holds; one per CPU, used
/// with that CPU's register file (`El2Timer::registers_mut` on the
/// hardware, [`FakeRegisters`](crate::FakeRegisters) in tests). The
/// register file's owner must leave `CNTHP_*_EL2` to it.
///
/// ```
/// use arch_timer_virt::{SoftTimer, SoftTimers, Ticks};
/// use arch_timer_virt_aarch64::{FakeRegisters, HostMode, HypTimer, VcpuSlots};
///
/// const TICK: usize = 0; // the hypervisor's own slot
/// let mut regs = FakeRegisters::new(HostMode::Vhe);
/// let mut hyp = HypTimer::<5>::new();
/// let vcpu0 = VcpuSlots::new(1, 2);
/// hyp.arm(TICK, Ticks::new(1000))?;
/// hyp.vcpu(vcpu0)?.arm(SoftTimer::Background, Ticks::new(400));
/// hyp.program(&mut regs);
/// assert_eq!(regs.cnthp_cval_el2, 400);
///
/// regs.cntpct = 400; // the PPI fires
/// let expired = hyp.expire(&mut regs);
/// assert!(expired.contains(vcpu0.background) && !expired.contains(TICK));
/// assert_eq!(regs.cnthp_cval_el2, 1000); // the tick is next
/// # Ok::<(), arch_timer_virt_aarch64::Error>(())
/// ```
#[derive(Clone, Debug)]
#[doc(alias = "hrtimer")]
pub struct HypTimer<const N: usize> {
    deadlines: [Option<Ticks>; N],
    /// What the hardware holds: `None` unknown (never programmed),
    /// `Some(None)` disabled, `Some(Some(at))` enabled at `at`.
    programmed: Option<Option<Ticks>>,
    /// A deadline changed since the last [`program`](Self::program): only
    /// then does it look for the earliest again.
    changed: bool,
}

impl<const N: usize> Default for HypTimer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> HypTimer<N> {
    /// No deadline armed; the hardware state is unknown until the first
    /// [`program`](Self::program) (which then writes it whatever it held).
    #[must_use]
    pub const fn new() -> Self {
        const { assert!(N <= MAX_SLOTS, "a HypTimer has at most MAX_SLOTS slots") };
        Self {
            deadlines: [None; N],
            programmed: None,
            changed: true,
        }
    }

    /// Arms `slot` at the physical count `at`, replacing its deadline. A
    /// deadline already past fires at the next [`program`](Self::program).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchSlot`](crate::Error::NoSuchSlot) for a slot from `N`.
    pub fn arm(&mut self, slot: usize, at: Ticks) -> Result<(), crate::Error> {
        let deadline = self.slot_mut(slot)?;
        if *deadline != Some(at) {
            *deadline = Some(at);
            self.changed = true;
        }
        Ok(())
    }

    /// Empties `slot` (nothing happens if it is empty).
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchSlot`](crate::Error::NoSuchSlot) for a slot from `N`.
    pub fn cancel(&mut self, slot: usize) -> Result<(), crate::Error> {
        let deadline = self.slot_mut(slot)?;
        if deadline.is_some() {
            *deadline = None;
            self.changed = true;
        }
        Ok(())
    }

    /// The deadline of `slot`, if armed (`None` also for a slot from `N`).
    #[must_use]
    pub fn deadline(&self, slot: usize) -> Option<Ticks> {
        self.deadlines.get(slot).copied().flatten()
    }

    /// The earliest armed deadline: what [`program`](Self::program) writes.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Ticks> {
        // A plain loop: fewer instructions per slot than
        // `iter().flatten().copied().min()` compiles to.
        let mut earliest: Option<u64> = None;
        for at in self.deadlines.iter().flatten() {
            let at = at.get();
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
        earliest.map(Ticks::new)
    }

    /// The [`SoftTimers`] of one vCPU: its two slots of this table.
    ///
    /// # Errors
    ///
    /// [`Error::NoSuchSlot`](crate::Error::NoSuchSlot) if a slot is from
    /// `N` or both are the same.
    pub fn vcpu(&mut self, slots: VcpuSlots) -> Result<VcpuSoftTimers<'_, N>, crate::Error> {
        if slots.background == slots.physical {
            return Err(crate::Error::NoSuchSlot(slots.physical));
        }
        for slot in [slots.background, slots.physical] {
            self.slot_mut(slot)?;
        }
        Ok(VcpuSoftTimers { table: self, slots })
    }

    /// Writes the earliest deadline to the EL2 physical timer: CVAL, an
    /// `isb`, then CTL = ENABLE (IMASK clear); with nothing armed, CTL = 0
    /// (its interrupt drops). Writes nothing when the hardware already
    /// holds it, and looks for the earliest deadline only when one was
    /// armed or cancelled since the last call (otherwise a load and a
    /// branch).
    pub fn program<R: RegisterFile + ?Sized>(&mut self, regs: &mut R) {
        // Nothing armed or cancelled since the hardware was written: it
        // holds the earliest deadline already (the usual entry).
        if !self.changed && self.programmed.is_some() {
            return;
        }
        self.changed = false;
        let next = self.next_deadline();
        if self.programmed == Some(next) {
            return;
        }
        match next {
            Some(at) => {
                regs.write(WritableRegister::CnthpCvalEl2, at.get());
                regs.isb();
                regs.write(WritableRegister::CnthpCtlEl2, TimerCtl::ENABLE.bits());
            }
            None => regs.write(WritableRegister::CnthpCtlEl2, TimerCtl::empty().bits()),
        }
        regs.isb();
        self.programmed = Some(next);
    }

    /// The EL2 physical timer's PPI was taken (or the hypervisor polls):
    /// empties every slot whose deadline the physical count has reached,
    /// programs the next deadline, and returns the emptied slots. An
    /// interrupt with nothing due (a deadline cancelled on its way)
    /// returns none and only reprograms.
    pub fn expire<R: RegisterFile + ?Sized>(&mut self, regs: &mut R) -> Expired {
        let now = Ticks::new(regs.read(Register::CntpctEl0));
        let mut expired = Expired(0);
        for (slot, deadline) in self.deadlines.iter_mut().enumerate() {
            if deadline.is_some_and(|at| at <= now) {
                *deadline = None;
                expired.0 |= 1u64
                    .checked_shl(u32::try_from(slot).unwrap_or(u32::MAX))
                    .unwrap_or(0);
            }
        }
        // The hardware still holds the passed deadline: its level-sensitive
        // interrupt stays asserted until it is reprogrammed.
        self.programmed = None;
        self.program(regs);
        expired
    }

    fn slot_mut(&mut self, slot: usize) -> Result<&mut Option<Ticks>, crate::Error> {
        self.deadlines
            .get_mut(slot)
            .ok_or(crate::Error::NoSuchSlot(slot))
    }
}

/// Which two slots of a [`HypTimer`] hold one vCPU's soft timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VcpuSlots {
    /// [`SoftTimer::Background`]: wakes the vCPU from WFI.
    pub background: usize,
    /// [`SoftTimer::Physical`]: the emulated physical timer's expiry.
    pub physical: usize,
}

impl VcpuSlots {
    /// The slots `background` and `physical`.
    #[must_use]
    pub const fn new(background: usize, physical: usize) -> Self {
        Self {
            background,
            physical,
        }
    }

    /// The usual layout: the hypervisor keeps slots `0..reserved`, and
    /// vCPU `index` takes the next two after the vCPUs before it
    /// (`reserved + 2 * index`, `reserved + 2 * index + 1`). `None` if that
    /// overflows.
    #[must_use]
    pub const fn nth(reserved: usize, index: usize) -> Option<Self> {
        let Some(twice) = index.checked_mul(2) else {
            return None;
        };
        let Some(background) = reserved.checked_add(twice) else {
            return None;
        };
        let Some(physical) = background.checked_add(1) else {
            return None;
        };
        Some(Self::new(background, physical))
    }

    /// The slot of `timer`.
    #[must_use]
    pub const fn slot(self, timer: SoftTimer) -> usize {
        match timer {
            SoftTimer::Background => self.background,
            SoftTimer::Physical => self.physical,
        }
    }
}

/// One vCPU's [`SoftTimers`] on a [`HypTimer`] (from
/// [`HypTimer::vcpu`]): arming and cancelling change the table only; the
/// hardware follows at the next [`HypTimer::program`].
#[derive(Debug)]
pub struct VcpuSoftTimers<'a, const N: usize> {
    table: &'a mut HypTimer<N>,
    slots: VcpuSlots,
}

impl<const N: usize> VcpuSoftTimers<'_, N> {
    /// The deadline of `timer`, if armed.
    #[must_use]
    pub fn deadline(&self, timer: SoftTimer) -> Option<Ticks> {
        self.table.deadline(self.slots.slot(timer))
    }

    /// The vCPU's slots.
    #[must_use]
    pub const fn slots(&self) -> VcpuSlots {
        self.slots
    }

    /// [`HypTimer::program`] of the whole table, for a run loop that holds
    /// only this view (before each guest entry and each wait).
    pub fn program<R: RegisterFile + ?Sized>(&mut self, regs: &mut R) {
        self.table.program(regs);
    }

    /// [`HypTimer::expire`] of the whole table.
    pub fn expire<R: RegisterFile + ?Sized>(&mut self, regs: &mut R) -> Expired {
        self.table.expire(regs)
    }
}

impl<const N: usize> SoftTimers for VcpuSoftTimers<'_, N> {
    fn arm(&mut self, timer: SoftTimer, at: Ticks) {
        // `HypTimer::vcpu` checked both slots: this cannot fail.
        let _ = self.table.arm(self.slots.slot(timer), at);
    }

    fn cancel(&mut self, timer: SoftTimer) {
        let _ = self.table.cancel(self.slots.slot(timer));
    }
}

/// The slots [`HypTimer::expire`] emptied: a set of slot numbers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Expired(u64);

impl Expired {
    /// Whether `slot` expired.
    #[must_use]
    pub const fn contains(self, slot: usize) -> bool {
        slot < MAX_SLOTS && self.0 & (1 << slot) != 0
    }

    /// Whether nothing expired.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The slots of both sets: for a hypervisor that collects expiries in
    /// its interrupt path and acts on them later (waking vCPUs).
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The set without `slot` (once the hypervisor has acted on it).
    #[must_use]
    pub const fn without(self, slot: usize) -> Self {
        if slot < MAX_SLOTS {
            Self(self.0 & !(1 << slot))
        } else {
            self
        }
    }

    /// The expired slots, in increasing order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_SLOTS).filter(move |&slot| self.contains(slot))
    }

    /// Whether either of a vCPU's soft timers expired, and which: its
    /// background timer (wake it) and its physical timer (call
    /// [`VcpuTimer::physical_timer_expired`](arch_timer_virt::VcpuTimer::physical_timer_expired)
    /// if it is loaded).
    #[must_use]
    pub const fn vcpu(self, slots: VcpuSlots) -> (bool, bool) {
        (
            self.contains(slots.background),
            self.contains(slots.physical),
        )
    }
}
