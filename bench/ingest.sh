#!/usr/bin/env bash
# Event ingest (POST /write) into PostgreSQL, side by side in one run:
#   raw      one COPY of 100,000 events from one client (psql \copy): the ceiling
#   python   the seeds' stack: FastAPI under gunicorn (2 uvicorn workers) → Redis
#            Stream → an asyncpg consumer bulk-inserting (executemany)
#   direct   weir api, group commit into PostgreSQL, 202 after the commit
#   buffered weir api → Redis Stream → weir worker's consumer → PostgreSQL
# Two loads, wrk -t2: one event per POST (-c64), and NDJSON batches of 500 (-c8).
# Prints events/s acknowledged (202s × events per request / duration), the
# seconds from the end of the load until every acknowledged event is visible
# in PostgreSQL, the CPU µs per event of the stack's processes and of
# PostgreSQL + Redis (from the load's start until all are visible), and weir's ratios (to the Python stack; to raw COPY).
# Usage: bench/ingest.sh [duration, default 15s]
source "$(dirname "$0")/lib.sh"
DURATION=${1:-15s}
bash "$ROOT/bench/setup.sh" >&2
build_weir
VENV="$ROOT/target/bench-venv"
REDIS_URL=${WEIR_BENCH_REDIS_URL:-redis://127.0.0.1:6379}
secs() { python3 -c "import sys; print(float(sys.argv[1].rstrip('s')))" "$DURATION"; }
count() { psql "$1" -Atqc "SELECT COUNT(*) FROM events"; }
PG=$(pg_pid); REDIS=$(redis_pid)

# The request bodies.
echo '{"level":"info","service":"checkout","msg":"order placed","order":12345,"ms":17}' >"$WORK/one.json"
python3 - "$WORK/batch.ndjson" <<'PY'
import json, sys
with open(sys.argv[1], "w") as f:
    for i in range(500):
        f.write(json.dumps({"level": "info", "service": "checkout", "msg": "order placed", "order": i, "ms": 17}) + "\n")
PY
ONE_LUA=$(post_lua "$WORK/one.json" application/json)
BATCH_LUA=$(post_lua "$WORK/batch.ndjson" application/x-ndjson)

# Runs wrk with a POST script; prints "events_per_sec acked_requests p99_ms".
load() { # url lua connections events_per_request
    local out; out=$(wrk -t2 -c"$3" -d"$DURATION" --latency -s "$2" "$1")
    local total non2xx p99
    total=$(awk '/requests in/ {print $1}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out"); non2xx=${non2xx:-0}
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    local acked=$((total - non2xx))
    echo "$(python3 -c "print(round($acked * $4 / $(secs)))") $((acked * $4)) $(to_ms "$p99")"
}

# Seconds until `count` reaches $2 (gives up after 300 s). An exact count
# scans the whole table (a second or more at millions of rows, taking CPU
# from the drain being timed), so it runs only once the table's insert
# counter (cheap; flushed within a second) says enough rows went in, or every
# 10 s in case that counter lags; so the time may read up to ~1 s late.
inserted() { psql "$1" -Atqc "SELECT COALESCE(SUM(n_tup_ins), 0) FROM pg_stat_user_tables WHERE relname = 'events'"; }
visible_after() { # db_url expected
    local start; start=$(date +%s.%N)
    local base=${INSERTED_BASE:-0} i next=0
    for i in $(seq 0 6000); do
        if [ "$i" -ge "$next" ] && { [ $((i % 200)) -eq 0 ] || [ $(( $(inserted "$1") - base )) -ge "$2" ]; }; then
            [ "$(count "$1")" -ge "$2" ] && break
            next=$((i + 20))   # the next exact count a second later at the soonest
        fi
        sleep 0.05
    done
    python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))" "$start" "$(date +%s.%N)"
}

# Empties the table and reads its insert counter once the last run's
# backends have flushed theirs (within a second).
truncate_events() {
    psql "$1" -qc "TRUNCATE events" >/dev/null
    sleep 1.1
    INSERTED_BASE=$(inserted "$1")
}

DB=$(fresh_db weir_bench_ingest)
"$WEIR" migrate --database-url "$DB" >/dev/null

# --- raw COPY ----------------------------------------------------------------------
# Time-ordered ids (UUIDv7 layout), as weir generates them.
python3 - "$WORK/copy.tsv" "$WORK/bare.tsv" <<'PY'
import json, os, sys, time
t0 = int(time.time() * 1000)
with open(sys.argv[1], "w") as f, open(sys.argv[2], "w") as g:
    for i in range(100_000):
        body = json.dumps({"level": "info", "service": "checkout", "msg": "order placed", "order": i, "ms": 17})
        u, r = f"{t0 + i // 100:012x}", os.urandom(10).hex()
        f.write(f"{u[:8]}-{u[8:]}-7{r[:3]}-{r[3:7]}-{r[7:19]}\t{body}\t2026-11-25 00:00:00+00\n")
        g.write(body + "\n")
PY
copy_rate() { # db, \copy target, file → events/s of one COPY
    local start; start=$(date +%s.%N)
    psql "$1" -qc "\\copy $2 FROM '$3'"
    python3 -c "import sys; print(round(100000 / (float(sys.argv[2]) - float(sys.argv[1]))))" "$start" "$(date +%s.%N)"
}
raw_eps=$(copy_rate "$DB" "events (id, body, received_at)" "$WORK/copy.tsv")
truncate_events "$DB"
psql "$DB" -qc "CREATE TABLE bare (body jsonb)"
bare_eps=$(copy_rate "$DB" bare "$WORK/bare.tsv")
psql "$DB" -qc "DROP TABLE bare"

# --- the seeds' Python stack ------------------------------------------------------------
# With 2 and with 4 uvicorn workers; the better one is the peer.
py_eps=0
for workers in 2 4; do
    redis-cli -u "$REDIS_URL" DEL py:events >/dev/null
    PY_PORT=$(free_port)
    (cd "$ROOT/bench/peers" && REDIS_URL="$REDIS_URL" exec "$VENV/bin/gunicorn" -w "$workers" -k uvicorn.workers.UvicornWorker \
        -b "127.0.0.1:$PY_PORT" --log-level warning fastapi_ingest:app) &
    PIDS+=($!)
    (cd "$ROOT/bench/peers" && REDIS_URL="$REDIS_URL" DATABASE_URL="$DB" exec "$VENV/bin/python" asyncpg_consumer.py) &
    PIDS+=($!)
    for _ in $(seq 1 200); do curl -s -o /dev/null -X POST -d '{}' "http://127.0.0.1:$PY_PORT/write" && break; sleep 0.05; done
    visible_after "$DB" 1 >/dev/null  # the consumer is up
    truncate_events "$DB"
    app0=$(cpu_ticks "${PIDS[@]}"); st0=$(cpu_ticks "$PG" "$REDIS")
    read -r eps acked p99 < <(load "http://127.0.0.1:$PY_PORT/write" "$ONE_LUA" 64 1)
    vis=$(visible_after "$DB" "$acked")
    app_us=$(us_per $(( $(cpu_ticks "${PIDS[@]}") - app0 )) "$acked")
    st_us=$(us_per $(( $(cpu_ticks "$PG" "$REDIS") - st0 )) "$acked")
    echo "python, $workers workers: $eps events/s, p99 $p99 ms, visible after $vis s, CPU µs/event app $app_us store $st_us" >&2
    if [ "$eps" -gt "$py_eps" ]; then py_eps=$eps; py_p99=$p99; py_vis=$vis; py_workers=$workers; py_app=$app_us; py_st=$st_us; fi
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
    truncate_events "$DB"
done

# --- weir ---------------------------------------------------------------------------
# start_weir_api MODE → sets API_URL (and a worker in buffered mode)
start_weir_api() {
    local port; port=$(free_port)
    local stream="weir-bench:events:$port"
    local ingest=(--ingest-mode "$1" --redis-url "$REDIS_URL" --ingest-stream "$stream")
    RUST_LOG=warn "$WEIR" api --listen "127.0.0.1:$port" --database-url "$DB" "${ingest[@]}" >"$WORK/api-$port.log" 2>&1 &
    PIDS+=($!)
    if [ "$1" = buffered ]; then
        RUST_LOG=warn "$WEIR" worker --database-url "$DB" "${ingest[@]}" >"$WORK/worker-$port.log" 2>&1 &
        PIDS+=($!)
    fi
    API_URL="http://127.0.0.1:$port"
    wait_http "$API_URL/health"
}
stop_weir() {
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

declare -A EPS VIS P99 APP ST
for mode in direct buffered; do
    for shape in one batch; do
        start_weir_api "$mode"
        if [ "$shape" = one ]; then lua=$ONE_LUA; c=64; per=1; else lua=$BATCH_LUA; c=8; per=500; fi
        app0=$(cpu_ticks "${PIDS[@]}"); st0=$(cpu_ticks "$PG" "$REDIS")
        read -r eps acked p99 < <(load "$API_URL/write" "$lua" "$c" "$per")
        EPS[$mode-$shape]=$eps
        P99[$mode-$shape]=$p99
        VIS[$mode-$shape]=$(visible_after "$DB" "$acked")
        APP[$mode-$shape]=$(us_per $(( $(cpu_ticks "${PIDS[@]}") - app0 )) "$acked")
        ST[$mode-$shape]=$(us_per $(( $(cpu_ticks "$PG" "$REDIS") - st0 )) "$acked")
        stop_weir
        truncate_events "$DB"
    done
done
drop_db weir_bench_ingest

echo
echo "event ingest into PostgreSQL, wrk -t2, $DURATION per run (events/s acknowledged; s until all visible after the load;"
echo "CPU µs per event from the load's start until all are visible: app = the stack's processes, store = PostgreSQL + Redis)"
row() { printf '%-44s %12s %8s %10s %8s %8s\n' "$@"; }
row "" "events/s" "p99 ms" "visible s" "app µs" "store µs"
row "raw: one COPY of 100,000 into events" "$raw_eps" "-" "-" "-" "-"
row "(reference: COPY into a bare jsonb table)" "$bare_eps" "-" "-" "-" "-"
row "python ($py_workers workers), 1/POST, -c64" "$py_eps" "$py_p99" "$py_vis" "$py_app" "$py_st"
for mode in direct buffered; do
    row "weir $mode, 1 event/POST, -c64" "${EPS[$mode-one]}" "${P99[$mode-one]}" "${VIS[$mode-one]}" "${APP[$mode-one]}" "${ST[$mode-one]}"
    row "weir $mode, NDJSON 500/POST, -c8" "${EPS[$mode-batch]}" "${P99[$mode-batch]}" "${VIS[$mode-batch]}" "${APP[$mode-batch]}" "${ST[$mode-batch]}"
done
echo
for mode in direct buffered; do
    echo "weir $mode: 1/POST $(ratio "${EPS[$mode-one]}" "$py_eps")x the Python stack (floor 5x, goal 10x);" \
        "NDJSON 500 $(python3 -c "print(round(100*${EPS[$mode-batch]}/$raw_eps))")% of raw COPY (floor 35%, goal 50%)"
done
