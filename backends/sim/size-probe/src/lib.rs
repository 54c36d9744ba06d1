//! Every `VcpuTimer` operation, the register API and the trapped-access
//! emulation, instantiated with hardware accessors that are opaque external
//! functions (so nothing is folded away), for measuring the code a
//! hypervisor links in. Not for running.

#![no_std]

use arch_timer_virt::emulate::{self, Access, SysRegTrap};
use arch_timer_virt::{
    IntId, IrqChip, SoftTimer, SoftTimers, Ticks, TimerCtl, TimerHw, TimerId,
    TimerReg, VcpuTimer, VmTimer,
};

unsafe extern "C" {
    fn probe_sysreg_read(reg: u32) -> u64;
    fn probe_sysreg_write(reg: u32, value: u64);
    fn probe_gic(op: u32, intid: u32, value: u32) -> u32;
    fn probe_soft(op: u32, timer: u32, at: u64);
}

struct Hw;
struct Gic;
struct Soft;

/// The interrupt controller's failure: no data, as `()` would be (the
/// traits ask for `Display`).
#[derive(Debug)]
struct ProbeError;

impl core::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("probe interrupt controller error")
    }
}

fn read(reg: u32) -> u64 {
    // SAFETY: a probe, never run; the symbol stands for a register read.
    unsafe { probe_sysreg_read(reg) }
}

fn write(reg: u32, value: u64) {
    // SAFETY: as `read`.
    unsafe { probe_sysreg_write(reg, value) }
}

fn gic(op: u32, intid: IntId, value: bool) -> Result<bool, ProbeError> {
    // SAFETY: as `read`.
    match unsafe { probe_gic(op, intid.get(), u32::from(value)) } {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(ProbeError),
    }
}

impl TimerHw for Hw {
    fn physical_count(&self) -> Ticks {
        Ticks::new(read(1))
    }
    fn vtimer_ctl(&self) -> TimerCtl {
        TimerCtl::from_bits_retain(read(2))
    }
    fn set_vtimer_ctl(&mut self, ctl: TimerCtl) {
        write(2, ctl.bits());
    }
    fn vtimer_cval(&self) -> Ticks {
        Ticks::new(read(3))
    }
    fn set_vtimer_cval(&mut self, cval: Ticks) {
        write(3, cval.get());
    }
    fn set_virtual_offset(&mut self, offset: Ticks) {
        write(4, offset.get());
    }
    fn barrier(&mut self) {
        write(5, 0);
    }
    fn set_el1_physical_access(&mut self, allowed: bool) {
        write(6, u64::from(allowed));
    }
    fn ptimer_ctl(&self) -> TimerCtl {
        TimerCtl::from_bits_retain(read(7))
    }
    fn set_ptimer_ctl(&mut self, ctl: TimerCtl) {
        write(7, ctl.bits());
    }
    fn ptimer_cval(&self) -> Ticks {
        Ticks::new(read(8))
    }
    fn set_ptimer_cval(&mut self, cval: Ticks) {
        write(8, cval.get());
    }
    fn has_physical_offset(&self) -> bool {
        read(9) != 0
    }
    fn set_physical_offset(&mut self, offset: Ticks) {
        write(9, offset.get());
    }
}

impl IrqChip for Gic {
    type Error = ProbeError;
    fn set_host_active(&mut self, ppi: IntId, active: bool) -> Result<(), ProbeError> {
        gic(0, ppi, active).map(|_| ())
    }
    fn set_host_masked(&mut self, ppi: IntId, masked: bool) -> Result<(), ProbeError> {
        gic(1, ppi, masked).map(|_| ())
    }
    fn set_virtual_level(&mut self, intid: IntId, level: bool) -> Result<(), ProbeError> {
        gic(2, intid, level).map(|_| ())
    }
    fn virtual_active(&self, intid: IntId) -> Result<bool, ProbeError> {
        gic(3, intid, false)
    }
    fn map_virtual(&mut self, intid: IntId, host: IntId) -> Result<(), ProbeError> {
        gic(4, intid, host.get() != 0).map(|_| ())
    }
    fn unmap_virtual(&mut self, intid: IntId) -> Result<(), ProbeError> {
        gic(5, intid, false).map(|_| ())
    }
}

impl SoftTimers for Soft {
    fn arm(&mut self, timer: SoftTimer, at: Ticks) {
        // SAFETY: as `read`.
        unsafe { probe_soft(0, timer as u32, at.get()) }
    }
    fn cancel(&mut self, timer: SoftTimer) {
        // SAFETY: as `read`.
        unsafe { probe_soft(1, timer as u32, 0) }
    }
}

/// Runs operation `op` on `timer`; returns 0 on success.
#[unsafe(no_mangle)]
pub extern "C" fn probe_vcpu_timer(timer: &mut VcpuTimer, vm: &VmTimer, op: u32) -> u32 {
    let ok = match op {
        0 => timer.load(vm, &mut Hw, &mut Gic).is_ok(),
        1 => timer.put(&mut Hw, &mut Soft).is_ok(),
        2 => !matches!(
            timer.block(vm, &mut Hw, &mut Soft),
            arch_timer_virt::Wakeup::Never
        ),
        3 => timer.unblock(&mut Hw, &mut Gic, &mut Soft).is_ok(),
        4 => timer.before_entry(&mut Hw, &mut Gic, &mut Soft).is_ok(),
        5 => timer.after_exit(&mut Hw, &mut Gic, &mut Soft).is_ok(),
        6 => timer.handle_host_irq(&mut Hw, &mut Gic).is_ok(),
        7 => timer.physical_timer_expired(&mut Hw, &mut Gic).is_ok(),
        8 => timer.reset(&mut Hw, &mut Gic, &mut Soft).is_ok(),
        _ => timer.should_notify_user(),
    };
    u32::from(!ok)
}

/// A VMM register access (`op` 0: get, 1: set) of register `reg` (0..=3:
/// CTL, CVAL, TVAL, CNT) of timer `timer` (0: virtual), or (`op` 2) a
/// trapped access with syndrome `iss`; returns the value read.
#[unsafe(no_mangle)]
pub extern "C" fn probe_registers(
    vcpu: &mut VcpuTimer,
    vm: &VmTimer,
    op: u32,
    timer: u32,
    reg: u32,
    value: u64,
) -> u64 {
    let timer = if timer == 0 {
        TimerId::Virtual
    } else {
        TimerId::Physical
    };
    let reg = match reg {
        0 => TimerReg::Ctl,
        1 => TimerReg::Cval,
        2 => TimerReg::Tval,
        _ => TimerReg::Cnt,
    };
    match op {
        0 => vcpu.get_reg(vm, &Hw, timer, reg),
        1 => u64::from(
            vcpu.set_reg(vm, &mut Hw, &mut Gic, timer, reg, value)
                .is_err(),
        ),
        _ => {
            #[allow(clippy::cast_possible_truncation)] // a probe
            let Some(trap) = SysRegTrap::decode(value as u32) else {
                return u64::MAX;
            };
            let access = if trap.is_read {
                Access::Read
            } else {
                Access::Write(value >> 32)
            };
            emulate::access(vcpu, vm, &mut Hw, &mut Gic, trap.reg, access).unwrap_or(u64::MAX)
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
