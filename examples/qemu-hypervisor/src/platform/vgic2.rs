//! A GICv2 distributor as the guest sees it (GIC architecture
//! specification v2, IHI 0048B, chapter 4.3), without the security
//! extensions. The guest's CPU interface is the hardware's virtual one
//! (`GICV`, mapped by stage 2 where the guest's tree puts `GICC`).
//!
//! Kept: `GICD_CTLR`, per vCPU the banked SGI/PPI registers, the SPIs'
//! group, enable, pending, active, priority, targets and configuration.
//! `GICD_SGIR` writes come back as [`Write::Sgi`] for the run loop to
//! deliver. Reserved and unimplemented offsets (`CPENDSGIR`/`SPENDSGIR`
//! included) read as zero and ignore writes.

use super::mmio::Width;
#[cfg(doc)]
use super::vgic3::Vgic3;
use super::vgic3::{Bank, BankReg, Live, MAX_VCPUS, SPIS, Write, bank_reg};

/// The distributor's size.
pub const GICD_SIZE: u64 = 0x1000;
/// `PIDR2` with ArchRev 2.
const PIDR2_GICV2: u32 = 0x2b;
/// INTIDs 0..=15.
const SGI_BITS: u32 = 0xffff;

/// The guest's GICv2 distributor.
#[derive(Clone, Debug)]
pub struct Vgic2 {
    cpus: usize,
    ctlr: u32,
    spis: [Bank; SPIS / 32],
    targets: [u8; SPIS],
    private: [Bank; MAX_VCPUS],
}

impl Vgic2 {
    /// A reset distributor for `cpus` vCPUs (at most [`MAX_VCPUS`], and 8
    /// at most on GICv2).
    #[must_use]
    pub const fn new(cpus: usize) -> Self {
        Self {
            cpus: if cpus == 0 {
                1
            } else if cpus > MAX_VCPUS {
                MAX_VCPUS
            } else {
                cpus
            },
            ctlr: 0,
            spis: [Bank::new(); SPIS / 32],
            targets: [0; SPIS],
            private: [Bank::new(); MAX_VCPUS],
        }
    }

    /// The vCPUs it serves.
    #[must_use]
    pub const fn cpus(&self) -> usize {
        self.cpus
    }

    /// A bit per existing vCPU.
    fn all(&self) -> u32 {
        (1_u32 << self.cpus) - 1
    }

    /// A read by vCPU `vcpu` at `offset`; `live` is its SGIs' and PPIs'
    /// live state.
    #[must_use]
    pub fn read(&self, vcpu: usize, offset: u64, width: Width, live: Live) -> u64 {
        match (offset, width) {
            (0x0, Width::Word) => u64::from(self.ctlr),
            // TYPER: CPUNumber, ITLinesNumber for SPIS.
            (0x4, Width::Word) => ((self.cpus as u64 - 1) << 5) | (SPIS as u64 / 32),
            (0xfe8, Width::Word) => u64::from(PIDR2_GICV2),
            (0x800..0xc00, Width::Byte | Width::Word) => {
                let first = usize::try_from(offset - 0x800).unwrap_or(usize::MAX);
                let mut v = 0_u64;
                for i in (0..width.bytes() as usize).rev() {
                    v = (v << 8) | u64::from(self.target(vcpu, first + i));
                }
                v
            }
            (0xc00, Width::Word) => 0xaaaa_aaaa,
            _ => match bank_reg(offset, width) {
                Some((0, reg)) => self.private.get(vcpu).map_or(0, |b| b.read(reg, live)),
                Some((bank, reg)) => self
                    .spis
                    .get(bank - 1)
                    .map_or(0, |b| b.read(reg, Live::default())),
                None => 0,
            },
        }
    }

    /// `ITARGETSR` byte `n` as `vcpu` reads it: its own bit for SGIs and
    /// PPIs.
    fn target(&self, vcpu: usize, n: usize) -> u8 {
        match n {
            0..32 => u8::try_from(1_u32 << vcpu.min(7)).unwrap_or(0),
            _ => self.targets.get(n - 32).copied().unwrap_or(0),
        }
    }

    /// A write by vCPU `vcpu` at `offset`.
    pub fn write(&mut self, vcpu: usize, offset: u64, width: Width, value: u64) -> Write {
        #[allow(clippy::cast_possible_truncation)] // 32-bit registers
        let word = value as u32;
        match (offset, width) {
            (0x0, Width::Word) => {
                self.ctlr = word & 1;
                Write::Done
            }
            (0x820..0xc00, Width::Byte | Width::Word) => {
                let first = usize::try_from(offset - 0x820).unwrap_or(usize::MAX);
                let all = self.all();
                for i in 0..width.bytes() as usize {
                    if let Some(t) = first.checked_add(i).and_then(|n| self.targets.get_mut(n)) {
                        let byte = (word >> (8 * i)) & all;
                        *t = u8::try_from(byte).unwrap_or(0);
                    }
                }
                Write::Done
            }
            // SGIs are edge-triggered: ICFGR0 is read-only.
            (0xc00, _) => Write::Done,
            (0xf00, Width::Word) => {
                let intid = word & 0xf;
                let me = 1_u32 << vcpu.min(31);
                let targets = match (word >> 24) & 3 {
                    0 => (word >> 16) & 0xff,
                    1 => !me,
                    2 => me,
                    _ => 0,
                } & self.all();
                Write::Sgi { intid, targets }
            }
            _ => match bank_reg(offset, width) {
                Some((0, reg)) => {
                    let Some(b) = self.private.get_mut(vcpu) else {
                        return Write::Done;
                    };
                    match reg {
                        // The SGIs' bits of ISPENDR0/ICPENDR0 are
                        // read-only on GICv2 (their pending state is set
                        // and cleared per source with SPENDSGIR and
                        // CPENDSGIR, not implemented here).
                        BankReg::SetPending => {
                            b.write(reg, word & !SGI_BITS);
                            Write::Pend {
                                vcpu,
                                intids: word & !SGI_BITS,
                            }
                        }
                        BankReg::ClearPending => {
                            b.write(reg, word & !SGI_BITS);
                            Write::Unpend {
                                vcpu,
                                intids: word & !SGI_BITS,
                            }
                        }
                        _ => {
                            b.write(reg, word);
                            Write::Done
                        }
                    }
                }
                Some((bank, reg)) => {
                    if let Some(b) = self.spis.get_mut(bank - 1) {
                        b.write(reg, word);
                        if reg == BankReg::SetPending && word != 0 {
                            return Write::PendSpis {
                                first: u32::try_from(bank * 32).unwrap_or(u32::MAX),
                                intids: word,
                            };
                        }
                    }
                    Write::Done
                }
                None => Write::Done,
            },
        }
    }

    /// The vCPU that SPI `intid` (a level the caller holds high) is
    /// pending for: `None` while the guest has it disabled, the
    /// distributor disabled, or no target CPU in `GICD_ITARGETSR`. With
    /// several targets (1-N) it goes to the first.
    #[must_use]
    pub fn spi_target(&self, intid: u32) -> Option<usize> {
        let n = usize::try_from(intid.checked_sub(32)?).ok()?;
        let enabled = self
            .spis
            .get(n / 32)?
            .read(BankReg::SetEnable, Live::default())
            & (1 << (n % 32))
            != 0;
        if !enabled || self.ctlr & 1 == 0 {
            return None;
        }
        let targets = u32::from(*self.targets.get(n)?) & self.all();
        (targets != 0).then(|| targets.trailing_zeros() as usize)
    }

    /// Takes the pending bits `intids` of `vcpu`'s SGIs and PPIs out of
    /// the register file (see [`Vgic3::clear_private_pending`]).
    pub fn clear_private_pending(&mut self, vcpu: usize, intids: u32) {
        if let Some(b) = self.private.get_mut(vcpu) {
            b.write(BankReg::ClearPending, intids);
        }
    }

    /// Whether the guest enabled SGI/PPI `intid` on `vcpu`.
    #[must_use]
    pub fn private_enabled(&self, vcpu: usize, intid: u32) -> bool {
        intid < 32
            && self
                .private
                .get(vcpu)
                .is_some_and(|b| b.read(BankReg::SetEnable, Live::default()) & (1 << intid) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_probe_registers() {
        let mut g = Vgic2::new(2);
        let typer = g.read(0, 0x4, Width::Word, Live::default());
        assert_eq!(typer & 0x1f, 1);
        assert_eq!(typer >> 5 & 7, 1, "two CPUs");
        // gic_get_cpumask: ITARGETSR0..7 name the reading CPU.
        assert_eq!(g.read(0, 0x800, Width::Word, Live::default()), 0x0101_0101);
        assert_eq!(g.read(1, 0x81c, Width::Word, Live::default()), 0x0202_0202);
        assert_eq!(g.read(1, 0x800, Width::Byte, Live::default()), 2);
        g.write(0, 0, Width::Word, 1);
        assert_eq!(g.read(0, 0, Width::Word, Live::default()), 1);
        assert_eq!(g.read(0, 0xfe8, Width::Word, Live::default()) >> 4 & 0xf, 2);
    }

    #[test]
    fn banked_and_spi_registers() {
        let mut g = Vgic2::new(2);
        g.write(1, 0x100, Width::Word, 1 << 27);
        assert!(g.private_enabled(1, 27));
        assert!(!g.private_enabled(0, 27));
        g.write(0, 0x104, Width::Word, 1 << 1);
        assert_eq!(
            g.read(1, 0x104, Width::Word, Live::default()),
            1 << 1,
            "SPIs are shared"
        );
        // SPI targets, masked to existing CPUs.
        g.write(0, 0x820, Width::Word, 0xff01_0203);
        assert_eq!(g.read(0, 0x820, Width::Word, Live::default()), 0x0301_0203);
        g.write(0, 0x821, Width::Byte, 2);
        assert_eq!(g.read(0, 0x821, Width::Byte, Live::default()), 2);
        // Live timer state reads pending.
        let live = Live {
            pending: 1 << 27,
            active: 1 << 27,
        };
        assert_eq!(g.read(0, 0x200, Width::Word, live), 1 << 27);
        assert_eq!(g.read(0, 0x300, Width::Word, live), 1 << 27);
        assert_eq!(g.read(0, 0xc00, Width::Word, live), 0xaaaa_aaaa);
    }

    #[test]
    fn spi_target_follows_enable_and_itargetsr() {
        let mut g = Vgic2::new(2);
        assert_eq!(g.spi_target(33), None);
        g.write(0, 0x104, Width::Word, 1 << 1);
        assert_eq!(g.spi_target(33), None, "distributor disabled");
        g.write(0, 0, Width::Word, 1);
        assert_eq!(g.spi_target(33), None, "no target CPU");
        // Linux: every SPI to CPU 0 (ITARGETSR byte 0x01).
        g.write(0, 0x820, Width::Word, 0x0101_0101);
        assert_eq!(g.spi_target(33), Some(0));
        g.write(0, 0x821, Width::Byte, 2);
        assert_eq!(g.spi_target(33), Some(1));
        g.write(0, 0x821, Width::Byte, 3);
        assert_eq!(g.spi_target(33), Some(0), "1-N: the first");
        g.write(0, 0x184, Width::Word, 1 << 1);
        assert_eq!(g.spi_target(33), None, "disabled again");
        assert_eq!(g.spi_target(27), None);
        assert_eq!(g.spi_target(32 + u32::try_from(SPIS).unwrap()), None);
    }

    #[test]
    fn pending_writes_skip_sgis_and_go_to_the_run_loop() {
        let mut g = Vgic2::new(2);
        let none = Live::default();
        // ISPENDR0 by vCPU 1: SGI 2 (read-only on GICv2), PPIs 27 and 20.
        let set = (1 << 2) | (1 << 27) | (1 << 20);
        assert_eq!(
            g.write(1, 0x200, Width::Word, set),
            Write::Pend {
                vcpu: 1,
                intids: (1 << 27) | (1 << 20)
            }
        );
        assert_eq!(g.read(1, 0x200, Width::Word, none), (1 << 27) | (1 << 20));
        g.clear_private_pending(1, 1 << 27);
        assert_eq!(g.read(1, 0x200, Width::Word, none), 1 << 20);
        assert_eq!(g.read(0, 0x200, Width::Word, none), 0, "banked");
        assert_eq!(
            g.write(1, 0x280, Width::Word, u64::from(u32::MAX)),
            Write::Unpend {
                vcpu: 1,
                intids: !0xffff
            }
        );
        assert_eq!(g.read(1, 0x200, Width::Word, none), 0);
        // SPIs: kept, and said.
        assert_eq!(
            g.write(0, 0x204, Width::Word, 1 << 1),
            Write::PendSpis {
                first: 32,
                intids: 1 << 1
            }
        );
        assert_eq!(g.read(1, 0x204, Width::Word, none), 1 << 1);
        g.write(0, 0x284, Width::Word, 1 << 1);
        assert_eq!(g.read(1, 0x204, Width::Word, none), 0);
    }

    #[test]
    fn sgir_targets() {
        let mut g = Vgic2::new(2);
        assert_eq!(
            g.write(0, 0xf00, Width::Word, (0b10 << 16) | 3),
            Write::Sgi {
                intid: 3,
                targets: 0b10
            }
        );
        assert_eq!(
            g.write(0, 0xf00, Width::Word, 1 << 24),
            Write::Sgi {
                intid: 0,
                targets: 0b10
            }
        );
        assert_eq!(
            g.write(1, 0xf00, Width::Word, (2 << 24) | 5),
            Write::Sgi {
                intid: 5,
                targets: 0b10
            }
        );
        assert_eq!(
            g.write(0, 0xf00, Width::Word, (0xfc << 16) | 1),
            Write::Sgi {
                intid: 1,
                targets: 0
            },
            "CPUs that do not exist are dropped"
        );
    }

    #[test]
    fn every_offset_and_width_is_safe() {
        let mut g = Vgic2::new(1);
        for offset in 0..0x1000 {
            for width in [Width::Byte, Width::Half, Width::Word, Width::Double] {
                let _ = g.read(0, offset, width, Live::default());
                let _ = g.write(0, offset, width, u64::MAX);
                let _ = g.read(7, offset, width, Live::default());
                let _ = g.write(7, offset, width, u64::MAX);
            }
        }
    }
}
