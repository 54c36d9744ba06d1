//! The device tree an unmodified Linux guest boots with: what the
//! hypervisor gives it, not what the host has (QEMU's own tree describes
//! the host: its RAM, PSCI through SMC, with GICv2 the CPU interface
//! rather than the virtual one backing it).

use arch_timer_virt::IntId;

use super::fdt::{FdtError, FdtWriter};

/// The interrupt controller as the guest sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestGic {
    /// GICv3: a distributor (64 KiB) and one redistributor (two 64 KiB
    /// frames) per vCPU from `redistributors`.
    V3 {
        /// `GICD` base.
        distributor: u64,
        /// The first vCPU's `GICR` base.
        redistributors: u64,
    },
    /// GICv2: a distributor (4 KiB) and the CPU interface (8 KiB) at the
    /// address the hypervisor backs with the virtual CPU interface
    /// (`GICV`).
    V2 {
        /// `GICD` base.
        distributor: u64,
        /// `GICC` base as the guest sees it.
        cpu_interface: u64,
    },
}

/// The timer PPIs in the order of the `arm,armv8-timer` binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerPpis {
    /// The secure EL1 physical timer (unused by a non-secure guest, still
    /// part of the binding).
    pub secure_physical: IntId,
    /// The EL1 physical timer (emulated by the library).
    pub physical: IntId,
    /// The EL1 virtual timer (forwarded by the library).
    pub virtual_timer: IntId,
    /// The EL2 physical timer (a guest at EL1 never uses it).
    pub hyp_physical: IntId,
}

impl TimerPpis {
    /// QEMU `virt`'s (and most boards') numbering: 29, 30, 27, 26.
    #[must_use]
    pub fn qemu_virt() -> Self {
        Self {
            secure_physical: IntId::ppi(29).unwrap_or(IntId::PHYSICAL_TIMER),
            physical: IntId::PHYSICAL_TIMER,
            virtual_timer: IntId::VIRTUAL_TIMER,
            hyp_physical: IntId::HYP_PHYSICAL_TIMER,
        }
    }

    /// The four PPIs as a mask of INTIDs 0..=31 (bit n = INTID n).
    #[must_use]
    pub const fn mask(&self) -> u32 {
        self.secure_physical.bit()
            | self.physical.bit()
            | self.virtual_timer.bit()
            | self.hyp_physical.bit()
    }
}

/// A PL011 UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart {
    /// Its 4 KiB register page.
    pub base: u64,
    /// Its SPI number (INTID - 32).
    pub spi: u32,
}

/// The PL011's reference clock as QEMU `virt` describes it (`apb-pclk`):
/// a UART clock, unrelated to the system counter.
pub const UART_CLOCK_HZ: u32 = 24_000_000;

/// The guest's machine, as the device tree describes it.
#[derive(Clone, Copy, Debug)]
pub struct GuestMachine<'a> {
    /// Guest RAM: base and size.
    pub ram: (u64, u64),
    /// vCPUs, MPIDR Aff0 = 0..cpus.
    pub cpus: u32,
    /// The interrupt controller.
    pub gic: GuestGic,
    /// The timer's PPIs.
    pub timer: TimerPpis,
    /// The counter frequency (`CNTFRQ_EL0`), stated in the timer node;
    /// `None` leaves it to the guest to read `CNTFRQ_EL0`.
    pub counter_hz: Option<u32>,
    /// The console UART.
    pub uart: Uart,
    /// The kernel command line.
    pub bootargs: &'a str,
    /// The initramfs: start and end (exclusive) guest-physical addresses.
    pub initrd: Option<(u64, u64)>,
}

/// The `phandle` of the interrupt controller.
const GIC_PHANDLE: u32 = 1;
/// The `phandle` of the UART clock.
const CLOCK_PHANDLE: u32 = 2;
/// GIC binding: interrupt type cells.
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
/// GIC binding: level-high trigger.
const IRQ_LEVEL_HIGH: u32 = 4;

/// A device-tree unit address: the hexadecimal base without `0x`.
struct UnitName {
    buf: [u8; 40],
    len: usize,
}

impl UnitName {
    fn new(name: &str, address: u64) -> Self {
        let mut buf = [0_u8; 40];
        let mut len = 0;
        for &b in name.as_bytes().iter().take(20) {
            if let Some(slot) = buf.get_mut(len) {
                *slot = b;
                len += 1;
            }
        }
        if let Some(slot) = buf.get_mut(len) {
            *slot = b'@';
            len += 1;
        }
        let digits = if address == 0 {
            1
        } else {
            (64 - address.leading_zeros()).div_ceil(4)
        };
        for d in (0..digits).rev() {
            let nibble = (address >> (d * 4)) & 0xf;
            let c = b"0123456789abcdef"
                .get(usize::try_from(nibble).unwrap_or(0))
                .copied()
                .unwrap_or(b'0');
            if let Some(slot) = buf.get_mut(len) {
                *slot = c;
                len += 1;
            }
        }
        Self { buf, len }
    }

    fn as_str(&self) -> &str {
        core::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

/// A PPI's interrupt specifier for the timer node; with GICv2 the CPU
/// mask names every vCPU.
fn ppi_cells(ppi: IntId, gic: GuestGic, cpus: u32) -> [u32; 3] {
    let mask = match gic {
        GuestGic::V2 { .. } => ((1_u32 << cpus.min(8)) - 1) << 8,
        GuestGic::V3 { .. } => 0,
    };
    [
        GIC_PPI,
        ppi.get().saturating_sub(IntId::FIRST_PPI),
        mask | IRQ_LEVEL_HIGH,
    ]
}

/// A GICv3 redistributor region: two 64 KiB frames per CPU.
pub const GICR_FRAMES_SIZE: u64 = 0x2_0000;

impl GuestMachine<'_> {
    /// Writes the tree into `buf`; returns its size.
    ///
    /// # Errors
    ///
    /// [`FdtError::NoSpace`] if `buf` is too small.
    pub fn write(&self, buf: &mut [u8]) -> Result<usize, FdtError> {
        let mut w = FdtWriter::new(buf)?;
        w.begin_node("")?;
        w.property_strs("compatible", &["linux,dummy-virt"])?;
        w.property_str("model", "arch-timer-virt example hypervisor guest")?;
        w.property_u32("#address-cells", 2)?;
        w.property_u32("#size-cells", 2)?;
        w.property_u32("interrupt-parent", GIC_PHANDLE)?;

        w.begin_node("chosen")?;
        w.property_str("bootargs", self.bootargs)?;
        let uart_name = UnitName::new("pl011", self.uart.base);
        let mut stdout = [0_u8; 48];
        let path = {
            let mut len = 0;
            for &b in b"/".iter().chain(uart_name.as_str().as_bytes()) {
                if let Some(s) = stdout.get_mut(len) {
                    *s = b;
                    len += 1;
                }
            }
            core::str::from_utf8(stdout.get(..len).unwrap_or_default()).unwrap_or_default()
        };
        w.property_str("stdout-path", path)?;
        if let Some((start, end)) = self.initrd {
            w.property_u64s("linux,initrd-start", &[start])?;
            w.property_u64s("linux,initrd-end", &[end])?;
        }
        w.end_node()?;

        w.begin_node(UnitName::new("memory", self.ram.0).as_str())?;
        w.property_str("device_type", "memory")?;
        w.property_u64s("reg", &[self.ram.0, self.ram.1])?;
        w.end_node()?;

        w.begin_node("cpus")?;
        w.property_u32("#address-cells", 1)?;
        w.property_u32("#size-cells", 0)?;
        for cpu in 0..self.cpus {
            w.begin_node(UnitName::new("cpu", u64::from(cpu)).as_str())?;
            w.property_str("device_type", "cpu")?;
            w.property_strs("compatible", &["arm,armv8"])?;
            w.property_u32("reg", cpu)?;
            w.property_str("enable-method", "psci")?;
            w.end_node()?;
        }
        w.end_node()?;

        w.begin_node("psci")?;
        w.property_strs("compatible", &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])?;
        w.property_str("method", "hvc")?;
        w.end_node()?;

        w.begin_node("timer")?;
        w.property_strs("compatible", &["arm,armv8-timer"])?;
        let t = self.timer;
        let mut cells = [0_u32; 12];
        for (chunk, ppi) in cells.chunks_exact_mut(3).zip([
            t.secure_physical,
            t.physical,
            t.virtual_timer,
            t.hyp_physical,
        ]) {
            chunk.copy_from_slice(&ppi_cells(ppi, self.gic, self.cpus));
        }
        w.property_cells("interrupts", &cells)?;
        if let Some(hz) = self.counter_hz {
            w.property_u32("clock-frequency", hz)?;
        }
        w.property_empty("always-on")?;
        w.end_node()?;

        match self.gic {
            GuestGic::V3 {
                distributor,
                redistributors,
            } => {
                w.begin_node(UnitName::new("interrupt-controller", distributor).as_str())?;
                w.property_strs("compatible", &["arm,gic-v3"])?;
                w.property_u64s(
                    "reg",
                    &[
                        distributor,
                        0x1_0000,
                        redistributors,
                        GICR_FRAMES_SIZE * u64::from(self.cpus),
                    ],
                )?;
            }
            GuestGic::V2 {
                distributor,
                cpu_interface,
            } => {
                w.begin_node(UnitName::new("interrupt-controller", distributor).as_str())?;
                w.property_strs("compatible", &["arm,cortex-a15-gic"])?;
                w.property_u64s("reg", &[distributor, 0x1000, cpu_interface, 0x2000])?;
            }
        }
        w.property_u32("#interrupt-cells", 3)?;
        w.property_u32("#address-cells", 0)?;
        w.property_empty("interrupt-controller")?;
        w.property_u32("phandle", GIC_PHANDLE)?;
        w.end_node()?;

        w.begin_node("apb-pclk")?;
        w.property_strs("compatible", &["fixed-clock"])?;
        w.property_u32("#clock-cells", 0)?;
        w.property_u32("clock-frequency", UART_CLOCK_HZ)?;
        w.property_str("clock-output-names", "clk24mhz")?;
        w.property_u32("phandle", CLOCK_PHANDLE)?;
        w.end_node()?;

        w.begin_node(uart_name.as_str())?;
        w.property_strs("compatible", &["arm,pl011", "arm,primecell"])?;
        w.property_u64s("reg", &[self.uart.base, 0x1000])?;
        w.property_cells("interrupts", &[GIC_SPI, self.uart.spi, IRQ_LEVEL_HIGH])?;
        w.property_cells("clocks", &[CLOCK_PHANDLE, CLOCK_PHANDLE])?;
        w.property_strs("clock-names", &["uartclk", "apb_pclk"])?;
        w.end_node()?;

        w.end_node()?;
        w.finish()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::String;
    use std::vec::Vec;

    use super::super::fdt::reader;
    use super::*;

    /// Counter frequencies the tests state in the tree (QEMU 7.2's and an
    /// Armv8.6 1 GHz counter).
    const FREQUENCIES_UNDER_TEST: [u32; 2] = [62_500_000, 1_000_000_000];

    fn machine(gic: GuestGic, cpus: u32, hz: u32) -> GuestMachine<'static> {
        GuestMachine {
            ram: (0x4800_0000, 0x1000_0000),
            cpus,
            gic,
            timer: TimerPpis::qemu_virt(),
            counter_hz: Some(hz),
            uart: Uart {
                base: 0x0900_0000,
                spi: 1,
            },
            bootargs: "console=ttyAMA0 panic=-1",
            initrd: Some((0x5000_0000, 0x5012_3456)),
        }
    }

    const V3: GuestGic = GuestGic::V3 {
        distributor: 0x0800_0000,
        redistributors: 0x080a_0000,
    };
    const V2: GuestGic = GuestGic::V2 {
        distributor: 0x0800_0000,
        cpu_interface: 0x0801_0000,
    };

    fn read(m: &GuestMachine<'_>) -> reader::Tree {
        let mut buf = [0_u8; 4096];
        let size = m.write(&mut buf).unwrap_or_else(|e| panic!("{e}"));
        reader::read(&buf[..size]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| String::from(*s)).collect()
    }

    #[test]
    fn memory_cpus_psci_and_chosen() {
        let t = read(&machine(V3, 2, FREQUENCIES_UNDER_TEST[0]));
        assert_eq!(
            t.cells("/memory@48000000", "reg"),
            Some([0, 0x4800_0000, 0, 0x1000_0000].to_vec())
        );
        assert_eq!(
            t.strs("/memory@48000000", "device_type"),
            Some(s(&["memory"]))
        );
        for (n, path) in [(0, "/cpus/cpu@0"), (1, "/cpus/cpu@1")] {
            assert_eq!(t.cells(path, "reg"), Some([n].to_vec()));
            assert_eq!(t.strs(path, "enable-method"), Some(s(&["psci"])));
        }
        assert!(!t.nodes.iter().any(|n| n == "/cpus/cpu@2"));
        assert_eq!(t.strs("/psci", "method"), Some(s(&["hvc"])));
        assert_eq!(
            t.strs("/psci", "compatible"),
            Some(s(&["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]))
        );
        assert_eq!(
            t.strs("/chosen", "bootargs"),
            Some(s(&["console=ttyAMA0 panic=-1"]))
        );
        assert_eq!(
            t.strs("/chosen", "stdout-path"),
            Some(s(&["/pl011@9000000"]))
        );
        assert_eq!(
            t.cells("/chosen", "linux,initrd-start"),
            Some([0, 0x5000_0000].to_vec())
        );
        assert_eq!(
            t.cells("/chosen", "linux,initrd-end"),
            Some([0, 0x5012_3456].to_vec())
        );
        assert_eq!(
            t.cells("/", "interrupt-parent"),
            Some([GIC_PHANDLE].to_vec())
        );
    }

    #[test]
    fn the_timer_node_has_four_level_ppis_and_the_frequency() {
        for hz in FREQUENCIES_UNDER_TEST {
            let t = read(&machine(V3, 1, hz));
            assert_eq!(
                t.strs("/timer", "compatible"),
                Some(s(&["arm,armv8-timer"]))
            );
            assert_eq!(
                t.cells("/timer", "interrupts"),
                Some([1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4].to_vec())
            );
            assert_eq!(t.cells("/timer", "clock-frequency"), Some([hz].to_vec()));
        }
        let mut m = machine(V3, 1, FREQUENCIES_UNDER_TEST[0]);
        m.counter_hz = None;
        assert_eq!(read(&m).prop("/timer", "clock-frequency"), None);
    }

    #[test]
    fn gicv3_has_a_redistributor_per_vcpu() {
        let t = read(&machine(V3, 2, FREQUENCIES_UNDER_TEST[1]));
        let gic = "/interrupt-controller@8000000";
        assert_eq!(t.strs(gic, "compatible"), Some(s(&["arm,gic-v3"])));
        assert_eq!(
            t.cells(gic, "reg"),
            Some([0, 0x0800_0000, 0, 0x1_0000, 0, 0x080a_0000, 0, 0x4_0000].to_vec())
        );
        assert_eq!(t.cells(gic, "#interrupt-cells"), Some([3].to_vec()));
        assert_eq!(t.prop(gic, "interrupt-controller"), Some(&[][..]));
        assert_eq!(t.cells(gic, "phandle"), Some([GIC_PHANDLE].to_vec()));
    }

    #[test]
    fn gicv2_names_the_cpu_interface_and_masks_every_vcpu() {
        let t = read(&machine(V2, 2, FREQUENCIES_UNDER_TEST[0]));
        let gic = "/interrupt-controller@8000000";
        assert_eq!(t.strs(gic, "compatible"), Some(s(&["arm,cortex-a15-gic"])));
        assert_eq!(
            t.cells(gic, "reg"),
            Some([0, 0x0800_0000, 0, 0x1000, 0, 0x0801_0000, 0, 0x2000].to_vec())
        );
        assert_eq!(
            t.cells("/timer", "interrupts"),
            Some([1, 13, 0x304, 1, 14, 0x304, 1, 11, 0x304, 1, 10, 0x304].to_vec())
        );
    }

    #[test]
    fn the_timer_ppis_mask() {
        let m = TimerPpis::qemu_virt().mask();
        assert_eq!(m, (1 << 26) | (1 << 27) | (1 << 29) | (1 << 30));
    }

    #[test]
    fn the_uart_has_its_spi_and_clock() {
        let t = read(&machine(V3, 1, FREQUENCIES_UNDER_TEST[0]));
        let uart = "/pl011@9000000";
        assert_eq!(t.cells(uart, "interrupts"), Some([0, 1, 4].to_vec()));
        assert_eq!(
            t.cells(uart, "reg"),
            Some([0, 0x0900_0000, 0, 0x1000].to_vec())
        );
        assert_eq!(
            t.cells(uart, "clocks"),
            Some([CLOCK_PHANDLE, CLOCK_PHANDLE].to_vec())
        );
        assert_eq!(
            t.cells("/apb-pclk", "phandle"),
            Some([CLOCK_PHANDLE].to_vec())
        );
    }

    #[test]
    fn no_initrd_no_initrd_properties_and_a_small_buffer_is_an_error() {
        let mut m = machine(V3, 1, FREQUENCIES_UNDER_TEST[0]);
        m.initrd = None;
        assert_eq!(read(&m).prop("/chosen", "linux,initrd-start"), None);
        let mut small = [0_u8; 256];
        assert_eq!(m.write(&mut small), Err(FdtError::NoSpace));
    }
}
