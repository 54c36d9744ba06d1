//! Host-testable pieces of the example EL2 hypervisor: what a run does
//! ([`config`]). The hypervisor itself is the `qemu-hypervisor` binary,
//! built for `aarch64-unknown-none`.
#![no_std]

pub mod config;
