//! A sample external guest for the example hypervisor's `external`
//! scenario (8): its own ELF, linked at 0x4800_0000, loaded by QEMU's
//! generic loader, entered at EL1h with the MMU off and `x0` = vCPU index.
//!
//! It prints through the hypercall ABI, arms its virtual timer a few times
//! (waiting by spinning and by WFI), takes each interrupt through its own
//! vector table and the GIC CPU interface it finds (`ID_AA64PFR0_EL1.GIC`:
//! the GICv3 system registers, or the GICv2 `GICC` frame at 0x0801_0000),
//! checks it, and finishes with status 0 if every interrupt came, once,
//! not early.
#![cfg_attr(target_os = "none", no_std, no_main)]

/// A host build has nothing to run.
#[cfg(not(target_os = "none"))]
fn main() {
    println!("guest-hello is an EL1 guest image: build it with --target aarch64-unknown-none");
}

/// The hypercall ABI, the very file the hypervisor builds in.
#[cfg(target_os = "none")]
#[path = "../src/hypercall.rs"]
#[allow(dead_code)] // this guest makes two of the calls and serves none
mod hypercall;

#[cfg(target_os = "none")]
mod guest {
    use core::arch::{asm, global_asm};
    use core::sync::atomic::{AtomicU64, Ordering};

    use crate::hypercall::{Hypercall, call as hvc, print};

    /// The virtual timer's INTID.
    const VTIMER_INTID: u64 = 27;
    /// The GICv2 CPU interface as the guest sees it.
    const GICC: u64 = 0x0801_0000;
    /// How many timer interrupts to take.
    const COUNT: u64 = 6;
    /// Running time (see [`wait`]) until a missing interrupt counts as
    /// lost: 1 s.
    const LOST_AFTER_US: u64 = 1_000_000;
    /// The most one step of the running time counts: 50 ms (see [`wait`]).
    const STEP_CAP_US: u64 = 50_000;

    static GICV3: AtomicU64 = AtomicU64::new(0);
    static INTERRUPTS: AtomicU64 = AtomicU64::new(0);
    static EARLY: AtomicU64 = AtomicU64::new(0);
    static SPURIOUS: AtomicU64 = AtomicU64::new(0);

    macro_rules! mrs {
        ($reg:literal) => {{
            let v: u64;
            // SAFETY: reading an EL1/EL0 register has no side effect.
            unsafe { asm!(concat!("mrs {v}, ", $reg), v = out(reg) v, options(nomem, nostack)) };
            v
        }};
    }

    macro_rules! msr {
        ($reg:literal, $v:expr) => {{
            let v: u64 = $v;
            // SAFETY: a register this guest owns; no Rust-visible memory
            // changes.
            unsafe { asm!(concat!("msr ", $reg, ", {v}"), "isb", v = in(reg) v, options(nostack)) };
        }};
    }

    fn finish(status: u64, lost: u64) -> ! {
        hvc(
            Hypercall::Exit,
            [
                status,
                INTERRUPTS.load(Ordering::Relaxed),
                EARLY.load(Ordering::Relaxed),
                0,
                lost,
                SPURIOUS.load(Ordering::Relaxed),
            ],
        );
        loop {
            core::hint::spin_loop();
        }
    }

    fn vcount() -> u64 {
        // SAFETY: a barrier, so the counter is not read early.
        unsafe { asm!("isb", options(nostack)) };
        mrs!("cntvct_el0")
    }

    fn gicc_write(offset: u64, value: u32) {
        // SAFETY: a GICC register; stage 2 maps the frame to GICV.
        unsafe { core::ptr::write_volatile((GICC + offset) as *mut u32, value) };
    }

    fn gicc_read(offset: u64) -> u32 {
        // SAFETY: a GICC register; stage 2 maps the frame to GICV.
        unsafe { core::ptr::read_volatile((GICC + offset) as *const u32) }
    }

    fn gic_init(v3: bool) {
        if v3 {
            // ICC_SRE_EL1 = SRE|DFB|DIB, ICC_PMR_EL1 = 0xff,
            // ICC_CTLR_EL1 = 0 (EOImode 0: EOI also deactivates),
            // ICC_IGRPEN1_EL1 = 1.
            msr!("S3_0_C12_C12_5", 0b111);
            msr!("S3_0_C4_C6_0", 0xff);
            msr!("S3_0_C12_C12_4", 0);
            msr!("S3_0_C12_C12_7", 1);
        } else {
            // GICC_PMR = 0xff; GICC_CTLR = EnableGrp0 | EnableGrp1 | AckCtl.
            gicc_write(0x4, 0xff);
            gicc_write(0x0, 0b111);
        }
    }

    fn gic_ack(v3: bool) -> u64 {
        if v3 {
            let v: u64;
            // SAFETY: ICC_IAR1_EL1: acknowledging changes only GIC state.
            unsafe { asm!("mrs {v}, S3_0_C12_C12_0", v = out(reg) v, options(nomem, nostack)) };
            v & 0xff_ffff
        } else {
            u64::from(gicc_read(0xc) & 0x3ff)
        }
    }

    fn gic_eoi(v3: bool, intid: u64) {
        if v3 {
            msr!("S3_0_C12_C12_1", intid);
        } else {
            gicc_write(0x10, u32::try_from(intid).unwrap_or(1023));
        }
    }

    /// The IRQ handler (from the vector table).
    extern "C" fn irq() {
        let v3 = GICV3.load(Ordering::Relaxed) != 0;
        let intid = gic_ack(v3);
        if intid >= 1020 {
            SPURIOUS.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if intid == VTIMER_INTID {
            let ctl = mrs!("cntv_ctl_el0");
            let cval = mrs!("cntv_cval_el0");
            let now = vcount();
            // ENABLE and ISTATUS set, IMASK clear, and the compare value
            // reached.
            if ctl & 0b111 != 0b101 || now < cval {
                EARLY.fetch_add(1, Ordering::Relaxed);
            }
            // One shot: disable before the EOI, so the line drops.
            msr!("cntv_ctl_el0", 0);
            INTERRUPTS.fetch_add(1, Ordering::Relaxed);
        } else {
            SPURIOUS.fetch_add(1, Ordering::Relaxed);
        }
        gic_eoi(v3, intid);
    }

    extern "C" fn fault(esr: u64, elr: u64, far: u64) -> ! {
        print(format_args!(
            "guest-hello: exception ESR {esr:#x} ELR {elr:#x} FAR {far:#x}"
        ));
        finish(0xfa17, 0)
    }

    /// Waits (interrupts unmasked, by WFI if `sleep`) until the handler has
    /// counted more than `before` interrupts; `false` if that took
    /// `lost_after` ticks of the guest's running time. Running time: the
    /// counter's advance between polls, each step counted at most
    /// `step_cap` ticks, because the counter follows the host's wall clock
    /// and a host that stops QEMU for a while must not make an interrupt
    /// look lost that the guest never waited for.
    fn wait(before: u64, sleep: bool, lost_after: u64, step_cap: u64) -> bool {
        let mut last = vcount();
        let mut waited: u64 = 0;
        while INTERRUPTS.load(Ordering::Relaxed) == before {
            let now = vcount();
            waited = waited.saturating_add(now.wrapping_sub(last).min(step_cap));
            last = now;
            if waited > lost_after {
                return false;
            }
            if sleep {
                // SAFETY: wfi only waits (the hypervisor traps it).
                unsafe { asm!("wfi", options(nostack)) };
            }
        }
        true
    }

    /// Called by `_start` with the stack set up and `.bss` zeroed.
    #[unsafe(no_mangle)]
    extern "C" fn guest_main(vcpu: u64) -> ! {
        // ID_AA64PFR0_EL1.GIC, bits 27:24: the GICv3 system registers.
        let v3 = (mrs!("id_aa64pfr0_el1") >> 24) & 0xf != 0;
        GICV3.store(u64::from(v3), Ordering::Relaxed);
        let vectors = core::ptr::addr_of!(__vectors) as u64;
        msr!("vbar_el1", vectors);
        gic_init(v3);
        // The counter frequency: every time below is derived from it.
        let Some(hz) = core::num::NonZeroU64::new(mrs!("cntfrq_el0") & 0xffff_ffff) else {
            print(format_args!(
                "guest-hello: CNTFRQ_EL0 is 0 (firmware never set it)"
            ));
            finish(0xf4e0, 0)
        };
        let ticks_us = |us: u64| {
            let ticks = (u128::from(us) * u128::from(hz.get())).div_ceil(1_000_000);
            u64::try_from(ticks).unwrap_or(u64::MAX)
        };
        print(format_args!(
            "guest-hello: vCPU {vcpu} at EL{}, GICv{}, counter {hz} Hz",
            (mrs!("CurrentEL") >> 2) & 3,
            if v3 { 3 } else { 2 }
        ));
        let mut lost = 0;
        for n in 0..COUNT {
            let before = INTERRUPTS.load(Ordering::Relaxed);
            // 2 ms, 3 ms, 4 ms, ... (TVAL is signed 32-bit: at most
            // i32::MAX ticks, 2.1 s at 1 GHz.)
            let ticks = ticks_us(2000 + n * 1000).min(i32::MAX.unsigned_abs().into());
            msr!("cntv_tval_el0", ticks);
            msr!("cntv_ctl_el0", 1);
            // SAFETY: unmasks IRQs; the vector table is installed.
            unsafe { asm!("msr daifclr, #2", options(nostack)) };
            if !wait(
                before,
                n % 2 == 1,
                ticks_us(LOST_AFTER_US),
                ticks_us(STEP_CAP_US),
            ) {
                lost += 1;
            }
            // SAFETY: masks IRQs.
            unsafe { asm!("msr daifset, #2", options(nostack)) };
        }
        let interrupts = INTERRUPTS.load(Ordering::Relaxed);
        let early = EARLY.load(Ordering::Relaxed);
        let spurious = SPURIOUS.load(Ordering::Relaxed);
        let status = u64::from(interrupts != COUNT || early != 0 || lost != 0 || spurious != 0);
        print(format_args!(
            "guest-hello: {interrupts} timer interrupts, {early} early, {lost} lost, {spurious} spurious"
        ));
        finish(status, lost)
    }

    #[panic_handler]
    fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
        finish(0xdead, 0)
    }

    unsafe extern "C" {
        static __vectors: u8;
    }

    global_asm!(
        r#"
.section .text.start, "ax"
.global _start
_start:
    /* x0 = vCPU index: 16 KiB of stack each, above the image. */
    mov x19, x0
    adrp x1, __stack_base
    add x1, x1, :lo12:__stack_base
    add x2, x0, #1
    lsl x2, x2, #14
    add x1, x1, x2
    mov sp, x1
    /* Zero .bss (one vCPU: the sample uses vCPU 0 only). */
    adrp x1, __bss_start
    add x1, x1, :lo12:__bss_start
    adrp x2, __bss_end
    add x2, x2, :lo12:__bss_end
0:  cmp x1, x2
    b.hs 1f
    str xzr, [x1], #8
    b 0b
1:  mov x0, x19
    bl guest_main
2:  b 2b

.macro fault_entry
    mrs x0, esr_el1
    mrs x1, elr_el1
    mrs x2, far_el1
    b {fault}
.endm

.section .text.vectors, "ax"
.balign 0x800
.global __vectors
__vectors:
    fault_entry
.balign 0x80
    fault_entry
.balign 0x80
    fault_entry
.balign 0x80
    fault_entry
.balign 0x80
    fault_entry
.balign 0x80
    b __irq_entry
.balign 0x80
    fault_entry
.balign 0x80
    fault_entry
.balign 0x80
    fault_entry
.balign 0x80
    fault_entry
.balign 0x80
    fault_entry
.balign 0x80
    fault_entry
.balign 0x80
    fault_entry
.balign 0x80
    fault_entry
.balign 0x80
    fault_entry
.balign 0x80
    fault_entry

__irq_entry:
    /* IRQ, current EL with SP_ELx: save the caller-saved registers. */
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
        fault = sym fault,
        irq = sym irq,
    );
}
