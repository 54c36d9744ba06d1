//! A scripted guest: [`Guest`] and the operations it performs, [`GuestOp`].

use arch_timer_virt::emulate::TimerSysReg;
use arch_timer_virt::{IntId, Ticks, TimerCtl};

use crate::Machine;

/// What the guest's timer interrupt handler does to the timer before it
/// deactivates the interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Handler {
    /// Programs the next expiry, `ticks` ahead of the virtual count (CVAL).
    Rearm(u32),
    /// Sets IMASK.
    Mask,
    /// Clears ENABLE.
    Disable,
    /// Leaves the timer alone (its line stays high).
    Nothing,
}

/// One thing the guest does while it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestOp {
    /// Writes `CNTV_CVAL_EL0` = virtual count + `ahead` (wrapping).
    SetCval {
        /// How far ahead of the current virtual count.
        ahead: u64,
    },
    /// Writes `CNTV_CVAL_EL0` with an absolute value.
    SetCvalAbsolute(u64),
    /// Writes `CNTV_TVAL_EL0`.
    SetTval(i32),
    /// Writes `CNTV_CTL_EL0` (any bits; ISTATUS and RES0 are ignored).
    SetCtl(u64),
    /// Takes an interrupt if one is pending and its interrupts are
    /// unmasked: reads `ICV_IAR1_EL1`.
    Acknowledge,
    /// Runs the handler of the interrupt it is handling, if it is the
    /// virtual timer's.
    Handle(Handler),
    /// Deactivates the interrupt it is handling (EOI with EOImode = 0).
    Deactivate,
    /// Masks (`true`) or unmasks its interrupts (`PSTATE.I`).
    MaskIrqs(bool),
    /// Writes `CNTP_CVAL_EL0` = physical count + `ahead` (wrapping); traps
    /// to the hypervisor, which emulates the physical timer.
    PhysSetCval {
        /// How far ahead of the physical count it reads.
        ahead: u64,
    },
    /// Writes `CNTP_TVAL_EL0` (traps).
    PhysSetTval(i32),
    /// Writes `CNTP_CTL_EL0` (traps; any bits).
    PhysSetCtl(u64),
}

/// The guest's own view of one of its timers: what it last wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestTimer {
    /// ENABLE and IMASK as written.
    pub ctl: TimerCtl,
    /// CVAL as written (TVAL writes converted).
    pub cval: Ticks,
    /// The offset the guest's counter runs with (the VM's counter offset:
    /// the hypervisor offsets the physical count it emulates too).
    pub offset: Ticks,
}

impl GuestTimer {
    /// The guest's count for this timer at physical count `now`.
    #[must_use]
    pub const fn virtual_count(&self, now: Ticks) -> Ticks {
        now.wrapping_sub(self.offset)
    }

    /// Enabled and not masked.
    #[must_use]
    pub const fn can_fire(&self) -> bool {
        self.ctl.can_fire()
    }

    /// The timer's output at `now`: can fire and `CNTVCT >= CVAL`.
    #[must_use]
    pub const fn asserted(&self, now: Ticks) -> bool {
        self.can_fire() && self.virtual_count(now).get() >= self.cval.get()
    }

    /// The physical count at which the output asserts, if it can (`now`
    /// if it already is, saturating at the top of the counter).
    #[must_use]
    pub const fn expiry(&self, now: Ticks) -> Option<Ticks> {
        if !self.can_fire() {
            return None;
        }
        match self.cval.checked_sub(self.virtual_count(now)) {
            Some(delta) => Some(now.saturating_add(delta)),
            None => Some(now),
        }
    }
}

/// A guest OS on one vCPU, reduced to its timer: it programs the timer,
/// takes and handles the timer interrupt, masks its interrupts, and keeps
/// what it wrote as the reference the checks compare the hardware with.
#[derive(Clone, Debug, Default)]
pub struct Guest {
    timer: GuestTimer,
    ptimer: GuestTimer,
    vtimer_irq: Option<IntId>,
    ptimer_irq: Option<IntId>,
    irqs_masked: bool,
    handling: Option<IntId>,
    taken: u64,
    ptimer_taken: u64,
    stale: u64,
}

impl Guest {
    /// A guest whose virtual timer interrupt is `vtimer_irq`.
    #[must_use]
    pub fn new(vtimer_irq: IntId) -> Self {
        Self {
            vtimer_irq: Some(vtimer_irq),
            ..Self::default()
        }
    }

    /// The same guest, also taking its physical timer's interrupt,
    /// `ptimer_irq`.
    #[must_use]
    pub const fn with_physical_irq(mut self, ptimer_irq: IntId) -> Self {
        self.ptimer_irq = Some(ptimer_irq);
        self
    }

    /// What the guest has written to its virtual timer.
    #[must_use]
    pub const fn timer(&self) -> GuestTimer {
        self.timer
    }

    /// What the guest has written to its (emulated) physical timer.
    #[must_use]
    pub const fn ptimer(&self) -> GuestTimer {
        self.ptimer
    }

    /// Sets the offset its counters run with (the VM's counter offset,
    /// applied by the hypervisor to both timers).
    pub const fn set_counter_offset(&mut self, offset: Ticks) {
        self.timer.offset = offset;
        self.ptimer.offset = offset;
    }

    /// The vCPU is reset: both timers disabled (CVAL kept, as the
    /// architecture leaves it UNKNOWN and the library keeps it), no
    /// interrupt being handled, interrupts unmasked (the model's guest
    /// boots straight into its loop).
    pub const fn reset(&mut self) {
        self.timer.ctl = TimerCtl::empty();
        self.ptimer.ctl = TimerCtl::empty();
        self.handling = None;
        self.irqs_masked = false;
    }

    /// The trapped physical timer write `op` makes, if it makes one: the
    /// register and the value the guest writes at physical count `now`.
    /// The hypervisor emulates it and then calls
    /// [`wrote_ptimer`](Self::wrote_ptimer); [`perform`](Self::perform)
    /// ignores such operations.
    #[must_use]
    pub fn trapped_write(&self, op: GuestOp, now: Ticks) -> Option<(TimerSysReg, u64)> {
        let ahead = |ticks: u64| {
            self.ptimer
                .virtual_count(now)
                .wrapping_add(Ticks::new(ticks))
        };
        Some(match op {
            GuestOp::PhysSetCval { ahead: a } => (TimerSysReg::PhysicalCval, ahead(a).get()),
            GuestOp::PhysSetTval(tval) => {
                (TimerSysReg::PhysicalTval, u64::from(tval.cast_unsigned()))
            }
            GuestOp::PhysSetCtl(bits) => (TimerSysReg::PhysicalCtl, bits),
            GuestOp::Handle(handler)
                if self.handling.is_some() && self.handling == self.ptimer_irq =>
            {
                match handler {
                    Handler::Rearm(a) => (TimerSysReg::PhysicalCval, ahead(u64::from(a)).get()),
                    Handler::Mask => (
                        TimerSysReg::PhysicalCtl,
                        self.ptimer.ctl.union(TimerCtl::IMASK).bits(),
                    ),
                    Handler::Disable => (TimerSysReg::PhysicalCtl, 0),
                    Handler::Nothing => return None,
                }
            }
            _ => return None,
        })
    }

    /// Records a physical timer write the hypervisor emulated at physical
    /// count `now`.
    pub fn wrote_ptimer(&mut self, reg: TimerSysReg, value: u64, now: Ticks) {
        match reg {
            TimerSysReg::PhysicalCval => self.ptimer.cval = Ticks::new(value),
            TimerSysReg::PhysicalTval => {
                #[allow(clippy::cast_possible_truncation)] // TVAL is the low 32 bits
                let tval = i64::from((value as u32).cast_signed());
                self.ptimer.cval = self
                    .ptimer
                    .virtual_count(now)
                    .wrapping_add(Ticks::new(tval.cast_unsigned()));
            }
            TimerSysReg::PhysicalCtl => self.ptimer.ctl = TimerCtl::from_write(value),
            _ => {}
        }
    }

    /// Whether it masks its interrupts.
    #[must_use]
    pub const fn irqs_masked(&self) -> bool {
        self.irqs_masked
    }

    /// The interrupt it has acknowledged and not yet deactivated.
    #[must_use]
    pub const fn handling(&self) -> Option<IntId> {
        self.handling
    }

    /// How many virtual timer interrupts it has taken.
    #[must_use]
    pub const fn timer_irqs_taken(&self) -> u64 {
        self.taken
    }

    /// How many physical timer interrupts it has taken.
    #[must_use]
    pub const fn ptimer_irqs_taken(&self) -> u64 {
        self.ptimer_taken
    }

    /// How many of them found the timer condition not met (the guest had
    /// changed the timer after the interrupt was raised; Linux reads
    /// ISTATUS and ignores these).
    #[must_use]
    pub const fn stale_timer_irqs(&self) -> u64 {
        self.stale
    }

    /// Performs `op` while running as vCPU `vcpu` on CPU `cpu` of `machine`.
    pub fn perform(&mut self, op: GuestOp, machine: &mut Machine, vcpu: usize, cpu: usize) {
        match op {
            GuestOp::SetCval { ahead } => {
                let cval = self
                    .timer
                    .virtual_count(machine.now())
                    .wrapping_add(Ticks::new(ahead));
                self.write_cval(machine, cpu, cval);
            }
            GuestOp::SetCvalAbsolute(cval) => self.write_cval(machine, cpu, Ticks::new(cval)),
            GuestOp::SetTval(tval) => {
                machine.guest_write_tval(cpu, tval);
                let delta = Ticks::new(i64::from(tval).cast_unsigned());
                self.timer.cval = self.timer.virtual_count(machine.now()).wrapping_add(delta);
            }
            GuestOp::SetCtl(bits) => self.write_ctl(machine, cpu, bits),
            GuestOp::Acknowledge => {
                if self.irqs_masked || self.handling.is_some() {
                    return;
                }
                self.handling = machine.guest_acknowledge(vcpu);
                if self.handling.is_some() && self.handling == self.vtimer_irq {
                    self.taken = self.taken.saturating_add(1);
                    if !machine.guest_read_ctl(cpu).output_asserted() {
                        self.stale = self.stale.saturating_add(1);
                    }
                }
                if self.handling.is_some() && self.handling == self.ptimer_irq {
                    self.ptimer_taken = self.ptimer_taken.saturating_add(1);
                }
            }
            GuestOp::Handle(handler) => {
                if self.handling.is_none() || self.handling != self.vtimer_irq {
                    return;
                }
                match handler {
                    Handler::Rearm(ahead) => {
                        let cval = self
                            .timer
                            .virtual_count(machine.now())
                            .wrapping_add(Ticks::new(u64::from(ahead)));
                        self.write_cval(machine, cpu, cval);
                    }
                    Handler::Mask => {
                        let bits = self.timer.ctl.union(TimerCtl::IMASK).bits();
                        self.write_ctl(machine, cpu, bits);
                    }
                    Handler::Disable => self.write_ctl(machine, cpu, 0),
                    Handler::Nothing => {}
                }
            }
            GuestOp::Deactivate => {
                if let Some(intid) = self.handling.take() {
                    machine.guest_deactivate(vcpu, cpu, intid);
                }
            }
            GuestOp::MaskIrqs(masked) => self.irqs_masked = masked,
            // Trapped: the hypervisor emulates them (`trapped_write`).
            GuestOp::PhysSetCval { .. } | GuestOp::PhysSetTval(_) | GuestOp::PhysSetCtl(_) => {}
        }
    }

    fn write_cval(&mut self, machine: &mut Machine, cpu: usize, cval: Ticks) {
        machine.guest_write_cval(cpu, cval);
        self.timer.cval = cval;
    }

    fn write_ctl(&mut self, machine: &mut Machine, cpu: usize, bits: u64) {
        machine.guest_write_ctl(cpu, bits);
        self.timer.ctl = TimerCtl::from_write(bits);
    }
}
