//! Register layouts and values of the GICv3: the redistributor frames (for
//! [`safe_mmio`]), the list register value [`ListRegister`], and the bits of
//! the CPU interface system registers this crate uses.
//!
//! Every offset and field position follows the *GIC Architecture
//! Specification, GIC architecture version 3 and version 4* (Arm IHI 0069),
//! chapter "Redistributor registers" for the frames and "System registers"
//! for `ICC_*`/`ICH_*`. The offsets are checked at compile time.

use core::fmt;
use core::mem::{offset_of, size_of};

use safe_mmio::fields::{ReadPure, ReadPureWrite};

/// Size of one 64 KiB GIC register frame.
pub const FRAME_SIZE: usize = 0x1_0000;

/// `RD_base`: the first frame of a redistributor (control, identification,
/// power management).
///
/// Only the registers this crate uses are named; the rest are reserved
/// padding so that the struct spans the whole 64 KiB frame.
#[repr(C)]
pub struct RdFrame {
    /// `GICR_CTLR`, offset 0x0000.
    pub ctlr: ReadPureWrite<u32>,
    /// `GICR_IIDR`, offset 0x0004.
    pub iidr: ReadPure<u32>,
    /// `GICR_TYPER`, offset 0x0008 (64-bit): affinity in bits 63:32, `Last`
    /// in bit 4, `VLPIS` in bit 1.
    pub typer: ReadPure<u64>,
    /// `GICR_STATUSR`, offset 0x0010.
    pub statusr: ReadPureWrite<u32>,
    /// `GICR_WAKER`, offset 0x0014: `ProcessorSleep` bit 1,
    /// `ChildrenAsleep` bit 2.
    pub waker: ReadPureWrite<u32>,
    _reserved: [u32; (FRAME_SIZE - 0x18) / 4],
}

/// `SGI_base`: the second frame of a redistributor, the SGI and PPI
/// (INTIDs 0..=31) configuration of its CPU.
///
/// Each `IS*`/`IC*` pair is write-one-to-set / write-one-to-clear; reads of
/// either return the current state and have no side effect.
#[repr(C)]
pub struct SgiFrame {
    _reserved0: [u32; 0x80 / 4],
    /// `GICR_IGROUPR0`, offset 0x0080: bit *n* set puts INTID *n* in Group 1.
    pub igroupr0: ReadPureWrite<u32>,
    _reserved1: [u32; (0x100 - 0x84) / 4],
    /// `GICR_ISENABLER0`, offset 0x0100: write 1 to enable (unmask).
    pub isenabler0: ReadPureWrite<u32>,
    _reserved2: [u32; (0x180 - 0x104) / 4],
    /// `GICR_ICENABLER0`, offset 0x0180: write 1 to disable (mask).
    pub icenabler0: ReadPureWrite<u32>,
    _reserved3: [u32; (0x200 - 0x184) / 4],
    /// `GICR_ISPENDR0`, offset 0x0200: write 1 to set pending.
    pub ispendr0: ReadPureWrite<u32>,
    _reserved4: [u32; (0x280 - 0x204) / 4],
    /// `GICR_ICPENDR0`, offset 0x0280: write 1 to clear pending.
    pub icpendr0: ReadPureWrite<u32>,
    _reserved5: [u32; (0x300 - 0x284) / 4],
    /// `GICR_ISACTIVER0`, offset 0x0300: write 1 to set active.
    pub isactiver0: ReadPureWrite<u32>,
    _reserved6: [u32; (0x380 - 0x304) / 4],
    /// `GICR_ICACTIVER0`, offset 0x0380: write 1 to clear active
    /// (deactivate).
    pub icactiver0: ReadPureWrite<u32>,
    _reserved7: [u32; (0x400 - 0x384) / 4],
    /// `GICR_IPRIORITYR0..7`, offset 0x0400: one byte per INTID 0..=31
    /// (byte-accessible).
    pub ipriorityr: [ReadPureWrite<u8>; 32],
    _reserved8: [u32; (0xC00 - 0x420) / 4],
    /// `GICR_ICFGR0`/`GICR_ICFGR1`, offset 0x0C00: two bits per INTID,
    /// bit 1 of each pair set for edge-triggered.
    pub icfgr: [ReadPureWrite<u32>; 2],
    _reserved9: [u32; (0xD00 - 0xC08) / 4],
    /// `GICR_IGRPMODR0`, offset 0x0D00.
    pub igrpmodr0: ReadPureWrite<u32>,
    _reserved10: [u32; (0xE00 - 0xD04) / 4],
    /// `GICR_NSACR`, offset 0x0E00.
    pub nsacr: ReadPureWrite<u32>,
    _reserved11: [u32; (FRAME_SIZE - 0xE04) / 4],
}

/// One GICv3 redistributor: `RD_base` followed by `SGI_base`, 128 KiB.
///
/// A GICv4 redistributor (`GICR_TYPER.VLPIS` set) has two more frames
/// (`VLPI_base` and a reserved one), so it spans two consecutive
/// `Redistributor`s of a region; [`HostGic::new`](crate::HostGic::new)
/// steps over them.
#[repr(C)]
pub struct Redistributor {
    /// The control frame.
    pub rd: RdFrame,
    /// The SGI/PPI frame.
    pub sgi: SgiFrame,
}

const _: () = {
    assert!(offset_of!(RdFrame, typer) == 0x08);
    assert!(offset_of!(RdFrame, waker) == 0x14);
    assert!(size_of::<RdFrame>() == FRAME_SIZE);
    assert!(offset_of!(SgiFrame, igroupr0) == 0x080);
    assert!(offset_of!(SgiFrame, isenabler0) == 0x100);
    assert!(offset_of!(SgiFrame, icenabler0) == 0x180);
    assert!(offset_of!(SgiFrame, ispendr0) == 0x200);
    assert!(offset_of!(SgiFrame, icpendr0) == 0x280);
    assert!(offset_of!(SgiFrame, isactiver0) == 0x300);
    assert!(offset_of!(SgiFrame, icactiver0) == 0x380);
    assert!(offset_of!(SgiFrame, ipriorityr) == 0x400);
    assert!(offset_of!(SgiFrame, icfgr) == 0xC00);
    assert!(offset_of!(SgiFrame, igrpmodr0) == 0xD00);
    assert!(offset_of!(SgiFrame, nsacr) == 0xE00);
    assert!(size_of::<SgiFrame>() == FRAME_SIZE);
    assert!(offset_of!(Redistributor, sgi) == FRAME_SIZE);
    assert!(size_of::<Redistributor>() == 2 * FRAME_SIZE);
};

/// `GICR_TYPER.VLPIS`, bit 1: GICv4 virtual LPIs, the redistributor has
/// four frames instead of two.
pub const GICR_TYPER_VLPIS: u64 = 1 << 1;
/// `GICR_TYPER.Last`, bit 4: the last redistributor of its region.
pub const GICR_TYPER_LAST: u64 = 1 << 4;
/// `GICR_WAKER.ProcessorSleep`, bit 1.
pub const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
/// `GICR_WAKER.ChildrenAsleep`, bit 2.
pub const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

/// `ICC_CTLR_EL1.EOImode`, bit 1: a write to `ICC_EOIR1_EL1` only drops
/// the priority; `ICC_DIR_EL1` deactivates.
pub const ICC_CTLR_EOIMODE: u64 = 1 << 1;
/// `ICC_SRE_EL2.SRE`, bit 0: use the system register interface at EL2.
pub const ICC_SRE_SRE: u64 = 1 << 0;
/// `ICC_SRE_EL2.Enable`, bit 3: lets EL1 access `ICC_SRE_EL1`.
pub const ICC_SRE_ENABLE: u64 = 1 << 3;
/// `ICC_IGRPEN1_EL1.Enable`, bit 0.
pub const ICC_IGRPEN_ENABLE: u64 = 1 << 0;
/// `ICC_IAR1_EL1.INTID`, bits 23:0.
pub const ICC_IAR_INTID_MASK: u64 = 0xFF_FFFF;

/// `ICH_HCR_EL2.En`, bit 0: the virtual CPU interface is enabled.
pub const ICH_HCR_EN: u64 = 1 << 0;
/// `ICH_HCR_EL2.UIE`, bit 1: maintenance interrupt when at most one list
/// register holds a valid interrupt (underflow).
pub const ICH_HCR_UIE: u64 = 1 << 1;
/// `ICH_MISR_EL2.EOI`, bit 0: an EOI maintenance interrupt is asserted.
pub const ICH_MISR_EOI: u64 = 1 << 0;
/// `ICH_MISR_EL2.U`, bit 1: underflow maintenance interrupt.
pub const ICH_MISR_U: u64 = 1 << 1;
/// `ICH_VTR_EL2.ListRegs`, bits 4:0: number of list registers minus one.
pub const ICH_VTR_LIST_REGS_MASK: u64 = 0x1F;
/// `ICH_VTR_EL2.PREbits`, bits 28:26: preemption bits minus one.
pub const ICH_VTR_PREBITS_SHIFT: u32 = 26;

/// The most list registers an implementation has (`ICH_LR0_EL2` to
/// `ICH_LR15_EL2`).
pub const MAX_LIST_REGISTERS: usize = 16;
/// The most active priority registers per group (`ICH_AP1R0_EL2` to
/// `ICH_AP1R3_EL2`).
pub const MAX_ACTIVE_PRIORITY_REGISTERS: usize = 4;

/// The number of list registers `ICH_VTR_EL2` reports (`ListRegs + 1`).
#[must_use]
pub const fn list_register_count(vtr: u64) -> usize {
    // Masked to 5 bits: the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation)]
    let n = ((vtr & ICH_VTR_LIST_REGS_MASK) as usize).saturating_add(1);
    if n > MAX_LIST_REGISTERS {
        MAX_LIST_REGISTERS
    } else {
        n
    }
}

/// The number of `ICH_AP0R<n>_EL2`/`ICH_AP1R<n>_EL2` registers implemented,
/// from `ICH_VTR_EL2.PREbits`: 1 for 5 preemption bits, 2 for 6, 4 for 7.
#[must_use]
pub const fn active_priority_register_count(vtr: u64) -> usize {
    match (vtr >> ICH_VTR_PREBITS_SHIFT) & 0x7 {
        6 => 4,
        5 => 2,
        _ => 1,
    }
}

/// The state of a list register, `ICH_LR<n>_EL2.State`, bits 63:62.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LrState {
    /// 0b00: the list register holds no interrupt (or one whose EOI
    /// maintenance is still to be handled).
    Invalid,
    /// 0b01: pending.
    Pending,
    /// 0b10: active.
    Active,
    /// 0b11: pending and active.
    PendingActive,
}

impl LrState {
    #[inline]
    const fn bits(self) -> u64 {
        match self {
            Self::Invalid => 0b00,
            Self::Pending => 0b01,
            Self::Active => 0b10,
            Self::PendingActive => 0b11,
        }
    }

    #[inline]
    const fn from_bits(bits: u64) -> Self {
        match bits & 0b11 {
            0b00 => Self::Invalid,
            0b01 => Self::Pending,
            0b10 => Self::Active,
            _ => Self::PendingActive,
        }
    }

    /// Active or pending and active.
    #[must_use]
    #[inline]
    pub const fn is_active(self) -> bool {
        matches!(self, Self::Active | Self::PendingActive)
    }

    /// Pending or pending and active.
    #[must_use]
    #[inline]
    pub const fn is_pending(self) -> bool {
        matches!(self, Self::Pending | Self::PendingActive)
    }
}

/// A value of a list register, `ICH_LR<n>_EL2`.
///
/// | bits | field | meaning |
/// |---|---|---|
/// | 63:62 | State | [`LrState`] |
/// | 61 | HW | the virtual interrupt is backed by the physical `pINTID` |
/// | 60 | Group | 1: Group 1 (signalled as vIRQ), 0: Group 0 |
/// | 55:48 | Priority | the virtual priority |
/// | 44:32 | pINTID | with HW = 1: the physical INTID deactivated with this one |
/// | 41 | EOI | with HW = 0: maintenance interrupt when the guest deactivates it |
/// | 31:0 | vINTID | the virtual INTID |
///
/// With HW = 0, bits 44:42 and 40:32 are RES0 and bit 41 is EOI; with
/// HW = 1 there is no EOI bit.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct ListRegister(u64);

impl ListRegister {
    /// An empty list register: invalid, no interrupt.
    pub const EMPTY: Self = Self(0);

    const STATE_SHIFT: u32 = 62;
    const HW: u64 = 1 << 61;
    const GROUP1: u64 = 1 << 60;
    const PRIORITY_SHIFT: u32 = 48;
    const PINTID_SHIFT: u32 = 32;
    const PINTID_MASK: u64 = 0x1FFF;
    const EOI: u64 = 1 << 41;
    const VINTID_MASK: u64 = 0xFFFF_FFFF;

    /// The largest physical INTID the 13-bit `pINTID` field holds.
    pub const MAX_PINTID: u32 = 0x1FFF;

    /// A list register value exactly as read from the register.
    #[must_use]
    #[inline]
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The raw register value.
    #[must_use]
    #[inline]
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// A software (HW = 0) virtual interrupt `vintid` in `state`, Group 1,
    /// with `priority`, no EOI maintenance.
    #[must_use]
    #[inline]
    pub const fn software(vintid: u32, state: LrState, priority: u8) -> Self {
        Self(
            (state.bits() << Self::STATE_SHIFT)
                | Self::GROUP1
                | ((priority as u64) << Self::PRIORITY_SHIFT)
                | vintid as u64,
        )
    }

    /// A hardware (HW = 1) virtual interrupt `vintid` backed by the
    /// physical `pintid`, in `state`, Group 1, with `priority`.
    ///
    /// Returns `None` if `pintid` does not fit the 13-bit field
    /// (above [`MAX_PINTID`](Self::MAX_PINTID)).
    #[must_use]
    #[inline]
    pub const fn hardware(vintid: u32, pintid: u32, state: LrState, priority: u8) -> Option<Self> {
        if pintid > Self::MAX_PINTID {
            return None;
        }
        Some(Self(
            Self::software(vintid, state, priority).0
                | Self::HW
                | ((pintid as u64) << Self::PINTID_SHIFT),
        ))
    }

    /// The virtual INTID, bits 31:0.
    #[must_use]
    #[inline]
    pub const fn vintid(self) -> u32 {
        // Masked to 32 bits: the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let v = (self.0 & Self::VINTID_MASK) as u32;
        v
    }

    /// The physical INTID when HW = 1, bits 44:32; `None` for a software
    /// interrupt.
    #[must_use]
    #[inline]
    pub const fn pintid(self) -> Option<u32> {
        if self.is_hw() {
            // Masked to 13 bits: the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            let p = ((self.0 >> Self::PINTID_SHIFT) & Self::PINTID_MASK) as u32;
            Some(p)
        } else {
            None
        }
    }

    /// The priority, bits 55:48.
    #[must_use]
    pub const fn priority(self) -> u8 {
        // Masked to 8 bits: the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let p = ((self.0 >> Self::PRIORITY_SHIFT) & 0xFF) as u8;
        p
    }

    /// Group 1 (bit 60 set) rather than Group 0.
    #[must_use]
    pub const fn is_group1(self) -> bool {
        self.0 & Self::GROUP1 != 0
    }

    /// HW, bit 61: backed by a physical interrupt.
    #[must_use]
    #[inline]
    pub const fn is_hw(self) -> bool {
        self.0 & Self::HW != 0
    }

    /// EOI, bit 41, meaningful with HW = 0 only: the guest's deactivation
    /// raises an EOI maintenance interrupt.
    #[must_use]
    #[inline]
    pub const fn eoi_maintenance(self) -> bool {
        !self.is_hw() && self.0 & Self::EOI != 0
    }

    /// The state, bits 63:62.
    #[must_use]
    #[inline]
    pub const fn state(self) -> LrState {
        LrState::from_bits(self.0 >> Self::STATE_SHIFT)
    }

    /// This value with another state.
    #[must_use]
    #[inline]
    pub const fn with_state(self, state: LrState) -> Self {
        Self((self.0 & !(0b11 << Self::STATE_SHIFT)) | (state.bits() << Self::STATE_SHIFT))
    }

    /// This value with the EOI bit (bit 41) set or cleared. Has no effect
    /// with HW = 1, where bit 41 belongs to `pINTID`.
    #[must_use]
    #[inline]
    pub const fn with_eoi_maintenance(self, eoi: bool) -> Self {
        if self.is_hw() {
            self
        } else if eoi {
            Self(self.0 | Self::EOI)
        } else {
            Self(self.0 & !Self::EOI)
        }
    }

    /// This value in Group 1 (`true`) or Group 0.
    #[must_use]
    pub const fn with_group1(self, group1: bool) -> Self {
        if group1 {
            Self(self.0 | Self::GROUP1)
        } else {
            Self(self.0 & !Self::GROUP1)
        }
    }

    /// Whether the register is free for a new interrupt, as
    /// `ICH_ELRSR_EL2` reports it: state invalid, and not waiting for an
    /// EOI maintenance interrupt to be handled.
    #[must_use]
    #[inline]
    pub const fn is_free(self) -> bool {
        matches!(self.state(), LrState::Invalid) && !self.eoi_maintenance()
    }

    /// Whether the guest has deactivated an interrupt injected with EOI
    /// maintenance, and the maintenance is still to be handled (the
    /// register's bit in `ICH_EISR_EL2`).
    #[must_use]
    #[inline]
    pub const fn needs_eoi_maintenance(self) -> bool {
        matches!(self.state(), LrState::Invalid) && self.eoi_maintenance()
    }
}

impl fmt::Debug for ListRegister {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("ListRegister");
        s.field("vintid", &self.vintid())
            .field("state", &self.state())
            .field("priority", &self.priority())
            .field("group1", &self.is_group1());
        match self.pintid() {
            Some(p) => s.field("pintid", &p),
            None => s.field("eoi", &self.eoi_maintenance()),
        };
        s.finish()
    }
}

/// A CPU's affinity as the GIC identifies it: `Aff3.Aff2.Aff1.Aff0`
/// packed into 32 bits, the layout of `GICR_TYPER` bits 63:32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Affinity(pub u32);

impl Affinity {
    /// The affinity of the CPU whose `MPIDR_EL1` is `mpidr` (Aff0 bits 7:0,
    /// Aff1 15:8, Aff2 23:16, Aff3 39:32).
    #[must_use]
    pub const fn from_mpidr(mpidr: u64) -> Self {
        let low = mpidr & 0xFF_FFFF;
        let aff3 = (mpidr >> 32) & 0xFF;
        // At most 32 bits are set: the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let packed = ((aff3 << 24) | low) as u32;
        Self(packed)
    }

    /// The affinity a redistributor's `GICR_TYPER` reports.
    #[must_use]
    pub const fn from_typer(typer: u64) -> Self {
        // Shifted down by 32: the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let packed = (typer >> 32) as u32;
        Self(packed)
    }
}

impl fmt::Display for Affinity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [aff3, aff2, aff1, aff0] = self.0.to_be_bytes();
        write!(f, "{aff3}.{aff2}.{aff1}.{aff0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardware_lr_encodes_every_field() {
        // vINTID 27, pINTID 27, priority 0xA0, Group 1, HW, pending:
        //   State  63:62 = 0b01           -> 0x4000_0000_0000_0000
        //   HW     61    = 1              -> 0x2000_0000_0000_0000
        //   Group  60    = 1              -> 0x1000_0000_0000_0000
        //   Prio   55:48 = 0xA0           -> 0x00A0_0000_0000_0000
        //   pINTID 44:32 = 27 = 0x1B      -> 0x0000_001B_0000_0000
        //   vINTID 31:0  = 27 = 0x1B      -> 0x0000_0000_0000_001B
        let lr = ListRegister::hardware(27, 27, LrState::Pending, 0xA0);
        assert_eq!(lr.map(ListRegister::bits), Some(0x70A0_001B_0000_001B));
        let lr = ListRegister::from_bits(0x70A0_001B_0000_001B);
        assert_eq!(lr.vintid(), 27);
        assert_eq!(lr.pintid(), Some(27));
        assert_eq!(lr.priority(), 0xA0);
        assert!(lr.is_group1());
        assert!(lr.is_hw());
        assert_eq!(lr.state(), LrState::Pending);
        assert!(!lr.eoi_maintenance());
    }

    #[test]
    fn largest_pintid_fills_bits_44_to_32() {
        // pINTID 0x1FFF -> bits 44:32 all ones = 0x0000_1FFF_0000_0000;
        // HW 0x2000_..., Group 0x1000_..., state invalid, priority 0,
        // vINTID 0x2000 (an LPI-sized number, bits 31:0).
        let lr = ListRegister::hardware(0x2000, 0x1FFF, LrState::Invalid, 0);
        assert_eq!(lr.map(ListRegister::bits), Some(0x3000_1FFF_0000_2000));
        assert_eq!(
            ListRegister::hardware(27, 0x2000, LrState::Pending, 0),
            None
        );
    }

    #[test]
    fn software_lr_with_eoi_uses_bit_41() {
        // vINTID 30, priority 0x80, Group 1, HW 0, EOI, pending:
        //   State 0b01 -> 0x4000_0000_0000_0000, Group -> 0x1000_...,
        //   Prio 0x80  -> 0x0080_0000_0000_0000,
        //   EOI bit 41 -> 0x0000_0200_0000_0000, vINTID 30 = 0x1E
        let lr = ListRegister::software(30, LrState::Pending, 0x80).with_eoi_maintenance(true);
        assert_eq!(lr.bits(), 0x5080_0200_0000_001E);
        assert!(lr.eoi_maintenance());
        assert_eq!(lr.pintid(), None);
        assert!(!lr.is_free());
        assert!(!lr.needs_eoi_maintenance());
    }

    #[test]
    fn states_decode_from_bits_63_62() {
        // State only, everything else zero (Group 0, vINTID 0).
        assert_eq!(ListRegister::from_bits(0).state(), LrState::Invalid);
        assert_eq!(
            ListRegister::from_bits(0x4000_0000_0000_0000).state(),
            LrState::Pending
        );
        assert_eq!(
            ListRegister::from_bits(0x8000_0000_0000_0000).state(),
            LrState::Active
        );
        assert_eq!(
            ListRegister::from_bits(0xC000_0000_0000_0000).state(),
            LrState::PendingActive
        );
        assert!(!ListRegister::from_bits(0x8000_0000_0000_0000).is_group1());
        let lr = ListRegister::from_bits(0x5000_0000_0000_0010);
        assert_eq!(
            lr.with_state(LrState::PendingActive).bits(),
            0xD000_0000_0000_0010
        );
        assert_eq!(lr.with_group1(false).bits(), 0x4000_0000_0000_0010);
    }

    #[test]
    fn free_and_eoi_maintenance_follow_elrsr_and_eisr() {
        // Invalid, HW 0, EOI 1: the guest EOI'd it, maintenance pending.
        let done = ListRegister::from_bits(0x1000_0200_0000_001E);
        assert!(done.needs_eoi_maintenance());
        assert!(!done.is_free());
        // Invalid, HW 1, pINTID 27 (bit 41 is pINTID bit 9, not EOI): free.
        let hw = ListRegister::from_bits(0x3000_001B_0000_001B);
        assert!(hw.is_free());
        assert!(!hw.needs_eoi_maintenance());
        // The EOI setter leaves a HW register alone.
        assert_eq!(hw.with_eoi_maintenance(true), hw);
        assert!(ListRegister::EMPTY.is_free());
    }

    #[test]
    fn vtr_gives_list_and_active_priority_register_counts() {
        // QEMU's ICH_VTR_EL2 = 0x9000_0003: PRIbits 0b100 (5 bits),
        // PREbits 0b100 (5 bits), ListRegs 3 -> 4 list registers, 1 APR.
        assert_eq!(list_register_count(0x9000_0003), 4);
        assert_eq!(active_priority_register_count(0x9000_0003), 1);
        // PREbits 0b110 (7 bits) at 28:26 = 0x1800_0000, ListRegs 15.
        assert_eq!(list_register_count(0x1800_000F), 16);
        assert_eq!(active_priority_register_count(0x1800_000F), 4);
        // PREbits 0b101 (6 bits) = 0x1400_0000.
        assert_eq!(active_priority_register_count(0x1400_0000), 2);
    }

    #[test]
    fn affinity_packs_like_gicr_typer() {
        // MPIDR: Aff3 0x01 (39:32), Aff2 0x02, Aff1 0x03, Aff0 0x04, plus
        // bit 31 (RES1) and MT bit 24 which are not affinity.
        let mpidr = 0x0000_0001_8102_0304;
        assert_eq!(Affinity::from_mpidr(mpidr), Affinity(0x0102_0304));
        assert_eq!(
            Affinity::from_typer(0x0102_0304_0000_0010),
            Affinity(0x0102_0304)
        );
        assert_eq!(std::format!("{}", Affinity(0x0102_0304)), "1.2.3.4");
    }
}
