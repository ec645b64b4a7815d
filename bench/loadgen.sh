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
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$NGINX; location / { return 200 "ok\n"; } }
}
CONF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' & PIDS+=($!)
wait_http "http://127.0.0.1:$NGINX/"

UPSTREAM=$(free_port)
"$WEIR" bench upstream --listen "127.0.0.1:$UPSTREAM" >/dev/null & PIDS+=($!)
wait_http "http://127.0.0.1:$UPSTREAM/"

run_weir_bench() { # url → "rps p50 p99 answered errors"
    "$WEIR" bench "$1" -c "$CONNS" -d "$DURATION" --json --quiet | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(f"{r[\"requests_per_sec\"]:.0f} {r[\"latency\"][\"p50_ms\"]:.2f} {r[\"latency\"][\"p99_ms\"]:.2f} {r[\"requests\"]} {r[\"errors\"]}")'
}

printf '%-22s %-10s %12s %9s %9s\n' target generator requests/s p50_ms p99_ms
for target in "nginx http://127.0.0.1:$NGINX/" "weir-upstream http://127.0.0.1:$UPSTREAM/"; do
    name=${target%% *}; url=${target#* }
    read -r wrk_rps wrk_p50 wrk_p99 _ _ <<<"$(run_wrk "$url" "$DURATION" "$CONNS")"
    read -r wb_rps wb_p50 wb_p99 _ wb_err <<<"$(run_weir_bench "$url")"
    printf '%-22s %-10s %12.0f %9s %9s\n' "$name" wrk "$wrk_rps" "$wrk_p50" "$wrk_p99"
    printf '%-22s %-10s %12.0f %9s %9s  errors %s\n' "$name" "weir bench" "$wb_rps" "$wb_p50" "$wb_p99" "$wb_err"
    echo "ratio weir-bench/wrk on $name: $(ratio "$wb_rps" "$wrk_rps")"
done
