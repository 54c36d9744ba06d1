//! Example EL2 hypervisor (work in progress).
#![no_std]
