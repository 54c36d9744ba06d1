//! A GICv3 distributor and redistributors as the guest sees them (GIC
//! architecture specification, IHI 0069, chapters 12.9 and 12.10), in the
//! single security state (`GICD_CTLR.DS = 1`), affinity routing on, no
//! LPIs, no ITS.
//!
//! What is kept: `GICD_CTLR`, the SPIs' group, enable, pending, active,
//! priority, configuration and routing; per vCPU the SGIs' and PPIs' same
//! registers in the redistributor's SGI frame, and `GICR_WAKER`. What the
//! guest reads of a PPI's pending and active state joins the registers'
//! own bits with the live state the caller passes in ([`Live`]: what the
//! list registers and the timer library hold), so a guest that reads
//! `GICR_ISPENDR0` while its timer fires sees PPI 27 pending.
//!
//! This module is the register file only: delivering an interrupt a guest
//! makes pending by writing `ISPENDR` is the run loop's business (see
//! [`Write`]). Reserved and unimplemented offsets read as zero and ignore
//! writes, as the architecture asks of reserved registers.

use super::mmio::Width;

/// The vCPUs a model holds at most.
pub const MAX_VCPUS: usize = 8;
/// SPIs implemented: INTIDs 32..32 + `SPIS` (`GICD_TYPER.ITLinesNumber` 1).
pub const SPIS: usize = 32;
/// The distributor's size.
pub const GICD_SIZE: u64 = 0x1_0000;
/// One redistributor: the RD and SGI frames.
pub const GICR_STRIDE: u64 = 0x2_0000;

/// `GICD_CTLR` bits: EnableGrp0, EnableGrp1, ARE, DS, RWP.
const CTLR_ENABLE_GRP0: u32 = 1 << 0;
const CTLR_ENABLE_GRP1: u32 = 1 << 1;
const CTLR_ARE: u32 = 1 << 4;
const CTLR_DS: u32 = 1 << 6;
/// `GICR_WAKER`: ProcessorSleep, ChildrenAsleep.
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// `PIDR2` with ArchRev 3 (GICv3).
const PIDR2_GICV3: u32 = 0x3b;
/// Offset of the peripheral ID register 2 in every frame.
const PIDR2: u64 = 0xffe8;

/// Interrupt state of 32 INTIDs: one bit or byte each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Bank {
    group: u32,
    enabled: u32,
    pending: u32,
    active: u32,
    /// Two bits per INTID (`ICFGR`): bit 1 of each pair set = edge.
    config: [u32; 2],
    priority: [u8; 32],
}

impl Bank {
    pub(super) const fn new() -> Self {
        Self {
            group: 0,
            enabled: 0,
            pending: 0,
            active: 0,
            config: [0; 2],
            priority: [0; 32],
        }
    }

    /// The registers common to the distributor's SPI banks and the SGI
    /// frame, at `offset` relative to the register's base for INTID 0 of
    /// this bank (`index` 0 for the first 32 INTIDs of the frame).
    pub(super) fn read(&self, reg: BankReg, live: Live) -> u64 {
        u64::from(match reg {
            BankReg::Group => self.group,
            BankReg::SetEnable | BankReg::ClearEnable => self.enabled,
            BankReg::SetPending | BankReg::ClearPending => self.pending | live.pending,
            BankReg::SetActive | BankReg::ClearActive => self.active | live.active,
            BankReg::Config(n) => self.config.get(n).copied().unwrap_or(0),
            BankReg::Priority(byte, width) => {
                let mut v = 0_u32;
                for i in (0..width.bytes()).rev() {
                    let p = self
                        .priority
                        .get(usize::try_from(byte + i).unwrap_or(usize::MAX))
                        .copied()
                        .unwrap_or(0);
                    v = (v << 8) | u32::from(p);
                }
                return u64::from(v);
            }
        })
    }

    pub(super) fn write(&mut self, reg: BankReg, value: u32) {
        match reg {
            BankReg::Group => self.group = value,
            BankReg::SetEnable => self.enabled |= value,
            BankReg::ClearEnable => self.enabled &= !value,
            BankReg::SetPending => self.pending |= value,
            BankReg::ClearPending => self.pending &= !value,
            BankReg::SetActive => self.active |= value,
            BankReg::ClearActive => self.active &= !value,
            BankReg::Config(n) => {
                if let Some(c) = self.config.get_mut(n) {
                    *c = value;
                }
            }
            BankReg::Priority(byte, width) => {
                for i in 0..width.bytes() {
                    if let Some(p) = self
                        .priority
                        .get_mut(usize::try_from(byte + i).unwrap_or(usize::MAX))
                    {
                        *p = (value >> (8 * i)).to_le_bytes()[0];
                    }
                }
            }
        }
    }
}

/// One of [`Bank`]'s registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BankReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
    /// `ICFGR` word 0 or 1 of the bank.
    Config(usize),
    /// `IPRIORITYR` from this byte of the bank.
    Priority(u32, Width),
}

/// Which 32-INTID bank of a frame an offset reaches, and which register.
/// `bank` counts from INTID 0; the caller maps it.
pub(super) fn bank_reg(offset: u64, width: Width) -> Option<(usize, BankReg)> {
    let word = |base: u64| usize::try_from((offset - base) / 4).ok();
    let reg = match offset {
        0x080..0x100 => (word(0x080)?, BankReg::Group),
        0x100..0x180 => (word(0x100)?, BankReg::SetEnable),
        0x180..0x200 => (word(0x180)?, BankReg::ClearEnable),
        0x200..0x280 => (word(0x200)?, BankReg::SetPending),
        0x280..0x300 => (word(0x280)?, BankReg::ClearPending),
        0x300..0x380 => (word(0x300)?, BankReg::SetActive),
        0x380..0x400 => (word(0x380)?, BankReg::ClearActive),
        0x400..0x800 => {
            let byte = offset - 0x400;
            let bank = usize::try_from(byte / 32).ok()?;
            let within = u32::try_from(byte % 32).ok()?;
            if within + width.bytes() > 32 {
                return None;
            }
            (bank, BankReg::Priority(within, width))
        }
        0xc00..0xd00 => {
            let n = word(0xc00)?;
            (n / 2, BankReg::Config(n % 2))
        }
        _ => return None,
    };
    // Only the priority registers take byte accesses; the rest are words.
    match (reg.1, width) {
        (BankReg::Priority(..), Width::Byte | Width::Word) | (_, Width::Word) => Some(reg),
        _ => None,
    }
}

/// The live pending and active state of a vCPU's SGIs and PPIs (bit n =
/// INTID n) that the registers do not hold: the list registers' and the
/// timer library's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// Pending INTIDs.
    pub pending: u32,
    /// Active INTIDs.
    pub active: u32,
}

/// What a write asks of the run loop beyond the register file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Nothing.
    Done,
    /// The guest made these SGIs/PPIs of vCPU `vcpu` pending (bit n =
    /// INTID n; `GICR_ISPENDR0`, `GICD_ISPENDR0`): the run loop delivers
    /// or ignores them and keeps in the register file what it keeps
    /// ([`Vgic3::clear_private_pending`]).
    Pend {
        /// The vCPU.
        vcpu: usize,
        /// INTIDs 0..=31.
        intids: u32,
    },
    /// The guest cleared the pending state of these SGIs/PPIs of vCPU
    /// `vcpu` (`GICR_ICPENDR0`, `GICD_ICPENDR0`): the run loop takes back
    /// what it has not delivered yet.
    Unpend {
        /// The vCPU.
        vcpu: usize,
        /// INTIDs 0..=31.
        intids: u32,
    },
    /// The guest made these SPIs pending (`GICD_ISPENDR<n>`; bit n =
    /// INTID `first + n`): kept in the register file.
    PendSpis {
        /// The INTID of bit 0.
        first: u32,
        /// The SPIs.
        intids: u32,
    },
    /// The guest sent SGI `intid` (GICv2 `GICD_SGIR`) to the vCPUs in
    /// `targets` (bit n = vCPU n): the run loop injects it.
    Sgi {
        /// The SGI, 0..=15.
        intid: u32,
        /// The target vCPUs.
        targets: u32,
    },
}

/// The guest's GICv3 distributor and redistributors.
#[derive(Clone, Debug)]
pub struct Vgic3 {
    cpus: usize,
    ctlr: u32,
    spis: [Bank; SPIS / 32],
    routes: [u64; SPIS],
    private: [Bank; MAX_VCPUS],
    waker: [u32; MAX_VCPUS],
}

impl Vgic3 {
    /// A reset GIC for `cpus` vCPUs (at most [`MAX_VCPUS`]): everything
    /// disabled, group 0, priority 0, level-sensitive; redistributors
    /// asleep (`ProcessorSleep` set).
    #[must_use]
    pub const fn new(cpus: usize) -> Self {
        // SGIs are edge-triggered, read-only: ICFGR0 all 0b10.
        let sgi_ppi = Bank {
            config: [0xaaaa_aaaa, 0],
            ..Bank::new()
        };
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
            routes: [0; SPIS],
            private: [sgi_ppi; MAX_VCPUS],
            waker: [WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP; MAX_VCPUS],
        }
    }

    /// The vCPUs it has redistributors for.
    #[must_use]
    pub const fn cpus(&self) -> usize {
        self.cpus
    }

    /// Whether the guest enabled SGI/PPI `intid` on `vcpu` (its
    /// `GICR_ISENABLER0` bit).
    #[must_use]
    pub fn private_enabled(&self, vcpu: usize, intid: u32) -> bool {
        intid < 32
            && self
                .private
                .get(vcpu)
                .is_some_and(|b| b.enabled & (1 << intid) != 0)
    }

    /// The priority the guest gave SGI/PPI `intid` on `vcpu`.
    #[must_use]
    pub fn private_priority(&self, vcpu: usize, intid: u32) -> u8 {
        self.private
            .get(vcpu)
            .and_then(|b| b.priority.get(usize::try_from(intid).unwrap_or(usize::MAX)))
            .copied()
            .unwrap_or(0)
    }

    /// The vCPU that SPI `intid` (a level the caller holds high) is
    /// pending for: `None` while the guest has it disabled, or its group
    /// disabled in `GICD_CTLR`, or routed to no vCPU here. `GICD_IROUTER`
    /// names the vCPU by Aff0 (Aff1..Aff3 0); with `IRM` (any
    /// participating PE) it goes to vCPU 0.
    #[must_use]
    pub fn spi_target(&self, intid: u32) -> Option<usize> {
        let n = usize::try_from(intid.checked_sub(32)?).ok()?;
        let bank = self.spis.get(n / 32)?;
        let bit = 1_u32 << (n % 32);
        let group_enable = if bank.group & bit != 0 {
            CTLR_ENABLE_GRP1
        } else {
            CTLR_ENABLE_GRP0
        };
        if bank.enabled & bit == 0 || self.ctlr & group_enable == 0 {
            return None;
        }
        let route = *self.routes.get(n)?;
        if route & (1 << 31) != 0 {
            return Some(0);
        }
        let vcpu = usize::try_from(route & 0xff).ok()?;
        (route & 0xff_00ff_ff00 == 0 && vcpu < self.cpus).then_some(vcpu)
    }

    /// A distributor read at `offset` (below [`GICD_SIZE`]).
    #[must_use]
    pub fn read_distributor(&self, offset: u64, width: Width) -> u64 {
        match (offset, width) {
            (0x0, Width::Word) => u64::from(self.ctlr | CTLR_DS),
            // TYPER: IDbits 9 (10-bit INTIDs), ITLinesNumber for SPIS.
            (0x4, Width::Word) => (9 << 19) | (SPIS as u64 / 32),
            (PIDR2, Width::Word) => u64::from(PIDR2_GICV3),
            (0x6000..0x8000, Width::Double) => {
                let n = usize::try_from((offset - 0x6000) / 8).unwrap_or(usize::MAX);
                n.checked_sub(32)
                    .and_then(|spi| self.routes.get(spi))
                    .copied()
                    .unwrap_or(0)
            }
            _ => match bank_reg(offset, width) {
                // Bank 0 (SGIs, PPIs) is the redistributors' with ARE.
                Some((bank, reg)) if bank >= 1 => self
                    .spis
                    .get(bank - 1)
                    .map_or(0, |b| b.read(reg, Live::default())),
                _ => 0,
            },
        }
    }

    /// Takes the pending bits `intids` (bit n = INTID n) of `vcpu`'s SGIs
    /// and PPIs out of the register file: the run loop delivered them, or
    /// their pending state is the live one ([`Live`]).
    pub fn clear_private_pending(&mut self, vcpu: usize, intids: u32) {
        if let Some(b) = self.private.get_mut(vcpu) {
            b.pending &= !intids;
        }
    }

    /// Of the vCPUs in `targets` (bit n = vCPU n), those that have SGI
    /// `intid` in Group 0 (`GICR_IGROUPR0` bit clear): the ones a Group 0
    /// SGI reaches.
    #[must_use]
    pub fn sgi_group0_targets(&self, intid: u32, targets: u32) -> u32 {
        let Some(bit) = 1_u32.checked_shl(intid).filter(|_| intid < 16) else {
            return 0;
        };
        let mut reached = 0;
        for (n, b) in self.private.iter().enumerate().take(self.cpus) {
            if targets & (1 << n) != 0 && b.group & bit == 0 {
                reached |= 1 << n;
            }
        }
        reached
    }

    /// A distributor write at `offset`; [`Write::PendSpis`] for a store
    /// to `GICD_ISPENDR<n>` (n >= 1).
    pub fn write_distributor(&mut self, offset: u64, width: Width, value: u64) -> Write {
        #[allow(clippy::cast_possible_truncation)] // 32-bit registers
        let word = value as u32;
        match (offset, width) {
            (0x0, Width::Word) => {
                // ARE is RAO/WI here: this GIC only routes by affinity.
                self.ctlr = (word & (CTLR_ENABLE_GRP0 | CTLR_ENABLE_GRP1)) | CTLR_ARE;
                Write::Done
            }
            (0x6000..0x8000, Width::Double) => {
                let n = usize::try_from((offset - 0x6000) / 8).unwrap_or(usize::MAX);
                if let Some(route) = n.checked_sub(32).and_then(|spi| self.routes.get_mut(spi)) {
                    // Aff3 (39:32), IRM (31), Aff2..Aff0 (23:0).
                    *route = value & 0xff_80ff_ffff;
                }
                Write::Done
            }
            _ => {
                if let Some((bank, reg)) = bank_reg(offset, width)
                    && bank >= 1
                    && let Some(b) = self.spis.get_mut(bank - 1)
                {
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
        }
    }

    /// Which redistributor and frame offset `offset` (from the first
    /// redistributor's base) reaches.
    fn redistributor(&self, offset: u64) -> Option<(usize, u64)> {
        let vcpu = usize::try_from(offset / GICR_STRIDE).ok()?;
        (vcpu < self.cpus).then_some((vcpu, offset % GICR_STRIDE))
    }

    /// A redistributor read at `offset` from the first redistributor's
    /// base; `live` is the live state of the vCPU that `offset` reaches.
    #[must_use]
    pub fn read_redistributor(&self, offset: u64, width: Width, live: Live) -> u64 {
        let Some((vcpu, frame_offset)) = self.redistributor(offset) else {
            return 0;
        };
        let typer = {
            let last = if vcpu + 1 == self.cpus { 1 << 4 } else { 0 };
            ((vcpu as u64) << 32) | ((vcpu as u64) << 8) | last
        };
        match (frame_offset, width) {
            (0x8, Width::Double) => typer,
            (0x8, Width::Word) => typer & 0xffff_ffff,
            (0xc, Width::Word) => typer >> 32,
            (0x14, Width::Word) => u64::from(self.waker.get(vcpu).copied().unwrap_or(0)),
            (PIDR2, Width::Word) => u64::from(PIDR2_GICV3),
            (0x1_0000.., _) => match bank_reg(frame_offset - 0x1_0000, width) {
                Some((0, reg)) => self.private.get(vcpu).map_or(0, |b| b.read(reg, live)),
                _ => 0,
            },
            _ => 0,
        }
    }

    /// A redistributor write at `offset` from the first redistributor's
    /// base.
    pub fn write_redistributor(&mut self, offset: u64, width: Width, value: u64) -> Write {
        let Some((vcpu, frame_offset)) = self.redistributor(offset) else {
            return Write::Done;
        };
        #[allow(clippy::cast_possible_truncation)] // 32-bit registers
        let word = value as u32;
        match (frame_offset, width) {
            (0x14, Width::Word) => {
                // ChildrenAsleep follows ProcessorSleep at once.
                if let Some(w) = self.waker.get_mut(vcpu) {
                    *w = if word & WAKER_PROCESSOR_SLEEP != 0 {
                        WAKER_PROCESSOR_SLEEP | WAKER_CHILDREN_ASLEEP
                    } else {
                        0
                    };
                }
                Write::Done
            }
            (0x1_0000.., _) => {
                let Some((0, reg)) = bank_reg(frame_offset - 0x1_0000, width) else {
                    return Write::Done;
                };
                let Some(bank) = self.private.get_mut(vcpu) else {
                    return Write::Done;
                };
                match reg {
                    // SGIs' configuration is read-only (edge).
                    BankReg::Config(0) => Write::Done,
                    BankReg::SetPending => {
                        bank.write(reg, word);
                        Write::Pend { vcpu, intids: word }
                    }
                    BankReg::ClearPending => {
                        bank.write(reg, word);
                        Write::Unpend { vcpu, intids: word }
                    }
                    _ => {
                        bank.write(reg, word);
                        Write::Done
                    }
                }
            }
            _ => Write::Done,
        }
    }
}

/// The targets of an `ICC_SGI1R_EL1` write (IHI 0069 12.2.23) by vCPU
/// `from` among `cpus` vCPUs whose MPIDR is their index in Aff0: the SGI's
/// INTID and a bit per target vCPU.
#[must_use]
pub fn sgi1r_targets(value: u64, from: usize, cpus: usize) -> (u32, u32) {
    #[allow(clippy::cast_possible_truncation)] // 4 bits
    let intid = ((value >> 24) & 0xf) as u32;
    let all: u32 = if cpus >= 32 {
        u32::MAX
    } else {
        (1 << cpus) - 1
    };
    if value & (1 << 40) != 0 {
        // IRM: every vCPU but the sender.
        let me = u32::try_from(from)
            .ok()
            .and_then(|f| 1_u32.checked_shl(f))
            .unwrap_or(0);
        return (intid, all & !me);
    }
    // Aff3 (55:48), Aff2 (39:32), Aff1 (23:16) and RS (47:44) must name
    // the block of 16 vCPUs holding ours: Aff1..Aff3 0, RS 0.
    let high =
        (value >> 48) & 0xff | (value >> 32) & 0xff | (value >> 16) & 0xff | (value >> 44) & 0xf;
    if high != 0 {
        return (intid, 0);
    }
    #[allow(clippy::cast_possible_truncation)] // 16 bits
    let list = (value & 0xffff) as u32;
    (intid, list & all)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: u64 = 0x1_0000;

    #[test]
    fn linux_probe_registers() {
        let mut g = Vgic3::new(1);
        assert_eq!(g.read_distributor(PIDR2, Width::Word) >> 4 & 0xf, 3);
        let typer = g.read_distributor(0x4, Width::Word);
        assert_eq!(typer & 0x1f, 1, "ITLinesNumber: 64 INTIDs");
        assert_eq!(typer >> 19 & 0x1f, 9, "IDbits");
        // Linux disables, waits for RWP, enables ARE and group 1.
        g.write_distributor(0, Width::Word, 0);
        assert_eq!(g.read_distributor(0, Width::Word) & (1 << 31), 0);
        g.write_distributor(0, Width::Word, u64::from(CTLR_ARE | CTLR_ENABLE_GRP1));
        assert_eq!(
            g.read_distributor(0, Width::Word),
            u64::from(CTLR_ARE | CTLR_ENABLE_GRP1 | CTLR_DS)
        );
        assert_eq!(
            g.read_redistributor(PIDR2, Width::Word, Live::default()) >> 4 & 0xf,
            3
        );
    }

    #[test]
    fn redistributor_typer_and_waker() {
        let mut g = Vgic3::new(2);
        let typer0 = g.read_redistributor(0x8, Width::Double, Live::default());
        let typer1 = g.read_redistributor(GICR_STRIDE + 0x8, Width::Double, Live::default());
        assert_eq!(typer0 >> 32, 0);
        assert_eq!(typer0 & (1 << 4), 0, "not the last");
        assert_eq!(typer1 >> 32, 1, "Aff0 1");
        assert_ne!(typer1 & (1 << 4), 0, "the last");
        assert_eq!(g.read_redistributor(0xc, Width::Word, Live::default()), 0);
        assert_eq!(
            g.read_redistributor(GICR_STRIDE + 0xc, Width::Word, Live::default()),
            1
        );
        // Beyond the last redistributor: nothing.
        assert_eq!(
            g.read_redistributor(2 * GICR_STRIDE + 0x8, Width::Double, Live::default()),
            0
        );
        // Waking: ProcessorSleep cleared, ChildrenAsleep follows.
        assert_eq!(g.read_redistributor(0x14, Width::Word, Live::default()), 6);
        assert_eq!(g.write_redistributor(0x14, Width::Word, 0), Write::Done);
        assert_eq!(g.read_redistributor(0x14, Width::Word, Live::default()), 0);
        assert_eq!(
            g.read_redistributor(GICR_STRIDE + 0x14, Width::Word, Live::default()),
            6
        );
    }

    #[test]
    fn ppi_enable_priority_and_live_state() {
        let mut g = Vgic3::new(1);
        let none = Live::default();
        g.write_redistributor(D + 0x100, Width::Word, 1 << 27);
        assert!(g.private_enabled(0, 27));
        assert_eq!(g.read_redistributor(D + 0x180, Width::Word, none), 1 << 27);
        g.write_redistributor(D + 0x180, Width::Word, 1 << 27);
        assert!(!g.private_enabled(0, 27));
        // Byte and word priority accesses.
        g.write_redistributor(D + 0x41b, Width::Byte, 0xa0);
        assert_eq!(g.private_priority(0, 27), 0xa0);
        g.write_redistributor(D + 0x418, Width::Word, 0x1122_3344);
        assert_eq!(g.private_priority(0, 24), 0x44);
        assert_eq!(g.private_priority(0, 27), 0x11);
        assert_eq!(g.read_redistributor(D + 0x41a, Width::Byte, none), 0x22);
        // The timer firing: PPI 27 pending in the live state reads pending.
        let live = Live {
            pending: 1 << 27,
            active: 0,
        };
        assert_eq!(g.read_redistributor(D + 0x200, Width::Word, live), 1 << 27);
        assert_eq!(g.read_redistributor(D + 0x280, Width::Word, live), 1 << 27);
        assert_eq!(g.read_redistributor(D + 0x300, Width::Word, live), 0);
        // SGI configuration is read-only; PPI configuration is kept.
        g.write_redistributor(D + 0xc00, Width::Word, 0);
        assert_eq!(
            g.read_redistributor(D + 0xc00, Width::Word, none),
            0xaaaa_aaaa
        );
        g.write_redistributor(D + 0xc04, Width::Word, 0x8000_0000);
        assert_eq!(
            g.read_redistributor(D + 0xc04, Width::Word, none),
            0x8000_0000
        );
        // A guest-set pending SGI is handed to the run loop.
        assert_eq!(
            g.write_redistributor(D + 0x200, Width::Word, 1 << 3),
            Write::Pend {
                vcpu: 0,
                intids: 1 << 3
            }
        );
    }

    #[test]
    fn spis_have_their_own_banks_and_routes() {
        let mut g = Vgic3::new(1);
        // Bank 0 of the distributor is RAZ/WI with affinity routing.
        g.write_distributor(0x100, Width::Word, u64::MAX);
        assert_eq!(g.read_distributor(0x100, Width::Word), 0);
        g.write_distributor(0x104, Width::Word, 1 << 1);
        assert_eq!(g.read_distributor(0x104, Width::Word), 1 << 1);
        g.write_distributor(0x184, Width::Word, 1 << 1);
        assert_eq!(g.read_distributor(0x104, Width::Word), 0);
        g.write_distributor(0x6000 + 33 * 8, Width::Double, 0xffff_ffff_ffff_ffff);
        assert_eq!(
            g.read_distributor(0x6000 + 33 * 8, Width::Double),
            0xff_80ff_ffff
        );
        // Past the implemented SPIs: RAZ/WI, no panic.
        g.write_distributor(0x108, Width::Word, u64::MAX);
        assert_eq!(g.read_distributor(0x108, Width::Word), 0);
        g.write_distributor(0x7ff8, Width::Double, 1);
        assert_eq!(g.read_distributor(0x7ff8, Width::Double), 0);
    }

    #[test]
    fn set_and_clear_pending_go_to_the_run_loop() {
        let mut g = Vgic3::new(2);
        let none = Live::default();
        let rd1 = GICR_STRIDE + D;
        // GICR_ISPENDR0 of vCPU 1: SGI 3, the vtimer PPI 27, PPI 20.
        let set = (1 << 3) | (1 << 27) | (1 << 20);
        assert_eq!(
            g.write_redistributor(rd1 + 0x200, Width::Word, set),
            Write::Pend {
                vcpu: 1,
                intids: u32::try_from(set).unwrap()
            }
        );
        assert_eq!(g.read_redistributor(rd1 + 0x200, Width::Word, none), set);
        // The run loop delivers the SGI and ignores the timer PPI: only
        // PPI 20 stays in the register file.
        g.clear_private_pending(1, (1 << 3) | (1 << 27));
        assert_eq!(
            g.read_redistributor(rd1 + 0x200, Width::Word, none),
            1 << 20
        );
        assert_eq!(
            g.read_redistributor(D + 0x200, Width::Word, none),
            0,
            "vCPU 0's"
        );
        // GICR_ICPENDR0 clears the kept bit and is handed on.
        assert_eq!(
            g.write_redistributor(rd1 + 0x280, Width::Word, (1 << 20) | (1 << 5)),
            Write::Unpend {
                vcpu: 1,
                intids: (1 << 20) | (1 << 5)
            }
        );
        assert_eq!(g.read_redistributor(rd1 + 0x280, Width::Word, none), 0);
        // The timer's line still reads pending whatever was written.
        let live = Live {
            pending: 1 << 27,
            active: 0,
        };
        g.write_redistributor(rd1 + 0x280, Width::Word, 1 << 27);
        assert_eq!(
            g.read_redistributor(rd1 + 0x200, Width::Word, live),
            1 << 27
        );
    }

    #[test]
    fn spi_set_pending_is_kept_and_reported() {
        let mut g = Vgic3::new(1);
        assert_eq!(
            g.write_distributor(0x204, Width::Word, 1 << 1),
            Write::PendSpis {
                first: 32,
                intids: 1 << 1
            }
        );
        assert_eq!(g.read_distributor(0x204, Width::Word), 1 << 1);
        assert_eq!(g.write_distributor(0x284, Width::Word, 1 << 1), Write::Done);
        assert_eq!(g.read_distributor(0x204, Width::Word), 0);
        // Bank 0 (SGIs/PPIs) of the distributor is RAZ/WI with ARE.
        assert_eq!(g.write_distributor(0x200, Width::Word, 1), Write::Done);
        assert_eq!(g.write_distributor(0x204, Width::Word, 0), Write::Done);
    }

    #[test]
    fn group0_sgis_reach_only_group0_targets() {
        let mut g = Vgic3::new(2);
        // At reset every SGI is Group 0.
        assert_eq!(g.sgi_group0_targets(1, 0b11), 0b11);
        // Linux puts every SGI of every vCPU in Group 1.
        g.write_redistributor(D + 0x080, Width::Word, u64::from(u32::MAX));
        assert_eq!(g.sgi_group0_targets(1, 0b11), 0b10);
        g.write_redistributor(GICR_STRIDE + D + 0x080, Width::Word, u64::from(u32::MAX));
        assert_eq!(g.sgi_group0_targets(1, 0b11), 0);
        // Only SGIs, only existing vCPUs.
        let mut g = Vgic3::new(1);
        assert_eq!(g.sgi_group0_targets(16, 1), 0);
        assert_eq!(g.sgi_group0_targets(2, 0b110), 0);
        g.write_redistributor(D + 0x080, Width::Word, 1 << 2);
        assert_eq!(g.sgi_group0_targets(2, 1), 0);
        assert_eq!(g.sgi_group0_targets(3, 1), 1);
    }

    #[test]
    fn spi_target_follows_enable_group_and_route() {
        let mut g = Vgic3::new(2);
        // SPI 33 (the UART's): disabled at reset.
        assert_eq!(g.spi_target(33), None);
        g.write_distributor(0x104, Width::Word, 1 << 1);
        assert_eq!(g.spi_target(33), None, "group 0 not enabled");
        // Linux: every SPI group 1, then Group 1 enabled.
        g.write_distributor(0x084, Width::Word, u64::MAX);
        g.write_distributor(0, Width::Word, u64::from(CTLR_ARE | CTLR_ENABLE_GRP1));
        assert_eq!(g.spi_target(33), Some(0), "IROUTER 0: vCPU 0");
        g.write_distributor(0x6000 + 33 * 8, Width::Double, 1);
        assert_eq!(g.spi_target(33), Some(1));
        // A CPU that does not exist, or another cluster: nobody.
        g.write_distributor(0x6000 + 33 * 8, Width::Double, 2);
        assert_eq!(g.spi_target(33), None);
        g.write_distributor(0x6000 + 33 * 8, Width::Double, 1 << 8);
        assert_eq!(g.spi_target(33), None);
        // IRM: any CPU, vCPU 0.
        g.write_distributor(0x6000 + 33 * 8, Width::Double, (1 << 31) | 1);
        assert_eq!(g.spi_target(33), Some(0));
        g.write_distributor(0x184, Width::Word, 1 << 1);
        assert_eq!(g.spi_target(33), None, "disabled again");
        // Not an implemented SPI, not an SPI.
        assert_eq!(g.spi_target(32 + u32::try_from(SPIS).unwrap()), None);
        assert_eq!(g.spi_target(27), None);
    }

    #[test]
    fn odd_widths_and_offsets_are_raz_wi() {
        let mut g = Vgic3::new(1);
        for offset in (0..0x1_0000).step_by(4) {
            for width in [Width::Byte, Width::Half, Width::Word, Width::Double] {
                let _ = g.read_distributor(offset, width);
                g.write_distributor(offset, width, u64::MAX);
                let _ = g.read_redistributor(offset, width, Live::default());
                let _ = g.write_redistributor(offset, width, u64::MAX);
                let _ = g.read_redistributor(D + offset, width, Live::default());
                let _ = g.write_redistributor(D + offset, width, u64::MAX);
            }
        }
        // A half-word access to an enable register does nothing.
        let mut g = Vgic3::new(1);
        g.write_redistributor(D + 0x100, Width::Half, 0xffff);
        assert!(!g.private_enabled(0, 0));
    }

    #[test]
    fn sgi1r_targets_decode() {
        // SGI 1 to Aff0 0 (vCPU 0), from vCPU 0.
        assert_eq!(sgi1r_targets((1 << 24) | 1, 0, 1), (1, 1));
        // To vCPUs 0 and 1 of 2.
        assert_eq!(sgi1r_targets((5 << 24) | 0b11, 0, 2), (5, 0b11));
        // A target that does not exist is dropped.
        assert_eq!(sgi1r_targets(0b100, 0, 2), (0, 0));
        // IRM: everyone but the sender.
        assert_eq!(sgi1r_targets((1 << 40) | (2 << 24), 1, 3), (2, 0b101));
        // Another cluster (Aff1 1): nobody here.
        assert_eq!(sgi1r_targets((1 << 16) | 1, 0, 2), (0, 0));
    }
}
