//! One vCPU on the model, through the life a hypervisor gives it:
//! schedule-in, guest runs and arms its timer, the timer interrupt is
//! forwarded and handled, WFI sleep and wake-up by the background timer,
//! migration to another CPU, and schedule-out. Each step prints what
//! happened and every hardware access the hypervisor made.
//!
//! ```text
//! cargo run -p arch-timer-virt-sim --example demo
//! ```

#![allow(missing_docs, clippy::unwrap_used)]

use arch_timer_virt_sim::{GuestOp, Handler, Hypervisor, Step};

fn main() {
    let mut hv = Hypervisor::new(2, 1);
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
        ("enter the guest on CPU 1", Step::Enter { cpu: 1 }),
        (
            "host takes the vtimer PPI on CPU 1: the expiry followed the vCPU",
            Step::HostIrq { cpu: 1 },
        ),
        ("re-enter", Step::Enter { cpu: 1 }),
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
}
