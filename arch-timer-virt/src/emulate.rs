//! Trapped guest accesses to timer system registers.
//!
//! [`VcpuTimer::load`](crate::VcpuTimer::load) traps EL1 accesses to the
//! physical timer and counter (`CNTHCTL_EL2.EL1PCEN`/`EL1PCTEN` clear)
//! while the physical timer is emulated (see
//! [`TimerMap`](crate::TimerMap); a direct one is not trapped), so
//! a guest's `MRS`/`MSR` of `CNTP_CTL_EL0`, `CNTP_CVAL_EL0`,
//! `CNTP_TVAL_EL0` or `CNTPCT_EL0` exits to the hypervisor with exception
//! class 0x18. [`SysRegTrap::decode`] reads the syndrome and [`access`]
//! performs the access on the vCPU's emulated state. Virtual timer
//! registers, should a hypervisor trap them too, are handled the same way
//! (saved, changed in memory, restored).
//!
//! ```
//! use arch_timer_virt::emulate::{SysRegTrap, TimerSysReg};
//!
//! // ESR_EL2 ISS of `msr cntp_ctl_el0, x3`: Op0=3 Op2=1 Op1=3 CRn=14 Rt=3 CRm=2, write.
//! let iss = (3 << 20) | (1 << 17) | (3 << 14) | (14 << 10) | (3 << 5) | (2 << 1);
//! let trap = SysRegTrap::decode(iss).unwrap();
//! assert_eq!(trap.reg, TimerSysReg::PhysicalCtl);
//! assert_eq!((trap.rt, trap.is_read), (3, false));
//! ```

use crate::{Error, IrqChip, TimerHw, TimerId, TimerReg, VcpuTimer, VmTimer};

/// An EL0-encoded generic timer system register a guest can access.
///
/// `#[non_exhaustive]`: a later version may decode more of them (the
/// self-synchronized counts of FEAT_ECV, `CNTPCTSS_EL0`/`CNTVCTSS_EL0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimerSysReg {
    /// `CNTP_CTL_EL0`.
    PhysicalCtl,
    /// `CNTP_CVAL_EL0`.
    PhysicalCval,
    /// `CNTP_TVAL_EL0`.
    PhysicalTval,
    /// `CNTPCT_EL0` (and `CNTPCTSS_EL0`).
    PhysicalCount,
    /// `CNTV_CTL_EL0`.
    VirtualCtl,
    /// `CNTV_CVAL_EL0`.
    VirtualCval,
    /// `CNTV_TVAL_EL0`.
    VirtualTval,
    /// `CNTVCT_EL0` (and `CNTVCTSS_EL0`).
    VirtualCount,
}

impl TimerSysReg {
    /// The register with system register encoding `op0, op1, CRn, CRm,
    /// op2`, if it is one of these (Arm ARM D24.10).
    #[must_use]
    pub const fn from_encoding(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> Option<Self> {
        if op0 != 3 || op1 != 3 || crn != 14 {
            return None;
        }
        Some(match (crm, op2) {
            (0, 1 | 5) => Self::PhysicalCount,
            (0, 2 | 6) => Self::VirtualCount,
            (2, 0) => Self::PhysicalTval,
            (2, 1) => Self::PhysicalCtl,
            (2, 2) => Self::PhysicalCval,
            (3, 0) => Self::VirtualTval,
            (3, 1) => Self::VirtualCtl,
            (3, 2) => Self::VirtualCval,
            _ => return None,
        })
    }

    /// Which timer the register belongs to.
    #[must_use]
    pub const fn timer(self) -> TimerId {
        match self {
            Self::PhysicalCtl | Self::PhysicalCval | Self::PhysicalTval | Self::PhysicalCount => {
                TimerId::Physical
            }
            Self::VirtualCtl | Self::VirtualCval | Self::VirtualTval | Self::VirtualCount => {
                TimerId::Virtual
            }
        }
    }

    /// Which of the timer's registers it is.
    #[must_use]
    pub const fn reg(self) -> TimerReg {
        match self {
            Self::PhysicalCtl | Self::VirtualCtl => TimerReg::Ctl,
            Self::PhysicalCval | Self::VirtualCval => TimerReg::Cval,
            Self::PhysicalTval | Self::VirtualTval => TimerReg::Tval,
            Self::PhysicalCount | Self::VirtualCount => TimerReg::Cnt,
        }
    }

    /// Whether a guest may write it (the counts are read-only).
    #[must_use]
    pub const fn is_writable(self) -> bool {
        !matches!(self, Self::PhysicalCount | Self::VirtualCount)
    }
}

/// A decoded trapped `MRS`/`MSR` of a timer register.
///
/// `#[non_exhaustive]`: a later version may decode more of the syndrome.
/// Build one with [`SysRegTrap::decode`] or [`SysRegTrap::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct SysRegTrap {
    /// The register accessed.
    pub reg: TimerSysReg,
    /// The general-purpose register number (31 is XZR).
    pub rt: u8,
    /// `MRS` (read) rather than `MSR` (write).
    pub is_read: bool,
}

impl SysRegTrap {
    /// An access to `reg` through general-purpose register `rt` (31 is
    /// XZR), a read (`MRS`) if `is_read`: for a hypervisor that decodes the
    /// syndrome itself.
    #[must_use]
    pub const fn new(reg: TimerSysReg, rt: u8, is_read: bool) -> Self {
        Self { reg, rt, is_read }
    }

    /// Decodes the ISS of an `ESR_EL2` with exception class 0x18 (trapped
    /// `MSR`/`MRS`/system instruction): Op0 21:20, Op2 19:17, Op1 16:14,
    /// CRn 13:10, Rt 9:5, CRm 4:1, Direction 0 (1 = read). `None` if the
    /// register is not a timer register this module emulates.
    #[must_use]
    pub const fn decode(iss: u32) -> Option<Self> {
        match TimerSysReg::from_encoding(
            field(iss, 20, 0x3),
            field(iss, 14, 0x7),
            field(iss, 10, 0xf),
            field(iss, 1, 0xf),
            field(iss, 17, 0x7),
        ) {
            Some(reg) => Some(Self {
                reg,
                rt: field(iss, 5, 0x1f),
                is_read: iss & 1 == 1,
            }),
            None => None,
        }
    }
}

/// Bits `shift..shift + width of mask` of `iss`.
#[allow(clippy::cast_possible_truncation)] // masked to at most 5 bits first
const fn field(iss: u32, shift: u32, mask: u32) -> u8 {
    ((iss >> shift) & mask) as u8
}

/// A guest's access: a read, or a write of a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `MRS`: the value is returned.
    Read,
    /// `MSR` of this value.
    Write(u64),
}

/// Performs a guest's trapped access to `reg` on `timer`'s state, with the
/// architectural semantics of [`TimerReg`]. Returns the value read (0 for
/// a write).
///
/// # Errors
///
/// [`Error::ReadOnlyRegister`] for a write to a count register (the
/// hypervisor injects an undefined-instruction exception; nothing
/// changed); [`Error::IrqChip`] if a line change fails.
#[doc(alias = "kvm_arm_timer_read")]
#[doc(alias = "kvm_arm_timer_write")]
pub fn access<H, C>(
    timer: &mut VcpuTimer,
    vm: &VmTimer,
    hw: &mut H,
    chip: &mut C,
    reg: TimerSysReg,
    access: Access,
) -> Result<u64, Error<C::Error>>
where
    H: TimerHw + ?Sized,
    C: IrqChip + ?Sized,
{
    match access {
        Access::Read => Ok(timer.get_reg(vm, hw, reg.timer(), reg.reg())),
        Access::Write(_) if !reg.is_writable() => Err(Error::ReadOnlyRegister),
        Access::Write(value) => {
            timer.set_reg(vm, hw, chip, reg.timer(), reg.reg(), value)?;
            Ok(0)
        }
    }
}
