#!/bin/sh
# Runs the example hypervisor under QEMU: run.sh [scenario] [mode] [gic] [smp] [guest-elf]
#   scenario: number (see src/config.rs), mode: 0 nvhe / 1 vhe, gic: 2 or 3.
#   Scenario 8 (external) loads guest-elf (default: the guest-hello sample)
#   with QEMU's generic loader; RAM is then 256M so that 0x4800_0000 exists.
# Builds release images, like `cargo xtask`, into $CARGO_TARGET_DIR or the
# workspace's target/ directory.
# Environment:
#   QEMU          the QEMU command (default qemu-system-aarch64); it may carry
#                 arguments, e.g. QEMU="/opt/qemu10/usr/bin/qemu-system-aarch64 -L /opt/qemu10/usr/share/qemu"
#   QEMU_MACHINE  the machine type (default virt; virt-8.2 on QEMU 10 gives a 62.5 MHz counter)
#   QEMU_ARGS     more QEMU arguments, appended
#   QEMU_TIMEOUT  seconds before the run counts as hung (default 60)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
workspace=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$workspace/target}
scenario=${1:-1}; mode=${2:-0}; gic=${3:-3}
# The migration scenario (7) needs a second CPU. ptimer-offset (11) boots
# with EL3 (secure=on), whose stage enables FEAT_ECV's physical offset.
if [ "$scenario" -eq 7 ]; then smp=${4:-2}; else smp=${4:-1}; fi
if [ "$scenario" -eq 11 ]; then el3=,secure=on; else el3=; fi
(cd "$here" && CARGO_TARGET_DIR="$target" cargo build -q --release -p qemu-hypervisor --bins --target aarch64-unknown-none </dev/null)
word=$(printf '0xA7%02X%02X%02X' "$gic" "$mode" "$scenario")
if [ "$scenario" -eq 8 ]; then
  guest=${5:-$target/aarch64-unknown-none/release/guest-hello}
  set -- -m 256M -device loader,file="$guest"
else
  set -- -m 128M
fi
# shellcheck disable=SC2086 # QEMU and QEMU_ARGS are word lists on purpose
exec timeout "${QEMU_TIMEOUT:-60}" ${QEMU:-qemu-system-aarch64} \
  -machine "${QEMU_MACHINE:-virt}",virtualization=on"$el3",gic-version="$gic" \
  -cpu max -smp "$smp" "$@" -nographic -semihosting \
  -device loader,addr=0x47000000,data="$word",data-len=4 \
  -kernel "$target/aarch64-unknown-none/release/qemu-hypervisor" ${QEMU_ARGS:-}
