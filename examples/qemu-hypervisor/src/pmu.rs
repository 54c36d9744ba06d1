//! Instructions retired at EL2 and at EL1, counted by the PMU (the `perf`
//! scenario's instrument).
//!
//! Two event counters count the architectural event `INST_RETIRED`
//! (0x08), each with the exception-level filter of its
//! `PMEVTYPER<n>_EL0`:
//!
//! - the EL2 counter: `P` = 1 (not EL1), `U` = 1 (not EL0), `NSH` = 1
//!   (EL2);
//! - the EL1 counter: `P` = 0 (EL1), `U` = 1 (not EL0), `NSH` = 0 (not
//!   EL2).
//!
//! `NSK`/`NSU` stay 0: without EL3 (QEMU `virt` without `secure=on`) they
//! are ignored and EL1/EL0 are filtered by `P`/`U` alone; with EL3, an
//! `NSK` that differs from `P` filters Non-secure EL1, so 0 is right for
//! both counters too (QEMU 7.2 and 10 implement exactly these rules in
//! `pmu_counter_enabled`).
//!
//! The two counters are the top two, reserved for EL2 with
//! `MDCR_EL2.HPMN` = `PMCR_EL0.N` - 2 and enabled by `MDCR_EL2.HPME` and
//! `PMCNTENSET_EL0`: `PMCR_EL0.E` (which the guest's EL1 context saves and
//! restores) does not reach them, and a guest cannot read or write them.
//!
//! QEMU counts `INST_RETIRED` only with `-icount` (the event is
//! unsupported otherwise, and the counters then stay at 0: [`Pmu::init`]
//! checks that the EL2 counter moves). With `-icount shift=0` the counts
//! are deterministic: the same run gives the same counts.

use crate::sysreg::{isb, read_sysreg, write_sysreg};

/// `INST_RETIRED`: instructions architecturally executed.
const INST_RETIRED: u64 = 0x08;
/// `PMEVTYPER<n>_EL0.P`: do not count at EL1.
const TYPER_P: u64 = 1 << 31;
/// `PMEVTYPER<n>_EL0.U`: do not count at EL0.
const TYPER_U: u64 = 1 << 30;
/// `PMEVTYPER<n>_EL0.NSH`: count at EL2.
const TYPER_NSH: u64 = 1 << 27;
/// `MDCR_EL2.HPMN`, bits 4:0.
const MDCR_HPMN: u64 = 0x1f;
/// `MDCR_EL2.HPME`: the counters reserved for EL2 are enabled.
const MDCR_HPME: u64 = 1 << 7;
/// `MDCR_EL2.HPMD`: counting at EL2 prohibited (for the guest's counters).
const MDCR_HPMD: u64 = 1 << 17;

/// The two counters, set up.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pmu {
    /// The counter that counts EL2 instructions.
    el2: u64,
    /// The counter that counts EL1 instructions.
    el1: u64,
}

/// A reading of both counters (32-bit counters: differences wrap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Sample {
    /// Instructions retired at EL2.
    pub(crate) el2: u32,
    /// Instructions retired at EL1.
    pub(crate) el1: u32,
}

impl Sample {
    /// The counts from `earlier` to `self`.
    pub(crate) fn since(self, earlier: Self) -> Self {
        Self {
            el2: self.el2.wrapping_sub(earlier.el2),
            el1: self.el1.wrapping_sub(earlier.el1),
        }
    }
}

/// Why the PMU cannot count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PmuError {
    /// `ID_AA64DFR0_EL1.PMUVer` says there is no PMUv3.
    NoPmu,
    /// Fewer than 3 event counters (one must stay with EL1).
    TooFewCounters(u64),
    /// The EL2 counter did not move: `INST_RETIRED` is not counted (QEMU
    /// counts it only with `-icount`).
    NotCounting,
}

impl Pmu {
    /// Reserves the top two event counters for EL2 and starts them.
    ///
    /// Runs at EL2 on this CPU; the guest keeps the counters below
    /// `HPMN` (the run loop's EL1 context saves `PMCR_EL0`, which does not
    /// enable or reset the reserved ones).
    pub(crate) fn init() -> Result<Self, PmuError> {
        let ver = (read_sysreg!(id_aa64dfr0_el1) >> 8) & 0xf;
        if ver == 0 || ver == 0xf {
            return Err(PmuError::NoPmu);
        }
        let n = (read_sysreg!(pmcr_el0) >> 11) & 0x1f;
        if n < 3 {
            return Err(PmuError::TooFewCounters(n));
        }
        let pmu = Self {
            el2: n - 1,
            el1: n - 2,
        };
        let mdcr = read_sysreg!(mdcr_el2);
        let mdcr = (mdcr & !(MDCR_HPMN | MDCR_HPMD)) | (n - 2) | MDCR_HPME;
        // SAFETY: MDCR_EL2 only moves the top two counters to EL2 and
        // enables them; PMSELR_EL0/PMXEV* reach the selected counter only.
        unsafe {
            write_sysreg!(mdcr_el2, mdcr);
            write_sysreg!(pmcntenclr_el0, (1 << pmu.el2) | (1 << pmu.el1));
        }
        isb();
        pmu.set_type(pmu.el2, TYPER_P | TYPER_U | TYPER_NSH | INST_RETIRED);
        pmu.set_type(pmu.el1, TYPER_U | INST_RETIRED);
        // SAFETY: starts the two counters just configured.
        unsafe { write_sysreg!(pmcntenset_el0, (1 << pmu.el2) | (1 << pmu.el1)) };
        isb();
        let before = pmu.read();
        for _ in 0..16 {
            isb();
        }
        if pmu.read().since(before).el2 == 0 {
            return Err(PmuError::NotCounting);
        }
        Ok(pmu)
    }

    fn set_type(self, counter: u64, typer: u64) {
        // SAFETY: selects and configures a counter reserved for EL2 (the
        // guest's PMSELR_EL0 is not kept: the perf guest does not use the
        // PMU).
        unsafe {
            write_sysreg!(pmselr_el0, counter);
            isb();
            write_sysreg!(pmxevtyper_el0, typer);
            write_sysreg!(pmxevcntr_el0, 0);
        }
        isb();
    }

    /// The number of the counter that counts EL2 instructions.
    pub(crate) const fn el2_counter(self) -> u64 {
        self.el2
    }

    /// Reads event counter `counter` (one of the two this module set up).
    pub(crate) fn counter(counter: u64) -> u32 {
        // SAFETY: selects a counter reserved for EL2.
        unsafe { write_sysreg!(pmselr_el0, counter) };
        isb();
        // Event counters are 32 bits wide unless PMCR_EL0.LP / MDCR_EL2.HLP
        // (neither is set here).
        u32::try_from(read_sysreg!(pmxevcntr_el0) & 0xffff_ffff).unwrap_or(0)
    }

    /// Reads both counters, EL2 first.
    pub(crate) fn read(self) -> Sample {
        let el2 = Self::counter(self.el2);
        let el1 = Self::counter(self.el1);
        Sample { el2, el1 }
    }
}
