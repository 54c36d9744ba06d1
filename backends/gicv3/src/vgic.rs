//! The virtual side: a vCPU's list register state [`VgicCpu`], and [`Gic`],
//! the [`IrqChip`] that drives it together with the host side.

use arch_timer_virt::{IntId, IrqChip, VirtualState};

use crate::registers::{
    ICH_HCR_EN, ICH_HCR_UIE, ListRegister, LrState, MAX_ACTIVE_PRIORITY_REGISTERS,
    MAX_LIST_REGISTERS,
};
use crate::sysreg::{GicSysRegs, SysReg};
use crate::{CpuId, Error, HostGic};

/// How many pending virtual interrupts wait for a free list register at
/// most, per vCPU: the capacity of the overflow queue (a
/// [`heapless::Vec`] inside [`VgicCpu`], oldest first). One more is
/// refused with [`Error::QueueFull`].
pub const QUEUE_CAPACITY: usize = 16;

/// The overflow queue: pending virtual interrupts waiting for a free list
/// register, oldest first.
type Queue = heapless::Vec<ListRegister, QUEUE_CAPACITY>;

/// The priority [`VgicCpu::new`] injects virtual interrupts with.
pub const DEFAULT_PRIORITY: u8 = 0xA0;

/// Index 0..=15 of a PPI in per-PPI tables; `None` for an SGI, SPI or LPI
/// (which must never alias a PPI's slot).
fn ppi_index(intid: IntId) -> Option<usize> {
    if intid.is_ppi() {
        // A PPI is 16..=31: bits 3:0 tell them apart.
        usize::try_from(intid.get() & 0xF).ok()
    } else {
        None
    }
}

/// `intid` if it is a PPI.
fn ppi_id(intid: IntId) -> Result<IntId, Error> {
    if intid.is_ppi() {
        Ok(intid)
    } else {
        Err(Error::InvalidIntId(intid.get()))
    }
}

/// Takes the lowest set bit out of `mask` and returns its number.
#[inline]
fn take_lowest(mask: &mut u16) -> Option<usize> {
    if *mask == 0 {
        return None;
    }
    let n = usize::try_from(mask.trailing_zeros()).unwrap_or(0);
    *mask &= mask.wrapping_sub(1);
    Some(n)
}

/// The `u8` number of list register `n` (`n` < 16).
fn lr_number(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

/// List register `n` (`n` < 16).
fn lr_reg(n: usize) -> SysReg {
    SysReg::IchLrEl2(lr_number(n))
}

/// One vCPU's virtual GIC CPU interface state: plain data, no hardware.
///
/// The list registers are kept here whether or not the vCPU is loaded:
/// while it is loaded ([`Gic::vcpu_load`]) every write goes to the
/// hardware too, and [`Gic::sync_after_exit`] reads back the ones in use
/// (the guest changes their state as it takes and completes interrupts),
/// so between an exit and the next entry every lookup is a memory read.
/// After [`Gic::vcpu_put`] the hardware holds nothing of the vCPU. It also holds what the hardware does
/// not: which virtual PPIs are backed by a physical PPI (HW bit), the level
/// of the virtual PPIs that are not (software level interrupts), and the
/// pending interrupts waiting for a free list register.
#[derive(Clone, Debug)]
pub struct VgicCpu {
    lrs: [ListRegister; MAX_LIST_REGISTERS],
    /// Bit *n*: `lrs[n]` holds an interrupt (is not free).
    used: u16,
    /// `ICH_HCR_EL2.UIE` as this backend last wrote it while loaded.
    uie: bool,
    vmcr: u64,
    ap0r: [u64; MAX_ACTIVE_PRIORITY_REGISTERS],
    ap1r: [u64; MAX_ACTIVE_PRIORITY_REGISTERS],
    mapped: [Option<IntId>; 16],
    levels: u32,
    queue: Queue,
    priority: u8,
    /// The affinity of the CPU whose list registers hold the state.
    loaded_on: Option<CpuId>,
}

impl Default for VgicCpu {
    fn default() -> Self {
        Self::new()
    }
}

impl VgicCpu {
    /// A vCPU with no interrupt pending or active, nothing mapped, and
    /// [`DEFAULT_PRIORITY`] for what it injects.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            lrs: [ListRegister::EMPTY; MAX_LIST_REGISTERS],
            used: 0,
            uie: false,
            vmcr: 0,
            ap0r: [0; MAX_ACTIVE_PRIORITY_REGISTERS],
            ap1r: [0; MAX_ACTIVE_PRIORITY_REGISTERS],
            mapped: [None; 16],
            levels: 0,
            queue: Queue::new(),
            priority: DEFAULT_PRIORITY,
            loaded_on: None,
        }
    }

    /// The priority the [`IrqChip`] methods inject virtual interrupts with.
    #[must_use]
    pub const fn priority(&self) -> u8 {
        self.priority
    }

    /// Sets the priority the [`IrqChip`] methods inject virtual interrupts
    /// with (the guest's virtual PMR must let it through).
    pub const fn set_priority(&mut self, priority: u8) {
        self.priority = priority;
    }

    /// Whether the state is on the hardware ([`Gic::vcpu_load`]).
    #[must_use]
    pub const fn is_loaded(&self) -> bool {
        self.loaded_on.is_some()
    }

    /// The [`HostGic::cpu_id`] (its [`affinity`](HostGic::affinity)) of the
    /// CPU the state is loaded on, if it is.
    #[must_use]
    pub const fn loaded_on(&self) -> Option<CpuId> {
        self.loaded_on
    }

    /// The list registers as of the last write or
    /// [`Gic::sync_after_exit`] (while loaded, the guest may have changed
    /// their state since it was last entered).
    #[must_use]
    pub const fn saved_list_registers(&self) -> &[ListRegister; MAX_LIST_REGISTERS] {
        &self.lrs
    }

    /// Records list register `n` (`n` < 16) and whether it is in use; a
    /// free one is kept as [`ListRegister::EMPTY`].
    #[inline]
    fn set_lr(&mut self, n: usize, lr: ListRegister) {
        if let Some(slot) = self.lrs.get_mut(n) {
            let bit = 1_u16 << n;
            if lr.is_free() {
                *slot = ListRegister::EMPTY;
                self.used &= !bit;
            } else {
                *slot = lr;
                self.used |= bit;
            }
        }
    }

    /// The saved `ICH_VMCR_EL2` (stale while loaded).
    #[must_use]
    pub const fn vmcr(&self) -> u64 {
        self.vmcr
    }

    /// Sets the saved `ICH_VMCR_EL2` (a VMM restoring a vCPU); takes effect
    /// at the next [`Gic::vcpu_load`].
    pub const fn set_vmcr(&mut self, vmcr: u64) {
        self.vmcr = vmcr;
    }

    /// The physical INTID the virtual INTID `intid` is mapped to, if any
    /// (only PPIs are ever mapped here: `None` for any other INTID).
    #[must_use]
    pub fn mapping(&self, intid: IntId) -> Option<IntId> {
        self.ppi_mapping(ppi_id(intid).ok()?)
    }

    /// The level of the software (not mapped) virtual INTID `intid` as last
    /// set (only PPIs have a level here: `false` for any other INTID).
    #[must_use]
    pub fn level(&self, intid: IntId) -> bool {
        ppi_id(intid).is_ok_and(|ppi| self.ppi_level(ppi))
    }

    /// The physical PPI the virtual PPI `intid` is mapped to.
    #[inline]
    fn ppi_mapping(&self, intid: IntId) -> Option<IntId> {
        self.mapped.get(ppi_index(intid)?).copied().flatten()
    }

    /// Records a software (unmapped) PPI's line level; an SGI, SPI or
    /// hardware-mapped PPI keeps none.
    #[inline]
    fn record_level(&mut self, intid: IntId, level: bool) {
        if self.ppi_mapping(intid).is_none() && intid.is_ppi() {
            if level {
                self.levels |= intid.bit();
            } else {
                self.levels &= !intid.bit();
            }
        }
    }

    /// No list register in use, nothing queued and no underflow interrupt
    /// asked for: there is nothing to withdraw (the usual case).
    #[inline]
    fn holds_nothing(&self) -> bool {
        self.used == 0 && self.queue.is_empty() && !self.uie
    }

    /// The level of the software (not mapped) virtual PPI `intid`.
    #[inline]
    const fn ppi_level(&self, intid: IntId) -> bool {
        intid.is_ppi() && self.levels & intid.bit() != 0
    }

    /// The pending interrupts waiting for a free list register, oldest
    /// first.
    #[must_use]
    #[inline]
    pub fn queued(&self) -> &[ListRegister] {
        &self.queue
    }

    #[inline]
    fn queue_position(&self, vintid: u32) -> Option<usize> {
        self.queued().iter().position(|lr| lr.vintid() == vintid)
    }

    fn push(&mut self, lr: ListRegister) -> Result<(), Error> {
        self.queue
            .push(lr)
            .map_err(|lr| Error::QueueFull { intid: lr.vintid() })
    }

    /// Takes the queued interrupt at `position` out, keeping the others'
    /// order.
    fn remove(&mut self, position: usize) -> Option<ListRegister> {
        // `Vec::remove` panics past the end: check first.
        (position < self.queue.len()).then(|| self.queue.remove(position))
    }

    /// The list register for a virtual PPI raised now: HW with the physical
    /// PPI when mapped, otherwise software with EOI maintenance so that the
    /// line is looked at again when the guest deactivates it.
    #[inline]
    fn lr_for(&self, intid: IntId) -> ListRegister {
        match self.ppi_mapping(intid).and_then(|host| {
            ListRegister::hardware(intid.get(), host.get(), LrState::Pending, self.priority)
        }) {
            Some(lr) => lr,
            None => ListRegister::software(intid.get(), LrState::Pending, self.priority)
                .with_eoi_maintenance(true),
        }
    }
}

/// What [`Gic::sync_after_exit`] or [`Gic::maintenance`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncReport {
    /// Software interrupts the guest deactivated with their line still
    /// high, made pending again.
    pub reinjected: usize,
    /// Software interrupts the guest deactivated with their line low, whose
    /// list registers were freed.
    pub retired: usize,
    /// Queued interrupts moved into a free list register.
    pub refilled: usize,
}

/// The GICv3 [`IrqChip`] for one vCPU on one CPU: this CPU's [`HostGic`]
/// and the vCPU's [`VgicCpu`], borrowed for as long as the caller likes
/// (typically one run-loop iteration, or one call).
///
/// The methods work whether the vCPU is loaded (list registers on the
/// hardware) or not (list registers in the [`VgicCpu`]).
pub struct Gic<'a, 'r, R: GicSysRegs> {
    host: &'a mut HostGic<'r, R>,
    vcpu: &'a mut VgicCpu,
}

impl<'a, 'r, R: GicSysRegs> Gic<'a, 'r, R> {
    /// Lends `host` and `vcpu` to the chip.
    pub const fn new(host: &'a mut HostGic<'r, R>, vcpu: &'a mut VgicCpu) -> Self {
        Self { host, vcpu }
    }

    /// The host side.
    pub const fn host(&mut self) -> &mut HostGic<'r, R> {
        self.host
    }

    /// The vCPU state.
    pub const fn vcpu(&mut self) -> &mut VgicCpu {
        self.vcpu
    }

    /// The vCPU is scheduled onto this CPU: writes its `ICH_VMCR_EL2`,
    /// active priority registers and list registers, enables the virtual
    /// CPU interface (`ICH_HCR_EL2.En`; the other bits of `ICH_HCR_EL2`,
    /// e.g. traps the hypervisor set, are kept), and moves queued
    /// interrupts into free list registers (`UIE` while some stay queued
    /// and the underflow interrupt can free a register for them).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyLoaded`]; [`Error::InterfaceBusy`] if another vCPU
    /// is loaded on this CPU; [`Error::TooFewListRegisters`] if the saved
    /// state uses list registers this CPU lacks. Nothing is written then.
    #[doc(alias = "vgic_v3_load")]
    pub fn vcpu_load(&mut self) -> Result<(), Error> {
        if self.vcpu.is_loaded() {
            return Err(Error::AlreadyLoaded);
        }
        if self.host.vcpu_loaded() {
            return Err(Error::InterfaceBusy);
        }
        let available = self.host.list_register_count();
        if let Some(extra) = self
            .vcpu
            .lrs
            .iter()
            .rposition(|lr| !lr.is_free())
            .filter(|&n| n >= available)
        {
            return Err(Error::TooFewListRegisters {
                needed: extra.saturating_add(1),
                available,
            });
        }
        let active_priority = self.host.active_priority_register_count();
        let regs = self.host.sysregs_mut();
        regs.write(SysReg::IchVmcrEl2, self.vcpu.vmcr);
        for (n, (&ap0, &ap1)) in self
            .vcpu
            .ap0r
            .iter()
            .zip(&self.vcpu.ap1r)
            .enumerate()
            .take(active_priority)
        {
            let n = u8::try_from(n).unwrap_or(u8::MAX);
            regs.write(SysReg::IchAp0rEl2(n), ap0);
            regs.write(SysReg::IchAp1rEl2(n), ap1);
        }
        for (n, lr) in self.vcpu.lrs.iter().enumerate().take(available) {
            self.host.write_lr(lr_number(n), lr.bits());
        }
        // Read-modify-write: the hypervisor's trap and maintenance
        // enables in ICH_HCR_EL2 stay as it set them.
        let regs = self.host.sysregs_mut();
        let hcr = regs.read(SysReg::IchHcrEl2);
        regs.write(SysReg::IchHcrEl2, (hcr & !ICH_HCR_UIE) | ICH_HCR_EN);
        self.vcpu.uie = false;
        self.vcpu.loaded_on = Some(self.host.cpu_id());
        self.host.set_vcpu_loaded(true);
        // Queued interrupts into the free list registers (this CPU may have
        // more than the last one); sets UIE if still needed.
        self.refill();
        Ok(())
    }

    /// The vCPU is scheduled away from this CPU: saves the list registers
    /// in use (the others stay empty) and clears them,
    /// saves `ICH_VMCR_EL2` and the active priority registers, and disables
    /// the virtual CPU interface (clears `ICH_HCR_EL2.En` and `UIE`, keeps
    /// the other bits).
    ///
    /// # Errors
    ///
    /// [`Error::NotLoaded`]; [`Error::LoadedOnOtherCpu`] if it is loaded
    /// on another CPU (put it there). Nothing is touched then.
    #[doc(alias = "vgic_v3_put")]
    pub fn vcpu_put(&mut self) -> Result<(), Error> {
        if !self.on_this_cpu()? {
            return Err(Error::NotLoaded);
        }
        let active_priority = self.host.active_priority_register_count();
        // `vcpu_load` refused state in list registers this CPU lacks: the
        // ones in use are all implemented.
        let mut used = self.vcpu.used;
        while let Some(n) = take_lowest(&mut used) {
            let regs = self.host.sysregs_mut();
            let lr = ListRegister::from_bits(regs.read(lr_reg(n)));
            regs.write(lr_reg(n), 0);
            self.vcpu.set_lr(n, lr);
        }
        let regs = self.host.sysregs_mut();
        self.vcpu.vmcr = regs.read(SysReg::IchVmcrEl2);
        for (n, (ap0, ap1)) in self
            .vcpu
            .ap0r
            .iter_mut()
            .zip(self.vcpu.ap1r.iter_mut())
            .enumerate()
            .take(active_priority)
        {
            let n = u8::try_from(n).unwrap_or(u8::MAX);
            *ap0 = regs.read(SysReg::IchAp0rEl2(n));
            *ap1 = regs.read(SysReg::IchAp1rEl2(n));
        }
        let hcr = regs.read(SysReg::IchHcrEl2);
        regs.write(SysReg::IchHcrEl2, hcr & !(ICH_HCR_EN | ICH_HCR_UIE));
        regs.isb();
        self.vcpu.uie = false;
        self.vcpu.loaded_on = None;
        self.host.set_vcpu_loaded(false);
        Ok(())
    }

    /// Right after the guest exits (before the timer's
    /// [`after_exit`](arch_timer_virt::VcpuTimer::after_exit)): handles
    /// the EOI maintenance of software level interrupts the guest has
    /// deactivated (made pending again if the line is still high, dropped
    /// otherwise), then moves queued interrupts into free list registers.
    ///
    /// Works on the saved state when the vCPU is not loaded.
    ///
    /// # Errors
    ///
    /// [`Error::LoadedOnOtherCpu`]; nothing is touched.
    #[doc(alias = "kvm_vgic_sync_hwstate")]
    pub fn sync_after_exit(&mut self) -> Result<SyncReport, Error> {
        let mut report = SyncReport::default();
        let here = self.on_this_cpu()?;
        // The guest only moves the interrupts it was given along (pending,
        // active, deactivated): a free list register stays free, so the
        // ones in use are all there is to read back. `ICH_EISR_EL2` follows
        // from them.
        let mut eisr = 0_u16;
        let mut used = self.vcpu.used;
        while let Some(n) = take_lowest(&mut used) {
            let lr = if here {
                ListRegister::from_bits(self.host.regs().read(lr_reg(n)))
            } else {
                self.read_lr(n)
            };
            if lr.needs_eoi_maintenance() {
                eisr |= 1 << n;
            }
            self.vcpu.set_lr(n, lr);
        }
        while let Some(n) = take_lowest(&mut eisr) {
            let lr = self.read_lr(n);
            let still_high = IntId::ppi(lr.vintid()).is_ok_and(|intid| {
                self.vcpu.ppi_mapping(intid).is_none() && self.vcpu.ppi_level(intid)
            });
            let next = if still_high {
                report.reinjected = report.reinjected.saturating_add(1);
                lr.with_state(LrState::Pending)
            } else {
                report.retired = report.retired.saturating_add(1);
                ListRegister::EMPTY
            };
            self.write_lr(n, next);
        }
        report.refilled = self.refill();
        Ok(report)
    }

    /// The maintenance interrupt (usually PPI 25) was taken: the same work
    /// as [`sync_after_exit`](Self::sync_after_exit). The maintenance
    /// interrupt is level-sensitive and drops once this is done.
    ///
    /// # Errors
    ///
    /// [`Error::LoadedOnOtherCpu`]; nothing is touched.
    pub fn maintenance(&mut self) -> Result<SyncReport, Error> {
        self.sync_after_exit()
    }

    /// Makes the virtual interrupt `lr` (its vINTID, and the state,
    /// priority, group, HW/EOI bits to use) pending for the guest, for
    /// interrupts other than the timer's: into a free list register, or
    /// the queue. If the vINTID is already in a list register it is not
    /// duplicated: an active software one becomes pending and active.
    ///
    /// # Errors
    ///
    /// [`Error::QueueFull`]; [`Error::LoadedOnOtherCpu`].
    pub fn inject(&mut self, lr: ListRegister) -> Result<(), Error> {
        self.on_this_cpu()?;
        let lr = lr.with_state(LrState::Pending);
        if let Some((n, current)) = self.find_lr(lr.vintid()) {
            match current.state() {
                LrState::Pending | LrState::PendingActive => {}
                // A HW interrupt's pending state lives in the physical
                // GIC; it must not be pending and active in the LR.
                LrState::Active => {
                    if !current.is_hw() {
                        self.write_lr(n, current.with_state(LrState::PendingActive));
                    }
                }
                // Deactivated, EOI maintenance not handled yet: reuse it.
                LrState::Invalid => self.write_lr(n, lr),
            }
            return Ok(());
        }
        if self.vcpu.queue_position(lr.vintid()).is_some() {
            return Ok(());
        }
        if let Some(n) = self.free_lr() {
            self.write_lr(n, lr);
            return Ok(());
        }
        self.vcpu.push(lr)?;
        self.update_underflow();
        Ok(())
    }

    /// Withdraws a pending virtual interrupt: removes it from the queue,
    /// empties a list register holding it pending, takes the pending state
    /// off a software one that is pending and active. An active interrupt
    /// is left to the guest.
    ///
    /// # Errors
    ///
    /// [`Error::LoadedOnOtherCpu`]; nothing is touched.
    pub fn withdraw(&mut self, vintid: IntId) -> Result<(), Error> {
        let vintid = vintid.get();
        self.on_this_cpu()?;
        if self.vcpu.holds_nothing() {
            return Ok(());
        }
        if let Some(position) = self.vcpu.queue_position(vintid) {
            self.vcpu.remove(position);
            self.update_underflow();
        }
        if let Some((n, current)) = self.find_lr(vintid) {
            match current.state() {
                LrState::Pending | LrState::Invalid => self.write_lr(n, ListRegister::EMPTY),
                LrState::PendingActive if !current.is_hw() => {
                    self.write_lr(n, current.with_state(LrState::Active));
                }
                LrState::PendingActive | LrState::Active => {}
            }
        }
        self.refill();
        Ok(())
    }

    /// Sets the level of the vCPU's virtual PPI `intid`: the
    /// [`IrqChip::set_virtual_level`] of this backend without importing the
    /// trait, named as in `arch-timer-virt-gicv2`. For other INTIDs use
    /// [`inject`](Self::inject)/[`withdraw`](Self::withdraw).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIntId`] unless `intid` is a PPI (16..=31); as
    /// [`IrqChip::set_virtual_level`] otherwise.
    pub fn set_level(&mut self, intid: IntId, level: bool) -> Result<(), Error> {
        self.set_virtual_level(ppi_id(intid)?, level)
    }

    /// Whether the vCPU's virtual PPI `intid` is active (or active and
    /// pending) in a list register.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIntId`] unless `intid` is a PPI;
    /// [`Error::LoadedOnOtherCpu`].
    pub fn is_active(&self, intid: IntId) -> Result<bool, Error> {
        self.virtual_active(ppi_id(intid)?)
    }

    /// Maps the vCPU's virtual PPI `intid` to the physical PPI `host`
    /// (injected with HW = 1 from now on).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIntId`] or [`Error::InvalidPhysicalIntId`] unless
    /// both are PPIs; [`Error::HostIntIdInUse`].
    pub fn map(&mut self, intid: IntId, host: IntId) -> Result<(), Error> {
        if !host.is_ppi() {
            return Err(Error::InvalidPhysicalIntId(host.get()));
        }
        self.map_virtual(ppi_id(intid)?, host)
    }

    /// Undoes [`map`](Self::map); unmapping an unmapped PPI does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIntId`] unless `intid` is a PPI.
    pub fn unmap(&mut self, intid: IntId) -> Result<(), Error> {
        self.unmap_virtual(ppi_id(intid)?)
    }

    /// The list registers as of the last write or
    /// [`sync_after_exit`](Self::sync_after_exit): as the guest left them
    /// at its last exit, once that is synchronized (stale while the vCPU is
    /// loaded on another CPU).
    pub fn list_registers(&self) -> impl Iterator<Item = ListRegister> + '_ {
        (0..self.host.list_register_count()).map(|n| self.read_lr(n))
    }

    /// The list register `index` (see
    /// [`list_registers`](Self::list_registers)); `None` past the
    /// implemented list registers.
    #[must_use]
    pub fn list_register(&self, index: usize) -> Option<ListRegister> {
        (index < self.host.list_register_count()).then(|| self.read_lr(index))
    }

    /// Where the vCPU's list registers are: `true` on this CPU's hardware,
    /// `false` in memory.
    ///
    /// # Errors
    ///
    /// [`Error::LoadedOnOtherCpu`]: on another CPU's hardware, which this
    /// `HostGic` cannot reach.
    #[inline]
    fn on_this_cpu(&self) -> Result<bool, Error> {
        match self.vcpu.loaded_on {
            None => Ok(false),
            Some(affinity) if affinity == self.host.affinity() => Ok(true),
            Some(_) => Err(Error::LoadedOnOtherCpu),
        }
    }

    /// Loaded on this CPU: the list registers are on this CPU's hardware.
    #[inline]
    fn here(&self) -> bool {
        self.vcpu.loaded_on == Some(self.host.affinity())
    }

    /// List register `n` as last written or read back (memory only).
    #[inline]
    fn read_lr(&self, n: usize) -> ListRegister {
        self.vcpu.lrs.get(n).copied().unwrap_or_default()
    }

    /// Writes list register `n`: in memory, and on the hardware while the
    /// vCPU is loaded here.
    #[inline]
    fn write_lr(&mut self, n: usize, lr: ListRegister) {
        self.vcpu.set_lr(n, lr);
        if self.here() {
            self.host.write_lr(lr_number(n), lr.bits());
        }
    }

    /// The list registers in use, with their numbers (memory only).
    #[inline]
    fn maybe_occupied(&self) -> impl Iterator<Item = (usize, ListRegister)> + '_ {
        // A walk over the set bits: nothing in use (the usual case) costs a
        // test, not a pass over every list register.
        let mut used = self.vcpu.used & self.host.list_register_mask();
        core::iter::from_fn(move || take_lowest(&mut used)).map(|n| (n, self.read_lr(n)))
    }

    /// Where `vintid` stands ([`IrqChip::virtual_state`] without the CPU
    /// check): as its list register says, else pending if queued.
    #[inline]
    fn state_of(&self, vintid: u32) -> VirtualState {
        if let Some((_, lr)) = self.find_lr(vintid) {
            return match lr.state() {
                LrState::Invalid => VirtualState::Inactive,
                LrState::Pending => VirtualState::Pending,
                LrState::Active => VirtualState::Active,
                LrState::PendingActive => VirtualState::PendingActive,
            };
        }
        if self.vcpu.queue_position(vintid).is_some() {
            VirtualState::Pending
        } else {
            VirtualState::Inactive
        }
    }

    /// The list register holding `vintid` (in any state but free).
    #[inline]
    fn find_lr(&self, vintid: u32) -> Option<(usize, ListRegister)> {
        self.maybe_occupied()
            .find(|(_, lr)| !lr.is_free() && lr.vintid() == vintid)
    }

    /// How many list registers hold a valid interrupt (State not invalid),
    /// as the underflow condition counts them.
    fn valid_lrs(&self) -> usize {
        self.list_registers()
            .filter(|lr| lr.state() != LrState::Invalid)
            .count()
    }

    #[inline]
    fn free_lr(&self) -> Option<usize> {
        let mut free = !self.vcpu.used & self.host.list_register_mask();
        take_lowest(&mut free)
    }

    /// Moves queued interrupts into free list registers; returns how many.
    /// Nothing to do (the usual case) costs two loads.
    #[inline]
    fn refill(&mut self) -> usize {
        if self.vcpu.queue.is_empty() && !self.vcpu.uie {
            return 0;
        }
        self.refill_queued()
    }

    /// [`refill`](Self::refill) with something queued or `UIE` set.
    fn refill_queued(&mut self) -> usize {
        let mut moved = 0usize;
        while !self.vcpu.queue.is_empty() {
            let Some(n) = self.free_lr() else { break };
            let Some(lr) = self.vcpu.remove(0) else { break };
            self.write_lr(n, lr);
            moved = moved.saturating_add(1);
        }
        self.update_underflow();
        moved
    }

    /// Asks for the underflow maintenance interrupt while interrupts wait
    /// in the queue, so they are moved in as soon as list registers free up.
    ///
    /// Only when it can make progress: the underflow condition (at most one
    /// list register holds a valid interrupt) must be false now, so that it
    /// becomes true when a register frees up. With one list register, or
    /// with all but one waiting for their EOI maintenance (which comes
    /// anyway), it would hold at once and fire again and again (a
    /// maintenance storm); queued interrupts then move in at the next
    /// [`sync_after_exit`](Self::sync_after_exit).
    fn update_underflow(&mut self) {
        if !self.here() {
            return;
        }
        let uie = !self.vcpu.queue.is_empty() && self.valid_lrs() >= 2;
        if uie != self.vcpu.uie {
            let hcr = self.host.regs().read(SysReg::IchHcrEl2);
            let hcr = if uie {
                hcr | ICH_HCR_UIE
            } else {
                hcr & !ICH_HCR_UIE
            };
            self.host.sysregs_mut().write(SysReg::IchHcrEl2, hcr);
            self.vcpu.uie = uie;
        }
    }
}

impl<R: GicSysRegs> IrqChip for Gic<'_, '_, R> {
    type Error = Error;

    #[inline]
    fn set_host_active(&mut self, ppi: IntId, active: bool) -> Result<(), Error> {
        self.host.set_ppi_active(ppi, active);
        Ok(())
    }

    #[inline]
    fn set_host_masked(&mut self, ppi: IntId, masked: bool) -> Result<(), Error> {
        self.host.set_ppi_masked(ppi, masked);
        Ok(())
    }

    #[inline]
    fn set_virtual_level(&mut self, intid: IntId, level: bool) -> Result<(), Error> {
        // Only PPIs have a recorded level; an SGI or SPI is injected and
        // withdrawn as asked, with no level kept for it.
        self.vcpu.record_level(intid, level);
        if level {
            let lr = self.vcpu.lr_for(intid);
            self.inject(lr)
        } else {
            self.withdraw(intid)
        }
    }

    #[inline]
    fn virtual_active(&self, intid: IntId) -> Result<bool, Error> {
        self.on_this_cpu()?;
        Ok(self
            .maybe_occupied()
            .any(|(_, lr)| lr.vintid() == intid.get() && lr.state().is_active()))
    }

    #[inline]
    fn virtual_state(&self, intid: IntId) -> Result<VirtualState, Error> {
        self.on_this_cpu()?;
        Ok(self.state_of(intid.get()))
    }

    #[inline]
    fn lower_virtual_level(&mut self, intid: IntId) -> Result<VirtualState, Error> {
        self.vcpu.record_level(intid, false);
        self.on_this_cpu()?;
        if self.vcpu.holds_nothing() {
            return Ok(VirtualState::Inactive);
        }
        let state = self.state_of(intid.get());
        self.withdraw(intid)?;
        Ok(state)
    }

    fn map_virtual(&mut self, intid: IntId, host: IntId) -> Result<(), Error> {
        let index = ppi_index(intid).ok_or(Error::InvalidIntId(intid.get()))?;
        if let Some(other) = (IntId::FIRST_PPI..=IntId::LAST_PPI)
            .filter_map(|n| IntId::ppi(n).ok())
            .find(|&other| other != intid && self.vcpu.ppi_mapping(other) == Some(host))
        {
            return Err(Error::HostIntIdInUse {
                host: host.get(),
                mapped_to: other.get(),
            });
        }
        if let Some(slot) = self.vcpu.mapped.get_mut(index) {
            *slot = Some(host);
        }
        self.vcpu.levels &= !intid.bit();
        Ok(())
    }

    fn unmap_virtual(&mut self, intid: IntId) -> Result<(), Error> {
        let index = ppi_index(intid).ok_or(Error::InvalidIntId(intid.get()))?;
        if let Some(slot) = self.vcpu.mapped.get_mut(index) {
            *slot = None;
        }
        Ok(())
    }
}
