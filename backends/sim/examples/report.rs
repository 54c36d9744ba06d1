//! Prints the library against the eager save/restore baseline, side by
//! side: hardware accesses per operation (exact, from the model's
//! counters), nanoseconds per operation on the model (median of batches),
//! and the memory a hypervisor pays per vCPU and per VM.
//!
//! ```text
//! cargo run -p arch-timer-virt-sim --release --example report
//! ```
//!
//! With `-- --code-size` (as `cargo xtask bench` runs it) it also builds
//! `size-probe/` (every `VcpuTimer` operation, the register API and
//! `emulate::access` instantiated once, hardware accessors opaque external
//! calls)
//! for `aarch64-unknown-none` at the workspace's release opt-level with
//! LTO, and prints the `.text` size: `size-probe/measure.sh`.

#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use arch_timer_virt::{TimerContext, VcpuTimer, VmTimer};

#[path = "../benches/common/eager.rs"]
mod eager;
#[path = "../benches/common/scenarios.rs"]
mod scenarios;

use scenarios::{Eager, Library, Op};

/// Median nanoseconds per call of `f`, over `batches` batches of `n`.
fn median_ns(mut f: impl FnMut(), n: u32) -> f64 {
    let batches = 21;
    let mut samples: Vec<f64> = (0..batches)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed().as_secs_f64() * 1e9 / f64::from(n)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// `eager / library`, or "-" if the library figure is 0 (no ratio).
fn ratio(eager: f64, library: f64) -> String {
    if library == 0.0 {
        "-".into()
    } else {
        format!("{:.2}x", eager / library)
    }
}

/// Whether the eager figures of `op` leave out work the library does: the
/// eager baseline's `load`, `put`, `block` and `unblock` handle the timer
/// registers only, not the virtual line or the physical PPI's state.
const fn eager_registers_only(op: Op) -> bool {
    matches!(op, Op::PutLoad | Op::BlockUnblock | Op::Slice)
}

fn main() {
    println!("arch-timer-virt on the model: library (residency tracking) vs eager save/restore\n");
    println!(
        "{:<26} | {:>9} {:>9} {:>7} | {:>9} {:>9} {:>7} | {:>9} {:>9} {:>7}",
        "operation",
        "lib hw",
        "eager hw",
        "ratio",
        "lib vtmr",
        "eager vt",
        "ratio",
        "lib ns",
        "eager ns",
        "ratio"
    );
    let mut details = Vec::new();
    for op in Op::ALL {
        let (mut lib, mut eager) = (Library::new(op), Eager::new(op));
        let (l, e) = (lib.count(op), eager.count(op));
        let n = if op == Op::Slice { 20_000 } else { 200_000 };
        let lib_ns = median_ns(|| lib.run(black_box(op)), n);
        let eager_ns = median_ns(|| eager.run(black_box(op)), n);
        #[allow(clippy::cast_precision_loss)] // counts are tiny
        let f = |v: u64| v as f64;
        println!(
            "{:<26} | {:>9} {:>9} {:>7} | {:>9} {:>9} {:>7} | {:>9.1} {:>9.1} {:>7}",
            if eager_registers_only(op) {
                format!("{} *", op.name())
            } else {
                op.name().to_owned()
            },
            l.hardware_accesses(),
            e.hardware_accesses(),
            ratio(f(e.hardware_accesses()), f(l.hardware_accesses())),
            l.vtimer_register_accesses(),
            e.vtimer_register_accesses(),
            ratio(
                f(e.vtimer_register_accesses()),
                f(l.vtimer_register_accesses())
            ),
            lib_ns,
            eager_ns,
            ratio(eager_ns, lib_ns),
        );
        details.push((op, l, e));
    }
    println!(
        "\n(hw = timer system register + GIC accesses; vtmr = CNTV_CTL/CNTV_CVAL/CNTVOFF_EL2/isb only;"
    );
    println!(
        " ratio = eager / library, - where the library figure is 0; ns = model time, median of"
    );
    println!(" 21 batches, not hardware time)");
    println!(
        " * eager figures: timer registers only (eager does no GIC state handling on load, put,"
    );
    println!(
        "   block and unblock), so they understate what an eager hypervisor would pay there\n"
    );
    for (op, l, e) in details {
        let note = if eager_registers_only(op) {
            " (timer registers only)"
        } else {
            ""
        };
        println!("{}:\n  library: {l}\n  eager:   {e}{note}", op.name());
    }
    println!(
        "\nwith the physical timer direct (the timer map; for the line-high round trip the \
         physical timer's line is the high one):"
    );
    println!(
        "{:<26} | {:>9} {:>9} {:>9} | {:>9}",
        "operation", "lib hw", "lib vtmr", "lib ptmr", "lib ns"
    );
    for op in Op::ALL {
        let mut direct = Library::with_direct_ptimer(op);
        let d = direct.count(op);
        let n = if op == Op::Slice { 20_000 } else { 200_000 };
        let ns = median_ns(|| direct.run(black_box(op)), n);
        println!(
            "{:<26} | {:>9} {:>9} {:>9} | {:>9.1}",
            op.name(),
            d.hardware_accesses(),
            d.vtimer_register_accesses(),
            d.ptimer_register_accesses(),
            ns
        );
        println!("  {d}");
    }
    println!("\nmemory a hypervisor pays:");
    println!(
        "  size_of::<VcpuTimer>()    = {} bytes per vCPU",
        size_of::<VcpuTimer>()
    );
    println!(
        "  size_of::<VmTimer>()      = {} bytes per VM",
        size_of::<VmTimer>()
    );
    println!(
        "  size_of::<TimerContext>() = {} bytes (two per VcpuTimer)",
        size_of::<TimerContext>()
    );
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/size-probe/measure.sh");
    if std::env::args().any(|a| a == "--code-size") {
        println!("\ncode size ({script}):");
        match std::process::Command::new("sh").arg(script).output() {
            Ok(out) => print!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => println!("  could not run it: {e}"),
        }
    } else {
        println!("\ncode size (aarch64-unknown-none, release): pass --code-size, or run {script}");
    }
}
