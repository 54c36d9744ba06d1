//! The emulated physical timer, the register API and trapped accesses,
//! against behavioural fakes: TVAL edge cases, counters moved under armed
//! timers, reprogramming while pending, background wake-up for the
//! physical timer, migration.

mod common;

use arch_timer_virt::emulate::{self, Access, SysRegTrap, TimerSysReg};
use arch_timer_virt::{
    Error, IntId, SoftTimer, Ticks, TimerCtl, TimerId, TimerReg, VcpuTimer, VmTimer, Wakeup,
};
use common::{FakeChip, FakeCpu, FakeSoft};

const PTIMER: IntId = IntId::PHYSICAL_TIMER;
const ENABLE: u64 = 1;
const IMASK: u64 = 2;
const ISTATUS: u64 = 4;

struct Rig {
    vm: VmTimer,
    timer: VcpuTimer,
    cpu: FakeCpu,
    chip: FakeChip,
    soft: FakeSoft,
}

impl Rig {
    fn loaded(now: u64) -> Self {
        let mut rig = Self {
            vm: VmTimer::new(),
            timer: VcpuTimer::new(),
            cpu: FakeCpu {
                now,
                ..FakeCpu::default()
            },
            chip: FakeChip::default(),
            soft: FakeSoft::default(),
        };
        assert_eq!(rig.timer.load(&rig.vm, &mut rig.cpu, &mut rig.chip), Ok(()));
        rig
    }

    fn set(&mut self, timer: TimerId, reg: TimerReg, value: u64) {
        let r = self
            .timer
            .set_reg(&self.vm, &mut self.cpu, &mut self.chip, timer, reg, value);
        assert_eq!(r, Ok(()));
    }

    fn get(&self, timer: TimerId, reg: TimerReg) -> u64 {
        self.timer.get_reg(&self.vm, &self.cpu, timer, reg)
    }

    /// One guest entry and exit, time passing `ticks` while the guest
    /// runs; the physical timer's soft timer fires if its deadline passes,
    /// as the hypervisor's timer interrupt would make it.
    fn run(&mut self, ticks: u64) {
        assert_eq!(
            self.timer
                .before_entry(&mut self.cpu, &mut self.chip, &mut self.soft),
            Ok(())
        );
        self.cpu.now = self.cpu.now.wrapping_add(ticks);
        if self
            .soft
            .physical
            .is_some_and(|at| at.get() <= self.cpu.now)
        {
            self.fire_physical();
        }
        assert_eq!(
            self.timer
                .after_exit(&mut self.cpu, &mut self.chip, &mut self.soft),
            Ok(())
        );
    }

    /// The physical timer's soft timer expires now.
    fn fire_physical(&mut self) -> bool {
        self.soft.physical = None;
        match self
            .timer
            .physical_timer_expired(&mut self.cpu, &mut self.chip)
        {
            Ok(level) => level,
            Err(e) => panic!("{e:?}"),
        }
    }
}

fn tval(t: i32) -> u64 {
    u64::from(t.cast_unsigned())
}

#[test]
fn tval_edge_cases_for_both_timers() {
    for timer in [TimerId::Virtual, TimerId::Physical] {
        let now = 1_000_000_000_000;
        let mut rig = Rig::loaded(now);
        // -1: CVAL one tick in the past, expired.
        rig.set(timer, TimerReg::Tval, tval(-1));
        assert_eq!(rig.get(timer, TimerReg::Cval), now - 1);
        assert_eq!(rig.get(timer, TimerReg::Tval), tval(-1));
        assert_eq!(rig.get(timer, TimerReg::Ctl) & ISTATUS, ISTATUS);
        // 0: CVAL is now, which counts as expired.
        rig.set(timer, TimerReg::Tval, 0);
        assert_eq!(rig.get(timer, TimerReg::Cval), now);
        assert_eq!(rig.get(timer, TimerReg::Ctl) & ISTATUS, ISTATUS);
        // i32::MIN and i32::MAX sign-extend.
        rig.set(timer, TimerReg::Tval, tval(i32::MIN));
        assert_eq!(rig.get(timer, TimerReg::Cval), now - (1 << 31));
        assert_eq!(rig.get(timer, TimerReg::Tval), tval(i32::MIN));
        rig.set(timer, TimerReg::Tval, tval(i32::MAX));
        assert_eq!(rig.get(timer, TimerReg::Cval), now + (1 << 31) - 1);
        assert_eq!(rig.get(timer, TimerReg::Ctl) & ISTATUS, 0);
        // Only the low 32 bits of a written TVAL count.
        rig.set(timer, TimerReg::Tval, 0xffff_ffff_0000_0010);
        assert_eq!(rig.get(timer, TimerReg::Cval), now + 0x10);
        // CVAL beyond now + i32::MAX: TVAL reads its low 32 bits (wraps).
        rig.set(timer, TimerReg::Cval, now + (1 << 32) + 5);
        assert_eq!(rig.get(timer, TimerReg::Tval), 5);
        rig.set(timer, TimerReg::Cval, now + (1 << 31));
        assert_eq!(rig.get(timer, TimerReg::Tval), tval(i32::MIN));
    }
}

#[test]
fn ctl_reads_istatus_from_the_condition_even_when_disabled_and_writes_ignore_it() {
    for timer in [TimerId::Virtual, TimerId::Physical] {
        let mut rig = Rig::loaded(500);
        rig.set(timer, TimerReg::Cval, 100);
        rig.set(timer, TimerReg::Ctl, ISTATUS | 0xff00);
        assert_eq!(rig.get(timer, TimerReg::Ctl), ISTATUS, "{timer:?}");
        rig.set(timer, TimerReg::Ctl, u64::MAX);
        assert_eq!(rig.get(timer, TimerReg::Ctl), ENABLE | IMASK | ISTATUS);
        rig.set(timer, TimerReg::Cval, 600);
        assert_eq!(rig.get(timer, TimerReg::Ctl), ENABLE | IMASK);
    }
}

#[test]
fn cval_at_the_top_of_the_range_never_fires_early() {
    let mut rig = Rig::loaded(u64::MAX - 10);
    rig.set(TimerId::Physical, TimerReg::Cval, u64::MAX);
    rig.set(TimerId::Physical, TimerReg::Ctl, ENABLE);
    rig.run(5);
    assert!(!rig.chip.level(PTIMER));
    assert_eq!(rig.get(TimerId::Physical, TimerReg::Tval), tval(5));
    rig.run(5);
    assert!(rig.chip.level(PTIMER));
}

#[test]
fn physical_timer_fires_at_its_deadline_and_lowers_when_reprogrammed() {
    let mut rig = Rig::loaded(1000);
    rig.set(TimerId::Physical, TimerReg::Cval, 1100);
    rig.set(TimerId::Physical, TimerReg::Ctl, ENABLE);
    assert!(!rig.chip.level(PTIMER));

    // Entering arms the soft timer at the deadline; the exit cancels it.
    assert_eq!(
        rig.timer
            .before_entry(&mut rig.cpu, &mut rig.chip, &mut rig.soft),
        Ok(())
    );
    assert_eq!(rig.soft.physical, Some(Ticks::new(1100)));
    rig.cpu.now = 1099;
    assert!(
        !rig.fire_physical(),
        "a soft timer firing early raises nothing"
    );
    rig.cpu.now = 1100;
    assert!(rig.fire_physical());
    assert!(rig.chip.level(PTIMER));
    assert_eq!(
        rig.timer
            .after_exit(&mut rig.cpu, &mut rig.chip, &mut rig.soft),
        Ok(())
    );

    // The guest moves CVAL forward while the interrupt is pending: the
    // trapped write lowers the line at once, and it stays low.
    let raised = rig.chip.raised;
    rig.set(TimerId::Physical, TimerReg::Tval, 50);
    assert!(!rig.chip.level(PTIMER));
    rig.run(10);
    assert!(!rig.chip.level(PTIMER));
    assert_eq!(rig.chip.raised, raised);
    rig.run(40);
    assert!(rig.chip.level(PTIMER));
}

#[test]
fn physical_timer_mask_then_unmask() {
    let mut rig = Rig::loaded(0);
    rig.set(TimerId::Physical, TimerReg::Cval, 10);
    rig.set(TimerId::Physical, TimerReg::Ctl, ENABLE);
    rig.run(20);
    assert!(rig.chip.level(PTIMER));
    rig.set(TimerId::Physical, TimerReg::Ctl, ENABLE | IMASK);
    assert!(!rig.chip.level(PTIMER));
    rig.run(20);
    assert!(!rig.chip.level(PTIMER), "a masked timer's line stays low");
    assert_eq!(rig.soft.physical, None);
    rig.set(TimerId::Physical, TimerReg::Ctl, ENABLE);
    assert!(
        rig.chip.level(PTIMER),
        "unmasking an expired timer raises at once"
    );
}

#[test]
fn physical_timer_fires_several_times_in_a_row() {
    let mut rig = Rig::loaded(0);
    rig.set(TimerId::Physical, TimerReg::Cval, u64::MAX);
    rig.set(TimerId::Physical, TimerReg::Ctl, ENABLE);
    for i in 1..=5_u64 {
        rig.set(TimerId::Physical, TimerReg::Tval, 100);
        assert!(!rig.chip.level(PTIMER));
        rig.run(99);
        assert!(!rig.chip.level(PTIMER), "early at round {i}");
        rig.run(1);
        assert!(rig.chip.level(PTIMER), "lost at round {i}");
        assert_eq!(rig.chip.raised, u32::try_from(i).unwrap_or(u32::MAX));
    }
}

#[test]
fn blocked_vcpu_with_only_the_physical_timer_wakes_at_its_deadline() {
    let mut rig = Rig::loaded(5000);
    rig.set(TimerId::Physical, TimerReg::Cval, 7000);
    rig.set(TimerId::Physical, TimerReg::Ctl, ENABLE);
    let wakeup = rig.timer.block(&rig.vm, &mut rig.cpu, &mut rig.soft);
    assert_eq!(wakeup, Wakeup::At(Ticks::new(7000)));
    assert_eq!(rig.soft.background, Some(Ticks::new(7000)));
    rig.cpu.now = 7000;
    assert_eq!(
        rig.timer
            .unblock(&mut rig.cpu, &mut rig.chip, &mut rig.soft),
        Ok(())
    );
    assert_eq!(rig.soft.background, None);
    rig.run(0);
    assert!(rig.chip.level(PTIMER));
}

#[test]
fn block_takes_the_earlier_of_the_two_timers() {
    let mut rig = Rig::loaded(0);
    rig.set(TimerId::Physical, TimerReg::Cval, 900);
    rig.set(TimerId::Physical, TimerReg::Ctl, ENABLE);
    rig.set(TimerId::Virtual, TimerReg::Cval, 800);
    rig.set(TimerId::Virtual, TimerReg::Ctl, ENABLE);
    assert_eq!(
        rig.timer.block(&rig.vm, &mut rig.cpu, &mut rig.soft),
        Wakeup::At(Ticks::new(800))
    );
    rig.set(TimerId::Virtual, TimerReg::Ctl, ENABLE | IMASK);
    assert_eq!(
        rig.timer.block(&rig.vm, &mut rig.cpu, &mut rig.soft),
        Wakeup::At(Ticks::new(900))
    );
}

#[test]
fn moving_the_counter_under_an_armed_timer() {
    for timer in [TimerId::Virtual, TimerId::Physical] {
        let mut rig = Rig::loaded(10_000);
        rig.set(timer, TimerReg::Cnt, 100);
        rig.set(timer, TimerReg::Cval, 200);
        rig.set(timer, TimerReg::Ctl, ENABLE);
        assert_eq!(rig.get(timer, TimerReg::Tval), 100);
        // Counter moved ahead past CVAL: expired at once.
        rig.set(timer, TimerReg::Cnt, 300);
        assert_eq!(rig.get(timer, TimerReg::Ctl) & ISTATUS, ISTATUS);
        assert_eq!(rig.get(timer, TimerReg::Tval), tval(-100));
        match timer {
            // The emulated line follows at once.
            TimerId::Physical => assert!(rig.chip.level(PTIMER), "raised"),
            // The hardware timer asserts its output by itself.
            TimerId::Virtual => {
                assert_eq!(rig.cpu.now.wrapping_sub(rig.cpu.cntvoff), 300);
                assert!(arch_timer_virt::TimerHw::vtimer_ctl(&rig.cpu).output_asserted());
            }
            other => panic!("no such timer in this test: {other:?}"),
        }
        // Moved behind: pending again with the new distance, no early fire.
        rig.set(timer, TimerReg::Cnt, 150);
        assert_eq!(rig.get(timer, TimerReg::Ctl) & ISTATUS, 0);
        assert_eq!(rig.get(timer, TimerReg::Tval), 50);
        assert_eq!(rig.get(timer, TimerReg::Cnt), 150);
        match timer {
            TimerId::Physical => {
                assert!(!rig.chip.level(PTIMER), "lowered: no storm");
                rig.run(49);
                assert!(!rig.chip.level(PTIMER), "not before CVAL");
                rig.run(1);
                assert!(rig.chip.level(PTIMER), "at CVAL");
            }
            TimerId::Virtual => {
                assert!(!arch_timer_virt::TimerHw::vtimer_ctl(&rig.cpu).output_asserted());
                rig.cpu.now += 50;
                assert!(arch_timer_virt::TimerHw::vtimer_ctl(&rig.cpu).output_asserted());
            }
            other => panic!("no such timer in this test: {other:?}"),
        }
    }
    // A virtual CNT write while loaded reaches CNTVOFF_EL2 at once.
    let mut rig = Rig::loaded(10_000);
    rig.set(TimerId::Virtual, TimerReg::Cnt, 4_000);
    assert_eq!(rig.cpu.cntvoff, 6_000);
}

#[test]
fn the_vm_counter_offset_wins_over_cnt_writes() {
    let mut vm = VmTimer::new();
    vm.set_counter_offset(Ticks::new(400));
    let mut timer = VcpuTimer::new();
    let mut cpu = FakeCpu {
        now: 1000,
        ..FakeCpu::default()
    };
    let mut chip = FakeChip::default();
    assert_eq!(timer.load(&vm, &mut cpu, &mut chip), Ok(()));
    assert_eq!(cpu.cntvoff, 400);
    for id in [TimerId::Virtual, TimerId::Physical] {
        assert_eq!(
            timer.set_reg(&vm, &mut cpu, &mut chip, id, TimerReg::Cnt, 5),
            Ok(())
        );
        assert_eq!(timer.get_reg(&vm, &cpu, id, TimerReg::Cnt), 600);
    }
    assert_eq!(cpu.cntvoff, 400);
}

#[test]
fn a_virtual_register_write_while_loaded_saves_changes_and_restores() {
    let mut rig = Rig::loaded(100);
    rig.set(TimerId::Virtual, TimerReg::Cval, 150);
    rig.set(TimerId::Virtual, TimerReg::Ctl, ENABLE);
    assert_eq!((rig.cpu.cval, rig.cpu.ctl), (150, ENABLE));
    // Guest takes the interrupt…
    rig.cpu.now = 160;
    assert_eq!(
        rig.timer.handle_host_irq(&mut rig.cpu, &mut rig.chip),
        Ok(arch_timer_virt::HostIrq::Raised)
    );
    assert!(rig.chip.level(IntId::VIRTUAL_TIMER));
    rig.chip.host_active = true;
    // …and the VMM disables the timer: the line drops and the physical
    // interrupt is released.
    rig.set(TimerId::Virtual, TimerReg::Ctl, 0);
    assert!(!rig.chip.level(IntId::VIRTUAL_TIMER));
    assert!(!rig.chip.host_active);
    assert_eq!(rig.cpu.ctl, 0);
}

/// Invariant 5 across hosts: save every register of a running vCPU,
/// restore into a fresh vCPU of a fresh VM on another machine whose
/// counter is elsewhere, in every order; the guest sees the same CTL and
/// CVAL, a continuous count, and a pending expiry still fires.
#[test]
fn migration_in_any_restore_order() {
    let mut src = Rig::loaded(1_000_000);
    src.set(TimerId::Virtual, TimerReg::Cnt, 50_000);
    src.set(TimerId::Virtual, TimerReg::Cval, 50_300);
    src.set(TimerId::Virtual, TimerReg::Ctl, ENABLE);
    src.set(TimerId::Physical, TimerReg::Cnt, 70_000);
    src.set(TimerId::Physical, TimerReg::Cval, 70_200);
    src.set(TimerId::Physical, TimerReg::Ctl, ENABLE);
    src.run(100);

    let saved: Vec<(TimerId, TimerReg, u64)> = [TimerId::Virtual, TimerId::Physical]
        .into_iter()
        .flat_map(|id| TimerReg::MIGRATION.into_iter().map(move |reg| (id, reg)))
        .map(|(id, reg)| (id, reg, src.get(id, reg)))
        .collect();
    assert_eq!(src.timer.put(&mut src.cpu, &mut src.soft), Ok(()));

    let orders = permutations(saved.len());
    for order in &orders {
        // The destination's counter is far away; no time passes in transit.
        let mut dst = Rig::loaded(9_000_000_000);
        for &i in order {
            let (id, reg, value) = saved[i];
            dst.set(id, reg, value);
        }
        for &(id, reg, value) in &saved {
            assert_eq!(
                dst.get(id, reg),
                value,
                "{id:?} {reg:?} after order {order:?}"
            );
        }
        assert_eq!(dst.cpu.cntvoff, 9_000_000_000 - 50_100);
        // The counts continue: the physical timer fires 100 ticks after
        // arrival and the virtual one 200, neither earlier.
        dst.run(0);
        assert!(!dst.chip.level(PTIMER), "{order:?}");
        dst.run(99);
        assert!(!dst.chip.level(PTIMER), "{order:?}");
        dst.run(1);
        assert!(dst.chip.level(PTIMER), "{order:?}");
        assert!(!dst.cpu.vtimer_ctl_istatus());
        dst.cpu.now += 99;
        assert!(!dst.cpu.vtimer_ctl_istatus());
        dst.cpu.now += 1;
        assert!(dst.cpu.vtimer_ctl_istatus());
    }
    assert_eq!(orders.len(), 720);
}

/// Migration of a VM with a VM-wide counter offset: the destination VMM
/// sets the offset that continues the count (per-vCPU CNT writes are
/// ignored then), restores the rest in any order, and the pending expiry
/// fires on time.
#[test]
fn migration_with_a_vm_counter_offset() {
    let mut src = Rig::loaded(0);
    assert_eq!(src.timer.put(&mut src.cpu, &mut src.soft), Ok(()));
    src.vm.set_counter_offset(Ticks::new(1_000));
    src.cpu.now = 5_000;
    assert_eq!(src.timer.load(&src.vm, &mut src.cpu, &mut src.chip), Ok(()));
    assert_eq!(src.get(TimerId::Virtual, TimerReg::Cnt), 4_000);
    src.set(TimerId::Virtual, TimerReg::Cval, 4_500);
    src.set(TimerId::Virtual, TimerReg::Ctl, ENABLE);
    src.run(100);
    let saved: Vec<(TimerId, TimerReg, u64)> = TimerReg::MIGRATION
        .into_iter()
        .map(|reg| (TimerId::Virtual, reg, src.get(TimerId::Virtual, reg)))
        .collect();
    assert_eq!(saved[2].2, 4_100, "CNT");

    for order in permutations(saved.len()) {
        let mut dst = Rig {
            vm: VmTimer::new(),
            timer: VcpuTimer::new(),
            cpu: FakeCpu {
                now: 777_000,
                ..FakeCpu::default()
            },
            chip: FakeChip::default(),
            soft: FakeSoft::default(),
        };
        // The VM-wide offset that continues the count, then the rest.
        dst.vm.set_counter_offset(Ticks::new(777_000 - 4_100));
        for &i in &order {
            let (id, reg, value) = saved[i];
            dst.set(id, reg, value);
        }
        assert_eq!(dst.timer.load(&dst.vm, &mut dst.cpu, &mut dst.chip), Ok(()));
        for &(id, reg, value) in &saved {
            assert_eq!(dst.get(id, reg), value, "{reg:?} after {order:?}");
        }
        dst.cpu.now += 399;
        assert!(!dst.cpu.vtimer_ctl_istatus(), "{order:?}");
        dst.cpu.now += 1;
        assert!(dst.cpu.vtimer_ctl_istatus(), "{order:?}");
    }
}

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

trait Istatus {
    fn vtimer_ctl_istatus(&self) -> bool;
}

impl Istatus for FakeCpu {
    fn vtimer_ctl_istatus(&self) -> bool {
        arch_timer_virt::TimerHw::vtimer_ctl(self).output_asserted()
    }
}

#[test]
fn trapped_accesses_decode_and_emulate() {
    let mut rig = Rig::loaded(2000);
    let iss = |crm: u32, op2: u32, rt: u32, read: bool| {
        (3 << 20) | (op2 << 17) | (3 << 14) | (14 << 10) | (rt << 5) | (crm << 1) | u32::from(read)
    };
    let write_tval = SysRegTrap::decode(iss(2, 0, 7, false));
    assert_eq!(
        write_tval,
        Some(SysRegTrap::new(TimerSysReg::PhysicalTval, 7, false))
    );
    let read_cval = SysRegTrap::decode(iss(2, 2, 1, true)).map(|t| t.reg);
    assert_eq!(read_cval, Some(TimerSysReg::PhysicalCval));
    assert_eq!(
        SysRegTrap::decode(iss(0, 1, 0, true)).map(|t| t.reg),
        Some(TimerSysReg::PhysicalCount)
    );
    assert_eq!(
        SysRegTrap::decode(iss(3, 1, 0, true)).map(|t| t.reg),
        Some(TimerSysReg::VirtualCtl)
    );
    // Not timer registers: CNTFRQ_EL0 (CRm 0, op2 0), CNTKCTL_EL1 (op1 0), CRn 15.
    assert_eq!(SysRegTrap::decode(iss(0, 0, 0, true)), None);
    assert_eq!(SysRegTrap::decode((3 << 20) | (14 << 10) | (1 << 1)), None);
    assert_eq!(SysRegTrap::decode(iss(2, 0, 0, true) | (1 << 10)), None);

    let Rig {
        vm,
        timer,
        cpu,
        chip,
        ..
    } = &mut rig;
    let mut go = |reg, access| emulate::access(timer, vm, cpu, chip, reg, access);
    assert_eq!(go(TimerSysReg::PhysicalTval, Access::Write(300)), Ok(0));
    assert_eq!(go(TimerSysReg::PhysicalCval, Access::Read), Ok(2300));
    assert_eq!(go(TimerSysReg::PhysicalCount, Access::Read), Ok(2000));
    assert_eq!(
        go(TimerSysReg::PhysicalCtl, Access::Write(ENABLE | ISTATUS)),
        Ok(0)
    );
    assert_eq!(go(TimerSysReg::PhysicalCtl, Access::Read), Ok(ENABLE));
    assert_eq!(
        go(TimerSysReg::PhysicalCount, Access::Write(5)),
        Err(Error::ReadOnlyRegister)
    );
    assert_eq!(
        go(TimerSysReg::VirtualCount, Access::Write(5)),
        Err(Error::ReadOnlyRegister)
    );
    assert_eq!(go(TimerSysReg::PhysicalCount, Access::Read), Ok(2000));
}

#[test]
fn load_lowers_a_line_whose_condition_was_cleared_while_away() {
    let mut rig = Rig::loaded(0);
    rig.set(TimerId::Virtual, TimerReg::Ctl, ENABLE);
    assert_eq!(
        rig.timer.handle_host_irq(&mut rig.cpu, &mut rig.chip),
        Ok(arch_timer_virt::HostIrq::Raised)
    );
    assert_eq!(rig.timer.put(&mut rig.cpu, &mut rig.soft), Ok(()));
    rig.set(TimerId::Virtual, TimerReg::Cval, 1_000);
    assert!(
        rig.timer.vtimer().level(),
        "not loaded: the line waits for load"
    );
    assert_eq!(rig.timer.load(&rig.vm, &mut rig.cpu, &mut rig.chip), Ok(()));
    assert!(!rig.timer.vtimer().level());
    assert!(!rig.chip.level(IntId::VIRTUAL_TIMER));
    assert!(!rig.chip.host_active);
    assert_eq!(rig.soft.physical, None);
    let _ = SoftTimer::Physical;
    let _ = TimerCtl::empty();
}

/// A VM-wide counter offset set while a vCPU is loaded: the vCPU keeps
/// running and reading with its old offset (what the guest sees) until a
/// register write takes it, which moves CNTVOFF_EL2 under a saved timer
/// and restores the timer afterwards; a vCPU that is not loaded sees it
/// at once.
#[test]
fn vm_offset_set_while_loaded_is_taken_at_the_next_register_write() {
    let mut rig = Rig::loaded(10_000);
    rig.set(TimerId::Virtual, TimerReg::Cval, 9_500);
    rig.set(TimerId::Virtual, TimerReg::Ctl, ENABLE);
    assert_eq!(rig.get(TimerId::Virtual, TimerReg::Cnt), 10_000);

    rig.vm.set_counter_offset(Ticks::new(1_000));
    assert_eq!(rig.cpu.cntvoff, 0, "not on the hardware yet");
    assert_eq!(
        rig.get(TimerId::Virtual, TimerReg::Cnt),
        10_000,
        "the guest still counts from 0"
    );
    assert_eq!(rig.get(TimerId::Physical, TimerReg::Cnt), 10_000);

    // Any register write takes it, on both timers, with the virtual
    // timer back on the hardware afterwards.
    rig.set(TimerId::Physical, TimerReg::Ctl, 0);
    assert_eq!(rig.cpu.cntvoff, 1_000);
    assert_eq!(rig.get(TimerId::Virtual, TimerReg::Cnt), 9_000);
    assert_eq!(rig.get(TimerId::Physical, TimerReg::Cnt), 9_000);
    assert_eq!((rig.cpu.ctl, rig.cpu.cval), (ENABLE, 9_500));
    assert_eq!(
        rig.get(TimerId::Virtual, TimerReg::Ctl),
        ENABLE,
        "9,000 < 9,500: no longer met"
    );

    // Not loaded: at once.
    assert_eq!(rig.timer.put(&mut rig.cpu, &mut rig.soft), Ok(()));
    rig.vm.set_counter_offset(Ticks::new(4_000));
    assert_eq!(rig.get(TimerId::Virtual, TimerReg::Cnt), 6_000);
    assert_eq!(rig.cpu.cntvoff, 0);
}
