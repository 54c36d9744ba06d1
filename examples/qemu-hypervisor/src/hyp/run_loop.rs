//! The run loop: the part of the example an integrator copies.
//!
//! One [`Hyp`] per physical CPU runs its [`Vcpu`]s, time-sliced, through
//! the library's timer lifecycle (DESIGN.md section 6), in this order:
//!
//! 1. [`Hyp::load`] at schedule-in: the vCPU's EL1 context, the vGIC's
//!    `vcpu_load`, then `VcpuTimer::load`;
//! 2. [`Hyp::run_slice`] around every guest entry: `VcpuTimer::before_entry`,
//!    the guest, the vGIC's `sync_after_exit`, `VcpuTimer::after_exit`
//!    (`VcpuTimer::after_irq_exit` for an IRQ exit: a timer that fired is
//!    forwarded before the host acknowledges its PPI);
//! 3. [`Hyp::drain_irqs`] for an IRQ exit: `VcpuTimer::handle_timer_irq`
//!    for a timer PPI that still came, the EL2 physical timer's expiries
//!    (`HypTimer::expire`, `VcpuTimer::physical_timer_expired`), the vGIC's
//!    maintenance interrupt;
//! 4. [`Hyp::handle_sync`] for a trap: a WFI sleeps through
//!    `VcpuTimer::block` until the background soft timer it armed expires
//!    ([`Hyp::wake_blocked`], `VcpuTimer::unblock`); trapped `CNTP_*` and
//!    `CNTPCT` go to `emulate::access`;
//! 5. [`Hyp::put`] at schedule-out: `VcpuTimer::put`, the vGIC's
//!    `vcpu_put`, the EL1 context.
//!
//! The EL2 physical timer (`CNTHP_*`, PPI 26) is the aarch64 backend's
//! [`HypTimer`]: slot [`OWN_SLOT`] holds the hypervisor's own next deadline
//! (scheduler tick, park poll, WFI fallback), each vCPU has two slots for
//! the library's soft timers.
//!
//! What is this example's own business is behind one-line hooks defined
//! elsewhere: the scenarios' entry state, hypercalls and guest platform
//! (`platform_*`, [`super::scenarios`]), the exits the example does not
//! handle ([`super::exits`]) and the statistics for the result line
//! (`self.stats`, [`super::report`]). An integrator keeps this file and
//! replaces those. The calls into the vCPU's timer go through the `perf`
//! scenario's instruments ([`super::perf`]: `timer_code(args, |args| ...)` and the
//! `Counted` wrappers, which count and pass on), and the vCPU's timer is
//! [`GuestTimer`] (the library's `VcpuTimer`, or the eager baseline with
//! the `eager` feature): an integrator calls `VcpuTimer` directly.

use arch_timer_virt::emulate::{self, Access, SysRegTrap};
use arch_timer_virt::{
    Forwarded, HostIrq, PhysTimerMode, Ticks, TimerHw, TimerId, VmTimer, Wakeup,
};
use arch_timer_virt_aarch64::{El2Timer, Expired, HypTimer, VcpuSlots};
use qemu_hypervisor::clock::Clock;
use qemu_hypervisor::config::{RunConfig, Scenario};

use super::eager::GuestTimer;
use super::exits::{ExitClass, SyncExit};
use super::perf::{Counted, timer_code};
use super::report::Stats;
use super::scenarios::check_storm;
use crate::console::println;
use crate::el1::El1Regs;
use crate::el2::{GicVersion, fail};
use crate::gic::{HostIrqs, KICK_SGI, MAINTENANCE_PPI};
use crate::guest::{MAX_DELIVERY_LATENCY_US, MAX_WAKE_LATENCY_US, Measured, Report};
use crate::sysreg::write_sysreg;
use crate::vectors::{Exit, GuestRegs, enter_guest};

/// `SPSR_EL2` for a guest's first entry: EL1h, D, A, I, F masked.
pub(crate) const SPSR_EL1H_MASKED: u64 = 0x3c5;
/// The EL1 virtual timer's PPI, forwarded to the guest.
pub(crate) const VTIMER_PPI: u32 = 27;
/// The EL1 physical timer's PPI, forwarded to the guest while its physical
/// timer is direct (the `ptimer` scenarios' timer map).
pub(crate) const PTIMER_PPI: u32 = 30;
/// The EL2 physical timer's PPI (QEMU `virt`).
pub(crate) const HYP_TIMER_PPI: u32 = 26;
/// The scheduler tick while vCPUs share a CPU: 1 ms.
pub(crate) const TICK_US: u64 = 1000;
/// The tick while one vCPU has the CPU to itself (nothing to schedule):
/// 500 ms, only to check the run limit. A 1 ms tick there would be a
/// needless guest exit every millisecond (as many exits as vtimer
/// interrupts in the periodic scenario); at 500 ms the 2 s periodic run
/// takes 4.
pub(crate) const HOUSEKEEPING_TICK_US: u64 = 500_000;
/// The housekeeping tick with GICv2: 5 ms. QEMU 7.2's GICv2 does not
/// re-signal a HW-forwarded PPI whose line is still high when the guest
/// deactivates it (a periodic timer whose next CVAL passed before the
/// guest's EOI) until something else updates the distributor, such as
/// this tick. At 100 ms that stall was seen to delay an interrupt by
/// 94 ms; at 5 ms it costs up to 5 skipped periods, counted and bounded
/// (and 400 exits in the 2 s periodic run).
pub(crate) const HOUSEKEEPING_TICK_GICV2_US: u64 = 5000;
/// Ticks a vCPU runs before the other one (two-vCPU scenario) gets the CPU.
const SLICE_TICKS: u64 = 2;
/// The whole run must end within this time: 45 s of counter time. A guard
/// against a guest that never finishes, not a timing verdict: the longest
/// scenario takes about 2 s on an idle host, and more than 20 s was seen
/// for the periodic and migration scenarios on a 2-core host with both
/// cores kept busy beside other work (their guests then skip most
/// periods). It stays below the 60 s after which `run.sh` and
/// `cargo xtask` stop QEMU, so a hung run still ends with this message.
pub(crate) const RUN_LIMIT_US: u64 = 45_000_000;

/// Every period, bound and limit of the run loop in counter ticks, derived
/// once from the counter frequency (`CNTFRQ_EL0`, read at start-up).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Periods {
    /// [`TICK_US`].
    pub(crate) tick: u64,
    /// [`HOUSEKEEPING_TICK_US`].
    pub(crate) housekeeping: u64,
    /// [`HOUSEKEEPING_TICK_GICV2_US`].
    pub(crate) housekeeping_gicv2: u64,
    /// [`RUN_LIMIT_US`].
    pub(crate) run_limit: u64,
    /// [`NEVER_WAKE_US`].
    pub(crate) never_wake: u64,
    /// [`MAX_DELIVERY_LATENCY_US`].
    pub(crate) max_delivery: u64,
    /// [`MAX_WAKE_LATENCY_US`].
    pub(crate) max_wake: u64,
}

impl Periods {
    pub(crate) fn new(clock: Clock) -> Self {
        Self {
            tick: clock.ticks_us(TICK_US),
            housekeeping: clock.ticks_us(HOUSEKEEPING_TICK_US),
            housekeeping_gicv2: clock.ticks_us(HOUSEKEEPING_TICK_GICV2_US),
            run_limit: clock.ticks_us(RUN_LIMIT_US),
            never_wake: clock.ticks_us(NEVER_WAKE_US),
            max_delivery: clock.ticks_us(MAX_DELIVERY_LATENCY_US),
            max_wake: clock.ticks_us(MAX_WAKE_LATENCY_US),
        }
    }
}

/// The one VM's timer settings, shared by every vCPU on every CPU.
pub(crate) static VM: VmTimer = VmTimer::new();
/// The same for the `ptimer` and `perf-ptimer` scenarios: the physical
/// timer direct where the CPU allows it (offset 0, or FEAT_ECV), emulated
/// otherwise.
static VM_PTIMER: VmTimer = VmTimer::new().with_phys_timer_mode(PhysTimerMode::Auto);
/// The `ptimer-offset` scenario's VM: as [`VM_PTIMER`], with a VM-wide
/// counter offset, so its physical timer is direct only with FEAT_ECV.
/// The offset is the physical count when the VM starts (as KVM does: the
/// guest's counters start at zero), set once by [`start_ptimer_offset_vm`];
/// read only through [`vm_for`].
///
/// Why not a constant: the guest's counters must run behind the physical
/// count, by no more than it has counted. QEMU's timer model (7.2 and 10)
/// schedules an expiry at `CVAL + offset` and takes an unsigned overflow of
/// that sum for "never", so a direct timer with an offset that puts the
/// guest ahead of the physical count (minus a constant, modulo 2^64), or
/// wraps its count below zero, never fires, although the architecture's
/// comparison (`count - offset >= CVAL`, modulo 2^64) would.
static mut VM_PTIMER_OFFSET: VmTimer = VmTimer::new().with_phys_timer_mode(PhysTimerMode::Auto);

/// Gives the `ptimer-offset` VM its counter offset: `now`, the physical
/// count as the VM starts.
///
/// # Safety
///
/// Call at most once, on the boot CPU, before [`vm_for`] is first called
/// (no vCPU loaded yet, no other CPU started): nothing else reads the VM's
/// settings meanwhile.
pub(crate) unsafe fn start_ptimer_offset_vm(now: Ticks) {
    let vm: *mut VmTimer = &raw mut VM_PTIMER_OFFSET;
    // SAFETY: the caller promises that nothing else accesses the static
    // now; the write goes through a raw pointer, no reference is kept.
    unsafe { (*vm).set_counter_offset(now) };
}

/// The VM settings `scenario` runs with.
pub(crate) fn vm_for(scenario: Scenario) -> &'static VmTimer {
    match scenario {
        Scenario::PhysicalTimer | Scenario::PerfPtimer => &VM_PTIMER,
        Scenario::PhysicalTimerOffset => {
            let vm: *const VmTimer = &raw const VM_PTIMER_OFFSET;
            // SAFETY: written only by `start_ptimer_offset_vm`, before the
            // first call here; read-only from then on.
            unsafe { &*vm }
        }
        _ => &VM,
    }
}

/// The [`HypTimer`] slot of the hypervisor's own next deadline: the
/// scheduler tick, or earlier a park poll or a WFI fallback.
pub(crate) const OWN_SLOT: usize = 0;
/// The most vCPUs with soft timers on one CPU (the Linux guests' limit).
const MAX_SOFT_VCPUS: usize = qemu_hypervisor::platform::vgic3::MAX_VCPUS;
/// [`OWN_SLOT`] and two slots per vCPU ([`VcpuSlots::nth`]).
const HYP_SLOTS: usize = 1 + 2 * MAX_SOFT_VCPUS;

/// Where a vCPU is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunState {
    Runnable,
    /// Sleeping in WFI. `fallback: None`: until the vCPU's background soft
    /// timer (its [`HypTimer`] slot, armed by `VcpuTimer::block`)
    /// expires. `fallback: Some(at)`: no timer can fire
    /// (`Wakeup::Never`), so nothing is armed; the WFI ends at this
    /// physical count ([`NEVER_WAKE_US`] after it began), as a WFI may.
    Blocked {
        fallback: Option<u64>,
    },
    /// Powered off (a Linux secondary vCPU before its PSCI CPU_ON, or
    /// after CPU_OFF): not run until a CPU_ON.
    Off,
    Done(Report),
}

/// A WFI with no timer that can fire (`Wakeup::Never`) ends after this
/// time (100 ms). Long on purpose: a background timer that
/// `VcpuTimer::block` failed to arm then shows as a wake-up far later than
/// the guests' latency bound instead of being hidden by a prompt fallback.
pub(crate) const NEVER_WAKE_US: u64 = 100_000;

/// One vCPU.
pub(crate) struct Vcpu<V> {
    pub(crate) index: usize,
    pub(crate) regs: GuestRegs,
    pub(crate) el1: El1Regs,
    /// The library's `VcpuTimer` (the eager baseline with the `eager`
    /// feature, see [`super::eager`]).
    pub(crate) timer: GuestTimer,
    pub(crate) vgic: V,
    /// Its two slots in the [`HypTimer`] of the CPU it runs on.
    pub(crate) slots: VcpuSlots,
    /// The background deadline it takes along when it moves to another
    /// CPU's [`HypTimer`] (migration scenario); `Ticks::ZERO` for one that
    /// had already expired.
    pub(crate) carried_background: Option<Ticks>,
    pub(crate) state: RunState,
    pub(crate) loaded: bool,
    /// What the guest measured (the measure hypercall), if it said.
    pub(crate) measured: Option<Measured>,
}

impl<V> Vcpu<V> {
    /// The fallback end of a WFI that no timer can end, if it is in one.
    pub(crate) fn fallback(&self) -> Option<u64> {
        match self.state {
            RunState::Blocked { fallback } => fallback,
            _ => None,
        }
    }
}

/// The hypervisor on one CPU.
pub(crate) struct Hyp<G: HostIrqs> {
    pub(crate) config: RunConfig,
    pub(crate) gic_version: GicVersion,
    pub(crate) timer: El2Timer,
    pub(crate) gic: G,
    pub(crate) stats: Stats,
    /// The counter frequency, read once at start-up (see [`crate::el2::clock`]).
    pub(crate) clock: Clock,
    /// The run loop's periods and bounds in ticks of [`Hyp::clock`].
    pub(crate) periods: Periods,
    pub(crate) next_tick: u64,
    /// [`Periods::tick`] while vCPUs share this CPU, else
    /// [`Periods::housekeeping`] ([`Periods::housekeeping_gicv2`] with GICv2).
    pub(crate) tick_period: u64,
    pub(crate) start: u64,
    /// Guest exits on each CPU (migration; otherwise all on CPU 0).
    pub(crate) exits_by_cpu: [u64; 2],
    /// The EL2 physical timer's deadlines on this CPU (it writes no
    /// register for a guest entry with unchanged deadlines).
    pub(crate) hyp: HypTimer<HYP_SLOTS>,
    /// Slots that expired (collected in the interrupt path) and that the
    /// scheduler has not acted on yet: background timers of sleeping vCPUs.
    pub(crate) expired: Expired,
    /// The perf scenario's counts ([`super::perf`]).
    pub(crate) perf: super::perf::Bench,
    /// wfi-sleep scenario: [`Stats::delivered`] at the last WFI exit
    /// (`None` before the first), see [`Hyp::platform_blocks_saved`].
    pub(crate) delivered_at_wfi: Option<u64>,
}

/// What [`Hyp::drain_irqs`] took.
#[must_use]
pub(crate) struct Drained {
    /// A scheduler tick passed.
    pub(crate) tick: bool,
    /// The vtimer PPI if it was acknowledged, else the first INTID
    /// acknowledged (`None`: nothing was pending).
    pub(crate) first: Option<u32>,
    /// The maintenance interrupt was acknowledged.
    pub(crate) maintenance: bool,
}

impl Drained {
    /// The drain of an IRQ exit at which the library forwarded the timers
    /// `forwarded` before it ([`VcpuTimer::after_irq_exit`]): their PPIs
    /// were not acknowledged, but they name the exit as an acknowledged
    /// one would have.
    ///
    /// [`VcpuTimer::after_irq_exit`]: arch_timer_virt::VcpuTimer::after_irq_exit
    fn after_forwarding(mut self, forwarded: Forwarded) -> Self {
        if forwarded.contains(TimerId::Virtual) {
            self.first = Some(VTIMER_PPI);
        } else if forwarded.contains(TimerId::Physical) && self.first != Some(VTIMER_PPI) {
            self.first = Some(PTIMER_PPI);
        }
        self
    }
}

/// Why a slice of guest execution ended.
pub(crate) enum SliceEnd {
    Tick,
    Blocked,
    Done,
}

impl<G: HostIrqs> Hyp<G>
where
    G::Vgic: Default,
{
    pub(crate) fn new(config: RunConfig, gic_version: GicVersion, timer: El2Timer, gic: G) -> Self {
        let now = timer.physical_count().get();
        let clock = crate::el2::clock();
        let periods = Periods::new(clock);
        Self {
            config,
            gic_version,
            timer,
            gic,
            stats: Stats::default(),
            clock,
            periods,
            next_tick: now + periods.tick,
            tick_period: periods.tick,
            start: now,
            exits_by_cpu: [0; 2],
            hyp: HypTimer::new(),
            expired: Expired::default(),
            perf: super::perf::Bench::default(),
            delivered_at_wfi: None,
        }
    }

    /// A vCPU numbered `index` that enters at `regs` with `SP_EL1` at
    /// `sp_el1` (the rest of its EL1 context reset), its timer and vGIC
    /// state new, and its two soft-timer slots in this CPU's [`HypTimer`].
    pub(crate) fn vcpu(
        &self,
        index: usize,
        regs: GuestRegs,
        sp_el1: u64,
        state: RunState,
    ) -> Vcpu<G::Vgic> {
        Vcpu {
            index,
            regs,
            el1: El1Regs::reset(sp_el1),
            timer: GuestTimer::new(),
            vgic: G::Vgic::default(),
            slots: match VcpuSlots::nth(OWN_SLOT + 1, index) {
                Some(slots) if index < MAX_SOFT_VCPUS => slots,
                _ => fail!("hv: vCPU {index}: no HypTimer slots (at most {MAX_SOFT_VCPUS} vCPUs)"),
            },
            carried_background: None,
            state,
            loaded: false,
            measured: None,
        }
    }

    pub(crate) fn now(&self) -> u64 {
        self.timer.physical_count().get()
    }

    /// Sets the hypervisor's own deadline to `at` and programs the EL2
    /// physical timer for the earliest deadline of the CPU (no register
    /// write if it is unchanged).
    pub(crate) fn arm_hyp_timer(&mut self, at: u64) {
        if let Err(e) = self.hyp.arm(OWN_SLOT, Ticks::new(at)) {
            fail!("hv: HypTimer: {e}");
        }
        self.hyp.program(self.timer.registers_mut());
    }

    /// Cancels the hypervisor's own deadline (the vCPUs' soft timers stay).
    pub(crate) fn stop_hyp_timer(&mut self) {
        if let Err(e) = self.hyp.cancel(OWN_SLOT) {
            fail!("hv: HypTimer: {e}");
        }
        self.hyp.program(self.timer.registers_mut());
    }

    /// When a blocked vCPU wakes: its background soft timer (what the
    /// library armed through `SoftTimers::arm`; now if it has expired), or
    /// the fallback of a WFI that nothing can end. `None`: not blocked, or
    /// blocked with nothing armed (never wakes: the run limit ends the run).
    pub(crate) fn wake_time(&self, v: &Vcpu<G::Vgic>) -> Option<u64> {
        match v.state {
            RunState::Blocked { fallback: Some(at) } => Some(at),
            RunState::Blocked { fallback: None } if self.expired.contains(v.slots.background) => {
                Some(0)
            }
            RunState::Blocked { fallback: None } => {
                self.hyp.deadline(v.slots.background).map(Ticks::get)
            }
            _ => None,
        }
    }

    /// Cancels `v`'s soft timers in this CPU's [`HypTimer`] and forgets
    /// their expiries: the run is over for it.
    pub(crate) fn drop_soft_timers(&mut self, v: &Vcpu<G::Vgic>) {
        for slot in [v.slots.background, v.slots.physical] {
            self.expired = self.expired.without(slot);
            if let Err(e) = self.hyp.cancel(slot) {
                fail!("hv: HypTimer: {e}");
            }
        }
    }

    /// Runs `vcpus` on this CPU, time-sliced, until every one is done.
    pub(crate) fn run_vcpus(&mut self, vcpus: &mut [Vcpu<G::Vgic>]) {
        self.arm_hyp_timer(self.next_tick);
        let mut current: Option<usize> = None;
        loop {
            // Hook: the guest platform's shared state (vCPUs powered on,
            // IPIs waiting for a sleeping vCPU, the guest's power-off).
            self.platform_turn(vcpus);
            if vcpus.iter().all(|v| matches!(v.state, RunState::Done(_))) {
                break;
            }
            let elapsed = self.now().wrapping_sub(self.start);
            if self.over_run_limit(elapsed) {
                fail!("hv: run limit of {} s exceeded", RUN_LIMIT_US / 1_000_000);
            }
            let sharing = vcpus
                .iter()
                .filter(|v| matches!(v.state, RunState::Runnable | RunState::Blocked { .. }))
                .count()
                > 1;
            let housekeeping = match self.gic_version {
                GicVersion::V2 => self.periods.housekeeping_gicv2,
                GicVersion::V3 => self.periods.housekeeping,
            };
            // Hook: no tick inside the perf scenario's counted loops.
            let housekeeping = self.platform_housekeeping(housekeeping);
            self.set_tick_period(if sharing {
                self.periods.tick
            } else {
                housekeeping
            });
            self.wake_blocked(vcpus);
            let Some(next) = pick(vcpus, current) else {
                self.idle(vcpus, current);
                continue;
            };
            if current != Some(next) {
                if let Some(v) = current.and_then(|c| vcpus.get_mut(c)) {
                    self.put(v);
                }
                if let Some(v) = vcpus.get_mut(next) {
                    self.load(v);
                }
                if current.is_some() {
                    self.stats.switches += 1;
                }
                current = Some(next);
            }
            let Some(v) = vcpus.get_mut(next) else { break };
            let mut slices = 0;
            while let SliceEnd::Tick = self.run_slice(v) {
                slices += 1;
                if slices >= SLICE_TICKS {
                    break;
                }
            }
        }
        if let Some(v) = current.and_then(|c| vcpus.get_mut(c)) {
            self.put(v);
        }
        // A Linux vCPU may end blocked with its background soft timer
        // armed: nothing runs it any more, so that `stop_hyp_timer` leaves
        // the EL2 physical timer off (a CPU that parks afterwards waits
        // with no interrupt pending).
        for v in vcpus.iter() {
            self.drop_soft_timers(v);
        }
        self.stop_hyp_timer();
    }

    /// Sets the tick period; a shorter one takes effect at once.
    pub(crate) fn set_tick_period(&mut self, period: u64) {
        if period < self.tick_period {
            self.next_tick = self.next_tick.min(self.now() + period);
        }
        self.tick_period = period;
    }

    /// Wakes `v` from its WFI sleep (`VcpuTimer::unblock`).
    pub(crate) fn unblock(&mut self, v: &mut Vcpu<G::Vgic>) {
        let mut chip = self.gic.chip(&mut v.vgic);
        let Ok(soft) = self.hyp.vcpu(v.slots) else {
            fail!("hv: vCPU {}: bad HypTimer slots", v.index)
        };
        let args = (Counted(&mut self.timer), Counted(&mut chip), soft);
        if let Err(e) = timer_code(args, |(hw, chip, soft)| v.timer.unblock(hw, chip, soft)) {
            fail!("hv: unblock: {e:?}");
        }
        self.expired = self.expired.without(v.slots.background);
        v.state = RunState::Runnable;
    }

    /// Wakes the blocked vCPUs whose background soft timer (or WFI
    /// fallback, see [`Hyp::wake_time`]) has expired.
    pub(crate) fn wake_blocked(&mut self, vcpus: &mut [Vcpu<G::Vgic>]) {
        let now = self.now();
        for v in vcpus.iter_mut() {
            if self.wake_time(v).is_some_and(|at| now >= at) {
                self.stats.bg_wakeups += u64::from(v.fallback().is_none());
                self.unblock(v);
            }
        }
    }

    /// Nothing to run: sleep until the earliest wake-up or tick.
    pub(crate) fn idle(&mut self, vcpus: &mut [Vcpu<G::Vgic>], current: Option<usize>) {
        // The vCPUs' background soft timers are in the HypTimer already.
        let wake = vcpus
            .iter()
            .filter_map(Vcpu::fallback)
            .fold(self.next_tick, u64::min);
        self.arm_hyp_timer(wake);
        // SAFETY: wfi waits for an interrupt (IRQs stay masked at EL2; a
        // pending one still ends the wait).
        unsafe { core::arch::asm!("wfi", options(nostack)) };
        let mut loaded = current.and_then(|c| vcpus.get_mut(c));
        // The loaded vCPU blocked in place: a timer of its that fired (its
        // PPI what ended the wait) is forwarded before the host
        // acknowledges anything, and wakes it.
        let mut woken = false;
        if let Some(v) = loaded.as_deref_mut()
            && v.timer.is_blocked_in_place()
        {
            let mut chip = self.gic.chip(&mut v.vgic);
            let Ok(soft) = self.hyp.vcpu(v.slots) else {
                fail!("hv: vCPU {}: bad HypTimer slots", v.index)
            };
            let args = (Counted(&mut self.timer), Counted(&mut chip), soft);
            match timer_code(args, |(hw, chip, soft)| {
                v.timer.after_irq_exit(hw, chip, soft)
            }) {
                Ok(forwarded) => {
                    woken = !forwarded.is_empty();
                    self.stats.raised += u64::from(forwarded.contains(TimerId::Virtual))
                        + u64::from(forwarded.contains(TimerId::Physical));
                }
                Err(e) => fail!("hv: after_irq_exit in place: {e:?}"),
            }
        }
        // A timer PPI that pended after that look is taken here and
        // raised by `handle_timer_irq`: it wakes the vCPU too.
        let raised = self.stats.raised;
        let drained = self.drain_irqs(loaded.as_deref_mut());
        self.stats.maintenance += u64::from(drained.maintenance);
        if let Some(v) = loaded
            && v.timer.is_blocked_in_place()
            && (woken || self.stats.raised != raised)
        {
            self.stats.ppi_wakeups += 1;
            self.unblock(v);
        }
    }

    pub(crate) fn load(&mut self, v: &mut Vcpu<G::Vgic>) {
        v.el1.restore(self.config.host_mode);
        // SAFETY: VMPIDR_EL2 is what the guest reads as MPIDR_EL1.
        unsafe { write_sysreg!(vmpidr_el2, (1 << 31) | v.index as u64) };
        if let Err(e) = self.gic.vcpu_load(&mut v.vgic) {
            fail!("hv: vgic load: {e:?}");
        }
        let mut chip = self.gic.chip(&mut v.vgic);
        let vm = vm_for(self.config.scenario);
        let args = (Counted(&mut self.timer), Counted(&mut chip));
        if let Err(e) = timer_code(args, |(hw, chip)| v.timer.load(vm, hw, chip)) {
            fail!("hv: timer load: {e:?}");
        }
        v.loaded = true;
    }

    pub(crate) fn put(&mut self, v: &mut Vcpu<G::Vgic>) {
        let Ok(soft) = self.hyp.vcpu(v.slots) else {
            fail!("hv: vCPU {}: bad HypTimer slots", v.index)
        };
        let args = (Counted(&mut self.timer), soft);
        if let Err(e) = timer_code(args, |(hw, soft)| v.timer.put(hw, soft)) {
            fail!("hv: timer put: {e:?}");
        }
        if let Err(e) = self.gic.vcpu_put(&mut v.vgic) {
            fail!("hv: vgic put: {e:?}");
        }
        v.el1.save(self.config.host_mode);
        v.loaded = false;
    }

    /// Runs the loaded vCPU `v` until the next tick, a WFI that sleeps, or
    /// its end.
    pub(crate) fn run_slice(&mut self, v: &mut Vcpu<G::Vgic>) -> SliceEnd {
        loop {
            // Hook: interrupts the guest platform has for the vCPU (IPIs).
            self.platform_before_entry(v);
            {
                let mut chip = self.gic.chip(&mut v.vgic);
                let Ok(soft) = self.hyp.vcpu(v.slots) else {
                    fail!("hv: vCPU {}: bad HypTimer slots", v.index)
                };
                let args = (Counted(&mut self.timer), Counted(&mut chip), soft);
                if let Err(e) = timer_code(args, |(hw, chip, soft)| {
                    v.timer.before_entry(hw, chip, soft)
                }) {
                    fail!("hv: before_entry: {e:?}");
                }
            }
            // Statistics: a vtimer interrupt pending in a list register now
            // and not at the exit was taken by the guest.
            let offered = self.vtimer_offered(v);
            // The tick; the vCPU's physical soft timer is in the HypTimer.
            self.arm_hyp_timer(self.next_tick);
            // SAFETY: HCR_EL2, stage 2 and the vCPU's EL1 registers are set
            // up; `regs` enters the guest at EL1 where it left off.
            let exit = unsafe { enter_guest(&mut v.regs) };
            self.stats.exits += 1;
            // Before the sync, which clears the EOI maintenance condition;
            // only an IRQ exit can have been caused by it.
            let maintenance = matches!(exit, Exit::Irq) && self.gic.maintenance_asserted();
            if let Err(e) = self.gic.sync_after_exit(&mut v.vgic) {
                fail!("hv: vgic sync_after_exit: {e:?}");
            }
            // After the sync, which reads back what the guest did with the
            // list registers, before any library call can withdraw it.
            self.count_delivery(v, offered);
            // On an IRQ exit, before the host acknowledges anything, a
            // timer that fired is forwarded and its PPI is not taken.
            let forwarded = {
                let mut chip = self.gic.chip(&mut v.vgic);
                let Ok(soft) = self.hyp.vcpu(v.slots) else {
                    fail!("hv: vCPU {}: bad HypTimer slots", v.index)
                };
                let args = (Counted(&mut self.timer), Counted(&mut chip), soft);
                let result = if matches!(exit, Exit::Irq) {
                    timer_code(args, |(hw, chip, soft)| {
                        v.timer.after_irq_exit(hw, chip, soft)
                    })
                } else {
                    timer_code(args, |(hw, chip, soft)| v.timer.after_exit(hw, chip, soft))
                        .map(|()| Forwarded::default())
                };
                match result {
                    Ok(forwarded) => forwarded,
                    Err(e) => fail!("hv: after_exit: {e:?}"),
                }
            };
            match exit {
                Exit::Irq => {
                    let drained = self.drain_irqs(Some(v)).after_forwarding(forwarded);
                    self.stats.raised += u64::from(forwarded.contains(TimerId::Virtual))
                        + u64::from(forwarded.contains(TimerId::Physical));
                    self.stats.count_irq_exit(&drained, maintenance);
                    if drained.tick {
                        return SliceEnd::Tick;
                    }
                }
                Exit::Sync => {
                    if let Some(end) = self.handle_sync(v) {
                        return end;
                    }
                }
                Exit::Fiq | Exit::SError => {
                    fail!("hv: vCPU {} exit {exit:?} at {:#x}", v.index, v.regs.pc)
                }
            }
        }
    }

    /// Takes every pending host interrupt. Returns what caused the exit
    /// (see [`Drained::first`]) and whether a scheduler tick passed.
    pub(crate) fn drain_irqs(&mut self, mut loaded: Option<&mut Vcpu<G::Vgic>>) -> Drained {
        let mut tick = false;
        let mut first = None;
        let mut maintenance = false;
        let mut vtimer_taken = 0_u32;
        let mut ptimer_taken = 0_u32;
        while let Some(id) = self.gic.acknowledge() {
            let intid = id.get();
            if intid == VTIMER_PPI {
                vtimer_taken += 1;
                check_storm(intid, vtimer_taken);
            }
            if intid == PTIMER_PPI {
                ptimer_taken += 1;
                check_storm(intid, ptimer_taken);
            }
            // A timer PPI names the exit wherever it comes in the drain
            // (equal priorities are taken lowest INTID first), the vtimer's
            // before the ptimer's.
            if first.is_none()
                || intid == VTIMER_PPI
                || (intid == PTIMER_PPI && first != Some(VTIMER_PPI))
            {
                first = Some(intid);
            }
            self.gic.priority_drop(id);
            match intid {
                VTIMER_PPI | PTIMER_PPI => {
                    let Some(v) = loaded.as_deref_mut() else {
                        self.stats.spurious += 1;
                        self.gic.deactivate(id);
                        continue;
                    };
                    // The physical timer's PPI comes only while it is
                    // direct (its hardware timer is disabled otherwise;
                    // the library then finds it spurious).
                    let timer = v
                        .timer
                        .timer_for_host_ppi(id)
                        .unwrap_or(if intid == PTIMER_PPI {
                            TimerId::Physical
                        } else {
                            TimerId::Virtual
                        });
                    let result = {
                        let mut chip = self.gic.chip(&mut v.vgic);
                        let args = (Counted(&mut self.timer), Counted(&mut chip));
                        timer_code(args, |(hw, chip)| v.timer.handle_timer_irq(timer, hw, chip))
                    };
                    match result {
                        Ok(HostIrq::Raised) => self.stats.raised += 1,
                        Ok(HostIrq::NotLoaded) => {
                            self.stats.spurious += 1;
                            self.gic.deactivate(id);
                        }
                        Ok(HostIrq::Spurious) => self.stats.spurious += 1,
                        Err(e) => fail!("hv: handle_host_irq: {e:?}"),
                    }
                }
                HYP_TIMER_PPI => {
                    // Empties the passed slots, programs the next deadline.
                    let expired = self.hyp.expire(self.timer.registers_mut());
                    self.expired = self.expired.union(expired);
                    self.gic.deactivate(id);
                    let now = self.now();
                    if now >= self.next_tick {
                        self.stats.ticks += 1;
                        self.next_tick = now + self.tick_period;
                        tick = true;
                    }
                    if let Some(v) = loaded.as_deref_mut()
                        && self.expired.contains(v.slots.physical)
                    {
                        self.expired = self.expired.without(v.slots.physical);
                        let mut chip = self.gic.chip(&mut v.vgic);
                        let args = (Counted(&mut self.timer), Counted(&mut chip));
                        if let Err(e) =
                            timer_code(args, |(hw, chip)| v.timer.physical_timer_expired(hw, chip))
                        {
                            fail!("hv: physical_timer_expired: {e:?}");
                        }
                    }
                }
                MAINTENANCE_PPI => {
                    maintenance = true;
                    self.gic.deactivate(id);
                    if let Some(v) = loaded.as_deref_mut()
                        && let Err(e) = self.gic.maintenance(&mut v.vgic)
                    {
                        fail!("hv: vgic maintenance: {e:?}");
                    }
                }
                // Another CPU kicked this one (the Linux guest's IPIs,
                // CPU_ON, power-off): the exit itself is the point; the
                // run loop looks at the mailboxes next. (With GICv2 the
                // backend keeps the SGI's source CPU for `deactivate`.)
                KICK_SGI => {
                    self.gic.deactivate(id);
                    self.stats.kicks += 1;
                }
                other => {
                    self.gic.deactivate(id);
                    println!("hv: unexpected host interrupt {other}");
                }
            }
        }
        if tick {
            self.arm_hyp_timer(self.next_tick);
        }
        Drained {
            tick,
            first,
            maintenance,
        }
    }

    /// Handles a synchronous exit (decoded from `ESR_EL2`, see
    /// [`SyncExit`]); `Some` ends the slice.
    fn handle_sync(&mut self, v: &mut Vcpu<G::Vgic>) -> Option<SliceEnd> {
        let exit = SyncExit::read();
        // Hook: what the guest platform emulates (the Linux guest's PSCI
        // calls, distributor and redistributors, IPIs) comes first.
        if let Some(end) = self.platform_exit(v, &exit) {
            return end;
        }
        match exit.class {
            ExitClass::Hvc => {
                self.stats.hvc_exits += 1;
                // Hook: the built-in guests' hypercalls.
                self.hypercall(v)
            }
            ExitClass::Wfx => {
                v.regs.pc += 4;
                if exit.is_wfe() {
                    return None;
                }
                self.wfi(v)
            }
            ExitClass::SysReg => {
                self.stats.sysreg_exits += 1;
                v.regs.pc += 4;
                self.sysreg(v, exit.iss)
            }
            ExitClass::Smc | ExitClass::DataAbort | ExitClass::Other => {
                self.unhandled_exit(v, &exit)
            }
        }
    }

    /// A trapped WFI: the vCPU sleeps until its timer can fire, or returns
    /// at once if it can already. It stays loaded and blocks in place
    /// (`VcpuTimer::block_in_place`: its direct timers keep running and
    /// their PPIs wake this CPU, see [`Hyp::idle`]; `put` arms the
    /// background soft timer if another vCPU takes the CPU); the perf
    /// scenario's `wfi-saved` path and every other sleep of the wfi-sleep
    /// scenario block with `VcpuTimer::block`, which saves the timers and
    /// arms the background soft timer.
    fn wfi(&mut self, v: &mut Vcpu<G::Vgic>) -> Option<SliceEnd> {
        self.stats.wfi_exits += 1;
        // Hook: a WFI with another interrupt pending for the vCPU (an IPI)
        // completes at once.
        if self.platform_irq_pending(v) {
            return None;
        }
        // Hook: the perf scenario's `wfi-saved` path and every other sleep
        // of the wfi-sleep scenario block with the timers saved.
        let in_place = !self.platform_blocks_saved();
        let Ok(soft) = self.hyp.vcpu(v.slots) else {
            fail!("hv: vCPU {}: bad HypTimer slots", v.index)
        };
        let vm = vm_for(self.config.scenario);
        let wakeup = if in_place {
            let mut chip = self.gic.chip(&mut v.vgic);
            let args = (Counted(&mut self.timer), Counted(&mut chip), soft);
            timer_code(args, |(hw, chip, soft)| {
                v.timer.block_in_place(vm, hw, chip, soft)
            })
        } else {
            let args = (Counted(&mut self.timer), soft);
            timer_code(args, |(hw, soft)| v.timer.block(vm, hw, soft))
        };
        // The library's contract: `At(x)` armed the background soft timer
        // at x (in place: at x or later, or not at all, the direct timers'
        // PPIs waking the CPU), `Now` and `Never` armed nothing. The vCPU
        // is woken by what was armed, not by the return value.
        let armed = self.hyp.deadline(v.slots.background);
        let kept = match wakeup {
            Wakeup::At(at) if in_place => armed.is_none_or(|armed| armed >= at),
            Wakeup::At(at) => armed == Some(at),
            Wakeup::Now | Wakeup::Never => armed.is_none(),
        };
        if !kept {
            fail!(
                "hv: VcpuTimer::block returned {wakeup:?} but the background soft timer is \
                 {armed:?}: the vCPU would sleep past its timer or wake for nothing"
            );
        }
        match wakeup {
            // Hook: unless the guest cannot take the timer's interrupt now
            // (then it sleeps as with nothing armed, until another event).
            Wakeup::Now if !self.platform_wfi_cannot_wake(v) => {
                self.unblock(v);
                None
            }
            Wakeup::At(_) => {
                v.state = RunState::Blocked { fallback: None };
                Some(SliceEnd::Blocked)
            }
            Wakeup::Now | Wakeup::Never => {
                v.state = RunState::Blocked {
                    fallback: Some(self.now() + self.periods.never_wake),
                };
                Some(SliceEnd::Blocked)
            }
        }
    }

    /// A trapped `MRS`/`MSR` (ISS `iss`): the EL1 physical timer and
    /// counter, emulated by the library (`emulate::access`).
    fn sysreg(&mut self, v: &mut Vcpu<G::Vgic>, iss: u32) -> Option<SliceEnd> {
        let Some(trap) = SysRegTrap::decode(iss) else {
            fail!(
                "hv: vCPU {} trapped system register, ISS {iss:#x}: {}",
                v.index,
                qemu_hypervisor::platform::mmio::SysRegAccess::decode(iss)
            );
        };
        let rt = usize::from(trap.rt);
        let access = if trap.is_read {
            Access::Read
        } else {
            Access::Write(v.regs.x.get(rt).copied().unwrap_or(0))
        };
        let vm = vm_for(self.config.scenario);
        let mut chip = self.gic.chip(&mut v.vgic);
        let args = (Counted(&mut self.timer), Counted(&mut chip));
        match timer_code(args, |(hw, chip)| {
            emulate::access(&mut v.timer, vm, hw, chip, trap.reg, access)
        }) {
            Ok(value) => {
                if trap.is_read
                    && let Some(x) = v.regs.x.get_mut(rt)
                {
                    *x = value;
                }
            }
            Err(e) => fail!("hv: vCPU {} {:?}: {e:?}", v.index, trap.reg),
        }
        None
    }
}

/// The next runnable vCPU after `current`, round robin.
fn pick<V>(vcpus: &[Vcpu<V>], current: Option<usize>) -> Option<usize> {
    let n = vcpus.len();
    let start = current.map_or(0, |c| c + 1);
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| vcpus.get(i).is_some_and(|v| v.state == RunState::Runnable))
}
