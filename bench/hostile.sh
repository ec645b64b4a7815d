#!/usr/bin/env bash
# Memory under hostile clients (issue #15): `weir up` with default flags, and
# against it, one behaviour at a time from many connections — idle
# connections, slowloris heads, pipelined requests whose large answers are
# never read, a huge declared body sent slowly, oversized heads, HTTP/2
# streams whose answers are never read, rapid resets, control-frame and
# CONTINUATION floods — with the peak RSS of the weir process sampled while
# each runs. Then a `weir lb` terminating TLS in front of it (default flags
# but the certificate), against half-done and idle TLS handshakes.
# Usage: bench/hostile.sh [connections, default 2000] [seconds each, default 10]
source "$(dirname "$0")/lib.sh"
CONNS=${1:-2000}
SECONDS_EACH=${2:-10}
build_weir
ulimit -n "$(ulimit -Hn)"
start_weir_up sqlite
port=${UP_URL##*:}
# Large answers to leave unread: 500 tasks of 4 KB inputs, listed at once.
python3 - "$UP_URL" <<'PY'
import json, sys, urllib.request
for i in range(500):
    body = json.dumps({"type": "md5", "input": {"string": f"{i:04}" + "x" * 4096}}).encode()
    urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/tasks", body, {"Content-Type": "application/json"}))
PY
big=$(curl -s -o /dev/null -w '%{size_download}' "$UP_URL/tasks?limit=500")
H1="idle slowloris pipeline_unread slow_body big_heads"
H2="h2_streams_unread h2_rapid_reset h2_control_flood h2_continuation_flood"
out=$(python3 "$ROOT/bench/hostile_clients.py" 127.0.0.1 "$port" "$UP_PID" "$CONNS" "$SECONDS_EACH" $H1 $H2)
after=$(curl -s -o /dev/null -w '%{http_code}' "$UP_URL/health")

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
TLS_PORT=$(free_port)
RUST_LOG=warn "$WEIR" lb --listen "127.0.0.1:$(free_port)" --admin-token bench \
    --tls-listen "127.0.0.1:$TLS_PORT" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" \
    --backends "$UP_URL" >"$WORK/lb.log" 2>&1 & PIDS+=($!)
LB_PID=$!
for _ in $(seq 1 100); do curl -ksf "https://127.0.0.1:$TLS_PORT/health" >/dev/null && break; sleep 0.1; done
tls_out=$(python3 "$ROOT/bench/hostile_clients.py" 127.0.0.1 "$TLS_PORT" "$LB_PID" "$CONNS" "$SECONDS_EACH" tls_half_handshake tls_idle)
tls_after=$(curl -ks -o /dev/null -w '%{http_code}' "https://127.0.0.1:$TLS_PORT/health")

python3 - "$out" "$after" "$tls_out" "$tls_after" "$big" <<'PY'
import json, sys
def table(r, title):
    print(f"{title}, {r['connections']} connections per behaviour, {r['seconds']:.0f} s each")
    print(f"baseline RSS {r['baseline_rss_kb']/1024:.1f} MB")
    print(f"{'behaviour':<22} {'peak RSS MB':>12} {'after MB':>9}  how it was answered")
    for name, b in r.items():
        if not isinstance(b, dict):
            continue
        rest = {k: v for k, v in b.items() if k not in ("peak_rss_kb", "after_rss_kb")}
        print(f"{name:<22} {b['peak_rss_kb']/1024:>12.1f} {b['after_rss_kb']/1024:>9.1f}  {rest}")
print(f"large answer left unread: GET /tasks?limit=500, {int(sys.argv[5])/1024:.0f} KB")
table(json.loads(sys.argv[1]), "weir up (default flags)")
print(f"GET /health afterwards: {sys.argv[2]}")
table(json.loads(sys.argv[3]), "weir lb terminating TLS (default flags)")
print(f"GET /health over TLS afterwards: {sys.argv[4]}")
PY
