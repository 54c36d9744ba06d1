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

/// What a guest measured, sent with [`Hypercall::Measure`] (all in
/// counter ticks of 62.5 MHz, 16 ns).
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
}

/// Bound on a WFI sleep's wake latency ([`Measured::max_wake`]): 50 ms.
///
/// The wake path is the background soft timer (the EL2 physical timer,
/// a QEMU host timer), `unblock` and one guest entry: under 0.5 ms with
/// QEMU 7.2 TCG on an idle host, about 3 ms seen when the host (itself a
/// VM with 2 shared cores) is busy. 50 ms leaves a wide margin for a slow
/// CI machine, while a background timer that was not armed, which only the
/// [`NEVER_WAKE`](crate::hyp::NEVER_WAKE) fallback (100 ms) or the guest's
/// 1 s timeout ends, is beyond it.
pub(crate) const MAX_WAKE_LATENCY: u64 = 50 * 62_500;

/// Bound on any timer interrupt's delivery latency
/// ([`Measured::max_latency`]): 250 ms.
///
/// Measured under QEMU 7.2 TCG: up to about 20 ms for one vCPU alone and
/// 6 to 24 ms for time-sliced (2 ms slices) and migrating vCPUs, whose
/// QEMU threads the host deschedules now and then, so ten times that
/// leaves a slow CI machine room. A line that only the hypervisor's
/// 500 ms housekeeping tick recovers (lost, GICv3) comes later than this
/// bound half the time, and within the guest's 1 s liveness timeout never
/// at all if nothing recovers it; with GICv2 the tick is 5 ms for QEMU's
/// quirk (see the README), and `skipped` shows such stalls.
///
/// The periods the periodic guest skips (`skipped` on the result line)
/// are reported but not bounded: they follow QEMU's speed on the host
/// more than anything the hypervisor does (20 to 1075 of 2000 in runs on
/// one 2-core VM, up to 1959 when the host compiled at the same time).
pub(crate) const MAX_DELIVERY_LATENCY: u64 = 250 * 62_500;

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
/// the caller's WFI sleeps and wake latency.
fn measure(vcpu: u64, sleeps: u64, max_wake: u64) {
    let s = state(vcpu);
    hvc(
        Hypercall::Measure,
        [
            s.max_latency.load(Ordering::Relaxed),
            s.skipped.load(Ordering::Relaxed),
            sleeps,
            max_wake,
            0,
            0,
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

/// The low 32 bits of a register value (TVAL is a 32-bit register).
fn low32(value: u64) -> u32 {
    u32::try_from(value & 0xffff_ffff).unwrap_or(u32::MAX)
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
    let scenario = u8::try_from(scenario)
        .ok()
        .and_then(Scenario::from_number)
        .unwrap_or(Scenario::Hello);
    match scenario {
        Scenario::Hello => hello(vcpu),
        Scenario::Periodic | Scenario::TwoVcpus | Scenario::Migration => periodic(vcpu),
        Scenario::Programming => programming(vcpu),
        Scenario::Masking => masking(vcpu),
        Scenario::WfiSleep => wfi_sleep(vcpu),
        Scenario::PhysicalTimer => physical(vcpu),
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
            // Periodic: one period on; if that is less than half a period
            // away (the vCPU did not run for a while), one period from now,
            // as an OS tick does with its minimum programming delta: missed
            // periods are skipped (and counted), not caught up, and the
            // timer is never armed so close that it has fired again by the
            // EOI below (which QEMU 7.2's GICv2 does not re-signal).
            let next = match s.rearm.load(Ordering::Relaxed) {
                REARM_PERIODIC => {
                    let period = s.period.load(Ordering::Relaxed);
                    let next = cval.wrapping_add(period);
                    Some(if next > now.saturating_add(period / 2) {
                        next
                    } else {
                        // The expiries cval + k * period (k >= 1) before
                        // the new one.
                        let late = now.saturating_sub(cval);
                        let missed = late
                            .checked_div(period)
                            .map_or(0, |whole| whole + u64::from(late % period != 0));
                        s.skipped.fetch_add(missed, Ordering::Relaxed);
                        now + period
                    })
                }
                _ => None,
            };
            match next {
                Some(next) => msr!("cntv_cval_el0", next),
                None => msr!("cntv_ctl_el0", 0),
            }
        }
        PTIMER_INTID => {
            let ctl = mrs!("cntp_ctl_el0");
            let cval = mrs!("cntp_cval_el0");
            let now = mrs!("cntpct_el0");
            timer_interrupt(s, ctl, cval, now);
            match s.rearm.load(Ordering::Relaxed) {
                REARM_PERIODIC => {
                    msr!(
                        "cntp_cval_el0",
                        cval.wrapping_add(s.period.load(Ordering::Relaxed))
                    );
                }
                _ => msr!("cntp_ctl_el0", 0),
            }
        }
        _ => {
            s.spurious.fetch_add(1, Ordering::Relaxed);
        }
    }
    gic_eoi(gic, intid);
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

/// Counter ticks to wait for an interrupt that must come before declaring
/// it lost (1 s at 62.5 MHz: far beyond any scheduling delay, even of a
/// busy host running QEMU).
const LOST_AFTER: u64 = 62_500_000;

fn hello(vcpu: u64) -> ! {
    gprintln!("guest {vcpu}: hello from EL1");
    // A trapped WFI with no timer armed: the hypervisor must resume us.
    // SAFETY: wfi only waits.
    unsafe { asm!("wfi", options(nostack)) };
    gprintln!("guest {vcpu}: back from WFI");
    finish(vcpu, 0, 0)
}

/// The periodic guests' timer period: 1 ms at 62.5 MHz.
pub(crate) const PERIOD: u64 = 62_500;

/// Periodic virtual timer interrupts while the guest spins.
fn periodic(vcpu: u64) -> ! {
    const COUNT: u64 = 2000;
    let s = state(vcpu);
    // 1 ms at 62.5 MHz (a little more for vCPU 1): slow enough that
    // QEMU's emulation keeps up with a margin. At 320 us a forwarded
    // interrupt's round trip under TCG took most of a period, and a
    // slightly slower host made nearly every interrupt late (1173 and
    // 1959 of 2000 periods skipped in runs that passed at 50 otherwise).
    let period = PERIOD + vcpu * 2_000;
    s.period.store(period, Ordering::Relaxed);
    s.rearm.store(REARM_PERIODIC, Ordering::Relaxed);
    msr!("cntv_cval_el0", vcount() + period);
    msr!("cntv_ctl_el0", CTL_ENABLE);
    irqs_on();
    let mut lost = 0;
    let mut seen = 0;
    let mut since = vcount();
    while s.interrupts.load(Ordering::Relaxed) < COUNT {
        let n = s.interrupts.load(Ordering::Relaxed);
        let now = vcount();
        if n != seen {
            seen = n;
            since = now;
        } else if now.wrapping_sub(since) > LOST_AFTER {
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
    measure(vcpu, 0, 0);
    finish(vcpu, status, lost)
}

/// Waits (interrupts on) until the handler has run `target` times or
/// `LOST_AFTER` ticks pass. Returns whether it did.
fn wait_for(s: &GuestState, target: u64) -> bool {
    arrival(s, target).is_some()
}

/// Waits (interrupts on) until the handler has run `target` times:
/// the ticks that took, or `None` after `LOST_AFTER` ticks.
fn arrival(s: &GuestState, target: u64) -> Option<u64> {
    let start = vcount();
    loop {
        let waited = vcount().wrapping_sub(start);
        if s.interrupts.load(Ordering::Relaxed) >= target {
            return Some(waited);
        }
        if waited > LOST_AFTER {
            return None;
        }
    }
}

/// Whether an interrupt that must come at once came within
/// [`MAX_DELIVERY_LATENCY`] of `arrival`'s start; a lost one is counted
/// apart.
fn soon(waited: Option<u64>) -> bool {
    waited.is_none_or(|t| t <= MAX_DELIVERY_LATENCY)
}

/// Waits `ticks` and returns whether the handler count stayed at `count`.
fn quiet_for(s: &GuestState, count: u64, ticks: u64) -> bool {
    let start = vcount();
    while vcount().wrapping_sub(start) < ticks {
        if s.interrupts.load(Ordering::Relaxed) != count {
            return false;
        }
    }
    true
}

/// The emulated physical timer's line, seen through `ISR_EL1` with
/// interrupts masked (every `CNTP_*` access traps to the hypervisor, whose
/// next entry shows the line): an expired timer pends its interrupt; IMASK
/// withdraws it while CTL still reads ISTATUS; unmasking, and disabling
/// then enabling again, bring it back; TVAL 0 and a negative TVAL are
/// expired at once, a TVAL ahead is not. Leaves the timer disabled.
fn physical_masking() -> bool {
    irqs_off();
    let now = mrs!("cntpct_el0");
    msr!("cntp_cval_el0", now.saturating_sub(10));
    msr!("cntp_ctl_el0", CTL_ENABLE);
    let mut ok = pending_becomes(true);
    msr!("cntp_ctl_el0", CTL_ENABLE | CTL_IMASK);
    ok &= pending_becomes(false);
    ok &= mrs!("cntp_ctl_el0") & (CTL_ISTATUS | CTL_IMASK) == CTL_ISTATUS | CTL_IMASK;
    msr!("cntp_ctl_el0", CTL_ENABLE);
    ok &= pending_becomes(true);
    msr!("cntp_ctl_el0", 0);
    ok &= pending_becomes(false);
    msr!("cntp_ctl_el0", CTL_ENABLE);
    ok &= pending_becomes(true);
    // A TVAL ahead withdraws it; TVAL 0 and -1000 expire at once.
    msr!("cntp_tval_el0", 62_500_000);
    ok &= pending_becomes(false);
    msr!("cntp_tval_el0", 0);
    ok &= pending_becomes(true);
    msr!("cntp_tval_el0", 62_500_000);
    ok &= pending_becomes(false);
    let t0 = mrs!("cntpct_el0");
    msr!("cntp_tval_el0", (-1000_i64).cast_unsigned());
    let t1 = mrs!("cntpct_el0");
    let cval = mrs!("cntp_cval_el0");
    ok &= (t0.wrapping_sub(1000)..=t1.wrapping_sub(1000)).contains(&cval);
    ok &= pending_becomes(true);
    msr!("cntp_ctl_el0", 0);
    ok &= pending_becomes(false);
    ok
}

/// CVAL/TVAL programming: TVAL 0 and negative fire at once, CVAL in the
/// past fires at once, CVAL far in the future and a TVAL ahead do not fire
/// early, and reading TVAL back is consistent with CVAL.
fn programming(vcpu: u64) -> ! {
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
    let waited = arrival(s, before + 1);
    lost += u64::from(waited.is_none());
    check(1, waited.is_some());
    check(12, soon(waited));

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
    let waited = arrival(s, before + 1);
    lost += u64::from(waited.is_none());
    check(3, waited.is_some());
    check(13, soon(waited));

    // 3: CVAL in the past.
    let before = s.interrupts.load(Ordering::Relaxed);
    msr!("cntv_cval_el0", vcount().saturating_sub(1_000_000));
    msr!("cntv_ctl_el0", CTL_ENABLE);
    let waited = arrival(s, before + 1);
    lost += u64::from(waited.is_none());
    check(4, waited.is_some());
    check(14, soon(waited));

    // 4: CVAL far in the future: no interrupt, ISTATUS clear.
    let before = s.interrupts.load(Ordering::Relaxed);
    msr!("cntv_cval_el0", u64::MAX - 10);
    msr!("cntv_ctl_el0", CTL_ENABLE);
    check(5, quiet_for(s, before, 625_000));
    check(6, mrs!("cntv_ctl_el0") & CTL_ISTATUS == 0);

    // 5: TVAL ahead: nothing before, exactly one after, and TVAL counts down.
    let before = s.interrupts.load(Ordering::Relaxed);
    msr!("cntv_ctl_el0", 0);
    msr!("cntv_tval_el0", 625_000);
    let tval1 = low32(mrs!("cntv_tval_el0"));
    msr!("cntv_ctl_el0", CTL_ENABLE);
    check(7, quiet_for(s, before, 300_000));
    let tval2 = low32(mrs!("cntv_tval_el0"));
    check(8, tval2 < tval1 && tval1 <= 625_000);
    let ok = wait_for(s, before + 1);
    lost += u64::from(!ok);
    check(9, ok);
    check(10, quiet_for(s, before + 1, 100_000));

    irqs_off();
    msr!("cntv_ctl_el0", 0);
    if s.early.load(Ordering::Relaxed) != 0 || s.duplicates.load(Ordering::Relaxed) != 0 {
        check(11, false);
    }
    gprintln!("guest {vcpu}: programming done, status {status}");
    finish(vcpu, status, lost)
}

/// Polls `ISR_EL1.I` (interrupts masked) for up to `LOST_AFTER` ticks,
/// yielding to the hypervisor between polls so it can update the line.
fn pending_becomes(want: bool) -> bool {
    let start = vcount();
    loop {
        if irq_pending() == want {
            return true;
        }
        if vcount().wrapping_sub(start) > LOST_AFTER {
            return false;
        }
        hvc(Hypercall::Yield, [0; 6]);
    }
}

/// IMASK and ENABLE toggled with the interrupt pending, and CVAL
/// reprogrammed while pending, checked through `ISR_EL1` with IRQs masked;
/// finally the pending interrupt is taken exactly once.
fn masking(vcpu: u64) -> ! {
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
    check(1, pending_becomes(true));
    // IMASK: the pending interrupt goes away (at the next exit).
    msr!("cntv_ctl_el0", CTL_ENABLE | CTL_IMASK);
    check(2, pending_becomes(false));
    // Unmask: it pends again.
    msr!("cntv_ctl_el0", CTL_ENABLE);
    check(3, pending_becomes(true));
    // Disable: it goes away; re-enable: it pends again.
    msr!("cntv_ctl_el0", 0);
    check(4, pending_becomes(false));
    msr!("cntv_ctl_el0", CTL_ENABLE);
    check(5, pending_becomes(true));
    // Reprogram while pending: to the future it goes away, and pends again
    // once the new CVAL passes, not before.
    let cval = vcount() + 1_250_000;
    msr!("cntv_cval_el0", cval);
    check(6, pending_becomes(false));
    check(7, pending_becomes(true));
    check(8, vcount() >= cval);
    // Take it: exactly one interrupt, its condition met.
    let before = s.interrupts.load(Ordering::Relaxed);
    irqs_on();
    let ok = wait_for(s, before + 1);
    check(9, ok);
    check(10, quiet_for(s, before + 1, 100_000));
    irqs_off();
    if s.early.load(Ordering::Relaxed) != 0 || s.duplicates.load(Ordering::Relaxed) != 0 {
        check(11, false);
    }
    gprintln!("guest {vcpu}: masking done, status {status}");
    finish(vcpu, status, u64::from(!ok))
}

/// WFI with only the virtual timer to wake the guest: each sleep must be
/// one WFI (a wake-up without the interrupt pending is a failure), woken
/// no earlier than CVAL and no later than [`MAX_WAKE_LATENCY`] after it.
fn wfi_sleep(vcpu: u64) -> ! {
    const COUNT: u64 = WFI_SLEEPS;
    let s = state(vcpu);
    s.rearm.store(REARM_DISABLE, Ordering::Relaxed);
    let mut lost = 0;
    let mut status = 0;
    let mut sleeps = 0;
    let mut max_wake = 0;
    for i in 0..COUNT {
        let before = s.interrupts.load(Ordering::Relaxed);
        // 0.5 ms .. 1.5 ms.
        let cval = vcount() + 31_250 + (i % 3) * 31_250;
        irqs_off();
        msr!("cntv_cval_el0", cval);
        msr!("cntv_ctl_el0", CTL_ENABLE);
        let start = vcount();
        // Sleep with IRQs masked (WFI still wakes), then take the interrupt.
        let mut wfis = 0;
        while !irq_pending() {
            // SAFETY: wfi only waits.
            unsafe { asm!("wfi", options(nostack)) };
            wfis += 1;
            if vcount().wrapping_sub(start) > LOST_AFTER {
                break;
            }
        }
        let woke = vcount();
        sleeps += wfis;
        if wfis > 0 {
            // Only a sleep that slept measures the wake-up (the vCPU may
            // have been delayed past CVAL before its WFI).
            max_wake = woke.saturating_sub(cval).max(max_wake);
        }
        let check = |n: u64, bad: bool, status: &mut u64| {
            if bad && *status == 0 {
                *status = n;
            }
        };
        // 1: woken before CVAL; 3: more than one WFI (woken with nothing
        // pending); 4: woken too late.
        check(1, woke < cval, &mut status);
        check(3, wfis > 1, &mut status);
        check(
            4,
            wfis > 0 && woke.saturating_sub(cval) > MAX_WAKE_LATENCY,
            &mut status,
        );
        irqs_on();
        if !wait_for(s, before + 1) {
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
        "guest {vcpu}: wfi-sleep done, status {status}, {sleeps} WFIs, max wake latency {max_wake} ticks"
    );
    measure(vcpu, sleeps, max_wake);
    finish(vcpu, status, lost)
}

/// The emulated EL1 physical timer: periodic interrupts through trapped
/// `CNTP_*` accesses, and a read-back of TVAL.
fn physical(vcpu: u64) -> ! {
    const COUNT: u64 = 200;
    let s = state(vcpu);
    let period = 62_500;
    s.period.store(period, Ordering::Relaxed);
    s.rearm.store(REARM_PERIODIC, Ordering::Relaxed);
    let mut status = 0;
    // TVAL written, read back: CVAL = (count at the write) + 100_000 and
    // TVAL = CVAL - (count at the read), both counts between t0 and t1.
    let t0 = mrs!("cntpct_el0");
    msr!("cntp_tval_el0", 100_000);
    let tval = low32(mrs!("cntp_tval_el0"));
    let cval = mrs!("cntp_cval_el0");
    let t1 = mrs!("cntpct_el0");
    let elapsed = u32::try_from(t1.wrapping_sub(t0)).unwrap_or(u32::MAX);
    if !(100_000_u32.saturating_sub(elapsed)..=100_000).contains(&tval)
        || !(t0 + 100_000..=t1 + 100_000).contains(&cval)
    {
        status = 1;
    }
    if !physical_masking() {
        status = status.max(3);
    }
    msr!("cntp_cval_el0", mrs!("cntpct_el0") + period);
    msr!("cntp_ctl_el0", CTL_ENABLE);
    irqs_on();
    let mut lost = 0;
    for n in 1..=COUNT {
        if !wait_for(s, n) {
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
    measure(vcpu, 0, 0);
    finish(vcpu, status, lost)
}
