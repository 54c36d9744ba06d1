//! The project's timer check for Linux guests: what it measures, its pass
//! rules and its one-line summary.
//!
//! The program (`src/main.rs`, a static aarch64 Linux executable with no
//! libc) runs as part of the guest's `/init` under the example hypervisor
//! and measures, through raw system calls:
//!
//! - **`clock_nanosleep`**: [`SLEEPS`] relative sleeps on `CLOCK_MONOTONIC`
//!   of [`SLEEP_MIN_MS`]..=[`SLEEP_MAX_MS`] ms ([`sleep_ms`]); none may
//!   return before its time, and the lateness (median and maximum) must
//!   stay under bounds far above TCG's own jitter ([`LATE_MEDIAN_BOUND_US`],
//!   [`LATE_MAX_BOUND_US`]).
//! - **`timerfd`**: a periodic `CLOCK_MONOTONIC` timer every
//!   [`TIMERFD_INTERVAL_US`] µs read for [`TIMERFD_RUN_MS`] ms; the
//!   expirations it counts must match the time that passed (one per
//!   interval, give or take one), overruns (expirations beyond one per
//!   wake-up) are reported.
//! - **`CLOCK_MONOTONIC` never goes back**: read in tight loops on every CPU
//!   the program may run on, moving itself from CPU to CPU with
//!   `sched_setaffinity`, each reading compared with the one before it
//!   (on the same CPU or the one it came from).
//!
//! It prints one [`Summary`] line, `ATV-CHECK: key=value ... verdict=...`,
//! which `cargo xtask linux` parses back with [`Summary::parse`] and judges
//! with the same [`Summary::check`].
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

/// What every summary line starts with.
pub const PREFIX: &str = "ATV-CHECK:";

/// How many `clock_nanosleep` calls the check makes.
pub const SLEEPS: u32 = 200;
/// The shortest sleep, in milliseconds.
pub const SLEEP_MIN_MS: u64 = 1;
/// The longest sleep, in milliseconds.
pub const SLEEP_MAX_MS: u64 = 20;
/// The bound on the median lateness of the sleeps, in microseconds: far
/// above what TCG adds (a few milliseconds at worst on a busy host), far
/// below a lost timer interrupt (which would leave a sleep to the next
/// unrelated wake-up, if any).
pub const LATE_MEDIAN_BOUND_US: u64 = 50_000;
/// The bound on the largest lateness of any sleep, in microseconds: one
/// sleep in 200 may meet the host descheduling QEMU (200 ms seen on a busy
/// 2-core host), none may wait for an unrelated wake-up.
pub const LATE_MAX_BOUND_US: u64 = 1_000_000;
/// The `timerfd`'s period, in microseconds.
pub const TIMERFD_INTERVAL_US: u64 = 1_000;
/// How long the `timerfd` is read, in milliseconds.
pub const TIMERFD_RUN_MS: u64 = 2_000;
/// How many `CLOCK_MONOTONIC` readings are taken on a CPU before moving on.
pub const MONO_READS_PER_VISIT: u32 = 500;
/// How many times the program visits every CPU in turn.
pub const MONO_ROUNDS: u32 = 20;

/// The length of the `i`-th sleep in milliseconds: a fixed pseudo-random
/// sequence (a 32-bit LCG on `i`) spread over
/// [`SLEEP_MIN_MS`]..=[`SLEEP_MAX_MS`], so every run sleeps the same
/// lengths in the same order.
pub fn sleep_ms(i: u32) -> u64 {
    // Numerical Recipes' LCG constants, two rounds to mix the low bits.
    let step = |x: u32| x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
    let mixed = step(step(i)) >> 16;
    SLEEP_MIN_MS + u64::from(mixed) % (SLEEP_MAX_MS - SLEEP_MIN_MS + 1)
}

/// The median of `values` (the upper one of the middle two for an even
/// count), sorting them in place; `None` when there are none.
pub fn median(values: &mut [u64]) -> Option<u64> {
    values.sort_unstable();
    values.get(values.len() / 2).copied()
}

/// What the check measured. Times are in microseconds unless named
/// otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// `clock_nanosleep` calls that returned 0.
    pub sleeps: u32,
    /// `clock_nanosleep` or `clock_gettime` calls that failed.
    pub sleep_errors: u32,
    /// Sleeps that returned before their time had passed.
    pub early: u32,
    /// The median lateness of the sleeps.
    pub late_median_us: u64,
    /// The largest lateness of any sleep.
    pub late_max_us: u64,
    /// How long the `timerfd` was read, in milliseconds.
    pub tfd_ms: u64,
    /// `read`s of the `timerfd` that returned a count (wake-ups).
    pub tfd_reads: u64,
    /// The expirations those reads counted.
    pub tfd_expirations: u64,
    /// Expirations beyond one per wake-up.
    pub tfd_overruns: u64,
    /// The fewest expirations the time that passed allows (from the last
    /// read's start back to the end of arming the timer).
    pub tfd_expected_min: u64,
    /// The most expirations the time that passed allows (from the last
    /// read's end back to the start of arming the timer).
    pub tfd_expected_max: u64,
    /// `timerfd` system calls that failed.
    pub tfd_errors: u32,
    /// The CPUs the program could run on.
    pub cpus: u32,
    /// `CLOCK_MONOTONIC` readings taken.
    pub mono_reads: u64,
    /// Readings earlier than the one before them.
    pub mono_back: u64,
    /// Moves from one CPU to another.
    pub migrations: u32,
    /// Visits where `getcpu` named another CPU than the one pinned to, or
    /// where pinning failed.
    pub wrong_cpu: u32,
}

/// The first pass rule a [`Summary`] breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// Fewer sleeps completed than [`SLEEPS`], or a call failed.
    Sleeps {
        /// Sleeps that completed.
        done: u32,
        /// Calls that failed.
        errors: u32,
    },
    /// Sleeps returned early.
    Early(u32),
    /// The median lateness is above [`LATE_MEDIAN_BOUND_US`].
    LateMedian(u64),
    /// The largest lateness is above [`LATE_MAX_BOUND_US`].
    LateMax(u64),
    /// A `timerfd` call failed or it was read for less than
    /// [`TIMERFD_RUN_MS`].
    Timerfd {
        /// Failed calls.
        errors: u32,
        /// How long it was read, in milliseconds.
        ms: u64,
    },
    /// The `timerfd` counted other expirations than the time that passed
    /// allows.
    Expirations {
        /// Counted.
        counted: u64,
        /// The fewest allowed.
        min: u64,
        /// The most allowed.
        max: u64,
    },
    /// `CLOCK_MONOTONIC` went back.
    MonotonicBack(u64),
    /// No CPU was checked, or pinning to a CPU failed.
    Cpus {
        /// CPUs checked.
        cpus: u32,
        /// Failed or wrong pinnings.
        wrong: u32,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Failure::Sleeps { done, errors } => write!(
                f,
                "{done} of {SLEEPS} clock_nanosleep calls completed, {errors} calls failed"
            ),
            Failure::Early(n) => write!(f, "{n} clock_nanosleep calls returned early"),
            Failure::LateMedian(us) => write!(
                f,
                "median sleep lateness {us} us, above the bound of {LATE_MEDIAN_BOUND_US} us"
            ),
            Failure::LateMax(us) => write!(
                f,
                "a sleep was {us} us late, above the bound of {LATE_MAX_BOUND_US} us"
            ),
            Failure::Timerfd { errors, ms } => write!(
                f,
                "timerfd: {errors} calls failed, read for {ms} ms of {TIMERFD_RUN_MS}"
            ),
            Failure::Expirations { counted, min, max } => write!(
                f,
                "timerfd counted {counted} expirations, the time that passed allows {min}..={max}"
            ),
            Failure::MonotonicBack(n) => write!(f, "CLOCK_MONOTONIC went back {n} times"),
            Failure::Cpus { cpus, wrong } => write!(
                f,
                "CLOCK_MONOTONIC checked on {cpus} CPUs, {wrong} pinnings failed or ran elsewhere"
            ),
        }
    }
}

impl core::error::Error for Failure {}

/// The summary's fields in line order, with their values.
fn fields(s: &Summary) -> [(&'static str, u64); 17] {
    [
        ("sleeps", u64::from(s.sleeps)),
        ("sleep_errors", u64::from(s.sleep_errors)),
        ("early", u64::from(s.early)),
        ("late_median_us", s.late_median_us),
        ("late_max_us", s.late_max_us),
        ("tfd_ms", s.tfd_ms),
        ("tfd_reads", s.tfd_reads),
        ("tfd_expirations", s.tfd_expirations),
        ("tfd_overruns", s.tfd_overruns),
        ("tfd_expected_min", s.tfd_expected_min),
        ("tfd_expected_max", s.tfd_expected_max),
        ("tfd_errors", u64::from(s.tfd_errors)),
        ("cpus", u64::from(s.cpus)),
        ("mono_reads", s.mono_reads),
        ("mono_back", s.mono_back),
        ("migrations", u64::from(s.migrations)),
        ("wrong_cpu", u64::from(s.wrong_cpu)),
    ]
}

impl Summary {
    /// Checks the pass rules, in the order the module documentation lists
    /// them; the first one broken is the error.
    pub fn check(&self) -> Result<(), Failure> {
        if self.sleeps != SLEEPS || self.sleep_errors != 0 {
            return Err(Failure::Sleeps {
                done: self.sleeps,
                errors: self.sleep_errors,
            });
        }
        if self.early != 0 {
            return Err(Failure::Early(self.early));
        }
        if self.late_median_us > LATE_MEDIAN_BOUND_US {
            return Err(Failure::LateMedian(self.late_median_us));
        }
        if self.late_max_us > LATE_MAX_BOUND_US {
            return Err(Failure::LateMax(self.late_max_us));
        }
        if self.tfd_errors != 0 || self.tfd_ms < TIMERFD_RUN_MS || self.tfd_reads == 0 {
            return Err(Failure::Timerfd {
                errors: self.tfd_errors,
                ms: self.tfd_ms,
            });
        }
        // One expiration of slack on each side: the clock readings that
        // bracket the arming and the last read are taken by the program,
        // not by the kernel at the very instant it counts.
        let min = self.tfd_expected_min.saturating_sub(1);
        let max = self.tfd_expected_max.saturating_add(1);
        if !(min..=max).contains(&self.tfd_expirations) {
            return Err(Failure::Expirations {
                counted: self.tfd_expirations,
                min,
                max,
            });
        }
        if self.mono_back != 0 {
            return Err(Failure::MonotonicBack(self.mono_back));
        }
        if self.cpus == 0 || self.wrong_cpu != 0 {
            return Err(Failure::Cpus {
                cpus: self.cpus,
                wrong: self.wrong_cpu,
            });
        }
        Ok(())
    }

    /// Reads a summary back from a console line holding one (anywhere in
    /// the line: a kernel message may share it). Every field must be there
    /// once, as a decimal number; the `verdict` is not read back (judge with
    /// [`Summary::check`]).
    pub fn parse(line: &str) -> Option<Summary> {
        let at = line.find(PREFIX)?;
        let rest = line.get(at + PREFIX.len()..)?;
        let mut values = [None::<u64>; 17];
        let names = fields(&Summary::default()).map(|(name, _)| name);
        for word in rest.split_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            if let Some(i) = names.iter().position(|&n| n == key) {
                let slot = values.get_mut(i)?;
                if slot.is_some() {
                    return None;
                }
                *slot = Some(value.parse().ok()?);
            }
        }
        let mut v = [0_u64; 17];
        for (slot, value) in v.iter_mut().zip(values) {
            *slot = value?;
        }
        let n32 = |x: u64| u32::try_from(x).ok();
        Some(Summary {
            sleeps: n32(v[0])?,
            sleep_errors: n32(v[1])?,
            early: n32(v[2])?,
            late_median_us: v[3],
            late_max_us: v[4],
            tfd_ms: v[5],
            tfd_reads: v[6],
            tfd_expirations: v[7],
            tfd_overruns: v[8],
            tfd_expected_min: v[9],
            tfd_expected_max: v[10],
            tfd_errors: n32(v[11])?,
            cpus: n32(v[12])?,
            mono_reads: v[13],
            mono_back: v[14],
            migrations: n32(v[15])?,
            wrong_cpu: n32(v[16])?,
        })
    }
}

/// The summary line: [`PREFIX`], every field as `key=value`, and
/// `verdict=pass` or `verdict=fail`.
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        for (name, value) in fields(self) {
            write!(f, " {name}={value}")?;
        }
        let verdict = if self.check().is_ok() { "pass" } else { "fail" };
        write!(f, " verdict={verdict}")
    }
}

/// A fixed buffer that formats text without an allocator; writing past its
/// end is an error and keeps what fitted.
#[derive(Clone, Debug)]
pub struct LineBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> LineBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
        }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }

    /// Forgets what was written.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const N: usize> Default for LineBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for LineBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dest = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use core::fmt::Write as _;
    use std::string::ToString;

    use super::*;

    fn good() -> Summary {
        Summary {
            sleeps: SLEEPS,
            sleep_errors: 0,
            early: 0,
            late_median_us: 1_200,
            late_max_us: 9_800,
            tfd_ms: 2_003,
            tfd_reads: 1_650,
            tfd_expirations: 2_001,
            tfd_overruns: 351,
            tfd_expected_min: 2_000,
            tfd_expected_max: 2_003,
            tfd_errors: 0,
            cpus: 2,
            mono_reads: 20_000,
            mono_back: 0,
            migrations: 39,
            wrong_cpu: 0,
        }
    }

    #[test]
    fn sleeps_cover_the_range_and_repeat() {
        let lengths: std::vec::Vec<u64> = (0..SLEEPS).map(sleep_ms).collect();
        assert!(
            lengths
                .iter()
                .all(|ms| (SLEEP_MIN_MS..=SLEEP_MAX_MS).contains(ms))
        );
        assert!(lengths.contains(&SLEEP_MIN_MS));
        assert!(lengths.contains(&SLEEP_MAX_MS));
        // Not one length over and over: at least half the lengths appear.
        let distinct = (SLEEP_MIN_MS..=SLEEP_MAX_MS)
            .filter(|ms| lengths.contains(ms))
            .count();
        assert!(distinct >= 10, "{distinct}");
        assert_eq!(
            lengths,
            (0..SLEEPS).map(sleep_ms).collect::<std::vec::Vec<_>>()
        );
    }

    #[test]
    fn the_median_sorts_and_takes_the_middle() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [7]), Some(7));
        assert_eq!(median(&mut [9, 1, 5]), Some(5));
        assert_eq!(median(&mut [4, 1, 3, 2]), Some(3));
    }

    #[test]
    fn a_summary_reads_back_from_its_line() {
        let s = good();
        let line = s.to_string();
        assert!(line.starts_with("ATV-CHECK: sleeps=200 sleep_errors=0 early=0 "));
        assert!(line.ends_with(" wrong_cpu=0 verdict=pass"), "{line}");
        assert_eq!(Summary::parse(&line), Some(s));
        // A kernel message before it on the same console line.
        let mixed = std::format!("[   12.3] random: crng init done{line}");
        assert_eq!(Summary::parse(&mixed), Some(s));
        // A missing, doubled or malformed field is no summary.
        assert_eq!(Summary::parse(&line.replace(" early=0", "")), None);
        assert_eq!(
            Summary::parse(&line.replace(" early=0", " early=0 early=0")),
            None
        );
        assert_eq!(Summary::parse(&line.replace("early=0", "early=x")), None);
        assert_eq!(
            Summary::parse(&line.replace("sleeps=200", "sleeps=4294967296")),
            None
        );
        assert_eq!(Summary::parse("sleeps=200"), None);
    }

    #[test]
    fn the_pass_rules() {
        assert_eq!(good().check(), Ok(()));
        let with = |f: fn(&mut Summary)| {
            let mut s = good();
            f(&mut s);
            s.check()
        };
        assert!(matches!(
            with(|s| s.sleeps = 199),
            Err(Failure::Sleeps { .. })
        ));
        assert!(matches!(
            with(|s| s.sleep_errors = 1),
            Err(Failure::Sleeps { .. })
        ));
        assert_eq!(with(|s| s.early = 1), Err(Failure::Early(1)));
        assert_eq!(
            with(|s| s.late_median_us = LATE_MEDIAN_BOUND_US + 1),
            Err(Failure::LateMedian(LATE_MEDIAN_BOUND_US + 1))
        );
        assert!(with(|s| s.late_median_us = LATE_MEDIAN_BOUND_US).is_ok());
        assert!(matches!(
            with(|s| s.late_max_us = LATE_MAX_BOUND_US + 1),
            Err(Failure::LateMax(_))
        ));
        assert!(matches!(
            with(|s| s.tfd_errors = 1),
            Err(Failure::Timerfd { .. })
        ));
        assert!(matches!(
            with(|s| s.tfd_ms = 1_999),
            Err(Failure::Timerfd { .. })
        ));
        assert!(matches!(
            with(|s| s.tfd_reads = 0),
            Err(Failure::Timerfd { .. })
        ));
        // One expiration of slack each side, no more.
        assert!(with(|s| s.tfd_expirations = 1_999).is_ok());
        assert!(with(|s| s.tfd_expirations = 2_004).is_ok());
        assert!(matches!(
            with(|s| s.tfd_expirations = 1_998),
            Err(Failure::Expirations { .. })
        ));
        assert!(matches!(
            with(|s| s.tfd_expirations = 2_005),
            Err(Failure::Expirations { .. })
        ));
        assert_eq!(with(|s| s.mono_back = 2), Err(Failure::MonotonicBack(2)));
        assert!(matches!(with(|s| s.cpus = 0), Err(Failure::Cpus { .. })));
        assert!(matches!(
            with(|s| s.wrong_cpu = 1),
            Err(Failure::Cpus { .. })
        ));
        let mut bad = good();
        bad.early = 3;
        assert!(bad.to_string().ends_with(" verdict=fail"));
        assert_eq!(
            bad.check().map_err(|e| e.to_string()),
            Err("3 clock_nanosleep calls returned early".into())
        );
    }

    #[test]
    fn the_line_buffer_keeps_what_fits() {
        let mut b = LineBuf::<8>::new();
        assert!(write!(b, "{}", 1234).is_ok());
        assert_eq!(b.as_bytes(), b"1234");
        assert!(write!(b, "56789").is_err());
        assert_eq!(b.as_bytes(), b"1234");
        b.clear();
        assert!(write!(b, "12345678").is_ok());
        assert_eq!(b.as_bytes(), b"12345678");
    }
}
