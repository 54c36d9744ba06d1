//! Host tests of the driver logic against [`FakeSysRegs`] and redistributor
//! frames in RAM behind `UniqueMmioPointer`.

use core::ptr::NonNull;
use std::boxed::Box;
use std::format;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arch_timer_virt::mock::{MockSoftTimers, MockTimerHw};
use arch_timer_virt::{
    HostIrq, IntId, IrqChip, Ticks, TimerCtl, TimerId, VcpuTimer, VirtualState, VmTimer,
};
use safe_mmio::{UniqueMmioPointer, field};

use crate::registers::{
    GICR_TYPER_LAST, GICR_TYPER_VLPIS, GICR_WAKER_CHILDREN_ASLEEP, GICR_WAKER_PROCESSOR_SLEEP,
    ICH_HCR_EN, ICH_HCR_UIE,
};
use crate::sysreg::{FakeSysRegs, GicSysRegs, SysReg};
use crate::{
    Affinity, Error, Gic, HostGic, ListRegister, LrState, QUEUE_CAPACITY, Redistributor, VgicCpu,
};

/// `ICH_VTR_EL2` as QEMU reports it: 5 priority and preemption bits
/// (PRIbits = PREbits = 0b100 at 31:29 and 28:26), ListRegs = 3 (4 LRs).
const VTR_4_LRS: u64 = 0x9000_0003;
/// ListRegs = 1: two list registers.
const VTR_2_LRS: u64 = 0x9000_0001;
/// ListRegs = 0: one list register.
const VTR_1_LR: u64 = 0x9000_0000;

fn ppi(n: u32) -> IntId {
    IntId::ppi(n).unwrap()
}

/// `n` as an INTID (tests use valid ones).
fn id(n: u32) -> IntId {
    IntId::new(n).unwrap()
}

/// Zeroed redistributors with the given `GICR_TYPER`s.
fn frames(typers: &[u64]) -> Box<[Redistributor]> {
    // SAFETY: every field of `Redistributor` is an integer (or a
    // transparent wrapper of one): all-zero bytes are a valid value.
    let mut frames: Box<[Redistributor]> =
        unsafe { Box::new_zeroed_slice(typers.len()).assume_init() };
    for (frame, &typer) in frames.iter_mut().zip(typers) {
        frame.rd.typer.0 = typer;
    }
    frames
}

/// A `HostGic` over `frames` for the CPU with `mpidr`, initialised.
fn host(frames: &mut [Redistributor], vtr: u64, mpidr: u64) -> HostGic<'_, FakeSysRegs> {
    // SAFETY: the fake register file stands for one CPU and the frames are
    // RAM owned by the test.
    let mut host = unsafe {
        HostGic::new(
            FakeSysRegs::new(vtr, mpidr),
            UniqueMmioPointer::from(frames),
        )
    }
    .unwrap();
    host.init().unwrap();
    host
}

/// The SGI/PPI registers the host side writes:
/// `[ISACTIVER0, ICACTIVER0, ISENABLER0, ICENABLER0]`. Reading clears the
/// write-one registers so that each step sees only its own writes; the RAM
/// `ISACTIVER0` holds the "hardware" active state and is left alone.
fn take_writes(host: &mut HostGic<'_, FakeSysRegs>) -> [u32; 4] {
    let mut rd = host.redistributor();
    let mut sgi = field!(rd, sgi);
    let values = [
        field!(sgi, isactiver0).read(),
        field!(sgi, icactiver0).read(),
        field!(sgi, isenabler0).read(),
        field!(sgi, icenabler0).read(),
    ];
    field!(sgi, icactiver0).write(0);
    field!(sgi, isenabler0).write(0);
    field!(sgi, icenabler0).write(0);
    values
}

/// Sets the "hardware" active state of the SGIs/PPIs (`ISACTIVER0` in RAM).
fn set_hw_active(host: &mut HostGic<'_, FakeSysRegs>, bits: u32) {
    let mut rd = host.redistributor();
    let mut sgi = field!(rd, sgi);
    field!(sgi, isactiver0).write(bits);
}

fn eisr(host: &HostGic<'_, FakeSysRegs>) -> u64 {
    host.regs().read(SysReg::IchEisrEl2)
}

fn lr(host: &HostGic<'_, FakeSysRegs>, n: usize) -> u64 {
    host.regs().ich_lr[n]
}

/// `[ISACTIVER0, ICACTIVER0, ISENABLER0, ICENABLER0]` of each of the `N`
/// redistributors of `region`, which are then zeroed, so that each step
/// sees only its own writes in every frame.
fn take_region_writes<const N: usize>(region: NonNull<[Redistributor]>) -> [[u32; 4]; N] {
    assert_eq!(region.len(), N);
    let base = region.cast::<Redistributor>();
    core::array::from_fn(|i| {
        // SAFETY: RAM owned by the test, `i` < N is inside the region, and
        // no `HostGic` method runs meanwhile (the test plays the hardware
        // between calls).
        unsafe {
            let sgi = &raw mut (*base.add(i).as_ptr()).sgi;
            let regs = [
                &raw mut (*sgi).isactiver0,
                &raw mut (*sgi).icactiver0,
                &raw mut (*sgi).isenabler0,
                &raw mut (*sgi).icenabler0,
            ];
            regs.map(|reg| core::mem::replace(&mut (*reg).0, 0))
        }
    })
}

#[test]
fn finds_this_cpus_redistributor_by_affinity() {
    // Three GICv3 redistributors, affinities 0.0.0.0, 0.0.0.1 and 0.0.1.0
    // (GICR_TYPER bits 63:32), the third marked Last.
    let mut frames = frames(&[0, 1 << 32, (0x100 << 32) | GICR_TYPER_LAST]);
    let region = NonNull::from(&mut *frames);
    {
        // MPIDR Aff1 = 1 (bits 15:8), bit 31 RES1.
        // SAFETY: RAM owned by the test, which reads and writes it only
        // between calls of the `HostGic`; the fake is one CPU.
        let mut host = unsafe {
            HostGic::new(
                FakeSysRegs::new(VTR_4_LRS, 0x8000_0100),
                UniqueMmioPointer::new(region),
            )
        }
        .unwrap();
        host.init().unwrap();
        assert_eq!(host.affinity(), Affinity(0x100));
        assert_eq!(take_region_writes::<3>(region), [[0; 4]; 3], "init");
        let only_frame_2 = |writes: [u32; 4]| [[0; 4], [0; 4], writes];
        for n in 16..=31 {
            let bit = 1 << n;
            host.set_ppi_active(ppi(n), true);
            assert_eq!(
                take_region_writes(region),
                only_frame_2([bit, 0, 0, 0]),
                "activate PPI {n}: ISACTIVER0"
            );
            host.set_ppi_active(ppi(n), false);
            assert_eq!(
                take_region_writes(region),
                only_frame_2([0, bit, 0, 0]),
                "deactivate PPI {n}: ICACTIVER0"
            );
            host.set_ppi_masked(ppi(n), true);
            assert_eq!(
                take_region_writes(region),
                only_frame_2([0, 0, 0, bit]),
                "mask PPI {n}: ICENABLER0"
            );
            host.set_ppi_masked(ppi(n), false);
            assert_eq!(
                take_region_writes(region),
                only_frame_2([0, 0, bit, 0]),
                "unmask PPI {n}: ISENABLER0"
            );
        }
    }
    // The other CPUs' frames were not touched (init woke only frame 2 and
    // grouped only its PPIs).
    for other in &frames[..2] {
        assert_eq!(other.sgi.igroupr0.0, 0);
        assert_eq!(other.rd.waker.0, 0);
    }
    assert_eq!(frames[2].sgi.igroupr0.0, u32::MAX);
}

#[test]
fn steps_over_gicv4_frames_and_stops_at_last() {
    // A GICv4 redistributor (VLPIS) spans two entries: entry 1 is its VLPI
    // frame and must not be taken for a redistributor (its "TYPER" here
    // even claims affinity 0.0.0.1, which a naive walk would match).
    let mut frames = frames(&[
        GICR_TYPER_VLPIS,
        1 << 32,
        GICR_TYPER_VLPIS | (1 << 32) | GICR_TYPER_LAST,
    ]);
    {
        let mut host = host(&mut frames, VTR_4_LRS, 1);
        host.set_ppi_masked(ppi(27), false);
    }
    assert_eq!(frames[1].sgi.isenabler0.0, 0);
    assert_eq!(frames[2].sgi.isenabler0.0, 1 << 27);

    // Affinity 0.0.0.2 lies after the Last redistributor: not found.
    let mut frames = self::frames(&[GICR_TYPER_LAST, 2 << 32]);
    // SAFETY: as in `host`.
    let result = unsafe {
        HostGic::new(
            FakeSysRegs::new(VTR_4_LRS, 2),
            UniqueMmioPointer::from(&mut frames[..]),
        )
    };
    assert_eq!(result.err(), Some(Error::NoRedistributor(Affinity(2))));
}

#[test]
fn init_wakes_and_sets_split_eoi_pmr_and_group_1() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    frames[0].rd.waker.0 = GICR_WAKER_PROCESSOR_SLEEP;
    let host = host(&mut frames, VTR_4_LRS, 0);
    let regs = host.regs();
    // ICC_SRE_EL2: SRE (bit 0) and Enable (bit 3).
    assert_eq!(regs.icc_sre_el2, 0b1001);
    // ICC_CTLR_EL1.EOImode, bit 1.
    assert_eq!(regs.icc_ctlr, 0b10);
    assert_eq!(regs.icc_pmr, 0xFF);
    assert_eq!(regs.icc_igrpen1, 1);
    assert!(regs.isb_count >= 2);
    assert_eq!(host.list_register_count(), 4);
    assert_eq!(host.list_register_mask(), 0b1111);
    assert_eq!(host.active_priority_register_count(), 1);

    assert_eq!(frames[0].rd.waker.0 & GICR_WAKER_PROCESSOR_SLEEP, 0);

    // A redistributor whose children never wake: an error, not a hang.
    let mut frames = self::frames(&[GICR_TYPER_LAST]);
    frames[0].rd.waker.0 = GICR_WAKER_CHILDREN_ASLEEP;
    // SAFETY: as in `host`.
    let mut host = unsafe {
        HostGic::new(
            FakeSysRegs::new(VTR_4_LRS, 0),
            UniqueMmioPointer::from(&mut frames[..]),
        )
    }
    .unwrap();
    assert_eq!(host.init(), Err(Error::RedistributorAsleep));
}

#[test]
fn init_disables_the_virtual_interface_and_empties_the_list_registers() {
    /// `ICH_HCR_EL2.TC` (bit 10) and `TDIR` (bit 14): traps a hypervisor
    /// may have set.
    const TRAPS: u64 = (1 << 10) | (1 << 14);
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut regs = FakeSysRegs::new(VTR_4_LRS, 0);
    // What an earlier owner left: the interface on, interrupts in LR0..3,
    // and (for the test) bits in LR4, which this CPU does not implement.
    regs.ich_hcr = TRAPS | ICH_HCR_EN | ICH_HCR_UIE;
    regs.ich_lr = [0x50A0_0200_0000_001E; 16];
    // SAFETY: as in `host`.
    let mut host = unsafe { HostGic::new(regs, UniqueMmioPointer::from(&mut frames[..])) }.unwrap();
    host.init().unwrap();
    let regs = host.regs();
    assert_eq!(regs.ich_hcr, TRAPS, "En and UIE cleared, the rest kept");
    assert_eq!(regs.ich_lr[..4], [0; 4], "implemented LRs zeroed");
    assert_eq!(
        regs.ich_lr[4], 0x50A0_0200_0000_001E,
        "unimplemented LRs not touched"
    );
    assert!(!regs.lr_write_unsynchronized, "isb after the LR writes");
    assert_eq!(regs.read(SysReg::IchElrsrEl2), 0b1111);
}

#[test]
fn acknowledge_priority_drop_and_deactivate_are_separate() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    host.regs_mut().iar = 27;
    assert_eq!(host.acknowledge(), Some(ppi(27)));
    // The fake returns 1023 once nothing is pending.
    assert_eq!(host.acknowledge(), None);
    host.regs_mut().iar = 1020;
    assert_eq!(host.acknowledge(), None);
    host.regs_mut().iar = 8200;
    assert_eq!(host.acknowledge().map(IntId::get), Some(8200), "an LPI");
    host.priority_drop(ppi(27));
    assert_eq!(host.regs().last_eoir1, Some(27));
    assert_eq!(host.regs().last_dir, None);
    host.deactivate(ppi(27));
    assert_eq!(host.regs().last_dir, Some(27));
}

/// `HostGic` can live in a per-CPU static (behind a `Mutex`, which needs
/// `Send`); `GicCpu` drives it as the inherent methods do.
#[test]
fn host_gic_is_send_and_a_gic_cpu() {
    fn send<T: Send>() {}
    send::<HostGic<'static, FakeSysRegs>>();
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut vgic = VgicCpu::new();
    fn run<G: arch_timer_virt::GicCpu>(g: &mut G, vgic: &mut G::Vgic) -> Option<IntId> {
        g.vcpu_load(vgic).ok()?;
        g.sync_after_exit(vgic).ok()?;
        let id = g.acknowledge()?;
        g.priority_drop(id);
        g.deactivate(id);
        g.vcpu_put(vgic).ok()?;
        Some(g.maintenance_intid())
    }
    host.regs_mut().iar = 30;
    assert_eq!(run(&mut host, &mut vgic), Some(crate::MAINTENANCE_INTID));
    assert_eq!(host.regs().last_eoir1, Some(30));
    assert_eq!(host.regs().last_dir, Some(30));
    assert!(!vgic.is_loaded());
}

#[test]
fn enable_ppi_sets_priority_byte_and_enable_bit() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    {
        let mut host = host(&mut frames, VTR_4_LRS, 0);
        host.enable_ppi(IntId::HYP_PHYSICAL_TIMER, 0x80);
        assert!(host.ppi_enabled(IntId::HYP_PHYSICAL_TIMER));
        assert!(!host.ppi_active(IntId::HYP_PHYSICAL_TIMER));
    }
    assert_eq!(frames[0].sgi.ipriorityr[26].0, 0x80);
    assert_eq!(frames[0].sgi.ipriorityr[27].0, 0);
    assert_eq!(frames[0].sgi.isenabler0.0, 1 << 26);
}

/// An SPI or SGI shares bits 3:0 with a PPI (INTID 43 with PPI 27): its
/// level must never take that PPI's hardware mapping.
#[test]
fn an_spi_never_aliases_a_mapped_ppi() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    gic.map_virtual(ppi(27), ppi(27)).unwrap();
    gic.set_virtual_level(id(43), true).unwrap();
    // State 01 | Group 1 | priority 0xA0 | EOI maintenance | vINTID 43: a
    // software list register, no HW bit, no pINTID.
    assert_eq!(lr(gic.host(), 0), 0x50A0_0200_0000_002B);
    assert_eq!(gic.vcpu().mapping(id(27)), Some(id(27)));
    assert_eq!(
        gic.map_virtual(id(43), ppi(30)),
        Err(Error::InvalidIntId(43))
    );
    assert_eq!(gic.unmap_virtual(id(11)), Err(Error::InvalidIntId(11)));
    assert_eq!(gic.vcpu().mapping(id(27)), Some(id(27)), "PPI 27 kept");
    gic.set_virtual_level(id(43), false).unwrap();
    assert_eq!(lr(gic.host(), 0), 0);
}

#[test]
fn mapped_level_goes_into_a_list_register_with_hw_once() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    gic.map_virtual(ppi(27), ppi(27)).unwrap();
    gic.set_virtual_level(ppi(27), true).unwrap();
    gic.set_virtual_level(ppi(27), true).unwrap();
    // State 01 | HW | Group 1 | priority 0xA0 | pINTID 27 | vINTID 27.
    assert_eq!(lr(gic.host(), 0), 0x70A0_001B_0000_001B);
    assert_eq!(lr(gic.host(), 1), 0, "no duplicate");
    assert_eq!(gic.virtual_active(ppi(27)), Ok(false));
    // The guest acknowledges it: active, HW. Raising again changes nothing
    // (its pending state is the physical GIC's business).
    gic.host().regs_mut().ich_lr[0] = 0xB0A0_001B_0000_001B;
    gic.sync_after_exit().unwrap();
    assert_eq!(gic.virtual_active(ppi(27)), Ok(true));
    gic.set_virtual_level(ppi(27), true).unwrap();
    assert_eq!(lr(gic.host(), 0), 0xB0A0_001B_0000_001B);
    assert_eq!(lr(gic.host(), 1), 0);
    // Lowering leaves an active interrupt to the guest.
    gic.set_virtual_level(ppi(27), false).unwrap();
    assert_eq!(lr(gic.host(), 0), 0xB0A0_001B_0000_001B);
}

/// `lower_virtual_level` lowers as `set_virtual_level(.., false)` does and
/// returns the state `virtual_state` gave just before, in every state of
/// the list register (and none).
#[test]
fn lower_virtual_level_returns_the_state_it_lowered_from() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    gic.map_virtual(ppi(27), ppi(27)).unwrap();
    // In no list register: nothing to withdraw.
    assert_eq!(gic.lower_virtual_level(ppi(27)), Ok(VirtualState::Inactive));
    assert_eq!(lr(gic.host(), 0), 0);
    // Pending (HW): withdrawn, the register emptied.
    gic.set_virtual_level(ppi(27), true).unwrap();
    assert_eq!(gic.virtual_state(ppi(27)), Ok(VirtualState::Pending));
    assert_eq!(gic.lower_virtual_level(ppi(27)), Ok(VirtualState::Pending));
    assert_eq!(lr(gic.host(), 0), 0);
    assert_eq!(gic.virtual_state(ppi(27)), Ok(VirtualState::Inactive));
    // Active (the guest acknowledged it): left to the guest.
    gic.set_virtual_level(ppi(27), true).unwrap();
    gic.host().regs_mut().ich_lr[0] = 0xB0A0_001B_0000_001B;
    gic.sync_after_exit().unwrap();
    assert_eq!(gic.lower_virtual_level(ppi(27)), Ok(VirtualState::Active));
    assert_eq!(lr(gic.host(), 0), 0xB0A0_001B_0000_001B);
    // A software PPI pending and active: the pending part withdrawn.
    gic.set_virtual_level(ppi(30), true).unwrap();
    gic.host().regs_mut().ich_lr[1] = 0x90A0_0200_0000_001E;
    gic.sync_after_exit().unwrap();
    gic.set_virtual_level(ppi(30), true).unwrap();
    assert_eq!(
        gic.lower_virtual_level(ppi(30)),
        Ok(VirtualState::PendingActive)
    );
    assert_eq!(lr(gic.host(), 1), 0x90A0_0200_0000_001E);
    // Queued behind full list registers: taken out of the queue.
    for n in [28, 29, 31] {
        gic.set_virtual_level(ppi(n), true).unwrap();
    }
    assert_eq!(gic.vcpu().queued().len(), 1);
    assert_eq!(gic.lower_virtual_level(ppi(31)), Ok(VirtualState::Pending));
    assert!(gic.vcpu().queued().is_empty());
}

#[test]
fn software_level_uses_eoi_maintenance_and_pending_active() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    gic.set_virtual_level(ppi(30), true).unwrap();
    // State 01 | Group 1 | priority 0xA0 | EOI (bit 41) | vINTID 30.
    assert_eq!(lr(gic.host(), 0), 0x50A0_0200_0000_001E);
    // The guest acknowledges it (active); raised again while active it
    // becomes pending and active (state 11).
    gic.host().regs_mut().ich_lr[0] = 0x90A0_0200_0000_001E;
    gic.sync_after_exit().unwrap();
    gic.set_virtual_level(ppi(30), true).unwrap();
    assert_eq!(lr(gic.host(), 0), 0xD0A0_0200_0000_001E);
    assert_eq!(lr(gic.host(), 1), 0);
    // Lowered: the pending part is withdrawn, the active part stays.
    gic.set_virtual_level(ppi(30), false).unwrap();
    assert_eq!(lr(gic.host(), 0), 0x90A0_0200_0000_001E);
}

#[test]
fn lowering_removes_a_still_pending_interrupt() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    gic.set_virtual_level(ppi(30), true).unwrap();
    gic.set_virtual_level(ppi(31), true).unwrap();
    gic.set_virtual_level(ppi(30), false).unwrap();
    assert_eq!(lr(gic.host(), 0), 0);
    // vINTID 31 stays in LR1; the freed LR0 is reused next.
    assert_eq!(lr(gic.host(), 1), 0x50A0_0200_0000_001F);
    gic.set_virtual_level(ppi(29), true).unwrap();
    assert_eq!(lr(gic.host(), 0), 0x50A0_0200_0000_001D);
}

#[test]
fn eoi_maintenance_reinjects_a_high_line_and_drops_a_low_one() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    gic.set_virtual_level(ppi(30), true).unwrap();
    gic.set_virtual_level(ppi(29), true).unwrap();
    // The guest acknowledges both (active, EOI kept).
    gic.host().regs_mut().ich_lr[0] = 0x90A0_0200_0000_001E;
    gic.host().regs_mut().ich_lr[1] = 0x90A0_0200_0000_001D;
    gic.sync_after_exit().unwrap();
    // The device behind 29 lowers its line; 30 stays high. Active
    // interrupts are left to the guest.
    gic.set_virtual_level(ppi(29), false).unwrap();
    assert_eq!(lr(gic.host(), 1), 0x90A0_0200_0000_001D);
    // The guest deactivates both: state 00 with EOI set is what the
    // hardware leaves, and reports in ICH_EISR_EL2.
    gic.host().regs_mut().ich_lr[0] = 0x10A0_0200_0000_001E;
    gic.host().regs_mut().ich_lr[1] = 0x10A0_0200_0000_001D;
    assert_eq!(eisr(gic.host()), 0b11);
    gic.sync_after_exit().unwrap();
    // 30 is pending again, EOI kept; 29 is gone.
    assert_eq!(lr(gic.host(), 0), 0x50A0_0200_0000_001E);
    assert_eq!(lr(gic.host(), 1), 0);
    assert_eq!(eisr(gic.host()), 0);
}

#[test]
fn exhausted_list_registers_queue_and_refill() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_2_LRS, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    for n in [20, 21, 22] {
        gic.set_virtual_level(ppi(n), true).unwrap();
    }
    assert_eq!(lr(gic.host(), 0), 0x50A0_0200_0000_0014);
    assert_eq!(lr(gic.host(), 1), 0x50A0_0200_0000_0015);
    assert_eq!(gic.vcpu().queued().len(), 1);
    assert_eq!(gic.vcpu().queued()[0].vintid(), 22);
    // Underflow maintenance requested while something waits.
    assert_eq!(gic.host().regs().ich_hcr, ICH_HCR_EN | ICH_HCR_UIE);
    // Raising the queued one again does not queue it twice.
    gic.set_virtual_level(ppi(22), true).unwrap();
    assert_eq!(gic.vcpu().queued().len(), 1);
    // The guest acknowledges 20, its line drops, the guest deactivates it.
    gic.host().regs_mut().ich_lr[0] = 0x90A0_0200_0000_0014;
    gic.sync_after_exit().unwrap();
    gic.set_virtual_level(ppi(20), false).unwrap();
    assert_eq!(gic.vcpu().queued().len(), 1, "no room yet: 20 is active");
    gic.host().regs_mut().ich_lr[0] = 0x10A0_0200_0000_0014;
    gic.sync_after_exit().unwrap();
    assert_eq!(lr(gic.host(), 0), 0x50A0_0200_0000_0016, "22 moved in");
    assert!(gic.vcpu().queued().is_empty());
    assert_eq!(
        gic.host().regs().ich_hcr,
        ICH_HCR_EN,
        "underflow no longer needed"
    );
}

#[test]
fn a_full_queue_is_an_error_not_a_panic() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_1_LR, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    let spi = |n: u32| ListRegister::software(n, LrState::Pending, 0xA0);
    // One list register plus the queue.
    let capacity = u32::try_from(QUEUE_CAPACITY).unwrap() + 1;
    for n in 32..32 + capacity {
        gic.inject(spi(n)).unwrap();
    }
    assert_eq!(
        gic.inject(spi(32 + capacity)),
        Err(Error::QueueFull {
            intid: 32 + capacity
        })
    );
    // Withdrawing a queued one makes room again.
    gic.withdraw(id(40)).unwrap();
    gic.inject(spi(32 + capacity)).unwrap();
}

#[test]
fn put_and_load_round_trip_the_whole_state() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    // PREbits 0b110 (7 bits): four active priority registers; 4 LRs.
    let mut host = host(&mut frames, 0x1800_0003, 0);
    let mut vcpu = VgicCpu::new();
    {
        let mut gic = Gic::new(&mut host, &mut vcpu);
        assert_eq!(gic.vcpu_put(), Err(Error::NotLoaded));
        gic.vcpu_load().unwrap();
        assert_eq!(gic.vcpu_load(), Err(Error::AlreadyLoaded));
        gic.map_virtual(ppi(27), ppi(27)).unwrap();
        gic.set_virtual_level(ppi(27), true).unwrap();
        gic.set_virtual_level(ppi(30), true).unwrap();
        let regs = gic.host().regs_mut();
        regs.ich_lr[1] = 0x90A0_0200_0000_001E; // the guest acknowledged 30
        regs.ich_vmcr = 0xF000_0002; // VPMR 0xF0, VENG1
        regs.ich_ap1r = [1, 2, 3, 4];
        regs.ich_ap0r = [5, 6, 7, 8];
        gic.vcpu_put().unwrap();
        let regs = gic.host().regs();
        assert_eq!(regs.ich_hcr, 0);
        assert_eq!(regs.ich_lr, [0; 16], "nothing of the vCPU left on the CPU");
    }
    let saved = vcpu.saved_list_registers();
    assert_eq!(saved[0].bits(), 0x70A0_001B_0000_001B);
    assert_eq!(saved[1].bits(), 0x90A0_0200_0000_001E);
    assert_eq!(vcpu.vmcr(), 0xF000_0002);
    // Another vCPU ran here meanwhile.
    host.regs_mut().ich_vmcr = 0xdead;
    host.regs_mut().ich_ap1r = [9; 4];
    {
        let mut gic = Gic::new(&mut host, &mut vcpu);
        // While put, the IrqChip acts on the saved image.
        assert_eq!(gic.virtual_active(ppi(30)), Ok(true));
        gic.set_virtual_level(ppi(31), true).unwrap();
        gic.vcpu_load().unwrap();
    }
    let regs = host.regs();
    assert_eq!(regs.ich_lr[0], 0x70A0_001B_0000_001B);
    assert_eq!(regs.ich_lr[1], 0x90A0_0200_0000_001E);
    assert_eq!(regs.ich_lr[2], 0x50A0_0200_0000_001F);
    assert_eq!(regs.ich_vmcr, 0xF000_0002);
    assert_eq!(regs.ich_ap1r, [1, 2, 3, 4]);
    assert_eq!(regs.ich_ap0r, [5, 6, 7, 8]);
    assert_eq!(regs.ich_hcr, ICH_HCR_EN);
}

#[test]
fn saved_state_larger_than_this_cpus_list_registers_is_refused() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut big = host(&mut frames, VTR_4_LRS, 0);
    let mut vcpu = VgicCpu::new();
    {
        let mut gic = Gic::new(&mut big, &mut vcpu);
        for n in [20, 21, 22] {
            gic.set_virtual_level(ppi(n), true).unwrap();
        }
    }

    let mut frames = self::frames(&[GICR_TYPER_LAST]);
    let mut small = host(&mut frames, VTR_2_LRS, 0);
    let mut gic = Gic::new(&mut small, &mut vcpu);
    assert_eq!(
        gic.vcpu_load(),
        Err(Error::TooFewListRegisters {
            needed: 3,
            available: 2
        })
    );
    assert_eq!(gic.host().regs().ich_hcr, 0, "nothing written");
}

#[test]
fn a_host_ppi_backs_one_virtual_ppi_only() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.map_virtual(ppi(27), ppi(27)).unwrap();
    gic.map_virtual(ppi(27), ppi(27)).unwrap();
    let err = gic.map_virtual(ppi(28), ppi(27)).unwrap_err();
    assert_eq!(
        err,
        Error::HostIntIdInUse {
            host: 27,
            mapped_to: 27
        }
    );
    assert!(format!("{err}").contains("INTID 27"));
    gic.unmap_virtual(ppi(27)).unwrap();
    gic.map_virtual(ppi(28), ppi(27)).unwrap();
    assert_eq!(gic.vcpu().mapping(id(28)), Some(id(27)));
    assert_eq!(gic.vcpu().mapping(id(27)), None);
}

/// A CTL value the mock timer reports, changed by the test as it goes.
fn timer_hw(ctl: &Arc<AtomicU64>) -> MockTimerHw {
    let mut hw = MockTimerHw::new();
    let reported = Arc::clone(ctl);
    hw.expect_vtimer_ctl()
        .returning(move || TimerCtl::from_bits_retain(reported.load(Ordering::SeqCst)));
    hw.expect_vtimer_cval().return_const(Ticks::new(5000));
    hw.expect_physical_count().return_const(Ticks::new(1000));
    hw.expect_set_virtual_offset().return_const(());
    hw.expect_set_vtimer_cval().return_const(());
    hw.expect_set_vtimer_ctl().return_const(());
    hw.expect_barrier().return_const(());
    hw.expect_set_el1_physical_access().return_const(());
    hw
}

#[test]
fn forwarded_vtimer_cycle_through_the_core() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    host.enable_ppi(IntId::VIRTUAL_TIMER, 0x80);
    take_writes(&mut host);
    let mut vcpu = VgicCpu::new();
    let vm = VmTimer::new();
    let mut timer = VcpuTimer::new();
    let ctl = Arc::new(AtomicU64::new(TimerCtl::ENABLE.bits()));
    let mut hw = timer_hw(&ctl);
    // The physical timer stays disabled: no soft timer may be touched.
    let mut soft = MockSoftTimers::new();

    // Schedule-in: vGIC first, then the timer. The line is low and nothing
    // is active, so the host PPI is unmasked (ISENABLER0 bit 27) and
    // deactivated (ICACTIVER0 bit 27).
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    timer.load(&vm, &mut hw, &mut gic).unwrap();
    assert_eq!(
        gic.vcpu().mapping(IntId::VIRTUAL_TIMER),
        Some(IntId::VIRTUAL_TIMER)
    );
    assert_eq!(take_writes(gic.host()), [0, 1 << 27, 1 << 27, 0]);
    timer.before_entry(&mut hw, &mut gic, &mut soft).unwrap();

    // The guest runs; the timer fires and the host takes PPI 27. The GIC
    // makes it active on acknowledge (modelled in ISACTIVER0); the
    // hypervisor drops the priority only.
    ctl.store(
        (TimerCtl::ENABLE | TimerCtl::ISTATUS).bits(),
        Ordering::SeqCst,
    );
    gic.host().regs_mut().iar = 27;
    assert_eq!(gic.host().acknowledge(), Some(ppi(27)));
    set_hw_active(gic.host(), 1 << 27);
    gic.host().priority_drop(ppi(27));
    assert_eq!(gic.host().regs().last_eoir1, Some(27));
    gic.sync_after_exit().unwrap();
    timer.after_exit(&mut hw, &mut gic, &mut soft).unwrap();
    assert_eq!(
        timer.handle_host_irq(&mut hw, &mut gic),
        Ok(HostIrq::Raised)
    );
    // vINTID 27 pending with HW and pINTID 27: 0x70A0_001B_0000_001B.
    assert_eq!(lr(gic.host(), 0), 0x70A0_001B_0000_001B);
    assert_eq!(
        take_writes(gic.host()),
        [1 << 27, 0, 0, 0],
        "left active, not touched"
    );
    assert_eq!(
        gic.host().regs().last_dir,
        None,
        "not deactivated by the host"
    );

    // Next entry and exit: the line is high, the guest has not yet
    // handled it; nothing changes.
    timer.before_entry(&mut hw, &mut gic, &mut soft).unwrap();
    gic.sync_after_exit().unwrap();
    timer.after_exit(&mut hw, &mut gic, &mut soft).unwrap();
    assert_eq!(lr(gic.host(), 0), 0x70A0_001B_0000_001B);
    assert_eq!(take_writes(gic.host()), [1 << 27, 0, 0, 0]);

    // The guest acknowledges and deactivates vINTID 27: the LR becomes
    // invalid and, through the HW bit, the GIC deactivates physical 27.
    // Then it reprograms its timer: ISTATUS clears.
    gic.host().regs_mut().ich_lr[0] = 0x30A0_001B_0000_001B;
    set_hw_active(gic.host(), 0);
    ctl.store(TimerCtl::ENABLE.bits(), Ordering::SeqCst);
    gic.sync_after_exit().unwrap();
    timer.after_exit(&mut hw, &mut gic, &mut soft).unwrap();
    assert!(!timer.vtimer().level());
    // Nothing to withdraw, and nothing to deactivate: the guest's
    // completion deactivated physical 27 (the backend reports the virtual
    // interrupt inactive), so the next expiry is taken.
    assert_eq!(take_writes(gic.host()), [0, 0, 0, 0]);
    assert!(gic.list_registers().all(ListRegister::is_free));

    // Schedule-out: the timer first, then the vGIC (README order).
    timer.put(&mut hw, &mut soft).unwrap();
    gic.vcpu_put().unwrap();
    assert_eq!(gic.host().regs().ich_hcr, 0);
}

/// `after_irq_exit` at the IRQ exit forwards the fired timer before the
/// host acknowledges anything: the PPI is made active (ISACTIVER0), so the
/// host never takes it, and the interrupt goes into a list register with
/// the HW bit. The guest completes it with the condition still met (the
/// HW bit deactivates physical 27, which signals again): the next IRQ exit
/// finds the interrupt inactive and raises it again.
#[test]
fn a_timer_fired_at_an_irq_exit_is_forwarded_without_an_acknowledge() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    host.enable_ppi(IntId::VIRTUAL_TIMER, 0x80);
    let mut vcpu = VgicCpu::new();
    let vm = VmTimer::new();
    let mut timer = VcpuTimer::new();
    let ctl = Arc::new(AtomicU64::new(TimerCtl::ENABLE.bits()));
    let mut hw = timer_hw(&ctl);
    let mut soft = MockSoftTimers::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    timer.load(&vm, &mut hw, &mut gic).unwrap();
    timer.before_entry(&mut hw, &mut gic, &mut soft).unwrap();
    take_writes(gic.host());
    assert_eq!(take_writes(gic.host()), [0, 0, 0, 0], "inactive");

    // The timer fires; the IRQ exit forwards it.
    ctl.store(
        (TimerCtl::ENABLE | TimerCtl::ISTATUS).bits(),
        Ordering::SeqCst,
    );
    gic.sync_after_exit().unwrap();
    let forwarded = timer.after_irq_exit(&mut hw, &mut gic, &mut soft).unwrap();
    assert!(forwarded.contains(TimerId::Virtual));
    assert_eq!(take_writes(gic.host()), [1 << 27, 0, 0, 0], "made active");
    assert_eq!(lr(gic.host(), 0), 0x70A0_001B_0000_001B);
    assert_eq!(gic.host().regs().last_eoir1, None, "never acknowledged");
    assert_eq!(gic.host().regs().last_dir, None);

    // An IRQ exit for something else while the guest has not taken it:
    // nothing written (the RAM ISACTIVER0 cleared first, so that a write
    // of the active state would show).
    timer.before_entry(&mut hw, &mut gic, &mut soft).unwrap();
    gic.sync_after_exit().unwrap();
    set_hw_active(gic.host(), 0);
    assert!(
        timer
            .after_irq_exit(&mut hw, &mut gic, &mut soft)
            .unwrap()
            .is_empty()
    );
    assert_eq!(take_writes(gic.host()), [0, 0, 0, 0]);
    assert_eq!(lr(gic.host(), 0), 0x70A0_001B_0000_001B);

    // The guest completes it with the condition still met: raised again.
    gic.host().regs_mut().ich_lr[0] = 0x30A0_001B_0000_001B;
    set_hw_active(gic.host(), 0);
    gic.sync_after_exit().unwrap();
    let forwarded = timer.after_irq_exit(&mut hw, &mut gic, &mut soft).unwrap();
    assert!(forwarded.contains(TimerId::Virtual));
    assert_eq!(take_writes(gic.host()), [1 << 27, 0, 0, 0]);
    assert_eq!(lr(gic.host(), 0), 0x70A0_001B_0000_001B);

    timer.put(&mut hw, &mut soft).unwrap();
    gic.vcpu_put().unwrap();
}

#[test]
fn guest_reprogramming_before_handling_withdraws_the_forwarded_interrupt() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut vcpu = VgicCpu::new();
    let vm = VmTimer::new();
    let mut timer = VcpuTimer::new();
    let ctl = Arc::new(AtomicU64::new(TimerCtl::ENABLE.bits()));
    let mut hw = timer_hw(&ctl);
    let mut soft = MockSoftTimers::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    timer.load(&vm, &mut hw, &mut gic).unwrap();
    take_writes(gic.host());

    ctl.store(
        (TimerCtl::ENABLE | TimerCtl::ISTATUS).bits(),
        Ordering::SeqCst,
    );
    assert_eq!(
        timer.handle_host_irq(&mut hw, &mut gic),
        Ok(HostIrq::Raised)
    );
    assert_eq!(lr(gic.host(), 0), 0x70A0_001B_0000_001B);

    // The guest disables its timer with the interrupt still pending.
    ctl.store(0, Ordering::SeqCst);
    gic.sync_after_exit().unwrap();
    timer.after_exit(&mut hw, &mut gic, &mut soft).unwrap();
    assert_eq!(lr(gic.host(), 0), 0, "pending interrupt withdrawn");
    assert_eq!(
        take_writes(gic.host())[1],
        1 << 27,
        "physical PPI deactivated"
    );
}

#[test]
fn errors_display() {
    let errors = [
        Error::NoRedistributor(Affinity(0x0001_0203)),
        Error::RedistributorAsleep,
        Error::QueueFull { intid: 40 },
        Error::AlreadyLoaded,
        Error::NotLoaded,
        Error::InterfaceBusy,
        Error::LoadedOnOtherCpu,
        Error::TooFewListRegisters {
            needed: 5,
            available: 4,
        },
    ];
    for e in errors {
        assert!(!format!("{e}").is_empty());
    }
    assert_eq!(
        format!("{}", Error::NoRedistributor(Affinity(0x0001_0203))),
        "no GICv3 redistributor has affinity 0.1.2.3"
    );
}

// ---- review regressions ----------------------------------------------------

/// Loading a second vCPU on a CPU whose interface already holds one must be
/// refused (the GICv2 backend returns `InterfaceBusy`); here it silently
/// overwrites A's list registers, and A's `vcpu_put` then saves B's state.
#[test]
fn review_second_vcpu_load_on_one_cpu_is_refused() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut a = VgicCpu::new();
    let mut b = VgicCpu::new();
    {
        let mut gic = Gic::new(&mut host, &mut a);
        gic.vcpu_load().unwrap();
        gic.set_virtual_level(ppi(30), true).unwrap(); // A: vINTID 30 pending
    }
    let second = Gic::new(&mut host, &mut b).vcpu_load();
    // A's pending interrupt is gone from the hardware...
    let lost = host.regs().ich_lr[0] == 0;
    Gic::new(&mut host, &mut a).vcpu_put().unwrap();
    assert!(
        second.is_err(),
        "second vcpu_load accepted; A's LR0 wiped = {lost}, A saved {:?}",
        a.saved_list_registers()[0]
    );
}

#[test]
fn a_busy_interface_is_reported_and_freed_by_put() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut a = VgicCpu::new();
    let mut b = VgicCpu::new();
    Gic::new(&mut host, &mut a).vcpu_load().unwrap();
    assert!(host.vcpu_loaded());
    assert_eq!(
        Gic::new(&mut host, &mut b).vcpu_load(),
        Err(Error::InterfaceBusy)
    );
    assert!(!b.is_loaded());
    Gic::new(&mut host, &mut a).vcpu_put().unwrap();
    assert!(!host.vcpu_loaded());
    Gic::new(&mut host, &mut b).vcpu_load().unwrap();
    assert!(b.is_loaded());
}

/// A `VgicCpu` loaded on CPU0 and driven through CPU1's `HostGic` writes
/// CPU1's list registers (which belong to whatever runs there).
#[test]
fn review_loaded_vcpu_driven_from_another_cpu_touches_that_cpus_lrs() {
    let mut frames0 = frames(&[GICR_TYPER_LAST]);
    let mut frames1 = frames(&[(1 << 32) | GICR_TYPER_LAST]);
    let mut host0 = host(&mut frames0, VTR_4_LRS, 0);
    let mut host1 = host(&mut frames1, VTR_4_LRS, 1);
    let mut a = VgicCpu::new();
    Gic::new(&mut host0, &mut a).vcpu_load().unwrap();
    let r = Gic::new(&mut host1, &mut a).set_virtual_level(ppi(30), true);
    assert!(
        r.is_err() && host1.regs().ich_lr[0] == 0,
        "CPU1's LR0 = {:#x}, CPU0's LR0 = {:#x}",
        host1.regs().ich_lr[0],
        host0.regs().ich_lr[0]
    );
}

#[test]
fn every_vcpu_operation_from_another_cpu_is_refused_untouched() {
    let mut frames0 = frames(&[GICR_TYPER_LAST]);
    let mut frames1 = frames(&[(1 << 32) | GICR_TYPER_LAST]);
    let mut host0 = host(&mut frames0, VTR_4_LRS, 0);
    let mut host1 = host(&mut frames1, VTR_4_LRS, 1);
    let mut a = VgicCpu::new();
    Gic::new(&mut host0, &mut a).vcpu_load().unwrap();
    assert_eq!(a.loaded_on(), Some(Affinity(0)));
    assert_eq!(a.loaded_on(), Some(host0.cpu_id()));
    // CPU1 runs B, with a pending interrupt in its LR0.
    let mut b = VgicCpu::new();
    Gic::new(&mut host1, &mut b).vcpu_load().unwrap();
    Gic::new(&mut host1, &mut b)
        .set_virtual_level(ppi(31), true)
        .unwrap();
    let before = host1.regs().clone();
    let mut gic = Gic::new(&mut host1, &mut a);
    assert_eq!(
        gic.set_virtual_level(ppi(30), true),
        Err(Error::LoadedOnOtherCpu)
    );
    assert_eq!(
        gic.set_virtual_level(ppi(31), false),
        Err(Error::LoadedOnOtherCpu)
    );
    assert_eq!(gic.virtual_active(ppi(31)), Err(Error::LoadedOnOtherCpu));
    assert_eq!(gic.sync_after_exit(), Err(Error::LoadedOnOtherCpu));
    assert_eq!(gic.maintenance(), Err(Error::LoadedOnOtherCpu));
    assert_eq!(gic.vcpu_put(), Err(Error::LoadedOnOtherCpu));
    assert_eq!(gic.vcpu_load(), Err(Error::AlreadyLoaded));
    assert_eq!(
        gic.inject(ListRegister::software(40, LrState::Pending, 0xA0)),
        Err(Error::LoadedOnOtherCpu)
    );
    assert_eq!(gic.withdraw(id(31)), Err(Error::LoadedOnOtherCpu));
    assert_eq!(*host1.regs(), before, "CPU1's registers changed");
    assert!(host1.vcpu_loaded() && a.is_loaded());
    // On its own CPU, A is put as usual.
    Gic::new(&mut host0, &mut a).vcpu_put().unwrap();
    assert!(!a.is_loaded() && !host0.vcpu_loaded());
}

/// The exit's sync reads back only the list registers in use (the guest
/// never fills a free one), and never a register derived from them
/// (`ICH_ELRSR_EL2`, `ICH_EISR_EL2`), so no `isb` is needed after the list
/// register writes; `vcpu_put` saves what is in use.
#[test]
fn sync_reads_back_only_the_list_registers_in_use() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    let before = gic.host().regs().lr_reads.get();
    gic.sync_after_exit().unwrap();
    assert_eq!(gic.host().regs().lr_reads.get(), before, "nothing in use");
    gic.set_virtual_level(ppi(30), true).unwrap();
    gic.set_virtual_level(ppi(31), true).unwrap();
    gic.sync_after_exit().unwrap();
    assert_eq!(gic.host().regs().lr_reads.get(), before + 2);
    // The guest takes and completes 31 (software, EOI maintenance): the
    // sync sees it deactivated and, its line still high, makes it pending
    // again; then the line drops and it is withdrawn.
    gic.host().regs_mut().ich_lr[1] = 0x10A0_0200_0000_001F;
    gic.sync_after_exit().unwrap();
    assert_eq!(lr(gic.host(), 1), 0x50A0_0200_0000_001F);
    gic.set_virtual_level(ppi(31), false).unwrap();
    let before = gic.host().regs().lr_reads.get();
    gic.sync_after_exit().unwrap();
    assert_eq!(gic.host().regs().lr_reads.get(), before + 1, "LR 0 only");
    gic.vcpu_put().unwrap();
    assert_eq!(host.regs().unsynchronized_reads.get(), 0);
    assert_eq!(vcpu.saved_list_registers()[0].vintid(), 30);
    assert!(vcpu.saved_list_registers()[1].is_free());
}

#[test]
fn no_isb_on_the_exit_path_without_lr_writes() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    gic.sync_after_exit().unwrap();
    let isbs = gic.host().regs().isb_count;
    gic.sync_after_exit().unwrap();
    gic.sync_after_exit().unwrap();
    assert_eq!(gic.host().regs().isb_count, isbs);
    assert_eq!(gic.host().regs().unsynchronized_reads.get(), 0);
}

#[test]
fn maintenance_asserted_follows_ich_misr() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    assert!(!host.maintenance_asserted());
    let regs = host.regs_mut();
    regs.ich_lr[1] = 1 << 41; // deactivated, EOI maintenance due
    regs.ich_hcr = ICH_HCR_EN;
    assert!(host.maintenance_asserted(), "EOI condition");
    host.regs_mut().ich_hcr = 0;
    assert!(!host.maintenance_asserted(), "interface disabled");
}

#[test]
fn level_and_mapping_take_any_intid() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.set_level(id(30), true).unwrap();
    gic.map(id(27), id(27)).unwrap();
    assert!(gic.vcpu().level(id(30)));
    assert!(!gic.vcpu().level(id(31)));
    assert_eq!(gic.vcpu().mapping(id(27)), Some(id(27)));
    assert_eq!(gic.vcpu().mapping(id(30)), None);
    // Not PPIs: never mapped, no level here (and no panic).
    assert!(!gic.vcpu().level(id(40)));
    assert!(!gic.vcpu().level(id(8192)));
    assert_eq!(gic.vcpu().mapping(id(1019)), None);
    assert_eq!(gic.set_level(id(40), true), Err(Error::InvalidIntId(40)));
}

/// The fake's derived registers follow the specification's definitions on
/// raw bits (not the driver's decoding): ELRSR for State 0b00 with HW = 1
/// or EOI = 0, EISR for State 0b00, HW = 0 and EOI = 1; a HW register's
/// bit 41 is pINTID bit 9, not EOI.
#[test]
fn fake_derives_elrsr_and_eisr_from_raw_bits() {
    let mut regs = FakeSysRegs::new(VTR_4_LRS, 0);
    regs.ich_lr[0] = 0; // empty
    regs.ich_lr[1] = 1 << 41; // deactivated, EOI maintenance due
    regs.ich_lr[2] = (1 << 61) | (1 << 41) | 27; // HW, pINTID bit 9: empty
    regs.ich_lr[3] = (0b01 << 62) | (1 << 41) | 30; // pending with EOI
    regs.ich_lr[4] = 0; // not implemented (4 LRs)
    assert_eq!(regs.read(SysReg::IchElrsrEl2), 0b0101);
    assert_eq!(regs.read(SysReg::IchEisrEl2), 0b0010);
    regs.ich_hcr = ICH_HCR_EN | ICH_HCR_UIE;
    // One valid register (LR3): underflow; LR1: EOI.
    assert_eq!(regs.read(SysReg::IchMisrEl2), 0b11);
    regs.ich_lr[0] = (0b10 << 62) | 31; // active: two valid, no underflow
    assert_eq!(regs.read(SysReg::IchMisrEl2), 0b01);
    regs.ich_hcr = 0;
    assert_eq!(regs.read(SysReg::IchMisrEl2), 0);
}

/// With one list register the underflow condition (at most one valid
/// register) always holds: asking for it would storm.
#[test]
fn one_list_register_never_asks_for_underflow() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_1_LR, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    gic.set_virtual_level(ppi(20), true).unwrap();
    gic.set_virtual_level(ppi(21), true).unwrap();
    assert_eq!(gic.vcpu().queued().len(), 1);
    assert_eq!(gic.host().regs().ich_hcr & ICH_HCR_UIE, 0);
    gic.vcpu_put().unwrap();
    gic.vcpu_load().unwrap();
    assert_eq!(gic.host().regs().ich_hcr, ICH_HCR_EN, "UIE at load");
    // The guest deactivates 20 (EOI maintenance due) and its line drops:
    // 21 moves in, and nothing is left to ask underflow for.
    gic.host().regs_mut().ich_lr[0] = 0x0000_0200_0000_0014;
    gic.set_virtual_level(ppi(20), false).unwrap();
    assert!(gic.vcpu().queued().is_empty());
    assert_eq!(lr(gic.host(), 0), 0x50A0_0200_0000_0015);
    assert_eq!(gic.host().regs().ich_hcr, ICH_HCR_EN);
}

#[test]
fn load_moves_queued_interrupts_into_free_list_registers() {
    // Queued while not loaded, against a CPU with one list register...
    let mut frames0 = frames(&[GICR_TYPER_LAST]);
    let mut cpu0 = host(&mut frames0, VTR_1_LR, 0);
    let mut vcpu = VgicCpu::new();
    {
        let mut gic = Gic::new(&mut cpu0, &mut vcpu);
        gic.set_virtual_level(ppi(20), true).unwrap();
        gic.set_virtual_level(ppi(21), true).unwrap();
    }
    assert_eq!(vcpu.queued().len(), 1);
    // ... loaded on a CPU with four: 21 goes into LR1 at once.
    let mut frames1 = frames(&[(1 << 32) | GICR_TYPER_LAST]);
    let mut cpu1 = host(&mut frames1, VTR_4_LRS, 1);
    let mut gic = Gic::new(&mut cpu1, &mut vcpu);
    gic.vcpu_load().unwrap();
    assert!(gic.vcpu().queued().is_empty());
    assert_eq!(lr(gic.host(), 0), 0x50A0_0200_0000_0014);
    assert_eq!(lr(gic.host(), 1), 0x50A0_0200_0000_0015);
    assert_eq!(gic.host().regs().ich_hcr, ICH_HCR_EN);
}

#[test]
fn load_and_put_keep_the_hypervisors_ich_hcr_bits() {
    /// `ICH_HCR_EL2.TC` (bit 10) and `TDIR` (bit 14): traps a hypervisor
    /// may set.
    const TRAPS: u64 = (1 << 10) | (1 << 14);
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    host.regs_mut().ich_hcr = TRAPS;
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    assert_eq!(gic.host().regs().ich_hcr, TRAPS | ICH_HCR_EN);
    for n in 16..=20 {
        gic.set_virtual_level(ppi(n), true).unwrap();
    }
    assert_eq!(gic.host().regs().ich_hcr, TRAPS | ICH_HCR_EN | ICH_HCR_UIE);
    gic.vcpu_put().unwrap();
    assert_eq!(host.regs().ich_hcr, TRAPS);
}

#[test]
fn cpus_sharing_one_region_each_take_only_their_redistributor() {
    let mut frames = frames(&[0, (1 << 32) | GICR_TYPER_LAST]);
    let region = core::ptr::NonNull::from(&mut *frames);
    // SAFETY: RAM owned by the test; each fake register file is one CPU,
    // and each HostGic touches only its own frame.
    let (mut cpu0, mut cpu1) = unsafe {
        (
            HostGic::in_shared_region(FakeSysRegs::new(VTR_4_LRS, 0), region).unwrap(),
            HostGic::in_shared_region(FakeSysRegs::new(VTR_4_LRS, 1), region).unwrap(),
        )
    };
    cpu0.init().unwrap();
    cpu1.init().unwrap();
    cpu1.set_ppi_active(ppi(27), true);
    assert!(cpu1.ppi_active(ppi(27)));
    assert!(!cpu0.ppi_active(ppi(27)));
    assert_eq!(frames[1].sgi.isactiver0.0, 1 << 27);
    assert_eq!(frames[0].sgi.isactiver0.0, 0);
    // SAFETY: as above.
    let none = unsafe { HostGic::in_shared_region(FakeSysRegs::new(VTR_4_LRS, 2), region) };
    assert_eq!(none.err(), Some(Error::NoRedistributor(Affinity(2))));
}

/// The `u32` injection API has the GICv2 backend's names and types.
#[test]
fn u32_injection_api_matches_gicv2() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    gic.map(id(27), id(27)).unwrap();
    gic.set_level(id(27), true).unwrap();
    assert_eq!(
        ListRegister::from_bits(lr(gic.host(), 0)).pintid(),
        Some(27)
    );
    gic.host().regs_mut().ich_lr[0] |= 0b11 << 62; // guest acknowledged
    gic.sync_after_exit().unwrap();
    assert_eq!(gic.is_active(id(27)), Ok(true));
    gic.unmap(id(27)).unwrap();
    assert_eq!(gic.vcpu().mapping(id(27)), None);
    assert_eq!(gic.set_level(id(40), true), Err(Error::InvalidIntId(40)));
    assert_eq!(gic.is_active(id(1019)), Err(Error::InvalidIntId(1019)));
    assert_eq!(
        gic.map(id(27), id(40)),
        Err(Error::InvalidPhysicalIntId(40))
    );
}

#[test]
fn overflow_queue_is_first_in_first_out_with_its_capacity() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_1_LR, 0);
    let mut vcpu = VgicCpu::new();
    // Not loaded: the list register is the saved copy.
    let mut gic = Gic::new(&mut host, &mut vcpu);
    let spi = |n: u32| ListRegister::software(n, LrState::Pending, 0xA0);
    let capacity = u32::try_from(QUEUE_CAPACITY).unwrap();
    // 32 in the list register, 33.. in the queue.
    for n in 32..=32 + capacity {
        gic.inject(spi(n)).unwrap();
    }
    assert_eq!(gic.vcpu().queued().len(), QUEUE_CAPACITY);
    let newest = 33 + capacity;
    assert_eq!(
        gic.inject(spi(newest)),
        Err(Error::QueueFull { intid: newest })
    );
    // A queued one from the middle leaves; the newest takes the freed
    // place at the end.
    let middle = 36;
    gic.withdraw(id(middle)).unwrap();
    gic.inject(spi(newest)).unwrap();
    let expected: std::vec::Vec<u32> = (33..33 + capacity)
        .filter(|&n| n != middle)
        .chain([newest])
        .collect();
    let queued: std::vec::Vec<u32> = gic.vcpu().queued().iter().map(|lr| lr.vintid()).collect();
    assert_eq!(queued, expected);
    // Withdrawing what the list register holds frees it; the oldest queued
    // interrupt moves in.
    let mut refilled = std::vec::Vec::new();
    while !gic.vcpu().queued().is_empty() {
        let held = gic.list_register(0).unwrap().vintid();
        gic.withdraw(id(held)).unwrap();
        refilled.push(gic.list_register(0).unwrap().vintid());
    }
    assert_eq!(refilled, expected);
}

/// Between exits every lookup is a memory read (no list register is read):
/// no duplicate injection, a withdrawal that empties the register, free
/// registers reused lowest first, whatever the guest did reflected once
/// the exit is synchronized.
#[test]
fn lookups_between_exits_read_no_list_register_and_find_the_same() {
    let mut frames = frames(&[GICR_TYPER_LAST]);
    let mut host = host(&mut frames, VTR_4_LRS, 0);
    let mut vcpu = VgicCpu::new();
    let mut gic = Gic::new(&mut host, &mut vcpu);
    gic.vcpu_load().unwrap();
    let reads = gic.host().regs().lr_reads.get();
    assert_eq!(gic.virtual_active(ppi(27)), Ok(false));
    gic.map(ppi(27), ppi(27)).unwrap();
    gic.set_virtual_level(ppi(27), true).unwrap();
    assert_eq!(gic.virtual_active(ppi(27)), Ok(false));
    gic.set_virtual_level(ppi(27), true).unwrap();
    gic.set_virtual_level(ppi(30), true).unwrap();
    gic.set_virtual_level(ppi(30), true).unwrap();
    let held: std::vec::Vec<u32> = gic
        .list_registers()
        .filter(|lr| !lr.is_free())
        .map(|lr| lr.vintid())
        .collect();
    assert_eq!(held, [27, 30]);
    assert_eq!(gic.host().regs().lr_reads.get(), reads, "memory only");
    // The guest acknowledges 27: seen after the exit's sync.
    gic.host().regs_mut().ich_lr[0] = 0xB0A0_001B_0000_001B;
    assert_eq!(
        gic.virtual_active(ppi(27)),
        Ok(false),
        "not synchronized yet"
    );
    gic.sync_after_exit().unwrap();
    assert_eq!(gic.virtual_active(ppi(27)), Ok(true));
    // It deactivates it (HW: the register is free); 27 raised again takes
    // LR 0 back.
    gic.host().regs_mut().ich_lr[0] = 0x30A0_001B_0000_001B;
    gic.sync_after_exit().unwrap();
    assert!(gic.list_register(0).unwrap().is_free());
    gic.set_level(ppi(29), true).unwrap();
    assert_eq!(gic.list_register(0).unwrap().vintid(), 29);
    assert_eq!(lr(gic.host(), 0) & 0xFFFF_FFFF, 29);
    assert_eq!(gic.host().regs().unsynchronized_reads.get(), 0);
}
