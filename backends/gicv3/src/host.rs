//! The host side of the GICv3 on one CPU: [`HostGic`].

use core::marker::PhantomData;
use core::ptr::NonNull;

use arch_timer_virt::IntId;
use safe_mmio::{UniqueMmioPointer, field, field_shared};

use crate::Error;
use crate::registers::{
    Affinity, GICR_TYPER_LAST, GICR_TYPER_VLPIS, GICR_WAKER_CHILDREN_ASLEEP,
    GICR_WAKER_PROCESSOR_SLEEP, ICC_CTLR_EOIMODE, ICC_IAR_INTID_MASK, ICC_IGRPEN_ENABLE,
    ICC_SRE_ENABLE, ICC_SRE_SRE, ICH_HCR_EN, ICH_HCR_UIE, Redistributor, SgiFrame,
    active_priority_register_count, list_register_count,
};
use crate::sysreg::{GicSysRegs, SysReg};

/// The INTID of the maintenance interrupt of the virtual CPU interface on
/// most systems (QEMU `virt`, the Arm base boards): PPI 25. Check the
/// firmware description of the machine.
pub const MAINTENANCE_INTID: IntId = IntId::MAINTENANCE;

/// How a CPU is named in [`VgicCpu::loaded_on`](crate::VgicCpu::loaded_on)
/// and [`HostGic::cpu_id`]: its [`Affinity`]. (The GICv2 backend's
/// `CpuId` is a `GICD_ITARGETSR` CPU mask.)
pub type CpuId = Affinity;

/// How many times [`HostGic::init`] polls `GICR_WAKER.ChildrenAsleep`.
const WAKE_POLLS: u32 = 1_000_000;

/// The GICv3 as the hypervisor on *one* CPU uses it: this CPU's system
/// register interface and this CPU's redistributor.
///
/// Built by [`new`](Self::new), which finds the redistributor by walking
/// the `GICR_TYPER` of each one in the region until the affinity matches
/// `MPIDR_EL1`; then [`init`](Self::init) once per boot of the CPU.
///
/// Host interrupts: [`acknowledge`](Self::acknowledge), then
/// [`priority_drop`](Self::priority_drop), then (unless the interrupt is
/// forwarded to a guest with the HW bit) [`deactivate`](Self::deactivate).
///
/// `Send`, so that it can live in a per-CPU static (such as a
/// `critical_section::Mutex<RefCell<Option<HostGic>>>` per CPU) without an
/// unsafe wrapper; not `Sync`. Moving it is fine, *using* it on a CPU other
/// than the one it was built for breaks [`new`](Self::new)'s safety
/// contract (its system registers are the running CPU's, its
/// redistributor the building CPU's).
pub struct HostGic<'r, R: GicSysRegs> {
    regs: R,
    redistributor: UniqueMmioPointer<'r, Redistributor>,
    affinity: Affinity,
    list_registers: usize,
    /// A mask of the list registers (bit `n` for `ICH_LR<n>_EL2`).
    list_register_mask: u16,
    active_priority_registers: usize,
    vcpu_loaded: bool,
    /// Not `Sync`: one CPU uses it at a time (see the type docs for `Send`).
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

impl<'r, R: GicSysRegs> HostGic<'r, R> {
    /// Finds this CPU's redistributor in `redistributors` (the whole
    /// `GICR` region, as an array of 128 KiB GICv3 redistributors; a GICv4
    /// redistributor, `GICR_TYPER.VLPIS` = 1, takes two entries) and keeps
    /// it. Reads only `MPIDR_EL1` and `GICR_TYPER`s.
    ///
    /// # Errors
    ///
    /// [`Error::NoRedistributor`] if no redistributor before the one marked
    /// `Last` (or the end of the region) has this CPU's affinity.
    ///
    /// # Safety
    ///
    /// `regs` are the system registers of the CPU this `HostGic` will be
    /// used on, and only on that CPU. A `UniqueMmioPointer` to the region
    /// promises that nothing else uses any of it: with more than one CPU,
    /// use [`in_shared_region`](Self::in_shared_region), or hand each CPU
    /// only its own redistributor. The redistributor found must not be
    /// used by other code while the `HostGic` lives.
    pub unsafe fn new(
        regs: R,
        mut redistributors: UniqueMmioPointer<'r, [Redistributor]>,
    ) -> Result<Self, Error> {
        // SAFETY: the caller's promises for `new` include those of
        // `in_shared_region`, for the life 'r of the unique pointer.
        unsafe { Self::in_shared_region(regs, redistributors.ptr_nonnull()) }
    }

    /// As [`new`](Self::new), for the `GICR` region that every CPU's
    /// `HostGic` searches: `redistributors` is a plain pointer. The search
    /// reads the read-only `GICR_TYPER`s with volatile reads, and only the
    /// redistributor found becomes a [`UniqueMmioPointer`].
    ///
    /// # Errors
    ///
    /// [`Error::NoRedistributor`], as for `new`.
    ///
    /// # Safety
    ///
    /// `regs` are the system registers of the CPU this `HostGic` will be
    /// used on, and only on that CPU. `redistributors` is valid for
    /// volatile reads and writes as device memory for `'r`; other CPUs may
    /// search it at the same time, but no other code may use the
    /// redistributor whose affinity is this CPU's while the `HostGic`
    /// lives.
    pub unsafe fn in_shared_region(
        regs: R,
        redistributors: NonNull<[Redistributor]>,
    ) -> Result<Self, Error> {
        let affinity = Affinity::from_mpidr(regs.mpidr());
        let base = redistributors.cast::<Redistributor>();
        let mut index = 0usize;
        let found = loop {
            if index >= redistributors.len() {
                break None;
            }
            // SAFETY: `index` is inside the region, which is valid (the
            // caller's promise).
            let rd = unsafe { base.add(index) };
            // SAFETY: GICR_TYPER is read-only and reading it has no side
            // effect: a volatile read through a raw pointer aliases nothing
            // that another CPU's `HostGic` holds uniquely.
            let typer = unsafe { core::ptr::read_volatile(&raw const (*rd.as_ptr()).rd.typer) }.0;
            if Affinity::from_typer(typer) == affinity {
                break Some(index);
            }
            if typer & GICR_TYPER_LAST != 0 {
                break None;
            }
            let step = if typer & GICR_TYPER_VLPIS != 0 { 2 } else { 1 };
            index = match index.checked_add(step) {
                Some(next) => next,
                None => break None,
            };
        };
        let index = found.ok_or(Error::NoRedistributor(affinity))?;
        // SAFETY: inside the region (found by the walk above).
        let rd = unsafe { base.add(index) };
        // SAFETY: this CPU's redistributor, which only this `HostGic` may
        // use while it lives (the caller's promise), valid for 'r.
        let redistributor = unsafe { UniqueMmioPointer::new(rd) };
        Ok(Self {
            regs,
            redistributor,
            affinity,
            list_registers: 0,
            list_register_mask: 0,
            active_priority_registers: 0,
            vcpu_loaded: false,
            _not_sync: PhantomData,
        })
    }

    /// Brings up this CPU's GIC for the hypervisor: wakes the
    /// redistributor (`GICR_WAKER`), puts all SGIs and PPIs in Group 1,
    /// enables the system register interface at EL2 and for EL1
    /// (`ICC_SRE_EL2.SRE` and `.Enable`), sets split priority drop and
    /// deactivation (`ICC_CTLR_EL1.EOImode` = 1), unmasks all priorities
    /// (`ICC_PMR_EL1` = 0xFF), enables Group 1 (`ICC_IGRPEN1_EL1`),
    /// reads the number of list registers from `ICH_VTR_EL2`, and leaves the
    /// virtual CPU interface disabled and empty: clears `ICH_HCR_EL2.En`
    /// and `UIE` (the other bits are kept) and zeroes the implemented list
    /// registers. Call it before any vCPU is loaded on this CPU.
    ///
    /// The distributor (affinity routing, group enables) is not touched:
    /// that is the system's boot code's job.
    ///
    /// # Errors
    ///
    /// [`Error::RedistributorAsleep`] if the redistributor does not wake.
    pub fn init(&mut self) -> Result<(), Error> {
        let mut rd = field!(self.redistributor, rd);
        let mut waker = field!(rd, waker);
        let value = waker.read();
        waker.write(value & !GICR_WAKER_PROCESSOR_SLEEP);
        let mut polls = 0u32;
        while waker.read() & GICR_WAKER_CHILDREN_ASLEEP != 0 {
            polls = polls.saturating_add(1);
            if polls >= WAKE_POLLS {
                return Err(Error::RedistributorAsleep);
            }
            core::hint::spin_loop();
        }
        let mut sgi = self.sgi();
        field!(sgi, igroupr0).write(u32::MAX);

        let sre = self.regs.read(SysReg::IccSreEl2);
        self.regs
            .write(SysReg::IccSreEl2, sre | ICC_SRE_SRE | ICC_SRE_ENABLE);
        self.regs.isb();
        let ctlr = self.regs.read(SysReg::IccCtlrEl1);
        self.regs.write(SysReg::IccCtlrEl1, ctlr | ICC_CTLR_EOIMODE);
        self.regs.write(SysReg::IccPmrEl1, 0xFF);
        self.regs.write(SysReg::IccIgrpen1El1, ICC_IGRPEN_ENABLE);

        let vtr = self.regs.read(SysReg::IchVtrEl2);
        self.list_registers = list_register_count(vtr);
        // At most 16 list registers: a shift out of range is all of them.
        let count = u32::try_from(self.list_registers).unwrap_or(u32::MAX);
        self.list_register_mask = 1_u16
            .checked_shl(count)
            .map_or(u16::MAX, |bit| bit.wrapping_sub(1));
        self.active_priority_registers = active_priority_register_count(vtr);
        // Whatever ran before (firmware, an earlier boot) may have left the
        // virtual CPU interface enabled with interrupts in its list
        // registers: disable it and empty them.
        let hcr = self.regs.read(SysReg::IchHcrEl2);
        self.regs
            .write(SysReg::IchHcrEl2, hcr & !(ICH_HCR_EN | ICH_HCR_UIE));
        for n in 0..self.list_registers {
            self.write_lr(u8::try_from(n).unwrap_or(u8::MAX), 0);
        }
        self.regs.isb();
        Ok(())
    }

    /// Acknowledges the highest priority pending Group 1 interrupt
    /// (`ICC_IAR1_EL1`), which becomes active. `None` for the special
    /// INTIDs 1020..=1023 (nothing to handle).
    pub fn acknowledge(&mut self) -> Option<IntId> {
        // Masked to 24 bits: the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let intid = (self.regs.read_iar1() & ICC_IAR_INTID_MASK) as u32;
        // The special INTIDs 1020..=1023 (and the reserved range, which
        // the GIC never returns) are no interrupt.
        IntId::new(intid).ok()
    }

    /// Drops the running priority of `intid` (`ICC_EOIR1_EL1`). With
    /// EOImode = 1 the interrupt stays active until
    /// [`deactivate`](Self::deactivate) or, for an interrupt forwarded with
    /// the HW bit, until the guest deactivates it.
    pub fn priority_drop(&mut self, intid: IntId) {
        self.regs.write_eoir1(u64::from(intid.get()));
    }

    /// Deactivates `intid` (`ICC_DIR_EL1`).
    pub fn deactivate(&mut self, intid: IntId) {
        self.regs.write_dir(u64::from(intid.get()));
    }

    /// Sets (`GICR_ISACTIVER0`) or clears (`GICR_ICACTIVER0`) the active
    /// state of `ppi` on this CPU.
    pub fn set_ppi_active(&mut self, ppi: IntId, active: bool) {
        let mut sgi = self.sgi();
        if active {
            field!(sgi, isactiver0).write(ppi.bit());
        } else {
            field!(sgi, icactiver0).write(ppi.bit());
        }
    }

    /// Masks (`GICR_ICENABLER0`) or unmasks (`GICR_ISENABLER0`) `ppi` on
    /// this CPU.
    pub fn set_ppi_masked(&mut self, ppi: IntId, masked: bool) {
        let mut sgi = self.sgi();
        if masked {
            field!(sgi, icenabler0).write(ppi.bit());
        } else {
            field!(sgi, isenabler0).write(ppi.bit());
        }
    }

    /// Enables (unmasks) `ppi` with `priority` (lower is more urgent), for
    /// the hypervisor's own PPIs: e.g. the EL2 physical timer (usually
    /// 26), the virtual timer it forwards (27) and the maintenance
    /// interrupt (25).
    pub fn enable_ppi(&mut self, ppi: IntId, priority: u8) {
        self.set_ppi_priority(ppi, priority);
        self.set_ppi_masked(ppi, false);
    }

    /// Sets the priority of `ppi` (`GICR_IPRIORITYR`, one byte per INTID).
    pub fn set_ppi_priority(&mut self, ppi: IntId, priority: u8) {
        let index = usize::try_from(ppi.get()).unwrap_or(usize::MAX);
        let mut sgi = self.sgi();
        if let Some(mut byte) = field!(sgi, ipriorityr).get(index) {
            byte.write(priority);
        }
    }

    /// Whether `ppi` is active on this CPU (`GICR_ISACTIVER0`).
    #[must_use]
    pub fn ppi_active(&self, ppi: IntId) -> bool {
        let sgi = field_shared!(self.redistributor, sgi);
        field_shared!(sgi, isactiver0).read() & ppi.bit() != 0
    }

    /// Whether `ppi` is enabled (unmasked) on this CPU (`GICR_ISENABLER0`).
    #[must_use]
    pub fn ppi_enabled(&self, ppi: IntId) -> bool {
        let sgi = field_shared!(self.redistributor, sgi);
        field_shared!(sgi, isenabler0).read() & ppi.bit() != 0
    }

    /// This CPU's affinity, which named its redistributor.
    #[must_use]
    pub const fn affinity(&self) -> Affinity {
        self.affinity
    }

    /// This CPU's identity as [`VgicCpu::loaded_on`](crate::VgicCpu::loaded_on)
    /// reports it: its [`affinity`](Self::affinity).
    #[must_use]
    pub const fn cpu_id(&self) -> CpuId {
        self.affinity
    }

    /// Whether the maintenance interrupt is asserted now: some maintenance
    /// condition holds (`ICH_MISR_EL2` != 0). Read it right after a guest
    /// exit and before [`Gic::sync_after_exit`](crate::Gic::sync_after_exit),
    /// which handles (and so clears) the EOI condition that raised it.
    #[must_use]
    pub fn maintenance_asserted(&self) -> bool {
        self.regs.read(SysReg::IchMisrEl2) != 0
    }

    /// The number of list registers (`ICH_VTR_EL2.ListRegs + 1`); 0 before
    /// [`init`](Self::init).
    #[must_use]
    pub const fn list_register_count(&self) -> usize {
        self.list_registers
    }

    /// The list registers as a mask, bit `n` for `ICH_LR<n>_EL2`; 0 before
    /// [`init`](Self::init).
    #[must_use]
    pub const fn list_register_mask(&self) -> u16 {
        self.list_register_mask
    }

    /// The number of active priority registers per group; 0 before
    /// [`init`](Self::init).
    #[must_use]
    pub const fn active_priority_register_count(&self) -> usize {
        self.active_priority_registers
    }

    /// Whether a vCPU's state is loaded on this CPU's virtual CPU interface
    /// ([`Gic::vcpu_load`](crate::Gic::vcpu_load)).
    #[must_use]
    pub const fn vcpu_loaded(&self) -> bool {
        self.vcpu_loaded
    }

    pub(crate) const fn set_vcpu_loaded(&mut self, loaded: bool) {
        self.vcpu_loaded = loaded;
    }

    /// The system registers, for what this type does not cover.
    #[must_use]
    pub const fn regs(&self) -> &R {
        &self.regs
    }

    /// The system registers, for writes that are not to a list register.
    pub(crate) const fn sysregs_mut(&mut self) -> &mut R {
        &mut self.regs
    }

    /// Writes list register `n` (0..=15).
    pub(crate) fn write_lr(&mut self, n: u8, bits: u64) {
        self.regs.write(SysReg::IchLrEl2(n), bits);
    }

    /// This CPU's redistributor, for what this type does not cover.
    pub fn redistributor(&mut self) -> UniqueMmioPointer<'_, Redistributor> {
        self.redistributor.reborrow()
    }

    fn sgi(&mut self) -> UniqueMmioPointer<'_, SgiFrame> {
        field!(self.redistributor, sgi)
    }
}

/// The run loop's view: one body for both GIC versions.
/// Host tests on the fake registers (feature `fake`).
#[cfg(any(test, feature = "fake"))]
#[cfg_attr(docsrs, doc(cfg(feature = "fake")))]
impl HostGic<'_, crate::sysreg::FakeSysRegs> {
    /// The fake system registers, for a test that plays the GIC (an
    /// interrupt to acknowledge in `iar`, a list register the guest
    /// changed). Only for the fake: with real registers a write here would
    /// bypass this driver's bookkeeping.
    ///
    /// A list register changed here is seen by [`Gic`](crate::Gic) at the
    /// next [`Gic::sync_after_exit`](crate::Gic::sync_after_exit), as one
    /// the guest changed is after a real exit.
    pub const fn regs_mut(&mut self) -> &mut crate::sysreg::FakeSysRegs {
        &mut self.regs
    }
}

impl<'r, R: GicSysRegs> arch_timer_virt::GicCpu for HostGic<'r, R> {
    type Vgic = crate::VgicCpu;
    type Error = Error;
    type Chip<'a>
        = crate::Gic<'a, 'r, R>
    where
        Self: 'a;

    fn chip<'a>(&'a mut self, vgic: &'a mut crate::VgicCpu) -> Self::Chip<'a> {
        crate::Gic::new(self, vgic)
    }
    fn maintenance_intid(&self) -> IntId {
        MAINTENANCE_INTID
    }
    fn acknowledge(&mut self) -> Option<IntId> {
        Self::acknowledge(self)
    }
    fn priority_drop(&mut self, intid: IntId) {
        Self::priority_drop(self, intid);
    }
    fn deactivate(&mut self, intid: IntId) {
        Self::deactivate(self, intid);
    }
    fn maintenance_asserted(&self) -> bool {
        Self::maintenance_asserted(self)
    }
    fn vcpu_load(&mut self, vgic: &mut crate::VgicCpu) -> Result<(), Error> {
        crate::Gic::new(self, vgic).vcpu_load()
    }
    fn vcpu_put(&mut self, vgic: &mut crate::VgicCpu) -> Result<(), Error> {
        crate::Gic::new(self, vgic).vcpu_put()
    }
    fn sync_after_exit(&mut self, vgic: &mut crate::VgicCpu) -> Result<(), Error> {
        crate::Gic::new(self, vgic).sync_after_exit().map(drop)
    }
    fn maintenance(&mut self, vgic: &mut crate::VgicCpu) -> Result<(), Error> {
        crate::Gic::new(self, vgic).maintenance().map(drop)
    }
}
