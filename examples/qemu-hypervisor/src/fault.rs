//! What an external guest's fault was, in words: the faulting access as it
//! is (an unmapped IPA, a device not given to guests, RAM that does not
//! exist, a guest without a vector table), for the hypervisor's message.

use core::fmt;

use crate::config::{EXTERNAL_GUEST_ADDR, EXTERNAL_GUEST_SIZE};

/// A guest's exit to EL2 that the hypervisor does not handle, as read from
/// `ESR_EL2`, `FAR_EL2` and `HPFAR_EL2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuestFault {
    /// `ESR_EL2`.
    pub esr: u64,
    /// `FAR_EL2`.
    pub far: u64,
    /// `HPFAR_EL2`.
    pub hpfar: u64,
    /// The guest's own `ESR_EL1`, `ELR_EL1` and `FAR_EL1`: what it took
    /// last, which explains a fetch from the low vectors.
    pub guest: [u64; 3],
}

/// What an access at an IPA reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The low vector addresses: the guest took an exception with
    /// `VBAR_EL1` still 0 (no vector table: an image that is not there, or
    /// that crashed before installing one).
    NoVectors,
    /// QEMU `virt`'s GIC distributor, redistributors or ITS: not given to
    /// guests.
    Gic,
    /// QEMU `virt`'s PL011 UART: not given to guests (they print through
    /// the print hypercall).
    Uart,
    /// Another device in the first GiB.
    Device,
    /// The external guest's memory, but no RAM behind it (an external
    /// abort).
    MissingRam,
    /// Inside the external guest's memory (a permission or other fault).
    GuestMemory,
    /// Outside everything stage 2 maps.
    Unmapped,
}

impl GuestFault {
    /// The exception class, `ESR_EL2[31:26]`.
    #[must_use]
    pub const fn ec(&self) -> u64 {
        (self.esr >> 26) & 0x3f
    }

    /// Whether this is an instruction (0x20) or data (0x24) abort from the
    /// guest.
    #[must_use]
    pub const fn is_abort(&self) -> bool {
        matches!(self.ec(), 0x20 | 0x24)
    }

    /// The faulting IPA of an abort: `HPFAR_EL2.FIPA` (bits 43:4, IPA bits
    /// 51:12) and the page offset from `FAR_EL2`.
    #[must_use]
    pub const fn ipa(&self) -> u64 {
        ((self.hpfar >> 4) & 0xff_ffff_ffff) << 12 | (self.far & 0xfff)
    }

    /// What the abort's IPA reached (`None`: not an abort).
    #[must_use]
    pub fn target(&self) -> Option<Target> {
        if !self.is_abort() {
            return None;
        }
        let ipa = self.ipa();
        // The fault status code, ISS[5:0]: 0x10 is a synchronous external
        // abort (nothing answered at that physical address).
        let external = self.esr & 0x3f == 0x10;
        let guest = EXTERNAL_GUEST_ADDR..EXTERNAL_GUEST_ADDR + EXTERNAL_GUEST_SIZE;
        Some(match ipa {
            0..0x800 if self.ec() == 0x20 => Target::NoVectors,
            0x0800_0000..0x0900_0000 => Target::Gic,
            0x0900_0000..0x0900_1000 => Target::Uart,
            0..0x4000_0000 => Target::Device,
            _ if guest.contains(&ipa) && external => Target::MissingRam,
            _ if guest.contains(&ipa) => Target::GuestMemory,
            _ => Target::Unmapped,
        })
    }
}

impl fmt::Display for GuestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let access = if self.ec() == 0x20 {
            "instruction fetch"
        } else {
            "access"
        };
        let ipa = self.ipa();
        match self.target() {
            None => write!(
                f,
                "exception class {:#x} that the hypervisor does not handle",
                self.ec()
            ),
            Some(Target::NoVectors) => {
                let [esr, elr, far] = self.guest;
                write!(
                    f,
                    "{access} at IPA {ipa:#x}: the guest took an exception with VBAR_EL1 = 0 (no \
                     vector table): ESR_EL1 {esr:#x}, ELR_EL1 {elr:#x}, FAR_EL1 {far:#x}: "
                )?;
                let ec = (esr >> 26) & 0x3f;
                let guest = EXTERNAL_GUEST_ADDR..EXTERNAL_GUEST_ADDR + EXTERNAL_GUEST_SIZE;
                if matches!(ec, 0x20 | 0x21 | 0x24 | 0x25) && esr & 0x3f == 0x10 {
                    write!(
                        f,
                        "an external abort: no RAM at {far:#x}; does RAM reach \
                         {EXTERNAL_GUEST_ADDR:#x} (-m 256M)?"
                    )
                } else if ec == 0 && guest.contains(&elr) {
                    write!(
                        f,
                        "an undefined instruction in guest memory: is its image loaded at \
                         {EXTERNAL_GUEST_ADDR:#x} (-device loader,file=ELF)?"
                    )
                } else {
                    f.write_str("the guest failed before installing its vectors")
                }
            }
            Some(Target::Gic) => write!(
                f,
                "{access} at IPA {ipa:#x}: the GIC distributor/redistributor, a device not given to \
                 guests (GICv2 guests use the CPU interface at 0x8010000, GICv3 guests the system \
                 registers)"
            ),
            Some(Target::Uart) => write!(
                f,
                "{access} at IPA {ipa:#x}: the UART, a device not given to guests (print through \
                 the print hypercall)"
            ),
            Some(Target::Device) => write!(
                f,
                "{access} at IPA {ipa:#x}: device space not given to guests"
            ),
            Some(Target::MissingRam) => write!(
                f,
                "{access} at IPA {ipa:#x}: guest memory without RAM behind it: does RAM reach it \
                 (-m 256M)?"
            ),
            Some(Target::GuestMemory) => write!(
                f,
                "{access} at IPA {ipa:#x} in the guest's own memory (ESR {:#x})",
                self.esr
            ),
            Some(Target::Unmapped) => write!(
                f,
                "{access} at IPA {ipa:#x}: not mapped (the guest's memory is {EXTERNAL_GUEST_ADDR:#x}..{:#x})",
                EXTERNAL_GUEST_ADDR + EXTERNAL_GUEST_SIZE
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abort(ec: u64, fsc: u64, ipa: u64) -> GuestFault {
        GuestFault {
            esr: ec << 26 | fsc,
            far: ipa & 0xfff,
            hpfar: (ipa >> 12) << 4,
            guest: [0; 3],
        }
    }

    #[test]
    fn targets() {
        assert_eq!(abort(0x20, 0x07, 0x200).target(), Some(Target::NoVectors));
        assert_eq!(abort(0x24, 0x07, 0x0800_0004).target(), Some(Target::Gic));
        assert_eq!(abort(0x24, 0x07, 0x0900_0000).target(), Some(Target::Uart));
        assert_eq!(
            abort(0x24, 0x07, 0x0a00_0000).target(),
            Some(Target::Device)
        );
        assert_eq!(
            abort(0x20, 0x10, 0x4800_0000).target(),
            Some(Target::MissingRam)
        );
        assert_eq!(
            abort(0x24, 0x0f, 0x4800_1000).target(),
            Some(Target::GuestMemory)
        );
        assert_eq!(
            abort(0x24, 0x07, 0x4000_0000).target(),
            Some(Target::Unmapped)
        );
        assert_eq!(abort(0x24, 0x07, 0x4000_0123).ipa(), 0x4000_0123);
        let undefined = GuestFault {
            esr: 0,
            far: 0,
            hpfar: 0,
            guest: [0; 3],
        };
        assert_eq!(undefined.target(), None);
    }
}
