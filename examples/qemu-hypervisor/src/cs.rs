//! The `critical-section` implementation of this binary: IRQs and FIQs
//! masked on this CPU, plus a spin lock shared by all CPUs that the owning
//! CPU may take again (nested critical sections).

use core::sync::atomic::{AtomicU64, Ordering};

use crate::sysreg::{read_sysreg, write_sysreg};

/// Owner of the lock: `MPIDR_EL1` affinity + 1, or 0 when free.
static OWNER: AtomicU64 = AtomicU64::new(0);

/// The PSTATE.DAIF I and F bits.
const DAIF_IF: u64 = 0b11 << 6;
/// The restore state's flag for "this CPU took the lock in this acquire".
const TOOK_LOCK: u64 = 1 << 63;

fn this_cpu() -> u64 {
    (read_sysreg!(mpidr_el1) & 0xff_00ff_ffff) + 1
}

struct SpinIrqCs;
critical_section::set_impl!(SpinIrqCs);

// SAFETY: `acquire` masks interrupts on this CPU and takes a lock no other
// CPU can hold at the same time; `release` undoes exactly what the matching
// `acquire` did, in reverse order, so critical sections are exclusive across
// CPUs and against interrupt handlers.
unsafe impl critical_section::Impl for SpinIrqCs {
    unsafe fn acquire() -> u64 {
        let daif = read_sysreg!(daif);
        // SAFETY: masking IRQ and FIQ on this CPU only delays interrupts.
        unsafe { write_sysreg!(daif, daif | DAIF_IF) };
        let me = this_cpu();
        if OWNER.load(Ordering::Relaxed) == me {
            return daif;
        }
        while OWNER
            .compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            core::hint::spin_loop();
        }
        daif | TOOK_LOCK
    }

    unsafe fn release(state: u64) {
        if state & TOOK_LOCK != 0 {
            OWNER.store(0, Ordering::Release);
        }
        // SAFETY: restores the interrupt mask `acquire` found.
        unsafe { write_sysreg!(daif, state & !TOOK_LOCK) };
    }
}
