//! Every hardware access the hypervisor makes on the model, by kind:
//! [`Access`], [`Counters`] and [`AccessLog`].

use core::fmt;

use arch_timer_virt::{IntId, SoftTimer, Ticks, TimerCtl, VirtualState};

/// One access to the model's hardware, as the hypervisor (the library or
/// the host model around it) made it. Guest accesses are not logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Access {
    /// `SimTimer::features` (`CNTFRQ_EL0`, ID registers).
    ReadFeatures,
    /// `CNTPCT_EL0` read, with the value returned.
    ReadCount(Ticks),
    /// `CNTV_CTL` read, with the value returned (ISTATUS included).
    ReadCtl(TimerCtl),
    /// `CNTV_CTL` write.
    WriteCtl(TimerCtl),
    /// `CNTV_CVAL` read.
    ReadCval(Ticks),
    /// `CNTV_CVAL` write.
    WriteCval(Ticks),
    /// `CNTVOFF_EL2` write.
    WriteOffset(Ticks),
    /// `isb`.
    Barrier,
    /// `CNTHCTL_EL2` write of the EL1 physical timer/counter access bits.
    WriteEl1PhysicalAccess(bool),
    /// EL1 `CNTP_CTL` read, with the value returned (ISTATUS included).
    ReadPtimerCtl(TimerCtl),
    /// EL1 `CNTP_CTL` write.
    WritePtimerCtl(TimerCtl),
    /// EL1 `CNTP_CVAL` read.
    ReadPtimerCval(Ticks),
    /// EL1 `CNTP_CVAL` write.
    WritePtimerCval(Ticks),
    /// `CNTPOFF_EL2` write (and `CNTHCTL_EL2.ECV`).
    WritePhysicalOffset(Ticks),
    /// Physical PPI active state set or cleared (`ISACTIVER`/`ICACTIVER`).
    SetHostActive {
        /// The PPI.
        ppi: IntId,
        /// Set (`true`) or cleared.
        active: bool,
    },
    /// Physical PPI masked or unmasked (`ICENABLER`/`ISENABLER`).
    SetHostMasked {
        /// The PPI.
        ppi: IntId,
        /// Masked (`true`) or unmasked.
        masked: bool,
    },
    /// The host acknowledged a physical interrupt (`ICC_IAR1_EL1`/`GICC_IAR`).
    HostAcknowledge(IntId),
    /// The host dropped its running priority (`ICC_EOIR1_EL1`/`GICC_EOIR`
    /// with EOImode = 1).
    HostPriorityDrop(IntId),
    /// The host deactivated a physical interrupt (`ICC_DIR_EL1`/`GICC_DIR`).
    HostDeactivate(IntId),
    /// A vCPU's virtual line level set (a list register written).
    SetVirtualLevel {
        /// The virtual INTID.
        intid: IntId,
        /// The new level.
        level: bool,
    },
    /// A vCPU's virtual interrupt's active state read (a list register read).
    ReadVirtualActive {
        /// The virtual INTID.
        intid: IntId,
        /// What was returned.
        active: bool,
    },
    /// A vCPU's virtual interrupt's state read (its list register read).
    ReadVirtualState {
        /// The virtual INTID.
        intid: IntId,
        /// What was returned.
        state: VirtualState,
    },
    /// A virtual INTID mapped to a physical one (HW bit).
    MapVirtual {
        /// The virtual INTID.
        intid: IntId,
        /// The physical INTID.
        host: IntId,
    },
    /// A virtual INTID unmapped.
    UnmapVirtual(IntId),
    /// A host software timer armed.
    ArmSoftTimer {
        /// Which one.
        timer: SoftTimer,
        /// Its deadline on the physical counter.
        at: Ticks,
    },
    /// A host software timer cancelled.
    CancelSoftTimer(SoftTimer),
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::ReadFeatures => write!(f, "read timer features"),
            Self::ReadCount(t) => write!(f, "read  CNTPCT_EL0   = {}", t.get()),
            Self::ReadCtl(c) => write!(f, "read  CNTV_CTL     = {c:?}"),
            Self::WriteCtl(c) => write!(f, "write CNTV_CTL     <- {c:?}"),
            Self::ReadCval(t) => write!(f, "read  CNTV_CVAL    = {}", t.get()),
            Self::WriteCval(t) => write!(f, "write CNTV_CVAL    <- {}", t.get()),
            Self::WriteOffset(t) => write!(f, "write CNTVOFF_EL2  <- {}", t.get()),
            Self::Barrier => write!(f, "isb"),
            Self::WriteEl1PhysicalAccess(a) => {
                let what = if a { "allow" } else { "trap" };
                write!(f, "write CNTHCTL_EL2  <- {what} EL1 physical timer/counter")
            }
            Self::ReadPtimerCtl(c) => write!(f, "read  CNTP_CTL     = {c:?}"),
            Self::WritePtimerCtl(c) => write!(f, "write CNTP_CTL     <- {c:?}"),
            Self::ReadPtimerCval(t) => write!(f, "read  CNTP_CVAL    = {}", t.get()),
            Self::WritePtimerCval(t) => write!(f, "write CNTP_CVAL    <- {}", t.get()),
            Self::WritePhysicalOffset(t) => write!(f, "write CNTPOFF_EL2  <- {}", t.get()),
            Self::SetHostActive { ppi, active } => {
                let what = if active { "set" } else { "clear" };
                write!(f, "GIC   {what} active, physical {ppi}")
            }
            Self::SetHostMasked { ppi, masked } => {
                let what = if masked { "mask" } else { "unmask" };
                write!(f, "GIC   {what} physical {ppi}")
            }
            Self::HostAcknowledge(i) => write!(f, "GIC   acknowledge physical {i}"),
            Self::HostPriorityDrop(i) => write!(f, "GIC   priority drop (EOI) physical {i}"),
            Self::HostDeactivate(i) => write!(f, "GIC   deactivate physical {i}"),
            Self::SetVirtualLevel { intid, level } => {
                let what = if level { "raise" } else { "lower" };
                write!(f, "vGIC  {what} virtual {intid}")
            }
            Self::ReadVirtualActive { intid, active } => {
                write!(f, "vGIC  read active, virtual {intid} = {active}")
            }
            Self::ReadVirtualState { intid, state } => {
                write!(f, "vGIC  read state, virtual {intid} = {state:?}")
            }
            Self::MapVirtual { intid, host } => {
                write!(f, "vGIC  map virtual {intid} to physical {host} (HW bit)")
            }
            Self::UnmapVirtual(i) => write!(f, "vGIC  unmap virtual {i}"),
            Self::ArmSoftTimer { timer, at } => {
                write!(f, "host  arm {timer:?} soft timer at {}", at.get())
            }
            Self::CancelSoftTimer(t) => write!(f, "host  cancel {t:?} soft timer"),
        }
    }
}

/// How many accesses of each kind were made.
///
/// Subtract two snapshots ([`Counters::since`]) to count the accesses of
/// one operation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    /// `SimTimer::features` calls.
    pub feature_reads: u64,
    /// `CNTPCT_EL0` reads.
    pub count_reads: u64,
    /// `CNTV_CTL` reads.
    pub ctl_reads: u64,
    /// `CNTV_CTL` writes.
    pub ctl_writes: u64,
    /// `CNTV_CVAL` reads.
    pub cval_reads: u64,
    /// `CNTV_CVAL` writes.
    pub cval_writes: u64,
    /// `CNTVOFF_EL2` writes.
    pub offset_writes: u64,
    /// `isb` barriers.
    pub barriers: u64,
    /// `CNTHCTL_EL2` writes.
    pub el1_access_writes: u64,
    /// EL1 `CNTP_CTL` reads.
    pub pctl_reads: u64,
    /// EL1 `CNTP_CTL` writes.
    pub pctl_writes: u64,
    /// EL1 `CNTP_CVAL` reads.
    pub pcval_reads: u64,
    /// EL1 `CNTP_CVAL` writes.
    pub pcval_writes: u64,
    /// `CNTPOFF_EL2` writes.
    pub poffset_writes: u64,
    /// Physical active state writes.
    pub host_active_writes: u64,
    /// Physical mask/unmask writes.
    pub host_mask_writes: u64,
    /// Host acknowledges.
    pub host_acknowledges: u64,
    /// Host priority drops.
    pub host_priority_drops: u64,
    /// Host deactivations.
    pub host_deactivates: u64,
    /// Virtual level writes.
    pub virtual_level_writes: u64,
    /// Virtual active state reads.
    pub virtual_active_reads: u64,
    /// Virtual interrupt state reads.
    pub virtual_state_reads: u64,
    /// Virtual-to-physical mappings made.
    pub maps: u64,
    /// Mappings removed.
    pub unmaps: u64,
    /// Soft timers armed.
    pub soft_arms: u64,
    /// Soft timers cancelled.
    pub soft_cancels: u64,
}

impl Counters {
    /// Counts one access.
    pub const fn record(&mut self, access: &Access) {
        let field = match access {
            Access::ReadFeatures => &mut self.feature_reads,
            Access::ReadCount(_) => &mut self.count_reads,
            Access::ReadCtl(_) => &mut self.ctl_reads,
            Access::WriteCtl(_) => &mut self.ctl_writes,
            Access::ReadCval(_) => &mut self.cval_reads,
            Access::WriteCval(_) => &mut self.cval_writes,
            Access::WriteOffset(_) => &mut self.offset_writes,
            Access::Barrier => &mut self.barriers,
            Access::WriteEl1PhysicalAccess(_) => &mut self.el1_access_writes,
            Access::ReadPtimerCtl(_) => &mut self.pctl_reads,
            Access::WritePtimerCtl(_) => &mut self.pctl_writes,
            Access::ReadPtimerCval(_) => &mut self.pcval_reads,
            Access::WritePtimerCval(_) => &mut self.pcval_writes,
            Access::WritePhysicalOffset(_) => &mut self.poffset_writes,
            Access::SetHostActive { .. } => &mut self.host_active_writes,
            Access::SetHostMasked { .. } => &mut self.host_mask_writes,
            Access::HostAcknowledge(_) => &mut self.host_acknowledges,
            Access::HostPriorityDrop(_) => &mut self.host_priority_drops,
            Access::HostDeactivate(_) => &mut self.host_deactivates,
            Access::SetVirtualLevel { .. } => &mut self.virtual_level_writes,
            Access::ReadVirtualActive { .. } => &mut self.virtual_active_reads,
            Access::ReadVirtualState { .. } => &mut self.virtual_state_reads,
            Access::MapVirtual { .. } => &mut self.maps,
            Access::UnmapVirtual(_) => &mut self.unmaps,
            Access::ArmSoftTimer { .. } => &mut self.soft_arms,
            Access::CancelSoftTimer(_) => &mut self.soft_cancels,
        };
        *field = field.saturating_add(1);
    }

    /// Reads and writes of the virtual timer's own registers: CTL, CVAL,
    /// `CNTVOFF_EL2`, and the barrier between them.
    #[must_use]
    pub const fn vtimer_register_accesses(&self) -> u64 {
        self.ctl_reads
            .saturating_add(self.ctl_writes)
            .saturating_add(self.cval_reads)
            .saturating_add(self.cval_writes)
            .saturating_add(self.offset_writes)
            .saturating_add(self.barriers)
    }

    /// Writes among [`vtimer_register_accesses`](Self::vtimer_register_accesses)
    /// (barriers included).
    #[must_use]
    pub const fn vtimer_register_writes(&self) -> u64 {
        self.ctl_writes
            .saturating_add(self.cval_writes)
            .saturating_add(self.offset_writes)
            .saturating_add(self.barriers)
    }

    /// Reads and writes of the EL1 physical timer's own registers: CTL,
    /// CVAL and `CNTPOFF_EL2` (barriers are counted with the virtual
    /// timer's).
    #[must_use]
    pub const fn ptimer_register_accesses(&self) -> u64 {
        self.pctl_reads
            .saturating_add(self.pctl_writes)
            .saturating_add(self.pcval_reads)
            .saturating_add(self.pcval_writes)
            .saturating_add(self.poffset_writes)
    }

    /// Every timer system register access: both timers', plus
    /// `CNTPCT_EL0`, `CNTHCTL_EL2` and feature reads.
    #[must_use]
    pub const fn timer_accesses(&self) -> u64 {
        self.vtimer_register_accesses()
            .saturating_add(self.ptimer_register_accesses())
            .saturating_add(self.count_reads)
            .saturating_add(self.el1_access_writes)
            .saturating_add(self.feature_reads)
    }

    /// Every interrupt controller access, host and virtual side.
    #[must_use]
    pub const fn gic_accesses(&self) -> u64 {
        self.host_active_writes
            .saturating_add(self.host_mask_writes)
            .saturating_add(self.host_acknowledges)
            .saturating_add(self.host_priority_drops)
            .saturating_add(self.host_deactivates)
            .saturating_add(self.virtual_level_writes)
            .saturating_add(self.virtual_active_reads)
            .saturating_add(self.maps)
            .saturating_add(self.unmaps)
    }

    /// Timer plus interrupt controller accesses (soft timers are host
    /// software, not hardware, and are left out).
    #[must_use]
    pub const fn hardware_accesses(&self) -> u64 {
        self.timer_accesses().saturating_add(self.gic_accesses())
    }

    /// Soft timer arms and cancels.
    #[must_use]
    pub const fn soft_timer_ops(&self) -> u64 {
        self.soft_arms.saturating_add(self.soft_cancels)
    }

    /// The accesses made since the snapshot `earlier`.
    #[must_use]
    pub fn since(&self, earlier: &Self) -> Self {
        let d = |now: u64, then: u64| now.saturating_sub(then);
        Self {
            feature_reads: d(self.feature_reads, earlier.feature_reads),
            count_reads: d(self.count_reads, earlier.count_reads),
            ctl_reads: d(self.ctl_reads, earlier.ctl_reads),
            ctl_writes: d(self.ctl_writes, earlier.ctl_writes),
            cval_reads: d(self.cval_reads, earlier.cval_reads),
            cval_writes: d(self.cval_writes, earlier.cval_writes),
            offset_writes: d(self.offset_writes, earlier.offset_writes),
            barriers: d(self.barriers, earlier.barriers),
            el1_access_writes: d(self.el1_access_writes, earlier.el1_access_writes),
            pctl_reads: d(self.pctl_reads, earlier.pctl_reads),
            pctl_writes: d(self.pctl_writes, earlier.pctl_writes),
            pcval_reads: d(self.pcval_reads, earlier.pcval_reads),
            pcval_writes: d(self.pcval_writes, earlier.pcval_writes),
            poffset_writes: d(self.poffset_writes, earlier.poffset_writes),
            host_active_writes: d(self.host_active_writes, earlier.host_active_writes),
            host_mask_writes: d(self.host_mask_writes, earlier.host_mask_writes),
            host_acknowledges: d(self.host_acknowledges, earlier.host_acknowledges),
            host_priority_drops: d(self.host_priority_drops, earlier.host_priority_drops),
            host_deactivates: d(self.host_deactivates, earlier.host_deactivates),
            virtual_level_writes: d(self.virtual_level_writes, earlier.virtual_level_writes),
            virtual_active_reads: d(self.virtual_active_reads, earlier.virtual_active_reads),
            virtual_state_reads: d(self.virtual_state_reads, earlier.virtual_state_reads),
            maps: d(self.maps, earlier.maps),
            unmaps: d(self.unmaps, earlier.unmaps),
            soft_arms: d(self.soft_arms, earlier.soft_arms),
            soft_cancels: d(self.soft_cancels, earlier.soft_cancels),
        }
    }
}

impl fmt::Display for Counters {
    /// The non-zero counters, as `name=n` separated by spaces, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fields = [
            ("features", self.feature_reads),
            ("CNTPCT", self.count_reads),
            ("CTL.r", self.ctl_reads),
            ("CTL.w", self.ctl_writes),
            ("CVAL.r", self.cval_reads),
            ("CVAL.w", self.cval_writes),
            ("CNTVOFF.w", self.offset_writes),
            ("isb", self.barriers),
            ("CNTHCTL.w", self.el1_access_writes),
            ("CNTP_CTL.r", self.pctl_reads),
            ("CNTP_CTL.w", self.pctl_writes),
            ("CNTP_CVAL.r", self.pcval_reads),
            ("CNTP_CVAL.w", self.pcval_writes),
            ("CNTPOFF.w", self.poffset_writes),
            ("active.w", self.host_active_writes),
            ("mask.w", self.host_mask_writes),
            ("ack", self.host_acknowledges),
            ("eoi", self.host_priority_drops),
            ("dir", self.host_deactivates),
            ("vlevel.w", self.virtual_level_writes),
            ("vactive.r", self.virtual_active_reads),
            ("vstate.r", self.virtual_state_reads),
            ("map", self.maps),
            ("unmap", self.unmaps),
            ("soft.arm", self.soft_arms),
            ("soft.cancel", self.soft_cancels),
        ];
        let mut any = false;
        for (name, n) in fields {
            if n != 0 {
                if any {
                    f.write_str(" ")?;
                }
                write!(f, "{name}={n}")?;
                any = true;
            }
        }
        if !any {
            f.write_str("none")?;
        }
        Ok(())
    }
}

/// The machine's access log: [`Counters`] always, and the accesses in
/// order while tracing is on ([`AccessLog::set_tracing`]).
#[derive(Clone, Debug, Default)]
pub struct AccessLog {
    counters: Counters,
    tracing: bool,
    trace: Vec<Access>,
}

impl AccessLog {
    /// Records one access.
    pub fn record(&mut self, access: Access) {
        self.counters.record(&access);
        if self.tracing {
            self.trace.push(access);
        }
    }

    /// The counts so far.
    #[must_use]
    pub const fn counters(&self) -> Counters {
        self.counters
    }

    /// Turns keeping the accesses in order on or off.
    pub const fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
    }

    /// Takes the accesses traced since the last call.
    pub fn take_trace(&mut self) -> Vec<Access> {
        core::mem::take(&mut self.trace)
    }
}
