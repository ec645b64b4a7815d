#!/usr/bin/env bash
# Overload: `weir up` with its defaults (SQLite) driven at 10× the rate it
# sustains, open model (latency from each request's due time), on the logged
# hello (`GET /?message=`, one committed row per request):
#   1. unloaded: 100 requests/s for 5 s — p99;
#   2. sustainable: closed model, 64 connections, 5 s — requests/s (R);
#   3. overload: 10 × R for DURATION — answers by status, p99;
#   4. after: 100 requests/s for 5 s — p99, to see it back to normal;
# and the peak RSS of the process (VmHWM) over the whole run.
# Usage: bench/overload.sh [overload duration, default 30s] [all|lb]
#   (`lb`: only the second part, the lb in front of a bounded application)
source "$(dirname "$0")/lib.sh"
bash "$ROOT/bench/setup.sh" >&2
DURATION=${1:-30s}
build_weir
summary() { # label json
    python3 - "$1" "$2" <<'PY'
import json, sys
label, r = sys.argv[1], json.loads(sys.argv[2])
lat = r["latency"]
adm = r["admitted_latency"]
print(f"{label:<34} {r['requests_per_sec']:>10.0f}/s  p50 {lat['p50_ms']:>8.2f} ms  p99 {lat['p99_ms']:>9.2f} ms  admitted p99 {adm['p99_ms']:>9.2f} ms  statuses {r['statuses']}  errors {r['error_kinds']}")
PY
}
if [[ ${2:-all} != lb ]]; then
start_weir_up sqlite
URL="$UP_URL/?message=overload"
bench() { "$WEIR" bench "$URL" --json --quiet --timeout 10s "$@"; }
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
print(f"overload admitted p99 / unloaded p99: {o['admitted_latency']['p99_ms'] / p99u:.1f}x (goal: within 2x)")
print(f"overload p99 of every answer / unloaded p99: {o['latency']['p99_ms'] / p99u:.1f}x (the refused ones at once)")
print(f"after p99 / unloaded p99: {a['latency']['p99_ms'] / p99u:.1f}x")
PY
fi

# Part 2: the lb in front of an application that works on only so many
# requests at once (two upstreams, 4 workers each, 10 ms per request: 800
# requests/s in all), as a Python app behind nginx is; here the machine has
# cores to spare, so 10x the sustainable rate is really offered. Side by
# side: nginx with a plain proxy config, and `weir lb` with default flags.
echo
echo "--- lb in front of a bounded application (2 upstreams x 4 workers x 10 ms) ---"
U1=$(upstream --capacity 4 --delay-ms 10); U2=$(upstream --capacity 4 --delay-ms 10)
NGINX=$(free_port)
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log error;
events { worker_connections 8192; }
http {
    access_log off;
    upstream app { server ${U1#http://}; server ${U2#http://}; keepalive 64; }
    server { listen 127.0.0.1:$NGINX;
             location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' & NGINX_PID=$!; PIDS+=($NGINX_PID)
LB=$(free_port)
RUST_LOG=error "$WEIR" lb --listen "127.0.0.1:$LB" --admin-token bench --backends "$U1,$U2" \
    >"$WORK/lb.log" 2>&1 & LB_PID=$!; PIDS+=($LB_PID)
wait_http "http://127.0.0.1:$NGINX/"; wait_http "http://127.0.0.1:$LB/health"
lbbench() { "$WEIR" bench "$1" --json --quiet --timeout 10s "${@:2}"; }
for peer in "nginx:$NGINX" "weir lb:$LB"; do
    name=${peer%%:*}; url="http://127.0.0.1:${peer##*:}/"
    u=$(lbbench "$url" --rate 100 -d 5s -c 16)
    summary "$name unloaded (100/s)" "$u"
    o=$(lbbench "$url" --rate 8000 -d "$DURATION" -c 512)
    summary "$name overload (8000/s = 10x)" "$o"
    a=$(lbbench "$url" --rate 100 -d 5s -c 16)
    summary "$name after (100/s)" "$a"
    python3 - "$name" "$u" "$o" "$a" <<'PY'
import json, sys
name, (u, o, a) = sys.argv[1], (json.loads(x) for x in sys.argv[2:])
p99u = u["latency"]["p99_ms"]
refused = sum(v for k, v in o["statuses"].items() if k in ("429", "503"))
print(f"{name}: admitted p99 / unloaded p99 {o['admitted_latency']['p99_ms'] / p99u:.1f}x; "
      f"refused {refused} (p99 of all answers {o['latency']['p99_ms']:.0f} ms); after {a['latency']['p99_ms'] / p99u:.1f}x")
PY
done
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)
echo "peak RSS: nginx worker $(grep VmHWM /proc/$NGINX_WORKER/status | awk '{print $2/1024 " MB"}'), weir lb $(grep VmHWM /proc/$LB_PID/status | awk '{print $2/1024 " MB"}')"
