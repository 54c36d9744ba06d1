//! The run loop: vCPUs, their exits, the scheduler and the statistics.
//!
//! The vCPU's timer lifecycle is the library's (DESIGN.md section 6):
//! `load` at schedule-in; `before_entry`, the guest, the vGIC's
//! `sync_after_exit`, `after_exit` around every entry; `handle_host_irq`
//! for the vtimer PPI; `block`/`unblock` around a WFI; `emulate::access`
//! for trapped `CNTP_*`; `put` at schedule-out. The EL2 physical timer
//! (`CNTHP_*`, PPI 26) is the aarch64 backend's [`HypTimer`]: slot
//! [`OWN_SLOT`] holds the hypervisor's own next deadline (scheduler tick,
//! park poll, WFI fallback), each vCPU has two slots for the library's soft
//! timers. The result line is the hypervisor's own business.

use core::fmt;

use arch_timer_virt::emulate::{self, Access, SysRegTrap};
use arch_timer_virt::{
    HostIrq, PhysTimerMode, Ticks, TimerHw, TimerId, VcpuTimer, VmTimer, Wakeup,
};
use arch_timer_virt_aarch64::{El2Timer, Expired, HypTimer, VcpuSlots};
use qemu_hypervisor::clock::Clock;
use qemu_hypervisor::config::{EXTERNAL_GUEST_ADDR, EXTERNAL_GUEST_SIZE, RunConfig, Scenario};
use qemu_hypervisor::fault::GuestFault;

use crate::console::{println, write_bytes};
use crate::el1::El1Regs;
use crate::el2::{GicVersion, fail};
use crate::gic::{HostIrqs, KICK_SGI, MAINTENANCE_PPI};
use crate::guest::{
    self, Hypercall, MAX_DELIVERY_LATENCY_US, MAX_WAKE_LATENCY_US, Measured, Report, WFI_SLEEPS,
};
use crate::migrate::CPU1_STATS;
use crate::sysreg::{read_sysreg, write_sysreg};
use crate::vectors::{Exit, GuestRegs, enter_guest};

/// `SPSR_EL2` for a guest's first entry: EL1h, D, A, I, F masked.
pub(crate) const SPSR_EL1H_MASKED: u64 = 0x3c5;
/// The EL1 virtual timer's PPI, forwarded to the guest.
pub(crate) const VTIMER_PPI: u32 = 27;
/// The EL1 physical timer's PPI, forwarded to the guest while its physical
/// timer is direct (the `ptimer` scenario's timer map).
pub(crate) const PTIMER_PPI: u32 = 30;
/// More vtimer PPIs than this in one exit's drain is a storm (see
/// [`Hyp::drain_irqs`]).
const STORM_LIMIT: u32 = 8;
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
/// The same for the `ptimer` scenario: the physical timer direct where the
/// CPU allows it (offset 0, or FEAT_ECV), emulated otherwise.
static VM_PTIMER: VmTimer = VmTimer::new().with_phys_timer_mode(PhysTimerMode::Auto);
/// How far the `ptimer-offset` guest's counters run ahead of the physical
/// count, in ticks (a VM-wide offset of minus this, modulo 2^64): a count,
/// not a frequency, far enough that a missing offset cannot go unseen.
const PTIMER_GUEST_AHEAD: u64 = 1 << 48;
/// The `ptimer-offset` scenario's VM: as [`VM_PTIMER`], with a VM-wide
/// counter offset, so its physical timer is direct only with FEAT_ECV.
static VM_PTIMER_OFFSET: VmTimer = VmTimer::new()
    .with_phys_timer_mode(PhysTimerMode::Auto)
    .with_counter_offset(Ticks::new(PTIMER_GUEST_AHEAD.wrapping_neg()));

/// The VM settings `scenario` runs with.
fn vm_for(scenario: Scenario) -> &'static VmTimer {
    match scenario {
        Scenario::PhysicalTimer => &VM_PTIMER,
        Scenario::PhysicalTimerOffset => &VM_PTIMER_OFFSET,
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
    pub(crate) timer: VcpuTimer,
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

/// What happened in a run, for the result line.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    pub(crate) exits: u64,
    pub(crate) irq_exits: u64,
    pub(crate) wfi_exits: u64,
    pub(crate) hvc_exits: u64,
    pub(crate) sysreg_exits: u64,
    /// `handle_host_irq` raised the virtual line.
    pub(crate) raised: u64,
    /// Host vtimer IRQs with nothing to inject.
    pub(crate) spurious: u64,
    /// vCPU switches (put + load).
    pub(crate) switches: u64,
    pub(crate) ticks: u64,
    /// Host kick SGIs taken (the Linux guest on several CPUs).
    pub(crate) kicks: u64,
    /// IRQ exits by cause (see [`ExitCauses`]).
    pub(crate) exit_cause: ExitCauses,
}

/// IRQ exits counted by what caused them: the vtimer PPI if the host
/// acknowledged it after the exit; else the maintenance interrupt if it
/// was asserted at the exit (`ICH_MISR_EL2` / `GICH_MISR` read before the
/// vGIC's `sync_after_exit`, which handles the EOI that raised it, so the
/// interrupt has usually dropped again by the time the host acknowledges);
/// else the first INTID acknowledged (none: the first acknowledge returned
/// a special INTID, 1020..=1023).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ExitCauses {
    /// PPI 27, the guest's virtual timer.
    pub(crate) vtimer: u64,
    /// PPI 30, the guest's physical timer while it is direct.
    pub(crate) ptimer: u64,
    /// PPI 26, the EL2 physical timer (ticks, soft timers).
    pub(crate) hyp_timer: u64,
    /// PPI 25, the GIC maintenance interrupt (asserted at the exit, or
    /// acknowledged).
    pub(crate) maintenance: u64,
    /// Nothing to acknowledge (1020..=1023).
    pub(crate) spurious: u64,
    /// Any other INTID.
    pub(crate) other: u64,
}

impl ExitCauses {
    const ZERO: Self = Self {
        vtimer: 0,
        ptimer: 0,
        hyp_timer: 0,
        maintenance: 0,
        spurious: 0,
        other: 0,
    };

    fn count(&mut self, first: Option<u32>, maintenance: bool) {
        let slot = match first {
            Some(VTIMER_PPI) => &mut self.vtimer,
            Some(PTIMER_PPI) => &mut self.ptimer,
            _ if maintenance => &mut self.maintenance,
            Some(HYP_TIMER_PPI) => &mut self.hyp_timer,
            Some(MAINTENANCE_PPI) => &mut self.maintenance,
            Some(_) => &mut self.other,
            None => &mut self.spurious,
        };
        *slot += 1;
    }

    fn add(&mut self, other: &Self) {
        self.vtimer += other.vtimer;
        self.ptimer += other.ptimer;
        self.hyp_timer += other.hyp_timer;
        self.maintenance += other.maintenance;
        self.spurious += other.spurious;
        self.other += other.other;
    }
}

impl Stats {
    pub(crate) const ZERO: Self = Self {
        exits: 0,
        irq_exits: 0,
        wfi_exits: 0,
        hvc_exits: 0,
        sysreg_exits: 0,
        raised: 0,
        spurious: 0,
        switches: 0,
        ticks: 0,
        kicks: 0,
        exit_cause: ExitCauses::ZERO,
    };

    /// Adds `other`'s counts to these.
    pub(crate) fn add(&mut self, other: &Self) {
        self.exits += other.exits;
        self.irq_exits += other.irq_exits;
        self.wfi_exits += other.wfi_exits;
        self.hvc_exits += other.hvc_exits;
        self.sysreg_exits += other.sysreg_exits;
        self.raised += other.raised;
        self.spurious += other.spurious;
        self.switches += other.switches;
        self.ticks += other.ticks;
        self.kicks += other.kicks;
        self.exit_cause.add(&other.exit_cause);
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
}

/// What [`Hyp::drain_irqs`] took.
#[must_use]
pub(crate) struct Drained {
    /// A scheduler tick passed.
    pub(crate) tick: bool,
    /// The vtimer PPI if it was acknowledged, else the first INTID
    /// acknowledged (`None`: nothing was pending).
    pub(crate) first: Option<u32>,
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

    /// Takes `v`'s background deadline out of this CPU's [`HypTimer`], to
    /// carry it to another CPU (migration).
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

    /// Puts the background deadline `v` carried into this CPU's
    /// [`HypTimer`] (migration).
    pub(crate) fn adopt_soft_timers(&mut self, v: &mut Vcpu<G::Vgic>) {
        if let Some(at) = v.carried_background.take()
            && let Err(e) = self.hyp.arm(v.slots.background, at)
        {
            fail!("hv: HypTimer: {e}");
        }
    }

    pub(crate) fn new_vcpu(&self, index: usize) -> Vcpu<G::Vgic> {
        let mut regs = GuestRegs::new();
        regs.pstate = SPSR_EL1H_MASKED;
        regs.x[0] = index as u64;
        let sp_el1 = if self.config.scenario == Scenario::External {
            // The external guest ABI: its image's first instruction, x0 the
            // vCPU index, every other register 0 (it sets up its own stack).
            regs.pc = EXTERNAL_GUEST_ADDR;
            0
        } else if crate::linux::is_linux(self.config) {
            crate::linux::boot_regs(&mut regs)
        } else {
            regs.pc = guest::entry_point();
            regs.x[1] = u64::from(self.config.scenario as u8);
            regs.x[2] = match self.gic_version {
                GicVersion::V2 => 2,
                GicVersion::V3 => 3,
            };
            guest::stack_top(index)
        };
        Vcpu {
            index,
            regs,
            el1: El1Regs::reset(sp_el1),
            timer: VcpuTimer::new(),
            vgic: G::Vgic::default(),
            slots: match VcpuSlots::nth(OWN_SLOT + 1, index) {
                Some(slots) if index < MAX_SOFT_VCPUS => slots,
                _ => fail!("hv: vCPU {index}: no HypTimer slots (at most {MAX_SOFT_VCPUS} vCPUs)"),
            },
            carried_background: None,
            state: if crate::linux::is_linux(self.config) && !crate::linux::starts_on(index) {
                RunState::Off
            } else {
                RunState::Runnable
            },
            loaded: false,
            measured: None,
        }
    }

    pub(crate) fn run(mut self) -> ! {
        let count = match self.config.scenario {
            Scenario::TwoVcpus => 2,
            _ => 1,
        };
        if self.config.scenario == Scenario::Migration {
            let slot = self.migrate(self.new_vcpu(0));
            let mut other = Stats::ZERO;
            critical_section::with(|cs| other = *CPU1_STATS.borrow_ref(cs));
            println!(
                "hv: CPU 0 raised {} vtimer interrupts, CPU 1 raised {}; {} hand-overs",
                self.stats.raised,
                other.raised,
                self.stats.switches + other.switches
            );
            self.exits_by_cpu = [self.stats.exits, other.exits];
            self.stats.add(&other);
            // The vCPU is back on this CPU (`migrate` returned).
            slot.with_owned(|v| self.report(core::slice::from_ref(v)));
            fail!("hv: the vCPU did not come back to CPU 0");
        }
        let linux = crate::linux::is_linux(self.config);
        let count = if linux {
            let smp = crate::linux::smp();
            if smp.host_cpus > 1 {
                self.start_linux_cpus(smp.host_cpus);
                1
            } else {
                smp.vcpus
            }
        } else {
            count
        };
        let mut vcpus = [self.new_vcpu(0), self.new_vcpu(1)];
        let vcpus = vcpus.get_mut(..count).unwrap_or_default();
        self.run_vcpus(vcpus);
        if linux {
            self.collect_linux_cpus();
        }
        self.report(vcpus)
    }

    /// Runs `vcpus` on this CPU, time-sliced, until every one is done.
    pub(crate) fn run_vcpus(&mut self, vcpus: &mut [Vcpu<G::Vgic>]) {
        let linux = crate::linux::is_linux(self.config);
        self.arm_hyp_timer(self.next_tick);
        let mut current: Option<usize> = None;
        loop {
            if linux {
                let wake = crate::linux::poll(vcpus, self.config.host_mode);
                for v in vcpus.iter_mut().filter(|v| wake & (1 << v.index) != 0) {
                    self.unblock(v);
                }
            }
            if vcpus.iter().all(|v| matches!(v.state, RunState::Done(_))) {
                break;
            }
            let elapsed = self.now().wrapping_sub(self.start);
            if elapsed > self.periods.run_limit
                && !crate::linux::within_run_limit(self.config, elapsed)
            {
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
        let Ok(mut soft) = self.hyp.vcpu(v.slots) else {
            fail!("hv: vCPU {}: bad HypTimer slots", v.index)
        };
        if let Err(e) = v.timer.unblock(&mut self.timer, &mut chip, &mut soft) {
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
        let loaded = current.and_then(|c| vcpus.get_mut(c));
        let _ = self.drain_irqs(loaded);
    }

    pub(crate) fn load(&mut self, v: &mut Vcpu<G::Vgic>) {
        v.el1.restore(self.config.host_mode);
        // SAFETY: VMPIDR_EL2 is what the guest reads as MPIDR_EL1.
        unsafe { write_sysreg!(vmpidr_el2, (1 << 31) | v.index as u64) };
        if let Err(e) = self.gic.vcpu_load(&mut v.vgic) {
            fail!("hv: vgic load: {e:?}");
        }
        let mut chip = self.gic.chip(&mut v.vgic);
        if let Err(e) = v
            .timer
            .load(vm_for(self.config.scenario), &mut self.timer, &mut chip)
        {
            fail!("hv: timer load: {e:?}");
        }
        v.loaded = true;
    }

    pub(crate) fn put(&mut self, v: &mut Vcpu<G::Vgic>) {
        let Ok(mut soft) = self.hyp.vcpu(v.slots) else {
            fail!("hv: vCPU {}: bad HypTimer slots", v.index)
        };
        if let Err(e) = v.timer.put(&mut self.timer, &mut soft) {
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
        let linux = crate::linux::is_linux(self.config);
        loop {
            if linux {
                crate::linux::deliver_sgis(v, &mut self.gic);
            }
            {
                let mut chip = self.gic.chip(&mut v.vgic);
                let Ok(mut soft) = self.hyp.vcpu(v.slots) else {
                    fail!("hv: vCPU {}: bad HypTimer slots", v.index)
                };
                if let Err(e) = v.timer.before_entry(&mut self.timer, &mut chip, &mut soft) {
                    fail!("hv: before_entry: {e:?}");
                }
            }
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
            {
                let mut chip = self.gic.chip(&mut v.vgic);
                let Ok(mut soft) = self.hyp.vcpu(v.slots) else {
                    fail!("hv: vCPU {}: bad HypTimer slots", v.index)
                };
                if let Err(e) = v.timer.after_exit(&mut self.timer, &mut chip, &mut soft) {
                    fail!("hv: after_exit: {e:?}");
                }
            }
            match exit {
                Exit::Irq => {
                    self.stats.irq_exits += 1;
                    let drained = self.drain_irqs(Some(v));
                    self.stats.exit_cause.count(drained.first, maintenance);
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
        let mut vtimer_taken = 0_u32;
        let mut ptimer_taken = 0_u32;
        while let Some(id) = self.gic.acknowledge() {
            let intid = id.get();
            if intid == VTIMER_PPI {
                vtimer_taken += 1;
                if vtimer_taken > STORM_LIMIT {
                    // Forwarded with the HW bit, the physical PPI stays
                    // active until the guest deactivates the virtual one:
                    // it cannot come again while the hypervisor runs.
                    fail!(
                        "hv: interrupt storm: vtimer PPI {VTIMER_PPI} taken {vtimer_taken} times in one exit \
                         without the guest running (host EOI deactivating it? EOImode must be 1)"
                    );
                }
            }
            if intid == PTIMER_PPI {
                ptimer_taken += 1;
                if ptimer_taken > STORM_LIMIT {
                    fail!(
                        "hv: interrupt storm: ptimer PPI {PTIMER_PPI} taken {ptimer_taken} times in one exit"
                    );
                }
            }
            // A timer PPI names the exit wherever it comes in the drain
            // (equal priorities are taken lowest INTID first).
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
                        v.timer.handle_timer_irq(timer, &mut self.timer, &mut chip)
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
                        if let Err(e) = v.timer.physical_timer_expired(&mut self.timer, &mut chip) {
                            fail!("hv: physical_timer_expired: {e:?}");
                        }
                    }
                }
                MAINTENANCE_PPI => {
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
        Drained { tick, first }
    }

    /// Handles a synchronous exit; `Some` ends the slice.
    fn handle_sync(&mut self, v: &mut Vcpu<G::Vgic>) -> Option<SliceEnd> {
        let esr = read_sysreg!(esr_el2);
        let ec = (esr >> 26) & 0x3f;
        // The ISS is bits 24:0: the cast keeps them all.
        #[allow(clippy::cast_possible_truncation)]
        let iss = (esr & 0x1ff_ffff) as u32;
        match ec {
            // HVC from AArch64: PSCI for the Linux guest.
            0x16 if crate::linux::is_linux(self.config) => {
                self.stats.hvc_exits += 1;
                crate::linux::hvc(v, self.gic_version == GicVersion::V3)
            }
            // Data abort from EL1: the Linux guest's devices.
            0x24 if crate::linux::is_linux(self.config) => {
                crate::linux::data_abort(v, &mut self.gic, esr)
            }
            // The Linux guest's IPIs by ICC_SGI1R_EL1.
            0x18 if crate::linux::is_linux(self.config)
                && let Some(end) =
                    crate::linux::sysreg(v, iss, self.gic_version == GicVersion::V3) =>
            {
                self.stats.sysreg_exits += 1;
                end
            }
            // HVC from AArch64.
            0x16 => {
                self.stats.hvc_exits += 1;
                self.hypercall(v)
            }
            // WFI/WFE.
            0x01 => {
                v.regs.pc += 4;
                if iss & 1 != 0 {
                    return None;
                }
                self.stats.wfi_exits += 1;
                // A WFI with an interrupt pending for the vCPU (an IPI in
                // its list registers or mailbox) completes at once.
                if crate::linux::is_linux(self.config)
                    && (crate::linux::sgis_waiting(v.index)
                        || self.gic.private_lr_state(&mut v.vgic).0 != 0)
                {
                    return None;
                }
                let Ok(mut soft) = self.hyp.vcpu(v.slots) else {
                    fail!("hv: vCPU {}: bad HypTimer slots", v.index)
                };
                let wakeup =
                    v.timer
                        .block(vm_for(self.config.scenario), &mut self.timer, &mut soft);
                // The library's contract: `At(x)` armed the background
                // soft timer at x, `Now` and `Never` armed nothing. The
                // vCPU is woken by what was armed, not by the return value.
                let armed = self.hyp.deadline(v.slots.background);
                let kept = match wakeup {
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
                    Wakeup::Now => {
                        self.unblock(v);
                        None
                    }
                    Wakeup::At(_) => {
                        v.state = RunState::Blocked { fallback: None };
                        Some(SliceEnd::Blocked)
                    }
                    Wakeup::Never => {
                        v.state = RunState::Blocked {
                            fallback: Some(self.now() + self.periods.never_wake),
                        };
                        Some(SliceEnd::Blocked)
                    }
                }
            }
            // SMC from AArch64, trapped by HCR_EL2.TSC. The guests have no
            // firmware: a PSCI SYSTEM_OFF or SYSTEM_RESET reaching QEMU
            // would end the run with exit status 0 and no verdict, so any
            // SMC fails the run.
            0x17 => fail!(
                "hv: vCPU {} made an SMC (function {:#x}{}) at PC {:#x}: guests have no firmware \
                 (a PSCI call would end the run without a verdict); failing the run",
                v.index,
                v.regs.x[0],
                psci_name(v.regs.x[0]),
                v.regs.pc.wrapping_sub(4)
            ),
            // Trapped MSR/MRS.
            0x18 => {
                self.stats.sysreg_exits += 1;
                v.regs.pc += 4;
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
                let mut chip = self.gic.chip(&mut v.vgic);
                match emulate::access(
                    &mut v.timer,
                    vm_for(self.config.scenario),
                    &mut self.timer,
                    &mut chip,
                    trap.reg,
                    access,
                ) {
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
            _ => {
                if self.config.scenario == Scenario::External {
                    let mut el1 = v.el1;
                    el1.save(self.config.host_mode);
                    let fault = GuestFault {
                        esr,
                        far: read_sysreg!(far_el2),
                        hpfar: read_sysreg!(hpfar_el2),
                        guest: [el1.esr, el1.elr, el1.far],
                    };
                    println!("hv: external guest faulted: {fault}");
                }
                fail!(
                    "hv: vCPU {} exception class {ec:#x}, ESR {esr:#x}, PC {:#x}, FAR {:#x}, HPFAR {:#x}",
                    v.index,
                    v.regs.pc,
                    read_sysreg!(far_el2),
                    read_sysreg!(hpfar_el2)
                )
            }
        }
    }

    fn hypercall(&mut self, v: &mut Vcpu<G::Vgic>) -> Option<SliceEnd> {
        let [x0, x1, x2, x3, x4, x5, x6, ..] = v.regs.x;
        match Hypercall::from_number(x0) {
            Some(Hypercall::Print) => {
                let memory = if self.config.scenario == Scenario::External {
                    EXTERNAL_GUEST_ADDR..EXTERNAL_GUEST_ADDR + EXTERNAL_GUEST_SIZE
                } else {
                    guest::memory()
                };
                match guest_bytes(x1, x2, memory) {
                    Some(bytes) => {
                        crate::console::print!("[vcpu{}] ", v.index);
                        write_guest_line(bytes);
                    }
                    None => println!("hv: vCPU {} printed from a bad buffer", v.index),
                }
                None
            }
            Some(Hypercall::Yield) => None,
            Some(Hypercall::Measure) => {
                v.measured = Some(Measured {
                    max_latency: x1,
                    skipped: x2,
                    sleeps: x3,
                    max_wake: x4,
                    overruns: x5,
                    max_run_latency: x6,
                });
                None
            }
            Some(Hypercall::Exit) => {
                v.state = RunState::Done(Report {
                    status: x1,
                    interrupts: x2,
                    early: x3,
                    duplicates: x4,
                    lost: x5,
                    spurious: x6,
                });
                Some(SliceEnd::Done)
            }
            None => fail!("hv: vCPU {} unknown hypercall {x0}", v.index),
        }
    }

    /// Prints the result line and ends the run.
    pub(crate) fn report(&self, vcpus: &[Vcpu<G::Vgic>]) -> ! {
        let scenario = self.config.scenario;
        let periodic = matches!(
            scenario,
            Scenario::Periodic | Scenario::TwoVcpus | Scenario::Migration
        );
        let mut total = Report::default();
        let mut m = Measured::default();
        let mut pass = true;
        for v in vcpus {
            let RunState::Done(r) = v.state else {
                pass = false;
                continue;
            };
            total.interrupts += r.interrupts;
            total.early += r.early;
            total.duplicates += r.duplicates;
            total.lost += r.lost;
            total.spurious += r.spurious;
            let enough = !periodic || r.interrupts >= 1000;
            if r.status != 0 || r.early != 0 || r.duplicates != 0 || r.lost != 0 || !enough {
                println!("hv: vCPU {} failed: {r:?}", v.index);
                pass = false;
            }
            let measured = v.measured;
            if measured.is_none()
                && (periodic
                    || matches!(
                        scenario,
                        Scenario::WfiSleep
                            | Scenario::PhysicalTimer
                            | Scenario::PhysicalTimerOffset
                    ))
            {
                println!("hv: vCPU {} sent no measurements", v.index);
                pass = false;
            }
            let vm = measured.unwrap_or_default();
            m.max_latency = m.max_latency.max(vm.max_latency);
            m.max_run_latency = m.max_run_latency.max(vm.max_run_latency);
            m.skipped += vm.skipped;
            m.sleeps += vm.sleeps;
            m.max_wake = m.max_wake.max(vm.max_wake);
            m.overruns += vm.overruns;
        }
        let s = self.stats;
        let mut check = |ok: bool, why: fmt::Arguments<'_>| {
            if !ok {
                println!("hv: {why}");
                pass = false;
            }
        };
        if scenario == Scenario::Periodic
            && let Err(why) = quiet_forwarding(&s, total.interrupts)
        {
            check(false, format_args!("{why}"));
        }
        // One vCPU that never disables, masks or loses its loaded timer:
        // every host vtimer interrupt finds it asserted, and every virtual
        // one the guest acknowledges is there (a line lowered under the
        // guest's feet would read as spurious).
        if scenario == Scenario::Periodic {
            check(
                s.spurious == 0 && total.spurious == 0,
                format_args!(
                    "{} spurious host vtimer interrupts, {} spurious guest acknowledges",
                    s.spurious, total.spurious
                ),
            );
        }
        if periodic
            || matches!(
                scenario,
                Scenario::PhysicalTimer | Scenario::PhysicalTimerOffset
            )
        {
            check(
                m.max_run_latency <= self.periods.max_delivery,
                format_args!(
                    "a timer interrupt came {} ticks ({} us) of the guest's running time after \
                     its CVAL (bound {} ticks, {MAX_DELIVERY_LATENCY_US} us)",
                    m.max_run_latency,
                    self.clock.us(m.max_run_latency),
                    self.periods.max_delivery
                ),
            );
        }
        if matches!(scenario, Scenario::TwoVcpus | Scenario::Migration) {
            check(
                s.switches > 0,
                format_args!("no vCPU switch or hand-over happened"),
            );
        }
        if scenario == Scenario::Migration {
            check(
                self.exits_by_cpu.iter().all(|&e| e > 0),
                format_args!(
                    "the vCPU did not run on both CPUs (exits {:?})",
                    self.exits_by_cpu
                ),
            );
        }
        if scenario == Scenario::WfiSleep {
            check(
                s.wfi_exits == m.sleeps,
                format_args!(
                    "{} WFI exits for {} WFIs the guest executed",
                    s.wfi_exits, m.sleeps
                ),
            );
            check(
                m.sleeps >= WFI_SLEEPS * 9 / 10,
                format_args!("only {} of {WFI_SLEEPS} sleeps slept in WFI", m.sleeps),
            );
            check(
                m.max_wake <= self.periods.max_wake,
                format_args!(
                    "a WFI sleep woke {} ticks ({} us) after its CVAL (bound {} ticks, \
                     {MAX_WAKE_LATENCY_US} us)",
                    m.max_wake,
                    self.clock.us(m.max_wake),
                    self.periods.max_wake
                ),
            );
        }
        if scenario == Scenario::Linux {
            let smp = crate::linux::smp();
            println!(
                "hv: linux: {} vCPUs on {} CPUs; {} SGIs sent between vCPUs, {} host kicks, {} \
                 vCPU switches",
                smp.vcpus,
                smp.host_cpus,
                crate::linux::sgis_sent(),
                s.kicks,
                s.switches
            );
        }
        let exits_by_cpu = if scenario == Scenario::Migration || self.exits_by_cpu[1] != 0 {
            self.exits_by_cpu
        } else {
            [s.exits, 0]
        };
        let per = s
            .exits
            .checked_mul(100)
            .and_then(|e| e.checked_div(total.interrupts));
        let per = Hundredths(per);
        let c = s.exit_cause;
        let vtimer_per = Hundredths(
            c.vtimer
                .checked_mul(100)
                .and_then(|e| e.checked_div(total.interrupts)),
        );
        let ptimer_per = Hundredths(
            c.ptimer
                .checked_mul(100)
                .and_then(|e| e.checked_div(total.interrupts)),
        );
        println!(
            "RESULT scenario={} gic={} mode={} vcpus={} delivered={} raised={} exits={} exits_per_irq={per} \
             vtimer_exits_per_irq={vtimer_per} ptimer_exits_per_irq={ptimer_per} irq_exits={} irq_exits_27={} irq_exits_30={} irq_exits_26={} irq_exits_25={} \
             irq_exits_spurious={} irq_exits_other={} wfi_exits={} hvc_exits={} sysreg_exits={} switches={} \
             exits_cpu0={} exits_cpu1={} spurious_host={} lost={} early={} duplicates={} guest_spurious={} \
             max_latency_ticks={} max_latency_us={} max_run_latency_us={} skipped={} sleeps={} overruns={} max_wake_ticks={} max_wake_us={} \
             cntfrq_hz={} {}",
            scenario.name(),
            self.gic_version,
            self.config.host_mode,
            if scenario == Scenario::Linux {
                crate::linux::smp().vcpus
            } else {
                vcpus.len()
            },
            total.interrupts,
            s.raised,
            s.exits,
            s.irq_exits,
            c.vtimer,
            c.ptimer,
            c.hyp_timer,
            c.maintenance,
            c.spurious,
            c.other,
            s.wfi_exits,
            s.hvc_exits,
            s.sysreg_exits,
            s.switches,
            exits_by_cpu[0],
            exits_by_cpu[1],
            s.spurious,
            total.lost,
            total.early,
            total.duplicates,
            total.spurious,
            m.max_latency,
            self.clock.us(m.max_latency),
            self.clock.us(m.max_run_latency),
            m.skipped,
            m.sleeps,
            m.overruns,
            m.max_wake,
            self.clock.us(m.max_wake),
            self.clock.hz(),
            if pass { "PASS" } else { "FAIL" }
        );
        if pass {
            crate::exit::pass()
        } else {
            crate::exit::fail()
        }
    }
}

/// The periodic scenario's claim, measured: every delivered interrupt cost
/// one guest exit (the vtimer PPI) and nothing else did, apart from
/// hypercalls and the hypervisor's own timer. An exit per guest EOI (a
/// software list register with EOI maintenance instead of the HW bit), or
/// the PPI taken more often than delivered, breaks it. 1% slack.
fn quiet_forwarding(s: &Stats, delivered: u64) -> Result<(), QuietError> {
    let slack = delivered / 100;
    let vtimer = s.exit_cause.vtimer;
    let other = s
        .exits
        .saturating_sub(s.hvc_exits + s.exit_cause.hyp_timer + vtimer);
    if vtimer > delivered + slack {
        return Err(QuietError::TooManyVtimerExits { vtimer, delivered });
    }
    if other > slack {
        return Err(QuietError::OtherExits { other, delivered });
    }
    Ok(())
}

/// How [`quiet_forwarding`] failed.
enum QuietError {
    TooManyVtimerExits { vtimer: u64, delivered: u64 },
    OtherExits { other: u64, delivered: u64 },
}

impl fmt::Display for QuietError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyVtimerExits { vtimer, delivered } => write!(
                f,
                "{vtimer} vtimer PPI exits for {delivered} delivered interrupts: the physical PPI \
                 fires again before the guest deactivates (is it forwarded with the HW bit?)"
            ),
            Self::OtherExits { other, delivered } => write!(
                f,
                "{other} guest exits for {delivered} delivered interrupts not caused by the vtimer PPI, \
                 a hypercall or the hypervisor's timer: the guest's EOI/deactivation exits \
                 (list register without the HW bit, maintenance interrupt?)"
            ),
        }
    }
}

/// A ratio in hundredths, printed as `x.yy` (`-` when undefined).
struct Hundredths(Option<u64>);

impl fmt::Display for Hundredths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(h) => write!(f, "{}.{:02}", h / 100, h % 100),
            None => f.write_str("-"),
        }
    }
}

/// A name for the PSCI function `id`, for the SMC failure message.
fn psci_name(id: u64) -> &'static str {
    match id {
        0x8400_0008 => ", PSCI SYSTEM_OFF",
        0x8400_0009 => ", PSCI SYSTEM_RESET",
        0x8400_0002 => ", PSCI CPU_OFF",
        0x8400_0003 | 0xc400_0003 => ", PSCI CPU_ON",
        0x8400_0000 => ", PSCI_VERSION",
        _ => "",
    }
}

/// Writes a guest's print buffer to the console as one line: bytes other
/// than printable ASCII (a newline above all) become `.`, so that a guest
/// cannot start a line of its own, such as a forged `RESULT` line.
fn write_guest_line(bytes: &[u8]) {
    let mut line = [0_u8; 256];
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut len = 0;
    for (slot, &b) in line.iter_mut().zip(body) {
        *slot = if b == b' ' || b.is_ascii_graphic() {
            b
        } else {
            b'.'
        };
        len += 1;
    }
    write_bytes(line.get(..len).unwrap_or_default());
    write_bytes(b"\n");
}

/// The next runnable vCPU after `current`, round robin.
fn pick<V>(vcpus: &[Vcpu<V>], current: Option<usize>) -> Option<usize> {
    let n = vcpus.len();
    let start = current.map_or(0, |c| c + 1);
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| vcpus.get(i).is_some_and(|v| v.state == RunState::Runnable))
}

/// The guest buffer `[addr, addr + len)` if it lies in `memory` (what the
/// guest may write, identity-mapped by stage 2) and is short.
fn guest_bytes(addr: u64, len: u64, memory: core::ops::Range<u64>) -> Option<&'static [u8]> {
    let end = addr.checked_add(len)?;
    if len > 256 || !memory.contains(&addr) || end > memory.end {
        return None;
    }
    let len = usize::try_from(len).ok()?;
    // SAFETY: the range is guest RAM, identity-mapped for EL2; the guest
    // that owns it is stopped while we read it.
    Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len) })
}
