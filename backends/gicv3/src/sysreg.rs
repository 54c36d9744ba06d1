//! The GICv3 CPU interface system registers (`ICC_*`, `ICH_*`), behind a
//! small trait, [`GicSysRegs`], so that all the logic above them runs on the
//! host against `FakeSysRegs` (feature `fake`).
//!
//! `CpuSysRegs` (aarch64 only) is the real register file: one `mrs`/`msr`
//! per access, through `aarch64-cpu` for the
//! registers that crate (11.2) names (`ICC_CTLR_EL1` read, `ICC_SRE_EL2`,
//! `ICH_HCR_EL2`, `ICH_VTR_EL2`, `ICH_VMCR_EL2`, `ICH_MISR_EL2`,
//! `ICH_AP0R<n>_EL2`, `ICH_AP1R<n>_EL2`, `ICH_LR<n>_EL2`, `MPIDR_EL1`),
//! and by their `S3_<op1>_C<n>_C<m>_<op2>` encodings (Arm IHI 0069,
//! "AArch64 System register encodings") for the ones it lacks:
//! `ICC_PMR_EL1`, `ICC_IGRPEN1_EL1`, `ICC_IAR1_EL1`, `ICC_EOIR1_EL1`,
//! `ICC_DIR_EL1`, `ICH_EISR_EL2`, `ICH_ELRSR_EL2`, and writes of
//! `ICC_CTLR_EL1`, which it declares read-only.

/// A GIC system register that can be read without side effects (and, unless
/// it is read-only, written).
///
/// The `u8` of the indexed registers is *n*; an *n* the architecture does
/// not define (above 15 for list registers, above 3 for active priority
/// registers) reads as 0 and ignores writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SysReg {
    /// `ICC_CTLR_EL1` (S3_0_C12_C12_4): EOImode is bit 1.
    IccCtlrEl1,
    /// `ICC_SRE_EL2` (S3_4_C12_C9_5): SRE bit 0, Enable bit 3.
    IccSreEl2,
    /// `ICC_PMR_EL1` (S3_0_C4_C6_0): the priority mask.
    IccPmrEl1,
    /// `ICC_IGRPEN1_EL1` (S3_0_C12_C12_7): Group 1 enable.
    IccIgrpen1El1,
    /// `ICH_HCR_EL2` (S3_4_C12_C11_0): En bit 0, UIE bit 1.
    IchHcrEl2,
    /// `ICH_VTR_EL2` (S3_4_C12_C11_1), read-only: ListRegs, PREbits.
    IchVtrEl2,
    /// `ICH_MISR_EL2` (S3_4_C12_C11_2), read-only: maintenance causes.
    IchMisrEl2,
    /// `ICH_EISR_EL2` (S3_4_C12_C11_3), read-only: list registers with EOI
    /// maintenance pending.
    IchEisrEl2,
    /// `ICH_ELRSR_EL2` (S3_4_C12_C11_5), read-only: empty list registers.
    IchElrsrEl2,
    /// `ICH_VMCR_EL2` (S3_4_C12_C11_7): the guest's view of the virtual
    /// CPU interface controls.
    IchVmcrEl2,
    /// `ICH_AP0R<n>_EL2` (S3_4_C12_C8_n), n = 0..=3.
    IchAp0rEl2(u8),
    /// `ICH_AP1R<n>_EL2` (S3_4_C12_C9_n), n = 0..=3.
    IchAp1rEl2(u8),
    /// `ICH_LR<n>_EL2` (S3_4_C12_C12_n for 0..=7, S3_4_C12_C13_(n-8) for
    /// 8..=15).
    IchLrEl2(u8),
}

/// The GIC system registers of *this* CPU, as seen from EL2.
///
/// Pure reads take `&self`; writes, and reads with side effects (the
/// acknowledge of `ICC_IAR1_EL1`), take `&mut self`. Writes to the
/// read-only registers ([`SysReg::IchVtrEl2`], [`SysReg::IchMisrEl2`],
/// [`SysReg::IchEisrEl2`], [`SysReg::IchElrsrEl2`]) are ignored.
pub trait GicSysRegs {
    /// Reads `reg`.
    fn read(&self, reg: SysReg) -> u64;

    /// Writes `value` to `reg`.
    fn write(&mut self, reg: SysReg, value: u64);

    /// Reads `ICC_IAR1_EL1` (S3_0_C12_C12_0): acknowledges the highest
    /// priority pending Group 1 interrupt, which becomes active.
    fn read_iar1(&mut self) -> u64;

    /// Writes `ICC_EOIR1_EL1` (S3_0_C12_C12_1): priority drop (and, with
    /// EOImode 0, deactivation).
    fn write_eoir1(&mut self, value: u64);

    /// Writes `ICC_DIR_EL1` (S3_0_C12_C11_1): deactivation.
    fn write_dir(&mut self, value: u64);

    /// This CPU's `MPIDR_EL1`, which names its redistributor.
    fn mpidr(&self) -> u64;

    /// An instruction synchronization barrier: earlier system register
    /// writes take effect before later instructions.
    fn isb(&mut self);
}

impl<T: GicSysRegs + ?Sized> GicSysRegs for &mut T {
    #[inline]
    fn read(&self, reg: SysReg) -> u64 {
        T::read(self, reg)
    }
    #[inline]
    fn write(&mut self, reg: SysReg, value: u64) {
        T::write(self, reg, value);
    }
    #[inline]
    fn read_iar1(&mut self) -> u64 {
        T::read_iar1(self)
    }
    #[inline]
    fn write_eoir1(&mut self, value: u64) {
        T::write_eoir1(self, value);
    }
    #[inline]
    fn write_dir(&mut self, value: u64) {
        T::write_dir(self, value);
    }
    fn mpidr(&self) -> u64 {
        T::mpidr(self)
    }
    #[inline]
    fn isb(&mut self) {
        T::isb(self);
    }
}

#[cfg(target_arch = "aarch64")]
pub use real::CpuSysRegs;

#[cfg(target_arch = "aarch64")]
mod real {
    use aarch64_cpu::asm::barrier;
    use aarch64_cpu::registers::{
        ICC_CTLR_EL1, ICC_SRE_EL2, ICH_AP0R0_EL2, ICH_AP0R1_EL2, ICH_AP0R2_EL2, ICH_AP0R3_EL2,
        ICH_AP1R0_EL2, ICH_AP1R1_EL2, ICH_AP1R2_EL2, ICH_AP1R3_EL2, ICH_HCR_EL2, ICH_LR0_EL2,
        ICH_LR1_EL2, ICH_LR2_EL2, ICH_LR3_EL2, ICH_LR4_EL2, ICH_LR5_EL2, ICH_LR6_EL2, ICH_LR7_EL2,
        ICH_LR8_EL2, ICH_LR9_EL2, ICH_LR10_EL2, ICH_LR11_EL2, ICH_LR12_EL2, ICH_LR13_EL2,
        ICH_LR14_EL2, ICH_LR15_EL2, ICH_MISR_EL2, ICH_VMCR_EL2, ICH_VTR_EL2, MPIDR_EL1, Readable,
        Writeable,
    };

    use super::{GicSysRegs, SysReg};

    // Registers `aarch64-cpu` names are accessed through it (`Readable::get`,
    // `Writeable::set`: safe functions, one `mrs`/`msr` each); what makes
    // those accesses sound is the contract of `CpuSysRegs::new`, as for the
    // raw ones below.

    /// Reads the system register with encoding `$enc`, for the registers
    /// `aarch64-cpu` 11.2 lacks.
    macro_rules! mrs {
        ($enc:literal) => {{
            let value: u64;
            // SAFETY: `CpuSysRegs::new`'s caller promised we run at EL2 with
            // the GIC system register interface available and that nothing
            // else uses these registers; a system register read touches no
            // memory Rust knows about.
            unsafe {
                core::arch::asm!(concat!("mrs {}, ", $enc), out(reg) value, options(nostack, preserves_flags));
            }
            value
        }};
    }

    /// Writes `$value` to the system register with encoding `$enc`, for the
    /// registers `aarch64-cpu` 11.2 lacks or declares read-only.
    macro_rules! msr {
        ($enc:literal, $value:expr) => {{
            let value: u64 = $value;
            // SAFETY: as for `mrs!`; these registers control the interrupt
            // controller only, never memory Rust knows about.
            unsafe {
                core::arch::asm!(concat!("msr ", $enc, ", {}"), in(reg) value, options(nostack, preserves_flags));
            }
        }};
    }

    /// The real GIC system registers of the CPU this runs on.
    ///
    /// Zero-sized: a token that says "I may use this CPU's GIC CPU
    /// interface".
    #[derive(Debug)]
    pub struct CpuSysRegs {
        _private: (),
    }

    impl CpuSysRegs {
        /// The token.
        ///
        /// # Safety
        ///
        /// The caller runs at EL2 on a CPU with a GICv3 (or later) system
        /// register CPU interface that EL3 lets EL2 use
        /// (`ICC_SRE_EL3.Enable` = 1), and no other code uses the
        /// `ICC_*`/`ICH_*` registers of this CPU while the token (or a
        /// [`HostGic`](crate::HostGic) built from it) is in use. The token
        /// must stay on this CPU (the registers are per CPU).
        #[must_use]
        pub const unsafe fn new() -> Self {
            Self { _private: () }
        }
    }

    impl GicSysRegs for CpuSysRegs {
        // Always inlined: the register is a constant at almost every call,
        // so the match folds to the one `mrs` (or `msr`) it names.
        #[inline(always)]
        fn read(&self, reg: SysReg) -> u64 {
            match reg {
                SysReg::IccCtlrEl1 => ICC_CTLR_EL1.get(),
                SysReg::IccSreEl2 => ICC_SRE_EL2.get(),
                // ICC_PMR_EL1 and ICC_IGRPEN1_EL1: not in aarch64-cpu 11.2.
                SysReg::IccPmrEl1 => mrs!("S3_0_C4_C6_0"),
                SysReg::IccIgrpen1El1 => mrs!("S3_0_C12_C12_7"),
                SysReg::IchHcrEl2 => ICH_HCR_EL2.get(),
                SysReg::IchVtrEl2 => ICH_VTR_EL2.get(),
                SysReg::IchMisrEl2 => ICH_MISR_EL2.get(),
                // ICH_EISR_EL2 and ICH_ELRSR_EL2: not in aarch64-cpu 11.2.
                SysReg::IchEisrEl2 => mrs!("S3_4_C12_C11_3"),
                SysReg::IchElrsrEl2 => mrs!("S3_4_C12_C11_5"),
                SysReg::IchVmcrEl2 => ICH_VMCR_EL2.get(),
                SysReg::IchAp0rEl2(0) => ICH_AP0R0_EL2.get(),
                SysReg::IchAp0rEl2(1) => ICH_AP0R1_EL2.get(),
                SysReg::IchAp0rEl2(2) => ICH_AP0R2_EL2.get(),
                SysReg::IchAp0rEl2(3) => ICH_AP0R3_EL2.get(),
                SysReg::IchAp1rEl2(0) => ICH_AP1R0_EL2.get(),
                SysReg::IchAp1rEl2(1) => ICH_AP1R1_EL2.get(),
                SysReg::IchAp1rEl2(2) => ICH_AP1R2_EL2.get(),
                SysReg::IchAp1rEl2(3) => ICH_AP1R3_EL2.get(),
                SysReg::IchLrEl2(0) => ICH_LR0_EL2.get(),
                SysReg::IchLrEl2(1) => ICH_LR1_EL2.get(),
                SysReg::IchLrEl2(2) => ICH_LR2_EL2.get(),
                SysReg::IchLrEl2(3) => ICH_LR3_EL2.get(),
                SysReg::IchLrEl2(4) => ICH_LR4_EL2.get(),
                SysReg::IchLrEl2(5) => ICH_LR5_EL2.get(),
                SysReg::IchLrEl2(6) => ICH_LR6_EL2.get(),
                SysReg::IchLrEl2(7) => ICH_LR7_EL2.get(),
                SysReg::IchLrEl2(8) => ICH_LR8_EL2.get(),
                SysReg::IchLrEl2(9) => ICH_LR9_EL2.get(),
                SysReg::IchLrEl2(10) => ICH_LR10_EL2.get(),
                SysReg::IchLrEl2(11) => ICH_LR11_EL2.get(),
                SysReg::IchLrEl2(12) => ICH_LR12_EL2.get(),
                SysReg::IchLrEl2(13) => ICH_LR13_EL2.get(),
                SysReg::IchLrEl2(14) => ICH_LR14_EL2.get(),
                SysReg::IchLrEl2(15) => ICH_LR15_EL2.get(),
                SysReg::IchAp0rEl2(_) | SysReg::IchAp1rEl2(_) | SysReg::IchLrEl2(_) => 0,
            }
        }

        #[inline(always)]
        fn write(&mut self, reg: SysReg, value: u64) {
            match reg {
                // aarch64-cpu 11.2 declares ICC_CTLR_EL1 read-only (it only
                // names ExtRange): write it by encoding.
                SysReg::IccCtlrEl1 => msr!("S3_0_C12_C12_4", value),
                SysReg::IccSreEl2 => ICC_SRE_EL2.set(value),
                SysReg::IccPmrEl1 => msr!("S3_0_C4_C6_0", value),
                SysReg::IccIgrpen1El1 => msr!("S3_0_C12_C12_7", value),
                SysReg::IchHcrEl2 => ICH_HCR_EL2.set(value),
                SysReg::IchVmcrEl2 => ICH_VMCR_EL2.set(value),
                SysReg::IchAp0rEl2(0) => ICH_AP0R0_EL2.set(value),
                SysReg::IchAp0rEl2(1) => ICH_AP0R1_EL2.set(value),
                SysReg::IchAp0rEl2(2) => ICH_AP0R2_EL2.set(value),
                SysReg::IchAp0rEl2(3) => ICH_AP0R3_EL2.set(value),
                SysReg::IchAp1rEl2(0) => ICH_AP1R0_EL2.set(value),
                SysReg::IchAp1rEl2(1) => ICH_AP1R1_EL2.set(value),
                SysReg::IchAp1rEl2(2) => ICH_AP1R2_EL2.set(value),
                SysReg::IchAp1rEl2(3) => ICH_AP1R3_EL2.set(value),
                SysReg::IchLrEl2(0) => ICH_LR0_EL2.set(value),
                SysReg::IchLrEl2(1) => ICH_LR1_EL2.set(value),
                SysReg::IchLrEl2(2) => ICH_LR2_EL2.set(value),
                SysReg::IchLrEl2(3) => ICH_LR3_EL2.set(value),
                SysReg::IchLrEl2(4) => ICH_LR4_EL2.set(value),
                SysReg::IchLrEl2(5) => ICH_LR5_EL2.set(value),
                SysReg::IchLrEl2(6) => ICH_LR6_EL2.set(value),
                SysReg::IchLrEl2(7) => ICH_LR7_EL2.set(value),
                SysReg::IchLrEl2(8) => ICH_LR8_EL2.set(value),
                SysReg::IchLrEl2(9) => ICH_LR9_EL2.set(value),
                SysReg::IchLrEl2(10) => ICH_LR10_EL2.set(value),
                SysReg::IchLrEl2(11) => ICH_LR11_EL2.set(value),
                SysReg::IchLrEl2(12) => ICH_LR12_EL2.set(value),
                SysReg::IchLrEl2(13) => ICH_LR13_EL2.set(value),
                SysReg::IchLrEl2(14) => ICH_LR14_EL2.set(value),
                SysReg::IchLrEl2(15) => ICH_LR15_EL2.set(value),
                SysReg::IchVtrEl2
                | SysReg::IchMisrEl2
                | SysReg::IchEisrEl2
                | SysReg::IchElrsrEl2
                | SysReg::IchAp0rEl2(_)
                | SysReg::IchAp1rEl2(_)
                | SysReg::IchLrEl2(_) => {}
            }
        }

        // ICC_IAR1_EL1, ICC_EOIR1_EL1 and ICC_DIR_EL1: not in aarch64-cpu
        // 11.2.

        #[inline]
        fn read_iar1(&mut self) -> u64 {
            mrs!("S3_0_C12_C12_0")
        }

        #[inline]
        fn write_eoir1(&mut self, value: u64) {
            msr!("S3_0_C12_C12_1", value);
        }

        #[inline]
        fn write_dir(&mut self, value: u64) {
            msr!("S3_0_C12_C11_1", value);
        }

        fn mpidr(&self) -> u64 {
            MPIDR_EL1.get()
        }

        #[inline]
        fn isb(&mut self) {
            barrier::isb(barrier::SY);
        }
    }
}

#[cfg(any(test, feature = "fake"))]
pub use fake::FakeSysRegs;

#[cfg(any(test, feature = "fake"))]
mod fake {
    use core::cell::Cell;

    use super::{GicSysRegs, SysReg};
    use crate::registers::{ICH_HCR_EN, ICH_HCR_UIE, ICH_MISR_EOI, ICH_MISR_U};

    /// `ICH_LR<n>_EL2.State`, bits 63:62 (0b00 invalid).
    const LR_STATE_SHIFT: u32 = 62;
    /// `ICH_LR<n>_EL2.HW`, bit 61.
    const LR_HW: u64 = 1 << 61;
    /// `ICH_LR<n>_EL2.EOI`, bit 41 (with HW = 0).
    const LR_EOI: u64 = 1 << 41;

    /// The raw bits' State is invalid (0b00).
    const fn lr_invalid(bits: u64) -> bool {
        bits >> LR_STATE_SHIFT == 0
    }

    /// `ICH_ELRSR_EL2.Status<n>`: the register holds no valid interrupt
    /// and no EOI maintenance is due for it (State 0b00, and HW = 1 or
    /// EOI = 0).
    const fn lr_empty(bits: u64) -> bool {
        lr_invalid(bits) && (bits & LR_HW != 0 || bits & LR_EOI == 0)
    }

    /// `ICH_EISR_EL2.Status<n>`: State 0b00, HW = 0 and EOI = 1.
    const fn lr_eoi(bits: u64) -> bool {
        lr_invalid(bits) && bits & LR_HW == 0 && bits & LR_EOI != 0
    }

    /// A register file in RAM that behaves like the GIC system registers
    /// for host tests (feature `fake`): one per test, no globals.
    ///
    /// `ICH_ELRSR_EL2`, `ICH_EISR_EL2` and `ICH_MISR_EL2` are derived from
    /// the raw bits of the list registers and `ICH_HCR_EL2` as the GIC
    /// specification defines them, independently of the driver's
    /// [`ListRegister`](crate::ListRegister) decoding.
    /// A test plays the guest by editing [`ich_lr`](Self::ich_lr) and the
    /// interrupt source by setting [`iar`](Self::iar).
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct FakeSysRegs {
        /// `ICC_CTLR_EL1`.
        pub icc_ctlr: u64,
        /// `ICC_SRE_EL2`.
        pub icc_sre_el2: u64,
        /// `ICC_PMR_EL1`.
        pub icc_pmr: u64,
        /// `ICC_IGRPEN1_EL1`.
        pub icc_igrpen1: u64,
        /// `ICH_HCR_EL2`.
        pub ich_hcr: u64,
        /// `ICH_VTR_EL2`, as the implementation reports it.
        pub ich_vtr: u64,
        /// `ICH_VMCR_EL2`.
        pub ich_vmcr: u64,
        /// `ICH_AP0R<n>_EL2`.
        pub ich_ap0r: [u64; 4],
        /// `ICH_AP1R<n>_EL2`.
        pub ich_ap1r: [u64; 4],
        /// `ICH_LR<n>_EL2`.
        pub ich_lr: [u64; 16],
        /// `MPIDR_EL1`.
        pub mpidr: u64,
        /// What the next `ICC_IAR1_EL1` read returns; reset to 1023
        /// (spurious) by the read.
        pub iar: u64,
        /// The last value written to `ICC_EOIR1_EL1`.
        pub last_eoir1: Option<u64>,
        /// The last value written to `ICC_DIR_EL1`.
        pub last_dir: Option<u64>,
        /// How many `isb` were executed.
        pub isb_count: u32,
        /// A list register was written and no `isb` followed yet.
        pub lr_write_unsynchronized: bool,
        /// How many reads of `ICH_ELRSR_EL2`, `ICH_EISR_EL2` or
        /// `ICH_MISR_EL2` came after a list register write without an
        /// `isb` in between: on the hardware such a read need not reflect
        /// the write.
        pub unsynchronized_reads: Cell<u32>,
        /// How many `ICH_LR<n>_EL2` reads were made.
        pub lr_reads: Cell<u32>,
    }

    impl FakeSysRegs {
        /// All registers 0, `ICH_VTR_EL2` as given, `MPIDR_EL1` as given,
        /// nothing to acknowledge.
        #[must_use]
        pub fn new(vtr: u64, mpidr: u64) -> Self {
            Self {
                ich_vtr: vtr,
                mpidr,
                iar: 1023,
                ..Self::default()
            }
        }

        /// The implemented list registers' raw values: `ICH_VTR_EL2.ListRegs`
        /// (bits 4:0) + 1 of them.
        fn implemented_lrs(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
            let count = usize::try_from(self.ich_vtr & 0x1F).map_or(16, |n| n.saturating_add(1));
            self.ich_lr.iter().copied().take(count).enumerate()
        }

        fn mask(&self, f: impl Fn(u64) -> bool) -> u64 {
            self.implemented_lrs()
                .filter(|&(_, bits)| f(bits))
                .fold(0, |mask, (n, _)| mask | (1 << n))
        }
    }

    fn slot<T>(array: &[T], n: u8) -> Option<&T> {
        array.get(usize::from(n))
    }

    fn slot_mut<T>(array: &mut [T], n: u8) -> Option<&mut T> {
        array.get_mut(usize::from(n))
    }

    impl GicSysRegs for FakeSysRegs {
        #[inline]
        fn read(&self, reg: SysReg) -> u64 {
            if self.lr_write_unsynchronized
                && matches!(
                    reg,
                    SysReg::IchElrsrEl2 | SysReg::IchEisrEl2 | SysReg::IchMisrEl2
                )
            {
                self.unsynchronized_reads
                    .set(self.unsynchronized_reads.get().saturating_add(1));
            }
            match reg {
                SysReg::IccCtlrEl1 => self.icc_ctlr,
                SysReg::IccSreEl2 => self.icc_sre_el2,
                SysReg::IccPmrEl1 => self.icc_pmr,
                SysReg::IccIgrpen1El1 => self.icc_igrpen1,
                SysReg::IchHcrEl2 => self.ich_hcr,
                SysReg::IchVtrEl2 => self.ich_vtr,
                SysReg::IchVmcrEl2 => self.ich_vmcr,
                SysReg::IchElrsrEl2 => self.mask(lr_empty),
                SysReg::IchEisrEl2 => self.mask(lr_eoi),
                SysReg::IchMisrEl2 => {
                    if self.ich_hcr & ICH_HCR_EN == 0 {
                        return 0;
                    }
                    let mut misr = 0;
                    if self.mask(lr_eoi) != 0 {
                        misr |= ICH_MISR_EOI;
                    }
                    let valid = self
                        .implemented_lrs()
                        .filter(|&(_, bits)| !lr_invalid(bits))
                        .count();
                    if self.ich_hcr & ICH_HCR_UIE != 0 && valid <= 1 {
                        misr |= ICH_MISR_U;
                    }
                    misr
                }
                SysReg::IchAp0rEl2(n) => slot(&self.ich_ap0r, n).copied().unwrap_or(0),
                SysReg::IchAp1rEl2(n) => slot(&self.ich_ap1r, n).copied().unwrap_or(0),
                SysReg::IchLrEl2(n) => {
                    self.lr_reads.set(self.lr_reads.get().saturating_add(1));
                    slot(&self.ich_lr, n).copied().unwrap_or(0)
                }
            }
        }

        #[inline]
        fn write(&mut self, reg: SysReg, value: u64) {
            let target = match reg {
                SysReg::IccCtlrEl1 => &mut self.icc_ctlr,
                SysReg::IccSreEl2 => &mut self.icc_sre_el2,
                SysReg::IccPmrEl1 => &mut self.icc_pmr,
                SysReg::IccIgrpen1El1 => &mut self.icc_igrpen1,
                SysReg::IchHcrEl2 => &mut self.ich_hcr,
                SysReg::IchVmcrEl2 => &mut self.ich_vmcr,
                SysReg::IchAp0rEl2(n) => match slot_mut(&mut self.ich_ap0r, n) {
                    Some(r) => r,
                    None => return,
                },
                SysReg::IchAp1rEl2(n) => match slot_mut(&mut self.ich_ap1r, n) {
                    Some(r) => r,
                    None => return,
                },
                SysReg::IchLrEl2(n) => match slot_mut(&mut self.ich_lr, n) {
                    Some(r) => {
                        self.lr_write_unsynchronized = true;
                        r
                    }
                    None => return,
                },
                SysReg::IchVtrEl2
                | SysReg::IchMisrEl2
                | SysReg::IchEisrEl2
                | SysReg::IchElrsrEl2 => {
                    return;
                }
            };
            *target = value;
        }

        #[inline]
        fn read_iar1(&mut self) -> u64 {
            core::mem::replace(&mut self.iar, 1023)
        }

        #[inline]
        fn write_eoir1(&mut self, value: u64) {
            self.last_eoir1 = Some(value);
        }

        #[inline]
        fn write_dir(&mut self, value: u64) {
            self.last_dir = Some(value);
        }

        fn mpidr(&self) -> u64 {
            self.mpidr
        }

        #[inline]
        fn isb(&mut self) {
            self.isb_count = self.isb_count.saturating_add(1);
            self.lr_write_unsynchronized = false;
        }
    }
}
