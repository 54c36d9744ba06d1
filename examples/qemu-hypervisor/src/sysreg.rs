//! System register access by name.
//!
//! `read_sysreg!(name)` reads a register and is safe to use for registers
//! whose read has no side effect (the only ones this program reads with it).
//! `write_sysreg!(name, value)` expands to inline assembly and must sit in
//! an `unsafe` block whose `// SAFETY:` comment says why the write is sound.

/// Reads the system register `$name` (a bare identifier such as `hcr_el2`,
/// or a string literal such as `"S3_5_C1_C0_0"` for names the assembler
/// only knows with extra target features).
macro_rules! read_sysreg {
    ($name:ident) => {
        $crate::sysreg::read_sysreg!(stringify!($name))
    };
    ($name:expr) => {{
        let value: u64;
        // SAFETY: reading this system register has no side effect and touches
        // no memory.
        unsafe {
            core::arch::asm!(
                concat!("mrs {v}, ", $name),
                v = out(reg) value,
                options(nomem, nostack, preserves_flags)
            );
        }
        value
    }};
}

/// Writes `$value` to the system register `$name`. Must be used inside an
/// `unsafe` block.
macro_rules! write_sysreg {
    ($name:ident, $value:expr) => {
        $crate::sysreg::write_sysreg!(stringify!($name), $value)
    };
    ($name:expr, $value:expr) => {{
        let value: u64 = $value;
        core::arch::asm!(
            concat!("msr ", $name, ", {v}"),
            v = in(reg) value,
            options(nostack, preserves_flags)
        );
    }};
}

/// An instruction synchronization barrier.
pub(crate) fn isb() {
    // SAFETY: a barrier has no effect on memory or registers.
    unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
}

/// A full-system data synchronization barrier.
pub(crate) fn dsb_sy() {
    // SAFETY: a barrier has no effect on memory or registers.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

pub(crate) use {read_sysreg, write_sysreg};
