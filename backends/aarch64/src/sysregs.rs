//! [`SysRegs`]: the real system registers, and [`El2Timer`].

use core::marker::PhantomData;

use crate::GenericTimer;
use crate::registers::PresentRegisters;

/// The generic timer system registers of the CPU this code runs on, at
/// EL2: the hardware token behind [`El2Timer`].
///
/// It implements [`RegisterFile`](crate::RegisterFile) on AArch64 only
/// (with `mrs`/`msr`; through `aarch64-cpu` where that crate names the
/// register, with the generic `S3_...` encoding where it does not or
/// where the assembler would need a target feature). On other
/// architectures the type exists, for documentation, but does nothing.
///
/// Two sets of registers exist only in some configurations, and accessing
/// them otherwise is UNDEFINED (an exception at EL2):
/// `CNTV_CTL_EL02`/`CNTV_CVAL_EL02` need `HCR_EL2.E2H = 1`, and
/// `CNTPOFF_EL2` needs FEAT_ECV. [`SysRegs::new`] reads `HCR_EL2` and
/// `ID_AA64MMFR0_EL1` once and records (in two `bool`s, the whole size of
/// the token) whether they exist; [`read`](crate::RegisterFile::read) of
/// one that does not returns 0 and [`write`](crate::RegisterFile::write)
/// to it does nothing, so safe code holding the token (for example
/// through [`GenericTimer::registers_mut`]) cannot fault the CPU. Every
/// other register always exists at EL2. [`GenericTimer`] never asks for
/// an absent register.
///
/// Neither `Send` nor `Sync`: `mrs`/`msr` reach the registers of the CPU
/// that runs them, so a token (and an [`El2Timer`]) moved to, or shared
/// with, another CPU would touch that CPU's registers, which its own token
/// owns. Build one on each CPU, where it is used.
///
/// ```compile_fail
/// fn send<T: Send>() {}
/// send::<arch_timer_virt_aarch64::El2Timer>();
/// ```
///
/// ```compile_fail
/// fn sync<T: Sync>() {}
/// sync::<arch_timer_virt_aarch64::SysRegs>();
/// ```
#[derive(Debug)]
pub struct SysRegs {
    /// Which optional registers exist, read by `new` (the only
    /// constructor: no `Default`/`Clone`, one token per CPU). Only the
    /// AArch64 accessors read it.
    #[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
    present: PresentRegisters,
    /// Stays on its CPU: neither `Send` nor `Sync`.
    _this_cpu: PhantomData<*const ()>,
}

impl SysRegs {
    /// Takes the token for this CPU's generic timer registers.
    ///
    /// Reads `HCR_EL2` and `ID_AA64MMFR0_EL1` once (on AArch64; elsewhere
    /// it reads nothing and the token has none of the optional registers),
    /// to know whether the `_EL02` timer registers and `CNTPOFF_EL2` exist
    /// (see the type docs).
    ///
    /// # Safety
    ///
    /// - The code runs at EL2 (every access is to an `_EL2` register or
    ///   is made from EL2), on the CPU where the token and anything built
    ///   on it will be used.
    /// - There is at most one token per CPU at any time: while it lives,
    ///   nothing else (no other token, no other code, no interrupt handler
    ///   that does not go through this token) writes `CNTV_CTL_EL0`/
    ///   `CNTV_CVAL_EL0` (or their `_EL02` forms), `CNTVOFF_EL2`,
    ///   `CNTPOFF_EL2`, the EL1PCTEN/EL1PCEN bits of `CNTHCTL_EL2` or the
    ///   EL2 physical timer (`CNTHP_CTL_EL2`/`CNTHP_CVAL_EL2`, which the
    ///   hypervisor drives through this token, for example with
    ///   [`HypTimer`](crate::HypTimer)).
    /// - `HCR_EL2.E2H` does not change while the token, or a
    ///   [`GenericTimer`] built on it, lives.
    #[must_use]
    pub unsafe fn new() -> Self {
        #[cfg(target_arch = "aarch64")]
        let present = {
            use aarch64_cpu::registers::{HCR_EL2, ID_AA64MMFR0_EL1, Readable};
            // Both are always readable at EL2, where the caller promises
            // we run; E2H then stays as read for the token's life.
            PresentRegisters::from_id_registers(HCR_EL2.get(), ID_AA64MMFR0_EL1.get())
        };
        #[cfg(not(target_arch = "aarch64"))]
        let present = PresentRegisters::NONE;
        Self {
            present,
            _this_cpu: PhantomData,
        }
    }
}

/// The generic timer of this CPU, on the real registers: [`GenericTimer`]
/// over [`SysRegs`].
///
/// On AArch64, build it with `El2Timer::new` (host mode from
/// `HCR_EL2.E2H`) or `El2Timer::new_with_host_mode` (host mode stated and
/// checked).
pub type El2Timer = GenericTimer<SysRegs>;

#[cfg(target_arch = "aarch64")]
mod aarch64 {
    use aarch64_cpu::asm::barrier;
    use aarch64_cpu::registers::{
        CNTFRQ_EL0, CNTHCTL_EL2, CNTPCT_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0, CNTVOFF_EL2, HCR_EL2,
        ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1, Readable, Writeable,
    };

    use super::{El2Timer, SysRegs};
    use crate::{Error, GenericTimer, HostMode, Register, RegisterFile, WritableRegister};

    /// `mrs` of a register by its generic `S<op0>_<op1>_C<n>_C<m>_<op2>`
    /// name, for registers the assembler only knows by name with an extra
    /// target feature (`CNTPOFF_EL2` needs `+ecv`) or that `aarch64-cpu`
    /// does not have (`CNTV_*_EL02`).
    macro_rules! mrs_raw {
        ($name:literal) => {{
            let value: u64;
            // SAFETY: `SysRegs::new`'s contract puts us at EL2. The macro
            // is used only in `SysRegs::read`, after its check that
            // `self.present` has the register: `new` read E2H = 1 (for
            // `_EL02`, and E2H cannot change while the token lives) or
            // FEAT_ECV (for `CNTPOFF_EL2`) from the CPU, so the register
            // exists (`CNTHP_*_EL2` always exist at EL2). Reading it has no side effects and touches no
            // memory.
            unsafe {
                core::arch::asm!(
                    concat!("mrs {value}, ", $name),
                    value = out(reg) value,
                    options(nomem, nostack, preserves_flags),
                );
            }
            value
        }};
    }

    /// `msr` counterpart of [`mrs_raw`].
    macro_rules! msr_raw {
        ($name:literal, $value:expr) => {{
            let value: u64 = $value;
            // SAFETY: `SysRegs::new`'s contract puts us at EL2 and makes
            // this token the only writer of the register. The macro is
            // used only in `SysRegs::write`, after its check that
            // `self.present` has the register (see `mrs_raw`), so it
            // exists on this CPU. Writing a timer register changes no
            // memory Rust can see.
            unsafe {
                core::arch::asm!(
                    concat!("msr ", $name, ", {value}"),
                    value = in(reg) value,
                    options(nostack, preserves_flags),
                );
            }
        }};
    }

    impl RegisterFile for SysRegs {
        #[inline]
        fn read(&self, reg: Register) -> u64 {
            // An absent register (UNDEFINED to access) reads as 0: this
            // check is what makes `mrs_raw!` sound.
            if !self.present.has(reg) {
                return 0;
            }
            match reg {
                Register::CntpctEl0 => CNTPCT_EL0.get(),
                Register::CntfrqEl0 => CNTFRQ_EL0.get(),
                Register::CntvCtlEl0 => CNTV_CTL_EL0.get(),
                Register::CntvCvalEl0 => CNTV_CVAL_EL0.get(),
                // CNTV_CTL_EL02: op0 3, op1 5, CRn 14, CRm 3, op2 1.
                Register::CntvCtlEl02 => mrs_raw!("S3_5_C14_C3_1"),
                // CNTV_CVAL_EL02: op0 3, op1 5, CRn 14, CRm 3, op2 2.
                Register::CntvCvalEl02 => mrs_raw!("S3_5_C14_C3_2"),
                // CNTP_CTL_EL0: op0 3, op1 3, CRn 14, CRm 2, op2 1.
                Register::CntpCtlEl0 => mrs_raw!("S3_3_C14_C2_1"),
                // CNTP_CVAL_EL0: op0 3, op1 3, CRn 14, CRm 2, op2 2.
                Register::CntpCvalEl0 => mrs_raw!("S3_3_C14_C2_2"),
                // CNTP_CTL_EL02: op0 3, op1 5, CRn 14, CRm 2, op2 1.
                Register::CntpCtlEl02 => mrs_raw!("S3_5_C14_C2_1"),
                // CNTP_CVAL_EL02: op0 3, op1 5, CRn 14, CRm 2, op2 2.
                Register::CntpCvalEl02 => mrs_raw!("S3_5_C14_C2_2"),
                Register::CntvoffEl2 => CNTVOFF_EL2.get(),
                // CNTPOFF_EL2: op0 3, op1 4, CRn 14, CRm 0, op2 6.
                Register::CntpoffEl2 => mrs_raw!("S3_4_C14_C0_6"),
                Register::CnthctlEl2 => CNTHCTL_EL2.get(),
                // CNTHP_CTL_EL2: op0 3, op1 4, CRn 14, CRm 2, op2 1 (not
                // in aarch64-cpu 11).
                Register::CnthpCtlEl2 => mrs_raw!("S3_4_C14_C2_1"),
                // CNTHP_CVAL_EL2: op0 3, op1 4, CRn 14, CRm 2, op2 2.
                Register::CnthpCvalEl2 => mrs_raw!("S3_4_C14_C2_2"),
                Register::HcrEl2 => HCR_EL2.get(),
                Register::IdAa64mmfr0El1 => ID_AA64MMFR0_EL1.get(),
                Register::IdAa64mmfr1El1 => ID_AA64MMFR1_EL1.get(),
            }
        }

        #[inline]
        fn write(&mut self, reg: WritableRegister, value: u64) {
            // A write to an absent register (UNDEFINED) is dropped: this
            // check is what makes `msr_raw!` sound.
            if !self.present.has(reg.into()) {
                return;
            }
            match reg {
                WritableRegister::CntvCtlEl0 => CNTV_CTL_EL0.set(value),
                WritableRegister::CntvCvalEl0 => CNTV_CVAL_EL0.set(value),
                WritableRegister::CntvCtlEl02 => msr_raw!("S3_5_C14_C3_1", value),
                WritableRegister::CntvCvalEl02 => msr_raw!("S3_5_C14_C3_2", value),
                WritableRegister::CntpCtlEl0 => msr_raw!("S3_3_C14_C2_1", value),
                WritableRegister::CntpCvalEl0 => msr_raw!("S3_3_C14_C2_2", value),
                WritableRegister::CntpCtlEl02 => msr_raw!("S3_5_C14_C2_1", value),
                WritableRegister::CntpCvalEl02 => msr_raw!("S3_5_C14_C2_2", value),
                WritableRegister::CntvoffEl2 => CNTVOFF_EL2.set(value),
                WritableRegister::CntpoffEl2 => msr_raw!("S3_4_C14_C0_6", value),
                WritableRegister::CnthctlEl2 => CNTHCTL_EL2.set(value),
                WritableRegister::CnthpCtlEl2 => msr_raw!("S3_4_C14_C2_1", value),
                WritableRegister::CnthpCvalEl2 => msr_raw!("S3_4_C14_C2_2", value),
            }
        }

        #[inline]
        fn isb(&mut self) {
            barrier::isb(barrier::SY);
        }
    }

    impl El2Timer {
        /// Takes this CPU's generic timer, with the host mode read from
        /// `HCR_EL2.E2H` (this is the usual constructor).
        ///
        /// Reads `HCR_EL2`, `ID_AA64MMFR0_EL1`, `ID_AA64MMFR1_EL1` and
        /// `CNTFRQ_EL0` once.
        ///
        /// # Safety
        ///
        /// The contract of [`SysRegs::new`]: at EL2, one token per CPU,
        /// nobody else writes the EL1 virtual or physical timer,
        /// `CNTVOFF_EL2`, `CNTPOFF_EL2` or the EL1 access and ECV bits of
        /// `CNTHCTL_EL2` while it
        /// lives, and `HCR_EL2.E2H` stays as it is now.
        #[must_use]
        pub unsafe fn new() -> Self {
            // SAFETY: the caller gives `SysRegs::new`'s guarantees.
            let regs = unsafe { SysRegs::new() };
            GenericTimer::detect(regs)
        }

        /// Takes this CPU's generic timer for the host mode the caller
        /// states, checked against `HCR_EL2.E2H` and `ID_AA64MMFR1_EL1.VH`
        /// (see [`GenericTimer::with_host_mode`]). Use it where the
        /// hypervisor set `HCR_EL2.E2H` itself and wants a mismatch
        /// reported rather than followed.
        ///
        /// # Errors
        ///
        /// [`Error::VheNotImplemented`] or [`Error::HostModeMismatch`].
        ///
        /// # Safety
        ///
        /// As [`El2Timer::new`].
        pub unsafe fn new_with_host_mode(mode: HostMode) -> Result<Self, Error> {
            // SAFETY: the caller gives `SysRegs::new`'s guarantees.
            let regs = unsafe { SysRegs::new() };
            GenericTimer::with_host_mode(regs, mode)
        }
    }
}
