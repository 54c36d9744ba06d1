#![cfg_attr(docsrs, feature(doc_cfg))]
#![doc = include_str!("../README.md")]

pub mod gic;
pub mod log;
pub mod machine;

pub use gic::{PpiState, Ppis, VirtualInterface, VirtualIrq, VirtualState};
pub use log::{Access, AccessLog, Counters};
pub use machine::{
    Cpu, Machine, Ports, SimChipError, SimGic, SimSoftTimers, SimTimer, SoftTimerState,
    TimerFeatures, TimerRegs,
};
pub mod guest;
pub mod host;

pub use guest::{Guest, GuestOp, GuestTimer, Handler};
pub use host::{AckPoint, FaultSite, Hypervisor, Invariant, Stats, Step, Vcpu, Violation};
