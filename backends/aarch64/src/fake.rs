//! [`FakeRegisters`]: a [`RegisterFile`] in plain memory, for tests.

use core::cell::Cell;

use crate::HostMode;
use crate::registers::{self, PresentRegisters, Register, RegisterFile, WritableRegister};

/// A [`RegisterFile`] backed by plain fields: the generic timer registers
/// of one imaginary CPU, for host tests of [`GenericTimer`](crate::GenericTimer)
/// and of code built on it.
///
/// Each instance is independent (no globals), so parallel tests do not
/// interfere. It models what matters for getting the *register choice*
/// right:
///
/// - The EL1 virtual timer (the guest's) and the EL2 virtual timer
///   (`CNTHV_*_EL2`) are separate. `CNTV_CTL_EL0`/`CNTV_CVAL_EL0` reach the
///   EL1 one while `HCR_EL2.E2H` (bit 34 of [`hcr_el2`](Self::hcr_el2)) is
///   0 and the EL2 one while it is 1, as accesses from EL2 do on hardware.
/// - `CNTV_CTL_EL02`/`CNTV_CVAL_EL02` with E2H = 0, and `CNTPOFF_EL2`
///   without FEAT_ECV (`ID_AA64MMFR0_EL1.ECV` = 0), are UNDEFINED on
///   hardware. Here they read 0, write nothing, and are counted in
///   [`undefined_accesses`](Self::undefined_accesses).
/// - Reading the EL1 virtual timer's control register reports ISTATUS as
///   the hardware computes it: ENABLE set and the virtual count
///   (`cntpct - cntvoff_el2`, wrapping) at or past the compare value.
///   Writes keep ENABLE and IMASK only.
/// - The EL1 physical timer likewise, with `CNTP_CTL_EL0`/`CNTP_CVAL_EL0`
///   reaching it with E2H = 0 and the EL2 physical timer (`CNTHP_*_EL2`)
///   with E2H = 1, where `CNTP_CTL_EL02`/`CNTP_CVAL_EL02` reach it. Its
///   count is `cntpct - cntpoff_el2` while `CNTHCTL_EL2.ECV` (bit 12) is
///   set, `cntpct` otherwise.
///
/// The counter does not advance by itself: set [`cntpct`](Self::cntpct).
#[derive(Debug)]
#[non_exhaustive]
pub struct FakeRegisters {
    /// `CNTPCT_EL0`.
    pub cntpct: u64,
    /// `CNTFRQ_EL0`.
    pub cntfrq: u64,
    /// `HCR_EL2` (only E2H, bit 34, matters here).
    pub hcr_el2: u64,
    /// `ID_AA64MMFR0_EL1` (ECV is bits 63:60).
    pub id_aa64mmfr0_el1: u64,
    /// `ID_AA64MMFR1_EL1` (VH is bits 11:8).
    pub id_aa64mmfr1_el1: u64,
    /// `CNTHCTL_EL2`.
    pub cnthctl_el2: u64,
    /// `CNTVOFF_EL2`.
    pub cntvoff_el2: u64,
    /// `CNTPOFF_EL2`.
    pub cntpoff_el2: u64,
    /// The EL1 virtual timer's control register, ENABLE and IMASK (the
    /// guest's `CNTV_CTL_EL0`).
    pub el1_vtimer_ctl: u64,
    /// The EL1 virtual timer's compare value (the guest's `CNTV_CVAL_EL0`).
    pub el1_vtimer_cval: u64,
    /// The EL1 physical timer's control register, ENABLE and IMASK (the
    /// guest's `CNTP_CTL_EL0`).
    pub el1_ptimer_ctl: u64,
    /// The EL1 physical timer's compare value (the guest's
    /// `CNTP_CVAL_EL0`).
    pub el1_ptimer_cval: u64,
    /// The EL2 virtual timer's control register, `CNTHV_CTL_EL2`.
    pub el2_vtimer_ctl: u64,
    /// The EL2 virtual timer's compare value, `CNTHV_CVAL_EL2`.
    pub el2_vtimer_cval: u64,
    /// The EL2 physical timer's control register, ENABLE and IMASK
    /// (`CNTHP_CTL_EL2`; reads add ISTATUS as the hardware computes it).
    pub cnthp_ctl_el2: u64,
    /// The EL2 physical timer's compare value, `CNTHP_CVAL_EL2`.
    pub cnthp_cval_el2: u64,
    /// `SCR_EL3.ECVEn`: EL3 lets `CNTPOFF_EL2` take effect (FEAT_ECV
    /// only). `true` by default; QEMU without an emulated EL3 behaves as
    /// `false`.
    pub scr_el3_ecven: bool,
    /// How many `isb`s ran.
    pub isb_count: u64,
    /// How many register writes ran (UNDEFINED ones included).
    pub write_count: u64,
    undefined: Cell<u64>,
}

/// `CNTV_CTL` ENABLE, IMASK and ISTATUS.
const CTL_ENABLE: u64 = 1 << 0;
const CTL_WRITABLE: u64 = 0b11;
const CTL_ISTATUS: u64 = 1 << 2;
const CTL_IMASK: u64 = 1 << 1;

impl FakeRegisters {
    /// The CNTFRQ QEMU 7.2's `virt` machine reports, and the fake's default:
    /// 62.5 MHz. QEMU 10 (`-machine virt`; `virt-8.2` keeps 62.5 MHz) reports 1 GHz, as
    /// Armv8.6 requires; nothing in the backend depends on the value.
    pub const QEMU_FREQUENCY_HZ: u64 = 62_500_000;

    /// A CPU like QEMU 7.2's `-cpu max` at EL2: FEAT_VHE implemented
    /// (`VH = 1`), no FEAT_ECV, 62.5 MHz, `HCR_EL2.E2H` set for
    /// [`HostMode::Vhe`]. Every timer register is 0.
    #[must_use]
    pub fn new(mode: HostMode) -> Self {
        Self {
            cntpct: 0,
            cntfrq: Self::QEMU_FREQUENCY_HZ,
            hcr_el2: if mode.is_vhe() {
                registers::HCR_EL2_E2H
            } else {
                0
            },
            id_aa64mmfr0_el1: 0,
            id_aa64mmfr1_el1: 1 << 8,
            cnthctl_el2: 0,
            cntvoff_el2: 0,
            cntpoff_el2: 0,
            el1_vtimer_ctl: 0,
            el1_vtimer_cval: 0,
            el1_ptimer_ctl: 0,
            el1_ptimer_cval: 0,
            el2_vtimer_ctl: 0,
            el2_vtimer_cval: 0,
            cnthp_ctl_el2: 0,
            cnthp_cval_el2: 0,
            scr_el3_ecven: true,
            isb_count: 0,
            write_count: 0,
            undefined: Cell::new(0),
        }
    }

    /// Sets `ID_AA64MMFR0_EL1.ECV` to `level` (0: no FEAT_ECV; 1 or 2:
    /// FEAT_ECV), keeping the other fields.
    #[must_use]
    pub fn with_ecv(mut self, level: u8) -> Self {
        self.id_aa64mmfr0_el1 =
            (self.id_aa64mmfr0_el1 & !(0xf << 60)) | (u64::from(level & 0xf) << 60);
        self
    }

    /// Sets `ID_AA64MMFR1_EL1.VH` to `level` (0: no FEAT_VHE), keeping the
    /// other fields.
    #[must_use]
    pub fn with_vh(mut self, level: u8) -> Self {
        self.id_aa64mmfr1_el1 =
            (self.id_aa64mmfr1_el1 & !(0xf << 8)) | (u64::from(level & 0xf) << 8);
        self
    }

    /// How many accesses were UNDEFINED on real hardware (see the type
    /// docs). A correct user of this register file keeps it at 0.
    #[must_use]
    pub fn undefined_accesses(&self) -> u64 {
        self.undefined.get()
    }

    fn e2h(&self) -> bool {
        registers::e2h_set(self.hcr_el2)
    }

    /// The same decision [`SysRegs`](crate::SysRegs) makes (once, at
    /// creation), from the current register values.
    fn present(&self) -> PresentRegisters {
        PresentRegisters::from_id_registers(self.hcr_el2, self.id_aa64mmfr0_el1)
    }

    fn undefined_access(&self) {
        self.undefined.set(self.undefined.get().saturating_add(1));
    }

    fn hyp_ctl_with_istatus(&self) -> u64 {
        let ctl = self.cnthp_ctl_el2 & CTL_WRITABLE;
        if ctl & CTL_ENABLE != 0 && self.cntpct >= self.cnthp_cval_el2 {
            ctl | CTL_ISTATUS
        } else {
            ctl
        }
    }

    /// Whether the EL2 physical timer's interrupt (PPI 26 on most
    /// systems) is asserted: enabled, not masked, and the count at or past
    /// its compare value.
    #[must_use]
    pub fn hyp_timer_asserted(&self) -> bool {
        self.hyp_ctl_with_istatus() & (CTL_ISTATUS | CTL_IMASK) == CTL_ISTATUS
    }

    /// The physical count EL1 sees: offset by `CNTPOFF_EL2` while
    /// `CNTHCTL_EL2.ECV` is set (FEAT_ECV implemented and
    /// [`scr_el3_ecven`](Self::scr_el3_ecven)).
    #[must_use]
    pub fn el1_physical_count(&self) -> u64 {
        if self.present().cntpoff
            && self.scr_el3_ecven
            && self.cnthctl_el2 & registers::CNTHCTL_ECV != 0
        {
            self.cntpct.wrapping_sub(self.cntpoff_el2)
        } else {
            self.cntpct
        }
    }

    fn el1_pctl_with_istatus(&self) -> u64 {
        let ctl = self.el1_ptimer_ctl & CTL_WRITABLE;
        if ctl & CTL_ENABLE != 0 && self.el1_physical_count() >= self.el1_ptimer_cval {
            ctl | CTL_ISTATUS
        } else {
            ctl
        }
    }

    /// Whether the EL1 physical timer's interrupt (PPI 30 on most systems)
    /// is asserted.
    #[must_use]
    pub fn el1_ptimer_asserted(&self) -> bool {
        self.el1_pctl_with_istatus() & (CTL_ISTATUS | CTL_IMASK) == CTL_ISTATUS
    }

    fn el1_ctl_with_istatus(&self) -> u64 {
        let ctl = self.el1_vtimer_ctl & CTL_WRITABLE;
        let now = self.cntpct.wrapping_sub(self.cntvoff_el2);
        if ctl & CTL_ENABLE != 0 && now >= self.el1_vtimer_cval {
            ctl | CTL_ISTATUS
        } else {
            ctl
        }
    }
}

impl RegisterFile for FakeRegisters {
    fn read(&self, reg: Register) -> u64 {
        if !self.present().has(reg) {
            self.undefined_access();
            return 0;
        }
        match reg {
            Register::CntpctEl0 => self.cntpct,
            Register::CntfrqEl0 => self.cntfrq,
            Register::CntvCtlEl0 if self.e2h() => self.el2_vtimer_ctl,
            Register::CntvCtlEl0 => self.el1_ctl_with_istatus(),
            Register::CntvCvalEl0 if self.e2h() => self.el2_vtimer_cval,
            Register::CntvCvalEl0 => self.el1_vtimer_cval,
            Register::CntvCtlEl02 => self.el1_ctl_with_istatus(),
            Register::CntvCvalEl02 => self.el1_vtimer_cval,
            Register::CntpCtlEl0 if self.e2h() => self.hyp_ctl_with_istatus(),
            Register::CntpCtlEl0 => self.el1_pctl_with_istatus(),
            Register::CntpCvalEl0 if self.e2h() => self.cnthp_cval_el2,
            Register::CntpCvalEl0 => self.el1_ptimer_cval,
            Register::CntpCtlEl02 => self.el1_pctl_with_istatus(),
            Register::CntpCvalEl02 => self.el1_ptimer_cval,
            Register::CntvoffEl2 => self.cntvoff_el2,
            Register::CntpoffEl2 => self.cntpoff_el2,
            Register::CnthctlEl2 => self.cnthctl_el2,
            Register::CnthpCtlEl2 => self.hyp_ctl_with_istatus(),
            Register::CnthpCvalEl2 => self.cnthp_cval_el2,
            Register::HcrEl2 => self.hcr_el2,
            Register::IdAa64mmfr0El1 => self.id_aa64mmfr0_el1,
            Register::IdAa64mmfr1El1 => self.id_aa64mmfr1_el1,
        }
    }

    fn write(&mut self, reg: WritableRegister, value: u64) {
        self.write_count = self.write_count.saturating_add(1);
        if !self.present().has(reg.into()) {
            self.undefined_access();
            return;
        }
        let e2h = self.e2h();
        let slot = match reg {
            WritableRegister::CntvCtlEl0 if e2h => &mut self.el2_vtimer_ctl,
            WritableRegister::CntvCtlEl0 => &mut self.el1_vtimer_ctl,
            WritableRegister::CntvCvalEl0 if e2h => &mut self.el2_vtimer_cval,
            WritableRegister::CntvCvalEl0 => &mut self.el1_vtimer_cval,
            WritableRegister::CntvCtlEl02 => &mut self.el1_vtimer_ctl,
            WritableRegister::CntvCvalEl02 => &mut self.el1_vtimer_cval,
            WritableRegister::CntpCtlEl0 if e2h => &mut self.cnthp_ctl_el2,
            WritableRegister::CntpCtlEl0 => &mut self.el1_ptimer_ctl,
            WritableRegister::CntpCvalEl0 if e2h => &mut self.cnthp_cval_el2,
            WritableRegister::CntpCvalEl0 => &mut self.el1_ptimer_cval,
            WritableRegister::CntpCtlEl02 => &mut self.el1_ptimer_ctl,
            WritableRegister::CntpCvalEl02 => &mut self.el1_ptimer_cval,
            WritableRegister::CntvoffEl2 => &mut self.cntvoff_el2,
            WritableRegister::CntpoffEl2 => &mut self.cntpoff_el2,
            WritableRegister::CnthctlEl2 => &mut self.cnthctl_el2,
            WritableRegister::CnthpCtlEl2 => &mut self.cnthp_ctl_el2,
            WritableRegister::CnthpCvalEl2 => &mut self.cnthp_cval_el2,
        };
        *slot = value;
        if matches!(
            reg,
            WritableRegister::CntvCtlEl0
                | WritableRegister::CntvCtlEl02
                | WritableRegister::CntpCtlEl0
                | WritableRegister::CntpCtlEl02
                | WritableRegister::CnthpCtlEl2
        ) {
            // ISTATUS is read-only, the other bits RES0.
            *slot &= CTL_WRITABLE;
        }
    }

    fn isb(&mut self) {
        self.isb_count = self.isb_count.saturating_add(1);
    }
}
