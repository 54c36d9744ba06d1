//! A vCPU's EL1 system registers: saved when it is scheduled out, restored
//! when it is scheduled in. With `HCR_EL2.E2H = 1` the guest's EL1 registers
//! are reached from EL2 through their `*_EL12` names (the plain `*_EL1`
//! names reach the host's own EL2 registers), so each access has two forms.

use qemu_hypervisor::config::HostMode;

use crate::sysreg::{read_sysreg, write_sysreg};

/// `SCTLR_EL1` of a freshly reset vCPU: MMU and caches off, the RES1 bits.
pub(crate) const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// `CPACR_EL1.FPEN = 0b11`: FP/SIMD at EL1 and EL0 not trapped.
pub(crate) const CPACR_EL1_FPEN: u64 = 0b11 << 20;

/// The EL1 registers a guest without an MMU uses (this example's guests):
/// enough to run two vCPUs on one CPU.
///
/// Switched here: `SCTLR_EL1`, `CPACR_EL1`, `VBAR_EL1`, `ELR_EL1`,
/// `SPSR_EL1`, `ESR_EL1`, `FAR_EL1`, `CNTKCTL_EL1`, `SP_EL1`, `SP_EL0`,
/// `TPIDR_EL1` (the general and FP/SIMD registers, `FPCR` and `FPSR` are
/// the world switch's, in [`GuestRegs`](crate::vectors::GuestRegs); the
/// timer registers are the library's). Not switched, because these guests
/// never write them, and a hypervisor for real guests must add them:
/// the stage 1 MMU (`TTBR0_EL1`, `TTBR1_EL1`, `TCR_EL1`, `MAIR_EL1`,
/// `AMAIR_EL1`, `CONTEXTIDR_EL1`), `TPIDR_EL0`, `TPIDRRO_EL0`,
/// `PAR_EL1`, `AFSR0_EL1`, `AFSR1_EL1`, `MDSCR_EL1` and the debug
/// registers, `CSSELR_EL1`, the `SP_EL1`-banked exception state of nested
/// exceptions (already above), and feature registers it exposes (pointer
/// authentication keys, `ZCR_EL1` for SVE, ...), plus
/// `VMPIDR_EL2`/`VPIDR_EL2` per vCPU (done by the run loop).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct El1Regs {
    pub(crate) sctlr: u64,
    pub(crate) cpacr: u64,
    pub(crate) vbar: u64,
    pub(crate) elr: u64,
    pub(crate) spsr: u64,
    pub(crate) esr: u64,
    pub(crate) far: u64,
    pub(crate) sp_el1: u64,
    pub(crate) sp_el0: u64,
    pub(crate) tpidr: u64,
    pub(crate) cntkctl: u64,
}

impl El1Regs {
    /// A reset vCPU whose EL1 stack pointer is `sp_el1`.
    pub(crate) const fn reset(sp_el1: u64) -> Self {
        Self {
            sctlr: SCTLR_EL1_RESET,
            cpacr: CPACR_EL1_FPEN,
            vbar: 0,
            elr: 0,
            spsr: 0,
            esr: 0,
            far: 0,
            sp_el1,
            sp_el0: 0,
            tpidr: 0,
            cntkctl: 0,
        }
    }

    /// Reads the guest's registers from this CPU.
    pub(crate) fn save(&mut self, mode: HostMode) {
        match mode {
            HostMode::NonVhe => {
                self.sctlr = read_sysreg!(sctlr_el1);
                self.cpacr = read_sysreg!(cpacr_el1);
                self.vbar = read_sysreg!(vbar_el1);
                self.elr = read_sysreg!(elr_el1);
                self.spsr = read_sysreg!(spsr_el1);
                self.esr = read_sysreg!(esr_el1);
                self.far = read_sysreg!(far_el1);
                self.cntkctl = read_sysreg!(cntkctl_el1);
            }
            HostMode::Vhe => {
                self.sctlr = read_sysreg!("S3_5_C1_C0_0");
                self.cpacr = read_sysreg!("S3_5_C1_C0_2");
                self.vbar = read_sysreg!("S3_5_C12_C0_0");
                self.elr = read_sysreg!("S3_5_C4_C0_1");
                self.spsr = read_sysreg!("S3_5_C4_C0_0");
                self.esr = read_sysreg!("S3_5_C5_C2_0");
                self.far = read_sysreg!("S3_5_C6_C0_0");
                self.cntkctl = read_sysreg!("S3_5_C14_C1_0");
            }
        }
        self.sp_el1 = read_sysreg!(sp_el1);
        self.sp_el0 = read_sysreg!(sp_el0);
        self.tpidr = read_sysreg!(tpidr_el1);
    }

    /// Writes the guest's registers to this CPU.
    pub(crate) fn restore(&self, mode: HostMode) {
        // SAFETY: these are the guest's EL1 registers (the `_EL12` names
        // with E2H = 1); EL2 does not use them, so writing them changes
        // nothing for the hypervisor.
        unsafe {
            match mode {
                HostMode::NonVhe => {
                    write_sysreg!(sctlr_el1, self.sctlr);
                    write_sysreg!(cpacr_el1, self.cpacr);
                    write_sysreg!(vbar_el1, self.vbar);
                    write_sysreg!(elr_el1, self.elr);
                    write_sysreg!(spsr_el1, self.spsr);
                    write_sysreg!(esr_el1, self.esr);
                    write_sysreg!(far_el1, self.far);
                    write_sysreg!(cntkctl_el1, self.cntkctl);
                }
                HostMode::Vhe => {
                    write_sysreg!("S3_5_C1_C0_0", self.sctlr);
                    write_sysreg!("S3_5_C1_C0_2", self.cpacr);
                    write_sysreg!("S3_5_C12_C0_0", self.vbar);
                    write_sysreg!("S3_5_C4_C0_1", self.elr);
                    write_sysreg!("S3_5_C4_C0_0", self.spsr);
                    write_sysreg!("S3_5_C5_C2_0", self.esr);
                    write_sysreg!("S3_5_C6_C0_0", self.far);
                    write_sysreg!("S3_5_C14_C1_0", self.cntkctl);
                }
            }
            write_sysreg!(sp_el1, self.sp_el1);
            write_sysreg!(sp_el0, self.sp_el0);
            write_sysreg!(tpidr_el1, self.tpidr);
        }
        crate::sysreg::isb();
    }
}
