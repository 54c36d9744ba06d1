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
#![forbid(unsafe_code)]

#[cfg(any(test, feature = "mock"))]
extern crate std;

/// [mockall], re-exported for tests built on [`mock`] (a `Sequence`, a
/// `predicate`) without a dependency of their own (feature `mock`).
#[cfg(feature = "mock")]
pub use mockall;

mod context;
mod ctl;
pub mod emulate;
mod error;
mod gic;
mod hw;
mod intid;
#[cfg(feature = "mock")]
pub mod mock;
mod regs;
mod shared;
mod ticks;
mod vcpu;
mod vm;

pub use context::{Residency, TimerContext, TimerId};
pub use ctl::TimerCtl;
pub use error::{Busy, ConfigError, Error, NotLoaded};
pub use gic::GicCpu;
pub use hw::{IrqChip, SoftTimer, SoftTimers, TimerHw, VirtualState};
pub use intid::IntId;
pub use regs::TimerReg;
pub use shared::SharedVcpuTimer;
pub use ticks::Ticks;
pub use vcpu::{Forwarded, HostIrq, TimerLevels, TimerMap, TimerMode, VcpuTimer, Wakeup};
pub use vm::{Forwarding, PhysTimerMode, VmTimer};
