//! The reporting: the run's statistics ([`Stats`], [`ExitCauses`]) and
//! its `RESULT` line, the one line per run that the runners (`matrix.sh`,
//! `cargo xtask`) read.

use core::fmt;

use arch_timer_virt::{TimerHw, TimerMode};
use arch_timer_virt_aarch64::El2Timer;
use qemu_hypervisor::config::Scenario;

use super::run_loop::{Drained, HYP_TIMER_PPI, Hyp, PTIMER_PPI, VTIMER_PPI, Vcpu};
use crate::console::{print, println};
use crate::gic::{HostIrqs, MAINTENANCE_PPI};
use crate::guest::{Measured, Report};

/// What happened in a run, for the result line.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stats {
    pub(crate) exits: u64,
    pub(crate) irq_exits: u64,
    pub(crate) wfi_exits: u64,
    pub(crate) hvc_exits: u64,
    pub(crate) sysreg_exits: u64,
    /// `handle_timer_irq` or `after_irq_exit` raised a timer's line (its
    /// PPI taken at EL2, or forwarded before the host took it).
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
    /// Virtual timer interrupts the guest took, counted by the hypervisor
    /// (see [`Hyp::count_delivery`]): what an unmodified guest, which
    /// reports nothing, was delivered.
    pub(crate) delivered: u64,
    /// Maintenance interrupts: IRQ exits with the maintenance interrupt
    /// asserted or acknowledged, and its acknowledges while idle.
    pub(crate) maintenance: u64,
    /// vCPUs woken from a WFI sleep by the background soft timer
    /// `VcpuTimer::block` (or `put`, for a vCPU blocked in place) armed.
    pub(crate) bg_wakeups: u64,
    /// vCPUs blocked in place (`VcpuTimer::block_in_place`) woken by their
    /// own timer's PPI.
    pub(crate) ppi_wakeups: u64,
    /// wfi-sleep scenario: WFI exits with no timer interrupt taken by the
    /// guest since the last one: its last WFI was resumed with nothing to
    /// take (see `Hyp::platform_blocks_saved`).
    pub(crate) idle_wakeups: u64,
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

    pub(crate) fn count(&mut self, first: Option<u32>, maintenance: bool) {
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
        delivered: 0,
        maintenance: 0,
        bg_wakeups: 0,
        ppi_wakeups: 0,
        idle_wakeups: 0,
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
        self.delivered += other.delivered;
        self.maintenance += other.maintenance;
        self.bg_wakeups += other.bg_wakeups;
        self.ppi_wakeups += other.ppi_wakeups;
        self.idle_wakeups += other.idle_wakeups;
    }

    /// Counts an IRQ exit whose host interrupts were `drained`, with the
    /// maintenance interrupt asserted at the exit or not (`maintenance`).
    pub(crate) fn count_irq_exit(&mut self, drained: &Drained, maintenance: bool) {
        self.irq_exits += 1;
        self.exit_cause.count(drained.first, maintenance);
        if maintenance || drained.maintenance {
            self.maintenance += 1;
        }
    }
}

impl<G: HostIrqs> Hyp<G>
where
    G::Vgic: Default,
{
    /// Statistics, before an entry: whether `v`'s virtual timer interrupt
    /// is pending in a list register, offered to the guest. Reads the list
    /// registers only while the library holds the line high (a line low
    /// has no pending list register).
    pub(crate) fn vtimer_offered(&mut self, v: &mut Vcpu<G::Vgic>) -> bool {
        v.timer.levels().virtual_timer
            && self
                .gic
                .lr_pending(&mut v.vgic, v.timer.vtimer().irq().get())
    }

    /// Statistics, right after the exit's GIC sync (which reads back the
    /// list registers the guest changed) and before any library call can
    /// withdraw it: a virtual timer interrupt `offered` at the entry and
    /// no longer pending was taken by the guest (acknowledged: active, or
    /// already deactivated), through its own CPU interface with no trap.
    /// Counted in [`Stats::delivered`].
    pub(crate) fn count_delivery(&mut self, v: &mut Vcpu<G::Vgic>, offered: bool) {
        if offered
            && !self
                .gic
                .lr_pending(&mut v.vgic, v.timer.vtimer().irq().get())
        {
            self.stats.delivered += 1;
        }
    }

    /// Prints the result line: the scenario, the statistics, what the
    /// guests reported (`total`, summed over the `vcpus` vCPUs) and
    /// measured (`m`), and the verdict `pass`.
    pub(crate) fn print_result(
        &self,
        vcpus: &[Vcpu<G::Vgic>],
        total: &Report,
        m: &Measured,
        pass: bool,
    ) {
        let ptimer = ptimer_map(vcpus);
        let vcpus = vcpus.len();
        let scenario = self.config.scenario;
        let s = self.stats;
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
        // The built-in guests count the interrupts they handled; an
        // unmodified guest (Linux) reports nothing: the hypervisor's count.
        let delivered = if scenario == Scenario::Linux {
            s.delivered
        } else {
            total.interrupts
        };
        let per = s
            .exits
            .checked_mul(100)
            .and_then(|e| e.checked_div(delivered));
        let per = Hundredths(per);
        let c = s.exit_cause;
        let vtimer_per = Hundredths(
            c.vtimer
                .checked_mul(100)
                .and_then(|e| e.checked_div(delivered)),
        );
        let ptimer_per = Hundredths(
            c.ptimer
                .checked_mul(100)
                .and_then(|e| e.checked_div(delivered)),
        );
        print!(
            "RESULT scenario={} gic={} mode={} vcpus={} delivered={} raised={} exits={} exits_per_irq={per} \
             vtimer_exits_per_irq={vtimer_per} ptimer_exits_per_irq={ptimer_per} irq_exits={} irq_exits_27={} \
             irq_exits_30={} irq_exits_26={} irq_exits_25={} \
             irq_exits_spurious={} irq_exits_other={} wfi_exits={} hvc_exits={} sysreg_exits={} switches={} \
             exits_cpu0={} exits_cpu1={} spurious_host={} lost={} early={} duplicates={} guest_spurious={} \
             max_latency_ticks={} max_latency_us={} max_run_latency_us={} skipped={} sleeps={} overruns={} max_wake_ticks={} max_wake_us={}",
            scenario.name(),
            self.gic_version,
            self.config.host_mode,
            if scenario == Scenario::Linux {
                crate::linux::smp().vcpus
            } else {
                vcpus
            },
            delivered,
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
        );
        // The library's figures for the Linux guest: exits per delivered
        // vtimer interrupt, spurious host vtimer interrupts, maintenance
        // interrupts, background and PPI wake-ups (WFI exits are above).
        if scenario == Scenario::Linux {
            print!(
                " exits_per_delivered={per} spurious={} maintenance={} bg_wakeups={} ppi_wakeups={}",
                s.spurious, s.maintenance, s.bg_wakeups, s.ppi_wakeups
            );
        }
        // The wfi-sleep guest's sleeps, blocked both ways.
        if scenario == Scenario::WfiSleep {
            print!(
                " bg_wakeups={} ppi_wakeups={} idle_wakeups={}",
                s.bg_wakeups, s.ppi_wakeups, s.idle_wakeups
            );
        }
        println!(
            " ecv={} ptimer={} timer_path_locks={} cntfrq_hz={} {}",
            EcvState::of(&self.timer),
            ptimer.map_or("-", TimerMapWord::word),
            super::perf::timer_path_locks(),
            self.clock.hz(),
            if pass { "PASS" } else { "FAIL" }
        );
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

/// What the CPU offers an offset physical timer, for the `ecv=` field of
/// the `RESULT` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EcvState {
    /// `none`: no FEAT_ECV (`ID_AA64MMFR0_EL1.ECV` = 0), no `CNTPOFF_EL2`.
    Absent,
    /// `off`: FEAT_ECV, but `CNTPOFF_EL2` has no effect (EL3 keeps
    /// `SCR_EL3.ECVEn` clear; the aarch64 backend's `reset_cpu` probe).
    Ineffective,
    /// `on`: `CNTPOFF_EL2` offsets the EL1 physical timer.
    Effective,
}

impl EcvState {
    /// What `timer`'s features and its `reset_cpu` probe say.
    pub(crate) fn of(timer: &El2Timer) -> Self {
        if !timer.features().ecv {
            Self::Absent
        } else if TimerHw::has_physical_offset(timer) {
            Self::Effective
        } else {
            Self::Ineffective
        }
    }
}

impl fmt::Display for EcvState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Absent => "none",
            Self::Ineffective => "off",
            Self::Effective => "on",
        })
    }
}

/// A [`TimerMode`] as the `ptimer=` field of the `RESULT` line writes it.
pub(crate) trait TimerMapWord {
    /// `direct` or `emulated`.
    fn word(self) -> &'static str;
}

impl TimerMapWord for TimerMode {
    fn word(self) -> &'static str {
        match self {
            TimerMode::Direct => "direct",
            TimerMode::Emulated => "emulated",
        }
    }
}

/// The physical timer's mode in the timer map of every vCPU (as decided at
/// its last load), if they all agree; `None` if they do not, or with the
/// eager baseline, which has no timer map.
pub(crate) fn ptimer_map<V>(vcpus: &[Vcpu<V>]) -> Option<TimerMode> {
    #[cfg(not(feature = "eager"))]
    {
        let mut modes = vcpus.iter().map(|v| v.timer.timer_map().physical_timer);
        let first = modes.next()?;
        modes.all(|m| m == first).then_some(first)
    }
    #[cfg(feature = "eager")]
    {
        let _ = vcpus;
        None
    }
}
