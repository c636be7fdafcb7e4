#!/usr/bin/env bash
# Sums the results of `cargo test` and `node --test` (TAP) outputs and the skip log into one
# line `N passed, N failed, N skipped`, after the skip log itself. Exits 1 when a test failed
# (or a runner ended without its results), or when anything was skipped unless ALLOW_SKIPS=1.
# Usage: scripts/test-summary.sh SKIP_LOG [CARGO_LOG] [NODE_LOG]
# A Rust test that recorded a skip (of all or part of it) counts as skipped, not passed.
set -euo pipefail

skip_log=$1
cargo_log=${2:-/dev/null}
node_log=${3:-/dev/null}
[ -f "$cargo_log" ] || cargo_log=/dev/null
[ -f "$node_log" ] || node_log=/dev/null
[ -f "$skip_log" ] || skip_log=/dev/null

# cargo: "test result: ok. 12 passed; 0 failed; ..." per test binary; "Running … (…/deps/NAME-HASH)"
# names the binary whose "test NAME ... ok" lines follow. Prints: passed failed ended, then
# one "ok BINARY TEST" line per passing test.
cargo_counts=$(awk '
  /^ *Running .*\(.*\)$/ {
    bin = $0; sub(/.*\//, "", bin); sub(/\)$/, "", bin)
    if (match(bin, /-[0-9a-f]+$/) && RLENGTH == 17) bin = substr(bin, 1, RSTART - 1)
  }
  /^test result: / {
    results++
    for (i = 1; i <= NF; i++) {
      if ($(i) ~ /^passed;?$/) passed += $(i - 1)
      if ($(i) ~ /^failed;?$/) failed += $(i - 1)
    }
  }
  /^test .* \.\.\. ok$/ { name = $2; oks[bin " " name] = 1 }
  /^cargo test exited with / { status = $NF }
  END {
    printf "%d %d %d %d\n", passed, failed, results, status
    for (k in oks) print "ok " k
  }' "$cargo_log")
read -r cargo_passed cargo_failed cargo_results cargo_status <<<"$(head -n1 <<<"$cargo_counts")"

# node's TAP footer: "# pass N", "# fail N", "# cancelled N" (the spec reporter's "ℹ pass N" too).
read -r node_pass node_fail node_status <<<"$(awk '
  /^(# |ℹ )pass [0-9]+$/ { pass += $NF }
  /^(# |ℹ )(fail|cancelled) [0-9]+$/ { fail += $NF }
  /^npm test exited with / { status = $NF }
  END { printf "%d %d %d\n", pass, fail, status }' "$node_log")"

skipped=$(grep -c . "$skip_log" || true)
# Rust tests that passed after recording a skip: "BINARY TEST: why" in the log.
skipped_but_ok=$(awk -F': ' 'NR == FNR { if ($1 ~ /^ok /) ok[substr($1, 4)] = 1; next }
  { split($1, p, " "); k = p[1] " " p[2]; if ((k in ok) && !(k in seen)) { seen[k] = 1; n++ } }
  END { print n + 0 }' <(tail -n +2 <<<"$cargo_counts") "$skip_log")

failed=$((cargo_failed + node_fail))
notes=()
if [ "$cargo_log" != /dev/null ] && [ "$cargo_status" -ne 0 ] && [ "$cargo_failed" -eq 0 ]; then
  notes+=("cargo test exited with $cargo_status without a failed test: a build error or a test binary that crashed (see above)")
  failed=$((failed + 1))
fi
if [ "$node_log" != /dev/null ] && [ "$node_status" -ne 0 ] && [ "$node_fail" -eq 0 ]; then
  notes+=("npm test exited with $node_status without a failed test (see above)")
  failed=$((failed + 1))
fi
passed=$((cargo_passed - skipped_but_ok + node_pass))

echo
echo "==================== test summary ===================="
if [ "$skipped" -gt 0 ]; then
  echo "Skipped ($skipped; each line: test binary or file, test, reason):"
  sed 's/^/  SKIPPED /' "$skip_log"
fi
for n in "${notes[@]}"; do echo "NOTE: $n"; done
echo "$passed passed, $failed failed, $skipped skipped"

if [ "$failed" -gt 0 ]; then
  exit 1
fi
if [ "$skipped" -gt 0 ] && [ "${ALLOW_SKIPS:-}" != 1 ]; then
  echo "FAILED: $skipped skipped; every test must run (scripts/test-deps.sh installs what they need). ALLOW_SKIPS=1 accepts skips."
  exit 1
fi
