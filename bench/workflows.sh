#!/usr/bin/env bash
# Workflows beside Celery's canvas, in one run (issue #38, item 8):
#   (a) a chord of WIDTH md5 tasks and a callback, ROUNDS times one after
#       another: chords/s, and the wait from the last parent's end to the
#       callback's start;
#   (b) CHAINS chains of LENGTH md5 steps, all submitted then all waited
#       for: chains/s;
#   (c) weir alone: one fan-out of WIDE md5 steps into one fan-in, on
#       PostgreSQL: seconds to finish and the fan-in's wait.
# Celery 5: 2 prefork processes, Redis broker and result backend. weir: `weir
# up` on PostgreSQL (3 API nodes, 3 workers x 32), through the stdlib client.
# Usage: bench/workflows.sh [WIDTH 1000] [ROUNDS 10] [CHAINS 500] [LENGTH 10] [WIDE 10000]
source "$(dirname "$0")/lib.sh"
WIDTH=${1:-1000}; ROUNDS=${2:-10}; CHAINS=${3:-500}; LENGTH=${4:-10}; WIDE=${5:-10000}
bash "$ROOT/bench/setup.sh" >&2
VENV="$ROOT/target/bench-venv"
ensure_celery
build_weir
field() { python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(eval(sys.argv[2], {}, d))" "$1" "$2"; }

# --- Celery -------------------------------------------------------------------
DBN=$(( (RANDOM % 14) + 1 ))
export REDIS_URL="redis://127.0.0.1:6379/$DBN"
redis-cli -n "$DBN" flushdb >/dev/null
(cd "$ROOT/bench/peers" && exec "$VENV/bin/celery" -A celery_app worker -P prefork -c 2 --loglevel=WARNING) >"$WORK/celery.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 100); do grep -q "ready" "$WORK/celery.log" && break; sleep 0.1; done
C=$(cd "$ROOT/bench/peers" && "$VENV/bin/python" celery_canvas.py "$WIDTH" "$ROUNDS" "$CHAINS" "$LENGTH")
redis-cli -n "$DBN" flushdb >/dev/null
stop_pid "${PIDS[0]}"; PIDS=()

# --- weir ---------------------------------------------------------------------
DB=$(fresh_db weir_bench_workflows)
start_weir_up "$DB" --worker-concurrency 32 --max-workflow-steps $((WIDE + 1))
W=$(python3 "$ROOT/bench/peers/weir_canvas.py" "$UP_URL" "$WIDTH" "$ROUNDS" "$CHAINS" "$LENGTH" "$WIDE")
stop_pid "$UP_PID"; PIDS=()
drop_db weir_bench_workflows

echo
echo "workflows: (a) chord of $WIDTH md5 + callback, $ROUNDS times; (b) $CHAINS chains of $LENGTH md5"
printf "%-52s %12s %16s %16s %12s\n" stack "chords/s" "cb wait p50 ms" "cb wait max ms" "chains/s"
for row in "Celery 5 (2 prefork, Redis broker + backend)|$C" "weir up on PostgreSQL (3 API, 3 workers x 32)|$W"; do
    name=${row%%|*}; j=${row#*|}
    printf "%-52s %12s %16s %16s %12s\n" "$name" "$(field "$j" 'round(chords_per_sec, 3)')" \
        "$(field "$j" 'round(chord_wait_ms_p50, 1)')" "$(field "$j" 'round(chord_wait_ms_max, 1)')" \
        "$(field "$j" 'round(chains_per_sec, 1)')"
done
echo "weir / Celery: chords $(ratio "$(field "$W" 'chords_per_sec')" "$(field "$C" 'chords_per_sec')")x, chains $(ratio "$(field "$W" 'chains_per_sec')" "$(field "$C" 'chains_per_sec')")x (goal 10x)"
echo "weir alone, one fan-out of $WIDE into one fan-in: $(field "$W" 'round(wide_seconds, 2)') s to finish, fan-in wait $(field "$W" 'round(wide_fan_in_wait_ms, 1)') ms (goal < 100 ms)"
