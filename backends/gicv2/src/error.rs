//! The crate's error type.

use core::fmt;

/// What can go wrong on the GICv2 backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// A virtual INTID above 1019 (1020..=1023 are special numbers).
    InvalidIntId(u32),
    /// A physical INTID for a hardware mapping outside 16..=1019 (an SGI
    /// cannot be forwarded with the HW bit).
    InvalidPhysicalIntId(u32),
    /// Every list register is in use and the overflow queue is full: the
    /// interrupt was not made pending. Its line level is remembered.
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
        /// The virtual INTID that was not made pending.
        intid: u32,
    },
    /// The physical INTID is already mapped to another virtual INTID of
    /// this vCPU; the guest's deactivation of either would deactivate it.
    HostIntIdInUse {
        /// The physical INTID.
        host: u32,
        /// The virtual INTID it is mapped to.
        mapped_to: u32,
    },
    /// The table of hardware mappings of this vCPU is full.
    MappingTableFull,
    /// The operation needs the vCPU loaded on this CPU, and it is not.
    NotLoaded,
    /// The vCPU is already loaded.
    AlreadyLoaded,
    /// Another vCPU is loaded on this CPU's virtual interface: put it
    /// first.
    InterfaceBusy,
    /// The vCPU is loaded on another CPU: its list registers are that
    /// CPU's, which this CPU's [`HostGic`](crate::HostGic) cannot reach.
    /// Drive it through that CPU's `HostGic`, or put it there first.
    LoadedOnOtherCpu,
    /// The saved list registers hold interrupts in more list registers
    /// than this CPU implements (CPUs with different `GICH_VTR.ListRegs`).
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
            Self::InvalidIntId(n) => write!(f, "virtual INTID {n} is not in 0..=1019"),
            Self::InvalidPhysicalIntId(n) => {
                write!(
                    f,
                    "physical INTID {n} cannot be hardware-mapped (needs 16..=1019)"
                )
            }
            Self::QueueFull { intid } => write!(
                f,
                "no free list register and the overflow queue is full: virtual INTID {intid} dropped"
            ),
            Self::HostIntIdInUse { host, mapped_to } => write!(
                f,
                "physical INTID {host} is already mapped to virtual INTID {mapped_to}"
            ),
            Self::MappingTableFull => write!(f, "the vCPU's hardware mapping table is full"),
            Self::NotLoaded => write!(f, "the vCPU's virtual interface state is not loaded"),
            Self::AlreadyLoaded => {
                write!(f, "the vCPU's virtual interface state is already loaded")
            }
            Self::LoadedOnOtherCpu => {
                write!(
                    f,
                    "the vCPU's virtual interface state is loaded on another CPU"
                )
            }
            Self::TooFewListRegisters { needed, available } => write!(
                f,
                "the vCPU's saved state needs {needed} list registers, this CPU has {available}"
            ),
            Self::InterfaceBusy => {
                write!(f, "another vCPU is loaded on this CPU's virtual interface")
            }
        }
    }
}

impl core::error::Error for Error {}
