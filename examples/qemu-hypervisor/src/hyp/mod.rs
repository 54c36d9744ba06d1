//! The hypervisor on one CPU, one module per part:
//!
//! - [`run_loop`]: the run loop an integrator copies: the [`Hyp`] and
//!   [`Vcpu`] types, load/put, guest entry and exit, host interrupts, WFI,
//!   trapped timer registers, the scheduler;
//! - [`exits`]: a synchronous exit's syndrome decoded, and the end of the
//!   run for exits the example does not handle;
//! - [`scenarios`]: the test scenarios (vCPUs and their entry state, the
//!   guests' hypercalls, the Linux guest platform's hooks) and their
//!   verdicts;
//! - [`report`]: the statistics and the `RESULT` line;
//! - [`perf`]: the `perf` scenario's counts (`cargo xtask bench`), and
//!   [`eager`]: the eager baseline it is compared with (the `eager`
//!   feature).
//!
//! The guest platform for Linux is [`crate::linux`] (`src/platform/`),
//! the migration scenario [`crate::migrate`].

pub(crate) mod eager;
pub(crate) mod exits;
pub(crate) mod perf;
pub(crate) mod report;
pub(crate) mod run_loop;
pub(crate) mod scenarios;

pub(crate) use report::Stats;
pub(crate) use run_loop::{
    HYP_TIMER_PPI, Hyp, RUN_LIMIT_US, RunState, SPSR_EL1H_MASKED, SliceEnd, Vcpu,
};
