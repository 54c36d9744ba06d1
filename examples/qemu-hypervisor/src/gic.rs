//! The host interrupt controller as the run loop sees it.
//!
//! Both GIC backends' `HostGic` implement the library's [`GicCpu`]. This
//! program picks the GIC version at run time, so its run loop is generic
//! over [`HostIrqs`] (`GicCpu` plus the migration scenario's slot and the
//! Linux guest's SGIs, on the chip [`GicCpu::chip`] gives). What
//! differs is only the bring-up ([`gicv3`], [`gicv2`]): the backends take
//! different hardware.
//! It adds no register access of its own except the distributor bring-up,
//! which the backends leave to the system's boot code, and the host kick
//! SGI between CPUs ([`KICK_SGI`]: its enable and its send).

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
    /// Makes SGI `sgi` from vCPU `source` pending in `vgic` (loaded on
    /// this CPU or not loaded): an IPI of the Linux guest. `false`: no
    /// room now (try again at a later entry).
    fn inject_sgi(
        &mut self,
        vgic: &mut Self::Vgic,
        sgi: u32,
        source: usize,
    ) -> Result<bool, Self::Error>;
    /// The pending (`.0`) and active (`.1`) INTIDs 0..=31 in `vgic`'s list
    /// registers (bit n = INTID n).
    fn private_lr_state(&mut self, vgic: &mut Self::Vgic) -> (u32, u32);
    /// Whether a list register of `vgic` holds virtual INTID `intid`
    /// pending (pending, or pending and active). Reads every list
    /// register (an empty one may still name an INTID).
    fn lr_pending(&mut self, vgic: &mut Self::Vgic, intid: u32) -> bool;
}

/// [`HostIrqs`] for the `HostGic` of the backend crate `$backend`;
/// `$slot` is the migration slot; `$inject_sgi`, `$lr_state` and
/// `$lr_pending` are this backend's [`HostIrqs::inject_sgi`],
/// [`HostIrqs::private_lr_state`] and [`HostIrqs::lr_pending`], taking the
/// chip that [`GicCpu::chip`] gives.
macro_rules! host_irqs {
    ($backend:ident, $host:ty, $slot:ident, $inject_sgi:ident, $lr_state:ident, $lr_pending:ident) => {
        /// The migrating vCPU with this GIC.
        static $slot: VcpuSlot<$backend::VgicCpu> = VcpuSlot::new();

        impl HostIrqs for $host {
            fn migration_slot() -> &'static VcpuSlot<Self::Vgic> {
                &$slot
            }
            fn inject_sgi(
                &mut self,
                vgic: &mut Self::Vgic,
                sgi: u32,
                source: usize,
            ) -> Result<bool, Self::Error> {
                $inject_sgi(&mut GicCpu::chip(self, vgic), sgi, source)
            }
            fn private_lr_state(&mut self, vgic: &mut Self::Vgic) -> (u32, u32) {
                $lr_state(&GicCpu::chip(self, vgic))
            }
            fn lr_pending(&mut self, vgic: &mut Self::Vgic, intid: u32) -> bool {
                $lr_pending(&GicCpu::chip(self, vgic), intid)
            }
        }
    };
}

/// GICv3 through `arch-timer-virt-gicv3`.
pub(crate) type Gicv3 = arch_timer_virt_gicv3::HostGic<'static, CpuSysRegs>;
/// The GICv3 backend's `Gic` as this program uses it (`Gicv3`'s
/// [`GicCpu::Chip`]).
type Gicv3Chip<'a> = arch_timer_virt_gicv3::Gic<'a, 'static, CpuSysRegs>;
host_irqs!(
    arch_timer_virt_gicv3,
    Gicv3,
    MIGRATION_SLOT_V3,
    inject_sgi_v3,
    lr_state_v3,
    lr_pending_v3
);

/// [`HostIrqs::inject_sgi`] with GICv3: a software list register (the
/// backend merges it with one already pending; GICv3 SGIs carry no
/// source).
fn inject_sgi_v3(
    chip: &mut Gicv3Chip<'_>,
    sgi: u32,
    _source: usize,
) -> Result<bool, arch_timer_virt_gicv3::Error> {
    use arch_timer_virt_gicv3::registers::{ListRegister, LrState};
    let priority = chip.vcpu().priority();
    match chip.inject(ListRegister::software(sgi, LrState::Pending, priority)) {
        Ok(()) => Ok(true),
        Err(arch_timer_virt_gicv3::Error::QueueFull { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// [`HostIrqs::private_lr_state`] with GICv3.
fn lr_state_v3(chip: &Gicv3Chip<'_>) -> (u32, u32) {
    let bit = |intid: u32| 1_u32.checked_shl(intid).unwrap_or(0);
    let mut state = (0, 0);
    for lr in chip.list_registers() {
        if lr.state().is_pending() {
            state.0 |= bit(lr.vintid());
        }
        if lr.state().is_active() {
            state.1 |= bit(lr.vintid());
        }
    }
    state
}

/// [`HostIrqs::lr_pending`] with GICv3.
fn lr_pending_v3(chip: &Gicv3Chip<'_>, intid: u32) -> bool {
    chip.list_registers()
        .any(|lr| lr.vintid() == intid && lr.state().is_pending())
}

/// GICv2 through `arch-timer-virt-gicv2`.
pub(crate) type Gicv2 = arch_timer_virt_gicv2::HostGic;
/// The GICv2 backend's `Gic` as this program uses it (`Gicv2`'s
/// [`GicCpu::Chip`]).
type Gicv2Chip<'a> = arch_timer_virt_gicv2::Gic<'a>;
host_irqs!(
    arch_timer_virt_gicv2,
    Gicv2,
    MIGRATION_SLOT_V2,
    inject_sgi_v2,
    lr_state_v2,
    lr_pending_v2
);

/// [`HostIrqs::inject_sgi`] with GICv2: a list register carrying the
/// source vCPU (`GICC_IAR` bits 12:10).
fn inject_sgi_v2(
    chip: &mut Gicv2Chip<'_>,
    sgi: u32,
    source: usize,
) -> Result<bool, arch_timer_virt_gicv2::Error> {
    let source = u32::try_from(source).unwrap_or(u32::MAX);
    let sgi = IntId::new(sgi).map_err(|_| arch_timer_virt_gicv2::Error::InvalidIntId(sgi))?;
    chip.inject_sgi(sgi, source)
}

/// [`HostIrqs::private_lr_state`] with GICv2.
fn lr_state_v2(chip: &Gicv2Chip<'_>) -> (u32, u32) {
    let bit = |intid: u32| 1_u32.checked_shl(intid).unwrap_or(0);
    let mut state = (0, 0);
    for lr in chip.list_registers() {
        if lr.state().is_pending() {
            state.0 |= bit(lr.virtual_id());
        }
        if lr.state().is_active() {
            state.1 |= bit(lr.virtual_id());
        }
    }
    state
}

/// [`HostIrqs::lr_pending`] with GICv2.
fn lr_pending_v2(chip: &Gicv2Chip<'_>, intid: u32) -> bool {
    chip.list_registers()
        .any(|lr| lr.virtual_id() == intid && lr.state().is_pending())
}

/// The host SGI one CPU sends another to make it look at the Linux
/// guest's mailboxes (an IPI between vCPUs on different CPUs, a CPU_ON,
/// the guest's power-off).
pub(crate) const KICK_SGI: u32 = 8;

/// Enables [`KICK_SGI`] on this CPU (GICv3: its redistributor; Group 1 as
/// `HostGic::init` left every SGI).
pub(crate) fn enable_kick_v3(host: &mut Gicv3) {
    let mut rd = host.redistributor();
    let mut sgi = safe_mmio::field!(rd, sgi);
    if let Some(mut p) = safe_mmio::field!(sgi, ipriorityr).get(KICK_SGI as usize) {
        p.write(0x80);
    }
    safe_mmio::field!(sgi, isenabler0).write(1 << KICK_SGI);
}

/// Enables [`KICK_SGI`] on this CPU (GICv2: the banked distributor
/// registers).
pub(crate) fn enable_kick_v2() {
    // SAFETY: GICD_IPRIORITYR and GICD_ISENABLER0 of QEMU `virt`'s
    // distributor, banked per CPU for SGIs; only this CPU's SGI changes.
    unsafe {
        core::ptr::write_volatile((GICD_BASE + 0x400 + KICK_SGI as usize) as *mut u8, 0x80);
        core::ptr::write_volatile((GICD_BASE + 0x100) as *mut u32, 1 << KICK_SGI);
    }
}

/// Sends [`KICK_SGI`] to the CPU with `MPIDR_EL1.Aff0` `cpu` (QEMU `virt`:
/// Aff1..3 are 0 for up to 8 CPUs; a GICv2 CPU interface number is Aff0).
pub(crate) fn kick(gicv3: bool, cpu: usize) {
    let target = 1_u64
        .checked_shl(u32::try_from(cpu).unwrap_or(64))
        .unwrap_or(0)
        & 0xff;
    if gicv3 {
        // SAFETY: ICC_SGI1R_EL1 at EL2 sends a Group 1 SGI; it has no
        // other effect.
        unsafe {
            crate::sysreg::write_sysreg!("S3_0_C12_C11_5", (u64::from(KICK_SGI) << 24) | target);
        }
        crate::sysreg::isb();
    } else {
        // SAFETY: GICD_SGIR of QEMU `virt`'s distributor: sends the SGI.
        unsafe {
            core::ptr::write_volatile(
                (GICD_BASE + 0xf00) as *mut u32,
                ((target as u32) << 16) | KICK_SGI,
            );
        }
    }
}

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
    enable_kick_v3(&mut host);
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
    enable_kick_v2();
    Ok(host)
}
