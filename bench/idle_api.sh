#!/usr/bin/env bash
# Idle client connections held by an API node facing clients directly
# (issue #18, item 1): `weir api` (default flags, SQLite) beside nginx
# (2 workers answering 200), each holding the same number of connections
# that have sent nothing, then as many that have made one request and stay
# open (keep-alive). Prints each one's RSS growth per connection and the ratio.
# Usage: bench/idle_api.sh [connections, default 9800]
source "$(dirname "$0")/lib.sh"
IDLE=${1:-9800}
build_weir
ulimit -n "$(ulimit -Hn)"

NGINX=$(free_port)
cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 16000; }
http { access_log off; keepalive_timeout 120s; keepalive_requests 1000000;
       server { listen 127.0.0.1:$NGINX; location / { return 200 "ok\n"; } } }
CONF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' & PIDS+=($!)

API=$(free_port)
RUST_LOG=warn "$WEIR" api --listen "127.0.0.1:$API" --database-url "sqlite://$WORK/api.db" >"$WORK/api.log" 2>&1 & PIDS+=($!)
API_PID=$!
wait_http "http://127.0.0.1:$NGINX/"; wait_http "http://127.0.0.1:$API/health"
nginx_workers() { pgrep -P "$(cat "$WORK/nginx.pid")" | tr '\n' ' '; }

declare -A GROWTH
for kind in idle used; do
    for name in nginx weir; do
        case $name in nginx) port=$NGINX; pids=$(nginx_workers) ;; weir) port=$API; pids=$API_PID ;; esac
        # shellcheck disable=SC2086
        before=$(rss_kb $pids)
        mode=plain; [ $kind = used ] && mode=used
        exec {fd}< <(hold_idle "$port" "$mode" "$IDLE")
        holder=$!
        read -r opened <&$fd
        # shellcheck disable=SC2086
        after=$(rss_kb $pids)
        GROWTH[$kind-$name]=$((after - before))
        printf "%-5s %-6s %6s open: RSS %7.1f MB -> %7.1f MB (+%.1f MB, %.2f KB per connection)\n" "$kind" "$name" "$opened" \
            "$(echo "$before/1024" | bc -l)" "$(echo "$after/1024" | bc -l)" "$(echo "($after-$before)/1024" | bc -l)" \
            "$(echo "($after-$before)/$opened" | bc -l)"
        kill "$holder" 2>/dev/null; exec {fd}<&-
        sleep 2
    done
done
for kind in idle used; do
    echo "$kind: weir api growth / nginx growth: $(ratio "${GROWTH[$kind-weir]}" "$((GROWTH[$kind-nginx] > 0 ? GROWTH[$kind-nginx] : 1))")x (goal: under 1 KB per idle connection, at most 2x nginx)"
done
