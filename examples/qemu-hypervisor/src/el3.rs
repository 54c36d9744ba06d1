//! The EL3 stage: what a secure firmware would do before handing the CPU to
//! a non-secure hypervisor, for a machine booted with EL3
//! (`-machine virt,virtualization=on,secure=on`).
//!
//! Why: FEAT_ECV's `CNTPOFF_EL2` only offsets the EL1 physical timer when
//! `SCR_EL3.ECVEn` is 1. Without EL3, QEMU leaves that bit 0, so the
//! physical offset has no effect (the aarch64 backend's `reset_cpu` probe
//! finds so) and the library emulates an offset physical timer. With EL3,
//! QEMU starts this ELF image at EL3 (measured on QEMU 10.0.2: before this
//! stage existed, the hypervisor reported entering at EL3), and this stage
//! enables ECV.
//!
//! The image's ELF entry is `el3_entry` (see `build.rs`). At EL2 (no EL3
//! on the machine) it branches straight to aarch64-rt's `entry`. At EL3, on
//! the boot CPU, with the MMU off and no stack, it:
//!
//! - `CPTR_EL3` = 0: nothing is trapped to EL3 (TFP, bit 10: FP/SIMD, which
//!   the Rust code uses; TTA, TAM, TCPAC). SVE and SME (EZ, ESM) stay
//!   disabled: neither the hypervisor nor its built-in guests use them.
//! - `MDCR_EL3` = 0: no debug, PMU (TPM, bit 6: the hypervisor counts with
//!   the PMU) or trace register access is trapped to EL3.
//! - `SCR_EL3`: NS (bit 0, lower ELs are non-secure); bits 5:4 (RES1);
//!   HCE (bit 8, `HVC` enabled: the guests' hypercalls); RW (bit 10, EL2 is
//!   AArch64); ECVEn (bit 28, `CNTPOFF_EL2` takes effect) when
//!   `ID_AA64MMFR0_EL1.ECV` says FEAT_ECV; FGTEn (bit 27, the fine-grained
//!   trap registers reach EL2 instead of trapping to EL3) with FEAT_FGT;
//!   HXEn (bit 38, `HCRX_EL2` accessible) with FEAT_HCX; APK/API (bits
//!   16/17, pointer authentication keys and instructions not trapped) with
//!   FEAT_PAuth. IRQ, FIQ and EA (bits 1-3) stay 0, so interrupts and
//!   external aborts go to EL2 as on a machine without EL3; SMD (bit 7)
//!   stays 0, so `SMC` reaches QEMU's PSCI (`SYSTEM_OFF`, `CPU_ON`). The
//!   bits that depend on a feature follow what QEMU's own firmware
//!   emulation sets when it boots a kernel at EL2, plus ECVEn, which that
//!   emulation leaves clear.
//! - The GIC's security: QEMU resets every interrupt to Secure Group 0.
//!   GICv3: `ICC_SRE_EL3` = 0xF (system register interface at every EL,
//!   Enable: EL2 may use `ICC_SRE_EL2`), then `GICD_CTLR.DS` (bit 6) = 1:
//!   one security state, the GIC as on a machine without EL3, so the
//!   hypervisor's non-secure writes (its redistributors' `GICR_IGROUPR0`,
//!   `GICD_CTLR`) configure it as they do there. GICv2 has no DS bit:
//!   every `GICD_IGROUPRn` = all ones (Group 1, non-secure), including this
//!   CPU's banked `GICD_IGROUPR0`, and `GICC_PMR` = 0xFF (a non-secure
//!   write to it is ignored while the mask is below 0x80, its reset value
//!   being 0). Another CPU's banked `GICD_IGROUPR0` cannot be set from
//!   here, and QEMU starts every CPU of a machine with EL3 at the image's
//!   entry (measured: with `-smp 2` both CPUs ran the boot path): a machine
//!   with EL3 runs on one CPU (see the README).
//! - `ERET` to EL2h at `entry`, interrupts masked, with `x0`-`x3` (the
//!   boot arguments aarch64-rt passes to `main`) untouched.
//!
//! `CNTFRQ_EL0` (writable only at the highest EL) is left as QEMU resets
//! it: the frequency of its counter.

use core::arch::global_asm;

use crate::gic::{GICC_BASE, GICD_BASE};

global_asm!(
    r#"
.pushsection .init.el3, "ax"
.global el3_entry
.balign 4
el3_entry:
    mrs x9, CurrentEL
    ubfx x9, x9, #2, #2
    cmp x9, #3
    b.ne entry

    msr cptr_el3, xzr
    msr mdcr_el3, xzr
    isb

    // SCR_EL3: NS | RES1 (5:4) | HCE | RW, then the feature bits.
    mov x10, #0x531
    mrs x11, id_aa64mmfr0_el1
    ubfx x12, x11, #60, #4
    cbz x12, 1f
    orr x10, x10, #(1 << 28)
1:  ubfx x12, x11, #56, #4
    cbz x12, 2f
    orr x10, x10, #(1 << 27)
2:  mrs x11, id_aa64mmfr1_el1
    ubfx x12, x11, #40, #4
    cbz x12, 3f
    orr x10, x10, #(1 << 38)
3:  // FEAT_PAuth: ID_AA64ISAR1_EL1 APA, API, GPA or GPI (7:4, 11:8,
    // 27:24, 31:28), or ID_AA64ISAR2_EL1 GPA3 or APA3 (11:8, 15:12).
    mrs x11, id_aa64isar1_el1
    mov x12, #0x0ff0
    movk x12, #0xff00, lsl #16
    tst x11, x12
    b.ne 4f
    mrs x11, s3_0_c0_c6_2
    tst x11, #0xff00
    b.eq 5f
4:  orr x10, x10, #(3 << 16)
5:  msr scr_el3, x10
    isb

    // The GIC: ID_AA64PFR0_EL1.GIC (27:24) says a GICv3 CPU interface.
    ldr x12, ={gicd}
    mrs x11, id_aa64pfr0_el1
    ubfx x11, x11, #24, #4
    cbz x11, 7f
    mov x11, #0xf
    msr s3_6_c12_c12_5, x11
    isb
    ldr w13, [x12]
    orr w13, w13, #(1 << 6)
    str w13, [x12]
6:  ldr w13, [x12]
    tbnz w13, #31, 6b
    b 9f
7:  // GICv2: GICD_TYPER.ITLinesNumber (4:0) + 1 GICD_IGROUPRn from 0x80.
    ldr w13, [x12, #4]
    and w13, w13, #0x1f
    add x14, x12, #0x80
    mov w15, #0xffffffff
8:  str w15, [x14], #4
    subs w13, w13, #1
    b.pl 8b
    // GICC_PMR = 0xFF from the secure side: a non-secure write is ignored
    // while the mask is in the lower half (reset 0).
    ldr x12, ={gicc}
    mov w13, #0xff
    str w13, [x12, #4]
    dsb sy

9:  // To EL2h at aarch64-rt's entry, DAIF masked.
    mov x9, #0x3c9
    msr spsr_el3, x9
    adrp x9, entry
    add x9, x9, :lo12:entry
    msr elr_el3, x9
    eret
.ltorg
.popsection
"#,
    gicd = const GICD_BASE,
    gicc = const GICC_BASE,
);
