#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]

use arch_timer_virt::{
    Error, GicCpu, HostIrq, IntId, Ticks, TimerHw, TimerId, VcpuTimer, VmTimer, Wakeup,
};
use arch_timer_virt_aarch64::{Expired, GenericTimer, HypTimer, RegisterFile, VcpuSlots};

/// The most vCPUs one physical CPU runs.
pub const MAX_VCPUS_PER_CPU: usize = 4;
/// The [`HypTimer`] slot of the scheduler tick.
pub const TICK_SLOT: usize = 0;
/// The tick and two soft timers per vCPU.
pub const SLOTS: usize = 1 + 2 * MAX_VCPUS_PER_CPU;

/// Why the guest left, as the world switch reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// An interrupt is pending at the GIC.
    Irq,
    /// The guest executed WFI (trapped).
    Wfi,
    /// The guest has finished.
    Done,
}

/// The hypervisor's world switch.
pub trait World<R> {
    /// Runs vCPU `vcpu` until it exits. `regs` are this CPU's timer
    /// registers (the hardware needs nothing of them here; a host test
    /// plays the guest's timer accesses on them).
    fn enter(&mut self, vcpu: usize, regs: &mut R) -> Exit;

    /// Nothing is runnable: waits for an interrupt (`wfi` with IRQs masked
    /// at EL2); the EL2 physical timer is programmed for the earliest
    /// deadline.
    fn wait(&mut self, regs: &mut R);
}

/// What can stop a [`PhysCpu`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkeletonError<E> {
    /// The library (or the GIC through it) failed.
    Timer(Error<E>),
    /// A [`HypTimer`] slot was refused.
    Slots(arch_timer_virt_aarch64::Error),
}

impl<E: core::fmt::Display> core::fmt::Display for SkeletonError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Timer(e) => write!(f, "timer: {e}"),
            Self::Slots(e) => write!(f, "soft timers: {e}"),
        }
    }
}

impl<E: core::fmt::Debug + core::fmt::Display> core::error::Error for SkeletonError<E> {}

impl<E> From<Error<E>> for SkeletonError<E> {
    fn from(e: Error<E>) -> Self {
        Self::Timer(e)
    }
}

impl<E> From<arch_timer_virt_aarch64::Error> for SkeletonError<E> {
    fn from(e: arch_timer_virt_aarch64::Error) -> Self {
        Self::Slots(e)
    }
}

impl<E> From<arch_timer_virt::NotLoaded> for SkeletonError<E> {
    fn from(e: arch_timer_virt::NotLoaded) -> Self {
        Self::Timer(e.into())
    }
}

/// Where a vCPU is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuState {
    /// Ready to run.
    Runnable,
    /// Asleep in WFI until its background soft timer (or forever, with no
    /// timer armed, until another event the skeleton does not have).
    Blocked,
    /// Finished.
    Done,
}

/// One vCPU of a [`PhysCpu`].
#[derive(Debug)]
pub struct Vcpu<V> {
    /// Its timers.
    pub timer: VcpuTimer,
    /// Its virtual GIC state.
    pub vgic: V,
    /// Where it is.
    pub state: VcpuState,
    index: usize,
    slots: VcpuSlots,
}

impl<V> Vcpu<V> {
    /// Its index on its CPU.
    #[must_use]
    pub const fn index(&self) -> usize {
        self.index
    }
}

/// What a [`PhysCpu`] counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Guest entries.
    pub entries: u64,
    /// Timer interrupts (either direct timer's) raised for a guest by a
    /// host IRQ: its PPI taken, or forwarded at the IRQ exit before it
    /// could be.
    pub raised: u64,
    /// Scheduler ticks.
    pub ticks: u64,
    /// Wake-ups of vCPUs by their background soft timer.
    pub wakeups: u64,
}

/// One physical CPU of the hypervisor.
#[derive(Debug)]
pub struct PhysCpu<R, G> {
    /// This CPU's generic timer.
    pub hw: GenericTimer<R>,
    /// This CPU's GIC.
    pub gic: G,
    hyp: HypTimer<SLOTS>,
    /// Slots that expired and are not acted on yet.
    expired: Expired,
    tick: Ticks,
    /// What happened so far.
    pub counts: Counts,
}

impl<R: RegisterFile, G: GicCpu> PhysCpu<R, G> {
    /// This CPU, with a scheduler tick every `tick` counter ticks (derive
    /// it from `hw.features().frequency_hz`).
    pub fn new(mut hw: GenericTimer<R>, gic: G, tick: Ticks) -> Self {
        hw.reset_cpu();
        Self {
            hw,
            gic,
            hyp: HypTimer::new(),
            expired: Expired::default(),
            tick,
            counts: Counts::default(),
        }
    }

    /// A new vCPU for this CPU, number `index` of its vCPUs.
    ///
    /// # Errors
    ///
    /// [`arch_timer_virt_aarch64::Error::NoSuchSlot`] from
    /// [`MAX_VCPUS_PER_CPU`] on.
    pub fn vcpu(&mut self, index: usize) -> Result<Vcpu<G::Vgic>, arch_timer_virt_aarch64::Error>
    where
        G::Vgic: Default,
    {
        let slots = VcpuSlots::nth(TICK_SLOT + 1, index)
            .ok_or(arch_timer_virt_aarch64::Error::NoSuchSlot(index))?;
        // Checks both slots.
        self.hyp.vcpu(slots)?;
        Ok(Vcpu {
            timer: VcpuTimer::new(),
            vgic: G::Vgic::default(),
            state: VcpuState::Runnable,
            index,
            slots,
        })
    }

    /// Runs until every vCPU is done: wakes the vCPUs whose background
    /// soft timer expired, gives each runnable one a slice, and waits for
    /// an interrupt when none is runnable.
    ///
    /// # Errors
    ///
    /// What the library or the GIC reports.
    pub fn run(
        &mut self,
        vm: &VmTimer,
        vcpus: &mut [Vcpu<G::Vgic>],
        world: &mut impl World<R>,
    ) -> Result<(), SkeletonError<G::Error>> {
        while vcpus.iter().any(|v| v.state != VcpuState::Done) {
            self.wake(vcpus)?;
            let mut ran = false;
            for v in vcpus.iter_mut() {
                if v.state == VcpuState::Runnable {
                    self.slice(vm, v, world)?;
                    ran = true;
                }
            }
            if !ran {
                self.hyp.program(self.hw.registers_mut());
                world.wait(self.hw.registers_mut());
                self.drain(vm, None)?;
            }
        }
        Ok(())
    }

    /// Wakes the blocked vCPUs whose background soft timer expired.
    fn wake(&mut self, vcpus: &mut [Vcpu<G::Vgic>]) -> Result<(), SkeletonError<G::Error>> {
        for v in vcpus.iter_mut() {
            if v.state == VcpuState::Blocked && self.expired.contains(v.slots.background) {
                self.expired = self.expired.without(v.slots.background);
                v.timer.unblock(
                    &mut self.hw,
                    &mut self.gic.chip(&mut v.vgic),
                    &mut self.hyp.vcpu(v.slots)?,
                )?;
                v.state = VcpuState::Runnable;
                self.counts.wakeups += 1;
            }
        }
        Ok(())
    }

    /// One slice of `v`: scheduled in, run until the tick, a WFI that
    /// sleeps or the end, scheduled out (also when running it failed).
    fn slice(
        &mut self,
        vm: &VmTimer,
        v: &mut Vcpu<G::Vgic>,
        world: &mut impl World<R>,
    ) -> Result<(), SkeletonError<G::Error>> {
        let until = self.hw.physical_count().wrapping_add(self.tick);
        self.hyp.arm(TICK_SLOT, until)?;
        self.gic.vcpu_load(&mut v.vgic).map_err(Error::IrqChip)?;
        v.timer
            .load(vm, &mut self.hw, &mut self.gic.chip(&mut v.vgic))?;
        let ran = self.run_loaded(vm, v, world);
        v.timer.put(&mut self.hw, &mut self.hyp.vcpu(v.slots)?)?;
        self.gic.vcpu_put(&mut v.vgic).map_err(Error::IrqChip)?;
        ran
    }

    fn run_loaded(
        &mut self,
        vm: &VmTimer,
        v: &mut Vcpu<G::Vgic>,
        world: &mut impl World<R>,
    ) -> Result<(), SkeletonError<G::Error>> {
        loop {
            v.timer.before_entry(
                &mut self.hw,
                &mut self.gic.chip(&mut v.vgic),
                &mut self.hyp.vcpu(v.slots)?,
            )?;
            self.hyp.program(self.hw.registers_mut());
            self.counts.entries += 1;
            let exit = world.enter(v.index, self.hw.registers_mut());
            self.gic
                .sync_after_exit(&mut v.vgic)
                .map_err(Error::IrqChip)?;
            if let Exit::Irq = exit {
                // A timer that fired is forwarded before the acknowledge:
                // its PPI is then not taken.
                let forwarded = v.timer.after_irq_exit(
                    &mut self.hw,
                    &mut self.gic.chip(&mut v.vgic),
                    &mut self.hyp.vcpu(v.slots)?,
                )?;
                self.counts.raised += u64::from(forwarded.contains(TimerId::Virtual))
                    + u64::from(forwarded.contains(TimerId::Physical));
            } else {
                v.timer.after_exit(
                    &mut self.hw,
                    &mut self.gic.chip(&mut v.vgic),
                    &mut self.hyp.vcpu(v.slots)?,
                )?;
            }
            match exit {
                Exit::Irq => {
                    if self.drain(vm, Some(&mut *v))? {
                        return Ok(()); // the tick: the next vCPU's turn
                    }
                }
                // The slice ends and puts the vCPU, so its timers are
                // saved: `block`. (A run loop that keeps the vCPU loaded
                // and waits on this CPU for it would `block_in_place`.)
                Exit::Wfi => match v
                    .timer
                    .block(vm, &mut self.hw, &mut self.hyp.vcpu(v.slots)?)
                {
                    Wakeup::Now => v.timer.unblock(
                        &mut self.hw,
                        &mut self.gic.chip(&mut v.vgic),
                        &mut self.hyp.vcpu(v.slots)?,
                    )?,
                    Wakeup::At(_) | Wakeup::Never => {
                        v.state = VcpuState::Blocked;
                        return Ok(());
                    }
                },
                Exit::Done => {
                    v.state = VcpuState::Done;
                    return Ok(());
                }
            }
        }
    }

    /// Takes every pending interrupt; `loaded` is the vCPU on this CPU.
    /// Returns whether the scheduler tick passed.
    fn drain(
        &mut self,
        vm: &VmTimer,
        mut loaded: Option<&mut Vcpu<G::Vgic>>,
    ) -> Result<bool, SkeletonError<G::Error>> {
        let mut tick = false;
        while let Some(intid) = self.gic.acknowledge() {
            self.gic.priority_drop(intid);
            if intid == vm.host_virtual_ppi() || intid == vm.host_physical_ppi() {
                // A timer PPI: the loaded vCPU's if that timer is direct
                // (the physical one is only with `PhysTimerMode::Auto`).
                let direct = loaded.as_deref_mut().and_then(|v| {
                    let id = v.timer.timer_for_host_ppi(intid)?;
                    Some((v, id))
                });
                let Some((v, id)) = direct else {
                    self.gic.deactivate(intid); // no vCPU, or not direct: nothing to forward
                    continue;
                };
                let outcome =
                    v.timer
                        .handle_timer_irq(id, &mut self.hw, &mut self.gic.chip(&mut v.vgic))?;
                match outcome {
                    HostIrq::Raised => self.counts.raised += 1,
                    HostIrq::Spurious => {}
                    HostIrq::NotLoaded => self.gic.deactivate(intid),
                }
            } else if intid == IntId::HYP_PHYSICAL_TIMER {
                let expired = self.hyp.expire(self.hw.registers_mut());
                self.expired = self.expired.union(expired);
                self.gic.deactivate(intid);
                if self.expired.contains(TICK_SLOT) {
                    self.expired = self.expired.without(TICK_SLOT);
                    self.counts.ticks += 1;
                    tick = true;
                }
                if let Some(v) = loaded.as_deref_mut()
                    && self.expired.contains(v.slots.physical)
                {
                    self.expired = self.expired.without(v.slots.physical);
                    v.timer
                        .physical_timer_expired(&mut self.hw, &mut self.gic.chip(&mut v.vgic))?;
                }
            } else if intid == self.gic.maintenance_intid() {
                if let Some(v) = loaded.as_deref_mut() {
                    self.gic.maintenance(&mut v.vgic).map_err(Error::IrqChip)?;
                }
                self.gic.deactivate(intid);
            } else {
                self.gic.deactivate(intid);
            }
        }
        Ok(tick)
    }
}
