#!/usr/bin/env bash
# End-to-end md5 tasks/s: weir (lb → 3 API nodes → PostgreSQL → workers) beside
# the seeds' stack (a Celery 5 worker, 2 prefork processes, Redis broker and
# result backend, tasks submitted from a plain Python client). Also weir's
# submit-to-start latency at half its peak rate.
# Usage: bench/celery.sh [tasks, default 20000]
source "$(dirname "$0")/lib.sh"
TASKS=${1:-20000}
bash "$ROOT/bench/setup.sh" >&2
VENV="$ROOT/target/bench-venv"
ensure_celery
build_weir
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, d))" "$1" "$2"; }

# --- Celery -------------------------------------------------------------------
DBN=$(( (RANDOM % 14) + 1 ))   # a Redis database of its own, flushed first
export REDIS_URL="redis://127.0.0.1:6379/$DBN"
redis-cli -n "$DBN" flushdb >/dev/null
(cd "$ROOT/bench/peers" && exec "$VENV/bin/celery" -A celery_app worker -P prefork -c 2 --loglevel=WARNING) >"$WORK/celery.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q "ready" "$WORK/celery.log" && break; sleep 0.1; done
(cd "$ROOT/bench/peers" && "$VENV/bin/python" celery_client.py 200 >/dev/null)   # warm-up
C=$(cd "$ROOT/bench/peers" && "$VENV/bin/python" celery_client.py "$TASKS")
redis-cli -n "$DBN" flushdb >/dev/null

# --- weir ---------------------------------------------------------------------
DB=$(fresh_db weir_bench_celery)
start_weir_up "$DB" --worker-concurrency 32
W=$("$WEIR" bench tasks --target "$UP_URL" --tasks "$TASKS" --concurrency 64 --json)
HALF=$(python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['tasks_per_sec'] / 2))" "$W")
H=$("$WEIR" bench tasks --target "$UP_URL" --tasks "$TASKS" --concurrency 64 --rate "$HALF" --json)
stop_pid "$UP_PID"; PIDS=("${PIDS[@]:0:1}")
drop_db weir_bench_celery

c_tps=$(field "$C" 'round(tasks_per_sec)'); w_tps=$(field "$W" 'round(tasks_per_sec)')
echo
echo "end-to-end md5 tasks, $TASKS tasks"
printf "%-58s %10s\n" stack "tasks/s"
printf "%-58s %10s\n" "Celery 5 (2 prefork processes, Redis broker + backend)" "$c_tps"
printf "%-58s %10s\n" "weir up on PostgreSQL (3 API nodes, 3 workers x 32)" "$w_tps"
echo "weir / Celery: $(ratio "$w_tps" "$c_tps")x (floor 5x, goal 10x)"
echo "weir submit-to-start at full load: p50 $(field "$W" 'submit_to_start["p50_ms"]') ms, p99 $(field "$W" 'submit_to_start["p99_ms"]') ms"
echo "weir submit-to-start at half its peak ($HALF tasks/s, paced): p50 $(field "$H" 'submit_to_start["p50_ms"]') ms, p99 $(field "$H" 'submit_to_start["p99_ms"]') ms (target p99 < 20 ms)"
