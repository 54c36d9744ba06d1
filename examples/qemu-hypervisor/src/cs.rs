//! The `critical-section` implementation of this binary: IRQs and FIQs
//! masked on this CPU, plus a spin lock shared by all CPUs that the owning
//! CPU may take again (nested critical sections).
//!
//! Each CPU counts the critical sections it enters ([`entered`]), so that
//! the run loop can show that the library's per-CPU timer paths take none
//! (`timer_path_locks` on the result line, see `hyp::perf::timer_code`).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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

/// Counters of [`ENTERED`]: one per `MPIDR_EL1.Aff0` (QEMU `virt` numbers
/// its CPUs 0..8 there); a CPU beyond them shares the last.
const COUNTED_CPUS: usize = 8;
/// Critical sections entered (nested ones too) per CPU; each counter is
/// written only by its own CPU with interrupts masked.
static ENTERED: [AtomicU32; COUNTED_CPUS] = [const { AtomicU32::new(0) }; COUNTED_CPUS];

/// The [`ENTERED`] counter of this CPU.
fn counter() -> &'static AtomicU32 {
    let aff0 = usize::try_from(read_sysreg!(mpidr_el1) & 0xff).unwrap_or(usize::MAX);
    &ENTERED[aff0.min(COUNTED_CPUS - 1)]
}

/// How many critical sections this CPU has entered so far (wrapping).
pub(crate) fn entered() -> u32 {
    counter().load(Ordering::Relaxed)
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
        // Only this CPU writes its counter, and not from an interrupt
        // handler now: a load and a store are enough.
        let entered = counter();
        entered.store(
            entered.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
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
