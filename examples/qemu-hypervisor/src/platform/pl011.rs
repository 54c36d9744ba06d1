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
//! - Receive: bytes the hypervisor hands in ([`Pl011::receive`], the
//!   host console's input) wait in a receive FIFO of [`FIFO_DEPTH`]
//!   entries (one with `LCR_H.FEN` clear) until the guest reads `UARTDR`;
//!   a byte that finds it full is lost and sets the overrun interrupt
//!   (`OERIS`, cleared by `ICR.OEIC`) and `RSR.OE` (cleared by a write of
//!   `ECR`). The hypervisor hands bytes in only while the guest is ready
//!   for them ([`Pl011::wants_input`]); until then they wait in the host's
//!   UART.
//! - Interrupts are levels of the FIFOs' state (PL011 TRM, 2.8): the
//!   transmit interrupt is asserted while the transmit FIFO is at or below
//!   its trigger level; with a FIFO that drains at once that always
//!   holds, so `RIS.TXRIS` is always set and a write of `ICR.TXIC` clears
//!   it only for the condition to assert it again at once. The receive
//!   interrupt is asserted while the receive FIFO is at or above its
//!   trigger level (`IFLS.RXIFLSEL`; any byte without the FIFO), the
//!   receive timeout interrupt while it holds data (the model has no bit
//!   periods: the timeout has always passed). `MIS = RIS & IMSC`; the
//!   UART's interrupt line ([`Pl011::line`]) is `MIS != 0`,
//!   level-sensitive: the transmit interrupt follows `IMSC.TXIM`, which
//!   Linux sets while it has characters waiting for room in the FIFO and
//!   clears once its buffer is empty; the receive interrupts last until
//!   the guest has read the FIFO empty.
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
/// The receive interrupt.
pub const INT_RX: u32 = 1 << 4;
/// The receive timeout interrupt.
pub const INT_RT: u32 = 1 << 6;
/// The overrun error interrupt.
const INT_OE: u32 = 1 << 10;
/// `UARTFR`: receive FIFO full.
const FR_RXFF: u32 = 1 << 6;
/// `UARTRSR`: overrun error.
const RSR_OE: u32 = 1 << 3;
/// `UARTLCR_H`: FIFOs enabled.
const LCRH_FEN: u32 = 1 << 4;
/// `UARTCR`: UART enable, receive enable.
const CR_UARTEN: u32 = 1 << 0;
const CR_RXE: u32 = 1 << 9;
/// The receive FIFO's depth (a PL011 r1p4: 16 entries).
pub const FIFO_DEPTH: usize = 16;

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
    /// The receive FIFO: `rx_len` bytes from `rx_head`.
    rx: [u8; FIFO_DEPTH],
    rx_head: usize,
    rx_len: usize,
    /// Overrun: `RSR.OE` and `RIS.OERIS`.
    rsr: u32,
    overrun: bool,
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
            rx: [0; FIFO_DEPTH],
            rx_head: 0,
            rx_len: 0,
            rsr: 0,
            overrun: false,
        }
    }

    /// The receive FIFO's size now: [`FIFO_DEPTH`], or 1 with the FIFOs
    /// disabled.
    const fn rx_capacity(&self) -> usize {
        if self.lcr_h & LCRH_FEN != 0 {
            FIFO_DEPTH
        } else {
            1
        }
    }

    /// Whether the guest is ready for input: receiver enabled (`UARTEN`,
    /// `RXE`), a receive interrupt unmasked (the driver's port is open),
    /// room in the receive FIFO.
    #[must_use]
    pub const fn wants_input(&self) -> bool {
        self.cr & (CR_UARTEN | CR_RXE) == CR_UARTEN | CR_RXE
            && self.imsc & (INT_RX | INT_RT) != 0
            && self.rx_len < self.rx_capacity()
    }

    /// A byte arrives on the receive line: into the receive FIFO, or lost
    /// with an overrun if it is full. Returns whether it was kept.
    pub fn receive(&mut self, byte: u8) -> bool {
        if self.rx_len >= self.rx_capacity() {
            self.overrun = true;
            self.rsr |= RSR_OE;
            return false;
        }
        if let Some(slot) = self.rx.get_mut((self.rx_head + self.rx_len) % FIFO_DEPTH) {
            *slot = byte;
        }
        self.rx_len += 1;
        true
    }

    /// The receive FIFO's trigger level (`IFLS.RXIFLSEL`: 1/8 .. 7/8).
    const fn rx_trigger(&self) -> usize {
        if self.lcr_h & LCRH_FEN == 0 {
            return 1;
        }
        match (self.ifls >> 3) & 7 {
            0 => FIFO_DEPTH / 8,
            1 => FIFO_DEPTH / 4,
            2 => FIFO_DEPTH / 2,
            3 => FIFO_DEPTH * 3 / 4,
            _ => FIFO_DEPTH * 7 / 8,
        }
    }

    /// The raw interrupt status (`UARTRIS`; see the module's
    /// documentation).
    #[must_use]
    pub const fn raw_status(&self) -> u32 {
        let mut ris = INT_TX;
        if self.rx_len > 0 {
            ris |= INT_RT;
        }
        if self.rx_len >= self.rx_trigger() {
            ris |= INT_RX;
        }
        if self.overrun {
            ris |= INT_OE;
        }
        ris
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
    /// A read of `UARTDR` takes a byte from the receive FIFO.
    pub fn read(&mut self, offset: u64, width: Width) -> u32 {
        if matches!(width, Width::Double) {
            return 0;
        }
        let value = match offset {
            DR => self.take_byte(),
            RSR_ECR => self.rsr,
            FR => {
                let mut fr = FR_TXFE;
                if self.rx_len == 0 {
                    fr |= FR_RXFE;
                }
                if self.rx_len >= self.rx_capacity() {
                    fr |= FR_RXFF;
                }
                fr
            }
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

    /// The oldest byte of the receive FIFO (0 if it is empty).
    fn take_byte(&mut self) -> u32 {
        if self.rx_len == 0 {
            return 0;
        }
        let byte = self.rx.get(self.rx_head).copied().unwrap_or(0);
        self.rx_head = (self.rx_head + 1) % FIFO_DEPTH;
        self.rx_len -= 1;
        u32::from(byte)
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
            RSR_ECR => self.rsr = 0,
            // The other interrupts are levels of the FIFOs' state: ICR
            // cannot clear a condition that still holds.
            ICR if value & INT_OE != 0 => self.overrun = false,
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
        let mut u = Pl011::new();
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
    fn received_bytes_raise_rx_interrupts_until_read() {
        let mut u = Pl011::new();
        assert!(!u.wants_input(), "disabled, masked");
        // The driver's startup: FIFOs on, RX at 1/2, UART on, RX and RT
        // unmasked.
        u.write(LCR_H, Width::Half, u64::from(LCRH_FEN | 0x60));
        u.write(IFLS, Width::Half, 2 << 3);
        u.write(CR, Width::Half, u64::from(CR_UARTEN | CR_RXE | (1 << 8)));
        assert!(!u.wants_input(), "interrupts masked");
        u.write(IMSC, Width::Half, u64::from(INT_RX | INT_RT));
        assert!(u.wants_input());
        assert!(!u.line());
        // One byte: the receive timeout interrupt (not yet the level).
        assert!(u.receive(b'a'));
        assert_eq!(u.read(MIS, Width::Half), INT_RT);
        assert!(u.line());
        assert_eq!(u.read(FR, Width::Half) & FR_RXFE, 0);
        // ICR cannot clear a condition that holds.
        u.write(ICR, Width::Half, u64::from(INT_MASK));
        assert!(u.line());
        // Up to the trigger level (8 of 16): RXRIS too.
        for b in b"bcdefgh" {
            assert!(u.receive(*b));
        }
        assert_eq!(u.read(RIS, Width::Half), INT_TX | INT_RX | INT_RT);
        // Read empty, in order: every interrupt drops.
        let read: Vec<u8> = (0..8)
            .map(|_| u.read(DR, Width::Half).to_le_bytes()[0])
            .collect();
        assert_eq!(read, b"abcdefgh");
        assert_ne!(u.read(FR, Width::Half) & FR_RXFE, 0);
        assert!(!u.line());
        assert_eq!(u.read(DR, Width::Half), 0, "empty");
    }

    #[test]
    fn a_full_receive_fifo_overruns() {
        let mut u = Pl011::new();
        u.write(LCR_H, Width::Half, u64::from(LCRH_FEN));
        u.write(CR, Width::Half, u64::from(CR_UARTEN | CR_RXE));
        u.write(IMSC, Width::Half, u64::from(INT_RX | INT_RT | INT_OE));
        for n in 0..FIFO_DEPTH {
            assert!(u.receive(u8::try_from(n).unwrap()));
        }
        assert!(!u.wants_input(), "full");
        assert_ne!(u.read(FR, Width::Half) & FR_RXFF, 0);
        assert!(!u.receive(0xff));
        assert_ne!(u.read(RIS, Width::Half) & INT_OE, 0);
        assert_eq!(u.read(RSR_ECR, Width::Half), RSR_OE);
        u.write(RSR_ECR, Width::Half, 0);
        assert_eq!(u.read(RSR_ECR, Width::Half), 0);
        u.write(ICR, Width::Half, u64::from(INT_OE));
        assert_eq!(u.read(RIS, Width::Half) & INT_OE, 0);
        // The oldest byte comes out first; the lost one never does.
        assert_eq!(u.read(DR, Width::Byte), 0);
        // Without the FIFOs: one byte at a time.
        let mut u = Pl011::new();
        u.write(CR, Width::Half, u64::from(CR_UARTEN | CR_RXE));
        u.write(IMSC, Width::Half, u64::from(INT_RX));
        assert!(u.receive(1));
        assert_eq!(u.read(MIS, Width::Half), INT_RX, "the level is one byte");
        assert!(!u.wants_input());
        assert!(!u.receive(2));
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
