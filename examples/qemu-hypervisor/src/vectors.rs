//! The EL2 exception vector table and the world switch.
//!
//! The hypervisor runs a guest by calling [`enter_guest`]: it saves the
//! host's callee-saved registers on the EL2 stack, loads the guest's general
//! and FP/SIMD registers from a [`GuestRegs`] and `eret`s. Any exception
//! from the guest (lower EL, AArch64) comes back through the vector table,
//! which stores the guest's registers into the same [`GuestRegs`], restores
//! the host's (callee-saved general and FP registers, `FPCR` and `FPSR`)
//! and returns from [`enter_guest`] with an [`Exit`] kind. So the
//! run loop handles exits as plain Rust, with IRQs masked (taking an
//! exception to EL2 masks them).
//!
//! An exception taken from EL2 itself is a hypervisor bug: it is reported
//! and the run fails.

use core::arch::global_asm;

/// A guest's general purpose and FP/SIMD registers, as the world switch
/// saves them. Its layout is fixed: the assembly below uses the offsets.
#[derive(Clone, Debug)]
#[repr(C)]
pub(crate) struct GuestRegs {
    /// `x0`..=`x30`.
    pub(crate) x: [u64; 31],
    /// The guest's PC (`ELR_EL2`).
    pub(crate) pc: u64,
    /// The guest's PSTATE (`SPSR_EL2`).
    pub(crate) pstate: u64,
    /// `FPSR`.
    pub(crate) fpsr: u64,
    /// `FPCR`.
    pub(crate) fpcr: u64,
    padding: u64,
    /// `q0`..=`q31`.
    pub(crate) q: [u128; 32],
}

const _: () = assert!(core::mem::offset_of!(GuestRegs, pc) == 248);
const _: () = assert!(core::mem::offset_of!(GuestRegs, fpsr) == 264);
const _: () = assert!(core::mem::offset_of!(GuestRegs, q) == 288);

impl GuestRegs {
    /// All zero: the state before a guest's first entry.
    pub(crate) const fn new() -> Self {
        Self {
            x: [0; 31],
            pc: 0,
            pstate: 0,
            fpsr: 0,
            fpcr: 0,
            padding: 0,
            q: [0; 32],
        }
    }
}

/// Why the guest stopped running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// A synchronous exception: HVC, trapped WFI, trapped system register,
    /// abort. `ESR_EL2` tells which.
    Sync,
    /// A physical IRQ (routed to EL2 by `HCR_EL2.IMO`).
    Irq,
    /// A physical FIQ.
    Fiq,
    /// An SError.
    SError,
}

unsafe extern "C" {
    fn __guest_enter(regs: *mut GuestRegs) -> u64;
    static __el2_vectors: u8;
}

/// Installs the EL2 vector table on this CPU.
pub(crate) fn install() {
    let base = core::ptr::addr_of!(__el2_vectors) as u64;
    // SAFETY: `__el2_vectors` is a complete, 2 KiB aligned EL2 vector table
    // whose every entry either returns to `enter_guest` (lower EL) or stops
    // the run (current EL).
    unsafe { crate::sysreg::write_sysreg!(vbar_el2, base) };
    crate::sysreg::isb();
}

/// Runs the guest whose registers are `regs` until it exits.
///
/// # Safety
///
/// The EL2 system registers must describe a runnable guest (HCR_EL2,
/// stage 2, its EL1 registers), `regs.pc` and `regs.pstate` must enter it at
/// EL1 or EL0, and the vector table must be installed on this CPU.
pub(crate) unsafe fn enter_guest(regs: &mut GuestRegs) -> Exit {
    // SAFETY: the caller vouches for the guest state; `__guest_enter`
    // preserves the AAPCS64 callee-saved registers and writes only `*regs`.
    let kind = unsafe { __guest_enter(regs) };
    match kind {
        0 => Exit::Sync,
        1 => Exit::Irq,
        2 => Exit::Fiq,
        _ => Exit::SError,
    }
}

/// Called by the vector table for an exception taken from EL2.
extern "C" fn el2_unexpected(kind: u64, esr: u64, elr: u64, far: u64) -> ! {
    crate::console::println!(
        "hv: unexpected exception at EL2: kind {kind} ESR {esr:#x} ELR {elr:#x} FAR {far:#x}"
    );
    crate::exit::fail()
}

global_asm!(
    r#"
.macro unexpected kind:req
    mov x0, #\kind
    mrs x1, esr_el2
    mrs x2, elr_el2
    mrs x3, far_el2
    b {unexpected}
.endm

.macro guest_exit kind:req
    stp x0, x1, [sp, #-16]!
    mov x1, #\kind
    b __guest_exit
.endm

.section .text.el2_vectors, "ax"
.balign 0x800
.global __el2_vectors
__el2_vectors:
    unexpected 0
.balign 0x80
    unexpected 1
.balign 0x80
    unexpected 2
.balign 0x80
    unexpected 3
.balign 0x80
    unexpected 4
.balign 0x80
    unexpected 5
.balign 0x80
    unexpected 6
.balign 0x80
    unexpected 7
.balign 0x80
    guest_exit 0
.balign 0x80
    guest_exit 1
.balign 0x80
    guest_exit 2
.balign 0x80
    guest_exit 3
.balign 0x80
    unexpected 12
.balign 0x80
    unexpected 13
.balign 0x80
    unexpected 14
.balign 0x80
    unexpected 15

/* Host frame: x19-x30, d8-d15, the GuestRegs pointer, the host's FPSR and
   FPCR (the guest's replace them while it runs): 192 bytes. */
.global __guest_enter
__guest_enter:
    sub sp, sp, #192
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    str x0, [sp, #160]
    mrs x2, fpsr
    mrs x3, fpcr
    stp x2, x3, [sp, #168]

    add x1, x0, #288
    ldp q0, q1, [x1, #0]
    ldp q2, q3, [x1, #32]
    ldp q4, q5, [x1, #64]
    ldp q6, q7, [x1, #96]
    ldp q8, q9, [x1, #128]
    ldp q10, q11, [x1, #160]
    ldp q12, q13, [x1, #192]
    ldp q14, q15, [x1, #224]
    ldp q16, q17, [x1, #256]
    ldp q18, q19, [x1, #288]
    ldp q20, q21, [x1, #320]
    ldp q22, q23, [x1, #352]
    ldp q24, q25, [x1, #384]
    ldp q26, q27, [x1, #416]
    ldp q28, q29, [x1, #448]
    ldp q30, q31, [x1, #480]
    ldp x2, x3, [x0, #264]
    msr fpsr, x2
    msr fpcr, x3
    ldp x2, x3, [x0, #248]
    msr elr_el2, x2
    msr spsr_el2, x3

    ldp x2, x3, [x0, #16]
    ldp x4, x5, [x0, #32]
    ldp x6, x7, [x0, #48]
    ldp x8, x9, [x0, #64]
    ldp x10, x11, [x0, #80]
    ldp x12, x13, [x0, #96]
    ldp x14, x15, [x0, #112]
    ldp x16, x17, [x0, #128]
    ldp x18, x19, [x0, #144]
    ldp x20, x21, [x0, #160]
    ldp x22, x23, [x0, #176]
    ldp x24, x25, [x0, #192]
    ldp x26, x27, [x0, #208]
    ldp x28, x29, [x0, #224]
    ldr x30, [x0, #240]
    ldp x0, x1, [x0, #0]
    eret
    dsb nsh
    isb

/* Entered from a lower-EL vector: guest x0/x1 pushed, x1 = exit kind. */
__guest_exit:
    ldr x0, [sp, #(16 + 160)]
    stp x2, x3, [x0, #16]
    stp x4, x5, [x0, #32]
    stp x6, x7, [x0, #48]
    stp x8, x9, [x0, #64]
    stp x10, x11, [x0, #80]
    stp x12, x13, [x0, #96]
    stp x14, x15, [x0, #112]
    stp x16, x17, [x0, #128]
    stp x18, x19, [x0, #144]
    stp x20, x21, [x0, #160]
    stp x22, x23, [x0, #176]
    stp x24, x25, [x0, #192]
    stp x26, x27, [x0, #208]
    stp x28, x29, [x0, #224]
    str x30, [x0, #240]
    mov x4, x1
    ldp x2, x3, [sp], #16
    stp x2, x3, [x0, #0]
    mrs x2, elr_el2
    mrs x3, spsr_el2
    stp x2, x3, [x0, #248]
    mrs x2, fpsr
    mrs x3, fpcr
    stp x2, x3, [x0, #264]
    add x1, x0, #288
    stp q0, q1, [x1, #0]
    stp q2, q3, [x1, #32]
    stp q4, q5, [x1, #64]
    stp q6, q7, [x1, #96]
    stp q8, q9, [x1, #128]
    stp q10, q11, [x1, #160]
    stp q12, q13, [x1, #192]
    stp q14, q15, [x1, #224]
    stp q16, q17, [x1, #256]
    stp q18, q19, [x1, #288]
    stp q20, q21, [x1, #320]
    stp q22, q23, [x1, #352]
    stp q24, q25, [x1, #384]
    stp q26, q27, [x1, #416]
    stp q28, q29, [x1, #448]
    stp q30, q31, [x1, #480]

    mov x0, x4
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    ldp x2, x3, [sp, #168]
    msr fpsr, x2
    msr fpcr, x3
    add sp, sp, #192
    ret
"#,
    unexpected = sym el2_unexpected,
);
