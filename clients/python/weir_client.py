"""Submitting tasks and workflows to weir from Python, standard library only.

    from weir_client import Client, chain, chord, group, step

    weir = Client("http://127.0.0.1:8080", api_key=None)
    task = weir.submit("md5", {"string": "hello"}, priority=5)
    print(weir.wait(task["task_id"])["result"])

    # Celery's canvas, as a weir workflow: a chord of three hashes and a
    # callback that receives their results, then a chain of two steps.
    flow = chain(
        chord(group(*(step("md5", {"string": s}) for s in "abc")),
              step("noop", {}, id="report")),
        step("sha256", {"string": "after"}),
    )
    accepted = weir.workflow(flow, name="nightly", idempotency_key="nightly-2026-12-05")
    print(weir.wait_workflow(accepted["workflow_id"])["status"])   # succeeded

A chord's callback gets ``"parents": {"<step id>": <result>}`` in its input.
A running step adds steps to its own workflow with ``add_steps`` (or, in a
``weir_worker`` handler, ``task.add_steps``); the steps after it wait for
them too.
Every error weir answers raises ``WeirError`` with its status, code and
message; a 503 or 507 is retried after its ``Retry-After`` a few times first.
"""

import http.client
import json
import time
import urllib.parse

__all__ = ["Client", "WeirError", "Step", "step", "chain", "group", "chord", "steps_body"]


class WeirError(Exception):
    """weir answered with an error: ``status``, ``code`` and ``message``."""

    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Step:
    """One step of a workflow: a task of ``type`` with ``input`` and options
    (``queue``, ``priority``, ``max_attempts``, ``timeout``,
    ``retry_backoff``, ``concurrency_key``, ``run_at``,
    ``on_parent_failure``)."""

    def __init__(self, type, input, id=None, **options):
        self.type, self.input, self.id, self.options = type, input, id, options
        self.depends_on = []
        self.with_parent_results = options.pop("with_parent_results", False)

    # A step is a canvas of one: it starts and ends with itself.
    def _steps(self):
        return [self]

    def _heads(self):
        return [self]

    def _tails(self):
        return [self]


class _Canvas:
    def __init__(self, steps, heads, tails):
        self.steps_, self.heads_, self.tails_ = steps, heads, tails

    def _steps(self):
        return self.steps_

    def _heads(self):
        return self.heads_

    def _tails(self):
        return self.tails_


def step(type, input, id=None, **options):
    """A step: ``step("md5", {"string": "x"}, id="hash", priority=5)``."""
    return Step(type, input, id=id, **options)


def chain(*parts):
    """Each part runs after the one before has ended (all of it, for a group)."""
    if not parts:
        raise ValueError("a chain needs at least one part")
    for before, after in zip(parts, parts[1:]):
        for head in after._heads():
            head.depends_on.extend(t for t in before._tails() if t not in head.depends_on)
    steps = [s for p in parts for s in p._steps()]
    return _Canvas(steps, parts[0]._heads(), parts[-1]._tails())


def group(*parts):
    """The parts run side by side."""
    if not parts:
        raise ValueError("a group needs at least one part")
    steps = [s for p in parts for s in p._steps()]
    heads = [h for p in parts for h in p._heads()]
    tails = [t for p in parts for t in p._tails()]
    return _Canvas(steps, heads, tails)


def chord(header, callback):
    """``callback`` runs once every part of ``header`` has ended, with their
    results (``"parents"`` in its input)."""
    for head in callback._heads():
        head.with_parent_results = True
    return chain(header, callback)


def steps_body(task_id, lease_token, canvas):
    """The body of ``POST /workflows/{id}/steps``: ``canvas``'s steps added
    by running step ``task_id``. Unnamed steps are named after the adder, so
    a retried attempt adding the same canvas names them the same (and weir
    stores them once)."""
    body = _workflow_body(canvas, id_prefix=f"{task_id}:")
    return {"task_id": task_id, "lease_token": lease_token, "steps": body["steps"]}


def _workflow_body(canvas, name=None, idempotency_key=None, id_prefix=""):
    if isinstance(canvas, (list, tuple)):
        canvas = group(*canvas)
    steps = canvas._steps()
    taken = {s.id for s in steps if s.id}
    counter = 0
    for s in steps:
        while not s.id:
            counter += 1
            candidate = f"{id_prefix}{s.type}-{counter}"
            if candidate not in taken:
                s.id = candidate
                taken.add(candidate)
    body = {"steps": []}
    for s in steps:
        entry = {"id": s.id, "type": s.type, "input": s.input}
        if s.depends_on:
            entry["depends_on"] = [p.id for p in s.depends_on]
        if s.with_parent_results:
            entry["with_parent_results"] = True
        entry.update(s.options)
        body["steps"].append(entry)
    if name is not None:
        body["name"] = name
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    return body


class Client:
    """A connection to a weir cluster (the lb, or any API node)."""

    def __init__(self, base_url, api_key=None, timeout=30.0, retries=5):
        self.base_url = base_url.rstrip("/")
        self._url = urllib.parse.urlsplit(self.base_url)
        if self._url.scheme not in ("http", "https"):
            raise ValueError(f"base_url must be http:// or https://, not {base_url!r}")
        self.api_key, self.timeout, self.retries = api_key, timeout, retries
        self._conn = None

    def _request(self, method, path, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        sent = {"content-type": "application/json"} if data is not None else {}
        if self.api_key:
            sent["authorization"] = f"Bearer {self.api_key}"
        sent.update(headers or {})
        for attempt in range(self.retries + 1):
            try:
                if self._conn is None:
                    cls = (http.client.HTTPSConnection if self._url.scheme == "https"
                           else http.client.HTTPConnection)
                    self._conn = cls(self._url.hostname, self._url.port, timeout=self.timeout)
                self._conn.request(method, path, body=data, headers=sent)
                resp = self._conn.getresponse()
                raw = resp.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                # A kept-alive connection the server closed: once more, fresh.
                self._conn = None
                if attempt == self.retries:
                    raise
                continue
            answer = json.loads(raw) if raw else {}
            if resp.status in (503, 507) and attempt < self.retries:
                time.sleep(float(resp.getheader("retry-after") or 1))
                continue
            if resp.status >= 400:
                error = answer.get("error", {}) if isinstance(answer, dict) else {}
                raise WeirError(resp.status, error.get("code", "unknown"),
                                error.get("message", raw.decode(errors="replace")))
            return answer
        raise AssertionError("unreachable")

    # -- tasks --------------------------------------------------------------

    def submit(self, type, input, idempotency_key=None, **options):
        """Queues a task; returns weir's answer (``task_id``, ``status``, …)."""
        body = {"type": type, "input": input, **options}
        headers = {"idempotency-key": idempotency_key} if idempotency_key else None
        return self._request("POST", "/tasks", body, headers)

    def get(self, task_id):
        return self._request("GET", f"/tasks/{task_id}")

    def wait(self, task_id, timeout=60.0, poll=0.1):
        """The task once it has ended (succeeded, dead or cancelled)."""
        return self._wait(lambda: self.get(task_id),
                          lambda t: t["status"] in ("succeeded", "dead", "cancelled"),
                          timeout, poll, f"task {task_id}")

    # -- workflows ----------------------------------------------------------

    def workflow(self, canvas, name=None, idempotency_key=None):
        """Submits a workflow built with ``step``/``chain``/``group``/``chord``
        (or a list of steps); returns ``workflow_id`` and each step's task."""
        return self._request("POST", "/workflows",
                             _workflow_body(canvas, name, idempotency_key))

    def add_steps(self, workflow_id, task_id, lease_token, canvas):
        """From a running step (``task_id`` under ``lease_token``): adds
        ``canvas``'s steps to its workflow. Steps that depend on the running
        step wait for it and for everything it added (a batch). Returns each
        added step's task."""
        return self._request("POST", f"/workflows/{workflow_id}/steps",
                             steps_body(task_id, lease_token, canvas))

    def get_workflow(self, workflow_id):
        return self._request("GET", f"/workflows/{workflow_id}")

    def cancel_workflow(self, workflow_id):
        return self._request("POST", f"/workflows/{workflow_id}/cancel", {})

    def wait_workflow(self, workflow_id, timeout=120.0):
        """The workflow once nothing more runs (succeeded, failed, cancelled):
        weir holds each request until then (``?wait=``), up to 20 s a time."""
        deadline = time.monotonic() + timeout
        while True:
            # Held well inside this client's own request timeout.
            left = max(0.0, min(deadline - time.monotonic(), 20.0, self.timeout * 0.8))
            got = self._request("GET", f"/workflows/{workflow_id}?wait={left:.3f}s")
            if got["status"] != "running":
                return got
            if time.monotonic() >= deadline:
                raise TimeoutError(f"workflow {workflow_id} still running after {timeout} s")

    def _wait(self, read, done, timeout, poll, what):
        deadline = time.monotonic() + timeout
        while True:
            got = read()
            if done(got):
                return got
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} still running after {timeout} s")
            time.sleep(poll)
