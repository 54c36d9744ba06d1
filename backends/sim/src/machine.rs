//! The model machine: [`Machine`], its CPUs' timers and interrupt
//! controller, and the views ([`Ports`]) through which the library drives
//! them.

use core::cell::{Cell, RefCell};
use core::fmt;

use arch_timer_virt::{IntId, IrqChip, SoftTimer, SoftTimers, Ticks, TimerCtl, TimerHw};

use crate::gic::{Ppis, VirtualInterface, VirtualIrq};
use crate::log::{Access, AccessLog, Counters};

/// The EL1 virtual timer registers of one CPU, and `CNTVOFF_EL2`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerRegs {
    /// ENABLE and IMASK as last written (ISTATUS is derived).
    pub ctl: TimerCtl,
    /// The compare value.
    pub cval: Ticks,
    /// `CNTVOFF_EL2`.
    pub offset: Ticks,
    /// `CNTHCTL_EL2` lets EL1 reach the physical timer and counter.
    pub el1_physical_access: bool,
    /// A CVAL write not yet followed by a barrier.
    cval_unsynchronized: bool,
    /// Hypervisor writes out of the restore order: CTL after a CVAL write
    /// with no barrier in between (the timer could fire on the old CVAL),
    /// or CVAL or `CNTVOFF_EL2` while the timer is enabled (it could fire
    /// on a half-restored state).
    pub ordering_violations: u64,
}

impl TimerRegs {
    /// The virtual count, `CNTPCT - CNTVOFF` (modulo 2^64).
    #[must_use]
    pub const fn virtual_count(&self, now: Ticks) -> Ticks {
        now.wrapping_sub(self.offset)
    }

    /// ISTATUS: enabled and `CNTVCT >= CVAL` (unsigned).
    #[must_use]
    pub const fn istatus(&self, now: Ticks) -> bool {
        self.ctl.is_enabled() && self.virtual_count(now).get() >= self.cval.get()
    }

    /// The timer's output line: ISTATUS and not IMASK.
    #[must_use]
    pub const fn line(&self, now: Ticks) -> bool {
        self.istatus(now) && !self.ctl.is_masked()
    }

    /// CTL as a read returns it.
    #[must_use]
    pub const fn read_ctl(&self, now: Ticks) -> TimerCtl {
        self.ctl.with_istatus(self.istatus(now))
    }
}

/// One physical CPU: its EL1 virtual and physical timers and its PPIs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cpu {
    /// The EL1 virtual timer.
    pub timer: TimerRegs,
    /// The EL1 physical timer. Its `offset` is `CNTPOFF_EL2`, applied
    /// only while [`Cpu::ecv_enabled`] (`CNTHCTL_EL2.ECV`); its
    /// `el1_physical_access` is unused (the virtual timer's holds the
    /// `CNTHCTL_EL2` bits).
    pub ptimer: TimerRegs,
    /// `CNTHCTL_EL2.ECV`: the physical offset is in effect for EL1.
    pub ecv_enabled: bool,
    /// The PPIs.
    pub ppis: Ppis,
}

impl Cpu {
    /// The EL1 physical timer as EL1 sees it: its offset is `CNTPOFF_EL2`
    /// while ECV is enabled, zero otherwise.
    #[must_use]
    pub const fn effective_ptimer(&self) -> TimerRegs {
        let mut regs = self.ptimer;
        if !self.ecv_enabled {
            regs.offset = Ticks::ZERO;
        }
        regs
    }
}

/// A vCPU's two host software timers: their deadlines, if armed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SoftTimerState {
    /// The background (wake-up) timer.
    pub background: Option<Ticks>,
    /// The emulated physical timer's timer.
    pub physical: Option<Ticks>,
}

impl SoftTimerState {
    fn slot(&mut self, timer: SoftTimer) -> &mut Option<Ticks> {
        match timer {
            SoftTimer::Background => &mut self.background,
            SoftTimer::Physical => &mut self.physical,
        }
    }
}

/// The error of [`SimGic`]: a fault injected with
/// [`Machine::inject_chip_fault`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SimChipError;

impl fmt::Display for SimChipError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("injected interrupt controller fault")
    }
}

impl std::error::Error for SimChipError {}

/// A one-shot fault armed on the interrupt controller.
#[derive(Debug, Default)]
struct ChipFault {
    /// Calls to let through before the one that fails.
    countdown: Cell<Option<u32>>,
    /// Faults that fired.
    fired: Cell<u64>,
}

impl ChipFault {
    /// Whether this call fails (the fault then disarms).
    fn strike(&self) -> bool {
        match self.countdown.get() {
            Some(0) => {
                self.countdown.set(None);
                self.fired.set(self.fired.get().saturating_add(1));
                true
            }
            Some(n) => {
                self.countdown.set(Some(n - 1));
                false
            }
            None => false,
        }
    }
}

/// CPUs sharing one system counter, a GIC with EOImode = 1, and the
/// virtual CPU interfaces and soft timers of a number of vCPUs.
///
/// Time only moves when [`advance`](Self::advance) is called. The EL1
/// virtual timer of each CPU drives the host PPI [`timer_ppi`](Self::timer_ppi)
/// (27 unless changed) of that CPU as a level-triggered line.
///
/// CPU and vCPU indices are those given to [`new`](Self::new); methods
/// taking one panic if it is out of range (a bug in the test, not input).
#[derive(Debug)]
pub struct Machine {
    now: Ticks,
    features: TimerFeatures,
    timer_ppi: IntId,
    ptimer_ppi: IntId,
    cpus: Vec<Cpu>,
    vifs: Vec<VirtualInterface>,
    soft: Vec<SoftTimerState>,
    log: RefCell<AccessLog>,
    fault: ChipFault,
}

/// The views of one CPU's hardware, as seen while running one vCPU: what
/// [`VcpuTimer`](arch_timer_virt::VcpuTimer) operations borrow.
#[derive(Debug)]
pub struct Ports<'a> {
    /// The CPU's timer registers.
    pub timer: SimTimer<'a>,
    /// The CPU's PPIs and the vCPU's virtual interface.
    pub gic: SimGic<'a>,
    /// The vCPU's soft timers.
    pub soft: SimSoftTimers<'a>,
}

impl Machine {
    /// `cpus` CPUs and `vcpus` vCPU interfaces, the counter at zero running
    /// at `frequency_hz` (what `CNTFRQ_EL0` reports through
    /// [`SimTimer::features`]), no VHE, no ECV.
    #[must_use]
    pub fn new(cpus: usize, vcpus: usize, frequency_hz: u32) -> Self {
        Self {
            now: Ticks::ZERO,
            features: TimerFeatures {
                vhe: false,
                ecv: false,
                frequency_hz,
            },
            timer_ppi: IntId::VIRTUAL_TIMER,
            ptimer_ppi: IntId::PHYSICAL_TIMER,
            cpus: vec![Cpu::default(); cpus],
            vifs: vec![VirtualInterface::default(); vcpus],
            soft: vec![SoftTimerState::default(); vcpus],
            log: RefCell::new(AccessLog::default()),
            fault: ChipFault::default(),
        }
    }

    /// The counter frequency, `CNTFRQ_EL0`, in Hz.
    #[must_use]
    pub const fn frequency_hz(&self) -> u32 {
        self.features.frequency_hz
    }

    /// `duration` of wall time in counter ticks at this machine's
    /// frequency (rounded down, saturating).
    #[must_use]
    pub fn ticks_for(&self, duration: core::time::Duration) -> u64 {
        let ticks = duration
            .as_nanos()
            .saturating_mul(u128::from(self.features.frequency_hz))
            / core::time::Duration::from_secs(1).as_nanos();
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// Arms a one-shot interrupt controller fault: of the [`SimGic`] calls
    /// from now on (through any CPU's or vCPU's view), the first `after`
    /// succeed and the next returns [`SimChipError`]. `None` disarms.
    pub fn inject_chip_fault(&mut self, after: Option<u32>) {
        self.fault.countdown.set(after);
    }

    /// Whether a chip fault is armed and has not fired yet.
    #[must_use]
    pub fn chip_fault_armed(&self) -> bool {
        self.fault.countdown.get().is_some()
    }

    /// How many injected chip faults have fired.
    #[must_use]
    pub fn chip_faults_fired(&self) -> u64 {
        self.fault.fired.get()
    }

    /// The VMM resets vCPU `vcpu`'s virtual interrupt `intid` in its
    /// virtual interrupt controller, as a vCPU reset does: line low, not
    /// pending, not active (its hardware mapping is kept). Not logged.
    pub fn reset_virtual_irq(&mut self, vcpu: usize, intid: IntId) {
        if let Some(irq) = self.vifs[vcpu].get_mut(intid) {
            irq.line = false;
            irq.state = crate::VirtualState::Inactive;
        }
    }

    /// Wires the virtual timers to another host PPI.
    pub const fn set_timer_ppi(&mut self, ppi: IntId) {
        self.timer_ppi = ppi;
    }

    /// The host PPI the virtual timers are wired to.
    #[must_use]
    pub const fn timer_ppi(&self) -> IntId {
        self.timer_ppi
    }

    /// Wires the EL1 physical timers to another host PPI.
    pub const fn set_ptimer_ppi(&mut self, ppi: IntId) {
        self.ptimer_ppi = ppi;
    }

    /// The host PPI the EL1 physical timers are wired to (30 unless
    /// changed).
    #[must_use]
    pub const fn ptimer_ppi(&self) -> IntId {
        self.ptimer_ppi
    }

    /// Sets what [`SimTimer::features`] reports (FEAT_ECV decides whether
    /// `CNTPOFF_EL2` exists).
    pub const fn set_features(&mut self, features: TimerFeatures) {
        self.features = features;
    }

    /// The number of CPUs.
    #[must_use]
    pub fn cpus(&self) -> usize {
        self.cpus.len()
    }

    /// The number of vCPU interfaces.
    #[must_use]
    pub fn vcpus(&self) -> usize {
        self.vifs.len()
    }

    /// The physical count.
    #[must_use]
    pub const fn now(&self) -> Ticks {
        self.now
    }

    /// Moves the counter forward by `ticks` (saturating at the top).
    pub const fn advance(&mut self, ticks: u64) {
        self.now = self.now.saturating_add(Ticks::new(ticks));
    }

    /// CPU `cpu`'s state.
    #[must_use]
    pub fn cpu(&self, cpu: usize) -> &Cpu {
        &self.cpus[cpu]
    }

    /// vCPU `vcpu`'s virtual interface.
    #[must_use]
    pub fn virtual_interface(&self, vcpu: usize) -> &VirtualInterface {
        &self.vifs[vcpu]
    }

    /// vCPU `vcpu`'s virtual interrupt `intid`.
    #[must_use]
    pub fn virtual_irq(&self, vcpu: usize, intid: IntId) -> VirtualIrq {
        self.vifs[vcpu].get(intid)
    }

    /// vCPU `vcpu`'s soft timers.
    #[must_use]
    pub fn soft_timers(&self, vcpu: usize) -> SoftTimerState {
        self.soft[vcpu]
    }

    /// The hardware views for running vCPU `vcpu` on CPU `cpu`.
    pub fn ports(&mut self, cpu: usize, vcpu: usize) -> Ports<'_> {
        let cpu_state = &mut self.cpus[cpu];
        Ports {
            timer: SimTimer {
                now: self.now,
                features: self.features,
                regs: &mut cpu_state.timer,
                pregs: &mut cpu_state.ptimer,
                ecv_enabled: &mut cpu_state.ecv_enabled,
                log: &self.log,
            },
            gic: SimGic {
                ppis: &mut cpu_state.ppis,
                vif: &mut self.vifs[vcpu],
                log: &self.log,
                fault: &self.fault,
            },
            soft: SimSoftTimers {
                soft: &mut self.soft[vcpu],
                log: &self.log,
            },
        }
    }

    /// The counts of every access made so far.
    #[must_use]
    pub fn counters(&self) -> Counters {
        self.log.borrow().counters()
    }

    /// Turns keeping the accesses in order on or off.
    pub fn set_tracing(&self, on: bool) {
        self.log.borrow_mut().set_tracing(on);
    }

    /// Takes the accesses traced since the last call.
    pub fn take_trace(&self) -> Vec<Access> {
        self.log.borrow_mut().take_trace()
    }

    /// Records an access made outside the views (host interrupt handling).
    fn record(&self, access: Access) {
        self.log.borrow_mut().record(access);
    }

    // ---- physical interrupt controller, host side ----

    /// Whether the line of `ppi` on `cpu` is high.
    #[must_use]
    pub fn host_line(&self, cpu: usize, ppi: IntId) -> bool {
        let c = &self.cpus[cpu];
        (ppi == self.timer_ppi && c.timer.line(self.now))
            || (ppi == self.ptimer_ppi && c.effective_ptimer().line(self.now))
    }

    /// Whether `ppi` is pending on `cpu` (level-triggered: its line is high
    /// and it is not active).
    #[must_use]
    pub fn host_pending(&self, cpu: usize, ppi: IntId) -> bool {
        self.host_line(cpu, ppi) && !self.cpus[cpu].ppis.get(ppi).active
    }

    /// Whether `ppi` is signalled to `cpu`: pending and enabled.
    #[must_use]
    pub fn host_signalled(&self, cpu: usize, ppi: IntId) -> bool {
        self.host_pending(cpu, ppi) && self.cpus[cpu].ppis.get(ppi).enabled
    }

    /// Whether the virtual timer's PPI is signalled to `cpu`.
    #[must_use]
    pub fn timer_irq_signalled(&self, cpu: usize) -> bool {
        self.host_signalled(cpu, self.timer_ppi)
    }

    /// Whether the EL1 physical timer's PPI is signalled to `cpu`.
    #[must_use]
    pub fn ptimer_irq_signalled(&self, cpu: usize) -> bool {
        self.host_signalled(cpu, self.ptimer_ppi)
    }

    /// The host acknowledges the signalled interrupt on `cpu`, if any (the
    /// virtual timer's PPI first): it becomes active and holds the running
    /// priority.
    pub fn host_acknowledge(&mut self, cpu: usize) -> Option<IntId> {
        let ppi = [self.timer_ppi, self.ptimer_ppi]
            .into_iter()
            .find(|&ppi| self.host_signalled(cpu, ppi))?;
        let state = self.cpus[cpu].ppis.get_mut(ppi)?;
        state.active = true;
        state.priority_held = true;
        self.record(Access::HostAcknowledge(ppi));
        Some(ppi)
    }

    /// The acknowledge of the vtimer PPI that was signalled to `cpu`
    /// earlier: it becomes active and holds the running priority even if
    /// its line has dropped since (the CPU interface may hand out an
    /// interrupt whose line fell after it was signalled: the race behind
    /// spurious timer interrupts). `None` (the spurious INTID) if it is
    /// active or masked by now: the model hands out a stale interrupt as
    /// long as its line is the only thing that changed, which real GICs do
    /// only within a short window, so it finds every spurious path.
    pub fn host_acknowledge_late(&mut self, cpu: usize) -> Option<IntId> {
        let ppi = self.timer_ppi;
        let state = self.cpus[cpu].ppis.get_mut(ppi)?;
        if state.active || !state.enabled {
            return None;
        }
        state.active = true;
        state.priority_held = true;
        self.record(Access::HostAcknowledge(ppi));
        Some(ppi)
    }

    /// The host's EOI with EOImode = 1: drops the running priority, leaves
    /// the interrupt active.
    pub fn host_priority_drop(&mut self, cpu: usize, ppi: IntId) {
        if let Some(state) = self.cpus[cpu].ppis.get_mut(ppi) {
            state.priority_held = false;
        }
        self.record(Access::HostPriorityDrop(ppi));
    }

    /// The host deactivates `ppi` on `cpu` (`ICC_DIR_EL1`).
    pub fn host_deactivate(&mut self, cpu: usize, ppi: IntId) {
        if let Some(state) = self.cpus[cpu].ppis.get_mut(ppi) {
            state.active = false;
        }
        self.record(Access::HostDeactivate(ppi));
    }

    // ---- the guest, running vCPU `vcpu` on CPU `cpu` (not logged) ----

    /// The guest's virtual count on `cpu`.
    #[must_use]
    pub fn guest_virtual_count(&self, cpu: usize) -> Ticks {
        self.cpus[cpu].timer.virtual_count(self.now)
    }

    /// The guest's physical count on `cpu` (`CNTPCT_EL0` read at EL1:
    /// offset by `CNTPOFF_EL2` while ECV is enabled).
    #[must_use]
    pub fn guest_physical_count(&self, cpu: usize) -> Ticks {
        self.cpus[cpu].effective_ptimer().virtual_count(self.now)
    }

    /// The guest reads `CNTP_CTL_EL0` on `cpu` (the hardware register: the
    /// guest reaches it only while its physical timer is direct).
    #[must_use]
    pub fn guest_read_ptimer_ctl(&self, cpu: usize) -> TimerCtl {
        self.cpus[cpu].effective_ptimer().read_ctl(self.now)
    }

    /// The guest writes `CNTP_CTL_EL0` on `cpu` (hardware register).
    pub fn guest_write_ptimer_ctl(&mut self, cpu: usize, bits: u64) {
        let timer = &mut self.cpus[cpu].ptimer;
        timer.ctl = TimerCtl::from_write(bits);
        timer.cval_unsynchronized = false;
    }

    /// The guest writes `CNTP_CVAL_EL0` on `cpu` (hardware register).
    pub fn guest_write_ptimer_cval(&mut self, cpu: usize, cval: Ticks) {
        self.cpus[cpu].ptimer.cval = cval;
    }

    /// The guest writes `CNTP_TVAL_EL0` on `cpu` (hardware register): CVAL
    /// = its physical count + sign-extended TVAL.
    pub fn guest_write_ptimer_tval(&mut self, cpu: usize, tval: i32) {
        let count = self.guest_physical_count(cpu);
        let delta = Ticks::new(i64::from(tval).cast_unsigned());
        self.cpus[cpu].ptimer.cval = count.wrapping_add(delta);
    }

    /// The guest reads `CNTV_CTL_EL0` on `cpu`.
    #[must_use]
    pub fn guest_read_ctl(&self, cpu: usize) -> TimerCtl {
        self.cpus[cpu].timer.read_ctl(self.now)
    }

    /// The guest reads `CNTV_CVAL_EL0` on `cpu`.
    #[must_use]
    pub fn guest_read_cval(&self, cpu: usize) -> Ticks {
        self.cpus[cpu].timer.cval
    }

    /// The guest writes `CNTV_CTL_EL0` on `cpu` (ISTATUS and RES0 bits
    /// ignored).
    pub fn guest_write_ctl(&mut self, cpu: usize, bits: u64) {
        let timer = &mut self.cpus[cpu].timer;
        timer.ctl = TimerCtl::from_write(bits);
        timer.cval_unsynchronized = false;
    }

    /// The guest writes `CNTV_CVAL_EL0` on `cpu`.
    pub fn guest_write_cval(&mut self, cpu: usize, cval: Ticks) {
        self.cpus[cpu].timer.cval = cval;
    }

    /// The guest writes `CNTV_TVAL_EL0` on `cpu`: CVAL = CNTVCT + sign-extended TVAL.
    pub fn guest_write_tval(&mut self, cpu: usize, tval: i32) {
        let count = self.guest_virtual_count(cpu);
        // Sign extension then modular addition, as the architecture defines.
        let delta = Ticks::new(i64::from(tval).cast_unsigned());
        self.cpus[cpu].timer.cval = count.wrapping_add(delta);
    }

    /// The vGIC of vCPU `vcpu` re-pends the virtual `intid` if its line is
    /// still high and it is inactive (a software vGIC with level
    /// semantics, as KVM's, does this when it flushes before an entry; a
    /// vGIC that only writes list registers on a raise does not).
    pub fn resample_virtual_level(&mut self, vcpu: usize, intid: IntId) {
        self.vifs[vcpu].resample(intid);
    }

    /// The VMM that owns the interrupt controller (the library's
    /// `Forwarding::Masking`) sets vCPU `vcpu`'s virtual line `intid` (not
    /// logged: the library's accesses are counted, not the VMM's).
    pub fn vmm_set_level(&mut self, vcpu: usize, intid: IntId, level: bool) {
        self.vifs[vcpu].set_level(intid, level);
    }

    /// The guest acknowledges its highest-priority pending virtual
    /// interrupt (`ICV_IAR1_EL1`), if any.
    pub fn guest_acknowledge(&mut self, vcpu: usize) -> Option<IntId> {
        self.vifs[vcpu].acknowledge()
    }

    /// The guest deactivates `intid` (EOI with its EOImode = 0, or
    /// `ICV_DIR_EL1`) while running on `cpu`. With the HW bit the physical
    /// interrupt on `cpu` is deactivated too.
    pub fn guest_deactivate(&mut self, vcpu: usize, cpu: usize, intid: IntId) {
        if let Some(host) = self.vifs[vcpu].deactivate(intid)
            && let Some(state) = self.cpus[cpu].ppis.get_mut(host)
        {
            state.active = false;
        }
    }
}

/// What a model CPU's timer offers, as a backend reads it at start-up
/// (the core's `TimerHw` needs none of it).
///
/// `#[non_exhaustive]`: the model may report more features.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimerFeatures {
    /// The host runs with `HCR_EL2.E2H = 1`.
    pub vhe: bool,
    /// FEAT_ECV is implemented.
    pub ecv: bool,
    /// The counter frequency, `CNTFRQ_EL0`, in Hz.
    pub frequency_hz: u32,
}

/// [`TimerHw`] on one model CPU.
#[derive(Debug)]
pub struct SimTimer<'a> {
    now: Ticks,
    features: TimerFeatures,
    regs: &'a mut TimerRegs,
    pregs: &'a mut TimerRegs,
    ecv_enabled: &'a mut bool,
    log: &'a RefCell<AccessLog>,
}

impl SimTimer<'_> {
    fn record(&self, access: Access) {
        self.log.borrow_mut().record(access);
    }

    /// A CVAL or offset write under an enabled timer is out of order.
    fn note_enabled_write(&mut self) {
        if self.regs.ctl.is_enabled() {
            self.regs.ordering_violations = self.regs.ordering_violations.saturating_add(1);
        }
    }
}

impl SimTimer<'_> {
    /// What this CPU's timer offers (recorded as a `CNTFRQ_EL0`/ID
    /// register read).
    #[must_use]
    pub fn features(&self) -> TimerFeatures {
        self.record(Access::ReadFeatures);
        self.features
    }
}

impl TimerHw for SimTimer<'_> {
    fn physical_count(&self) -> Ticks {
        self.record(Access::ReadCount(self.now));
        self.now
    }

    fn vtimer_ctl(&self) -> TimerCtl {
        let ctl = self.regs.read_ctl(self.now);
        self.record(Access::ReadCtl(ctl));
        ctl
    }

    fn set_vtimer_ctl(&mut self, ctl: TimerCtl) {
        self.record(Access::WriteCtl(ctl));
        if self.regs.cval_unsynchronized {
            self.regs.ordering_violations = self.regs.ordering_violations.saturating_add(1);
        }
        self.regs.ctl = ctl.writable();
        self.regs.cval_unsynchronized = false;
    }

    fn vtimer_cval(&self) -> Ticks {
        self.record(Access::ReadCval(self.regs.cval));
        self.regs.cval
    }

    fn set_vtimer_cval(&mut self, cval: Ticks) {
        self.record(Access::WriteCval(cval));
        self.note_enabled_write();
        self.regs.cval = cval;
        self.regs.cval_unsynchronized = true;
    }

    fn set_virtual_offset(&mut self, offset: Ticks) {
        self.record(Access::WriteOffset(offset));
        self.note_enabled_write();
        self.regs.offset = offset;
    }

    fn barrier(&mut self) {
        self.record(Access::Barrier);
        self.regs.cval_unsynchronized = false;
        self.pregs.cval_unsynchronized = false;
    }

    fn set_el1_physical_access(&mut self, allowed: bool) {
        self.record(Access::WriteEl1PhysicalAccess(allowed));
        self.regs.el1_physical_access = allowed;
    }

    fn ptimer_ctl(&self) -> TimerCtl {
        let mut regs = *self.pregs;
        if !*self.ecv_enabled {
            regs.offset = Ticks::ZERO;
        }
        let ctl = regs.read_ctl(self.now);
        self.record(Access::ReadPtimerCtl(ctl));
        ctl
    }

    fn set_ptimer_ctl(&mut self, ctl: TimerCtl) {
        self.record(Access::WritePtimerCtl(ctl));
        if self.pregs.cval_unsynchronized {
            self.pregs.ordering_violations = self.pregs.ordering_violations.saturating_add(1);
        }
        self.pregs.ctl = ctl.writable();
        self.pregs.cval_unsynchronized = false;
    }

    fn ptimer_cval(&self) -> Ticks {
        self.record(Access::ReadPtimerCval(self.pregs.cval));
        self.pregs.cval
    }

    fn set_ptimer_cval(&mut self, cval: Ticks) {
        self.record(Access::WritePtimerCval(cval));
        if self.pregs.ctl.is_enabled() {
            self.pregs.ordering_violations = self.pregs.ordering_violations.saturating_add(1);
        }
        self.pregs.cval = cval;
        self.pregs.cval_unsynchronized = true;
    }

    fn has_physical_offset(&self) -> bool {
        self.record(Access::ReadFeatures);
        self.features.ecv
    }

    fn set_physical_offset(&mut self, offset: Ticks) {
        self.record(Access::WritePhysicalOffset(offset));
        // The register does not exist without FEAT_ECV: counted as an
        // ordering violation (the core must never do it), nothing changes.
        if !self.features.ecv || self.pregs.ctl.is_enabled() {
            self.pregs.ordering_violations = self.pregs.ordering_violations.saturating_add(1);
        }
        if self.features.ecv {
            self.pregs.offset = offset;
            *self.ecv_enabled = offset != Ticks::ZERO;
        }
    }
}

/// [`IrqChip`] on one model CPU's PPIs and one vCPU's virtual interface.
/// Fails only where [`Machine::inject_chip_fault`] says (a failing call
/// changes nothing and is not logged).
#[derive(Debug)]
pub struct SimGic<'a> {
    ppis: &'a mut Ppis,
    vif: &'a mut VirtualInterface,
    log: &'a RefCell<AccessLog>,
    fault: &'a ChipFault,
}

impl SimGic<'_> {
    fn record(&self, access: Access) {
        self.log.borrow_mut().record(access);
    }

    fn check(&self) -> Result<(), SimChipError> {
        if self.fault.strike() {
            Err(SimChipError)
        } else {
            Ok(())
        }
    }
}

impl IrqChip for SimGic<'_> {
    type Error = SimChipError;

    fn set_host_active(&mut self, ppi: IntId, active: bool) -> Result<(), SimChipError> {
        self.check()?;
        self.record(Access::SetHostActive { ppi, active });
        if let Some(state) = self.ppis.get_mut(ppi) {
            state.active = active;
        }
        Ok(())
    }

    fn set_host_masked(&mut self, ppi: IntId, masked: bool) -> Result<(), SimChipError> {
        self.check()?;
        self.record(Access::SetHostMasked { ppi, masked });
        if let Some(state) = self.ppis.get_mut(ppi) {
            state.enabled = !masked;
        }
        Ok(())
    }

    fn set_virtual_level(&mut self, intid: IntId, level: bool) -> Result<(), SimChipError> {
        self.check()?;
        self.record(Access::SetVirtualLevel { intid, level });
        self.vif.set_level(intid, level);
        Ok(())
    }

    fn virtual_active(&self, intid: IntId) -> Result<bool, SimChipError> {
        self.check()?;
        let active = self.vif.get(intid).state.is_active();
        self.record(Access::ReadVirtualActive { intid, active });
        Ok(active)
    }

    fn virtual_state(&self, intid: IntId) -> Result<arch_timer_virt::VirtualState, SimChipError> {
        use arch_timer_virt::VirtualState as State;
        self.check()?;
        let state = match self.vif.get(intid).state {
            crate::gic::VirtualState::Inactive => State::Inactive,
            crate::gic::VirtualState::Pending => State::Pending,
            crate::gic::VirtualState::Active => State::Active,
            crate::gic::VirtualState::ActivePending => State::PendingActive,
        };
        self.record(Access::ReadVirtualState { intid, state });
        Ok(state)
    }

    fn map_virtual(&mut self, intid: IntId, host: IntId) -> Result<(), SimChipError> {
        self.check()?;
        self.record(Access::MapVirtual { intid, host });
        if let Some(irq) = self.vif.get_mut(intid) {
            irq.hw = Some(host);
        }
        Ok(())
    }

    fn unmap_virtual(&mut self, intid: IntId) -> Result<(), SimChipError> {
        self.check()?;
        self.record(Access::UnmapVirtual(intid));
        if let Some(irq) = self.vif.get_mut(intid) {
            irq.hw = None;
        }
        Ok(())
    }
}

/// [`SoftTimers`] of one vCPU: deadlines the host model fires when the
/// counter passes them.
#[derive(Debug)]
pub struct SimSoftTimers<'a> {
    soft: &'a mut SoftTimerState,
    log: &'a RefCell<AccessLog>,
}

impl SoftTimers for SimSoftTimers<'_> {
    fn arm(&mut self, timer: SoftTimer, at: Ticks) {
        self.log
            .borrow_mut()
            .record(Access::ArmSoftTimer { timer, at });
        *self.soft.slot(timer) = Some(at);
    }

    fn cancel(&mut self, timer: SoftTimer) {
        self.log.borrow_mut().record(Access::CancelSoftTimer(timer));
        *self.soft.slot(timer) = None;
    }
}

impl Machine {
    /// Disarms vCPU `vcpu`'s soft `timer` because it fired, without logging
    /// (the host's timer interrupt did it, not the library).
    pub fn soft_timer_fired(&mut self, vcpu: usize, timer: SoftTimer) {
        *self.soft[vcpu].slot(timer) = None;
    }

    /// Hypervisor timer writes out of the restore order, on every CPU and
    /// both timers (see [`TimerRegs::ordering_violations`]; for the
    /// physical timer also a `CNTPOFF_EL2` write without FEAT_ECV).
    #[must_use]
    pub fn ordering_violations(&self) -> u64 {
        self.cpus
            .iter()
            .map(|c| {
                c.timer
                    .ordering_violations
                    .saturating_add(c.ptimer.ordering_violations)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    /// Frequencies under test: a common SoC crystal, QEMU 7.2's `virt`, and
    /// the Armv8.6+ mandated 1 GHz.
    const FREQUENCIES_HZ: [u32; 3] = [24_000_000, 62_500_000, 1_000_000_000];

    #[test]
    fn wall_time_scales_with_the_configured_frequency() {
        for hz in FREQUENCIES_HZ {
            let mut m = Machine::new(1, 1, hz);
            assert_eq!(m.frequency_hz(), hz);
            assert_eq!(m.ports(0, 0).timer.features().frequency_hz, hz);
            assert_eq!(m.ticks_for(Duration::from_secs(1)), u64::from(hz));
            assert_eq!(
                m.ticks_for(Duration::from_millis(3)),
                u64::from(hz) * 3 / 1000
            );
            assert_eq!(m.ticks_for(Duration::ZERO), 0);
            assert_eq!(m.ticks_for(Duration::MAX), u64::MAX, "saturates");
        }
    }

    #[test]
    fn an_injected_chip_fault_fails_one_call_then_disarms() {
        let mut m = Machine::new(1, 1, FREQUENCIES_HZ[0]);
        m.inject_chip_fault(Some(1));
        assert!(m.chip_fault_armed());
        let mut p = m.ports(0, 0);
        let ppi = IntId::VIRTUAL_TIMER;
        assert_eq!(p.gic.set_host_active(ppi, true), Ok(()));
        assert_eq!(p.gic.set_host_active(ppi, false), Err(SimChipError));
        assert_eq!(p.gic.set_host_masked(ppi, true), Ok(()));
        assert!(!m.chip_fault_armed());
        assert_eq!(m.chip_faults_fired(), 1);
        let state = m.cpu(0).ppis.get(ppi);
        assert!(state.active, "the failed call changed nothing");
        assert!(!state.enabled);
    }
}
