//! The guest hypercall ABI, shared by the hypervisor (which serves the
//! calls) and every guest (which makes them): the call numbers and the
//! guest side of `hvc #0`. The built-in guests use it as a module of the
//! hypervisor image; the separately linked `guest-hello` includes this
//! same file, so the ABI is written down once.

use core::arch::asm;
use core::fmt::{self, Write};

/// The hypercalls, by `x0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub(crate) enum Hypercall {
    /// Print `x2` bytes at guest address `x1`.
    Print = 1,
    /// Finish with the report in `x1..=x6`.
    Exit = 2,
    /// Do nothing: an exit, so that the hypervisor syncs the interrupt
    /// state (a guest's way to see a lowered line go away).
    Yield = 3,
    /// Report the guest's timing measurements (`x1..=x4`),
    /// before [`Exit`](Self::Exit).
    Measure = 4,
    /// The perf scenario's marks and requests (`x1` the operation, see
    /// `hyp::perf`).
    Perf = 5,
}

impl Hypercall {
    /// The hypercall numbered `n`.
    pub(crate) fn from_number(n: u64) -> Option<Self> {
        [
            Self::Print,
            Self::Exit,
            Self::Yield,
            Self::Measure,
            Self::Perf,
        ]
        .into_iter()
        .find(|h| *h as u64 == n)
    }
}

/// Makes hypercall `call` with `x1..=x6` = `args` (guest side).
pub(crate) fn call(call: Hypercall, args: [u64; 6]) {
    // SAFETY: `hvc` traps to the hypervisor, which reads the arguments and
    // returns without touching guest memory other than reading a Print
    // buffer.
    unsafe {
        asm!(
            "hvc #0",
            inout("x0") call as u64 => _,
            inout("x1") args[0] => _,
            inout("x2") args[1] => _,
            inout("x3") args[2] => _,
            inout("x4") args[3] => _,
            inout("x5") args[4] => _,
            inout("x6") args[5] => _,
            options(nostack)
        );
    }
}

/// A line of guest output, sent with one hypercall.
struct Line {
    buf: [u8; 120],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if let Some(slot) = self.buf.get_mut(self.len) {
                *slot = b;
                self.len += 1;
            }
        }
        Ok(())
    }
}

/// Prints one line through [`Hypercall::Print`] (at most 120 bytes; the
/// rest is cut).
pub(crate) fn print(args: fmt::Arguments<'_>) {
    let mut line = Line {
        buf: [0; 120],
        len: 0,
    };
    let _ = line.write_fmt(args);
    let _ = line.write_str("\n");
    call(
        Hypercall::Print,
        [line.buf.as_ptr() as u64, line.len as u64, 0, 0, 0, 0],
    );
}
