//! Host tests against register blocks in RAM.
//!
//! The RAM does not behave like a GIC by itself: where the hardware would
//! change a register (the guest acknowledging or deactivating an interrupt),
//! the test writes it, and then calls `Gic::sync_after_exit` as a run loop
//! does after a real exit. `GICH_ELRSRn` (which only
//! [`HostGic::empty_list_registers`] reads) is derived from the raw list
//! register bits by [`derive_elrsr`] after every list register write, the
//! driver's (`HostGic::write_lr` calls it in test builds) and the test's.
//! The RAM cannot count reads: [`GichReads`], inside `HostGic` in test
//! builds, counts the driver's.

use core::cell::Cell;
use std::boxed::Box;

use arch_timer_virt::mock::{MockSoftTimers, MockTimerHw};
use arch_timer_virt::{
    Forwarding, HostIrq, IntId, IrqChip, TimerCtl, VcpuTimer, VirtualState, VmTimer,
};
use safe_mmio::fields::{ReadOnly, ReadPure, ReadPureWrite};
use safe_mmio::{UniqueMmioPointer, field};
use zerocopy::FromZeros;

use crate::registers::{
    GICC_CTLR_ENABLE, GICC_CTLR_EOIMODE_NS, GICH_HCR_EN, GICH_HCR_NPIE, GICH_HCR_UIE, GiccRegs,
    GicdRegs, GichRegs,
};
use crate::{Error, Gic, HostGic, ListRegister, LrState, QUEUE_CAPACITY, VgicCpu};

/// How many times the driver read `GICH_LRn`, `GICH_HCR` and
/// `GICH_ELRSRn` (through `HostGic::empty_list_registers`).
#[derive(Debug, Default)]
pub(crate) struct GichReads {
    /// `GICH_LRn` reads.
    pub(crate) lr: Cell<u32>,
    /// `GICH_HCR` reads.
    pub(crate) hcr: Cell<u32>,
    /// `GICH_ELRSRn` reads.
    pub(crate) elrsr: Cell<u32>,
}

/// `GICH_LRn.State`, bits 29:28 (0b00 invalid).
const LR_STATE_MASK: u32 = 0b11 << 28;
/// `GICH_LRn.HW`, bit 31.
const LR_HW: u32 = 1 << 31;
/// `GICH_LRn.EOI`, bit 19 (with HW = 0).
const LR_EOI: u32 = 1 << 19;

/// Plays the GIC: sets `GICH_ELRSR0`/`GICH_ELRSR1` from the raw bits of
/// the implemented list registers (`GICH_VTR.ListRegs` + 1) as IHI 0048B
/// defines them, independently of the driver's [`ListRegister`] decoding:
/// bit *n* for State 0b00 with HW = 1 or EOI = 0.
pub(crate) fn derive_elrsr(gich: &mut UniqueMmioPointer<'_, GichRegs>) {
    let mut gich = gich.reborrow();
    let count = usize::try_from(field!(gich, vtr).read() & 0x3f).map_or(64, |n| n + 1);
    let mut empty = 0u64;
    let mut lrs = field!(gich, lr);
    for n in 0..count {
        let bits = lrs.get(n).map_or(0, |r| r.read());
        if bits & LR_STATE_MASK == 0 && (bits & LR_HW != 0 || bits & LR_EOI == 0) {
            empty |= 1 << n;
        }
    }
    #[allow(clippy::cast_possible_truncation, reason = "the two halves")]
    let (low, high) = (empty as u32, (empty >> 32) as u32);
    // SAFETY: RAM, not a device: any write is fine (the test plays the GIC).
    unsafe {
        field!(gich, elrsr0).write_unsafe(ReadPure(low));
        field!(gich, elrsr1).write_unsafe(ReadPure(high));
    }
}

/// `n` as an INTID (tests use valid ones).
fn id(n: u32) -> IntId {
    IntId::new(n).unwrap()
}

/// A `HostGic` over zeroed RAM blocks whose `GICH_VTR` reports `vtr`.
/// The blocks are leaked: a few KiB per test.
fn host_with_vtr(vtr: u32) -> HostGic {
    let gicd: &'static mut GicdRegs = Box::leak(Box::new(GicdRegs::new_zeroed()));
    let gicc: &'static mut GiccRegs = Box::leak(Box::new(GiccRegs::new_zeroed()));
    let gich: &'static mut GichRegs = Box::leak(Box::new(GichRegs::new_zeroed()));
    gich.vtr = ReadPure(vtr);
    // Empty list registers are empty in GICH_ELRSRn from the start.
    derive_elrsr(&mut UniqueMmioPointer::from(&mut *gich));
    // Each host of a test is another CPU: its own bit in the banked
    // GICD_ITARGETSR0 (CPU interfaces 0..=7 in turn).
    gicd.itargetsr[0] = ReadPureWrite(next_cpu_mask());
    // SAFETY: the blocks are RAM owned by nothing else, valid for 'static.
    unsafe { HostGic::new(gicd.into(), gicc.into(), gich.into(), 0x0804_0000) }
}

std::thread_local! {
    static NEXT_CPU: core::cell::Cell<u32> = const { core::cell::Cell::new(0) };
}

/// `1 << n` for the n-th host built by this test (thread), n = 0..=7.
fn next_cpu_mask() -> u8 {
    NEXT_CPU.with(|next| {
        let n = next.get();
        next.set((n + 1) % 8);
        1 << n
    })
}

/// Four list registers, as on QEMU and GIC-400 (`GICH_VTR` = 0x9000_0003).
fn host() -> HostGic {
    host_with_vtr(0x9000_0003)
}

fn ppi(n: u32) -> IntId {
    match IntId::ppi(n) {
        Ok(i) => i,
        Err(e) => panic!("{e}"),
    }
}

fn lr(host: &mut HostGic, index: usize) -> u32 {
    let mut gich = host.regs().2;
    let mut lrs = field!(gich, lr);
    lrs.get(index)
        .map(|r| r.read())
        .unwrap_or_else(|| panic!("no LR {index}"))
}

/// Plays the guest: writes a list register as the hardware would change it
/// (`GICH_ELRSRn` follows).
fn set_lr(host: &mut HostGic, index: usize, value: u32) {
    let mut gich = host.regs().2;
    let mut lrs = field!(gich, lr);
    match lrs.get(index) {
        Some(mut r) => r.write(value),
        None => panic!("no LR {index}"),
    }
    derive_elrsr(&mut gich);
}

/// Overrides `GICH_ELRSR0` (until the next list register write derives
/// it again), for tests where it, not the list register contents, must
/// decide.
fn set_elrsr0(host: &mut HostGic, value: u32) {
    let mut gich = host.regs().2;
    // SAFETY: RAM, not a device: any write is fine.
    unsafe { field!(gich, elrsr0).write_unsafe(ReadPure(value)) };
}

/// Plays the hardware: `GICH_EISR0` (read-only to software).
fn set_eisr0(host: &mut HostGic, value: u32) {
    let mut gich = host.regs().2;
    // SAFETY: RAM, not a device: any write is fine.
    unsafe { field!(gich, eisr0).write_unsafe(ReadPure(value)) };
}

fn hcr(host: &mut HostGic) -> u32 {
    let mut gich = host.regs().2;
    field!(gich, hcr).read()
}

fn gich_word(host: &mut HostGic, which: fn(&mut UniqueMmioPointer<'_, GichRegs>) -> u32) -> u32 {
    let mut gich = host.regs().2;
    which(&mut gich)
}

#[derive(Clone, Copy, Debug)]
enum Banked {
    IsEnabler,
    IcEnabler,
    IsActiver,
    IcActiver,
}

fn gicd_word0(host: &mut HostGic, reg: Banked) -> u32 {
    let mut gicd = host.regs().0;
    let mut array = match reg {
        Banked::IsEnabler => field!(gicd, isenabler),
        Banked::IcEnabler => field!(gicd, icenabler),
        Banked::IsActiver => field!(gicd, isactiver),
        Banked::IcActiver => field!(gicd, icactiver),
    };
    array.get(0).map_or(0, |r| r.read())
}

fn clear_gicd_word0(host: &mut HostGic) {
    let mut gicd = host.regs().0;
    let clear = |mut array: UniqueMmioPointer<'_, [safe_mmio::fields::ReadPureWrite<u32>; 32]>| {
        if let Some(mut r) = array.get(0) {
            r.write(0);
        }
    };
    clear(field!(gicd, isenabler));
    clear(field!(gicd, icenabler));
    clear(field!(gicd, isactiver));
    clear(field!(gicd, icactiver));
}

fn ok<T>(r: Result<T, Error>) -> T {
    r.unwrap_or_else(|e| panic!("{e}"))
}

fn sw_pending(vintid: u32) -> u32 {
    ok(ListRegister::software(vintid, 0xa0, false, true)).bits()
}

// --- Host side -------------------------------------------------------------

#[test]
fn list_register_count_comes_from_vtr_listregs_plus_one() {
    assert_eq!(host_with_vtr(0x9000_0003).list_register_count(), 4);
    assert_eq!(host_with_vtr(0).list_register_count(), 1);
    assert_eq!(host_with_vtr(0x3f).list_register_count(), 64);
    assert_eq!(host_with_vtr(0xffff_ffc7).list_register_count(), 8);
}

#[test]
fn init_sets_split_eoi_priority_mask_and_enable() {
    let mut host = host();
    ok(host.init());
    let (_, mut gicc, mut gich) = host.regs();
    assert_eq!(
        field!(gicc, ctlr).read(),
        GICC_CTLR_ENABLE | GICC_CTLR_EOIMODE_NS
    );
    assert_eq!(field!(gicc, ctlr).read(), 0x201);
    assert_eq!(field!(gicc, pmr).read(), 0xf0);
    assert_eq!(field!(gicc, bpr).read(), 0);
    assert_eq!(field!(gich, hcr).read(), 0);
    let mut host2 = self::host();
    host2.enable_distributor();
    let mut gicd = host2.regs().0;
    assert_eq!(field!(gicd, ctlr).read(), 1);
}

#[test]
fn acknowledge_drop_and_deactivate_use_iar_eoir_dir() {
    fn set_iar(host: &mut HostGic, value: u32) {
        let mut gicc = host.regs().1;
        // SAFETY: RAM, not a device.
        unsafe { field!(gicc, iar).write_unsafe(ReadOnly(value)) };
    }
    let mut host = host();
    set_iar(&mut host, 1023);
    assert_eq!(host.acknowledge(), None);
    set_iar(&mut host, 1022);
    assert_eq!(host.acknowledge(), None);
    set_iar(&mut host, 27);
    assert_eq!(host.acknowledge(), Some(IntId::VIRTUAL_TIMER));
    // SGI 3 from CPU 2: the source CPU is kept for EOIR/DIR.
    set_iar(&mut host, (2 << 10) | 3);
    let sgi = host.acknowledge();
    assert_eq!(sgi.map(IntId::get), Some(3));
    let Some(sgi) = sgi else { return };

    host.priority_drop(IntId::VIRTUAL_TIMER);
    let mut gicc = host.regs().1;
    // SAFETY: RAM: reading a write-only register is fine here.
    let eoir = unsafe { field!(gicc, eoir).read_unsafe() }.0;
    // SAFETY: as above.
    let dir = unsafe { field!(gicc, dir).read_unsafe() }.0;
    assert_eq!((eoir, dir), (27, 0));
    host.deactivate(sgi);
    let mut gicc = host.regs().1;
    // SAFETY: as above.
    let dir = unsafe { field!(gicc, dir).read_unsafe() }.0;
    assert_eq!(dir, 0x803);
}

/// `HostGic` can live in a per-CPU static (behind a `Mutex`, which needs
/// `Send`), and `GicCpu` drives it as the inherent methods do, the SGI
/// source included.
#[test]
fn host_gic_is_send_and_a_gic_cpu() {
    fn send<T: Send>() {}
    send::<HostGic>();
    fn ack_and_complete<G: arch_timer_virt::GicCpu>(g: &mut G) -> Option<IntId> {
        let id = g.acknowledge()?;
        g.priority_drop(id);
        g.deactivate(id);
        Some(id)
    }
    let mut host = host();
    let mut gicc = host.regs().1;
    // SAFETY: RAM, not a device.
    unsafe { field!(gicc, iar).write_unsafe(ReadOnly((5 << 10) | 7)) };
    assert_eq!(ack_and_complete(&mut host).map(IntId::get), Some(7));
    let mut gicc = host.regs().1;
    // SAFETY: RAM: reading a write-only register is fine here.
    let (eoir, dir) = unsafe {
        (
            field!(gicc, eoir).read_unsafe().0,
            field!(gicc, dir).read_unsafe().0,
        )
    };
    assert_eq!((eoir, dir), ((5 << 10) | 7, (5 << 10) | 7));
    assert_eq!(
        arch_timer_virt::GicCpu::maintenance_intid(&host),
        crate::MAINTENANCE_INTID
    );
}

#[test]
fn ppi_active_state_writes_the_banked_set_and_clear_active_bit() {
    let mut host = host();
    for n in 16..=31 {
        clear_gicd_word0(&mut host);
        host.set_ppi_active(ppi(n), true);
        assert_eq!(
            gicd_word0(&mut host, Banked::IsActiver),
            1 << n,
            "ISACTIVER0 for {n}"
        );
        assert_eq!(gicd_word0(&mut host, Banked::IcActiver), 0);
        assert!(host.ppi_active(ppi(n)));
        assert!(!host.ppi_active(ppi(if n == 16 { 17 } else { 16 })));

        clear_gicd_word0(&mut host);
        let mut gic_vcpu = VgicCpu::new();
        let mut gic = Gic::new(&mut host, &mut gic_vcpu);
        ok(gic.set_host_active(ppi(n), false));
        assert_eq!(
            gicd_word0(&mut host, Banked::IcActiver),
            1 << n,
            "ICACTIVER0 for {n}"
        );
        assert_eq!(gicd_word0(&mut host, Banked::IsActiver), 0);
        for other in [Banked::IsEnabler, Banked::IcEnabler] {
            assert_eq!(gicd_word0(&mut host, other), 0);
        }
    }
}

#[test]
fn ppi_mask_writes_the_banked_set_and_clear_enable_bit() {
    let mut host = host();
    for n in 16..=31 {
        clear_gicd_word0(&mut host);
        let mut vcpu = VgicCpu::new();
        ok(Gic::new(&mut host, &mut vcpu).set_host_masked(ppi(n), true));
        assert_eq!(
            gicd_word0(&mut host, Banked::IcEnabler),
            1 << n,
            "ICENABLER0 for {n}"
        );
        assert_eq!(gicd_word0(&mut host, Banked::IsEnabler), 0);

        clear_gicd_word0(&mut host);
        ok(Gic::new(&mut host, &mut vcpu).set_host_masked(ppi(n), false));
        assert_eq!(
            gicd_word0(&mut host, Banked::IsEnabler),
            1 << n,
            "ISENABLER0 for {n}"
        );
        assert_eq!(gicd_word0(&mut host, Banked::IcEnabler), 0);
        assert!(host.ppi_enabled(ppi(n)));
        for other in [Banked::IsActiver, Banked::IcActiver] {
            assert_eq!(gicd_word0(&mut host, other), 0);
        }
    }
}

#[test]
fn timer_ppis_get_priority_and_enable() {
    let mut host = host();
    host.enable_ppi(ppi(26), 0x40);
    assert_eq!(gicd_word0(&mut host, Banked::IsEnabler), 1 << 26);
    assert_eq!(host.ppi_priority(ppi(26)), 0x40);
    host.enable_timer_ppis(0x80);
    // RAM keeps only the last write-1-to-set word: the vtimer's.
    assert_eq!(gicd_word0(&mut host, Banked::IsEnabler), 1 << 27);
    assert_eq!(gicd_word0(&mut host, Banked::IcEnabler), 0);
    assert_eq!(host.ppi_priority(ppi(26)), 0x80);
    assert_eq!(host.ppi_priority(ppi(27)), 0x80);
    assert_eq!(host.ppi_priority(ppi(25)), 0);
    // Byte 27 of GICD_IPRIORITYR is bits 31:24 of word 6 (offset 0x418).
    let mut gicd = host.regs().0;
    let mut prio = field!(gicd, ipriorityr);
    assert_eq!(prio.get(27).map(|r| r.read()), Some(0x80));
    assert_eq!(prio.get(28).map(|r| r.read()), Some(0));
}

// --- Virtual side ----------------------------------------------------------

#[test]
fn mapped_interrupt_goes_pending_with_hw_and_pintid_without_duplicates() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.vcpu_load());
    ok(gic.map_virtual(ppi(27), ppi(27)));
    ok(gic.set_virtual_level(ppi(27), true));
    ok(gic.set_virtual_level(ppi(27), true));
    assert!(!ok(gic.virtual_active(ppi(27))));
    // HW | pending | priority 0xa0 | pINTID 27 | vINTID 27.
    assert_eq!(lr(&mut host, 0), 0x9a00_6c1b);
    for index in 1..4 {
        assert_eq!(lr(&mut host, index), 0, "LR{index}");
    }
    assert_eq!(hcr(&mut host), GICH_HCR_EN);
}

#[test]
fn software_interrupt_gets_the_eoi_bit_and_a_different_pintid_is_used() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.vcpu_load());
    ok(gic.map_virtual(ppi(27), ppi(20)));
    ok(gic.set_virtual_level(ppi(30), true));
    ok(gic.set_virtual_level(ppi(27), true));
    // pending | priority 0xa0 | EOI | vINTID 30.
    assert_eq!(lr(&mut host, 0), 0x1a08_001e);
    // HW | pending | priority 0xa0 | pINTID 20 (0x5000) | vINTID 27.
    assert_eq!(lr(&mut host, 1), 0x9a00_501b);
}

#[test]
fn lowering_withdraws_pending_and_leaves_active() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.vcpu_load());
    ok(gic.set_level(id(30), true));
    ok(gic.set_level(id(31), true));
    ok(gic.set_level(id(40), true));
    ok(gic.set_level(id(30), false));
    assert_eq!(lr(&mut host, 0), 0, "pending LR withdrawn");

    // The guest acknowledges 31 (active) and 40 is made active and pending.
    set_lr(&mut host, 1, sw_pending(31) ^ (0b11 << 28));
    set_lr(&mut host, 2, sw_pending(40) | (0b11 << 28));
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.sync_after_exit());
    assert!(ok(gic.is_active(id(31))));
    ok(gic.set_level(id(31), false));
    ok(gic.set_level(id(40), false));
    assert_eq!(
        lr(&mut host, 1),
        sw_pending(31) ^ (0b11 << 28),
        "active LR left"
    );
    assert_eq!(
        ListRegister::from_bits(lr(&mut host, 2)).state(),
        LrState::Active,
        "pending dropped from active and pending"
    );
}

#[test]
fn exhaustion_queues_then_refills_as_list_registers_free_up() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.vcpu_load());
    for intid in 32..38 {
        ok(gic.set_level(id(intid), true));
    }
    ok(gic.set_level(id(37), true)); // queued already: no duplicate
    assert_eq!(gic.vcpu().queued(), 2);
    for (index, intid) in (32..36).enumerate() {
        assert_eq!(lr(&mut host, index), sw_pending(intid));
    }
    assert_eq!(
        hcr(&mut host),
        GICH_HCR_EN | GICH_HCR_UIE,
        "underflow interrupt while queued"
    );

    // The guest takes and deactivates 33 (LR1); its line is now low.
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.set_level(id(33), false)); // still pending: withdrawn, LR1 refilled with 36
    assert_eq!(lr(&mut host, 1), sw_pending(36));

    // The guest deactivates 34 (LR2) with its line low after it acked it.
    set_lr(&mut host, 2, sw_pending(34) ^ (0b11 << 28)); // active
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.sync_after_exit());
    ok(gic.set_level(id(34), false));
    set_lr(&mut host, 2, sw_pending(34) & !(0b11 << 28)); // invalid + EOI
    let report = ok(Gic::new(&mut host, &mut vcpu).maintenance());
    assert_eq!(
        (report.reinjected, report.retired, report.refilled),
        (0, 1, 1)
    );
    assert_eq!(lr(&mut host, 2), sw_pending(37));
    assert_eq!(vcpu.queued(), 0);
    assert_eq!(
        hcr(&mut host),
        GICH_HCR_EN,
        "no underflow interrupt once the queue is empty"
    );
}

/// The fake's `GICH_ELRSRn` follows the specification on raw bits: State
/// 0b00 with HW = 1 or EOI = 0; only implemented list registers.
#[test]
fn fake_derives_elrsr_from_raw_bits() {
    let mut host = host();
    assert_eq!(host.empty_list_registers(), 0b1111, "all empty at reset");
    set_lr(&mut host, 0, sw_pending(30)); // pending
    set_lr(&mut host, 1, sw_pending(31) & !LR_STATE_MASK); // invalid, EOI due
    // Invalid, HW, pINTID 600 (bit 19 is a pINTID bit here): empty.
    set_lr(&mut host, 2, 0x8009_601b);
    set_lr(&mut host, 3, 0x2000_0028); // active
    assert_eq!(host.empty_list_registers(), 0b0100);
    let mut gich = host.regs().2;
    assert_eq!(field!(gich, elrsr0).read(), 0b0100);
    assert_eq!(field!(gich, elrsr1).read(), 0);
    // Bits past the implemented list registers are never reported.
    set_elrsr0(&mut host, 0xffff_fff0);
    assert_eq!(host.empty_list_registers(), 0);
}

/// Between exits every lookup is a memory read: no `GICH_LRn` and no
/// `GICH_ELRSRn` is read (a `GICH_ELRSRn` that says otherwise changes
/// nothing), no duplicate injection, free registers taken lowest first;
/// what the guest did is seen once the exit is synchronized.
#[test]
fn lookups_between_exits_read_no_list_register_and_find_the_same() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    ok(Gic::new(&mut host, &mut vcpu).vcpu_load());
    // The GIC would report no register empty: memory decides.
    set_elrsr0(&mut host, 0);
    let lr_reads = host.reads.lr.get();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.map(id(27), id(27)));
    assert_eq!(gic.virtual_active(id(27)), Ok(false));
    ok(gic.set_level(id(27), true));
    ok(gic.set_level(id(27), true));
    ok(gic.set_level(id(40), true));
    ok(gic.set_level(id(40), true));
    assert_eq!(gic.virtual_state(id(27)), Ok(VirtualState::Pending));
    assert_eq!(gic.inject_sgi(id(1), 0), Ok(true));
    let held: std::vec::Vec<u32> = gic
        .list_registers()
        .filter(|l| !l.is_empty())
        .map(ListRegister::virtual_id)
        .collect();
    assert_eq!(held, [27, 40, 1]);
    assert_eq!(lr(gic.host(), 1), sw_pending(40), "written through");
    // 40 withdrawn: LR1 is free again and the next interrupt takes it.
    ok(gic.set_level(id(40), false));
    ok(gic.set_level(id(41), true));
    assert_eq!(lr(gic.host(), 1), sw_pending(41));
    assert_eq!(gic.host().reads.lr.get(), lr_reads, "memory only");
    assert_eq!(gic.host().reads.elrsr.get(), 0, "GICH_ELRSRn never read");

    // The guest acknowledges 27: seen after the exit's sync, not before.
    set_lr(&mut host, 0, 0xaa00_6c1b);
    let mut gic = Gic::new(&mut host, &mut vcpu);
    assert_eq!(
        gic.virtual_active(id(27)),
        Ok(false),
        "not synchronized yet"
    );
    ok(gic.sync_after_exit());
    assert_eq!(gic.virtual_active(id(27)), Ok(true));
    // It deactivates it (HW: the register is empty); the next interrupt
    // takes LR0 back.
    set_lr(&mut host, 0, 0x8a00_6c1b);
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.sync_after_exit());
    assert!(gic.list_register(0).is_some_and(ListRegister::is_empty));
    ok(gic.set_level(id(42), true));
    assert_eq!(lr(&mut host, 0), sw_pending(42));
    assert_eq!(host.reads.elrsr.get(), 0);
}

/// The exit's sync reads back only the list registers in use (the guest
/// never fills a free one) and derives what `GICH_EISRn` would say from
/// them: `GICH_EISRn` itself is not read, so a stale value there changes
/// nothing.
#[test]
fn sync_reads_back_only_the_list_registers_in_use() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    ok(Gic::new(&mut host, &mut vcpu).vcpu_load());
    let before = host.reads.lr.get();
    ok(Gic::new(&mut host, &mut vcpu).sync_after_exit());
    assert_eq!(host.reads.lr.get(), before, "nothing in use");
    ok(Gic::new(&mut host, &mut vcpu).set_level(id(30), true));
    ok(Gic::new(&mut host, &mut vcpu).set_level(id(31), true));
    set_eisr0(&mut host, 0b1111);
    ok(Gic::new(&mut host, &mut vcpu).sync_after_exit());
    assert_eq!(host.reads.lr.get(), before + 2);
    assert_eq!(lr(&mut host, 0), sw_pending(30), "stale EISR ignored");
    // The guest takes and completes 31 (software: EOI maintenance, not in
    // GICH_EISR0 here): the sync sees it deactivated and, its line still
    // high, makes it pending again.
    set_eisr0(&mut host, 0);
    set_lr(&mut host, 1, sw_pending(31) & !LR_STATE_MASK);
    let report = ok(Gic::new(&mut host, &mut vcpu).sync_after_exit());
    assert_eq!((report.reinjected, report.retired), (1, 0));
    assert_eq!(lr(&mut host, 1), sw_pending(31));
    // Its line drops: withdrawn, one register left to read back.
    ok(Gic::new(&mut host, &mut vcpu).set_level(id(31), false));
    let before = host.reads.lr.get();
    ok(Gic::new(&mut host, &mut vcpu).sync_after_exit());
    assert_eq!(host.reads.lr.get(), before + 1, "LR0 only");
}

/// `vcpu_put` reads back and clears only the list registers in use; the
/// free ones are neither read nor written (they hold nothing the guest
/// could have put there: only a test can), and the next load overwrites
/// every list register with the saved state.
#[test]
fn put_saves_only_the_list_registers_in_use() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.vcpu_load());
    ok(gic.set_level(id(30), true)); // LR0
    ok(gic.set_level(id(31), true)); // LR1
    // LR2 and LR3 are free; bits there would be saved if they were read.
    set_lr(&mut host, 2, 0x8a00_6c1b);
    set_lr(&mut host, 3, sw_pending(42));
    let before = host.reads.lr.get();
    ok(Gic::new(&mut host, &mut vcpu).vcpu_put());
    assert_eq!(host.reads.lr.get(), before + 2, "LR0 and LR1 read");
    let saved: std::vec::Vec<u32> = (0..4)
        .map(|index| {
            vcpu.saved_list_register(index)
                .map_or(u32::MAX, ListRegister::bits)
        })
        .collect();
    assert_eq!(saved, [sw_pending(30), sw_pending(31), 0, 0]);
    assert_eq!(lr(&mut host, 0), 0, "LR0 cleared");
    assert_eq!(lr(&mut host, 1), 0, "LR1 cleared");
    assert_eq!(
        lr(&mut host, 2),
        0x8a00_6c1b,
        "LR2 neither read nor written"
    );
    assert_eq!(
        lr(&mut host, 3),
        sw_pending(42),
        "LR3 neither read nor written"
    );
    ok(Gic::new(&mut host, &mut vcpu).vcpu_load());
    assert_eq!(lr(&mut host, 0), sw_pending(30));
    assert_eq!(lr(&mut host, 2), 0);
    assert_eq!(lr(&mut host, 3), 0);
}

/// `GICH_HCR` is read and written only when `UIE` changes (and at load
/// and put, for `En`): raising, lowering and syncing with nothing queued
/// touch it not at all.
#[test]
fn gich_hcr_is_touched_only_when_uie_changes() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    ok(Gic::new(&mut host, &mut vcpu).vcpu_load());
    assert_eq!(hcr(&mut host), GICH_HCR_EN);
    let reads = host.reads.hcr.get();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    for intid in 32..36 {
        ok(gic.set_level(id(intid), true));
    }
    ok(gic.sync_after_exit());
    ok(gic.set_level(id(33), false));
    ok(gic.set_level(id(33), true));
    assert_eq!(gic.host().reads.hcr.get(), reads, "UIE unchanged");
    ok(gic.set_level(id(36), true)); // queued: UIE set
    ok(gic.set_level(id(37), true)); // queued too: UIE already set
    ok(gic.sync_after_exit());
    assert_eq!(gic.host().reads.hcr.get(), reads + 1);
    assert_eq!(hcr(gic.host()), GICH_HCR_EN | GICH_HCR_UIE);
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.set_level(id(36), false));
    ok(gic.set_level(id(37), false)); // the queue empties: UIE cleared
    assert_eq!(gic.host().reads.hcr.get(), reads + 2);
    assert_eq!(hcr(&mut host), GICH_HCR_EN);
}

/// `lower_virtual_level` lowers as `set_level(.., false)` does and returns
/// the state `virtual_state` gave just before.
#[test]
fn lower_virtual_level_returns_the_state_it_lowered_from() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    ok(Gic::new(&mut host, &mut vcpu).vcpu_load());
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.map(id(27), id(27)));
    // In no list register: nothing to withdraw.
    assert_eq!(gic.lower_virtual_level(id(27)), Ok(VirtualState::Inactive));
    // Pending: withdrawn.
    ok(gic.set_level(id(27), true));
    assert_eq!(gic.lower_virtual_level(id(27)), Ok(VirtualState::Pending));
    assert_eq!(gic.virtual_state(id(27)), Ok(VirtualState::Inactive));
    // Active (the guest acknowledged it): left to the guest.
    ok(gic.set_level(id(27), true));
    set_lr(&mut host, 0, 0xaa00_6c1b);
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.sync_after_exit());
    assert_eq!(gic.lower_virtual_level(id(27)), Ok(VirtualState::Active));
    assert_eq!(gic.virtual_state(id(27)), Ok(VirtualState::Active));
    // Queued behind full list registers: taken out of the queue.
    for intid in 30..34 {
        ok(gic.set_level(id(intid), true));
    }
    assert_eq!(gic.vcpu().queued(), 1);
    assert_eq!(gic.lower_virtual_level(id(33)), Ok(VirtualState::Pending));
    assert_eq!(gic.vcpu().queued(), 0);
}

/// `virtual_state` answers from the list registers in memory, and reports
/// an interrupt waiting in the overflow queue as pending.
#[test]
fn virtual_state_follows_the_list_register_and_the_queue() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    ok(Gic::new(&mut host, &mut vcpu).vcpu_load());
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.map(id(27), id(27)));
    assert_eq!(gic.virtual_state(id(27)), Ok(VirtualState::Inactive));
    ok(gic.set_level(id(27), true));
    assert_eq!(gic.virtual_state(id(27)), Ok(VirtualState::Pending));
    // Three software interrupts fill the other registers; a fourth waits.
    for intid in 30..34 {
        ok(gic.set_level(id(intid), true));
    }
    assert_eq!(gic.vcpu().queued(), 1);
    assert_eq!(gic.virtual_state(id(33)), Ok(VirtualState::Pending));
    assert_eq!(gic.virtual_state(id(34)), Ok(VirtualState::Inactive));
    // The guest acknowledges 27 (active); 30 is active and pending; the
    // guest completes 31 (EOI maintenance due).
    set_lr(&mut host, 0, 0xaa00_6c1b);
    set_lr(&mut host, 1, sw_pending(30) | (0b11 << 28));
    set_lr(&mut host, 2, sw_pending(31) & !LR_STATE_MASK);
    let mut gic = Gic::new(&mut host, &mut vcpu);
    assert_eq!(
        gic.virtual_state(id(31)),
        Ok(VirtualState::Pending),
        "until the exit is synchronized"
    );
    ok(gic.sync_after_exit());
    assert_eq!(gic.virtual_state(id(27)), Ok(VirtualState::Active));
    assert_eq!(gic.virtual_state(id(30)), Ok(VirtualState::PendingActive));
    assert!(ok(gic.virtual_active(id(30))));
    // 31's line is still high: pending again.
    assert_eq!(gic.virtual_state(id(31)), Ok(VirtualState::Pending));
    // The guest deactivates 27 (HW: the register is empty).
    set_lr(&mut host, 0, 0x8a00_6c1b);
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.sync_after_exit());
    assert_eq!(gic.virtual_state(id(27)), Ok(VirtualState::Inactive));
    // The queued 33 took LR0.
    assert_eq!(gic.virtual_state(id(33)), Ok(VirtualState::Pending));
    assert_eq!(gic.vcpu().queued(), 0);
    // Not loaded: the saved state answers.
    ok(gic.vcpu_put());
    let gic = Gic::new(&mut host, &mut vcpu);
    assert_eq!(gic.virtual_state(id(30)), Ok(VirtualState::PendingActive));
    assert_eq!(
        gic.virtual_state(id(8192)),
        Err(Error::InvalidIntId(8192)),
        "no LPIs"
    );
    // Loaded on another CPU: refused.
    let mut other = self::host();
    ok(Gic::new(&mut other, &mut vcpu).vcpu_load());
    assert_eq!(
        Gic::new(&mut host, &mut vcpu).virtual_state(id(30)),
        Err(Error::LoadedOnOtherCpu)
    );
}

#[test]
fn load_and_put_keep_the_hypervisors_gich_hcr_bits() {
    /// `GICH_HCR.LRENPIE` (bit 2), `NPIE` (bit 3), `VGrp0EIE` (bit 4) and
    /// `VGrp1DIE` (bit 7): maintenance enables a hypervisor may set.
    const OTHERS: u32 = (1 << 2) | GICH_HCR_NPIE | (1 << 4) | (1 << 7);
    let mut host = host();
    ok(host.init());
    {
        let mut gich = host.regs().2;
        field!(gich, hcr).write(OTHERS | GICH_HCR_UIE);
    }
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.vcpu_load());
    assert_eq!(hcr(&mut host), OTHERS | GICH_HCR_EN, "UIE only when queued");
    let mut gic = Gic::new(&mut host, &mut vcpu);
    for intid in 32..37 {
        ok(gic.set_level(id(intid), true));
    }
    assert_eq!(hcr(&mut host), OTHERS | GICH_HCR_EN | GICH_HCR_UIE);
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.set_level(id(36), false)); // the queue empties
    assert_eq!(hcr(&mut host), OTHERS | GICH_HCR_EN);
    ok(Gic::new(&mut host, &mut vcpu).vcpu_put());
    assert_eq!(hcr(&mut host), OTHERS);
}

#[test]
fn full_queue_is_a_clear_error_and_a_lowered_line_leaves_the_queue() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.vcpu_load());
    let total = u32::try_from(4 + QUEUE_CAPACITY).unwrap_or(u32::MAX);
    for intid in 100..100 + total {
        ok(gic.set_level(id(intid), true));
    }
    assert_eq!(
        gic.set_level(id(999), true),
        Err(Error::QueueFull { intid: 999 })
    );
    assert!(gic.vcpu().level(id(999)), "the level is remembered");
    ok(gic.set_level(id(104), false)); // first queued entry
    assert_eq!(gic.vcpu().queued(), QUEUE_CAPACITY - 1);
    ok(gic.set_level(id(999), true));
    assert_eq!(gic.vcpu().queued(), QUEUE_CAPACITY);
    assert_eq!(
        gic.set_level(id(8192), true),
        Err(Error::InvalidIntId(8192)),
        "no LPIs"
    );
}

#[test]
fn save_restore_round_trip() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.vcpu_load());
    ok(gic.map(id(27), id(27)));
    ok(gic.set_level(id(27), true));
    ok(gic.set_level(id(30), true));
    // The guest runs: it enables its interface, acks 27 and has an active priority.
    set_lr(&mut host, 0, 0xaa00_6c1b);
    {
        let mut gich = host.regs().2;
        field!(gich, vmcr).write(0xf000_0001);
        field!(gich, apr).write(0x0000_0100);
    }
    ok(Gic::new(&mut host, &mut vcpu).vcpu_put());
    assert!(!vcpu.is_loaded() && !host.vcpu_loaded());
    assert_eq!(hcr(&mut host), 0);
    for index in 0..4 {
        assert_eq!(lr(&mut host, index), 0, "LR{index} cleared on put");
    }
    assert_eq!(
        vcpu.saved_list_register(0).map(ListRegister::bits),
        Some(0xaa00_6c1b)
    );
    assert_eq!(
        vcpu.saved_list_register(1).map(ListRegister::bits),
        Some(sw_pending(30))
    );
    assert_eq!((vcpu.saved_vmcr(), vcpu.saved_apr()), (0xf000_0001, 0x100));

    // While saved, queries and changes use memory.
    let mut gic = Gic::new(&mut host, &mut vcpu);
    assert!(ok(gic.is_active(id(27))));
    ok(gic.set_level(id(31), true));
    assert_eq!(lr(&mut host, 2), 0, "hardware untouched while not loaded");

    // Another vCPU uses the interface meanwhile.
    {
        let mut gich = host.regs().2;
        field!(gich, vmcr).write(0x1234);
    }
    ok(Gic::new(&mut host, &mut vcpu).vcpu_load());
    assert_eq!(lr(&mut host, 0), 0xaa00_6c1b);
    assert_eq!(lr(&mut host, 1), sw_pending(30));
    assert_eq!(lr(&mut host, 2), sw_pending(31));
    assert_eq!(lr(&mut host, 3), 0);
    assert_eq!(
        gich_word(&mut host, |g| field!(*g, vmcr).read()),
        0xf000_0001
    );
    assert_eq!(gich_word(&mut host, |g| field!(*g, apr).read()), 0x100);
    assert_eq!(hcr(&mut host), GICH_HCR_EN);
}

#[test]
fn load_and_put_refuse_the_wrong_state() {
    let mut host = host();
    let mut a = VgicCpu::new();
    let mut b = VgicCpu::new();
    assert_eq!(
        Gic::new(&mut host, &mut a).vcpu_put(),
        Err(Error::NotLoaded)
    );
    ok(Gic::new(&mut host, &mut a).vcpu_load());
    assert_eq!(
        Gic::new(&mut host, &mut a).vcpu_load(),
        Err(Error::AlreadyLoaded)
    );
    assert_eq!(
        Gic::new(&mut host, &mut b).vcpu_load(),
        Err(Error::InterfaceBusy)
    );
    ok(Gic::new(&mut host, &mut a).vcpu_put());
    ok(Gic::new(&mut host, &mut b).vcpu_load());
}

#[test]
fn eoi_maintenance_reinjects_a_software_line_still_high() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    ok(Gic::new(&mut host, &mut vcpu).vcpu_load());
    ok(Gic::new(&mut host, &mut vcpu).set_level(id(30), true));
    // The guest acks and deactivates it: state invalid, EOI kept.
    set_lr(&mut host, 0, sw_pending(30) & !(0b11 << 28));
    let report = ok(Gic::new(&mut host, &mut vcpu).maintenance());
    assert_eq!(
        (report.reinjected, report.retired, report.refilled),
        (1, 0, 0)
    );
    assert_eq!(
        lr(&mut host, 0),
        sw_pending(30),
        "pending again, still with EOI"
    );
}

#[test]
fn eoi_maintenance_retires_a_software_line_lowered_while_active() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    ok(Gic::new(&mut host, &mut vcpu).vcpu_load());
    ok(Gic::new(&mut host, &mut vcpu).set_level(id(30), true));
    set_lr(&mut host, 0, sw_pending(30) ^ (0b11 << 28)); // acked: active
    ok(Gic::new(&mut host, &mut vcpu).sync_after_exit());
    ok(Gic::new(&mut host, &mut vcpu).set_level(id(30), false));
    assert_eq!(
        lr(&mut host, 0),
        sw_pending(30) ^ (0b11 << 28),
        "active stays"
    );
    set_lr(&mut host, 0, sw_pending(30) & !(0b11 << 28)); // deactivated
    let report = ok(Gic::new(&mut host, &mut vcpu).sync_after_exit());
    assert_eq!((report.reinjected, report.retired), (0, 1));
    assert_eq!(lr(&mut host, 0), 0);
}

#[test]
fn eoi_maintenance_of_a_saved_vcpu_works_on_memory() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    ok(Gic::new(&mut host, &mut vcpu).vcpu_load());
    ok(Gic::new(&mut host, &mut vcpu).set_level(id(30), true));
    ok(Gic::new(&mut host, &mut vcpu).set_level(id(31), true));
    // Both deactivated by the guest before the exit that puts the vCPU.
    set_lr(&mut host, 0, sw_pending(30) & !(0b11 << 28));
    set_lr(&mut host, 1, sw_pending(31) & !(0b11 << 28));
    ok(Gic::new(&mut host, &mut vcpu).vcpu_put());
    // The EISR bits belong to whatever runs next; the saved copy decides.
    set_eisr0(&mut host, 0);
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.set_level(id(31), false));
    let report = ok(gic.sync_after_exit());
    assert_eq!(
        (report.reinjected, report.retired),
        (1, 0),
        "31 was freed when lowered"
    );
    assert_eq!(
        vcpu.saved_list_register(0).map(ListRegister::bits),
        Some(sw_pending(30))
    );
    assert_eq!(vcpu.saved_list_register(1), Some(ListRegister::EMPTY));
    assert_eq!(lr(&mut host, 0), 0, "hardware untouched");
}

#[test]
fn a_stale_eisr_bit_does_not_touch_a_pending_register() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    ok(Gic::new(&mut host, &mut vcpu).vcpu_load());
    ok(Gic::new(&mut host, &mut vcpu).set_level(id(30), true));
    set_eisr0(&mut host, 0xffff_ffff);
    let report = ok(Gic::new(&mut host, &mut vcpu).sync_after_exit());
    assert_eq!(report, crate::SyncReport::default());
    assert_eq!(lr(&mut host, 0), sw_pending(30));
}

/// A software interrupt the guest deactivated is read back with its EOI
/// maintenance due. Loaded, the exit's sync handles it at once; on a
/// vCPU put before that sync, raising the line makes the saved register
/// pending again in place.
#[test]
fn raising_a_deactivated_line_before_maintenance_reuses_its_register() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    ok(Gic::new(&mut host, &mut vcpu).vcpu_load());
    ok(Gic::new(&mut host, &mut vcpu).set_level(id(30), true));
    set_lr(&mut host, 0, sw_pending(30) & !(0b11 << 28));
    ok(Gic::new(&mut host, &mut vcpu).vcpu_put());
    assert_eq!(
        vcpu.saved_list_register(0).map(ListRegister::bits),
        Some(sw_pending(30) & !(0b11 << 28)),
        "saved with its EOI maintenance due"
    );
    ok(Gic::new(&mut host, &mut vcpu).set_level(id(30), true));
    assert_eq!(
        vcpu.saved_list_register(0).map(ListRegister::bits),
        Some(sw_pending(30))
    );
    assert_eq!(vcpu.saved_list_register(1), Some(ListRegister::EMPTY));
    ok(Gic::new(&mut host, &mut vcpu).vcpu_load());
    assert_eq!(lr(&mut host, 0), sw_pending(30));
    assert_eq!(lr(&mut host, 1), 0);
}

#[test]
fn a_deactivated_hardware_register_is_free_and_the_line_can_rise_again() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.vcpu_load());
    ok(gic.map(id(27), id(27)));
    ok(gic.set_level(id(40), true));
    ok(gic.set_level(id(27), true));
    assert_eq!(lr(&mut host, 1), 0x9a00_6c1b);
    set_lr(&mut host, 1, 0x8a00_6c1b); // guest deactivated: invalid, HW
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.sync_after_exit());
    assert!(gic.list_register(1).is_some_and(ListRegister::is_empty));
    assert!(!ok(gic.is_active(id(27))));
    ok(gic.set_level(id(27), true));
    assert_eq!(lr(&mut host, 1), 0x9a00_6c1b);
}

#[test]
fn mapping_checks_its_input() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    assert_eq!(gic.map(id(27), id(3)), Err(Error::InvalidPhysicalIntId(3)));
    assert_eq!(gic.map(id(8192), id(27)), Err(Error::InvalidIntId(8192)));
    for v in 0..16 {
        ok(gic.map(id(v), id(16 + v)));
    }
    ok(gic.map(id(3), id(40))); // remapping replaces
    assert_eq!(gic.map(id(16), id(100)), Err(Error::MappingTableFull));
    // Physical 16 is virtual 0's: one deactivation would end both.
    assert_eq!(
        gic.map(id(16), id(16)),
        Err(Error::HostIntIdInUse {
            host: 16,
            mapped_to: 0
        })
    );
    ok(gic.map(id(0), id(16))); // remapping the same pair is fine
    ok(gic.unmap(id(0)));
    ok(gic.unmap(id(0)));
    ok(gic.map(id(16), id(16)));
    assert_eq!(gic.vcpu().mapping(id(3)), Some(id(40)));
    assert_eq!(gic.vcpu().mapping(id(0)), None);
}

// --- The core through this backend ------------------------------------------

#[test]
fn maintenance_asserted_follows_gich_misr() {
    let mut host = host();
    assert!(!host.maintenance_asserted());
    let mut gich = host.regs().2;
    // SAFETY: RAM, not a device: any write is fine (the test plays the GIC).
    unsafe { field!(gich, misr).write_unsafe(ReadPure(1)) };
    assert!(host.maintenance_asserted(), "EOI condition (bit 0)");
}

#[test]
fn one_forwarded_vtimer_interrupt_cycle() {
    let vm = VmTimer::new();
    assert_eq!(vm.forwarding(), Forwarding::Hardware);
    let mut timer = VcpuTimer::new();
    let mut host = host();
    ok(host.init());
    let mut vcpu = VgicCpu::new();
    let mut soft = MockSoftTimers::new();
    let mut hw = MockTimerHw::new();

    // Load: the counter (for the line), CNTVOFF, then CVAL, barrier, CTL;
    // EL1 physical access trapped.
    hw.expect_physical_count()
        .times(1)
        .return_const(arch_timer_virt::Ticks::new(100));
    hw.expect_set_virtual_offset().times(1).return_const(());
    hw.expect_set_vtimer_cval().times(1).return_const(());
    hw.expect_barrier().times(1).return_const(());
    hw.expect_set_vtimer_ctl().times(1).return_const(());
    hw.expect_set_el1_physical_access()
        .withf(|allowed| !*allowed)
        .times(1)
        .return_const(());
    ok(Gic::new(&mut host, &mut vcpu).vcpu_load());
    let mut gic = Gic::new(&mut host, &mut vcpu);
    timer
        .load(&vm, &mut hw, &mut gic)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        gic.vcpu().mapping(id(27)),
        Some(id(27)),
        "vtimer mapped at load"
    );
    // Line low, nothing active: the physical PPI is deactivated and unmasked.
    assert_eq!(gicd_word0(&mut host, Banked::IcActiver), 1 << 27);
    assert_eq!(gicd_word0(&mut host, Banked::IsEnabler), 1 << 27);
    hw.checkpoint();
    clear_gicd_word0(&mut host);

    // The timer fires: the host acks 27, drops priority, leaves it active.
    let mut gicd = host.regs().0;
    if let Some(mut r) = field!(gicd, isactiver).get(0) {
        r.write(1 << 27); // the hardware's doing: acknowledged = active
    }
    hw.expect_vtimer_ctl()
        .times(1)
        .return_const(TimerCtl::ENABLE.union(TimerCtl::ISTATUS));
    let outcome = timer
        .handle_host_irq(&mut hw, &mut Gic::new(&mut host, &mut vcpu))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, HostIrq::Raised);
    // vINTID 27 pending with HW = 1 and pINTID 27.
    let lr0 = ListRegister::from_bits(lr(&mut host, 0));
    assert_eq!(lr0.bits(), 0x9a00_6c1b);
    assert_eq!(
        (lr0.virtual_id(), lr0.physical_id(), lr0.state()),
        (27, Some(27), LrState::Pending)
    );
    assert_eq!(
        gicd_word0(&mut host, Banked::IcActiver),
        0,
        "physical PPI left active"
    );
    hw.checkpoint();

    // Entry: nothing to do for the emulated physical timer.
    timer
        .before_entry(&mut hw, &mut Gic::new(&mut host, &mut vcpu), &mut soft)
        .unwrap_or_else(|e| panic!("{e}"));

    // The guest acks and deactivates vINTID 27; the HW bit deactivates the
    // physical 27 as well. Then it reprograms the timer into the future:
    // the exit reads CTL only (ISTATUS clear tells), not CVAL.
    set_lr(&mut host, 0, 0x8a00_6c1b);
    clear_gicd_word0(&mut host);
    hw.expect_vtimer_ctl()
        .times(1)
        .return_const(TimerCtl::ENABLE);

    // Exit: the vGIC first (it reads back the list register: the guest
    // is done with 27), then the timer lowers the line. Nothing to
    // withdraw, and nothing to deactivate: the guest's completion
    // deactivated physical 27 (the backend reports the virtual interrupt
    // inactive), so the next expiry is taken.
    let mut gic = Gic::new(&mut host, &mut vcpu);
    assert_eq!(gic.sync_after_exit(), Ok(crate::SyncReport::default()));
    assert_eq!(gic.virtual_state(id(27)), Ok(VirtualState::Inactive));
    timer
        .after_exit(&mut hw, &mut gic, &mut soft)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!timer.vtimer().level());
    assert!(!gic.vcpu().level(id(27)));
    assert_eq!(gicd_word0(&mut host, Banked::IcActiver), 0);
    assert_eq!(gicd_word0(&mut host, Banked::IsActiver), 0);
    assert!(ListRegister::from_bits(lr(&mut host, 0)).is_empty());
    hw.checkpoint();

    // It fires again; this time the guest reprograms the timer before it
    // takes the interrupt. The exit withdraws the still pending vINTID 27
    // (the backend reports it pending), so nothing will deactivate
    // physical 27 but the library: it does (ICACTIVER0 bit 27).
    let mut gicd = host.regs().0;
    if let Some(mut r) = field!(gicd, isactiver).get(0) {
        r.write(1 << 27);
    }
    hw.expect_vtimer_ctl()
        .times(1)
        .return_const(TimerCtl::ENABLE.union(TimerCtl::ISTATUS));
    let outcome = timer
        .handle_host_irq(&mut hw, &mut Gic::new(&mut host, &mut vcpu))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome, HostIrq::Raised);
    assert_eq!(lr(&mut host, 0), 0x9a00_6c1b);
    hw.checkpoint();
    clear_gicd_word0(&mut host);
    hw.expect_vtimer_ctl()
        .times(1)
        .return_const(TimerCtl::ENABLE);
    let mut gic = Gic::new(&mut host, &mut vcpu);
    assert_eq!(gic.sync_after_exit(), Ok(crate::SyncReport::default()));
    assert_eq!(gic.virtual_state(id(27)), Ok(VirtualState::Pending));
    timer
        .after_exit(&mut hw, &mut gic, &mut soft)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!timer.vtimer().level());
    assert_eq!(gicd_word0(&mut host, Banked::IcActiver), 1 << 27);
    assert_eq!(lr(&mut host, 0), 0, "withdrawn");
    hw.checkpoint();
}

// --- Review regressions ----------------------------------------------------

/// A vCPU loaded on CPU0 and driven through CPU1's `HostGic` (e.g. a soft
/// timer expiring on CPU1 calling `physical_timer_expired`) writes CPU1's
/// GICH_LR0, which belongs to whatever vCPU CPU1 runs.
#[test]
fn review_loaded_vcpu_driven_from_another_cpu_touches_that_cpus_lrs() {
    let mut cpu0 = host();
    let mut cpu1 = host();
    let mut a = VgicCpu::new();
    ok(Gic::new(&mut cpu0, &mut a).vcpu_load());
    let r = Gic::new(&mut cpu1, &mut a).set_level(id(30), true);
    let lr1 = lr(&mut cpu1, 0);
    assert!(r.is_err() && lr1 == 0, "CPU1's LR0 = {lr1:#x}");
}

#[test]
fn every_vcpu_operation_from_another_cpu_is_refused_untouched() {
    let mut cpu0 = host();
    let mut cpu1 = host();
    assert_ne!(cpu0.cpu_mask(), cpu1.cpu_mask());
    let mut a = VgicCpu::new();
    ok(Gic::new(&mut cpu0, &mut a).vcpu_load());
    assert_eq!(a.loaded_on(), Some(cpu0.cpu_id()));
    assert_eq!(cpu0.cpu_id(), cpu0.cpu_mask());
    // CPU1 runs B, with software interrupt 31 pending in its LR0.
    let mut b = VgicCpu::new();
    ok(Gic::new(&mut cpu1, &mut b).vcpu_load());
    ok(Gic::new(&mut cpu1, &mut b).set_level(id(31), true));
    let lr0 = lr(&mut cpu1, 0);
    let hcr1 = hcr(&mut cpu1);
    let mut gic = Gic::new(&mut cpu1, &mut a);
    assert_eq!(gic.set_level(id(30), true), Err(Error::LoadedOnOtherCpu));
    assert_eq!(gic.set_level(id(31), false), Err(Error::LoadedOnOtherCpu));
    assert_eq!(gic.is_active(id(31)), Err(Error::LoadedOnOtherCpu));
    assert_eq!(gic.sync_after_exit(), Err(Error::LoadedOnOtherCpu));
    assert_eq!(gic.maintenance(), Err(Error::LoadedOnOtherCpu));
    assert_eq!(gic.vcpu_put(), Err(Error::LoadedOnOtherCpu));
    assert_eq!(gic.vcpu_load(), Err(Error::AlreadyLoaded));
    assert_eq!(lr(&mut cpu1, 0), lr0, "CPU1's LR0 changed");
    assert_eq!(hcr(&mut cpu1), hcr1, "CPU1's GICH_HCR changed");
    assert!(cpu1.vcpu_loaded() && a.is_loaded());
    // On its own CPU, A is put as usual.
    ok(Gic::new(&mut cpu0, &mut a).vcpu_put());
    assert!(!a.is_loaded() && !cpu0.vcpu_loaded());
}

#[test]
fn load_refuses_saved_state_that_needs_more_list_registers() {
    let mut big = host_with_vtr(0x9000_0007); // 8 list registers
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut big, &mut vcpu);
    ok(gic.vcpu_load());
    for intid in 32..37 {
        ok(gic.set_level(id(intid), true));
    }
    ok(gic.vcpu_put());
    let mut small = host(); // 4 list registers
    assert_eq!(
        Gic::new(&mut small, &mut vcpu).vcpu_load(),
        Err(Error::TooFewListRegisters {
            needed: 5,
            available: 4
        })
    );
    assert!(!vcpu.is_loaded() && !small.vcpu_loaded());
    assert_eq!(lr(&mut small, 0), 0, "nothing written");
    // Back on a CPU with room, nothing was lost.
    let mut gic = Gic::new(&mut big, &mut vcpu);
    ok(gic.vcpu_load());
    assert_eq!(gic.list_register(4).map(ListRegister::virtual_id), Some(36));
}

/// With one list register the underflow condition (at most one valid
/// register) always holds: asking for it would storm.
#[test]
fn one_list_register_never_asks_for_underflow() {
    let mut host = host_with_vtr(0x9000_0000);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.vcpu_load());
    ok(gic.set_level(id(40), true));
    ok(gic.set_level(id(41), true));
    assert_eq!(gic.vcpu().queued(), 1);
    assert_eq!(hcr(&mut host), GICH_HCR_EN);
}

#[test]
fn inject_sgi_keeps_one_list_register_per_source_and_reports_no_room() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    ok(gic.vcpu_load());
    assert_eq!(gic.inject_sgi(id(1), 0), Ok(true));
    assert_eq!(gic.inject_sgi(id(1), 1), Ok(true));
    // Again from the same source while pending: merged.
    assert_eq!(gic.inject_sgi(id(1), 0), Ok(true));
    let held: std::vec::Vec<ListRegister> =
        gic.list_registers().filter(|l| !l.is_empty()).collect();
    assert_eq!(held.len(), 2);
    assert!(
        held.iter()
            .all(|l| l.virtual_id() == 1 && l.state() == LrState::Pending)
    );
    assert_eq!(held.iter().map(|l| l.source_cpu()).sum::<u32>(), 1);
    // The guest acknowledged the first: another one makes it pending and
    // active, in the same list register.
    let first = lr(gic.host(), 0);
    set_lr(
        gic.host(),
        0,
        ListRegister::from_bits(first)
            .with_state(LrState::Active)
            .bits(),
    );
    ok(gic.sync_after_exit());
    assert_eq!(gic.inject_sgi(id(1), 0), Ok(true));
    assert_eq!(
        ListRegister::from_bits(lr(gic.host(), 0)).state(),
        LrState::PendingActive
    );
    // Four list registers: two more SGIs fill them, the next finds no room.
    assert_eq!(gic.inject_sgi(id(2), 0), Ok(true));
    assert_eq!(gic.inject_sgi(id(3), 0), Ok(true));
    assert_eq!(gic.inject_sgi(id(4), 0), Ok(false));
    assert_eq!(gic.inject_sgi(id(16), 0), Err(Error::InvalidIntId(16)));
}

#[test]
fn overflow_queue_is_first_in_first_out_with_its_capacity() {
    let mut host = host();
    let mut vcpu = VgicCpu::new();
    // Not loaded: the list registers are the saved copies.
    let mut gic = Gic::new(&mut host, &mut vcpu);
    let lrs = u32::try_from(gic.list_registers().count()).unwrap();
    let capacity = u32::try_from(QUEUE_CAPACITY).unwrap();
    let first = 100;
    for intid in first..first + lrs + capacity {
        ok(gic.set_level(id(intid), true));
    }
    assert_eq!(gic.vcpu().queued(), QUEUE_CAPACITY);
    let newest = first + lrs + capacity;
    assert_eq!(
        gic.set_level(id(newest), true),
        Err(Error::QueueFull { intid: newest })
    );
    // A queued one from the middle leaves; the newest takes the freed
    // place at the end.
    let middle = first + lrs + 3;
    ok(gic.set_level(id(middle), false));
    ok(gic.set_level(id(newest), true));
    assert_eq!(gic.vcpu().queued(), QUEUE_CAPACITY);
    // Lowering what list register 0 holds frees it; the oldest queued
    // interrupt moves in.
    let mut refilled = std::vec::Vec::new();
    while gic.vcpu().queued() > 0 {
        let held = gic.list_register(0).unwrap().virtual_id();
        ok(gic.set_level(id(held), false));
        refilled.push(gic.list_register(0).unwrap().virtual_id());
    }
    let expected: std::vec::Vec<u32> = (first + lrs..first + lrs + capacity)
        .filter(|&intid| intid != middle)
        .chain([newest])
        .collect();
    assert_eq!(refilled, expected);
}
