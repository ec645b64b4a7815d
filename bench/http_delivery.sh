#!/usr/bin/env bash
# HTTP delivery end to end: N tasks submitted through the lb, each POSTed by a
# worker to a trivial receiver (`weir bench upstream`), beside Celery (2
# prefork processes, Redis broker and backend) running a task that does
# requests.post to the same receiver over a pooled session. Then the cost of
# an external Python worker (clients/python) beside the in-process noop.
# Usage: bench/http_delivery.sh [tasks, default 20000]
source "$(dirname "$0")/lib.sh"
TASKS=${1:-20000}
bash "$ROOT/bench/setup.sh" >&2
VENV="$ROOT/target/bench-venv"
ensure_celery
build_weir
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, d))" "$1" "$2"; }

# --- the receiver ---------------------------------------------------------------
RPORT=$(free_port)
"$WEIR" bench upstream --listen "127.0.0.1:$RPORT" >"$WORK/receiver.log" 2>&1 & PIDS+=($!)
wait_http "http://127.0.0.1:$RPORT/"
export RECEIVER_URL="http://127.0.0.1:$RPORT/hook"

# --- Celery ---------------------------------------------------------------------
DBN=$(( (RANDOM % 14) + 1 ))
export REDIS_URL="redis://127.0.0.1:6379/$DBN"
redis-cli -n "$DBN" flushdb >/dev/null
(cd "$ROOT/bench/peers" && exec "$VENV/bin/celery" -A celery_app worker -P prefork -c 2 --loglevel=WARNING) >"$WORK/celery.log" 2>&1 &
CELERY_PID=$!; PIDS+=($CELERY_PID)
for _ in $(seq 1 100); do grep -q "ready" "$WORK/celery.log" && break; sleep 0.1; done
(cd "$ROOT/bench/peers" && "$VENV/bin/python" celery_deliver_client.py 200 >/dev/null)   # warm-up
C=$(cd "$ROOT/bench/peers" && "$VENV/bin/python" celery_deliver_client.py "$TASKS")
stop_pid "$CELERY_PID"
redis-cli -n "$DBN" flushdb >/dev/null

# --- weir -----------------------------------------------------------------------
cat >"$WORK/weir.toml" <<TOML
[task_types.deliver]
handler = "http"
url = "$RECEIVER_URL"
[task_types.py_noop]
handler = "external"
TOML
DB=$(fresh_db weir_bench_delivery)
start_weir_up "$DB" --config "$WORK/weir.toml" --worker-concurrency 32 --worker-token bench
"$WEIR" bench tasks --target "$UP_URL" --type deliver --tasks 500 --concurrency 64 --json >/dev/null   # warm-up
W=$("$WEIR" bench tasks --target "$UP_URL" --type deliver --tasks "$TASKS" --concurrency 64 --json)

# --- the external Python worker beside the in-process noop ------------------------
N=$(( TASKS / 4 ))
NOOP=$("$WEIR" bench tasks --target "$UP_URL" --type noop --tasks "$N" --concurrency 64 --json)
for i in 1 2; do
    python3 "$ROOT/bench/peers/weir_py_noop.py" "$UP_URL" bench 32 >"$WORK/py-$i.log" 2>&1 & PIDS+=($!)
done
PY=$("$WEIR" bench tasks --target "$UP_URL" --type py_noop --tasks "$N" --concurrency 64 --json)
stop_pid "$UP_PID"
drop_db weir_bench_delivery

c_tps=$(field "$C" 'round(tasks_per_sec)'); w_tps=$(field "$W" 'round(tasks_per_sec)')
n_tps=$(field "$NOOP" 'round(tasks_per_sec)'); p_tps=$(field "$PY" 'round(tasks_per_sec)')
echo
echo "HTTP delivery end to end, $TASKS tasks, each POSTed to a trivial receiver"
printf "%-62s %10s\n" stack "tasks/s"
printf "%-62s %10s\n" "Celery 5 (2 prefork processes, Redis; requests.Session post)" "$c_tps"
printf "%-62s %10s\n" "weir up on PostgreSQL (3 API nodes, 3 workers x 32, http handler)" "$w_tps"
echo "weir / Celery: $(ratio "$w_tps" "$c_tps")x (floor 5x, goal 10x)"
echo "weir delivery submit-to-start: p50 $(field "$W" 'submit_to_start["p50_ms"]') ms, p99 $(field "$W" 'submit_to_start["p99_ms"]') ms"
echo
echo "external Python worker (2 processes x 32 threads) beside the in-process noop, $N tasks"
printf "%-62s %10s\n" "in-process noop" "$n_tps"
printf "%-62s %10s\n" "external py_noop (clients/python, long-poll claims)" "$p_tps"
python3 -c "import sys; n,p=float(sys.argv[1]),float(sys.argv[2]); print(f'external / in-process: {p/n:.2f}x; added cost per task: {1e6/p-1e6/n:.0f} us of wall time')" "$n_tps" "$p_tps"
