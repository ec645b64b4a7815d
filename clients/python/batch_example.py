"""A batch (Sidekiq's batches, Celery's dynamic chords): a Python step adds
one hash per word of its input to its own workflow, and the report after it
runs once every added hash has ended, with all their results.

    weir up --task-type split=external --worker-token T &
    python3 batch_example.py --url http://127.0.0.1:8080 --token T

Prints the finished workflow and the report's input as JSON.
"""

import argparse
import json
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from weir_client import Client, chain, group, step  # noqa: E402
from weir_worker import Worker  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--token", default=os.environ.get("WEIR_WORKER_TOKEN"))
    args = parser.parse_args()
    weir = Client(args.url)
    worker = Worker(args.url, token=args.token, worker_id="py-batch", wait=1.0)
    added_twice = {}

    @worker.task("split")
    def split(input, task):
        words = input["words"]
        batch = group(*(step("md5", {"string": w}, id=f"hash-{w}") for w in words))
        added = task.add_steps(batch)
        # Adding the same steps again (as a retried attempt would) stores
        # nothing more and answers with the same tasks.
        added_twice["same"] = task.add_steps(batch) == added
        return {"added": len(added["steps"])}

    runner = threading.Thread(target=worker.run, kwargs={"handle_signals": False})
    runner.start()
    try:
        flow = chain(step("split", {"words": ["alpha", "beta", "gamma", "delta"]}, id="split"),
                     step("noop", {}, id="report", with_parent_results=True))
        accepted = weir.workflow(flow, name="batch")
        finished = weir.wait_workflow(accepted["workflow_id"], timeout=60)
        report = weir.get(accepted["steps"]["report"])
    finally:
        worker.stop()
        runner.join()
    print(json.dumps({"workflow": finished, "report_input": report["input"],
                      "added_twice_same": added_twice.get("same")}))


if __name__ == "__main__":
    main()
