//! Criterion benchmark: the library against an eager save/restore baseline
//! on the model, per operation. The model's register accesses are
//! function calls with logging, so these nanoseconds rank the two
//! designs' bookkeeping; the hardware cost is in the access counts, which
//! `cargo run -p arch-timer-virt-sim --release --example report` prints.

#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

#[path = "common/eager.rs"]
mod eager;
#[path = "common/scenarios.rs"]
mod scenarios;

use scenarios::{Eager, Library, Op};

fn bench(c: &mut Criterion) {
    for op in Op::ALL {
        let mut group = c.benchmark_group(op.name());
        let mut lib = Library::new(op);
        let mut eager = Eager::new(op);
        let (l, e) = (lib.count(op), eager.count(op));
        println!(
            "{}: hardware accesses library {} (vtimer registers {}), eager {} (vtimer registers {})",
            op.name(),
            l.hardware_accesses(),
            l.vtimer_register_accesses(),
            e.hardware_accesses(),
            e.vtimer_register_accesses()
        );
        let mut direct = Library::with_direct_ptimer(op);
        let d = direct.count(op);
        println!(
            "{}: with the physical timer direct: hardware accesses {} (vtimer registers {}, \
             ptimer registers {})",
            op.name(),
            d.hardware_accesses(),
            d.vtimer_register_accesses(),
            d.ptimer_register_accesses()
        );
        group.bench_function("library", |b| b.iter(|| lib.run(black_box(op))));
        group.bench_function("library, direct ptimer", |b| {
            b.iter(|| direct.run(black_box(op)));
        });
        group.bench_function("eager", |b| b.iter(|| eager.run(black_box(op))));
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
