//! The migration scenario: one vCPU handed between two CPUs every few
//! virtual timer interrupts, `put` on one CPU and `load` on the other.
//!
//! The vCPU lives in the first CPU's run frame; `OWNER` says which CPU may
//! touch it (release/acquire), `wfe`/`sev` wait and wake.

use core::cell::RefCell;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use critical_section::Mutex;

use crate::el2::{fail, hyp_timer_arm, hyp_timer_stop, secondary_main};
use crate::gic::HostIrqs;
use crate::hyp::{Hyp, RUN_LIMIT, RunState, SliceEnd, Stats, TICK, Vcpu};

/// Which CPU owns the vCPU now (0 or 1).
static OWNER: AtomicUsize = AtomicUsize::new(0);
/// The vCPU has finished.
static FINISHED: AtomicBool = AtomicBool::new(false);
/// The vCPU, lent between the CPUs (a `*mut Vcpu<_>`).
static MIGRATING: AtomicUsize = AtomicUsize::new(0);
/// The second CPU's statistics, added at each hand-back.
pub(crate) static CPU1_STATS: Mutex<RefCell<Stats>> = Mutex::new(RefCell::new(Stats::ZERO));
/// Hand the vCPU over after this many raised vtimer interrupts.
const MIGRATE_EVERY: u64 = 3;
/// The second CPU's EL2 stack.
static mut CPU1_STACK: aarch64_rt::Stack<16> = aarch64_rt::Stack::new();

/// Waits until `OWNER` is `cpu` or the vCPU has finished; `true` if it
/// has finished.
fn wait_for_vcpu(cpu: usize) -> bool {
    loop {
        if FINISHED.load(Ordering::Acquire) {
            return true;
        }
        if OWNER.load(Ordering::Acquire) == cpu {
            return false;
        }
        // SAFETY: wfe only waits for an event (the other CPU's sev).
        unsafe { core::arch::asm!("wfe", options(nostack)) };
    }
}

/// Hands the vCPU to `cpu` and wakes it.
fn hand_over(cpu: usize) {
    OWNER.store(cpu, Ordering::Release);
    // SAFETY: sev only signals an event.
    unsafe { core::arch::asm!("dsb ish", "sev", options(nostack)) };
}

impl<G: HostIrqs> Hyp<G>
where
    G::Vgic: Default,
{
    /// Migration, first CPU: starts the second CPU, then runs the vCPU
    /// whenever it owns it, handing it over every few interrupts.
    pub(crate) fn migrate(&mut self, v: &mut Vcpu<G::Vgic>) {
        MIGRATING.store(core::ptr::from_mut(v) as usize, Ordering::Release);
        OWNER.store(0, Ordering::Release);
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
        while !wait_for_vcpu(0) {
            if self.run_owned(v) {
                FINISHED.store(true, Ordering::Release);
                hand_over(1);
                break;
            }
            self.stats.switches += 1;
            hand_over(1);
        }
        hyp_timer_stop();
    }

    /// Migration, second CPU: runs the vCPU whenever the first CPU hands
    /// it over, and hands it back.
    pub(crate) fn secondary(mut self) -> ! {
        loop {
            if wait_for_vcpu(1) {
                break;
            }
            let ptr = MIGRATING.load(Ordering::Acquire) as *mut Vcpu<G::Vgic>;
            // SAFETY: the first CPU lent us the vCPU (OWNER = 1, with
            // release ordering) and does not touch it until we hand it back;
            // it lives in the first CPU's `run` frame, which never returns.
            let Some(v) = (unsafe { ptr.as_mut() }) else {
                fail!("hv: CPU 1 got no vCPU");
            };
            let done = self.run_owned(v);
            self.stats.switches += 1;
            critical_section::with(|cs| CPU1_STATS.borrow_ref_mut(cs).add(&self.stats));
            self.stats = Stats::ZERO;
            if done {
                FINISHED.store(true, Ordering::Release);
            }
            hand_over(0);
        }
        hyp_timer_stop();
        loop {
            // SAFETY: parks this CPU; the first CPU ends the run.
            unsafe { core::arch::asm!("wfe", options(nostack)) };
        }
    }

    /// Loads `v` on this CPU, runs it until it has had
    /// `MIGRATE_EVERY` interrupts raised (checked at ticks) or finishes,
    /// and puts it. Returns whether it finished.
    fn run_owned(&mut self, v: &mut Vcpu<G::Vgic>) -> bool {
        // The hand-over is checked at ticks.
        self.tick_period = TICK;
        self.next_tick = self.now() + TICK;
        hyp_timer_arm(self.next_tick);
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
            if self.now().wrapping_sub(self.start) > RUN_LIMIT {
                fail!("hv: run limit exceeded");
            }
        };
        self.put(v);
        hyp_timer_stop();
        done
    }
}
