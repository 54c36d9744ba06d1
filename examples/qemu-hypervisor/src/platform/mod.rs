//! The guest platform an unmodified Linux kernel needs (issue 11): the
//! host-independent parts, tested on the host.
//!
//! - [`boot`]: the memory layout, the boot-info block `cargo xtask linux`
//!   fills, and the arm64 `Image` header;
//! - [`fdt`] and [`devicetree`]: the flattened device tree the guest
//!   boots with, written by the hypervisor;
//! - [`psci`]: PSCI 1.0 over HVC;
//! - [`ipi`]: the mailboxes that carry SGIs between vCPUs;
//! - [`mmio`]: stage 2 data aborts decoded into emulatable accesses;
//! - [`pl011`]: the guest's console UART, emulated;
//! - [`vgic2`], [`vgic3`]: the guest's distributor (and redistributors).
//!
//! The bare-metal glue (the run loop's hooks) is `src/platform/run.rs`,
//! part of the hypervisor binary.

pub mod boot;
pub mod devicetree;
pub mod fdt;
pub mod ipi;
pub mod mmio;
pub mod pl011;
pub mod psci;
pub mod vgic2;
pub mod vgic3;
