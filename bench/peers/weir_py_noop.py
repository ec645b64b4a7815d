"""An external weir worker doing nothing: the Python client's own cost per task."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../clients/python"))
from weir_worker import Worker  # noqa: E402

worker = Worker(sys.argv[1], token=sys.argv[2], concurrency=int(sys.argv[3]), wait=1.0)


@worker.task("py_noop")
def noop(input, task):
    return {}


worker.run()
