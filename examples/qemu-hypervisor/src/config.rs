//! What one run does: [`RunConfig`], decoded from a word QEMU places in
//! guest RAM.
//!
//! QEMU cannot pass a command line to a bare-metal ELF, so the run is
//! selected with `-device loader,addr=0x47000000,data=0xA7GGMMSS,data-len=4`
//! (see [`CONFIG_ADDR`]): byte 3 is the magic `0xA7`, byte 2 the GIC
//! (`0` detect, `2`, `3`), byte 1 the host mode (`0` non-VHE, `1` VHE) and
//! byte 0 the [`Scenario`]. Without the word (no magic) the defaults apply.

use core::fmt;

/// Where the hypervisor reads its configuration word (QEMU `virt` RAM,
/// outside the image).
pub const CONFIG_ADDR: usize = 0x4700_0000;

/// The magic in the configuration word's top byte.
pub const CONFIG_MAGIC: u32 = 0xA7;

/// How the hypervisor itself runs at EL2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostMode {
    /// `HCR_EL2.E2H = 0`: the classic split, guest EL1 registers under their
    /// own names.
    #[default]
    NonVhe,
    /// `HCR_EL2.E2H = 1` (FEAT_VHE): guest EL1 registers reached as `*_EL12`.
    Vhe,
}

impl fmt::Display for HostMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NonVhe => "nvhe",
            Self::Vhe => "vhe",
        })
    }
}

/// Which interrupt controller version to drive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GicChoice {
    /// Look at `ID_AA64PFR0_EL1.GIC` and the distributor.
    #[default]
    Detect,
    /// GICv2 (memory-mapped CPU interface).
    V2,
    /// GICv3 (system register CPU interface).
    V3,
}

/// A guest program with its own pass/fail checks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scenario {
    /// Boots, prints through the hypercall, traps a WFI, finishes: checks
    /// the world switch without any timer.
    Hello,
    /// Periodic virtual timer interrupts, each checked against ISTATUS and
    /// CVAL.
    #[default]
    Periodic,
    /// CVAL/TVAL programming: TVAL 0 and negative, CVAL in the past and far
    /// future.
    Programming,
    /// IMASK and ENABLE toggled with an interrupt pending.
    Masking,
    /// WFI with only the virtual timer to wake the guest.
    WfiSleep,
    /// The emulated EL1 physical timer (`CNTP_*` trapped).
    PhysicalTimer,
    /// Two vCPUs time-sliced on one CPU.
    TwoVcpus,
    /// One vCPU migrated between two CPUs (`-smp 2`).
    Migration,
    /// A guest image loaded by QEMU at [`EXTERNAL_GUEST_ADDR`] (see the
    /// README's guest ABI), with its own checks.
    External,
    /// An unmodified arm64 Linux kernel and its initramfs, loaded by QEMU
    /// (`cargo xtask linux`; layout in [`platform::boot`](crate::platform::boot)).
    Linux,
    /// Each timer path driven 100 and 1100 times, its instructions and
    /// timer/GIC calls counted (`cargo xtask bench`; needs
    /// `-icount shift=0`).
    Perf,
    /// [`PhysicalTimer`](Self::PhysicalTimer)'s guest in a VM with a
    /// non-zero counter offset: its physical timer is direct with FEAT_ECV
    /// (`CNTPOFF_EL2`, QEMU 10) and emulated without (QEMU 7.2).
    PhysicalTimerOffset,
    /// [`Perf`](Self::Perf)'s paths on the EL1 physical timer, direct
    /// (`PhysTimerMode::Auto` at offset 0), the virtual timer armed far
    /// ahead beside it (`cargo xtask bench`; needs `-icount shift=0`).
    PerfPtimer,
}

/// Where an external guest image is loaded and entered (IPA = PA).
pub const EXTERNAL_GUEST_ADDR: u64 = 0x4800_0000;
/// The size of the external guest's memory from [`EXTERNAL_GUEST_ADDR`]
/// (QEMU must have RAM there: `-m 256M` or more).
pub const EXTERNAL_GUEST_SIZE: u64 = 0x0800_0000;

impl Scenario {
    /// Every scenario, in number order.
    pub const ALL: [Self; 13] = [
        Self::Hello,
        Self::Periodic,
        Self::Programming,
        Self::Masking,
        Self::WfiSleep,
        Self::PhysicalTimer,
        Self::TwoVcpus,
        Self::Migration,
        Self::External,
        Self::Linux,
        Self::Perf,
        Self::PhysicalTimerOffset,
        Self::PerfPtimer,
    ];

    /// Whether it is one of the perf scenarios ([`Perf`](Self::Perf),
    /// [`PerfPtimer`](Self::PerfPtimer)): the counted paths of
    /// `cargo xtask bench`.
    #[must_use]
    pub const fn is_perf(self) -> bool {
        matches!(self, Self::Perf | Self::PerfPtimer)
    }

    /// The scenario with number `n`.
    #[must_use]
    pub fn from_number(n: u8) -> Option<Self> {
        Self::ALL.get(usize::from(n)).copied()
    }

    /// Its name in the result line.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Hello => "hello",
            Self::Periodic => "periodic",
            Self::Programming => "programming",
            Self::Masking => "masking",
            Self::WfiSleep => "wfi-sleep",
            Self::PhysicalTimer => "ptimer",
            Self::PhysicalTimerOffset => "ptimer-offset",
            Self::TwoVcpus => "two-vcpus",
            Self::Migration => "migration",
            Self::External => "external",
            Self::Linux => "linux",
            Self::Perf => "perf",
            Self::PerfPtimer => "perf-ptimer",
        }
    }
}

/// One run's settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RunConfig {
    /// The guest program.
    pub scenario: Scenario,
    /// The hypervisor's own mode.
    pub host_mode: HostMode,
    /// The interrupt controller to drive.
    pub gic: GicChoice,
}

/// A configuration word that cannot be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// No scenario has this number.
    Scenario(u8),
    /// Host mode byte not 0 or 1.
    HostMode(u8),
    /// GIC byte not 0, 2 or 3.
    Gic(u8),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Scenario(n) => write!(f, "no scenario {n}"),
            Self::HostMode(n) => write!(f, "host mode {n} is neither 0 (nvhe) nor 1 (vhe)"),
            Self::Gic(n) => write!(f, "GIC {n} is none of 0 (detect), 2, 3"),
        }
    }
}

impl core::error::Error for ConfigError {}

impl RunConfig {
    /// Decodes the configuration word; a word without the magic gives the
    /// defaults (periodic scenario, non-VHE, GIC detected).
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming the field that has no meaning.
    pub fn decode(word: u32) -> Result<Self, ConfigError> {
        let [scenario, mode, gic, magic] = word.to_le_bytes();
        if u32::from(magic) != CONFIG_MAGIC {
            return Ok(Self::default());
        }
        let scenario = Scenario::from_number(scenario).ok_or(ConfigError::Scenario(scenario))?;
        let host_mode = match mode {
            0 => HostMode::NonVhe,
            1 => HostMode::Vhe,
            n => return Err(ConfigError::HostMode(n)),
        };
        let gic = match gic {
            0 => GicChoice::Detect,
            2 => GicChoice::V2,
            3 => GicChoice::V3,
            n => return Err(ConfigError::Gic(n)),
        };
        Ok(Self {
            scenario,
            host_mode,
            gic,
        })
    }

    /// The word [`decode`](Self::decode) turns back into `self`.
    #[must_use]
    pub fn encode(self) -> u32 {
        let scenario = Scenario::ALL
            .iter()
            .position(|s| *s == self.scenario)
            .and_then(|n| u8::try_from(n).ok())
            .unwrap_or(0);
        let mode = match self.host_mode {
            HostMode::NonVhe => 0,
            HostMode::Vhe => 1,
        };
        let gic = match self.gic {
            GicChoice::Detect => 0,
            GicChoice::V2 => 2,
            GicChoice::V3 => 3,
        };
        u32::from_le_bytes([scenario, mode, gic, 0xA7])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_magic_means_defaults() {
        assert_eq!(RunConfig::decode(0), Ok(RunConfig::default()));
        assert_eq!(RunConfig::decode(0x0003_0107), Ok(RunConfig::default()));
    }

    #[test]
    fn external_is_scenario_8() {
        assert_eq!(Scenario::from_number(8), Some(Scenario::External));
        assert_eq!(Scenario::External.name(), "external");
        assert_eq!(
            RunConfig::decode(0xA703_0008).map(|c| c.scenario),
            Ok(Scenario::External)
        );
    }

    #[test]
    fn linux_is_scenario_9() {
        assert_eq!(Scenario::from_number(9), Some(Scenario::Linux));
        assert_eq!(Scenario::Linux.name(), "linux");
    }

    #[test]
    fn perf_is_scenario_10() {
        assert_eq!(Scenario::from_number(10), Some(Scenario::Perf));
        assert_eq!(Scenario::Perf.name(), "perf");
    }

    #[test]
    fn ptimer_offset_is_scenario_11() {
        assert_eq!(
            Scenario::from_number(11),
            Some(Scenario::PhysicalTimerOffset)
        );
        assert_eq!(Scenario::PhysicalTimerOffset.name(), "ptimer-offset");
    }

    #[test]
    fn perf_ptimer_is_scenario_12_and_the_last() {
        assert_eq!(Scenario::from_number(12), Some(Scenario::PerfPtimer));
        assert_eq!(Scenario::PerfPtimer.name(), "perf-ptimer");
        assert_eq!(Scenario::from_number(13), None);
        for s in Scenario::ALL {
            assert_eq!(
                s.is_perf(),
                matches!(s, Scenario::Perf | Scenario::PerfPtimer)
            );
        }
        assert!(Scenario::PerfPtimer.is_perf() && !Scenario::PhysicalTimer.is_perf());
    }

    #[test]
    fn fields_decode() {
        let c = RunConfig::decode(0xA703_0106);
        assert_eq!(
            c,
            Ok(RunConfig {
                scenario: Scenario::TwoVcpus,
                host_mode: HostMode::Vhe,
                gic: GicChoice::V3
            })
        );
    }

    #[test]
    fn bad_fields_are_errors() {
        assert_eq!(
            RunConfig::decode(0xA700_0020),
            Err(ConfigError::Scenario(0x20))
        );
        assert_eq!(
            RunConfig::decode(0xA700_0200),
            Err(ConfigError::HostMode(2))
        );
        assert_eq!(RunConfig::decode(0xA701_0000), Err(ConfigError::Gic(1)));
    }

    #[test]
    fn encode_round_trips() {
        for scenario in Scenario::ALL {
            for host_mode in [HostMode::NonVhe, HostMode::Vhe] {
                for gic in [GicChoice::Detect, GicChoice::V2, GicChoice::V3] {
                    let c = RunConfig {
                        scenario,
                        host_mode,
                        gic,
                    };
                    assert_eq!(RunConfig::decode(c.encode()), Ok(c));
                }
            }
        }
    }
}
