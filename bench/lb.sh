#!/usr/bin/env bash
# The load balancer beside nginx and HAProxy, configured alike: 2 workers /
# threads, keep-alive to the same 3 trivial upstreams (an nginx answering
# `200 ok`), wrk -t2 -c64 against each, plus the upstream hit directly.
# Prints requests/s, p50, p99 and weir's ratio to the best peer.
# Usage: bench/lb.sh [duration, default 10s]
source "$(dirname "$0")/lib.sh"
DURATION=${1:-10s}
bash "$ROOT/bench/setup.sh" >&2
build_weir

# --- the upstreams: one nginx, three ports ------------------------------------
U1=$(free_port); U2=$(free_port); U3=$(free_port)
start_ok_nginx "$U1" "$U2" "$U3"

# --- nginx --------------------------------------------------------------------
NGINX=$(free_port)
cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream up { server 127.0.0.1:$U1; server 127.0.0.1:$U2; server 127.0.0.1:$U3; keepalive 128; }
    server { listen 127.0.0.1:$NGINX;
             location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' & PIDS+=($!)

# --- HAProxy ------------------------------------------------------------------
HAPROXY=$(free_port)
cat >"$WORK/haproxy.cfg" <<CONF
global
    nbthread 2
    maxconn 8000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:$HAPROXY
    default_backend be
backend be
    balance roundrobin
    server u1 127.0.0.1:$U1
    server u2 127.0.0.1:$U2
    server u3 127.0.0.1:$U3
CONF
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 & PIDS+=($!)

# --- weir lb ------------------------------------------------------------------
WEIR_PORT=$(free_port)
RUST_LOG=warn "$WEIR" lb --listen "127.0.0.1:$WEIR_PORT" --admin-token bench \
    --backends "http://127.0.0.1:$U1,http://127.0.0.1:$U2,http://127.0.0.1:$U3" >"$WORK/weir.log" 2>&1 & PIDS+=($!)

for port in $NGINX $HAPROXY $WEIR_PORT; do wait_http "http://127.0.0.1:$port/"; done

declare -A RPS P50 P99 NON
for name in direct nginx haproxy weir; do
    case $name in
        direct) port=$U1 ;; nginx) port=$NGINX ;; haproxy) port=$HAPROXY ;; weir) port=$WEIR_PORT ;;
    esac
    run_wrk "http://127.0.0.1:$port/" 2s 64 >/dev/null   # warm-up
    read -r rps p50 p99 _ non < <(run_wrk "http://127.0.0.1:$port/" "$DURATION" 64)
    RPS[$name]=$rps; P50[$name]=$p50; P99[$name]=$p99; NON[$name]=$non
done

echo
echo "load balancer, 3 trivial upstreams, wrk -t2 -c64 -d$DURATION"
printf "%-28s %12s %9s %9s %8s\n" proxy "req/s" "p50 ms" "p99 ms" "non-2xx"
for name in direct nginx haproxy weir; do
    printf "%-28s %12s %9s %9s %8s\n" "$name" "${RPS[$name]}" "${P50[$name]}" "${P99[$name]}" "${NON[$name]}"
done
best=$(python3 -c "print(max(float('${RPS[nginx]}'), float('${RPS[haproxy]}')))")
echo "weir / best peer: $(ratio "${RPS[weir]}" "$best")x requests/s (floor 1.0x, goal 1.1x)"
