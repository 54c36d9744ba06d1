//! The operations the benchmark and the report measure, on the library
//! and on the eager baseline, each on a model machine prepared so that the
//! guest's virtual timer line is low (armed far ahead) or high (expired and
//! forwarded). The library also runs with its physical timer direct
//! ([`Library::with_direct_ptimer`]): then the *physical* timer's line is
//! the one high or low, the virtual timer armed far ahead. Included by
//! `benches/timer.rs` and `examples/report.rs`.

use arch_timer_virt::{HostIrq, PhysTimerMode, Ticks, TimerId, VcpuTimer, VmTimer};
use arch_timer_virt_sim::{Counters, Machine};

use crate::eager::EagerVcpu;

/// The counter frequency of the measured machines (a common SoC crystal):
/// the operations measured do not depend on it.
const FREQUENCY_HZ: u32 = 24_000_000;

/// The operations measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `before_entry` + `after_exit` (eager: entry + exit), line low.
    RoundTripLow,
    /// The same with the virtual line high.
    RoundTripHigh,
    /// `put` + `load` on the same CPU.
    PutLoad,
    /// `block` + `unblock` while loaded.
    BlockUnblock,
    /// A scheduling slice: `load`, 10 round trips with the line low, `put`.
    Slice,
}

impl Op {
    /// Every operation, in report order.
    pub const ALL: [Self; 5] = [
        Self::RoundTripLow,
        Self::RoundTripHigh,
        Self::PutLoad,
        Self::BlockUnblock,
        Self::Slice,
    ];

    /// A short name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::RoundTripLow => "entry+exit, line low",
            Self::RoundTripHigh => "entry+exit, line high",
            Self::PutLoad => "put+load",
            Self::BlockUnblock => "block+unblock",
            Self::Slice => "load, 10 entry+exit, put",
        }
    }
}

/// The guest's timer: expired (line high) or far ahead (line low).
fn arm_guest(m: &mut Machine, high: bool) {
    m.guest_write_cval(
        0,
        arch_timer_virt::Ticks::new(if high { 0 } else { 1 << 60 }),
    );
    m.guest_write_ctl(0, 1);
}

/// The library, one vCPU loaded on CPU 0.
pub struct Library {
    m: Machine,
    vm: VmTimer,
    t: VcpuTimer,
}

impl Library {
    /// Ready to run `op`, with the line high if `op` wants it; the
    /// physical timer emulated and disabled.
    pub fn new(op: Op) -> Self {
        Self::build(op, false)
    }

    /// Ready to run `op` with the physical timer direct (the timer map,
    /// offset 0) and armed: its line high if `op` wants it, low (armed far
    /// ahead) otherwise; the virtual timer armed far ahead.
    pub fn with_direct_ptimer(op: Op) -> Self {
        Self::build(op, true)
    }

    fn build(op: Op, direct: bool) -> Self {
        let mut s = Self {
            m: Machine::new(1, 1, FREQUENCY_HZ),
            vm: VmTimer::new(),
            t: VcpuTimer::new(),
        };
        if direct {
            s.vm.set_phys_timer_mode(PhysTimerMode::Auto).unwrap();
        }
        let mut p = s.m.ports(0, 0);
        s.t.load(&s.vm, &mut p.timer, &mut p.gic).unwrap();
        assert_eq!(s.t.is_direct(TimerId::Physical), direct);
        let high = op == Op::RoundTripHigh;
        arm_guest(&mut s.m, high && !direct);
        if direct {
            s.m.guest_write_ptimer_cval(0, Ticks::new(if high { 0 } else { 1 << 60 }));
            s.m.guest_write_ptimer_ctl(0, 1);
        }
        s.m.advance(1);
        if high {
            let ppi = s.m.host_acknowledge(0).unwrap();
            s.m.host_priority_drop(0, ppi);
            let timer = s.t.timer_for_host_ppi(ppi).unwrap();
            let mut p = s.m.ports(0, 0);
            let r =
                s.t.handle_timer_irq(timer, &mut p.timer, &mut p.gic)
                    .unwrap();
            assert_eq!(r, HostIrq::Raised);
        }
        s
    }

    fn round_trip(&mut self) {
        let mut p = self.m.ports(0, 0);
        self.t
            .before_entry(&mut p.timer, &mut p.gic, &mut p.soft)
            .unwrap();
        self.t
            .after_exit(&mut p.timer, &mut p.gic, &mut p.soft)
            .unwrap();
    }

    /// Runs `op` once.
    pub fn run(&mut self, op: Op) {
        match op {
            Op::RoundTripLow | Op::RoundTripHigh => self.round_trip(),
            Op::PutLoad => {
                let mut p = self.m.ports(0, 0);
                self.t.put(&mut p.timer, &mut p.soft).unwrap();
                self.t.load(&self.vm, &mut p.timer, &mut p.gic).unwrap();
            }
            Op::BlockUnblock => {
                let mut p = self.m.ports(0, 0);
                let _ = self.t.block(&self.vm, &mut p.timer, &mut p.soft);
                self.t
                    .unblock(&mut p.timer, &mut p.gic, &mut p.soft)
                    .unwrap();
            }
            Op::Slice => {
                let mut p = self.m.ports(0, 0);
                self.t.put(&mut p.timer, &mut p.soft).unwrap();
                self.t.load(&self.vm, &mut p.timer, &mut p.gic).unwrap();
                for _ in 0..10 {
                    self.round_trip();
                }
            }
        }
    }

    /// The accesses one run of `op` makes.
    pub fn count(&mut self, op: Op) -> Counters {
        let before = self.m.counters();
        self.run(op);
        self.m.counters().since(&before)
    }
}

/// The eager baseline, one vCPU loaded on CPU 0.
pub struct Eager {
    m: Machine,
    e: EagerVcpu,
}

impl Eager {
    /// Ready to run `op`, with the line high if `op` wants it.
    pub fn new(op: Op) -> Self {
        let mut s = Self {
            m: Machine::new(1, 1, FREQUENCY_HZ),
            e: EagerVcpu::default(),
        };
        let mut p = s.m.ports(0, 0);
        s.e.load(&mut p.timer, &mut p.gic);
        s.e.entry(&mut p.timer, &mut p.gic);
        arm_guest(&mut s.m, op == Op::RoundTripHigh);
        s.m.advance(1);
        let mut p = s.m.ports(0, 0);
        s.e.exit(&mut p.timer, &mut p.gic);
        s
    }

    fn round_trip(&mut self) {
        let mut p = self.m.ports(0, 0);
        self.e.entry(&mut p.timer, &mut p.gic);
        self.e.exit(&mut p.timer, &mut p.gic);
    }

    /// Runs `op` once.
    pub fn run(&mut self, op: Op) {
        match op {
            Op::RoundTripLow | Op::RoundTripHigh => self.round_trip(),
            Op::PutLoad => {
                let mut p = self.m.ports(0, 0);
                self.e.put(&mut p.timer);
                self.e.load(&mut p.timer, &mut p.gic);
            }
            Op::BlockUnblock => {
                let mut p = self.m.ports(0, 0);
                self.e.block(&mut p.timer, &mut p.soft);
                self.e.unblock(&mut p.soft);
            }
            Op::Slice => {
                let mut p = self.m.ports(0, 0);
                self.e.put(&mut p.timer);
                self.e.load(&mut p.timer, &mut p.gic);
                for _ in 0..10 {
                    self.round_trip();
                }
            }
        }
    }

    /// The accesses one run of `op` makes.
    pub fn count(&mut self, op: Op) -> Counters {
        let before = self.m.counters();
        self.run(op);
        self.m.counters().since(&before)
    }
}
