#!/usr/bin/env bash
# Fast by default (issue #18, item 4): `weir up` with no tuning flags against
# the same with --worker-concurrency 32, tiny md5 tasks submitted through
# the lb by `weir bench tasks`, interleaved rounds, medians. Goal: the
# defaults within 80% of the tuned rate.
# Usage: bench/defaults.sh [tasks, default 6000] [rounds, default 3] [store: sqlite|postgres]
source "$(dirname "$0")/lib.sh"
TASKS=${1:-6000}
ROUNDS=${2:-3}
STORE=${3:-sqlite}
bash "$ROOT/scripts/ensure-services.sh" >&2
build_weir

rate() { # extra flags for `weir up`...
    local db=sqlite
    [ "$STORE" = postgres ] && db=$(fresh_db weir_bench_defaults)
    start_weir_up "$db" "$@"
    "$WEIR" bench tasks --target "$UP_URL" --tasks "$TASKS" --concurrency 64 --json |
        python3 -c 'import json,sys; print(round(json.load(sys.stdin)["tasks_per_sec"]), end=" ")'
    # The workers' claims: how many, and the tasks each brought on average.
    curl -s "$UP_URL/metrics" | awk '
        /^worker_claims_total/ {claims += $NF}
        /^worker_claimed_tasks_total/ {tasks += $NF}
        END {printf "%d %.1f\n", claims, claims ? tasks / claims : 0}'
    stop_pid "$UP_PID"; PIDS=()
    [ "$STORE" = postgres ] && drop_db weir_bench_defaults
    return 0
}

defaults=() tuned=()
for round in $(seq 1 "$ROUNDS"); do
    read -r d_rate d_claims d_batch < <(rate)
    read -r t_rate t_claims t_batch < <(rate --worker-concurrency 32)
    defaults+=("$d_rate") tuned+=("$t_rate")
    echo "round $round: defaults $d_rate tasks/s ($d_claims claims, $d_batch tasks each)," \
        "--worker-concurrency 32 $t_rate tasks/s ($t_claims claims, $t_batch tasks each)" >&2
done
med() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
d=$(med "${defaults[@]}") t=$(med "${tuned[@]}")
echo
echo "weir up ($STORE), $TASKS md5 tasks through the lb, 64 clients; median of $ROUNDS interleaved rounds"
printf "%-40s %10s\n" "defaults (3 workers x 4 slots)" "$d"
printf "%-40s %10s\n" "--worker-concurrency 32" "$t"
echo "defaults / tuned: $(ratio "$d" "$t")  (goal 0.80)"
