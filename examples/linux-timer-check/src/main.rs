//! The timer check program a Linux guest's `/init` runs: a static aarch64
//! Linux executable with no libc (raw `svc #0` system calls), built for
//! `aarch64-unknown-none` and linked at a fixed user-space address (see
//! `build.rs`). What it measures and how it is judged: the library
//! (`src/lib.rs`). Its exit status is 0 when every check passed.
#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]

/// A host build has nothing to run: the program is an aarch64 Linux
/// executable built for `aarch64-unknown-none`.
#[cfg(not(target_os = "none"))]
fn main() {
    println!(
        "linux-timer-check runs inside an aarch64 Linux guest: build it with --target \
         aarch64-unknown-none (cargo xtask linux puts it in the guest's initramfs)"
    );
}

#[cfg(target_os = "none")]
mod sys;

#[cfg(target_os = "none")]
mod check {
    use core::fmt::Write as _;

    use linux_timer_check::{
        LineBuf, MONO_READS_PER_VISIT, MONO_ROUNDS, SLEEPS, Summary, TIMERFD_INTERVAL_US,
        TIMERFD_RUN_MS, median, sleep_ms,
    };

    use crate::sys::{self, CpuSet, NS_PER_MS, NS_PER_US};

    core::arch::global_asm!(
        ".section .text._start, \"ax\"",
        ".globl _start",
        "_start:",
        // Linux enters with sp 16-byte aligned at argc; no frame to return
        // to.
        "mov x29, xzr",
        "mov x30, xzr",
        "bl {entry}",
        "udf #0",
        entry = sym entry,
    );

    /// Runs the checks, prints the summary and exits with 0 when they
    /// passed, 1 when not.
    extern "C" fn entry() -> ! {
        sys::print("ATV-CHECK-INFO: clock_nanosleep, timerfd and CLOCK_MONOTONIC checks start\n");
        let mut s = Summary::default();
        monotonic(&mut s);
        sleeps(&mut s);
        timerfd(&mut s);
        let mut line = LineBuf::<512>::new();
        let verdict = s.check();
        let _ = writeln!(line, "{s}");
        sys::print_bytes(line.as_bytes());
        if let Err(why) = verdict {
            line.clear();
            let _ = writeln!(line, "ATV-CHECK-INFO: FAIL: {why}");
            sys::print_bytes(line.as_bytes());
        }
        sys::exit(u8::from(verdict.is_err()))
    }

    /// `CLOCK_MONOTONIC` never goes back: [`MONO_ROUNDS`] rounds over every
    /// CPU the program may run on, pinned to each in turn, taking
    /// [`MONO_READS_PER_VISIT`] readings there.
    fn monotonic(s: &mut Summary) {
        let Ok(allowed) = sys::getaffinity() else {
            s.wrong_cpu = s.wrong_cpu.saturating_add(1);
            return;
        };
        s.cpus = allowed.count();
        let mut last = None;
        let mut prev_cpu = None;
        for _ in 0..MONO_ROUNDS {
            for cpu in allowed.iter() {
                if sys::setaffinity(&CpuSet::only(cpu)).is_err() || sys::getcpu() != Ok(cpu) {
                    s.wrong_cpu = s.wrong_cpu.saturating_add(1);
                }
                if prev_cpu.is_some_and(|p| p != cpu) {
                    s.migrations = s.migrations.saturating_add(1);
                }
                prev_cpu = Some(cpu);
                for _ in 0..MONO_READS_PER_VISIT {
                    let Ok(now) = sys::monotonic_ns() else {
                        s.wrong_cpu = s.wrong_cpu.saturating_add(1);
                        continue;
                    };
                    s.mono_reads = s.mono_reads.saturating_add(1);
                    if last.is_some_and(|l| now < l) {
                        s.mono_back = s.mono_back.saturating_add(1);
                    }
                    last = Some(now);
                }
            }
        }
        if sys::setaffinity(&allowed).is_err() {
            s.wrong_cpu = s.wrong_cpu.saturating_add(1);
        }
    }

    /// [`SLEEPS`] relative `clock_nanosleep` calls on `CLOCK_MONOTONIC`,
    /// each timed with `clock_gettime` around it.
    fn sleeps(s: &mut Summary) {
        let mut late_us = [0_u64; SLEEPS as usize];
        let mut late_n = 0;
        for i in 0..SLEEPS {
            let asked = sleep_ms(i).saturating_mul(NS_PER_MS);
            let (Ok(t0), Ok(()), Ok(t1)) = (
                sys::monotonic_ns(),
                sys::nanosleep_monotonic(asked),
                sys::monotonic_ns(),
            ) else {
                s.sleep_errors = s.sleep_errors.saturating_add(1);
                continue;
            };
            s.sleeps = s.sleeps.saturating_add(1);
            let took = t1.saturating_sub(t0);
            if took < asked {
                s.early = s.early.saturating_add(1);
                continue;
            }
            if let Some(slot) = late_us.get_mut(late_n) {
                *slot = (took - asked) / NS_PER_US;
                late_n += 1;
            }
        }
        let late = late_us.get_mut(..late_n).unwrap_or(&mut []);
        s.late_median_us = median(late).unwrap_or(0);
        s.late_max_us = late.iter().copied().max().unwrap_or(0);
    }

    /// A periodic `timerfd` every [`TIMERFD_INTERVAL_US`] µs, read until
    /// [`TIMERFD_RUN_MS`] ms have passed since it was armed.
    fn timerfd(s: &mut Summary) {
        let interval = TIMERFD_INTERVAL_US.saturating_mul(NS_PER_US);
        let run = TIMERFD_RUN_MS.saturating_mul(NS_PER_MS);
        let fd = match sys::timerfd_monotonic() {
            Ok(fd) => fd,
            Err(_) => {
                s.tfd_errors = s.tfd_errors.saturating_add(1);
                return;
            }
        };
        let (Ok(before_arm), Ok(()), Ok(after_arm)) = (
            sys::monotonic_ns(),
            sys::timerfd_arm(fd, interval),
            sys::monotonic_ns(),
        ) else {
            s.tfd_errors = s.tfd_errors.saturating_add(1);
            sys::close(fd);
            return;
        };
        loop {
            let (Ok(before_read), Ok(count), Ok(after_read)) =
                (sys::monotonic_ns(), sys::read_u64(fd), sys::monotonic_ns())
            else {
                s.tfd_errors = s.tfd_errors.saturating_add(1);
                break;
            };
            s.tfd_reads = s.tfd_reads.saturating_add(1);
            s.tfd_expirations = s.tfd_expirations.saturating_add(count);
            // Expiry points lie at arm + k x interval, k >= 1: the last
            // read counted every one up to its start at least, and none
            // after its end.
            s.tfd_expected_min = before_read.saturating_sub(after_arm) / interval;
            s.tfd_expected_max = after_read.saturating_sub(before_arm) / interval;
            let elapsed = after_read.saturating_sub(before_arm);
            s.tfd_ms = elapsed / NS_PER_MS;
            if elapsed >= run {
                break;
            }
        }
        s.tfd_overruns = s.tfd_expirations.saturating_sub(s.tfd_reads);
        sys::close(fd);
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        sys::print("ATV-CHECK-INFO: FAIL: the check program panicked\n");
        sys::exit(2)
    }
}
