#!/bin/sh
# Runs every scenario (8: the guest-hello sample as an external guest) in both host modes on both GIC versions; prints the
# RESULT lines and a summary. A run passes only if QEMU exits 0 *and* it printed a RESULT line for this very
# scenario, GIC and host mode that ends in PASS (a guest can end QEMU with status 0 through semihosting, which
# no hypervisor can trap under QEMU: see the README). Exits non-zero if any run fails.
# QEMU, QEMU_MACHINE, QEMU_ARGS and QEMU_TIMEOUT pass through to run.sh (see there), e.g. for QEMU 10:
#   QEMU_MODULE_DIR=$D/usr/lib/x86_64-linux-gnu/qemu QEMU="$D/usr/bin/qemu-system-aarch64 -L $D/usr/share/qemu" matrix.sh
# MATRIX_SCENARIOS, MATRIX_GICS and MATRIX_MODES pick a part of the matrix (default: all of it).
here=$(cd "$(dirname "$0")" && pwd)
# By scenario number (src/config.rs); 9 (linux) and 10 (perf) are run by cargo xtask linux / bench.
names="hello periodic programming masking wfi-sleep ptimer two-vcpus migration external linux perf ptimer-offset"
fails=0; runs=0
for gic in ${MATRIX_GICS:-3 2}; do
  for mode in ${MATRIX_MODES:-0 1}; do
    if [ "$mode" -eq 0 ]; then mname=nvhe; else mname=vhe; fi
    for scenario in ${MATRIX_SCENARIOS:-0 1 2 3 4 5 11 6 7 8}; do
      runs=$((runs + 1))
      name=$(echo "$names" | cut -d' ' -f$((scenario + 1)))
      out=$("$here/run.sh" "$scenario" "$mode" "$gic" 2>/dev/null); rc=$?
      line=$(printf '%s\n' "$out" | grep -a '^RESULT' | head -1)
      verdict=ok
      case "$line" in
        "RESULT scenario=$name gic=v$gic mode=$mname "*" PASS") ;;
        *) verdict="no RESULT ... PASS line for this run"; [ "$rc" -eq 0 ] && rc=99 ;;
      esac
      [ -n "$line" ] || line=$(printf '%s\n' "$out" | tail -2 | tr '\n' ' ')
      echo "gic=$gic mode=$mode scenario=$scenario rc=$rc $line"
      [ "$verdict" = ok ] || echo "  ($verdict)"
      [ "$rc" -eq 0 ] || fails=$((fails + 1))
    done
  done
done
echo "$((runs - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
