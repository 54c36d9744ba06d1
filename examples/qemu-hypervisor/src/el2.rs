//! The hypervisor proper: EL2 setup, the vCPUs and the run loop.
//!
//! Everything about the guests' timers goes through `arch-timer-virt`
//! ([`VcpuTimer`], [`emulate`]) on the `arch-timer-virt-aarch64` registers
//! ([`El2Timer`]) and a GIC backend (see [`crate::gic`]). What this file
//! owns is the hypervisor's own business: `HCR_EL2`, the world switch, the
//! EL2 physical timer (`CNTHP_*`, PPI 26) for scheduler ticks and the
//! library's soft timers, the scheduler, and the statistics.

use core::cell::RefCell;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use critical_section::Mutex;

use arch_timer_virt::emulate::{self, Access, SysRegTrap};
use arch_timer_virt::{
    HostIrq, IntId, SoftTimer, SoftTimers, Ticks, TimerHw, VcpuTimer, VmTimer, Wakeup,
};
use arch_timer_virt_aarch64::{El2Timer, HostMode as TimerHostMode};
use qemu_hypervisor::config::{GicChoice, HostMode, RunConfig, Scenario};

use crate::console::{println, write_bytes};
use crate::el1::El1Regs;
use crate::gic::{Gicv2, Gicv3, HostIrqs, MAINTENANCE_PPI, distributor_arch_rev};
use crate::guest::{self, Hypercall, Report};
use crate::sysreg::{read_sysreg, write_sysreg};
use crate::vectors::{Exit, GuestRegs, enter_guest};

/// `HCR_EL2` while guests run (and while the hypervisor runs: nothing in it
/// matters to EL2 itself): VM (stage 2), FMO/IMO/AMO (physical interrupts
/// to EL2, virtual ones to the guest), DC (guest memory cacheable with its
/// MMU off), TWI (trap WFI), RW (EL1 is AArch64).
const HCR_GUEST: u64 = 1 | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 12) | (1 << 13) | (1 << 31);
/// `HCR_EL2.E2H`.
const HCR_E2H: u64 = 1 << 34;
/// `SPSR_EL2` for a guest's first entry: EL1h, D, A, I, F masked.
const SPSR_EL1H_MASKED: u64 = 0x3c5;

/// The EL2 physical timer's PPI (QEMU `virt`).
const HYP_TIMER_PPI: u32 = 26;
/// The scheduler tick: 1 ms at QEMU's 62.5 MHz.
const TICK: u64 = 62_500;
/// Ticks a vCPU runs before the other one (two-vCPU scenario) gets the CPU.
const SLICE_TICKS: u64 = 2;
/// The whole run must end within this many counter ticks (20 s).
const RUN_LIMIT: u64 = 62_500_000 * 20;

/// The one VM's timer settings, shared by every vCPU on every CPU.
static VM: VmTimer = VmTimer::new();

/// Migration: which CPU owns the vCPU now (0 or 1).
static OWNER: AtomicUsize = AtomicUsize::new(0);
/// Migration: the vCPU has finished.
static FINISHED: AtomicBool = AtomicBool::new(false);
/// Migration: the vCPU, lent between the CPUs (a `*mut Vcpu<_>`).
static MIGRATING: AtomicUsize = AtomicUsize::new(0);
/// Migration: the second CPU's statistics, added at each hand-back.
static CPU1_STATS: Mutex<RefCell<Stats>> = Mutex::new(RefCell::new(Stats::ZERO));
/// Migration: hand the vCPU over after this many raised vtimer interrupts.
const MIGRATE_EVERY: u64 = 3;
/// The second CPU's EL2 stack.
static mut CPU1_STACK: aarch64_rt::Stack<16> = aarch64_rt::Stack::new();

/// Which GIC this run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GicVersion {
    V2,
    V3,
}

impl fmt::Display for GicVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V2 => "v2",
            Self::V3 => "v3",
        })
    }
}

/// Stops the run with a message.
macro_rules! fail {
    ($($arg:tt)*) => {{
        println!($($arg)*);
        crate::exit::fail()
    }};
}

/// Sets up EL2 for `config` and runs its scenario.
pub(crate) fn run(config: RunConfig) -> ! {
    let el = (read_sysreg!(CurrentEL) >> 2) & 3;
    if el != 2 {
        fail!("hv: entered at EL{el}, not EL2 (use -machine virt,virtualization=on)");
    }
    // ID_AA64PFR0_EL1.GIC, bits 27:24: a GICv3 system register interface;
    // the distributor's ArchRev confirms it.
    let has_gicv3_sysregs = (read_sysreg!(id_aa64pfr0_el1) >> 24) & 0xf != 0;
    let arch_rev = distributor_arch_rev(has_gicv3_sysregs);
    let found = match (has_gicv3_sysregs, arch_rev) {
        (true, 3 | 4) => GicVersion::V3,
        (false, 2) => GicVersion::V2,
        _ => fail!(
            "hv: unknown GIC: ID_AA64PFR0_EL1.GIC {}, distributor ArchRev {arch_rev}",
            u8::from(has_gicv3_sysregs)
        ),
    };
    let gic = match (config.gic, found) {
        (GicChoice::Detect, found) => found,
        (GicChoice::V2, GicVersion::V2) => GicVersion::V2,
        (GicChoice::V3, GicVersion::V3) => GicVersion::V3,
        (asked, found) => fail!("hv: GIC {asked:?} asked for, but the machine has a GIC{found}"),
    };
    println!(
        "hv: EL2, scenario {}, host mode {}, GIC {gic}",
        config.scenario.name(),
        config.host_mode
    );
    if config.host_mode == HostMode::Vhe && (read_sysreg!(id_aa64mmfr1_el1) >> 8) & 0xf == 0 {
        // ID_AA64MMFR1_EL1.VH, bits 11:8.
        fail!("hv: VHE asked for, but the CPU has no FEAT_VHE");
    }
    // SAFETY: boot CPU, once, before any guest runs or other CPU starts.
    unsafe { crate::stage2::build(gic == GicVersion::V2) };
    // SAFETY: boot CPU, before anything depends on the host mode.
    let timer = unsafe { cpu_init(config) };
    let ppis = hyp_ppis();
    match gic {
        GicVersion::V3 => {
            // SAFETY: once on this CPU, at EL2, GICv3 checked above.
            let gic = match unsafe { Gicv3::new(&ppis) } {
                Ok(g) => g,
                Err(e) => fail!("hv: GICv3: {e}"),
            };
            Hyp::new(config, GicVersion::V3, timer, gic).run()
        }
        GicVersion::V2 => {
            // SAFETY: once on the boot CPU, at EL2, no GICv3 found.
            let Some(gic) = (unsafe { Gicv2::new(&ppis, true) }) else {
                fail!("hv: GICv2 frames");
            };
            Hyp::new(config, GicVersion::V2, timer, gic).run()
        }
    }
}

/// The second CPU (migration scenario): the same EL2 setup, then it takes
/// the vCPU whenever the first CPU hands it over.
fn secondary_main(config: RunConfig, gic: GicVersion) -> ! {
    crate::vectors::install();
    // SAFETY: first thing on this CPU, at EL2 (PSCI CPU_ON enters at EL2).
    let timer = unsafe { cpu_init(config) };
    let ppis = hyp_ppis();
    match gic {
        GicVersion::V3 => {
            // SAFETY: once on this CPU, at EL2, GICv3 checked on the boot CPU.
            let gic = match unsafe { Gicv3::new(&ppis) } {
                Ok(g) => g,
                Err(e) => fail!("hv: CPU 1 GICv3: {e}"),
            };
            Hyp::new(config, GicVersion::V3, timer, gic).secondary()
        }
        GicVersion::V2 => {
            // SAFETY: once on this CPU, at EL2; the boot CPU enabled the
            // distributor.
            let Some(gic) = (unsafe { Gicv2::new(&ppis, false) }) else {
                fail!("hv: CPU 1 GICv2 frames");
            };
            Hyp::new(config, GicVersion::V2, timer, gic).secondary()
        }
    }
}

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

/// Brings this CPU's EL2 to the run's host mode and guest configuration,
/// and takes its timer.
///
/// # Safety
///
/// Once per CPU, at EL2, before anything on this CPU depends on the host
/// mode; the stage 2 tables are built.
unsafe fn cpu_init(config: RunConfig) -> El2Timer {
    if config.host_mode == HostMode::Vhe {
        // SAFETY: the caller's promise; FEAT_VHE was checked on the boot CPU.
        unsafe { enter_vhe() };
    }
    let e2h = read_sysreg!(hcr_el2) & HCR_E2H;
    let midr = read_sysreg!(midr_el1);
    // SAFETY: the guests' configuration; see HCR_GUEST. E2H is kept as
    // `enter_vhe` left it.
    unsafe {
        write_sysreg!(hcr_el2, HCR_GUEST | e2h);
        write_sysreg!(vpidr_el2, midr);
    }
    crate::sysreg::isb();
    crate::stage2::install();
    let timer_mode = match config.host_mode {
        HostMode::NonVhe => TimerHostMode::NonVhe,
        HostMode::Vhe => TimerHostMode::Vhe,
    };
    // SAFETY: at EL2 on this CPU; this is the only token for this CPU's
    // timer registers, and E2H no longer changes.
    match unsafe { El2Timer::new_with_host_mode(timer_mode) } {
        Ok(t) => t,
        Err(e) => fail!("hv: timer: {e}"),
    }
}

/// The PPIs the hypervisor takes, with their priorities.
fn hyp_ppis() -> [(IntId, u8); 3] {
    let ppi = |n| IntId::ppi(n).unwrap_or(IntId::VIRTUAL_TIMER);
    [
        (ppi(HYP_TIMER_PPI), 0x80),
        (IntId::VIRTUAL_TIMER, 0x80),
        (ppi(MAINTENANCE_PPI), 0x80),
    ]
}

/// Switches the host to `HCR_EL2.E2H = 1` with the MMU on: the EL2 page
/// table is valid in both layouts once TTBR1 walks are disabled, and
/// `CPTR_EL2` takes the CPACR layout (FPEN must stay open).
///
/// # Safety
///
/// Boot CPU, FEAT_VHE checked, before any code relies on the host mode.
unsafe fn enter_vhe() {
    // SAFETY: see above; no FP/SIMD instruction runs between the HCR_EL2
    // and CPTR_EL2 writes (one asm block), and the identity map stays valid.
    unsafe {
        core::arch::asm!(
            "mrs {t}, tcr_el2",
            "orr {t}, {t}, #(1 << 23)",
            "orr {t}, {t}, #(1 << 31)",
            "msr tcr_el2, {t}",
            "isb",
            "mrs {t}, hcr_el2",
            "orr {t}, {t}, #(1 << 34)",
            "msr hcr_el2, {t}",
            "isb",
            "mov {t}, #(3 << 20)",
            "msr cptr_el2, {t}",
            "isb",
            "tlbi alle2",
            "dsb nsh",
            "isb",
            t = out(reg) _,
            options(nostack)
        );
    }
}

/// Arms the EL2 physical timer for `at`.
fn hyp_timer_arm(at: u64) {
    // SAFETY: the EL2 physical timer is the hypervisor's own.
    unsafe {
        write_sysreg!(cnthp_cval_el2, at);
        write_sysreg!(cnthp_ctl_el2, 1);
    }
    crate::sysreg::isb();
}

/// Stops the EL2 physical timer (its interrupt line drops).
fn hyp_timer_stop() {
    // SAFETY: the EL2 physical timer is the hypervisor's own.
    unsafe { write_sysreg!(cnthp_ctl_el2, 0) };
    crate::sysreg::isb();
}

/// The library's soft timers of one vCPU: deadlines the hypervisor folds
/// into the EL2 physical timer.
#[derive(Clone, Copy, Debug, Default)]
struct Deadlines {
    background: Option<Ticks>,
    physical: Option<Ticks>,
}

impl SoftTimers for Deadlines {
    fn arm(&mut self, timer: SoftTimer, at: Ticks) {
        match timer {
            SoftTimer::Background => self.background = Some(at),
            SoftTimer::Physical => self.physical = Some(at),
        }
    }
    fn cancel(&mut self, timer: SoftTimer) {
        match timer {
            SoftTimer::Background => self.background = None,
            SoftTimer::Physical => self.physical = None,
        }
    }
}

/// Where a vCPU is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Runnable,
    /// Sleeping in WFI until this physical count (or the next tick).
    Blocked(u64),
    Done(Report),
}

/// One vCPU.
struct Vcpu<V> {
    index: usize,
    regs: GuestRegs,
    el1: El1Regs,
    timer: VcpuTimer,
    vgic: V,
    soft: Deadlines,
    state: RunState,
    loaded: bool,
}

/// What happened in a run, for the result line.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    exits: u64,
    irq_exits: u64,
    wfi_exits: u64,
    hvc_exits: u64,
    sysreg_exits: u64,
    /// `handle_host_irq` raised the virtual line.
    raised: u64,
    /// Host vtimer IRQs with nothing to inject.
    spurious: u64,
    /// vCPU switches (put + load).
    switches: u64,
    ticks: u64,
}

impl Stats {
    const ZERO: Self = Self {
        exits: 0,
        irq_exits: 0,
        wfi_exits: 0,
        hvc_exits: 0,
        sysreg_exits: 0,
        raised: 0,
        spurious: 0,
        switches: 0,
        ticks: 0,
    };

    /// Adds `other`'s counts to these.
    fn add(&mut self, other: &Self) {
        self.exits += other.exits;
        self.irq_exits += other.irq_exits;
        self.wfi_exits += other.wfi_exits;
        self.hvc_exits += other.hvc_exits;
        self.sysreg_exits += other.sysreg_exits;
        self.raised += other.raised;
        self.spurious += other.spurious;
        self.switches += other.switches;
        self.ticks += other.ticks;
    }
}

/// The hypervisor on one CPU.
struct Hyp<G: HostIrqs> {
    config: RunConfig,
    gic_version: GicVersion,
    timer: El2Timer,
    gic: G,
    stats: Stats,
    next_tick: u64,
    start: u64,
}

/// Why a slice of guest execution ended.
enum SliceEnd {
    Tick,
    Blocked,
    Done,
}

impl<G: HostIrqs> Hyp<G>
where
    G::Vgic: Default,
{
    fn new(config: RunConfig, gic_version: GicVersion, timer: El2Timer, gic: G) -> Self {
        let now = timer.physical_count().get();
        Self {
            config,
            gic_version,
            timer,
            gic,
            stats: Stats::default(),
            next_tick: now + TICK,
            start: now,
        }
    }

    fn now(&self) -> u64 {
        self.timer.physical_count().get()
    }

    fn new_vcpu(&self, index: usize) -> Vcpu<G::Vgic> {
        let mut regs = GuestRegs::new();
        regs.pc = guest::entry_point();
        regs.pstate = SPSR_EL1H_MASKED;
        regs.x[0] = index as u64;
        regs.x[1] = u64::from(self.config.scenario as u8);
        regs.x[2] = match self.gic_version {
            GicVersion::V2 => 2,
            GicVersion::V3 => 3,
        };
        Vcpu {
            index,
            regs,
            el1: El1Regs::reset(guest::stack_top(index)),
            timer: VcpuTimer::new(),
            vgic: G::Vgic::default(),
            soft: Deadlines::default(),
            state: RunState::Runnable,
            loaded: false,
        }
    }

    fn run(mut self) -> ! {
        let count = match self.config.scenario {
            Scenario::TwoVcpus => 2,
            _ => 1,
        };
        let mut vcpus = [self.new_vcpu(0), self.new_vcpu(1)];
        if self.config.scenario == Scenario::Migration {
            self.migrate(&mut vcpus[0]);
            let mut other = Stats::ZERO;
            critical_section::with(|cs| other = *CPU1_STATS.borrow_ref(cs));
            println!(
                "hv: CPU 0 raised {} vtimer interrupts, CPU 1 raised {}; {} hand-overs",
                self.stats.raised,
                other.raised,
                self.stats.switches + other.switches
            );
            self.stats.add(&other);
            self.report(core::slice::from_ref(&vcpus[0]));
        }
        let vcpus = vcpus.get_mut(..count).unwrap_or_default();
        hyp_timer_arm(self.next_tick);
        let mut current: Option<usize> = None;
        loop {
            if vcpus.iter().all(|v| matches!(v.state, RunState::Done(_))) {
                break;
            }
            if self.now().wrapping_sub(self.start) > RUN_LIMIT {
                fail!("hv: run limit exceeded");
            }
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
            if let RunState::Blocked(_) = v.state {
                self.unblock(v);
            }
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
        hyp_timer_stop();
        self.report(vcpus)
    }

    /// Migration, first CPU: starts the second CPU, then runs the vCPU
    /// whenever it owns it, handing it over every few interrupts.
    fn migrate(&mut self, v: &mut Vcpu<G::Vgic>) {
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
    fn secondary(mut self) -> ! {
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
        self.next_tick = self.now() + TICK;
        hyp_timer_arm(self.next_tick);
        self.load(v);
        let start = self.stats.raised;
        let done = loop {
            if let RunState::Done(_) = v.state {
                break true;
            }
            if let RunState::Blocked(_) = v.state {
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

    /// Wakes `v` from its WFI sleep (`VcpuTimer::unblock`).
    fn unblock(&mut self, v: &mut Vcpu<G::Vgic>) {
        let mut chip = self.gic.chip(&mut v.vgic);
        if let Err(e) = v.timer.unblock(&mut self.timer, &mut chip, &mut v.soft) {
            fail!("hv: unblock: {e:?}");
        }
        v.state = RunState::Runnable;
    }

    /// Marks blocked vCPUs whose wake-up time has come runnable.
    fn wake_blocked(&mut self, vcpus: &mut [Vcpu<G::Vgic>]) {
        let now = self.now();
        for v in vcpus.iter_mut() {
            if let RunState::Blocked(at) = v.state
                && now >= at
            {
                self.unblock(v);
            }
        }
    }

    /// Nothing to run: sleep until the earliest wake-up or tick.
    fn idle(&mut self, vcpus: &mut [Vcpu<G::Vgic>], current: Option<usize>) {
        let wake = vcpus
            .iter()
            .filter_map(|v| match v.state {
                RunState::Blocked(at) => Some(at),
                _ => None,
            })
            .fold(self.next_tick, u64::min);
        hyp_timer_arm(wake);
        // SAFETY: wfi waits for an interrupt (IRQs stay masked at EL2; a
        // pending one still ends the wait).
        unsafe { core::arch::asm!("wfi", options(nostack)) };
        let loaded = current.and_then(|c| vcpus.get_mut(c));
        self.drain_irqs(loaded);
    }

    fn load(&mut self, v: &mut Vcpu<G::Vgic>) {
        v.el1.restore(self.config.host_mode);
        // SAFETY: VMPIDR_EL2 is what the guest reads as MPIDR_EL1.
        unsafe { write_sysreg!(vmpidr_el2, (1 << 31) | v.index as u64) };
        if let Err(e) = self.gic.vcpu_load(&mut v.vgic) {
            fail!("hv: vgic load: {e:?}");
        }
        let mut chip = self.gic.chip(&mut v.vgic);
        if let Err(e) = v.timer.load(&VM, &mut self.timer, &mut chip) {
            fail!("hv: timer load: {e:?}");
        }
        v.loaded = true;
    }

    fn put(&mut self, v: &mut Vcpu<G::Vgic>) {
        if let Err(e) = v.timer.put(&mut self.timer, &mut v.soft) {
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
    fn run_slice(&mut self, v: &mut Vcpu<G::Vgic>) -> SliceEnd {
        loop {
            {
                let mut chip = self.gic.chip(&mut v.vgic);
                if let Err(e) = v
                    .timer
                    .before_entry(&mut self.timer, &mut chip, &mut v.soft)
                {
                    fail!("hv: before_entry: {e:?}");
                }
            }
            let deadline = v
                .soft
                .physical
                .map_or(self.next_tick, |p| p.get().min(self.next_tick));
            hyp_timer_arm(deadline);
            // SAFETY: HCR_EL2, stage 2 and the vCPU's EL1 registers are set
            // up; `regs` enters the guest at EL1 where it left off.
            let exit = unsafe { enter_guest(&mut v.regs) };
            self.stats.exits += 1;
            self.gic.sync_after_exit(&mut v.vgic);
            {
                let mut chip = self.gic.chip(&mut v.vgic);
                if let Err(e) = v.timer.after_exit(&mut self.timer, &mut chip, &mut v.soft) {
                    fail!("hv: after_exit: {e:?}");
                }
            }
            match exit {
                Exit::Irq => {
                    self.stats.irq_exits += 1;
                    if self.drain_irqs(Some(v)) {
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

    /// Takes every pending host interrupt. Returns whether a scheduler
    /// tick passed.
    fn drain_irqs(&mut self, mut loaded: Option<&mut Vcpu<G::Vgic>>) -> bool {
        let mut tick = false;
        while let Some(intid) = self.gic.acknowledge() {
            self.gic.priority_drop(intid);
            match intid {
                27 => {
                    let Some(v) = loaded.as_deref_mut() else {
                        self.stats.spurious += 1;
                        self.gic.deactivate(intid);
                        continue;
                    };
                    let result = {
                        let mut chip = self.gic.chip(&mut v.vgic);
                        v.timer.handle_host_irq(&mut self.timer, &mut chip)
                    };
                    match result {
                        Ok(HostIrq::Raised) => self.stats.raised += 1,
                        Ok(HostIrq::NotLoaded) => {
                            self.stats.spurious += 1;
                            self.gic.deactivate(intid);
                        }
                        Ok(_) => self.stats.spurious += 1,
                        Err(e) => fail!("hv: handle_host_irq: {e:?}"),
                    }
                }
                HYP_TIMER_PPI => {
                    hyp_timer_stop();
                    self.gic.deactivate(intid);
                    let now = self.now();
                    if now >= self.next_tick {
                        self.stats.ticks += 1;
                        self.next_tick = now + TICK;
                        tick = true;
                    }
                    if let Some(v) = loaded.as_deref_mut()
                        && v.soft.physical.is_some_and(|p| now >= p.get())
                    {
                        v.soft.physical = None;
                        let mut chip = self.gic.chip(&mut v.vgic);
                        if let Err(e) = v.timer.physical_timer_expired(&mut self.timer, &mut chip) {
                            fail!("hv: physical_timer_expired: {e:?}");
                        }
                    }
                }
                MAINTENANCE_PPI => {
                    self.gic.deactivate(intid);
                    if let Some(v) = loaded.as_deref_mut() {
                        self.gic.maintenance(&mut v.vgic);
                    }
                }
                other => {
                    self.gic.deactivate(other);
                    println!("hv: unexpected host interrupt {other}");
                }
            }
        }
        if tick {
            hyp_timer_arm(self.next_tick);
        }
        tick
    }

    /// Handles a synchronous exit; `Some` ends the slice.
    fn handle_sync(&mut self, v: &mut Vcpu<G::Vgic>) -> Option<SliceEnd> {
        let esr = read_sysreg!(esr_el2);
        let ec = (esr >> 26) & 0x3f;
        // The ISS is bits 24:0: the cast keeps them all.
        #[allow(clippy::cast_possible_truncation)]
        let iss = (esr & 0x1ff_ffff) as u32;
        match ec {
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
                match v.timer.block(&mut self.timer, &mut v.soft) {
                    Wakeup::Now => {
                        self.unblock(v);
                        None
                    }
                    Wakeup::At(at) => {
                        v.state = RunState::Blocked(at.get());
                        Some(SliceEnd::Blocked)
                    }
                    Wakeup::Never => {
                        // Nothing can fire: a WFI may end at any time, so
                        // the next tick ends it.
                        v.state = RunState::Blocked(self.next_tick);
                        Some(SliceEnd::Blocked)
                    }
                }
            }
            // Trapped MSR/MRS.
            0x18 => {
                self.stats.sysreg_exits += 1;
                v.regs.pc += 4;
                let Some(trap) = SysRegTrap::decode(iss) else {
                    fail!("hv: vCPU {} trapped system register, ISS {iss:#x}", v.index);
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
                    &VM,
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
            _ => fail!(
                "hv: vCPU {} exception class {ec:#x}, ESR {esr:#x}, PC {:#x}, FAR {:#x}, HPFAR {:#x}",
                v.index,
                v.regs.pc,
                read_sysreg!(far_el2),
                read_sysreg!(hpfar_el2)
            ),
        }
    }

    fn hypercall(&mut self, v: &mut Vcpu<G::Vgic>) -> Option<SliceEnd> {
        let [x0, x1, x2, x3, x4, x5, x6, ..] = v.regs.x;
        match Hypercall::from_number(x0) {
            Some(Hypercall::Print) => {
                match guest_bytes(x1, x2) {
                    Some(bytes) => {
                        crate::console::print!("[vcpu{}] ", v.index);
                        write_bytes(bytes);
                    }
                    None => println!("hv: vCPU {} printed from a bad buffer", v.index),
                }
                None
            }
            Some(Hypercall::Yield) => None,
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
    fn report(&self, vcpus: &[Vcpu<G::Vgic>]) -> ! {
        let mut total = Report::default();
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
            let enough = !matches!(
                self.config.scenario,
                Scenario::Periodic | Scenario::TwoVcpus
            ) || r.interrupts >= 1000;
            if r.status != 0 || r.early != 0 || r.duplicates != 0 || r.lost != 0 || !enough {
                println!("hv: vCPU {} failed: {r:?}", v.index);
                pass = false;
            }
        }
        let s = self.stats;
        let per = s
            .exits
            .checked_mul(100)
            .and_then(|e| e.checked_div(total.interrupts));
        let per = Hundredths(per);
        println!(
            "RESULT scenario={} gic={} mode={} vcpus={} delivered={} raised={} exits={} exits_per_irq={per} \
             irq_exits={} wfi_exits={} hvc_exits={} sysreg_exits={} switches={} spurious_host={} lost={} early={} \
             duplicates={} guest_spurious={} {}",
            self.config.scenario.name(),
            self.gic_version,
            self.config.host_mode,
            vcpus.len(),
            total.interrupts,
            s.raised,
            s.exits,
            s.irq_exits,
            s.wfi_exits,
            s.hvc_exits,
            s.sysreg_exits,
            s.switches,
            s.spurious,
            total.lost,
            total.early,
            total.duplicates,
            total.spurious,
            if pass { "PASS" } else { "FAIL" }
        );
        if pass {
            crate::exit::pass()
        } else {
            crate::exit::fail()
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

/// The next runnable vCPU after `current`, round robin.
fn pick<V>(vcpus: &[Vcpu<V>], current: Option<usize>) -> Option<usize> {
    let n = vcpus.len();
    let start = current.map_or(0, |c| c + 1);
    (0..n)
        .map(|k| (start + k) % n)
        .find(|&i| vcpus.get(i).is_some_and(|v| v.state == RunState::Runnable))
}

/// The guest buffer `[addr, addr + len)` if it lies in RAM and is short.
fn guest_bytes(addr: u64, len: u64) -> Option<&'static [u8]> {
    const RAM: core::ops::Range<u64> = 0x4000_0000..0x4800_0000;
    let end = addr.checked_add(len)?;
    if len > 256 || !RAM.contains(&addr) || end > RAM.end {
        return None;
    }
    let len = usize::try_from(len).ok()?;
    // SAFETY: the range is guest RAM, identity-mapped for EL2; the guest
    // that owns it is stopped while we read it.
    Some(unsafe { core::slice::from_raw_parts(addr as *const u8, len) })
}
