#!/usr/bin/env bash
# The load balancer beside nginx and HAProxy, configured alike: 2 workers /
# threads, keep-alive to the same 3 trivial upstreams (an nginx answering
# `200 ok`), wrk -t2 -c64 against each, plus the upstream hit directly.
# The upstreams are realistic: they close each client connection after
# 1,000 requests (nginx's default `keepalive_requests`), in two settings —
# 2 worker processes, and a single process (one Node.js or uvicorn process
# is common). Prints requests/s, p50, p99 and weir's ratio to the best peer
# for each setting.
# Usage: bench/lb.sh [duration of a round, default 5s] [rounds, default 7] [settings: both|multi|single, default both]
# WEIR_VARIANT_FLAGS="--flag value …" adds a second weir lb with those flags
# ("variant") to the same interleaved rounds: a flag's effect side by side;
# WEIR_VARIANT_BIN=<another weir binary> runs the variant from that build
# (with the flags, if given): a change's before and after in the same rounds.
source "$(dirname "$0")/lib.sh"
DURATION=${1:-5s}
ROUNDS=${2:-7}
SETTINGS=${3:-both}
bash "$ROOT/bench/setup.sh" >&2
build_weir

# weir's serving threads: connections accepted and requests served by each.
thread_counts() { curl -s -H 'Authorization: Bearer bench' "http://127.0.0.1:$WEIR_PORT/lb/stats" | python3 -c '
import json, sys
print(json.dumps([[t["connections_total"], t["requests"]] for t in json.load(sys.stdin)["threads"]]))'; }
thread_split() { python3 - "$1" "$2" <<'PY'
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
d = [[y[0] - x[0], y[1] - x[1]] for x, y in zip(a, b)]
conns, reqs = sum(t[0] for t in d) or 1, sum(t[1] for t in d) or 1
print("/".join(f"{100 * t[0] / conns:.0f}" for t in d) + " conns, " + "/".join(f"{100 * t[1] / reqs:.0f}" for t in d) + " reqs")
PY
}

# One setting: its upstreams (3 ports of one nginx with WORKERS processes),
# then nginx, HAProxy and weir lb in front of them, measured in interleaved
# rounds.
setting() { # label upstream_workers
    local label=$1
    U1=$(free_port); U2=$(free_port); U3=$(free_port)
    OK_WORKERS=$2 OK_KEEPALIVE_REQUESTS=1000 start_ok_nginx "$U1" "$U2" "$U3"
    NGINX=$(free_port); start_nginx_proxy "$NGINX" "$U1" "$U2" "$U3"
    HAPROXY=$(free_port); start_haproxy_proxy "$HAPROXY" "$U1" "$U2" "$U3"
    WEIR_PORT=$(free_port)
    RUST_LOG=warn "$WEIR" lb --listen "127.0.0.1:$WEIR_PORT" --admin-token bench \
        --backends "http://127.0.0.1:$U1,http://127.0.0.1:$U2,http://127.0.0.1:$U3" >"$WORK/weir-$2.log" 2>&1 & PIDS+=($!)
    local proxies=(direct nginx haproxy weir)
    if [ -n "${WEIR_VARIANT_FLAGS:-}${WEIR_VARIANT_BIN:-}" ]; then
        VARIANT_PORT=$(free_port)
        # shellcheck disable=SC2086 # the flags are words
        RUST_LOG=warn "${WEIR_VARIANT_BIN:-$WEIR}" lb --listen "127.0.0.1:$VARIANT_PORT" --admin-token bench \
            --backends "http://127.0.0.1:$U1,http://127.0.0.1:$U2,http://127.0.0.1:$U3" \
            ${WEIR_VARIANT_FLAGS:-} >"$WORK/weir-variant-$2.log" 2>&1 & PIDS+=($!)
        wait_http "http://127.0.0.1:$VARIANT_PORT/"
        proxies+=(variant)
        echo "variant: ${WEIR_VARIANT_BIN:-$WEIR} ${WEIR_VARIANT_FLAGS:-}" >&2
    fi
    for port in $NGINX $HAPROXY $WEIR_PORT; do wait_http "http://127.0.0.1:$port/"; done

    # Interleaved rounds: this machine's other load drifts over a minute, so each
    # proxy is measured once per round, in turn, and the median of each figure is shown.
    declare -A RUNS=()
    SPLITS=""
    for round in $(seq 1 "$ROUNDS"); do
        for name in "${proxies[@]}"; do
            case $name in
                direct) port=$U1 ;; nginx) port=$NGINX ;; haproxy) port=$HAPROXY ;; weir) port=$WEIR_PORT ;;
                variant) port=$VARIANT_PORT ;;
            esac
            run_wrk "http://127.0.0.1:$port/" 1s 64 >/dev/null   # warm-up
            [ $name = weir ] && before=$(thread_counts)
            RUNS[$name]+="$(run_wrk "http://127.0.0.1:$port/" "$DURATION" 64);"
            [ $name = weir ] && SPLITS+="$(thread_split "$before" "$(thread_counts)"); "
        done
        echo "round $round of $ROUNDS done" >&2
    done

    echo
    echo "load balancer, 3 trivial upstreams ($label), wrk -t2 -c64, medians of $ROUNDS interleaved rounds of $DURATION"
    printf "%-28s %12s %9s %9s %8s   %s\n" proxy "req/s" "p50 ms" "p99 ms" "non-2xx" "req/s of each round"
    declare -A RPS P99
    for name in "${proxies[@]}"; do
        read -r rps p50 p99 _ non < <(median "${RUNS[$name]}")
        RPS[$name]=$rps; P99[$name]=$p99
        each=$(tr ';' '\n' <<<"${RUNS[$name]}" | grep . | awk '{printf "%.0f ", $1}')
        printf "%-28s %12s %9s %9s %8s   %s\n" "$name" "$rps" "$p50" "$p99" "$non" "$each"
    done
    best=nginx
    python3 -c "import sys; sys.exit(0 if float('${RPS[haproxy]}') > float('${RPS[nginx]}') else 1)" && best=haproxy
    echo "weir / best peer ($best): $(ratio "${RPS[weir]}" "${RPS[$best]}")x requests/s (floor 1.0x, goal 1.2x); p99 ${P99[weir]} vs ${P99[$best]} ms"
    [ -n "${VARIANT_PORT:-}" ] && echo "variant / weir: $(ratio "${RPS[variant]}" "${RPS[weir]}")x requests/s; p99 ${P99[variant]} vs ${P99[weir]} ms"
    echo "weir's threads, % of each round's connections and requests: $SPLITS"
    for name in "${proxies[@]:1}"; do
        tr ';' '\n' <<<"${RUNS[$name]}" | grep . | awk -v n=$name '{v[NR]=$1; if (NR==1||$1<lo) lo=$1; if ($1>hi) hi=$1} END {asort(v); printf "%s rounds spread %.1f%% of their median\n", n, 100*(hi-lo)/v[int((NR+1)/2)]}'
    done
}

case $SETTINGS in
    both|multi) setting "2 worker processes, keepalive_requests 1000" 2 ;;
esac
case $SETTINGS in
    both|single) setting "a single process, keepalive_requests 1000" 1 ;;
esac
