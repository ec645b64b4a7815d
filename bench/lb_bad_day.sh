#!/usr/bin/env bash
# A bad day for the load balancer, weir beside nginx (least_conn, max_fails,
# limit_req), under constant-rate load (`weir bench http`, latency from each
# request's due time):
#  (a) gray failure: one of 3 backends answers 200 ms slower and 5% of its
#      requests with 500 — p99 of each proxy;
#  (b) churn: a backend drained, removed or added every second for a minute
#      under load — 5xx and transport errors (weir only: nginx cannot change
#      its backends at runtime without a reload).
# Usage: bench/lb_bad_day.sh [rate, default 2000] [churn seconds, default 60]
source "$(dirname "$0")/lib.sh"
RATE=${1:-2000}
CHURN=${2:-60}
bash "$ROOT/bench/setup.sh" >&2
build_weir

host() { echo "${1#http://}"; }
p99() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['latency']['p99_ms'])" "$1"; }
errors() { python3 -c "import json,sys; s=json.loads(sys.argv[1])['statuses']; print(sum(v for k,v in s.items() if k=='0' or int(k)>=500))" "$1"; }

# --- (a) gray failure ------------------------------------------------------------
G1=$(upstream); G2=$(upstream); GRAY=$(upstream --delay-ms 200 --error-percent 5)
NGINX=$(free_port)
cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log error;
events { worker_connections 4096; }
http {
    access_log off;
    limit_req_zone \$binary_remote_addr zone=perip:10m rate=100000r/s;
    upstream up {
        least_conn;
        server $(host "$G1") max_fails=3 fail_timeout=10s;
        server $(host "$G2") max_fails=3 fail_timeout=10s;
        server $(host "$GRAY") max_fails=3 fail_timeout=10s;
        keepalive 128;
    }
    server { listen 127.0.0.1:$NGINX;
             location / { limit_req zone=perip burst=100000 nodelay;
                          proxy_next_upstream error timeout http_500;
                          proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' & PIDS+=($!)
WEIR_PORT=$(free_port)
RUST_LOG=error "$WEIR" lb --listen "127.0.0.1:$WEIR_PORT" --admin-token bench --strategy peak_ewma \
    --rate-limit 100000 --health-interval 1s --backends "$G1,$G2,$GRAY" >"$WORK/weir.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$NGINX/health"; wait_http "http://127.0.0.1:$WEIR_PORT/health"

N=$("$WEIR" bench http --url "http://127.0.0.1:$NGINX/" --rate "$RATE" --duration 20s --json)
W=$("$WEIR" bench http --url "http://127.0.0.1:$WEIR_PORT/" --rate "$RATE" --duration 20s --json)

# --- (b) churn ------------------------------------------------------------------
C=()
for _ in 1 2 3 4; do C+=("$(upstream)"); done
CHURN_PORT=$(free_port)
RUST_LOG=error "$WEIR" lb --listen "127.0.0.1:$CHURN_PORT" --admin-token bench --strategy least_connections \
    --backends "${C[0]},${C[1]},${C[2]}" >"$WORK/weir-churn.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$CHURN_PORT/health"
admin() { curl -s -o /dev/null -w '%{http_code}' -X "$1" -H 'authorization: Bearer bench' \
    -H 'content-type: application/json' ${3:+-d "$3"} "http://127.0.0.1:$CHURN_PORT$2"; }
"$WEIR" bench http --url "http://127.0.0.1:$CHURN_PORT/" --rate "$RATE" --duration "${CHURN}s" --json >"$WORK/churn.json" &
LOAD=$!
# Each second one step: drain a backend, remove it, add the spare back in.
out=3   # index of the backend currently out of the set
changes=0
for ((s = 0; s < CHURN - 1; s += 3)); do
    victim=$(( (out + 1) % 4 ))
    admin POST "/lb/backends/$(host "${C[$victim]}")/drain" >/dev/null; changes=$((changes + 1)); sleep 1
    admin DELETE "/lb/backends/$(host "${C[$victim]}")" >/dev/null; changes=$((changes + 1)); sleep 1
    admin POST /lb/backends "{\"url\": \"${C[$out]}\"}" >/dev/null; changes=$((changes + 1)); sleep 1
    out=$victim
done
wait $LOAD
CH=$(cat "$WORK/churn.json")

echo
echo "(a) gray failure: 1 of 3 backends +200 ms and 5% 500s; $RATE req/s for 20 s"
printf "%-40s %10s %10s %12s\n" proxy "p50 ms" "p99 ms" "5xx+errors"
printf "%-40s %10s %10s %12s\n" "nginx least_conn, max_fails, next_upstream" \
    "$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['latency']['p50_ms'])" "$N")" "$(p99 "$N")" "$(errors "$N")"
printf "%-40s %10s %10s %12s\n" "weir lb peak_ewma" \
    "$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['latency']['p50_ms'])" "$W")" "$(p99 "$W")" "$(errors "$W")"
echo "nginx p99 / weir p99: $(ratio "$(p99 "$N")" "$(p99 "$W")")x (floor 2x, goal 5x)"
echo
echo "(b) churn: $changes backend changes in ${CHURN} s at $RATE req/s through weir lb"
echo "requests $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['requests'])" "$CH"), statuses $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['statuses'])" "$CH") (0 = transport error), p99 $(p99 "$CH") ms"
