//! Guest accesses to emulated devices: stage 2 data aborts decoded from
//! their syndrome (Arm ARM D17.2.40, `ESR_EL2` ISS for a data abort).
//!
//! A load or store the hardware describes (`ISV = 1`: size, register,
//! direction) can be emulated; one without a valid syndrome (a load pair,
//! a post-indexed access, ...) cannot, and [`MmioAccess::decode`] says so
//! with the address, so the run ends with a clear message.

use core::fmt;

/// `ESR_EL2.EC` of a data abort from a lower exception level.
pub const EC_DATA_ABORT_LOWER: u32 = 0x24;

/// How many bytes an access moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    /// 8 bits.
    Byte,
    /// 16 bits.
    Half,
    /// 32 bits.
    Word,
    /// 64 bits.
    Double,
}

impl Width {
    /// The size in bytes.
    #[must_use]
    pub const fn bytes(self) -> u32 {
        match self {
            Self::Byte => 1,
            Self::Half => 2,
            Self::Word => 4,
            Self::Double => 8,
        }
    }

    const fn mask(self) -> u64 {
        match self {
            Self::Double => u64::MAX,
            w => (1 << (w.bytes() * 8)) - 1,
        }
    }
}

/// One emulatable access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// The guest-physical address accessed.
    pub ipa: u64,
    /// Its width.
    pub width: Width,
    /// A store (`WnR`).
    pub write: bool,
    /// The general register (`SRT`; 31 is the zero register).
    pub reg: u8,
    /// A load that sign-extends (`SSE`).
    pub sign_extend: bool,
    /// The register is 64 bits wide (`SF`), else 32.
    pub sixty_four: bool,
}

/// Why an abort cannot be emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortError {
    /// `ISV = 0`: the hardware did not describe the access.
    NoSyndrome {
        /// The address.
        ipa: u64,
        /// A store.
        write: bool,
    },
    /// The fault came from the guest's own stage 1 table walk (`S1PTW`):
    /// its page tables point outside its RAM.
    TableWalk {
        /// The address of the descriptor it tried to read.
        ipa: u64,
    },
}

impl fmt::Display for AbortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSyndrome { ipa, write } => write!(
                f,
                "{} at IPA {ipa:#x} without a valid syndrome (ISV = 0: a load/store pair, \
                 writeback or SIMD access to a device): it cannot be emulated",
                if *write { "store" } else { "load" }
            ),
            Self::TableWalk { ipa } => write!(
                f,
                "the guest's stage 1 table walk read IPA {ipa:#x}, which is not its RAM"
            ),
        }
    }
}

impl core::error::Error for AbortError {}

/// The faulting guest-physical address: `HPFAR_EL2.FIPA` (bits 43:4,
/// the page) and the offset within the page from `FAR_EL2`.
#[must_use]
pub const fn fault_ipa(far: u64, hpfar: u64) -> u64 {
    ((hpfar >> 4) & ((1 << 40) - 1)) << 12 | (far & 0xfff)
}

impl MmioAccess {
    /// Decodes a data abort's ISS at `ipa`.
    ///
    /// # Errors
    ///
    /// [`AbortError`] when the access cannot be emulated.
    pub fn decode(iss: u32, ipa: u64) -> Result<Self, AbortError> {
        let write = iss & (1 << 6) != 0;
        if iss & (1 << 7) != 0 {
            return Err(AbortError::TableWalk { ipa });
        }
        if iss & (1 << 24) == 0 {
            return Err(AbortError::NoSyndrome { ipa, write });
        }
        let width = match (iss >> 22) & 3 {
            0 => Width::Byte,
            1 => Width::Half,
            2 => Width::Word,
            _ => Width::Double,
        };
        #[allow(clippy::cast_possible_truncation)] // 5 bits.
        let reg = ((iss >> 16) & 0x1f) as u8;
        Ok(Self {
            ipa,
            width,
            write,
            reg,
            sign_extend: iss & (1 << 21) != 0,
            sixty_four: iss & (1 << 15) != 0,
        })
    }

    /// The value a store writes: the register's low bytes.
    #[must_use]
    pub const fn store_value(&self, reg_value: u64) -> u64 {
        reg_value & self.width.mask()
    }

    /// What a load puts in the register for the device's `value`:
    /// truncated to the width, sign-extended if asked, cut to 32 bits for a
    /// `W` register.
    #[must_use]
    pub const fn load_value(&self, value: u64) -> u64 {
        let v = value & self.width.mask();
        let bits = self.width.bytes() * 8;
        let v = if self.sign_extend && bits < 64 && (v >> (bits - 1)) & 1 == 1 {
            v | !self.width.mask()
        } else {
            v
        };
        if self.sixty_four { v } else { v & 0xffff_ffff }
    }
}

/// A trapped `MRS`/`MSR` (`ESR_EL2.EC` 0x18), decoded from its ISS for
/// messages: the register's encoding and, for the registers a Linux guest
/// is known to trap on, its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    /// `op0`, `op1`, `CRn`, `CRm`, `op2`.
    pub encoding: [u8; 5],
    /// The general register (`Rt`).
    pub reg: u8,
    /// `MRS` (a read).
    pub read: bool,
}

impl SysRegAccess {
    /// Decodes the ISS of a trapped system register access.
    #[must_use]
    pub fn decode(iss: u32) -> Self {
        let field = |shift: u32, bits: u32| ((iss >> shift) & ((1 << bits) - 1)).to_le_bytes()[0];
        Self {
            encoding: [
                field(20, 2),
                field(14, 3),
                field(10, 4),
                field(1, 4),
                field(17, 3),
            ],
            reg: field(5, 5),
            read: iss & 1 != 0,
        }
    }

    /// The architectural name of registers a guest OS is known to trap on
    /// under this hypervisor, if it is one of them.
    #[must_use]
    pub const fn name(&self) -> Option<&'static str> {
        Some(match self.encoding {
            [3, 0, 12, 11, 5] => "ICC_SGI1R_EL1",
            [3, 0, 12, 11, 6] => "ICC_ASGI1R_EL1",
            [3, 0, 12, 11, 7] => "ICC_SGI0R_EL1",
            [3, 0, 2, 1, 0] => "APIAKeyLo_EL1",
            [3, 0, 1, 2, 0] => "ZCR_EL1",
            [3, 3, 9, 12, 0] => "PMCR_EL0",
            [2, 0, 1, 0, 4] => "OSLAR_EL1",
            [2, 0, 0, 2, 2] => "MDSCR_EL1",
            _ => return None,
        })
    }
}

impl fmt::Display for SysRegAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [op0, op1, crn, crm, op2] = self.encoding;
        let (op, dir) = if self.read {
            ("mrs", "from")
        } else {
            ("msr", "to")
        };
        write!(f, "{op} {dir} S{op0}_{op1}_C{crn}_C{crm}_{op2}")?;
        if let Some(name) = self.name() {
            write!(f, " ({name})")?;
        }
        write!(f, ", x{}", self.reg)
    }
}

/// What QEMU `virt` has at the guest-physical address `ipa`, for the
/// message that ends a run on an access nothing emulates: the device, or
/// which emulated one (its registers at that offset are then not
/// emulated, or the access has no syndrome).
#[must_use]
pub fn device_at(ipa: u64) -> &'static str {
    match ipa {
        0x0800_0000..0x0801_0000 => "the GIC distributor (GICD)",
        0x0801_0000..0x0802_0000 => "the GICv2 CPU interface (GICC)",
        0x0802_0000..0x080a_0000 => "the GIC ITS or virtualization frames (not the guest's)",
        0x080a_0000..0x0900_0000 => "a GICv3 redistributor (GICR)",
        0x0900_0000..0x0901_0000 => "the PL011 UART",
        0x0901_0000..0x0902_0000 => "the PL031 RTC (not emulated)",
        0x0902_0000..0x0903_0000 => "the fw_cfg interface (not emulated)",
        0x0903_0000..0x0904_0000 => "the PL061 GPIO controller (not emulated)",
        0x0a00_0000..0x0a00_4000 => "a virtio-mmio transport (not emulated)",
        0x1000_0000..0x3f00_0000 => "the PCIe MMIO window (not emulated)",
        0x4000_0000..0x4800_0000 => "RAM below the guest's (the hypervisor's)",
        _ => "no device of the guest",
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    #[test]
    fn unemulated_devices_are_named() {
        assert_eq!(device_at(0x0901_0000), "the PL031 RTC (not emulated)");
        assert_eq!(
            device_at(0x0a00_0200),
            "a virtio-mmio transport (not emulated)"
        );
        assert_eq!(device_at(0x0900_0ffc), "the PL011 UART");
        assert_eq!(device_at(0x0800_0000), "the GIC distributor (GICD)");
        assert_eq!(device_at(0x080c_0000), "a GICv3 redistributor (GICR)");
        assert_eq!(
            device_at(0x4000_1000),
            "RAM below the guest's (the hypervisor's)"
        );
        assert_eq!(device_at(0x1_0000_0000), "no device of the guest");
    }

    use super::*;

    /// ISS for a data abort with a valid syndrome.
    fn iss(sas: u32, sse: bool, srt: u32, sf: bool, write: bool) -> u32 {
        (1 << 24)
            | (sas << 22)
            | (u32::from(sse) << 21)
            | (srt << 16)
            | (u32::from(sf) << 15)
            | (u32::from(write) << 6)
    }

    #[test]
    fn the_ipa_joins_hpfar_and_far() {
        // HPFAR_EL2.FIPA holds IPA[51:12] in bits 43:4.
        assert_eq!(
            fault_ipa(0xffff_0000_0000_0abc, (0x0800_0000 >> 12) << 4),
            0x0800_0abc
        );
        assert_eq!(fault_ipa(0x10, (0x0900_0000 >> 12) << 4), 0x0900_0010);
    }

    #[test]
    fn syndromes_decode() {
        let a = MmioAccess::decode(iss(2, false, 3, false, false), 0x0800_0004);
        assert_eq!(
            a,
            Ok(MmioAccess {
                ipa: 0x0800_0004,
                width: Width::Word,
                write: false,
                reg: 3,
                sign_extend: false,
                sixty_four: false
            })
        );
        let a = MmioAccess::decode(iss(3, false, 31, true, true), 0x0800_6100);
        assert!(matches!(
            a,
            Ok(MmioAccess {
                width: Width::Double,
                write: true,
                reg: 31,
                sixty_four: true,
                ..
            })
        ));
        let a = MmioAccess::decode(iss(0, true, 1, true, false), 0);
        assert!(matches!(
            a,
            Ok(MmioAccess {
                width: Width::Byte,
                sign_extend: true,
                ..
            })
        ));
    }

    #[test]
    fn no_syndrome_or_a_table_walk_is_an_error_naming_the_ipa() {
        let e = MmioAccess::decode(1 << 6, 0x0800_0000);
        assert_eq!(
            e,
            Err(AbortError::NoSyndrome {
                ipa: 0x0800_0000,
                write: true
            })
        );
        let text = std::format!("{}", e.err().unwrap_or(AbortError::TableWalk { ipa: 0 }));
        assert!(text.contains("IPA 0x8000000"), "{text}");
        assert_eq!(
            MmioAccess::decode(iss(2, false, 0, false, false) | (1 << 7), 0x1234),
            Err(AbortError::TableWalk { ipa: 0x1234 })
        );
    }

    #[test]
    fn trapped_system_registers_are_named() {
        // MSR ICC_SGI1R_EL1, x1 and MSR APIAKeyLo_EL1, x1 (seen from Linux).
        let sgi = SysRegAccess::decode((3 << 20) | (5 << 17) | (12 << 10) | (1 << 5) | (11 << 1));
        assert_eq!(sgi.name(), Some("ICC_SGI1R_EL1"));
        assert_eq!(
            std::format!("{sgi}"),
            "msr to S3_0_C12_C11_5 (ICC_SGI1R_EL1), x1"
        );
        let key = SysRegAccess::decode(0x30_0822);
        assert_eq!(key.encoding, [3, 0, 2, 1, 0]);
        assert_eq!(key.name(), Some("APIAKeyLo_EL1"));
        let other = SysRegAccess::decode(1 | (3 << 20) | (7 << 14) | (15 << 10) | (15 << 1));
        assert!(other.read);
        assert_eq!(other.name(), None);
        assert_eq!(std::format!("{other}"), "mrs from S3_7_C15_C15_0, x0");
    }

    #[test]
    fn load_and_store_values() {
        let byte_signed =
            MmioAccess::decode(iss(0, true, 0, false, false), 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(byte_signed.load_value(0x1ff), 0xffff_ffff);
        let byte_signed_x = MmioAccess {
            sixty_four: true,
            ..byte_signed
        };
        assert_eq!(byte_signed_x.load_value(0x80), u64::MAX - 0x7f);
        let half =
            MmioAccess::decode(iss(1, false, 0, false, true), 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(half.store_value(0x1234_5678), 0x5678);
        assert_eq!(half.load_value(0xffff_8001), 0x8001);
        let word_x =
            MmioAccess::decode(iss(2, false, 0, true, false), 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(word_x.load_value(0x1_8000_0000), 0x8000_0000);
        let double =
            MmioAccess::decode(iss(3, false, 0, true, true), 0).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(double.store_value(u64::MAX), u64::MAX);
    }
}
