#!/usr/bin/env bash
# Request logging under load: `GET /?message=` (one logged row per request)
# through the front door, wrk -t2 -c64, side by side:
#   seeds  nginx (2 workers) over 3 gunicorn/Flask nodes, one INSERT per request, PostgreSQL
#   weir   weir up on PostgreSQL, and on SQLite
# Prints logged requests/s (rows in the table / duration), wrk's p50/p99, and weir's ratio.
# Usage: bench/request_log.sh [duration, default 15s]
source "$(dirname "$0")/lib.sh"
DURATION=${1:-15s}
bash "$ROOT/bench/setup.sh" >&2
build_weir

rows() { psql "$1" -Atqc "SELECT COUNT(*) FROM requests WHERE message = 'bench'"; }
secs() { python3 -c "import sys; print(float(sys.argv[1].rstrip('s')))" "$DURATION"; }

# --- the seeds' stack ---------------------------------------------------------
SEED_DB=$(fresh_db weir_bench_seed)
psql "$SEED_DB" -qc "CREATE TABLE requests (id BIGSERIAL PRIMARY KEY, node_id TEXT NOT NULL, method TEXT NOT NULL,
    path TEXT NOT NULL, status INT NOT NULL, message TEXT, created_at TIMESTAMPTZ NOT NULL)"
UPSTREAMS=""
for i in 1 2 3; do
    p=$(free_port)
    (cd "$ROOT/bench/peers" && DATABASE_URL="$SEED_DB" NODE_ID="flask-$i" \
        exec "$ROOT/target/bench-venv/bin/gunicorn" -w 1 -b "127.0.0.1:$p" --log-level warning flask_app:app) &
    PIDS+=($!)
    UPSTREAMS+="server 127.0.0.1:$p;"
    wait_http "http://127.0.0.1:$p/?message=warmup"
done
NGINX_PORT=$(free_port)
cat >"$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream flask { $UPSTREAMS keepalive 64; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { proxy_pass http://flask; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CONF
nginx -c "$WORK/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
wait_http "http://127.0.0.1:$NGINX_PORT/?message=warmup"
read -r s_rps s_p50 s_p99 s_total s_non2xx < <(run_wrk "http://127.0.0.1:$NGINX_PORT/?message=bench" "$DURATION" 64)
s_logged=$(python3 -c "print(round($(rows "$SEED_DB") / $(secs)))")
for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
PIDS=()
drop_db weir_bench_seed

# --- weir ---------------------------------------------------------------------
WEIR_DB=$(fresh_db weir_bench_log)
start_weir_up "$WEIR_DB"
wait_http "$UP_URL/?message=warmup"
read -r p_rps p_p50 p_p99 p_total p_non2xx < <(run_wrk "$UP_URL/?message=bench" "$DURATION" 64)
p_logged=$(python3 -c "print(round($(rows "$WEIR_DB") / $(secs)))")
stop_pid "$UP_PID"; PIDS=()
drop_db weir_bench_log

start_weir_up sqlite
wait_http "$UP_URL/?message=warmup"
read -r q_rps q_p50 q_p99 q_total q_non2xx < <(run_wrk "$UP_URL/?message=bench" "$DURATION" 64)
stop_pid "$UP_PID"; PIDS=()
DBFILE=$(ls "$WORK"/data-*/weir.db | tail -1)
q_logged=$(python3 -c "import sqlite3; print(round(sqlite3.connect('$DBFILE').execute(\"SELECT COUNT(*) FROM requests WHERE message='bench'\").fetchone()[0] / $(secs)))")

echo
echo "request logging, GET /?message= through the front door, wrk -t2 -c64 -d$DURATION"
printf "%-44s %12s %12s %9s %9s %8s\n" stack "logged/s" "wrk req/s" "p50 ms" "p99 ms" "non-2xx"
printf "%-44s %12s %12s %9s %9s %8s\n" "seeds: nginx + 3 gunicorn/Flask, PostgreSQL" "$s_logged" "$s_rps" "$s_p50" "$s_p99" "$s_non2xx"
printf "%-44s %12s %12s %9s %9s %8s\n" "weir up, PostgreSQL" "$p_logged" "$p_rps" "$p_p50" "$p_p99" "$p_non2xx"
printf "%-44s %12s %12s %9s %9s %8s\n" "weir up, SQLite" "$q_logged" "$q_rps" "$q_p50" "$q_p99" "$q_non2xx"
echo "ratio weir/seeds (logged/s): PostgreSQL $(ratio "$p_logged" "$s_logged")x, SQLite $(ratio "$q_logged" "$s_logged")x  (floor 5x, goal 10x)"
