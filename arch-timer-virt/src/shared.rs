//! [`SharedVcpuTimer`]: one [`VcpuTimer`] for an interrupt handler and the
//! run loop.

use core::cell::RefCell;

use critical_section::Mutex;

use crate::{Busy, VcpuTimer};

/// A [`VcpuTimer`] behind a [`critical_section::Mutex`], so the host's
/// vtimer interrupt handler and the vCPU's run loop can both reach it (for
/// example from a `static`).
///
/// The library does not choose a `critical-section` implementation; the
/// hypervisor binary does: on bare metal one that masks this CPU's
/// interrupts (enough while each `SharedVcpuTimer` is reached from one CPU
/// only; one that also takes a lock if several CPUs reach the same one),
/// on a host (tests, the example below) the crate's own:
///
/// ```toml
/// [dependencies]
/// critical-section = { version = "1", features = ["std"] }
/// ```
///
/// Without one, linking fails with an undefined
/// `_critical_section_1_0_acquire`.
///
/// ```
/// use arch_timer_virt::{SharedVcpuTimer, VcpuTimer};
///
/// static VCPU0: SharedVcpuTimer = SharedVcpuTimer::new(VcpuTimer::new());
///
/// let loaded = VCPU0.with(|timer| timer.is_loaded());
/// assert_eq!(loaded, Ok(false));
/// ```
#[derive(Debug)]
pub struct SharedVcpuTimer {
    inner: Mutex<RefCell<VcpuTimer>>,
}

impl SharedVcpuTimer {
    /// Wraps `timer`.
    #[must_use]
    pub const fn new(timer: VcpuTimer) -> Self {
        Self {
            inner: Mutex::new(RefCell::new(timer)),
        }
    }

    /// Runs `f` on the timer inside a critical section.
    ///
    /// # Errors
    ///
    /// [`Busy`] when called from inside another `with` on the same
    /// timer; `f` does not run.
    pub fn with<R>(&self, f: impl FnOnce(&mut VcpuTimer) -> R) -> Result<R, Busy> {
        critical_section::with(|cs| {
            let mut timer = self.inner.borrow(cs).try_borrow_mut().map_err(|_| Busy)?;
            Ok(f(&mut timer))
        })
    }

    /// Unwraps the timer, for tearing a vCPU down.
    #[must_use]
    pub fn into_inner(self) -> VcpuTimer {
        self.inner.into_inner().into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reentrant_use_is_refused_not_a_panic() {
        let shared = SharedVcpuTimer::new(VcpuTimer::new());
        let inner = shared.with(|_| shared.with(|t| t.is_loaded()));
        assert_eq!(inner, Ok(Err(Busy)));
        assert_eq!(shared.with(|t| t.is_loaded()), Ok(false));
    }
}
