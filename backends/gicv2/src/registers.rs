//! GICv2 register blocks and the list register value.
//!
//! Layouts follow the *Arm Generic Interrupt Controller Architecture
//! Specification, GIC architecture version 2.0* (IHI 0048B): table 4-1
//! (Distributor), table 4-2 (CPU interface) and table 5-1 (virtual interface
//! control). Every offset is checked at compile time at the end of this file.
//!
//! Field wrappers say how a register may be accessed (safe-mmio):
//! [`ReadPure`] reads without side effects, [`ReadOnly`] reads *with* side
//! effects (`GICC_IAR` acknowledges), [`WriteOnly`] cannot be read,
//! [`ReadPureWrite`] is an ordinary register.

use core::fmt;

use safe_mmio::fields::{ReadOnly, ReadPure, ReadPureWrite, WriteOnly};
#[cfg(test)]
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::Error;

/// `GICD_CTLR` bit 0: forward interrupts from the Distributor to the CPU
/// interfaces (`EnableGrp1` in the Non-secure view, `Enable`/`EnableGrp0`
/// without the Security Extensions).
pub const GICD_CTLR_ENABLE: u32 = 1 << 0;

/// `GICC_CTLR` bit 0: signal interrupts to the processor (`EnableGrp1` in
/// the Non-secure view, `EnableGrp0` without the Security Extensions).
pub const GICC_CTLR_ENABLE: u32 = 1 << 0;
/// `GICC_CTLR` bit 9, `EOImodeNS` (`EOImode` without the Security
/// Extensions): a write to `GICC_EOIR` only drops the running priority, and
/// a separate write to `GICC_DIR` deactivates the interrupt.
pub const GICC_CTLR_EOIMODE_NS: u32 = 1 << 9;

/// `GICH_HCR` bit 0, `En`: enables the virtual CPU interface.
pub const GICH_HCR_EN: u32 = 1 << 0;
/// `GICH_HCR` bit 1, `UIE`: maintenance interrupt while at most one list
/// register holds a valid interrupt (underflow).
pub const GICH_HCR_UIE: u32 = 1 << 1;
/// `GICH_HCR` bit 3, `NPIE`: maintenance interrupt while no list register
/// holds a pending interrupt.
pub const GICH_HCR_NPIE: u32 = 1 << 3;

/// `GICH_MISR` bit 0, `EOI`: at least one `GICH_EISRn` bit is set.
pub const GICH_MISR_EOI: u32 = 1 << 0;
/// `GICH_MISR` bit 1, `U`: the underflow condition of `GICH_HCR.UIE` holds.
pub const GICH_MISR_U: u32 = 1 << 1;

/// `GICH_VTR` bits 5:0, `ListRegs`: the number of list registers minus one.
pub const GICH_VTR_LISTREGS_MASK: u32 = 0x3f;

/// The most list registers a GICv2 can have (`GICH_LR0`..`GICH_LR63`).
pub const MAX_LIST_REGISTERS: usize = 64;

/// The INTID `GICC_IAR` returns when no interrupt is pending (spurious).
pub const SPURIOUS_INTID: u32 = 1023;

/// The largest INTID that names a real interrupt; 1020..=1023 are special.
pub const MAX_INTID: u32 = 1019;

/// The size of the `GICV` frame (the guest's view of its CPU interface,
/// `GICV_DIR` at 0x1000 included) that the hypervisor maps at the guest's
/// `GICC` address in stage 2.
pub const GICV_SIZE: usize = 0x2000;

/// The Distributor, `GICD_*` (IHI 0048B table 4-1).
///
/// Registers of INTIDs 0..=31 (word 0 of the bit arrays, bytes 0..=31 of
/// the byte arrays) are banked: each CPU accesses its own copy.
#[derive(Debug)]
#[cfg_attr(test, derive(FromBytes, Immutable, IntoBytes, KnownLayout))]
#[repr(C, align(4))]
pub struct GicdRegs {
    /// 0x000 `GICD_CTLR`: Distributor control.
    pub ctlr: ReadPureWrite<u32>,
    /// 0x004 `GICD_TYPER`: interrupt controller type.
    pub typer: ReadPure<u32>,
    /// 0x008 `GICD_IIDR`: implementer identification.
    pub iidr: ReadPure<u32>,
    _reserved0: [u32; 29],
    /// 0x080 `GICD_IGROUPRn`: interrupt group.
    pub igroupr: [ReadPureWrite<u32>; 32],
    /// 0x100 `GICD_ISENABLERn`: set-enable (write 1 to enable).
    pub isenabler: [ReadPureWrite<u32>; 32],
    /// 0x180 `GICD_ICENABLERn`: clear-enable (write 1 to disable).
    pub icenabler: [ReadPureWrite<u32>; 32],
    /// 0x200 `GICD_ISPENDRn`: set-pending.
    pub ispendr: [ReadPureWrite<u32>; 32],
    /// 0x280 `GICD_ICPENDRn`: clear-pending.
    pub icpendr: [ReadPureWrite<u32>; 32],
    /// 0x300 `GICD_ISACTIVERn`: set-active (write 1 to activate).
    pub isactiver: [ReadPureWrite<u32>; 32],
    /// 0x380 `GICD_ICACTIVERn`: clear-active (write 1 to deactivate).
    pub icactiver: [ReadPureWrite<u32>; 32],
    /// 0x400 `GICD_IPRIORITYRn`, byte-accessible: one priority byte per
    /// INTID.
    pub ipriorityr: [ReadPureWrite<u8>; 1020],
    _reserved1: u32,
    /// 0x800 `GICD_ITARGETSRn`, byte-accessible: one CPU target byte per
    /// INTID (read-only for 0..=31).
    pub itargetsr: [ReadPureWrite<u8>; 1020],
    _reserved2: u32,
    /// 0xC00 `GICD_ICFGRn`: two configuration bits per INTID (bit 1 of
    /// each pair: edge-triggered).
    pub icfgr: [ReadPureWrite<u32>; 64],
    _impdef: [u32; 64],
    /// 0xE00 `GICD_NSACRn`: Non-secure access control.
    pub nsacr: [ReadPureWrite<u32>; 64],
    /// 0xF00 `GICD_SGIR`: software generated interrupts.
    pub sgir: WriteOnly<u32>,
    _reserved3: [u32; 3],
    /// 0xF10 `GICD_CPENDSGIRn`, byte-accessible: SGI clear-pending.
    pub cpendsgir: [ReadPureWrite<u8>; 16],
    /// 0xF20 `GICD_SPENDSGIRn`, byte-accessible: SGI set-pending.
    pub spendsgir: [ReadPureWrite<u8>; 16],
    _reserved4: [u32; 40],
    /// 0xFD0..=0xFFC: the identification registers (`ICPIDR4`.. `ICCIDR3`).
    pub id: [ReadPure<u32>; 12],
}

/// The physical CPU interface, `GICC_*` (IHI 0048B table 4-2), banked per
/// CPU.
#[derive(Debug)]
#[cfg_attr(test, derive(FromBytes, Immutable, IntoBytes, KnownLayout))]
#[repr(C, align(4))]
pub struct GiccRegs {
    /// 0x0000 `GICC_CTLR`: CPU interface control.
    pub ctlr: ReadPureWrite<u32>,
    /// 0x0004 `GICC_PMR`: priority mask.
    pub pmr: ReadPureWrite<u32>,
    /// 0x0008 `GICC_BPR`: binary point.
    pub bpr: ReadPureWrite<u32>,
    /// 0x000C `GICC_IAR`: interrupt acknowledge (reading acknowledges).
    pub iar: ReadOnly<u32>,
    /// 0x0010 `GICC_EOIR`: end of interrupt (priority drop with
    /// `EOImodeNS = 1`).
    pub eoir: WriteOnly<u32>,
    /// 0x0014 `GICC_RPR`: running priority.
    pub rpr: ReadPure<u32>,
    /// 0x0018 `GICC_HPPIR`: highest priority pending interrupt.
    pub hppir: ReadPure<u32>,
    /// 0x001C `GICC_ABPR`: aliased binary point.
    pub abpr: ReadPureWrite<u32>,
    /// 0x0020 `GICC_AIAR`: aliased interrupt acknowledge.
    pub aiar: ReadOnly<u32>,
    /// 0x0024 `GICC_AEOIR`: aliased end of interrupt.
    pub aeoir: WriteOnly<u32>,
    /// 0x0028 `GICC_AHPPIR`: aliased highest priority pending interrupt.
    pub ahppir: ReadPure<u32>,
    _reserved0: [u32; 41],
    /// 0x00D0 `GICC_APRn`: active priorities.
    pub apr: [ReadPureWrite<u32>; 4],
    /// 0x00E0 `GICC_NSAPRn`: Non-secure active priorities.
    pub nsapr: [ReadPureWrite<u32>; 4],
    _reserved1: [u32; 3],
    /// 0x00FC `GICC_IIDR`: CPU interface identification.
    pub iidr: ReadPure<u32>,
    _reserved2: [u32; 960],
    /// 0x1000 `GICC_DIR`: deactivate interrupt.
    pub dir: WriteOnly<u32>,
}

/// The virtual interface control, `GICH_*` (IHI 0048B table 5-1): the
/// hypervisor's view of the virtual CPU interface of *this* CPU.
#[derive(Debug)]
#[cfg_attr(test, derive(FromBytes, Immutable, IntoBytes, KnownLayout))]
#[repr(C, align(4))]
pub struct GichRegs {
    /// 0x000 `GICH_HCR`: hypervisor control.
    pub hcr: ReadPureWrite<u32>,
    /// 0x004 `GICH_VTR`: VGIC type (number of list registers).
    pub vtr: ReadPure<u32>,
    /// 0x008 `GICH_VMCR`: virtual machine control (the guest's `GICV_CTLR`,
    /// `GICV_PMR` and `GICV_BPR`).
    pub vmcr: ReadPureWrite<u32>,
    _reserved0: u32,
    /// 0x010 `GICH_MISR`: maintenance interrupt status.
    pub misr: ReadPure<u32>,
    _reserved1: [u32; 3],
    /// 0x020 `GICH_EISR0`: EOI status of list registers 0..=31.
    pub eisr0: ReadPure<u32>,
    /// 0x024 `GICH_EISR1`: EOI status of list registers 32..=63.
    pub eisr1: ReadPure<u32>,
    _reserved2: [u32; 2],
    /// 0x030 `GICH_ELRSR0`: empty status of list registers 0..=31.
    pub elrsr0: ReadPure<u32>,
    /// 0x034 `GICH_ELRSR1`: empty status of list registers 32..=63.
    pub elrsr1: ReadPure<u32>,
    _reserved3: [u32; 46],
    /// 0x0F0 `GICH_APR`: the guest's active priorities.
    pub apr: ReadPureWrite<u32>,
    _reserved4: [u32; 3],
    /// 0x100 `GICH_LR0`..`GICH_LR63`: list registers, see [`ListRegister`].
    pub lr: [ReadPureWrite<u32>; MAX_LIST_REGISTERS],
}

/// The `State` field of a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LrState {
    /// 0b00: no interrupt.
    Invalid,
    /// 0b01: pending.
    Pending,
    /// 0b10: active.
    Active,
    /// 0b11: active and pending.
    PendingActive,
}

impl LrState {
    const fn bits(self) -> u32 {
        match self {
            Self::Invalid => 0b00,
            Self::Pending => 0b01,
            Self::Active => 0b10,
            Self::PendingActive => 0b11,
        }
    }

    /// Whether the state includes active (the guest has acknowledged the
    /// interrupt and not yet deactivated it).
    #[must_use]
    pub const fn is_active(self) -> bool {
        matches!(self, Self::Active | Self::PendingActive)
    }

    /// Whether the state includes pending.
    #[must_use]
    pub const fn is_pending(self) -> bool {
        matches!(self, Self::Pending | Self::PendingActive)
    }
}

/// A `GICH_LRn` value (IHI 0048B section 5.3.11, "List Registers").
///
/// | bits  | field      | meaning |
/// |-------|------------|---------|
/// | 9:0   | VirtualID  | the vINTID the guest sees |
/// | 19:10 | PhysicalID | HW = 1: the pINTID deactivated with the virtual one |
/// | 19    | EOI        | HW = 0: maintenance interrupt when the guest deactivates it |
/// | 12:10 | CPUID      | HW = 0: the source CPU of an SGI |
/// | 27:23 | Priority   | bits 7:3 of the virtual priority |
/// | 29:28 | State      | [`LrState`] |
/// | 30    | Grp1       | group 1 (else group 0) |
/// | 31    | HW         | hardware interrupt |
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct ListRegister(u32);

impl ListRegister {
    const VIRTUAL_ID_MASK: u32 = 0x3ff;
    const PHYSICAL_ID_SHIFT: u32 = 10;
    const PHYSICAL_ID_MASK: u32 = 0x3ff;
    const CPUID_MASK: u32 = 0x7;
    const EOI: u32 = 1 << 19;
    const PRIORITY_SHIFT: u32 = 23;
    const PRIORITY_MASK: u32 = 0x1f;
    const STATE_SHIFT: u32 = 28;
    const STATE_MASK: u32 = 0x3;
    const GROUP1: u32 = 1 << 30;
    const HW: u32 = 1 << 31;

    /// The empty list register: state invalid, everything zero.
    pub const EMPTY: Self = Self(0);

    /// A list register value exactly as read from `GICH_LRn`.
    #[must_use]
    pub const fn from_bits(bits: u32) -> Self {
        Self(bits)
    }

    /// The raw register value.
    #[must_use]
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// A pending software interrupt (HW = 0): `eoi` asks for a maintenance
    /// interrupt when the guest deactivates it, so that a level-sensitive
    /// line still high can be injected again. `priority` keeps its top five
    /// bits.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIntId`] unless `vintid` is at most 1019.
    pub const fn software(
        vintid: u32,
        priority: u8,
        group1: bool,
        eoi: bool,
    ) -> Result<Self, Error> {
        if vintid > MAX_INTID {
            return Err(Error::InvalidIntId(vintid));
        }
        let mut bits =
            vintid | Self::priority_bits(priority) | (LrState::Pending.bits() << Self::STATE_SHIFT);
        if eoi {
            bits |= Self::EOI;
        }
        if group1 {
            bits |= Self::GROUP1;
        }
        Ok(Self(bits))
    }

    /// A pending hardware interrupt (HW = 1): the guest's deactivation of
    /// `vintid` deactivates the physical `pintid`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIntId`] unless `vintid` is at most 1019;
    /// [`Error::InvalidPhysicalIntId`] unless `pintid` is a PPI or SPI,
    /// 16..=1019.
    pub const fn hardware(
        vintid: u32,
        pintid: u32,
        priority: u8,
        group1: bool,
    ) -> Result<Self, Error> {
        if vintid > MAX_INTID {
            return Err(Error::InvalidIntId(vintid));
        }
        if pintid < 16 || pintid > MAX_INTID {
            return Err(Error::InvalidPhysicalIntId(pintid));
        }
        let mut bits = Self::HW
            | vintid
            | (pintid << Self::PHYSICAL_ID_SHIFT)
            | Self::priority_bits(priority)
            | (LrState::Pending.bits() << Self::STATE_SHIFT);
        if group1 {
            bits |= Self::GROUP1;
        }
        Ok(Self(bits))
    }

    /// A pending software SGI `sgi` (0..=15) sent by the CPU `source`
    /// (0..=7): the guest's `GICC_IAR` returns the source in bits 12:10.
    /// No EOI maintenance: an SGI is edge-triggered.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIntId`] unless `sgi` is at most 15 and `source` at
    /// most 7 (reported as `sgi`).
    pub const fn sgi(sgi: u32, source: u32, priority: u8, group1: bool) -> Result<Self, Error> {
        if sgi > 15 || source > Self::CPUID_MASK {
            return Err(Error::InvalidIntId(sgi));
        }
        let mut bits = sgi
            | (source << Self::PHYSICAL_ID_SHIFT)
            | Self::priority_bits(priority)
            | (LrState::Pending.bits() << Self::STATE_SHIFT);
        if group1 {
            bits |= Self::GROUP1;
        }
        Ok(Self(bits))
    }

    const fn priority_bits(priority: u8) -> u32 {
        // Widening u8 -> u32; `u32::from` is not const.
        #[allow(clippy::cast_lossless, reason = "u8 to u32 widening in a const fn")]
        let p = (priority >> 3) as u32;
        p << Self::PRIORITY_SHIFT
    }

    /// The virtual INTID, bits 9:0.
    #[must_use]
    pub const fn virtual_id(self) -> u32 {
        self.0 & Self::VIRTUAL_ID_MASK
    }

    /// The physical INTID, bits 19:10, if this is a hardware interrupt.
    #[must_use]
    pub const fn physical_id(self) -> Option<u32> {
        if self.is_hw() {
            Some((self.0 >> Self::PHYSICAL_ID_SHIFT) & Self::PHYSICAL_ID_MASK)
        } else {
            None
        }
    }

    /// The source CPU of a software SGI, bits 12:10 (0 for a hardware
    /// interrupt).
    #[must_use]
    pub const fn source_cpu(self) -> u32 {
        if self.is_hw() {
            0
        } else {
            (self.0 >> Self::PHYSICAL_ID_SHIFT) & Self::CPUID_MASK
        }
    }

    /// Whether this is a hardware interrupt (HW, bit 31).
    #[must_use]
    pub const fn is_hw(self) -> bool {
        self.0 & Self::HW != 0
    }

    /// Whether a software interrupt asks for an EOI maintenance interrupt
    /// (EOI, bit 19; always `false` for a hardware interrupt).
    #[must_use]
    pub const fn eoi(self) -> bool {
        !self.is_hw() && self.0 & Self::EOI != 0
    }

    /// The virtual priority: the five bits 27:23 as bits 7:3.
    #[must_use]
    pub const fn priority(self) -> u8 {
        // Masked to five bits, shifted left by three: at most 0xf8.
        #[allow(clippy::cast_possible_truncation, reason = "the value is at most 0xf8")]
        let p = (((self.0 >> Self::PRIORITY_SHIFT) & Self::PRIORITY_MASK) << 3) as u8;
        p
    }

    /// Whether the interrupt is in group 1 (Grp1, bit 30).
    #[must_use]
    pub const fn is_group1(self) -> bool {
        self.0 & Self::GROUP1 != 0
    }

    /// The state, bits 29:28.
    #[must_use]
    pub const fn state(self) -> LrState {
        match (self.0 >> Self::STATE_SHIFT) & Self::STATE_MASK {
            0b00 => LrState::Invalid,
            0b01 => LrState::Pending,
            0b10 => LrState::Active,
            _ => LrState::PendingActive,
        }
    }

    /// The same value with another state.
    #[must_use]
    pub const fn with_state(self, state: LrState) -> Self {
        Self(
            (self.0 & !(Self::STATE_MASK << Self::STATE_SHIFT))
                | (state.bits() << Self::STATE_SHIFT),
        )
    }

    /// The same value asking (for a software interrupt) for an EOI
    /// maintenance interrupt. A hardware interrupt is returned unchanged:
    /// bit 19 is part of its physical INTID.
    #[must_use]
    pub const fn with_eoi(self) -> Self {
        if self.is_hw() {
            self
        } else {
            Self(self.0 | Self::EOI)
        }
    }

    /// Whether the register is empty as `GICH_ELRSRn` defines it: state
    /// invalid and either a hardware interrupt or no EOI maintenance
    /// requested. Only an empty register may be reused.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        matches!(self.state(), LrState::Invalid) && !self.eoi()
    }

    /// Whether the register has an outstanding EOI maintenance interrupt as
    /// `GICH_EISRn` defines it: state invalid, HW = 0 and EOI = 1.
    #[must_use]
    pub const fn eoi_maintenance(self) -> bool {
        matches!(self.state(), LrState::Invalid) && self.eoi()
    }
}

impl fmt::Debug for ListRegister {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ListRegister");
        d.field("bits", &format_args!("{:#010x}", self.0))
            .field("virtual_id", &self.virtual_id())
            .field("state", &self.state())
            .field("priority", &self.priority())
            .field("group1", &self.is_group1());
        match self.physical_id() {
            Some(p) => d.field("physical_id", &p),
            None => d.field("eoi", &self.eoi()),
        };
        d.finish()
    }
}

// IHI 0048B tables 4-1, 4-2 and 5-1: every offset the driver uses.
const _: () = {
    use core::mem::{offset_of, size_of};

    assert!(offset_of!(GicdRegs, ctlr) == 0x000);
    assert!(offset_of!(GicdRegs, typer) == 0x004);
    assert!(offset_of!(GicdRegs, iidr) == 0x008);
    assert!(offset_of!(GicdRegs, igroupr) == 0x080);
    assert!(offset_of!(GicdRegs, isenabler) == 0x100);
    assert!(offset_of!(GicdRegs, icenabler) == 0x180);
    assert!(offset_of!(GicdRegs, ispendr) == 0x200);
    assert!(offset_of!(GicdRegs, icpendr) == 0x280);
    assert!(offset_of!(GicdRegs, isactiver) == 0x300);
    assert!(offset_of!(GicdRegs, icactiver) == 0x380);
    assert!(offset_of!(GicdRegs, ipriorityr) == 0x400);
    assert!(offset_of!(GicdRegs, itargetsr) == 0x800);
    assert!(offset_of!(GicdRegs, icfgr) == 0xC00);
    assert!(offset_of!(GicdRegs, nsacr) == 0xE00);
    assert!(offset_of!(GicdRegs, sgir) == 0xF00);
    assert!(offset_of!(GicdRegs, cpendsgir) == 0xF10);
    assert!(offset_of!(GicdRegs, spendsgir) == 0xF20);
    assert!(offset_of!(GicdRegs, id) == 0xFD0);
    assert!(size_of::<GicdRegs>() == 0x1000);

    assert!(offset_of!(GiccRegs, ctlr) == 0x0000);
    assert!(offset_of!(GiccRegs, pmr) == 0x0004);
    assert!(offset_of!(GiccRegs, bpr) == 0x0008);
    assert!(offset_of!(GiccRegs, iar) == 0x000C);
    assert!(offset_of!(GiccRegs, eoir) == 0x0010);
    assert!(offset_of!(GiccRegs, rpr) == 0x0014);
    assert!(offset_of!(GiccRegs, hppir) == 0x0018);
    assert!(offset_of!(GiccRegs, abpr) == 0x001C);
    assert!(offset_of!(GiccRegs, aiar) == 0x0020);
    assert!(offset_of!(GiccRegs, aeoir) == 0x0024);
    assert!(offset_of!(GiccRegs, ahppir) == 0x0028);
    assert!(offset_of!(GiccRegs, apr) == 0x00D0);
    assert!(offset_of!(GiccRegs, nsapr) == 0x00E0);
    assert!(offset_of!(GiccRegs, iidr) == 0x00FC);
    assert!(offset_of!(GiccRegs, dir) == 0x1000);
    assert!(size_of::<GiccRegs>() == 0x1004);

    assert!(offset_of!(GichRegs, hcr) == 0x000);
    assert!(offset_of!(GichRegs, vtr) == 0x004);
    assert!(offset_of!(GichRegs, vmcr) == 0x008);
    assert!(offset_of!(GichRegs, misr) == 0x010);
    assert!(offset_of!(GichRegs, eisr0) == 0x020);
    assert!(offset_of!(GichRegs, eisr1) == 0x024);
    assert!(offset_of!(GichRegs, elrsr0) == 0x030);
    assert!(offset_of!(GichRegs, elrsr1) == 0x034);
    assert!(offset_of!(GichRegs, apr) == 0x0F0);
    assert!(offset_of!(GichRegs, lr) == 0x100);
    assert!(size_of::<GichRegs>() == 0x200);
};

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(r: Result<ListRegister, Error>) -> ListRegister {
        match r {
            Ok(lr) => lr,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn hardware_lr_encodes_as_the_spec_lays_it_out() {
        // HW=1 (bit 31)          0x8000_0000
        // Grp1=0 (bit 30)        0
        // State=pending (29:28)  0x1000_0000
        // Priority 0xa0>>3=0x14 at 27:23: 0x14<<23 = 0x0a00_0000
        // PhysicalID 27 at 19:10: 27<<10 = 0x6c00
        // VirtualID 27 at 9:0:   0x1b
        let lr = ok(ListRegister::hardware(27, 27, 0xa0, false));
        assert_eq!(lr.bits(), 0x9a00_6c1b);
        assert_eq!(lr.virtual_id(), 27);
        assert_eq!(lr.physical_id(), Some(27));
        assert!(lr.is_hw());
        assert!(!lr.eoi());
        assert_eq!(lr.state(), LrState::Pending);
        assert_eq!(lr.priority(), 0xa0);
        assert!(!lr.is_group1());
    }

    #[test]
    fn hardware_lr_with_distinct_ids_and_group1() {
        // HW 0x8000_0000 | Grp1 0x4000_0000 | pending 0x1000_0000
        // | priority 0xf8>>3=0x1f<<23 = 0x0f80_0000
        // | PhysicalID 1019=0x3fb<<10 = 0x000f_ec00 | VirtualID 20 = 0x14
        let lr = ok(ListRegister::hardware(20, 1019, 0xff, true));
        assert_eq!(lr.bits(), 0xdf8f_ec14);
        assert_eq!(lr.virtual_id(), 20);
        assert_eq!(lr.physical_id(), Some(1019));
        // Bit 19 belongs to the pINTID when HW = 1, never to EOI.
        assert!(!lr.eoi());
        assert_eq!(lr.priority(), 0xf8);
        assert!(lr.is_group1());
    }

    #[test]
    fn software_lr_encodes_eoi_at_bit_19() {
        // HW=0 | Grp1 0x4000_0000 | pending 0x1000_0000 | priority 0x0a00_0000
        // | EOI (bit 19) 0x0008_0000 | VirtualID 30 = 0x1e
        let lr = ok(ListRegister::software(30, 0xa0, true, true));
        assert_eq!(lr.bits(), 0x5a08_001e);
        assert_eq!(lr.physical_id(), None);
        assert!(lr.eoi());
        assert_eq!(lr.source_cpu(), 0);
        // Without EOI and in group 0: pending 0x1000_0000 | priority 0 | vINTID 1019.
        let lr = ok(ListRegister::software(1019, 0, false, false));
        assert_eq!(lr.bits(), 0x1000_03fb);
    }

    #[test]
    fn builds_a_pending_sgi_with_its_source_cpu() {
        let lr = ok(ListRegister::sgi(3, 5, 0xa0, true));
        assert_eq!(lr.virtual_id(), 3);
        assert_eq!(lr.source_cpu(), 5);
        assert_eq!(lr.state(), LrState::Pending);
        assert_eq!(lr.priority(), 0xa0);
        assert!(lr.is_group1() && !lr.is_hw() && !lr.eoi());
        assert_eq!(
            ListRegister::sgi(16, 0, 0, true),
            Err(Error::InvalidIntId(16))
        );
        assert_eq!(
            ListRegister::sgi(1, 8, 0, true),
            Err(Error::InvalidIntId(1))
        );
    }

    #[test]
    fn decodes_a_software_sgi_with_source_cpu() {
        // State active (0b10<<28 = 0x2000_0000) | CPUID 5 at 12:10 (0x1400) | vINTID 3.
        let lr = ListRegister::from_bits(0x2000_1403);
        assert_eq!(lr.state(), LrState::Active);
        assert_eq!(lr.source_cpu(), 5);
        assert_eq!(lr.virtual_id(), 3);
        assert_eq!(lr.physical_id(), None);
    }

    #[test]
    fn state_changes_keep_the_other_fields() {
        let lr = ok(ListRegister::hardware(27, 27, 0xa0, false));
        assert_eq!(lr.with_state(LrState::Active).bits(), 0xaa00_6c1b);
        assert_eq!(lr.with_state(LrState::PendingActive).bits(), 0xba00_6c1b);
        assert_eq!(lr.with_state(LrState::Invalid).bits(), 0x8a00_6c1b);
        // with_eoi leaves a hardware LR alone (bit 19 is pINTID there).
        assert_eq!(lr.with_eoi(), lr);
    }

    #[test]
    fn empty_and_eoi_maintenance_follow_elrsr_and_eisr() {
        assert!(ListRegister::EMPTY.is_empty());
        assert!(!ListRegister::EMPTY.eoi_maintenance());
        // Invalid software LR with EOI: not empty, EOI maintenance pending.
        let sw = ListRegister::from_bits(0x0008_001e);
        assert!(!sw.is_empty());
        assert!(sw.eoi_maintenance());
        // Invalid hardware LR with pINTID 600 (0x258 << 10 = 0x9_6000, so bit
        // 19 is set as part of the pINTID): empty all the same.
        let hw = ListRegister::from_bits(0x8009_601b);
        assert_eq!(hw.physical_id(), Some(600));
        assert!(hw.is_empty());
        assert!(!hw.eoi_maintenance());
        // Anything pending or active is neither.
        let pending = ListRegister::from_bits(0x1008_001e);
        assert!(!pending.is_empty() && !pending.eoi_maintenance());
    }

    #[test]
    fn rejects_reserved_intids() {
        assert_eq!(
            ListRegister::software(1020, 0, false, false),
            Err(Error::InvalidIntId(1020))
        );
        assert_eq!(
            ListRegister::hardware(1023, 27, 0, false),
            Err(Error::InvalidIntId(1023))
        );
        assert_eq!(
            ListRegister::hardware(27, 15, 0, false),
            Err(Error::InvalidPhysicalIntId(15))
        );
        assert_eq!(
            ListRegister::hardware(27, 1020, 0, false),
            Err(Error::InvalidPhysicalIntId(1020))
        );
    }
}
