#!/usr/bin/env bash
# Where a chain step's time goes (issue #38, item 8): CHAINS chains of
# LENGTH md5 steps on `weir up` (PostgreSQL, 3 API nodes, 3 workers x 32);
# prints chains/s and the CPU seconds weir and PostgreSQL spent, read from
# /proc/<pid>/stat before and after.
# Usage: bench/workflow_chains_cpu.sh [CHAINS 2000] [LENGTH 10]
source "$(dirname "$0")/lib.sh"
CHAINS=${1:-2000}; LENGTH=${2:-10}
bash "$ROOT/bench/setup.sh" >&2
build_weir
DB=$(fresh_db weir_bench_chains_cpu)
start_weir_up "$DB" --worker-concurrency 32
ticks() { # the utime+stime of these pids, in clock ticks
    local t=0
    for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
    echo "$t"
}
postgres_pids() { pgrep -f "postgres:" | tr '\n' ' '; }
HZ=$(getconf CLK_TCK)
W0=$(ticks "$UP_PID"); P0=$(ticks $(postgres_pids))
OUT=$(python3 "$ROOT/bench/peers/weir_canvas.py" "$UP_URL" 10 1 "$CHAINS" "$LENGTH")
W1=$(ticks "$UP_PID"); P1=$(ticks $(postgres_pids))
stop_pid "$UP_PID"; PIDS=()
drop_db weir_bench_chains_cpu
python3 - "$OUT" "$W0" "$W1" "$P0" "$P1" "$HZ" "$CHAINS" "$LENGTH" <<'PY'
import json, sys
out = json.loads(sys.argv[1])
w0, w1, p0, p1, hz, chains, length = (float(a) for a in sys.argv[2:])
weir, pg = (w1 - w0) / hz, (p1 - p0) / hz
steps = chains * length
print(f"chains/s {out['chains_per_sec']:.1f}  weir CPU {weir:.2f} s  PostgreSQL CPU {pg:.2f} s"
      f"  ({pg / steps * 1000:.2f} ms of PostgreSQL CPU per step)")
PY
