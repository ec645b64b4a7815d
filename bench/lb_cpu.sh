#!/usr/bin/env bash
# What a proxied request costs the proxy: nginx, HAProxy and weir lb (also
# with traces exported at 1% sampling) each driven at the same fixed rate
# (open model, `weir bench --rate`, latency from each request's due time)
# over 64 keep-alive connections, through the same upstreams with nginx's
# default `keepalive_requests 1000`. Each proxy's utime+stime is read from
# /proc before and after: CPU µs per request, and p99 at that rate.
# Usage: bench/lb_cpu.sh [rate/s, default 10000] [duration, default 10s] [rounds, default 3]
source "$(dirname "$0")/lib.sh"
RATE=${1:-10000}
DURATION=${2:-10s}
ROUNDS=${3:-3}
bash "$ROOT/bench/setup.sh" >&2
build_weir
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# --- the upstreams: one nginx, three ports, connections closed every 1,000 ----
U1=$(free_port); U2=$(free_port); U3=$(free_port)
OK_KEEPALIVE_REQUESTS=1000 start_ok_nginx "$U1" "$U2" "$U3"
BACKENDS="http://127.0.0.1:$U1,http://127.0.0.1:$U2,http://127.0.0.1:$U3"

# --- nginx and HAProxy ----------------------------------------------------------
NGINX=$(free_port); start_nginx_proxy "$NGINX" "$U1" "$U2" "$U3"; NGINX_PID=$PROXY_PID
HAPROXY=$(free_port); start_haproxy_proxy "$HAPROXY" "$U1" "$U2" "$U3"; HAPROXY_PID=$PROXY_PID

# --- weir lb, and weir lb exporting 1% of traces to a collector ---------------
# The collector: `weir bench upstream` answers 200 to every POST /v1/traces.
COLLECTOR=$(upstream)
WEIR_PORT=$(free_port)
RUST_LOG=warn "$WEIR" lb --listen "127.0.0.1:$WEIR_PORT" --backends "$BACKENDS" \
    >"$WORK/weir.log" 2>&1 & WEIR_PID=$!; PIDS+=($WEIR_PID)
TRACED_PORT=$(free_port)
RUST_LOG=warn "$WEIR" lb --listen "127.0.0.1:$TRACED_PORT" --backends "$BACKENDS" \
    --otlp-endpoint "$COLLECTOR" --trace-sample-ratio 0.01 \
    >"$WORK/weir-traced.log" 2>&1 & TRACED_PID=$!; PIDS+=($TRACED_PID)

for port in $NGINX $HAPROXY $WEIR_PORT $TRACED_PORT; do wait_http "http://127.0.0.1:$port/"; done

# One measured run: "cpu_us_per_request p99_ms requests non_2xx". The load is
# `weir bench`'s open model on its raw keep-alive path (the lightest client
# here, so the proxies, not the client, are what the two cores run).
measure() { # port pid
    "$WEIR" bench "http://127.0.0.1:$1/" --rate "$RATE" -c 64 -d 1s --json >/dev/null   # warm-up
    local before after out
    before=$(cpu_ticks "$2")
    out=$("$WEIR" bench "http://127.0.0.1:$1/" --rate "$RATE" -c 64 -d "$DURATION" --json)
    after=$(cpu_ticks "$2")
    python3 - "$out" "$((after - before))" "$TICK_US" <<'PY'
import json, sys
r, ticks, tick_us = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
ok = sum(n for s, n in r["statuses"].items() if s.startswith("2"))
print(f'{ticks * tick_us / max(r["requests"], 1):.2f} {r["latency"]["p99_ms"]:.2f} {r["requests"]} {r["requests"] - ok}')
PY
}

# Interleaved rounds, medians: the machine's other load drifts.
NAMES=(nginx haproxy weir weir-traced-1pct)
declare -A PORT=([nginx]=$NGINX [haproxy]=$HAPROXY [weir]=$WEIR_PORT [weir-traced-1pct]=$TRACED_PORT)
declare -A PID=([nginx]=$NGINX_PID [haproxy]=$HAPROXY_PID [weir]=$WEIR_PID [weir-traced-1pct]=$TRACED_PID)
declare -A RUNS
for round in $(seq 1 "$ROUNDS"); do
    for name in "${NAMES[@]}"; do RUNS[$name]+="$(measure "${PORT[$name]}" "${PID[$name]}");"; done
    echo "round $round of $ROUNDS done" >&2
done

echo
echo "proxy CPU per request at $RATE requests/s, 64 connections, upstreams closing every 1,000 requests; medians of $ROUNDS interleaved rounds of $DURATION"
printf "%-18s %14s %9s %10s %8s\n" proxy "CPU µs/req" "p99 ms" requests non-2xx
declare -A CPU P99
for name in "${NAMES[@]}"; do
    read -r cpu p99 n bad < <(tr ';' '\n' <<<"${RUNS[$name]}" | grep . | python3 -c '
import sys, statistics
rows = [line.split() for line in sys.stdin]
print(" ".join(str(statistics.median_low(float(r[i]) for r in rows)) for i in range(4)))')
    CPU[$name]=$cpu; P99[$name]=$p99
    printf "%-18s %14s %9s %10.0f %8.0f\n" "$name" "$cpu" "$p99" "$n" "$bad"
done
echo "weir / nginx CPU per request: $(ratio "${CPU[weir]}" "${CPU[nginx]}")x (goal 0.7x); p99 ${P99[weir]} vs ${P99[nginx]} ms"
echo "weir with 1% of traces exported / weir: $(ratio "${CPU[weir-traced-1pct]}" "${CPU[weir]}")x CPU per request"
