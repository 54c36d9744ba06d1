//! One vCPU on the model, through the life a hypervisor gives it:
//! schedule-in, guest runs and arms its timer, the timer interrupt is
//! forwarded and handled, WFI sleep and wake-up by the background timer,
//! migration to another CPU, and schedule-out. Each step prints what
//! happened and every hardware access the hypervisor made. A second part
//! shows the emulated physical timer (trapped `CNTP_*` accesses, its soft
//! timer, its line) and a VMM's register save/restore round trip onto
//! another machine.
//!
//! ```text
//! cargo run -p arch-timer-virt-sim --example demo
//! ```

#![allow(missing_docs, clippy::unwrap_used)]

use arch_timer_virt::emulate::{self, Access, TimerSysReg};
use arch_timer_virt::{IntId, SoftTimer, Ticks, TimerId, TimerReg, VcpuTimer, VmTimer};
use arch_timer_virt_sim::{GuestOp, Handler, Hypervisor, Machine, Step};

/// The counter frequency of the demo's machines (a common SoC crystal):
/// the demo counts in ticks and does not depend on it.
const FREQUENCY_HZ: u32 = 24_000_000;

fn main() {
    let mut hv = Hypervisor::new(2, 1, FREQUENCY_HZ);
    hv.machine().set_tracing(true);
    let guest = |cpu, op| Step::Guest { cpu, op };
    let script: &[(&str, Step)] = &[
        (
            "schedule vCPU 0 in on CPU 0 (load)",
            Step::Load { vcpu: 0, cpu: 0 },
        ),
        ("enter the guest (before_entry)", Step::Enter { cpu: 0 }),
        (
            "guest: CNTV_TVAL_EL0 = 1000",
            guest(0, GuestOp::SetTval(1000)),
        ),
        ("guest: CNTV_CTL_EL0 = ENABLE", guest(0, GuestOp::SetCtl(1))),
        (
            "guest exits for an MMIO access (after_exit)",
            Step::Exit { cpu: 0 },
        ),
        ("re-enter", Step::Enter { cpu: 0 }),
        (
            "1000 ticks pass: the timer line goes high",
            Step::Advance(1000),
        ),
        (
            "host takes the vtimer PPI: exit, ack, priority drop, handle_host_irq",
            Step::HostIrq { cpu: 0 },
        ),
        (
            "re-enter with the virtual interrupt pending",
            Step::Enter { cpu: 0 },
        ),
        (
            "guest acknowledges INTID 27",
            guest(0, GuestOp::Acknowledge),
        ),
        (
            "guest handler re-arms 5000 ticks ahead",
            guest(0, GuestOp::Handle(Handler::Rearm(5000))),
        ),
        (
            "guest EOI: deactivates the virtual and, by the HW bit, the physical PPI",
            guest(0, GuestOp::Deactivate),
        ),
        (
            "guest executes WFI: after_exit, block",
            Step::Wfi { cpu: 0 },
        ),
        (
            "5000 ticks pass: the background timer fires, unblock",
            Step::Advance(5000),
        ),
        ("re-enter", Step::Enter { cpu: 0 }),
        ("schedule vCPU 0 out of CPU 0 (put)", Step::Put { cpu: 0 }),
        (
            "migrate: schedule vCPU 0 in on CPU 1 (load)",
            Step::Load { vcpu: 0, cpu: 1 },
        ),
        (
            "enter the guest on CPU 1: the expiry followed the vCPU (load raised it, PPI active)",
            Step::Enter { cpu: 1 },
        ),
        (
            "guest acknowledges INTID 27",
            guest(1, GuestOp::Acknowledge),
        ),
        (
            "guest handler disables the timer",
            guest(1, GuestOp::Handle(Handler::Disable)),
        ),
        ("guest EOI", guest(1, GuestOp::Deactivate)),
        (
            "guest exits (after_exit: line was high, now low)",
            Step::Exit { cpu: 1 },
        ),
        ("schedule vCPU 0 out of CPU 1 (put)", Step::Put { cpu: 1 }),
    ];
    hv.machine().take_trace();
    for (n, (what, step)) in script.iter().enumerate() {
        let before = hv.machine().counters();
        let applied = hv.step(*step).unwrap();
        let made = hv.machine().counters().since(&before);
        let vcpu = hv.vcpu(0);
        println!(
            "{:2}. t={:<6} {what}{}",
            n + 1,
            hv.machine().now().get(),
            if applied { "" } else { " (nothing to do)" }
        );
        for access in hv.machine().take_trace() {
            println!("       {access}");
        }
        println!(
            "       => {} hardware accesses [{made}]; vCPU on {:?}, line {}, sleeping {}, guest took {} timer IRQs",
            made.hardware_accesses(),
            vcpu.cpu(),
            if vcpu.timer.vtimer().level() {
                "high"
            } else {
                "low"
            },
            vcpu.blocked(),
            vcpu.guest.timer_irqs_taken(),
        );
    }
    let s = hv.stats();
    println!(
        "\ndone: {} steps, {} forwarded interrupts, {} background wake-ups, {} migration(s); \
         every DESIGN.md section 7 invariant checked after each step",
        s.steps, s.raised, s.background_wakeups, s.migrations
    );
    physical_timer_and_migration();
}

/// Part two: the emulated physical timer and a register round trip.
fn physical_timer_and_migration() {
    println!("\n-- the emulated physical timer, and a VMM's save/restore round trip --");
    let mut m = Machine::new(1, 1, FREQUENCY_HZ);
    let vm = VmTimer::new();
    let mut timer = VcpuTimer::new();
    let p = m.ports(0, 0);
    let (mut hw, mut gic) = (p.timer, p.gic);
    timer.load(&vm, &mut hw, &mut gic).unwrap();

    // The guest's `msr cntp_tval_el0` and `msr cntp_ctl_el0` trap.
    let trap = |m: &mut Machine, timer: &mut VcpuTimer, reg, access| {
        let p = m.ports(0, 0);
        let (mut hw, mut gic) = (p.timer, p.gic);
        emulate::access(timer, &vm, &mut hw, &mut gic, reg, access).unwrap()
    };
    trap(
        &mut m,
        &mut timer,
        TimerSysReg::PhysicalTval,
        Access::Write(300),
    );
    trap(
        &mut m,
        &mut timer,
        TimerSysReg::PhysicalCtl,
        Access::Write(1),
    );
    println!(
        "t={:<5} guest (trapped): CNTP_TVAL_EL0 = 300, CNTP_CTL_EL0 = ENABLE; CVAL is now {}",
        m.now().get(),
        timer.get_reg(&vm, &m.ports(0, 0).timer, TimerId::Physical, TimerReg::Cval)
    );
    {
        let p = m.ports(0, 0);
        let (mut hw, mut gic, mut soft) = (p.timer, p.gic, p.soft);
        timer.before_entry(&mut hw, &mut gic, &mut soft).unwrap();
    }
    println!(
        "t={:<5} before_entry arms the physical soft timer at {:?}",
        m.now().get(),
        m.soft_timers(0).physical.map(Ticks::get)
    );
    m.advance(300);
    m.soft_timer_fired(0, SoftTimer::Physical);
    {
        let p = m.ports(0, 0);
        let (mut hw, mut gic) = (p.timer, p.gic);
        timer.physical_timer_expired(&mut hw, &mut gic).unwrap();
    }
    println!(
        "t={:<5} the soft timer fires: virtual INTID 30 line {}, list register {:?}",
        m.now().get(),
        m.virtual_irq(0, IntId::PHYSICAL_TIMER).line,
        m.virtual_irq(0, IntId::PHYSICAL_TIMER).state
    );
    let ctl = trap(&mut m, &mut timer, TimerSysReg::PhysicalCtl, Access::Read);
    println!(
        "t={:<5} guest (trapped) reads CNTP_CTL_EL0 = {ctl:#x} (ENABLE | ISTATUS)",
        m.now().get()
    );
    trap(
        &mut m,
        &mut timer,
        TimerSysReg::PhysicalTval,
        Access::Write(1000),
    );
    println!(
        "t={:<5} guest (trapped) moves it on, CNTP_TVAL_EL0 = 1000: line {}",
        m.now().get(),
        m.virtual_irq(0, IntId::PHYSICAL_TIMER).line
    );

    // The guest arms its virtual timer too; then the VMM saves the vCPU.
    m.guest_write_tval(0, 5000);
    m.guest_write_ctl(0, 1);
    m.advance(1234);
    let count = m.guest_virtual_count(0);
    let saved: Vec<(TimerId, TimerReg, u64)> = [TimerId::Virtual, TimerId::Physical]
        .into_iter()
        .flat_map(|id| TimerReg::MIGRATION.map(|reg| (id, reg)))
        .map(|(id, reg)| (id, reg, timer.get_reg(&vm, &m.ports(0, 0).timer, id, reg)))
        .collect();
    println!(
        "t={:<5} the VMM saves the registers (virtual count {}):",
        m.now().get(),
        count.get()
    );
    for (id, reg, value) in &saved {
        println!("         {id:?} {reg:?} = {value}");
    }
    {
        let p = m.ports(0, 0);
        let (mut hw, mut soft) = (p.timer, p.soft);
        timer.put(&mut hw, &mut soft).unwrap();
    }

    // Another machine, whose counter is far ahead; restore in reverse order.
    let mut other = Machine::new(1, 1, FREQUENCY_HZ);
    other.advance(50_000_000);
    let vm2 = VmTimer::new();
    let mut restored = VcpuTimer::new();
    for &(id, reg, value) in saved.iter().rev() {
        let p = other.ports(0, 0);
        let (mut hw, mut gic) = (p.timer, p.gic);
        restored
            .set_reg(&vm2, &mut hw, &mut gic, id, reg, value)
            .unwrap();
    }
    {
        let p = other.ports(0, 0);
        let (mut hw, mut gic) = (p.timer, p.gic);
        restored.load(&vm2, &mut hw, &mut gic).unwrap();
    }
    println!(
        "on the new machine (counter at {}): the guest's virtual count is {}, CNTV_CVAL {}, CNTV_CTL {:?}",
        other.now().get(),
        other.guest_virtual_count(0).get(),
        other.guest_read_cval(0).get(),
        other.guest_read_ctl(0)
    );
    let left = other.guest_read_cval(0).get() - other.guest_virtual_count(0).get();
    other.advance(left);
    println!(
        "{left} ticks later the virtual timer fires there: host PPI 27 signalled = {}",
        other.timer_irq_signalled(0)
    );
}
