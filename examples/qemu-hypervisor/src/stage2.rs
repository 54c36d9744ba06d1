//! The guests' stage 2 translation: RAM identity-mapped (for an external
//! guest only its own 128 MiB from 0x4800_0000), and with GICv2 the
//! GIC CPU interface's guest-physical address (`GICC`, 0x0801_0000) backed
//! by the virtual CPU interface (`GICV`, 0x0804_0000). Nothing else is
//! mapped, so any other device access by a guest is a stage 2 fault.

use core::cell::UnsafeCell;

use qemu_hypervisor::config::{EXTERNAL_GUEST_ADDR, EXTERNAL_GUEST_SIZE};

use crate::sysreg::write_sysreg;

/// One 4 KiB translation table.
#[repr(C, align(4096))]
struct Table(UnsafeCell<[u64; 512]>);

// SAFETY: the tables are written only by `build`, on the boot CPU before any
// guest runs or any other CPU starts; afterwards only the MMU reads them.
unsafe impl Sync for Table {}

static L1: Table = Table(UnsafeCell::new([0; 512]));
static L2_LOW: Table = Table(UnsafeCell::new([0; 512]));
static L3_GIC: Table = Table(UnsafeCell::new([0; 512]));
static L2_RAM: Table = Table(UnsafeCell::new([0; 512]));

/// Valid + table (levels 1/2) or page (level 3).
const TABLE_OR_PAGE: u64 = 0b11;
/// Valid block (levels 1/2).
const BLOCK: u64 = 0b01;
/// Stage 2 MemAttr: normal, inner and outer write-back.
const S2_NORMAL: u64 = 0b1111 << 2;
/// Stage 2 MemAttr: device nGnRE.
const S2_DEVICE: u64 = 0b0001 << 2;
/// S2AP: read and write.
const S2_RW: u64 = 0b11 << 6;
/// Inner shareable.
const SH_INNER: u64 = 0b11 << 8;
/// Access flag.
const AF: u64 = 1 << 10;

/// Guest RAM: the second GiB of the IPA space (QEMU `virt` RAM).
const RAM_BASE: u64 = 0x4000_0000;
/// The GICv2 CPU interface as the guest sees it.
pub(crate) const GICC_IPA: u64 = 0x0801_0000;
/// The GICv2 virtual CPU interface (QEMU `virt`).
pub(crate) const GICV_PA: u64 = 0x0804_0000;

/// Fills the tables. With `map_gicv`, the two pages at [`GICC_IPA`] go to
/// [`GICV_PA`]. With `external_only`, only the external guest's memory
/// ([`EXTERNAL_GUEST_ADDR`], [`EXTERNAL_GUEST_SIZE`], 2 MiB blocks) is
/// mapped, not the rest of RAM, where the hypervisor lives; otherwise the
/// whole GiB from 0x4000_0000 (the built-in guests are part of the image).
///
/// # Safety
///
/// Call once, on the boot CPU, before any guest runs and before any other
/// CPU starts.
pub(crate) unsafe fn build(map_gicv: bool, external_only: bool) {
    // SAFETY: the caller guarantees no other access to the tables.
    let (l1, l2, l3, l2_ram) = unsafe {
        (
            &mut *L1.0.get(),
            &mut *L2_LOW.0.get(),
            &mut *L3_GIC.0.get(),
            &mut *L2_RAM.0.get(),
        )
    };
    l1[0] = L2_LOW.0.get() as u64 | TABLE_OR_PAGE;
    if external_only {
        let first = usize::try_from((EXTERNAL_GUEST_ADDR - RAM_BASE) >> 21).unwrap_or(0);
        let count = usize::try_from(EXTERNAL_GUEST_SIZE >> 21).unwrap_or(0);
        for (n, e) in l2_ram.iter_mut().enumerate().skip(first).take(count) {
            *e = (RAM_BASE + ((n as u64) << 21)) | BLOCK | S2_NORMAL | S2_RW | SH_INNER | AF;
        }
        l1[1] = L2_RAM.0.get() as u64 | TABLE_OR_PAGE;
    } else {
        l1[1] = RAM_BASE | BLOCK | S2_NORMAL | S2_RW | SH_INNER | AF;
    }
    if map_gicv {
        let gic_2m = GICC_IPA & !0x1f_ffff;
        let l2_index = usize::try_from(gic_2m >> 21).unwrap_or(0);
        if let Some(e) = l2.get_mut(l2_index) {
            *e = L3_GIC.0.get() as u64 | TABLE_OR_PAGE;
        }
        let first = usize::try_from((GICC_IPA - gic_2m) >> 12).unwrap_or(0);
        for page in 0..2 {
            if let Some(e) = l3.get_mut(first + page) {
                *e = (GICV_PA + (page as u64) * 0x1000) | TABLE_OR_PAGE | S2_DEVICE | S2_RW | AF;
            }
        }
    }
    crate::sysreg::dsb_sy();
}

/// `VTCR_EL2`: 4 GiB IPA space (T0SZ 32) starting at level 1 (SL0 1), 4 KiB
/// granule, write-back inner-shareable walks, 40-bit PA, RES1 bit 31.
const VTCR: u64 = 32 | (1 << 6) | (1 << 8) | (1 << 10) | (0b11 << 12) | (0b010 << 16) | (1 << 31);

/// Turns the stage 2 tables on for guests of this CPU (VMID 0).
pub(crate) fn install() {
    // SAFETY: the tables were built by `build`; they only take effect for
    // EL1/EL0 once HCR_EL2.VM is set, and no guest runs yet on this CPU.
    unsafe {
        write_sysreg!(vtcr_el2, VTCR);
        write_sysreg!(vttbr_el2, L1.0.get() as u64);
        core::arch::asm!(
            "tlbi vmalls12e1",
            "dsb nsh",
            options(nostack, preserves_flags)
        );
    }
    crate::sysreg::isb();
}
