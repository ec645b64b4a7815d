#!/usr/bin/env bash
# Memory under hostile clients (issue #15): `weir up` with default flags, and
# against it, one behaviour at a time from many connections — idle
# connections, slowloris heads, pipelined requests whose answers are never
# read, a huge declared body sent slowly, oversized heads — with the peak RSS
# of the weir process sampled while each runs.
# Usage: bench/hostile.sh [connections, default 2000] [seconds each, default 10]
source "$(dirname "$0")/lib.sh"
CONNS=${1:-2000}
SECONDS_EACH=${2:-10}
build_weir
ulimit -n "$(ulimit -Hn)"
start_weir_up sqlite
port=${UP_URL##*:}
out=$(python3 "$ROOT/bench/hostile_clients.py" 127.0.0.1 "$port" "$UP_PID" "$CONNS" "$SECONDS_EACH")
# The system still answers afterwards.
after=$(curl -s -o /dev/null -w '%{http_code}' "$UP_URL/health")
python3 - "$out" "$after" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
print(f"weir up (default flags), {r['connections']} connections per behaviour, {r['seconds']:.0f} s each")
print(f"baseline RSS {r['baseline_rss_kb']/1024:.1f} MB")
print(f"{'behaviour':<18} {'peak RSS MB':>12} {'after MB':>9}  how it was answered")
for name in ("idle", "slowloris", "pipeline_unread", "slow_body", "big_heads"):
    b = r[name]
    rest = {k: v for k, v in b.items() if k not in ("peak_rss_kb", "after_rss_kb")}
    print(f"{name:<18} {b['peak_rss_kb']/1024:>12.1f} {b['after_rss_kb']/1024:>9.1f}  {rest}")
print(f"GET /health afterwards: {sys.argv[2]}")
PY
