#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc = include_str!("../README.md")]
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![cfg_attr(
    not(test),
    warn(
        clippy::arithmetic_side_effects,
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

#[cfg(test)]
extern crate std;

mod error;
mod host;
pub mod registers;
pub mod sysreg;
mod vgic;

#[cfg(test)]
mod tests;

/// [`safe_mmio`], re-exported: [`HostGic`]'s constructors take its
/// `UniqueMmioPointer`s, so a hypervisor names the version this crate uses.
pub use safe_mmio;

pub use error::Error;
pub use host::{CpuId, HostGic, MAINTENANCE_INTID};
pub use registers::{Affinity, ListRegister, LrState, Redistributor};
pub use vgic::{DEFAULT_PRIORITY, Gic, QUEUE_CAPACITY, SyncReport, VgicCpu};
