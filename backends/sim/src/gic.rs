//! The model interrupt controller: per-CPU physical PPIs with split
//! priority drop and deactivation (EOImode = 1), and per-vCPU virtual
//! interrupts with the list register HW bit.

use arch_timer_virt::IntId;

/// Number of PPIs, INTIDs 16..=31.
const PPIS: usize = 16;

fn ppi_index(intid: IntId) -> usize {
    // An `IntId` is always a PPI, 16..=31, so this is 0..=15; saturating
    // keeps it total anyway.
    usize::try_from(intid.get().saturating_sub(IntId::FIRST_PPI)).map_or(0, |i| i.min(PPIS - 1))
}

/// The GIC state of one physical PPI on one CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PpiState {
    /// Enabled (not masked): `ISENABLER0`.
    pub enabled: bool,
    /// Active: acknowledged and not yet deactivated.
    pub active: bool,
    /// Acknowledged and its priority not yet dropped (running priority).
    pub priority_held: bool,
}

impl Default for PpiState {
    fn default() -> Self {
        Self {
            enabled: true,
            active: false,
            priority_held: false,
        }
    }
}

/// The PPIs of one CPU (its redistributor, or the banked part of the GICv2
/// distributor). Every PPI starts enabled, inactive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ppis {
    ppis: [PpiState; PPIS],
}

impl Ppis {
    /// The state of `ppi`.
    #[must_use]
    pub fn get(&self, ppi: IntId) -> PpiState {
        self.ppis.get(ppi_index(ppi)).copied().unwrap_or_default()
    }

    pub(crate) fn get_mut(&mut self, ppi: IntId) -> Option<&mut PpiState> {
        self.ppis.get_mut(ppi_index(ppi))
    }
}

/// The state of a virtual interrupt in a vCPU's list registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum VirtualState {
    /// Not in a list register.
    #[default]
    Inactive,
    /// Pending: the guest will take it when its interrupts are unmasked.
    Pending,
    /// Acknowledged by the guest, not yet deactivated.
    Active,
    /// Active, and pending again (only without the HW bit).
    ActivePending,
}

impl VirtualState {
    /// Active or active and pending.
    #[must_use]
    pub const fn is_active(self) -> bool {
        matches!(self, Self::Active | Self::ActivePending)
    }
}

/// One virtual interrupt of a vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtualIrq {
    /// The level the hypervisor last set.
    pub line: bool,
    /// Its list register state.
    pub state: VirtualState,
    /// The physical INTID it is mapped to (the LR's HW bit and pINTID).
    pub hw: Option<IntId>,
    /// How often a raise made it pending from inactive.
    pub raises: u64,
    /// How often the guest deactivated it.
    pub deactivations: u64,
}

/// A vCPU's virtual CPU interface: its virtual PPIs and their list
/// register state. The model has a list register for every PPI (real GICs
/// have 4 to 16 and the hypervisor multiplexes them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VirtualInterface {
    irqs: [VirtualIrq; PPIS],
}

impl VirtualInterface {
    /// The state of the virtual `intid`.
    #[must_use]
    pub fn get(&self, intid: IntId) -> VirtualIrq {
        self.irqs.get(ppi_index(intid)).copied().unwrap_or_default()
    }

    pub(crate) fn get_mut(&mut self, intid: IntId) -> Option<&mut VirtualIrq> {
        self.irqs.get_mut(ppi_index(intid))
    }

    /// Sets the level of the virtual line, as `IrqChip::set_virtual_level`.
    pub(crate) fn set_level(&mut self, intid: IntId, level: bool) {
        let Some(irq) = self.get_mut(intid) else {
            return;
        };
        irq.line = level;
        irq.state = match (level, irq.state, irq.hw.is_some()) {
            (true, VirtualState::Inactive, _) => {
                irq.raises = irq.raises.saturating_add(1);
                VirtualState::Pending
            }
            // A HW list register cannot be active and pending: the physical
            // side re-signals after the deactivation instead.
            (true, VirtualState::Active, false) => VirtualState::ActivePending,
            (false, VirtualState::Pending, _) => VirtualState::Inactive,
            (false, VirtualState::ActivePending, _) => VirtualState::Active,
            (_, state, _) => state,
        };
    }

    /// Makes `intid` pending again if its line is high and it is neither
    /// pending nor active: what a vGIC that keeps level semantics in
    /// software (KVM's) does when it flushes its state before an entry.
    pub(crate) fn resample(&mut self, intid: IntId) {
        if let Some(irq) = self.get_mut(intid)
            && irq.line
            && irq.state == VirtualState::Inactive
        {
            irq.state = VirtualState::Pending;
            irq.raises = irq.raises.saturating_add(1);
        }
    }

    /// The guest acknowledges the highest-priority pending interrupt (all
    /// share one priority, so the lowest INTID).
    pub(crate) fn acknowledge(&mut self) -> Option<IntId> {
        let (index, irq) = self
            .irqs
            .iter_mut()
            .enumerate()
            .find(|(_, irq)| irq.state == VirtualState::Pending)?;
        irq.state = VirtualState::Active;
        let n = u32::try_from(index).ok()?.checked_add(IntId::FIRST_PPI)?;
        IntId::ppi(n).ok()
    }

    /// The guest deactivates `intid`; returns the physical INTID to
    /// deactivate with it (HW bit). An interrupt without the HW bit is
    /// level-sensitive: if its line is still high it is pending again (the
    /// `IrqChip` contract; GIC backends re-inject it on the EOI
    /// maintenance interrupt).
    pub(crate) fn deactivate(&mut self, intid: IntId) -> Option<IntId> {
        let irq = self.get_mut(intid)?;
        irq.state = match irq.state {
            VirtualState::Active if irq.hw.is_none() && irq.line => {
                irq.raises = irq.raises.saturating_add(1);
                VirtualState::Pending
            }
            VirtualState::Active => VirtualState::Inactive,
            VirtualState::ActivePending => VirtualState::Pending,
            VirtualState::Inactive | VirtualState::Pending => return None,
        };
        irq.deactivations = irq.deactivations.saturating_add(1);
        irq.hw
    }
}
