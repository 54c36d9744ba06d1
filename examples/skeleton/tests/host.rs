//! The skeleton on the host: the aarch64 backend's `FakeRegisters` for
//! this CPU's timers (the guest's and the EL2 physical one), the core's
//! `MockGicCpu` for the GIC.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use arch_timer_virt::mock::MockGicCpu;
use arch_timer_virt::{IntId, PhysTimerMode, Ticks, TimerHw, VmTimer};
use arch_timer_virt_aarch64::{FakeRegisters, GenericTimer, HostMode};
use hypervisor_skeleton::{Exit, PhysCpu, VcpuState, World};

/// Interrupts the "hardware" has pending for the mock GIC to acknowledge.
type Pending = Arc<Mutex<VecDeque<IntId>>>;

/// The INTIDs the run loop deactivated, in order.
type Deactivated = Arc<Mutex<Vec<IntId>>>;

/// A mock GIC that acknowledges what `pending` holds, accepts every other
/// call, counts the virtual timer line raises and records deactivations.
fn gic(pending: &Pending, raises: &Arc<AtomicU32>, deactivated: &Deactivated) -> MockGicCpu {
    let mut gic = MockGicCpu::new();
    let queue = Arc::clone(pending);
    gic.ops
        .expect_acknowledge()
        .returning(move || queue.lock().ok()?.pop_front());
    gic.ops.expect_priority_drop().return_const(());
    let log = Arc::clone(deactivated);
    gic.ops.expect_deactivate().returning(move |intid| {
        if let Ok(mut log) = log.lock() {
            log.push(intid);
        }
    });
    gic.ops
        .expect_maintenance_intid()
        .return_const(IntId::MAINTENANCE);
    gic.ops.expect_vcpu_load().returning(|_| Ok(()));
    gic.ops.expect_vcpu_put().returning(|_| Ok(()));
    gic.ops.expect_sync_after_exit().returning(|_| Ok(()));
    gic.chip.expect_map_virtual().returning(|_, _| Ok(()));
    gic.chip.expect_unmap_virtual().returning(|_| Ok(()));
    gic.chip.expect_set_host_active().returning(|_, _| Ok(()));
    gic.chip.expect_set_host_masked().returning(|_, _| Ok(()));
    gic.chip.expect_virtual_active().returning(|_| Ok(false));
    let raised = Arc::clone(raises);
    gic.chip
        .expect_set_virtual_level()
        .returning(move |intid, level| {
            if level && intid == IntId::VIRTUAL_TIMER {
                raised.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        });
    gic
}

/// Each vCPU arms its virtual timer `delay[vcpu]` ticks ahead, sleeps in
/// WFI, and is done when it runs again. Waiting lets the counter run to
/// the EL2 physical timer's deadline, whose PPI then fires.
struct Script {
    delay: [u64; 2],
    entries: [u32; 2],
    pending: Pending,
    woken_at: Vec<u64>,
}

impl World<FakeRegisters> for Script {
    fn enter(&mut self, vcpu: usize, regs: &mut FakeRegisters) -> Exit {
        let Some(entries) = self.entries.get_mut(vcpu) else {
            return Exit::Done;
        };
        *entries += 1;
        if *entries == 1 {
            regs.el1_vtimer_cval = regs.cntpct + self.delay[vcpu];
            regs.el1_vtimer_ctl = 1; // ENABLE
            Exit::Wfi
        } else {
            Exit::Done
        }
    }

    fn wait(&mut self, regs: &mut FakeRegisters) {
        assert_eq!(regs.cnthp_ctl_el2 & 1, 1, "a deadline is programmed");
        regs.cntpct = regs.cntpct.max(regs.cnthp_cval_el2);
        assert!(regs.hyp_timer_asserted());
        self.woken_at.push(regs.cntpct);
        if let Ok(mut q) = self.pending.lock() {
            q.push_back(IntId::HYP_PHYSICAL_TIMER);
        }
    }
}

/// Runs one CPU with two vCPUs whose timers fire after `delay`; returns
/// the wake-up times, the raises, and the CPU's counts.
fn run_cpu(vm: &VmTimer, delay: [u64; 2]) -> (Vec<u64>, u32, hypervisor_skeleton::Counts) {
    let pending = Pending::default();
    let raises = Arc::new(AtomicU32::new(0));
    let hw = GenericTimer::detect(FakeRegisters::new(HostMode::Vhe));
    // A 1 ms scheduler tick, from the counter frequency.
    let tick = Ticks::new(u64::from(hw.features().frequency_hz / 1000));
    let mut cpu = PhysCpu::new(hw, gic(&pending, &raises, &Deactivated::default()), tick);
    let mut vcpus = [cpu.vcpu(0).unwrap(), cpu.vcpu(1).unwrap()];
    let mut script = Script {
        delay,
        entries: [0; 2],
        pending,
        woken_at: Vec::new(),
    };
    cpu.run(vm, &mut vcpus, &mut script).unwrap();
    assert!(vcpus.iter().all(|v| v.state == VcpuState::Done));
    assert_eq!(cpu.hw.registers().undefined_accesses(), 0);
    assert_eq!(
        cpu.hw.physical_count().get(),
        *script.woken_at.last().unwrap()
    );
    (script.woken_at, raises.load(Ordering::Relaxed), cpu.counts)
}

#[test]
fn sleeping_vcpus_wake_at_their_expiry_through_the_hyp_timer() {
    let vm = VmTimer::new();
    let (woken_at, raises, counts) = run_cpu(&vm, [500, 2000]);
    // Each wait ends at the earliest deadline: vCPU 0's, then vCPU 1's
    // (2000 after its own start, which came after vCPU 0's WFI at 0).
    assert_eq!(woken_at, [500, 2000]);
    assert_eq!(counts.wakeups, 2);
    assert_eq!(raises, 2, "each expired timer raised its line at unblock");
    assert_eq!(counts.entries, 4);
    assert!(vm.is_locked());
}

/// A vCPU whose timer expires before it sleeps does not sleep: `block`
/// says `Now` and the slice goes on.
#[test]
fn an_expired_timer_does_not_sleep() {
    let vm = VmTimer::new();
    let (woken_at, raises, counts) = run_cpu(&vm, [0, 300]);
    assert_eq!(woken_at, [300]);
    assert_eq!(counts.wakeups, 1);
    assert_eq!(raises, 2);
}

/// Two physical CPUs at once, on two threads, sharing only the VM: each
/// runs its own vCPUs on its own registers, GIC and HypTimer. No per-CPU
/// path takes a lock another CPU could hold.
#[test]
fn two_cpus_run_in_parallel() {
    let vm = VmTimer::new();
    let results = std::thread::scope(|s| {
        let a = s.spawn(|| run_cpu(&vm, [700, 100]));
        let b = s.spawn(|| run_cpu(&vm, [50, 900]));
        [a.join().unwrap(), b.join().unwrap()]
    });
    // The earlier deadline first, whichever vCPU it belongs to.
    assert_eq!(results[0].0, [100, 700]);
    assert_eq!(results[1].0, [50, 900]);
    assert!(results.iter().all(|(_, raises, _)| *raises == 2));
}

/// A guest whose physical timer expires while it runs: the PPI is pending
/// at the exit.
struct PhysicalTimerIrq {
    pending: Pending,
    entries: u32,
}

impl World<FakeRegisters> for PhysicalTimerIrq {
    fn enter(&mut self, _vcpu: usize, regs: &mut FakeRegisters) -> Exit {
        self.entries += 1;
        if self.entries > 1 {
            return Exit::Done;
        }
        regs.el1_ptimer_cval = regs.cntpct;
        regs.el1_ptimer_ctl = 1; // ENABLE
        if let Ok(mut q) = self.pending.lock() {
            q.push_back(IntId::PHYSICAL_TIMER);
        }
        Exit::Irq
    }

    fn wait(&mut self, _regs: &mut FakeRegisters) {}
}

/// With `PhysTimerMode::Auto` (offset zero) the guest's physical timer is
/// direct: its PPI, acknowledged at an IRQ exit, goes to the vCPU's timer
/// like the virtual timer's and stays active for the guest, whose
/// deactivation completes it. Deactivated by the run loop, it would signal
/// again under the guest's pending interrupt.
#[test]
fn a_direct_physical_timer_ppi_goes_to_the_timer() {
    let vm = VmTimer::new().with_phys_timer_mode(PhysTimerMode::Auto);
    let pending = Pending::default();
    let deactivated = Deactivated::default();
    let hw = GenericTimer::detect(FakeRegisters::new(HostMode::Vhe));
    let tick = Ticks::new(u64::from(hw.features().frequency_hz / 1000));
    let gic = gic(&pending, &Arc::new(AtomicU32::new(0)), &deactivated);
    let mut cpu = PhysCpu::new(hw, gic, tick);
    let mut vcpus = [cpu.vcpu(0).unwrap()];
    let mut guest = PhysicalTimerIrq {
        pending,
        entries: 0,
    };
    cpu.run(&vm, &mut vcpus, &mut guest).unwrap();
    assert_eq!(vcpus[0].state, VcpuState::Done);
    assert!(vcpus[0].timer.is_direct(arch_timer_virt::TimerId::Physical));
    assert!(
        !deactivated.lock().unwrap().contains(&IntId::PHYSICAL_TIMER),
        "the physical timer's PPI was deactivated under the guest's interrupt"
    );
    // Forwarded at the IRQ exit, then (the mock GIC presents the PPI
    // anyway) raised again by `handle_timer_irq`.
    assert_eq!(cpu.counts.raised, 2);
    assert!(vcpus[0].timer.levels().physical_timer);
}
