//! The hypervisor's EL2 setup: host mode, `HCR_EL2`, stage 2, the GIC
//! version, the EL2 physical timer; then [`Hyp`] runs the scenario.
//!
//! Everything about the guests' timers goes through `arch-timer-virt` on
//! the `arch-timer-virt-aarch64` registers ([`El2Timer`]) and a GIC backend
//! (see [`crate::gic`]); see [`crate::hyp::run_loop`] for the run loop.

use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use arch_timer_virt::IntId;
use arch_timer_virt_aarch64::{El2Timer, HostMode as TimerHostMode};
use qemu_hypervisor::clock::Clock;
use qemu_hypervisor::config::{GicChoice, HostMode, RunConfig};

use crate::console::println;
use crate::gic::{MAINTENANCE_PPI, distributor_arch_rev, gicv2, gicv3};
use crate::hyp::{HYP_TIMER_PPI, Hyp};
use crate::sysreg::{read_sysreg, write_sysreg};

/// `HCR_EL2` while guests run (and while the hypervisor runs: nothing in it
/// matters to EL2 itself): VM (stage 2), FMO/IMO/AMO (physical interrupts
/// to EL2, virtual ones to the guest), DC (guest memory cacheable with its
/// MMU off), TWI (trap WFI), TSC (trap SMC: QEMU's PSCI firmware would
/// otherwise let a guest power the machine off, QEMU exiting 0 without a
/// verdict), RW (EL1 is AArch64).
const HCR_GUEST: u64 =
    1 | (1 << 3) | (1 << 4) | (1 << 5) | (1 << 12) | (1 << 13) | (1 << 19) | (1 << 31);
/// `HCR_EL2.E2H`.
const HCR_E2H: u64 = 1 << 34;
/// Which GIC this run drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GicVersion {
    /// GICv2: memory-mapped CPU interface.
    V2,
    /// GICv3: system register CPU interface.
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
        $crate::console::println!($($arg)*);
        $crate::exit::fail()
    }};
}

pub(crate) use fail;

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
    init_clock();
    let gic = match (config.gic, found) {
        (GicChoice::Detect, found) => found,
        (GicChoice::V2, GicVersion::V2) => GicVersion::V2,
        (GicChoice::V3, GicVersion::V3) => GicVersion::V3,
        (asked, found) => fail!("hv: GIC {asked:?} asked for, but the machine has a GIC{found}"),
    };
    println!(
        "hv: EL2, scenario {}, host mode {}, GIC {gic}, counter {} Hz",
        config.scenario.name(),
        config.host_mode,
        clock().hz()
    );
    if config.host_mode == HostMode::Vhe && (read_sysreg!(id_aa64mmfr1_el1) >> 8) & 0xf == 0 {
        // ID_AA64MMFR1_EL1.VH, bits 11:8.
        fail!("hv: VHE asked for, but the CPU has no FEAT_VHE");
    }
    let ram = if config.scenario == qemu_hypervisor::config::Scenario::External {
        crate::stage2::GuestRam::External
    } else if crate::linux::is_linux(config) {
        crate::linux::stage2_ram()
    } else {
        crate::stage2::GuestRam::BuiltIn {
            code: crate::stage2::image_code(),
            data: crate::guest::memory(),
        }
    };
    // SAFETY: boot CPU, once, before any guest runs or other CPU starts.
    if let Err(e) = unsafe { crate::stage2::build(gic == GicVersion::V2, &ram) } {
        fail!("hv: stage 2: {e}");
    }
    if crate::linux::is_linux(config) {
        crate::linux::prepare(gic);
    }
    // SAFETY: boot CPU, before anything depends on the host mode.
    let timer = unsafe { cpu_init(config) };
    let ppis = hyp_ppis();
    match gic {
        GicVersion::V3 => {
            // SAFETY: once on this CPU, at EL2, GICv3 checked above.
            let gic = match unsafe { gicv3(&ppis) } {
                Ok(g) => g,
                Err(e) => fail!("hv: GICv3: {e}"),
            };
            Hyp::new(config, GicVersion::V3, timer, gic).run()
        }
        GicVersion::V2 => {
            // SAFETY: once on the boot CPU, at EL2, no GICv3 found.
            let gic = match unsafe { gicv2(&ppis, true) } {
                Ok(g) => g,
                Err(e) => fail!("hv: GICv2: {e}"),
            };
            Hyp::new(config, GicVersion::V2, timer, gic).run()
        }
    }
}

/// The second CPU (migration scenario): the same EL2 setup, then it takes
/// the vCPU whenever the first CPU hands it over.
pub(crate) fn secondary_main(config: RunConfig, gic: GicVersion) -> ! {
    // Before anything can enter a critical section.
    crate::cs::init_this_cpu();
    crate::vectors::install();
    // SAFETY: first thing on this CPU, at EL2 (PSCI CPU_ON enters at EL2).
    let timer = unsafe { cpu_init(config) };
    let ppis = hyp_ppis();
    match gic {
        GicVersion::V3 => {
            // SAFETY: once on this CPU, at EL2, GICv3 checked on the boot CPU.
            let gic = match unsafe { gicv3(&ppis) } {
                Ok(g) => g,
                Err(e) => fail!("hv: CPU 1 GICv3: {e}"),
            };
            Hyp::new(config, GicVersion::V3, timer, gic).secondary()
        }
        GicVersion::V2 => {
            // SAFETY: once on this CPU, at EL2; the boot CPU enabled the
            // distributor.
            let gic = match unsafe { gicv2(&ppis, false) } {
                Ok(g) => g,
                Err(e) => fail!("hv: CPU 1 GICv2: {e}"),
            };
            Hyp::new(config, GicVersion::V2, timer, gic).secondary()
        }
    }
}

/// The counter frequency in Hz, from `CNTFRQ_EL0` (0: not read yet).
static COUNTER_HZ: AtomicU64 = AtomicU64::new(0);

/// Reads `CNTFRQ_EL0` once, on the boot CPU at start-up: every period,
/// bound and limit of the run is derived from it (see
/// [`qemu_hypervisor::clock`]). A frequency of 0 (firmware that never set
/// it) stops the run here with a message and a failing exit.
fn init_clock() {
    let cntfrq = read_sysreg!(cntfrq_el0);
    match Clock::from_cntfrq(cntfrq) {
        Ok(clock) => COUNTER_HZ.store(clock.hz(), Ordering::Relaxed),
        Err(e) => fail!("hv: {e}"),
    }
}

/// The counter frequency [`init_clock`] read (on any CPU: the second CPU
/// starts after it).
pub(crate) fn clock() -> Clock {
    match Clock::new(COUNTER_HZ.load(Ordering::Relaxed)) {
        Some(clock) => clock,
        None => fail!("hv: the counter frequency is used before it was read"),
    }
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
        write_sysreg!(hcr_el2, crate::linux::hcr(config, HCR_GUEST) | e2h);
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
    let mut timer = match unsafe { El2Timer::new_with_host_mode(timer_mode) } {
        Ok(t) => t,
        Err(e) => fail!("hv: timer: {e}"),
    };
    timer.reset_cpu();
    timer
}

/// The PPIs the hypervisor takes, with their priorities.
fn hyp_ppis() -> [(IntId, u8); 4] {
    let ppi = |n| IntId::ppi(n).unwrap_or(IntId::VIRTUAL_TIMER);
    [
        (ppi(HYP_TIMER_PPI), 0x80),
        (IntId::VIRTUAL_TIMER, 0x80),
        // The EL1 physical timer, forwarded while a guest's is direct.
        (IntId::PHYSICAL_TIMER, 0x80),
        (ppi(MAINTENANCE_PPI), 0x80),
    ]
}

/// A 1 GiB block descriptor: valid block, access flag.
const BLOCK: u64 = 0b01 | (1 << 10);
/// `MAIR` index 1 (normal write-back, aarch64-rt's default), inner shareable.
const NORMAL: u64 = BLOCK | (1 << 2) | (0b11 << 8);
/// `MAIR` index 0 (device nGnRE), never executable: in the EL2&0
/// translation regime (E2H = 1) bit 53 is PXN (no execution at EL2) and
/// bit 54 UXN (none at EL0). The boot table only sets bit 54, which is XN
/// in the non-VHE EL2 regime, where bit 53 is RES0.
const DEVICE_VHE: u64 = BLOCK | (1 << 53) | (1 << 54);

/// The identity map the hypervisor uses once `E2H = 1`: the boot table's
/// two 1 GiB blocks (devices, RAM) with the EL2&0 regime's execute-never
/// bits on the device block.
#[repr(C, align(4096))]
struct VheIdmap([u64; 512]);

static VHE_IDMAP: VheIdmap = {
    let mut table = [0; 512];
    table[0] = DEVICE_VHE;
    table[1] = NORMAL | 0x4000_0000;
    VheIdmap(table)
};

/// Switches the host to `HCR_EL2.E2H = 1` with the MMU on: `TCR_EL2`
/// takes the `TCR_EL1` layout (TTBR1 walks disabled, TG1 4 KiB, the
/// physical address size moved from PS, bits 18:16, to IPS, bits 34:32;
/// T1SZ, which now overlaps the old PS bits, is unused with TTBR1 walks
/// off), `TTBR0_EL2` gets [`VHE_IDMAP`] (the same mapping with the device
/// block execute-never for EL2), and `CPTR_EL2` takes the CPACR layout
/// (FPEN must stay open).
///
/// # Safety
///
/// Boot CPU, FEAT_VHE checked, before any code relies on the host mode.
unsafe fn enter_vhe() {
    let idmap = core::ptr::addr_of!(VHE_IDMAP) as u64;
    // SAFETY: see above; no FP/SIMD instruction runs between the HCR_EL2
    // and CPTR_EL2 writes (one asm block), and the identity map stays valid
    // throughout: VHE_IDMAP maps what the boot table maps, with the same
    // attributes apart from the execute-never bits of the device block.
    unsafe {
        core::arch::asm!(
            "mrs {t}, tcr_el2",
            "ubfx {u}, {t}, #16, #3",
            "bfi {t}, {u}, #32, #3",
            "orr {t}, {t}, #(1 << 23)",
            "orr {t}, {t}, #(1 << 31)",
            "msr tcr_el2, {t}",
            "isb",
            "mrs {t}, hcr_el2",
            "orr {t}, {t}, #(1 << 34)",
            "msr hcr_el2, {t}",
            "isb",
            "msr ttbr0_el2, {idmap}",
            "mov {t}, #(3 << 20)",
            "msr cptr_el2, {t}",
            "isb",
            "tlbi alle2",
            "dsb nsh",
            "isb",
            t = out(reg) _,
            u = out(reg) _,
            idmap = in(reg) idmap,
            options(nostack)
        );
    }
}
