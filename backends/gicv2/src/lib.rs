#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc = include_str!("../README.md")]
#![no_std]
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
mod vgic;

#[cfg(test)]
mod tests;

/// [`safe_mmio`], re-exported: [`HostGic`]'s constructors take its
/// `UniqueMmioPointer`s, so a hypervisor names the version this crate uses.
pub use safe_mmio;

pub use error::Error;
pub use host::{CpuId, DEFAULT_PRIORITY_MASK, HostGic, MAINTENANCE_INTID};
pub use registers::{GICV_SIZE, ListRegister, LrState};
pub use vgic::{DEFAULT_PRIORITY, Gic, MAX_MAPPINGS, QUEUE_CAPACITY, SyncReport, VgicCpu};
