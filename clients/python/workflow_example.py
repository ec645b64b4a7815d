"""A Celery-style canvas as a weir workflow: a chord of three hashes and a
callback that gets their results, then a chain of two more steps.

    python3 workflow_example.py --url http://127.0.0.1:8080

Prints the finished workflow as JSON.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from weir_client import Client, WeirError, chain, chord, group, step  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--api-key", default=os.environ.get("WEIR_API_KEY"))
    args = parser.parse_args()
    weir = Client(args.url, api_key=args.api_key)

    task = weir.submit("md5", {"string": "hello"})
    assert weir.wait(task["task_id"])["status"] == "succeeded"

    flow = chain(
        chord(group(*(step("md5", {"string": s}, id=f"hash-{s}") for s in "abc")),
              step("noop", {}, id="report")),
        step("sha256", {"string": "after"}, id="after"),
        step("noop", {}, id="done"),
    )
    accepted = weir.workflow(flow, name="canvas", idempotency_key="canvas-example")
    again = weir.workflow(flow, name="canvas", idempotency_key="canvas-example")
    assert again["workflow_id"] == accepted["workflow_id"], "the key returns the same workflow"
    finished = weir.wait_workflow(accepted["workflow_id"])
    report = weir.get(accepted["steps"]["report"])
    try:
        weir.workflow([step("md5", {"string": "x"}, id="a", depends_on=["a"])])
        cycle = None
    except WeirError as e:
        cycle = e.code
    print(json.dumps({"workflow": finished, "report_input": report["input"], "cycle": cycle}))


if __name__ == "__main__":
    main()
