#![doc = include_str!("../README.md")]
#![no_std]

pub mod clock;
pub mod config;
pub mod fault;
pub mod platform;
