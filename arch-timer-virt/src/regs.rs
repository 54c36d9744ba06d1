//! Timer registers as a VMM reads and writes them: save/restore and
//! migration ([`TimerReg`], [`VcpuTimer::get_reg`], [`VcpuTimer::set_reg`]).

use crate::{
    Error, IrqChip, Residency, Ticks, TimerContext, TimerCtl, TimerHw, TimerId, VcpuTimer, VmTimer,
};

/// A timer register, as a VMM's get/set-register calls name it.
///
/// # Which hardware a call needs
///
/// While the vCPU is loaded its direct timers are in the registers of the
/// CPU it is loaded on: call `get_reg` and `set_reg` there, with that
/// CPU's [`TimerHw`] and [`IrqChip`] (a VMM thread elsewhere asks that CPU,
/// or schedules the vCPU out first, as KVM's register ioctls do). While it
/// is not loaded, both read [`TimerHw::physical_count`] and nothing else,
/// and `set_reg` makes no interrupt controller call: any CPU's `TimerHw`
/// does (the counter is system-wide), with any `IrqChip`.
///
/// # Saving and restoring a VM
///
/// Save, with the VM stopped: for each vCPU and each timer, the
/// registers of [`TimerReg::MIGRATION`] ([`get_reg`](VcpuTimer::get_reg)),
/// and the VM's [`VmTimer::counter_offset`] if it has one. Restore, on
/// the destination, before the first run, in either of two ways:
///
/// - per vCPU: [`set_reg`](VcpuTimer::set_reg) each saved register (a
///   `Cnt` write sets that timer's offset so that its count continues from
///   the saved value); or
/// - VM-wide, so that every vCPU's counters stay equal:
///   [`VmTimer::set_counter_offset`] to `physical count - saved Cnt` (one
///   saved count, say vCPU 0's virtual timer's), then `set_reg` of `Ctl`
///   and `Cval` (a `Cnt` write is then ignored, so restoring it too does
///   no harm).
///
/// ```
/// use arch_timer_virt::{IrqChip, TimerHw, TimerId, TimerReg, VcpuTimer, VmTimer};
///
/// /// A vCPU's timers as a VMM saves them: (timer, register, value).
/// fn save(vm: &VmTimer, vcpu: &VcpuTimer, hw: &impl TimerHw) -> [(TimerId, TimerReg, u64); 6] {
///     let mut out = [(TimerId::Virtual, TimerReg::Ctl, 0); 6];
///     let regs = [TimerId::Virtual, TimerId::Physical]
///         .into_iter()
///         .flat_map(|timer| TimerReg::MIGRATION.map(|reg| (timer, reg)));
///     for (slot, (timer, reg)) in out.iter_mut().zip(regs) {
///         *slot = (timer, reg, vcpu.get_reg(vm, hw, timer, reg));
///     }
///     out
/// }
///
/// /// Restores them into a vCPU that is not loaded (any order).
/// fn restore<C: IrqChip>(
///     vm: &VmTimer,
///     vcpu: &mut VcpuTimer,
///     hw: &mut impl TimerHw,
///     chip: &mut C,
///     saved: &[(TimerId, TimerReg, u64)],
/// ) -> Result<(), arch_timer_virt::Error<C::Error>> {
///     for &(timer, reg, value) in saved {
///         vcpu.set_reg(vm, hw, chip, timer, reg, value)?;
///     }
///     Ok(())
/// }
///
/// # use arch_timer_virt_aarch64::{FakeRegisters, GenericTimer, HostMode};
/// # let mut source_hw = GenericTimer::detect(FakeRegisters::new(HostMode::Vhe));
/// # source_hw.registers_mut().cntpct = 5_000;
/// # let mut dest_hw = GenericTimer::detect(FakeRegisters::new(HostMode::Vhe));
/// # dest_hw.registers_mut().cntpct = 900_000;
/// // Not called: neither vCPU is loaded.
/// let mut chip = arch_timer_virt::mock::MockIrqChip::new();
/// let vm = VmTimer::new();
/// let mut source = VcpuTimer::new();
/// // The guest armed its virtual timer 2000 ticks ahead.
/// source.set_reg(&vm, &mut source_hw, &mut chip, TimerId::Virtual, TimerReg::Cval, 7_000)?;
/// source.set_reg(&vm, &mut source_hw, &mut chip, TimerId::Virtual, TimerReg::Ctl, 1)?;
/// let saved = save(&vm, &source, &source_hw);
///
/// // On another machine, whose counter reads 900 000.
/// let mut dest = VcpuTimer::new();
/// restore(&vm, &mut dest, &mut dest_hw, &mut chip, &saved)?;
/// let read = |reg| dest.get_reg(&vm, &dest_hw, TimerId::Virtual, reg);
/// assert_eq!(read(TimerReg::Cnt), 5_000, "the count continues");
/// assert_eq!(read(TimerReg::Tval), 2_000, "still 2000 ticks ahead");
/// # Ok::<(), arch_timer_virt::Error<arch_timer_virt::mock::MockChipError>>(())
/// ```
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
    /// `CVAL - count` (upper 32 bits zero, as the register reads: take
    /// `value as u32 as i32` for the signed value, or
    /// [`TimerContext::tval`](crate::TimerContext::tval)); writes set
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
    /// hardware while the timer is on it, as a direct timer is): what the
    /// guest reads, with one meaning whether the timer is direct or
    /// emulated.
    /// A VM-wide counter offset set while the vCPU is loaded shows only
    /// once the vCPU takes it (at its next [`load`](Self::load) or
    /// [`set_reg`](Self::set_reg)). Which CPU's `hw` to pass: the
    /// [`TimerReg`] docs (a loaded vCPU's CPU; any CPU
    /// otherwise, only the count is read).
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
    /// A timer on the hardware is saved, changed in memory and restored.
    /// With the vCPU loaded, line levels follow at once (a direct timer's
    /// cleared condition lowers the line and releases the physical
    /// interrupt; an emulated timer's line is raised or lowered); otherwise at the next
    /// [`load`](Self::load) and [`before_entry`](Self::before_entry). A
    /// loaded vCPU takes a new VM-wide counter offset here, whichever timer
    /// and register is named; since that moves both timers' counts, both
    /// lines follow then.
    /// A direct physical timer of a loaded vCPU that gets a non-zero offset
    /// (a `Cnt` write, or a new VM-wide offset) on a CPU without FEAT_ECV
    /// becomes emulated here (see [`timer_map`](Self::timer_map)); the next
    /// [`load`](Self::load) decides the map again.
    /// Every value is accepted: unknown CTL bits and ISTATUS are ignored,
    /// TVAL uses its low 32 bits, all arithmetic wraps as the counter does.
    /// Which CPU's `hw` and `chip` to pass: the [`TimerReg`] docs
    /// (a loaded vCPU's CPU; for a vCPU that is not loaded any CPU's
    /// counter, and `chip` is not called).
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
        self.touch();
        // A loaded vCPU takes a new VM-wide offset here, which moves the
        // counts under its live timers: each direct timer on the hardware
        // is saved and restored around it like a register write of its own.
        let offset_moves = self.loaded
            && vm.counter_offset().is_some_and(|offset| {
                offset != self.vtimer.offset() || offset != self.ptimer.offset()
            });
        let saved = [TimerId::Virtual, TimerId::Physical].map(|id| {
            let on_hardware = (timer == id || offset_moves)
                && self.context(id).residency() == Residency::Hardware;
            if on_hardware {
                self.save(id, hw);
            }
            on_hardware
        });
        let offsets_before = (self.vtimer.offset(), self.ptimer.offset());
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
        let offsets = (self.vtimer.offset(), self.ptimer.offset());
        // A loaded vCPU's offsets live in CNTVOFF_EL2 and, for a direct
        // physical timer, CNTPOFF_EL2: written before the timer is
        // restored, as on load. A direct physical timer given an offset a
        // CPU without FEAT_ECV cannot apply becomes emulated (it was saved
        // above, since only a write to it or a moved VM-wide offset
        // changes its offset).
        let mut demoted = false;
        if self.loaded {
            if offsets.0 != offsets_before.0 {
                hw.set_virtual_offset(offsets.0);
            }
            if offsets.1 != offsets_before.1 && self.is_direct(TimerId::Physical) {
                if self.has_physical_offset() {
                    hw.set_physical_offset(offsets.1);
                } else if offsets.1 != Ticks::ZERO {
                    self.demote_ptimer(hw, chip)?;
                    demoted = true;
                }
            }
        }
        for (id, was_saved) in [TimerId::Virtual, TimerId::Physical].into_iter().zip(saved) {
            if was_saved && self.is_direct(id) {
                self.restore(id, hw);
            }
        }
        if self.loaded {
            // A moved offset moves the timers' counts, whichever register
            // was named: their lines follow.
            for id in [TimerId::Virtual, TimerId::Physical] {
                let moved = match id {
                    TimerId::Virtual => offsets.0 != offsets_before.0,
                    TimerId::Physical => offsets.1 != offsets_before.1,
                };
                if id == timer || moved || (demoted && id == TimerId::Physical) {
                    self.sync_loaded_line(id, now, chip)?;
                }
            }
        }
        Ok(())
    }

    /// Brings a loaded vCPU's line for `timer` in step with its state after
    /// a register write: a direct timer's line is lowered (and the physical
    /// interrupt released) if its condition no longer holds, and left to
    /// the hardware PPI if it newly holds; an emulated timer's line follows
    /// its condition either way.
    fn sync_loaded_line<C: IrqChip + ?Sized>(
        &mut self,
        timer: TimerId,
        now: Ticks,
        chip: &mut C,
    ) -> Result<(), Error<C::Error>> {
        let ctx = self.context(timer);
        let fire = ctx.should_fire(now);
        if fire != ctx.level() {
            if !self.is_direct(timer) {
                self.set_level(timer, fire, chip)?;
            } else if !fire {
                self.lower_direct_line(timer, chip)?;
            }
            // A direct timer's newly met condition raises its physical PPI
            // by itself.
        }
        Ok(())
    }

    /// The timer's state as the guest sees it now: read from the hardware
    /// while the timer is on it; with the VM-wide offset applied
    /// unless the vCPU is loaded (a loaded vCPU runs with the offset it
    /// took at `load` or at its last `set_reg`).
    fn current<H: TimerHw + ?Sized>(&self, vm: &VmTimer, hw: &H, timer: TimerId) -> TimerContext {
        let mut ctx = self.context(timer).clone();
        if ctx.residency() == Residency::Hardware {
            ctx.set_ctl(crate::vcpu::hw_ctl(hw, timer));
            ctx.set_cval(crate::vcpu::hw_cval(hw, timer));
        }
        if !self.loaded
            && let Some(offset) = vm.counter_offset()
        {
            ctx.set_offset(offset);
        }
        ctx
    }
}
