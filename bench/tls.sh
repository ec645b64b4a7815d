#!/usr/bin/env bash
# HTTPS at the edge: weir lb beside nginx and HAProxy, configured alike —
# the same ECDSA P-256 certificate, TLS 1.3 only, 2 workers / threads,
# keep-alive to the same 3 trivial upstreams. Interleaved rounds, medians:
#   (a) keep-alive HTTPS requests/s (wrk -t2 -c64);
#   (b) new TLS connections/s (one request per connection: Connection: close);
#   (c) RSS of each proxy holding 9,800 idle plain HTTP connections, then as
#       many TLS ones (HAProxy needs two
#       descriptors per connection it may hold, and the hard limit here is 20,000).
# Usage: bench/tls.sh [duration of a round, default 5s] [rounds, default 5; 0: (c) only] [idle connections, default 9800]
#        [proxies for (c), default "nginx haproxy weir"; e.g. "weir" for 10,000, past HAProxy's limit here]
source "$(dirname "$0")/lib.sh"
DURATION=${1:-5s}
ROUNDS=${2:-5}
IDLE=${3:-9800}
IDLE_PROXIES=${4:-nginx haproxy weir}
bash "$ROOT/bench/setup.sh" >&2
build_weir

make_cert

U1=$(free_port); U2=$(free_port); U3=$(free_port)
start_ok_nginx "$U1" "$U2" "$U3"

NGINX=$(free_port); NGINX_PLAIN=$(free_port)
cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16000; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    ssl_protocols TLSv1.3;
    ssl_session_cache shared:SSL:10m;
    upstream up { server 127.0.0.1:$U1; server 127.0.0.1:$U2; server 127.0.0.1:$U3; keepalive 128; }
    server { listen 127.0.0.1:$NGINX ssl; listen 127.0.0.1:$NGINX_PLAIN;
             ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;
             location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' & PIDS+=($!)

HAPROXY=$(free_port); HAPROXY_PLAIN=$(free_port)
cat >"$WORK/haproxy.cfg" <<CONF
global
    nbthread 2
    maxconn 9900
    ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
    mode http
    timeout connect 1s
    timeout client 120s
    timeout server 30s
    timeout http-keep-alive 120s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:$HAPROXY ssl crt $WORK/both.pem
    bind 127.0.0.1:$HAPROXY_PLAIN
    default_backend be
backend be
    balance roundrobin
    server u1 127.0.0.1:$U1
    server u2 127.0.0.1:$U2
    server u3 127.0.0.1:$U3
CONF
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 & PIDS+=($!)

WEIR_PLAIN=$(free_port); WEIR_PORT=$(free_port)
RUST_LOG=warn "$WEIR" lb --listen "127.0.0.1:$WEIR_PLAIN" --admin-token bench \
    --tls-listen "127.0.0.1:$WEIR_PORT" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" \
    --tls-min-version 1.3 --header-read-timeout 120s --max-connections 16000 \
    --backends "http://127.0.0.1:$U1,http://127.0.0.1:$U2,http://127.0.0.1:$U3" >"$WORK/weir.log" 2>&1 & PIDS+=($!)
WEIR_PID=$!

wait_https() { for _ in $(seq 1 100); do curl -ksf "$1" >/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; for f in "$WORK"/*.log; do echo "== $f"; tail -n 5 "$f"; done >&2; exit 1; }
for port in $NGINX $HAPROXY $WEIR_PORT; do wait_https "https://127.0.0.1:$port/"; done

# wrk with a header (Connection: close makes every request a new TLS connection).
run_wrk_closing() { # url duration connections
    local out; out=$(wrk -t2 -c"$3" -d"$2" --latency -H "Connection: close" "$1")
    echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(to_ms "$(awk '$1=="50%" {print $2}' <<<"$out")") $(to_ms "$(awk '$1=="99%" {print $2}' <<<"$out")") $(awk '/requests in/ {print $1}' <<<"$out") $(awk '/Non-2xx/ {print $NF}' <<<"$out" | grep . || echo 0)"
}

declare -A KEEP NEW
for round in $(seq 1 "$ROUNDS"); do
    for name in nginx haproxy weir; do
        case $name in nginx) port=$NGINX ;; haproxy) port=$HAPROXY ;; weir) port=$WEIR_PORT ;; esac
        run_wrk "https://127.0.0.1:$port/" 1s 64 >/dev/null   # warm-up
        KEEP[$name]+="$(run_wrk "https://127.0.0.1:$port/" "$DURATION" 64);"
        NEW[$name]+="$(run_wrk_closing "https://127.0.0.1:$port/" "$DURATION" 64);"
    done
    echo "round $round of $ROUNDS done" >&2
done

table() { # title, array name
    local -n runs=$2
    echo
    echo "$1, medians of $ROUNDS interleaved rounds of $DURATION"
    printf "%-10s %12s %9s %9s %8s   %s\n" proxy "req/s" "p50 ms" "p99 ms" "non-2xx" "req/s of each round"
    declare -gA RPS P99
    for name in nginx haproxy weir; do
        read -r rps p50 p99 _ non < <(median "${runs[$name]}")
        RPS[$name]=$rps; P99[$name]=$p99
        each=$(tr ';' '\n' <<<"${runs[$name]}" | grep . | awk '{printf "%.0f ", $1}')
        printf "%-10s %12s %9s %9s %8s   %s\n" "$name" "$rps" "$p50" "$p99" "$non" "$each"
    done
    best=nginx
    python3 -c "import sys; sys.exit(0 if float('${RPS[haproxy]}') > float('${RPS[nginx]}') else 1)" && best=haproxy
    echo "weir / best peer ($best): $(ratio "${RPS[weir]}" "${RPS[$best]}")x ($3); p99 ${P99[weir]} vs ${P99[$best]} ms"
}
# Rounds 0: the memory figures (c) alone.
if ((ROUNDS > 0)); then
    table "(a) HTTPS keep-alive, TLS 1.3, wrk -t2 -c64" KEEP "floor 1.0x, goal 1.2x"
    table "(b) new TLS connections (one request each), wrk -t2 -c64" NEW "floor 0.8x, goal 1.0x"
fi

# (c) idle TLS connections: handshake IDLE of them, hold them, sum the RSS
# of the proxy's processes before and after.
nginx_workers() { pgrep -P "$(cat "$WORK/nginx.pid")" | tr '\n' ' '; }
# Plain first: memory a process freed is reused, so each kind starts fresh
# only for the first.
for kind in plain tls; do
echo
echo "(c) $IDLE idle $kind connections: RSS growth of each proxy"
for name in $IDLE_PROXIES; do
    case $name in
        nginx) port=$NGINX; plain=$NGINX_PLAIN; pids=$(nginx_workers) ;;
        haproxy) port=$HAPROXY; plain=$HAPROXY_PLAIN; pids=$(pgrep -f "haproxy -f $WORK/haproxy.cfg" | tr '\n' ' ') ;;
        weir) port=$WEIR_PORT; plain=$WEIR_PLAIN; pids=$WEIR_PID ;;
    esac
    [ "$kind" = plain ] && port=$plain
    # shellcheck disable=SC2086
    before=$(rss_kb $pids)
    exec {fd}< <(hold_idle "$port" "$kind" "$IDLE")
    holder=$!
    read -r opened <&$fd
    # shellcheck disable=SC2086
    after=$(rss_kb $pids)
    printf "%-10s %6s open: RSS %7.1f MB -> %7.1f MB (+%.1f MB, %.2f KB per connection)\n" "$name" "$opened" \
        "$(echo "$before/1024" | bc -l)" "$(echo "$after/1024" | bc -l)" "$(echo "($after-$before)/1024" | bc -l)" \
        "$(echo "($after-$before)/$opened" | bc -l)"
    kill "$holder" 2>/dev/null; exec {fd}<&-
    sleep 2
done
done
