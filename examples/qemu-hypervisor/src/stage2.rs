//! The guests' stage 2 translation, identity-mapped (IPA = PA):
//!
//! - an external guest: its own 128 MiB from 0x4800_0000, read/write;
//! - the built-in guests (linked into the hypervisor image): the image's
//!   code and read-only data read-only and executable, and their own
//!   [`GuestMemory`](crate::guest::GuestMemory) pages (states, stacks)
//!   read/write and execute-never; nothing else of the image, so the
//!   hypervisor's data, stacks, statistics and these tables are out of
//!   their reach;
//! - with GICv2, the GIC CPU interface's guest-physical address (`GICC`,
//!   0x0801_0000) backed by the virtual CPU interface (`GICV`, 0x0804_0000).
//!
//! Nothing else is mapped, so any other access by a guest is a stage 2
//! fault, which ends the run.

use core::cell::UnsafeCell;
use core::ops::Range;

use qemu_hypervisor::config::{EXTERNAL_GUEST_ADDR, EXTERNAL_GUEST_SIZE};

use crate::sysreg::write_sysreg;

/// One 4 KiB translation table.
#[repr(C, align(4096))]
struct Table(UnsafeCell<[u64; 512]>);

// SAFETY: the tables are written only by `build`, on the boot CPU before any
// guest runs or any other CPU starts; afterwards only the MMU reads them.
unsafe impl Sync for Table {}

impl Table {
    const fn new() -> Self {
        Self(UnsafeCell::new([0; 512]))
    }

    fn addr(&self) -> u64 {
        self.0.get() as u64
    }
}

static L1: Table = Table::new();
static L2_LOW: Table = Table::new();
static L3_GIC: Table = Table::new();
static L2_RAM: Table = Table::new();
/// Page tables for the built-in guests' pages: each covers 2 MiB, enough
/// for the 15 MiB image.
const L3_RAM_COUNT: usize = 8;
static L3_RAM: [Table; L3_RAM_COUNT] = [const { Table::new() }; L3_RAM_COUNT];

/// Valid + table (levels 1/2) or page (level 3).
const TABLE_OR_PAGE: u64 = 0b11;
/// Valid block (levels 1/2).
const BLOCK: u64 = 0b01;
/// Stage 2 MemAttr: normal, inner and outer write-back.
const S2_NORMAL: u64 = 0b1111 << 2;
/// Stage 2 MemAttr: device nGnRE.
const S2_DEVICE: u64 = 0b0001 << 2;
/// S2AP: read only.
const S2_RO: u64 = 0b01 << 6;
/// S2AP: read and write.
const S2_RW: u64 = 0b11 << 6;
/// Inner shareable.
const SH_INNER: u64 = 0b11 << 8;
/// Access flag.
const AF: u64 = 1 << 10;
/// Stage 2 XN (bit 54): no execution at EL1 or EL0.
const S2_XN: u64 = 1 << 54;

/// Guest RAM: the second GiB of the IPA space (QEMU `virt` RAM).
const RAM_BASE: u64 = 0x4000_0000;
/// The GICv2 CPU interface as the guest sees it.
pub(crate) const GICC_IPA: u64 = 0x0801_0000;
/// The GICv2 virtual CPU interface (QEMU `virt`).
pub(crate) const GICV_PA: u64 = 0x0804_0000;

/// What of RAM the guests get.
pub(crate) enum GuestRam {
    /// The external guest's memory ([`EXTERNAL_GUEST_ADDR`],
    /// [`EXTERNAL_GUEST_SIZE`], 2 MiB blocks).
    External,
    /// The built-in guests: `code` (the image's code and read-only data)
    /// read-only, `data` (their own pages) read/write; 4 KiB pages.
    BuiltIn { code: Range<u64>, data: Range<u64> },
    /// An unmodified Linux guest (`platform::boot`): `ram` in 2 MiB
    /// blocks. Its devices (the GIC distributor and redistributors, the
    /// PL011) are unmapped: the hypervisor emulates them on data aborts.
    Linux { ram: Range<u64> },
}

/// Why [`build`] could not map the guests' memory.
#[derive(Debug)]
pub(crate) enum Stage2Error {
    /// A page outside the first GiB of RAM, or more page tables needed
    /// than [`L3_RAM_COUNT`].
    OutOfReach(u64),
}

impl core::fmt::Display for Stage2Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfReach(page) => write!(
                f,
                "page {page:#x} is outside the first GiB of RAM or needs more than \
                 {L3_RAM_COUNT} page tables"
            ),
        }
    }
}

/// Fills the tables for `ram`; with `map_gicv`, the two pages at
/// [`GICC_IPA`] go to [`GICV_PA`].
///
/// # Safety
///
/// Call once, on the boot CPU, before any guest runs and before any other
/// CPU starts.
pub(crate) unsafe fn build(map_gicv: bool, ram: &GuestRam) -> Result<(), Stage2Error> {
    // SAFETY: the caller guarantees no other access to the tables.
    let (l1, l2, l3, l2_ram) = unsafe {
        (
            &mut *L1.0.get(),
            &mut *L2_LOW.0.get(),
            &mut *L3_GIC.0.get(),
            &mut *L2_RAM.0.get(),
        )
    };
    l1[0] = L2_LOW.addr() | TABLE_OR_PAGE;
    l1[1] = L2_RAM.addr() | TABLE_OR_PAGE;
    match ram {
        GuestRam::External => {
            let first = usize::try_from((EXTERNAL_GUEST_ADDR - RAM_BASE) >> 21).unwrap_or(0);
            let count = usize::try_from(EXTERNAL_GUEST_SIZE >> 21).unwrap_or(0);
            for (n, e) in l2_ram.iter_mut().enumerate().skip(first).take(count) {
                *e = (RAM_BASE + ((n as u64) << 21)) | BLOCK | S2_NORMAL | S2_RW | SH_INNER | AF;
            }
        }
        GuestRam::BuiltIn { code, data } => {
            let mut pages = PageMapper {
                l2: l2_ram,
                used: [None; L3_RAM_COUNT],
            };
            pages.map(code.clone(), S2_NORMAL | S2_RO | SH_INNER | AF)?;
            pages.map(data.clone(), S2_NORMAL | S2_RW | SH_INNER | AF | S2_XN)?;
        }
        GuestRam::Linux { ram } => {
            let blocks = ram.clone().step_by(1 << 21);
            for block in blocks {
                let index = block
                    .checked_sub(RAM_BASE)
                    .and_then(|o| usize::try_from(o >> 21).ok())
                    .and_then(|i| l2_ram.get_mut(i))
                    .ok_or(Stage2Error::OutOfReach(block))?;
                *index = block | BLOCK | S2_NORMAL | S2_RW | SH_INNER | AF;
            }
        }
    }
    if map_gicv {
        let gic_2m = GICC_IPA & !0x1f_ffff;
        let l2_index = usize::try_from(gic_2m >> 21).unwrap_or(0);
        if let Some(e) = l2.get_mut(l2_index) {
            *e = L3_GIC.addr() | TABLE_OR_PAGE;
        }
        let first = usize::try_from((GICC_IPA - gic_2m) >> 12).unwrap_or(0);
        for page in 0..2 {
            if let Some(e) = l3.get_mut(first + page) {
                *e = (GICV_PA + (page as u64) * 0x1000)
                    | TABLE_OR_PAGE
                    | S2_DEVICE
                    | S2_RW
                    | AF
                    | S2_XN;
            }
        }
    }
    crate::sysreg::dsb_sy();
    Ok(())
}

/// Maps 4 KiB pages of the RAM GiB, taking level 3 tables from [`L3_RAM`].
struct PageMapper<'a> {
    l2: &'a mut [u64; 512],
    /// The level 2 index each table of [`L3_RAM`] serves.
    used: [Option<usize>; L3_RAM_COUNT],
}

impl PageMapper<'_> {
    /// Maps every page that `range` touches with `attrs`.
    fn map(&mut self, range: Range<u64>, attrs: u64) -> Result<(), Stage2Error> {
        let mut page = range.start & !0xfff;
        while page < range.end {
            let offset = page
                .checked_sub(RAM_BASE)
                .filter(|&o| o < 1 << 30)
                .ok_or(Stage2Error::OutOfReach(page))?;
            let l2_index =
                usize::try_from(offset >> 21).map_err(|_| Stage2Error::OutOfReach(page))?;
            let slot = match self.used.iter().position(|&u| u == Some(l2_index)) {
                Some(slot) => slot,
                None => {
                    let slot = self
                        .used
                        .iter()
                        .position(Option::is_none)
                        .ok_or(Stage2Error::OutOfReach(page))?;
                    if let Some(u) = self.used.get_mut(slot) {
                        *u = Some(l2_index);
                    }
                    let table = L3_RAM.get(slot).ok_or(Stage2Error::OutOfReach(page))?;
                    if let Some(e) = self.l2.get_mut(l2_index) {
                        *e = table.addr() | TABLE_OR_PAGE;
                    }
                    slot
                }
            };
            let table = L3_RAM.get(slot).ok_or(Stage2Error::OutOfReach(page))?;
            // SAFETY: `build`'s caller guarantees no other access to the
            // tables; this is the only reference to this one right now.
            let l3 = unsafe { &mut *table.0.get() };
            let index = usize::try_from((offset >> 12) & 0x1ff).unwrap_or(0);
            if let Some(e) = l3.get_mut(index) {
                *e = page | TABLE_OR_PAGE | attrs;
            }
            page += 0x1000;
        }
        Ok(())
    }
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
        write_sysreg!(vttbr_el2, L1.addr());
        core::arch::asm!(
            "tlbi vmalls12e1",
            "dsb nsh",
            options(nostack, preserves_flags)
        );
    }
    crate::sysreg::isb();
}

unsafe extern "C" {
    /// The start of the image's code (aarch64-rt's `image.ld`).
    static text_begin: u8;
    /// The end of its read-only data.
    static rodata_end: u8;
}

/// The image's code and read-only data: what the built-in guests execute
/// and read.
pub(crate) fn image_code() -> Range<u64> {
    core::ptr::addr_of!(text_begin) as u64..core::ptr::addr_of!(rodata_end) as u64
}
