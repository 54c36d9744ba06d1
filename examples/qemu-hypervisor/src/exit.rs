//! Ending the run: QEMU's exit status through semihosting.

/// Ends the run with success (QEMU exits 0).
pub(crate) fn pass() -> ! {
    semihosting::process::exit(0)
}

/// Ends the run with failure (QEMU exits 1).
pub(crate) fn fail() -> ! {
    semihosting::process::exit(1)
}
