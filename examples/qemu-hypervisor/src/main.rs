//! The example EL2 hypervisor, booted by QEMU `virt` at EL2.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod console;
#[cfg(target_os = "none")]
mod cs;
#[cfg(target_os = "none")]
mod el1;
#[cfg(target_os = "none")]
mod el2;
#[cfg(target_os = "none")]
mod el3;
#[cfg(target_os = "none")]
mod exit;
#[cfg(target_os = "none")]
mod gic;
#[cfg(target_os = "none")]
mod guest;
#[cfg(target_os = "none")]
mod hyp;
#[cfg(target_os = "none")]
mod hypercall;
#[cfg(target_os = "none")]
#[path = "platform/run.rs"]
mod linux;
#[cfg(target_os = "none")]
mod migrate;
#[cfg(target_os = "none")]
mod pmu;
#[cfg(target_os = "none")]
mod stage2;
#[cfg(target_os = "none")]
mod sysreg;
#[cfg(target_os = "none")]
mod vectors;

/// A host build has nothing to run: the hypervisor only exists for
/// `aarch64-unknown-none`.
#[cfg(not(target_os = "none"))]
fn main() {
    println!("qemu-hypervisor runs under QEMU: build it with --target aarch64-unknown-none");
}

#[cfg(target_os = "none")]
mod boot {
    use core::panic::PanicInfo;

    use aarch64_rt::{InitialPagetable, entry, initial_pagetable};
    use qemu_hypervisor::config::{CONFIG_ADDR, RunConfig};

    use crate::console::println;

    /// Block descriptor bits: valid block, access flag.
    const BLOCK: usize = 0b01 | (1 << 10);
    /// MAIR index 0 (device nGnRE), execute never.
    const DEVICE: usize = BLOCK | (1 << 54);
    /// MAIR index 1 (normal write-back), inner shareable.
    const NORMAL: usize = BLOCK | (1 << 2) | (0b11 << 8);

    initial_pagetable!({
        let mut idmap = [0; 512];
        // 0..1 GiB: GIC, UART and the other devices.
        idmap[0] = DEVICE;
        // 1..2 GiB: RAM.
        idmap[1] = NORMAL | 0x4000_0000;
        InitialPagetable(idmap)
    });

    entry!(main, 16);

    fn main(_x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
        // Before anything can enter a critical section (the console).
        crate::cs::init_this_cpu();
        crate::vectors::install();
        crate::console::init();
        // SAFETY: CONFIG_ADDR is RAM mapped by the initial page table,
        // outside the image, written (or not) by QEMU's loader before reset.
        let word = unsafe { core::ptr::read_volatile(CONFIG_ADDR as *const u32) };
        let config = match RunConfig::decode(word) {
            Ok(c) => c,
            Err(e) => {
                println!("hv: bad configuration word {word:#010x}: {e}");
                crate::exit::fail()
            }
        };
        crate::el2::run(config)
    }

    #[panic_handler]
    fn panic(info: &PanicInfo<'_>) -> ! {
        println!("hv: panic: {info}");
        crate::exit::fail()
    }
}
