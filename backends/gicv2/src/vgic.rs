//! The virtual side: a vCPU's interrupt state ([`VgicCpu`]) and the
//! [`IrqChip`] that drives it through the GICv2 virtual interface ([`Gic`]).

use arch_timer_virt::{IntId, IrqChip, VirtualState};

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
/// `GICH_APR` (these two while it is not loaded), its hardware mappings,
/// the levels of its interrupt lines, and the interrupts waiting for a free
/// list register.
///
/// Plain data: put it wherever the vCPU lives. The list registers are kept
/// here whether or not the vCPU is loaded: while it is loaded
/// ([`Gic::vcpu_load`]) every write goes to `GICH_LRn` too, and
/// [`Gic::sync_after_exit`] reads back the ones in use (the guest changes
/// their state as it takes and completes interrupts), so between an exit
/// and the next entry every lookup is a memory read. After
/// [`Gic::vcpu_put`] the hardware holds nothing of the vCPU.
///
/// Every interrupt is treated as level-sensitive: a software (not mapped)
/// interrupt is injected with the EOI bit so that the guest's deactivation
/// raises a maintenance interrupt, and [`Gic::maintenance`] injects it again
/// if its line is still high.
#[derive(Clone, Debug)]
pub struct VgicCpu {
    /// Every list register; a free (empty) one as [`ListRegister::EMPTY`].
    lrs: [ListRegister; MAX_LIST_REGISTERS],
    /// Bit *n*: `lrs[n]` is in use (not empty as `GICH_ELRSRn` defines
    /// it).
    used: u64,
    /// `GICH_HCR.UIE` as this backend last wrote it while loaded.
    uie: bool,
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
            used: 0,
            uie: false,
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

    /// List register `index` as of the last write or
    /// [`Gic::sync_after_exit`] (while loaded, the guest may have changed
    /// its state since it was last entered); a free one is
    /// [`ListRegister::EMPTY`].
    #[must_use]
    pub fn saved_list_register(&self, index: usize) -> Option<ListRegister> {
        self.lrs.get(index).copied()
    }

    /// Records list register `index` (< 64) and whether it is in use; an
    /// empty one is kept as [`ListRegister::EMPTY`].
    fn set_lr(&mut self, index: usize, lr: ListRegister) {
        if let Some(slot) = self.lrs.get_mut(index) {
            let bit = bit(index);
            if lr.is_empty() {
                *slot = ListRegister::EMPTY;
                self.used &= !bit;
            } else {
                *slot = lr;
                self.used |= bit;
            }
        }
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
    /// `GICH_VMCR`, `GICH_APR` and every list register (the free ones
    /// empty), moves queued interrupts into free list registers, and
    /// enables the virtual interface (`GICH_HCR.En`, plus `UIE` while
    /// interrupts stay queued; the other bits of `GICH_HCR` are kept).
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
        // One past the highest list register in use.
        let needed =
            usize::try_from(u64::BITS.saturating_sub(self.vcpu.used.leading_zeros())).unwrap_or(0);
        if needed > available {
            return Err(Error::TooFewListRegisters { needed, available });
        }
        self.host.write_vmcr(self.vcpu.vmcr);
        self.host.write_apr(self.vcpu.apr);
        // Every one, the free ones too: what the vCPU last on this CPU
        // left in a free register (a deactivated hardware interrupt, State
        // invalid) is overwritten, so a free register holds nothing.
        for (index, lr) in self.vcpu.lrs.iter().enumerate().take(available) {
            self.host.write_lr(index, *lr);
        }
        self.vcpu.loaded_on = Some(self.host.cpu_id());
        self.host.set_vcpu_loaded(true);
        self.refill();
        // Read-modify-write: the hypervisor's maintenance enables in
        // GICH_HCR stay as it set them.
        let uie = self.wants_underflow();
        let hcr = self.host.read_hcr() & !GICH_HCR_UIE;
        self.host
            .write_hcr(hcr | GICH_HCR_EN | if uie { GICH_HCR_UIE } else { 0 });
        self.vcpu.uie = uie;
        Ok(())
    }

    /// Moves the vCPU's virtual interface state into memory: reads back
    /// and clears the list registers in use (the free ones hold nothing
    /// and are neither read nor written), so that nothing of the vCPU the
    /// GIC could act on is left on the CPU; saves `GICH_VMCR` and
    /// `GICH_APR`; and disables the virtual interface (clears
    /// `GICH_HCR.En` and `UIE`, keeps the other bits).
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
        // `vcpu_load` refused state in list registers this CPU lacks: the
        // ones in use are all implemented.
        let mut used = self.vcpu.used;
        while used != 0 {
            let index = lowest(used);
            used &= used.wrapping_sub(1);
            let lr = self.host.read_lr(index);
            self.host.write_lr(index, ListRegister::EMPTY);
            self.vcpu.set_lr(index, lr);
        }
        self.vcpu.vmcr = self.host.read_vmcr();
        self.vcpu.apr = self.host.read_apr();
        let hcr = self.host.read_hcr();
        self.host.write_hcr(hcr & !(GICH_HCR_EN | GICH_HCR_UIE));
        self.vcpu.uie = false;
        self.vcpu.loaded_on = None;
        self.host.set_vcpu_loaded(false);
        Ok(())
    }

    /// Brings the software state up to date after the guest exited: reads
    /// back the list registers in use (the guest moves the interrupts it
    /// was given along, pending, active, deactivated, but never fills a
    /// free register, so these are all there is to read; no
    /// `GICH_ELRSRn` or `GICH_EISRn` read); for every one with an EOI
    /// maintenance interrupt (what `GICH_EISRn` would report) the
    /// interrupt is made pending again if its line is still high, or the
    /// register freed if not; then queued interrupts fill free list
    /// registers.
    ///
    /// Call it right after every guest exit, before any other call on
    /// the vCPU's state: until then the lookups (which read memory only)
    /// see the list registers as the guest was entered with them.
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
        let mut eoi = 0u64;
        let mut used = self.vcpu.used;
        while used != 0 {
            let index = lowest(used);
            used &= used.wrapping_sub(1);
            let lr = if here {
                self.host.read_lr(index)
            } else {
                self.read_lr(index)
            };
            if lr.eoi_maintenance() {
                eoi |= bit(index);
            }
            self.vcpu.set_lr(index, lr);
        }
        while eoi != 0 {
            let index = lowest(eoi);
            eoi &= eoi.wrapping_sub(1);
            let lr = self.read_lr(index);
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

    /// The list register `index` (see
    /// [`list_registers`](Self::list_registers)); `None` past the
    /// implemented list registers.
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
        let same = self.in_use().find(|(_, held)| {
            !held.is_hw() && held.virtual_id() == sgi && held.source_cpu() == source
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

    /// The list registers as of the last write or
    /// [`sync_after_exit`](Self::sync_after_exit): as the guest left them
    /// at its last exit, once that is synchronized (stale while the vCPU is
    /// loaded on another CPU). Memory only: no list register is read.
    #[inline]
    pub fn list_registers(&self) -> impl Iterator<Item = ListRegister> + '_ {
        self.vcpu.lrs.iter().copied().take(self.num_lrs())
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

    /// List register `index` as last written or read back (memory only).
    fn read_lr(&self, index: usize) -> ListRegister {
        self.vcpu
            .lrs
            .get(index)
            .copied()
            .unwrap_or(ListRegister::EMPTY)
    }

    /// Writes list register `index`: in memory, and to `GICH_LRn` while
    /// the vCPU is loaded here.
    fn write_lr(&mut self, index: usize, lr: ListRegister) {
        self.vcpu.set_lr(index, lr);
        if self.here() {
            self.host.write_lr(index, lr);
        }
    }

    /// The list registers in use, with their indexes (memory only).
    fn in_use(&self) -> impl Iterator<Item = (usize, ListRegister)> + '_ {
        let mut used = self.vcpu.used;
        core::iter::from_fn(move || {
            (used != 0).then(|| {
                let index = lowest(used);
                used &= used.wrapping_sub(1);
                (index, self.read_lr(index))
            })
        })
    }

    /// The list register that holds `intid` (not empty), if any (memory
    /// only).
    fn find(&self, intid: u32) -> Option<(usize, ListRegister)> {
        self.in_use().find(|(_, lr)| lr.virtual_id() == intid)
    }

    /// How many list registers hold a valid interrupt (state not invalid),
    /// as the underflow condition counts them (memory only).
    fn valid_lrs(&self) -> usize {
        self.in_use()
            .filter(|(_, lr)| lr.state() != LrState::Invalid)
            .count()
    }

    /// The lowest free list register (memory only).
    fn free_lr(&self) -> Option<usize> {
        let index = lowest(!self.vcpu.used);
        (index < self.num_lrs()).then_some(index)
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

    /// `GICH_HCR.UIE` follows [`wants_underflow`](Self::wants_underflow),
    /// only while loaded. Only `En` and `UIE` are this driver's: the other
    /// bits (`LRENPIE`, `NPIE`, `VGrp*`, ...) stay as the hypervisor set
    /// them. `UIE` as last written is kept in the [`VgicCpu`]: `GICH_HCR`
    /// is read and written only when it changes.
    fn update_hcr(&mut self) {
        if !self.here() {
            return;
        }
        let uie = self.wants_underflow();
        if uie != self.vcpu.uie {
            let hcr = self.host.read_hcr();
            self.host.write_hcr(if uie {
                hcr | GICH_HCR_UIE
            } else {
                hcr & !GICH_HCR_UIE
            });
            self.vcpu.uie = uie;
        }
    }

    /// Whether to ask for the underflow maintenance interrupt: while
    /// interrupts wait in the queue, and only when it can make progress:
    /// the underflow condition (at most one list register holds a valid
    /// interrupt) must be false now, so that it becomes true when a
    /// register frees up. With one list register, or all but one waiting
    /// for their EOI maintenance (which comes anyway), it would hold at
    /// once and fire again and again; queued interrupts then move in at
    /// the next [`sync_after_exit`](Self::sync_after_exit).
    fn wants_underflow(&self) -> bool {
        !self.vcpu.queue.is_empty() && self.valid_lrs() >= 2
    }
}

/// Bit `index` of a list register mask (as in `GICH_EISR1:GICH_EISR0`); 0
/// past 63.
#[inline]
fn bit(index: usize) -> u64 {
    u32::try_from(index)
        .ok()
        .and_then(|i| 1u64.checked_shl(i))
        .unwrap_or(0)
}

/// The index of the lowest set bit of `mask` (64 if none).
#[inline]
fn lowest(mask: u64) -> usize {
    // At most 64: always fits.
    usize::try_from(mask.trailing_zeros()).unwrap_or(usize::MAX)
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

    /// From the list registers in memory: the state of the one that holds
    /// `intid` (a deactivated software interrupt awaiting its EOI
    /// maintenance is [`VirtualState::Inactive`]); otherwise
    /// [`VirtualState::Pending`] if it waits in the overflow queue,
    /// [`VirtualState::Inactive`] if not.
    fn virtual_state(&self, intid: IntId) -> Result<VirtualState, Error> {
        let raw = intid.get();
        let v = checked_intid(raw)?;
        self.on_this_cpu()?;
        if let Some((_, lr)) = self.find(raw) {
            return Ok(match lr.state() {
                LrState::Invalid => VirtualState::Inactive,
                LrState::Pending => VirtualState::Pending,
                LrState::Active => VirtualState::Active,
                LrState::PendingActive => VirtualState::PendingActive,
            });
        }
        Ok(if self.vcpu.is_queued(v) {
            VirtualState::Pending
        } else {
            VirtualState::Inactive
        })
    }

    /// [`virtual_state`](IrqChip::virtual_state), then
    /// [`set_level`](Gic::set_level)`(intid, false)`, with one look at the
    /// list registers when none is in use and nothing is queued (the
    /// usual case: [`VirtualState::Inactive`], nothing to withdraw).
    fn lower_virtual_level(&mut self, intid: IntId) -> Result<VirtualState, Error> {
        let raw = intid.get();
        checked_intid(raw)?;
        self.on_this_cpu()?;
        if self.vcpu.used == 0 && self.vcpu.queue.is_empty() {
            self.vcpu.set_line(raw, false);
            return Ok(VirtualState::Inactive);
        }
        let state = self.virtual_state(intid)?;
        self.set_level(intid, false)?;
        Ok(state)
    }

    fn map_virtual(&mut self, intid: IntId, host: IntId) -> Result<(), Error> {
        self.map(intid, host)
    }

    fn unmap_virtual(&mut self, intid: IntId) -> Result<(), Error> {
        self.unmap(intid)
    }
}
