//! A small hypervisor on the model: [`Hypervisor`] schedules vCPUs onto
//! CPUs and runs them with [`VcpuTimer`] exactly as DESIGN.md's run loop
//! does, one [`Step`] at a time, and checks the library's invariants after
//! every step ([`Violation`]).

use core::fmt;

use arch_timer_virt::emulate::{self, TimerSysReg};
use arch_timer_virt::{
    ConfigError, Error, Forwarded, Forwarding, HostIrq, IntId, PhysTimerMode, Residency, SoftTimer,
    Ticks, TimerId, TimerReg, VcpuTimer, VmTimer, Wakeup,
};

use crate::guest::{Guest, GuestOp};
use crate::{Counters, Machine, SimChipError, VirtualIrq, VirtualState};

/// One event of a history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// Schedule `vcpu` onto `cpu` (`load`); skipped unless both are free.
    Load {
        /// The vCPU.
        vcpu: usize,
        /// The CPU.
        cpu: usize,
    },
    /// Schedule the vCPU on `cpu` away (`put`), exiting the guest first.
    Put {
        /// The CPU.
        cpu: usize,
    },
    /// Enter the guest on `cpu` (`before_entry`); skipped unless a runnable
    /// vCPU is loaded there.
    Enter {
        /// The CPU.
        cpu: usize,
    },
    /// The guest on `cpu` exits for a reason unrelated to the timer
    /// (`after_exit`).
    Exit {
        /// The CPU.
        cpu: usize,
    },
    /// The guest on `cpu` does something.
    Guest {
        /// The CPU.
        cpu: usize,
        /// What.
        op: GuestOp,
    },
    /// The guest on `cpu` executes WFI: exit, `after_exit`, `block`, and
    /// `unblock` at once if a timer has already expired.
    Wfi {
        /// The CPU.
        cpu: usize,
    },
    /// The host takes the vtimer PPI signalled on `cpu`, if any, and
    /// handles it: the IRQ exception (exiting the guest, with the
    /// acknowledge and priority drop before or after `after_exit` as
    /// [`AckPoint`] says), then `handle_host_irq`. Runs the handler of a
    /// [`Step::HostAck`] instead if one is due.
    HostIrq {
        /// The CPU.
        cpu: usize,
    },
    /// The GIC signals the vtimer PPI to `cpu` while its guest runs
    /// (skipped unless both hold): the IRQ exception is on its way and is
    /// taken at the next step on this CPU that is not a guest operation
    /// (an `Exit`, `Wfi`, `Put`, `HostIrq` or `HostHandle` takes it and
    /// runs the handler in its place; a `HostAck` takes it). Until then the
    /// guest may still write its timer, and the acknowledge then returns
    /// the PPI although its line has dropped: the acknowledge race that
    /// makes a host interrupt spurious.
    Signal {
        /// The CPU.
        cpu: usize,
    },
    /// `cpu` takes the IRQ exception for the vtimer PPI ([`Step::Signal`],
    /// or signalled now; skipped otherwise): exit, acknowledge and priority
    /// drop as in [`Step::HostIrq`], but `handle_host_irq` runs only at a
    /// later step, so that time passes (and other CPUs run) in between. The
    /// guest does not run in between: the next `Enter` or `Put` on this
    /// CPU runs the handler first.
    HostAck {
        /// The CPU.
        cpu: usize,
    },
    /// Runs the handler a [`Step::HostAck`] left due on `cpu`, or takes the
    /// exception [`Step::Signal`] announced and handles it; skipped if
    /// there is neither.
    HostHandle {
        /// The CPU.
        cpu: usize,
    },
    /// The counter moves forward; expired background timers wake their
    /// vCPUs.
    Advance(u64),
    /// Something else (an IPI, a device) wakes `vcpu` if it sleeps.
    Kick {
        /// The vCPU.
        vcpu: usize,
    },
    /// The VMM saves `vcpu`'s timer registers (`TimerReg::MIGRATION` of
    /// both timers, with `get_reg`) and writes them back (`set_reg`) in the
    /// order `order` picks, exiting the guest first if it runs; loaded or
    /// not. With `fresh`, into a new `VcpuTimer` that replaces the old one
    /// (a restore on another host), if the vCPU is neither loaded nor
    /// asleep and has no interrupt in flight; otherwise into the same one.
    SaveRestore {
        /// The vCPU.
        vcpu: usize,
        /// Which of the orders of the six writes.
        order: u8,
        /// Restore into a new `VcpuTimer`.
        fresh: bool,
    },
    /// The VMM moves the VM-wide counter offset by `delta` ticks
    /// (`VmTimer::set_counter_offset`; every guest's count moves by
    /// `-delta`) while the vCPUs are wherever they are. A loaded vCPU
    /// takes it the way the library offers: the VMM (after the run loop's
    /// exit business) writes its physical timer's CTL with the value it
    /// reads (`set_reg`, which writes `CNTVOFF_EL2`). Every sleeping vCPU
    /// is blocked again, so that its background timer follows the new
    /// expiries. Skipped if it would move the virtual count across the
    /// wrap of the counter.
    SetOffset {
        /// How far the offset moves (the counts move the other way).
        delta: i32,
    },
    /// The VMM resets `vcpu` (`VcpuTimer::reset`, after the run loop's exit
    /// business if it is loaded), whatever the guest was doing, also in
    /// its timer interrupt handler; the VMM resets the vCPU's virtual
    /// timer interrupts in its virtual interrupt controller too, and the
    /// guest starts over with its timers disabled.
    Reset {
        /// The vCPU.
        vcpu: usize,
    },
    /// The interrupt controller fails once, in the next library call at
    /// `at` that makes more than `after` interrupt controller calls: its
    /// call number `after` (from 0) there returns an error. The run loop
    /// carries on; the library must leave state that converges (the host
    /// takes the PPI again, or a later entry, exit or load repairs it).
    ChipFault {
        /// Which of the call's interrupt controller calls fails.
        after: u8,
        /// Which calls the fault is armed for.
        at: FaultSite,
    },
}

/// Where a [`Step::ChipFault`] strikes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FaultSite {
    /// The next `handle_host_irq` (which disarms it whether or not it
    /// makes enough calls).
    #[default]
    Handler,
    /// The run loop's next `after_exit`, `after_irq_exit` (the wake-up of
    /// a vCPU blocked in place included), `before_entry`, `unblock`,
    /// trapped register write (`emulate::access`) or
    /// `physical_timer_expired`.
    RunLoop,
    /// The next `load`.
    Load,
}

/// When the host acknowledges an interrupt that exits the guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AckPoint {
    /// After `after_exit`, as the crate's run loop (and KVM) does: the exit
    /// is handled first, then the interrupt is taken.
    #[default]
    AfterExit,
    /// In the EL2 vector, as the exception is taken, before `after_exit`
    /// (a hypervisor that reads the INTID at once).
    AtException,
    /// After `after_irq_exit` in place of `after_exit`, as the example's
    /// run loop does: a timer that fired is forwarded at the exit, and the
    /// acknowledge finds its PPI only if it became pending after that.
    Forwarded,
}

/// Which DESIGN.md section 7 invariant broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Invariant {
    /// 1: an expiry the guest armed is neither delivered nor about to be.
    LostInterrupt,
    /// 1: a virtual interrupt raised while the guest's timer condition did
    /// not hold.
    EarlyInterrupt,
    /// 2: the host took the vtimer PPI again while the guest still had the
    /// last one pending or active, or more often than the guest's timer
    /// expired.
    Storm,
    /// 3: state live in two places, stale state on a CPU, `CNTVOFF_EL2`
    /// non-zero on a CPU with no vCPU, or a restore out of order.
    OneHome,
    /// 4: `before_entry`/`after_exit` touched timer registers they should not.
    QuietHotPath,
    /// 5: the guest sees a different CTL, CVAL or virtual count than it
    /// wrote.
    Migration,
    /// 6: a sleeping vCPU's wake-up timer is late, missing, or armed for a
    /// timer that cannot fire.
    SafeSleep,
    /// 7: the library returned an error for a legal call.
    Library,
}

/// An invariant found broken, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant.
    pub invariant: Invariant,
    /// What was seen.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.invariant, self.detail)
    }
}

impl std::error::Error for Violation {}

fn violation(invariant: Invariant, detail: String) -> Violation {
    Violation { invariant, detail }
}

fn library<E: fmt::Display>(what: &str, e: Error<E>) -> Violation {
    violation(Invariant::Library, format!("{what}: {e}"))
}

/// One vCPU of the [`Hypervisor`].
#[derive(Clone, Debug)]
pub struct Vcpu {
    /// The library's state for its timers.
    pub timer: VcpuTimer,
    /// The guest running on it.
    pub guest: Guest,
    cpu: Option<usize>,
    blocked: bool,
    wake_pending: bool,
    asserted: bool,
    expiries: u64,
    host_irqs: u64,
    raises_seen: u64,
    ptimer_raises_seen: u64,
    refires: u64,
    /// The direct physical timer's counts, as `asserted`, `expiries`,
    /// `host_irqs` and `refires` are the virtual timer's.
    p_asserted: bool,
    p_expiries: u64,
    p_host_irqs: u64,
    p_refires: u64,
    /// A run loop call (an exit, entry or wake-up) failed with an injected
    /// error and no exit or entry has succeeded since: the line may lag
    /// the timer (a lowering to retry) until one does.
    unrepaired: bool,
}

impl Vcpu {
    /// The CPU it is loaded on.
    #[must_use]
    pub const fn cpu(&self) -> Option<usize> {
        self.cpu
    }

    /// Whether it sleeps in WFI.
    #[must_use]
    pub const fn blocked(&self) -> bool {
        self.blocked
    }

    /// How often the guest's timer output went from low to high.
    #[must_use]
    pub const fn expiries(&self) -> u64 {
        self.expiries
    }

    /// How many host vtimer interrupts were handled for it.
    #[must_use]
    pub const fn host_irqs(&self) -> u64 {
        self.host_irqs
    }
}

/// Totals over a history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Steps applied (skipped ones not counted).
    pub steps: u64,
    /// Steps skipped because they were illegal in the state.
    pub skipped: u64,
    /// Host vtimer interrupts that raised the virtual line.
    pub raised: u64,
    /// Host vtimer interrupts the library found spurious.
    pub spurious: u64,
    /// Host vtimer interrupts taken with no vCPU loaded.
    pub orphan: u64,
    /// Wakeups by an expired background timer.
    pub background_wakeups: u64,
    /// `block` calls that returned [`Wakeup::Now`].
    pub immediate_wakeups: u64,
    /// Host vtimer interrupts that raised the virtual line while it was
    /// already high (the guest had deactivated it with the condition met).
    pub reraised: u64,
    /// `after_exit` calls that lowered the virtual line.
    pub exit_lowered: u64,
    /// Of those, the ones that deactivated the PPI (the guest had not
    /// taken the interrupt: it was withdrawn while pending); the others
    /// left it to the guest's completion, which had deactivated it or will.
    pub exit_deactivated: u64,
    /// `unblock` calls that raised the virtual line.
    pub unblock_raised: u64,
    /// `load` calls that raised the virtual line.
    pub load_raised: u64,
    /// Host vtimer interrupts acknowledged before an `after_exit` that
    /// deactivated the PPI, whose handler found the timer fired again and
    /// made the PPI active again ([`AckPoint::AtException`]).
    pub reactivated: u64,
    /// vCPU loads onto a different CPU than the last one.
    pub migrations: u64,
    /// Register save/restore round trips ([`Step::SaveRestore`]) of a
    /// loaded vCPU.
    pub loaded_restores: u64,
    /// Round trips into a new `VcpuTimer`.
    pub fresh_restores: u64,
    /// Trapped physical timer writes emulated.
    pub traps: u64,
    /// With [`Forwarding::Masking`]: deactivations that made the virtual
    /// timer interrupt pending again from a line the VMM still held high
    /// after the guest had cleared the condition (until the next exit).
    pub stale_repends: u64,
    /// Raises of the emulated physical timer's line (by `before_entry`,
    /// its soft timer, a trapped write, or the guest's deactivation with
    /// the line still high).
    pub ptimer_raised: u64,
    /// VM-wide counter offset changes ([`Step::SetOffset`]).
    pub offset_changes: u64,
    /// Of those, taken by a loaded vCPU through a physical timer
    /// register write.
    pub offsets_taken_loaded: u64,
    /// Sleeping vCPUs blocked again after an offset change.
    pub sleeps_rearmed: u64,
    /// vCPU resets ([`Step::Reset`]).
    pub resets: u64,
    /// Of those, while the guest was handling an interrupt.
    pub resets_in_handler: u64,
    /// Library calls that returned an injected interrupt controller error
    /// ([`Step::ChipFault`]), the kinds below together.
    pub chip_errors: u64,
    /// Of those, `handle_host_irq` calls.
    pub handler_chip_errors: u64,
    /// Of those, `after_exit` and `after_irq_exit` calls.
    pub exit_chip_errors: u64,
    /// `before_entry` calls that returned an injected interrupt controller
    /// error: the guest is not entered, the next entry tries again.
    pub entry_chip_errors: u64,
    /// `unblock` calls that returned an injected interrupt controller
    /// error: the vCPU is awake all the same.
    pub wake_chip_errors: u64,
    /// `load` calls that returned an injected interrupt controller error:
    /// the vCPU stays unloaded.
    pub load_chip_errors: u64,
    /// Trapped physical timer writes (`emulate::access`) that returned an
    /// injected interrupt controller error: the value is stored all the
    /// same.
    pub trap_chip_errors: u64,
    /// `physical_timer_expired` calls that returned an injected interrupt
    /// controller error: the next entry raises the line.
    pub soft_chip_errors: u64,
    /// `load` calls that made the physical timer direct (the timer map).
    pub ptimer_direct_loads: u64,
    /// `load` calls that kept the physical timer emulated.
    pub ptimer_emulated_loads: u64,
    /// Guest writes to a direct physical timer (on the hardware, no trap).
    pub ptimer_direct_writes: u64,
    /// Host interrupts of the direct physical timer's PPI that raised its
    /// line.
    pub ptimer_host_raised: u64,
    /// Timer interrupts `after_irq_exit` forwarded at an IRQ exit, before
    /// the host could take their PPI ([`AckPoint::Forwarded`]).
    pub forwarded: u64,
    /// Direct physical timers turned emulated by an offset the CPU could
    /// not apply (no FEAT_ECV), in `set_reg`.
    pub ptimer_demotions: u64,
    /// WFI sleeps blocked in place (`block_in_place` with the vCPU loaded,
    /// not [`Wakeup::Now`]; [`Hypervisor::set_block_in_place`]).
    pub slept_in_place: u64,
    /// vCPUs blocked in place woken by their own timer's PPI: forwarded
    /// by `after_irq_exit` at the wake-up, or raised by `handle_timer_irq`.
    pub woken_in_place: u64,
    /// `put` of a vCPU blocked in place (the sleep carried on saved, with
    /// the background timer).
    pub put_in_place: u64,
}

impl core::ops::AddAssign for Stats {
    /// Adds another history's totals, field by field.
    fn add_assign(&mut self, other: Self) {
        self.steps = self.steps.saturating_add(other.steps);
        self.skipped = self.skipped.saturating_add(other.skipped);
        self.raised = self.raised.saturating_add(other.raised);
        self.spurious = self.spurious.saturating_add(other.spurious);
        self.orphan = self.orphan.saturating_add(other.orphan);
        self.background_wakeups = self
            .background_wakeups
            .saturating_add(other.background_wakeups);
        self.immediate_wakeups = self
            .immediate_wakeups
            .saturating_add(other.immediate_wakeups);
        self.reraised = self.reraised.saturating_add(other.reraised);
        self.exit_lowered = self.exit_lowered.saturating_add(other.exit_lowered);
        self.exit_deactivated = self.exit_deactivated.saturating_add(other.exit_deactivated);
        self.unblock_raised = self.unblock_raised.saturating_add(other.unblock_raised);
        self.load_raised = self.load_raised.saturating_add(other.load_raised);
        self.reactivated = self.reactivated.saturating_add(other.reactivated);
        self.migrations = self.migrations.saturating_add(other.migrations);
        self.loaded_restores = self.loaded_restores.saturating_add(other.loaded_restores);
        self.fresh_restores = self.fresh_restores.saturating_add(other.fresh_restores);
        self.traps = self.traps.saturating_add(other.traps);
        self.stale_repends = self.stale_repends.saturating_add(other.stale_repends);
        self.ptimer_raised = self.ptimer_raised.saturating_add(other.ptimer_raised);
        self.offset_changes = self.offset_changes.saturating_add(other.offset_changes);
        self.offsets_taken_loaded = self
            .offsets_taken_loaded
            .saturating_add(other.offsets_taken_loaded);
        self.sleeps_rearmed = self.sleeps_rearmed.saturating_add(other.sleeps_rearmed);
        self.resets = self.resets.saturating_add(other.resets);
        self.resets_in_handler = self
            .resets_in_handler
            .saturating_add(other.resets_in_handler);
        self.chip_errors = self.chip_errors.saturating_add(other.chip_errors);
        self.handler_chip_errors = self
            .handler_chip_errors
            .saturating_add(other.handler_chip_errors);
        self.exit_chip_errors = self.exit_chip_errors.saturating_add(other.exit_chip_errors);
        self.entry_chip_errors = self
            .entry_chip_errors
            .saturating_add(other.entry_chip_errors);
        self.wake_chip_errors = self.wake_chip_errors.saturating_add(other.wake_chip_errors);
        self.load_chip_errors = self.load_chip_errors.saturating_add(other.load_chip_errors);
        self.trap_chip_errors = self.trap_chip_errors.saturating_add(other.trap_chip_errors);
        self.soft_chip_errors = self.soft_chip_errors.saturating_add(other.soft_chip_errors);
        self.ptimer_direct_loads = self
            .ptimer_direct_loads
            .saturating_add(other.ptimer_direct_loads);
        self.ptimer_emulated_loads = self
            .ptimer_emulated_loads
            .saturating_add(other.ptimer_emulated_loads);
        self.ptimer_direct_writes = self
            .ptimer_direct_writes
            .saturating_add(other.ptimer_direct_writes);
        self.ptimer_host_raised = self
            .ptimer_host_raised
            .saturating_add(other.ptimer_host_raised);
        self.ptimer_demotions = self.ptimer_demotions.saturating_add(other.ptimer_demotions);
        self.forwarded = self.forwarded.saturating_add(other.forwarded);
        self.slept_in_place = self.slept_in_place.saturating_add(other.slept_in_place);
        self.woken_in_place = self.woken_in_place.saturating_add(other.woken_in_place);
        self.put_in_place = self.put_in_place.saturating_add(other.put_in_place);
    }
}

/// A hypervisor on a [`Machine`]: one VM whose vCPUs it loads, runs,
/// blocks and migrates, calling the library as a real run loop does.
#[derive(Debug)]
pub struct Hypervisor {
    machine: Machine,
    vm: VmTimer,
    vcpus: Vec<Vcpu>,
    on_cpu: Vec<Option<usize>>,
    in_guest: Vec<bool>,
    last_cpu: Vec<Option<usize>>,
    signalled: Vec<bool>,
    handler_due: Vec<Option<IntId>>,
    ack_point: AckPoint,
    resample: bool,
    in_place: bool,
    /// The fault [`Step::ChipFault`] left for the next `handle_host_irq`.
    pending_fault: Option<u32>,
    /// The same for the run loop's next call that makes enough calls.
    pending_run_loop_fault: Option<u32>,
    /// The same for the next `load` that makes enough calls.
    pending_load_fault: Option<u32>,
    stats: Stats,
}

impl Hypervisor {
    /// `cpus` CPUs whose counter runs at `frequency_hz`, `vcpus` vCPUs of
    /// one VM with the default [`VmTimer`].
    #[must_use]
    pub fn new(cpus: usize, vcpus: usize, frequency_hz: u32) -> Self {
        let vm = VmTimer::new();
        let guest = Guest::new(vm.virtual_irq()).with_physical_irq(vm.physical_irq());
        Self {
            machine: Machine::new(cpus, vcpus, frequency_hz),
            vcpus: (0..vcpus)
                .map(|_| Vcpu {
                    timer: VcpuTimer::new(),
                    guest: guest.clone(),
                    cpu: None,
                    blocked: false,
                    wake_pending: false,
                    asserted: false,
                    expiries: 0,
                    host_irqs: 0,
                    raises_seen: 0,
                    ptimer_raises_seen: 0,
                    refires: 0,
                    p_asserted: false,
                    p_expiries: 0,
                    p_host_irqs: 0,
                    p_refires: 0,
                    unrepaired: false,
                })
                .collect(),
            vm,
            on_cpu: vec![None; cpus],
            in_guest: vec![false; cpus],
            last_cpu: vec![None; vcpus],
            signalled: vec![false; cpus],
            handler_due: vec![None; cpus],
            ack_point: AckPoint::AfterExit,
            resample: false,
            in_place: false,
            pending_fault: None,
            pending_run_loop_fault: None,
            pending_load_fault: None,
            stats: Stats::default(),
        }
    }

    /// Makes the vGIC keep level semantics: before each entry, a virtual
    /// timer interrupt whose line the library left high and that the
    /// guest has deactivated is made pending again (KVM's vGIC does this;
    /// the `IrqChip` contract does not promise it). Off by default.
    pub const fn set_level_resample(&mut self, on: bool) {
        self.resample = on;
    }

    /// Makes a WFI of a loaded vCPU block in place
    /// (`VcpuTimer::block_in_place`: its direct timers left running, their
    /// PPIs waking the CPU) instead of `block`. Off by default.
    pub const fn set_block_in_place(&mut self, on: bool) {
        self.in_place = on;
    }

    /// When the host acknowledges an interrupt that exits the guest
    /// ([`AckPoint::AfterExit`] by default).
    pub const fn set_ack_point(&mut self, at: AckPoint) {
        self.ack_point = at;
    }

    /// How the virtual timer interrupt reaches the guests
    /// (`VmTimer::set_forwarding`; [`Forwarding::Hardware`] by default).
    /// With [`Forwarding::Masking`] the hypervisor plays the VMM that owns
    /// the interrupt controller: after every library call that can change
    /// a line it takes the levels the library reports
    /// (`should_notify_user`, `take_user_levels`) and sets the model's
    /// virtual lines, which carry no HW bit.
    ///
    /// # Errors
    ///
    /// `ConfigError::ConfigLocked` once a vCPU has been loaded.
    pub fn set_forwarding(&mut self, forwarding: Forwarding) -> Result<(), ConfigError> {
        self.vm.set_forwarding(forwarding)
    }

    /// Whether the VM's physical timer may be direct
    /// (`VmTimer::set_phys_timer_mode`; [`PhysTimerMode::Emulated`] by
    /// default). With [`PhysTimerMode::Auto`] each `load` decides: the
    /// guest then writes a direct physical timer on the model CPU's EL1
    /// physical timer (no trap), and the host takes its PPI
    /// ([`Machine::ptimer_ppi`]) and hands it to `handle_timer_irq`.
    ///
    /// # Errors
    ///
    /// `ConfigError::ConfigLocked` once a vCPU has been loaded.
    pub fn set_phys_timer_mode(&mut self, mode: PhysTimerMode) -> Result<(), ConfigError> {
        self.vm.set_phys_timer_mode(mode)
    }

    /// Gives the model CPUs FEAT_ECV (`CNTPOFF_EL2`) or takes it away.
    pub fn set_ecv(&mut self, ecv: bool) {
        let mut features = self.machine.ports(0, 0).timer.features();
        features.ecv = ecv;
        self.machine.set_features(features);
    }

    /// Whether `vcpu`'s physical timer is direct (as its last `load` or a
    /// later `set_reg` left it).
    fn ptimer_direct(&self, vcpu: usize) -> bool {
        self.vcpus[vcpu].timer.is_direct(TimerId::Physical)
    }

    /// The guest intid of `timer`.
    fn intid(&self, timer: TimerId) -> IntId {
        // `TimerId` is non-exhaustive: the model has these two timers.
        if timer == TimerId::Virtual {
            self.vm.virtual_irq()
        } else {
            self.vm.physical_irq()
        }
    }

    /// With [`Forwarding::Masking`], the VMM's part: the line levels the
    /// library reports for `vcpu`, set on the model's virtual interface.
    fn sync_user_levels(&mut self, vcpu: usize) {
        let v = &mut self.vcpus[vcpu];
        if !v.timer.should_notify_user() {
            return;
        }
        let levels = v.timer.take_user_levels();
        self.machine
            .vmm_set_level(vcpu, self.vm.virtual_irq(), levels.virtual_timer);
        self.machine
            .vmm_set_level(vcpu, self.vm.physical_irq(), levels.physical_timer);
    }

    /// Gives the VM the counter offset `offset` (`VmTimer::set_counter_offset`):
    /// every guest's virtual count becomes the physical count minus
    /// `offset`. Call it before any vCPU is loaded: the library applies it
    /// at `load`, while the guests' reference changes at once, so a vCPU
    /// already loaded would be reported as a `Migration` violation.
    pub fn set_counter_offset(&mut self, offset: Ticks) {
        self.vm.set_counter_offset(offset);
        for v in &mut self.vcpus {
            v.guest.set_counter_offset(offset);
        }
    }

    /// The machine.
    #[must_use]
    pub const fn machine(&self) -> &Machine {
        &self.machine
    }

    /// The VM's timer settings.
    #[must_use]
    pub const fn vm(&self) -> &VmTimer {
        &self.vm
    }

    /// The number of vCPUs.
    #[must_use]
    pub fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }

    /// The number of CPUs.
    #[must_use]
    pub fn cpu_count(&self) -> usize {
        self.on_cpu.len()
    }

    /// vCPU `vcpu`.
    #[must_use]
    pub fn vcpu(&self, vcpu: usize) -> &Vcpu {
        &self.vcpus[vcpu]
    }

    /// The vCPU loaded on `cpu`.
    #[must_use]
    pub fn loaded_on(&self, cpu: usize) -> Option<usize> {
        self.on_cpu.get(cpu).copied().flatten()
    }

    /// Whether the guest runs on `cpu`.
    #[must_use]
    pub fn in_guest(&self, cpu: usize) -> bool {
        self.in_guest.get(cpu).copied().unwrap_or(false)
    }

    /// Totals so far.
    #[must_use]
    pub const fn stats(&self) -> Stats {
        self.stats
    }

    /// Applies `step` (or skips it if it is illegal in the current state:
    /// returns `Ok(false)`), then checks every invariant.
    ///
    /// # Errors
    ///
    /// The first invariant found broken.
    pub fn step(&mut self, step: Step) -> Result<bool, Violation> {
        let applied = self.apply(step)?;
        if applied {
            self.stats.steps = self.stats.steps.saturating_add(1);
        } else {
            self.stats.skipped = self.stats.skipped.saturating_add(1);
        }
        self.check()?;
        Ok(applied)
    }

    fn valid_cpu(&self, cpu: usize) -> bool {
        cpu < self.on_cpu.len()
    }

    fn apply(&mut self, step: Step) -> Result<bool, Violation> {
        match step {
            Step::Load { vcpu, cpu } => {
                if vcpu >= self.vcpus.len() || !self.valid_cpu(cpu) {
                    return Ok(false);
                }
                if self.vcpus[vcpu].cpu.is_some() || self.on_cpu[cpu].is_some() {
                    return Ok(false);
                }
                self.load(vcpu, cpu)?;
                Ok(true)
            }
            Step::Put { cpu } => {
                if !self.valid_cpu(cpu) || self.on_cpu[cpu].is_none() {
                    return Ok(false);
                }
                self.take_signalled(cpu)?;
                self.run_handler(cpu)?;
                self.put(cpu)?;
                Ok(true)
            }
            Step::Enter { cpu } => match self.runnable(cpu) {
                Some(vcpu) if !self.in_guest[cpu] => {
                    // The run loop handles the interrupt it took before it
                    // enters the guest again.
                    self.run_handler(cpu)?;
                    if self.runnable(cpu) == Some(vcpu) {
                        self.enter(cpu, vcpu)?;
                    }
                    Ok(true)
                }
                _ => Ok(false),
            },
            Step::Exit { cpu } => {
                if !self.valid_cpu(cpu) || !self.in_guest[cpu] {
                    return Ok(false);
                }
                if self.signalled[cpu] {
                    // The signalled interrupt is the exit.
                    self.take_signalled(cpu)?;
                } else {
                    self.exit(cpu)?;
                }
                Ok(true)
            }
            Step::Guest { cpu, op } => {
                if !self.valid_cpu(cpu) || !self.in_guest[cpu] {
                    return Ok(false);
                }
                let Some(vcpu) = self.on_cpu[cpu] else {
                    return Ok(false);
                };
                let now = self.machine.now();
                if let Some((reg, value)) = self.vcpus[vcpu].guest.trapped_write(op, now) {
                    if self.ptimer_direct(vcpu) {
                        self.direct_ptimer_write(cpu, vcpu, reg, value);
                    } else {
                        self.trap(cpu, vcpu, reg, value)?;
                    }
                    return Ok(true);
                }
                let vintid = self.vm.virtual_irq();
                let pintid = self.vm.physical_irq();
                let before = self.machine.virtual_irq(vcpu, vintid).deactivations;
                let p_before = self.machine.virtual_irq(vcpu, pintid).deactivations;
                let p_direct = self.ptimer_direct(vcpu);
                let v = &mut self.vcpus[vcpu];
                v.guest.perform(op, &mut self.machine, vcpu, cpu);
                let pirq = self.machine.virtual_irq(vcpu, pintid);
                if p_direct && pirq.deactivations > p_before {
                    // The direct physical timer's interrupt, as the virtual
                    // timer's below.
                    let asserted = v.guest.ptimer().asserted(self.machine.now());
                    if asserted {
                        v.p_refires = v.p_refires.saturating_add(1);
                    }
                    if self.vm.forwarding() == Forwarding::Masking
                        && !asserted
                        && pirq.raises > v.ptimer_raises_seen
                    {
                        v.ptimer_raises_seen = pirq.raises;
                        self.stats.stale_repends = self.stats.stale_repends.saturating_add(1);
                    }
                }
                let virq = self.machine.virtual_irq(vcpu, vintid);
                let asserted = v.guest.timer().asserted(self.machine.now());
                if virq.deactivations > before {
                    // A deactivation with the timer still asserted lets the
                    // level-triggered PPI fire again: one more host
                    // interrupt is no storm.
                    if asserted {
                        v.refires = v.refires.saturating_add(1);
                    }
                    // With a VMM-owned interrupt controller the line the
                    // VMM holds is the one the library reported at the last
                    // exit: a guest that cleared the condition in its
                    // handler and deactivates gets the interrupt pending
                    // again until the next exit lowers the line (KVM's
                    // userspace irqchip does the same; the guest's handler
                    // finds ISTATUS clear). Not an early raise by the
                    // library.
                    if self.vm.forwarding() == Forwarding::Masking
                        && !asserted
                        && virq.raises > v.raises_seen
                    {
                        v.raises_seen = virq.raises;
                        self.stats.stale_repends = self.stats.stale_repends.saturating_add(1);
                    }
                }
                Ok(true)
            }
            Step::Wfi { cpu } => {
                if !self.valid_cpu(cpu) || !self.in_guest[cpu] {
                    return Ok(false);
                }
                if self.signalled[cpu] {
                    // The signalled interrupt exits the guest before it
                    // executes the WFI.
                    self.take_signalled(cpu)?;
                    return Ok(true);
                }
                self.wfi(cpu)?;
                Ok(true)
            }
            Step::HostIrq { cpu } => {
                if !self.valid_cpu(cpu) {
                    return Ok(false);
                }
                if self.signalled[cpu] {
                    self.take_signalled(cpu)?;
                    return Ok(true);
                }
                if self.handler_due[cpu].is_some() {
                    self.run_handler(cpu)?;
                    return Ok(true);
                }
                if !self.machine.timer_irq_signalled(cpu) && !self.machine.ptimer_irq_signalled(cpu)
                {
                    return Ok(false);
                }
                self.host_irq(cpu, false)?;
                Ok(true)
            }
            Step::Signal { cpu } => {
                if !self.valid_cpu(cpu)
                    || !self.in_guest[cpu]
                    || self.signalled[cpu]
                    || !self.machine.timer_irq_signalled(cpu)
                {
                    return Ok(false);
                }
                if let Some(vcpu) = self.on_cpu[cpu] {
                    self.check_no_storm(cpu, vcpu)?;
                }
                self.signalled[cpu] = true;
                Ok(true)
            }
            Step::HostAck { cpu } => {
                if !self.valid_cpu(cpu) || self.handler_due[cpu].is_some() {
                    return Ok(false);
                }
                if self.signalled[cpu] {
                    self.signalled[cpu] = false;
                    self.take_exception(cpu, true)?;
                    return Ok(true);
                }
                if !self.machine.timer_irq_signalled(cpu) && !self.machine.ptimer_irq_signalled(cpu)
                {
                    return Ok(false);
                }
                self.take_exception(cpu, false)?;
                Ok(true)
            }
            Step::HostHandle { cpu } => {
                if !self.valid_cpu(cpu) {
                    return Ok(false);
                }
                if self.signalled[cpu] {
                    self.take_signalled(cpu)?;
                    return Ok(true);
                }
                if self.handler_due[cpu].is_none() {
                    return Ok(false);
                }
                self.run_handler(cpu)?;
                Ok(true)
            }
            Step::Advance(ticks) => {
                self.machine.advance(ticks);
                self.fire_soft_timers()?;
                Ok(true)
            }
            Step::Kick { vcpu } => {
                if vcpu >= self.vcpus.len() || !self.vcpus[vcpu].blocked {
                    return Ok(false);
                }
                self.wake(vcpu)?;
                Ok(true)
            }
            Step::SaveRestore { vcpu, order, fresh } => {
                if vcpu >= self.vcpus.len() {
                    return Ok(false);
                }
                self.save_restore(vcpu, order, fresh)?;
                Ok(true)
            }
            Step::SetOffset { delta } => {
                let old = self.vm.counter_offset().unwrap_or(Ticks::ZERO);
                let count = self.machine.now().wrapping_sub(old).get();
                // The counts move by -delta; not across the wrap.
                let moved = if delta >= 0 {
                    count.checked_sub(u64::from(delta.unsigned_abs()))
                } else {
                    count.checked_add(u64::from(delta.unsigned_abs()))
                };
                if moved.is_none() {
                    return Ok(false);
                }
                let new = old.wrapping_add(Ticks::new(i64::from(delta).cast_unsigned()));
                self.change_offset(new)?;
                Ok(true)
            }
            Step::Reset { vcpu } => {
                if vcpu >= self.vcpus.len() {
                    return Ok(false);
                }
                self.reset(vcpu)?;
                Ok(true)
            }
            Step::ChipFault { after, at } => {
                let fault = Some(u32::from(after));
                match at {
                    FaultSite::Handler => self.pending_fault = fault,
                    FaultSite::RunLoop => self.pending_run_loop_fault = fault,
                    FaultSite::Load => self.pending_load_fault = fault,
                }
                Ok(true)
            }
        }
    }

    /// The run loop's business on `cpu` before a VMM call on its vCPU:
    /// the exception in flight taken, the guest exited, the handler run.
    fn quiesce(&mut self, cpu: usize) -> Result<(), Violation> {
        self.take_signalled(cpu)?;
        if self.in_guest[cpu] {
            self.exit(cpu)?;
        }
        self.run_handler(cpu)
    }

    /// [`Step::SetOffset`] to `offset`.
    fn change_offset(&mut self, offset: Ticks) -> Result<(), Violation> {
        // The VMM's call comes with every loaded vCPU out of the guest and
        // the run loops' business done, all with the old offset.
        for cpu in 0..self.on_cpu.len() {
            if self.on_cpu[cpu].is_some() {
                self.quiesce(cpu)?;
            }
        }
        self.check()?;
        self.vm.set_counter_offset(offset);
        for v in &mut self.vcpus {
            v.guest.set_counter_offset(offset);
        }
        self.stats.offset_changes = self.stats.offset_changes.saturating_add(1);
        for vcpu in 0..self.vcpus.len() {
            if let Some(cpu) = self.vcpus[vcpu].cpu {
                let v = &mut self.vcpus[vcpu];
                let was_direct = v.timer.is_direct(TimerId::Physical);
                let mut p = self.machine.ports(cpu, vcpu);
                let ctl = v
                    .timer
                    .get_reg(&self.vm, &p.timer, TimerId::Physical, TimerReg::Ctl);
                v.timer
                    .set_reg(
                        &self.vm,
                        &mut p.timer,
                        &mut p.gic,
                        TimerId::Physical,
                        TimerReg::Ctl,
                        ctl,
                    )
                    .map_err(|e| library("set_reg taking the offset", e))?;
                if was_direct && !v.timer.is_direct(TimerId::Physical) {
                    self.stats.ptimer_demotions = self.stats.ptimer_demotions.saturating_add(1);
                }
                self.sync_user_levels(vcpu);
                self.stats.offsets_taken_loaded = self.stats.offsets_taken_loaded.saturating_add(1);
            }
            let v = &self.vcpus[vcpu];
            if v.blocked && !v.wake_pending {
                let cpu = v.cpu.unwrap_or(0);
                let wakeup = if v.timer.is_blocked_in_place() {
                    self.block_in_place_checked(vcpu, cpu)?
                } else {
                    self.block_checked(vcpu, cpu)?
                };
                self.stats.sleeps_rearmed = self.stats.sleeps_rearmed.saturating_add(1);
                if wakeup == Wakeup::Now {
                    self.wake(vcpu)?;
                }
            }
        }
        for vcpu in 0..self.vcpus.len() {
            self.check_line_follows(vcpu, "the counter offset change")?;
        }
        Ok(())
    }

    /// Invariant 1 after a VMM action on `vcpu` (an offset change, a
    /// reset) that it did not see coming, made with the vCPU out of the
    /// guest (its exit business done): if it is loaded, its virtual timer
    /// line is high only while its timer condition holds. (A condition
    /// the guest clears itself leaves the line high until the next exit,
    /// as on hardware; the exit has been made here.)
    fn check_line_follows(&self, vcpu: usize, what: &str) -> Result<(), Violation> {
        let now = self.machine.now();
        {
            let v = &self.vcpus[vcpu];
            let Some(cpu) = v.cpu else { return Ok(()) };
            if v.unrepaired {
                // A lowering that failed is retried by the next exit or
                // entry.
                return Ok(());
            }
            let virq = self.machine.virtual_irq(vcpu, self.vm.virtual_irq());
            let truth = v.guest.timer();
            if virq.line && !truth.asserted(now) {
                return Err(violation(
                    Invariant::EarlyInterrupt,
                    format!(
                        "after {what}, vCPU {vcpu} on CPU {cpu} has its virtual line high at \
                         {now} but its timer is {truth:?} (virtual interrupt {:?})",
                        virq.state
                    ),
                ));
            }
            let pirq = self.machine.virtual_irq(vcpu, self.vm.physical_irq());
            let ptruth = v.guest.ptimer();
            if v.timer.is_direct(TimerId::Physical) && pirq.line && !ptruth.asserted(now) {
                return Err(violation(
                    Invariant::EarlyInterrupt,
                    format!(
                        "after {what}, vCPU {vcpu} on CPU {cpu} has its direct physical timer \
                         line high at {now} but its timer is {ptruth:?}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// [`Step::Reset`].
    fn reset(&mut self, vcpu: usize) -> Result<(), Violation> {
        let loaded_on = self.vcpus[vcpu].cpu;
        if let Some(cpu) = loaded_on {
            self.quiesce(cpu)?;
            self.check()?;
        }
        let in_handler = self.vcpus[vcpu].guest.handling().is_some();
        // An unloaded vCPU is reset through any CPU's view; that CPU's
        // timer must not be touched.
        let cpu = loaded_on.unwrap_or(0);
        let before = loaded_on.is_none().then(|| timer_state(&self.machine, cpu));
        let v = &mut self.vcpus[vcpu];
        let mut p = self.machine.ports(cpu, vcpu);
        v.timer
            .reset(&mut p.timer, &mut p.gic, &mut p.soft)
            .map_err(|e| library("reset", e))?;
        v.guest.reset();
        self.machine.reset_virtual_irq(vcpu, self.vm.virtual_irq());
        self.machine.reset_virtual_irq(vcpu, self.vm.physical_irq());
        self.sync_user_levels(vcpu);
        if let Some(before) = before
            && before != timer_state(&self.machine, cpu)
        {
            return Err(violation(
                Invariant::OneHome,
                format!("reset of unloaded vCPU {vcpu} wrote CPU {cpu}'s timer"),
            ));
        }
        self.stats.resets = self.stats.resets.saturating_add(1);
        if in_handler {
            self.stats.resets_in_handler = self.stats.resets_in_handler.saturating_add(1);
        }
        self.check_line_follows(vcpu, "the reset")
    }

    /// The guest's write of `value` to its direct physical timer's register
    /// `reg`: on the CPU's EL1 physical timer, no exit.
    fn direct_ptimer_write(&mut self, cpu: usize, vcpu: usize, reg: TimerSysReg, value: u64) {
        match reg {
            TimerSysReg::PhysicalCval => {
                self.machine.guest_write_ptimer_cval(cpu, Ticks::new(value))
            }
            TimerSysReg::PhysicalTval => {
                #[allow(clippy::cast_possible_truncation)] // TVAL is the low 32 bits
                let tval = (value as u32).cast_signed();
                self.machine.guest_write_ptimer_tval(cpu, tval);
            }
            TimerSysReg::PhysicalCtl => self.machine.guest_write_ptimer_ctl(cpu, value),
            _ => return,
        }
        self.vcpus[vcpu]
            .guest
            .wrote_ptimer(reg, value, self.machine.now());
        self.stats.ptimer_direct_writes = self.stats.ptimer_direct_writes.saturating_add(1);
    }

    /// The guest's write of `value` to the physical timer register `reg`
    /// traps: an exit, `emulate::access`, and the entry back into the
    /// guest. A signalled host interrupt is taken instead, before the
    /// instruction (the guest runs it again later, or not).
    fn trap(
        &mut self,
        cpu: usize,
        vcpu: usize,
        reg: TimerSysReg,
        value: u64,
    ) -> Result<(), Violation> {
        if self.signalled[cpu] {
            return self.take_signalled(cpu);
        }
        self.exit(cpu)?;
        let armed = self.arm_fault(FaultSite::RunLoop);
        let v = &mut self.vcpus[vcpu];
        let mut p = self.machine.ports(cpu, vcpu);
        let result = emulate::access(
            &mut v.timer,
            &self.vm,
            &mut p.timer,
            &mut p.gic,
            reg,
            emulate::Access::Write(value),
        );
        if self
            .run_loop_result(armed, vcpu, "emulate::access", result)?
            .is_none()
        {
            // The value is stored regardless (`set_reg`); the line is
            // brought up to date by the next entry.
            self.stats.trap_chip_errors = self.stats.trap_chip_errors.saturating_add(1);
        }
        let v = &mut self.vcpus[vcpu];
        v.guest.wrote_ptimer(reg, value, self.machine.now());
        self.sync_user_levels(vcpu);
        self.stats.traps = self.stats.traps.saturating_add(1);
        self.enter(cpu, vcpu)
    }

    /// [`Step::SaveRestore`].
    fn save_restore(&mut self, vcpu: usize, order: u8, fresh: bool) -> Result<(), Violation> {
        let loaded_on = self.vcpus[vcpu].cpu;
        if let Some(cpu) = loaded_on {
            // The VMM's register calls come while the vCPU is out of the
            // guest, with the run loop's business done.
            self.take_signalled(cpu)?;
            if self.in_guest[cpu] {
                self.exit(cpu)?;
            }
            self.run_handler(cpu)?;
        }
        // An unloaded vCPU's registers are reached through any CPU's
        // counter; its timer registers must not be touched.
        let cpu = loaded_on.unwrap_or(0);
        let regs = [TimerId::Virtual, TimerId::Physical]
            .into_iter()
            .flat_map(|t| TimerReg::MIGRATION.map(|r| (t, r)));
        let v = &mut self.vcpus[vcpu];
        let p = self.machine.ports(cpu, vcpu);
        let saved: Vec<_> = regs
            .map(|(t, r)| (t, r, v.timer.get_reg(&self.vm, &p.timer, t, r)))
            .collect();
        // No line of either timer high and nothing in flight: a new
        // `VcpuTimer` starts with both lines low, as the vGIC of the new
        // host does.
        let idle = {
            let quiet = |intid| {
                let irq = self.machine.virtual_irq(vcpu, intid);
                !irq.line && irq.state == VirtualState::Inactive
            };
            let soft = self.machine.soft_timers(vcpu);
            quiet(self.vm.virtual_irq())
                && quiet(self.vm.physical_irq())
                && soft.background.is_none()
                && soft.physical.is_none()
        };
        let v = &mut self.vcpus[vcpu];
        if fresh && loaded_on.is_none() && !v.blocked && idle {
            v.timer = VcpuTimer::new();
            self.stats.fresh_restores = self.stats.fresh_restores.saturating_add(1);
        }
        if loaded_on.is_some() {
            self.stats.loaded_restores = self.stats.loaded_restores.saturating_add(1);
        }
        let before = loaded_on.is_none().then(|| timer_state(&self.machine, cpu));
        let mut p = self.machine.ports(cpu, vcpu);
        let mut writes = saved.clone();
        // Six writes: rotate by `order`, and reverse for odd `order / 6`.
        let n = writes.len().max(1);
        writes.rotate_left(usize::from(order) % n);
        if (order / 6) % 2 == 1 {
            writes.reverse();
        }
        for &(t, r, value) in &writes {
            v.timer
                .set_reg(&self.vm, &mut p.timer, &mut p.gic, t, r, value)
                .map_err(|e| library("set_reg", e))?;
        }
        self.sync_user_levels(vcpu);
        let v = &mut self.vcpus[vcpu];
        let p = self.machine.ports(cpu, vcpu);
        for &(t, r, value) in &saved {
            let now = v.timer.get_reg(&self.vm, &p.timer, t, r);
            if now != value {
                return Err(violation(
                    Invariant::Migration,
                    format!(
                        "vCPU {vcpu}: {t:?} {r:?} read {value:#x} before a save/restore round \
                         trip and {now:#x} after"
                    ),
                ));
            }
        }
        if let Some(before) = before
            && before != timer_state(&self.machine, cpu)
        {
            return Err(violation(
                Invariant::OneHome,
                format!("registers of unloaded vCPU {vcpu} written to CPU {cpu}'s timer"),
            ));
        }
        Ok(())
    }

    /// The vCPU loaded on `cpu`, if it is not sleeping.
    fn runnable(&self, cpu: usize) -> Option<usize> {
        let vcpu = self.loaded_on(cpu)?;
        (!self.vcpus[vcpu].blocked).then_some(vcpu)
    }

    fn load(&mut self, vcpu: usize, cpu: usize) -> Result<(), Violation> {
        let before = self.machine.virtual_irq(vcpu, self.vm.virtual_irq());
        let armed = self.arm_fault(FaultSite::Load);
        let mut p = self.machine.ports(cpu, vcpu);
        let result = self.vcpus[vcpu]
            .timer
            .load(&self.vm, &mut p.timer, &mut p.gic);
        if self.run_loop_result(armed, vcpu, "load", result)?.is_none() {
            // The vCPU stays unloaded (as `load` documents); a later load
            // tries again.
            self.stats.load_chip_errors = self.stats.load_chip_errors.saturating_add(1);
            return Ok(());
        }
        let v = &mut self.vcpus[vcpu];
        v.cpu = Some(cpu);
        if v.timer.is_direct(TimerId::Physical) {
            self.stats.ptimer_direct_loads = self.stats.ptimer_direct_loads.saturating_add(1);
        } else {
            self.stats.ptimer_emulated_loads = self.stats.ptimer_emulated_loads.saturating_add(1);
        }
        self.sync_user_levels(vcpu);
        let v = &mut self.vcpus[vcpu];
        self.on_cpu[cpu] = Some(vcpu);
        if self.last_cpu[vcpu].is_some_and(|last| last != cpu) {
            self.stats.migrations = self.stats.migrations.saturating_add(1);
        }
        self.last_cpu[vcpu] = Some(cpu);
        let wake = v.blocked && v.wake_pending;
        if self.raised_since(vcpu, before) {
            self.stats.load_raised = self.stats.load_raised.saturating_add(1);
        }
        if wake {
            self.unblock(vcpu, cpu)?;
        }
        Ok(())
    }

    fn put(&mut self, cpu: usize) -> Result<(), Violation> {
        if self.in_guest[cpu] {
            self.exit(cpu)?;
        }
        let Some(vcpu) = self.on_cpu[cpu] else {
            return Ok(());
        };
        let v = &mut self.vcpus[vcpu];
        let saved = v.timer.vtimer().residency() == Residency::Memory;
        let p_saved = v.timer.ptimer().residency() == Residency::Memory;
        if v.timer.is_blocked_in_place() {
            self.stats.put_in_place = self.stats.put_in_place.saturating_add(1);
        }
        let before = self.machine.counters();
        let mut p = self.machine.ports(cpu, vcpu);
        v.timer
            .put(&mut p.timer, &mut p.soft)
            .map_err(|e| library::<core::convert::Infallible>("put", e.into()))?;
        v.cpu = None;
        self.on_cpu[cpu] = None;
        // Invariant 3: a timer `block` saved is not saved again.
        let made = self.machine.counters().since(&before);
        let touched = made.ctl_reads + made.ctl_writes + made.cval_reads + made.cval_writes;
        if saved && touched != 0 {
            return Err(violation(
                Invariant::OneHome,
                format!("put of vCPU {vcpu}, whose timer was saved, touched it again: {made}"),
            ));
        }
        let p_touched = made.pctl_reads + made.pctl_writes + made.pcval_reads + made.pcval_writes;
        if p_saved && p_touched != 0 {
            return Err(violation(
                Invariant::OneHome,
                format!(
                    "put of vCPU {vcpu}, whose physical timer was saved (or emulated), touched \
                     the hardware one: {made}"
                ),
            ));
        }
        if !self.machine.cpu(cpu).timer.el1_physical_access {
            return Err(violation(
                Invariant::OneHome,
                format!("put of vCPU {vcpu} left CPU {cpu}'s EL1 physical timer access trapped"),
            ));
        }
        Ok(())
    }

    fn enter(&mut self, cpu: usize, vcpu: usize) -> Result<(), Violation> {
        // EOImode = 1: the run loop drops the priority of the interrupt it
        // took before it returns to the guest, or the CPU's running
        // priority keeps every other interrupt of that priority away.
        let ppi = self.machine.timer_ppi();
        if self.machine.cpu(cpu).ppis.get(ppi).priority_held {
            return Err(violation(
                Invariant::LostInterrupt,
                format!("entering the guest on CPU {cpu} with the priority of PPI {ppi:?} held"),
            ));
        }
        let armed = self.arm_fault(FaultSite::RunLoop);
        let before = self.machine.counters();
        let v = &mut self.vcpus[vcpu];
        let mut p = self.machine.ports(cpu, vcpu);
        let result = v.timer.before_entry(&mut p.timer, &mut p.gic, &mut p.soft);
        if self
            .run_loop_result(armed, vcpu, "before_entry", result)?
            .is_none()
        {
            // Not entered: the next entry calls `before_entry` again.
            self.stats.entry_chip_errors = self.stats.entry_chip_errors.saturating_add(1);
            return Ok(());
        }
        self.vcpus[vcpu].unrepaired = false;
        let made = self.machine.counters().since(&before);
        self.sync_user_levels(vcpu);
        if made.vtimer_register_accesses() != 0 || made.ptimer_register_accesses() != 0 {
            return Err(violation(
                Invariant::QuietHotPath,
                format!("before_entry touched timer registers: {made}"),
            ));
        }
        if self.resample {
            self.machine
                .resample_virtual_level(vcpu, self.vm.virtual_irq());
        }
        self.in_guest[cpu] = true;
        Ok(())
    }

    fn exit(&mut self, cpu: usize) -> Result<(), Violation> {
        self.exit_with(cpu, false)
    }

    /// An exit taken by an IRQ, with `after_irq_exit` in place of
    /// `after_exit` ([`AckPoint::Forwarded`]).
    fn irq_exit(&mut self, cpu: usize) -> Result<(), Violation> {
        self.exit_with(cpu, true)
    }

    /// Arms the fault [`Step::ChipFault`] left for `site`, if any, for the
    /// library call; returns the site, the fault and the faults fired so
    /// far.
    fn arm_fault(&mut self, site: FaultSite) -> (FaultSite, Option<u32>, u64) {
        let fault = self.pending_at(site).take();
        self.machine.inject_chip_fault(fault);
        (site, fault, self.machine.chip_faults_fired())
    }

    /// The pending fault of `site`.
    const fn pending_at(&mut self, site: FaultSite) -> &mut Option<u32> {
        match site {
            FaultSite::Handler => &mut self.pending_fault,
            FaultSite::RunLoop => &mut self.pending_run_loop_fault,
            FaultSite::Load => &mut self.pending_load_fault,
        }
    }

    /// What a run loop's library call (`call`, for `vcpu`, with the fault
    /// [`arm_fault`](Self::arm_fault) armed) returned: its
    /// value, or `None` for the injected error, which the run loop logs
    /// and carries on from (the library left what it could not write to
    /// a later call). A fault the call did not reach stays armed.
    fn run_loop_result<T>(
        &mut self,
        (site, fault, fired): (FaultSite, Option<u32>, u64),
        vcpu: usize,
        call: &str,
        result: Result<T, Error<SimChipError>>,
    ) -> Result<Option<T>, Violation> {
        self.machine.inject_chip_fault(None);
        let injected = self.machine.chip_faults_fired() > fired;
        if !injected {
            *self.pending_at(site) = fault;
        }
        match result {
            Ok(value) => Ok(Some(value)),
            Err(Error::IrqChip(_)) if injected => {
                self.stats.chip_errors = self.stats.chip_errors.saturating_add(1);
                self.vcpus[vcpu].unrepaired = true;
                self.sync_user_levels(vcpu);
                Ok(None)
            }
            Err(e) => Err(library(call, e)),
        }
    }

    /// [`run_loop_result`](Self::run_loop_result) for an exit's call,
    /// counted in [`Stats::exit_chip_errors`].
    fn exit_result(
        &mut self,
        armed: (FaultSite, Option<u32>, u64),
        vcpu: usize,
        call: &str,
        result: Result<Forwarded, Error<SimChipError>>,
    ) -> Result<Option<Forwarded>, Violation> {
        let value = self.run_loop_result(armed, vcpu, call, result)?;
        if value.is_none() {
            self.stats.exit_chip_errors = self.stats.exit_chip_errors.saturating_add(1);
        }
        Ok(value)
    }

    /// The guest on `cpu` exits; `irq`: through `after_irq_exit`.
    fn exit_with(&mut self, cpu: usize, irq: bool) -> Result<(), Violation> {
        self.in_guest[cpu] = false;
        let Some(vcpu) = self.on_cpu[cpu] else {
            return Ok(());
        };
        let armed = self.arm_fault(FaultSite::RunLoop);
        let before = self.machine.counters();
        let v = &mut self.vcpus[vcpu];
        // The model's line, not the library's own record of it: a library
        // that lost track of the line it set must not earn the allowance.
        let high = self.machine.virtual_irq(vcpu, self.vm.virtual_irq()).line;
        // With Masking the model's line is the VMM's copy, set from the
        // library's levels: the same thing.
        let p_high = v.timer.is_direct(TimerId::Physical)
            && self.machine.virtual_irq(vcpu, self.vm.physical_irq()).line;
        let mut p = self.machine.ports(cpu, vcpu);
        let result = if irq {
            v.timer
                .after_irq_exit(&mut p.timer, &mut p.gic, &mut p.soft)
        } else {
            v.timer
                .after_exit(&mut p.timer, &mut p.gic, &mut p.soft)
                .map(|()| Forwarded::default())
        };
        let call = if irq { "after_irq_exit" } else { "after_exit" };
        let Some(forwarded) = self.exit_result(armed, vcpu, call, result)? else {
            return Ok(());
        };
        self.vcpus[vcpu].unrepaired = false;
        let made = self.machine.counters().since(&before);
        self.sync_user_levels(vcpu);
        // An IRQ exit reads CTL whatever the line (one read per direct
        // timer), and writes no timer register.
        check_quiet_exit(high || irq, &made)?;
        check_quiet_ptimer_exit(p_high || irq, &made)?;
        for timer in [TimerId::Virtual, TimerId::Physical] {
            if forwarded.contains(timer) {
                self.stats.forwarded = self.stats.forwarded.saturating_add(1);
            }
        }
        if high && !self.machine.virtual_irq(vcpu, self.vm.virtual_irq()).line {
            self.stats.exit_lowered = self.stats.exit_lowered.saturating_add(1);
            if made.host_active_writes > 0 {
                self.stats.exit_deactivated = self.stats.exit_deactivated.saturating_add(1);
            }
        }
        self.check_line_after_exit(cpu, vcpu)?;
        if self.ptimer_direct(vcpu) {
            self.check_direct_ptimer_after_exit(cpu, vcpu)?;
        }
        Ok(())
    }

    /// [`check_line_after_exit`](Self::check_line_after_exit) for a direct
    /// physical timer and its PPI.
    fn check_direct_ptimer_after_exit(&self, cpu: usize, vcpu: usize) -> Result<(), Violation> {
        let now = self.machine.now();
        let pirq = self.machine.virtual_irq(vcpu, self.vm.physical_irq());
        let truth = self.vcpus[vcpu].guest.ptimer();
        let asserted = truth.asserted(now);
        let ppi_id = self.machine.ptimer_ppi();
        let ppi = self.machine.cpu(cpu).ppis.get(ppi_id);
        if pirq.line && !asserted {
            return Err(violation(
                Invariant::EarlyInterrupt,
                format!(
                    "after_exit left vCPU {vcpu}'s direct physical timer line high on CPU {cpu} \
                     at {now} but the guest's timer is {truth:?}"
                ),
            ));
        }
        let held = ppi.active && (pirq.state.is_active() || self.handler_due[cpu] == Some(ppi_id));
        if asserted && !pirq.line && !self.machine.ptimer_irq_signalled(cpu) && !held {
            return Err(violation(
                Invariant::LostInterrupt,
                format!(
                    "after_exit left vCPU {vcpu}'s direct physical timer line low on CPU {cpu} \
                     at {now} with the timer asserted ({truth:?}) and its PPI neither \
                     signalled nor held ({ppi:?}, virtual {:?})",
                    pirq.state
                ),
            ));
        }
        Ok(())
    }

    /// Invariant 1 at the end of an exit, after `after_exit`: the virtual
    /// line is high only while the guest's timer condition holds (the
    /// library must have lowered it otherwise), and a condition that holds
    /// with the line low is on its way: the PPI is signalled to the host
    /// or it is active because the guest still handles the virtual
    /// interrupt (its deactivation brings the PPI back).
    fn check_line_after_exit(&self, cpu: usize, vcpu: usize) -> Result<(), Violation> {
        let now = self.machine.now();
        let virq = self.machine.virtual_irq(vcpu, self.vm.virtual_irq());
        let truth = self.vcpus[vcpu].guest.timer();
        let asserted = truth.asserted(now);
        let ppi = self.machine.cpu(cpu).ppis.get(self.machine.timer_ppi());
        if virq.line && !asserted {
            return Err(violation(
                Invariant::EarlyInterrupt,
                format!(
                    "after_exit left vCPU {vcpu}'s virtual line high on CPU {cpu} at {now} \
                     but the guest's timer is {truth:?} (virtual interrupt {:?})",
                    virq.state
                ),
            ));
        }
        // Active only counts while the guest holds the virtual interrupt or
        // the host has just acknowledged the PPI: otherwise nothing will
        // deactivate it.
        let held = ppi.active && (virq.state.is_active() || self.handler_due[cpu].is_some());
        if asserted && !virq.line && !self.machine.timer_irq_signalled(cpu) && !held {
            return Err(violation(
                Invariant::LostInterrupt,
                format!(
                    "after_exit left vCPU {vcpu}'s virtual line low on CPU {cpu} at {now} \
                     with its timer asserted ({truth:?}) and the PPI neither signalled nor \
                     held active by the guest or an acknowledge ({ppi:?}, virtual {:?})",
                    virq.state
                ),
            ));
        }
        Ok(())
    }

    fn wfi(&mut self, cpu: usize) -> Result<(), Violation> {
        self.exit(cpu)?;
        let Some(vcpu) = self.on_cpu[cpu] else {
            return Ok(());
        };
        let wakeup = if self.in_place {
            self.block_in_place_checked(vcpu, cpu)?
        } else {
            self.block_checked(vcpu, cpu)?
        };
        self.vcpus[vcpu].blocked = true;
        if wakeup == Wakeup::Now {
            self.stats.immediate_wakeups = self.stats.immediate_wakeups.saturating_add(1);
            self.unblock(vcpu, cpu)?;
        }
        Ok(())
    }

    /// `block` of `vcpu` through `cpu`'s view, with invariant 6 checked on
    /// what it returned and armed.
    fn block_checked(&mut self, vcpu: usize, cpu: usize) -> Result<Wakeup, Violation> {
        self.block_checked_as(vcpu, cpu, false)
    }

    /// `block_in_place` of `vcpu` through `cpu`'s view: what it returns
    /// is checked as `block`'s is, the background timer only against the
    /// timers it left in memory (invariant 6 checks the sleep as a whole:
    /// [`Hypervisor::check`]).
    fn block_in_place_checked(&mut self, vcpu: usize, cpu: usize) -> Result<Wakeup, Violation> {
        self.block_checked_as(vcpu, cpu, true)
    }

    /// `block` (or, `in_place`, `block_in_place`) of `vcpu` through `cpu`'s
    /// view, with what it returned and armed checked against the guest's
    /// timers: the earliest expiry, and the background timer at it (in
    /// place: at it or later, or none, the direct timers' PPIs waking the
    /// CPU).
    fn block_checked_as(
        &mut self,
        vcpu: usize,
        cpu: usize,
        in_place: bool,
    ) -> Result<Wakeup, Violation> {
        let now = self.machine.now();
        let v = &mut self.vcpus[vcpu];
        let truth = (v.guest.timer(), v.guest.ptimer());
        let expiry = earliest_expiry(&v.guest, now);
        let mut p = self.machine.ports(cpu, vcpu);
        let wakeup = if in_place {
            v.timer
                .block_in_place(&self.vm, &mut p.timer, &mut p.gic, &mut p.soft)
        } else {
            v.timer.block(&self.vm, &mut p.timer, &mut p.soft)
        };
        let armed = self.machine.soft_timers(vcpu).background;
        let ok = match (wakeup, expiry) {
            (Wakeup::Now, Some(at)) => at == now && armed.is_none(),
            (Wakeup::At(t), Some(at)) if in_place => {
                t <= at && t > now && armed.is_none_or(|a| a >= t)
            }
            (Wakeup::At(t), Some(at)) => t <= at && t > now && armed == Some(t),
            (Wakeup::Never, None) => armed.is_none(),
            _ => false,
        };
        if !ok {
            let call = if in_place { "block_in_place" } else { "block" };
            return Err(violation(
                Invariant::SafeSleep,
                format!(
                    "{call} at {now} returned {wakeup:?}, background timer {armed:?}, \
                     but the guest's timers {truth:?} expire first at {expiry:?}"
                ),
            ));
        }
        if in_place && wakeup != Wakeup::Now && v.timer.is_blocked_in_place() {
            self.stats.slept_in_place = self.stats.slept_in_place.saturating_add(1);
        }
        Ok(wakeup)
    }

    fn unblock(&mut self, vcpu: usize, cpu: usize) -> Result<(), Violation> {
        let before = self.machine.virtual_irq(vcpu, self.vm.virtual_irq());
        let v = &mut self.vcpus[vcpu];
        // Saved, or left running by `block_in_place`: either way `unblock`
        // raises a timer that fired (the latter's PPI may not have reached
        // the host yet).
        let in_place = v.timer.is_blocked_in_place();
        let saved = in_place || v.timer.vtimer().residency() == Residency::Memory;
        let p_saved = v.timer.is_direct(TimerId::Physical)
            && (in_place || v.timer.ptimer().residency() == Residency::Memory);
        let armed = self.arm_fault(FaultSite::RunLoop);
        let mut p = self.machine.ports(cpu, vcpu);
        let result = self.vcpus[vcpu]
            .timer
            .unblock(&mut p.timer, &mut p.gic, &mut p.soft);
        let unblocked = self.run_loop_result(armed, vcpu, "unblock", result)?;
        let v = &mut self.vcpus[vcpu];
        v.blocked = false;
        v.wake_pending = false;
        if unblocked.is_none() {
            // The vCPU is awake all the same (`unblock` unblocks it
            // whatever fails); what the error left is for later calls.
            self.stats.wake_chip_errors = self.stats.wake_chip_errors.saturating_add(1);
            return Ok(());
        }
        self.sync_user_levels(vcpu);
        let v = &mut self.vcpus[vcpu];
        // Invariant 1, promptly: `unblock` of a loaded vCPU whose timer was
        // saved (or left running in place) raises the line of a timer that
        // expired during the sleep,
        // so the guest takes the interrupt on entry without waiting for
        // the host to take the PPI. (A timer `load` already restored is
        // left to the PPI.)
        let now = self.machine.now();
        let truth = v.guest.timer();
        let virq = self.machine.virtual_irq(vcpu, self.vm.virtual_irq());
        if raised_between(before, virq) {
            self.stats.unblock_raised = self.stats.unblock_raised.saturating_add(1);
        }
        if saved
            && truth.asserted(now)
            && !matches!(
                virq.state,
                VirtualState::Pending | VirtualState::Active | VirtualState::ActivePending
            )
        {
            return Err(violation(
                Invariant::LostInterrupt,
                format!(
                    "unblock of vCPU {vcpu} on CPU {cpu} at {now}: the guest's timer is asserted \
                     ({truth:?}) but its virtual interrupt is {:?} (line {})",
                    virq.state, virq.line
                ),
            ));
        }
        let ptruth = v.guest.ptimer();
        let pirq = self.machine.virtual_irq(vcpu, self.vm.physical_irq());
        if p_saved
            && ptruth.asserted(now)
            && !matches!(
                pirq.state,
                VirtualState::Pending | VirtualState::Active | VirtualState::ActivePending
            )
        {
            return Err(violation(
                Invariant::LostInterrupt,
                format!(
                    "unblock of vCPU {vcpu} on CPU {cpu} at {now}: its direct physical timer is \
                     asserted ({ptruth:?}) but its interrupt is {:?} (line {})",
                    pirq.state, pirq.line
                ),
            ));
        }
        Ok(())
    }

    fn wake(&mut self, vcpu: usize) -> Result<(), Violation> {
        let v = &mut self.vcpus[vcpu];
        if !v.blocked {
            return Ok(());
        }
        match v.cpu {
            Some(cpu) => self.unblock(vcpu, cpu),
            None => {
                v.wake_pending = true;
                Ok(())
            }
        }
    }

    /// Whether vCPU `vcpu`'s virtual timer line went up, or its interrupt
    /// was made pending, since the state `before`.
    fn raised_since(&self, vcpu: usize, before: VirtualIrq) -> bool {
        raised_between(
            before,
            self.machine.virtual_irq(vcpu, self.vm.virtual_irq()),
        )
    }

    /// The host takes the IRQ exception [`Step::Signal`] announced on
    /// `cpu`, if any, and handles it.
    fn take_signalled(&mut self, cpu: usize) -> Result<(), Violation> {
        if !self.signalled[cpu] {
            return Ok(());
        }
        self.signalled[cpu] = false;
        self.host_irq(cpu, true)
    }

    /// The host takes the vtimer PPI on `cpu` and handles it at once.
    fn host_irq(&mut self, cpu: usize, late: bool) -> Result<(), Violation> {
        self.take_exception(cpu, late)?;
        self.run_handler(cpu)
    }

    /// The IRQ exception on `cpu`: exit from the guest (if it runs), with
    /// the acknowledge and priority drop before or after `after_exit` as
    /// [`AckPoint`] says; the handler is left due. `late`: the PPI was
    /// signalled by an earlier [`Step::Signal`] and is acknowledged even if
    /// its line has dropped since; otherwise only if it is signalled at
    /// the acknowledge.
    fn take_exception(&mut self, cpu: usize, late: bool) -> Result<(), Violation> {
        let acknowledged = match self.ack_point {
            AckPoint::AtException => {
                let acknowledged = self.acknowledge(cpu, late)?;
                // The handler is due from the acknowledge on, `after_exit`
                // included.
                if self.on_cpu[cpu].is_some() {
                    self.handler_due[cpu] = acknowledged;
                }
                if self.in_guest[cpu] {
                    self.exit(cpu)?;
                }
                acknowledged
            }
            AckPoint::AfterExit => {
                if self.in_guest[cpu] {
                    self.exit(cpu)?;
                }
                self.acknowledge(cpu, late)?
            }
            AckPoint::Forwarded => {
                if self.in_guest[cpu] {
                    self.irq_exit(cpu)?;
                } else {
                    self.wake_in_place(cpu)?;
                }
                self.acknowledge(cpu, late)?
            }
        };
        let Some(ppi) = acknowledged else {
            return Ok(());
        };
        if self.on_cpu[cpu].is_none() {
            self.stats.orphan = self.stats.orphan.saturating_add(1);
            self.machine.host_deactivate(cpu, ppi);
            return Ok(());
        }
        self.handler_due[cpu] = Some(ppi);
        Ok(())
    }

    /// The CPU woke from its wait with an interrupt: if the vCPU loaded on
    /// it is blocked in place, `after_irq_exit` forwards a timer of its
    /// that fired before the host acknowledges anything (the example's
    /// idle loop), and the vCPU wakes if it did.
    fn wake_in_place(&mut self, cpu: usize) -> Result<(), Violation> {
        let Some(vcpu) = self.on_cpu[cpu] else {
            return Ok(());
        };
        let v = &mut self.vcpus[vcpu];
        if !v.timer.is_blocked_in_place() {
            return Ok(());
        }
        let armed = self.arm_fault(FaultSite::RunLoop);
        let mut p = self.machine.ports(cpu, vcpu);
        let result = self.vcpus[vcpu]
            .timer
            .after_irq_exit(&mut p.timer, &mut p.gic, &mut p.soft);
        let Some(forwarded) =
            self.exit_result(armed, vcpu, "after_irq_exit at the wake-up", result)?
        else {
            // What it forwarded before the error is not known: the vCPU is
            // woken (its WFI completes early at worst), and the next
            // `before_entry` writes again what the error left.
            self.stats.woken_in_place = self.stats.woken_in_place.saturating_add(1);
            return self.wake(vcpu);
        };
        self.sync_user_levels(vcpu);
        if forwarded.is_empty() {
            return Ok(());
        }
        for timer in [TimerId::Virtual, TimerId::Physical] {
            if forwarded.contains(timer) {
                self.stats.forwarded = self.stats.forwarded.saturating_add(1);
            }
        }
        self.stats.woken_in_place = self.stats.woken_in_place.saturating_add(1);
        self.wake(vcpu)
    }

    /// Acknowledge and priority drop of the vtimer PPI on `cpu`, with
    /// invariant 2 checked for a PPI taken while signalled (a late one was
    /// checked when it was signalled).
    fn acknowledge(&mut self, cpu: usize, late: bool) -> Result<Option<IntId>, Violation> {
        let acknowledged = if late {
            self.machine.host_acknowledge_late(cpu)
        } else {
            self.machine.host_acknowledge(cpu)
        };
        let Some(ppi) = acknowledged else {
            return Ok(None);
        };
        self.machine.host_priority_drop(cpu, ppi);
        if !late && let Some(vcpu) = self.on_cpu[cpu] {
            let timer = self.timer_of_ppi(vcpu, ppi);
            self.check_no_storm_of(cpu, vcpu, timer)?;
        }
        Ok(Some(ppi))
    }

    /// Which of `vcpu`'s timers the host PPI `ppi` belongs to: the
    /// library's answer for a direct timer's PPI; otherwise by the model's
    /// wiring (the physical timer's PPI reaching an emulated timer is
    /// stale, and the library finds it spurious).
    fn timer_of_ppi(&self, vcpu: usize, ppi: IntId) -> TimerId {
        self.vcpus[vcpu].timer.timer_for_host_ppi(ppi).unwrap_or(
            if ppi == self.machine.ptimer_ppi() {
                TimerId::Physical
            } else {
                TimerId::Virtual
            },
        )
    }

    /// `handle_timer_irq` on the vCPU loaded on `cpu` for the interrupt the
    /// last exception there acknowledged, if its handler is due.
    fn run_handler(&mut self, cpu: usize) -> Result<(), Violation> {
        let Some(ppi) = self.handler_due[cpu].take() else {
            return Ok(());
        };
        let Some(vcpu) = self.on_cpu[cpu] else {
            self.stats.orphan = self.stats.orphan.saturating_add(1);
            self.machine.host_deactivate(cpu, ppi);
            return Ok(());
        };
        let timer = self.timer_of_ppi(vcpu, ppi);
        let in_place = self.vcpus[vcpu].timer.is_blocked_in_place();
        let line_before = self.machine.virtual_irq(vcpu, self.intid(timer)).line;
        let active_before = self.machine.cpu(cpu).ppis.get(ppi).active;
        // Disarmed by this call whether or not it makes enough calls.
        let (_, _, fired) = self.arm_fault(FaultSite::Handler);
        let v = &mut self.vcpus[vcpu];
        if timer == TimerId::Virtual {
            v.host_irqs = v.host_irqs.saturating_add(1);
        } else {
            v.p_host_irqs = v.p_host_irqs.saturating_add(1);
        }
        let mut p = self.machine.ports(cpu, vcpu);
        let result = v.timer.handle_timer_irq(timer, &mut p.timer, &mut p.gic);
        self.machine.inject_chip_fault(None);
        let result = match result {
            Ok(result) => result,
            Err(Error::IrqChip(_)) if self.machine.chip_faults_fired() > fired => {
                // The run loop logs it and carries on. The host may take
                // the PPI once more for this expiry (the library released
                // it to retry): no storm.
                if timer == TimerId::Virtual {
                    v.refires = v.refires.saturating_add(1);
                } else {
                    v.p_refires = v.p_refires.saturating_add(1);
                }
                self.stats.chip_errors = self.stats.chip_errors.saturating_add(1);
                self.stats.handler_chip_errors = self.stats.handler_chip_errors.saturating_add(1);
                self.sync_user_levels(vcpu);
                // A line raised before the failure (`Forwarding::Masking`:
                // masked, reported, the deactivation failed) is the wake-up
                // of a vCPU blocked in place: its PPI will not signal again.
                let levels = self.vcpus[vcpu].timer.levels();
                let high = if timer == TimerId::Physical {
                    levels.physical_timer
                } else {
                    levels.virtual_timer
                };
                if in_place && high {
                    self.stats.woken_in_place = self.stats.woken_in_place.saturating_add(1);
                    self.wake(vcpu)?;
                }
                return Ok(());
            }
            Err(e) => return Err(library("handle_host_irq", e)),
        };
        self.sync_user_levels(vcpu);
        if in_place && result == HostIrq::Raised {
            self.stats.woken_in_place = self.stats.woken_in_place.saturating_add(1);
        }
        match result {
            HostIrq::Raised if timer == TimerId::Physical => {
                self.stats.ptimer_host_raised = self.stats.ptimer_host_raised.saturating_add(1);
                self.wake(vcpu)?;
            }
            HostIrq::Raised => {
                self.stats.raised = self.stats.raised.saturating_add(1);
                if line_before {
                    self.stats.reraised = self.stats.reraised.saturating_add(1);
                }
                if !active_before && self.machine.cpu(cpu).ppis.get(ppi).active {
                    self.stats.reactivated = self.stats.reactivated.saturating_add(1);
                }
                self.wake(vcpu)?;
            }
            HostIrq::Spurious => self.stats.spurious = self.stats.spurious.saturating_add(1),
            HostIrq::NotLoaded => {
                self.stats.orphan = self.stats.orphan.saturating_add(1);
                self.machine.host_deactivate(cpu, ppi);
            }
        }
        Ok(())
    }

    /// Invariant 2 when the vtimer PPI reaches `cpu`: the guest has
    /// deactivated the last one, or taking it again is a storm. (With
    /// level resampling the vGIC re-pends on its own after a deactivation,
    /// behind the physical PPI's back, so only the count in `check`
    /// applies.)
    fn check_no_storm(&self, cpu: usize, vcpu: usize) -> Result<(), Violation> {
        self.check_no_storm_of(cpu, vcpu, TimerId::Virtual)
    }

    /// [`check_no_storm`](Self::check_no_storm) for `timer`'s PPI.
    fn check_no_storm_of(&self, cpu: usize, vcpu: usize, timer: TimerId) -> Result<(), Violation> {
        match self.storm_state_of(vcpu, timer) {
            Some(why) => Err(violation(
                Invariant::Storm,
                format!("host took the {timer:?} timer's PPI on CPU {cpu} while {why}"),
            )),
            None => Ok(()),
        }
    }

    /// What makes taking the vtimer PPI for `vcpu` now a storm, if
    /// anything: with the HW bit, the guest still holds the last virtual
    /// interrupt (pending or active); with [`Forwarding::Masking`], the
    /// line is high (the library masks the PPI for as long as it is).
    fn storm_state(&self, vcpu: usize) -> Option<String> {
        self.storm_state_of(vcpu, TimerId::Virtual)
    }

    /// [`storm_state`](Self::storm_state) for `timer`'s interrupt. An
    /// emulated physical timer's PPI is never taken for the vCPU (its
    /// hardware timer is disabled): nothing to say.
    fn storm_state_of(&self, vcpu: usize, timer: TimerId) -> Option<String> {
        if timer == TimerId::Physical && !self.ptimer_direct(vcpu) {
            return None;
        }
        let virq = self.machine.virtual_irq(vcpu, self.intid(timer));
        match self.vm.forwarding() {
            Forwarding::Masking if virq.line => Some(format!(
                "vCPU {vcpu}'s virtual line is high ({:?})",
                virq.state
            )),
            Forwarding::Hardware if !self.resample && virq.state != VirtualState::Inactive => Some(
                format!("vCPU {vcpu}'s virtual interrupt is {:?}", virq.state),
            ),
            Forwarding::Masking | Forwarding::Hardware => None,
        }
    }

    fn fire_soft_timers(&mut self) -> Result<(), Violation> {
        let now = self.machine.now();
        for vcpu in 0..self.vcpus.len() {
            let soft = self.machine.soft_timers(vcpu);
            if soft.background.is_some_and(|at| at <= now) {
                self.machine.soft_timer_fired(vcpu, SoftTimer::Background);
                if self.vcpus[vcpu].blocked {
                    self.stats.background_wakeups = self.stats.background_wakeups.saturating_add(1);
                }
                self.wake(vcpu)?;
            }
            if soft.physical.is_some_and(|at| at <= now) {
                self.machine.soft_timer_fired(vcpu, SoftTimer::Physical);
                if let Some(cpu) = self.vcpus[vcpu].cpu {
                    let armed = self.arm_fault(FaultSite::RunLoop);
                    let mut p = self.machine.ports(cpu, vcpu);
                    let result = self.vcpus[vcpu]
                        .timer
                        .physical_timer_expired(&mut p.timer, &mut p.gic);
                    if self
                        .run_loop_result(armed, vcpu, "physical_timer_expired", result)?
                        .is_none()
                    {
                        // The next entry brings the line up to date: the
                        // soft timer's interrupt made the guest exit, so the
                        // run loop enters it again at once.
                        self.stats.soft_chip_errors = self.stats.soft_chip_errors.saturating_add(1);
                        if self.in_guest[cpu] {
                            self.exit(cpu)?;
                            self.enter(cpu, vcpu)?;
                        }
                    }
                    self.sync_user_levels(vcpu);
                }
            }
        }
        Ok(())
    }

    /// Checks every invariant on the current state.
    ///
    /// # Errors
    ///
    /// The first invariant found broken.
    pub fn check(&mut self) -> Result<(), Violation> {
        let now = self.machine.now();
        if self.machine.ordering_violations() != 0 {
            return Err(violation(
                Invariant::OneHome,
                "virtual timer restored out of order: CNTV_CTL after CNTV_CVAL without a \
                 barrier, or CNTV_CVAL/CNTVOFF_EL2 written while the timer was enabled"
                    .to_owned(),
            ));
        }
        for cpu in 0..self.on_cpu.len() {
            self.check_cpu(cpu)?;
        }
        for vcpu in 0..self.vcpus.len() {
            self.check_vcpu(vcpu, now)?;
        }
        Ok(())
    }

    fn check_cpu(&self, cpu: usize) -> Result<(), Violation> {
        let regs = self.machine.cpu(cpu).timer;
        let live = self.on_cpu[cpu]
            .map(|vcpu| &self.vcpus[vcpu])
            .filter(|v| v.timer.vtimer().residency() == Residency::Hardware);
        if let Some(vcpu) = self.on_cpu[cpu]
            && self.vcpus[vcpu].cpu != Some(cpu)
        {
            return Err(violation(
                Invariant::OneHome,
                format!(
                    "CPU {cpu} runs vCPU {vcpu}, which thinks it is on {:?}",
                    self.vcpus[vcpu].cpu
                ),
            ));
        }
        if self.on_cpu[cpu].is_none() && regs.offset != Ticks::ZERO {
            return Err(violation(
                Invariant::OneHome,
                format!(
                    "CNTVOFF_EL2 = {} on CPU {cpu} with no vCPU loaded",
                    regs.offset.get()
                ),
            ));
        }
        let c = self.machine.cpu(cpu);
        let p_live = self.on_cpu[cpu]
            .map(|vcpu| &self.vcpus[vcpu])
            .filter(|v| v.timer.ptimer().residency() == Residency::Hardware);
        if p_live.is_none() && c.ptimer.ctl.is_enabled() {
            return Err(violation(
                Invariant::OneHome,
                format!(
                    "CPU {cpu}'s EL1 physical timer is enabled ({:?}) but holds no vCPU's live \
                     state",
                    c.ptimer.ctl
                ),
            ));
        }
        if self.on_cpu[cpu].is_none() && (c.ecv_enabled || c.ptimer.offset != Ticks::ZERO) {
            return Err(violation(
                Invariant::OneHome,
                format!(
                    "CNTPOFF_EL2 = {} (ECV {}) on CPU {cpu} with no vCPU loaded",
                    c.ptimer.offset.get(),
                    c.ecv_enabled
                ),
            ));
        }
        if live.is_none() && regs.ctl.is_enabled() {
            return Err(violation(
                Invariant::OneHome,
                format!(
                    "CPU {cpu}'s virtual timer is enabled ({:?}) but holds no vCPU's live state",
                    regs.ctl
                ),
            ));
        }
        let Some(vcpu) = self.on_cpu[cpu] else {
            return Ok(());
        };
        // The guest's CNTP_* accesses must trap while its physical timer is
        // emulated, or it reaches the hardware timer instead; a direct one
        // is reached without a trap.
        let direct = self.ptimer_direct(vcpu);
        if regs.el1_physical_access != direct {
            return Err(violation(
                Invariant::OneHome,
                format!(
                    "vCPU {vcpu} is loaded on CPU {cpu} with its physical timer {} and EL1 \
                     physical timer access {}",
                    if direct { "direct" } else { "emulated" },
                    if regs.el1_physical_access {
                        "allowed"
                    } else {
                        "trapped"
                    }
                ),
            ));
        }
        if self.machine.ptimer_irq_signalled(cpu)
            && let Some(why) = self.storm_state_of(vcpu, TimerId::Physical)
        {
            return Err(violation(
                Invariant::Storm,
                format!("the physical timer's PPI is signalled on CPU {cpu} while {why}"),
            ));
        }
        // Invariant 2 at every step, not only when the host happens to take
        // the PPI: a PPI signalled while the guest holds the last virtual
        // interrupt (pending or active) will be taken again.
        if self.machine.timer_irq_signalled(cpu)
            && let Some(why) = self.storm_state(vcpu)
        {
            return Err(violation(
                Invariant::Storm,
                format!("the vtimer PPI is signalled on CPU {cpu} while {why}"),
            ));
        }
        Ok(())
    }

    fn check_vcpu(&mut self, vcpu: usize, now: Ticks) -> Result<(), Violation> {
        let vintid = self.vm.virtual_irq();
        let virq = self.machine.virtual_irq(vcpu, vintid);
        let v = &mut self.vcpus[vcpu];
        let truth = v.guest.timer();
        let asserted = truth.asserted(now);

        // Invariant 2, counted: one host interrupt per expiry, plus one per
        // deactivation with the line still high (level-triggered re-fire).
        if asserted && !v.asserted {
            v.expiries = v.expiries.saturating_add(1);
        }
        v.asserted = asserted;
        if v.host_irqs > v.expiries.saturating_add(v.refires) {
            return Err(violation(
                Invariant::Storm,
                format!(
                    "vCPU {vcpu}: {} host vtimer interrupts for {} expiries and {} deactivations \
                     with the timer still asserted",
                    v.host_irqs, v.expiries, v.refires
                ),
            ));
        }

        // Invariant 1, not early: every raise happened with the condition met.
        if virq.raises > v.raises_seen {
            v.raises_seen = virq.raises;
            if !asserted {
                return Err(violation(
                    Invariant::EarlyInterrupt,
                    format!(
                        "vCPU {vcpu}: virtual timer raised at {now} but the guest's timer is {truth:?}"
                    ),
                ));
            }
        }

        // Invariants 3 and 5: one home, and the guest sees what it wrote.
        let ctx = v.timer.vtimer();
        match (ctx.residency(), v.cpu) {
            (Residency::Hardware, None) => {
                return Err(violation(
                    Invariant::OneHome,
                    format!(
                        "vCPU {vcpu}'s timer claims to be on the hardware but it is not loaded"
                    ),
                ));
            }
            (Residency::Hardware, Some(cpu)) => {
                let regs = self.machine.cpu(cpu).timer;
                let count = regs.virtual_count(now);
                if regs.ctl != truth.ctl.writable()
                    || regs.cval != truth.cval
                    || count != truth.virtual_count(now)
                {
                    return Err(violation(
                        Invariant::Migration,
                        format!(
                            "vCPU {vcpu} on CPU {cpu}: hardware CTL {:?} CVAL {} count {}, guest wrote CTL {:?} CVAL {} count {}",
                            regs.ctl,
                            regs.cval.get(),
                            count.get(),
                            truth.ctl,
                            truth.cval.get(),
                            truth.virtual_count(now).get()
                        ),
                    ));
                }
            }
            (Residency::Memory, _) => {
                if ctx.ctl().writable() != truth.ctl.writable() || ctx.cval() != truth.cval {
                    return Err(violation(
                        Invariant::Migration,
                        format!(
                            "vCPU {vcpu} saved CTL {:?} CVAL {}, guest wrote CTL {:?} CVAL {}",
                            ctx.ctl(),
                            ctx.cval().get(),
                            truth.ctl,
                            truth.cval.get()
                        ),
                    ));
                }
            }
        }

        // Invariant 1: while the guest runs, an asserted timer is delivered
        // (pending or being handled) or about to be (PPI signalled).
        if let Some(cpu) = v.cpu
            && self.in_guest[cpu]
            && asserted
            && virq.state == VirtualState::Inactive
            && !self.machine.timer_irq_signalled(cpu)
            && !self.signalled[cpu]
        {
            let ppi = self.machine.cpu(cpu).ppis.get(self.machine.timer_ppi());
            return Err(violation(
                Invariant::LostInterrupt,
                format!(
                    "vCPU {vcpu} runs on CPU {cpu} with its timer asserted ({truth:?}, now {now}), \
                     nothing pending in the guest and the PPI not signalled ({ppi:?})"
                ),
            ));
        }

        // Invariant 6: a sleeping vCPU has a wake-up no later than its expiry.
        // Blocked in place: each timer that can fire is either on the
        // hardware (invariant 5 checks it holds the guest's state) with a
        // PPI that signals (enabled, inactive) or that the host has taken
        // (its handler due), or covered by the background timer.
        if v.blocked
            && !v.wake_pending
            && v.timer.is_blocked_in_place()
            && let Some(cpu) = v.cpu
        {
            let armed = self.machine.soft_timers(vcpu).background;
            for (timer, truth, ppi) in [
                (TimerId::Virtual, v.guest.timer(), self.machine.timer_ppi()),
                (
                    TimerId::Physical,
                    v.guest.ptimer(),
                    self.machine.ptimer_ppi(),
                ),
            ] {
                let Some(at) = truth.expiry(now) else {
                    continue;
                };
                let state = self.machine.cpu(cpu).ppis.get(ppi);
                let running = v.timer.is_direct(timer)
                    && v.timer.context(timer).residency() == Residency::Hardware;
                // An acknowledged PPI whose handler is due wakes it too.
                let ok = if running {
                    (state.enabled && !state.active) || self.handler_due[cpu] == Some(ppi)
                } else {
                    armed.is_some_and(|t| t <= at)
                };
                if !ok {
                    return Err(violation(
                        Invariant::SafeSleep,
                        format!(
                            "vCPU {vcpu} sleeps in place on CPU {cpu}: its {timer:?} timer \
                             expires at {at} but it is {} (PPI {state:?}, background timer \
                             {armed:?})",
                            if running { "running" } else { "in memory" }
                        ),
                    ));
                }
            }
        } else if v.blocked && !v.wake_pending {
            let armed = self.machine.soft_timers(vcpu).background;
            let expiry = earliest_expiry(&v.guest, now);
            let ok = match expiry {
                Some(at) => armed.is_some_and(|t| t <= at),
                None => armed.is_none(),
            };
            if !ok {
                return Err(violation(
                    Invariant::SafeSleep,
                    format!(
                        "vCPU {vcpu} sleeps with background timer {armed:?}; its timers expire \
                         first at {expiry:?}"
                    ),
                ));
            }
        }
        self.check_ptimer(vcpu, now)
    }

    /// The invariants for the physical timer of `vcpu`, direct or emulated.
    fn check_ptimer(&mut self, vcpu: usize, now: Ticks) -> Result<(), Violation> {
        let pintid = self.vm.physical_irq();
        let pirq = self.machine.virtual_irq(vcpu, pintid);
        let direct = self.ptimer_direct(vcpu);
        let v = &mut self.vcpus[vcpu];
        let truth = v.guest.ptimer();
        let asserted = truth.asserted(now);
        // Invariant 2, counted, for the direct timer's PPI (an emulated
        // timer's PPI is never taken for it).
        if asserted && !v.p_asserted {
            v.p_expiries = v.p_expiries.saturating_add(1);
        }
        v.p_asserted = asserted;
        if v.p_host_irqs > v.p_expiries.saturating_add(v.p_refires) {
            return Err(violation(
                Invariant::Storm,
                format!(
                    "vCPU {vcpu}: {} host physical timer interrupts for {} expiries and {} \
                     deactivations with the timer still asserted",
                    v.p_host_irqs, v.p_expiries, v.p_refires
                ),
            ));
        }
        // Not early: every raise with the condition met.
        if pirq.raises > v.ptimer_raises_seen {
            self.stats.ptimer_raised = self
                .stats
                .ptimer_raised
                .saturating_add(pirq.raises.saturating_sub(v.ptimer_raises_seen));
            v.ptimer_raises_seen = pirq.raises;
            if !asserted {
                return Err(violation(
                    Invariant::EarlyInterrupt,
                    format!(
                        "vCPU {vcpu}: physical timer raised at {now} but the guest's timer is {truth:?}"
                    ),
                ));
            }
        }
        let ctx = v.timer.ptimer();
        match (ctx.residency(), v.cpu) {
            (Residency::Hardware, None) => {
                return Err(violation(
                    Invariant::OneHome,
                    format!("vCPU {vcpu}'s physical timer claims the hardware but is not loaded"),
                ));
            }
            (Residency::Hardware, Some(cpu)) => {
                // On the hardware, as the guest wrote it, counting what the
                // guest counts (CNTPOFF_EL2 applied with ECV).
                let regs = self.machine.cpu(cpu).effective_ptimer();
                let count = regs.virtual_count(now);
                if !direct
                    || regs.ctl != truth.ctl.writable()
                    || regs.cval != truth.cval
                    || count != truth.virtual_count(now)
                {
                    return Err(violation(
                        Invariant::Migration,
                        format!(
                            "vCPU {vcpu} on CPU {cpu} (direct {direct}): hardware physical timer \
                             CTL {:?} CVAL {} count {}, guest wrote {truth:?} and counts {}",
                            regs.ctl,
                            regs.cval.get(),
                            count.get(),
                            truth.virtual_count(now).get()
                        ),
                    ));
                }
                // While the guest runs, an asserted timer is delivered or
                // its PPI signalled, as for the virtual timer.
                if self.in_guest[cpu]
                    && asserted
                    && pirq.state == VirtualState::Inactive
                    && !self.machine.ptimer_irq_signalled(cpu)
                {
                    return Err(violation(
                        Invariant::LostInterrupt,
                        format!(
                            "vCPU {vcpu} runs on CPU {cpu} with its direct physical timer \
                             asserted ({truth:?}, now {now}), nothing pending and its PPI not \
                             signalled"
                        ),
                    ));
                }
                return Ok(());
            }
            (Residency::Memory, _) => {}
        }
        // Saved (a direct timer of a sleeping or unloaded vCPU) or
        // emulated: in memory, as the guest wrote it.
        if ctx.ctl().writable() != truth.ctl.writable() || ctx.cval() != truth.cval {
            return Err(violation(
                Invariant::Migration,
                format!(
                    "vCPU {vcpu}'s physical timer holds CTL {:?} CVAL {}, the guest wrote {truth:?}",
                    ctx.ctl(),
                    ctx.cval().get()
                ),
            ));
        }
        // While the guest runs, the emulated timer's line is high exactly
        // while the condition holds: raised at the entry, by the soft timer
        // or by a trapped write, lowered by a trapped write. (A direct
        // timer runs on the hardware while the guest does.)
        if let Some(cpu) = v.cpu
            && self.in_guest[cpu]
            && !direct
        {
            if ctx.count(now) != truth.virtual_count(now) {
                return Err(violation(
                    Invariant::Migration,
                    format!(
                        "vCPU {vcpu}'s physical timer counts {} where the guest counts {}",
                        ctx.count(now).get(),
                        truth.virtual_count(now).get()
                    ),
                ));
            }
            if pirq.line != asserted {
                let invariant = if asserted {
                    Invariant::LostInterrupt
                } else {
                    Invariant::EarlyInterrupt
                };
                return Err(violation(
                    invariant,
                    format!(
                        "vCPU {vcpu} runs on CPU {cpu} at {now} with its physical timer {truth:?} \
                         and the line {} ({:?})",
                        if pirq.line { "high" } else { "low" },
                        pirq.state
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether a virtual line went up, or its interrupt was made pending,
/// between the states `before` and `now`.
const fn raised_between(before: VirtualIrq, now: VirtualIrq) -> bool {
    (now.line && !before.line) || now.raises > before.raises
}

/// `cpu`'s timer registers: both timers and the ECV enable.
fn timer_state(machine: &Machine, cpu: usize) -> (crate::TimerRegs, crate::TimerRegs, bool) {
    let c = machine.cpu(cpu);
    (c.timer, c.ptimer, c.ecv_enabled)
}

/// The earliest expiry of `guest`'s two timers, as seen from `now`.
fn earliest_expiry(guest: &Guest, now: Ticks) -> Option<Ticks> {
    match (guest.timer().expiry(now), guest.ptimer().expiry(now)) {
        (Some(v), Some(p)) => Some(v.min(p)),
        (v, p) => v.or(p),
    }
}

/// Invariant 4 for one `after_exit` and the direct physical timer:
/// `high` is its line level at the start (false if it is emulated), `made`
/// the accesses it made.
fn check_quiet_ptimer_exit(high: bool, made: &Counters) -> Result<(), Violation> {
    let writes = made.pctl_writes + made.pcval_writes + made.poffset_writes;
    let ok = if high {
        writes == 0 && made.pctl_reads <= 1 && made.pcval_reads <= 1
    } else {
        made.ptimer_register_accesses() == 0
    };
    if ok {
        Ok(())
    } else {
        Err(violation(
            Invariant::QuietHotPath,
            format!(
                "after_exit with the physical timer line {}: {made}",
                if high { "high" } else { "low" }
            ),
        ))
    }
}

/// Invariant 4 for one `after_exit`: `high` is the virtual line level it
/// started with, `made` the accesses it made.
fn check_quiet_exit(high: bool, made: &Counters) -> Result<(), Violation> {
    let ok = if high {
        made.vtimer_register_writes() == 0 && made.ctl_reads <= 1 && made.cval_reads <= 1
    } else {
        made.vtimer_register_accesses() == 0
    };
    if ok {
        Ok(())
    } else {
        Err(violation(
            Invariant::QuietHotPath,
            format!(
                "after_exit with the line {}: {made}",
                if high { "high" } else { "low" }
            ),
        ))
    }
}
