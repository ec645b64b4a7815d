#!/usr/bin/env bash
# End-to-end md5 tasks/s: weir beside the seeds' stack (a Celery 5 worker,
# 2 prefork processes, Redis broker and result backend, tasks submitted from
# a plain Python client), and the CPU each part spent per task over the run:
# the client, the front (weir lb), the API node, the worker, the broker/store.
# weir runs twice: `weir up` (lb, 3 API nodes, 3 workers in one process), and
# its roles as separate processes (weir lb, weir api, weir worker) so each
# role's CPU can be read. Also weir's submit-to-start latency at half its peak.
# Usage: bench/celery.sh [tasks, default 20000]
source "$(dirname "$0")/lib.sh"
TASKS=${1:-20000}
bash "$ROOT/bench/setup.sh" >&2
VENV="$ROOT/target/bench-venv"
ensure_celery
build_weir
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, d))" "$1" "$2"; }
PG=$(pg_pid); REDIS=$(redis_pid)

# --- Celery -------------------------------------------------------------------
DBN=$(( (RANDOM % 14) + 1 ))   # a Redis database of its own, flushed first
export REDIS_URL="redis://127.0.0.1:6379/$DBN"
redis-cli -n "$DBN" flushdb >/dev/null
(cd "$ROOT/bench/peers" && exec "$VENV/bin/celery" -A celery_app worker -P prefork -c 2 --loglevel=WARNING) >"$WORK/celery.log" 2>&1 &
CELERY=$!; PIDS+=($CELERY)
for _ in $(seq 1 100); do grep -q "ready" "$WORK/celery.log" && break; sleep 0.1; done
(cd "$ROOT/bench/peers" && "$VENV/bin/python" celery_client.py 200 >/dev/null)   # warm-up
w0=$(cpu_ticks "$CELERY"); r0=$(cpu_ticks "$REDIS")
c_client=$(cd "$ROOT/bench/peers" && run_ticks "$WORK/celery.json" "$VENV/bin/python" celery_client.py "$TASKS")
c_worker=$(( $(cpu_ticks "$CELERY") - w0 )); c_redis=$(( $(cpu_ticks "$REDIS") - r0 ))
C=$(cat "$WORK/celery.json")
stop_pid "$CELERY"; PIDS=()
redis-cli -n "$DBN" flushdb >/dev/null

# --- weir up --------------------------------------------------------------------
DB=$(fresh_db weir_bench_celery)
start_weir_up "$DB" --worker-concurrency 32
u0=$(cpu_ticks "$UP_PID"); p0=$(cpu_ticks "$PG")
u_client=$(run_ticks "$WORK/up.json" "$WEIR" bench tasks --target "$UP_URL" --tasks "$TASKS" --concurrency 64 --json)
u_weir=$(( $(cpu_ticks "$UP_PID") - u0 )); u_pg=$(( $(cpu_ticks "$PG") - p0 ))
W=$(cat "$WORK/up.json")
HALF=$(python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['tasks_per_sec'] / 2))" "$W")
H=$("$WEIR" bench tasks --target "$UP_URL" --tasks "$TASKS" --concurrency 64 --rate "$HALF" --json)
stop_pid "$UP_PID"; PIDS=()
drop_db weir_bench_celery

# --- weir's roles as processes ----------------------------------------------------
DB=$(fresh_db weir_bench_roles)
"$WEIR" migrate --database-url "$DB" >/dev/null
API_PORT=$(free_port); LB_PORT=$(free_port)
RUST_LOG=warn "$WEIR" api --listen "127.0.0.1:$API_PORT" --database-url "$DB" >"$WORK/api.log" 2>&1 &
API=$!; PIDS+=($API)
RUST_LOG=warn "$WEIR" worker --database-url "$DB" --concurrency 32 >"$WORK/worker.log" 2>&1 &
WORKER=$!; PIDS+=($WORKER)
RUST_LOG=warn "$WEIR" lb --listen "127.0.0.1:$LB_PORT" --backends "127.0.0.1:$API_PORT" --admin-token bench >"$WORK/lb.log" 2>&1 &
LB=$!; PIDS+=($LB)
wait_http "http://127.0.0.1:$API_PORT/health"; wait_http "http://127.0.0.1:$LB_PORT/health"
"$WEIR" bench tasks --target "http://127.0.0.1:$LB_PORT" --tasks 200 --concurrency 16 --json >/dev/null   # warm-up
l0=$(cpu_ticks "$LB"); a0=$(cpu_ticks "$API"); k0=$(cpu_ticks "$WORKER"); p0=$(cpu_ticks "$PG")
s_client=$(run_ticks "$WORK/roles.json" "$WEIR" bench tasks --target "http://127.0.0.1:$LB_PORT" --tasks "$TASKS" --concurrency 64 --json) ||
    { tail -n 20 "$WORK/lb.log" "$WORK/api.log" "$WORK/worker.log" >&2; exit 1; }
s_lb=$(( $(cpu_ticks "$LB") - l0 )); s_api=$(( $(cpu_ticks "$API") - a0 ))
s_worker=$(( $(cpu_ticks "$WORKER") - k0 )); s_pg=$(( $(cpu_ticks "$PG") - p0 ))
S=$(cat "$WORK/roles.json")
for pid in "$LB" "$API" "$WORKER"; do stop_pid "$pid"; done; PIDS=()
drop_db weir_bench_roles

c_tps=$(field "$C" 'round(tasks_per_sec)'); w_tps=$(field "$W" 'round(tasks_per_sec)'); s_tps=$(field "$S" 'round(tasks_per_sec)')
us() { us_per "$1" "$TASKS"; }
echo
echo "end-to-end md5 tasks, $TASKS tasks; CPU µs per task over the whole run (submit to result);"
echo "app = the stack's own server processes (Celery's worker; weir up; weir's lb + api + worker)"
row() { printf "%-52s %8s %7s %6s %6s %7s %6s %6s %6s\n" "$@"; }
row stack "tasks/s" client lb api worker app store total
row "Celery 5 (2 prefork processes, Redis broker + backend)" "$c_tps" "$(us "$c_client")" - - \
    "$(us "$c_worker")" "$(us "$c_worker")" "$(us "$c_redis")" "$(us $((c_client + c_worker + c_redis)))"
row "weir up on PostgreSQL (3 API nodes, 3 workers x 32)" "$w_tps" "$(us "$u_client")" - - - \
    "$(us "$u_weir")" "$(us "$u_pg")" "$(us $((u_client + u_weir + u_pg)))"
row "weir lb + api + worker (32) processes, PostgreSQL" "$s_tps" "$(us "$s_client")" "$(us "$s_lb")" \
    "$(us "$s_api")" "$(us "$s_worker")" "$(us $((s_lb + s_api + s_worker)))" "$(us "$s_pg")" \
    "$(us $((s_client + s_lb + s_api + s_worker + s_pg)))"
echo "(store: Redis for Celery, PostgreSQL for weir)"
echo "weir up / Celery: $(ratio "$w_tps" "$c_tps")x; weir's roles as processes / Celery: $(ratio "$s_tps" "$c_tps")x (floor 5x, goal 10x)"
echo "CPU per task, servers only (client left out): Celery $(us $((c_worker + c_redis))) µs, weir up $(us $((u_weir + u_pg))) µs," \
    "weir's roles $(us $((s_lb + s_api + s_worker + s_pg))) µs"
echo "weir submit-to-start at full load: p50 $(field "$W" 'submit_to_start["p50_ms"]') ms, p99 $(field "$W" 'submit_to_start["p99_ms"]') ms"
echo "weir submit-to-start at half its peak ($HALF tasks/s, paced): p50 $(field "$H" 'submit_to_start["p50_ms"]') ms, p99 $(field "$H" 'submit_to_start["p99_ms"]') ms (target p99 < 20 ms)"
