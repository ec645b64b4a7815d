"""A weir worker in Python, standard library only.

Run your functions as weir task types (``handler = "external"``): the worker
long-polls ``POST /workers/{id}/claim``, runs each task's function in a
thread, keeps its lease alive with heartbeats, and reports ``complete`` or
``fail``. weir's leases and fencing apply: if a lease lapses (the process
stalled) and the task is handed to another worker, this worker's late
report is refused (409 ``lease_lost``) and dropped.

    from weir_worker import Worker, Permanent, Retry

    worker = Worker("http://127.0.0.1:8080", token=os.environ["WEIR_WORKER_TOKEN"])

    @worker.task("thumbnail")
    def thumbnail(input, task):
        if "path" not in input:
            raise Permanent("input.path is required")   # dead at once
        task.progress(50)
        return {"thumb": input["path"] + ".thumb.png"}  # the task's result

    worker.run()   # until SIGTERM/SIGINT, then finishes what runs

Any other exception is a retryable failure (retried with backoff until the
task's max_attempts); ``Retry("busy", after=30)`` asks for a retry no
sooner than 30 s.

With the ``opentelemetry`` API installed, each handler runs in a span that
continues the trace weir sent with its task; ``task.trace_headers()`` gives
that trace context as headers for a handler's own calls downstream.
"""

import contextlib
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import traceback
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

try:  # optional: without the OpenTelemetry API, handlers run in no span
    from opentelemetry import trace as _otel
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _propagator = TraceContextTextMapPropagator()
except ImportError:
    _otel = None

__all__ = ["Worker", "Task", "Retry", "Permanent", "LeaseLost", "WeirError"]


class Retry(Exception):
    """A failure worth retrying; ``after`` (seconds) delays the next attempt."""

    def __init__(self, message, after=None):
        super().__init__(message)
        self.after = after


class Permanent(Exception):
    """A failure no retry can mend: the task is dead at once."""


class WeirError(Exception):
    """weir answered with an error: ``status``, ``code`` and ``message``."""

    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class LeaseLost(WeirError):
    """This attempt no longer holds its task; stop working on it."""


class Task:
    """One claimed attempt: ``id``, ``type``, ``input``, ``attempt``.

    ``traceparent`` and ``tracestate`` are the W3C trace context weir sent
    with it (the span of its enqueue or attempt), None when it sent none.
    """

    def __init__(self, worker, raw):
        self._worker = worker
        self.id = raw["id"]
        self.type = raw["type"]
        self.input = raw["input"]
        self.attempt = raw["attempt"]
        self.max_attempts = raw["max_attempts"]
        self.lease_token = raw["lease_token"]
        self.timeout = raw["timeout_ms"] / 1000.0
        self.workflow_id = raw.get("workflow_id")
        self.step_id = raw.get("step_id")
        self.traceparent = raw.get("traceparent") or None
        self.tracestate = raw.get("tracestate") or None
        self._progress = None
        self.lost = threading.Event()

    def progress(self, percent):
        """Reports how far the task is (0-100), sent with the next heartbeat."""
        self._progress = max(0, min(100, int(percent)))

    def trace_headers(self):
        """The task's trace context as HTTP headers: ``traceparent``, and
        ``tracestate`` when weir sent one; empty when it sent none."""
        if self.traceparent is None:
            return {}  # a tracestate alone continues no trace
        headers = {"traceparent": self.traceparent}
        if self.tracestate is not None:
            headers["tracestate"] = self.tracestate
        return headers

    def add_steps(self, canvas):
        """Adds steps (built with ``weir_client``'s ``step``/``chain``/
        ``group``/``chord``, or a list of steps) to this step's workflow:
        the steps after this one wait for them too. Returns each added
        step's task. Raises ``LeaseLost`` once the attempt lost its task."""
        from weir_client import steps_body  # next to this file

        if self.workflow_id is None:
            raise WeirError(409, "not_a_step", f"task {self.id} is no workflow step")
        return self._worker._post(f"/workflows/{self.workflow_id}/steps",
                                  steps_body(self.id, self.lease_token, canvas),
                                  30)


def _span(task):
    """The span a handler runs in: a child of the task's trace context (a
    root when weir sent none), recording a failure's exception and error
    status as the exception passes on to be reported; none without the
    OpenTelemetry API."""
    if _otel is None:
        return contextlib.nullcontext()
    parent = _propagator.extract(task.trace_headers())
    return _otel.get_tracer("weir_worker").start_as_current_span(
        f"task {task.type}", context=parent, kind=_otel.SpanKind.CONSUMER,
        attributes={"weir.task.id": task.id, "weir.task.type": task.type,
                    "weir.task.attempt": task.attempt},
        record_exception=True, set_status_on_exception=True)


class Worker:
    def __init__(self, base_url, token, worker_id=None, concurrency=4, wait=5.0,
                 lease=30.0, queues=None):
        self.base_url = base_url.rstrip("/")
        self._url = urllib.parse.urlsplit(self.base_url)
        if self._url.scheme not in ("http", "https"):
            raise ValueError(f"base_url must be http:// or https://, not {base_url!r}")
        self._local = threading.local()  # one keep-alive connection per thread
        self.token = token
        self.worker_id = worker_id or f"py-{socket.gethostname()}-{os.getpid()}"
        self.concurrency = concurrency
        self.wait = wait
        self.lease = lease
        self.queues = queues
        self.handlers = {}
        self.processed = 0
        self.failed = 0
        self.started_at = datetime.now(timezone.utc).isoformat()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running = {}

    def task(self, type_name):
        """Registers the decorated ``fn(input, task)`` as the handler of a type."""

        def register(fn):
            self.handlers[type_name] = fn
            return fn

        return register

    def stop(self):
        """Stops claiming; running tasks finish."""
        self._stop.set()

    # -- HTTP ---------------------------------------------------------------

    def _connection(self, timeout):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = (http.client.HTTPSConnection if self._url.scheme == "https"
                   else http.client.HTTPConnection)
            conn = cls(self._url.hostname, self._url.port, timeout=timeout)
            self._local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _post(self, path, body, timeout):
        data = json.dumps(body).encode()
        headers = {"content-type": "application/json",
                   "authorization": f"Bearer {self.token}"}
        for fresh in (False, True):
            conn = self._connection(timeout)
            reused = conn.sock is not None
            try:
                conn.request("POST", self._url.path + path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                # A keep-alive connection the server closed meanwhile: once
                # more on a fresh one (reports are fenced, so a repeat is safe).
                if fresh or not reused:
                    raise
        if resp.status >= 400:
            try:
                err = json.loads(raw)["error"]
            except Exception:  # not weir's JSON error
                err = {"code": "http_error", "message": raw[:200].decode(errors="replace")}
            cls = LeaseLost if err.get("code") == "lease_lost" else WeirError
            raise cls(resp.status, err.get("code"), err.get("message"))
        return json.loads(raw)

    def claim(self, max_tasks):
        body = {"types": sorted(self.handlers), "max": max_tasks, "wait": self.wait,
                "lease": self.lease, "processed": self.processed, "failed": self.failed,
                "started_at": self.started_at}
        if self.queues:
            body["queues"] = self.queues
        answer = self._post(f"/workers/{self.worker_id}/claim", body, self.wait + 30)
        return [Task(self, t) for t in answer["tasks"]]

    # -- running ------------------------------------------------------------

    def _heartbeats(self):
        every = max(self.lease / 3.0, 0.2)
        while not (self._stop.is_set() and not self._running):
            time.sleep(every)
            with self._lock:
                tasks = list(self._running.values())
            for task in tasks:
                body = {"lease_token": task.lease_token, "lease": self.lease}
                if task._progress is not None:
                    body["progress"] = task._progress
                try:
                    self._post(f"/tasks/{task.id}/heartbeat", body, 10)
                except LeaseLost:
                    task.lost.set()
                except Exception as e:  # weir unreachable: try again next beat
                    print(f"weir_worker: heartbeat for {task.id} failed: {e}", file=sys.stderr)

    def _run_one(self, task):
        fn = self.handlers[task.type]
        try:
            with _span(task):
                result = fn(task.input, task)
        except Permanent as e:
            self._report(task, "fail", {"error": str(e), "retry": False})
        except Retry as e:
            body = {"error": str(e), "retry": True}
            if e.after is not None:
                body["retry_after"] = float(e.after)
            self._report(task, "fail", body)
        except Exception as e:
            tail = "".join(traceback.format_exception_only(type(e), e)).strip()
            self._report(task, "fail", {"error": tail, "retry": True})
        else:
            self._report(task, "complete", {"result": result})
        finally:
            with self._lock:
                self._running.pop(task.id, None)

    def _report(self, task, what, body):
        body["lease_token"] = task.lease_token
        for pause in (0.2, 1, 3, None):
            try:
                self._post(f"/tasks/{task.id}/{what}", body, 30)
                if what == "complete":
                    self.processed += 1
                else:
                    self.failed += 1
                return
            except LeaseLost:
                print(f"weir_worker: {task.id}: lease lost, report dropped", file=sys.stderr)
                return
            except (WeirError, OSError) as e:
                if pause is None or (isinstance(e, WeirError) and e.status < 500):
                    # The lease lapses and weir runs the task again: never lost.
                    print(f"weir_worker: {task.id}: {what} failed: {e}", file=sys.stderr)
                    return
                time.sleep(pause)

    def run(self, max_tasks=None, handle_signals=True):
        """Claims and runs tasks until stopped (SIGTERM/SIGINT) or, with
        ``max_tasks``, until that many have been run; then drains."""
        if not self.handlers:
            raise ValueError("register at least one handler with @worker.task(name)")
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop())
        beats = threading.Thread(target=self._heartbeats, daemon=True)
        beats.start()
        taken = 0
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            while not self._stop.is_set():
                with self._lock:
                    room = self.concurrency - len(self._running)
                if max_tasks is not None:
                    room = min(room, max_tasks - taken)
                    if room <= 0 and not self._running:
                        break
                if room <= 0:
                    time.sleep(0.01)
                    continue
                try:
                    tasks = self.claim(room)
                except (WeirError, OSError) as e:
                    print(f"weir_worker: claim failed: {e}", file=sys.stderr)
                    self._stop.wait(1.0)
                    continue
                for task in tasks:
                    taken += 1
                    with self._lock:
                        self._running[task.id] = task
                    pool.submit(self._run_one, task)
        self._stop.set()
        return self.processed, self.failed
