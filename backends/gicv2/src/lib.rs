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

pub use error::Error;
pub use host::{CpuId, DEFAULT_PRIORITY_MASK, HostGic, MAINTENANCE_INTID};
pub use registers::{GICV_SIZE, ListRegister, LrState};
pub use vgic::{DEFAULT_PRIORITY, Gic, MAX_MAPPINGS, QUEUE_CAPACITY, SyncReport, VgicCpu};
