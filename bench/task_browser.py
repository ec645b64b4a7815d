"""Times the task browser's filters on a seeded store: for each filter, the
first page and the page after it (by the first page's cursor), ROUNDS times,
sequentially over one keep-alive connection; prints p50 and p99 per page.

Usage: task_browser.py URL ROUNDS WORKFLOW_ID
"""
import http.client
import json
import sys
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

url = urllib.parse.urlparse(sys.argv[1])
rounds = int(sys.argv[2])
workflow = sys.argv[3]
now = datetime.now(timezone.utc)
ago = lambda **kw: (now - timedelta(**kw)).isoformat().replace("+00:00", "Z")

FILTERS = [
    ("everything", {}),
    ("state=dead", {"state": "dead"}),
    ("state=queued", {"state": "queued"}),
    ("state=cancelled", {"state": "cancelled"}),
    ("type=argon2", {"type": "argon2"}),
    ("queue=billing", {"queue": "billing"}),
    ("tenant=tenant_7", {"tenant": "tenant_7"}),
    ("workflow", {"workflow": workflow}),
    ("created in the last hour", {"created_after": ago(hours=1)}),
    ("created 3 to 4 days ago", {"created_after": ago(days=4), "created_before": ago(days=3)}),
    ("finished in the last hour", {"finished_after": ago(hours=1)}),
    ("error ~ 'smtp timeout'", {"error": "smtp timeout"}),
    ("dead + queue=emails + error ~ 'receipt'", {"state": "dead", "queue": "emails", "error": "receipt"}),
    ("dead + type=md5 + tenant_9", {"state": "dead", "type": "md5", "tenant": "tenant_9"}),
    ("sort=finished", {"sort": "finished"}),
    ("sort=finished + state=dead", {"sort": "finished", "state": "dead"}),
    ("sort=finished + queue=reports", {"sort": "finished", "queue": "reports"}),
]

conn = http.client.HTTPConnection(url.hostname, url.port)


def get(params):
    path = "/tasks?" + urllib.parse.urlencode({**params, "limit": 50})
    start = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    took = (time.perf_counter() - start) * 1000
    if resp.status != 200:
        sys.exit(f"{path}: {resp.status} {body[:300]!r}")
    return took, json.loads(body)


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


print(f"{'filter':<42} {'rows':>5} {'first p50':>10} {'first p99':>10} {'next p50':>9} {'next p99':>9}")
worst = 0.0
for name, params in FILTERS:
    first, after = [], []
    rows = 0
    for _ in range(rounds):
        took, page = get(params)
        first.append(took)
        rows = len(page["tasks"])
        if page.get("next_cursor"):
            took, _ = get({**params, "cursor": page["next_cursor"]})
            after.append(took)
    worst = max(worst, pct(first, 0.99), pct(after, 0.99) if after else 0)
    nxt = (f"{pct(after, 0.5):>9.1f} {pct(after, 0.99):>9.1f}" if after else f"{'-':>9} {'-':>9}")
    print(f"{name:<42} {rows:>5} {pct(first, 0.5):>10.1f} {pct(first, 0.99):>10.1f} {nxt}")
print(f"worst p99: {worst:.1f} ms (goal: under 100 ms)")
