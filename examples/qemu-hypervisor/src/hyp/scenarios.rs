//! The test scenarios: what each run starts, the guests' hypercalls, the
//! hooks through which the Linux guest platform ([`crate::linux`]) joins
//! the run loop, and the verdicts.
//!
//! - [`Hyp::run`]: how many vCPUs on which CPUs (the migration scenario
//!   hands one between two CPUs, the Linux guest may have a CPU per vCPU);
//! - [`Hyp::new_vcpu`]: a vCPU's entry state (built-in guest, external
//!   guest ABI, the Linux boot protocol);
//! - the `platform_*` hooks the run loop calls (each does nothing unless
//!   the guest is Linux), [`Hyp::over_run_limit`] and [`check_storm`];
//! - [`Hyp::hypercall`]: the built-in and external guests' hypercall ABI;
//! - [`Hyp::report`]: the verdicts, then the result line
//!   ([`super::report`]), and the end of the run. The periodic scenario's
//!   quiet-forwarding claim is [`quiet_forwarding`].

use core::fmt;

use arch_timer_virt::TimerMode;

use qemu_hypervisor::config::{EXTERNAL_GUEST_ADDR, EXTERNAL_GUEST_SIZE, Scenario};

use super::exits::{ExitClass, SyncExit};
use super::report::{EcvState, Stats, TimerMapWord, ptimer_map};
use super::run_loop::{Hyp, RunState, SPSR_EL1H_MASKED, SliceEnd, VTIMER_PPI, Vcpu};
use crate::console::{println, write_bytes};
use crate::el2::{GicVersion, fail};
use crate::gic::HostIrqs;
use crate::guest::{
    self, Hypercall, MAX_DELIVERY_LATENCY_US, MAX_WAKE_LATENCY_US, Measured, Report, WFI_SLEEPS,
};
use crate::migrate::CPU1_STATS;
use crate::vectors::GuestRegs;

/// WFIs of the `wfi-sleep` guest that may complete without trapping,
/// their interrupt pending already (1 in 200 was seen on a loaded host).
const WFI_UNTRAPPED_MAX: u64 = 5;

/// More PPIs of one guest timer than this in one exit's drain is a storm
/// (see [`check_storm`]).
const STORM_LIMIT: u32 = 8;

/// Ends the run if a guest timer's PPI `ppi` (the vtimer's, or the direct
/// ptimer's) was taken more than [`STORM_LIMIT`] times in one exit's drain
/// of host interrupts (`taken` so far).
pub(crate) fn check_storm(ppi: u32, taken: u32) {
    if taken > STORM_LIMIT {
        // Forwarded with the HW bit, the physical PPI stays
        // active until the guest deactivates the virtual one:
        // it cannot come again while the hypervisor runs.
        let timer = if ppi == VTIMER_PPI {
            "vtimer"
        } else {
            "ptimer"
        };
        fail!(
            "hv: interrupt storm: {timer} PPI {ppi} taken {taken} times in one exit \
             without the guest running (host EOI deactivating it? EOImode must be 1)"
        );
    }
}

impl<G: HostIrqs> Hyp<G>
where
    G::Vgic: Default,
{
    /// vCPU `index` with this run's entry state: the built-in guest (x0
    /// the vCPU, x1 the scenario, x2 the GIC version, its own EL1 stack),
    /// the external guest ABI, or the Linux boot protocol (vCPUs other
    /// than the boot one off until a PSCI CPU_ON).
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
        let state = if crate::linux::is_linux(self.config) && !crate::linux::starts_on(index) {
            RunState::Off
        } else {
            RunState::Runnable
        };
        self.vcpu(index, regs, sp_el1, state)
    }

    /// Runs this run's scenario on the first CPU and ends the run with its
    /// verdict.
    pub(crate) fn run(mut self) -> ! {
        if cfg!(feature = "eager") && !self.config.scenario.is_perf() {
            fail!("hv: the eager baseline (feature `eager`) runs the perf scenarios only");
        }
        if self.config.scenario == Scenario::PhysicalTimerOffset {
            // SAFETY: the boot CPU, once, before any vCPU exists or another
            // CPU starts.
            let now = arch_timer_virt::TimerHw::physical_count(&self.timer);
            // SAFETY: see above.
            unsafe { super::run_loop::start_ptimer_offset_vm(now) };
        }
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

    /// Hook, at each turn of [`Hyp::run_vcpus`]: the Linux guest's shared
    /// state (CPU_ON requests, the guest's power-off); wakes the vCPUs
    /// sleeping in WFI that have IPIs waiting.
    pub(crate) fn platform_turn(&mut self, vcpus: &mut [Vcpu<G::Vgic>]) {
        if crate::linux::is_linux(self.config) {
            let wake = crate::linux::poll(vcpus, self.config.host_mode);
            for v in vcpus.iter_mut().filter(|v| wake & (1 << v.index) != 0) {
                self.unblock(v);
            }
        }
    }

    /// Whether a run that has taken `elapsed` counter ticks has overrun its
    /// limit ([`super::run_loop::RUN_LIMIT_US`]; a Linux boot has longer).
    pub(crate) fn over_run_limit(&self, elapsed: u64) -> bool {
        elapsed > self.periods.run_limit && !crate::linux::within_run_limit(self.config, elapsed)
    }

    /// Hook: the tick period while one vCPU has the CPU to itself,
    /// `housekeeping` but for the perf scenario, which has the run limit
    /// instead (a tick inside one of its counted loops would count).
    pub(crate) fn platform_housekeeping(&self, housekeeping: u64) -> u64 {
        if self.config.scenario.is_perf() {
            self.periods.run_limit
        } else {
            housekeeping
        }
    }

    /// Hook, at a WFI exit: whether the vCPU blocks with its timers saved
    /// (`VcpuTimer::block`) rather than in place: in the perf scenario's
    /// `wfi-saved` path, and on every other WFI exit of the wfi-sleep
    /// scenario, which so checks both ways of sleeping.
    ///
    /// In the wfi-sleep scenario it also checks the last wake-up: the
    /// guest takes one timer interrupt per sleep, so a WFI exit with none
    /// taken since the last one means the hypervisor resumed the guest
    /// from that WFI with nothing pending ([`Stats::idle_wakeups`]). (A
    /// WFI that the hypervisor's tick ends untrapped, which the guest
    /// follows with another, makes no exit: it is not counted.)
    pub(crate) fn platform_blocks_saved(&mut self) -> bool {
        if self.perf.blocks_saved() {
            return true;
        }
        if self.config.scenario != Scenario::WfiSleep {
            return false;
        }
        let delivered = self.stats.delivered;
        if self.delivered_at_wfi.replace(delivered) == Some(delivered) {
            self.stats.idle_wakeups += 1;
        }
        self.stats.wfi_exits.is_multiple_of(2)
    }

    /// Hook, before every entry of `v`: moves the IPIs sent to it into its
    /// list registers (Linux guest).
    pub(crate) fn platform_before_entry(&mut self, v: &mut Vcpu<G::Vgic>) {
        if crate::linux::is_linux(self.config) {
            crate::linux::deliver_sgis(v, &mut self.gic);
        }
    }

    /// Hook, first for every synchronous exit: the Linux guest's PSCI
    /// calls (HVC), its distributor and redistributors (stage 2 data
    /// aborts) and its IPIs (`ICC_SGI1R_EL1`). `None`: not the platform's,
    /// the run loop handles it.
    pub(crate) fn platform_exit(
        &mut self,
        v: &mut Vcpu<G::Vgic>,
        exit: &SyncExit,
    ) -> Option<Option<SliceEnd>> {
        if !crate::linux::is_linux(self.config) {
            return None;
        }
        let gicv3 = self.gic_version == GicVersion::V3;
        match exit.class {
            ExitClass::Hvc => {
                self.stats.hvc_exits += 1;
                Some(crate::linux::hvc(v, gicv3))
            }
            ExitClass::DataAbort => Some(crate::linux::data_abort(v, &mut self.gic, exit.esr)),
            ExitClass::SysReg => {
                let end = crate::linux::sysreg(v, exit.iss, gicv3)?;
                self.stats.sysreg_exits += 1;
                Some(end)
            }
            _ => None,
        }
    }

    /// Hook, at a WFI: whether an interrupt is pending for `v` that its
    /// virtual CPU interface would signal (an SGI or PPI pending in its list
    /// registers, or waiting in its mailbox), so that the WFI completes at
    /// once (Linux guest).
    ///
    /// Every virtual interrupt here has the same priority, so none is
    /// signalled while an SGI or PPI is active: the guest is inside that
    /// interrupt's handler. Linux parks a CPU it stops (the stop IPI at
    /// power-off) in a WFI loop inside the IPI's handler; waking that WFI
    /// for a pending timer interrupt it can never take made the vCPU
    /// exit tens of thousands of times until the run ended.
    pub(crate) fn platform_irq_pending(&mut self, v: &mut Vcpu<G::Vgic>) -> bool {
        if !crate::linux::is_linux(self.config) {
            return false;
        }
        let (pending, active) = self.gic.private_lr_state(&mut v.vgic);
        active == 0 && (pending != 0 || crate::linux::sgis_waiting(v.index))
    }

    /// Hook, at a WFI whose timer would end it at once
    /// (`Wakeup::Now`): whether the guest cannot take that interrupt now,
    /// an SGI or PPI of the same priority being active (Linux guest: the
    /// CPU it stops at power-off, parked in a WFI loop inside the stop
    /// IPI's handler, with its timer expired). The vCPU then sleeps as one
    /// with no timer armed, until an SGI, a kick or its fallback wakes it.
    pub(crate) fn platform_wfi_cannot_wake(&mut self, v: &mut Vcpu<G::Vgic>) -> bool {
        crate::linux::is_linux(self.config) && self.gic.private_lr_state(&mut v.vgic).1 != 0
    }

    /// The built-in and external guests' hypercalls (HVC, `x0` the
    /// [`Hypercall`]).
    pub(crate) fn hypercall(&mut self, v: &mut Vcpu<G::Vgic>) -> Option<SliceEnd> {
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
            Some(Hypercall::Perf) => match self.perf.hypercall(
                self.config.scenario == Scenario::PerfPtimer,
                x1,
                x2,
                x3,
                x4,
            ) {
                Ok(super::perf::Request::Resume) => None,
                Ok(super::perf::Request::PutLoad) => {
                    self.put(v);
                    self.load(v);
                    None
                }
                Err(why) => fail!("{why}"),
            },
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

    /// Checks the run's verdicts, prints the result line and ends the run.
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
        // The library's per-CPU timer paths take no lock shared across CPUs
        // (`critical_section` is one here): none of its calls entered one.
        check(
            super::perf::timer_path_locks() == 0,
            format_args!(
                "{} calls into the vCPU timer entered a critical section",
                super::perf::timer_path_locks()
            ),
        );
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
            // Every WFI trapped (`HCR_EL2.TWI`), except that the
            // architecture lets a WFI complete without trapping when an
            // interrupt is already pending, as QEMU does: on a loaded host
            // the guest's timer can fire between its last look and its
            // WFI, and the hypervisor's own interrupt (its tick) ends a
            // WFI with nothing pending for the guest, which then waits
            // again. A few such, never more exits than WFIs.
            check(
                s.wfi_exits <= m.sleeps && m.sleeps - s.wfi_exits <= WFI_UNTRAPPED_MAX,
                format_args!(
                    "{} WFI exits for {} WFIs the guest executed (at most \
                     {WFI_UNTRAPPED_MAX} may complete untrapped, an interrupt already pending)",
                    s.wfi_exits, m.sleeps
                ),
            );
            // A trapped WFI ends only with the guest's timer interrupt
            // pending (the guest cannot tell a WFI the hypervisor resumed
            // for nothing from one the tick ended untrapped: this is the
            // hypervisor's side of that check).
            check(
                s.idle_wakeups == 0,
                format_args!(
                    "{} WFI exits came with no timer interrupt taken since the previous one: \
                     the guest was resumed from a WFI with nothing to take",
                    s.idle_wakeups
                ),
            );
            check(
                m.sleeps >= WFI_SLEEPS * 9 / 10,
                format_args!("only {} of {WFI_SLEEPS} sleeps slept in WFI", m.sleeps),
            );
            // Half the sleeps blocked in place and woken by the timer's
            // PPI, half saved and woken by the background soft timer (all
            // of them with the eager baseline, which cannot block in
            // place).
            let in_place = cfg!(feature = "eager") || s.ppi_wakeups >= WFI_SLEEPS / 4;
            check(
                in_place && s.bg_wakeups >= WFI_SLEEPS / 4,
                format_args!(
                    "{} sleeps woken by the timer's PPI and {} by the background timer, \
                     not both at least {}",
                    s.ppi_wakeups,
                    s.bg_wakeups,
                    WFI_SLEEPS / 4
                ),
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
        // An unmodified guest reports no counts: a sanity bound on the
        // hypervisor's own. A Linux boot that keeps time takes vtimer
        // interrupts (its clock events).
        if scenario == Scenario::Linux {
            check(
                s.delivered > 0,
                format_args!("the Linux guest took no virtual timer interrupt"),
            );
        }
        if scenario.is_perf() {
            check(
                self.perf.complete(),
                format_args!("the perf guest did not finish every path"),
            );
        }
        // Its physical timer is direct (offset 0): no access of the guest's
        // traps, in the library's run as in the eager baseline's.
        if scenario == Scenario::PerfPtimer {
            check(
                s.sysreg_exits == 0,
                format_args!(
                    "{} trapped system register exits: the perf-ptimer guest's physical \
                     timer is not direct",
                    s.sysreg_exits
                ),
            );
        }
        if matches!(
            scenario,
            Scenario::PhysicalTimer | Scenario::PhysicalTimerOffset
        ) {
            // The timer map the VM must get: direct at offset 0; with the
            // VM's offset, direct exactly when CNTPOFF_EL2 works.
            let ecv = EcvState::of(&self.timer);
            let want = if scenario == Scenario::PhysicalTimer || ecv == EcvState::Effective {
                TimerMode::Direct
            } else {
                TimerMode::Emulated
            };
            let got = ptimer_map(vcpus);
            check(
                got == Some(want),
                format_args!(
                    "the physical timer is {} (ECV {ecv}), expected {}",
                    got.map_or("mixed", TimerMapWord::word),
                    want.word()
                ),
            );
            // Direct: the guest's timer register accesses do not trap.
            check(
                want == TimerMode::Emulated || s.sysreg_exits == 0,
                format_args!(
                    "{} trapped system register accesses with the physical timer direct",
                    s.sysreg_exits
                ),
            );
        }
        self.print_result(vcpus, &total, &m, pass);
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
