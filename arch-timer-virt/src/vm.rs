//! VM-wide timer settings: [`VmTimer`], [`Forwarding`] and
//! [`PhysTimerMode`].

use core::sync::atomic::{AtomicBool, Ordering};

use crate::{ConfigError, IntId, Ticks};

/// How the virtual timer's interrupt reaches the guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Forwarding {
    /// Through the interrupt controller's virtual interface: the physical
    /// PPI is left active after a priority drop and the virtual INTID is
    /// injected with the HW bit, so the guest's deactivation completes both
    /// (the in-kernel vGIC of KVM).
    #[default]
    Hardware,
    /// The VMM owns the virtual interrupt controller: the library reports
    /// line changes through
    /// [`VcpuTimer::should_notify_user`](crate::VcpuTimer::should_notify_user)
    /// and masks the physical PPI while the virtual line is high (KVM's
    /// userspace irqchip).
    Masking,
}

/// Whether a VM's EL1 physical timer may run directly on the hardware.
///
/// The choice is the hypervisor's; what each vCPU gets is decided at every
/// [`VcpuTimer::load`](crate::VcpuTimer::load) and reported by
/// [`VcpuTimer::timer_map`](crate::VcpuTimer::timer_map).
///
/// `#[non_exhaustive]`: a later version may add choices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PhysTimerMode {
    /// Direct whenever the CPU allows it: when the physical timer's counter
    /// offset is zero, or the CPU has FEAT_ECV (`CNTPOFF_EL2`) to apply it;
    /// emulated otherwise. The hypervisor must then take the host PPI
    /// [`VmTimer::host_physical_ppi`] (enabled, EOImode = 1) and hand it to
    /// [`VcpuTimer::handle_timer_irq`](crate::VcpuTimer::handle_timer_irq),
    /// as it does the virtual timer's.
    Auto,
    /// Always emulated: the guest's `CNTP_*` and `CNTPCT_EL0` accesses trap
    /// and go through [`emulate`](crate::emulate), a soft timer raises the
    /// line. The default, because it asks nothing of a run loop written for
    /// the virtual timer only.
    #[default]
    Emulated,
}

/// The timer settings every vCPU of a VM shares.
///
/// The interrupt numbers can change until the first
/// [`VcpuTimer::load`](crate::VcpuTimer::load) of any vCPU of the VM; after
/// that they are locked and changes fail with [`ConfigError::ConfigLocked`].
///
/// # Sharing
///
/// `VmTimer` is `Send` and `Sync`: the CPUs running the VM's vCPUs share
/// one by `&` (the [`VcpuTimer`](crate::VcpuTimer) operations that need it
/// take it so; the lock that `load` sets is atomic). Its setters take
/// `&mut`: call them under the hypervisor's own exclusion, as for any
/// VM-wide setting: before the VM first runs, with its vCPUs stopped (a
/// restore's [`set_counter_offset`](Self::set_counter_offset)), or behind
/// a reader-writer lock the run loops read through.
#[derive(Debug)]
pub struct VmTimer {
    virtual_irq: IntId,
    physical_irq: IntId,
    host_virtual_ppi: IntId,
    host_physical_ppi: IntId,
    phys_timer_mode: PhysTimerMode,
    forwarding: Forwarding,
    counter_offset: Option<Ticks>,
    locked: AtomicBool,
}

// What "Sharing" above promises, kept true at compile time.
const _: () = {
    const fn shared_between_cpus<T: Send + Sync>() {}
    shared_between_cpus::<VmTimer>();
};

impl Default for VmTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl VmTimer {
    /// The usual settings: virtual timer on INTID 27 for guest and host,
    /// physical timer on 30 for guest and host, [`Forwarding::Hardware`],
    /// [`PhysTimerMode::Emulated`].
    #[must_use]
    pub const fn new() -> Self {
        Self {
            virtual_irq: IntId::VIRTUAL_TIMER,
            physical_irq: IntId::PHYSICAL_TIMER,
            host_virtual_ppi: IntId::VIRTUAL_TIMER,
            host_physical_ppi: IntId::PHYSICAL_TIMER,
            phys_timer_mode: PhysTimerMode::Emulated,
            forwarding: Forwarding::Hardware,
            counter_offset: None,
            locked: AtomicBool::new(false),
        }
    }

    /// The guest's INTID for its virtual timer.
    #[must_use]
    #[inline]
    pub const fn virtual_irq(&self) -> IntId {
        self.virtual_irq
    }

    /// The guest's INTID for its physical timer.
    #[must_use]
    #[inline]
    pub const fn physical_irq(&self) -> IntId {
        self.physical_irq
    }

    /// The host PPI that the EL1 virtual timer is wired to on this machine
    /// (from the firmware's description, usually 27).
    #[must_use]
    #[inline]
    pub const fn host_virtual_ppi(&self) -> IntId {
        self.host_virtual_ppi
    }

    /// The host PPI that the EL1 physical timer is wired to on this machine
    /// (from the firmware's description, usually 30): taken by the host
    /// while a vCPU's physical timer is direct.
    #[must_use]
    #[inline]
    pub const fn host_physical_ppi(&self) -> IntId {
        self.host_physical_ppi
    }

    /// Whether the physical timer may be direct.
    #[must_use]
    #[inline]
    pub const fn phys_timer_mode(&self) -> PhysTimerMode {
        self.phys_timer_mode
    }

    /// How the virtual timer interrupt reaches the guest.
    #[must_use]
    #[inline]
    pub const fn forwarding(&self) -> Forwarding {
        self.forwarding
    }

    /// The VM-wide counter offset, if one was set: every vCPU's timers
    /// count `physical count - offset`, and per-vCPU `CNT` writes are
    /// ignored.
    #[doc(alias = "KVM_ARM_SET_COUNTER_OFFSET")]
    #[must_use]
    #[inline]
    pub const fn counter_offset(&self) -> Option<Ticks> {
        self.counter_offset
    }

    /// Sets the VM-wide counter offset (for example when restoring a
    /// migrated VM, so that its counter continues where it stopped).
    ///
    /// It wins over per-vCPU `CNT` writes from then on. A vCPU that is not
    /// loaded has it at once (its register reads see it); a loaded vCPU
    /// takes it at its next [`load`](crate::VcpuTimer::load) or
    /// [`set_reg`](crate::VcpuTimer::set_reg) and until then runs, and
    /// reads, with the offset it had. So set it while the vCPUs are
    /// scheduled out (as a VMM does before the first run after a restore,
    /// and as KVM requires), and every vCPU changes over together. When a
    /// loaded vCPU takes it, both its timers' lines follow the moved count.
    ///
    /// A vCPU asleep in [`block`](crate::VcpuTimer::block) keeps the
    /// background timer it armed with the old offset, which may now be
    /// late: call `block` again for each sleeping vCPU (it re-arms; a
    /// loaded one first takes the offset with a
    /// [`set_reg`](crate::VcpuTimer::set_reg) of any register).
    /// Allowed at any time, also after the configuration is locked.
    pub const fn set_counter_offset(&mut self, offset: Ticks) {
        self.counter_offset = Some(offset);
    }

    /// Whether a vCPU has been loaded, which locks the configuration.
    #[must_use]
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Acquire)
    }

    /// Sets the guest's INTIDs for its virtual and physical timer.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPpi`] if either is not a PPI (16..=31);
    /// [`ConfigError::DuplicatePpi`] if both are the same; [`ConfigError::ConfigLocked`]
    /// once a vCPU has been loaded. Either way nothing changes.
    pub fn set_irqs(&mut self, virtual_irq: IntId, physical_irq: IntId) -> Result<(), ConfigError> {
        self.check_unlocked()?;
        for irq in [virtual_irq, physical_irq] {
            if !irq.is_ppi() {
                return Err(ConfigError::InvalidPpi(irq.get()));
            }
        }
        if virtual_irq == physical_irq {
            return Err(ConfigError::DuplicatePpi(virtual_irq));
        }
        self.virtual_irq = virtual_irq;
        self.physical_irq = physical_irq;
        Ok(())
    }

    /// Sets the host PPI of the EL1 virtual timer.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPpi`] if `ppi` is not a PPI (16..=31);
    /// [`ConfigError::DuplicatePpi`] if it is the physical timer's host
    /// PPI; [`ConfigError::ConfigLocked`] once a vCPU has been loaded.
    pub fn set_host_virtual_ppi(&mut self, ppi: IntId) -> Result<(), ConfigError> {
        self.set_host_ppis(ppi, self.host_physical_ppi)
    }

    /// Sets the host PPIs of the EL1 virtual and physical timers.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidPpi`] if either is not a PPI (16..=31);
    /// [`ConfigError::DuplicatePpi`] if both are the same;
    /// [`ConfigError::ConfigLocked`] once a vCPU has been loaded. Either way
    /// nothing changes.
    pub fn set_host_ppis(
        &mut self,
        virtual_ppi: IntId,
        physical_ppi: IntId,
    ) -> Result<(), ConfigError> {
        self.check_unlocked()?;
        for ppi in [virtual_ppi, physical_ppi] {
            if !ppi.is_ppi() {
                return Err(ConfigError::InvalidPpi(ppi.get()));
            }
        }
        if virtual_ppi == physical_ppi {
            return Err(ConfigError::DuplicatePpi(virtual_ppi));
        }
        self.host_virtual_ppi = virtual_ppi;
        self.host_physical_ppi = physical_ppi;
        Ok(())
    }

    /// `self` with the physical timer mode `mode`: the `const` form of
    /// [`set_phys_timer_mode`](Self::set_phys_timer_mode), for a VM
    /// configuration in a `static`.
    #[must_use]
    pub const fn with_phys_timer_mode(mut self, mode: PhysTimerMode) -> Self {
        self.phys_timer_mode = mode;
        self
    }

    /// `self` with the VM-wide counter offset `offset`: the `const` form
    /// of [`set_counter_offset`](Self::set_counter_offset), for a VM
    /// configuration in a `static`.
    #[must_use]
    pub const fn with_counter_offset(mut self, offset: Ticks) -> Self {
        self.counter_offset = Some(offset);
        self
    }

    /// Chooses whether the physical timer may be direct.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ConfigLocked`] once a vCPU has been loaded.
    pub fn set_phys_timer_mode(&mut self, mode: PhysTimerMode) -> Result<(), ConfigError> {
        self.check_unlocked()?;
        self.phys_timer_mode = mode;
        Ok(())
    }

    /// Chooses how the virtual timer interrupt reaches the guest.
    ///
    /// # Errors
    ///
    /// [`ConfigError::ConfigLocked`] once a vCPU has been loaded.
    pub fn set_forwarding(&mut self, forwarding: Forwarding) -> Result<(), ConfigError> {
        self.check_unlocked()?;
        self.forwarding = forwarding;
        Ok(())
    }

    fn check_unlocked(&self) -> Result<(), ConfigError> {
        if self.is_locked() {
            Err(ConfigError::ConfigLocked)
        } else {
            Ok(())
        }
    }

    #[inline]
    pub(crate) fn lock(&self) {
        self.locked.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ppi(n: u32) -> IntId {
        match IntId::ppi(n) {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn defaults_are_the_usual_ppis() {
        let vm = VmTimer::new();
        assert_eq!(vm.virtual_irq().get(), 27);
        assert_eq!(vm.physical_irq().get(), 30);
        assert_eq!(vm.host_virtual_ppi().get(), 27);
        assert_eq!(vm.host_physical_ppi().get(), 30);
        assert_eq!(vm.forwarding(), Forwarding::Hardware);
        assert_eq!(vm.phys_timer_mode(), PhysTimerMode::Emulated);
        static AUTO: VmTimer = VmTimer::new().with_phys_timer_mode(PhysTimerMode::Auto);
        assert_eq!(AUTO.phys_timer_mode(), PhysTimerMode::Auto);
        assert!(!AUTO.is_locked());
        static AHEAD: VmTimer = VmTimer::new().with_counter_offset(Ticks::new(7));
        assert_eq!(AHEAD.counter_offset(), Some(Ticks::new(7)));
        assert_eq!(AHEAD.phys_timer_mode(), PhysTimerMode::Emulated);
    }

    #[test]
    fn same_ppi_for_both_timers_is_rejected_and_changes_nothing() {
        let mut vm = VmTimer::new();
        assert_eq!(
            vm.set_irqs(ppi(20), ppi(20)),
            Err(ConfigError::DuplicatePpi(ppi(20)))
        );
        assert_eq!(vm.virtual_irq().get(), 27);
        let spi = IntId::new(40).unwrap_or(IntId::VIRTUAL_TIMER);
        assert_eq!(vm.set_irqs(spi, ppi(21)), Err(ConfigError::InvalidPpi(40)));
        assert_eq!(
            vm.set_host_virtual_ppi(spi),
            Err(ConfigError::InvalidPpi(40))
        );
        assert_eq!(
            vm.set_host_ppis(ppi(20), ppi(20)),
            Err(ConfigError::DuplicatePpi(ppi(20)))
        );
        assert_eq!(
            vm.set_host_virtual_ppi(ppi(30)),
            Err(ConfigError::DuplicatePpi(ppi(30)))
        );
        assert_eq!(vm.host_virtual_ppi().get(), 27);
        assert_eq!(vm.set_host_ppis(ppi(19), ppi(18)), Ok(()));
        assert_eq!(
            (vm.host_virtual_ppi().get(), vm.host_physical_ppi().get()),
            (19, 18)
        );
        assert_eq!(vm.set_irqs(ppi(20), ppi(21)), Ok(()));
        assert_eq!((vm.virtual_irq().get(), vm.physical_irq().get()), (20, 21));
    }

    #[test]
    fn locked_config_refuses_every_change() {
        let mut vm = VmTimer::new();
        vm.lock();
        assert!(vm.is_locked());
        assert_eq!(
            vm.set_irqs(ppi(20), ppi(21)),
            Err(ConfigError::ConfigLocked)
        );
        assert_eq!(
            vm.set_host_virtual_ppi(ppi(20)),
            Err(ConfigError::ConfigLocked)
        );
        assert_eq!(
            vm.set_forwarding(Forwarding::Masking),
            Err(ConfigError::ConfigLocked)
        );
        assert_eq!(
            vm.set_phys_timer_mode(PhysTimerMode::Auto),
            Err(ConfigError::ConfigLocked)
        );
        assert_eq!(
            vm.set_host_ppis(ppi(20), ppi(21)),
            Err(ConfigError::ConfigLocked)
        );
        assert_eq!(vm.virtual_irq().get(), 27);
    }
}
