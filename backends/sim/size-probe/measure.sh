#!/bin/sh
# Code size of arch-timer-virt as a hypervisor links it: every VcpuTimer
# operation, the register API (get_reg/set_reg) and emulate::access
# instantiated once (src/lib.rs), hardware accessors opaque
# external calls, aarch64-unknown-none, opt-level "s" (the workspace's
# release setting), LTO, one codegen unit. Prints the .text of the probe's
# object: the core's code plus a few bytes of probe glue; critical-section
# acquire/release are external (the hypervisor provides them).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
target=${CARGO_TARGET_DIR:-$here/target}
CARGO_TARGET_DIR=$target cargo build --quiet --release --target aarch64-unknown-none \
    --manifest-path "$here/Cargo.toml" </dev/null
lib=$target/aarch64-unknown-none/release/libarch_timer_virt_size_probe.a
tmp=$(mktemp -d)
(cd "$tmp" && ar x "$lib")
# The object holding the probe (LTO merges the crate graph into it).
obj=$(cd "$tmp" && for o in *.o; do
    if llvm-nm "$o" 2>/dev/null | grep -q ' T probe_vcpu_timer$'; then echo "$o"; fi
done | head -n 1)
text=$(llvm-size -A "$tmp/$obj" | awk '$1 ~ /^\.text/ { s += $2 } END { print s + 0 }')
echo "arch-timer-virt .text, every VcpuTimer operation + register API + emulate, aarch64-unknown-none opt-level=s LTO: $text bytes"
llvm-nm --size-sort --print-size --demangle "$tmp/$obj" | awk '$3 ~ /[tT]/' | tail -n 12
rm -rf "$tmp"
