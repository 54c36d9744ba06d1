//! The hypervisor proper: EL2 setup and the run.

use qemu_hypervisor::config::{HostMode, RunConfig};

use crate::console::println;
use crate::sysreg::read_sysreg;

/// Sets up EL2 for `config` and runs its scenario.
pub(crate) fn run(config: RunConfig) -> ! {
    let el = (read_sysreg!(CurrentEL) >> 2) & 3;
    println!(
        "hv: at EL{el}, scenario {}, host mode {}, gic {:?}",
        config.scenario.name(),
        config.host_mode,
        config.gic
    );
    if el != 2 {
        println!("hv: not entered at EL2 (use -machine virt,virtualization=on)");
        crate::exit::fail();
    }
    if config.host_mode == HostMode::Vhe {
        println!("hv: VHE not wired yet");
    }
    crate::exit::pass()
}
