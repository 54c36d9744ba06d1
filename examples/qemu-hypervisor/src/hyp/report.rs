//! The reporting: the run's statistics ([`Stats`], [`ExitCauses`]) and
//! its `RESULT` line, the one line per run that the runners (`matrix.sh`,
//! `cargo xtask`) read.

use core::fmt;

use qemu_hypervisor::config::Scenario;

use super::run_loop::{HYP_TIMER_PPI, Hyp, VTIMER_PPI};
use crate::console::println;
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
        hyp_timer: 0,
        maintenance: 0,
        spurious: 0,
        other: 0,
    };

    pub(crate) fn count(&mut self, first: Option<u32>, maintenance: bool) {
        let slot = match first {
            Some(VTIMER_PPI) => &mut self.vtimer,
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

impl<G: HostIrqs> Hyp<G>
where
    G::Vgic: Default,
{
    /// Prints the result line: the scenario, the statistics, what the
    /// guests reported (`total`, summed over the `vcpus` vCPUs) and
    /// measured (`m`), and the verdict `pass`.
    pub(crate) fn print_result(&self, vcpus: usize, total: &Report, m: &Measured, pass: bool) {
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
        println!(
            "RESULT scenario={} gic={} mode={} vcpus={} delivered={} raised={} exits={} exits_per_irq={per} \
             vtimer_exits_per_irq={vtimer_per} irq_exits={} irq_exits_27={} irq_exits_26={} irq_exits_25={} \
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
                vcpus
            },
            total.interrupts,
            s.raised,
            s.exits,
            s.irq_exits,
            c.vtimer,
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
