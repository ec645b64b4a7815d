#!/usr/bin/env bash
# Before and after, in one run: the same bench scripts against an older weir
# binary and this tree's, alternating, so both see the same machine.
# Usage: bench/before_after.sh OLD_WEIR_BINARY [rounds, default 2]
# Build the old one from a worktree, e.g.:
#   git worktree add /tmp/weir-old <commit> && (cd /tmp/weir-old && cargo build --profile dist)
# (commits before the `dist` profile: `cargo build --release`, then fat LTO too)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OLD=${1:?usage: bench/before_after.sh OLD_WEIR_BINARY [rounds]}
ROUNDS=${2:-2}
# NEW_WEIR_BIN compares against another built binary instead of this tree's.
NEW="${NEW_WEIR_BIN:-$ROOT/target/dist/weir}"
# BENCHES="tasks.sh 20000;lb.sh 5s 3" picks which (script and arguments, `;`-separated).
IFS=';' read -r -a BENCHES <<<"${BENCHES:-burndown.sh 50000;tasks.sh 20000;request_log.sh 10s;lb.sh 5s 3}"
[ -n "${NEW_WEIR_BIN:-}" ] || (cd "$ROOT" && cargo build --profile dist -q)
OUT=$(mktemp -d /tmp/weir-before-after.XXXXXX)
run() { # label binary script args...
    local label=$1 bin=$2; shift 2
    echo "== $label: $*" >&2
    WEIR_BIN="$bin" bash "$ROOT/bench/$@" >"$OUT/$label-$1-$round.txt" 2>/dev/null || echo "(failed)" >>"$OUT/$label-$1-$round.txt"
}
for round in $(seq 1 "$ROUNDS"); do
    for bench in "${BENCHES[@]}"; do
        # shellcheck disable=SC2086
        run old "$OLD" $bench
        # shellcheck disable=SC2086
        run new "$NEW" $bench
    done
done
for f in "$OUT"/*.txt; do echo "--- $(basename "$f" .txt)"; cat "$f"; done
