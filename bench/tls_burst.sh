#!/usr/bin/env bash
# A burst of new TLS connections against healthy, fast upstreams: nginx,
# HAProxy and weir lb (TLS 1.3, ECDSA P-256, 2 workers / threads) each
# take h2load opening CONNECTIONS connections, RATE a second — each
# second's connections all at once — with one request on each. The
# upstreams answer in microseconds, so every answer should be 2xx: a proxy
# busy with handshakes must not take its own delay for the upstreams
# slowing down. Prints per proxy the requests not answered 2xx, p99, and
# CPU µs per connection, for ROUNDS interleaved rounds.
# Usage: bench/tls_burst.sh [connections, default 5000] [rate/s, default 1000] [rounds, default 3]
source "$(dirname "$0")/lib.sh"
CONNECTIONS=${1:-5000}
RATE=${2:-1000}
ROUNDS=${3:-3}
bash "$ROOT/bench/setup.sh" >&2
build_weir
TICK_US=$((1000000 / $(getconf CLK_TCK)))
make_cert

U1=$(free_port); U2=$(free_port); U3=$(free_port)
start_ok_nginx "$U1" "$U2" "$U3"
NGINX=$(free_port); NGINX_TLS=$(free_port)
TLS_PORT=$NGINX_TLS start_nginx_proxy "$NGINX" "$U1" "$U2" "$U3"; NGINX_PID=$PROXY_PID
HAPROXY=$(free_port); HAPROXY_TLS=$(free_port)
TLS_PORT=$HAPROXY_TLS start_haproxy_proxy "$HAPROXY" "$U1" "$U2" "$U3"; HAPROXY_PID=$PROXY_PID
WEIR_PORT=$(free_port); WEIR_TLS=$(free_port)
RUST_LOG=warn "$WEIR" lb --listen "127.0.0.1:$WEIR_PORT" \
    --backends "http://127.0.0.1:$U1,http://127.0.0.1:$U2,http://127.0.0.1:$U3" \
    --tls-listen "127.0.0.1:$WEIR_TLS" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" \
    --tls-min-version 1.3 >"$WORK/weir.log" 2>&1 & WEIR_PID=$!; PIDS+=($WEIR_PID)
for port in $NGINX_TLS $HAPROXY_TLS $WEIR_TLS; do wait_http "https://127.0.0.1:$port/"; done

# One burst: "non_2xx p99_ms cpu_us_per_connection".
burst() { # port pid
    local log="$WORK/h2load.log" before after
    rm -f "$log"
    before=$(cpu_ticks "$2")
    h2load --h1 -c "$CONNECTIONS" -n "$CONNECTIONS" -r "$RATE" --log-file="$log" \
        "https://127.0.0.1:$1/" >"$WORK/h2load.out" 2>&1 || true
    after=$(cpu_ticks "$2")
    python3 - "$log" "$((after - before))" "$TICK_US" "$CONNECTIONS" <<'PY'
import sys
rows = [line.split("\t") for line in open(sys.argv[1]) if line.strip()]
ticks, tick_us, wanted = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lat = sorted(int(r[2]) for r in rows)
ok = sum(1 for r in rows if r[1].startswith("2"))
p99 = lat[max(int(len(lat) * 0.99) - 1, 0)] / 1000 if lat else 0
# Requests never answered (a failed connection) count as not 2xx too.
print(f"{wanted - ok} {p99:.2f} {ticks * tick_us / wanted:.1f}")
PY
}

NAMES=(nginx haproxy weir)
declare -A PORT=([nginx]=$NGINX_TLS [haproxy]=$HAPROXY_TLS [weir]=$WEIR_TLS)
declare -A PID=([nginx]=$NGINX_PID [haproxy]=$HAPROXY_PID [weir]=$WEIR_PID)
declare -A RUNS
for round in $(seq 1 "$ROUNDS"); do
    for name in "${NAMES[@]}"; do RUNS[$name]+="$(burst "${PORT[$name]}" "${PID[$name]}");"; done
    echo "round $round of $ROUNDS done" >&2
done

echo "Bursts of new TLS connections: $CONNECTIONS, $RATE a second, one request each (h2load --h1 -r $RATE)"
printf "%-10s %-24s %-30s %s\n" proxy "not 2xx (each round)" "p99 ms (each round)" "CPU µs per connection (each round)"
for name in "${NAMES[@]}"; do
    bad=""; p99=""; cpu=""
    while read -r b p c; do bad+="$b "; p99+="$p "; cpu+="$c "; done < <(tr ';' '\n' <<<"${RUNS[$name]}" | grep .)
    printf "%-10s %-24s %-30s %s\n" "$name" "$bad" "$p99" "$cpu"
done
echo "weir lb's own count of overload refusals: $(curl -s "http://127.0.0.1:$WEIR_PORT/lb/metrics" \
    | awk '/^weir_lb_rejected_total\{reason="overload"\}/ {print $2}')"
