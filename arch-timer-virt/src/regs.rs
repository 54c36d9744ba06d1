//! Timer registers as a VMM reads and writes them: save/restore and
//! migration ([`TimerReg`], [`VcpuTimer::get_reg`], [`VcpuTimer::set_reg`]).

use crate::{
    Error, IrqChip, Residency, Ticks, TimerContext, TimerCtl, TimerHw, TimerId, VcpuTimer, VmTimer,
};

/// A timer register, as a VMM's get/set-register calls name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[doc(alias = "KVM_REG_ARM_TIMER_CTL")]
#[doc(alias = "KVM_REG_ARM_TIMER_CVAL")]
#[doc(alias = "KVM_REG_ARM_TIMER_CNT")]
pub enum TimerReg {
    /// The control register. Reads report ISTATUS from the timer condition
    /// (even when disabled); writes keep ENABLE and IMASK only.
    Ctl,
    /// The 64-bit compare value.
    Cval,
    /// The signed 32-bit timer value: reads give the low 32 bits of
    /// `CVAL - count` (upper 32 bits zero); writes set
    /// `CVAL = count + sign_extend(low 32 bits)`.
    Tval,
    /// The timer's count, `physical count - offset`. Writes move the offset
    /// (ignored while the VM has a VM-wide counter offset).
    Cnt,
}

impl TimerReg {
    /// The registers that carry a timer's whole state, restorable in any
    /// order. `Tval` is left out: it is `Cval` seen relative to the count.
    pub const MIGRATION: [Self; 3] = [Self::Ctl, Self::Cval, Self::Cnt];
}

impl VcpuTimer {
    /// Reads a timer register, whether the vCPU is loaded or not (from the
    /// hardware while the virtual timer is on it): what the guest reads.
    /// A VM-wide counter offset set while the vCPU is loaded shows only
    /// once the vCPU takes it (at its next [`load`](Self::load) or
    /// [`set_reg`](Self::set_reg)).
    #[doc(alias = "kvm_arm_timer_get_reg")]
    #[must_use]
    pub fn get_reg<H: TimerHw + ?Sized>(
        &self,
        vm: &VmTimer,
        hw: &H,
        timer: TimerId,
        reg: TimerReg,
    ) -> u64 {
        let ctx = self.current(vm, hw, timer);
        let now = hw.physical_count();
        match reg {
            TimerReg::Ctl => ctx
                .ctl()
                .writable()
                .with_istatus(ctx.condition_met(now))
                .bits(),
            TimerReg::Cval => ctx.cval().get(),
            TimerReg::Tval => u64::from(ctx.tval(now).cast_unsigned()),
            TimerReg::Cnt => ctx.count(now).get(),
        }
    }

    /// Writes a timer register, whether the vCPU is loaded or not.
    ///
    /// A loaded virtual timer is saved, changed in memory and restored. With
    /// the vCPU loaded, line levels follow at once (a cleared condition
    /// lowers the line and releases the physical interrupt; the physical
    /// timer's line is raised or lowered); otherwise at the next
    /// [`load`](Self::load) and [`before_entry`](Self::before_entry). A
    /// loaded vCPU takes a new VM-wide counter offset here, whichever timer
    /// and register is named; since that moves both timers' counts, both
    /// lines follow then.
    /// Every value is accepted: unknown CTL bits and ISTATUS are ignored,
    /// TVAL uses its low 32 bits, all arithmetic wraps as the counter does.
    ///
    /// # Errors
    ///
    /// [`Error::IrqChip`] when changing a line level fails; the register
    /// value is stored regardless.
    #[doc(alias = "kvm_arm_timer_set_reg")]
    pub fn set_reg<H, C>(
        &mut self,
        vm: &VmTimer,
        hw: &mut H,
        chip: &mut C,
        timer: TimerId,
        reg: TimerReg,
        value: u64,
    ) -> Result<(), Error<C::Error>>
    where
        H: TimerHw + ?Sized,
        C: IrqChip + ?Sized,
    {
        // A loaded vCPU takes a new VM-wide offset here, which moves its
        // virtual count under the live timer: saved and restored around it
        // like a virtual timer register write.
        let offset_moves = self.loaded
            && vm
                .counter_offset()
                .is_some_and(|offset| offset != self.vtimer.offset());
        let on_hardware = (timer == TimerId::Virtual || offset_moves)
            && self.vtimer.residency() == Residency::Hardware;
        if on_hardware {
            self.save(hw);
        }
        let offset_before = self.vtimer.offset();
        self.apply_vm_offset(vm);
        let now = hw.physical_count();
        let ctx = self.context_mut(timer);
        match reg {
            TimerReg::Ctl => ctx.set_ctl(TimerCtl::from_write(value)),
            TimerReg::Cval => ctx.set_cval(Ticks::new(value)),
            TimerReg::Tval => {
                #[allow(clippy::cast_possible_truncation)] // TVAL is the low 32 bits
                let tval = i64::from((value as u32).cast_signed());
                ctx.set_cval(
                    ctx.count(now)
                        .wrapping_add(Ticks::new(tval.cast_unsigned())),
                );
            }
            TimerReg::Cnt => {
                if vm.counter_offset().is_none() {
                    ctx.set_offset(now.wrapping_sub(Ticks::new(value)));
                }
            }
        }
        // A loaded vCPU's offset lives in CNTVOFF_EL2: written before the
        // timer is restored, as on load.
        if self.loaded && self.vtimer.offset() != offset_before {
            hw.set_virtual_offset(self.vtimer.offset());
        }
        if on_hardware {
            self.restore(hw);
        }
        if self.loaded {
            // A moved offset moves both timers' counts, whichever register
            // was named: both lines follow.
            if self.vtimer.offset() != offset_before {
                self.sync_loaded_line(TimerId::Virtual, now, chip)?;
                self.sync_loaded_line(TimerId::Physical, now, chip)?;
            } else {
                self.sync_loaded_line(timer, now, chip)?;
            }
        }
        Ok(())
    }

    /// Brings a loaded vCPU's line for `timer` in step with its state after
    /// a register write: the virtual line is lowered (and the physical
    /// interrupt released) if its condition no longer holds, and left to
    /// the hardware PPI if it newly holds; the physical line follows its
    /// condition either way.
    fn sync_loaded_line<C: IrqChip + ?Sized>(
        &mut self,
        timer: TimerId,
        now: Ticks,
        chip: &mut C,
    ) -> Result<(), Error<C::Error>> {
        let ctx = self.context(timer);
        let fire = ctx.should_fire(now);
        if fire != ctx.level() {
            match timer {
                // A newly met condition raises the physical PPI by itself.
                TimerId::Virtual if !fire => {
                    self.set_level(timer, false, chip)?;
                    self.release_host_irq(chip)?;
                }
                TimerId::Virtual => {}
                TimerId::Physical => self.set_level(timer, fire, chip)?,
            }
        }
        Ok(())
    }

    /// The timer's state as the guest sees it now: read from the hardware
    /// while the virtual timer is on it; with the VM-wide offset applied
    /// unless the vCPU is loaded (a loaded vCPU runs with the offset it
    /// took at `load` or at its last `set_reg`).
    fn current<H: TimerHw + ?Sized>(&self, vm: &VmTimer, hw: &H, timer: TimerId) -> TimerContext {
        let mut ctx = self.context(timer).clone();
        if timer == TimerId::Virtual && ctx.residency() == Residency::Hardware {
            ctx.set_ctl(hw.vtimer_ctl());
            ctx.set_cval(hw.vtimer_cval());
        }
        if !self.loaded
            && let Some(offset) = vm.counter_offset()
        {
            ctx.set_offset(offset);
        }
        ctx
    }
}
