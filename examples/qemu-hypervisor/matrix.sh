#!/bin/sh
# Runs every scenario (8: the guest-hello sample as an external guest) in both host modes on both GIC versions; prints the
# RESULT lines and a summary. Exits non-zero if any run fails.
here=$(cd "$(dirname "$0")" && pwd)
fails=0; runs=0
for gic in 3 2; do
  for mode in 0 1; do
    for scenario in 0 1 2 3 4 5 6 7 8; do
      runs=$((runs + 1))
      out=$("$here/run.sh" "$scenario" "$mode" "$gic" 2>/dev/null); rc=$?
      line=$(printf '%s\n' "$out" | grep '^RESULT' || printf '%s\n' "$out" | tail -2 | tr '\n' ' ')
      echo "gic=$gic mode=$mode scenario=$scenario rc=$rc $line"
      [ "$rc" -eq 0 ] || fails=$((fails + 1))
    done
  done
done
echo "$((runs - fails)) passed, $fails failed"
[ "$fails" -eq 0 ]
