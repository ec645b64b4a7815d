#!/usr/bin/env bash
# Cold build times of weir, one per cargo profile, each in a fresh target
# directory (every dependency compiled, as on a newcomer's first build): the
# figures behind Cargo.toml's `release` (the README's `cargo run --release`)
# and `dist` (the container image, the benchmarks) profiles.
# Usage: scripts/build-times.sh [profile...]   (default: release dist)
# Each binary is kept as $BUILD_TIMES_DIR/<profile>/weir (default
# /tmp/weir-build-times) to compare at runtime, e.g.
#   NEW_WEIR_BIN=/tmp/weir-build-times/release/weir \
#   BENCHES="lb_cpu.sh 10000 5s 1" bash bench/before_after.sh /tmp/weir-build-times/dist/weir 3
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${BUILD_TIMES_DIR:-/tmp/weir-build-times}
profiles=("$@")
[ ${#profiles[@]} -gt 0 ] || profiles=(release dist)
cd "$ROOT"
for profile in "${profiles[@]}"; do
    dir="$OUT/$profile"
    rm -rf "$dir"
    mkdir -p "$dir"
    started=$(date +%s%N)
    CARGO_TARGET_DIR="$dir/target" cargo build -q --locked --profile "$profile" -p weir
    took=$(( ($(date +%s%N) - started) / 1000000000 ))
    cp "$dir/target/$profile/weir" "$dir/weir"
    rm -rf "$dir/target"
    printf 'build-times: %-8s %4d s cold (%d min %02d s), binary %d MB\n' "$profile" "$took" \
        $((took / 60)) $((took % 60)) $(( $(stat -c %s "$dir/weir") / 1048576 ))
done
