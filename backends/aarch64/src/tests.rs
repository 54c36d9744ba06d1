//! Host tests of [`GenericTimer`] against [`FakeRegisters`].

use arch_timer_virt::mock::MockSoftTimers;
use arch_timer_virt::{SoftTimer, SoftTimers, Ticks, TimerCtl, TimerHw, TimerReg};

use crate::{
    Error, FakeRegisters, GenericTimer, HostMode, HypTimer, RegisterFile, TimerFeatures, VcpuSlots,
    WritableRegister,
};

fn timer(mode: HostMode) -> GenericTimer<FakeRegisters> {
    GenericTimer::detect(FakeRegisters::new(mode))
}

/// Bits 0/1 (E2H = 0) and 10/11 (E2H = 1).
const NVHE_BITS: u64 = 0b11;
const VHE_BITS: u64 = 0b11 << 10;

fn cnthctl_after(mode: HostMode, initial: u64, allowed: bool) -> u64 {
    let mut t = timer(mode);
    t.registers_mut().cnthctl_el2 = initial;
    t.set_el1_physical_access(allowed);
    t.registers().cnthctl_el2
}

#[test]
fn cnthctl_non_vhe_sets_and_clears_bits_0_and_1_only() {
    let others = !NVHE_BITS;
    // Every other bit set: allowing adds exactly bits 0/1, trapping takes
    // them away again, nothing else moves.
    assert_eq!(cnthctl_after(HostMode::NonVhe, others, true), u64::MAX);
    assert_eq!(cnthctl_after(HostMode::NonVhe, u64::MAX, false), others);
    // No other bit set: nothing else appears.
    assert_eq!(cnthctl_after(HostMode::NonVhe, 0, true), NVHE_BITS);
    assert_eq!(cnthctl_after(HostMode::NonVhe, NVHE_BITS, false), 0);
    // Bits 10/11 mean something else with E2H = 0 and are left alone.
    assert_eq!(cnthctl_after(HostMode::NonVhe, VHE_BITS, false), VHE_BITS);
    assert_eq!(
        cnthctl_after(HostMode::NonVhe, 0, true) & VHE_BITS,
        0,
        "E2H = 0 must not use the VHE layout"
    );
}

#[test]
fn cnthctl_vhe_sets_and_clears_bits_10_and_11_only() {
    let others = !VHE_BITS;
    assert_eq!(cnthctl_after(HostMode::Vhe, others, true), u64::MAX);
    assert_eq!(cnthctl_after(HostMode::Vhe, u64::MAX, false), others);
    assert_eq!(cnthctl_after(HostMode::Vhe, 0, true), VHE_BITS);
    assert_eq!(cnthctl_after(HostMode::Vhe, VHE_BITS, false), 0);
    // Bits 0/1 are EL0PCTEN/EL0VCTEN with E2H = 1: kept as they are.
    assert_eq!(cnthctl_after(HostMode::Vhe, NVHE_BITS, false), NVHE_BITS);
    assert_eq!(
        cnthctl_after(HostMode::Vhe, NVHE_BITS, true),
        NVHE_BITS | VHE_BITS
    );
}

#[test]
fn cnthctl_preserves_a_realistic_value() {
    // Event stream on (EVNTEN bit 2, EVNTI = 5), EL0VCTEN (bit 1 in VHE
    // layout), ECV bit 12.
    let value = (1 << 2) | (5 << 4) | (1 << 1) | (1 << 12);
    assert_eq!(cnthctl_after(HostMode::Vhe, value, true), value | VHE_BITS);
    assert_eq!(cnthctl_after(HostMode::Vhe, value | VHE_BITS, false), value);
    let value = (1 << 2) | (5 << 4) | (1 << 12);
    assert_eq!(
        cnthctl_after(HostMode::NonVhe, value, true),
        value | NVHE_BITS
    );
}

#[test]
fn cnthctl_is_not_rewritten_when_unchanged() {
    let mut t = timer(HostMode::Vhe);
    t.registers_mut().cnthctl_el2 = VHE_BITS;
    t.set_el1_physical_access(true);
    assert_eq!(t.registers().write_count, 0);
    t.set_el1_physical_access(false);
    assert_eq!(t.registers().write_count, 1);
    t.set_el1_physical_access(false);
    assert_eq!(t.registers().write_count, 1);
}

#[test]
fn features_decode_from_id_registers() {
    // (VH, ECV, E2H) -> (vhe_implemented, features)
    let cases = [
        (0, 0, HostMode::NonVhe, false, false),
        (1, 0, HostMode::NonVhe, true, false),
        (1, 0, HostMode::Vhe, true, false),
        (1, 1, HostMode::Vhe, true, true),
        (2, 2, HostMode::Vhe, true, true),
        (0, 1, HostMode::NonVhe, false, true),
        (1, 2, HostMode::NonVhe, true, true),
    ];
    for (vh, ecv, mode, vhe_implemented, ecv_present) in cases {
        let regs = FakeRegisters::new(mode).with_vh(vh).with_ecv(ecv);
        let t = GenericTimer::detect(regs);
        assert_eq!(t.vhe_implemented(), vhe_implemented, "VH = {vh}");
        assert_eq!(t.host_mode(), mode);
        assert_eq!(
            t.features(),
            TimerFeatures {
                vhe: mode.is_vhe(),
                ecv: ecv_present,
                frequency_hz: 62_500_000,
            },
            "VH = {vh}, ECV = {ecv}, {mode}"
        );
    }
}

#[test]
fn features_are_read_once() {
    let mut t = timer(HostMode::Vhe);
    t.registers_mut().cntfrq = 24_000_000;
    t.registers_mut().hcr_el2 = 0;
    t.registers_mut().id_aa64mmfr0_el1 = 1 << 60;
    let f = t.features();
    assert!(f.vhe);
    assert!(!f.ecv);
    assert_eq!(f.frequency_hz, 62_500_000);
}

#[test]
fn frequency_keeps_low_32_bits() {
    let mut regs = FakeRegisters::new(HostMode::NonVhe);
    regs.cntfrq = (0xffff_u64 << 32) | 19_200_000;
    assert_eq!(
        GenericTimer::detect(regs).features().frequency_hz,
        19_200_000
    );
}

#[test]
fn vhe_reaches_the_guest_timer_through_el02() {
    let mut t = timer(HostMode::Vhe);
    t.set_vtimer_cval(Ticks::new(1234));
    t.set_vtimer_ctl(TimerCtl::ENABLE | TimerCtl::IMASK);
    let regs = t.registers();
    assert_eq!(regs.el1_vtimer_cval, 1234);
    assert_eq!(regs.el1_vtimer_ctl, 0b11);
    // The EL2 virtual timer (what CNTV_*_EL0 would have hit) is untouched.
    assert_eq!(regs.el2_vtimer_cval, 0);
    assert_eq!(regs.el2_vtimer_ctl, 0);
    assert_eq!(regs.undefined_accesses(), 0);
    assert_eq!(t.vtimer_cval(), Ticks::new(1234));
    assert_eq!(t.vtimer_ctl(), TimerCtl::ENABLE | TimerCtl::IMASK);

    // Reads come from the guest's timer too, not from CNTHV_*.
    t.registers_mut().el2_vtimer_cval = 99;
    t.registers_mut().el2_vtimer_ctl = 1;
    assert_eq!(t.vtimer_cval(), Ticks::new(1234));
    assert_eq!(t.vtimer_ctl(), TimerCtl::ENABLE | TimerCtl::IMASK);
}

#[test]
fn non_vhe_reaches_the_guest_timer_through_el0() {
    let mut t = timer(HostMode::NonVhe);
    t.set_vtimer_cval(Ticks::new(77));
    t.set_vtimer_ctl(TimerCtl::ENABLE);
    assert_eq!(t.registers().el1_vtimer_cval, 77);
    assert_eq!(t.registers().el1_vtimer_ctl, 0b01);
    assert_eq!(t.vtimer_cval(), Ticks::new(77));
    // _EL02 accesses would be UNDEFINED with E2H = 0: none happened.
    assert_eq!(t.registers().undefined_accesses(), 0);
}

#[test]
fn register_choice_follows_host_mode() {
    assert_eq!(
        HostMode::Vhe.vtimer_ctl_register(),
        WritableRegister::CntvCtlEl02
    );
    assert_eq!(
        HostMode::Vhe.vtimer_cval_register(),
        WritableRegister::CntvCvalEl02
    );
    assert_eq!(
        HostMode::NonVhe.vtimer_ctl_register(),
        WritableRegister::CntvCtlEl0
    );
    assert_eq!(
        HostMode::NonVhe.vtimer_cval_register(),
        WritableRegister::CntvCvalEl0
    );
    assert_eq!(HostMode::from_hcr_el2(1 << 34), HostMode::Vhe);
    assert_eq!(HostMode::from_hcr_el2(!(1 << 34)), HostMode::NonVhe);
}

#[test]
fn vtimer_ctl_reports_istatus_and_never_writes_it() {
    for mode in [HostMode::NonVhe, HostMode::Vhe] {
        let mut t = timer(mode);
        t.registers_mut().cntpct = 1_000;
        t.set_virtual_offset(Ticks::new(100));
        t.set_vtimer_cval(Ticks::new(900));
        t.set_vtimer_ctl(TimerCtl::ENABLE | TimerCtl::ISTATUS);
        assert_eq!(t.registers().el1_vtimer_ctl, 0b01, "{mode}");
        // CNTVCT = 900 >= CVAL: the condition holds.
        assert_eq!(t.vtimer_ctl(), TimerCtl::ENABLE | TimerCtl::ISTATUS);
        t.registers_mut().cntpct = 999;
        assert_eq!(t.vtimer_ctl(), TimerCtl::ENABLE);
    }
}

#[test]
fn counter_offset_and_barrier() {
    let mut t = timer(HostMode::Vhe);
    t.registers_mut().cntpct = 0xdead_beef;
    assert_eq!(t.physical_count(), Ticks::new(0xdead_beef));
    t.set_virtual_offset(Ticks::new(42));
    assert_eq!(t.registers().cntvoff_el2, 42);
    assert_eq!(t.registers().isb_count, 0);
    t.barrier();
    t.barrier();
    assert_eq!(t.registers().isb_count, 2);
}

#[test]
fn physical_offset_is_refused_without_ecv() {
    for mode in [HostMode::NonVhe, HostMode::Vhe] {
        let mut t = timer(mode);
        assert!(!t.has_physical_offset());
        // The trait's form does nothing at all.
        t.set_physical_offset(Ticks::new(5));
        assert_eq!(t.registers().write_count, 0);
        assert_eq!(
            t.try_set_physical_offset(Ticks::new(5)),
            Err(Error::EcvNotImplemented)
        );
        let regs = t.registers();
        assert_eq!(regs.cntpoff_el2, 0);
        assert_eq!(regs.write_count, 0, "CNTPOFF_EL2 must not be touched");
        assert_eq!(regs.undefined_accesses(), 0);
    }
}

#[test]
fn physical_offset_is_written_with_ecv() {
    for level in [1, 2] {
        let mut t = GenericTimer::detect(FakeRegisters::new(HostMode::Vhe).with_ecv(level));
        assert_eq!(t.try_set_physical_offset(Ticks::new(5)), Ok(()));
        assert_eq!(t.registers().cntpoff_el2, 5);
        assert_eq!(t.registers().undefined_accesses(), 0);
    }
}

/// `CNTHCTL_EL2.ECV` is bit 12 in both layouts; it is set exactly while
/// the offset is not zero, and no other bit moves.
#[test]
fn physical_offset_sets_the_ecv_bit_only_while_non_zero() {
    const ECV: u64 = 1 << 12;
    for mode in [HostMode::NonVhe, HostMode::Vhe] {
        let mut t = GenericTimer::detect(FakeRegisters::new(mode).with_ecv(1));
        assert!(t.has_physical_offset());
        let others = !ECV;
        t.registers_mut().cnthctl_el2 = others;
        t.set_physical_offset(Ticks::new(1000));
        assert_eq!(t.registers().cntpoff_el2, 1000, "{mode:?}");
        assert_eq!(t.registers().cnthctl_el2, u64::MAX, "{mode:?}");
        t.set_physical_offset(Ticks::ZERO);
        assert_eq!(t.registers().cntpoff_el2, 0);
        assert_eq!(t.registers().cnthctl_el2, others);
        assert_eq!(t.registers().undefined_accesses(), 0);
    }
}

/// `reset_cpu` probes whether the physical offset takes effect: with
/// FEAT_ECV and `SCR_EL3.ECVEn` it does, and the timer offers it; with EL3
/// keeping it off (QEMU without EL3) it does not, and
/// `has_physical_offset` says no although the ID register says FEAT_ECV.
/// Either way the probe leaves the EL1 physical timer disabled, the offset
/// 0 and the ECV bit clear, at any counter value.
#[test]
fn reset_cpu_probes_whether_the_physical_offset_takes_effect() {
    const ECV: u64 = 1 << 12;
    for mode in [HostMode::NonVhe, HostMode::Vhe] {
        for ecven in [true, false] {
            for now in [0, 12_345, u64::MAX / 2] {
                let mut t = GenericTimer::detect(FakeRegisters::new(mode).with_ecv(1));
                t.registers_mut().scr_el3_ecven = ecven;
                t.registers_mut().cntpct = now;
                assert_eq!(t.physical_offset_effective(), None);
                assert!(t.has_physical_offset(), "trusted until probed");
                t.reset_cpu();
                let what = std::format!("{mode:?} ECVEn={ecven} now={now}");
                assert_eq!(t.physical_offset_effective(), Some(ecven), "{what}");
                assert_eq!(t.has_physical_offset(), ecven, "{what}");
                let r = t.registers();
                assert_eq!(r.el1_ptimer_ctl, 0, "{what}");
                assert_eq!(r.cntpoff_el2, 0, "{what}");
                assert_eq!(r.cnthctl_el2 & ECV, 0, "{what}");
                assert_eq!(r.undefined_accesses(), 0, "{what}");
            }
        }
    }
    // Without FEAT_ECV there is nothing to probe.
    let mut t = timer(HostMode::Vhe);
    t.reset_cpu();
    assert_eq!(t.physical_offset_effective(), None);
    assert!(!t.has_physical_offset());
}

/// The EL1 physical timer: `CNTP_*_EL02` with E2H = 1 (never `CNTP_*_EL0`,
/// which reaches the hypervisor's own `CNTHP_*_EL2` there), `CNTP_*_EL0`
/// with E2H = 0; ISTATUS counts with the physical offset while ECV is on.
#[test]
fn the_el1_physical_timer_is_reached_in_both_host_modes() {
    for mode in [HostMode::NonVhe, HostMode::Vhe] {
        let mut t = GenericTimer::detect(FakeRegisters::new(mode).with_ecv(2));
        t.registers_mut().cnthp_cval_el2 = 7;
        t.registers_mut().cnthp_ctl_el2 = 1;
        t.set_ptimer_cval(Ticks::new(500));
        t.set_ptimer_ctl(TimerCtl::ENABLE | TimerCtl::ISTATUS);
        let r = t.registers();
        assert_eq!(
            (r.el1_ptimer_cval, r.el1_ptimer_ctl),
            (500, 0b01),
            "{mode:?}"
        );
        assert_eq!(
            (r.cnthp_cval_el2, r.cnthp_ctl_el2),
            (7, 1),
            "{mode:?}: the EL2 physical timer is untouched"
        );
        assert_eq!(r.undefined_accesses(), 0, "{mode:?}");
        assert_eq!(t.ptimer_cval(), Ticks::new(500));
        t.registers_mut().cntpct = 499;
        assert_eq!(t.ptimer_ctl(), TimerCtl::ENABLE);
        t.registers_mut().cntpct = 500;
        assert_eq!(t.ptimer_ctl(), TimerCtl::ENABLE | TimerCtl::ISTATUS);
        assert!(t.registers().el1_ptimer_asserted());
        // With an offset of 100 the EL1 count is 400: not yet.
        t.set_physical_offset(Ticks::new(100));
        assert_eq!(t.registers().el1_physical_count(), 400);
        assert_eq!(t.ptimer_ctl(), TimerCtl::ENABLE, "{mode:?}");
        t.registers_mut().cntpct = 600;
        assert_eq!(t.ptimer_ctl(), TimerCtl::ENABLE | TimerCtl::ISTATUS);
    }
}

/// A vCPU with a direct physical timer on the fake registers, both host
/// modes, with and without ECV and a VM offset: what load leaves in
/// CNTHCTL_EL2/CNTPOFF_EL2 and the EL1 physical timer, and what put
/// restores.
#[test]
fn vcpu_timer_with_a_direct_physical_timer_on_the_registers() {
    use arch_timer_virt::mock::MockIrqChip;
    use arch_timer_virt::{PhysTimerMode, TimerId, VcpuTimer, VmTimer};
    const ECV: u64 = 1 << 12;
    for (mode, bits) in [(HostMode::NonVhe, NVHE_BITS), (HostMode::Vhe, VHE_BITS)] {
        for (ecv, offset) in [(0, 0), (0, 1000), (1, 0), (1, 1000)] {
            let mut vm = VmTimer::new();
            vm.set_phys_timer_mode(PhysTimerMode::Auto).unwrap();
            vm.set_counter_offset(Ticks::new(offset));
            let mut t = GenericTimer::detect(FakeRegisters::new(mode).with_ecv(ecv));
            t.reset_cpu();
            t.registers_mut().cntpct = 5000;
            let mut chip = MockIrqChip::new();
            chip.expect_map_virtual().returning(|_, _| Ok(()));
            chip.expect_unmap_virtual().returning(|_| Ok(()));
            chip.expect_set_host_active().returning(|_, _| Ok(()));
            chip.expect_set_host_masked().returning(|_, _| Ok(()));
            chip.expect_virtual_active().returning(|_| Ok(false));
            chip.expect_set_virtual_level().returning(|_, _| Ok(()));
            let mut vcpu = VcpuTimer::new();
            vcpu.set_reg(
                &vm,
                &mut t,
                &mut chip,
                TimerId::Physical,
                TimerReg::Cval,
                4200,
            )
            .unwrap();
            vcpu.set_reg(&vm, &mut t, &mut chip, TimerId::Physical, TimerReg::Ctl, 1)
                .unwrap();
            vcpu.load(&vm, &mut t, &mut chip).unwrap();
            let direct = ecv == 1 || offset == 0;
            let what = std::format!("{mode:?} ecv={ecv} offset={offset}");
            assert_eq!(vcpu.is_direct(TimerId::Physical), direct, "{what}");
            let r = t.registers();
            assert_eq!(
                r.cnthctl_el2 & bits,
                if direct { bits } else { 0 },
                "{what}"
            );
            let ecv_on = direct && ecv == 1 && offset != 0;
            assert_eq!(r.cnthctl_el2 & ECV != 0, ecv_on, "{what}");
            assert_eq!(r.cntpoff_el2, if ecv_on { offset } else { 0 }, "{what}");
            if direct {
                assert_eq!((r.el1_ptimer_cval, r.el1_ptimer_ctl), (4200, 1), "{what}");
                assert_eq!(r.el1_physical_count(), 5000 - offset, "{what}");
            } else {
                assert_eq!(r.el1_ptimer_ctl, 0, "{what}: emulated, not on the hardware");
            }
            assert_eq!(r.undefined_accesses(), 0, "{what}");
            assert_eq!(
                vcpu.get_reg(&vm, &t, TimerId::Physical, TimerReg::Cnt),
                5000 - offset,
                "{what}"
            );
            let mut soft = MockSoftTimers::new();
            soft.expect_cancel().return_const(());
            vcpu.put(&mut t, &mut soft).unwrap();
            let r = t.registers();
            assert_eq!(r.el1_ptimer_ctl, 0, "{what}");
            assert_eq!(r.cntpoff_el2, 0, "{what}");
            assert_eq!(r.cnthctl_el2 & (bits | ECV), bits, "{what}");
            assert_eq!(r.undefined_accesses(), 0, "{what}");
        }
    }
}

#[test]
fn stated_host_mode_is_checked() {
    for mode in [HostMode::NonVhe, HostMode::Vhe] {
        let t = GenericTimer::with_host_mode(FakeRegisters::new(mode), mode);
        assert_eq!(t.map(|t| t.host_mode()), Ok(mode));
    }
    let r = GenericTimer::with_host_mode(FakeRegisters::new(HostMode::NonVhe), HostMode::Vhe);
    assert_eq!(
        r.map(|t| t.host_mode()),
        Err(Error::HostModeMismatch {
            stated: HostMode::Vhe,
            actual: HostMode::NonVhe,
        })
    );
    let r = GenericTimer::with_host_mode(FakeRegisters::new(HostMode::Vhe), HostMode::NonVhe);
    assert!(matches!(r, Err(Error::HostModeMismatch { .. })));
    let regs = FakeRegisters::new(HostMode::NonVhe).with_vh(0);
    let r = GenericTimer::with_host_mode(regs, HostMode::Vhe);
    assert!(matches!(r, Err(Error::VheNotImplemented)));
    // Without VHE, the classic mode is fine.
    let regs = FakeRegisters::new(HostMode::NonVhe).with_vh(0);
    assert!(GenericTimer::with_host_mode(regs, HostMode::NonVhe).is_ok());
}

#[test]
fn fake_flags_undefined_accesses() {
    // The fake itself: a caller that picks the wrong register is caught.
    let mut regs = FakeRegisters::new(HostMode::NonVhe);
    regs.write(WritableRegister::CntvCtlEl02, 1);
    regs.write(WritableRegister::CntpoffEl2, 1);
    assert_eq!(regs.read(crate::Register::CntvCvalEl02), 0);
    assert_eq!(regs.undefined_accesses(), 3);
    assert_eq!(regs.el1_vtimer_ctl, 0);
    assert_eq!(regs.cntpoff_el2, 0);
    // With E2H = 1, CNTV_CTL_EL0 from EL2 is the EL2 virtual timer.
    let mut regs = FakeRegisters::new(HostMode::Vhe);
    regs.write(WritableRegister::CntvCtlEl0, 1);
    assert_eq!(regs.el2_vtimer_ctl, 1);
    assert_eq!(regs.el1_vtimer_ctl, 0);
}

#[test]
fn works_through_a_borrowed_register_file() {
    let mut regs = FakeRegisters::new(HostMode::Vhe);
    {
        let mut t = GenericTimer::detect(&mut regs);
        t.set_vtimer_cval(Ticks::new(3));
        let hw: &mut dyn TimerHw = &mut t;
        hw.set_el1_physical_access(true);
    }
    assert_eq!(regs.el1_vtimer_cval, 3);
    assert_eq!(regs.cnthctl_el2, VHE_BITS);
}

#[test]
fn errors_display() {
    use std::string::ToString;
    assert!(Error::EcvNotImplemented.to_string().contains("FEAT_ECV"));
    let e = Error::HostModeMismatch {
        stated: HostMode::Vhe,
        actual: HostMode::NonVhe,
    };
    assert_eq!(
        e.to_string(),
        "host mode stated as VHE (E2H = 1) but HCR_EL2.E2H says non-VHE (E2H = 0)"
    );
}

#[test]
fn sysregs_token_stays_tiny() {
    // Two bools recording which optional registers exist, nothing more.
    assert!(core::mem::size_of::<crate::SysRegs>() <= 2);
    assert!(core::mem::size_of::<crate::El2Timer>() <= 24);
}

#[test]
fn fake_allows_optional_registers_where_they_exist() {
    // E2H = 1 and FEAT_ECV: the _EL02 registers and CNTPOFF_EL2 work.
    let mut regs = FakeRegisters::new(HostMode::Vhe).with_ecv(1);
    regs.write(WritableRegister::CntvCvalEl02, 7);
    regs.write(WritableRegister::CntpoffEl2, 9);
    assert_eq!(regs.read(crate::Register::CntvCvalEl02), 7);
    assert_eq!(regs.read(crate::Register::CntpoffEl2), 9);
    assert_eq!(regs.undefined_accesses(), 0);
    // Clearing E2H afterwards makes the _EL02 registers vanish again.
    regs.hcr_el2 = 0;
    assert_eq!(regs.read(crate::Register::CntvCvalEl02), 0);
    assert_eq!(regs.undefined_accesses(), 1);
}

/// `reset_cpu` leaves what the core expects on a CPU with no vCPU: the EL1
/// virtual timer disabled, `CNTVOFF_EL2` 0, EL1 physical access allowed,
/// in both host modes (the EL2 timer is not touched).
#[test]
fn reset_cpu_disables_the_el1_vtimer_zeroes_cntvoff_and_allows_el1_access() {
    for (mode, bits) in [(HostMode::NonVhe, NVHE_BITS), (HostMode::Vhe, VHE_BITS)] {
        let mut t = timer(mode);
        let r = t.registers_mut();
        r.el1_vtimer_ctl = 1;
        r.el1_ptimer_ctl = 1;
        r.el2_vtimer_ctl = 1;
        r.cnthp_ctl_el2 = 1;
        r.cntvoff_el2 = 0xdead_beef;
        r.cnthctl_el2 = 0;
        t.reset_cpu();
        let r = t.registers();
        assert_eq!(r.el1_vtimer_ctl, 0, "{mode:?}");
        assert_eq!(r.el1_ptimer_ctl, 0, "{mode:?}");
        assert_eq!(r.cnthp_ctl_el2, 1, "{mode:?}: the hypervisor's timer too");
        assert_eq!(
            r.undefined_accesses(),
            0,
            "{mode:?}: no CNTPOFF_EL2 without ECV"
        );
        assert_eq!(
            r.el2_vtimer_ctl, 1,
            "{mode:?}: the host's own timer is left alone"
        );
        assert_eq!(r.cntvoff_el2, 0, "{mode:?}");
        assert_eq!(r.cnthctl_el2, bits, "{mode:?}");
    }
}

/// `program` looks for the earliest deadline again only after a deadline
/// changed: re-arming a slot at its own deadline or cancelling an empty
/// one changes nothing; cancelling the earliest brings the next one in.
#[test]
fn hyp_timer_programs_again_after_every_change_only() {
    const TICK: usize = 0;
    let mut regs = FakeRegisters::new(HostMode::Vhe);
    let mut hyp = HypTimer::<3>::new();
    let v = VcpuSlots::new(1, 2);
    assert_eq!(hyp.arm(TICK, Ticks::new(1000)), Ok(()));
    hyp.program(&mut regs);
    assert_eq!((regs.cnthp_cval_el2, regs.cnthp_ctl_el2), (1000, 1));
    let writes = regs.write_count;
    assert_eq!(hyp.arm(TICK, Ticks::new(1000)), Ok(()));
    hyp.vcpu(v)
        .map(|mut s| s.cancel(SoftTimer::Background))
        .unwrap();
    hyp.program(&mut regs);
    assert_eq!(regs.write_count, writes, "nothing changed: no write");
    hyp.vcpu(v)
        .map(|mut s| s.arm(SoftTimer::Background, Ticks::new(500)))
        .unwrap();
    hyp.program(&mut regs);
    assert_eq!(regs.cnthp_cval_el2, 500);
    hyp.vcpu(v)
        .map(|mut s| s.cancel(SoftTimer::Background))
        .unwrap();
    hyp.program(&mut regs);
    assert_eq!(regs.cnthp_cval_el2, 1000, "the tick is the earliest again");
    assert_eq!(hyp.cancel(TICK), Ok(()));
    hyp.program(&mut regs);
    assert_eq!(regs.cnthp_ctl_el2, 0, "nothing armed: disabled");
}

/// The hypervisor's tick (slot 0) and two vCPUs' soft timers share the EL2
/// physical timer: the earliest deadline is on the hardware, an expiry
/// empties exactly the passed slots and programs the next one.
#[test]
fn hyp_timer_multiplexes_the_earliest_deadline() {
    const TICK: usize = 0;
    let mut regs = FakeRegisters::new(HostMode::Vhe);
    let mut hyp = HypTimer::<5>::new();
    let (v0, v1) = (VcpuSlots::new(1, 2), VcpuSlots::new(3, 4));
    assert_eq!(VcpuSlots::nth(1, 1), Some(v1));

    hyp.program(&mut regs);
    assert_eq!(regs.cnthp_ctl_el2, 0, "nothing armed: disabled");
    assert_eq!(hyp.arm(TICK, Ticks::new(1000)), Ok(()));
    hyp.vcpu(v0)
        .map(|mut s| s.arm(SoftTimer::Physical, Ticks::new(700)))
        .unwrap();
    hyp.vcpu(v1)
        .map(|mut s| s.arm(SoftTimer::Background, Ticks::new(300)))
        .unwrap();
    assert_eq!(regs.cnthp_cval_el2, 0, "arming alone touches no register");
    hyp.program(&mut regs);
    assert_eq!((regs.cnthp_cval_el2, regs.cnthp_ctl_el2), (300, 1));
    let writes = regs.write_count;
    hyp.program(&mut regs);
    assert_eq!(regs.write_count, writes, "unchanged: no write");

    regs.cntpct = 299;
    assert!(!regs.hyp_timer_asserted());
    regs.cntpct = 700;
    assert!(regs.hyp_timer_asserted());
    let expired = hyp.expire(&mut regs);
    assert_eq!(expired.iter().collect::<std::vec::Vec<_>>(), [2, 3]);
    assert_eq!(expired.vcpu(v0), (false, true));
    assert_eq!(expired.vcpu(v1), (true, false));
    let kept = expired
        .union(crate::Expired::default())
        .without(3)
        .without(usize::MAX);
    assert_eq!(kept.iter().collect::<std::vec::Vec<_>>(), [2]);
    assert_eq!(regs.cnthp_cval_el2, 1000, "the tick is next");
    assert!(!regs.hyp_timer_asserted(), "reprogramming lowers the line");

    // Cancelled on its way: an interrupt with nothing due only reprograms.
    assert_eq!(hyp.cancel(TICK), Ok(()));
    regs.cntpct = 1000;
    assert!(hyp.expire(&mut regs).is_empty());
    assert_eq!(regs.cnthp_ctl_el2, 0);
    assert_eq!(regs.undefined_accesses(), 0);
}

#[test]
fn hyp_timer_rejects_bad_slots_without_panicking() {
    let mut hyp = HypTimer::<3>::new();
    assert_eq!(hyp.arm(3, Ticks::new(1)), Err(Error::NoSuchSlot(3)));
    assert_eq!(hyp.cancel(usize::MAX), Err(Error::NoSuchSlot(usize::MAX)));
    assert_eq!(hyp.deadline(99), None);
    assert_eq!(
        hyp.vcpu(VcpuSlots::new(1, 1)).err(),
        Some(Error::NoSuchSlot(1))
    );
    assert_eq!(
        hyp.vcpu(VcpuSlots::new(2, 3)).err(),
        Some(Error::NoSuchSlot(3))
    );
    assert_eq!(VcpuSlots::nth(usize::MAX, 1), None);
    let mut soft = hyp.vcpu(VcpuSlots::new(0, 2)).unwrap();
    soft.arm(SoftTimer::Background, Ticks::new(5));
    assert_eq!(soft.deadline(SoftTimer::Background), Some(Ticks::new(5)));
    soft.cancel(SoftTimer::Background);
    assert_eq!(soft.deadline(SoftTimer::Background), None);
}

/// The library's lifecycle on the fakes: `block` arms the background slot
/// of the vCPU in the `HypTimer`, `unblock` cancels it.
#[test]
fn vcpu_timer_block_arms_its_hyp_timer_slot() {
    use arch_timer_virt::mock::MockIrqChip;
    use arch_timer_virt::{VcpuTimer, VmTimer, Wakeup};
    let vm = VmTimer::new();
    let mut t = timer(HostMode::Vhe);
    let mut hyp = HypTimer::<3>::new();
    let slots = VcpuSlots::new(1, 2);
    let mut vcpu = VcpuTimer::new();
    let mut chip = MockIrqChip::new();
    chip.expect_map_virtual().returning(|_, _| Ok(()));
    chip.expect_set_host_active().returning(|_, _| Ok(()));
    chip.expect_set_host_masked().returning(|_, _| Ok(()));
    chip.expect_virtual_active().returning(|_| Ok(false));
    vcpu.load(&vm, &mut t, &mut chip).unwrap();
    // The guest arms its virtual timer 500 ticks ahead and waits.
    t.registers_mut().cntpct = 100;
    t.set_vtimer_cval(Ticks::new(600));
    t.set_vtimer_ctl(TimerCtl::ENABLE);
    let wake = vcpu.block(&vm, &mut t, &mut hyp.vcpu(slots).unwrap());
    assert_eq!(wake, Wakeup::At(Ticks::new(600)));
    hyp.program(t.registers_mut());
    assert_eq!(t.registers().cnthp_cval_el2, 600);
    t.registers_mut().cntpct = 600;
    assert!(hyp.expire(t.registers_mut()).contains(slots.background));
    chip.expect_set_virtual_level().returning(|_, _| Ok(()));
    vcpu.unblock(&mut t, &mut chip, &mut hyp.vcpu(slots).unwrap())
        .unwrap();
    assert_eq!(hyp.next_deadline(), None);
}
