//! Invariant 7: any value a guest or VMM writes, any configuration and any
//! call order gives a defined result, never a panic or an overflow.

mod common;

use arch_timer_virt::emulate::{self, Access, SysRegTrap};
use arch_timer_virt::{
    ConfigError, Error, Forwarding, IntId, NotLoaded, Ticks, TimerId, TimerReg, VcpuTimer, VmTimer,
};
use common::{FakeChip, FakeCpu, FakeSoft};
use proptest::prelude::*;

fn timer_id() -> impl Strategy<Value = TimerId> {
    prop_oneof![Just(TimerId::Virtual), Just(TimerId::Physical)]
}

fn timer_reg() -> impl Strategy<Value = TimerReg> {
    prop_oneof![
        Just(TimerReg::Ctl),
        Just(TimerReg::Cval),
        Just(TimerReg::Tval),
        Just(TimerReg::Cnt)
    ]
}

/// Counter values and register values biased towards the edges.
fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        Just(0),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(1 << 63),
        Just(u64::from(u32::MAX)),
        (0_u64..16),
        any::<i32>().prop_map(|t| i64::from(t).cast_unsigned()),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Set(TimerId, TimerReg, u64),
    Get(TimerId, TimerReg),
    Trap(u32, u64),
    Advance(u64),
    SetCounter(u64),
    VmOffset(u64),
    SetIrqs(u32, u32),
    Load,
    Put,
    Block,
    Unblock,
    Round,
    HostIrq,
    Expire,
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (timer_id(), timer_reg(), value()).prop_map(|(t, r, v)| Op::Set(t, r, v)),
        2 => (timer_id(), timer_reg()).prop_map(|(t, r)| Op::Get(t, r)),
        2 => (any::<u32>(), value()).prop_map(|(iss, v)| Op::Trap(iss, v)),
        2 => (any::<u32>(), value()).prop_map(|(low, v)| {
            // A timer-register ISS (Op0 3, Op1 3, CRn 14) with arbitrary
            // direction (bit 0), CRm (4:1), Rt (9:5) and Op2 (19:17).
            let iss = (3 << 20) | (3 << 14) | (14 << 10) | (low & 0xe_03ff);
            Op::Trap(iss, v)
        }),
        2 => value().prop_map(Op::Advance),
        1 => value().prop_map(Op::SetCounter),
        1 => value().prop_map(Op::VmOffset),
        1 => (0_u32..48, 0_u32..48).prop_map(|(v, p)| Op::SetIrqs(v, p)),
        1 => Just(Op::Load),
        1 => Just(Op::Put),
        1 => Just(Op::Block),
        1 => Just(Op::Unblock),
        3 => Just(Op::Round),
        2 => Just(Op::HostIrq),
        1 => Just(Op::Expire),
        1 => Just(Op::Reset),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Arbitrary histories of register writes, traps, time jumps (also
    /// backwards and across the top of the counter) and lifecycle calls in
    /// any order: nothing panics, wrong-state calls are reported, and the
    /// one-home rule holds after every step.
    #[test]
    fn arbitrary_histories_never_panic(
        forwarding in prop_oneof![Just(Forwarding::Hardware), Just(Forwarding::Masking)],
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let mut vm = VmTimer::new();
        prop_assert_eq!(vm.set_forwarding(forwarding), Ok(()));
        let mut timer = VcpuTimer::new();
        let mut cpu = FakeCpu::default();
        let mut chip = FakeChip::default();
        let mut soft = FakeSoft::default();
        for op in ops {
            match op {
                Op::Set(t, r, v) => {
                    prop_assert_eq!(timer.set_reg(&vm, &mut cpu, &mut chip, t, r, v), Ok(()));
                }
                Op::Get(t, r) => {
                    let v = timer.get_reg(&vm, &cpu, t, r);
                    if r == TimerReg::Ctl {
                        prop_assert_eq!(v & !7, 0);
                    }
                    if r == TimerReg::Tval {
                        prop_assert!(v <= u64::from(u32::MAX));
                    }
                }
                Op::Trap(iss, v) => {
                    if let Some(trap) = SysRegTrap::decode(iss) {
                        let access = if trap.is_read { Access::Read } else { Access::Write(v) };
                        let r = emulate::access(&mut timer, &vm, &mut cpu, &mut chip, trap.reg, access);
                        match r {
                            Ok(_) => {}
                            Err(e) => {
                                prop_assert_eq!(e, Error::ReadOnlyRegister);
                                prop_assert!(!trap.is_read && !trap.reg.is_writable());
                            }
                        }
                    }
                }
                Op::Advance(d) => cpu.now = cpu.now.wrapping_add(d),
                Op::SetCounter(v) => cpu.now = v,
                Op::VmOffset(v) => vm.set_counter_offset(Ticks::new(v)),
                Op::SetIrqs(v, p) => {
                    if let (Ok(vi), Ok(pi)) = (IntId::ppi(v), IntId::ppi(p)) {
                        let before = (vm.virtual_irq(), vm.physical_irq());
                        let r = vm.set_irqs(vi, pi);
                        if vm.is_locked() {
                            prop_assert_eq!(r, Err(ConfigError::ConfigLocked));
                        } else if v == p {
                            prop_assert_eq!(r, Err(ConfigError::DuplicatePpi(vi)));
                        } else {
                            prop_assert_eq!(r, Ok(()));
                        }
                        if r.is_err() {
                            prop_assert_eq!((vm.virtual_irq(), vm.physical_irq()), before);
                        }
                    }
                }
                Op::Load => {
                    let was = timer.is_loaded();
                    let r = timer.load(&vm, &mut cpu, &mut chip);
                    prop_assert_eq!(r, if was { Err(Error::AlreadyLoaded) } else { Ok(()) });
                }
                Op::Put => {
                    let was = timer.is_loaded();
                    prop_assert_eq!(timer.put(&mut cpu, &mut soft), if was { Ok(()) } else { Err(NotLoaded) });
                    if was {
                        prop_assert_eq!(cpu.cntvoff, 0);
                        prop_assert_eq!(cpu.ctl, 0);
                    }
                }
                Op::Block => {
                    let _ = timer.block(&vm, &mut cpu, &mut soft);
                }
                Op::Unblock => {
                    prop_assert_eq!(timer.unblock(&mut cpu, &mut chip, &mut soft), Ok(()));
                }
                Op::Round => {
                    let loaded = timer.is_loaded();
                    let expect = if loaded { Ok(()) } else { Err(Error::NotLoaded) };
                    // A blocked vCPU is not entered: between block and unblock.
                    let entry = if loaded && timer.is_blocked() { Err(Error::Blocked) } else { expect };
                    prop_assert_eq!(timer.before_entry(&mut cpu, &mut chip, &mut soft), entry);
                    prop_assert_eq!(timer.after_exit(&mut cpu, &mut chip, &mut soft), expect);
                }
                Op::HostIrq => {
                    prop_assert!(timer.handle_host_irq(&mut cpu, &mut chip).is_ok());
                }
                Op::Expire => {
                    let r = timer.physical_timer_expired(&mut cpu, &mut chip);
                    if timer.is_loaded() {
                        prop_assert!(r.is_ok());
                    } else {
                        prop_assert_eq!(r, Ok(false), "not loaded: harmless, nothing touched");
                    }
                }
                Op::Reset => prop_assert_eq!(timer.reset(&mut cpu, &mut chip, &mut soft), Ok(())),
            }
            // One home: a loaded vCPU's virtual offset is on the CPU, an
            // unloaded one leaves CNTVOFF at 0.
            if timer.is_loaded() {
                prop_assert_eq!(Ticks::new(cpu.cntvoff), timer.vtimer().offset());
                prop_assert!(!cpu.el1_physical_access);
            } else {
                prop_assert_eq!(cpu.cntvoff, 0);
            }
        }
    }

    /// What a VMM writes it reads back: CVAL exactly, CTL's writable bits,
    /// TVAL's low 32 bits (at the same instant), CNT exactly.
    #[test]
    fn written_registers_read_back(
        loaded in any::<bool>(),
        now in value(),
        id in timer_id(),
        cval in value(),
        ctl in value(),
        tval in value(),
        cnt in value(),
    ) {
        let vm = VmTimer::new();
        let mut timer = VcpuTimer::new();
        let mut cpu = FakeCpu { now, ..FakeCpu::default() };
        let mut chip = FakeChip::default();
        if loaded {
            prop_assert_eq!(timer.load(&vm, &mut cpu, &mut chip), Ok(()));
        }
        let mut set = |reg, v| timer.set_reg(&vm, &mut cpu, &mut chip, id, reg, v);
        prop_assert_eq!(set(TimerReg::Cnt, cnt), Ok(()));
        prop_assert_eq!(set(TimerReg::Cval, cval), Ok(()));
        prop_assert_eq!(set(TimerReg::Ctl, ctl), Ok(()));
        prop_assert_eq!(timer.get_reg(&vm, &cpu, id, TimerReg::Cnt), cnt);
        prop_assert_eq!(timer.get_reg(&vm, &cpu, id, TimerReg::Cval), cval);
        let met = cnt >= cval;
        let expect_ctl = (ctl & 3) | if met { 4 } else { 0 };
        prop_assert_eq!(timer.get_reg(&vm, &cpu, id, TimerReg::Ctl), expect_ctl);
        prop_assert_eq!(timer.set_reg(&vm, &mut cpu, &mut chip, id, TimerReg::Tval, tval), Ok(()));
        prop_assert_eq!(timer.get_reg(&vm, &cpu, id, TimerReg::Tval), tval & u64::from(u32::MAX));
    }

    /// PPI validation: exactly 16..=31 accepted; two timers never share one.
    /// Values around the PPI range, and any value at all.
    #[test]
    fn configuration_is_validated(
        v in prop_oneof![3 => 0_u32..48, 1 => any::<u32>()],
        p in prop_oneof![3 => 0_u32..48, 1 => any::<u32>()],
    ) {
        let ok = |n: u32| (16..=31).contains(&n);
        prop_assert_eq!(IntId::ppi(v).is_ok(), ok(v));
        let mut vm = VmTimer::new();
        if let (Ok(vi), Ok(pi)) = (IntId::ppi(v), IntId::ppi(p)) {
            let r = vm.set_irqs(vi, pi);
            if v == p {
                prop_assert_eq!(r, Err(ConfigError::DuplicatePpi(vi)));
                prop_assert_eq!(vm.virtual_irq(), IntId::VIRTUAL_TIMER);
            } else {
                prop_assert_eq!(r, Ok(()));
                prop_assert_eq!((vm.virtual_irq(), vm.physical_irq()), (vi, pi));
            }
        }
    }
}
