//! The host's own side of the GICv2 on one CPU: [`HostGic`].

use core::marker::PhantomData;
use core::mem::offset_of;
use core::ptr::NonNull;

use arch_timer_virt::IntId;
use safe_mmio::fields::ReadPureWrite;
use safe_mmio::{SharedMmioPointer, UniqueMmioPointer, field, field_shared};

use crate::Error;
use crate::registers::{
    GICC_CTLR_ENABLE, GICC_CTLR_EOIMODE_NS, GICD_CTLR_ENABLE, GICH_VTR_LISTREGS_MASK, GiccRegs,
    GicdRegs, GichRegs, ListRegister, MAX_INTID, MAX_LIST_REGISTERS,
};

/// The INTID of the GICv2 virtual interface maintenance interrupt on most
/// systems (QEMU `virt`, GIC-400 based boards): PPI 25. Check the firmware
/// description of the machine.
pub const MAINTENANCE_INTID: IntId = IntId::MAINTENANCE;

/// How a CPU is named in [`VgicCpu::loaded_on`](crate::VgicCpu::loaded_on)
/// and [`HostGic::cpu_id`]: its bit in the `GICD_ITARGETSR` CPU targets
/// ([`HostGic::cpu_mask`]). (The GICv3 backend's `CpuId` is an affinity.)
pub type CpuId = u8;

/// The priority mask [`HostGic::init`] programs: every priority higher
/// (numerically lower) than 0xf0 is signalled.
pub const DEFAULT_PRIORITY_MASK: u8 = 0xf0;

/// The GICv2 as the hypervisor on one physical CPU sees it: the Distributor
/// (`GICD`), this CPU's interface (`GICC`) and its virtual interface
/// control (`GICH`), plus the address of the `GICV` frame that the
/// hypervisor maps into each guest.
///
/// Host interrupts are handled with split priority drop and deactivation
/// (`GICC_CTLR.EOImodeNS = 1`, set by [`init`](Self::init)):
/// [`acknowledge`](Self::acknowledge), then
/// [`priority_drop`](Self::priority_drop), then later
/// [`deactivate`](Self::deactivate), or leave the deactivation to the
/// guest through a hardware-mapped list register.
///
/// `Send`, so that it can live in a per-CPU static (such as a
/// `critical_section::Mutex<RefCell<Option<HostGic>>>` per CPU) without an
/// unsafe wrapper; not `Sync`. Moving it is fine, *using* it on a CPU other
/// than the one it was built on breaks the constructors' safety contract:
/// the `GICC`/`GICH` frames and the Distributor registers it uses are the
/// banked copies of the CPU that accesses them.
#[derive(Debug)]
pub struct HostGic {
    /// The whole Distributor, shared by every CPU's `HostGic`: only ever
    /// turned into pointers to single registers (this CPU's banked copies,
    /// [`BankedRegs`], and `GICD_CTLR` in
    /// [`enable_distributor`](Self::enable_distributor)).
    gicd: NonNull<GicdRegs>,
    /// This CPU's banked Distributor registers, unique to this `HostGic`.
    banked: BankedRegs,
    gicc: UniqueMmioPointer<'static, GiccRegs>,
    gich: UniqueMmioPointer<'static, GichRegs>,
    gicv_base: usize,
    num_lrs: usize,
    cpu_mask: u8,
    vcpu_loaded: bool,
    /// The source CPU (`GICC_IAR.CPUID`, bits 12:10) of the last
    /// acknowledge of each SGI, which its EOI and deactivation must name.
    sgi_source: [u8; 16],
    /// How many `GICH` registers of each kind the driver read (tests: the
    /// RAM behind the pointers cannot count).
    #[cfg(test)]
    pub(crate) reads: crate::tests::GichReads,
    /// Not `Sync`: one CPU uses it at a time (see the type docs for `Send`).
    _not_sync: PhantomData<core::cell::Cell<()>>,
}

// SAFETY: the only field that is not `Send` by itself is `gicd`, a
// pointer to the Distributor that every CPU's `HostGic` shares: device
// memory valid for the program's life (the constructors' contract), used
// only for this CPU's banked registers (already unique pointers here) and
// `GICD_CTLR` in `enable_distributor`, with volatile accesses through
// `&mut self`. Moving the `HostGic` to another thread moves that use
// with it and creates no second access path; `Sync` is not implemented.
unsafe impl Send for HostGic {}

/// This CPU's banked copies of the Distributor registers of INTIDs 0..=31
/// that the driver uses. Each other CPU sees its own copies at the same
/// addresses, and the constructors' contract leaves this CPU's copies to
/// this `HostGic` alone: so the pointers are unique for its whole life,
/// writes go through them with `&mut self` and reads through their shared
/// view ([`SharedMmioPointer`](safe_mmio::SharedMmioPointer), by `Deref`)
/// with `&self`.
#[derive(Debug)]
struct BankedRegs {
    /// `GICD_ISENABLER0`.
    isenabler0: UniqueMmioPointer<'static, ReadPureWrite<u32>>,
    /// `GICD_ICENABLER0`.
    icenabler0: UniqueMmioPointer<'static, ReadPureWrite<u32>>,
    /// `GICD_ISACTIVER0`.
    isactiver0: UniqueMmioPointer<'static, ReadPureWrite<u32>>,
    /// `GICD_ICACTIVER0`.
    icactiver0: UniqueMmioPointer<'static, ReadPureWrite<u32>>,
    /// `GICD_IPRIORITYR0..7`, one byte per INTID 0..=31.
    ipriorityr: UniqueMmioPointer<'static, [ReadPureWrite<u8>; 32]>,
}

/// The register at byte `offset` of the Distributor `gicd`.
///
/// # Safety
///
/// `gicd` points to a Distributor (valid for the whole `GicdRegs`), and a
/// `T` at `offset` lies inside it.
const unsafe fn gicd_register<T>(gicd: NonNull<GicdRegs>, offset: usize) -> NonNull<T> {
    // SAFETY: `offset` stays inside the Distributor (the caller's
    // promise), so the result is in bounds and not null.
    unsafe { gicd.byte_add(offset) }.cast()
}

impl HostGic {
    /// Takes the GICv2 register blocks of the calling CPU. Reads
    /// `GICH_VTR` for the number of list registers and the banked
    /// `GICD_ITARGETSR0` for this CPU's identity ([`cpu_mask`](Self::cpu_mask));
    /// writes nothing.
    ///
    /// `gicv_base` is the physical address of the `GICV` frame
    /// ([`GICV_SIZE`](crate::GICV_SIZE) bytes), kept for the hypervisor's
    /// stage 2 mapping; the driver never touches it.
    ///
    /// # Safety
    ///
    /// - The pointers must address a GICv2 with the virtualization
    ///   extensions: `gicd` its Distributor, `gicc` the CPU interface and
    ///   `gich` the virtual interface control block *of the CPU that uses
    ///   this `HostGic`* (the banked per-CPU frames); `new` must run on that
    ///   CPU, and the `HostGic` must only be used there.
    /// - No other code may access `GICC` or `GICH` of this CPU while the
    ///   `HostGic` exists, nor the banked (INTID 0..=31) Distributor
    ///   registers of this CPU.
    /// - Other CPUs may each hold a `HostGic` over the same `GICD` frame:
    ///   this driver only touches its own CPU's banked Distributor registers,
    ///   except in [`enable_distributor`](Self::enable_distributor), which
    ///   only one CPU may call, before the others use the Distributor.
    ///
    /// A `UniqueMmioPointer` to the whole Distributor promises that nothing
    /// else uses it: with more than one CPU, use
    /// [`with_shared_distributor`](Self::with_shared_distributor) instead.
    #[must_use]
    pub unsafe fn new(
        mut gicd: UniqueMmioPointer<'static, GicdRegs>,
        gicc: UniqueMmioPointer<'static, GiccRegs>,
        gich: UniqueMmioPointer<'static, GichRegs>,
        gicv_base: usize,
    ) -> Self {
        // SAFETY: the caller's promises for `new` include those of
        // `with_shared_distributor`.
        unsafe { Self::with_shared_distributor(gicd.ptr_nonnull(), gicc, gich, gicv_base) }
    }

    /// As [`new`](Self::new), for a Distributor that every CPU's `HostGic`
    /// shares: `gicd` is a plain pointer, and this `HostGic` only ever
    /// makes [`safe_mmio`] pointers to single registers of it: this CPU's
    /// banked copies (`GICD_{IS,IC}ENABLER0`, `GICD_{IS,IC}ACTIVER0`,
    /// `GICD_IPRIORITYR0..7`, `GICD_ITARGETSR0`), and `GICD_CTLR` in
    /// [`enable_distributor`](Self::enable_distributor).
    ///
    /// # Safety
    ///
    /// As for [`new`](Self::new), except that other CPUs' `HostGic`s (and
    /// other code touching only registers this one does not) may use the
    /// same Distributor at the same time: `gicd` must be valid for volatile
    /// reads and writes as device memory for the life of the program.
    #[must_use]
    pub unsafe fn with_shared_distributor(
        gicd: NonNull<GicdRegs>,
        gicc: UniqueMmioPointer<'static, GiccRegs>,
        gich: UniqueMmioPointer<'static, GichRegs>,
        gicv_base: usize,
    ) -> Self {
        let vtr = field_shared!(gich, vtr).read();
        // ListRegs is a 6-bit field: at most 63, so this is 1..=64.
        let num_lrs = usize::try_from(vtr & GICH_VTR_LISTREGS_MASK)
            .map_or(1, |n| n.saturating_add(1))
            .min(MAX_LIST_REGISTERS);
        // Banked and read-only: every byte of GICD_ITARGETSR0..7 reads as
        // the reading CPU's own target bit (0 on a uniprocessor GIC).
        // SAFETY: `gicd` is a valid Distributor (caller's promise); the
        // projection stays inside it.
        let targets = unsafe { &raw const (*gicd.as_ptr()).itargetsr };
        // SAFETY: a read-only, side-effect-free banked register read with a
        // volatile access; other CPUs read their own copies.
        let cpu_mask = unsafe { core::ptr::read_volatile(targets.cast::<u8>()) };
        // SAFETY: `gicd` is a valid Distributor (the caller's promise) and
        // each offset names a register inside it: word 0 of a bit array,
        // the first 32 bytes of `GICD_IPRIORITYR`.
        let (isenabler0, icenabler0, isactiver0, icactiver0, ipriorityr) = unsafe {
            (
                gicd_register(gicd, offset_of!(GicdRegs, isenabler)),
                gicd_register(gicd, offset_of!(GicdRegs, icenabler)),
                gicd_register(gicd, offset_of!(GicdRegs, isactiver)),
                gicd_register(gicd, offset_of!(GicdRegs, icactiver)),
                gicd_register(gicd, offset_of!(GicdRegs, ipriorityr)),
            )
        };
        // SAFETY (each of the five): these registers are banked: at these
        // addresses this CPU reaches its own copies, which the caller
        // promised only this `HostGic` uses while it lives (other CPUs'
        // `HostGic`s reach theirs). So each pointer is the only one used
        // to access its register, and the register is valid device memory
        // for the program's life ('static). `ReadPureWrite`: reading them
        // has no side effect.
        let banked = BankedRegs {
            // SAFETY: see above.
            isenabler0: unsafe { UniqueMmioPointer::new(isenabler0) },
            // SAFETY: see above.
            icenabler0: unsafe { UniqueMmioPointer::new(icenabler0) },
            // SAFETY: see above.
            isactiver0: unsafe { UniqueMmioPointer::new(isactiver0) },
            // SAFETY: see above.
            icactiver0: unsafe { UniqueMmioPointer::new(icactiver0) },
            // SAFETY: see above.
            ipriorityr: unsafe { UniqueMmioPointer::new(ipriorityr) },
        };
        Self {
            gicd,
            banked,
            gicc,
            gich,
            gicv_base,
            num_lrs,
            cpu_mask,
            vcpu_loaded: false,
            sgi_source: [0; 16],
            #[cfg(test)]
            reads: crate::tests::GichReads::default(),
            _not_sync: PhantomData,
        }
    }

    /// Sets up this CPU's interface for a hypervisor that forwards
    /// interrupts: disables the virtual interface (`GICH_HCR = 0`), lets
    /// every priority above [`DEFAULT_PRIORITY_MASK`] through (`GICC_PMR`),
    /// uses all priority bits for preemption (`GICC_BPR = 0`), and enables
    /// the interface with split priority drop and deactivation
    /// (`GICC_CTLR.EOImodeNS = 1`).
    ///
    /// # Errors
    ///
    /// None on a GICv2: the `Result` is there so that the call reads the
    /// same as the GICv3 backend's `HostGic::init` (which can fail).
    pub fn init(&mut self) -> Result<(), Error> {
        field!(self.gich, hcr).write(0);
        field!(self.gicc, pmr).write(u32::from(DEFAULT_PRIORITY_MASK));
        field!(self.gicc, bpr).write(0);
        field!(self.gicc, ctlr).write(GICC_CTLR_ENABLE | GICC_CTLR_EOIMODE_NS);
        Ok(())
    }

    /// Enables the Distributor (`GICD_CTLR` bit 0). Global to all CPUs:
    /// call it once, from one CPU.
    pub fn enable_distributor(&mut self) {
        // SAFETY: `gicd` is a valid Distributor (the constructors'
        // promise) and `GICD_CTLR` lies inside it.
        let ctlr: NonNull<ReadPureWrite<u32>> =
            unsafe { gicd_register(self.gicd, offset_of!(GicdRegs, ctlr)) };
        // SAFETY: global, but the constructors' contract lets only one CPU
        // call this, before the others use the Distributor.
        let mut ctlr = unsafe { UniqueMmioPointer::new(ctlr) };
        ctlr.modify(|ctlr| ctlr | GICD_CTLR_ENABLE);
    }

    /// The number of list registers of the virtual interface, from
    /// `GICH_VTR.ListRegs` + 1.
    #[must_use]
    pub const fn list_register_count(&self) -> usize {
        self.num_lrs
    }

    /// The physical address of the `GICV` frame that the hypervisor maps at
    /// the guest's `GICC` address ([`GICV_SIZE`](crate::GICV_SIZE) bytes).
    #[must_use]
    pub const fn gicv_base(&self) -> usize {
        self.gicv_base
    }

    /// This CPU's identity: its bit in the `GICD_ITARGETSR` CPU targets
    /// (1 << CPU interface number), as the banked `GICD_ITARGETSR0` read in
    /// [`new`](Self::new) reported it; 0 on a uniprocessor GIC. A vCPU
    /// records it when loaded ([`VgicCpu::loaded_on`](crate::VgicCpu::loaded_on)).
    #[must_use]
    pub const fn cpu_mask(&self) -> u8 {
        self.cpu_mask
    }

    /// This CPU's identity as [`VgicCpu::loaded_on`](crate::VgicCpu::loaded_on)
    /// reports it: its [`cpu_mask`](Self::cpu_mask).
    #[must_use]
    pub const fn cpu_id(&self) -> CpuId {
        self.cpu_mask
    }

    /// Whether a vCPU's virtual interface state is loaded on this CPU.
    #[must_use]
    pub const fn vcpu_loaded(&self) -> bool {
        self.vcpu_loaded
    }

    /// Acknowledges the highest priority pending interrupt (`GICC_IAR`).
    ///
    /// Returns its INTID (`GICC_IAR` bits 9:0), or `None` if nothing was
    /// pending (INTID 1023, or another special INTID 1020..=1022). For an
    /// SGI the source CPU (bits 12:10) is remembered, per SGI, until its
    /// [`priority_drop`](Self::priority_drop) and
    /// [`deactivate`](Self::deactivate), which write it back: with GICv2,
    /// `GICC_EOIR` and `GICC_DIR` must name it. (One SGI active from two
    /// source CPUs at once is told apart only by the raw IAR value:
    /// [`acknowledge_iar`](Self::acknowledge_iar).)
    pub fn acknowledge(&mut self) -> Option<IntId> {
        let iar = self.acknowledge_iar()?;
        let intid = IntId::new(iar & 0x3ff).ok()?;
        if intid.is_sgi() {
            let source = u8::try_from((iar >> 10) & 0x7).unwrap_or(0);
            if let Some(slot) = self.sgi_source.get_mut(iar_index(intid)) {
                *slot = source;
            }
        }
        Some(intid)
    }

    /// Acknowledges the highest priority pending interrupt and returns the
    /// raw `GICC_IAR` value: the INTID in bits 9:0 and, for an SGI, the
    /// source CPU in bits 12:10. Pass it unchanged to
    /// [`priority_drop_iar`](Self::priority_drop_iar) and
    /// [`deactivate_iar`](Self::deactivate_iar). `None` if nothing was
    /// pending.
    pub fn acknowledge_iar(&mut self) -> Option<u32> {
        let iar = field!(self.gicc, iar).read();
        if iar & 0x3ff > MAX_INTID {
            None
        } else {
            Some(iar & 0x1fff)
        }
    }

    /// Drops the running priority of the acknowledged interrupt `intid`
    /// (`GICC_EOIR`; an SGI's with the source CPU of its acknowledge).
    /// With `EOImodeNS = 1` the interrupt stays active.
    pub fn priority_drop(&mut self, intid: IntId) {
        let iar = self.iar_of(intid);
        self.priority_drop_iar(iar);
    }

    /// Deactivates the interrupt `intid` (`GICC_DIR`; an SGI's with the
    /// source CPU of its acknowledge).
    pub fn deactivate(&mut self, intid: IntId) {
        let iar = self.iar_of(intid);
        self.deactivate_iar(iar);
    }

    /// [`priority_drop`](Self::priority_drop) of a raw `GICC_IAR` value.
    pub fn priority_drop_iar(&mut self, iar: u32) {
        field!(self.gicc, eoir).write(iar);
    }

    /// [`deactivate`](Self::deactivate) of a raw `GICC_IAR` value.
    pub fn deactivate_iar(&mut self, iar: u32) {
        field!(self.gicc, dir).write(iar);
    }

    /// The `GICC_IAR` value that names `intid`: its INTID, and for an SGI
    /// the source CPU its last acknowledge reported.
    fn iar_of(&self, intid: IntId) -> u32 {
        let source = if intid.is_sgi() {
            self.sgi_source.get(iar_index(intid)).copied().unwrap_or(0)
        } else {
            0
        };
        intid.get() | (u32::from(source) << 10)
    }

    /// Sets (`GICD_ISACTIVER0`) or clears (`GICD_ICACTIVER0`) the active
    /// state of `ppi` on this CPU (the banked copy of the accessing CPU).
    pub fn set_ppi_active(&mut self, ppi: IntId, active: bool) {
        let reg = if active {
            &mut self.banked.isactiver0
        } else {
            &mut self.banked.icactiver0
        };
        reg.write(ppi.bit());
    }

    /// Whether `ppi` is active on this CPU (`GICD_ISACTIVER0`).
    #[must_use]
    pub fn ppi_active(&self, ppi: IntId) -> bool {
        self.banked.isactiver0.read() & ppi.bit() != 0
    }

    /// Masks (`GICD_ICENABLER0`) or unmasks (`GICD_ISENABLER0`) `ppi` on
    /// this CPU.
    pub fn set_ppi_masked(&mut self, ppi: IntId, masked: bool) {
        let reg = if masked {
            &mut self.banked.icenabler0
        } else {
            &mut self.banked.isenabler0
        };
        reg.write(ppi.bit());
    }

    /// Whether `ppi` is enabled (unmasked) on this CPU (`GICD_ISENABLER0`).
    #[must_use]
    pub fn ppi_enabled(&self, ppi: IntId) -> bool {
        self.banked.isenabler0.read() & ppi.bit() != 0
    }

    /// Sets the priority of `ppi` on this CPU (`GICD_IPRIORITYRn`, byte
    /// access). Lower is more urgent; the GIC may ignore low-order bits.
    pub fn set_ppi_priority(&mut self, ppi: IntId, priority: u8) {
        let index = usize::try_from(ppi.get()).unwrap_or(usize::MAX);
        if let Some(mut reg) = self.banked.ipriorityr.get(index) {
            reg.write(priority);
        }
    }

    /// The priority of `ppi` on this CPU (`GICD_IPRIORITYRn`).
    #[must_use]
    pub fn ppi_priority(&self, ppi: IntId) -> u8 {
        let index = usize::try_from(ppi.get()).unwrap_or(usize::MAX);
        let priorities: &SharedMmioPointer<'_, _> = &self.banked.ipriorityr;
        priorities.get(index).map_or(0, |reg| reg.read())
    }

    /// Gives `ppi` a priority and unmasks it on this CPU.
    pub fn enable_ppi(&mut self, ppi: IntId, priority: u8) {
        self.set_ppi_priority(ppi, priority);
        self.set_ppi_masked(ppi, false);
    }

    /// Enables the PPIs a hypervisor built on this crate takes: the EL2
    /// physical timer ([`IntId::HYP_PHYSICAL_TIMER`], 26, its own
    /// scheduler and background timers) and the EL1 virtual timer
    /// ([`IntId::VIRTUAL_TIMER`], 27, forwarded to the guest), both at
    /// `priority`.
    pub fn enable_timer_ppis(&mut self, priority: u8) {
        self.enable_ppi(IntId::HYP_PHYSICAL_TIMER, priority);
        self.enable_ppi(IntId::VIRTUAL_TIMER, priority);
    }

    /// `GICH_MISR`: which maintenance conditions hold.
    #[must_use]
    pub fn maintenance_status(&self) -> u32 {
        field_shared!(self.gich, misr).read()
    }

    /// Whether the maintenance interrupt is asserted now: some maintenance
    /// condition holds (`GICH_MISR` != 0). Read it right after a guest
    /// exit and before [`Gic::sync_after_exit`](crate::Gic::sync_after_exit),
    /// which handles (and so clears) the EOI condition that raised it.
    #[must_use]
    pub fn maintenance_asserted(&self) -> bool {
        self.maintenance_status() != 0
    }

    /// `GICH_ELRSR1:GICH_ELRSR0`, limited to the implemented list
    /// registers: bit *n* is set while `GICH_LR<n>` is empty (state
    /// invalid, and HW = 1 or no EOI maintenance requested), free for a new
    /// interrupt. [`Gic`](crate::Gic) does not read it: it keeps the
    /// list registers in memory and knows which are in use. The GIC derives it from the list registers; a read that
    /// follows a list register write sees that write (both are accesses to
    /// the `GICH` frame, mapped as Device memory, so they reach it in
    /// program order).
    #[must_use]
    pub fn empty_list_registers(&self) -> u64 {
        #[cfg(test)]
        count(&self.reads.elrsr);
        let low = u64::from(field_shared!(self.gich, elrsr0).read());
        // `GICH_ELRSR1` only with more than 32 list registers.
        let high = if self.num_lrs > 32 {
            u64::from(field_shared!(self.gich, elrsr1).read())
        } else {
            0
        };
        (low | (high << 32)) & lr_mask(self.num_lrs)
    }

    // The virtual interface, for `Gic`.

    pub(crate) fn set_vcpu_loaded(&mut self, loaded: bool) {
        self.vcpu_loaded = loaded;
    }

    pub(crate) fn read_lr(&self, index: usize) -> ListRegister {
        #[cfg(test)]
        count(&self.reads.lr);
        field_shared!(self.gich, lr)
            .get(index)
            .map_or(ListRegister::EMPTY, |reg| {
                ListRegister::from_bits(reg.read())
            })
    }

    pub(crate) fn write_lr(&mut self, index: usize, lr: ListRegister) {
        if let Some(mut reg) = field!(self.gich, lr).take(index) {
            reg.write(lr.bits());
        }
        // RAM does not derive `GICH_ELRSRn` from the list registers as the
        // GIC does: the test fake plays that part.
        #[cfg(test)]
        crate::tests::derive_elrsr(&mut self.gich);
    }

    pub(crate) fn read_hcr(&self) -> u32 {
        #[cfg(test)]
        count(&self.reads.hcr);
        field_shared!(self.gich, hcr).read()
    }

    pub(crate) fn write_hcr(&mut self, hcr: u32) {
        field!(self.gich, hcr).write(hcr);
    }

    pub(crate) fn read_vmcr(&self) -> u32 {
        field_shared!(self.gich, vmcr).read()
    }

    pub(crate) fn write_vmcr(&mut self, vmcr: u32) {
        field!(self.gich, vmcr).write(vmcr);
    }

    pub(crate) fn read_apr(&self) -> u32 {
        field_shared!(self.gich, apr).read()
    }

    pub(crate) fn write_apr(&mut self, apr: u32) {
        field!(self.gich, apr).write(apr);
    }

    /// The register blocks, for tests that play the hardware's part.
    #[cfg(test)]
    pub(crate) fn regs(
        &mut self,
    ) -> (
        UniqueMmioPointer<'_, GicdRegs>,
        UniqueMmioPointer<'_, GiccRegs>,
        UniqueMmioPointer<'_, GichRegs>,
    ) {
        (
            // SAFETY: tests: the Distributor is RAM owned by the test, and
            // the banked pointers are not used while `self` is borrowed.
            unsafe { UniqueMmioPointer::new(self.gicd) },
            self.gicc.reborrow(),
            self.gich.reborrow(),
        )
    }
}

/// Adds one to a test read counter.
#[cfg(test)]
fn count(counter: &core::cell::Cell<u32>) {
    counter.set(counter.get().saturating_add(1));
}

/// A mask of the low `n` bits (all 64 for `n >= 64`).
pub(crate) fn lr_mask(n: usize) -> u64 {
    u32::try_from(n)
        .ok()
        .and_then(|n| 1u64.checked_shl(n))
        .map_or(u64::MAX, |bit| bit.wrapping_sub(1))
}

/// An SGI's index in [`HostGic`]'s per-SGI table (0..=15 for an SGI; the
/// caller checks).
fn iar_index(intid: IntId) -> usize {
    usize::try_from(intid.get()).unwrap_or(usize::MAX)
}

/// The run loop's view: one body for both GIC versions.
impl arch_timer_virt::GicCpu for HostGic {
    type Vgic = crate::VgicCpu;
    type Error = Error;
    type Chip<'a> = crate::Gic<'a>;

    fn chip<'a>(&'a mut self, vgic: &'a mut crate::VgicCpu) -> crate::Gic<'a> {
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
