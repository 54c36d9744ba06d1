//! The Linux guest in the run loop (part of the hypervisor binary; the
//! host-independent logic is the library's [`platform`] module):
//!
//! - [`prepare`]: before the guest runs, checks the boot-info block and
//!   the kernel's `Image` header, and writes the guest's device tree;
//! - [`boot_regs`]: the boot protocol's entry state;
//! - [`hvc`]: PSCI calls;
//! - [`data_abort`]: stage 2 data aborts: the GICv3 distributor and
//!   redistributors ([`Vgic3`]) or the GICv2 distributor ([`Vgic2`]); any
//!   other ends the run with the device, the IPA and the access;
//! - [`hcr`], [`stage2_ram`], [`within_run_limit`]: what differs from the
//!   built-in guests (`HCR_EL2.DC` off so the guest's MMU works, pointer
//!   authentication not trapped, its RAM and UART, a run limit that fits a
//!   Linux boot under TCG).

use core::cell::RefCell;
use core::sync::atomic::{AtomicU8, Ordering};

use arch_timer_virt::IntId;
use qemu_hypervisor::config::{RunConfig, Scenario};
use qemu_hypervisor::platform;
use qemu_hypervisor::platform::boot::{
    BOOT_INFO_ADDR, BootInfo, DTB_ADDR, DTB_MAX, ImageHeader, KERNEL_ADDR, RAM_BASE, RAM_SIZE,
};
use qemu_hypervisor::platform::devicetree::{GuestGic, GuestMachine, TimerPpis, Uart};
use qemu_hypervisor::platform::mmio::MmioAccess;
use qemu_hypervisor::platform::psci::{self, Call, Outcome, Power};
use qemu_hypervisor::platform::vgic2::{self, Vgic2};
use qemu_hypervisor::platform::vgic3::{GICD_SIZE, GICR_STRIDE, Live, Vgic3, Write};

use crate::console::println;
use crate::el2::{GicVersion, fail};
use crate::guest::Report;
use crate::hyp::{RunState, SliceEnd, Vcpu};
use crate::stage2::{GICC_IPA, GuestRam};
use crate::sysreg::read_sysreg;
use crate::vectors::GuestRegs;

/// The PL011 (QEMU `virt`), passed through to the guest for now.
const UART_BASE: u64 = 0x0900_0000;
/// Its SPI (INTID 33).
const UART_SPI: u32 = 1;
/// The GIC distributor and the first redistributor as the guest sees
/// them (QEMU `virt`'s addresses).
const GICD_BASE: u64 = 0x0800_0000;
const GICD_END: u64 = GICD_BASE + GICD_SIZE;
const GICD_V2_END: u64 = GICD_BASE + vgic2::GICD_SIZE;
const GICR_BASE: u64 = 0x080a_0000;
/// The kernel command line.
const BOOTARGS: &str = "console=ttyAMA0 earlycon=pl011,0x9000000 panic=-1";
/// How long a Linux run may take, in seconds of the guest's counter.
const RUN_LIMIT_SECONDS: u64 = 300;
/// `HCR_EL2.DC`: stage 1 behaves as off for EL1 (for the built-in guests,
/// which never turn their MMU on); Linux turns its MMU on.
const HCR_DC: u64 = 1 << 12;

/// Whether this run is the Linux guest.
pub(crate) fn is_linux(config: RunConfig) -> bool {
    config.scenario == Scenario::Linux
}

/// `HCR_EL2.APK` and `HCR_EL2.API`: the guest's pointer authentication
/// keys and instructions are not trapped. Linux signs its return addresses
/// when the CPU has FEAT_PAuth (QEMU `-cpu max`). The keys are EL1
/// registers the hypervisor never uses; with one vCPU per CPU they stay
/// on the hardware (several vCPUs on one CPU must switch them).
const HCR_APK_API: u64 = (1 << 40) | (1 << 41);

/// `HCR_EL2` for this run's guests, from the built-in guests' `hcr`.
pub(crate) fn hcr(config: RunConfig, hcr: u64) -> u64 {
    if is_linux(config) {
        (hcr & !HCR_DC) | HCR_APK_API
    } else {
        hcr
    }
}

/// The Linux guest's stage 2: its RAM and the UART.
pub(crate) fn stage2_ram() -> GuestRam {
    GuestRam::Linux {
        ram: RAM_BASE..RAM_BASE + RAM_SIZE,
        uart: UART_BASE,
    }
}

/// Whether a Linux run may go on after `elapsed` counter ticks (false for
/// every other scenario: their own limit applies).
pub(crate) fn within_run_limit(config: RunConfig, elapsed: u64) -> bool {
    let hz = read_sysreg!(cntfrq_el0);
    is_linux(config)
        && elapsed
            .checked_div(hz)
            .is_some_and(|s| s < RUN_LIMIT_SECONDS)
}

/// Checks what `cargo xtask linux` loaded and writes the guest's device
/// tree at [`DTB_ADDR`]. Boot CPU, before the guest runs.
pub(crate) fn prepare(gic: GicVersion) {
    // SAFETY: the boot-info block is RAM mapped by the initial page table,
    // outside the image and the guest's RAM; QEMU's loader wrote it (or
    // not) before reset.
    let (magic, initrd_size) = unsafe {
        (
            core::ptr::read_volatile(BOOT_INFO_ADDR as *const u32),
            core::ptr::read_volatile((BOOT_INFO_ADDR + 4) as *const u32),
        )
    };
    let info = match BootInfo::decode(magic, initrd_size) {
        Ok(i) => i,
        Err(e) => fail!("hv: linux: {e}"),
    };
    // SAFETY: the guest's RAM, mapped for EL2 by the initial page table;
    // no guest runs yet.
    let head = unsafe { core::ptr::read_volatile(KERNEL_ADDR as *const [u8; 64]) };
    let header = match ImageHeader::parse(&head).and_then(|h| h.check_layout().map(|()| h)) {
        Ok(h) => h,
        Err(e) => fail!("hv: linux: {e}"),
    };
    GIC.store(
        match gic {
            GicVersion::V2 => 2,
            GicVersion::V3 => 3,
        },
        Ordering::Relaxed,
    );
    let counter_hz = u32::try_from(read_sysreg!(cntfrq_el0)).ok();
    let machine = GuestMachine {
        ram: (RAM_BASE, RAM_SIZE),
        cpus: 1,
        gic: match gic {
            GicVersion::V3 => GuestGic::V3 {
                distributor: GICD_BASE,
                redistributors: GICR_BASE,
            },
            GicVersion::V2 => GuestGic::V2 {
                distributor: GICD_BASE,
                cpu_interface: GICC_IPA,
            },
        },
        timer: TimerPpis::qemu_virt(),
        counter_hz,
        uart: Uart {
            base: UART_BASE,
            spi: UART_SPI,
        },
        bootargs: BOOTARGS,
        initrd: info.initrd(),
    };
    let len = usize::try_from(DTB_MAX).unwrap_or(0);
    // SAFETY: DTB_ADDR..+DTB_MAX is the guest's RAM (identity-mapped for
    // EL2), outside the image, the kernel and the initramfs
    // (`platform::boot`'s layout, checked at compile time); no guest runs
    // yet, and nothing else refers to it.
    let buf = unsafe { core::slice::from_raw_parts_mut(DTB_ADDR as *mut u8, len) };
    let size = match machine.write(buf) {
        Ok(n) => n,
        Err(e) => fail!("hv: linux: device tree: {e}"),
    };
    // The guest reads the tree (and the loaded images) with its MMU off,
    // that is non-cacheable: what EL2 wrote through its cacheable mapping
    // must reach memory first.
    clean_to_poc(DTB_ADDR, size);
    let (initrd_start, initrd_end) = info.initrd().unwrap_or_default();
    println!(
        "hv: linux: Image at {KERNEL_ADDR:#x} (image_size {:#x}), initramfs \
         {initrd_start:#x}..{initrd_end:#x}, device tree {size} bytes at {DTB_ADDR:#x}, \
         counter {} Hz",
        header.image_size,
        counter_hz.unwrap_or(0)
    );
}

/// Cleans `[start, start + len)` from the data caches to the point of
/// coherency.
fn clean_to_poc(start: u64, len: usize) {
    // CTR_EL0.DminLine, bits 19:16: log2 of the smallest line in words.
    let line = 4_u64 << ((read_sysreg!(ctr_el0) >> 16) & 0xf);
    let end = start.saturating_add(len as u64);
    let mut at = start & !(line - 1);
    while at < end {
        // SAFETY: a clean by address of normal memory mapped at EL2 (the
        // guest's RAM); it changes no data.
        unsafe { core::arch::asm!("dc cvac, {a}", a = in(reg) at, options(nostack)) };
        at += line;
    }
    crate::sysreg::dsb_sy();
}

/// The boot protocol's entry state for the first vCPU: the kernel's
/// first instruction, `x0` the device tree, `x1..x3` 0 (the caller's
/// `regs` have EL1h with interrupts masked). Returns `SP_EL1` (0).
pub(crate) fn boot_regs(regs: &mut GuestRegs) -> u64 {
    regs.pc = KERNEL_ADDR;
    regs.x[0] = DTB_ADDR;
    regs.x[1] = 0;
    regs.x[2] = 0;
    regs.x[3] = 0;
    0
}

/// A PSCI (or other SMCCC) call by HVC.
pub(crate) fn hvc<V>(v: &mut Vcpu<V>) -> Option<SliceEnd> {
    let [x0, x1, x2, x3, ..] = v.regs.x;
    let call = Call::decode([x0, x1, x2, x3]);
    // One vCPU so far: it is on.
    let power = [Power::On];
    match psci::handle(call, &power, RAM_BASE..RAM_BASE + RAM_SIZE) {
        Outcome::Return(value) => {
            if let Call::Unknown(id) = call {
                println!("hv: linux: SMCCC function {id:#x} not supported");
            }
            v.regs.x[0] = value;
            None
        }
        Outcome::PowerOff => {
            println!("hv: linux: PSCI SYSTEM_OFF from vCPU {}", v.index);
            v.state = RunState::Done(Report::default());
            Some(SliceEnd::Done)
        }
        Outcome::Reset => {
            println!("hv: linux: PSCI SYSTEM_RESET: this hypervisor does not reboot guests");
            v.state = RunState::Done(Report {
                status: 1,
                ..Report::default()
            });
            Some(SliceEnd::Done)
        }
        Outcome::Stop => {
            println!("hv: linux: PSCI CPU_OFF of the only vCPU");
            v.state = RunState::Done(Report {
                status: 2,
                ..Report::default()
            });
            Some(SliceEnd::Done)
        }
        // `handle` starts only vCPUs that are off; the one vCPU is on.
        Outcome::Start { vcpu, .. } => {
            fail!("hv: linux: PSCI CPU_ON of vCPU {vcpu}: one vCPU only")
        }
    }
}

/// What the guest sees at `ipa`, for messages.
fn device_at(ipa: u64) -> &'static str {
    match ipa {
        0x0800_0000..0x0801_0000 => "the GIC distributor (GICD)",
        0x0801_0000..0x0802_0000 => "the GICv2 CPU interface (GICC)",
        0x080a_0000..0x0900_0000 => "a GICv3 redistributor (GICR)",
        0x0900_0000..0x0901_0000 => "the PL011 UART",
        0x0901_0000..0x0902_0000 => "the PL031 RTC",
        0x0a00_0000..0x0a00_4000 => "a virtio-mmio transport",
        0x4000_0000..0x4800_0000 => "RAM below the guest's (the hypervisor's)",
        _ => "no device of the guest",
    }
}

/// The guest's GICv3 distributor and redistributors (the Linux guest runs
/// on CPU 0 only, so nothing else touches it).
static VGIC3: critical_section::Mutex<RefCell<Vgic3>> =
    critical_section::Mutex::new(RefCell::new(Vgic3::new(1)));
/// The guest's GICv2 distributor (CPU 0 only, as [`VGIC3`]).
static VGIC2: critical_section::Mutex<RefCell<Vgic2>> =
    critical_section::Mutex::new(RefCell::new(Vgic2::new(1)));
/// The GIC this run gives the guest: 2 or 3 (0 before [`prepare`]).
static GIC: AtomicU8 = AtomicU8::new(0);

/// What the library holds of `v`'s timer lines, as pending PPIs.
fn live<V>(v: &Vcpu<V>) -> Live {
    let levels = v.timer.levels();
    let bit = |level: bool, intid: IntId| if level { 1_u32 << intid.get() } else { 0 };
    Live {
        pending: bit(levels.virtual_timer, v.timer.vtimer().irq())
            | bit(levels.physical_timer, v.timer.ptimer().irq()),
        active: 0,
    }
}

/// A stage 2 data abort (`ESR_EL2` `esr`): the GICv3 distributor and
/// redistributors are emulated; anything else ends the run with what the
/// guest touched.
pub(crate) fn data_abort<V>(v: &mut Vcpu<V>, esr: u64) -> Option<SliceEnd> {
    let far = read_sysreg!(far_el2);
    let ipa = platform::mmio::fault_ipa(far, read_sysreg!(hpfar_el2));
    #[allow(clippy::cast_possible_truncation)] // the ISS, bits 24:0
    let iss = (esr & 0x1ff_ffff) as u32;
    let a = match MmioAccess::decode(iss, ipa) {
        Ok(a) => a,
        Err(e) => fail!(
            "hv: linux: vCPU {} at PC {:#x}: {e} ({})",
            v.index,
            v.regs.pc,
            device_at(ipa)
        ),
    };
    let reg = usize::from(a.reg);
    let stored = a.store_value(v.regs.x.get(reg).copied().unwrap_or(0));
    let gic = GIC.load(Ordering::Relaxed);
    let live = live(v);
    let loaded = critical_section::with(|cs| {
        let mut g3 = VGIC3.borrow_ref_mut(cs);
        let mut g2 = VGIC2.borrow_ref_mut(cs);
        let gicr_end = GICR_BASE + GICR_STRIDE * g3.cpus() as u64;
        let (value, write) = match ipa {
            GICD_BASE..GICD_END if gic == 3 => {
                if a.write {
                    g3.write_distributor(ipa - GICD_BASE, a.width, stored);
                    (0, Write::Done)
                } else {
                    (g3.read_distributor(ipa - GICD_BASE, a.width), Write::Done)
                }
            }
            _ if gic == 3 && (GICR_BASE..gicr_end).contains(&ipa) => {
                if a.write {
                    (0, g3.write_redistributor(ipa - GICR_BASE, a.width, stored))
                } else {
                    let value = g3.read_redistributor(ipa - GICR_BASE, a.width, live);
                    (value, Write::Done)
                }
            }
            GICD_BASE..GICD_V2_END if gic == 2 => {
                let offset = ipa - GICD_BASE;
                if a.write {
                    (0, g2.write(v.index, offset, a.width, stored))
                } else {
                    (g2.read(v.index, offset, a.width, live), Write::Done)
                }
            }
            _ => return None,
        };
        Some((value, write))
    });
    let Some((value, write)) = loaded else {
        fail!(
            "hv: linux: vCPU {} {} {} bytes at IPA {ipa:#x} ({}), PC {:#x}: not emulated; \
             ending the run",
            v.index,
            if a.write { "stored" } else { "loaded" },
            a.width.bytes(),
            device_at(ipa),
            v.regs.pc
        )
    };
    match write {
        Write::Done => {}
        // Linux sends its IPIs by `ICC_SGI1R_EL1` or `GICD_SGIR` and never
        // makes an SGI or PPI pending through the distributor; delivering
        // SGIs is the next step of the Linux guest platform.
        Write::Pend { intids, .. } => fail!(
            "hv: linux: vCPU {} made SGIs/PPIs {intids:#x} pending through the distributor: \
             not delivered yet; ending the run",
            v.index
        ),
        Write::Sgi { intid, targets } => fail!(
            "hv: linux: vCPU {} sent SGI {intid} to vCPUs {targets:#x} (GICD_SGIR): SGI delivery \
             is not implemented yet; ending the run",
            v.index
        ),
    }
    if !a.write
        && let Some(x) = v.regs.x.get_mut(reg)
    {
        *x = a.load_value(value);
    }
    v.regs.pc += 4;
    None
}
