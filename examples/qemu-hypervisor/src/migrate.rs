//! The migration scenario: one vCPU handed between two CPUs every few
//! virtual timer interrupts, `put` on one CPU and `load` on the other.
//!
//! The vCPU lives in a static [`VcpuSlot`], not in either CPU's stack
//! frame. The slot records which CPU owns the vCPU; a CPU gets a `&mut`
//! to it only inside [`VcpuSlot::with_owned`], only while it is the owner,
//! and gives it up with [`VcpuSlot::hand_over`] (Release) once that
//! reference has ended; the next owner sees the hand-over with Acquire.
//! So at any time at most one `&mut Vcpu` exists, on one CPU. A CPU
//! without the vCPU waits in WFI and looks at the slot every
//! [`PARK_POLL_US`].

use core::cell::{RefCell, UnsafeCell};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use arch_timer_virt::Ticks;
use critical_section::Mutex;

use crate::el2::{fail, secondary_main};
use crate::gic::HostIrqs;
use crate::hyp::{Hyp, RUN_LIMIT_US, RunState, SliceEnd, Stats, Vcpu};
use crate::sysreg::read_sysreg;

/// The second CPU's statistics, added at each hand-back.
pub(crate) static CPU1_STATS: Mutex<RefCell<Stats>> = Mutex::new(RefCell::new(Stats::ZERO));
/// Hand the vCPU over after this many raised vtimer interrupts.
const MIGRATE_EVERY: u64 = 3;
/// The second CPU's EL2 stack (migration, or the Linux guest's second
/// CPU).
pub(crate) static mut CPU1_STACK: aarch64_rt::Stack<16> = aarch64_rt::Stack::new();

/// This CPU's number (`MPIDR_EL1.Aff0`: 0 or 1 on QEMU `virt -smp 2`).
fn this_cpu() -> u64 {
    read_sysreg!(mpidr_el1) & 0xff
}

/// A vCPU owned by one CPU at a time.
pub(crate) struct VcpuSlot<V> {
    /// The CPU that owns the vCPU (`MPIDR_EL1.Aff0`). Only the owner
    /// changes it ([`hand_over`](Self::hand_over)).
    owner: AtomicU64,
    /// The owner is inside [`with_owned`](Self::with_owned).
    busy: AtomicBool,
    /// The vCPU has finished its run.
    finished: AtomicBool,
    vcpu: UnsafeCell<Option<Vcpu<V>>>,
}

// SAFETY: the vCPU in the cell is reached only through `with_owned`, which
// hands out a `&mut` only on the owning CPU, never twice at once (`busy`),
// and ownership moves only with a Release store that the next owner
// reads with Acquire; so the vCPU moves between CPUs like a sent value,
// which `V: Send` allows.
unsafe impl<V: Send> Sync for VcpuSlot<V> {}

impl<V> VcpuSlot<V> {
    /// An empty slot owned by CPU 0.
    pub(crate) const fn new() -> Self {
        Self {
            owner: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            finished: AtomicBool::new(false),
            vcpu: UnsafeCell::new(None),
        }
    }

    /// Runs `f` with the slot's contents if this CPU owns it; `None` if it
    /// does not (or is already inside `with_owned`).
    fn with_cell<R>(&self, f: impl FnOnce(&mut Option<Vcpu<V>>) -> R) -> Option<R> {
        if self.owner.load(Ordering::Acquire) != this_cpu() {
            return None;
        }
        if self.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        // SAFETY: this CPU owns the slot: only the owner changes `owner`,
        // and this CPU does not while `busy` is set (`hand_over` refuses),
        // so no other CPU can become the owner during `f`. The Acquire load
        // above pairs with the previous owner's Release hand-over, after
        // which it kept no reference. `busy` was clear, so this CPU holds
        // no other reference either (no re-entry). The `&mut` ends with `f`.
        let result = f(unsafe { &mut *self.vcpu.get() });
        self.busy.store(false, Ordering::Release);
        Some(result)
    }

    /// Puts `vcpu` in the slot; `false` if this CPU does not own it.
    pub(crate) fn install(&self, vcpu: Vcpu<V>) -> bool {
        self.with_cell(|cell| *cell = Some(vcpu)).is_some()
    }

    /// Runs `f` on the vCPU if this CPU owns it; `None` if it does not or
    /// the slot is empty.
    pub(crate) fn with_owned<R>(&self, f: impl FnOnce(&mut Vcpu<V>) -> R) -> Option<R> {
        self.with_cell(|cell| cell.as_mut().map(f)).flatten()
    }

    /// Gives the vCPU to `cpu` (which sees it within [`PARK_POLL_US`]);
    /// `false` if this CPU does not own it (or is inside
    /// [`with_owned`](Self::with_owned)).
    pub(crate) fn hand_over(&self, cpu: u64) -> bool {
        if self.busy.load(Ordering::Relaxed) {
            return false;
        }
        let me = this_cpu();
        self.owner
            .compare_exchange(me, cpu, Ordering::Release, Ordering::Relaxed)
            .is_ok()
    }

    /// Marks the run finished (the other CPU sees it within
    /// [`PARK_POLL_US`]).
    fn finish(&self) {
        self.finished.store(true, Ordering::Release);
    }

    fn finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    fn owned_here(&self) -> bool {
        self.owner.load(Ordering::Acquire) == this_cpu()
    }
}

/// How often a CPU waiting for the vCPU looks at the slot: every 500 us.
///
/// It waits in WFI with its EL2 timer armed, not in WFE for the other
/// CPU's `sev`: QEMU's TCG implements WFE as a yield, so a CPU parked in
/// WFE spins on a host core, which on a 2-core host takes half the machine
/// from the CPU that runs the vCPU (delivery latencies of 300 ms were seen
/// under load). WFI halts the vCPU thread until an interrupt is pending.
const PARK_POLL_US: u64 = 500;

/// Waits with nothing armed: for good (the first CPU ends the run).
pub(crate) fn park_forever() -> ! {
    loop {
        // SAFETY: wfi only waits for an interrupt.
        unsafe { core::arch::asm!("wfi", options(nostack)) };
    }
}

impl<G: HostIrqs> Hyp<G>
where
    G::Vgic: Default,
{
    /// Migration, first CPU: puts the vCPU in the slot, starts the second
    /// CPU, then runs the vCPU whenever it owns it, handing it over every
    /// few interrupts. Returns once the vCPU has finished and is back on
    /// this CPU.
    pub(crate) fn migrate(&mut self, vcpu: Vcpu<G::Vgic>) -> &'static VcpuSlot<G::Vgic> {
        let slot = G::migration_slot();
        if !slot.install(vcpu) {
            fail!("hv: CPU 0 does not own the migration slot");
        }
        let (config, gic) = (self.config, self.gic_version);
        // SAFETY: CPU1_STACK is used only by the second CPU, which this
        // starts once; the initial page table maps it for both CPUs alike.
        let started = unsafe {
            aarch64_rt::start_core::<smccc::Smc, _, 16>(1, &raw mut CPU1_STACK, move || {
                secondary_main(config, gic)
            })
        };
        if let Err(e) = started {
            fail!("hv: cannot start CPU 1 (run with -smp 2): {e}");
        }
        loop {
            // The vCPU always comes back here: CPU 1 hands it back even
            // when it finishes there.
            while !slot.owned_here() {
                self.park();
            }
            if slot.finished() {
                break;
            }
            let Some(done) = slot.with_owned(|v| self.run_owned(v)) else {
                fail!("hv: CPU 0 lost the vCPU");
            };
            if done {
                slot.finish();
                break;
            }
            self.stats.switches += 1;
            if !slot.hand_over(1) {
                fail!("hv: CPU 0 cannot hand the vCPU over");
            }
        }
        self.stop_hyp_timer();
        slot
    }

    /// Migration, second CPU: runs the vCPU whenever the first CPU hands
    /// it over, and hands it back.
    pub(crate) fn secondary(mut self) -> ! {
        if crate::linux::is_linux(self.config) {
            self.linux_secondary()
        }
        let slot = G::migration_slot();
        loop {
            while !slot.finished() && !slot.owned_here() {
                self.park();
            }
            if !slot.owned_here() {
                break;
            }
            let Some(done) = slot.with_owned(|v| self.run_owned(v)) else {
                fail!("hv: CPU 1 got no vCPU");
            };
            self.stats.switches += 1;
            critical_section::with(|cs| CPU1_STATS.borrow_ref_mut(cs).add(&self.stats));
            self.stats = Stats::ZERO;
            if done {
                slot.finish();
            }
            if !slot.hand_over(0) {
                fail!("hv: CPU 1 cannot hand the vCPU back");
            }
            if done {
                break;
            }
        }
        self.stop_hyp_timer();
        park_forever()
    }

    /// Waits up to [`PARK_POLL_US`] (or until an interrupt) without
    /// spinning, for the slot to change.
    fn park(&mut self) {
        let poll = self.clock.ticks_us(PARK_POLL_US);
        self.arm_hyp_timer(self.now() + poll);
        // SAFETY: wfi waits for an interrupt (IRQs stay masked at EL2; a
        // pending one still ends the wait).
        unsafe { core::arch::asm!("wfi", options(nostack)) };
        let _ = self.drain_irqs(None);
    }

    /// Loads `v` on this CPU, runs it until it has had
    /// `MIGRATE_EVERY` interrupts raised (checked at ticks) or finishes,
    /// and puts it. Returns whether it finished.
    fn run_owned(&mut self, v: &mut Vcpu<G::Vgic>) -> bool {
        // The hand-over is checked at ticks.
        self.tick_period = self.periods.tick;
        self.next_tick = self.now() + self.periods.tick;
        self.arm_hyp_timer(self.next_tick);
        self.adopt_soft_timers(v);
        self.load(v);
        let start = self.stats.raised;
        let done = loop {
            if let RunState::Done(_) = v.state {
                break true;
            }
            if let RunState::Blocked { .. } = v.state {
                let one = core::slice::from_mut(&mut *v);
                self.wake_blocked(one);
                if let Some(v) = one.first()
                    && v.state != RunState::Runnable
                {
                    self.idle(one, Some(0));
                    continue;
                }
            }
            match self.run_slice(v) {
                SliceEnd::Done => break true,
                SliceEnd::Tick | SliceEnd::Blocked => {}
            }
            if self.stats.raised - start >= MIGRATE_EVERY {
                break false;
            }
            if self.now().wrapping_sub(self.start) > self.periods.run_limit {
                fail!("hv: run limit of {} s exceeded", RUN_LIMIT_US / 1_000_000);
            }
        };
        self.put(v);
        self.release_soft_timers(v);
        self.stop_hyp_timer();
        done
    }

    /// Takes `v`'s background deadline out of this CPU's
    /// [`HypTimer`](arch_timer_virt_aarch64::HypTimer), to carry it to
    /// another CPU (migration).
    pub(crate) fn release_soft_timers(&mut self, v: &mut Vcpu<G::Vgic>) {
        let bg = v.slots.background;
        v.carried_background = if self.expired.contains(bg) {
            Some(Ticks::ZERO)
        } else {
            self.hyp.deadline(bg)
        };
        self.expired = self.expired.without(bg);
        if let Err(e) = self.hyp.cancel(bg) {
            fail!("hv: HypTimer: {e}");
        }
    }

    /// Puts the background deadline `v` carried into this CPU's
    /// [`HypTimer`](arch_timer_virt_aarch64::HypTimer) (migration).
    pub(crate) fn adopt_soft_timers(&mut self, v: &mut Vcpu<G::Vgic>) {
        if let Some(at) = v.carried_background.take()
            && let Err(e) = self.hyp.arm(v.slots.background, at)
        {
            fail!("hv: HypTimer: {e}");
        }
    }
}
