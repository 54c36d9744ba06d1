//! A vCPU's timers and their lifecycle: [`VcpuTimer`].

use crate::{
    Error, Forwarding, IntId, IrqChip, NotLoaded, Residency, SoftTimer, SoftTimers, Ticks,
    TimerContext, TimerCtl, TimerHw, TimerId, VirtualState, VmTimer,
};

/// What [`VcpuTimer::handle_timer_irq`] did, and so what the hypervisor
/// does with the physical interrupt it acknowledged.
///
/// Exhaustive on purpose: every case tells the caller whether the
/// interrupt still needs a deactivate, and a new case would be a breaking
/// change that the compiler points out in every `match`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "`HostIrq::NotLoaded` leaves the interrupt for the caller to deactivate"]
pub enum HostIrq {
    /// The timer's output is asserted: its virtual line is raised
    /// (injected with [`Forwarding::Hardware`], reported through
    /// [`VcpuTimer::should_notify_user`] with [`Forwarding::Masking`]).
    /// The hypervisor should wake the vCPU if it sleeps, and must *not*
    /// deactivate the interrupt: the guest's deactivation completes it.
    Raised,
    /// The timer cannot fire or its condition no longer holds (the guest
    /// changed it while the interrupt was on its way, or the vCPU is
    /// blocked and its timer saved): nothing injected, and the physical
    /// interrupt deactivated so that the next expiry is taken. The
    /// hypervisor does nothing more.
    Spurious,
    /// This vCPU is not loaded: nothing was touched. If no vCPU is loaded on
    /// the CPU, the hypervisor deactivates the interrupt itself (the timer
    /// hardware is disabled by [`VcpuTimer::put`], so it will not recur).
    NotLoaded,
}

/// When a blocking vCPU must be woken, as [`VcpuTimer::block`] (or
/// [`VcpuTimer::block_in_place`]) decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[must_use = "a vCPU must not sleep on `Wakeup::Now`"]
pub enum Wakeup {
    /// A timer has already expired: do not sleep. No background timer is
    /// armed.
    Now,
    /// The earliest expiry, as a physical count. `block` armed the
    /// background timer for it; `block_in_place` armed it only for a timer
    /// in memory (the emulated physical timer), at that timer's expiry,
    /// and leaves the direct timers to wake the CPU by their PPIs.
    At(Ticks),
    /// No timer can fire: no background timer is armed, only another event
    /// wakes the vCPU.
    Never,
}

/// The levels of a vCPU's two timer lines, as reported to a VMM that owns
/// the interrupt controller ([`Forwarding::Masking`]).
///
/// `#[non_exhaustive]`: a later version may report more timers' lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TimerLevels {
    /// The virtual timer's line.
    pub virtual_timer: bool,
    /// The physical timer's line.
    pub physical_timer: bool,
}

/// The direct timers whose interrupt [`VcpuTimer::after_irq_exit`]
/// forwarded: a set of [`TimerId`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Forwarded(u8);

impl Forwarded {
    const fn bit(timer: TimerId) -> u8 {
        match timer {
            TimerId::Virtual => 1 << 0,
            TimerId::Physical => 1 << 1,
        }
    }

    /// Whether `timer`'s interrupt was forwarded.
    #[must_use]
    #[inline]
    pub const fn contains(self, timer: TimerId) -> bool {
        self.0 & Self::bit(timer) != 0
    }

    /// Whether nothing was forwarded.
    #[must_use]
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    const fn with(self, timer: TimerId) -> Self {
        Self(self.0 | Self::bit(timer))
    }
}

/// What [`VcpuTimer::after_irq_exit`]'s look at the direct timers did.
#[derive(Clone, Copy, Debug)]
struct AfterIrq {
    forwarded: Forwarded,
    /// A line was lowered (which may set a release flag).
    lowered: bool,
}

/// Whether a timer runs on the hardware or is emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerMode {
    /// On the hardware while the vCPU is loaded: lazy save and restore,
    /// the interrupt forwarded from its host PPI (with the HW bit under
    /// [`Forwarding::Hardware`]), no trapped register access.
    Direct,
    /// In memory: the guest's register accesses trap and go through
    /// [`emulate`](crate::emulate), a host soft timer
    /// ([`SoftTimer::Physical`]) raises the line.
    Emulated,
}

/// Which of a vCPU's timers are direct and which emulated (KVM's "timer
/// map"), as decided at [`VcpuTimer::load`].
///
/// `#[non_exhaustive]`: a later version may map more timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[doc(alias = "timer_map")]
#[non_exhaustive]
pub struct TimerMap {
    /// The virtual timer: always [`TimerMode::Direct`].
    pub virtual_timer: TimerMode,
    /// The physical timer: [`TimerMode::Direct`] when the VM allows it
    /// ([`PhysTimerMode::Auto`](crate::PhysTimerMode::Auto)) and its
    /// counter offset is zero or the CPU has FEAT_ECV; else
    /// [`TimerMode::Emulated`].
    pub physical_timer: TimerMode,
}

impl TimerMap {
    /// The mode of `timer`.
    #[must_use]
    #[inline]
    pub const fn mode(self, timer: TimerId) -> TimerMode {
        match timer {
            TimerId::Virtual => self.virtual_timer,
            TimerId::Physical => self.physical_timer,
        }
    }

    /// Whether `timer` is [`TimerMode::Direct`].
    #[must_use]
    #[inline]
    pub const fn is_direct(self, timer: TimerId) -> bool {
        matches!(self.mode(timer), TimerMode::Direct)
    }
}

/// A direct timer's host interrupt: its physical PPI and what the library
/// knows of that PPI's state.
#[derive(Clone, Copy, Debug)]
struct HostPpi {
    ppi: IntId,
    /// The (virtual INTID, host PPI) pair mapped with the HW bit.
    mapped: Option<(IntId, IntId)>,
    /// The physical PPI was deactivated by this vCPU's `after_exit` (or
    /// `reset`, or a register write) since the last guest entry: a host
    /// interrupt acknowledged at that exit may have lost its active state.
    released: bool,
    /// A failed interrupt controller call may have left the physical PPI's
    /// host state (active, masked) wrong: the next
    /// [`before_entry`](VcpuTimer::before_entry) writes it again.
    stale: bool,
}

impl HostPpi {
    const fn new(ppi: IntId) -> Self {
        Self {
            ppi,
            mapped: None,
            released: false,
            stale: false,
        }
    }
}

/// Both timers, virtual first: the order every per-timer loop uses.
const TIMERS: [TimerId; 2] = [TimerId::Virtual, TimerId::Physical];

/// A vCPU's two EL1 timers and the background deadlines that go with them.
///
/// Plain data: every operation borrows the hardware it needs. The intended
/// call pattern, by the hypervisor's run loop:
///
/// ```text
/// on schedule-in:   GicCpu::vcpu_load, then load
/// loop:             before_entry, (guest runs), GicCpu::sync_after_exit,
///                   then after_irq_exit at an IRQ exit (before the host
///                   acknowledges anything: a timer that fired is
///                   forwarded there and its PPI never taken), after_exit
///                   at any other exit;
///                   at an IRQ exit, for each interrupt acknowledged:
///                   a direct timer's PPI (timer_for_host_ppi) goes to
///                   handle_timer_irq, the rest to the hypervisor
///                   (GicCpu's order around a guest exit);
///                   at a trapped timer register access: emulate::access;
///                   on WFI: block, sleep, unblock
///                   (or, with the CPU waiting for this vCPU:
///                   block_in_place, wait for an interrupt,
///                   after_irq_exit, unblock)
/// on schedule-out:  put, then GicCpu::vcpu_put
/// ```
///
/// The virtual timer is always *direct*: on the hardware while the vCPU
/// is loaded. The physical timer is direct too when the VM allows it and
/// the CPU can (see [`TimerMap`], decided at every [`load`](Self::load)),
/// and emulated otherwise. Save and restore of a direct timer are
/// idempotent: `load`/`put` and `block`/`unblock` may nest in the orders
/// `block, put, load, unblock` and `block, unblock`, and the registers are
/// written only when the state really moves. A vCPU
/// [blocked in place](Self::block_in_place) keeps its direct timers on the
/// hardware; `put` saves them then.
///
/// No operation takes a lock: the per-CPU register sequences rely on the
/// [`TimerHw`] implementation being the only writer of its CPU's timer
/// registers (see its "Per-CPU exclusion"), and a guest exit runs with
/// IRQs masked. Share a `VcpuTimer` with an interrupt handler through
/// [`SharedVcpuTimer`](crate::SharedVcpuTimer), the one place that uses
/// `critical-section`.
///
/// A clone copies the record, not the hardware: a clone of a loaded
/// `VcpuTimer` also believes its direct timers are on the CPU. Use such a
/// clone as a snapshot to read; drive only the original.
#[derive(Clone, Debug)]
#[doc(alias = "arch_timer_cpu")]
pub struct VcpuTimer {
    pub(crate) vtimer: TimerContext,
    pub(crate) ptimer: TimerContext,
    vhost: HostPpi,
    phost: HostPpi,
    forwarding: Forwarding,
    pub(crate) loaded: bool,
    /// The physical timer is direct (decided at `load`).
    ptimer_direct: bool,
    /// The CPU this vCPU was last loaded on has FEAT_ECV.
    ecv: bool,
    /// Between `block` and `unblock`.
    blocked: bool,
    /// Blocked by `block_in_place`: the direct timers stayed on the
    /// hardware, enabled, and no background deadline covers them (until
    /// `put`, `block` or `unblock`).
    in_place: bool,
    background_armed: bool,
    physical_armed: bool,
    user_levels: TimerLevels,
    /// What the next [`before_entry`](Self::before_entry) and
    /// [`after_exit`](Self::after_exit) have to look at ([`Work`]).
    work: u8,
}

/// Bits of [`VcpuTimer`]'s `work`, the hot paths' summary of the state.
///
/// A clear bit promises that the path's full version would find nothing to
/// do and return `Ok`: then it returns at once, so that a guest exit with
/// both lines low costs the timer a load and a branch on each side. Every
/// other operation that changes the state sets both bits first; the full
/// versions of the two paths, and the operations on the way to a guest
/// entry (`load`, `unblock`, `handle_timer_irq`), compute the bits again
/// from the state when they return ([`VcpuTimer::refresh_work`]).
struct Work;

impl Work {
    /// `before_entry` has something to do: the vCPU is not loaded or is
    /// blocked, a host PPI's state needs repair or its release flag a
    /// reset, or the emulated physical timer can fire or has its line high.
    const ENTRY: u8 = 1 << 0;
    /// `after_exit` has something to do: the vCPU is not loaded, the
    /// emulated physical timer's soft timer is armed, or a direct timer's
    /// line is high.
    const EXIT: u8 = 1 << 1;
    /// Both: the state changed outside the hot paths.
    const ALL: u8 = Self::ENTRY | Self::EXIT;
}

impl Default for VcpuTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl VcpuTimer {
    /// A vCPU with both timers disabled and not loaded. The interrupt
    /// numbers, forwarding mode and physical timer mode come from the
    /// [`VmTimer`] at [`load`](Self::load).
    #[must_use]
    pub const fn new() -> Self {
        let vm = VmTimer::new();
        Self {
            vtimer: TimerContext::new(TimerId::Virtual, vm.virtual_irq()),
            ptimer: TimerContext::new(TimerId::Physical, vm.physical_irq()),
            vhost: HostPpi::new(vm.host_virtual_ppi()),
            phost: HostPpi::new(vm.host_physical_ppi()),
            forwarding: vm.forwarding(),
            loaded: false,
            ptimer_direct: false,
            ecv: false,
            blocked: false,
            in_place: false,
            background_armed: false,
            physical_armed: false,
            user_levels: TimerLevels {
                virtual_timer: false,
                physical_timer: false,
            },
            work: Work::ALL,
        }
    }

    /// One of the two timers.
    #[must_use]
    #[inline]
    pub const fn context(&self, id: TimerId) -> &TimerContext {
        match id {
            TimerId::Virtual => &self.vtimer,
            TimerId::Physical => &self.ptimer,
        }
    }

    /// The virtual timer.
    #[doc(alias = "vcpu_vtimer")]
    #[must_use]
    pub const fn vtimer(&self) -> &TimerContext {
        &self.vtimer
    }

    /// The physical timer.
    #[doc(alias = "vcpu_ptimer")]
    #[must_use]
    pub const fn ptimer(&self) -> &TimerContext {
        &self.ptimer
    }

    /// Whether the vCPU is loaded on a CPU.
    #[must_use]
    #[inline]
    pub const fn is_loaded(&self) -> bool {
        self.loaded
    }

    /// Which timers are direct and which emulated, as decided at the last
    /// [`load`](Self::load) (or changed since by a [`set_reg`](Self::set_reg)
    /// that gave a direct physical timer an offset the CPU cannot apply).
    /// Before the first `load`, both as [`VcpuTimer::new`] has them: the
    /// physical timer emulated.
    #[doc(alias = "get_timer_map")]
    #[must_use]
    #[inline]
    pub const fn timer_map(&self) -> TimerMap {
        TimerMap {
            virtual_timer: TimerMode::Direct,
            physical_timer: if self.ptimer_direct {
                TimerMode::Direct
            } else {
                TimerMode::Emulated
            },
        }
    }

    /// Whether `timer` is direct (see [`timer_map`](Self::timer_map)).
    #[must_use]
    #[inline]
    pub const fn is_direct(&self, timer: TimerId) -> bool {
        self.timer_map().is_direct(timer)
    }

    /// The direct timer whose host PPI is `ppi`, if any: which timer a host
    /// interrupt acknowledged on this vCPU's CPU belongs to, for
    /// [`handle_timer_irq`](Self::handle_timer_irq). An emulated physical
    /// timer has no host PPI.
    #[must_use]
    pub fn timer_for_host_ppi(&self, ppi: IntId) -> Option<TimerId> {
        TIMERS
            .into_iter()
            .find(|&id| self.is_direct(id) && self.host(id).ppi == ppi)
    }

    /// The forwarding mode, as of the last [`load`](Self::load).
    #[must_use]
    #[inline]
    pub const fn forwarding(&self) -> Forwarding {
        self.forwarding
    }

    /// Whether the vCPU is blocked: between [`block`](Self::block) (or
    /// [`block_in_place`](Self::block_in_place)) and
    /// [`unblock`](Self::unblock) (across a `put` and `load` too).
    #[must_use]
    pub const fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Whether the vCPU is blocked in place: by
    /// [`block_in_place`](Self::block_in_place), with its direct timers
    /// left running on the CPU, and not since [`put`](Self::put),
    /// [`block`](Self::block) or [`unblock`](Self::unblock).
    #[must_use]
    pub const fn is_blocked_in_place(&self) -> bool {
        self.in_place
    }

    /// The vCPU is scheduled onto this CPU: the timer state moves onto its
    /// hardware.
    ///
    /// Takes the interrupt numbers, forwarding mode and physical timer mode
    /// from `vm` (and locks its configuration), and decides the
    /// [`TimerMap`]: the physical timer is direct if `vm` says
    /// [`PhysTimerMode::Auto`](crate::PhysTimerMode::Auto) and its counter
    /// offset is zero or the CPU has FEAT_ECV
    /// ([`TimerHw::has_physical_offset`]). Then, for each direct timer in
    /// this order: maps its INTID to its host PPI ([`Forwarding::Hardware`];
    /// an emulated physical timer that was direct before is unmapped);
    /// brings its line in step with the saved timer (raised if the timer
    /// fires, lowered if not, raised again if the guest deactivated it with
    /// the condition still met); sets its physical PPI unmasked and active
    /// exactly when the line is high or the guest has the virtual
    /// interrupt active ([`Forwarding::Hardware`]), or inactive and masked
    /// while the line is high ([`Forwarding::Masking`]). Then writes
    /// `CNTVOFF_EL2` (and `CNTPOFF_EL2` for a direct physical timer on a
    /// CPU with FEAT_ECV), restores each direct timer (CVAL, barrier, CTL)
    /// unless it is already on the hardware, and traps EL1 physical timer
    /// accesses if the physical timer is emulated (allows them if direct).
    ///
    /// The EL1 physical timer traps are set here and cleared by
    /// [`put`](Self::put) with and without VHE. KVM does this only with VHE,
    /// because its non-VHE host kernel runs at EL1 and switches the traps
    /// in its world switch; a hypervisor built on this crate runs at EL2 in
    /// both modes, so the vCPU's schedule-in and schedule-out are the
    /// places for it.
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyLoaded`] (nothing touched); [`Error::IrqChip`] if the
    /// interrupt controller fails, in which case the vCPU stays unloaded and
    /// the timer registers are untouched (the VM's configuration is locked
    /// and the line levels may already have been updated).
    #[doc(alias = "kvm_timer_vcpu_load")]
    pub fn load<H, C>(
        &mut self,
        vm: &VmTimer,
        hw: &mut H,
        chip: &mut C,
    ) -> Result<(), Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
    {
        let result = self.load_inner(vm, hw, chip);
        self.refresh_work();
        result
    }

    /// [`load`](Self::load) before [`Work`] is computed again.
    fn load_inner<H, C>(
        &mut self,
        vm: &VmTimer,
        hw: &mut H,
        chip: &mut C,
    ) -> Result<(), Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
    {
        if self.loaded {
            return Err(Error::AlreadyLoaded);
        }
        vm.lock();
        self.vtimer.set_irq(vm.virtual_irq());
        self.ptimer.set_irq(vm.physical_irq());
        self.vhost.ppi = vm.host_virtual_ppi();
        self.phost.ppi = vm.host_physical_ppi();
        self.forwarding = vm.forwarding();
        self.apply_vm_offset(vm);

        // The timer map. The ECV question is asked only when the answer
        // matters, so a VM that keeps its physical timer emulated sees no
        // new hardware access.
        let (direct, ecv) = match vm.phys_timer_mode() {
            crate::PhysTimerMode::Auto => {
                let ecv = hw.has_physical_offset();
                (ecv || self.ptimer.offset() == Ticks::ZERO, ecv)
            }
            crate::PhysTimerMode::Emulated => (false, false),
        };
        if !direct && let Some((old, _)) = self.phost.mapped {
            // Direct on an earlier load: its interrupt is injected without
            // the HW bit from now on.
            chip.unmap_virtual(old).map_err(Error::IrqChip)?;
            self.phost.mapped = None;
        }
        self.ptimer_direct = direct;
        self.ecv = ecv;

        self.attach(TimerId::Virtual, hw, chip)?;
        if direct {
            self.attach(TimerId::Physical, hw, chip)?;
        }

        hw.set_virtual_offset(self.vtimer.offset());
        if direct && ecv {
            hw.set_physical_offset(self.ptimer.offset());
        }
        for host in [&mut self.vhost, &mut self.phost] {
            host.released = false;
            host.stale = false;
        }
        self.loaded = true;
        self.restore(TimerId::Virtual, hw);
        if direct {
            self.restore(TimerId::Physical, hw);
        }
        hw.set_el1_physical_access(direct);
        Ok(())
    }

    /// `load`'s interrupt half for one direct timer: maps its INTID, brings
    /// its line in step with the saved state, writes its host PPI's state.
    /// Reads the count and nothing else of the timer registers.
    #[inline(always)]
    fn attach<H, C>(&mut self, id: TimerId, hw: &H, chip: &mut C) -> Result<(), Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
    {
        let irq = self.context(id).irq();
        let virtual_active = match self.forwarding {
            Forwarding::Hardware => {
                // Once per vCPU; again only if it is loaded with another
                // VM's interrupt numbers.
                let host = self.host_mut(id);
                let pair = (irq, host.ppi);
                if host.mapped != Some(pair) {
                    if let Some((old, _)) = host.mapped.take() {
                        chip.unmap_virtual(old).map_err(Error::IrqChip)?;
                    }
                    chip.map_virtual(pair.0, pair.1).map_err(Error::IrqChip)?;
                    host.mapped = Some(pair);
                }
                chip.virtual_active(irq).map_err(Error::IrqChip)?
            }
            Forwarding::Masking => false,
        };
        self.sync_direct_line(id, hw.physical_count(), virtual_active, chip)?;
        let level = self.context(id).level();
        let ppi = self.host(id).ppi;
        // Both host states are written in either mode: the previous vCPU on
        // this CPU may have used the other mode.
        match self.forwarding {
            Forwarding::Hardware => {
                chip.set_host_masked(ppi, false).map_err(Error::IrqChip)?;
                chip.set_host_active(ppi, level || virtual_active)
                    .map_err(Error::IrqChip)?;
            }
            Forwarding::Masking => {
                chip.set_host_active(ppi, false).map_err(Error::IrqChip)?;
                chip.set_host_masked(ppi, level).map_err(Error::IrqChip)?;
            }
        }
        Ok(())
    }

    /// The vCPU is scheduled away from this CPU: the timer state moves into
    /// memory.
    ///
    /// Allows EL1 physical timer accesses again, saves each direct timer
    /// unless it is already saved (reads CTL and CVAL, then disables it),
    /// writes 0 to `CNTVOFF_EL2` (and to `CNTPOFF_EL2` if the physical
    /// timer was direct on a CPU with FEAT_ECV) and cancels the physical
    /// timer's soft timer if it is still armed (the vCPU was scheduled out
    /// between [`before_entry`](Self::before_entry) and the guest entry),
    /// so that nothing of the vCPU is left on the CPU.
    ///
    /// A vCPU [blocked in place](Self::block_in_place) stays blocked, as
    /// if [`block`](Self::block) had blocked it: its background soft timer
    /// is armed at the earliest expiry of its timers, now if one has
    /// already expired (nothing else would wake it once its timers are
    /// saved and disabled).
    ///
    /// # Errors
    ///
    /// [`NotLoaded`] if the vCPU is not loaded; nothing is touched. It
    /// converts into [`Error::NotLoaded`] with `?` in a function returning
    /// [`Error`] of any interrupt controller.
    #[doc(alias = "kvm_timer_vcpu_put")]
    pub fn put<H, S>(&mut self, hw: &mut H, soft: &mut S) -> Result<(), NotLoaded>
    where
        H: TimerHw + ?Sized,
        S: SoftTimers + ?Sized,
    {
        self.touch();
        if !self.loaded {
            return Err(NotLoaded);
        }
        hw.set_el1_physical_access(true);
        self.save_all(hw);
        hw.set_virtual_offset(Ticks::ZERO);
        if self.ptimer_direct && self.ecv {
            hw.set_physical_offset(Ticks::ZERO);
        }
        self.cancel_physical(soft);
        self.loaded = false;
        if self.in_place {
            // Saved and disabled now: the direct timers' PPIs no longer
            // wake the CPU, the background timer must.
            self.in_place = false;
            let at = self.earliest_in_memory(hw.physical_count());
            self.set_background(soft, at);
        }
        Ok(())
    }

    /// The vCPU is about to sleep (WFI): saves the direct timers and arms
    /// the background timer at the earliest expiry of the two timers.
    ///
    /// Arms nothing if a timer has already expired ([`Wakeup::Now`]: do not
    /// sleep) or if neither can fire ([`Wakeup::Never`]). May be called
    /// whether or not the vCPU is loaded. The vCPU is blocked from here
    /// until [`unblock`](Self::unblock), whatever this returns
    /// (also for [`Wakeup::Now`]): [`before_entry`](Self::before_entry)
    /// refuses to enter it until then.
    ///
    /// The expiries are those the guest would see: a vCPU that is not
    /// loaded counts with `vm`'s VM-wide counter offset, as its register
    /// reads do ([`get_reg`](Self::get_reg)); a loaded vCPU with the offset
    /// it runs with. Calling `block` again on a blocked vCPU computes the
    /// expiries again and re-arms (or cancels) the background timer: do so
    /// for every sleeping vCPU after
    /// [`VmTimer::set_counter_offset`], whose new offset can make a
    /// timer expire earlier than the armed deadline.
    ///
    /// Like KVM, this looks at the timers only: a guest that masks the
    /// timer's interrupt in its GIC (not in CTL) and waits with its timer
    /// expired gets [`Wakeup::Now`] each time, so its WFI returns at once.
    #[doc(alias = "kvm_timer_schedule")]
    pub fn block<H, S>(&mut self, vm: &VmTimer, hw: &mut H, soft: &mut S) -> Wakeup
    where
        H: TimerHw + ?Sized,
        S: SoftTimers + ?Sized,
    {
        self.touch();
        self.save_all(hw);
        self.blocked = true;
        self.in_place = false;
        if !self.loaded {
            // Not on a CPU: no CNTVOFF_EL2 to keep in step, and the offset
            // is what `get_reg` already reports and `load` will write.
            self.apply_vm_offset(vm);
        }
        let now = hw.physical_count();
        let wakeup = self.wakeup(now);
        let at = match wakeup {
            Wakeup::At(at) => Some(at),
            Wakeup::Now | Wakeup::Never => None,
        };
        self.set_background(soft, at);
        wakeup
    }

    /// When the timers in memory must wake the vCPU, seen at `now`.
    #[inline]
    fn wakeup(&self, now: Ticks) -> Wakeup {
        if self.vtimer.should_fire(now) || self.ptimer.should_fire(now) {
            Wakeup::Now
        } else {
            match (self.vtimer.expiry(now), self.ptimer.expiry(now)) {
                (Some(v), Some(p)) => Wakeup::At(v.min(p)),
                (Some(at), None) | (None, Some(at)) => Wakeup::At(at),
                (None, None) => Wakeup::Never,
            }
        }
    }

    /// The vCPU is about to sleep (WFI) and this CPU will wait for it,
    /// with the vCPU loaded: [`block`](Self::block) without saving the
    /// direct timers whose PPIs can wake the CPU. Those stay on the
    /// hardware, enabled, and their physical PPIs (unmasked and inactive)
    /// signal when they fire; the background soft timer is armed only for
    /// the timers in memory (the emulated physical timer), so a vCPU whose
    /// timers are all direct sleeps with no soft timer at all.
    ///
    /// A direct timer whose PPI could not signal is saved, as `block`
    /// saves it, and the background timer covers it: one whose line is
    /// high (its PPI active or masked), one whose virtual interrupt the
    /// guest still has active ([`Forwarding::Hardware`]: the PPI stays
    /// active until the guest deactivates it), one whose PPI state an
    /// interrupt controller error left to repair, and one the interrupt
    /// controller cannot answer for ([`IrqChip::virtual_active`] failed).
    /// So this never fails: the worst case is `block`.
    ///
    /// Returns what `block` would: [`Wakeup::Now`] if a timer has already
    /// expired (do not sleep; call [`unblock`](Self::unblock)): for a timer
    /// left running, if its CTL reports its output asserted (the counter
    /// can pass CVAL before an emulator updates ISTATUS; such a timer is
    /// due at the current count, and its PPI wakes the CPU); else when
    /// the vCPU must wake ([`Wakeup::At`], the background timer armed only
    /// for the timers in memory, at their own earliest expiry) or
    /// [`Wakeup::Never`]. For each direct timer left running it reads CTL
    /// and CVAL, asks `virtual_active` ([`Forwarding::Hardware`]) and
    /// writes nothing. The vCPU is blocked from here until `unblock`, as
    /// after `block`. As with `block`, call it again on a sleeping vCPU
    /// after the VMM changed its timers ([`set_reg`](Self::set_reg),
    /// [`VmTimer::set_counter_offset`]): it looks at them again, and
    /// returns [`Wakeup::Now`] if one fires.
    ///
    /// When the CPU wakes from an interrupt, call
    /// [`after_irq_exit`](Self::after_irq_exit) before the host
    /// acknowledges anything, as on an IRQ exit: it forwards a direct
    /// timer that fired (its PPI is then not taken) and returns it; if it
    /// returned one, call `unblock`. A timer PPI the host acknowledges
    /// anyway goes to [`handle_timer_irq`](Self::handle_timer_irq), which
    /// raises the line ([`HostIrq::Raised`]): unblock then too. When the
    /// background timer expires, unblock as after `block`.
    ///
    /// If the vCPU is scheduled away instead, [`put`](Self::put) saves its
    /// timers and arms the background timer for them, as `block` would
    /// have; `block` on a vCPU blocked in place does the same. A vCPU that
    /// is not loaded is blocked by `block` (there is nothing on the CPU to
    /// leave running).
    ///
    /// This is for a hypervisor whose CPU waits (WFI at EL2) while its vCPU
    /// sleeps: the eager design cannot do it, since it disables the timer
    /// at every exit.
    pub fn block_in_place<H, C, S>(
        &mut self,
        vm: &VmTimer,
        hw: &mut H,
        chip: &mut C,
        soft: &mut S,
    ) -> Wakeup
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
        S: SoftTimers + ?Sized,
    {
        if !self.loaded {
            return self.block(vm, hw, soft);
        }
        self.touch();
        self.blocked = true;
        self.in_place = true;
        let mut asserted = false;
        for id in TIMERS {
            if self.context(id).residency() == Residency::Memory {
                continue;
            }
            if self.ppi_can_wake(id, chip) {
                // Refreshed, not saved: the timer keeps running.
                let (ctl, cval) = (hw_ctl(hw, id), hw_cval(hw, id));
                asserted |= ctl.output_asserted();
                let ctx = self.context_mut(id);
                ctx.set_ctl(ctl);
                ctx.set_cval(cval);
            } else {
                self.save(id, hw);
            }
        }
        let now = hw.physical_count();
        // A timer left running has fired when its CTL says so (ISTATUS):
        // that is what its PPI follows and what the guest will read. The
        // counter can pass CVAL a little before the output asserts (QEMU
        // updates ISTATUS when its own timer event runs, later under
        // load): such a timer is due now, and its PPI will wake the CPU.
        // Only a timer in memory needs the background timer: the emulated
        // physical timer, or a direct one saved here or by `block` before.
        // (Its expiry is `now` exactly when it fires.)
        let in_memory = self.earliest_in_memory(now);
        let wakeup = match self.wakeup(now) {
            _ if asserted => Wakeup::Now,
            Wakeup::Now if in_memory != Some(now) => Wakeup::At(now),
            other => other,
        };
        let at = match wakeup {
            Wakeup::At(_) => in_memory,
            Wakeup::Now | Wakeup::Never => None,
        };
        self.set_background(soft, at);
        wakeup
    }

    /// The earliest expiry, seen at `now`, of the timers in memory (the
    /// emulated physical timer, saved direct ones): `now` if one fires.
    #[inline(always)]
    fn earliest_in_memory(&self, now: Ticks) -> Option<Ticks> {
        TIMERS
            .into_iter()
            .filter(|&id| self.context(id).residency() == Residency::Memory)
            .filter_map(|id| self.context(id).expiry(now))
            .min()
    }

    /// Arms the background soft timer at `at`, or cancels it.
    fn set_background<S: SoftTimers + ?Sized>(&mut self, soft: &mut S, at: Option<Ticks>) {
        match at {
            Some(at) => {
                soft.arm(SoftTimer::Background, at);
                self.background_armed = true;
            }
            None => self.cancel_background(soft),
        }
    }

    /// Whether a direct timer's physical PPI, as this vCPU left it, will
    /// signal the host when the timer fires: its line is low (so the PPI
    /// is unmasked, [`Forwarding::Masking`], or inactive unless the guest
    /// holds the virtual interrupt active, [`Forwarding::Hardware`]) and no
    /// interrupt controller error left its state to repair.
    fn ppi_can_wake<C: IrqChip + ?Sized>(&self, id: TimerId, chip: &mut C) -> bool {
        if self.context(id).level() || self.host(id).stale {
            return false;
        }
        match self.forwarding {
            Forwarding::Hardware => {
                matches!(chip.virtual_active(self.context(id).irq()), Ok(false))
            }
            Forwarding::Masking => true,
        }
    }

    /// The vCPU has woken: cancels the background timer and, if the vCPU is
    /// loaded, restores each direct timer that is saved. A direct timer
    /// that expired during the sleep has its line raised here (and its
    /// physical PPI made active, [`Forwarding::Hardware`]), so the guest
    /// takes the interrupt on entry without another exit. After
    /// [`block_in_place`](Self::block_in_place) the direct timers it left
    /// running are on the hardware already: nothing to restore; one whose
    /// output is asserted (its CTL read) with its line still low (not
    /// forwarded by
    /// [`after_irq_exit`](Self::after_irq_exit) or
    /// [`handle_timer_irq`](Self::handle_timer_irq) at the wake-up) is
    /// forwarded here, its PPI made active or masked and its line raised,
    /// so that the guest finds the interrupt pending even if the PPI has
    /// not reached the host yet.
    ///
    /// # Errors
    ///
    /// [`Error::IrqChip`]. The vCPU is unblocked, its background timer
    /// cancelled and its timers back on the hardware regardless; what the
    /// interrupt controller did not take (a line, a PPI's host state) is
    /// written again by the next [`before_entry`](Self::before_entry), or
    /// reaches the guest through the timer's PPI.
    #[doc(alias = "kvm_timer_unschedule")]
    pub fn unblock<H, C, S>(
        &mut self,
        hw: &mut H,
        chip: &mut C,
        soft: &mut S,
    ) -> Result<(), Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
        S: SoftTimers + ?Sized,
    {
        let result = self.unblock_inner(hw, chip, soft);
        self.refresh_work();
        result
    }

    /// [`unblock`](Self::unblock) before [`Work`] is computed again.
    fn unblock_inner<H, C, S>(
        &mut self,
        hw: &mut H,
        chip: &mut C,
        soft: &mut S,
    ) -> Result<(), Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
        S: SoftTimers + ?Sized,
    {
        self.cancel_background(soft);
        self.blocked = false;
        let in_place = core::mem::replace(&mut self.in_place, false);
        if !self.loaded {
            return Ok(());
        }
        for id in TIMERS {
            if !self.is_direct(id) {
                continue;
            }
            let done = match self.context(id).residency() {
                Residency::Memory => self.unblock_timer(id, hw, chip),
                // Left running by `block_in_place`: one whose output is
                // asserted (CTL, as the guest will read it) with its line
                // still low was not forwarded by a wake-up (the vCPU is
                // woken for another reason, or `block_in_place` said
                // `Now`), and its PPI may not have reached the host yet.
                // Forwarded here, as `unblock` raises a saved timer that
                // fired.
                Residency::Hardware if in_place && !self.context(id).level() => {
                    if self.sample(id, hw) {
                        self.forward(id, false, chip).map(|_| ())
                    } else {
                        Ok(())
                    }
                }
                Residency::Hardware => Ok(()),
            };
            if let Err(e) = done {
                self.restore_after_error(hw);
                return Err(e);
            }
        }
        Ok(())
    }

    /// After an interrupt controller error in `unblock`: every direct
    /// timer still saved goes back on the hardware all the same (the guest
    /// must not run with it saved and disabled), its PPI's state left to
    /// the next `before_entry`.
    #[cold]
    fn restore_after_error<H: TimerHw + ?Sized>(&mut self, hw: &mut H) {
        for id in TIMERS {
            if self.is_direct(id) && self.context(id).residency() == Residency::Memory {
                self.host_mut(id).stale = true;
                self.restore(id, hw);
            }
        }
    }

    /// `unblock` for one saved direct timer of a loaded vCPU.
    fn unblock_timer<H, C>(
        &mut self,
        id: TimerId,
        hw: &mut H,
        chip: &mut C,
    ) -> Result<(), Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
    {
        let now = hw.physical_count();
        let fire = self.context(id).should_fire(now);
        // On an error, `unblock` restores the timer and leaves the host
        // state to the next `before_entry`.
        self.unblock_host_state(id, fire, chip)?;
        self.host_mut(id).stale = false;
        self.restore(id, hw);
        Ok(())
    }

    /// The interrupt controller half of [`unblock_timer`](Self::unblock_timer):
    /// the line and the PPI's host state brought in step with whether the
    /// timer fires now (`fire`).
    #[inline(always)]
    fn unblock_host_state<C: IrqChip + ?Sized>(
        &mut self,
        id: TimerId,
        fire: bool,
        chip: &mut C,
    ) -> Result<(), Error<C::Error>> {
        let was_high = self.context(id).level();
        // Asked only where the answer matters (a line that stays high is
        // raised again unless the guest has it active; a low line's PPI is
        // active exactly while the guest has it active, written if the
        // line falls or after an error): a timer that fired during the
        // sleep is raised, its PPI made active, without the question.
        let virtual_active = match self.forwarding {
            Forwarding::Hardware if was_high || (!fire && self.host(id).stale) => chip
                .virtual_active(self.context(id).irq())
                .map_err(Error::IrqChip)?,
            Forwarding::Hardware | Forwarding::Masking => false,
        };
        let HostPpi { ppi, stale, .. } = *self.host(id);
        let hardware = self.forwarding == Forwarding::Hardware;
        if fire && (!was_high || (hardware && !virtual_active)) {
            // Raised (again, if the guest completed the interrupt with the
            // condition still met). The PPI is held first (active, or
            // masked), so that it cannot signal under the raised interrupt
            // if the raise fails.
            write_host_state(chip, ppi, hardware, true, virtual_active, stale)?;
            return self.set_level(id, true, chip);
        }
        // Otherwise the line falls if the timer no longer fires, or stays.
        let fell = was_high && !fire;
        if fell {
            self.set_level(id, false, chip)?;
        }
        // After an interrupt controller error the host state is written
        // whole, as `load` does.
        if fell || stale {
            write_host_state(chip, ppi, hardware, was_high && fire, virtual_active, stale)?;
        }
        Ok(())
    }

    /// Right before entering the guest: brings the emulated physical
    /// timer's line up to date and arms its soft timer for the next expiry.
    ///
    /// Touches no direct timer's register, and nothing at all while the
    /// emulated physical timer can neither fire nor has its line high (or
    /// the physical timer is direct). If an interrupt controller error in
    /// an earlier call (see [`handle_timer_irq`](Self::handle_timer_irq))
    /// may have left a direct timer's physical PPI active or masked
    /// wrongly, writes it again first.
    ///
    /// # Errors
    ///
    /// [`Error::NotLoaded`]; [`Error::Blocked`] between
    /// [`block`](Self::block) and [`unblock`](Self::unblock) (the direct
    /// timers are saved and disabled on the hardware; nothing is touched);
    /// [`Error::IrqChip`].
    #[doc(alias = "kvm_timer_flush_hwstate")]
    #[inline]
    pub fn before_entry<H, C, S>(
        &mut self,
        hw: &mut H,
        chip: &mut C,
        soft: &mut S,
    ) -> Result<(), Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
        S: SoftTimers + ?Sized,
    {
        if self.work & Work::ENTRY == 0 {
            return Ok(());
        }
        self.before_entry_full(hw, chip, soft)
    }

    /// [`before_entry`](Self::before_entry) when [`Work::ENTRY`] is set.
    #[inline(never)]
    #[cold]
    fn before_entry_full<H, C, S>(
        &mut self,
        hw: &mut H,
        chip: &mut C,
        soft: &mut S,
    ) -> Result<(), Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
        S: SoftTimers + ?Sized,
    {
        if !self.loaded {
            return Err(Error::NotLoaded);
        }
        if self.blocked {
            return Err(Error::Blocked);
        }
        for id in TIMERS {
            if self.is_direct(id) && self.host(id).stale {
                self.repair_host_irq(id, chip)?;
            }
            // Memory only: the guest runs again, so a host interrupt taken
            // from now on is acknowledged after any release so far.
            self.host_mut(id).released = false;
        }
        if self.ptimer_direct || (!self.ptimer.can_fire() && !self.ptimer.level()) {
            self.refresh_work();
            return Ok(());
        }
        let now = hw.physical_count();
        let fire = self.ptimer.should_fire(now);
        if fire != self.ptimer.level() {
            self.set_level(TimerId::Physical, fire, chip)?;
        }
        if !fire && let Some(at) = self.ptimer.expiry(now) {
            soft.arm(SoftTimer::Physical, at);
            self.physical_armed = true;
        }
        self.refresh_work();
        Ok(())
    }

    /// Right after the guest exits, after the interrupt controller's own
    /// state has been synchronized: cancels the emulated physical timer's
    /// soft timer, and for each direct timer whose line is high, checks
    /// whether the guest has since cleared the condition; if so, lowers the
    /// line and releases the physical interrupt (deactivates it unless the
    /// guest still has the virtual one active, or unmasks it).
    ///
    /// With the direct timers' lines low this touches no timer register;
    /// for each one high it reads CTL.
    ///
    /// # Errors
    ///
    /// [`Error::NotLoaded`]; [`Error::IrqChip`].
    #[doc(alias = "kvm_timer_sync_hwstate")]
    #[inline]
    pub fn after_exit<H, C, S>(
        &mut self,
        hw: &mut H,
        chip: &mut C,
        soft: &mut S,
    ) -> Result<(), Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
        S: SoftTimers + ?Sized,
    {
        if self.work & Work::EXIT == 0 {
            return Ok(());
        }
        self.after_exit_full(hw, chip, soft)
    }

    /// [`after_exit`](Self::after_exit) when [`Work::EXIT`] is set.
    #[inline(never)]
    #[cold]
    fn after_exit_full<H, C, S>(
        &mut self,
        hw: &mut H,
        chip: &mut C,
        soft: &mut S,
    ) -> Result<(), Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
        S: SoftTimers + ?Sized,
    {
        if !self.loaded {
            return Err(Error::NotLoaded);
        }
        self.cancel_physical(soft);
        let result = self.lower_cleared_lines(hw, chip);
        // Also after an error: a PPI left to repair needs the next entry.
        self.refresh_work();
        result
    }

    /// `after_exit`'s look at the direct timers whose lines are high:
    /// lowers each one whose condition the guest cleared.
    fn lower_cleared_lines<H, C>(&mut self, hw: &mut H, chip: &mut C) -> Result<(), Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
    {
        for id in TIMERS {
            if !self.is_direct(id) || !self.context(id).level() {
                continue;
            }
            if !self.sample(id, hw) {
                self.lower_direct_line(id, chip)?;
            }
        }
        Ok(())
    }

    /// [`after_exit`](Self::after_exit) for an exit the guest took because
    /// of a host interrupt (an IRQ exception at EL2), called before the
    /// host acknowledges anything: it also forwards each direct timer whose
    /// output is asserted, so that the host does not take its PPI (no
    /// acknowledge, priority drop, [`handle_timer_irq`](Self::handle_timer_irq)
    /// or deactivation for it). Returns the timers it forwarded: the
    /// hypervisor treats them as a [`HostIrq::Raised`].
    ///
    /// For each direct timer it reads CTL (where `after_exit` reads it only
    /// for a line that is high). A high line whose condition the guest
    /// cleared is lowered, as `after_exit` does. If the output is asserted
    /// and the line is low, the PPI is made active
    /// ([`Forwarding::Hardware`]: the guest's deactivation of the virtual
    /// interrupt completes it, as after an acknowledge) or masked
    /// ([`Forwarding::Masking`]), then the line is raised. A line already
    /// high is raised again only if the guest no longer holds the
    /// interrupt ([`VirtualState::Inactive`]: it completed it with the
    /// condition met again, so the PPI is pending); with
    /// [`Forwarding::Masking`] the PPI of a high line is masked and cannot
    /// be pending. A PPI that becomes pending after this call (the timer
    /// fires later in the exit) is taken by the host and goes to
    /// `handle_timer_irq` as before; so does the PPI of a high line when
    /// the interrupt controller answers `virtual_state` with the trait's
    /// default (which reports an interrupt that is not active as pending).
    ///
    /// On an exit with no timer fired, it costs one CTL read per direct
    /// timer more than `after_exit`. It is correct on any exit, only not
    /// needed on others: a timer that fires while the guest runs is what
    /// makes an IRQ exit. It is also the wake-up of a vCPU
    /// [blocked in place](Self::block_in_place), when the CPU waiting for
    /// it took an interrupt: a non-empty result means its timer woke it.
    ///
    /// # Errors
    ///
    /// [`Error::NotLoaded`]; [`Error::IrqChip`], after which the state
    /// converges as after a failed `handle_timer_irq`: a line is recorded
    /// high only once the interrupt controller took it, a PPI made active
    /// with nothing injected is deactivated again unless the guest holds
    /// the last interrupt active (so that it signals and the host takes
    /// it), and a PPI whose host state may be wrong is
    /// written again by the next [`before_entry`](Self::before_entry).
    /// At the wake-up of a vCPU blocked in place, a timer forwarded before
    /// the error is not reported and no `before_entry` runs until
    /// [`unblock`](Self::unblock): unblock the vCPU after an error (its
    /// WFI completes early at worst).
    #[doc(alias = "kvm_timer_sync_hwstate")]
    pub fn after_irq_exit<H, C, S>(
        &mut self,
        hw: &mut H,
        chip: &mut C,
        soft: &mut S,
    ) -> Result<Forwarded, Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
        S: SoftTimers + ?Sized,
    {
        if !self.loaded {
            return Err(Error::NotLoaded);
        }
        self.cancel_physical(soft);
        let result = self.sync_after_irq(hw, chip);
        match result {
            // Only lines raised (and release or repair flags reset): the
            // summary needs `Work::EXIT` for them, and keeps any other
            // bit it has (more work than needed is still correct).
            Ok(AfterIrq {
                forwarded,
                lowered: false,
            }) => {
                if !forwarded.is_empty() {
                    self.work |= Work::EXIT;
                }
            }
            Ok(_) | Err(_) => self.refresh_work(),
        }
        result.map(|after| after.forwarded)
    }

    /// [`after_irq_exit`](Self::after_irq_exit)'s look at the direct
    /// timers, before [`Work`] is computed again.
    fn sync_after_irq<H, C>(
        &mut self,
        hw: &mut H,
        chip: &mut C,
    ) -> Result<AfterIrq, Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
    {
        let mut after = AfterIrq {
            forwarded: Forwarded::default(),
            lowered: false,
        };
        for id in TIMERS {
            if !self.is_direct(id) {
                continue;
            }
            let was_high = self.context(id).level();
            let asserted = self.sample(id, hw);
            if !asserted {
                if was_high {
                    after.lowered = true;
                    self.lower_direct_line(id, chip)?;
                }
            } else if self.context(id).residency() == Residency::Hardware
                && self.forward(id, was_high, chip)?
            {
                after.forwarded = after.forwarded.with(id);
            }
        }
        Ok(after)
    }

    /// [`after_irq_exit`](Self::after_irq_exit) for one direct timer on the
    /// hardware whose output is asserted; `true` if it raised the line.
    #[inline(always)]
    fn forward<C: IrqChip + ?Sized>(
        &mut self,
        id: TimerId,
        was_high: bool,
        chip: &mut C,
    ) -> Result<bool, Error<C::Error>> {
        let ppi = self.host(id).ppi;
        match self.forwarding {
            Forwarding::Hardware => {
                if was_high
                    && chip
                        .virtual_state(self.context(id).irq())
                        .map_err(Error::IrqChip)?
                        != VirtualState::Inactive
                {
                    return Ok(false);
                }
                if let Err(e) = chip.set_host_active(ppi, true) {
                    // Active or not: written again before the next entry.
                    self.host_mut(id).stale = true;
                    return Err(Error::IrqChip(e));
                }
                self.host_mut(id).released = false;
                if let Err(e) = self.set_level(id, true, chip) {
                    // Nothing injected: released, so that the PPI signals
                    // and the host takes it, unless the guest still holds
                    // the last interrupt active (no acknowledge made this
                    // PPI active: it may be the guest's; its deactivation
                    // releases it). Left for `before_entry` if that fails.
                    if self.release_host_irq(id, chip).is_err() {
                        self.host_mut(id).stale = true;
                    }
                    return Err(e);
                }
                self.host_mut(id).stale = false;
            }
            Forwarding::Masking => {
                if was_high {
                    return Ok(false);
                }
                if let Err(e) = chip.set_host_masked(ppi, true) {
                    self.host_mut(id).stale = true;
                    return Err(Error::IrqChip(e));
                }
                self.set_level(id, true, chip)?;
            }
        }
        Ok(true)
    }

    /// The host took the virtual timer's PPI: [`handle_timer_irq`] for
    /// [`TimerId::Virtual`].
    ///
    /// [`handle_timer_irq`]: Self::handle_timer_irq
    ///
    /// # Errors
    ///
    /// As [`handle_timer_irq`](Self::handle_timer_irq).
    #[doc(alias = "kvm_arch_timer_handler")]
    #[inline]
    pub fn handle_host_irq<H, C>(
        &mut self,
        hw: &mut H,
        chip: &mut C,
    ) -> Result<HostIrq, Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
    {
        self.handle_timer_irq(TimerId::Virtual, hw, chip)
    }

    /// The host took the PPI of the direct timer `timer` (after
    /// acknowledging it and, with [`Forwarding::Hardware`], dropping its
    /// priority only). [`timer_for_host_ppi`](Self::timer_for_host_ppi)
    /// tells which timer an acknowledged PPI belongs to.
    ///
    /// Call it on the vCPU loaded on *this* CPU (as KVM's per-CPU running
    /// vCPU): the timer registers read are this CPU's. With no vCPU loaded
    /// here, deactivate the interrupt without calling any vCPU's handler.
    /// The acknowledge may come before or after this exit's
    /// [`after_exit`](Self::after_exit) (an EL2 vector that acknowledges at
    /// once, or a run loop that acknowledges after the exit's
    /// bookkeeping), but no guest entry may come between the acknowledge
    /// and this call. If `after_exit` deactivated the physical interrupt
    /// (the guest had cleared the condition) and the timer has fired again
    /// by now, this makes it active again before raising the line, as the
    /// acknowledge had left it.
    ///
    /// If the timer's output is asserted, raises the virtual line and leaves
    /// the physical interrupt active: the guest's deactivation of the
    /// virtual interrupt completes it ([`Forwarding::Hardware`]), or masks
    /// it and deactivates it ([`Forwarding::Masking`]). If the line was
    /// already high, the guest has deactivated the interrupt with the
    /// condition still met, and it is raised again. Otherwise the interrupt
    /// is spurious: a raised line is lowered, and the physical interrupt is
    /// deactivated so the next expiry is taken. The physical timer's PPI
    /// taken while that timer is emulated (its hardware timer is disabled)
    /// is spurious too.
    ///
    /// # Errors
    ///
    /// [`Error::IrqChip`]. A failed call leaves state that converges: a line
    /// is recorded high only once the interrupt controller took it; if
    /// nothing was injected the PPI is deactivated, so it signals again
    /// while the timer fires and the host retries; a PPI whose host state
    /// may be wrong is written again by the next
    /// [`before_entry`](Self::before_entry); a line left high for a cleared
    /// condition is lowered at the next [`after_exit`](Self::after_exit).
    #[doc(alias = "kvm_arch_timer_handler")]
    pub fn handle_timer_irq<H, C>(
        &mut self,
        timer: TimerId,
        hw: &mut H,
        chip: &mut C,
    ) -> Result<HostIrq, Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
    {
        let result = self.handle_timer_irq_inner(timer, hw, chip);
        self.refresh_work();
        result
    }

    /// [`handle_timer_irq`](Self::handle_timer_irq) before [`Work`] is computed again.
    fn handle_timer_irq_inner<H, C>(
        &mut self,
        timer: TimerId,
        hw: &mut H,
        chip: &mut C,
    ) -> Result<HostIrq, Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
    {
        if !self.loaded {
            return Ok(HostIrq::NotLoaded);
        }
        let id = timer;
        let on_hardware = self.context(id).residency() == Residency::Hardware;
        let fire = on_hardware && {
            let ctl = hw_ctl(hw, id);
            self.context_mut(id).set_ctl(ctl);
            ctl.output_asserted()
        };
        if !fire {
            // The host acknowledged the interrupt, so it was inactive: the
            // guest holds no hardware-mapped virtual interrupt for it. A
            // raised line whose condition the guest cleared goes low; the
            // line of a blocked vCPU (timer saved and disabled) stays as it
            // is until `unblock` looks at the timer again, and an emulated
            // physical timer's line is `before_entry`'s.
            //
            // If the interrupt controller fails on the way, the PPI may be
            // left active: the next `before_entry` writes its state again,
            // and a line still recorded high is lowered at the next exit.
            let result = self.dismiss_host_irq(id, on_hardware, chip);
            // Written whole on success, possibly wrong on an error.
            self.host_mut(id).stale = result.is_err() && self.is_direct(id);
            return result.map(|()| HostIrq::Spurious);
        }
        let ppi = self.host(id).ppi;
        match self.forwarding {
            Forwarding::Hardware => {
                let was_high = self.context(id).level();
                // The acknowledge came before this exit's `after_exit`,
                // which found the condition cleared and deactivated the
                // PPI; the timer has fired again since. The guest's
                // deactivation of the virtual interrupt must be what lets
                // the PPI signal again, so it is made active as the
                // acknowledge had left it. If that fails, nothing is
                // injected: released as below.
                if self.host(id).released {
                    if let Err(e) = chip.set_host_active(ppi, true) {
                        self.release_after_error(id, chip);
                        return Err(Error::IrqChip(e));
                    }
                    self.host_mut(id).released = false;
                }
                if let Err(e) = self.set_level(id, true, chip) {
                    if was_high {
                        // Raised before this acknowledge: by `unblock` or
                        // `after_irq_exit` after it, or before a completion
                        // the timer fired again after. The guest may hold
                        // that interrupt, pending and linked to the PPI: a
                        // released PPI would signal while it does. Left
                        // active for the next `before_entry`, which asks
                        // the interrupt controller where the interrupt
                        // stands (`repair_host_irq`).
                        self.host_mut(id).stale = true;
                    } else {
                        // Nothing injected: an active PPI would hold back
                        // this expiry for good. Released, it signals again
                        // while the timer fires, and the host retries.
                        self.release_after_error(id, chip);
                    }
                    return Err(e);
                }
            }
            Forwarding::Masking => {
                if let Err(e) = chip.set_host_masked(ppi, true) {
                    // Not masked, line not reported: released, the PPI
                    // signals again and the host retries.
                    self.release_after_error(id, chip);
                    return Err(Error::IrqChip(e));
                }
                self.set_level(id, true, chip)?;
                if let Err(e) = chip.set_host_active(ppi, false) {
                    // Masked with the line reported: no storm and nothing
                    // lost now, but an active PPI would hold back the next
                    // expiry once unmasked. `before_entry` deactivates it.
                    self.host_mut(id).stale = true;
                    return Err(Error::IrqChip(e));
                }
            }
        }
        // The host state is what a raise leaves, whatever an earlier error
        // left: nothing to repair.
        self.host_mut(id).stale = false;
        Ok(HostIrq::Raised)
    }

    /// The spurious half of [`handle_timer_irq`](Self::handle_timer_irq):
    /// lowers a raised line whose condition the guest cleared (unmasking
    /// the PPI with [`Forwarding::Masking`]) and deactivates the PPI.
    fn dismiss_host_irq<C: IrqChip + ?Sized>(
        &mut self,
        id: TimerId,
        on_hardware: bool,
        chip: &mut C,
    ) -> Result<(), Error<C::Error>> {
        let ppi = self.host(id).ppi;
        if on_hardware && self.context(id).level() {
            self.set_level(id, false, chip)?;
            if self.forwarding == Forwarding::Masking {
                chip.set_host_masked(ppi, false).map_err(Error::IrqChip)?;
            }
        }
        chip.set_host_active(ppi, false).map_err(Error::IrqChip)?;
        self.host_mut(id).released = false;
        Ok(())
    }

    /// After a failed raise in `handle_timer_irq`: deactivates the PPI so
    /// that it signals again, or leaves that to the next `before_entry` if
    /// this fails too.
    fn release_after_error<C: IrqChip + ?Sized>(&mut self, id: TimerId, chip: &mut C) {
        let ppi = self.host(id).ppi;
        if chip.set_host_active(ppi, false).is_err() {
            self.host_mut(id).stale = true;
        }
    }

    /// Writes a direct timer's physical PPI host state again after an
    /// interrupt controller error may have left it wrong. Touches no timer
    /// register.
    ///
    /// A failed interrupt controller call leaves the host state stale, and
    /// every later call that writes it whole (a successful
    /// `handle_timer_irq`, `load`, `unblock`, `reset`) clears that. With
    /// [`Forwarding::Hardware`], a line recorded high is asked about
    /// ([`IrqChip::virtual_state`]): an interrupt the guest still holds
    /// (pending or active) keeps the PPI active, so that it cannot signal
    /// under it, and a pending one is raised again (nothing new if it is
    /// there; injected if the backend's default answer hid an interrupt
    /// the guest had completed); for one the guest completed, the line is
    /// lowered and the PPI released, which signals again if the timer
    /// fires (the host raises the line again). A low line's PPI is
    /// released unless the guest holds the interrupt active. With
    /// [`Forwarding::Masking`] the PPI is made inactive and masked exactly
    /// while the line is high.
    fn repair_host_irq<C: IrqChip + ?Sized>(
        &mut self,
        id: TimerId,
        chip: &mut C,
    ) -> Result<(), Error<C::Error>> {
        match self.forwarding {
            Forwarding::Hardware if self.context(id).level() => {
                let irq = self.context(id).irq();
                let ppi = self.host(id).ppi;
                match chip.virtual_state(irq).map_err(Error::IrqChip)? {
                    VirtualState::Inactive => {
                        self.set_level(id, false, chip)?;
                        chip.set_host_active(ppi, false).map_err(Error::IrqChip)?;
                        self.host_mut(id).released = true;
                    }
                    state => {
                        chip.set_host_active(ppi, true).map_err(Error::IrqChip)?;
                        if state == VirtualState::Pending {
                            chip.set_virtual_level(irq, true).map_err(Error::IrqChip)?;
                        }
                    }
                }
            }
            Forwarding::Hardware => self.release_host_irq(id, chip)?,
            Forwarding::Masking => {
                let ppi = self.host(id).ppi;
                chip.set_host_active(ppi, false).map_err(Error::IrqChip)?;
                chip.set_host_masked(ppi, self.context(id).level())
                    .map_err(Error::IrqChip)?;
            }
        }
        self.host_mut(id).stale = false;
        Ok(())
    }

    /// The emulated physical timer's soft timer expired: brings its line in
    /// step with its condition (raised if it holds; lowered if it no
    /// longer does, as after the counter was moved back). Returns whether
    /// the line is high.
    ///
    /// On a vCPU that is not loaded (a soft timer that fired while
    /// [`put`](Self::put) cancelled it, a harmless race), or whose physical
    /// timer is direct (a soft timer armed before the map changed), this
    /// touches nothing and returns the recorded level (`false` if not
    /// loaded): the next [`before_entry`](Self::before_entry) or the
    /// hardware looks at the timer again.
    ///
    /// # Errors
    ///
    /// [`Error::IrqChip`]: the line is as it was, and the next
    /// [`before_entry`](Self::before_entry) brings it up to date (the soft
    /// timer's interrupt made the guest exit, so the run loop enters it
    /// again through `before_entry`).
    pub fn physical_timer_expired<H, C>(
        &mut self,
        hw: &mut H,
        chip: &mut C,
    ) -> Result<bool, Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
    {
        self.touch();
        self.physical_armed = false;
        if !self.loaded {
            return Ok(false);
        }
        if self.ptimer_direct {
            return Ok(self.ptimer.level());
        }
        let fire = self.ptimer.should_fire(hw.physical_count());
        if fire != self.ptimer.level() {
            self.set_level(TimerId::Physical, fire, chip)?;
        }
        Ok(fire)
    }

    /// With [`Forwarding::Masking`]: whether a line level changed since the
    /// last [`take_user_levels`](Self::take_user_levels), so the VMM must be
    /// told. Always `false` with [`Forwarding::Hardware`].
    #[doc(alias = "kvm_timer_should_notify_user")]
    #[must_use]
    pub fn should_notify_user(&self) -> bool {
        self.forwarding == Forwarding::Masking && self.user_levels != self.levels()
    }

    /// The current line levels, remembered as told to the VMM.
    #[doc(alias = "kvm_timer_update_run")]
    pub fn take_user_levels(&mut self) -> TimerLevels {
        self.user_levels = self.levels();
        self.user_levels
    }

    /// The current levels of both lines.
    #[must_use]
    #[inline]
    pub const fn levels(&self) -> TimerLevels {
        TimerLevels {
            virtual_timer: self.vtimer.level(),
            physical_timer: self.ptimer.level(),
        }
    }

    /// vCPU reset: disables both timers (CVAL and offsets are kept), lowers
    /// their lines, releases the direct timers' physical interrupts and
    /// cancels the soft timers. Works loaded or not; only a loaded vCPU
    /// touches the timer registers and the host PPIs.
    ///
    /// A loaded vCPU's direct timers' physical PPIs are deactivated (and
    /// unmasked) even if the reset guest was still handling a timer
    /// interrupt (as KVM does): the old guest's deactivation will never
    /// come, and the reset guest's first expiry must be taken. The virtual
    /// interrupts' state in the vCPU's virtual interrupt controller (a list
    /// register holding one active) is the VMM's to reset along with the
    /// rest of that controller, as a vCPU reset does; [`load`](Self::load)
    /// makes a PPI active again for a virtual interrupt still active there.
    ///
    /// # Errors
    ///
    /// [`Error::IrqChip`].
    #[doc(alias = "kvm_timer_vcpu_reset")]
    pub fn reset<H, C, S>(
        &mut self,
        hw: &mut H,
        chip: &mut C,
        soft: &mut S,
    ) -> Result<(), Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
        S: SoftTimers + ?Sized,
    {
        self.touch();
        for id in TIMERS {
            if self.context(id).residency() == Residency::Hardware {
                hw_set_ctl(hw, id, TimerCtl::empty());
            }
            self.context_mut(id).set_ctl(TimerCtl::empty());
        }
        self.cancel_background(soft);
        self.cancel_physical(soft);
        if self.ptimer.level() {
            self.set_level(TimerId::Physical, false, chip)?;
        }
        if self.vtimer.level() {
            self.set_level(TimerId::Virtual, false, chip)?;
        }
        if self.loaded {
            for id in TIMERS {
                if !self.is_direct(id) {
                    continue;
                }
                let ppi = self.host(id).ppi;
                chip.set_host_active(ppi, false).map_err(Error::IrqChip)?;
                self.host_mut(id).released = true;
                if self.forwarding == Forwarding::Masking {
                    chip.set_host_masked(ppi, false).map_err(Error::IrqChip)?;
                }
                self.host_mut(id).stale = false;
            }
        }
        Ok(())
    }

    /// Gives both timers the VM-wide counter offset, if the VM has one.
    pub(crate) const fn apply_vm_offset(&mut self, vm: &VmTimer) {
        if let Some(offset) = vm.counter_offset() {
            self.vtimer.set_offset(offset);
            self.ptimer.set_offset(offset);
        }
    }

    #[inline]
    pub(crate) const fn context_mut(&mut self, id: TimerId) -> &mut TimerContext {
        match id {
            TimerId::Virtual => &mut self.vtimer,
            TimerId::Physical => &mut self.ptimer,
        }
    }

    #[inline]
    const fn host(&self, id: TimerId) -> &HostPpi {
        match id {
            TimerId::Virtual => &self.vhost,
            TimerId::Physical => &self.phost,
        }
    }

    #[inline]
    const fn host_mut(&mut self, id: TimerId) -> &mut HostPpi {
        match id {
            TimerId::Virtual => &mut self.vhost,
            TimerId::Physical => &mut self.phost,
        }
    }

    /// Whether the CPU applies the physical timer's offset while it is
    /// direct (FEAT_ECV), as found at the last `load`.
    pub(crate) const fn has_physical_offset(&self) -> bool {
        self.ecv
    }

    /// Turns a loaded vCPU's direct physical timer, already saved, into an
    /// emulated one: its host PPI released and unmapped, the EL1 physical
    /// timer accesses trapped. For an offset the CPU cannot apply.
    pub(crate) fn demote_ptimer<H, C>(
        &mut self,
        hw: &mut H,
        chip: &mut C,
    ) -> Result<(), Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
    {
        self.ptimer_direct = false;
        hw.set_el1_physical_access(false);
        let ppi = self.phost.ppi;
        chip.set_host_active(ppi, false).map_err(Error::IrqChip)?;
        if self.forwarding == Forwarding::Masking {
            chip.set_host_masked(ppi, false).map_err(Error::IrqChip)?;
        }
        if let Some((old, _)) = self.phost.mapped {
            chip.unmap_virtual(old).map_err(Error::IrqChip)?;
            self.phost.mapped = None;
        }
        self.phost.stale = false;
        Ok(())
    }

    /// Saves every direct timer that is on the hardware.
    fn save_all<H: TimerHw + ?Sized>(&mut self, hw: &mut H) {
        for id in TIMERS {
            self.save(id, hw);
        }
    }

    /// Moves a timer's state from the hardware into memory and disables
    /// the hardware timer; does nothing if it is already there (as an
    /// emulated timer always is).
    #[doc(alias = "timer_save_state")]
    pub(crate) fn save<H: TimerHw + ?Sized>(&mut self, id: TimerId, hw: &mut H) {
        // No lock: `TimerHw`'s per-CPU exclusion contract keeps any other
        // writer of these registers away between the reads and the write.
        if self.context(id).residency() == Residency::Memory {
            return;
        }
        let ctl = hw_ctl(hw, id);
        let cval = hw_cval(hw, id);
        hw_set_ctl(hw, id, TimerCtl::empty());
        let ctx = self.context_mut(id);
        ctx.set_ctl(ctl);
        ctx.set_cval(cval);
        ctx.set_residency(Residency::Memory);
    }

    /// Moves a direct timer's state from memory onto the hardware (CVAL,
    /// barrier, CTL); does nothing if it is already there.
    #[doc(alias = "timer_restore_state")]
    pub(crate) fn restore<H: TimerHw + ?Sized>(&mut self, id: TimerId, hw: &mut H) {
        let ctx = self.context(id);
        if ctx.residency() == Residency::Hardware {
            return;
        }
        let (cval, ctl) = (ctx.cval(), ctx.ctl().writable());
        hw_set_cval(hw, id, cval);
        hw.barrier();
        hw_set_ctl(hw, id, ctl);
        self.context_mut(id).set_residency(Residency::Hardware);
    }

    /// Tells whether a direct timer's output is asserted: from CTL on the
    /// hardware (kept in the memory copy), or by computing the condition
    /// when the state is in memory.
    fn sample<H: TimerHw + ?Sized>(&mut self, id: TimerId, hw: &mut H) -> bool {
        match self.context(id).residency() {
            Residency::Hardware => {
                // CTL's ISTATUS tells; CVAL is not needed (the memory copy
                // of a timer on the hardware is refreshed whole when it is
                // saved, and nothing reads it before).
                let ctl = hw_ctl(hw, id);
                self.context_mut(id).set_ctl(ctl);
                ctl.output_asserted()
            }
            Residency::Memory => self.context(id).should_fire(hw.physical_count()),
        }
    }

    /// Sets a timer's line and tells the interrupt controller
    /// ([`Forwarding::Hardware`]); with [`Forwarding::Masking`] the VMM
    /// learns it through [`should_notify_user`](Self::should_notify_user).
    /// The level is recorded only if the interrupt controller took it.
    #[doc(alias = "kvm_timer_update_irq")]
    pub(crate) fn set_level<C: IrqChip + ?Sized>(
        &mut self,
        id: TimerId,
        level: bool,
        chip: &mut C,
    ) -> Result<(), Error<C::Error>> {
        let forwarding = self.forwarding;
        let timer = self.context_mut(id);
        // Recorded once the interrupt controller has it, so that a failed
        // call is tried again by whatever looks at the level next.
        if forwarding == Forwarding::Hardware {
            chip.set_virtual_level(timer.irq(), level)
                .map_err(Error::IrqChip)?;
        }
        timer.set_level(level);
        Ok(())
    }

    /// Lowers a direct timer's line whose condition the guest cleared, and
    /// lets its physical PPI signal again. With [`Forwarding::Hardware`]
    /// the PPI is deactivated only if the virtual interrupt was still
    /// pending (withdrawn here, so no guest deactivation will come): one
    /// the guest completed had the PPI deactivated by that completion (HW
    /// bit), one it still holds active will have. With
    /// [`Forwarding::Masking`] the PPI is unmasked.
    pub(crate) fn lower_direct_line<C: IrqChip + ?Sized>(
        &mut self,
        id: TimerId,
        chip: &mut C,
    ) -> Result<(), Error<C::Error>> {
        let release = match self.forwarding {
            Forwarding::Hardware => {
                let state = chip
                    .lower_virtual_level(self.context(id).irq())
                    .map_err(Error::IrqChip)?;
                self.context_mut(id).set_level(false);
                if state != VirtualState::Pending {
                    return Ok(());
                }
                let release = chip
                    .set_host_active(self.host(id).ppi, false)
                    .map_err(Error::IrqChip);
                if release.is_ok() {
                    self.host_mut(id).released = true;
                }
                release
            }
            Forwarding::Masking => {
                self.set_level(id, false, chip)?;
                self.release_host_irq(id, chip)
            }
        };
        // The line is low; a PPI left active or masked by a failed write
        // has nothing in the guest to complete it: written again before
        // the next entry (and never trusted to wake a sleep in place).
        self.host_mut(id).stale |= release.is_err();
        release
    }

    /// Lets a direct timer's physical PPI signal again after its virtual
    /// line went low.
    #[doc(alias = "unmask_vtimer_irq")]
    pub(crate) fn release_host_irq<C: IrqChip + ?Sized>(
        &mut self,
        id: TimerId,
        chip: &mut C,
    ) -> Result<(), Error<C::Error>> {
        let ppi = self.host(id).ppi;
        match self.forwarding {
            Forwarding::Hardware => {
                // If the guest disabled the timer without deactivating the
                // interrupt, the physical one is still active and would hide
                // the next expiry; deactivate it unless the guest is still
                // handling the virtual one (its deactivation will do it).
                if !chip
                    .virtual_active(self.context(id).irq())
                    .map_err(Error::IrqChip)?
                {
                    chip.set_host_active(ppi, false).map_err(Error::IrqChip)?;
                    self.host_mut(id).released = true;
                }
            }
            Forwarding::Masking => {
                chip.set_host_masked(ppi, false).map_err(Error::IrqChip)?;
            }
        }
        Ok(())
    }

    /// Brings a direct timer's line in step with its saved state at `now`:
    /// raised if it fires, lowered if not, and raised again if it fires,
    /// was raised before, and the guest no longer has the hardware-mapped
    /// interrupt active (it deactivated it with the condition still met, so
    /// it is pending again). Returns whether the line was raised.
    #[inline(always)]
    fn sync_direct_line<C: IrqChip + ?Sized>(
        &mut self,
        id: TimerId,
        now: Ticks,
        virtual_active: bool,
        chip: &mut C,
    ) -> Result<bool, Error<C::Error>> {
        let ctx = self.context(id);
        let fire = ctx.should_fire(now);
        let changed = fire != ctx.level();
        let reraise =
            fire && ctx.level() && self.forwarding == Forwarding::Hardware && !virtual_active;
        if changed || reraise {
            self.set_level(id, fire, chip)?;
        }
        Ok(fire && (changed || reraise))
    }

    /// The state may have changed outside the hot paths: both of them look
    /// at it again next time.
    #[inline]
    pub(crate) const fn touch(&mut self) {
        self.work = Work::ALL;
    }

    /// Computes [`Work`] from the state, after a successful `before_entry`
    /// or `after_exit`.
    fn refresh_work(&mut self) {
        let mut work = 0;
        let emulated_ptimer_live =
            !self.ptimer_direct && (self.ptimer.can_fire() || self.ptimer.level());
        let host_work = self.vhost.stale
            || self.vhost.released
            || (self.ptimer_direct && self.phost.stale)
            || self.phost.released;
        if !self.loaded || self.blocked || host_work || emulated_ptimer_live {
            work |= Work::ENTRY;
        }
        let direct_high = self.vtimer.level() || (self.ptimer_direct && self.ptimer.level());
        if !self.loaded || self.physical_armed || direct_high {
            work |= Work::EXIT;
        }
        self.work = work;
    }

    #[inline]
    fn cancel_physical<S: SoftTimers + ?Sized>(&mut self, soft: &mut S) {
        if self.physical_armed {
            soft.cancel(SoftTimer::Physical);
            self.physical_armed = false;
        }
    }

    fn cancel_background<S: SoftTimers + ?Sized>(&mut self, soft: &mut S) {
        if self.background_armed {
            soft.cancel(SoftTimer::Background);
            self.background_armed = false;
        }
    }
}

/// Writes the host state of a direct timer's PPI for a line at `level`:
/// with [`Forwarding::Hardware`] (`hardware`) active exactly while the line
/// is high or the guest holds the virtual interrupt active; with
/// [`Forwarding::Masking`] masked exactly while the line is high, and
/// deactivated first if an earlier error may have left it active
/// (`stale`).
#[inline(always)]
fn write_host_state<C: IrqChip + ?Sized>(
    chip: &mut C,
    ppi: IntId,
    hardware: bool,
    level: bool,
    virtual_active: bool,
    stale: bool,
) -> Result<(), Error<C::Error>> {
    if hardware {
        chip.set_host_active(ppi, level || virtual_active)
            .map_err(Error::IrqChip)
    } else {
        if stale {
            chip.set_host_active(ppi, false).map_err(Error::IrqChip)?;
        }
        chip.set_host_masked(ppi, level).map_err(Error::IrqChip)
    }
}

/// A timer's CTL on the hardware.
pub(crate) fn hw_ctl<H: TimerHw + ?Sized>(hw: &H, id: TimerId) -> TimerCtl {
    match id {
        TimerId::Virtual => hw.vtimer_ctl(),
        TimerId::Physical => hw.ptimer_ctl(),
    }
}

/// A timer's CVAL on the hardware.
pub(crate) fn hw_cval<H: TimerHw + ?Sized>(hw: &H, id: TimerId) -> Ticks {
    match id {
        TimerId::Virtual => hw.vtimer_cval(),
        TimerId::Physical => hw.ptimer_cval(),
    }
}

fn hw_set_ctl<H: TimerHw + ?Sized>(hw: &mut H, id: TimerId, ctl: TimerCtl) {
    match id {
        TimerId::Virtual => hw.set_vtimer_ctl(ctl),
        TimerId::Physical => hw.set_ptimer_ctl(ctl),
    }
}

fn hw_set_cval<H: TimerHw + ?Sized>(hw: &mut H, id: TimerId, cval: Ticks) {
    match id {
        TimerId::Virtual => hw.set_vtimer_cval(cval),
        TimerId::Physical => hw.set_ptimer_cval(cval),
    }
}
