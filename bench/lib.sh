# Shared helpers for the bench scripts (sourced, not run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# WEIR_BIN runs another build (e.g. the previous commit's) instead of this tree's.
WEIR="${WEIR_BIN:-$ROOT/target/dist/weir}"
PG_ADMIN="${WEIR_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PG_BASE="${PG_ADMIN%/*}"
WORK="$(mktemp -d /tmp/weir-bench.XXXXXX)"
PIDS=()

cleanup() {
    # Processes started inside $(…) (e.g. `upstream`) list themselves in
    # $WORK/pids: a subshell's PIDS never reaches this one.
    local started=("${PIDS[@]}")
    [ -f "$WORK/pids" ] && mapfile -t -O "${#started[@]}" started <"$WORK/pids"
    for pid in "${started[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${started[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

build_weir() { [ -n "${WEIR_BIN:-}" ] || (cd "$ROOT" && cargo build --profile dist -q); }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_http() { # url
    for _ in $(seq 1 200); do
        curl -sk -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    echo "bench: $1 never answered" >&2; return 1
}

fresh_db() { # name → URL of a fresh, empty database
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1
    psql "$PG_ADMIN" -qc "CREATE DATABASE $1" >/dev/null
    echo "$PG_BASE/$1"
}

drop_db() { psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1 || true; }

# Starts `weir up` on $1 (a database URL, or "sqlite") with the remaining args;
# sets UP_PID and UP_URL.
start_weir_up() {
    local db=$1; shift
    local port; port=$(free_port)
    local args=(up --listen "127.0.0.1:$port" --data-dir "$WORK/data-$port" --admin-token bench)
    [ "$db" != sqlite ] && args+=(--database-url "$db")
    RUST_LOG=warn "$WEIR" "${args[@]}" "$@" >"$WORK/up-$port.log" 2>&1 &
    UP_PID=$!
    PIDS+=("$UP_PID")
    UP_URL="http://127.0.0.1:$port"
    for _ in $(seq 1 200); do grep -q ready "$WORK/up-$port.log" && return 0; sleep 0.05; done
    cat "$WORK/up-$port.log" >&2; return 1
}

# Starts one nginx (1 worker; OK_WORKERS) answering `200 ok` on each given
# port, and waits for the first to answer. OK_KEEPALIVE_REQUESTS: requests
# per client connection before nginx closes it (nginx's default is 1000).
start_ok_nginx() { # port...
    local name="ok-$1" listens=""
    for port in "$@"; do listens+="listen 127.0.0.1:$port; "; done
    cat >"$WORK/$name.conf" <<CONF
worker_processes ${OK_WORKERS:-1};
pid $WORK/$name.pid;
error_log $WORK/$name-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests ${OK_KEEPALIVE_REQUESTS:-1000000};
    server { $listens location / { return 200 "ok\n"; } }
}
CONF
    nginx -c "$WORK/$name.conf" -g 'daemon off;' & PIDS+=($!)
    wait_http "http://127.0.0.1:$1/"
}

# Starts `weir bench upstream` with the given args (e.g. --delay-ms 200
# --error-percent 5, --capacity 4); prints its URL.
upstream() {
    local log="$WORK/upstream-$RANDOM.log"
    "$WEIR" bench upstream "$@" >"$log" 2>&1 &
    PIDS+=($!)
    echo "$!" >>"$WORK/pids"
    for _ in $(seq 1 100); do grep -q listening "$log" && break; sleep 0.05; done
    grep -o 'http://[0-9.:]*' "$log"
}

stop_pid() { kill -TERM "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# Runs wrk; prints "requests_per_sec p50_ms p99_ms total_requests non2xx".
run_wrk() { # url duration connections
    local out; out=$(wrk -t2 -c"$3" -d"$2" --latency "$1")
    local rps p50 p99 total non2xx
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    total=$(awk '/requests in/ {print $1}' <<<"$out")
    non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
    echo "$rps $(to_ms "$p50") $(to_ms "$p99") $total ${non2xx:-0}"
}

to_ms() { # wrk latency like 1.23ms / 850.00us / 1.02s → ms
    python3 -c 'import sys,re
v=sys.argv[1]; m=re.match(r"([\d.]+)(us|ms|s)",v)
n=float(m.group(1)); u=m.group(2)
print(round(n/1000 if u=="us" else n*1000 if u=="s" else n,2))' "$1"
}

# The median of each column over rounds given as ";"-separated rows of
# "rps p50 p99 total non2xx".
median() {
    tr ';' '\n' <<<"$1" | grep . | python3 -c '
import sys, statistics
rows = [line.split() for line in sys.stdin]
print(" ".join(str(statistics.median_low(float(r[i]) for r in rows)) for i in range(5)))'
}

# Celery 5 with its Redis transport, and requests (the peers' HTTP delivery
# task), in the bench venv.
ensure_celery() {
    local venv="$ROOT/target/bench-venv"
    [ -x "$venv/bin/celery" ] || "$venv/bin/pip" install -q "celery[redis]"
    "$venv/bin/python" -c "import requests" 2>/dev/null || "$venv/bin/pip" install -q requests
}

ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.2f}')" "$1" "$2"; }

# A self-signed ECDSA P-256 certificate for localhost: $WORK/cert.pem,
# $WORK/key.pem, and both in $WORK/both.pem (HAProxy's form).
make_cert() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
    cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/both.pem"
}

# nginx as the load balancer (2 workers, keep-alive to the upstreams) on
# port $1 in front of the upstream ports after it; sets PROXY_PID. With
# TLS_PORT set, also HTTPS there (TLS 1.3, make_cert's certificate).
start_nginx_proxy() { # port upstream_port...
    local port=$1 servers="" u tls=""; shift
    for u in "$@"; do servers+="server 127.0.0.1:$u; "; done
    [ -z "${TLS_PORT:-}" ] || tls="listen 127.0.0.1:$TLS_PORT ssl; ssl_protocols TLSv1.3;
             ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem;"
    cat >"$WORK/nginx-$port.conf" <<CONF
worker_processes 2;
pid $WORK/nginx-$port.pid;
error_log $WORK/nginx-$port-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    ssl_session_cache shared:SSL:10m;
    upstream up { $servers keepalive 128; }
    server { listen 127.0.0.1:$port; $tls
             location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
    nginx -c "$WORK/nginx-$port.conf" -g 'daemon off;' & PROXY_PID=$!; PIDS+=($PROXY_PID)
}

# HAProxy as the load balancer (2 threads, connections to the upstreams
# reused) on port $1 in front of the upstream ports after it; sets PROXY_PID.
# With TLS_PORT set, also HTTPS there (TLS 1.3, make_cert's certificate).
start_haproxy_proxy() { # port upstream_port...
    local port=$1 servers="" u i=0 tls=""; shift
    for u in "$@"; do i=$((i + 1)); servers+="    server u$i 127.0.0.1:$u"$'\n'; done
    [ -z "${TLS_PORT:-}" ] || tls="    bind 127.0.0.1:$TLS_PORT ssl crt $WORK/both.pem"
    cat >"$WORK/haproxy-$port.cfg" <<CONF
global
    nbthread 2
    maxconn 8000
    ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:$port
$tls
    default_backend be
backend be
    balance roundrobin
$servers
CONF
    haproxy -f "$WORK/haproxy-$port.cfg" -db >"$WORK/haproxy-$port.log" 2>&1 & PROXY_PID=$!; PIDS+=($PROXY_PID)
}

# CPU time (user + system, in clock ticks) of the given processes and
# their children processes, threads included, and of the children they
# reaped (PostgreSQL's ended backends, Celery's replaced pool processes).
cpu_ticks() { # pids...
    local total=0 pid kid
    for pid in "$@"; do
        total=$((total + $(awk '{print $16 + $17}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
        for kid in $pid $(pgrep -P "$pid" || true); do
            total=$((total + $(awk '{print $14 + $15}' "/proc/$kid/stat" 2>/dev/null || echo 0)))
        done
    done
    echo $total
}

# µs of CPU per unit of work: clock ticks spent over a count of work done.
us_per() { # ticks count
    python3 -c "import os,sys; print(round(int(sys.argv[1]) * 1e6 / os.sysconf('SC_CLK_TCK') / max(1, int(sys.argv[2]))))" "$1" "$2"
}

# The benchmarks' PostgreSQL server (its postmaster) and Redis server.
pg_pid() { pgrep -o -x postgres; }
redis_pid() { pgrep -o -x redis-server; }

# Runs a command with its stdout into a file; prints the CPU it took
# (children included) in clock ticks.
run_ticks() { # out_file command...
    python3 -c '
import os, resource, subprocess, sys
with open(sys.argv[1], "w") as out:
    subprocess.run(sys.argv[2:], stdout=out, check=True)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(round((r.ru_utime + r.ru_stime) * os.sysconf("SC_CLK_TCK")))' "$@"
}

rss_kb() { # pids...
    local total=0 pid
    for pid in "$@"; do total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0))); done
    echo $total
}
# Opens `count` connections and holds them: tls|plain ones that send nothing,
# or `used` plain ones that make one `GET /health` first and stay open.
hold_idle() { # port tls|plain|used count → prints how many opened once all are, holds until killed
    python3 - "$1" "$3" "$2" <<'PY'
import asyncio, ssl, sys
port, n, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
async def one(sem, held):
    async with sem:
        if kind == "tls":
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        else:
            r, w = await asyncio.open_connection("127.0.0.1", port)
        if kind == "used":
            w.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            await w.drain()
            await r.readuntil(b"\r\n\r\n")
        held.append(w)
async def main():
    held, sem = [], asyncio.Semaphore(200)
    await asyncio.gather(*(one(sem, held) for _ in range(n)))
    print(len(held), flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
PY
}

# A wrk script that POSTs the file's content with the given content type.
post_lua() { # body file, content type → a wrk script path
    local lua="$WORK/post-$(basename "$1").lua"
    python3 - "$1" "$2" >"$lua" <<'PY'
import sys
body = open(sys.argv[1]).read()
print('wrk.method = "POST"')
print('wrk.headers["Content-Type"] = "%s"' % sys.argv[2])
print('wrk.body = %s' % ("[==[" + body + "]==]"))
PY
    echo "$lua"
}
