//! The Linux guest in the run loop (part of the hypervisor binary; the
//! host-independent logic is the library's [`platform`] module):
//!
//! - [`prepare`]: before the guest runs, checks the boot-info block and
//!   the kernel's `Image` header, and writes the guest's device tree;
//! - [`boot_regs`]: the boot protocol's entry state;
//! - [`hvc`]: PSCI calls; CPU_ON starts a secondary vCPU through a
//!   start request the run loop that owns it picks up ([`poll`]);
//! - SMP: [`Smp`] from the boot-info block: N vCPUs time-sliced on CPU 0,
//!   or vCPU n on CPU n; IPIs ([`send_sgi`], from a trapped
//!   `ICC_SGI1R_EL1` write or a `GICD_SGIR` store) go through a mailbox
//!   per target vCPU that its run loop empties into the vCPU's list
//!   registers before every entry ([`deliver_sgis`]); a target on another
//!   CPU is kicked with a host SGI ([`crate::gic::KICK_SGI`]), which ends
//!   its guest's slice or its idle WFI;
//! - [`data_abort`]: stage 2 data aborts: the GICv3 distributor and
//!   redistributors ([`Vgic3`]) or the GICv2 distributor ([`Vgic2`]), the
//!   PL011 ([`Pl011`]); any other ends the run with the device, the IPA
//!   and the access;
//! - the console: the guest's PL011 output is printed a line at a time
//!   (the hypervisor's messages never split one), the host console's
//!   input goes to its receive FIFO once it is ready for it; the UART's interrupt
//!   line, `MIS != 0`, is the SPI of the distributor's choice of vCPU:
//!   [`deliver_sgis`] sets that vCPU's virtual line (a software,
//!   level-sensitive list register) before every entry;
//! - [`hcr`], [`stage2_ram`], [`within_run_limit`]: what differs from the
//!   built-in guests (`HCR_EL2.DC` off so the guest's MMU works, pointer
//!   authentication not trapped, its RAM, a run limit that fits a Linux
//!   boot under TCG).

use core::cell::RefCell;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

use arch_timer_virt::{IntId, IrqChip};
use qemu_hypervisor::config::{RunConfig, Scenario};
use qemu_hypervisor::platform;
use qemu_hypervisor::platform::boot::{
    BOOT_INFO_ADDR, BootInfo, DTB_ADDR, DTB_MAX, ImageHeader, KERNEL_ADDR, MAX_VCPUS, RAM_BASE,
    RAM_SIZE, SMP_WORD_OFFSET, Smp,
};
use qemu_hypervisor::platform::devicetree::{GuestGic, GuestMachine, TimerPpis, Uart};
use qemu_hypervisor::platform::ipi::{self, Mailbox};
use qemu_hypervisor::platform::mmio::MmioAccess;
use qemu_hypervisor::platform::pl011::{self, Effect, LineBuffer, Pl011};
use qemu_hypervisor::platform::psci::{self, Call, Outcome, Power};
use qemu_hypervisor::platform::vgic2::{self, Vgic2};
use qemu_hypervisor::platform::vgic3::{GICD_SIZE, GICR_STRIDE, Live, Vgic3, Write};

use crate::console::{println, write_bytes};
use crate::el1::El1Regs;
use crate::el2::{GicVersion, fail};
use crate::gic::HostIrqs;
use crate::guest::Report;
use crate::hyp::{Hyp, RunState, SliceEnd, Vcpu};
use crate::migrate::CPU1_STATS;
use crate::stage2::{GICC_IPA, GuestRam};
use crate::sysreg::read_sysreg;
use crate::vectors::GuestRegs;

/// The guest's PL011, emulated (where QEMU `virt` has its own).
const UART_BASE: u64 = 0x0900_0000;
const UART_END: u64 = UART_BASE + pl011::SIZE;
/// Its SPI (INTID 33).
const UART_SPI: u32 = 1;
const UART_INTID: u32 = 32 + UART_SPI;
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
/// registers the hypervisor never uses; [`El1Regs`] switches them with
/// the rest of a vCPU's EL1 context.
const HCR_APK_API: u64 = (1 << 40) | (1 << 41);

/// `HCR_EL2` for this run's guests, from the built-in guests' `hcr`.
pub(crate) fn hcr(config: RunConfig, hcr: u64) -> u64 {
    if is_linux(config) {
        (hcr & !HCR_DC) | HCR_APK_API
    } else {
        hcr
    }
}

/// The Linux guest's stage 2: its RAM (its devices are emulated).
pub(crate) fn stage2_ram() -> GuestRam {
    GuestRam::Linux {
        ram: RAM_BASE..RAM_BASE + RAM_SIZE,
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
    let (magic, initrd_size, smp_word) = unsafe {
        (
            core::ptr::read_volatile(BOOT_INFO_ADDR as *const u32),
            core::ptr::read_volatile((BOOT_INFO_ADDR + 4) as *const u32),
            core::ptr::read_volatile((BOOT_INFO_ADDR + SMP_WORD_OFFSET) as *const u32),
        )
    };
    let info = match BootInfo::decode(magic, initrd_size) {
        Ok(i) => i,
        Err(e) => fail!("hv: linux: {e}"),
    };
    let smp = match Smp::decode(smp_word) {
        Ok(s) => s,
        Err(e) => fail!("hv: linux: {e}"),
    };
    SMP_VCPUS.store(smp.vcpus, Ordering::Relaxed);
    SMP_HOST_CPUS.store(smp.host_cpus, Ordering::Relaxed);
    if let Some(p) = POWER.first() {
        p.store(ON, Ordering::Relaxed);
    }
    critical_section::with(|cs| {
        *VGIC3.borrow_ref_mut(cs) = Vgic3::new(smp.vcpus);
        *VGIC2.borrow_ref_mut(cs) = Vgic2::new(smp.vcpus);
    });
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
        cpus: u32::try_from(smp.vcpus).unwrap_or(1),
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
         counter {} Hz, {} vCPUs on {} CPUs",
        header.image_size,
        counter_hz.unwrap_or(0),
        smp.vcpus,
        smp.host_cpus
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
pub(crate) fn hvc<V>(v: &mut Vcpu<V>, gicv3: bool) -> Option<SliceEnd> {
    let [x0, x1, x2, x3, ..] = v.regs.x;
    let call = Call::decode([x0, x1, x2, x3]);
    let vcpus = smp().vcpus;
    let mut power = [Power::Off; MAX_VCPUS];
    for (p, a) in power.iter_mut().zip(&POWER).take(vcpus) {
        *p = match a.load(Ordering::Acquire) {
            ON => Power::On,
            ON_PENDING => Power::OnPending,
            _ => Power::Off,
        };
    }
    match psci::handle(
        call,
        power.get(..vcpus).unwrap_or_default(),
        RAM_BASE..RAM_BASE + RAM_SIZE,
    ) {
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
            end_run(POWERED_OFF, gicv3);
            Some(SliceEnd::Done)
        }
        Outcome::Reset => {
            println!("hv: linux: PSCI SYSTEM_RESET: this hypervisor does not reboot guests");
            v.state = RunState::Done(Report {
                status: 1,
                ..Report::default()
            });
            end_run(RESET, gicv3);
            Some(SliceEnd::Done)
        }
        Outcome::Stop => {
            let others_on = POWER
                .iter()
                .enumerate()
                .any(|(i, p)| i != v.index && p.load(Ordering::Acquire) != OFF);
            if !others_on {
                println!("hv: linux: PSCI CPU_OFF of the last vCPU that was on");
                v.state = RunState::Done(Report {
                    status: 2,
                    ..Report::default()
                });
                end_run(RESET, gicv3);
                return Some(SliceEnd::Done);
            }
            if let Some(p) = POWER.get(v.index) {
                p.store(OFF, Ordering::Release);
            }
            v.state = RunState::Off;
            Some(SliceEnd::Blocked)
        }
        Outcome::Start {
            vcpu,
            entry,
            context,
        } => {
            let (Some(e), Some(c), Some(p)) = (
                START_ENTRY.get(vcpu),
                START_CONTEXT.get(vcpu),
                POWER.get(vcpu),
            ) else {
                fail!("hv: linux: PSCI CPU_ON of vCPU {vcpu}: no such vCPU")
            };
            e.store(entry, Ordering::Relaxed);
            c.store(context, Ordering::Relaxed);
            // Release: the owner of the target sees the entry and context
            // once it sees ON_PENDING. `handle` saw it off; a concurrent
            // CPU_ON of the same vCPU by another vCPU loses the race.
            let won = p
                .compare_exchange(OFF, ON_PENDING, Ordering::Release, Ordering::Relaxed)
                .is_ok();
            v.regs.x[0] = if won {
                0
            } else {
                psci::PsciError::OnPending.to_x0()
            };
            if won {
                let s = smp();
                if s.host_cpu_of(vcpu) != s.host_cpu_of(v.index) {
                    crate::gic::kick(gicv3, s.host_cpu_of(vcpu));
                }
            }
            None
        }
    }
}

/// The guest's vCPU count and where they run (set by [`prepare`]).
static SMP_VCPUS: AtomicUsize = AtomicUsize::new(1);
/// See [`SMP_VCPUS`].
static SMP_HOST_CPUS: AtomicUsize = AtomicUsize::new(1);
/// A vCPU's PSCI power state: [`OFF`], [`ON_PENDING`] (CPU_ON accepted,
/// not yet picked up by its run loop) or [`ON`].
static POWER: [AtomicU8; MAX_VCPUS] = [const { AtomicU8::new(OFF) }; MAX_VCPUS];
const OFF: u8 = 0;
const ON_PENDING: u8 = 1;
const ON: u8 = 2;
/// A CPU_ON's entry point and context id, per target vCPU.
static START_ENTRY: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];
/// See [`START_ENTRY`].
static START_CONTEXT: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];
/// The mailbox of SGIs sent to each vCPU and not yet in its list
/// registers.
static SGIS: [Mailbox; MAX_VCPUS] = [const { Mailbox::new() }; MAX_VCPUS];
// Every vCPU can be told apart as a source.
const _: () = assert!(MAX_VCPUS <= platform::ipi::MAX_SOURCES);
/// SGIs the guest sent (one per target), for the run's summary.
static SGIS_SENT: AtomicU64 = AtomicU64::new(0);
/// How the guest ended the run: [`RUNNING`], [`POWERED_OFF`] or [`RESET`]
/// (also a CPU_OFF of the last vCPU).
static ENDED: AtomicU8 = AtomicU8::new(RUNNING);
const RUNNING: u8 = 0;
const POWERED_OFF: u8 = 1;
const RESET: u8 = 2;

/// The guest's SMP layout.
pub(crate) fn smp() -> Smp {
    Smp {
        vcpus: SMP_VCPUS.load(Ordering::Relaxed),
        host_cpus: SMP_HOST_CPUS.load(Ordering::Relaxed),
    }
}

/// Whether vCPU `index` is powered on at start (only the boot vCPU).
pub(crate) fn starts_on(index: usize) -> bool {
    index == 0
}

/// Records how the guest ended the run and kicks the other CPUs so that
/// their run loops see it.
fn end_run(how: u8, gicv3: bool) {
    flush_console();
    ENDED.store(how, Ordering::Release);
    let s = smp();
    let me = this_cpu();
    for cpu in (0..s.host_cpus).filter(|&c| c != me) {
        crate::gic::kick(gicv3, cpu);
    }
}

/// This CPU's `MPIDR_EL1.Aff0`.
fn this_cpu() -> usize {
    usize::try_from(read_sysreg!(mpidr_el1) & 0xff).unwrap_or(0)
}

/// SGIs sent so far (one per target vCPU).
pub(crate) fn sgis_sent() -> u64 {
    SGIS_SENT.load(Ordering::Relaxed)
}

/// The run loop's look at the shared state, at each turn: once the guest
/// has ended the run every vCPU here is done; a vCPU with a CPU_ON
/// request starts at its entry point (`x0` the context id, EL1h with
/// interrupts masked, MMU off, a reset EL1 context). Returns the vCPUs
/// blocked in WFI with SGIs waiting, to be woken.
pub(crate) fn poll<V>(vcpus: &mut [Vcpu<V>], mode: qemu_hypervisor::config::HostMode) -> u32 {
    let ended = ENDED.load(Ordering::Acquire);
    let mut wake = 0;
    for v in vcpus.iter_mut() {
        if ended != RUNNING {
            if !matches!(v.state, RunState::Done(_)) {
                v.state = RunState::Done(Report {
                    status: u64::from(ended != POWERED_OFF),
                    ..Report::default()
                });
            }
            continue;
        }
        let Some(power) = POWER.get(v.index) else {
            continue;
        };
        if v.state == RunState::Off && power.load(Ordering::Acquire) == ON_PENDING {
            let entry = START_ENTRY
                .get(v.index)
                .map_or(0, |e| e.load(Ordering::Relaxed));
            let context = START_CONTEXT
                .get(v.index)
                .map_or(0, |c| c.load(Ordering::Relaxed));
            v.regs.x = [0; 31];
            v.regs.x[0] = context;
            v.regs.pc = entry;
            v.regs.pstate = crate::hyp::SPSR_EL1H_MASKED;
            v.el1 = El1Regs::reset(0);
            if v.loaded {
                v.el1.restore(mode);
            }
            v.state = RunState::Runnable;
            power.store(ON, Ordering::Release);
            println!(
                "hv: linux: vCPU {} started at {entry:#x} on CPU {}",
                v.index,
                this_cpu()
            );
        }
        let waiting = sgis_waiting(v.index);
        if waiting && matches!(v.state, RunState::Blocked { .. }) {
            wake |= 1 << v.index;
        }
    }
    wake
}

/// Whether interrupts wait for `vcpu`: SGIs in its mailbox, or the
/// UART's SPI pending for it (a WFI completes at once, a blocked vCPU is
/// woken).
pub(crate) fn sgis_waiting(vcpu: usize) -> bool {
    SGIS.get(vcpu).is_some_and(|m| !m.is_empty()) || uart_line_for(vcpu)
}

/// Sends SGI `sgi` from vCPU `from` to the vCPUs in `targets` (bit n =
/// vCPU n): into their mailboxes, and a kick for those on another CPU.
pub(crate) fn send_sgi(from: usize, sgi: u32, targets: u32, gicv3: bool) {
    let s = smp();
    for t in ipi::targets(targets, s.vcpus) {
        let Some(mailbox) = SGIS.get(t) else { continue };
        if !mailbox.post(from, sgi) {
            fail!("hv: linux: SGI {sgi} from vCPU {from}: out of range");
        }
        SGIS_SENT.fetch_add(1, Ordering::Relaxed);
        if s.host_cpu_of(t) != s.host_cpu_of(from) {
            crate::gic::kick(gicv3, s.host_cpu_of(t));
        }
    }
}

/// Before entering `v` (loaded on this CPU): moves the SGIs in its
/// mailbox into its list registers (those without room go back for the
/// next entry).
pub(crate) fn deliver_sgis<G: HostIrqs>(v: &mut Vcpu<G::Vgic>, gic: &mut G) {
    withdraw_unpended(v, gic);
    sync_uart_line(v, gic);
    let Some(mailbox) = SGIS.get(v.index) else {
        return;
    };
    if mailbox.is_empty() {
        return;
    }
    for (source, sgi) in mailbox.take() {
        match gic.inject_sgi(&mut v.vgic, sgi, source) {
            Ok(true) => {}
            Ok(false) => {
                mailbox.post(source, sgi);
            }
            Err(e) => fail!("hv: linux: SGI {sgi} to vCPU {}: {e:?}", v.index),
        }
    }
}

/// `ICC_SGI1R_EL1` as a trapped `MSR` (ESR_EL2 ISS, Rt and the direction
/// masked out): Op0 3, Op2 5, Op1 0, CRn 12, CRm 11.
const ISS_ICC_SGI1R: u32 = (3 << 20) | (5 << 17) | (12 << 10) | (11 << 1);
/// `ICC_ASGI1R_EL1`: Op2 6.
const ISS_ICC_ASGI1R: u32 = (3 << 20) | (6 << 17) | (12 << 10) | (11 << 1);
/// `ICC_SGI0R_EL1`: Op2 7.
const ISS_ICC_SGI0R: u32 = (3 << 20) | (7 << 17) | (12 << 10) | (11 << 1);
/// The ISS bits that name the register.
const ISS_SYSREG_MASK: u32 = 0x3f_fc1e;

/// A trapped system register access the Linux guest platform handles
/// (GICv3 SGI register writes: the guest's IPIs); `None` for the others.
///
/// - `ICC_SGI1R_EL1`: the SGI goes to every target, whatever group the
///   target has it in (in a single security state, `GICD_CTLR.DS = 1`,
///   it generates Group 1 SGIs and Group 0 ones where the target has the
///   SGI in Group 0).
/// - `ICC_SGI0R_EL1`: a Group 0 SGI; it reaches only the targets that
///   have the SGI in Group 0 (`GICR_IGROUPR0` bit clear). Linux puts
///   every SGI in Group 1, so for it these reach nobody.
/// - `ICC_ASGI1R_EL1`: the alternate group, Secure Group 1 from
///   Non-secure: with one security state there is no other Group 1, and
///   it behaves as `ICC_SGI0R_EL1` (Group 0 targets only).
///
/// An SGI that reaches a target goes through its mailbox like any other;
/// the list register the GICv3 backend writes is Group 1 (this example's
/// guests handle every interrupt in Group 1).
pub(crate) fn sysreg<V>(v: &mut Vcpu<V>, iss: u32, gicv3: bool) -> Option<Option<SliceEnd>> {
    let reg = iss & ISS_SYSREG_MASK;
    let group0_only = match reg {
        ISS_ICC_SGI1R => false,
        ISS_ICC_SGI0R | ISS_ICC_ASGI1R => true,
        _ => return None,
    };
    if iss & 1 != 0 {
        // A read: these registers are write-only; MRS is UNDEFINED, left
        // to the caller's message.
        return None;
    }
    let rt = ((iss >> 5) & 0x1f) as usize;
    let value = v.regs.x.get(rt).copied().unwrap_or(0);
    let (sgi, targets) = platform::vgic3::sgi1r_targets(value, v.index, smp().vcpus);
    let targets = if group0_only {
        critical_section::with(|cs| VGIC3.borrow_ref(cs).sgi_group0_targets(sgi, targets))
    } else {
        targets
    };
    send_sgi(v.index, sgi, targets, gicv3);
    v.regs.pc += 4;
    Some(None)
}

/// The guest's GICv3 distributor and redistributors (shared by every
/// CPU; the critical section is a lock across CPUs).
static VGIC3: critical_section::Mutex<RefCell<Vgic3>> =
    critical_section::Mutex::new(RefCell::new(Vgic3::new(1)));
/// The guest's GICv2 distributor (shared, as [`VGIC3`]).
static VGIC2: critical_section::Mutex<RefCell<Vgic2>> =
    critical_section::Mutex::new(RefCell::new(Vgic2::new(1)));
/// The GIC this run gives the guest: 2 or 3 (0 before [`prepare`]).
static GIC: AtomicU8 = AtomicU8::new(0);

/// What the library holds of `v`'s timer lines (as pending PPIs) and what
/// its list registers hold pending and active (SGIs, the timer PPIs).
fn live<G: HostIrqs>(v: &mut Vcpu<G::Vgic>, gic: &mut G) -> Live {
    let levels = v.timer.levels();
    let bit = |level: bool, intid: IntId| if level { 1_u32 << intid.get() } else { 0 };
    let (lr_pending, lr_active) = gic.private_lr_state(&mut v.vgic);
    Live {
        pending: bit(levels.virtual_timer, v.timer.vtimer().irq())
            | bit(levels.physical_timer, v.timer.ptimer().irq())
            | lr_pending,
        active: lr_active,
    }
}

/// A stage 2 data abort (`ESR_EL2` `esr`): the GICv3 distributor and
/// redistributors are emulated; anything else ends the run with what the
/// guest touched.
pub(crate) fn data_abort<G: HostIrqs>(
    v: &mut Vcpu<G::Vgic>,
    host: &mut G,
    esr: u64,
) -> Option<SliceEnd> {
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
            platform::mmio::device_at(ipa)
        ),
    };
    let reg = usize::from(a.reg);
    let stored = a.store_value(v.regs.x.get(reg).copied().unwrap_or(0));
    if (UART_BASE..UART_END).contains(&ipa) {
        let value = uart_access(v.index, ipa - UART_BASE, a, stored);
        if !a.write
            && let Some(x) = v.regs.x.get_mut(reg)
        {
            *x = a.load_value(u64::from(value));
        }
        v.regs.pc += 4;
        return None;
    }
    let live = live(v, host);
    let gic = GIC.load(Ordering::Relaxed);
    let loaded = critical_section::with(|cs| {
        let mut g3 = VGIC3.borrow_ref_mut(cs);
        let mut g2 = VGIC2.borrow_ref_mut(cs);
        let gicr_end = GICR_BASE + GICR_STRIDE * g3.cpus() as u64;
        let (value, write) = match ipa {
            GICD_BASE..GICD_END if gic == 3 => {
                if a.write {
                    (0, g3.write_distributor(ipa - GICD_BASE, a.width, stored))
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
        // SGIs made pending are delivered as IPIs (their pending state is
        // then the list registers'); the timer PPIs' pending state is
        // their timer's line (see `pend_private`): neither stays in the
        // register file.
        if let Write::Pend { vcpu, intids } = write {
            let taken = intids & (SGI_BITS | timer_ppis());
            if gic == 3 {
                g3.clear_private_pending(vcpu, taken);
            } else {
                g2.clear_private_pending(vcpu, taken);
            }
        }
        Some((value, write))
    });
    let Some((value, write)) = loaded else {
        fail!(
            "hv: linux: vCPU {} {} {} bytes at IPA {ipa:#x} ({}), PC {:#x}: not emulated; \
             ending the run",
            v.index,
            if a.write { "stored" } else { "loaded" },
            a.width.bytes(),
            platform::mmio::device_at(ipa),
            v.regs.pc
        )
    };
    if a.write {
        // The UART's SPI may have been enabled, disabled or routed.
        update_uart_target(v.index);
    }
    match write {
        Write::Done => {}
        Write::Pend { vcpu, intids } => pend_private(v.index, vcpu, intids, gic == 3),
        Write::Unpend { vcpu, intids } => unpend_private(v.index, vcpu, intids, gic == 3),
        Write::PendSpis { first, intids } => note_kept_pending(v.index, first, intids),
        Write::Sgi { intid, targets } => send_sgi(v.index, intid, targets, false),
    }
    if !a.write
        && let Some(x) = v.regs.x.get_mut(reg)
    {
        *x = a.load_value(value);
    }
    v.regs.pc += 4;
    None
}

/// The guest's UART and the line of output it is collecting.
struct Console {
    uart: Pl011,
    line: LineBuffer,
    /// Lines printed.
    lines: u64,
}

/// The guest's console (shared by every CPU, as [`VGIC3`]).
static CONSOLE: critical_section::Mutex<RefCell<Console>> =
    critical_section::Mutex::new(RefCell::new(Console {
        uart: Pl011::new(),
        line: LineBuffer::new(),
        lines: 0,
    }));
/// The vCPU (index + 1) the UART's SPI is pending for; 0: none (its
/// line low, the SPI disabled or routed nowhere).
static UART_TARGET: AtomicUsize = AtomicUsize::new(0);
/// Per vCPU: whether its virtual line for the UART's SPI is high (what
/// [`sync_uart_line`] last set in its list registers).
static UART_RAISED: [AtomicBool; MAX_VCPUS] = [const { AtomicBool::new(false) }; MAX_VCPUS];
/// How many times a vCPU's virtual UART line went high.
static UART_RAISES: AtomicU64 = AtomicU64::new(0);

/// A guest access at `offset` in the PL011's page (`stored`: what a
/// store writes). Returns what a load reads.
fn uart_access(vcpu: usize, offset: u64, a: MmioAccess, stored: u64) -> u32 {
    let value = critical_section::with(|cs| {
        let mut c = CONSOLE.borrow_ref_mut(cs);
        let value = if a.write {
            if let Effect::Transmit(byte) = c.uart.write(offset, a.width, stored) {
                let printed = c.line.push(byte).map(print_guest_line).is_some();
                if printed {
                    c.line.clear();
                    c.lines += 1;
                }
            }
            0
        } else {
            c.uart.read(offset, a.width)
        };
        UART_WANTS_INPUT.store(c.uart.wants_input(), Ordering::Relaxed);
        value
    });
    update_uart_target(vcpu);
    value
}

/// Whether the guest's UART is ready for input ([`Pl011::wants_input`]
/// after its last change).
static UART_WANTS_INPUT: AtomicBool = AtomicBool::new(false);
/// Bytes of input handed to the guest's UART.
static UART_INPUT: AtomicU64 = AtomicU64::new(0);

/// Hands a byte the host's UART received (the console's input) to the
/// guest's UART, if it is ready for one (vCPU `from` is about to run).
fn poll_input(from: usize) {
    if !UART_WANTS_INPUT.load(Ordering::Relaxed) {
        return;
    }
    let Some(byte) = crate::console::read_byte() else {
        return;
    };
    critical_section::with(|cs| {
        let mut c = CONSOLE.borrow_ref_mut(cs);
        if c.uart.receive(byte) {
            UART_INPUT.fetch_add(1, Ordering::Relaxed);
        }
        UART_WANTS_INPUT.store(c.uart.wants_input(), Ordering::Relaxed);
    });
    update_uart_target(from);
}

/// Prints a line of the guest's output and a newline. A line that could
/// pass for one of the hypervisor's gets a `guest: ` prefix. Called in
/// the console's critical section, so no other CPU prints in between.
fn print_guest_line(line: &[u8]) {
    if pl011::looks_like_hypervisor(line) {
        write_bytes(b"guest: ");
    }
    write_bytes(line);
    write_bytes(b"\n");
}

/// Prints what is left of the guest's last line (the run is ending) and
/// the console's figures.
fn flush_console() {
    let lines = critical_section::with(|cs| {
        let mut c = CONSOLE.borrow_ref_mut(cs);
        if !c.line.pending().is_empty() {
            print_guest_line(c.line.pending());
            c.line.clear();
            c.lines += 1;
        }
        c.lines
    });
    println!(
        "hv: linux: console: {lines} lines out and {} bytes in through the emulated PL011; its \
         interrupt (INTID {UART_INTID}) raised {} times",
        UART_INPUT.load(Ordering::Relaxed),
        UART_RAISES.load(Ordering::Relaxed)
    );
}

/// Recomputes which vCPU the UART's SPI is pending for, after vCPU
/// `from` changed the UART or the distributor; a vCPU on another CPU
/// whose line changes is kicked, to see it at its next entry.
fn update_uart_target(from: usize) {
    let gic = GIC.load(Ordering::Relaxed);
    let target = critical_section::with(|cs| {
        if !CONSOLE.borrow_ref(cs).uart.line() {
            return None;
        }
        match gic {
            3 => VGIC3.borrow_ref(cs).spi_target(UART_INTID),
            2 => VGIC2.borrow_ref(cs).spi_target(UART_INTID),
            _ => None,
        }
    });
    let new = target.map_or(0, |t| t + 1);
    let old = UART_TARGET.swap(new, Ordering::AcqRel);
    if old == new {
        return;
    }
    let s = smp();
    for vcpu in [old, new].into_iter().filter_map(|n| n.checked_sub(1)) {
        if s.host_cpu_of(vcpu) != s.host_cpu_of(from) {
            crate::gic::kick(gic == 3, s.host_cpu_of(vcpu));
        }
    }
}

/// Whether the UART's SPI is pending for `vcpu`.
fn uart_line_for(vcpu: usize) -> bool {
    UART_TARGET.load(Ordering::Acquire) == vcpu + 1
}

/// Before entering `v` (loaded on this CPU): its virtual line for the
/// UART's SPI follows [`uart_line_for`]. Raising it again while it is
/// high is harmless (the backend keeps one list register per INTID) and
/// makes it pending again once the guest has deactivated it with the
/// line still high, as a level-sensitive interrupt is.
fn sync_uart_line<G: HostIrqs>(v: &mut Vcpu<G::Vgic>, gic: &mut G) {
    poll_input(v.index);
    let Some(raised) = UART_RAISED.get(v.index) else {
        return;
    };
    let want = uart_line_for(v.index);
    let was = raised.load(Ordering::Relaxed);
    if !want && !was {
        return;
    }
    let Ok(intid) = IntId::new(UART_INTID) else {
        return;
    };
    if let Err(e) = gic.chip(&mut v.vgic).set_virtual_level(intid, want) {
        fail!(
            "hv: linux: UART interrupt (INTID {UART_INTID}) to vCPU {}: {e:?}",
            v.index
        );
    }
    if want && !was {
        UART_RAISES.fetch_add(1, Ordering::Relaxed);
    }
    raised.store(want, Ordering::Relaxed);
}

/// INTIDs 0..=15.
const SGI_BITS: u32 = 0xffff;
/// The timer's PPIs (bit n = INTID n), as the guest's device tree names
/// them.
fn timer_ppis() -> u32 {
    TimerPpis::qemu_virt().mask()
}
/// Per vCPU: SGIs (bit n = SGI n) a `GICR_ICPENDR0` write took back, to
/// be withdrawn from its list registers at its next entry.
static SGIS_UNPENDED: [AtomicU32; MAX_VCPUS] = [const { AtomicU32::new(0) }; MAX_VCPUS];
/// Whether the run has said that a pending state set through the
/// distributor is kept but not delivered.
static KEPT_PENDING_SAID: AtomicBool = AtomicBool::new(false);

/// vCPU `from` made the SGIs/PPIs `intids` of vCPU `vcpu` pending through
/// the distributor (`GICR_ISPENDR0`, GICv2 `GICD_ISPENDR0`):
///
/// - SGIs (GICv3; GICv2 ignores these bits): delivered to `vcpu` as the
///   IPI they name, as if sent by `ICC_SGI1R_EL1`;
/// - the timer PPIs: ignored. Their pending state is their timer's line
///   as the library holds it (what `GICR_ISPENDR0` reads): the virtual
///   timer's is forwarded with the HW bit, whose pending state is the
///   physical PPI's, and a set-pending would have the guest take a timer
///   interrupt its timer never raised;
/// - other PPIs: no device of this machine signals them; the pending bit
///   is kept in the register file (it reads back, `ICPENDR0` clears it)
///   and not delivered (said once per run).
fn pend_private(from: usize, vcpu: usize, intids: u32, gicv3: bool) {
    let sgis = intids & SGI_BITS;
    for sgi in (0..16).filter(|n| sgis & (1 << n) != 0) {
        send_sgi(from, sgi, 1 << vcpu, gicv3);
    }
    let kept = intids & !(SGI_BITS | timer_ppis());
    if kept != 0 {
        note_kept_pending(from, 0, kept);
    }
}

/// vCPU `from` cleared the pending state of the SGIs/PPIs `intids` of
/// vCPU `vcpu` (`GICR_ICPENDR0`, GICv2 `GICD_ICPENDR0`): SGIs not yet
/// taken by the guest are taken back (from its mailbox now, from its list
/// registers at its next entry); the timer PPIs' pending state is their
/// line (see [`pend_private`]); other PPIs' bits are cleared in the
/// register file.
fn unpend_private(from: usize, vcpu: usize, intids: u32, gicv3: bool) {
    let sgis = intids & SGI_BITS;
    if sgis == 0 {
        return;
    }
    if let (Some(m), Some(u)) = (SGIS.get(vcpu), SGIS_UNPENDED.get(vcpu)) {
        m.withdraw(sgis);
        u.fetch_or(sgis, Ordering::AcqRel);
    }
    let s = smp();
    if s.host_cpu_of(vcpu) != s.host_cpu_of(from) {
        crate::gic::kick(gicv3, s.host_cpu_of(vcpu));
    }
}

/// Says (once per run) that vCPU `from` made interrupts pending through
/// the distributor that no device of this machine signals (bit n = INTID
/// `first + n`): their pending bit is kept in the register file, readable
/// and clearable, and not delivered.
fn note_kept_pending(from: usize, first: u32, intids: u32) {
    if !KEPT_PENDING_SAID.swap(true, Ordering::Relaxed) {
        println!(
            "hv: linux: vCPU {from} made INTIDs {first}+{intids:#x} pending through the \
             distributor: kept in its registers, not delivered (no device signals them; said \
             once)"
        );
    }
}

/// Before entering `v`: withdraws the SGIs a `GICR_ICPENDR0` write took
/// back that are still pending (not active) in its list registers.
fn withdraw_unpended<G: HostIrqs>(v: &mut Vcpu<G::Vgic>, gic: &mut G) {
    let Some(u) = SGIS_UNPENDED.get(v.index) else {
        return;
    };
    if u.load(Ordering::Relaxed) == 0 {
        return;
    }
    let sgis = u.swap(0, Ordering::AcqRel);
    let mut chip = gic.chip(&mut v.vgic);
    for sgi in (0..16).filter(|n| sgis & (1 << n) != 0) {
        let Ok(intid) = IntId::new(sgi) else { continue };
        if let Err(e) = chip.set_virtual_level(intid, false) {
            fail!(
                "hv: linux: withdrawing SGI {sgi} from vCPU {}: {e:?}",
                v.index
            );
        }
    }
}

/// The Linux guest's CPUs other than the first that are done (their
/// statistics added to [`CPU1_STATS`]).
static CPUS_DONE: AtomicUsize = AtomicUsize::new(0);
/// How long the first CPU waits for the others' statistics at the end
/// (they are kicked and see the power-off at their next exit or idle
/// wake-up, which a loaded host running QEMU's CPU threads can delay by
/// far more than the 200 ms this once was): 2 s.
const COLLECT_WAIT_US: u64 = 2_000_000;

impl<G: HostIrqs> Hyp<G>
where
    G::Vgic: Default,
{
    /// Starts the CPUs 1..`host_cpus` for vCPUs 1.. (one each).
    pub(crate) fn start_linux_cpus(&mut self, host_cpus: usize) {
        let (config, gic) = (self.config, self.gic_version);
        for cpu in 1..host_cpus {
            // SAFETY: CPU1_STACK is used only by the CPU started here, once
            // (MAX_VCPUS is 2: one other CPU); the initial page table maps
            // it for both CPUs alike.
            let started = unsafe {
                aarch64_rt::start_core::<smccc::Smc, _, 16>(
                    cpu as u64,
                    &raw mut crate::migrate::CPU1_STACK,
                    move || crate::el2::secondary_main(config, gic),
                )
            };
            if let Err(e) = started {
                fail!("hv: linux: cannot start CPU {cpu} (run QEMU with -smp {host_cpus}): {e}");
            }
        }
    }

    /// Another CPU of the Linux guest: runs its vCPU (index = its
    /// `MPIDR_EL1.Aff0`, off until a CPU_ON) until the guest ends the run,
    /// hands its statistics to the first CPU and waits for good.
    pub(crate) fn linux_secondary(mut self) -> ! {
        let mut vcpus = [self.new_vcpu(this_cpu())];
        self.run_vcpus(&mut vcpus);
        critical_section::with(|cs| CPU1_STATS.borrow_ref_mut(cs).add(&self.stats));
        CPUS_DONE.fetch_add(1, Ordering::Release);
        crate::migrate::park_forever()
    }

    /// The first CPU, at the end: waits (at most [`COLLECT_WAIT_US`]) for
    /// the other CPUs' statistics and adds them.
    pub(crate) fn collect_linux_cpus(&mut self) {
        let others = smp().host_cpus.saturating_sub(1);
        if others == 0 {
            return;
        }
        let deadline = self.now() + self.clock.ticks_us(COLLECT_WAIT_US);
        while CPUS_DONE.load(Ordering::Acquire) < others && self.now() < deadline {
            core::hint::spin_loop();
        }
        let done = CPUS_DONE.load(Ordering::Acquire);
        if done < others {
            println!(
                "hv: linux: {} of {others} other CPUs handed in their statistics within {} ms: \
                 the figures below leave the rest out",
                done,
                COLLECT_WAIT_US / 1000
            );
        }
        let mut other = crate::hyp::Stats::default();
        critical_section::with(|cs| other = *CPU1_STATS.borrow_ref(cs));
        self.exits_by_cpu = [self.stats.exits, other.exits];
        self.stats.add(&other);
    }
}
