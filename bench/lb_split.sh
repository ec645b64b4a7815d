#!/usr/bin/env bash
# The proxies in front of an application server that writes each answer's
# head and body apart, as uvicorn does (bench/peers/split_asgi.py, one
# uvicorn process): nginx, HAProxy and weir lb (2 workers / threads each),
# each driven by wrk -c16 while perf counts its system calls (syscall
# tracepoints). Prints each proxy's requests/s and its system calls per
# request: writes (to the client and the upstream), reads and epoll waits.
# Usage: bench/lb_split.sh [duration per proxy, default 5s]
source "$(dirname "$0")/lib.sh"
DURATION=${1:-5s}
bash "$ROOT/bench/setup.sh" >&2
build_weir
command -v perf >/dev/null || { echo "bench/lb_split: needs perf (Debian: linux-perf)" >&2; exit 1; }
VENV="$ROOT/target/bench-venv"

UP=$(free_port)
(cd "$ROOT/bench/peers" && exec "$VENV/bin/uvicorn" split_asgi:app --port "$UP" \
    --log-level warning --no-access-log) >"$WORK/uvicorn.log" 2>&1 & PIDS+=($!)
NGINX=$(free_port); start_nginx_proxy "$NGINX" "$UP"
HAPROXY=$(free_port); start_haproxy_proxy "$HAPROXY" "$UP"
WEIR_PORT=$(free_port)
RUST_LOG=warn "$WEIR" lb --listen "127.0.0.1:$WEIR_PORT" --backends "http://127.0.0.1:$UP" \
    >"$WORK/weir.log" 2>&1 & WEIR_PID=$!; PIDS+=($WEIR_PID)
for port in $UP $NGINX $HAPROXY $WEIR_PORT; do wait_http "http://127.0.0.1:$port/"; done

# The pids perf watches: a process and its children (nginx's workers).
pid_list() { echo "$1$(pgrep -P "$1" | sed 's/^/,/' | tr -d '\n')"; }

printf "%-8s %10s %10s %10s %10s %10s\n" proxy "req/s" "syscalls" writes reads "epoll" >&1
for name in nginx haproxy weir; do
    case $name in
        nginx) port=$NGINX; pid=$(pgrep -o -f "nginx -c $WORK/nginx-$NGINX.conf") ;;
        haproxy) port=$HAPROXY; pid=$(pgrep -o -f "haproxy-$HAPROXY.cfg") ;;
        weir) port=$WEIR_PORT; pid=$WEIR_PID ;;
    esac
    run_wrk "http://127.0.0.1:$port/" 1s 16 >/dev/null   # warm-up
    # perf counts for exactly as long as wrk runs.
    out=$(perf stat -x, -o "$WORK/$name.csv" -e 'syscalls:sys_enter_*' -p "$(pid_list "$pid")" \
        -- wrk -t2 -c16 -d"$DURATION" "http://127.0.0.1:$port/")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    total=$(awk '/requests in/ {print $1}' <<<"$out")
    python3 - "$WORK/$name.csv" "$total" "$name" "$rps" <<'PY'
import sys
path, total, name, rps = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
calls = {}
for line in open(path):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].isdigit():
        calls[f[2].removeprefix("syscalls:sys_enter_")] = int(f[0])
def per(names): return sum(calls.get(n, 0) for n in names) / max(total, 1)
writes = per(["write", "writev", "sendto", "sendmsg", "sendfile"])
reads = per(["read", "readv", "recvfrom", "recvmsg"])
epoll = per(["epoll_wait", "epoll_pwait", "epoll_pwait2"])
print(f"{name:<8} {rps:>10.0f} {sum(calls.values()) / max(total, 1):>10.2f} {writes:>10.2f} {reads:>10.2f} {epoll:>10.2f}")
PY
done
