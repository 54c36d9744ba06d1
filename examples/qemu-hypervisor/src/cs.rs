//! The `critical-section` implementation of this binary: IRQs and FIQs
//! masked on this CPU, plus a spin lock shared by all CPUs that the owning
//! CPU may take again (nested critical sections).
//!
//! Each CPU counts the critical sections it enters ([`entered`]), so that
//! the run loop can show that the library's per-CPU timer paths take none
//! (`timer_path_locks` on the result line, see `hyp::perf::timer_code`).
//!
//! A CPU finds its own lock identity and counter through its index in
//! `TPIDR_EL2` ([`init_this_cpu`], once when the CPU starts at EL2): one
//! register read, where `MPIDR_EL1` would need masking on every call.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::sysreg::{read_sysreg, write_sysreg};

/// Owner of the lock: the owner's CPU index ([`cpu_index`]) + 1, or 0 when
/// free.
static OWNER: AtomicU64 = AtomicU64::new(0);

/// The PSTATE.DAIF I and F bits.
const DAIF_IF: u64 = 0b11 << 6;
/// The restore state's flag for "this CPU took the lock in this acquire".
const TOOK_LOCK: u64 = 1 << 63;

/// The CPU numbers [`init_this_cpu`] gives: `MPIDR_EL1.Aff0` (QEMU `virt`
/// numbers its CPUs 0..8 there), the rest of the affinity ignored (the
/// example's machines have one cluster).
const AFF0: u64 = 0xff;

/// Records this CPU's index (its `MPIDR_EL1.Aff0`) in `TPIDR_EL2`, where
/// [`cpu_index`] finds it. Call it once when the CPU starts at EL2, before
/// it enters a critical section or a run loop.
pub(crate) fn init_this_cpu() {
    let index = read_sysreg!(mpidr_el1) & AFF0;
    // SAFETY: TPIDR_EL2 is software's own register; nothing else in this
    // binary (or in the guests, which cannot reach EL2 registers) uses it.
    unsafe { write_sysreg!(tpidr_el2, index) };
}

/// This CPU's index, as [`init_this_cpu`] recorded it (a value beyond
/// [`AFF0`] if it has not run: `TPIDR_EL2` resets to an unknown value).
#[inline(always)]
fn cpu_index() -> u64 {
    read_sysreg!(tpidr_el2)
}

/// This CPU's identity in [`OWNER`]: never 0, distinct per CPU.
fn this_cpu() -> u64 {
    (cpu_index() & AFF0) + 1
}

/// Counters of [`ENTERED`]: one per CPU index; a CPU beyond them shares
/// the last.
const COUNTED_CPUS: usize = 8;
/// Critical sections entered (nested ones too) per CPU; each counter is
/// written only by its own CPU with interrupts masked.
static ENTERED: [AtomicU32; COUNTED_CPUS] = [const { AtomicU32::new(0) }; COUNTED_CPUS];

/// The [`ENTERED`] counter of this CPU.
#[inline(always)]
fn counter() -> &'static AtomicU32 {
    let index = usize::try_from(cpu_index()).unwrap_or(usize::MAX);
    &ENTERED[index.min(COUNTED_CPUS - 1)]
}

/// How many critical sections this CPU has entered so far (wrapping).
#[inline(always)]
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
