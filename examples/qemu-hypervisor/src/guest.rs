//! The guests: small EL1 programs linked into the same image, entered by
//! the hypervisor at [`guest_entry`] with the MMU off. They talk to the
//! hypervisor only through `hvc` (see [`Hypercall`]) and to their timer and
//! GIC CPU interface as any EL1 kernel would; everything they check, they
//! check themselves, and they finish with a [`Report`].
//!
//! Guest code must not touch anything of the hypervisor's (console,
//! critical sections, statics): it keeps its state in the `GuestState` of
//! its vCPU.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};

use qemu_hypervisor::clock::{Clock, tval_signed};
use qemu_hypervisor::config::Scenario;

use crate::stage2::GICC_IPA;

pub(crate) use crate::hypercall::Hypercall;
use crate::hypercall::{call as hvc, print as guest_print};

/// What a guest reports when it finishes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Report {
    /// 0 passed; otherwise the number of the first failed check.
    pub(crate) status: u64,
    /// Timer interrupts the guest handled.
    pub(crate) interrupts: u64,
    /// Interrupts taken before their timer condition held.
    pub(crate) early: u64,
    /// Interrupts taken twice for the same compare value.
    pub(crate) duplicates: u64,
    /// Expected interrupts that never came.
    pub(crate) lost: u64,
    /// Spurious acknowledges (INTID 1020..=1023) or unexpected INTIDs.
    pub(crate) spurious: u64,
}

/// What a guest measured, sent with [`Hypercall::Measure`] (times in
/// counter ticks; the result line adds microseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Measured {
    /// `x1`: the largest delivery latency, counter at handler entry minus
    /// CVAL, over every timer interrupt.
    pub(crate) max_latency: u64,
    /// `x2`: periods a periodic handler skipped because its next compare
    /// value had passed already.
    pub(crate) skipped: u64,
    /// `x3`: WFI instructions executed (each one must be one WFI exit).
    pub(crate) sleeps: u64,
    /// `x4`: the largest wake latency of a WFI sleep, counter when the
    /// guest saw its interrupt pending after the WFI minus CVAL.
    pub(crate) max_wake: u64,
    /// `x5`: WFI sleeps whose compare value passed before the guest reached
    /// its WFI (the host delayed it): not failures, retried with a longer
    /// sleep (see [`wfi_sleep`]).
    pub(crate) overruns: u64,
    /// `x6`: the largest delivery latency of a periodic timer interrupt in
    /// the guest's own running time (see [`LatencyWatch`]): what the
    /// delivery bound judges.
    pub(crate) max_run_latency: u64,
}

/// Bound on a WFI sleep's wake latency ([`Measured::max_wake`]): 50 ms.
///
/// The wake path is the background soft timer (the EL2 physical timer,
/// a QEMU host timer), `unblock` and one guest entry: under 0.5 ms with
/// QEMU 7.2 TCG on an idle host, about 3 ms seen when the host (itself a
/// VM with 2 shared cores) is busy; up to about 4 ms seen with QEMU 10 at
/// 1 GHz. 50 ms is a generous bound that leaves a wide margin for a slow
/// or loaded CI machine (the host may deschedule QEMU's threads between
/// the compare value and the guest's wake-up, which no hypervisor can
/// prevent), while a background timer that was not armed, which only the
/// [`NEVER_WAKE_US`](crate::hyp::run_loop::NEVER_WAKE_US) fallback (100 ms) or the
/// guest's 1 s timeout ends, is beyond it.
pub(crate) const MAX_WAKE_LATENCY_US: u64 = 50_000;

/// Bound on a periodic timer interrupt's delivery latency in the guest's
/// running time ([`Measured::max_run_latency`]): 250 ms, a generous bound.
/// The wall-clock latency ([`Measured::max_latency`]) is reported beside it
/// but not judged: on a loaded host it grows with every time slice the
/// host gives other work (267 ms seen with two busy loops beside four
/// compilers on 2 cores, in a run that did nothing wrong).
///
/// Measured under QEMU 7.2 TCG: up to about 20 ms for one vCPU alone and
/// 6 to 24 ms for time-sliced (2 ms slices) and migrating vCPUs, whose
/// QEMU threads the host deschedules now and then, so ten times that
/// leaves a slow or loaded CI machine room. A line that only the
/// hypervisor's 500 ms housekeeping tick recovers (lost, GICv3) comes
/// later than this bound half the time, and within the guest's 1 s
/// liveness timeout never at all if nothing recovers it; with GICv2 the
/// tick is 5 ms for QEMU's quirk (see the README), and `skipped` shows
/// such stalls.
///
/// The periods the periodic guest skips (`skipped` on the result line)
/// are reported but not bounded: they follow QEMU's speed on the host
/// more than anything the hypervisor does (20 to 1075 of 2000 in runs on
/// one 2-core VM, up to 1959 when the host compiled at the same time).
pub(crate) const MAX_DELIVERY_LATENCY_US: u64 = 250_000;

/// A guest waits this much of its own running time (see [`RunTime`]) for
/// an interrupt that must come before declaring it lost: 1 s, far beyond
/// any delivery delay.
const LOST_AFTER_US: u64 = 1_000_000;

/// The most one step of [`RunTime`] counts: 50 ms. Between two polls of a
/// waiting guest only its interrupt handler and a hypervisor exit run; a
/// longer gap is the host not running QEMU (or a WFI the hypervisor ended
/// late), which is not the guest's waiting time.
const RUN_STEP_CAP_US: u64 = 50_000;

/// The most one step of [`LatencyWatch`] counts: 2 ms. A polling guest
/// reads the counter every few microseconds; the longest gap the
/// hypervisor itself makes is a time slice given to the other vCPU (2 ms
/// in the two-vcpus scenario). A longer gap is the host running other
/// work, which no delivery path of the library can shorten.
const LATENCY_STEP_CAP_US: u64 = 2_000;

/// A guest's times in ticks of the counter frequency it read from
/// `CNTFRQ_EL0` at entry.
#[derive(Clone, Copy, Debug)]
struct Times {
    clock: Clock,
    /// [`LOST_AFTER_US`].
    lost_after: u64,
    /// [`RUN_STEP_CAP_US`].
    step_cap: u64,
    /// [`LATENCY_STEP_CAP_US`].
    latency_step_cap: u64,
    /// [`MAX_DELIVERY_LATENCY_US`].
    max_delivery: u64,
    /// [`MAX_WAKE_LATENCY_US`].
    max_wake: u64,
}

impl Times {
    fn new(clock: Clock) -> Self {
        Self {
            clock,
            lost_after: clock.ticks_us(LOST_AFTER_US),
            step_cap: clock.ticks_us(RUN_STEP_CAP_US),
            latency_step_cap: clock.ticks_us(LATENCY_STEP_CAP_US),
            max_delivery: clock.ticks_us(MAX_DELIVERY_LATENCY_US),
            max_wake: clock.ticks_us(MAX_WAKE_LATENCY_US),
        }
    }

    fn us(&self, us: u64) -> u64 {
        self.clock.ticks_us(us)
    }
}

/// A guest's running time while it waits, as far as the guest can tell:
/// the virtual counter's advance between consecutive polls, each step
/// counted at most [`RUN_STEP_CAP_US`]. The counter follows the host's
/// wall clock, so a host that deschedules QEMU for a second would make a
/// plain counter timeout expire without the guest having waited at all;
/// counted this way, such a stall costs one capped step, while a guest
/// that really waits (polling all the time) accumulates the time it
/// waited.
struct RunTime {
    last: u64,
    elapsed: u64,
    cap: u64,
}

impl RunTime {
    fn start(t: &Times) -> Self {
        Self {
            last: vcount(),
            elapsed: 0,
            cap: t.step_cap,
        }
    }

    /// Polls the counter: the running time so far.
    fn poll(&mut self) -> u64 {
        let now = vcount();
        let step = now.wrapping_sub(self.last).min(self.cap);
        self.last = now;
        self.elapsed = self.elapsed.saturating_add(step);
        self.elapsed
    }
}

/// A periodic timer interrupt's delivery latency in the guest's running
/// time: from the first poll that saw the counter at or past the armed
/// compare value to the first poll that sees the handler has run, each
/// step between polls counted at most [`LATENCY_STEP_CAP_US`]. A hypervisor
/// that delivers late while the guest runs (an interrupt that waits for its
/// housekeeping tick, say) shows up in full; a host that does not run QEMU
/// for a while does not. The handler publishes each compare value it arms
/// in [`GuestState::armed`], in virtual counts.
struct LatencyWatch {
    last: u64,
    elapsed: u64,
    cap: u64,
    seen: u64,
    due_at: Option<u64>,
}

impl LatencyWatch {
    fn start(s: &GuestState, t: &Times) -> Self {
        Self {
            last: vcount(),
            elapsed: 0,
            cap: t.latency_step_cap,
            seen: s.interrupts.load(Ordering::Relaxed),
            due_at: None,
        }
    }

    /// One poll: records the latency of an interrupt the handler took
    /// since the last poll, and notes when the armed compare value passed.
    fn poll(&mut self, s: &GuestState) {
        let n = s.interrupts.load(Ordering::Relaxed);
        let armed = s.armed.load(Ordering::Relaxed);
        let now = vcount();
        if s.interrupts.load(Ordering::Relaxed) != n {
            // The handler ran between the reads: the next poll sees it.
            return;
        }
        self.elapsed = self
            .elapsed
            .saturating_add(now.wrapping_sub(self.last).min(self.cap));
        self.last = now;
        if n != self.seen {
            self.seen = n;
            if let Some(due) = self.due_at.take() {
                s.max_run_latency
                    .fetch_max(self.elapsed - due, Ordering::Relaxed);
            }
        }
        if self.due_at.is_none() && now >= armed {
            self.due_at = Some(self.elapsed);
        }
    }
}

/// The sleeps of the wfi-sleep scenario.
pub(crate) const WFI_SLEEPS: u64 = 200;

/// The interrupt controller a guest drives, passed at entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuestGic {
    /// The GICv2 CPU interface at [`GICC_IPA`].
    V2,
    /// The GICv3 system register CPU interface.
    V3,
}

/// The guests' INTIDs.
const VTIMER_INTID: u64 = 27;
const PTIMER_INTID: u64 = 30;

/// Timer control bits.
const CTL_ENABLE: u64 = 1;
const CTL_IMASK: u64 = 2;
const CTL_ISTATUS: u64 = 4;

/// Counters one vCPU's interrupt handler keeps.
#[derive(Debug)]
struct GuestState {
    gic: AtomicU64,
    scenario: AtomicU64,
    interrupts: AtomicU64,
    early: AtomicU64,
    duplicates: AtomicU64,
    spurious: AtomicU64,
    last_cval: AtomicU64,
    period: AtomicU64,
    /// What the handler does after a valid interrupt (see `Rearm`).
    rearm: AtomicU64,
    /// Largest count at handler entry minus CVAL.
    max_latency: AtomicU64,
    /// The compare value the periodic rearm armed last, in virtual counts
    /// (`u64::MAX`: none), for [`LatencyWatch`].
    armed: AtomicU64,
    /// The physical count minus the virtual count (the VM's offset), to
    /// put a physical timer's compare value in virtual counts.
    physical_ahead: AtomicU64,
    /// Largest delivery latency in running time ([`LatencyWatch`]).
    max_run_latency: AtomicU64,
    /// Periods skipped by the periodic rearm.
    skipped: AtomicU64,
}

impl GuestState {
    const fn new() -> Self {
        Self {
            gic: AtomicU64::new(3),
            scenario: AtomicU64::new(0),
            interrupts: AtomicU64::new(0),
            early: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            spurious: AtomicU64::new(0),
            last_cval: AtomicU64::new(u64::MAX),
            period: AtomicU64::new(0),
            rearm: AtomicU64::new(REARM_PERIODIC),
            max_latency: AtomicU64::new(0),
            armed: AtomicU64::new(u64::MAX),
            physical_ahead: AtomicU64::new(0),
            max_run_latency: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }
}

/// Handler action: move CVAL one period on.
const REARM_PERIODIC: u64 = 0;
/// Handler action: disable the timer.
const REARM_DISABLE: u64 = 1;

/// Most vCPUs a scenario uses.
pub(crate) const MAX_VCPUS: usize = 2;

const GUEST_STACK_SIZE: usize = 32 * 1024;

/// Everything the built-in guests write: their states and EL1 stacks, in
/// whole pages of their own. Stage 2 maps these pages read/write (and
/// execute-never) for the guests, the image's code and read-only data
/// read-only, and nothing else of the hypervisor: a guest cannot write
/// the hypervisor's statistics, stacks or page tables.
#[repr(C, align(4096))]
pub(crate) struct GuestMemory {
    state: [GuestState; MAX_VCPUS],
    stacks: [core::cell::UnsafeCell<[u8; GUEST_STACK_SIZE]>; MAX_VCPUS],
}

// SAFETY: `state` is atomics; each stack is used only by the vCPU it is
// given to, as its EL1 stack; the hypervisor takes only addresses and
// reads print buffers while the guest that wrote them is stopped.
unsafe impl Sync for GuestMemory {}

static GUEST_MEMORY: GuestMemory = GuestMemory {
    state: [GuestState::new(), GuestState::new()],
    stacks: [const { core::cell::UnsafeCell::new([0; GUEST_STACK_SIZE]) }; MAX_VCPUS],
};

/// The physical (= intermediate physical) addresses of [`GuestMemory`]:
/// whole pages (its alignment rounds its size up to one).
pub(crate) fn memory() -> core::ops::Range<u64> {
    let start = core::ptr::addr_of!(GUEST_MEMORY) as u64;
    start..start + core::mem::size_of::<GuestMemory>() as u64
}

/// The initial `SP_EL1` of vCPU `index`.
pub(crate) fn stack_top(index: usize) -> u64 {
    GUEST_MEMORY
        .stacks
        .get(index)
        .map_or(0, |s| s.get() as u64 + GUEST_STACK_SIZE as u64)
}

/// The entry point's address, for the vCPU's first PC.
pub(crate) fn entry_point() -> u64 {
    guest_entry as *const () as u64
}

fn state(vcpu: u64) -> &'static GuestState {
    match vcpu {
        0 => &GUEST_MEMORY.state[0],
        _ => &GUEST_MEMORY.state[1],
    }
}

// ---------------------------------------------------------------------------
// Hypercalls and output.

macro_rules! gprintln {
    ($($arg:tt)*) => { guest_print(format_args!($($arg)*)) };
}

/// Sends the measurements: the handler's (latency, skipped periods) and
/// the caller's WFI sleeps, wake latency and overrun sleeps.
fn measure(vcpu: u64, sleeps: u64, max_wake: u64, overruns: u64) {
    let s = state(vcpu);
    hvc(
        Hypercall::Measure,
        [
            s.max_latency.load(Ordering::Relaxed),
            s.skipped.load(Ordering::Relaxed),
            sleeps,
            max_wake,
            overruns,
            s.max_run_latency.load(Ordering::Relaxed),
        ],
    );
}

fn finish(vcpu: u64, status: u64, lost: u64) -> ! {
    let s = state(vcpu);
    hvc(
        Hypercall::Exit,
        [
            status,
            s.interrupts.load(Ordering::Relaxed),
            s.early.load(Ordering::Relaxed),
            s.duplicates.load(Ordering::Relaxed),
            lost,
            s.spurious.load(Ordering::Relaxed),
        ],
    );
    // The hypervisor never resumes a finished vCPU.
    loop {
        core::hint::spin_loop();
    }
}

// ---------------------------------------------------------------------------
// Timer and GIC access, as an EL1 kernel does it.

macro_rules! mrs {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: an EL1 register read with no side effect.
        unsafe { asm!(concat!("mrs {v}, ", $reg), v = out(reg) v, options(nomem, nostack)) };
        v
    }};
}

macro_rules! msr {
    ($reg:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: an EL1 register this guest owns; no Rust-visible memory
        // changes.
        unsafe { asm!(concat!("msr ", $reg, ", {v}"), "isb", v = in(reg) v, options(nostack)) };
    }};
}

fn vcount() -> u64 {
    // Without the isb the counter read could be taken early.
    // SAFETY: a barrier.
    unsafe { asm!("isb", options(nostack)) };
    mrs!("cntvct_el0")
}

fn gic_init(gic: GuestGic) {
    match gic {
        GuestGic::V3 => {
            // ICC_SRE_EL1.SRE, ICC_PMR_EL1 = 0xff, ICC_CTLR_EL1.EOImode = 0,
            // ICC_IGRPEN1_EL1 = 1.
            msr!("S3_0_C12_C12_5", 0b111);
            msr!("S3_0_C4_C6_0", 0xff);
            msr!("S3_0_C12_C12_4", 0);
            msr!("S3_0_C12_C12_7", 1);
        }
        GuestGic::V2 => {
            // GICC_PMR = 0xff; GICC_CTLR = EnableGrp0 | EnableGrp1 | AckCtl.
            mmio_write(GICC_IPA + 0x4, 0xff);
            mmio_write(GICC_IPA, 0b111);
        }
    }
}

fn mmio_write(addr: u64, value: u32) {
    // SAFETY: `addr` is a GIC CPU interface register, mapped by stage 2.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) };
}

fn mmio_read(addr: u64) -> u32 {
    // SAFETY: `addr` is a GIC CPU interface register, mapped by stage 2.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn gic_ack(gic: GuestGic) -> u64 {
    match gic {
        GuestGic::V3 => {
            let v: u64;
            // SAFETY: acknowledging an interrupt changes only GIC state.
            unsafe { asm!("mrs {v}, S3_0_C12_C12_0", v = out(reg) v, options(nomem, nostack)) };
            v & 0xff_ffff
        }
        GuestGic::V2 => u64::from(mmio_read(GICC_IPA + 0xc) & 0x3ff),
    }
}

fn gic_eoi(gic: GuestGic, intid: u64) {
    match gic {
        GuestGic::V3 => msr!("S3_0_C12_C12_1", intid),
        GuestGic::V2 => mmio_write(GICC_IPA + 0x10, u32::try_from(intid).unwrap_or(1023)),
    }
}

fn irqs_on() {
    // SAFETY: unmasking IRQs at EL1; the guest's vector table is installed.
    unsafe { asm!("msr daifclr, #2", options(nostack)) };
}

fn irqs_off() {
    // SAFETY: masking IRQs.
    unsafe { asm!("msr daifset, #2", options(nostack)) };
}

/// `ISR_EL1.I`: a (virtual) IRQ is pending.
fn irq_pending() -> bool {
    mrs!("isr_el1") & (1 << 7) != 0
}

// ---------------------------------------------------------------------------
// Entry, vectors and the interrupt handler.

extern "C" fn guest_entry(vcpu: u64, scenario: u64, gic: u64) -> ! {
    let s = state(vcpu);
    s.gic.store(gic, Ordering::Relaxed);
    s.scenario.store(scenario, Ordering::Relaxed);
    let vectors = core::ptr::addr_of!(__guest_vectors) as u64;
    msr!("vbar_el1", vectors);
    let gic = if gic == 2 { GuestGic::V2 } else { GuestGic::V3 };
    gic_init(gic);
    // The counter frequency, read once: every time below is derived from it.
    let clock = match Clock::from_cntfrq(mrs!("cntfrq_el0")) {
        Ok(clock) => clock,
        Err(e) => {
            gprintln!("guest {vcpu}: {e}");
            finish(vcpu, 0xf4e0, 0)
        }
    };
    let t = Times::new(clock);
    let scenario = u8::try_from(scenario)
        .ok()
        .and_then(Scenario::from_number)
        .unwrap_or(Scenario::Hello);
    match scenario {
        Scenario::Hello => hello(vcpu),
        Scenario::Periodic | Scenario::TwoVcpus | Scenario::Migration => periodic(vcpu, &t),
        Scenario::Programming => programming(vcpu, &t),
        Scenario::Masking => masking(vcpu, &t),
        Scenario::WfiSleep => wfi_sleep(vcpu, &t),
        Scenario::PhysicalTimer | Scenario::PhysicalTimerOffset => physical(vcpu, &t),
        Scenario::Perf => perf::<false>(vcpu, &t),
        Scenario::PerfPtimer => perf::<true>(vcpu, &t),
        // Entered at the external image or the Linux kernel, never here.
        Scenario::External | Scenario::Linux => finish(vcpu, 0xe8, 0),
    }
}

unsafe extern "C" {
    static __guest_vectors: u8;
}

extern "C" fn guest_irq() {
    let vcpu = mrs!("mpidr_el1") & 0xff;
    let s = state(vcpu);
    let gic = if s.gic.load(Ordering::Relaxed) == 2 {
        GuestGic::V2
    } else {
        GuestGic::V3
    };
    let intid = gic_ack(gic);
    if intid >= 1020 {
        s.spurious.fetch_add(1, Ordering::Relaxed);
        return;
    }
    match intid {
        VTIMER_INTID => {
            let ctl = mrs!("cntv_ctl_el0");
            let cval = mrs!("cntv_cval_el0");
            let now = vcount();
            timer_interrupt(s, ctl, cval, now);
            // Periodic: the next period, skipping missed ones.
            match next_cval(s, cval, now) {
                Some(next) => {
                    s.armed.store(next, Ordering::Relaxed);
                    msr!("cntv_cval_el0", next);
                }
                None => {
                    s.armed.store(u64::MAX, Ordering::Relaxed);
                    msr!("cntv_ctl_el0", 0);
                }
            }
        }
        PTIMER_INTID => {
            let ctl = mrs!("cntp_ctl_el0");
            let cval = mrs!("cntp_cval_el0");
            let now = mrs!("cntpct_el0");
            timer_interrupt(s, ctl, cval, now);
            match next_cval(s, cval, now) {
                Some(next) => {
                    let ahead = s.physical_ahead.load(Ordering::Relaxed);
                    s.armed.store(next.wrapping_sub(ahead), Ordering::Relaxed);
                    msr!("cntp_cval_el0", next);
                }
                None => {
                    s.armed.store(u64::MAX, Ordering::Relaxed);
                    msr!("cntp_ctl_el0", 0);
                }
            }
        }
        _ => {
            s.spurious.fetch_add(1, Ordering::Relaxed);
        }
    }
    gic_eoi(gic, intid);
}

/// The compare value after the one that fired at `now`, `None` to disable:
/// with `REARM_PERIODIC`, one period on; if that is less than half a
/// period away (the vCPU did not run for a while), one period from now,
/// as an OS tick does with its minimum programming delta: missed periods
/// are skipped (and counted), not caught up, and the timer is never armed
/// so close that it has fired again by the EOI (which QEMU 7.2's GICv2
/// does not re-signal). Catching up instead, a host that stalls QEMU for
/// a while would see a burst of back-to-back interrupts, each later than
/// the one before.
fn next_cval(s: &GuestState, cval: u64, now: u64) -> Option<u64> {
    if s.rearm.load(Ordering::Relaxed) != REARM_PERIODIC {
        return None;
    }
    let period = s.period.load(Ordering::Relaxed);
    let next = cval.wrapping_add(period);
    Some(if next > now.saturating_add(period / 2) {
        next
    } else {
        // The expiries cval + k * period (k >= 1) before the new one.
        let late = now.saturating_sub(cval);
        let missed = late
            .checked_div(period)
            .map_or(0, |whole| whole + u64::from(!late.is_multiple_of(period)));
        s.skipped.fetch_add(missed, Ordering::Relaxed);
        now + period
    })
}

/// The checks every timer interrupt passes: the timer is enabled, unmasked,
/// its condition holds (ISTATUS and count >= CVAL), and this compare value
/// has not fired before.
fn timer_interrupt(s: &GuestState, ctl: u64, cval: u64, now: u64) {
    s.interrupts.fetch_add(1, Ordering::Relaxed);
    let ok =
        ctl & (CTL_ENABLE | CTL_IMASK | CTL_ISTATUS) == CTL_ENABLE | CTL_ISTATUS && now >= cval;
    if !ok {
        s.early.fetch_add(1, Ordering::Relaxed);
    }
    if s.last_cval.swap(cval, Ordering::Relaxed) == cval {
        s.duplicates.fetch_add(1, Ordering::Relaxed);
    }
    s.max_latency
        .fetch_max(now.saturating_sub(cval), Ordering::Relaxed);
}

extern "C" fn guest_fault(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    gprintln!("guest: unexpected exception {kind} ESR {esr:#x} ELR {elr:#x} FAR {far:#x}");
    let vcpu = mrs!("mpidr_el1") & 0xff;
    finish(vcpu, 0xfa17, 0)
}

global_asm!(
    r#"
.macro guest_fault_entry kind:req
    mov x0, #\kind
    mrs x1, esr_el1
    mrs x2, elr_el1
    mrs x3, far_el1
    b {fault}
.endm

.section .text.guest_vectors, "ax"
.balign 0x800
.global __guest_vectors
__guest_vectors:
    guest_fault_entry 0
.balign 0x80
    guest_fault_entry 1
.balign 0x80
    guest_fault_entry 2
.balign 0x80
    guest_fault_entry 3
.balign 0x80
    guest_fault_entry 4
.balign 0x80
    /* IRQ from EL1 with SP_EL1: save the caller-saved registers, handle. */
    stp x0, x1, [sp, #-(8 * 24)]!
    stp x2, x3, [sp, #8 * 2]
    stp x4, x5, [sp, #8 * 4]
    stp x6, x7, [sp, #8 * 6]
    stp x8, x9, [sp, #8 * 8]
    stp x10, x11, [sp, #8 * 10]
    stp x12, x13, [sp, #8 * 12]
    stp x14, x15, [sp, #8 * 14]
    stp x16, x17, [sp, #8 * 16]
    str x18, [sp, #8 * 18]
    stp x29, x30, [sp, #8 * 20]
    mrs x0, elr_el1
    mrs x1, spsr_el1
    stp x0, x1, [sp, #8 * 22]
    bl {irq}
    ldp x0, x1, [sp, #8 * 22]
    msr elr_el1, x0
    msr spsr_el1, x1
    b __guest_irq_return
.balign 0x80
    guest_fault_entry 6
.balign 0x80
    guest_fault_entry 7
.balign 0x80
    guest_fault_entry 8
.balign 0x80
    guest_fault_entry 9
.balign 0x80
    guest_fault_entry 10
.balign 0x80
    guest_fault_entry 11
.balign 0x80
    guest_fault_entry 12
.balign 0x80
    guest_fault_entry 13
.balign 0x80
    guest_fault_entry 14
.balign 0x80
    guest_fault_entry 15

__guest_irq_return:
    ldp x2, x3, [sp, #8 * 2]
    ldp x4, x5, [sp, #8 * 4]
    ldp x6, x7, [sp, #8 * 6]
    ldp x8, x9, [sp, #8 * 8]
    ldp x10, x11, [sp, #8 * 10]
    ldp x12, x13, [sp, #8 * 12]
    ldp x14, x15, [sp, #8 * 14]
    ldp x16, x17, [sp, #8 * 16]
    ldr x18, [sp, #8 * 18]
    ldp x29, x30, [sp, #8 * 20]
    ldp x0, x1, [sp], #8 * 24
    eret
"#,
    fault = sym guest_fault,
    irq = sym guest_irq,
);

// ---------------------------------------------------------------------------
// Scenarios.

fn hello(vcpu: u64) -> ! {
    gprintln!("guest {vcpu}: hello from EL1");
    // A trapped WFI with no timer armed: the hypervisor must resume us.
    // SAFETY: wfi only waits.
    unsafe { asm!("wfi", options(nostack)) };
    gprintln!("guest {vcpu}: back from WFI");
    finish(vcpu, 0, 0)
}

/// The periodic guests' timer period: 1 ms (vCPU 1 adds
/// [`PERIOD_STAGGER_US`]).
const PERIOD_US: u64 = 1000;

/// What vCPU 1 adds to [`PERIOD_US`], so that the two vCPUs' interrupts
/// drift against each other.
const PERIOD_STAGGER_US: u64 = 32;

/// Periodic virtual timer interrupts while the guest spins.
fn periodic(vcpu: u64, t: &Times) -> ! {
    const COUNT: u64 = 2000;
    let s = state(vcpu);
    // 1 ms (a little more for vCPU 1): slow enough that QEMU's emulation
    // keeps up with a margin. At 320 us a forwarded interrupt's round trip
    // under TCG took most of a period, and a slightly slower host made
    // nearly every interrupt late (1173 and 1959 of 2000 periods skipped
    // in runs that passed at 50 otherwise).
    let period = t.us(PERIOD_US + vcpu * PERIOD_STAGGER_US);
    s.period.store(period, Ordering::Relaxed);
    s.rearm.store(REARM_PERIODIC, Ordering::Relaxed);
    let first = vcount() + period;
    s.armed.store(first, Ordering::Relaxed);
    msr!("cntv_cval_el0", first);
    msr!("cntv_ctl_el0", CTL_ENABLE);
    irqs_on();
    let mut lost = 0;
    let mut seen = 0;
    let mut run = RunTime::start(t);
    let mut latency = LatencyWatch::start(s, t);
    let mut since = 0;
    while s.interrupts.load(Ordering::Relaxed) < COUNT {
        let n = s.interrupts.load(Ordering::Relaxed);
        let now = run.poll();
        latency.poll(s);
        if n != seen {
            seen = n;
            since = now;
        } else if now - since > t.lost_after {
            lost = 1;
            break;
        }
    }
    irqs_off();
    msr!("cntv_ctl_el0", 0);
    gprintln!(
        "guest {vcpu}: periodic done, {} interrupts",
        s.interrupts.load(Ordering::Relaxed)
    );
    let status = u64::from(
        lost != 0
            || s.early.load(Ordering::Relaxed) != 0
            || s.duplicates.load(Ordering::Relaxed) != 0,
    );
    measure(vcpu, 0, 0, 0);
    finish(vcpu, status, lost)
}

/// [`wait_for`], with a [`LatencyWatch`] polled all along.
fn wait_watching(s: &GuestState, target: u64, t: &Times, latency: &mut LatencyWatch) -> bool {
    let mut run = RunTime::start(t);
    loop {
        let waited = run.poll();
        latency.poll(s);
        if s.interrupts.load(Ordering::Relaxed) >= target {
            return true;
        }
        if waited > t.lost_after {
            return false;
        }
    }
}

/// Waits (interrupts on) until the handler has run `target` times or
/// [`LOST_AFTER_US`] of running time passes. Returns whether it did.
fn wait_for(s: &GuestState, target: u64, t: &Times) -> bool {
    arrival(s, target, t).is_some()
}

/// Waits (interrupts on) until the handler has run `target` times: the
/// running time that took (see [`RunTime`]), or `None` after
/// [`LOST_AFTER_US`] of it.
fn arrival(s: &GuestState, target: u64, t: &Times) -> Option<u64> {
    let mut run = RunTime::start(t);
    loop {
        let waited = run.poll();
        if s.interrupts.load(Ordering::Relaxed) >= target {
            return Some(waited);
        }
        if waited > t.lost_after {
            return None;
        }
    }
}

/// Whether an interrupt that must come at once came within
/// [`MAX_DELIVERY_LATENCY_US`] of running time after `arrival`'s start; a
/// lost one is counted apart.
fn soon(waited: Option<u64>, t: &Times) -> bool {
    waited.is_none_or(|w| w <= t.max_delivery)
}

/// Waits `ticks` and returns whether the handler count stayed at `count`.
/// For windows in which no interrupt may come at all, however long the
/// host makes them.
fn quiet_for(s: &GuestState, count: u64, ticks: u64) -> bool {
    let start = vcount();
    while vcount().wrapping_sub(start) < ticks {
        if s.interrupts.load(Ordering::Relaxed) != count {
            return false;
        }
    }
    true
}

/// Waits up to `ticks` and returns whether no interrupt came before the
/// virtual count reached `cval`. An interrupt seen only once the count has
/// passed `cval` is on time (the host delayed the guest past its compare
/// value; the handler checks its condition) and ends the wait: a verdict
/// on what happened, not on how fast the host ran the guest.
fn quiet_before(s: &GuestState, count: u64, ticks: u64, cval: u64) -> bool {
    let start = vcount();
    loop {
        // The count first: the interrupt came before `now` is read.
        let n = s.interrupts.load(Ordering::Relaxed);
        let now = vcount();
        if n != count {
            return now >= cval;
        }
        if now.wrapping_sub(start) >= ticks {
            return true;
        }
    }
}

/// How [`pending_drops_before`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Withdrawal {
    /// The interrupt went away with the compare value still ahead.
    Dropped,
    /// The compare value passed before the guest saw it go away: the host
    /// delayed the guest; nothing to judge.
    Overrun,
    /// It stayed pending for [`LOST_AFTER_US`] of running time with the
    /// compare value ahead.
    Stuck,
}

/// Polls `ISR_EL1.I` (interrupts masked) until the pending interrupt goes
/// away while `now()` is before `deadline`, yielding to the hypervisor
/// between polls so it can update the line.
fn pending_drops_before(deadline: u64, now: fn() -> u64, t: &Times) -> Withdrawal {
    let mut run = RunTime::start(t);
    loop {
        if !irq_pending() {
            return Withdrawal::Dropped;
        }
        if now() >= deadline {
            return Withdrawal::Overrun;
        }
        if run.poll() > t.lost_after {
            return Withdrawal::Stuck;
        }
        hvc(Hypercall::Yield, [0; 6]);
    }
}

/// Moves a pending timer's compare value `distance` ticks ahead with `arm`
/// (which returns the new compare value) and checks that the interrupt
/// goes away. If the host delays the guest until the new compare value has
/// passed before the guest sees it go away (the window was too short for
/// this host, not an error), it retries with five times the distance, up
/// to three times in all, then reports that and passes. `false` only if
/// the interrupt stayed pending with its compare value ahead.
fn withdrawn_ahead(
    t: &Times,
    now: fn() -> u64,
    distance: u64,
    mut arm: impl FnMut(u64) -> u64,
) -> bool {
    let mut distance = distance;
    for _ in 0..3 {
        let deadline = arm(distance);
        match pending_drops_before(deadline, now, t) {
            Withdrawal::Dropped => return true,
            Withdrawal::Stuck => return false,
            Withdrawal::Overrun => distance = distance.saturating_mul(5),
        }
    }
    gprintln!("guest: the host delayed every withdrawal check past its compare value; not judged");
    true
}

fn pcount() -> u64 {
    mrs!("cntpct_el0")
}

/// The emulated physical timer's line, seen through `ISR_EL1` with
/// interrupts masked (every `CNTP_*` access traps to the hypervisor, whose
/// next entry shows the line): an expired timer pends its interrupt; IMASK
/// withdraws it while CTL still reads ISTATUS; unmasking, and disabling
/// then enabling again, bring it back; TVAL 0 and a negative TVAL are
/// expired at once, a TVAL ahead is not. Leaves the timer disabled.
fn physical_masking(t: &Times) -> bool {
    irqs_off();
    let now = pcount();
    msr!("cntp_cval_el0", now.saturating_sub(10));
    msr!("cntp_ctl_el0", CTL_ENABLE);
    let mut ok = pending_becomes(true, t);
    msr!("cntp_ctl_el0", CTL_ENABLE | CTL_IMASK);
    ok &= pending_becomes(false, t);
    ok &= mrs!("cntp_ctl_el0") & (CTL_ISTATUS | CTL_IMASK) == CTL_ISTATUS | CTL_IMASK;
    msr!("cntp_ctl_el0", CTL_ENABLE);
    ok &= pending_becomes(true, t);
    msr!("cntp_ctl_el0", 0);
    ok &= pending_becomes(false, t);
    msr!("cntp_ctl_el0", CTL_ENABLE);
    ok &= pending_becomes(true, t);
    // A TVAL ahead (1 s) withdraws it; TVAL 0 and -1000 expire at once.
    let tval_ahead = |ticks: u64| {
        msr!("cntp_tval_el0", ticks.min(i32::MAX.unsigned_abs().into()));
        mrs!("cntp_cval_el0")
    };
    let ahead = t.clock.tval_us(1_000_000);
    ok &= withdrawn_ahead(t, pcount, ahead, tval_ahead);
    msr!("cntp_tval_el0", 0);
    ok &= pending_becomes(true, t);
    ok &= withdrawn_ahead(t, pcount, ahead, tval_ahead);
    let t0 = pcount();
    msr!("cntp_tval_el0", (-1000_i64).cast_unsigned());
    let t1 = pcount();
    let cval = mrs!("cntp_cval_el0");
    ok &= (t0.wrapping_sub(1000)..=t1.wrapping_sub(1000)).contains(&cval);
    ok &= pending_becomes(true, t);
    msr!("cntp_ctl_el0", 0);
    ok &= pending_becomes(false, t);
    ok
}

/// CVAL/TVAL programming: TVAL 0 and negative fire at once, CVAL in the
/// past fires at once, CVAL far in the future and a TVAL ahead do not fire
/// early, and reading TVAL back (a signed 32-bit value) is consistent with
/// CVAL.
fn programming(vcpu: u64, t: &Times) -> ! {
    let s = state(vcpu);
    s.rearm.store(REARM_DISABLE, Ordering::Relaxed);
    irqs_on();
    let mut status = 0;
    let mut lost = 0;
    let mut check = |n: u64, ok: bool| {
        if !ok && status == 0 {
            status = n;
        }
    };

    // 1: TVAL = 0 fires at once.
    let before = s.interrupts.load(Ordering::Relaxed);
    msr!("cntv_tval_el0", 0);
    msr!("cntv_ctl_el0", CTL_ENABLE);
    let waited = arrival(s, before + 1, t);
    lost += u64::from(waited.is_none());
    check(1, waited.is_some());
    check(12, soon(waited, t));

    // 2: TVAL = -1000 fires at once, CVAL reads 1000 ticks before now.
    let before = s.interrupts.load(Ordering::Relaxed);
    irqs_off();
    let t0 = vcount();
    msr!("cntv_tval_el0", (-1000_i64).cast_unsigned());
    let t1 = vcount();
    let cval = mrs!("cntv_cval_el0");
    // CVAL = (count at the write) - 1000, and the write was between t0 and t1.
    check(
        2,
        (t0.wrapping_sub(1000)..=t1.wrapping_sub(1000)).contains(&cval),
    );
    msr!("cntv_ctl_el0", CTL_ENABLE);
    irqs_on();
    let waited = arrival(s, before + 1, t);
    lost += u64::from(waited.is_none());
    check(3, waited.is_some());
    check(13, soon(waited, t));

    // 3: CVAL in the past (16 ms).
    let before = s.interrupts.load(Ordering::Relaxed);
    msr!("cntv_cval_el0", vcount().saturating_sub(t.us(16_000)));
    msr!("cntv_ctl_el0", CTL_ENABLE);
    let waited = arrival(s, before + 1, t);
    lost += u64::from(waited.is_none());
    check(4, waited.is_some());
    check(14, soon(waited, t));

    // 4: CVAL far in the future: no interrupt (in 10 ms, or however long
    // the host makes them), ISTATUS clear.
    let before = s.interrupts.load(Ordering::Relaxed);
    msr!("cntv_cval_el0", u64::MAX - 10);
    msr!("cntv_ctl_el0", CTL_ENABLE);
    check(5, quiet_for(s, before, t.us(10_000)));
    check(6, mrs!("cntv_ctl_el0") & CTL_ISTATUS == 0);

    // 5: TVAL ahead (10 ms): nothing before CVAL, exactly one after, and
    // TVAL counts down. TVAL is signed: once a slow host has let CVAL pass
    // during the 5 ms wait, it reads negative.
    let before = s.interrupts.load(Ordering::Relaxed);
    let ahead = t.clock.tval_us(10_000);
    msr!("cntv_ctl_el0", 0);
    msr!("cntv_tval_el0", ahead);
    let tval1 = tval_signed(mrs!("cntv_tval_el0"));
    let cval = mrs!("cntv_cval_el0");
    msr!("cntv_ctl_el0", CTL_ENABLE);
    check(7, quiet_before(s, before, t.us(5000), cval));
    let tval2 = tval_signed(mrs!("cntv_tval_el0"));
    check(
        8,
        tval2 < tval1 && i64::from(tval1) <= i64::try_from(ahead).unwrap_or(0),
    );
    let ok = wait_for(s, before + 1, t);
    lost += u64::from(!ok);
    check(9, ok);
    check(10, quiet_for(s, before + 1, t.us(2000)));

    irqs_off();
    msr!("cntv_ctl_el0", 0);
    if s.early.load(Ordering::Relaxed) != 0 || s.duplicates.load(Ordering::Relaxed) != 0 {
        check(11, false);
    }
    gprintln!("guest {vcpu}: programming done, status {status}");
    finish(vcpu, status, lost)
}

/// Polls `ISR_EL1.I` (interrupts masked) for up to [`LOST_AFTER_US`] of
/// running time, yielding to the hypervisor between polls so it can
/// update the line.
fn pending_becomes(want: bool, t: &Times) -> bool {
    let mut run = RunTime::start(t);
    loop {
        if irq_pending() == want {
            return true;
        }
        if run.poll() > t.lost_after {
            return false;
        }
        hvc(Hypercall::Yield, [0; 6]);
    }
}

/// IMASK and ENABLE toggled with the interrupt pending, and CVAL
/// reprogrammed while pending, checked through `ISR_EL1` with IRQs masked;
/// finally the pending interrupt is taken exactly once.
fn masking(vcpu: u64, t: &Times) -> ! {
    let s = state(vcpu);
    s.rearm.store(REARM_DISABLE, Ordering::Relaxed);
    irqs_off();
    let mut status = 0;
    let mut check = |n: u64, ok: bool| {
        if !ok && status == 0 {
            status = n;
        }
    };
    // Expired timer: the line goes high and the interrupt pends.
    msr!("cntv_cval_el0", vcount().saturating_sub(10));
    msr!("cntv_ctl_el0", CTL_ENABLE);
    check(1, pending_becomes(true, t));
    // IMASK: the pending interrupt goes away (at the next exit).
    msr!("cntv_ctl_el0", CTL_ENABLE | CTL_IMASK);
    check(2, pending_becomes(false, t));
    // Unmask: it pends again.
    msr!("cntv_ctl_el0", CTL_ENABLE);
    check(3, pending_becomes(true, t));
    // Disable: it goes away; re-enable: it pends again.
    msr!("cntv_ctl_el0", 0);
    check(4, pending_becomes(false, t));
    msr!("cntv_ctl_el0", CTL_ENABLE);
    check(5, pending_becomes(true, t));
    // Reprogram while pending: to the future (20 ms, longer if the host
    // overran that) it goes away, and pends again once the new CVAL
    // passes, not before.
    let mut cval = 0;
    let arm = |ticks: u64| {
        let at = vcount() + ticks;
        msr!("cntv_cval_el0", at);
        at
    };
    check(
        6,
        withdrawn_ahead(t, vcount, t.us(20_000), |ticks| {
            cval = arm(ticks);
            cval
        }),
    );
    check(7, pending_becomes(true, t));
    check(8, vcount() >= cval);
    // Take it: exactly one interrupt, its condition met.
    let before = s.interrupts.load(Ordering::Relaxed);
    irqs_on();
    let ok = wait_for(s, before + 1, t);
    check(9, ok);
    check(10, quiet_for(s, before + 1, t.us(2000)));
    irqs_off();
    if s.early.load(Ordering::Relaxed) != 0 || s.duplicates.load(Ordering::Relaxed) != 0 {
        check(11, false);
    }
    gprintln!("guest {vcpu}: masking done, status {status}");
    finish(vcpu, status, u64::from(!ok))
}

/// WFI with only the virtual timer to wake the guest: each sleep must be
/// one WFI (a wake-up without the interrupt pending is a failure), woken
/// no earlier than CVAL and no later than [`MAX_WAKE_LATENCY_US`] after it.
///
/// A sleep whose CVAL passes before the guest reaches its WFI (the host
/// delayed it) is an overrun, not a failure: it is counted, does not count
/// as a sleep, and makes the following sleeps twice as long (up to 64
/// times), until [`WFI_SLEEPS`] sleeps have slept or three times as many
/// were tried.
fn wfi_sleep(vcpu: u64, t: &Times) -> ! {
    const COUNT: u64 = WFI_SLEEPS;
    let s = state(vcpu);
    s.rearm.store(REARM_DISABLE, Ordering::Relaxed);
    let mut lost = 0;
    let mut status = 0;
    let mut sleeps = 0;
    let mut slept = 0;
    let mut overruns = 0;
    let mut stretch = 1;
    let mut max_wake = 0;
    let mut i = 0;
    while slept < COUNT && i < 3 * COUNT {
        let before = s.interrupts.load(Ordering::Relaxed);
        // 0.5 ms .. 1.5 ms, times the stretch.
        let cval = vcount() + t.us(500 * (1 + i % 3) * stretch);
        i += 1;
        irqs_off();
        msr!("cntv_cval_el0", cval);
        msr!("cntv_ctl_el0", CTL_ENABLE);
        let mut run = RunTime::start(t);
        // Sleep with IRQs masked (WFI still wakes), then take the interrupt.
        let mut wfis = 0;
        while !irq_pending() {
            // SAFETY: wfi only waits.
            unsafe { asm!("wfi", options(nostack)) };
            wfis += 1;
            if run.poll() > t.lost_after {
                break;
            }
        }
        let woke = vcount();
        sleeps += wfis;
        if wfis > 0 {
            // Only a sleep that slept measures the wake-up.
            slept += 1;
            max_wake = woke.saturating_sub(cval).max(max_wake);
        } else {
            overruns += 1;
            stretch = (stretch * 2).min(64);
        }
        let check = |n: u64, bad: bool, status: &mut u64| {
            if bad && *status == 0 {
                *status = n;
            }
        };
        // 1: woken before CVAL; 4: woken too late. (A sleep of more than
        // one WFI is not an error here: the hypervisor's own interrupt,
        // its tick, ends a WFI untrapped with nothing pending for the
        // guest, as the architecture allows. That a trapped WFI ends only
        // with the interrupt pending is checked by the hypervisor, which
        // knows which is which: its `idle_wakeups`.)
        check(1, woke < cval, &mut status);
        check(
            4,
            wfis > 0 && woke.saturating_sub(cval) > t.max_wake,
            &mut status,
        );
        irqs_on();
        if !wait_for(s, before + 1, t) {
            lost += 1;
        }
    }
    irqs_off();
    if s.early.load(Ordering::Relaxed) != 0
        || s.duplicates.load(Ordering::Relaxed) != 0
        || lost != 0
    {
        status = status.max(2);
    }
    gprintln!(
        "guest {vcpu}: wfi-sleep done, status {status}, {sleeps} WFIs, {overruns} overruns, max wake \
         latency {max_wake} ticks ({} us)",
        t.clock.us(max_wake)
    );
    measure(vcpu, sleeps, max_wake, overruns);
    finish(vcpu, status, lost)
}

/// The emulated EL1 physical timer: periodic interrupts (1 ms) through
/// trapped `CNTP_*` accesses, and a read-back of TVAL.
fn physical(vcpu: u64, t: &Times) -> ! {
    const COUNT: u64 = 200;
    let s = state(vcpu);
    let period = t.us(PERIOD_US);
    s.period.store(period, Ordering::Relaxed);
    s.rearm.store(REARM_PERIODIC, Ordering::Relaxed);
    let mut status = 0;
    // TVAL written (2 ms), read back: CVAL = (count at the write) + ahead
    // and TVAL = CVAL - (count at the read), both counts between t0 and t1.
    // TVAL is signed: a host that stalls the guest past CVAL between the
    // write and the read makes it negative, which is still consistent.
    let ahead = t.clock.tval_us(2000);
    let t0 = pcount();
    msr!("cntp_tval_el0", ahead);
    let tval = i64::from(tval_signed(mrs!("cntp_tval_el0")));
    let cval = mrs!("cntp_cval_el0");
    let t1 = pcount();
    let elapsed = i64::try_from(t1.wrapping_sub(t0)).unwrap_or(i64::MAX);
    let ahead_signed = i64::try_from(ahead).unwrap_or(0);
    if !(ahead_signed.saturating_sub(elapsed)..=ahead_signed).contains(&tval)
        || !(t0 + ahead..=t1 + ahead).contains(&cval)
    {
        gprintln!(
            "guest {vcpu}: TVAL {ahead} written at {t0}, read back {tval}, CVAL {cval}, count {t1}"
        );
        status = 1;
    }
    if !physical_masking(t) {
        status = status.max(3);
    }
    // The VM's counter offset applies to both counters: the physical count
    // read between two virtual ones lies between them (direct with
    // CNTPOFF_EL2, or emulated; a physical timer on the hardware without
    // its offset would be off by the VM's offset).
    let v0 = vcount();
    // SAFETY: a barrier, so that the read below is not taken early.
    unsafe { asm!("isb", options(nostack)) };
    let p = pcount();
    let v1 = vcount();
    if !(v0..=v1).contains(&p) {
        gprintln!("guest {vcpu}: physical count {p} outside the virtual counts {v0}..={v1}");
        status = status.max(4);
    }
    // The VM's offset, for LatencyWatch (both counts read within a few
    // microseconds of guest time; the watch only needs it to that).
    let ahead = pcount().wrapping_sub(vcount());
    s.physical_ahead.store(ahead, Ordering::Relaxed);
    let first = pcount() + period;
    s.armed.store(first.wrapping_sub(ahead), Ordering::Relaxed);
    msr!("cntp_cval_el0", first);
    msr!("cntp_ctl_el0", CTL_ENABLE);
    irqs_on();
    let mut lost = 0;
    let mut latency = LatencyWatch::start(s, t);
    for n in 1..=COUNT {
        if !wait_watching(s, n, t, &mut latency) {
            lost = 1;
            break;
        }
    }
    irqs_off();
    msr!("cntp_ctl_el0", 0);
    if s.early.load(Ordering::Relaxed) != 0
        || s.duplicates.load(Ordering::Relaxed) != 0
        || lost != 0
    {
        status = status.max(2);
    }
    gprintln!("guest {vcpu}: ptimer done, status {status}");
    measure(vcpu, 0, 0, 0);
    finish(vcpu, status, lost)
}

// ---------------------------------------------------------------------------
// The perf scenario (`cargo xtask bench`).

/// How far ahead the perf guest arms its timer for a quiet path: 10 s,
/// far beyond the run.
const PERF_FAR_US: u64 = 10_000_000;

/// How long the perf guest yields before it counts: 5 ms, past the
/// hypervisor's first tick.
const PERF_WARM_US: u64 = 5000;

/// How far ahead the perf guest arms its timer before a WFI: 50 us, long
/// enough that the guest is asleep before it fires.
const PERF_SLEEP_US: u64 = 50;

/// The timer the perf guest drives: the virtual one (`perf`, its physical
/// timer emulated and unused), or the physical one (`perf-ptimer`, direct,
/// with the virtual timer armed far ahead throughout, line low).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PerfTimer {
    Virtual,
    Physical,
}

impl PerfTimer {
    /// The count the timer compares with.
    #[inline(always)]
    fn now(self) -> u64 {
        match self {
            Self::Virtual => vcount(),
            Self::Physical => pcount(),
        }
    }

    /// Arms the timer at `cval`, enabled and unmasked.
    #[inline(always)]
    fn arm(self, cval: u64) {
        match self {
            Self::Virtual => {
                msr!("cntv_cval_el0", cval);
                msr!("cntv_ctl_el0", CTL_ENABLE);
            }
            Self::Physical => {
                msr!("cntp_cval_el0", cval);
                msr!("cntp_ctl_el0", CTL_ENABLE);
            }
        }
    }

    /// Disables the timer.
    #[inline(always)]
    fn disable(self) {
        match self {
            Self::Virtual => msr!("cntv_ctl_el0", 0),
            Self::Physical => msr!("cntp_ctl_el0", 0),
        }
    }
}

/// Spins until the handler has taken an interrupt more than `before`;
/// `false` if none came within [`LOST_AFTER_US`] of counter time.
fn perf_wait_irq(s: &GuestState, before: u64, t: &Times) -> bool {
    let start = vcount();
    while s.interrupts.load(Ordering::Relaxed) == before {
        if vcount().wrapping_sub(start) > t.lost_after {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// One round trip of `path` (numbered as `hyp::perf::Path`) on `timer`;
/// `false` if an interrupt that must come did not.
#[inline(always)]
fn perf_round_trip(s: &GuestState, path: u64, timer: PerfTimer, t: &Times) -> bool {
    use crate::hyp::perf::PERF_PUT_LOAD;
    match path {
        // Yield, line low or line high: one exit.
        0 | 1 => hvc(Hypercall::Yield, [0; 6]),
        // The timer fires at once; the handler acknowledges, disables it
        // and EOIs.
        2 => {
            let before = s.interrupts.load(Ordering::Relaxed);
            timer.arm(timer.now());
            return perf_wait_irq(s, before, t);
        }
        3 => hvc(Hypercall::Perf, [PERF_PUT_LOAD, 0, 0, 0, 0, 0]),
        // WFI with IRQs masked until the timer wakes the vCPU, then the
        // interrupt.
        _ => {
            let before = s.interrupts.load(Ordering::Relaxed);
            timer.arm(timer.now() + t.us(PERF_SLEEP_US));
            let start = vcount();
            while !irq_pending() {
                // SAFETY: wfi only waits.
                unsafe { asm!("wfi", options(nostack)) };
                if vcount().wrapping_sub(start) > t.lost_after {
                    return false;
                }
            }
            irqs_on();
            let ok = perf_wait_irq(s, before, t);
            irqs_off();
            return ok;
        }
    }
    true
}

/// The perf scenarios: each path of `hyp::perf::Path` run `N1` and `N2`
/// times between two perf marks, the hypervisor counting, on `timer`.
/// Before each loop the timer is put in the path's state: armed far ahead
/// (line low) for the yield, put + load and WFI paths' start, expired with
/// `PSTATE.I` set (line high) for the line-high yield, disabled with IRQs
/// on for the interrupt path. On the physical timer the virtual one stays
/// armed far ahead (both timers have state on the hardware, lines low).
/// `PHYSICAL` picks the timer at build time, so that no loop tests which
/// timer it drives (the EL1 counts stay those of one timer's code).
fn perf<const PHYSICAL: bool>(vcpu: u64, t: &Times) -> ! {
    use crate::hyp::perf::{N1, N2, PERF_BEGIN, PERF_END, Path};
    let timer = if PHYSICAL {
        PerfTimer::Physical
    } else {
        PerfTimer::Virtual
    };
    let s = state(vcpu);
    s.rearm.store(REARM_DISABLE, Ordering::Relaxed);
    irqs_off();
    // Past the hypervisor's first scheduler tick (1 ms after the start):
    // after it, the perf scenario's tick period is the run limit, and no
    // tick falls in a counted loop.
    let warm = vcount() + t.us(PERF_WARM_US);
    while vcount() < warm {
        hvc(Hypercall::Yield, [0; 6]);
    }
    let mut status = 0;
    let mut lost = 0;
    // Round 0 counts the totals, round 1 the timer code's share.
    for (round, (number, path)) in [0, 1]
        .into_iter()
        .flat_map(|r| Path::ALL.iter().enumerate().map(move |p| (r, p)))
    {
        let number = number as u64;
        for n in [N1, N2] {
            if PHYSICAL {
                // The virtual timer beside it, armed far ahead again for
                // each loop (line low).
                PerfTimer::Virtual.arm(vcount() + t.us(PERF_FAR_US));
            }
            match path {
                Path::YieldHigh => timer.arm(timer.now()),
                Path::TimerIrq => {
                    timer.disable();
                    irqs_on();
                }
                Path::YieldLow | Path::PutLoad | Path::WfiWake | Path::WfiSaved => {
                    timer.arm(timer.now() + t.us(PERF_FAR_US));
                }
            }
            // One exit in that state before the count begins.
            hvc(Hypercall::Yield, [0; 6]);
            hvc(Hypercall::Perf, [PERF_BEGIN, number, n, round, 0, 0]);
            for _ in 0..n {
                if !perf_round_trip(s, number, timer, t) {
                    lost += 1;
                }
            }
            hvc(Hypercall::Perf, [PERF_END, number, n, round, 0, 0]);
            if *path == Path::YieldHigh {
                // Take the interrupt that stayed pending.
                let before = s.interrupts.load(Ordering::Relaxed);
                irqs_on();
                if !perf_wait_irq(s, before, t) {
                    lost += 1;
                }
            }
            irqs_off();
            timer.disable();
        }
    }
    if s.early.load(Ordering::Relaxed) != 0 || s.duplicates.load(Ordering::Relaxed) != 0 {
        status = 2;
    }
    gprintln!(
        "guest {vcpu}: perf done, status {status}, {} interrupts, {lost} lost",
        s.interrupts.load(Ordering::Relaxed)
    );
    finish(vcpu, status, lost)
}
