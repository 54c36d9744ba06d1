//! An emulated PL011 UART for the guest (PrimeCell UART PL011 TRM, ARM
//! DDI 0183): the registers Linux's `amba-pl011` driver and
//! `earlycon=pl011` touch, on stage 2 data aborts.
//!
//! - Transmit: a byte written to `UARTDR` goes out at once (the transmit
//!   FIFO never holds data: `FR.TXFE` set, `FR.TXFF` and `FR.BUSY` clear),
//!   into a [`LineBuffer`] the hypervisor prints a whole line at a time,
//!   so that its own messages never split a guest line. Like QEMU's
//!   model, the byte goes out whether or not `CR.UARTEN`/`CR.TXE` are set
//!   (`earlycon` writes a UART that firmware would have enabled); with
//!   `CR.LBE` (loopback) it goes nowhere (the receive side is not
//!   modelled).
//! - Receive: the receive FIFO is always empty (`FR.RXFE` set, `UARTDR`
//!   reads 0), so the receive, receive-timeout and error interrupts never
//!   assert.
//! - Interrupts: the transmit interrupt follows the TRM's FIFO-level rule
//!   (asserted while the transmit FIFO is at or below its trigger level,
//!   whatever `UARTIFLS` says): with a FIFO that drains at once the
//!   condition always holds, so `RIS.TXRIS` is always set and a write of
//!   `ICR.TXIC` clears it only for the condition to assert it again at
//!   once. `MIS = RIS & IMSC`; the UART's interrupt line ([`Pl011::line`])
//!   is `MIS != 0`, level-sensitive, so the transmit interrupt follows
//!   `IMSC.TXIM`, which the driver sets while it has characters waiting
//!   for room in the FIFO and clears once its buffer is empty.
//! - Identification: the PrimeCell peripheral and cell ID registers at
//!   0xFE0..0xFFC read as an ARM PL011 r1p4 (`0x00141011`, `0xB105F00D`),
//!   as QEMU's, so the AMBA bus probes the driver.
//!
//! Registers take byte, half-word and word accesses at their offset;
//! other offsets and widths read as zero and ignore writes.

use super::mmio::Width;

/// The register page's size.
pub const SIZE: u64 = 0x1000;

/// Register offsets.
const DR: u64 = 0x000;
const RSR_ECR: u64 = 0x004;
const FR: u64 = 0x018;
const ILPR: u64 = 0x020;
const IBRD: u64 = 0x024;
const FBRD: u64 = 0x028;
const LCR_H: u64 = 0x02c;
const CR: u64 = 0x030;
const IFLS: u64 = 0x034;
const IMSC: u64 = 0x038;
const RIS: u64 = 0x03c;
const MIS: u64 = 0x040;
const ICR: u64 = 0x044;
const DMACR: u64 = 0x048;
/// `UARTPeriphID0..3` and `UARTPCellID0..3`, one byte per word.
const ID_BASE: u64 = 0xfe0;
const ID_BYTES: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// `UARTFR`: receive FIFO empty, transmit FIFO empty.
const FR_RXFE: u32 = 1 << 4;
const FR_TXFE: u32 = 1 << 7;
/// `UARTCR`: loopback enable.
const CR_LBE: u32 = 1 << 7;
/// `UARTCR` at reset: TXE and RXE.
const CR_RESET: u32 = 0x300;
/// `UARTIFLS` at reset: both FIFOs at half.
const IFLS_RESET: u32 = 0x12;
/// The interrupt bits (`IMSC`, `RIS`, `MIS`, `ICR`): 10:0.
const INT_MASK: u32 = 0x7ff;
/// The transmit interrupt.
pub const INT_TX: u32 = 1 << 5;

/// The UART's registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pl011 {
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    dmacr: u32,
}

impl Default for Pl011 {
    fn default() -> Self {
        Self::new()
    }
}

/// What an access did beyond the registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// A byte to transmit.
    Transmit(u8),
}

impl Pl011 {
    /// A UART at reset (`UARTCR` TXE and RXE, everything masked).
    #[must_use]
    pub const fn new() -> Self {
        Self {
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: CR_RESET,
            ifls: IFLS_RESET,
            imsc: 0,
            dmacr: 0,
        }
    }

    /// The raw interrupt status (`UARTRIS`): the transmit interrupt only
    /// (see the module's documentation).
    #[must_use]
    pub const fn raw_status(&self) -> u32 {
        INT_TX
    }

    /// The masked interrupt status (`UARTMIS`).
    #[must_use]
    pub const fn masked_status(&self) -> u32 {
        self.raw_status() & self.imsc
    }

    /// The level of the UART's interrupt line (`UARTINTR`).
    #[must_use]
    pub const fn line(&self) -> bool {
        self.masked_status() != 0
    }

    /// A read of `width` at `offset` (below [`SIZE`]).
    #[must_use]
    pub fn read(&self, offset: u64, width: Width) -> u32 {
        if matches!(width, Width::Double) {
            return 0;
        }
        let value = match offset {
            DR | RSR_ECR => 0,
            FR => FR_RXFE | FR_TXFE,
            ILPR => self.ilpr,
            IBRD => self.ibrd,
            FBRD => self.fbrd,
            LCR_H => self.lcr_h,
            CR => self.cr,
            IFLS => self.ifls,
            IMSC => self.imsc,
            RIS => self.raw_status(),
            MIS => self.masked_status(),
            DMACR => self.dmacr,
            ID_BASE..=0xffc if offset & 3 == 0 => {
                let n = usize::try_from((offset - ID_BASE) / 4).unwrap_or(usize::MAX);
                u32::from(ID_BYTES.get(n).copied().unwrap_or(0))
            }
            _ => 0,
        };
        match width {
            Width::Byte => value & 0xff,
            Width::Half => value & 0xffff,
            Width::Word | Width::Double => value,
        }
    }

    /// A write of `value` (`width` wide) at `offset`.
    pub fn write(&mut self, offset: u64, width: Width, value: u64) -> Effect {
        if matches!(width, Width::Double) {
            return Effect::None;
        }
        #[allow(clippy::cast_possible_truncation)] // registers of 16 bits at most
        let value = value as u32;
        match offset {
            DR => {
                if self.cr & CR_LBE != 0 {
                    return Effect::None;
                }
                return Effect::Transmit(value.to_le_bytes()[0]);
            }
            // Clears the receive errors: there are none. ICR clears
            // interrupts whose conditions persist or never occur.
            RSR_ECR | ICR => {}
            ILPR => self.ilpr = value & 0xff,
            IBRD => self.ibrd = value & 0xffff,
            FBRD => self.fbrd = value & 0x3f,
            LCR_H => self.lcr_h = value & 0xff,
            CR => self.cr = value & 0xff87,
            IFLS => self.ifls = value & 0x3f,
            IMSC => self.imsc = value & INT_MASK,
            DMACR => self.dmacr = value & 0x7,
            _ => {}
        }
        Effect::None
    }
}

/// The guest's output, collected into lines: [`push`](Self::push) gives
/// a complete line (without its end) when a newline comes, or the bytes
/// so far when the buffer is full. Carriage returns are dropped.
#[derive(Clone, Debug)]
pub struct LineBuffer {
    bytes: [u8; LINE_MAX],
    len: usize,
}

/// The longest line kept before it is given out in pieces.
pub const LINE_MAX: usize = 1024;

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    /// An empty buffer.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            bytes: [0; LINE_MAX],
            len: 0,
        }
    }

    /// Adds `byte`; returns the line to print when it completes one (a
    /// newline, or a full buffer). The caller prints the line and a
    /// newline, then calls [`clear`](Self::clear).
    pub fn push(&mut self, byte: u8) -> Option<&[u8]> {
        match byte {
            b'\r' => None,
            b'\n' => Some(self.pending()),
            _ => {
                if let Some(slot) = self.bytes.get_mut(self.len) {
                    *slot = byte;
                    self.len += 1;
                }
                (self.len == LINE_MAX).then(|| self.pending())
            }
        }
    }

    /// The bytes of the line not given out yet.
    #[must_use]
    pub fn pending(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }

    /// Forgets the line (after it was printed).
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// Whether a guest line could pass for one of the hypervisor's (its
/// verdict `RESULT ...` or an `hv:` message): the caller prints it with
/// a prefix.
#[must_use]
pub fn looks_like_hypervisor(line: &[u8]) -> bool {
    line.starts_with(b"RESULT") || line.starts_with(b"hv:")
}

#[cfg(test)]
mod tests {
    extern crate std;

    use std::vec::Vec;

    use super::*;

    const WIDTHS: [Width; 3] = [Width::Byte, Width::Half, Width::Word];

    #[test]
    fn the_amba_bus_reads_a_pl011_id() {
        let u = Pl011::new();
        let id: Vec<u32> = (0..8)
            .map(|n| u.read(ID_BASE + 4 * n, Width::Word))
            .collect();
        assert_eq!(id, [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
        // The periphid the bus assembles: part 0x011, designer 0x41 (ARM),
        // revision 1.
        let periphid = id[..4]
            .iter()
            .enumerate()
            .fold(0, |acc, (i, b)| acc | (b << (8 * i)));
        assert_eq!(periphid & 0xfff, 0x011);
        assert_eq!((periphid >> 12) & 0xff, 0x41);
        assert_eq!((periphid >> 20) & 0xf, 1);
        assert_eq!(u.read(ID_BASE + 2, Width::Byte), 0, "not at a register");
    }

    #[test]
    fn fifos_read_empty_and_never_full() {
        let mut u = Pl011::new();
        for _ in 0..100 {
            assert_eq!(
                u.write(DR, Width::Half, u64::from(b'x')),
                Effect::Transmit(b'x')
            );
        }
        let fr = u.read(FR, Width::Half);
        assert_ne!(fr & FR_TXFE, 0);
        assert_ne!(fr & FR_RXFE, 0);
        assert_eq!(fr & (1 << 5), 0, "TXFF");
        assert_eq!(fr & (1 << 3), 0, "BUSY");
        assert_eq!(u.read(DR, Width::Word), 0);
        assert_eq!(u.read(RSR_ECR, Width::Word), 0);
    }

    #[test]
    fn dr_transmits_its_low_byte_at_any_width_unless_looped_back() {
        let mut u = Pl011::new();
        for w in WIDTHS {
            assert_eq!(u.write(DR, w, 0x1234_5641), Effect::Transmit(b'A'));
        }
        assert_eq!(u.write(DR, Width::Double, 0x41), Effect::None);
        u.write(CR, Width::Half, u64::from(CR_LBE | 0x301));
        assert_eq!(u.write(DR, Width::Byte, 0x41), Effect::None);
        u.write(CR, Width::Half, 0x301);
        assert_eq!(u.write(DR, Width::Byte, 0x41), Effect::Transmit(b'A'));
    }

    #[test]
    fn control_registers_keep_their_implemented_bits() {
        let mut u = Pl011::new();
        assert_eq!(u.read(CR, Width::Word), CR_RESET);
        assert_eq!(u.read(IFLS, Width::Word), IFLS_RESET);
        for (offset, mask) in [
            (ILPR, 0xff),
            (IBRD, 0xffff),
            (FBRD, 0x3f),
            (LCR_H, 0xff),
            (CR, 0xff87),
            (IFLS, 0x3f),
            (IMSC, 0x7ff),
            (DMACR, 0x7),
        ] {
            assert_eq!(u.write(offset, Width::Word, u64::MAX), Effect::None);
            assert_eq!(u.read(offset, Width::Word), mask, "{offset:#x}");
            assert_eq!(u.read(offset, Width::Byte), mask & 0xff, "{offset:#x}");
            u.write(offset, Width::Half, 0);
            assert_eq!(u.read(offset, Width::Word), 0, "{offset:#x}");
        }
        // Read-only registers ignore writes.
        u.write(RIS, Width::Word, 0);
        u.write(MIS, Width::Word, u64::from(INT_MASK));
        u.write(FR, Width::Word, 0);
        assert_eq!(u.read(RIS, Width::Word), INT_TX);
        assert_eq!(u.read(MIS, Width::Word), 0);
        assert_eq!(u.read(FR, Width::Word), FR_RXFE | FR_TXFE);
    }

    #[test]
    fn the_interrupt_line_is_ris_and_imsc() {
        let mut u = Pl011::new();
        assert!(!u.line(), "masked at reset");
        // The driver's startup: receive and receive-timeout interrupts
        // unmasked; the receive FIFO stays empty, so nothing asserts.
        u.write(IMSC, Width::Half, (1 << 4) | (1 << 6));
        assert_eq!(u.read(MIS, Width::Half), 0);
        assert!(!u.line());
        // Characters waiting: TXIM set, the FIFO is at its trigger level.
        u.write(IMSC, Width::Half, (1 << 4) | (1 << 6) | u64::from(INT_TX));
        assert_eq!(u.read(MIS, Width::Half), INT_TX);
        assert!(u.line());
        // ICR: the FIFO-level condition still holds, the line stays high.
        u.write(ICR, Width::Half, u64::from(INT_MASK));
        assert!(u.line());
        assert_eq!(u.read(RIS, Width::Half), INT_TX);
        // The driver's buffer is empty: it masks TXIM, the line drops.
        u.write(IMSC, Width::Half, (1 << 4) | (1 << 6));
        assert!(!u.line());
        assert_eq!(u.read(MIS, Width::Half), 0);
    }

    #[test]
    fn every_offset_and_width_is_safe() {
        let mut u = Pl011::new();
        for offset in 0..SIZE {
            for w in [Width::Byte, Width::Half, Width::Word, Width::Double] {
                let _ = u.read(offset, w);
                let effect = u.write(offset, w, u64::MAX);
                assert!(offset == DR || effect == Effect::None);
            }
        }
    }

    #[test]
    fn lines_come_out_whole_without_carriage_returns() {
        let mut b = LineBuffer::new();
        for &c in b"hello\r" {
            assert_eq!(b.push(c), None);
        }
        assert_eq!(b.push(b'\n'), Some(&b"hello"[..]));
        b.clear();
        assert_eq!(b.pending(), b"");
        // An empty line.
        assert_eq!(b.push(b'\n'), Some(&b""[..]));
        b.clear();
        // A line longer than the buffer comes out in pieces.
        let mut pieces = 0;
        for _ in 0..LINE_MAX * 2 + 3 {
            if let Some(piece) = b.push(b'y') {
                assert_eq!(piece.len(), LINE_MAX);
                pieces += 1;
                b.clear();
            }
        }
        assert_eq!(pieces, 2);
        assert_eq!(b.pending(), b"yyy");
    }

    #[test]
    fn guest_lines_cannot_pass_for_the_hypervisor() {
        assert!(looks_like_hypervisor(b"RESULT scenario=linux PASS"));
        assert!(looks_like_hypervisor(b"hv: linux: done"));
        assert!(!looks_like_hypervisor(b"[    0.000000] Booting Linux"));
        assert!(!looks_like_hypervisor(b"ATV-INIT: done"));
    }
}
