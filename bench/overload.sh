#!/usr/bin/env bash
# Overload: `weir up` with its defaults (SQLite) driven at 10× the rate it
# sustains, open model (latency from each request's due time), on the logged
# hello (`GET /?message=`, one committed row per request):
#   1. unloaded: 100 requests/s for 5 s — p99;
#   2. sustainable: closed model, 64 connections, 5 s — requests/s (R);
#   3. overload: 10 × R for DURATION — answers by status, p99;
#   4. after: 100 requests/s for 5 s — p99, to see it back to normal;
# and the peak RSS of the process (VmHWM) over the whole run.
# Usage: bench/overload.sh [overload duration, default 30s]
source "$(dirname "$0")/lib.sh"
DURATION=${1:-30s}
build_weir
start_weir_up sqlite
URL="$UP_URL/?message=overload"
bench() { "$WEIR" bench "$URL" --json --quiet --timeout 10s "$@"; }
summary() { # label json
    python3 - "$1" "$2" <<'PY'
import json, sys
label, r = sys.argv[1], json.loads(sys.argv[2])
lat = r["latency"]
print(f"{label:<34} {r['requests_per_sec']:>10.0f}/s  p50 {lat['p50_ms']:>8.2f} ms  p99 {lat['p99_ms']:>9.2f} ms  statuses {r['statuses']}  errors {r['error_kinds']}")
PY
}
unloaded=$(bench --rate 100 -d 5s -c 16)
summary "unloaded (100/s)" "$unloaded"
closed=$(bench -c 64 -d 5s)
summary "sustainable (closed, 64 conns)" "$closed"
R=$(python3 -c "import json,sys; print(int(json.loads(sys.argv[1])['requests_per_sec']))" "$closed")
over=$(bench --rate $((R * 10)) -d "$DURATION" -c 256)
summary "overload (10x = $((R * 10))/s, $DURATION)" "$over"
after=$(bench --rate 100 -d 5s -c 16)
summary "after (100/s)" "$after"
echo "peak RSS of weir up: $(grep VmHWM /proc/$UP_PID/status | awk '{print $2/1024 " MB"}')"
python3 - "$unloaded" "$over" "$after" <<'PY'
import json, sys
u, o, a = (json.loads(x) for x in sys.argv[1:])
p99u = u["latency"]["p99_ms"]
print(f"overload p99 / unloaded p99: {o['latency']['p99_ms'] / p99u:.1f}x (goal: admitted within 2x, the rest refused at once)")
print(f"after p99 / unloaded p99: {a['latency']['p99_ms'] / p99u:.1f}x")
PY
