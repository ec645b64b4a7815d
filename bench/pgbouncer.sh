#!/usr/bin/env bash
# What a transaction pooler costs: the burn-down (insert N no-op tasks, then
# work them all, 2 workers x 256 slots in one process) straight to
# PostgreSQL, and through pgbouncer in transaction pooling mode with
# --transaction-pooler (every statement in a transaction of its own,
# unnamed statements), interleaved rounds, median of each.
# Usage: bench/pgbouncer.sh [tasks, default 100000] [rounds, default 3]
source "$(dirname "$0")/lib.sh"
TASKS=${1:-100000}
ROUNDS=${2:-3}
bash "$ROOT/scripts/ensure-services.sh" >&2
build_weir
PG_PORT=$(python3 -c "import urllib.parse,sys; print(urllib.parse.urlparse(sys.argv[1]).port or 5432)" "$PG_ADMIN")
PORT=$(free_port)
chmod 755 "$WORK"
cat >"$WORK/pgbouncer.ini" <<INI
[databases]
* = host=127.0.0.1 port=$PG_PORT user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PORT
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = 20
max_client_conn = 2000
ignore_startup_parameters = extra_float_digits
INI
if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- pgbouncer "$WORK/pgbouncer.ini" >"$WORK/pgbouncer.log" 2>&1 &
else
    pgbouncer "$WORK/pgbouncer.ini" >"$WORK/pgbouncer.log" 2>&1 &
fi
PIDS+=($!)
until pg_isready -q -h 127.0.0.1 -p "$PORT" -U postgres; do sleep 0.1; done
field() { python3 -c "import json,sys; print(round(json.loads(sys.argv[1])[sys.argv[2]]))" "$1" "$2"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

run() { # direct|pooled → JSON report
    local db; db=$(fresh_db weir_bench_pgb)
    RUST_LOG=error "$WEIR" migrate --database-url "$db" >/dev/null
    local url=$db extra=()
    if [ "$1" = pooled ]; then
        url="postgres://postgres@127.0.0.1:$PORT/weir_bench_pgb"
        extra=(--transaction-pooler)
    fi
    RUST_LOG=error "$WEIR" bench burndown --database-url "$url" "${extra[@]}" \
        --tasks "$TASKS" --workers 2 --concurrency 256 --json
    drop_db weir_bench_pgb
}

D_IN=(); D_W=(); P_IN=(); P_W=()
for r in $(seq 1 "$ROUNDS"); do
    d=$(run direct); p=$(run pooled)
    D_IN+=("$(field "$d" insert_per_sec)"); D_W+=("$(field "$d" work_per_sec)")
    P_IN+=("$(field "$p" insert_per_sec)"); P_W+=("$(field "$p" work_per_sec)")
    echo "round $r: direct $(field "$d" insert_per_sec)/$(field "$d" work_per_sec), pgbouncer $(field "$p" insert_per_sec)/$(field "$p" work_per_sec) (inserted/worked per s)" >&2
done
echo
echo "burn-down, $TASKS no-op tasks, median of $ROUNDS interleaved rounds"
printf "%-44s %12s %12s\n" "" "inserted/s" "worked/s"
printf "%-44s %12s %12s\n" "straight to PostgreSQL" "$(median "${D_IN[@]}")" "$(median "${D_W[@]}")"
printf "%-44s %12s %12s\n" "through pgbouncer (transaction mode)" "$(median "${P_IN[@]}")" "$(median "${P_W[@]}")"
echo "pgbouncer / direct, worked: $(ratio "$(median "${P_W[@]}")" "$(median "${D_W[@]}")")"
