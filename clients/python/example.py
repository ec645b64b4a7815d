"""An external weir worker: moves a Celery-style function to weir unchanged.

    [task_types.word_count]          # in weir.toml
    handler = "external"
    input_schema = { type = "object", required = ["text"] }

    WEIR_URL=http://127.0.0.1:8080 WEIR_WORKER_TOKEN=… python3 example.py
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from weir_worker import Permanent, Worker  # noqa: E402


def word_count(text):
    """The team's function, as it was under Celery's @app.task."""
    words = text.split()
    return {"words": len(words), "longest": max(words, key=len) if words else None}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", default=os.environ.get("WEIR_URL", "http://127.0.0.1:8080"))
    p.add_argument("--token", default=os.environ.get("WEIR_WORKER_TOKEN"))
    p.add_argument("--worker-id", default=None)
    p.add_argument("--max-tasks", type=int, default=None, help="exit after this many tasks")
    args = p.parse_args()
    if not args.token:
        sys.exit("set WEIR_WORKER_TOKEN (weir up prints it) or pass --token")
    worker = Worker(args.url, token=args.token, worker_id=args.worker_id, wait=2.0)

    @worker.task("word_count")
    def run(input, task):
        if not isinstance(input.get("text"), str):
            raise Permanent("input.text must be a string")
        task.progress(50)
        return word_count(input["text"])

    processed, failed = worker.run(max_tasks=args.max_tasks)
    print(f"example: {processed} processed, {failed} failed", flush=True)


if __name__ == "__main__":
    main()
