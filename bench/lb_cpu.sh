#!/usr/bin/env bash
# What a proxied request costs the proxy: nginx, HAProxy and weir lb (also
# with traces exported at 1% sampling) each driven at the same fixed rate
# (open model, `weir bench --rate`, latency from each request's due time)
# over 64 keep-alive connections, through the same upstreams with nginx's
# default `keepalive_requests 1000`. Each proxy's utime+stime is read from
# /proc before and after: CPU µs per request, and p99 at that rate. Then
# HTTPS (TLS 1.3, ECDSA P-256; h2load's fixed rate): keep-alive at the same
# rate, and one request per new TLS connection at a tenth of it.
# With `profile` as a fourth argument, then where each proxy's time goes at
# the plain HTTP rate: system calls per request (perf's syscall
# tracepoints) and the hottest functions of nginx and weir (perf record).
# Usage: bench/lb_cpu.sh [rate/s, default 10000] [duration, default 10s] [rounds, default 3] [profile]
source "$(dirname "$0")/lib.sh"
RATE=${1:-10000}
DURATION=${2:-10s}
ROUNDS=${3:-3}
bash "$ROOT/bench/setup.sh" >&2
build_weir
TICK_US=$((1000000 / $(getconf CLK_TCK)))
SECS=${DURATION%s}
make_cert

# --- the upstreams: one nginx, three ports, connections closed every 1,000 ----
U1=$(free_port); U2=$(free_port); U3=$(free_port)
OK_KEEPALIVE_REQUESTS=1000 start_ok_nginx "$U1" "$U2" "$U3"
BACKENDS="http://127.0.0.1:$U1,http://127.0.0.1:$U2,http://127.0.0.1:$U3"

# --- nginx and HAProxy ----------------------------------------------------------
NGINX=$(free_port); NGINX_TLS=$(free_port)
TLS_PORT=$NGINX_TLS start_nginx_proxy "$NGINX" "$U1" "$U2" "$U3"; NGINX_PID=$PROXY_PID
HAPROXY=$(free_port); HAPROXY_TLS=$(free_port)
TLS_PORT=$HAPROXY_TLS start_haproxy_proxy "$HAPROXY" "$U1" "$U2" "$U3"; HAPROXY_PID=$PROXY_PID

# --- weir lb, and weir lb exporting 1% of traces to a collector ---------------
# The collector: `weir bench upstream` answers 200 to every POST /v1/traces.
COLLECTOR=$(upstream)
WEIR_PORT=$(free_port); WEIR_TLS=$(free_port)
RUST_LOG=warn "$WEIR" lb --listen "127.0.0.1:$WEIR_PORT" --backends "$BACKENDS" \
    --tls-listen "127.0.0.1:$WEIR_TLS" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" \
    --tls-min-version 1.3 \
    >"$WORK/weir.log" 2>&1 & WEIR_PID=$!; PIDS+=($WEIR_PID)
TRACED_PORT=$(free_port)
RUST_LOG=warn "$WEIR" lb --listen "127.0.0.1:$TRACED_PORT" --backends "$BACKENDS" \
    --otlp-endpoint "$COLLECTOR" --trace-sample-ratio 0.01 \
    >"$WORK/weir-traced.log" 2>&1 & TRACED_PID=$!; PIDS+=($TRACED_PID)

for port in $NGINX $HAPROXY $WEIR_PORT $TRACED_PORT; do wait_http "http://127.0.0.1:$port/"; done
for port in $NGINX_TLS $HAPROXY_TLS $WEIR_TLS; do wait_http "https://127.0.0.1:$port/"; done

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

# The same over HTTPS with h2load (its per-request log gives the p99):
# `keep` holds 64 connections at the same rate, `new` makes one request per
# new TLS connection (TLS 1.3 full handshakes) at a tenth of it.
measure_tls() { # keep|new port pid
    local log="$WORK/h2load.log" before after load
    case $1 in
        keep) load=(-c 64 --rps $((RATE / 64)) -D "$SECS") ;;
        new) load=(-c $((RATE / 10 * SECS)) -n $((RATE / 10 * SECS)) -r $((RATE / 10))) ;;
    esac
    h2load --h1 -c 64 -n 640 "https://127.0.0.1:$2/" >/dev/null 2>&1   # warm-up
    rm -f "$log"
    before=$(cpu_ticks "$3")
    h2load --h1 "${load[@]}" --log-file="$log" "https://127.0.0.1:$2/" >"$WORK/h2load.out" 2>&1 || true
    after=$(cpu_ticks "$3")
    python3 - "$log" "$((after - before))" "$TICK_US" <<'PY'
import sys
rows = [line.split("\t") for line in open(sys.argv[1]) if line.strip()]
ticks, tick_us = int(sys.argv[2]), int(sys.argv[3])
lat = sorted(int(r[2]) for r in rows)
ok = sum(1 for r in rows if r[1].startswith("2"))
p99 = lat[max(int(len(lat) * 0.99) - 1, 0)] / 1000 if lat else 0
print(f"{ticks * tick_us / max(len(rows), 1):.2f} {p99:.2f} {len(rows)} {len(rows) - ok}")
PY
}

# Interleaved rounds, medians: the machine's other load drifts.
NAMES=(nginx haproxy weir weir-traced-1pct)
TLS_NAMES=(nginx haproxy weir)
declare -A PORT=([nginx]=$NGINX [haproxy]=$HAPROXY [weir]=$WEIR_PORT [weir-traced-1pct]=$TRACED_PORT)
declare -A TLS=([nginx]=$NGINX_TLS [haproxy]=$HAPROXY_TLS [weir]=$WEIR_TLS)
declare -A PID=([nginx]=$NGINX_PID [haproxy]=$HAPROXY_PID [weir]=$WEIR_PID [weir-traced-1pct]=$TRACED_PID)
declare -A RUNS KEEP NEW
for round in $(seq 1 "$ROUNDS"); do
    for name in "${NAMES[@]}"; do RUNS[$name]+="$(measure "${PORT[$name]}" "${PID[$name]}");"; done
    for name in "${TLS_NAMES[@]}"; do
        KEEP[$name]+="$(measure_tls keep "${TLS[$name]}" "${PID[$name]}");"
        NEW[$name]+="$(measure_tls new "${TLS[$name]}" "${PID[$name]}");"
    done
    echo "round $round of $ROUNDS done" >&2
done

table() { # title, array name, proxies...
    local -n runs=$2
    local name cpu p99 n bad
    echo
    echo "$1; medians of $ROUNDS interleaved rounds of $DURATION"
    printf "%-18s %14s %9s %10s %8s\n" proxy "CPU µs/req" "p99 ms" requests non-2xx
    shift 2
    declare -gA CPU P99
    for name in "$@"; do
        read -r cpu p99 n bad < <(tr ';' '\n' <<<"${runs[$name]}" | grep . | python3 -c '
import sys, statistics
rows = [line.split() for line in sys.stdin]
print(" ".join(str(statistics.median_low(float(r[i]) for r in rows)) for i in range(4)))')
        CPU[$name]=$cpu; P99[$name]=$p99
        printf "%-18s %14s %9s %10.0f %8.0f\n" "$name" "$cpu" "$p99" "$n" "$bad"
    done
    echo "weir / nginx CPU per request: $(ratio "${CPU[weir]}" "${CPU[nginx]}")x (goal 0.7x); p99 ${P99[weir]} vs ${P99[nginx]} ms"
}
table "HTTP keep-alive at $RATE requests/s, 64 connections, upstreams closing every 1,000 requests" RUNS "${NAMES[@]}"
echo "weir with 1% of traces exported / weir: $(ratio "${CPU[weir-traced-1pct]}" "${CPU[weir]}")x CPU per request"
table "HTTPS keep-alive at $RATE requests/s, 64 connections (h2load)" KEEP "${TLS_NAMES[@]}"
table "HTTPS, one request per new TLS connection, $((RATE / 10)) connections/s (h2load)" NEW "${TLS_NAMES[@]}"

[ "${4:-}" = profile ] || exit 0
command -v perf >/dev/null || { echo "bench/lb_cpu: profile needs perf (Debian: linux-perf)" >&2; exit 1; }
pid_list() { echo "$1$(pgrep -P "$1" | sed 's/^/,/' | tr -d '\n')"; }
# The load while `perf $@` watches the proxy; prints the requests answered.
under_load() { # port pid perf-args...
    local port=$1 pids out; pids=$(pid_list "$2"); shift 2
    perf "$@" -p "$pids" -- sleep $((SECS + 1)) 2>/dev/null &
    local perf_pid=$!
    out=$("$WEIR" bench "http://127.0.0.1:$port/" --rate "$RATE" -c 64 -d "$DURATION" --json)
    wait $perf_pid
    python3 -c 'import json, sys; print(json.loads(sys.argv[1])["requests"])' "$out"
}
echo
echo "system calls per request at $RATE requests/s (perf stat, syscall tracepoints)"
for name in "${TLS_NAMES[@]}"; do
    n=$(under_load "${PORT[$name]}" "${PID[$name]}" stat -x, -o "$WORK/syscalls-$name.csv" -e 'syscalls:sys_enter_*')
    python3 - "$WORK/syscalls-$name.csv" "$n" "$name" <<'PY'
import sys
counts = {}
for line in open(sys.argv[1]):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].isdigit() and int(f[0]) > 0:
        counts[f[2].removeprefix("syscalls:sys_enter_")] = int(f[0])
n = max(int(sys.argv[2]), 1)
top = sorted(counts.items(), key=lambda kv: -kv[1])[:6]
print(f"{sys.argv[3]:<10} {sum(counts.values()) / n:5.2f} per request: " + ", ".join(f"{k} {v / n:.2f}" for k, v in top))
PY
done
for name in nginx weir; do
    echo
    echo "$name: hottest functions at $RATE requests/s (perf record, cpu-clock)"
    under_load "${PORT[$name]}" "${PID[$name]}" record -q -e cpu-clock -F 1999 -o "$WORK/perf-$name.data" >/dev/null
    perf report -i "$WORK/perf-$name.data" --stdio --no-children --sort dso,symbol --percent-limit 0.7 2>/dev/null \
        | grep -v "^#" | grep . | head -30
done
