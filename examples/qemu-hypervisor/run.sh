#!/bin/sh
# Runs the example hypervisor under QEMU: run.sh [scenario] [mode] [gic] [smp]
#   scenario: number (see src/config.rs), mode: 0 nvhe / 1 vhe, gic: 2 or 3.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-/work/targets/qemu}
scenario=${1:-1}; mode=${2:-0}; gic=${3:-3}
# The migration scenario (7) needs a second CPU.
if [ "$scenario" -eq 7 ]; then smp=${4:-2}; else smp=${4:-1}; fi
(cd "$here" && CARGO_TARGET_DIR="$target" cargo build -q -p qemu-hypervisor --bins --target aarch64-unknown-none </dev/null)
word=$(printf '0xA7%02X%02X%02X' "$gic" "$mode" "$scenario")
exec timeout 60 qemu-system-aarch64 -machine virt,virtualization=on,gic-version="$gic" \
  -cpu max -smp "$smp" -m 128M -nographic -semihosting \
  -device loader,addr=0x47000000,data="$word",data-len=4 \
  -kernel "$target/aarch64-unknown-none/debug/qemu-hypervisor"
