#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc = include_str!("../README.md")]
#![no_std]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![cfg_attr(
    not(test),
    warn(
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

#[cfg(test)]
extern crate std;

mod error;
mod fake;
mod hyp_timer;
mod registers;
mod sysregs;
mod timer;

pub use error::Error;
pub use fake::FakeRegisters;
pub use hyp_timer::{Expired, HypTimer, MAX_SLOTS, VcpuSlots, VcpuSoftTimers};
pub use registers::{Register, RegisterFile, WritableRegister};
pub use sysregs::{El2Timer, SysRegs};
pub use timer::{GenericTimer, HostMode, TimerFeatures};

#[cfg(test)]
mod tests;
