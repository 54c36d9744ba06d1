//! The Linux system calls the check makes, as `svc #0` with the arm64
//! calling convention (number in `x8`, arguments in `x0`..`x5`, result or
//! `-errno` in `x0`; every other register preserved). Numbers from Linux's
//! `include/uapi/asm-generic/unistd.h`, which arm64 uses.

use core::arch::asm;

/// Nanoseconds in a microsecond.
pub(crate) const NS_PER_US: u64 = 1_000;
/// Nanoseconds in a millisecond.
pub(crate) const NS_PER_MS: u64 = NS_PER_US * 1_000;
/// Nanoseconds in a second (the `timespec` split).
const NS_PER_S: u64 = NS_PER_MS * 1_000;

const SYS_CLOSE: usize = 57;
const SYS_READ: usize = 63;
const SYS_WRITE: usize = 64;
const SYS_TIMERFD_CREATE: usize = 85;
const SYS_TIMERFD_SETTIME: usize = 86;
const SYS_EXIT_GROUP: usize = 94;
const SYS_CLOCK_GETTIME: usize = 113;
const SYS_CLOCK_NANOSLEEP: usize = 115;
const SYS_SCHED_SETAFFINITY: usize = 122;
const SYS_SCHED_GETAFFINITY: usize = 123;
const SYS_GETCPU: usize = 168;

/// `CLOCK_MONOTONIC`.
const CLOCK_MONOTONIC: usize = 1;
/// `EINTR`: a sleep interrupted by a signal (retried with what is left).
const EINTR: isize = 4;

/// A failed call's `errno`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Errno(
    // Read only through `Debug`: the summary counts failures, not causes.
    #[allow(dead_code)] pub(crate) isize,
);

/// Makes system call `nr` with four arguments.
///
/// # Safety
///
/// The arguments must be valid for the call: every pointer among them must
/// point to memory the call may read or write as the call's ABI says, for
/// the call's duration.
unsafe fn syscall4(nr: usize, a0: usize, a1: usize, a2: usize, a3: usize) -> isize {
    let ret: isize;
    // SAFETY: `svc #0` enters the kernel, which preserves every register
    // but x0; the caller vouches for the pointers. Memory is not declared
    // untouched (no `nomem`), so writes through the pointers are seen.
    unsafe {
        asm!(
            "svc #0",
            in("x8") nr,
            inlateout("x0") a0 => ret,
            in("x1") a1,
            in("x2") a2,
            in("x3") a3,
            options(nostack),
        );
    }
    ret
}

/// A call's result: `-errno` (-4095..=-1) is an error.
fn result(ret: isize) -> Result<usize, Errno> {
    if (-4095..0).contains(&ret) {
        Err(Errno(-ret))
    } else {
        usize::try_from(ret).map_err(|_| Errno(ret))
    }
}

/// `struct timespec` on arm64.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

impl Timespec {
    fn from_ns(ns: u64) -> Self {
        Self {
            sec: i64::try_from(ns / NS_PER_S).unwrap_or(i64::MAX),
            // Below one second: fits.
            nsec: i64::try_from(ns % NS_PER_S).unwrap_or(0),
        }
    }

    fn ns(self) -> u64 {
        let sec = u64::try_from(self.sec).unwrap_or(0);
        let nsec = u64::try_from(self.nsec).unwrap_or(0);
        sec.saturating_mul(NS_PER_S).saturating_add(nsec)
    }
}

/// `struct itimerspec`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Itimerspec {
    interval: Timespec,
    value: Timespec,
}

/// Writes all of `bytes` to standard output (the console), giving up on
/// an error.
pub(crate) fn print_bytes(mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: the pointer and length describe `bytes`, which write(2)
        // only reads.
        let ret = unsafe { syscall4(SYS_WRITE, 1, bytes.as_ptr() as usize, bytes.len(), 0) };
        match result(ret) {
            Ok(n) if n > 0 => bytes = bytes.get(n..).unwrap_or(&[]),
            _ => return,
        }
    }
}

/// Writes `text` to standard output.
pub(crate) fn print(text: &str) {
    print_bytes(text.as_bytes());
}

/// Ends the process with `status` (0..=255).
pub(crate) fn exit(status: u8) -> ! {
    loop {
        // SAFETY: exit_group takes no pointer; it does not return.
        unsafe {
            syscall4(SYS_EXIT_GROUP, usize::from(status), 0, 0, 0);
        }
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds.
pub(crate) fn monotonic_ns() -> Result<u64, Errno> {
    let mut ts = Timespec::default();
    // SAFETY: `ts` is a `struct timespec` the call writes, alive for it.
    let ret = unsafe {
        syscall4(
            SYS_CLOCK_GETTIME,
            CLOCK_MONOTONIC,
            &raw mut ts as usize,
            0,
            0,
        )
    };
    result(ret).map(|_| ts.ns())
}

/// Sleeps `ns` nanoseconds on `CLOCK_MONOTONIC` (relative), going on with
/// what is left after a signal.
pub(crate) fn nanosleep_monotonic(ns: u64) -> Result<(), Errno> {
    let mut ask = Timespec::from_ns(ns);
    loop {
        let mut left = Timespec::default();
        // SAFETY: `ask` is read and `left` written by the call; both live
        // across it. Flags 0: a relative sleep.
        let ret = unsafe {
            syscall4(
                SYS_CLOCK_NANOSLEEP,
                CLOCK_MONOTONIC,
                0,
                &raw const ask as usize,
                &raw mut left as usize,
            )
        };
        // The raw call returns -errno like the others (the libc wrapper
        // returns it positive).
        match result(ret) {
            Ok(_) => return Ok(()),
            Err(Errno(EINTR)) => ask = left,
            Err(e) => return Err(e),
        }
    }
}

/// A new `timerfd` on `CLOCK_MONOTONIC`.
pub(crate) fn timerfd_monotonic() -> Result<usize, Errno> {
    // SAFETY: no pointers.
    result(unsafe { syscall4(SYS_TIMERFD_CREATE, CLOCK_MONOTONIC, 0, 0, 0) })
}

/// Arms `fd` to expire every `interval_ns`, the first time `interval_ns`
/// from now.
pub(crate) fn timerfd_arm(fd: usize, interval_ns: u64) -> Result<(), Errno> {
    let spec = Itimerspec {
        interval: Timespec::from_ns(interval_ns),
        value: Timespec::from_ns(interval_ns),
    };
    // SAFETY: `spec` is read by the call; no old value is asked for.
    let ret = unsafe { syscall4(SYS_TIMERFD_SETTIME, fd, 0, &raw const spec as usize, 0) };
    result(ret).map(|_| ())
}

/// Reads the 8-byte expiration count of a `timerfd` (blocking until there
/// is one).
pub(crate) fn read_u64(fd: usize) -> Result<u64, Errno> {
    let mut bytes = [0_u8; 8];
    // SAFETY: the call writes at most `bytes.len()` bytes into `bytes`.
    let ret = unsafe { syscall4(SYS_READ, fd, bytes.as_mut_ptr() as usize, bytes.len(), 0) };
    match result(ret)? {
        8 => Ok(u64::from_ne_bytes(bytes)),
        n => Err(Errno(isize::try_from(n).unwrap_or(isize::MAX))),
    }
}

/// Closes `fd`.
pub(crate) fn close(fd: usize) {
    // SAFETY: no pointers.
    let _ = unsafe { syscall4(SYS_CLOSE, fd, 0, 0, 0) };
}

/// A CPU mask for `sched_{get,set}affinity`, 256 CPUs wide (Debian's
/// `NR_CPUS`).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CpuSet([u64; 4]);

impl CpuSet {
    /// The set holding `cpu` alone.
    pub(crate) fn only(cpu: u32) -> Self {
        let mut set = Self::default();
        if let Some(word) = set.0.get_mut((cpu / 64) as usize) {
            *word = 1 << (cpu % 64);
        }
        set
    }

    /// How many CPUs are in the set.
    pub(crate) fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// The CPUs in the set, lowest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..256_u32).filter(|&cpu| {
            self.0
                .get((cpu / 64) as usize)
                .is_some_and(|w| w & (1 << (cpu % 64)) != 0)
        })
    }
}

/// The CPUs this thread may run on.
pub(crate) fn getaffinity() -> Result<CpuSet, Errno> {
    let mut set = CpuSet::default();
    // SAFETY: the call writes at most the given size into `set`.
    let ret = unsafe {
        syscall4(
            SYS_SCHED_GETAFFINITY,
            0,
            size_of::<CpuSet>(),
            &raw mut set as usize,
            0,
        )
    };
    result(ret).map(|_| set)
}

/// Restricts this thread to `set` (the kernel moves it at once when it runs
/// elsewhere).
pub(crate) fn setaffinity(set: &CpuSet) -> Result<(), Errno> {
    // SAFETY: the call reads `size_of::<CpuSet>()` bytes from `set`.
    let ret = unsafe {
        syscall4(
            SYS_SCHED_SETAFFINITY,
            0,
            size_of::<CpuSet>(),
            core::ptr::from_ref(set) as usize,
            0,
        )
    };
    result(ret).map(|_| ())
}

/// The CPU this thread runs on.
pub(crate) fn getcpu() -> Result<u32, Errno> {
    let mut cpu = 0_u32;
    // SAFETY: the call writes one `unsigned int` into `cpu`; node and cache
    // pointers are null (not asked for).
    let ret = unsafe { syscall4(SYS_GETCPU, &raw mut cpu as usize, 0, 0, 0) };
    result(ret).map(|_| cpu)
}
