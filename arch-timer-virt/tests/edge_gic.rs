//! Regression tests for forwarding with an edge-like vGIC (a hardware-mapped
//! interrupt is pending only after a raise, as in the GIC backends): the
//! guest deactivating with the condition still met, a host IRQ racing
//! `block`, VMs of different forwarding modes sharing a CPU, and `put`
//! between `before_entry` and the guest entry.
mod common;

use arch_timer_virt::{
    Forwarding, HostIrq, IntId, IrqChip, TimerId, TimerReg, VcpuTimer, VmTimer, Wakeup,
};
use common::{FakeCpu, FakeSoft};

/// GIC model for the vtimer only: one LR (none/pending/active) with the HW
/// bit, and the host PPI's active/masked state of the CPU in use. The
/// mapped interrupt is edge-like, as in the gicv3 backend: only a raise
/// makes it pending.
#[derive(Debug, Default)]
struct Gic {
    lr: u8, // 0 none, 1 pending, 2 active
    host_active: bool,
    host_masked: bool,
}
impl Gic {
    fn guest_ack(&mut self) {
        if self.lr == 1 {
            self.lr = 2;
        }
    }
    /// Guest deactivation with the HW bit: physical deactivated too.
    fn guest_deactivate(&mut self) {
        if self.lr == 2 {
            self.lr = 0;
            self.host_active = false;
        }
    }
    /// Whether the host would take the PPI on a CPU whose timer is `cpu`.
    fn ppi_fires(&self, cpu: &FakeCpu) -> bool {
        use arch_timer_virt::TimerHw;
        cpu.vtimer_ctl().output_asserted() && !self.host_active && !self.host_masked
    }
}
impl IrqChip for Gic {
    type Error = core::convert::Infallible;
    fn set_host_active(&mut self, _: IntId, a: bool) -> Result<(), Self::Error> {
        self.host_active = a;
        Ok(())
    }
    fn set_host_masked(&mut self, _: IntId, m: bool) -> Result<(), Self::Error> {
        self.host_masked = m;
        Ok(())
    }
    fn set_virtual_level(&mut self, _: IntId, l: bool) -> Result<(), Self::Error> {
        if l {
            if self.lr == 0 {
                self.lr = 1;
            }
        } else if self.lr == 1 {
            self.lr = 0;
        }
        Ok(())
    }
    fn virtual_active(&self, _: IntId) -> Result<bool, Self::Error> {
        Ok(self.lr == 2)
    }
    fn map_virtual(&mut self, _: IntId, _: IntId) -> Result<(), Self::Error> {
        Ok(())
    }
    fn unmap_virtual(&mut self, _: IntId) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Host takes the PPI: acknowledge + priority drop leaves it active.
fn host_takes(t: &mut VcpuTimer, cpu: &mut FakeCpu, gic: &mut Gic) -> HostIrq {
    assert!(gic.ppi_fires(cpu));
    gic.host_active = true;
    t.handle_host_irq(cpu, gic).unwrap()
}

/// Invariant 1: the guest has the interrupt pending/active, or the host
/// will take the PPI.
fn not_lost(cpu: &FakeCpu, gic: &Gic) -> bool {
    use arch_timer_virt::TimerHw;
    !cpu.vtimer_ctl().output_asserted() || gic.lr != 0 || gic.ppi_fires(cpu)
}

fn fired() -> (VmTimer, VcpuTimer, FakeCpu, Gic) {
    let vm = VmTimer::new();
    let mut t = VcpuTimer::new();
    let mut cpu = FakeCpu {
        now: 1000,
        ..FakeCpu::default()
    };
    let mut gic = Gic::default();
    t.load(&vm, &mut cpu, &mut gic).unwrap();
    cpu.cval = 1100; // guest programs its timer
    cpu.ctl = 1;
    cpu.now = 1200;
    assert_eq!(host_takes(&mut t, &mut cpu, &mut gic), HostIrq::Raised);
    gic.guest_ack();
    // Guest EOIs/deactivates first, reprograms later (common RTOS order).
    gic.guest_deactivate();
    (vm, t, cpu, gic)
}

/// Line high, guest deactivated, condition still met; the vCPU is
/// preempted before the host retakes the PPI, then loaded again.
#[test]
fn load_after_the_guest_deactivated_with_the_condition_met_re_raises() {
    let (vm, mut t, mut cpu, mut gic) = fired();
    let mut soft = FakeSoft::default();
    t.after_exit(&mut cpu, &mut gic, &mut soft).unwrap(); // line high, cond met: nothing
    t.put(&mut cpu, &mut soft).unwrap();
    let mut cpu_b = FakeCpu {
        now: 1300,
        ..FakeCpu::default()
    };
    gic.host_active = false; // CPU B's PPI
    t.load(&vm, &mut cpu_b, &mut gic).unwrap();
    t.before_entry(&mut cpu_b, &mut gic, &mut soft).unwrap();
    assert!(
        not_lost(&cpu_b, &gic),
        "PPI active={} LR={}: guest never sees the timer",
        gic.host_active,
        gic.lr
    );
}

/// Same root cause on the blocking path: the host IRQ handler runs after
/// block() saved the timer (PPI acknowledged just before the save).
#[test]
fn host_irq_while_blocked_with_the_line_high_is_not_lost() {
    let (vm, mut t, mut cpu, mut gic) = fired();
    let mut soft = FakeSoft::default();
    t.after_exit(&mut cpu, &mut gic, &mut soft).unwrap();
    gic.host_active = true; // PPI acknowledged on its way in
    assert_eq!(t.block(&vm, &mut cpu, &mut soft), Wakeup::Now);
    assert_eq!(
        t.handle_host_irq(&mut cpu, &mut gic).unwrap(),
        HostIrq::Spurious
    );
    t.unblock(&mut cpu, &mut gic, &mut soft).unwrap();
    t.before_entry(&mut cpu, &mut gic, &mut soft).unwrap();
    assert!(
        not_lost(&cpu, &gic),
        "PPI active={} LR={}",
        gic.host_active,
        gic.lr
    );
}

/// A Masking VM's vCPU leaves the CPU's PPI masked at put; a Hardware VM's
/// vCPU loaded next on that CPU never unmasks it.
#[test]
fn hardware_vm_after_a_masking_vm_on_the_same_cpu_gets_its_timer() {
    let mut cpu = FakeCpu {
        now: 1000,
        ..FakeCpu::default()
    };
    let mut gic = Gic::default();
    let mut soft = FakeSoft::default();
    let mut vm_m = VmTimer::new();
    vm_m.set_forwarding(Forwarding::Masking).unwrap();
    let mut a = VcpuTimer::new();
    a.load(&vm_m, &mut cpu, &mut gic).unwrap();
    cpu.cval = 1100;
    cpu.ctl = 1;
    cpu.now = 1200;
    assert_eq!(host_takes(&mut a, &mut cpu, &mut gic), HostIrq::Raised);
    a.put(&mut cpu, &mut soft).unwrap();
    assert!(gic.host_masked);

    let vm_h = VmTimer::new();
    let mut b = VcpuTimer::new();
    gic.lr = 0;
    b.load(&vm_h, &mut cpu, &mut gic).unwrap();
    b.set_reg(
        &vm_h,
        &mut cpu,
        &mut gic,
        TimerId::Virtual,
        TimerReg::Cval,
        1250,
    )
    .unwrap();
    b.set_reg(
        &vm_h,
        &mut cpu,
        &mut gic,
        TimerId::Virtual,
        TimerReg::Ctl,
        1,
    )
    .unwrap();
    cpu.now = 1300;
    b.before_entry(&mut cpu, &mut gic, &mut soft).unwrap();
    assert!(not_lost(&cpu, &gic), "PPI still masked={}", gic.host_masked);
}

/// put() leaves the emulated physical timer's soft timer armed on the old
/// CPU (preemption between before_entry and entry).
#[test]
fn put_cancels_the_physical_soft_timer() {
    let vm = VmTimer::new();
    let mut t = VcpuTimer::new();
    let mut cpu = FakeCpu {
        now: 1000,
        ..FakeCpu::default()
    };
    let mut gic = Gic::default();
    let mut soft = FakeSoft::default();
    t.load(&vm, &mut cpu, &mut gic).unwrap();
    t.set_reg(
        &vm,
        &mut cpu,
        &mut gic,
        TimerId::Physical,
        TimerReg::Cval,
        5000,
    )
    .unwrap();
    t.set_reg(&vm, &mut cpu, &mut gic, TimerId::Physical, TimerReg::Ctl, 1)
        .unwrap();
    t.before_entry(&mut cpu, &mut gic, &mut soft).unwrap();
    t.put(&mut cpu, &mut soft).unwrap();
    assert_eq!(soft.physical, None, "soft timer still armed after put");
}

/// A timer that expires while its vCPU sleeps is raised by `unblock`, with
/// the physical interrupt made active: the guest takes it on entry, no host
/// IRQ and no extra exit needed.
#[test]
fn unblock_raises_a_timer_that_expired_during_the_sleep() {
    let vm = VmTimer::new();
    let mut t = VcpuTimer::new();
    let mut cpu = FakeCpu {
        now: 1000,
        ..FakeCpu::default()
    };
    let mut gic = Gic::default();
    let mut soft = FakeSoft::default();
    t.load(&vm, &mut cpu, &mut gic).unwrap();
    cpu.cval = 1500;
    cpu.ctl = 1;
    assert_eq!(
        t.block(&vm, &mut cpu, &mut soft),
        Wakeup::At(arch_timer_virt::Ticks::new(1500))
    );
    cpu.now = 1500; // the background timer fires
    t.unblock(&mut cpu, &mut gic, &mut soft).unwrap();
    assert_eq!(gic.lr, 1, "pending in the list register");
    assert!(gic.host_active, "physical held active for the HW bit");
    assert!(!gic.ppi_fires(&cpu), "no host IRQ will follow");
    assert!(t.vtimer().level());
    // The guest handles it and moves CVAL on: the next exit lowers and releases.
    gic.guest_ack();
    gic.guest_deactivate();
    cpu.cval = 3000;
    t.after_exit(&mut cpu, &mut gic, &mut soft).unwrap();
    assert!(!t.vtimer().level());
    assert!(!gic.host_active);
}
