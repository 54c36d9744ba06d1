//! The vCPU's timer in the run loop: the library's [`VcpuTimer`], or, with
//! the example's `eager` cargo feature, [`EagerTimer`], the eager
//! baseline `cargo xtask bench` measures the library against.
//!
//! The baseline follows Linux KVM's timer before it went lazy (the
//! behaviour of `virt/kvm/arm/arch_timer.c` before "Avoid timer
//! save/restore in vcpu entry/exit"), with the same
//! backends and the same run loop, method for method:
//!
//! - every exit (`after_exit`, KVM's `kvm_timer_sync_hwstate`): non-VHE,
//!   EL1 physical timer access back to the host (`CNTHCTL_EL2`); read
//!   `CNTV_CTL` and `CNTV_CVAL`, disable the timer, zero `CNTVOFF_EL2`;
//!   then recompute the line from the saved state (a counter read if the
//!   timer can fire) and tell the vGIC if it changed;
//! - every entry (`before_entry`, `kvm_timer_flush_hwstate`): recompute
//!   the line again (a counter read if the timer can fire); the physical
//!   PPI's active state = line high or the virtual interrupt active
//!   (asking the vGIC only when the line is low), written unless it is
//!   "clear" and was cleared last time (`active_cleared_last`, forgotten
//!   at a line change and at put); a high line raised again (KVM's vGIC
//!   queued a high level-sensitive line and wrote it to a list register
//!   at every entry: the guest's deactivation of a forwarded interrupt
//!   makes it pending again while the line stays high); restore `CNTVOFF_EL2`, non-VHE trap
//!   EL1 physical timer access, `CNTV_CVAL`, `isb`, `CNTV_CTL`;
//! - `put` forgets the active-cleared cache, `load` does nothing but the
//!   vCPU's first one (map the virtual interrupt to the PPI and unmask it,
//!   and with VHE trap EL1 physical timer access, which KVM set once per
//!   CPU);
//! - `block` (`kvm_timer_schedule`): nothing if the timer cannot fire,
//!   `Now` if it fires already (a counter read), else the background soft
//!   timer at its expiry (another counter read, for the delta);
//!   `unblock` cancels it;
//! - the vtimer PPI at EL2 is not expected (the timer is disabled before
//!   the host takes interrupts): it is left active and the cache forgotten,
//!   so that the next entry writes the active state.
//!
//! KVM of that time always emulated the physical timer. The baseline gives
//! the guest its physical timer directly where the library's
//! [`PhysTimerMode::Auto`](arch_timer_virt::PhysTimerMode::Auto) would at
//! offset 0 (the `perf-ptimer` scenario), the same eager way as the
//! virtual one: at every exit `CNTP_CTL` and `CNTP_CVAL` saved and the
//! timer disabled, the line recomputed; at every entry the line
//! recomputed, the PPI's active state set or cleared (its own
//! active-cleared cache), `CNTP_CVAL` restored before the shared `isb`,
//! `CNTP_CTL` after it; EL1 physical timer and counter access allowed once
//! at the first load and never trapped (no `CNTHCTL_EL2` write per exit);
//! its PPI mapped and unmasked at the first load; `block` arms the
//! background timer at the earlier of the two expiries.
//!
//! The baseline has no emulated physical timer (its scenarios are refused:
//! only the perf scenarios run with the feature). Everything else the
//! run loop asks of the timer (`levels`, `vtimer` for the statistics) it
//! answers from the baseline's own state or the unused library timer it
//! wraps.

#[cfg(not(feature = "eager"))]
pub(crate) use arch_timer_virt::VcpuTimer as GuestTimer;
#[cfg(feature = "eager")]
pub(crate) use imp::EagerTimer as GuestTimer;

#[cfg(feature = "eager")]
mod imp {
    use core::ops::{Deref, DerefMut};

    use arch_timer_virt::{
        Error, Forwarded, HostIrq, IntId, IrqChip, NotLoaded, PhysTimerMode, SoftTimer, SoftTimers,
        Ticks, TimerCtl, TimerHw, TimerId, TimerLevels, VcpuTimer, VmTimer, Wakeup,
    };

    use crate::sysreg::read_sysreg;

    /// `HCR_EL2.E2H`.
    const HCR_E2H: u64 = 1 << 34;

    /// The eager baseline's timer of one vCPU (see the module docs).
    #[derive(Debug)]
    pub(crate) struct EagerTimer {
        /// The library's timer, never loaded: what the run loop reads
        /// through it (INTIDs) and nothing else.
        inner: VcpuTimer,
        ctl: TimerCtl,
        cval: Ticks,
        offset: Ticks,
        /// The virtual line as the vGIC was last told.
        level: bool,
        /// The physical PPI's active state was cleared at the last entry
        /// and nothing changed since.
        active_cleared_last: bool,
        /// The virtual interrupt is mapped to the PPI (the first load).
        mapped: bool,
        vhe: bool,
        virtual_irq: IntId,
        host_ppi: IntId,
        /// The physical timer, when it is the guest's directly (decided at
        /// the first load).
        ptimer: Option<EagerPtimer>,
    }

    /// The eager baseline's direct physical timer: its saved registers,
    /// line and active-cleared cache, as the virtual timer's in
    /// [`EagerTimer`] (no offset: direct only at offset 0).
    #[derive(Debug)]
    struct EagerPtimer {
        ctl: TimerCtl,
        cval: Ticks,
        /// The line as the vGIC was last told.
        level: bool,
        /// The PPI's active state was cleared at the last entry and nothing
        /// changed since.
        active_cleared_last: bool,
        virtual_irq: IntId,
        host_ppi: IntId,
    }

    impl EagerPtimer {
        /// Whether the saved timer fires now (a counter read only if it
        /// can fire).
        #[inline(always)]
        fn should_fire<H: TimerHw + ?Sized>(&self, hw: &H) -> bool {
            self.ctl.can_fire() && hw.physical_count().get() >= self.cval.get()
        }

        /// Recomputes the line; tells the vGIC if it changed (`true`).
        #[inline(always)]
        fn update_state<H, C>(&mut self, hw: &H, chip: &mut C) -> Result<bool, Error<C::Error>>
        where
            H: TimerHw + ?Sized,
            C: IrqChip + ?Sized,
        {
            let level = self.should_fire(hw);
            if level == self.level {
                return Ok(false);
            }
            self.level = level;
            self.active_cleared_last = false;
            chip.set_virtual_level(self.virtual_irq, level)
                .map_err(Error::IrqChip)?;
            Ok(true)
        }

        /// The entry's interrupt side: the line, a high line raised again,
        /// the PPI's active state.
        fn flush<H, C>(&mut self, hw: &H, chip: &mut C) -> Result<(), Error<C::Error>>
        where
            H: TimerHw + ?Sized,
            C: IrqChip + ?Sized,
        {
            let changed = self.update_state(hw, chip)?;
            if self.level && !changed {
                chip.set_virtual_level(self.virtual_irq, true)
                    .map_err(Error::IrqChip)?;
            }
            let phys_active = self.level
                || chip
                    .virtual_active(self.virtual_irq)
                    .map_err(Error::IrqChip)?;
            if !self.active_cleared_last || phys_active {
                chip.set_host_active(self.host_ppi, phys_active)
                    .map_err(Error::IrqChip)?;
                self.active_cleared_last = !phys_active;
            }
            Ok(())
        }

        /// The counter value at which the saved timer fires, if it can.
        fn expiry(&self) -> Option<Ticks> {
            self.ctl.can_fire().then_some(self.cval)
        }
    }

    impl Deref for EagerTimer {
        type Target = VcpuTimer;
        fn deref(&self) -> &VcpuTimer {
            &self.inner
        }
    }

    impl DerefMut for EagerTimer {
        fn deref_mut(&mut self) -> &mut VcpuTimer {
            &mut self.inner
        }
    }

    impl EagerTimer {
        /// A vCPU's timer, disabled.
        pub(crate) const fn new() -> Self {
            Self {
                inner: VcpuTimer::new(),
                ctl: TimerCtl::empty(),
                cval: Ticks::ZERO,
                offset: Ticks::ZERO,
                level: false,
                active_cleared_last: false,
                mapped: false,
                vhe: false,
                virtual_irq: IntId::VIRTUAL_TIMER,
                host_ppi: IntId::VIRTUAL_TIMER,
                ptimer: None,
            }
        }

        /// The lines as the vGIC was last told (the physical timer's when
        /// it is direct; the baseline emulates none).
        pub(crate) fn levels(&self) -> TimerLevels {
            let mut levels = TimerLevels::default();
            levels.virtual_timer = self.level;
            levels.physical_timer = self.ptimer.as_ref().is_some_and(|p| p.level);
            levels
        }

        /// KVM's `kvm_timer_should_fire`: reads the counter only if the
        /// saved timer can fire.
        #[inline(always)]
        fn should_fire<H: TimerHw + ?Sized>(&self, hw: &H) -> bool {
            if !self.ctl.can_fire() {
                return false;
            }
            let now = hw.physical_count().wrapping_sub(self.offset);
            now.get() >= self.cval.get()
        }

        /// KVM's `kvm_timer_update_state`; `true` if the line changed.
        #[inline(always)]
        fn update_state<H, C>(&mut self, hw: &H, chip: &mut C) -> Result<bool, Error<C::Error>>
        where
            H: TimerHw + ?Sized,
            C: IrqChip + ?Sized,
        {
            let level = self.should_fire(hw);
            if level != self.level {
                self.level = level;
                self.active_cleared_last = false;
                chip.set_virtual_level(self.virtual_irq, level)
                    .map_err(Error::IrqChip)?;
                return Ok(true);
            }
            Ok(false)
        }

        /// Schedule-in: the vCPU's first maps its interrupt.
        pub(crate) fn load<H, C>(
            &mut self,
            vm: &VmTimer,
            hw: &mut H,
            chip: &mut C,
        ) -> Result<(), Error<C::Error>>
        where
            H: TimerHw + ?Sized,
            C: IrqChip + ?Sized,
        {
            if !self.mapped {
                self.vhe = read_sysreg!(hcr_el2) & HCR_E2H != 0;
                self.virtual_irq = vm.virtual_irq();
                self.host_ppi = vm.host_virtual_ppi();
                self.offset = vm.counter_offset().unwrap_or(Ticks::ZERO);
                chip.map_virtual(self.virtual_irq, self.host_ppi)
                    .map_err(Error::IrqChip)?;
                chip.set_host_masked(self.host_ppi, false)
                    .map_err(Error::IrqChip)?;
                // The physical timer direct where the library's `Auto`
                // makes it so without FEAT_ECV: at offset 0.
                let direct =
                    vm.phys_timer_mode() == PhysTimerMode::Auto && self.offset == Ticks::ZERO;
                if direct {
                    let p = EagerPtimer {
                        ctl: TimerCtl::empty(),
                        cval: Ticks::ZERO,
                        level: false,
                        active_cleared_last: false,
                        virtual_irq: vm.physical_irq(),
                        host_ppi: vm.host_physical_ppi(),
                    };
                    chip.map_virtual(p.virtual_irq, p.host_ppi)
                        .map_err(Error::IrqChip)?;
                    chip.set_host_masked(p.host_ppi, false)
                        .map_err(Error::IrqChip)?;
                    // The guest's own from now on, in either host mode.
                    hw.set_el1_physical_access(true);
                    self.ptimer = Some(p);
                } else if self.vhe {
                    hw.set_el1_physical_access(false);
                }
                self.mapped = true;
            }
            Ok(())
        }

        /// Schedule-out: the state is in memory since the last exit.
        pub(crate) fn put<H, S>(&mut self, _hw: &mut H, _soft: &mut S) -> Result<(), NotLoaded>
        where
            H: TimerHw + ?Sized,
            S: SoftTimers + ?Sized,
        {
            self.active_cleared_last = false;
            if let Some(p) = &mut self.ptimer {
                p.active_cleared_last = false;
            }
            Ok(())
        }

        /// KVM's `kvm_timer_flush_hwstate` and the timer restore.
        pub(crate) fn before_entry<H, C, S>(
            &mut self,
            hw: &mut H,
            chip: &mut C,
            _soft: &mut S,
        ) -> Result<(), Error<C::Error>>
        where
            H: TimerHw + ?Sized,
            C: IrqChip + ?Sized,
            S: SoftTimers + ?Sized,
        {
            if self.ptimer.is_some() {
                return self.before_entry_both(hw, chip);
            }
            self.flush_vtimer(hw, chip)?;
            hw.set_virtual_offset(self.offset);
            if !self.vhe {
                hw.set_el1_physical_access(false);
            }
            hw.set_vtimer_cval(self.cval);
            hw.barrier();
            hw.set_vtimer_ctl(self.ctl);
            Ok(())
        }

        /// The entry's interrupt side for the virtual timer: the line, a
        /// high line raised again, the PPI's active state.
        #[inline(always)]
        fn flush_vtimer<H, C>(&mut self, hw: &H, chip: &mut C) -> Result<(), Error<C::Error>>
        where
            H: TimerHw + ?Sized,
            C: IrqChip + ?Sized,
        {
            let changed = self.update_state(hw, chip)?;
            if self.level && !changed {
                // KVM's vGIC flush: a high line is in a list register.
                chip.set_virtual_level(self.virtual_irq, true)
                    .map_err(Error::IrqChip)?;
            }
            let phys_active = self.level
                || chip
                    .virtual_active(self.virtual_irq)
                    .map_err(Error::IrqChip)?;
            // Skipped only when clear and cleared last time.
            if !self.active_cleared_last || phys_active {
                chip.set_host_active(self.host_ppi, phys_active)
                    .map_err(Error::IrqChip)?;
                self.active_cleared_last = !phys_active;
            }
            Ok(())
        }

        /// [`before_entry`](Self::before_entry) with the physical timer
        /// direct: both timers' lines and PPIs, then both restored around
        /// one `isb`. Out of line, so that the virtual-timer-only entry
        /// keeps its own code and pays one test for the physical timer.
        #[inline(never)]
        fn before_entry_both<H, C>(
            &mut self,
            hw: &mut H,
            chip: &mut C,
        ) -> Result<(), Error<C::Error>>
        where
            H: TimerHw + ?Sized,
            C: IrqChip + ?Sized,
        {
            self.flush_vtimer(hw, chip)?;
            let Some(p) = &mut self.ptimer else {
                return Ok(());
            };
            p.flush(hw, chip)?;
            hw.set_virtual_offset(self.offset);
            hw.set_vtimer_cval(self.cval);
            hw.set_ptimer_cval(p.cval);
            hw.barrier();
            hw.set_vtimer_ctl(self.ctl);
            hw.set_ptimer_ctl(p.ctl);
            Ok(())
        }

        /// KVM's `kvm_timer_sync_hwstate` and the timer save.
        pub(crate) fn after_exit<H, C, S>(
            &mut self,
            hw: &mut H,
            chip: &mut C,
            _soft: &mut S,
        ) -> Result<(), Error<C::Error>>
        where
            H: TimerHw + ?Sized,
            C: IrqChip + ?Sized,
            S: SoftTimers + ?Sized,
        {
            if self.ptimer.is_some() {
                return self.after_exit_both(hw, chip);
            }
            if !self.vhe {
                hw.set_el1_physical_access(true);
            }
            self.ctl = hw.vtimer_ctl();
            self.cval = hw.vtimer_cval();
            hw.set_vtimer_ctl(TimerCtl::empty());
            hw.set_virtual_offset(Ticks::ZERO);
            self.update_state(hw, chip).map(|_| ())
        }

        /// [`after_exit`](Self::after_exit) with the physical timer
        /// direct: both timers saved and disabled, both lines recomputed
        /// (no `CNTHCTL_EL2` write: the guest keeps its physical timer).
        /// Out of line, as [`before_entry_both`](Self::before_entry_both).
        #[inline(never)]
        fn after_exit_both<H, C>(&mut self, hw: &mut H, chip: &mut C) -> Result<(), Error<C::Error>>
        where
            H: TimerHw + ?Sized,
            C: IrqChip + ?Sized,
        {
            let Some(p) = &mut self.ptimer else {
                return Ok(());
            };
            self.ctl = hw.vtimer_ctl();
            self.cval = hw.vtimer_cval();
            hw.set_vtimer_ctl(TimerCtl::empty());
            p.ctl = hw.ptimer_ctl();
            p.cval = hw.ptimer_cval();
            hw.set_ptimer_ctl(TimerCtl::empty());
            hw.set_virtual_offset(Ticks::ZERO);
            p.update_state(hw, chip)?;
            self.update_state(hw, chip).map(|_| ())
        }

        /// An IRQ exit: [`after_exit`](Self::after_exit); nothing to
        /// forward (the timers are saved and disabled, their PPIs no longer
        /// pending).
        pub(crate) fn after_irq_exit<H, C, S>(
            &mut self,
            hw: &mut H,
            chip: &mut C,
            soft: &mut S,
        ) -> Result<Forwarded, Error<C::Error>>
        where
            H: TimerHw + ?Sized,
            C: IrqChip + ?Sized,
            S: SoftTimers + ?Sized,
        {
            self.after_exit(hw, chip, soft)
                .map(|()| Forwarded::default())
        }

        /// A timer PPI at EL2 (`timer`'s): not expected; left active for
        /// the next entry to set or clear.
        pub(crate) fn handle_timer_irq<H, C>(
            &mut self,
            timer: TimerId,
            _hw: &mut H,
            _chip: &mut C,
        ) -> Result<HostIrq, Error<C::Error>>
        where
            H: TimerHw + ?Sized,
            C: IrqChip + ?Sized,
        {
            match (timer, &mut self.ptimer) {
                (TimerId::Physical, Some(p)) => p.active_cleared_last = false,
                _ => self.active_cleared_last = false,
            }
            Ok(HostIrq::Spurious)
        }

        /// Blocking in place (the library's `block_in_place`) is not the
        /// eager design's to do: its timer is saved and disabled at every
        /// exit, so only the background timer can wake the vCPU. KVM's
        /// `kvm_timer_schedule`, as [`block`](Self::block).
        pub(crate) fn block_in_place<H, C, S>(
            &mut self,
            vm: &VmTimer,
            hw: &mut H,
            _chip: &mut C,
            soft: &mut S,
        ) -> Wakeup
        where
            H: TimerHw + ?Sized,
            C: IrqChip + ?Sized,
            S: SoftTimers + ?Sized,
        {
            self.block(vm, hw, soft)
        }

        /// Never blocked in place ([`block_in_place`](Self::block_in_place)).
        pub(crate) const fn is_blocked_in_place(&self) -> bool {
            false
        }

        /// KVM's `kvm_timer_schedule`.
        pub(crate) fn block<H, S>(&mut self, _vm: &VmTimer, hw: &mut H, soft: &mut S) -> Wakeup
        where
            H: TimerHw + ?Sized,
            S: SoftTimers + ?Sized,
        {
            if self.ptimer.is_some() {
                return self.block_both(hw, soft);
            }
            if !self.ctl.can_fire() {
                return Wakeup::Never;
            }
            if self.should_fire(hw) {
                return Wakeup::Now;
            }
            // The delta from now, as KVM's `kvm_timer_compute_delta`.
            let now = hw.physical_count();
            let delta = self
                .cval
                .get()
                .saturating_sub(now.wrapping_sub(self.offset).get());
            let at = now.saturating_add(Ticks::new(delta));
            soft.arm(SoftTimer::Background, at);
            Wakeup::At(at)
        }

        /// [`block`](Self::block) with the physical timer direct: the
        /// earlier expiry of the two. Out of line, as
        /// [`before_entry_both`](Self::before_entry_both).
        #[inline(never)]
        fn block_both<H, S>(&mut self, hw: &mut H, soft: &mut S) -> Wakeup
        where
            H: TimerHw + ?Sized,
            S: SoftTimers + ?Sized,
        {
            let ptimer = self.ptimer.as_ref().and_then(EagerPtimer::expiry);
            if !self.ctl.can_fire() && ptimer.is_none() {
                return Wakeup::Never;
            }
            if self.should_fire(hw) || self.ptimer.as_ref().is_some_and(|p| p.should_fire(hw)) {
                return Wakeup::Now;
            }
            // The delta from now, as KVM's `kvm_timer_compute_delta`, of
            // each timer that can fire; the earlier.
            let now = hw.physical_count();
            let vtimer = self.ctl.can_fire().then(|| {
                self.cval
                    .get()
                    .saturating_sub(now.wrapping_sub(self.offset).get())
            });
            let ptimer = ptimer.map(|cval| cval.get().saturating_sub(now.get()));
            let delta = match (vtimer, ptimer) {
                (Some(v), Some(p)) => v.min(p),
                (Some(d), None) | (None, Some(d)) => d,
                (None, None) => return Wakeup::Never,
            };
            let at = now.saturating_add(Ticks::new(delta));
            soft.arm(SoftTimer::Background, at);
            Wakeup::At(at)
        }

        /// KVM's `kvm_timer_unschedule`.
        pub(crate) fn unblock<H, C, S>(
            &mut self,
            _hw: &mut H,
            _chip: &mut C,
            soft: &mut S,
        ) -> Result<(), Error<C::Error>>
        where
            H: TimerHw + ?Sized,
            C: IrqChip + ?Sized,
            S: SoftTimers + ?Sized,
        {
            soft.cancel(SoftTimer::Background);
            Ok(())
        }
    }
}
