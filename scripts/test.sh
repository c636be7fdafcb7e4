#!/usr/bin/env bash
# Runs the tests (cargo's, the dashboard's in node, or both), keeps their output under the
# target folder, then prints every skip and one line `N passed, N failed, N skipped`.
# Fails when a test failed, and when anything was skipped unless ALLOW_SKIPS=1.
# Usage: scripts/test.sh [all|rust|web]
set -uo pipefail
cd "$(dirname "$0")/.."

which=${1:-all}
CARGO=${CARGO:-cargo}
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
mkdir -p "$target"
# Every test (Rust and JavaScript) appends its skips here; see vitals_plugin_api::testing::skip.
export VITALS_SKIP_LOG="$target/test-skips.txt"
: >"$VITALS_SKIP_LOG"
rm -f "$target/test-cargo.log" "$target/test-web.log"

status=0
if [ "$which" = all ] || [ "$which" = rust ]; then
  "$CARGO" test --workspace --no-fail-fast 2>&1 | tee "$target/test-cargo.log"
  cargo_status=${PIPESTATUS[0]}
  [ "$cargo_status" -ne 0 ] && status=1
  echo "cargo test exited with $cargo_status" >>"$target/test-cargo.log"
fi
if [ "$which" = all ] || [ "$which" = web ]; then
  (cd web && npm test) 2>&1 | tee "$target/test-web.log"
  web_status=${PIPESTATUS[0]}
  [ "$web_status" -ne 0 ] && status=1
  echo "npm test exited with $web_status" >>"$target/test-web.log"
fi

bash scripts/test-summary.sh "$VITALS_SKIP_LOG" "$target/test-cargo.log" "$target/test-web.log" || status=1
exit "$status"
