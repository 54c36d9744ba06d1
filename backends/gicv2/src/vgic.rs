//! The virtual side: a vCPU's interrupt state ([`VgicCpu`]) and the
//! [`IrqChip`] that drives it through the GICv2 virtual interface ([`Gic`]).

use arch_timer_virt::{IntId, IrqChip};

use crate::Error;
use crate::host::{CpuId, HostGic};
use crate::registers::{
    GICH_HCR_EN, GICH_HCR_UIE, ListRegister, LrState, MAX_INTID, MAX_LIST_REGISTERS,
};

/// How many pending interrupts wait for a free list register at most, per
/// vCPU: the capacity of the overflow queue (a [`heapless::Vec`] of INTIDs
/// inside [`VgicCpu`], oldest first). One more is refused with
/// [`Error::QueueFull`].
pub const QUEUE_CAPACITY: usize = 32;

/// The overflow queue: INTIDs waiting for a free list register, oldest
/// first.
type Queue = heapless::Vec<u16, QUEUE_CAPACITY>;

/// How many virtual INTIDs one vCPU can have hardware-mapped.
pub const MAX_MAPPINGS: usize = 16;

/// The virtual priority [`VgicCpu::new`] gives injected interrupts.
pub const DEFAULT_PRIORITY: u8 = 0xa0;

const LEVEL_WORDS: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mapping {
    virt: u16,
    phys: u16,
}

/// One vCPU's virtual interrupt state: its list registers, `GICH_VMCR` and
/// `GICH_APR` while it is not loaded, its hardware mappings, the levels of
/// its interrupt lines, and the interrupts waiting for a free list
/// register.
///
/// Plain data: put it wherever the vCPU lives. While the vCPU is loaded
/// ([`Gic::vcpu_load`]) the list registers live on the hardware and the
/// copies here are stale; every operation goes to wherever the state is.
///
/// Every interrupt is treated as level-sensitive: a software (not mapped)
/// interrupt is injected with the EOI bit so that the guest's deactivation
/// raises a maintenance interrupt, and [`Gic::maintenance`] injects it again
/// if its line is still high.
#[derive(Clone, Debug)]
pub struct VgicCpu {
    lrs: [ListRegister; MAX_LIST_REGISTERS],
    vmcr: u32,
    apr: u32,
    mappings: [Option<Mapping>; MAX_MAPPINGS],
    levels: [u32; LEVEL_WORDS],
    queue: Queue,
    priority: u8,
    group1: bool,
    /// The [`HostGic::cpu_mask`] of the CPU whose list registers hold the
    /// state.
    loaded_on: Option<CpuId>,
}

impl Default for VgicCpu {
    fn default() -> Self {
        Self::new()
    }
}

impl VgicCpu {
    /// A vCPU with empty list registers, the guest's virtual CPU interface
    /// disabled (`GICH_VMCR = 0`), no mappings and every line low. Injected
    /// interrupts get [`DEFAULT_PRIORITY`] and group 0 (what a
    /// GICv2 guest without the Security Extensions uses by default).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            lrs: [ListRegister::EMPTY; MAX_LIST_REGISTERS],
            vmcr: 0,
            apr: 0,
            mappings: [None; MAX_MAPPINGS],
            levels: [0; LEVEL_WORDS],
            queue: Queue::new(),
            priority: DEFAULT_PRIORITY,
            group1: false,
            loaded_on: None,
        }
    }

    /// The virtual priority the [`IrqChip`] methods inject interrupts with.
    #[must_use]
    pub const fn priority(&self) -> u8 {
        self.priority
    }

    /// The virtual priority of interrupts injected from now on (top five
    /// bits used).
    pub const fn set_priority(&mut self, priority: u8) {
        self.priority = priority;
    }

    /// Whether interrupts injected from now on are group 1 (`true`) or
    /// group 0.
    pub const fn set_group1(&mut self, group1: bool) {
        self.group1 = group1;
    }

    /// Whether the state is loaded on a CPU's virtual interface.
    #[must_use]
    pub const fn is_loaded(&self) -> bool {
        self.loaded_on.is_some()
    }

    /// The [`HostGic::cpu_id`] (its [`cpu_mask`](HostGic::cpu_mask)) of
    /// the CPU the state is loaded on, if it is.
    #[must_use]
    pub const fn loaded_on(&self) -> Option<CpuId> {
        self.loaded_on
    }

    /// The saved list register `index` (stale while loaded).
    #[must_use]
    pub fn saved_list_register(&self, index: usize) -> Option<ListRegister> {
        self.lrs.get(index).copied()
    }

    /// The saved `GICH_VMCR` (stale while loaded).
    #[must_use]
    pub const fn saved_vmcr(&self) -> u32 {
        self.vmcr
    }

    /// The saved `GICH_APR` (stale while loaded).
    #[must_use]
    pub const fn saved_apr(&self) -> u32 {
        self.apr
    }

    /// The physical INTID `intid` is mapped to, if any.
    #[must_use]
    pub fn mapping(&self, intid: IntId) -> Option<IntId> {
        self.mapped_to(intid.get())
            .and_then(|phys| IntId::new(phys).ok())
    }

    /// The level of the vCPU's line `intid` as last set.
    #[must_use]
    pub fn level(&self, intid: IntId) -> bool {
        self.line(intid.get())
    }

    /// [`mapping`](Self::mapping) of a raw INTID from a list register.
    fn mapped_to(&self, intid: u32) -> Option<u32> {
        self.mappings
            .iter()
            .flatten()
            .find(|m| u32::from(m.virt) == intid)
            .map(|m| u32::from(m.phys))
    }

    /// [`level`](Self::level) of a raw INTID from a list register.
    fn line(&self, intid: u32) -> bool {
        let (word, bit) = level_position(intid);
        self.levels.get(word).is_some_and(|w| w & bit != 0)
    }

    /// How many interrupts wait for a free list register.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    fn set_line(&mut self, intid: u32, level: bool) {
        let (word, bit) = level_position(intid);
        if let Some(w) = self.levels.get_mut(word) {
            if level {
                *w |= bit;
            } else {
                *w &= !bit;
            }
        }
    }

    fn map(&mut self, intid: u32, host: u32) -> Result<(), Error> {
        let virt = checked_intid(intid)?;
        let phys = match u16::try_from(host) {
            Ok(p) if (16..=MAX_INTID).contains(&host) => p,
            _ => return Err(Error::InvalidPhysicalIntId(host)),
        };
        if let Some(other) = self
            .mappings
            .iter()
            .flatten()
            .find(|m| m.phys == phys && m.virt != virt)
        {
            return Err(Error::HostIntIdInUse {
                host,
                mapped_to: u32::from(other.virt),
            });
        }
        let mapping = Some(Mapping { virt, phys });
        if let Some(slot) = self
            .mappings
            .iter_mut()
            .find(|m| m.is_some_and(|m| m.virt == virt))
        {
            *slot = mapping;
            return Ok(());
        }
        match self.mappings.iter_mut().find(|m| m.is_none()) {
            Some(slot) => {
                *slot = mapping;
                Ok(())
            }
            None => Err(Error::MappingTableFull),
        }
    }

    fn unmap(&mut self, intid: u32) -> Result<(), Error> {
        let virt = checked_intid(intid)?;
        for slot in &mut self.mappings {
            if slot.is_some_and(|m| m.virt == virt) {
                *slot = None;
            }
        }
        Ok(())
    }

    fn is_queued(&self, intid: u16) -> bool {
        self.queue.contains(&intid)
    }

    /// Appends `intid` to the queue; `false` if it is full.
    fn enqueue(&mut self, intid: u16) -> bool {
        self.queue.push(intid).is_ok()
    }

    /// Takes the oldest queued INTID out, keeping the others' order.
    fn dequeue_first(&mut self) -> Option<u16> {
        // `Vec::remove` panics on an empty vector: check first.
        (!self.queue.is_empty()).then(|| self.queue.remove(0))
    }

    fn remove_queued(&mut self, intid: u16) {
        self.queue.retain(|&q| q != intid);
    }

    /// The list register value that makes `intid` pending now.
    fn pending_lr(&self, intid: u32) -> Result<ListRegister, Error> {
        match self.mapped_to(intid) {
            Some(phys) => ListRegister::hardware(intid, phys, self.priority, self.group1),
            None => ListRegister::software(intid, self.priority, self.group1, true),
        }
    }
}

fn checked_intid(intid: u32) -> Result<u16, Error> {
    match u16::try_from(intid) {
        Ok(v) if intid <= MAX_INTID => Ok(v),
        _ => Err(Error::InvalidIntId(intid)),
    }
}

fn level_position(intid: u32) -> (usize, u32) {
    let word = usize::try_from(intid / 32).unwrap_or(usize::MAX);
    (word, 1 << (intid % 32))
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

/// The [`IrqChip`] of one vCPU on one CPU: the CPU's [`HostGic`] and the
/// vCPU's [`VgicCpu`], borrowed for the duration of the timer operations.
///
/// ```text
/// on schedule-in:  gic.vcpu_load(), timer.load(..)
/// after an exit:   gic.sync_after_exit(), timer.after_exit(..)
/// maintenance IRQ: gic.maintenance()
/// on schedule-out: timer.put(..), gic.vcpu_put()
/// ```
#[derive(Debug)]
pub struct Gic<'a> {
    host: &'a mut HostGic,
    vcpu: &'a mut VgicCpu,
}

impl<'a> Gic<'a> {
    /// The vCPU `vcpu` on the CPU whose GIC is `host`.
    pub const fn new(host: &'a mut HostGic, vcpu: &'a mut VgicCpu) -> Self {
        Self { host, vcpu }
    }

    /// The CPU's host GIC.
    pub const fn host(&mut self) -> &mut HostGic {
        self.host
    }

    /// The vCPU's state.
    pub const fn vcpu(&mut self) -> &mut VgicCpu {
        self.vcpu
    }

    /// Moves the vCPU's virtual interface state onto this CPU: writes
    /// `GICH_VMCR`, `GICH_APR` and the list registers, moves queued
    /// interrupts into free list registers, and enables the virtual
    /// interface (`GICH_HCR.En`, plus `UIE` while interrupts stay queued;
    /// the other bits of `GICH_HCR` are kept).
    ///
    /// # Errors
    ///
    /// [`Error::AlreadyLoaded`]; [`Error::InterfaceBusy`] if another vCPU is
    /// loaded on this CPU; [`Error::TooFewListRegisters`] if the saved
    /// state uses list registers this CPU lacks (CPUs with different
    /// `GICH_VTR.ListRegs`). Nothing is touched then.
    #[doc(alias = "kvm_vgic_load")]
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
            .rposition(|lr| !lr.is_empty())
            .filter(|&index| index >= available)
        {
            return Err(Error::TooFewListRegisters {
                needed: extra.saturating_add(1),
                available,
            });
        }
        self.host.write_vmcr(self.vcpu.vmcr);
        self.host.write_apr(self.vcpu.apr);
        for (index, lr) in self
            .vcpu
            .lrs
            .iter()
            .enumerate()
            .take(self.host.list_register_count())
        {
            self.host.write_lr(index, *lr);
        }
        self.vcpu.loaded_on = Some(self.host.cpu_id());
        self.host.set_vcpu_loaded(true);
        self.refill();
        self.update_hcr();
        Ok(())
    }

    /// Moves the vCPU's virtual interface state into memory: saves the
    /// list registers (the empty ones, per `GICH_ELRSRn`, as empty without
    /// reading them) and clears the ones that were not empty, so that
    /// nothing of the vCPU the GIC could act on is left on the CPU; saves
    /// `GICH_VMCR` and `GICH_APR`; and disables the virtual interface
    /// (clears `GICH_HCR.En` and `UIE`, keeps the other bits).
    ///
    /// # Errors
    ///
    /// [`Error::NotLoaded`]; [`Error::LoadedOnOtherCpu`] if it is loaded
    /// on another CPU (put it there). Nothing is touched then.
    #[doc(alias = "kvm_vgic_put")]
    pub fn vcpu_put(&mut self) -> Result<(), Error> {
        if !self.on_this_cpu()? {
            return Err(Error::NotLoaded);
        }
        let empty = self.host.empty_list_registers();
        for index in 0..self.host.list_register_count() {
            let lr = if empty & bit(index) != 0 {
                ListRegister::EMPTY
            } else {
                let lr = self.host.read_lr(index);
                self.host.write_lr(index, ListRegister::EMPTY);
                lr
            };
            if let Some(saved) = self.vcpu.lrs.get_mut(index) {
                *saved = lr;
            }
        }
        self.vcpu.vmcr = self.host.read_vmcr();
        self.vcpu.apr = self.host.read_apr();
        let hcr = self.host.read_hcr();
        self.host.write_hcr(hcr & !(GICH_HCR_EN | GICH_HCR_UIE));
        self.vcpu.loaded_on = None;
        self.host.set_vcpu_loaded(false);
        Ok(())
    }

    /// Brings the software state up to date after the guest exited:
    /// for every list register with an EOI maintenance interrupt
    /// (`GICH_EISRn`, or the saved copies if the vCPU is not loaded) the
    /// interrupt is made pending again if its line is still high, or the
    /// register freed if not; then queued interrupts fill free list
    /// registers.
    ///
    /// Works on the saved state when the vCPU is not loaded.
    ///
    /// # Errors
    ///
    /// [`Error::LoadedOnOtherCpu`]; nothing is touched.
    #[doc(alias = "kvm_vgic_sync_hwstate")]
    pub fn sync_after_exit(&mut self) -> Result<SyncReport, Error> {
        let mut report = SyncReport::default();
        let eoi = if self.on_this_cpu()? {
            self.host.eoi_status()
        } else {
            let mut mask = 0;
            for index in 0..self.num_lrs() {
                if self.read_lr(index).eoi_maintenance() {
                    mask |= bit(index);
                }
            }
            mask
        };
        for index in 0..self.num_lrs() {
            if eoi & bit(index) == 0 {
                continue;
            }
            let lr = self.read_lr(index);
            // The EISR bit and the register agree on real hardware; trust
            // the register.
            if !lr.eoi_maintenance() {
                continue;
            }
            if self.vcpu.line(lr.virtual_id()) {
                self.write_lr(index, lr.with_state(LrState::Pending));
                report.reinjected = report.reinjected.saturating_add(1);
            } else {
                self.write_lr(index, ListRegister::EMPTY);
                report.retired = report.retired.saturating_add(1);
            }
        }
        report.refilled = self.refill();
        self.update_hcr();
        Ok(report)
    }

    /// The maintenance interrupt handler's work (`GICH_MISR` reports an EOI
    /// or an underflow): the same as [`sync_after_exit`](Self::sync_after_exit),
    /// which it is harmless to call as well.
    ///
    /// # Errors
    ///
    /// [`Error::LoadedOnOtherCpu`]; nothing is touched.
    pub fn maintenance(&mut self) -> Result<SyncReport, Error> {
        self.sync_after_exit()
    }

    /// Sets the level of the vCPU's line `intid` (any INTID 0..=1019, not
    /// only PPIs): the [`IrqChip::set_virtual_level`] of this backend,
    /// without importing the trait.
    ///
    /// Raising makes the interrupt pending in a free list register (HW = 1
    /// with the physical INTID when mapped, HW = 0 with EOI otherwise),
    /// unless it already is pending, or active (a software interrupt is then
    /// reconsidered at its EOI), or queued. With no free list register it is
    /// queued. Lowering withdraws a pending interrupt (an active one stays
    /// with the guest) and takes it off the queue.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIntId`] for an LPI (GICv2 has none);
    /// [`Error::QueueFull`] if it cannot be queued (the level is remembered
    /// all the same); [`Error::LoadedOnOtherCpu`] (nothing is touched).
    pub fn set_level(&mut self, intid: IntId, level: bool) -> Result<(), Error> {
        let intid = intid.get();
        let v = checked_intid(intid)?;
        self.on_this_cpu()?;
        self.vcpu.set_line(intid, level);
        if level {
            self.raise(intid, v)
        } else {
            self.lower(intid, v)
        }
    }

    /// Whether the vCPU's interrupt `intid` is active or active and pending
    /// in a list register.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIntId`] for an LPI; [`Error::LoadedOnOtherCpu`].
    pub fn is_active(&self, intid: IntId) -> Result<bool, Error> {
        let intid = intid.get();
        checked_intid(intid)?;
        self.on_this_cpu()?;
        Ok(self
            .find(intid)
            .is_some_and(|(_, lr)| lr.state().is_active()))
    }

    /// Maps the vCPU's `intid` to the physical `host` INTID: from now on it
    /// is injected with HW = 1. A list register already holding it keeps
    /// its form until the guest is done with it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIntId`] for an LPI, [`Error::InvalidPhysicalIntId`]
    /// for an SGI or an LPI, [`Error::HostIntIdInUse`] if another INTID of
    /// this vCPU is mapped to `host`, [`Error::MappingTableFull`].
    pub fn map(&mut self, intid: IntId, host: IntId) -> Result<(), Error> {
        self.vcpu.map(intid.get(), host.get())
    }

    /// Undoes [`map`](Self::map); unmapping an unmapped INTID does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIntId`] for an LPI.
    pub fn unmap(&mut self, intid: IntId) -> Result<(), Error> {
        self.vcpu.unmap(intid.get())
    }

    /// The list register `index` where the vCPU's state is now (hardware
    /// when loaded, memory otherwise; the stale saved copy while it is
    /// loaded on another CPU).
    #[must_use]
    pub fn list_register(&self, index: usize) -> Option<ListRegister> {
        (index < self.num_lrs()).then(|| self.read_lr(index))
    }

    /// Makes the SGI `sgi` from the (v)CPU `source` pending for the guest
    /// (an IPI between vCPUs): into the list register already holding
    /// `sgi` from `source` (pending and active if it is active), or a free
    /// one. SGIs are edge-triggered: no EOI maintenance, nothing queued.
    /// Returns `false` if no list register is free: the caller keeps the
    /// SGI and tries again at a later entry.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidIntId`] unless `sgi` is an SGI (0..=15) and
    /// `source` at most 7 (see [`ListRegister::sgi`]);
    /// [`Error::LoadedOnOtherCpu`]. Nothing is touched then.
    pub fn inject_sgi(&mut self, sgi: IntId, source: u32) -> Result<bool, Error> {
        let sgi = sgi.get();
        self.on_this_cpu()?;
        let lr = ListRegister::sgi(sgi, source, self.vcpu.priority, self.vcpu.group1)?;
        let same = (0..self.num_lrs())
            .map(|index| (index, self.read_lr(index)))
            .find(|(_, held)| {
                !held.is_empty()
                    && !held.is_hw()
                    && held.virtual_id() == sgi
                    && held.source_cpu() == source
            });
        if let Some((index, held)) = same {
            match held.state() {
                LrState::Pending | LrState::PendingActive => {}
                LrState::Active => self.write_lr(index, held.with_state(LrState::PendingActive)),
                LrState::Invalid => self.write_lr(index, lr),
            }
            return Ok(true);
        }
        match self.free_lr() {
            Some(index) => {
                self.write_lr(index, lr);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The list registers, as the guest sees them now (the stale saved
    /// copies while the vCPU is loaded on another CPU).
    pub fn list_registers(&self) -> impl Iterator<Item = ListRegister> + '_ {
        (0..self.num_lrs()).map(|index| self.read_lr(index))
    }

    fn num_lrs(&self) -> usize {
        self.host.list_register_count()
    }

    /// Where the vCPU's list registers are: `true` on this CPU's hardware,
    /// `false` in memory.
    ///
    /// # Errors
    ///
    /// [`Error::LoadedOnOtherCpu`]: on another CPU's hardware, which this
    /// `HostGic` cannot reach.
    fn on_this_cpu(&self) -> Result<bool, Error> {
        match self.vcpu.loaded_on {
            None => Ok(false),
            Some(cpu) if cpu == self.host.cpu_mask() => Ok(true),
            Some(_) => Err(Error::LoadedOnOtherCpu),
        }
    }

    /// Loaded on this CPU: the list registers are on this CPU's hardware.
    fn here(&self) -> bool {
        self.vcpu.loaded_on == Some(self.host.cpu_mask())
    }

    fn read_lr(&self, index: usize) -> ListRegister {
        if self.here() {
            self.host.read_lr(index)
        } else {
            self.vcpu
                .lrs
                .get(index)
                .copied()
                .unwrap_or(ListRegister::EMPTY)
        }
    }

    fn write_lr(&mut self, index: usize, lr: ListRegister) {
        if self.here() {
            self.host.write_lr(index, lr);
        } else if let Some(saved) = self.vcpu.lrs.get_mut(index) {
            *saved = lr;
        }
    }

    /// The list register that holds `intid` (not empty), if any.
    fn find(&self, intid: u32) -> Option<(usize, ListRegister)> {
        // Loaded here, only the list registers `GICH_ELRSRn` does not
        // report empty can hold it: read those only.
        let occupied = if self.here() {
            !self.host.empty_list_registers()
        } else {
            u64::MAX
        };
        (0..self.num_lrs())
            .filter(|&index| occupied & bit(index) != 0)
            .map(|index| (index, self.read_lr(index)))
            .find(|(_, lr)| !lr.is_empty() && lr.virtual_id() == intid)
    }

    /// How many list registers hold a valid interrupt (state not invalid),
    /// as the underflow condition counts them.
    fn valid_lrs(&self) -> usize {
        (0..self.num_lrs())
            .filter(|&index| self.read_lr(index).state() != LrState::Invalid)
            .count()
    }

    /// The lowest empty list register: per `GICH_ELRSRn` while loaded
    /// here (no list register read), from the saved copies otherwise.
    fn free_lr(&self) -> Option<usize> {
        if self.here() {
            let empty = self.host.empty_list_registers();
            (0..self.num_lrs()).find(|&index| empty & bit(index) != 0)
        } else {
            (0..self.num_lrs()).find(|&index| self.read_lr(index).is_empty())
        }
    }

    fn raise(&mut self, intid: u32, v: u16) -> Result<(), Error> {
        if let Some((index, lr)) = self.find(intid) {
            match lr.state() {
                LrState::Pending | LrState::PendingActive => {}
                // A hardware interrupt still active keeps its physical
                // interrupt active: nothing can be lost. A software one is
                // reconsidered at its EOI.
                LrState::Active => {
                    if !lr.is_hw() && !lr.eoi() {
                        self.write_lr(index, lr.with_eoi());
                    }
                }
                // Deactivated by the guest, EOI maintenance not yet
                // handled: pending again right away.
                LrState::Invalid => self.write_lr(index, lr.with_state(LrState::Pending)),
            }
            return Ok(());
        }
        if self.vcpu.is_queued(v) {
            return Ok(());
        }
        if let Some(index) = self.free_lr() {
            let lr = self.vcpu.pending_lr(intid)?;
            self.write_lr(index, lr);
            return Ok(());
        }
        if !self.vcpu.enqueue(v) {
            return Err(Error::QueueFull { intid });
        }
        self.update_hcr();
        Ok(())
    }

    fn lower(&mut self, intid: u32, v: u16) -> Result<(), Error> {
        if self.vcpu.is_queued(v) {
            self.vcpu.remove_queued(v);
            self.update_hcr();
        }
        if let Some((index, lr)) = self.find(intid) {
            match lr.state() {
                LrState::Pending => {
                    self.write_lr(index, ListRegister::EMPTY);
                    self.refill();
                    self.update_hcr();
                }
                LrState::PendingActive => self.write_lr(index, lr.with_state(LrState::Active)),
                LrState::Active => {}
                // Deactivated, waiting for its EOI maintenance: with the
                // line low there is nothing left to reconsider.
                LrState::Invalid => {
                    self.write_lr(index, ListRegister::EMPTY);
                    self.refill();
                    self.update_hcr();
                }
            }
        }
        Ok(())
    }

    /// Moves queued interrupts into free list registers, oldest first.
    fn refill(&mut self) -> usize {
        let mut moved = 0usize;
        while !self.vcpu.queue.is_empty() {
            let Some(index) = self.free_lr() else {
                break;
            };
            let Some(next) = self.vcpu.dequeue_first() else {
                break;
            };
            let intid = u32::from(next);
            if !self.vcpu.line(intid) {
                continue;
            }
            // Queued INTIDs and mappings were checked on the way in, so the
            // value always builds; a failure would only drop the entry.
            if let Ok(lr) = self.vcpu.pending_lr(intid) {
                self.write_lr(index, lr);
                moved = moved.saturating_add(1);
            }
        }
        moved
    }

    /// `GICH_HCR`: enabled, with the underflow maintenance interrupt while
    /// interrupts wait in the queue. Only while loaded. Only `En` and `UIE`
    /// are this driver's: the other bits (`LRENPIE`, `NPIE`, `VGrp*`, ...)
    /// stay as the hypervisor set them, and nothing is written when
    /// neither changes.
    ///
    /// UIE only when it can make progress: the underflow condition (at most
    /// one list register holds a valid interrupt) must be false now, so
    /// that it becomes true when a register frees up. With one list
    /// register, or all but one waiting for their EOI maintenance (which
    /// comes anyway), it would hold at once and fire again and again;
    /// queued interrupts then move in at the next
    /// [`sync_after_exit`](Self::sync_after_exit).
    fn update_hcr(&mut self) {
        if self.here() {
            let uie = if !self.vcpu.queue.is_empty() && self.valid_lrs() >= 2 {
                GICH_HCR_UIE
            } else {
                0
            };
            let hcr = self.host.read_hcr();
            let wanted = (hcr & !GICH_HCR_UIE) | GICH_HCR_EN | uie;
            if wanted != hcr {
                self.host.write_hcr(wanted);
            }
        }
    }
}

/// The `GICH_EISR1:GICH_EISR0` bit of list register `index`.
fn bit(index: usize) -> u64 {
    u32::try_from(index)
        .ok()
        .and_then(|i| 1u64.checked_shl(i))
        .unwrap_or(0)
}

impl IrqChip for Gic<'_> {
    type Error = Error;

    fn set_host_active(&mut self, ppi: IntId, active: bool) -> Result<(), Error> {
        self.host.set_ppi_active(ppi, active);
        Ok(())
    }

    fn set_host_masked(&mut self, ppi: IntId, masked: bool) -> Result<(), Error> {
        self.host.set_ppi_masked(ppi, masked);
        Ok(())
    }

    fn set_virtual_level(&mut self, intid: IntId, level: bool) -> Result<(), Error> {
        self.set_level(intid, level)
    }

    fn virtual_active(&self, intid: IntId) -> Result<bool, Error> {
        self.is_active(intid)
    }

    fn map_virtual(&mut self, intid: IntId, host: IntId) -> Result<(), Error> {
        self.map(intid, host)
    }

    fn unmap_virtual(&mut self, intid: IntId) -> Result<(), Error> {
        self.unmap(intid)
    }
}
