//! A vCPU's EL1 (and EL0) system registers: saved when it is scheduled out,
//! restored when it is scheduled in. With `HCR_EL2.E2H = 1` the guest's EL1
//! registers that VHE redirects are reached from EL2 through their
//! `*_EL12` names (the plain `*_EL1` names reach the host's own EL2
//! registers), so those accesses have two forms; the others (`SP_EL1`,
//! `TPIDR_EL1`, `PAR_EL1`, `MDSCR_EL1`, the EL0 registers, the pointer
//! authentication keys, ...) have one name in both host modes.

use qemu_hypervisor::config::HostMode;

use crate::sysreg::{read_sysreg, write_sysreg};

/// `SCTLR_EL1` of a freshly reset vCPU: MMU and caches off, the RES1 bits.
pub(crate) const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// `CPACR_EL1.FPEN = 0b11`: FP/SIMD at EL1 and EL0 not trapped.
pub(crate) const CPACR_EL1_FPEN: u64 = 0b11 << 20;

/// Which optional register groups this CPU has (the registers of a
/// missing feature are UNDEFINED, so they are neither saved nor restored).
#[derive(Clone, Copy, Debug)]
struct Features {
    /// Every CPU.
    base: bool,
    /// FEAT_PAuth: `ID_AA64ISAR1_EL1.{APA,API,GPA,GPI}` or
    /// `ID_AA64ISAR2_EL1.{APA3,GPA3}` non-zero.
    pauth: bool,
    /// A PMUv3: `ID_AA64DFR0_EL1.PMUVer` neither 0 (none) nor 0xf
    /// (IMPLEMENTATION DEFINED).
    pmu: bool,
}

impl Features {
    fn of_this_cpu() -> Self {
        let isar1 = read_sysreg!(id_aa64isar1_el1);
        // ID_AA64ISAR2_EL1, by encoding (older assemblers lack the name).
        let isar2 = read_sysreg!("S3_0_C0_C6_2");
        // ISAR1: APA 7:4, API 11:8, GPA 27:24, GPI 31:28; ISAR2: GPA3
        // 11:8, APA3 15:12.
        let pauth = isar1 & 0xff00_0ff0 != 0 || isar2 & 0xff00 != 0;
        let pmu_ver = (read_sysreg!(id_aa64dfr0_el1) >> 8) & 0xf;
        Self {
            base: true,
            pauth,
            pmu: pmu_ver != 0 && pmu_ver != 0xf,
        }
    }
}

/// Declares [`El1Regs`] and its save/restore from one table. Each row:
/// the field, the register's name from EL2 with `E2H = 0`, and with
/// `E2H = 1` (the `*_EL12` encoding where VHE redirects the plain name).
macro_rules! el1_regs {
    ($($(#[$doc:meta])* $field:ident: $feat:ident, $nvhe:literal, $vhe:literal;)*) => {
        /// Every EL1/EL0 system register an unmodified Linux kernel uses
        /// that the world switch does not already hold (the general and
        /// FP/SIMD registers, `FPCR`, `FPSR` are in
        /// [`GuestRegs`](crate::vectors::GuestRegs); the timer registers
        /// are the library's; `VMPIDR_EL2` is set per vCPU by the run
        /// loop). Enough to time-slice several Linux vCPUs on one CPU.
        ///
        /// Not switched: the debug breakpoint/watchpoint registers
        /// (`DBGB*`/`DBGW*`; a guest debugger would need them), the PMU
        /// event counters (only the enable state is switched), SVE/SME
        /// (`ZCR_EL1`; the example runs QEMU with `sve=off,sme=off`) and
        /// MTE (`-machine virt` without `mte=on` has none).
        #[derive(Clone, Copy, Debug, Default)]
        pub(crate) struct El1Regs {
            $($(#[$doc])* pub(crate) $field: u64,)*
        }

        impl El1Regs {
            /// Reads the guest's registers from this CPU.
            pub(crate) fn save(&mut self, mode: HostMode) {
                let has = Features::of_this_cpu();
                match mode {
                    HostMode::NonVhe => { $(if has.$feat { self.$field = read_sysreg!($nvhe); })* }
                    HostMode::Vhe => { $(if has.$feat { self.$field = read_sysreg!($vhe); })* }
                }
            }

            /// Writes the guest's registers to this CPU (the PMU enable
            /// registers are set/clear pairs: see [`Self::restore`]).
            fn write_all(&self, mode: HostMode, has: Features) {
                // SAFETY: these are the guest's EL1/EL0 registers (the
                // `_EL12` names with E2H = 1); EL2 does not use them, so
                // writing them changes nothing for the hypervisor.
                unsafe {
                    match mode {
                        HostMode::NonVhe => { $(if has.$feat { write_sysreg!($nvhe, self.$field); })* }
                        HostMode::Vhe => { $(if has.$feat { write_sysreg!($vhe, self.$field); })* }
                    }
                }
            }
        }
    };
}

el1_regs! {
    /// `SCTLR_EL1`: the stage 1 MMU, caches, alignment checks.
    sctlr: base, "sctlr_el1", "S3_5_C1_C0_0";
    /// `ACTLR_EL1`.
    actlr: base, "actlr_el1", "actlr_el1";
    /// `CPACR_EL1`: FP/SIMD traps.
    cpacr: base, "cpacr_el1", "S3_5_C1_C0_2";
    /// `TTBR0_EL1`: user translation table (and ASID).
    ttbr0: base, "ttbr0_el1", "S3_5_C2_C0_0";
    /// `TTBR1_EL1`: kernel translation table.
    ttbr1: base, "ttbr1_el1", "S3_5_C2_C0_1";
    /// `TCR_EL1`: translation control.
    tcr: base, "tcr_el1", "S3_5_C2_C0_2";
    /// `MAIR_EL1`: memory attributes.
    mair: base, "mair_el1", "S3_5_C10_C2_0";
    /// `AMAIR_EL1`.
    amair: base, "amair_el1", "S3_5_C10_C3_0";
    /// `CONTEXTIDR_EL1`.
    contextidr: base, "contextidr_el1", "S3_5_C13_C0_1";
    /// `VBAR_EL1`: the guest's vectors.
    vbar: base, "vbar_el1", "S3_5_C12_C0_0";
    /// `ELR_EL1`.
    elr: base, "elr_el1", "S3_5_C4_C0_1";
    /// `SPSR_EL1`.
    spsr: base, "spsr_el1", "S3_5_C4_C0_0";
    /// `ESR_EL1`.
    esr: base, "esr_el1", "S3_5_C5_C2_0";
    /// `FAR_EL1`.
    far: base, "far_el1", "S3_5_C6_C0_0";
    /// `AFSR0_EL1`.
    afsr0: base, "afsr0_el1", "S3_5_C5_C1_0";
    /// `AFSR1_EL1`.
    afsr1: base, "afsr1_el1", "S3_5_C5_C1_1";
    /// `PAR_EL1`: the result of the guest's address translations.
    par: base, "par_el1", "par_el1";
    /// `CNTKCTL_EL1`: EL0 access to the counter and timers.
    cntkctl: base, "cntkctl_el1", "S3_5_C14_C1_0";
    /// `SP_EL1`.
    sp_el1: base, "sp_el1", "sp_el1";
    /// `SP_EL0`.
    sp_el0: base, "sp_el0", "sp_el0";
    /// `TPIDR_EL1`: Linux's per-CPU offset.
    tpidr: base, "tpidr_el1", "tpidr_el1";
    /// `TPIDR_EL0`: user thread pointer.
    tpidr_el0: base, "tpidr_el0", "tpidr_el0";
    /// `TPIDRRO_EL0`.
    tpidrro_el0: base, "tpidrro_el0", "tpidrro_el0";
    /// `MDSCR_EL1`: debug control (single step).
    mdscr: base, "mdscr_el1", "mdscr_el1";
    /// `CSSELR_EL1`: the cache level `CCSIDR_EL1` describes.
    csselr: base, "csselr_el1", "csselr_el1";
    /// `APIAKeyLo_EL1`: pointer authentication keys (Linux signs its
    /// return addresses with FEAT_PAuth; `HCR_EL2.APK/API` leave them to
    /// the guest, so every vCPU's must be switched).
    apia_lo: pauth, "S3_0_C2_C1_0", "S3_0_C2_C1_0";
    /// `APIAKeyHi_EL1`.
    apia_hi: pauth, "S3_0_C2_C1_1", "S3_0_C2_C1_1";
    /// `APIBKeyLo_EL1`.
    apib_lo: pauth, "S3_0_C2_C1_2", "S3_0_C2_C1_2";
    /// `APIBKeyHi_EL1`.
    apib_hi: pauth, "S3_0_C2_C1_3", "S3_0_C2_C1_3";
    /// `APDAKeyLo_EL1`.
    apda_lo: pauth, "S3_0_C2_C2_0", "S3_0_C2_C2_0";
    /// `APDAKeyHi_EL1`.
    apda_hi: pauth, "S3_0_C2_C2_1", "S3_0_C2_C2_1";
    /// `APDBKeyLo_EL1`.
    apdb_lo: pauth, "S3_0_C2_C2_2", "S3_0_C2_C2_2";
    /// `APDBKeyHi_EL1`.
    apdb_hi: pauth, "S3_0_C2_C2_3", "S3_0_C2_C2_3";
    /// `APGAKeyLo_EL1`.
    apga_lo: pauth, "S3_0_C2_C3_0", "S3_0_C2_C3_0";
    /// `APGAKeyHi_EL1`.
    apga_hi: pauth, "S3_0_C2_C3_1", "S3_0_C2_C3_1";
    /// `PMCR_EL0`: the PMU's enable and divider (the guest reaches the
    /// PMU untrapped: `MDCR_EL2` is left at its reset value).
    pmcr: pmu, "pmcr_el0", "pmcr_el0";
    /// `PMUSERENR_EL0`: EL0 access to the PMU.
    pmuserenr: pmu, "pmuserenr_el0", "pmuserenr_el0";
    /// `PMSELR_EL0`.
    pmselr: pmu, "pmselr_el0", "pmselr_el0";
    /// `PMCCFILTR_EL0`: what the cycle counter counts.
    pmccfiltr: pmu, "pmccfiltr_el0", "pmccfiltr_el0";
    /// `PMCNTENSET_EL0`: the enabled counters (restored through
    /// `PMCNTENCLR_EL0` first).
    pmcnten: pmu, "pmcntenset_el0", "pmcntenset_el0";
    /// `PMINTENSET_EL1`: the counters' overflow interrupts (restored
    /// through `PMINTENCLR_EL1` first).
    pminten: pmu, "pmintenset_el1", "pmintenset_el1";
}

impl El1Regs {
    /// A reset vCPU whose EL1 stack pointer is `sp_el1`.
    pub(crate) const fn reset(sp_el1: u64) -> Self {
        Self {
            sctlr: SCTLR_EL1_RESET,
            actlr: 0,
            cpacr: CPACR_EL1_FPEN,
            ttbr0: 0,
            ttbr1: 0,
            tcr: 0,
            mair: 0,
            amair: 0,
            contextidr: 0,
            vbar: 0,
            elr: 0,
            spsr: 0,
            esr: 0,
            far: 0,
            afsr0: 0,
            afsr1: 0,
            par: 0,
            cntkctl: 0,
            sp_el1,
            sp_el0: 0,
            tpidr: 0,
            tpidr_el0: 0,
            tpidrro_el0: 0,
            mdscr: 0,
            csselr: 0,
            apia_lo: 0,
            apia_hi: 0,
            apib_lo: 0,
            apib_hi: 0,
            apda_lo: 0,
            apda_hi: 0,
            apdb_lo: 0,
            apdb_hi: 0,
            apga_lo: 0,
            apga_hi: 0,
            pmcr: 0,
            pmuserenr: 0,
            pmselr: 0,
            pmccfiltr: 0,
            pmcnten: 0,
            pminten: 0,
        }
    }

    /// Writes the guest's registers to this CPU.
    pub(crate) fn restore(&self, mode: HostMode) {
        let has = Features::of_this_cpu();
        if has.pmu {
            // The PMU enables are set/clear pairs: writing the SET register
            // only adds bits, so the previous vCPU's are cleared first.
            // SAFETY: the guest's PMU enables; the hypervisor uses no
            // counter.
            unsafe {
                write_sysreg!(pmcntenclr_el0, u64::from(u32::MAX));
                write_sysreg!(pmintenclr_el1, u64::from(u32::MAX));
            }
        }
        self.write_all(mode, has);
        crate::sysreg::isb();
    }
}
