//! Exit decoding: a synchronous exit's syndrome (`ESR_EL2`) as the run
//! loop dispatches on it, and the end of the run for the exits this
//! example does not handle (an SMC, a fault).

use qemu_hypervisor::config::Scenario;
use qemu_hypervisor::fault::GuestFault;

use super::run_loop::{Hyp, Vcpu};
use crate::console::println;
use crate::el2::fail;
use crate::gic::HostIrqs;
use crate::sysreg::read_sysreg;

/// What a synchronous exit is, by its exception class (`ESR_EL2.EC`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ExitClass {
    /// EC 0x01: a trapped WFI or WFE (`HCR_EL2.TWI`).
    Wfx,
    /// EC 0x16: HVC from AArch64.
    Hvc,
    /// EC 0x17: SMC from AArch64, trapped by `HCR_EL2.TSC`.
    Smc,
    /// EC 0x18: a trapped `MSR`/`MRS`.
    SysReg,
    /// EC 0x24: a stage 2 data abort from EL1.
    DataAbort,
    /// Anything else.
    Other,
}

/// A synchronous exit's syndrome.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SyncExit {
    /// `ESR_EL2` as read at the exit.
    pub(crate) esr: u64,
    /// `ESR_EL2.EC`.
    pub(crate) ec: u64,
    /// `ESR_EL2.ISS`, bits 24:0.
    pub(crate) iss: u32,
    /// [`ExitClass`] of [`SyncExit::ec`].
    pub(crate) class: ExitClass,
}

impl SyncExit {
    /// Reads `ESR_EL2` (right after the exit, before anything can change it).
    pub(crate) fn read() -> Self {
        Self::decode(read_sysreg!(esr_el2))
    }

    /// Decodes the syndrome `esr`.
    pub(crate) fn decode(esr: u64) -> Self {
        let ec = (esr >> 26) & 0x3f;
        // The ISS is bits 24:0: the cast keeps them all.
        #[allow(clippy::cast_possible_truncation)]
        let iss = (esr & 0x1ff_ffff) as u32;
        let class = match ec {
            0x01 => ExitClass::Wfx,
            0x16 => ExitClass::Hvc,
            0x17 => ExitClass::Smc,
            0x18 => ExitClass::SysReg,
            0x24 => ExitClass::DataAbort,
            _ => ExitClass::Other,
        };
        Self {
            esr,
            ec,
            iss,
            class,
        }
    }

    /// For [`ExitClass::Wfx`]: the instruction was a WFE (ISS bit 0).
    pub(crate) fn is_wfe(&self) -> bool {
        self.iss & 1 != 0
    }
}

impl<G: HostIrqs> Hyp<G>
where
    G::Vgic: Default,
{
    /// Ends the run for an exit nothing handled: an SMC (the guests have
    /// no firmware), a fault or an exception class the example does not
    /// expect; an external guest's fault is printed with its EL1 state.
    pub(crate) fn unhandled_exit(&self, v: &Vcpu<G::Vgic>, exit: &SyncExit) -> ! {
        let SyncExit { esr, ec, .. } = *exit;
        // SMC from AArch64, trapped by HCR_EL2.TSC. The guests have no
        // firmware: a PSCI SYSTEM_OFF or SYSTEM_RESET reaching QEMU would
        // end the run with exit status 0 and no verdict, so any SMC fails
        // the run.
        if exit.class == ExitClass::Smc {
            fail!(
                "hv: vCPU {} made an SMC (function {:#x}{}) at PC {:#x}: guests have no firmware \
                 (a PSCI call would end the run without a verdict); failing the run",
                v.index,
                v.regs.x[0],
                psci_name(v.regs.x[0]),
                v.regs.pc.wrapping_sub(4)
            )
        }
        if self.config.scenario == Scenario::External {
            let mut el1 = v.el1;
            el1.save(self.config.host_mode);
            let fault = GuestFault {
                esr,
                far: read_sysreg!(far_el2),
                hpfar: read_sysreg!(hpfar_el2),
                guest: [el1.esr, el1.elr, el1.far],
            };
            println!("hv: external guest faulted: {fault}");
        }
        fail!(
            "hv: vCPU {} exception class {ec:#x}, ESR {esr:#x}, PC {:#x}, FAR {:#x}, HPFAR {:#x}",
            v.index,
            v.regs.pc,
            read_sysreg!(far_el2),
            read_sysreg!(hpfar_el2)
        )
    }
}

/// A name for the PSCI function `id`, for the SMC failure message.
fn psci_name(id: u64) -> &'static str {
    match id {
        0x8400_0008 => ", PSCI SYSTEM_OFF",
        0x8400_0009 => ", PSCI SYSTEM_RESET",
        0x8400_0002 => ", PSCI CPU_OFF",
        0x8400_0003 | 0xc400_0003 => ", PSCI CPU_ON",
        0x8400_0000 => ", PSCI_VERSION",
        _ => "",
    }
}
