//! [`GenericTimer`]: [`TimerHw`] on any [`RegisterFile`].

use core::fmt;

use arch_timer_virt::{Ticks, TimerCtl, TimerHw};

use crate::Error;
use crate::registers::{
    self, CNTHCTL_ECV, CNTHCTL_NVHE_EL1PCEN, CNTHCTL_NVHE_EL1PCTEN, CNTHCTL_VHE_EL1PCTEN,
    CNTHCTL_VHE_EL1PTEN, Register, RegisterFile, WritableRegister,
};

/// How the host runs at EL2: `HCR_EL2.E2H`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HostMode {
    /// `HCR_EL2.E2H = 0`: a classic (split) hypervisor. The EL1 virtual
    /// timer is `CNTV_CTL_EL0`/`CNTV_CVAL_EL0`, the EL1 physical timer
    /// `CNTP_CTL_EL0`/`CNTP_CVAL_EL0`; `CNTHCTL_EL2.EL1PCTEN`/`EL1PCEN` are
    /// bits 0/1.
    NonVhe,
    /// `HCR_EL2.E2H = 1` (FEAT_VHE in use). From EL2, `CNTV_*_EL0` and
    /// `CNTP_*_EL0` then name the EL2 timers (`CNTHV_*_EL2`,
    /// `CNTHP_*_EL2`), so the guest's EL1 timers are `CNTV_*_EL02` and
    /// `CNTP_*_EL02`; `CNTHCTL_EL2.EL1PCTEN`/`EL1PTEN` are bits 10/11
    /// (Arm ARM D24.10, `CNTHCTL_EL2` with `FEAT_VHE` and E2H = 1).
    Vhe,
}

impl HostMode {
    /// The host mode `HCR_EL2` value `hcr_el2` selects.
    #[must_use]
    pub const fn from_hcr_el2(hcr_el2: u64) -> Self {
        if registers::e2h_set(hcr_el2) {
            Self::Vhe
        } else {
            Self::NonVhe
        }
    }

    /// Whether this is [`HostMode::Vhe`].
    #[must_use]
    #[inline]
    pub const fn is_vhe(self) -> bool {
        matches!(self, Self::Vhe)
    }

    /// The two `CNTHCTL_EL2` bits that let EL1 (and EL0) use the physical
    /// counter and the EL1 physical timer without trapping, in this mode's
    /// layout.
    #[must_use]
    #[inline]
    pub const fn cnthctl_el1_physical_access(self) -> u64 {
        match self {
            Self::NonVhe => CNTHCTL_NVHE_EL1PCTEN | CNTHCTL_NVHE_EL1PCEN,
            Self::Vhe => CNTHCTL_VHE_EL1PCTEN | CNTHCTL_VHE_EL1PTEN,
        }
    }

    /// The register that reaches the guest's EL1 virtual timer control
    /// from EL2 in this mode.
    #[must_use]
    #[inline]
    pub const fn vtimer_ctl_register(self) -> WritableRegister {
        match self {
            Self::NonVhe => WritableRegister::CntvCtlEl0,
            Self::Vhe => WritableRegister::CntvCtlEl02,
        }
    }

    /// The register that reaches the guest's EL1 virtual timer compare
    /// value from EL2 in this mode.
    #[must_use]
    #[inline]
    pub const fn vtimer_cval_register(self) -> WritableRegister {
        match self {
            Self::NonVhe => WritableRegister::CntvCvalEl0,
            Self::Vhe => WritableRegister::CntvCvalEl02,
        }
    }
}

impl HostMode {
    /// The register that reaches the guest's EL1 physical timer control
    /// from EL2 in this mode.
    #[must_use]
    #[inline]
    pub const fn ptimer_ctl_register(self) -> WritableRegister {
        match self {
            Self::NonVhe => WritableRegister::CntpCtlEl0,
            Self::Vhe => WritableRegister::CntpCtlEl02,
        }
    }

    /// The register that reaches the guest's EL1 physical timer compare
    /// value from EL2 in this mode.
    #[must_use]
    #[inline]
    pub const fn ptimer_cval_register(self) -> WritableRegister {
        match self {
            Self::NonVhe => WritableRegister::CntpCvalEl0,
            Self::Vhe => WritableRegister::CntpCvalEl02,
        }
    }
}

impl fmt::Display for HostMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NonVhe => "non-VHE (E2H = 0)",
            Self::Vhe => "VHE (E2H = 1)",
        })
    }
}

/// What the timer hardware of a CPU offers, read once when its
/// [`GenericTimer`] is built ([`GenericTimer::features`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimerFeatures {
    /// The host runs with `HCR_EL2.E2H = 1` (FEAT_VHE in use), which moves
    /// the EL1 physical timer access bits of `CNTHCTL_EL2` to bits 10/11.
    pub vhe: bool,
    /// FEAT_ECV is implemented: `CNTPOFF_EL2` exists.
    pub ecv: bool,
    /// The counter frequency, `CNTFRQ_EL0`, in Hz: derive every period
    /// from it.
    pub frequency_hz: u32,
}

/// [`TimerHw`] on a [`RegisterFile`]: the generic timer of one CPU, seen
/// from EL2.
///
/// Construction reads `HCR_EL2` (unless the host mode is stated and
/// checked, see [`with_host_mode`](Self::with_host_mode)),
/// `ID_AA64MMFR0_EL1`, `ID_AA64MMFR1_EL1` and `CNTFRQ_EL0` once and keeps
/// what they say; afterwards every operation is one or two register
/// accesses. The host mode decides which registers reach the guest's timer
/// (see [`HostMode`]) and the `CNTHCTL_EL2` layout.
///
/// On the CPU, use [`El2Timer`](crate::El2Timer) (this type over
/// [`SysRegs`](crate::SysRegs)); in tests, `GenericTimer<FakeRegisters>`
/// (see [`FakeRegisters`](crate::FakeRegisters)).
#[derive(Debug)]
pub struct GenericTimer<R> {
    regs: R,
    features: TimerFeatures,
    vhe_implemented: bool,
    /// What [`reset_cpu`](GenericTimer::reset_cpu)'s probe found: whether
    /// `CNTPOFF_EL2` really offsets the EL1 physical timer (`None`: not
    /// probed).
    offset_effective: Option<bool>,
}

impl<R: RegisterFile> GenericTimer<R> {
    /// Builds the timer, taking the host mode from `HCR_EL2.E2H`.
    ///
    /// Reads `HCR_EL2`, `ID_AA64MMFR0_EL1`, `ID_AA64MMFR1_EL1` and
    /// `CNTFRQ_EL0` once.
    #[must_use]
    pub fn detect(regs: R) -> Self {
        let mode = HostMode::from_hcr_el2(regs.read(Register::HcrEl2));
        Self::build(regs, mode)
    }

    /// Builds the timer for the host mode the caller states, after checking
    /// it against the CPU.
    ///
    /// Reads the same registers as [`detect`](Self::detect): the stated
    /// mode is an assertion, never trusted blindly, because a wrong mode
    /// would make [`TimerHw`] operations reach the EL2 virtual timer
    /// instead of the guest's, or execute UNDEFINED `_EL02` accesses.
    ///
    /// # Errors
    ///
    /// - [`Error::VheNotImplemented`] if `mode` is [`HostMode::Vhe`] and
    ///   `ID_AA64MMFR1_EL1.VH` is 0.
    /// - [`Error::HostModeMismatch`] if `HCR_EL2.E2H` says otherwise.
    pub fn with_host_mode(regs: R, mode: HostMode) -> Result<Self, Error> {
        let timer = Self::detect(regs);
        if mode.is_vhe() && !timer.vhe_implemented {
            return Err(Error::VheNotImplemented);
        }
        let actual = timer.host_mode();
        if actual != mode {
            return Err(Error::HostModeMismatch {
                stated: mode,
                actual,
            });
        }
        Ok(timer)
    }

    fn build(regs: R, mode: HostMode) -> Self {
        let vhe_implemented = registers::vhe_implemented(regs.read(Register::IdAa64mmfr1El1));
        let ecv = registers::ecv_implemented(regs.read(Register::IdAa64mmfr0El1));
        let frequency_hz = registers::counter_frequency(regs.read(Register::CntfrqEl0));
        Self {
            regs,
            features: TimerFeatures {
                vhe: mode.is_vhe(),
                ecv,
                frequency_hz,
            },
            vhe_implemented,
            offset_effective: None,
        }
    }

    /// Puts this CPU's timer where the core expects it with no vCPU
    /// loaded: the EL1 virtual and physical timers disabled,
    /// `CNTVOFF_EL2` = 0 (its reset value is UNKNOWN), with FEAT_ECV
    /// `CNTPOFF_EL2` = 0 and `CNTHCTL_EL2.ECV` clear, and EL1 physical
    /// timer and counter access allowed. Call it once per CPU before the
    /// first [`VcpuTimer::load`](arch_timer_virt::VcpuTimer::load) there.
    ///
    /// With FEAT_ECV it first probes whether the physical offset takes
    /// effect ([`physical_offset_effective`](Self::physical_offset_effective)):
    /// the ID register says `CNTPOFF_EL2` exists, but the offset applies
    /// only if EL3 allows it too (`SCR_EL3.ECVEn`, firmware's choice; QEMU
    /// without an emulated EL3 leaves it clear). The probe enables the EL1
    /// physical timer, masked, with a compare value that only the offset
    /// count reaches, reads ISTATUS, and undoes it all.
    pub fn reset_cpu(&mut self) {
        self.set_vtimer_ctl(TimerCtl::empty());
        self.set_ptimer_ctl(TimerCtl::empty());
        if self.features.ecv {
            self.offset_effective = Some(self.probe_physical_offset());
        }
        self.set_virtual_offset(Ticks::ZERO);
        self.set_physical_offset(Ticks::ZERO);
        self.set_el1_physical_access(true);
    }

    /// `reset_cpu`'s ECV probe (FEAT_ECV implemented, the EL1 physical
    /// timer disabled): with an offset of `-2d` the EL1 count is `now +
    /// 2d`, past a compare value of `now + d`; without it, `now` is not.
    /// `d` is a count far beyond the probe's duration at any frequency.
    fn probe_physical_offset(&mut self) -> bool {
        const D: u64 = 1 << 40;
        let now = self.physical_count();
        // Never wraps in the counter's lifetime (2^64 - 2^41 ticks).
        let cval = now.saturating_add(Ticks::new(D));
        let _ = self.try_set_physical_offset(Ticks::new(D.wrapping_mul(2).wrapping_neg()));
        self.set_ptimer_cval(cval);
        self.regs.isb();
        self.set_ptimer_ctl(TimerCtl::ENABLE | TimerCtl::IMASK);
        self.regs.isb();
        let effective = self.ptimer_ctl().contains(TimerCtl::ISTATUS);
        self.set_ptimer_ctl(TimerCtl::empty());
        self.regs.isb();
        effective
    }

    /// What [`reset_cpu`](Self::reset_cpu)'s probe found: `Some(true)` if
    /// `CNTPOFF_EL2` offsets the EL1 physical timer, `Some(false)` if
    /// FEAT_ECV is implemented but the offset has no effect (EL3 keeps
    /// `SCR_EL3.ECVEn` clear), `None` without FEAT_ECV or before the
    /// probe.
    #[must_use]
    pub const fn physical_offset_effective(&self) -> Option<bool> {
        self.offset_effective
    }

    /// Writes the physical offset, `CNTPOFF_EL2`, and sets
    /// `CNTHCTL_EL2.ECV` exactly when it is not zero (FEAT_ECV only): the
    /// checked form of [`TimerHw::set_physical_offset`].
    ///
    /// # Errors
    ///
    /// [`Error::EcvNotImplemented`] without FEAT_ECV (the register does not
    /// exist and nothing is touched).
    pub fn try_set_physical_offset(&mut self, offset: Ticks) -> Result<(), Error> {
        if !self.features.ecv {
            return Err(Error::EcvNotImplemented);
        }
        self.regs.write(WritableRegister::CntpoffEl2, offset.get());
        let old = self.regs.read(Register::CnthctlEl2);
        let new = if offset == Ticks::ZERO {
            old & !CNTHCTL_ECV
        } else {
            old | CNTHCTL_ECV
        };
        if new != old {
            self.regs.write(WritableRegister::CnthctlEl2, new);
        }
        Ok(())
    }
}

impl<R> GenericTimer<R> {
    /// What this CPU's timer offers (host mode, FEAT_ECV, the counter
    /// frequency), as read at construction.
    #[must_use]
    pub const fn features(&self) -> TimerFeatures {
        self.features
    }

    /// How the host runs: the `HCR_EL2.E2H` this timer was built for.
    #[must_use]
    #[inline]
    pub const fn host_mode(&self) -> HostMode {
        if self.features.vhe {
            HostMode::Vhe
        } else {
            HostMode::NonVhe
        }
    }

    /// Whether the CPU implements FEAT_VHE (`ID_AA64MMFR1_EL1.VH != 0`),
    /// whether or not the host uses it.
    #[must_use]
    pub const fn vhe_implemented(&self) -> bool {
        self.vhe_implemented
    }

    /// The register file.
    #[must_use]
    pub const fn registers(&self) -> &R {
        &self.regs
    }

    /// The register file, mutably (a test sets up or inspects its fake
    /// through this).
    pub const fn registers_mut(&mut self) -> &mut R {
        &mut self.regs
    }

    /// Gives the register file back.
    #[must_use]
    pub fn into_registers(self) -> R {
        self.regs
    }
}

impl<R: RegisterFile> TimerHw for GenericTimer<R> {
    fn physical_count(&self) -> Ticks {
        Ticks::new(self.regs.read(Register::CntpctEl0))
    }

    fn vtimer_ctl(&self) -> TimerCtl {
        let reg = self.host_mode().vtimer_ctl_register();
        TimerCtl::from_bits_retain(self.regs.read(reg.into()))
    }

    fn set_vtimer_ctl(&mut self, ctl: TimerCtl) {
        // ISTATUS is read-only and the other bits RES0: write ENABLE and
        // IMASK only.
        let reg = self.host_mode().vtimer_ctl_register();
        self.regs.write(reg, ctl.writable().bits());
    }

    fn vtimer_cval(&self) -> Ticks {
        let reg = self.host_mode().vtimer_cval_register();
        Ticks::new(self.regs.read(reg.into()))
    }

    fn set_vtimer_cval(&mut self, cval: Ticks) {
        let reg = self.host_mode().vtimer_cval_register();
        self.regs.write(reg, cval.get());
    }

    fn set_virtual_offset(&mut self, offset: Ticks) {
        self.regs.write(WritableRegister::CntvoffEl2, offset.get());
    }

    fn barrier(&mut self) {
        self.regs.isb();
    }

    fn set_el1_physical_access(&mut self, allowed: bool) {
        let bits = self.host_mode().cnthctl_el1_physical_access();
        let old = self.regs.read(Register::CnthctlEl2);
        let new = if allowed { old | bits } else { old & !bits };
        if new != old {
            self.regs.write(WritableRegister::CnthctlEl2, new);
        }
    }

    fn ptimer_ctl(&self) -> TimerCtl {
        let reg = self.host_mode().ptimer_ctl_register();
        TimerCtl::from_bits_retain(self.regs.read(reg.into()))
    }

    fn set_ptimer_ctl(&mut self, ctl: TimerCtl) {
        let reg = self.host_mode().ptimer_ctl_register();
        self.regs.write(reg, ctl.writable().bits());
    }

    fn ptimer_cval(&self) -> Ticks {
        let reg = self.host_mode().ptimer_cval_register();
        Ticks::new(self.regs.read(reg.into()))
    }

    fn set_ptimer_cval(&mut self, cval: Ticks) {
        let reg = self.host_mode().ptimer_cval_register();
        self.regs.write(reg, cval.get());
    }

    fn has_physical_offset(&self) -> bool {
        // FEAT_ECV, and not found ineffective by `reset_cpu`'s probe.
        self.features.ecv && self.offset_effective != Some(false)
    }

    fn set_physical_offset(&mut self, offset: Ticks) {
        // Without FEAT_ECV there is nothing to write (the trait's
        // contract): the error is the expected "no such register".
        let _absent = self.try_set_physical_offset(offset);
    }
}
