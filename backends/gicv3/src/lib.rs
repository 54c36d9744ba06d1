#![doc = include_str!("../README.md")]
#![no_std]

#[cfg(test)]
extern crate std;

mod error;
mod host;
pub mod registers;
pub mod sysreg;
mod vgic;

#[cfg(test)]
mod tests;

pub use error::Error;
pub use host::{CpuId, HostGic, MAINTENANCE_INTID};
pub use registers::{Affinity, ListRegister, LrState, Redistributor};
pub use vgic::{DEFAULT_PRIORITY, Gic, QUEUE_CAPACITY, SyncReport, VgicCpu};
