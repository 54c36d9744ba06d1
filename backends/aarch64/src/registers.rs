//! The system registers this crate touches, their bit layouts, and the
//! [`RegisterFile`] trait that reads and writes them.
//!
//! Everything above [`RegisterFile`] (host mode, `CNTHCTL_EL2` layout, the
//! `_EL0`/`_EL02` choice, feature decoding) is plain logic, so it runs the
//! same against [`SysRegs`](crate::SysRegs) on the CPU and against
//! [`FakeRegisters`](crate::FakeRegisters) on the host.
//!
//! Register names and fields follow the Arm Architecture Reference Manual
//! for A-profile (Arm ARM), chapter D24 "AArch64 System Register
//! Descriptions" (generic timer registers in D24.10, `HCR_EL2` and the ID
//! registers in D24.2).

/// A system register [`RegisterFile::read`] can read.
///
/// The encodings in the variant docs are `op0, op1, CRn, CRm, op2`, written
/// as the assembler's generic `S<op0>_<op1>_C<CRn>_C<CRm>_<op2>` name.
///
/// `#[non_exhaustive]`: new timer features add registers; a
/// [`RegisterFile`] outside this crate (a test fake) needs a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Register {
    /// `CNTPCT_EL0`, the physical count (`S3_3_C14_C0_1`). Read-only.
    CntpctEl0,
    /// `CNTFRQ_EL0`, the counter frequency in Hz in bits 31:0
    /// (`S3_3_C14_C0_0`). Read-only here (only the highest EL writes it).
    CntfrqEl0,
    /// `CNTV_CTL_EL0` (`S3_3_C14_C3_1`). From EL2 with `HCR_EL2.E2H = 1`
    /// this reaches `CNTHV_CTL_EL2`, the *EL2* virtual timer.
    CntvCtlEl0,
    /// `CNTV_CVAL_EL0` (`S3_3_C14_C3_2`). From EL2 with `HCR_EL2.E2H = 1`
    /// this reaches `CNTHV_CVAL_EL2`.
    CntvCvalEl0,
    /// `CNTV_CTL_EL02` (`S3_5_C14_C3_1`): the EL1 virtual timer control
    /// from EL2 with `HCR_EL2.E2H = 1`. UNDEFINED with E2H = 0.
    CntvCtlEl02,
    /// `CNTV_CVAL_EL02` (`S3_5_C14_C3_2`): the EL1 virtual timer compare
    /// value from EL2 with `HCR_EL2.E2H = 1`. UNDEFINED with E2H = 0.
    CntvCvalEl02,
    /// `CNTP_CTL_EL0` (`S3_3_C14_C2_1`): the EL1 physical timer control
    /// from EL2 with `HCR_EL2.E2H = 0`. With E2H = 1 this reaches
    /// `CNTHP_CTL_EL2`, the *EL2* physical timer.
    CntpCtlEl0,
    /// `CNTP_CVAL_EL0` (`S3_3_C14_C2_2`). From EL2 with `HCR_EL2.E2H = 1`
    /// this reaches `CNTHP_CVAL_EL2`.
    CntpCvalEl0,
    /// `CNTP_CTL_EL02` (`S3_5_C14_C2_1`): the EL1 physical timer control
    /// from EL2 with `HCR_EL2.E2H = 1`. UNDEFINED with E2H = 0.
    CntpCtlEl02,
    /// `CNTP_CVAL_EL02` (`S3_5_C14_C2_2`): the EL1 physical timer compare
    /// value from EL2 with `HCR_EL2.E2H = 1`. UNDEFINED with E2H = 0.
    CntpCvalEl02,
    /// `CNTVOFF_EL2`, the virtual offset (`S3_4_C14_C0_3`).
    CntvoffEl2,
    /// `CNTPOFF_EL2`, the physical offset (`S3_4_C14_C0_6`). Exists only
    /// with FEAT_ECV; UNDEFINED otherwise.
    CntpoffEl2,
    /// `CNTHCTL_EL2`, the counter-timer hypervisor control
    /// (`S3_4_C14_C1_0`). Its layout depends on `HCR_EL2.E2H`.
    CnthctlEl2,
    /// `CNTHP_CTL_EL2`, the EL2 physical timer's control (`S3_4_C14_C2_1`),
    /// ISTATUS included: the hypervisor's own timer, which
    /// [`HypTimer`](crate::HypTimer) multiplexes.
    CnthpCtlEl2,
    /// `CNTHP_CVAL_EL2`, the EL2 physical timer's compare value
    /// (`S3_4_C14_C2_2`).
    CnthpCvalEl2,
    /// `HCR_EL2`, the hypervisor configuration (`S3_4_C1_C1_0`). Read-only
    /// here: this crate only looks at E2H.
    HcrEl2,
    /// `ID_AA64MMFR0_EL1` (`S3_0_C0_C7_0`). Read-only.
    IdAa64mmfr0El1,
    /// `ID_AA64MMFR1_EL1` (`S3_0_C0_C7_1`). Read-only.
    IdAa64mmfr1El1,
}

/// A system register [`RegisterFile::write`] can write: the writable subset
/// of [`Register`].
///
/// `#[non_exhaustive]`, as [`Register`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WritableRegister {
    /// `CNTV_CTL_EL0`, see [`Register::CntvCtlEl0`].
    CntvCtlEl0,
    /// `CNTV_CVAL_EL0`, see [`Register::CntvCvalEl0`].
    CntvCvalEl0,
    /// `CNTV_CTL_EL02`, see [`Register::CntvCtlEl02`].
    CntvCtlEl02,
    /// `CNTV_CVAL_EL02`, see [`Register::CntvCvalEl02`].
    CntvCvalEl02,
    /// `CNTP_CTL_EL0`, see [`Register::CntpCtlEl0`].
    CntpCtlEl0,
    /// `CNTP_CVAL_EL0`, see [`Register::CntpCvalEl0`].
    CntpCvalEl0,
    /// `CNTP_CTL_EL02`, see [`Register::CntpCtlEl02`].
    CntpCtlEl02,
    /// `CNTP_CVAL_EL02`, see [`Register::CntpCvalEl02`].
    CntpCvalEl02,
    /// `CNTVOFF_EL2`, see [`Register::CntvoffEl2`].
    CntvoffEl2,
    /// `CNTPOFF_EL2`, see [`Register::CntpoffEl2`].
    CntpoffEl2,
    /// `CNTHCTL_EL2`, see [`Register::CnthctlEl2`].
    CnthctlEl2,
    /// `CNTHP_CTL_EL2`, see [`Register::CnthpCtlEl2`].
    CnthpCtlEl2,
    /// `CNTHP_CVAL_EL2`, see [`Register::CnthpCvalEl2`].
    CnthpCvalEl2,
}

impl From<WritableRegister> for Register {
    fn from(reg: WritableRegister) -> Self {
        match reg {
            WritableRegister::CntvCtlEl0 => Self::CntvCtlEl0,
            WritableRegister::CntvCvalEl0 => Self::CntvCvalEl0,
            WritableRegister::CntvCtlEl02 => Self::CntvCtlEl02,
            WritableRegister::CntvCvalEl02 => Self::CntvCvalEl02,
            WritableRegister::CntpCtlEl0 => Self::CntpCtlEl0,
            WritableRegister::CntpCvalEl0 => Self::CntpCvalEl0,
            WritableRegister::CntpCtlEl02 => Self::CntpCtlEl02,
            WritableRegister::CntpCvalEl02 => Self::CntpCvalEl02,
            WritableRegister::CntvoffEl2 => Self::CntvoffEl2,
            WritableRegister::CntpoffEl2 => Self::CntpoffEl2,
            WritableRegister::CnthctlEl2 => Self::CnthctlEl2,
            WritableRegister::CnthpCtlEl2 => Self::CnthpCtlEl2,
            WritableRegister::CnthpCvalEl2 => Self::CnthpCvalEl2,
        }
    }
}

/// Raw access to the generic timer's system registers, as seen from EL2.
///
/// Implemented by [`SysRegs`](crate::SysRegs) (the real registers, on
/// AArch64 only) and by [`FakeRegisters`](crate::FakeRegisters) (plain
/// memory, for tests). An implementation does exactly the access it is
/// asked for: choosing *which* register to touch (for example
/// `CNTV_CTL_EL02` rather than `CNTV_CTL_EL0` under VHE) is the job of
/// [`GenericTimer`](crate::GenericTimer), never of the register file.
///
/// The one exception is a register the CPU does not have (`_EL02` with
/// `HCR_EL2.E2H = 0`, `CNTPOFF_EL2` without FEAT_ECV), where the access
/// would be UNDEFINED: both implementations then read 0 and drop writes
/// instead (the fake also counts them). Since the trait is safe, an
/// implementation on real registers must not fault on any argument.
pub trait RegisterFile {
    /// Reads `reg` (`mrs`).
    fn read(&self, reg: Register) -> u64;

    /// Writes `value` to `reg` (`msr`).
    fn write(&mut self, reg: WritableRegister, value: u64);

    /// An instruction synchronization barrier (`isb`).
    fn isb(&mut self);
}

impl<R: RegisterFile + ?Sized> RegisterFile for &mut R {
    fn read(&self, reg: Register) -> u64 {
        R::read(self, reg)
    }
    fn write(&mut self, reg: WritableRegister, value: u64) {
        R::write(self, reg, value);
    }
    fn isb(&mut self) {
        R::isb(self);
    }
}

/// `HCR_EL2.E2H`, bit 34: EL2 host (VHE) enabled.
pub(crate) const HCR_EL2_E2H: u64 = 1 << 34;

/// `CNTHCTL_EL2` with `HCR_EL2.E2H = 0`: bit 0 EL1PCTEN (EL1/EL0 may read
/// `CNTPCT_EL0`), bit 1 EL1PCEN (EL1/EL0 may use the EL1 physical timer).
pub(crate) const CNTHCTL_NVHE_EL1PCTEN: u64 = 1 << 0;
/// See [`CNTHCTL_NVHE_EL1PCTEN`].
pub(crate) const CNTHCTL_NVHE_EL1PCEN: u64 = 1 << 1;
/// `CNTHCTL_EL2` with `HCR_EL2.E2H = 1`: the same two controls move to bit
/// 10 (EL1PCTEN) and bit 11 (EL1PTEN); bits 0/1 are then EL0PCTEN/EL0VCTEN.
pub(crate) const CNTHCTL_VHE_EL1PCTEN: u64 = 1 << 10;
/// See [`CNTHCTL_VHE_EL1PCTEN`].
pub(crate) const CNTHCTL_VHE_EL1PTEN: u64 = 1 << 11;
/// `CNTHCTL_EL2.ECV`, bit 12 in both layouts (FEAT_ECV): EL1 and EL0
/// reads of the physical counter, and the EL1 physical timer, see the
/// count offset by `CNTPOFF_EL2` (outside the EL2&0 regime).
pub(crate) const CNTHCTL_ECV: u64 = 1 << 12;

/// A 4-bit ID register field, unsigned, at bit `shift`.
const fn id_field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xf
}

/// `ID_AA64MMFR1_EL1.VH`, bits 11:8: FEAT_VHE is implemented when nonzero.
#[must_use]
pub(crate) const fn vhe_implemented(id_aa64mmfr1_el1: u64) -> bool {
    id_field(id_aa64mmfr1_el1, 8) != 0
}

/// `ID_AA64MMFR0_EL1.ECV`, bits 63:60: FEAT_ECV (and so `CNTPOFF_EL2`) is
/// implemented when at least 1 (2 adds `CNTHCTL_EL2.ECV` self-synchronized
/// views; both have `CNTPOFF_EL2`).
#[must_use]
pub(crate) const fn ecv_implemented(id_aa64mmfr0_el1: u64) -> bool {
    id_field(id_aa64mmfr0_el1, 60) >= 1
}

/// `HCR_EL2.E2H` is set: the host runs with VHE.
#[must_use]
pub(crate) const fn e2h_set(hcr_el2: u64) -> bool {
    hcr_el2 & HCR_EL2_E2H != 0
}

/// Which of the registers that exist only in some configurations the CPU
/// has, decided once from `HCR_EL2` and `ID_AA64MMFR0_EL1` (both always
/// readable at EL2). [`SysRegs`](crate::SysRegs) keeps one of these so that
/// it never executes an access that would be UNDEFINED.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PresentRegisters {
    /// `CNTV_CTL_EL02`/`CNTV_CVAL_EL02` and `CNTP_CTL_EL02`/
    /// `CNTP_CVAL_EL02` exist: `HCR_EL2.E2H = 1` (which also implies
    /// FEAT_VHE: E2H is RES0 without it).
    pub(crate) el02: bool,
    /// `CNTPOFF_EL2` exists: FEAT_ECV (`ID_AA64MMFR0_EL1.ECV >= 1`).
    pub(crate) cntpoff: bool,
}

impl PresentRegisters {
    /// None of the optional registers: every access to one is skipped
    /// (the token on architectures other than AArch64).
    #[cfg(any(test, not(target_arch = "aarch64")))]
    pub(crate) const NONE: Self = Self {
        el02: false,
        cntpoff: false,
    };

    /// What `HCR_EL2 = hcr_el2` and `ID_AA64MMFR0_EL1 = id_aa64mmfr0_el1`
    /// say exists.
    #[must_use]
    pub(crate) const fn from_id_registers(hcr_el2: u64, id_aa64mmfr0_el1: u64) -> Self {
        Self {
            el02: e2h_set(hcr_el2),
            cntpoff: ecv_implemented(id_aa64mmfr0_el1),
        }
    }

    /// Whether accessing `reg` from EL2 is defined on this CPU. Every
    /// register but the `_EL02` ones and `CNTPOFF_EL2` always exists at
    /// EL2.
    #[must_use]
    pub(crate) const fn has(self, reg: Register) -> bool {
        match reg {
            Register::CntvCtlEl02
            | Register::CntvCvalEl02
            | Register::CntpCtlEl02
            | Register::CntpCvalEl02 => self.el02,
            Register::CntpoffEl2 => self.cntpoff,
            Register::CntpctEl0
            | Register::CntfrqEl0
            | Register::CntvCtlEl0
            | Register::CntvCvalEl0
            | Register::CntpCtlEl0
            | Register::CntpCvalEl0
            | Register::CntvoffEl2
            | Register::CnthctlEl2
            | Register::CnthpCtlEl2
            | Register::CnthpCvalEl2
            | Register::HcrEl2
            | Register::IdAa64mmfr0El1
            | Register::IdAa64mmfr1El1 => true,
        }
    }
}

/// `CNTFRQ_EL0.ClockFreq`, bits 31:0 (bits 63:32 are RES0).
#[must_use]
pub(crate) const fn counter_frequency(cntfrq_el0: u64) -> u32 {
    let [b0, b1, b2, b3, ..] = cntfrq_el0.to_le_bytes();
    u32::from_le_bytes([b0, b1, b2, b3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vh_field_decodes() {
        assert!(!vhe_implemented(0));
        assert!(vhe_implemented(0x1 << 8));
        assert!(vhe_implemented(0x2 << 8));
        // Neighbouring fields (HPDS, VMIDBits) set, VH clear.
        assert!(!vhe_implemented(!(0xf << 8)));
        // QEMU `-cpu max` (7.2) reports VH = 1 among other fields.
        assert!(vhe_implemented(0x0000_0000_1112_2122 | (1 << 8)));
    }

    #[test]
    fn ecv_field_decodes() {
        assert!(!ecv_implemented(0));
        assert!(ecv_implemented(0x1 << 60));
        assert!(ecv_implemented(0x2 << 60));
        // Every other field set, ECV = 0.
        assert!(!ecv_implemented(!(0xf << 60)));
        // FGT (bits 59:56) is not ECV.
        assert!(!ecv_implemented(0x1 << 56));
    }

    #[test]
    fn e2h_is_bit_34() {
        assert!(e2h_set(1 << 34));
        assert!(!e2h_set(!(1 << 34)));
    }

    #[test]
    fn frequency_ignores_res0_upper_half() {
        assert_eq!(counter_frequency(62_500_000), 62_500_000);
        assert_eq!(counter_frequency(0xdead_beef_0000_0010), 0x10);
        assert_eq!(counter_frequency(u64::from(u32::MAX)), u32::MAX);
    }

    const ALL: [Register; 16] = [
        Register::CntpctEl0,
        Register::CntfrqEl0,
        Register::CntvCtlEl0,
        Register::CntvCvalEl0,
        Register::CntvCtlEl02,
        Register::CntvCvalEl02,
        Register::CntpCtlEl0,
        Register::CntpCvalEl0,
        Register::CntpCtlEl02,
        Register::CntpCvalEl02,
        Register::CntvoffEl2,
        Register::CntpoffEl2,
        Register::CnthctlEl2,
        Register::HcrEl2,
        Register::IdAa64mmfr0El1,
        Register::IdAa64mmfr1El1,
    ];

    fn optional(reg: Register) -> bool {
        matches!(
            reg,
            Register::CntvCtlEl02
                | Register::CntvCvalEl02
                | Register::CntpCtlEl02
                | Register::CntpCvalEl02
                | Register::CntpoffEl2
        )
    }

    #[test]
    fn el02_registers_exist_only_with_e2h() {
        let nvhe = PresentRegisters::from_id_registers(0, 0);
        assert!(!nvhe.has(Register::CntvCtlEl02));
        assert!(!nvhe.has(Register::CntvCvalEl02));
        // Every other HCR_EL2 bit set, E2H clear: still no _EL02.
        let nvhe = PresentRegisters::from_id_registers(!HCR_EL2_E2H, 0);
        assert!(!nvhe.has(Register::CntvCtlEl02));
        assert!(!nvhe.has(Register::CntvCvalEl02));
        assert!(!nvhe.has(Register::CntpCtlEl02));
        assert!(!nvhe.has(Register::CntpCvalEl02));
        let vhe = PresentRegisters::from_id_registers(HCR_EL2_E2H, 0);
        assert!(vhe.has(Register::CntpCtlEl02));
        assert!(vhe.has(Register::CntpCvalEl02));
        assert!(vhe.has(Register::CntvCtlEl02));
        assert!(vhe.has(Register::CntvCvalEl02));
        // E2H says nothing about CNTPOFF_EL2.
        assert!(!vhe.has(Register::CntpoffEl2));
    }

    #[test]
    fn cntpoff_exists_only_with_ecv() {
        let none = PresentRegisters::from_id_registers(HCR_EL2_E2H, !(0xf << 60));
        assert!(!none.has(Register::CntpoffEl2));
        for level in 1..=2u64 {
            let ecv = PresentRegisters::from_id_registers(0, level << 60);
            assert!(ecv.has(Register::CntpoffEl2), "ECV = {level}");
            // ECV says nothing about the _EL02 registers.
            assert!(!ecv.has(Register::CntvCtlEl02));
        }
    }

    #[test]
    fn always_present_registers_ignore_the_id_registers() {
        for present in [
            PresentRegisters::NONE,
            PresentRegisters::from_id_registers(HCR_EL2_E2H, 1 << 60),
        ] {
            for reg in ALL {
                if !optional(reg) {
                    assert!(present.has(reg), "{reg:?}");
                }
            }
        }
        for reg in ALL {
            assert_eq!(PresentRegisters::NONE.has(reg), !optional(reg), "{reg:?}");
        }
    }

    #[test]
    fn writable_registers_map_to_the_same_register() {
        assert_eq!(
            Register::from(WritableRegister::CntvCtlEl02),
            Register::CntvCtlEl02
        );
        assert_eq!(
            Register::from(WritableRegister::CnthctlEl2),
            Register::CnthctlEl2
        );
        assert_eq!(
            Register::from(WritableRegister::CntpoffEl2),
            Register::CntpoffEl2
        );
        for (w, r) in [
            (WritableRegister::CntpCtlEl0, Register::CntpCtlEl0),
            (WritableRegister::CntpCvalEl0, Register::CntpCvalEl0),
            (WritableRegister::CntpCtlEl02, Register::CntpCtlEl02),
            (WritableRegister::CntpCvalEl02, Register::CntpCvalEl02),
        ] {
            assert_eq!(Register::from(w), r);
        }
    }
}
