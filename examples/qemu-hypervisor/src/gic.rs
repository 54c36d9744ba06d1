//! The host interrupt controller as the run loop sees it.
//!
//! Both GIC backends' `HostGic` implement the library's [`GicCpu`]. This
//! program picks the GIC version at run time, so its run loop is generic
//! over [`HostIrqs`] (`GicCpu` plus the migration scenario's slot). What
//! differs is only the bring-up ([`gicv3`], [`gicv2`]): the backends take
//! different hardware.
//! It adds no register access of its own except the distributor bring-up,
//! which the backends leave to the system's boot code.

use core::ptr::NonNull;

use arch_timer_virt::{GicCpu, IntId};
use arch_timer_virt_gicv2::registers::{GiccRegs, GicdRegs, GichRegs};
use arch_timer_virt_gicv3::Redistributor;
use arch_timer_virt_gicv3::sysreg::CpuSysRegs;
use safe_mmio::UniqueMmioPointer;

use crate::migrate::VcpuSlot;

/// QEMU `virt`: the distributor.
pub(crate) const GICD_BASE: usize = 0x0800_0000;
/// QEMU `virt`: the GICv3 redistributor region.
pub(crate) const GICR_BASE: usize = 0x080a_0000;
/// QEMU `virt`: the GICv2 CPU interface.
pub(crate) const GICC_BASE: usize = 0x0801_0000;
/// QEMU `virt`: the GICv2 virtual interface control.
pub(crate) const GICH_BASE: usize = 0x0803_0000;
/// QEMU `virt`: the GICv2 virtual CPU interface.
pub(crate) const GICV_BASE: usize = 0x0804_0000;
/// Redistributors this program looks through (QEMU has one per CPU; the
/// walk stops at the one marked Last).
const GICR_COUNT: usize = 8;

/// The maintenance interrupt's PPI on QEMU `virt`.
pub(crate) const MAINTENANCE_PPI: u32 = 25;

/// The distributor's architecture revision (`ArchRev`, bits 7:4 of the
/// peripheral ID2 register): at `GICD_PIDR2` (offset 0xFFE8) for a GICv3,
/// at `GICD_ICPIDR2` (offset 0xFE8) for a GICv2. `gicv3` says which one to
/// read (the other offset may not be backed by a register).
pub(crate) fn distributor_arch_rev(gicv3: bool) -> u32 {
    let offset = if gicv3 { 0xffe8 } else { 0xfe8 };
    // SAFETY: a read-only identification register of QEMU `virt`'s
    // distributor, mapped as device memory; reading it has no side effect.
    let pidr2 = unsafe { core::ptr::read_volatile((GICD_BASE + offset) as *const u32) };
    (pidr2 >> 4) & 0xf
}

/// A host GIC on one CPU as the run loop uses it: the library's
/// [`GicCpu`] (both backends' `HostGic` implement it), plus where the
/// migration scenario keeps its vCPU for this GIC's vCPU type.
pub(crate) trait HostIrqs: GicCpu<Vgic: 'static> {
    /// The home of the vCPU of the migration scenario, for this GIC's
    /// vCPU type (a static cannot be generic).
    fn migration_slot() -> &'static VcpuSlot<Self::Vgic>;
}

/// [`HostIrqs`] for the `HostGic` of the backend crate `$backend`;
/// `$slot` is the migration slot.
macro_rules! host_irqs {
    ($backend:ident, $host:ty, $slot:ident) => {
        /// The migrating vCPU with this GIC.
        static $slot: VcpuSlot<$backend::VgicCpu> = VcpuSlot::new();

        impl HostIrqs for $host {
            fn migration_slot() -> &'static VcpuSlot<Self::Vgic> {
                &$slot
            }
        }
    };
}

/// GICv3 through `arch-timer-virt-gicv3`.
pub(crate) type Gicv3 = arch_timer_virt_gicv3::HostGic<'static, CpuSysRegs>;
host_irqs!(arch_timer_virt_gicv3, Gicv3, MIGRATION_SLOT_V3);

/// GICv2 through `arch-timer-virt-gicv2`.
pub(crate) type Gicv2 = arch_timer_virt_gicv2::HostGic;
host_irqs!(arch_timer_virt_gicv2, Gicv2, MIGRATION_SLOT_V2);

/// Brings up the GICv3 distributor (affinity routing, Group 1) and this
/// CPU's redistributor and CPU interface, and enables the hypervisor's PPIs.
///
/// # Safety
///
/// Call once per CPU, at EL2, on a GICv3 system; nothing else may use this
/// CPU's GIC CPU interface or redistributor afterwards.
pub(crate) unsafe fn gicv3(ppis: &[(IntId, u8)]) -> Result<Gicv3, arch_timer_virt_gicv3::Error> {
    // GICD_CTLR: ARE (bit 4), EnableGrp1 (bit 1), EnableGrp0 (bit 0), one
    // security state (QEMU `virt` without EL3). Idempotent, so each CPU may
    // do it.
    // SAFETY: GICD_CTLR of QEMU `virt`'s distributor, mapped as device
    // memory; the hypervisor uses no distributor feature this changes.
    unsafe {
        let ctlr = GICD_BASE as *mut u32;
        core::ptr::write_volatile(ctlr, (1 << 4) | 0b11);
        while core::ptr::read_volatile(ctlr) & (1 << 31) != 0 {
            core::hint::spin_loop();
        }
    }
    // `NonNull::new` of these constant, non-zero addresses cannot fail.
    let region = NonNull::slice_from_raw_parts(
        NonNull::new(GICR_BASE as *mut Redistributor)
            .ok_or(arch_timer_virt_gicv3::Error::NotLoaded)?,
        GICR_COUNT,
    );
    // SAFETY: the caller promises EL2 on a GICv3 system and exclusive use of
    // this CPU's GIC; the region is QEMU `virt`'s GICR, mapped as device
    // memory for the whole run. Every CPU searches it with volatile reads of
    // the read-only GICR_TYPERs; only this CPU's frame becomes a unique
    // pointer, and no other code uses that frame.
    let mut host = unsafe { Gicv3::in_shared_region(CpuSysRegs::new(), region)? };
    host.init()?;
    for &(ppi, priority) in ppis {
        host.enable_ppi(ppi, priority);
    }
    Ok(host)
}

/// Brings up the GICv2 distributor (with `first`) and this CPU's
/// interface, and enables the hypervisor's PPIs.
///
/// # Safety
///
/// Call once per CPU, at EL2, on a GICv2 system with the virtualization
/// extensions; nothing else may use this CPU's GICC, GICH or banked
/// distributor registers afterwards, and only one CPU passes `first`.
pub(crate) unsafe fn gicv2(
    ppis: &[(IntId, u8)],
    first: bool,
) -> Result<Gicv2, arch_timer_virt_gicv2::Error> {
    // `NonNull::new` of these constant, non-zero addresses cannot fail.
    let gicd = NonNull::new(GICD_BASE as *mut GicdRegs);
    let gicc = NonNull::new(GICC_BASE as *mut GiccRegs);
    let gich = NonNull::new(GICH_BASE as *mut GichRegs);
    let (Some(gicd), Some(gicc), Some(gich)) = (gicd, gicc, gich) else {
        return Err(arch_timer_virt_gicv2::Error::NotLoaded);
    };
    // SAFETY: QEMU `virt`'s GICv2 frames, mapped as device memory for the
    // whole run. The distributor is shared by every CPU's HostGic, each
    // touching only its banked registers (and GICD_CTLR on the `first` CPU
    // only); GICC and GICH are banked per CPU and the caller promises
    // exclusive use of them on this CPU.
    let mut host = unsafe {
        Gicv2::with_shared_distributor(
            gicd,
            UniqueMmioPointer::new(gicc),
            UniqueMmioPointer::new(gich),
            GICV_BASE,
        )
    };
    if first {
        host.enable_distributor();
    }
    host.init()?;
    for &(ppi, priority) in ppis {
        host.enable_ppi(ppi, priority);
    }
    Ok(host)
}
