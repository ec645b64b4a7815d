#!/usr/bin/env bash
# weir bench beside wrk: the load generator must never be the bottleneck.
# Both load the same targets with the same connections for the same time —
# an nginx answering `200 ok` (1 worker, leaving a core to the generator) and
# weir's own trivial upstream — and the script prints each one's requests/s,
# p50, p99 and weir bench's ratio to wrk (floor: 1.0).
# Usage: bench/loadgen.sh [duration, default 10s] [connections, default 64]
source "$(dirname "$0")/lib.sh"
DURATION=${1:-10s}
CONNS=${2:-64}
bash "$ROOT/bench/setup.sh" >&2
build_weir

NGINX=$(free_port)
start_ok_nginx "$NGINX"

UPSTREAM=$(free_port)
"$WEIR" bench upstream --listen "127.0.0.1:$UPSTREAM" >/dev/null & PIDS+=($!)
wait_http "http://127.0.0.1:$UPSTREAM/"

run_weir_bench() { # url → "rps p50 p99 answered errors"
    "$WEIR" bench "$1" -c "$CONNS" -d "$DURATION" --json --quiet >"$WORK/wb.json"
    python3 - "$WORK/wb.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency"]
print(f'{r["requests_per_sec"]:.0f} {l["p50_ms"]:.2f} {l["p99_ms"]:.2f} {r["requests"]} {r["errors"]}')
PY
}

mean() { python3 -c "import sys; v=[float(x) for x in sys.argv[1:]]; print(f'{sum(v)/len(v):.2f}')" "$@"; }

# Each generator runs twice per target, in the order wrk, weir, weir, wrk, so
# neither gets the machine's better moment; the figures are the means.
printf '%-16s %-11s %12s %9s %9s\n' target generator requests/s p50_ms p99_ms
for target in "nginx http://127.0.0.1:$NGINX/" "weir-upstream http://127.0.0.1:$UPSTREAM/"; do
    name=${target%% *}; url=${target#* }
    read -r w1 w1p50 w1p99 _ _ <<<"$(run_wrk "$url" "$DURATION" "$CONNS")"
    read -r b1 b1p50 b1p99 _ e1 <<<"$(run_weir_bench "$url")"
    read -r b2 b2p50 b2p99 _ e2 <<<"$(run_weir_bench "$url")"
    read -r w2 w2p50 w2p99 _ _ <<<"$(run_wrk "$url" "$DURATION" "$CONNS")"
    wrk_rps=$(mean "$w1" "$w2"); wb_rps=$(mean "$b1" "$b2")
    printf '%-16s %-11s %12.0f %9s %9s\n' "$name" wrk "$wrk_rps" "$(mean "$w1p50" "$w2p50")" "$(mean "$w1p99" "$w2p99")"
    printf '%-16s %-11s %12.0f %9s %9s  errors %s\n' "$name" "weir bench" "$wb_rps" "$(mean "$b1p50" "$b2p50")" "$(mean "$b1p99" "$b2p99")" "$((e1 + e2))"
    echo "ratio weir-bench/wrk on $name: $(ratio "$wb_rps" "$wrk_rps")  (runs: wrk $w1 $w2, weir bench $b1 $b2)"
done
