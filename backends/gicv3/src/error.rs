//! The crate's error type.

use core::fmt;

use crate::registers::Affinity;

/// What can go wrong in this crate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// No redistributor in the region reports this CPU's affinity in its
    /// `GICR_TYPER`.
    NoRedistributor(Affinity),
    /// The redistributor did not wake up: `GICR_WAKER.ChildrenAsleep`
    /// stayed set after `ProcessorSleep` was cleared.
    RedistributorAsleep,
    /// Every list register is in use and the overflow queue is full: the
    /// virtual interrupt `intid` could not be made pending.
    ///
    /// For the hardware-mapped virtual timer interrupt (raised by
    /// `VcpuTimer::handle_host_irq`) this leaves its physical PPI active
    /// (the host only dropped its priority) with nothing pending for the
    /// guest, so the timer cannot signal again. The caller must deactivate
    /// the physical PPI (`HostGic::deactivate`), so that the still-asserted
    /// timer is taken again once the guest has completed some of its
    /// interrupts, or treat the error as fatal for the vCPU: more than the
    /// list registers plus `QUEUE_CAPACITY` interrupts pending at once is a
    /// configuration the hypervisor should not allow.
    QueueFull {
        /// The virtual INTID that was dropped.
        intid: u32,
    },
    /// The physical PPI is already mapped to another virtual INTID of this
    /// vCPU; the guest's deactivation of either would deactivate it.
    HostIntIdInUse {
        /// The physical PPI.
        host: u32,
        /// The virtual INTID it is mapped to.
        mapped_to: u32,
    },
    /// The virtual INTID is not one this operation takes (the `u32`
    /// methods of [`Gic`](crate::Gic) take PPIs, 16..=31).
    InvalidIntId(u32),
    /// The physical INTID cannot be hardware-mapped here (the `u32`
    /// [`Gic::map`](crate::Gic::map) takes PPIs, 16..=31).
    InvalidPhysicalIntId(u32),
    /// The vCPU is already loaded on a CPU.
    AlreadyLoaded,
    /// The vCPU is not loaded on this CPU.
    NotLoaded,
    /// Another vCPU is loaded on this CPU's virtual CPU interface: put it
    /// first.
    InterfaceBusy,
    /// The vCPU is loaded on another CPU: its list registers are that
    /// CPU's, which this CPU's [`HostGic`](crate::HostGic) cannot reach.
    /// Drive it through that CPU's `HostGic`, or put it there first.
    LoadedOnOtherCpu,
    /// The saved list registers hold interrupts in more list registers
    /// than this CPU implements (CPUs with different `ICH_VTR_EL2.ListRegs`).
    TooFewListRegisters {
        /// How many list registers the saved state needs.
        needed: usize,
        /// How many this CPU has.
        available: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRedistributor(aff) => {
                write!(f, "no GICv3 redistributor has affinity {aff}")
            }
            Self::RedistributorAsleep => write!(f, "the GICv3 redistributor did not wake up"),
            Self::QueueFull { intid } => write!(
                f,
                "no free list register and the overflow queue is full: virtual INTID {intid} dropped"
            ),
            Self::HostIntIdInUse { host, mapped_to } => write!(
                f,
                "physical INTID {host} is already mapped to virtual INTID {mapped_to}"
            ),
            Self::InvalidIntId(n) => write!(f, "virtual INTID {n} is not a PPI"),
            Self::InvalidPhysicalIntId(n) => {
                write!(f, "physical INTID {n} is not a PPI and cannot be mapped")
            }
            Self::AlreadyLoaded => write!(f, "the vCPU's GIC state is already loaded"),
            Self::NotLoaded => write!(f, "the vCPU's GIC state is not loaded"),
            Self::LoadedOnOtherCpu => write!(f, "the vCPU's GIC state is loaded on another CPU"),
            Self::InterfaceBusy => {
                write!(f, "another vCPU is loaded on this CPU's virtual interface")
            }
            Self::TooFewListRegisters { needed, available } => write!(
                f,
                "the vCPU's saved state needs {needed} list registers, this CPU has {available}"
            ),
        }
    }
}

impl core::error::Error for Error {}
