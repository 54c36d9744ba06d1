//! PSCI 1.0 for the guest, called with HVC (SMC Calling Convention; Arm
//! DEN0022 "Power State Coordination Interface").
//!
//! [`Call::decode`] reads the function ID and arguments from `x0..x3`;
//! [`handle`] decides, from the vCPUs' power states, what the call
//! returns and what the hypervisor must do (start or stop a vCPU, end the
//! run). Unknown function IDs return `NOT_SUPPORTED` and the guest runs on.

/// `PSCI_VERSION`.
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// `CPU_SUSPEND` (SMC32 / SMC64); not offered.
pub const CPU_SUSPEND: [u32; 2] = [0x8400_0001, 0xc400_0001];
/// `CPU_OFF`.
pub const CPU_OFF: u32 = 0x8400_0002;
/// `CPU_ON` (SMC32 / SMC64).
pub const CPU_ON: [u32; 2] = [0x8400_0003, 0xc400_0003];
/// `AFFINITY_INFO` (SMC32 / SMC64).
pub const AFFINITY_INFO: [u32; 2] = [0x8400_0004, 0xc400_0004];
/// `MIGRATE_INFO_TYPE`.
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// `SYSTEM_OFF`.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// `SYSTEM_RESET`.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// `PSCI_FEATURES`.
pub const PSCI_FEATURES: u32 = 0x8400_000a;
/// SMCCC `SMCCC_VERSION`.
pub const SMCCC_VERSION: u32 = 0x8000_0000;

/// The PSCI version offered: 1.0.
pub const VERSION_1_0: u32 = 0x0001_0000;
/// The SMCCC version offered: 1.0 (no `SMCCC_ARCH_FEATURES`).
pub const SMCCC_1_0: u32 = 0x0001_0000;
/// `MIGRATE_INFO_TYPE`: no trusted OS, nothing to migrate.
pub const NO_TRUSTED_OS: u64 = 2;

/// PSCI return codes (signed, in `x0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum PsciError {
    /// `NOT_SUPPORTED`.
    NotSupported = -1,
    /// `INVALID_PARAMETERS`.
    InvalidParameters = -2,
    /// `ALREADY_ON`.
    AlreadyOn = -4,
    /// `ON_PENDING`.
    OnPending = -5,
    /// `INVALID_ADDRESS`.
    InvalidAddress = -9,
}

impl PsciError {
    /// The value returned in `x0`, sign-extended to 64 bits.
    #[must_use]
    pub const fn to_x0(self) -> u64 {
        (self as i64).cast_unsigned()
    }
}

/// A vCPU's power state (`AFFINITY_INFO`'s answers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    /// Running or runnable.
    On,
    /// Off: never started, or `CPU_OFF`.
    Off,
    /// `CPU_ON` accepted, not yet run.
    OnPending,
}

impl Power {
    const fn affinity_info(self) -> u64 {
        match self {
            Self::On => 0,
            Self::Off => 1,
            Self::OnPending => 2,
        }
    }
}

/// A decoded call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `PSCI_VERSION`.
    Version,
    /// `PSCI_FEATURES` of a function ID.
    Features(u32),
    /// `CPU_ON`: target MPIDR, entry point, context ID (`x0` at entry).
    CpuOn {
        /// The target's MPIDR affinity fields.
        target: u64,
        /// Where it starts (guest-physical, MMU off).
        entry: u64,
        /// Its `x0` at entry.
        context: u64,
    },
    /// `CPU_OFF`.
    CpuOff,
    /// `AFFINITY_INFO`.
    AffinityInfo {
        /// The target's MPIDR affinity fields.
        target: u64,
        /// The lowest affinity level asked about.
        level: u64,
    },
    /// `MIGRATE_INFO_TYPE`.
    MigrateInfoType,
    /// `SYSTEM_OFF`.
    SystemOff,
    /// `SYSTEM_RESET`.
    SystemReset,
    /// `SMCCC_VERSION`.
    SmcccVersion,
    /// Any other function ID (`CPU_SUSPEND` included).
    Unknown(u32),
}

impl Call {
    /// Decodes the function ID in `w0` and its arguments; SMC32 calls
    /// (bit 30 clear) take 32-bit arguments.
    #[must_use]
    pub fn decode(x: [u64; 4]) -> Self {
        #[allow(clippy::cast_possible_truncation)] // SMCCC: the ID is w0.
        let id = x[0] as u32;
        let smc64 = id & (1 << 30) != 0;
        let arg = |v: u64| if smc64 { v } else { v & 0xffff_ffff };
        match id {
            PSCI_VERSION => Self::Version,
            #[allow(clippy::cast_possible_truncation)]
            PSCI_FEATURES => Self::Features(x[1] as u32),
            CPU_OFF => Self::CpuOff,
            _ if CPU_ON.contains(&id) => Self::CpuOn {
                target: arg(x[1]),
                entry: arg(x[2]),
                context: arg(x[3]),
            },
            _ if AFFINITY_INFO.contains(&id) => Self::AffinityInfo {
                target: arg(x[1]),
                level: arg(x[2]),
            },
            MIGRATE_INFO_TYPE => Self::MigrateInfoType,
            SYSTEM_OFF => Self::SystemOff,
            SYSTEM_RESET => Self::SystemReset,
            SMCCC_VERSION => Self::SmcccVersion,
            other => Self::Unknown(other),
        }
    }
}

/// What the hypervisor does with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Return this value in `x0` and resume the caller.
    Return(u64),
    /// Return `SUCCESS` to the caller and start vCPU `vcpu` at `entry`
    /// with `x0 = context`, MMU off (its power state becomes
    /// [`Power::OnPending`] until it runs).
    Start {
        /// The vCPU index (MPIDR Aff0).
        vcpu: usize,
        /// Its entry point.
        entry: u64,
        /// Its `x0`.
        context: u64,
    },
    /// Stop the calling vCPU; it no longer runs until a `CPU_ON`.
    Stop,
    /// The guest powered the machine off: end the run with a verdict.
    PowerOff,
    /// The guest asked for a reset: end the run (this hypervisor does not
    /// reboot a guest).
    Reset,
}

/// The vCPU index an MPIDR names: Aff0, with Aff1..Aff3 zero (bits 31 and
/// 30, `RES1` and `U`, ignored).
#[must_use]
pub fn vcpu_of(mpidr: u64) -> Option<usize> {
    const AFF_HIGH: u64 = (0xff << 32) | (0xff << 16) | (0xff << 8);
    if mpidr & AFF_HIGH != 0 {
        return None;
    }
    usize::try_from(mpidr & 0xff).ok()
}

/// Decides `call` for the vCPUs whose states are `power` (index = MPIDR
/// Aff0); an entry point outside `ram` is refused.
#[must_use]
pub fn handle(call: Call, power: &[Power], ram: core::ops::Range<u64>) -> Outcome {
    let err = |e: PsciError| Outcome::Return(e.to_x0());
    match call {
        Call::Version => Outcome::Return(u64::from(VERSION_1_0)),
        Call::SmcccVersion => Outcome::Return(u64::from(SMCCC_1_0)),
        Call::Features(id) => {
            let offered = [
                PSCI_VERSION,
                CPU_OFF,
                MIGRATE_INFO_TYPE,
                SYSTEM_OFF,
                SYSTEM_RESET,
                PSCI_FEATURES,
                SMCCC_VERSION,
            ]
            .contains(&id)
                || CPU_ON.contains(&id)
                || AFFINITY_INFO.contains(&id);
            if offered {
                Outcome::Return(0)
            } else {
                err(PsciError::NotSupported)
            }
        }
        Call::CpuOn {
            target,
            entry,
            context,
        } => {
            let Some((vcpu, state)) = vcpu_of(target).and_then(|v| power.get(v).map(|s| (v, *s)))
            else {
                return err(PsciError::InvalidParameters);
            };
            match state {
                Power::On => err(PsciError::AlreadyOn),
                Power::OnPending => err(PsciError::OnPending),
                Power::Off if !ram.contains(&entry) || entry % 4 != 0 => {
                    err(PsciError::InvalidAddress)
                }
                Power::Off => Outcome::Start {
                    vcpu,
                    entry,
                    context,
                },
            }
        }
        Call::CpuOff => Outcome::Stop,
        Call::AffinityInfo { target, level } => {
            if level != 0 {
                return err(PsciError::InvalidParameters);
            }
            match vcpu_of(target).and_then(|v| power.get(v)) {
                Some(state) => Outcome::Return(state.affinity_info()),
                None => err(PsciError::InvalidParameters),
            }
        }
        Call::MigrateInfoType => Outcome::Return(NO_TRUSTED_OS),
        Call::SystemOff => Outcome::PowerOff,
        Call::SystemReset => Outcome::Reset,
        Call::Unknown(_) => err(PsciError::NotSupported),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: core::ops::Range<u64> = 0x4800_0000..0x5800_0000;

    fn call(x0: u64, x1: u64, x2: u64, x3: u64) -> Outcome {
        handle(
            Call::decode([x0, x1, x2, x3]),
            &[Power::On, Power::Off],
            RAM,
        )
    }

    #[test]
    fn version_features_and_migrate_info() {
        assert_eq!(call(0x8400_0000, 0, 0, 0), Outcome::Return(0x1_0000));
        assert_eq!(call(0x8400_000a, 0xc400_0003, 0, 0), Outcome::Return(0));
        assert_eq!(call(0x8400_000a, 0x8400_0008, 0, 0), Outcome::Return(0));
        assert_eq!(
            call(0x8400_000a, 0xc400_0001, 0, 0),
            Outcome::Return(u64::MAX),
            "CPU_SUSPEND is not offered"
        );
        assert_eq!(call(0x8400_0006, 0, 0, 0), Outcome::Return(2));
        assert_eq!(call(0x8000_0000, 0, 0, 0), Outcome::Return(0x1_0000));
    }

    #[test]
    fn unknown_ids_are_not_supported_and_the_run_goes_on() {
        for id in [
            0xc400_0001,
            0x8400_0001,
            0x8400_0012,
            0x8000_0001,
            0xc600_0000,
            7,
        ] {
            assert_eq!(call(id, 0, 0, 0), Outcome::Return(u64::MAX), "{id:#x}");
        }
        // The upper half of x0 is not part of the function ID.
        assert_eq!(
            call(0xdead_0000_8400_0000, 0, 0, 0),
            Outcome::Return(0x1_0000)
        );
    }

    #[test]
    fn cpu_on_starts_an_off_vcpu_at_a_ram_entry() {
        assert_eq!(
            call(0xc400_0003, 1, 0x4801_0000, 0x1234),
            Outcome::Start {
                vcpu: 1,
                entry: 0x4801_0000,
                context: 0x1234
            }
        );
        // MPIDR's RES1 bit 31 is ignored.
        assert!(matches!(
            call(0xc400_0003, 0x8000_0001, 0x4801_0000, 0),
            Outcome::Start { vcpu: 1, .. }
        ));
        let e = |e: PsciError| Outcome::Return(e.to_x0());
        assert_eq!(
            call(0xc400_0003, 0, 0x4801_0000, 0),
            e(PsciError::AlreadyOn)
        );
        assert_eq!(
            call(0xc400_0003, 2, 0x4801_0000, 0),
            e(PsciError::InvalidParameters)
        );
        assert_eq!(
            call(0xc400_0003, 0x100, 0x4801_0000, 0),
            e(PsciError::InvalidParameters)
        );
        assert_eq!(
            call(0xc400_0003, 1, 0x1000, 0),
            e(PsciError::InvalidAddress)
        );
        assert_eq!(
            call(0xc400_0003, 1, 0x4801_0002, 0),
            e(PsciError::InvalidAddress)
        );
        let pending = handle(
            Call::decode([0xc400_0003, 1, 0x4801_0000, 0]),
            &[Power::On, Power::OnPending],
            RAM,
        );
        assert_eq!(pending, e(PsciError::OnPending));
        // SMC32 CPU_ON: 32-bit arguments.
        assert!(matches!(
            call(0x8400_0003, 0xffff_ffff_0000_0001, 0x1_4801_0000, 0),
            Outcome::Start {
                vcpu: 1,
                entry: 0x4801_0000,
                ..
            }
        ));
    }

    #[test]
    fn affinity_info_reports_power_states() {
        assert_eq!(call(0xc400_0004, 0, 0, 0), Outcome::Return(0));
        assert_eq!(call(0xc400_0004, 1, 0, 0), Outcome::Return(1));
        let pending = handle(
            Call::decode([0xc400_0004, 1, 0, 0]),
            &[Power::On, Power::OnPending],
            RAM,
        );
        assert_eq!(pending, Outcome::Return(2));
        assert_eq!(
            call(0xc400_0004, 0, 1, 0),
            Outcome::Return(PsciError::InvalidParameters.to_x0())
        );
        assert_eq!(
            call(0xc400_0004, 5, 0, 0),
            Outcome::Return(PsciError::InvalidParameters.to_x0())
        );
    }

    #[test]
    fn off_reset_and_cpu_off() {
        assert_eq!(call(0x8400_0008, 0, 0, 0), Outcome::PowerOff);
        assert_eq!(call(0x8400_0009, 0, 0, 0), Outcome::Reset);
        assert_eq!(call(0x8400_0002, 0, 0, 0), Outcome::Stop);
    }
}
