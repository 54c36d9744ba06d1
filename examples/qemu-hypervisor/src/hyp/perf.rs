//! The `perf` scenario's measurement: instructions retired at EL2 and EL1
//! (the PMU, [`crate::pmu`]) and the timer and GIC calls the library makes
//! ([`Counted`]), per round trip of each path the perf guest drives.
//!
//! The guest runs each path ([`Path`]) [`N1`] and then [`N2`] times between
//! two [`Hypercall::Perf`](crate::hypercall::Hypercall::Perf) marks
//! ([`PERF_BEGIN`], [`PERF_END`]); the hypervisor reads the counters at
//! both marks. The difference of the two runs divided by `N2 - N1` is one
//! round trip: the marks, the loop set-up and everything else that does
//! not repeat cancels out. It does so twice: the second time (`x4` = 1)
//! with the run loop's calls into the timer bracketed ([`timer_code`]), for
//! the timer code's share of the EL2 instructions. One line per path:
//!
//! ```text
//! PERF path=yield-low n1=100 n2=1100 el2=613.000 el2_timer=80.000 el1=14.000 timer=0.000 gic=0.000 ...
//! ```
//!
//! The `perf` scenario drives the virtual timer (the VM's physical timer
//! emulated and unused); `perf-ptimer` drives the physical timer, direct
//! (`PhysTimerMode::Auto` at offset 0), with the virtual timer armed far
//! ahead beside it: its lines name the paths `ptimer-...`
//! ([`Path::name`]).
//!
//! With `-icount shift=0` the counts are deterministic (`cargo xtask bench`
//! checks that two runs agree).

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use arch_timer_virt::{IntId, IrqChip, Ticks, TimerCtl, TimerHw, VirtualState};

use crate::console::println;
use crate::pmu::{Pmu, Sample};

/// Round trips of each path in the first run.
pub(crate) const N1: u64 = 100;
/// Round trips of each path in the second run (`N2 - N1` = 1000, so that
/// a round trip's count prints exactly with three decimals).
pub(crate) const N2: u64 = 1100;

/// `x1` of the perf hypercall: the loop of path `x2` with `x3` round trips
/// begins.
pub(crate) const PERF_BEGIN: u64 = 0;
/// `x1` of the perf hypercall: the loop of path `x2` with `x3` round trips
/// ended.
pub(crate) const PERF_END: u64 = 1;
/// `x1` of the perf hypercall: schedule the vCPU out and back in (`put`,
/// then `load`), the put + load path.
pub(crate) const PERF_PUT_LOAD: u64 = 2;

/// The paths the perf guest drives, by number (`x2`), on the virtual timer
/// (`perf`) or the physical one (`perf-ptimer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    /// A yield hypercall with the timer armed in the future (its line
    /// low): the quiet exit.
    YieldLow,
    /// A yield hypercall with the timer expired and unmasked but the
    /// guest's `PSTATE.I` set (the line high, the interrupt pending).
    YieldHigh,
    /// The timer's PPI taken at EL2, forwarded, taken and acknowledged
    /// (EOI) by the guest.
    TimerIrq,
    /// A hypercall that makes the hypervisor put and load the vCPU.
    PutLoad,
    /// WFI with the timer armed a little ahead: blocked in place (the
    /// timer left running), the CPU woken by the timer's PPI, forwarded,
    /// unblock, the guest's interrupt.
    WfiWake,
    /// The same WFI blocked with the timer saved: block, the background
    /// timer, unblock (which restores the timer), the guest's interrupt.
    WfiSaved,
}

impl Path {
    /// Every path, by number.
    pub(crate) const ALL: [Self; 6] = [
        Self::YieldLow,
        Self::YieldHigh,
        Self::TimerIrq,
        Self::PutLoad,
        Self::WfiWake,
        Self::WfiSaved,
    ];

    /// Its name on the `PERF` line, on the physical timer (`physical`) or
    /// the virtual one.
    pub(crate) const fn name(self, physical: bool) -> &'static str {
        match (self, physical) {
            (Self::YieldLow, false) => "yield-low",
            (Self::YieldHigh, false) => "yield-high",
            (Self::TimerIrq, false) => "vtimer-irq",
            (Self::PutLoad, false) => "put-load",
            (Self::WfiWake, false) => "wfi-wake",
            (Self::WfiSaved, false) => "wfi-saved",
            (Self::YieldLow, true) => "ptimer-yield-low",
            (Self::YieldHigh, true) => "ptimer-yield-high",
            (Self::TimerIrq, true) => "ptimer-irq",
            (Self::PutLoad, true) => "ptimer-put-load",
            (Self::WfiWake, true) => "ptimer-wfi-wake",
            (Self::WfiSaved, true) => "ptimer-wfi-saved",
        }
    }
}

/// Timer register accesses the library asked for through [`Counted`].
static TIMER_CALLS: AtomicU32 = AtomicU32::new(0);
/// GIC calls ([`IrqChip`]) the library made through [`Counted`].
static GIC_CALLS: AtomicU32 = AtomicU32::new(0);

/// EL2 instructions retired inside the library's calls ([`timer_code`]).
static TIMER_INSNS: AtomicU32 = AtomicU32::new(0);
/// The calls [`timer_code`] bracketed.
static TIMER_CODE_CALLS: AtomicU32 = AtomicU32::new(0);
/// The PMU counter that counts EL2 instructions, once the perf scenario
/// set it up; [`NO_PMU`] before.
static EL2_COUNTER: AtomicU64 = AtomicU64::new(NO_PMU);
/// [`EL2_COUNTER`] without a PMU.
const NO_PMU: u64 = u64::MAX;

/// Runs `f`, a call of the run loop into the vCPU's timer (the library's
/// or the eager baseline's), and inside the perf guest's second round of
/// loops adds the EL2 instructions it retired to the timer code's count:
/// the `el2_timer` of the `PERF` line, the timer's own share of the exit,
/// with the GIC calls it makes, less what a bracket around nothing counts.
/// The first round, without brackets, gives the totals. Otherwise it costs
/// a load and a branch.
///
/// In every scenario it also counts the calls during which this CPU entered
/// a critical section ([`timer_path_locks`]): the library's per-CPU paths
/// must take no lock shared across CPUs.
///
/// `args` are the call's hardware arguments (the [`Counted`] wrappers and
/// the soft timers), built before the bracket opens so that the
/// instrumentation's own wrappers are not counted as timer code; `f` gets
/// them by reference.
#[inline(always)]
pub(crate) fn timer_code<A, R>(mut args: A, f: impl FnOnce(&mut A) -> R) -> R {
    let entered = crate::cs::entered();
    let counter = EL2_COUNTER.load(Ordering::Relaxed);
    if counter == NO_PMU {
        let result = f(&mut args);
        count_locks(entered);
        return result;
    }
    // The arguments are in place before the first count is read.
    core::hint::black_box(&mut args);
    let before = Pmu::counter(counter);
    let result = f(&mut args);
    let after = Pmu::counter(counter);
    count_locks(entered);
    TIMER_INSNS.store(
        TIMER_INSNS
            .load(Ordering::Relaxed)
            .wrapping_add(after.wrapping_sub(before)),
        Ordering::Relaxed,
    );
    bump(&TIMER_CODE_CALLS);
    result
}

/// Calls bracketed by [`timer_code`] during which their CPU entered a
/// critical section (all CPUs).
static TIMER_PATH_LOCKS: AtomicU32 = AtomicU32::new(0);

/// Counts a [`TIMER_PATH_LOCKS`] if this CPU entered a critical section
/// since it had entered `entered`.
#[inline(always)]
fn count_locks(entered: u32) {
    if crate::cs::entered() != entered {
        TIMER_PATH_LOCKS.fetch_add(1, Ordering::Relaxed);
    }
}

/// The library's timer calls, on any CPU, during which that CPU entered a
/// critical section (the example's is a spin lock shared by all CPUs).
pub(crate) fn timer_path_locks() -> u32 {
    TIMER_PATH_LOCKS.load(Ordering::Relaxed)
}

/// One more (a load and a store, not an atomic add: the counts are read
/// by the perf scenario, which runs on one CPU; on two CPUs the migration
/// scenario's counts may lose increments, which nothing reads).
#[inline(always)]
fn bump(counter: &AtomicU32) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
}

/// A [`TimerHw`] or [`IrqChip`] that counts the calls the library makes
/// through it and passes them on: every timer register access
/// ([`TimerHw`] without [`barrier`](TimerHw::barrier); the read-modify-write
/// of `CNTHCTL_EL2` counts as one) and every GIC call (one however many
/// registers the backend touches for it).
/// It costs the run loop a load, an add and a store per call.
pub(crate) struct Counted<'a, T: ?Sized>(pub(crate) &'a mut T);

impl<T: TimerHw + ?Sized> TimerHw for Counted<'_, T> {
    #[inline(always)]
    fn physical_count(&self) -> Ticks {
        bump(&TIMER_CALLS);
        self.0.physical_count()
    }
    #[inline(always)]
    fn vtimer_ctl(&self) -> TimerCtl {
        bump(&TIMER_CALLS);
        self.0.vtimer_ctl()
    }
    #[inline(always)]
    fn set_vtimer_ctl(&mut self, ctl: TimerCtl) {
        bump(&TIMER_CALLS);
        self.0.set_vtimer_ctl(ctl);
    }
    #[inline(always)]
    fn vtimer_cval(&self) -> Ticks {
        bump(&TIMER_CALLS);
        self.0.vtimer_cval()
    }
    #[inline(always)]
    fn set_vtimer_cval(&mut self, cval: Ticks) {
        bump(&TIMER_CALLS);
        self.0.set_vtimer_cval(cval);
    }
    #[inline(always)]
    fn set_virtual_offset(&mut self, offset: Ticks) {
        bump(&TIMER_CALLS);
        self.0.set_virtual_offset(offset);
    }
    #[inline(always)]
    fn barrier(&mut self) {
        self.0.barrier();
    }
    #[inline(always)]
    fn set_el1_physical_access(&mut self, allowed: bool) {
        bump(&TIMER_CALLS);
        self.0.set_el1_physical_access(allowed);
    }
    #[inline(always)]
    fn ptimer_ctl(&self) -> TimerCtl {
        bump(&TIMER_CALLS);
        self.0.ptimer_ctl()
    }
    #[inline(always)]
    fn set_ptimer_ctl(&mut self, ctl: TimerCtl) {
        bump(&TIMER_CALLS);
        self.0.set_ptimer_ctl(ctl);
    }
    #[inline(always)]
    fn ptimer_cval(&self) -> Ticks {
        bump(&TIMER_CALLS);
        self.0.ptimer_cval()
    }
    #[inline(always)]
    fn set_ptimer_cval(&mut self, cval: Ticks) {
        bump(&TIMER_CALLS);
        self.0.set_ptimer_cval(cval);
    }
    /// Not counted: what the backend learned when it was built, no
    /// register access.
    #[inline(always)]
    fn has_physical_offset(&self) -> bool {
        self.0.has_physical_offset()
    }
    #[inline(always)]
    fn set_physical_offset(&mut self, offset: Ticks) {
        bump(&TIMER_CALLS);
        self.0.set_physical_offset(offset);
    }
}

impl<T: IrqChip + ?Sized> IrqChip for Counted<'_, T> {
    type Error = T::Error;

    #[inline(always)]
    fn set_host_active(&mut self, ppi: IntId, active: bool) -> Result<(), Self::Error> {
        bump(&GIC_CALLS);
        self.0.set_host_active(ppi, active)
    }
    #[inline(always)]
    fn set_host_masked(&mut self, ppi: IntId, masked: bool) -> Result<(), Self::Error> {
        bump(&GIC_CALLS);
        self.0.set_host_masked(ppi, masked)
    }
    #[inline(always)]
    fn set_virtual_level(&mut self, intid: IntId, level: bool) -> Result<(), Self::Error> {
        bump(&GIC_CALLS);
        self.0.set_virtual_level(intid, level)
    }
    #[inline(always)]
    fn virtual_active(&self, intid: IntId) -> Result<bool, Self::Error> {
        bump(&GIC_CALLS);
        self.0.virtual_active(intid)
    }
    #[inline(always)]
    fn virtual_state(&self, intid: IntId) -> Result<VirtualState, Self::Error> {
        bump(&GIC_CALLS);
        self.0.virtual_state(intid)
    }
    #[inline(always)]
    fn lower_virtual_level(&mut self, intid: IntId) -> Result<VirtualState, Self::Error> {
        bump(&GIC_CALLS);
        self.0.lower_virtual_level(intid)
    }
    #[inline(always)]
    fn map_virtual(&mut self, intid: IntId, host: IntId) -> Result<(), Self::Error> {
        bump(&GIC_CALLS);
        self.0.map_virtual(intid, host)
    }
    #[inline(always)]
    fn unmap_virtual(&mut self, intid: IntId) -> Result<(), Self::Error> {
        bump(&GIC_CALLS);
        self.0.unmap_virtual(intid)
    }
}

/// Counts over one loop of a path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    insns: Sample,
    /// EL2 instructions inside the timer's calls ([`timer_code`]), with
    /// the brackets' own.
    timer_insns: u32,
    /// Calls bracketed by [`timer_code`].
    timer_code_calls: u32,
    timer: u32,
    gic: u32,
}

impl Counts {
    fn now(pmu: Pmu) -> Self {
        // The PMU first: the loads below are then outside the EL2 count
        // at the begin mark and inside it at the end mark, the same in
        // both runs.
        let insns = pmu.read();
        Self {
            insns,
            timer_insns: TIMER_INSNS.load(Ordering::Relaxed),
            timer_code_calls: TIMER_CODE_CALLS.load(Ordering::Relaxed),
            timer: TIMER_CALLS.load(Ordering::Relaxed),
            gic: GIC_CALLS.load(Ordering::Relaxed),
        }
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            insns: self.insns.since(earlier.insns),
            timer_insns: self.timer_insns.wrapping_sub(earlier.timer_insns),
            timer_code_calls: self.timer_code_calls.wrapping_sub(earlier.timer_code_calls),
            timer: self.timer.wrapping_sub(earlier.timer),
            gic: self.gic.wrapping_sub(earlier.gic),
        }
    }

    /// The timer code's EL2 instructions without the brackets' own
    /// (`bracket` per call).
    fn timer_code(self, bracket: u32) -> u32 {
        self.timer_insns
            .saturating_sub(self.timer_code_calls.saturating_mul(bracket))
    }
}

/// One path's loops: [`N1`] (`.0`) and [`N2`] (`.1`) round trips.
type Loops = (Option<Counts>, Option<Counts>);

/// The perf scenario's state in the hypervisor.
#[derive(Debug, Default)]
pub(crate) struct Bench {
    pmu: Option<Pmu>,
    /// What one [`timer_code`] bracket around nothing counts.
    bracket: u32,
    /// The open loop: its path, round trips, round and counts at its
    /// begin mark.
    open: Option<(Path, u64, bool, Counts)>,
    /// Each path's loops in the round without brackets (`.0`: the
    /// totals) and with them (`.1`: the timer code's share).
    done: [(Loops, Loops); Path::ALL.len()],
}

/// What a perf hypercall asks of the run loop.
pub(crate) enum Request {
    /// Nothing more: resume the guest.
    Resume,
    /// Put and load the vCPU.
    PutLoad,
}

impl Bench {
    /// Whether the loop now counting is the `wfi-saved` path's, whose
    /// WFI blocks with the timers saved (`VcpuTimer::block`).
    pub(crate) fn blocks_saved(&self) -> bool {
        matches!(self.open, Some((Path::WfiSaved, ..)))
    }

    /// The PMU, set up at the first use; `Err` ends the run.
    fn pmu(&mut self) -> Result<Pmu, &'static str> {
        if let Some(pmu) = self.pmu {
            return Ok(pmu);
        }
        let pmu = Pmu::init().map_err(|e| {
            println!("hv: PMU: {e:?}");
            "hv: perf: no PMU counting (run QEMU with -icount shift=0)"
        })?;
        self.pmu = Some(pmu);
        // The bracket's own count: one around nothing.
        EL2_COUNTER.store(pmu.el2_counter(), Ordering::Relaxed);
        let before = TIMER_INSNS.load(Ordering::Relaxed);
        timer_code((), |()| core::hint::black_box(()));
        self.bracket = TIMER_INSNS.load(Ordering::Relaxed).wrapping_sub(before);
        EL2_COUNTER.store(NO_PMU, Ordering::Relaxed);
        Ok(pmu)
    }

    /// Serves perf hypercall `op` (`x1`) with `x2`, `x3`, `x4` of the perf
    /// guest that drives the physical timer (`physical`) or the virtual
    /// one; `Err` is a message that ends the run.
    pub(crate) fn hypercall(
        &mut self,
        physical: bool,
        op: u64,
        x2: u64,
        x3: u64,
        x4: u64,
    ) -> Result<Request, &'static str> {
        match op {
            PERF_PUT_LOAD => Ok(Request::PutLoad),
            PERF_BEGIN => {
                let pmu = self.pmu()?;
                let path = usize::try_from(x2)
                    .ok()
                    .and_then(|n| Path::ALL.get(n).copied())
                    .ok_or("hv: perf: unknown path")?;
                if x3 != N1 && x3 != N2 {
                    return Err("hv: perf: a loop is N1 or N2 round trips");
                }
                let bracketed = x4 != 0;
                if bracketed {
                    EL2_COUNTER.store(pmu.el2_counter(), Ordering::Relaxed);
                }
                self.open = Some((path, x3, bracketed, Counts::now(pmu)));
                Ok(Request::Resume)
            }
            PERF_END => {
                let (Some(pmu), Some((path, n, bracketed, begin))) = (self.pmu, self.open.take())
                else {
                    return Err("hv: perf: end without begin");
                };
                let counts = Counts::now(pmu).since(begin);
                EL2_COUNTER.store(NO_PMU, Ordering::Relaxed);
                if x2 != path as u64 || x3 != n || (x4 != 0) != bracketed {
                    return Err("hv: perf: end of another loop than the one begun");
                }
                let both = self
                    .done
                    .get_mut(path as usize)
                    .ok_or("hv: perf: unknown path")?;
                let slot = if bracketed { &mut both.1 } else { &mut both.0 };
                if n == N1 {
                    slot.0 = Some(counts);
                } else {
                    slot.1 = Some(counts);
                }
                if let ((Some(short), Some(long)), (Some(short_b), Some(long_b))) = *both {
                    print_line(
                        path.name(physical),
                        short,
                        long,
                        short_b.timer_code(self.bracket),
                        long_b.timer_code(self.bracket),
                    );
                }
                Ok(Request::Resume)
            }
            _ => Err("hv: perf: unknown operation"),
        }
    }

    /// Whether every path printed its line.
    pub(crate) fn complete(&self) -> bool {
        self.done
            .iter()
            .all(|(a, b)| a.0.is_some() && a.1.is_some() && b.0.is_some() && b.1.is_some())
    }
}

/// Prints the `PERF` line of the path named `path`: per round trip, (long - short) / (N2 - N1),
/// with three decimals; the timer code's EL2 instructions from the
/// bracketed round (`timer_short`, `timer_long`).
fn print_line(path: &str, short: Counts, long: Counts, timer_short: u32, timer_long: u32) {
    let per = |a: u32, b: u32| {
        let d = i64::from(b) - i64::from(a);
        let sign = if d < 0 { "-" } else { "" };
        let d = d.unsigned_abs();
        let n = N2 - N1;
        (sign, d / n, (d % n) * 1000 / n)
    };
    let (s2, i2, f2) = per(short.insns.el2, long.insns.el2);
    let (sx, ix, fx) = per(timer_short, timer_long);
    let (s1, i1, f1) = per(short.insns.el1, long.insns.el1);
    let (st, it, ft) = per(short.timer, long.timer);
    let (sg, ig, fg) = per(short.gic, long.gic);
    println!(
        "PERF path={} n1={N1} n2={N2} el2={s2}{i2}.{f2:03} el2_timer={sx}{ix}.{fx:03} \
         el1={s1}{i1}.{f1:03} timer={st}{it}.{ft:03} gic={sg}{ig}.{fg:03} el2_n1={} el2_n2={}",
        path, short.insns.el2, long.insns.el2,
    );
}
