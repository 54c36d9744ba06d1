//! The PL011 console, shared by every CPU behind a critical section.

use core::cell::RefCell;
use core::fmt::{self, Write};
use core::ptr::NonNull;

use arm_pl011_uart::{PL011Registers, Uart, UniqueMmioPointer};
use critical_section::Mutex;

/// The first PL011 of QEMU `virt`.
const PL011_BASE: usize = 0x0900_0000;

static CONSOLE: Mutex<RefCell<Option<Uart<'static>>>> = Mutex::new(RefCell::new(None));

/// Takes the UART. Call once, before any output.
pub(crate) fn init() {
    let Some(base) = NonNull::new(PL011_BASE as *mut PL011Registers) else {
        return;
    };
    // SAFETY: the PL011 is mapped as device memory by the initial page table
    // and this is the only place that makes a pointer to it; `init` runs once
    // on the boot CPU before anything else prints.
    let uart = Uart::new(unsafe { UniqueMmioPointer::new(base) });
    critical_section::with(|cs| *CONSOLE.borrow_ref_mut(cs) = Some(uart));
}

/// Writes formatted output; dropped silently before [`init`].
pub(crate) fn write_fmt(args: fmt::Arguments<'_>) {
    critical_section::with(|cs| {
        if let Some(uart) = CONSOLE.borrow_ref_mut(cs).as_mut() {
            // A UART write cannot fail; the only error would be our own Display.
            let _ = uart.write_fmt(args);
        }
    });
}

/// Writes raw bytes (a guest's output), replacing non-ASCII with `?`.
pub(crate) fn write_bytes(bytes: &[u8]) {
    critical_section::with(|cs| {
        if let Some(uart) = CONSOLE.borrow_ref_mut(cs).as_mut() {
            for &b in bytes {
                let b = if b.is_ascii() { b } else { b'?' };
                uart.write_word(b);
            }
        }
    });
}

/// Takes a byte the host's UART received, if any (input for the Linux
/// guest's console); `None` before [`init`], when nothing came, or on a
/// receive error.
pub(crate) fn read_byte() -> Option<u8> {
    critical_section::with(|cs| {
        CONSOLE
            .borrow_ref_mut(cs)
            .as_mut()
            .and_then(|uart| uart.read_word().ok().flatten())
    })
}

/// Prints to the console.
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

/// Prints a line to the console, in one critical section: no other
/// CPU's output (a guest's console line) comes between it and its end.
macro_rules! println {
    () => { $crate::console::write_fmt(format_args!("\n")) };
    ($($arg:tt)*) => {
        $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {print, println};
