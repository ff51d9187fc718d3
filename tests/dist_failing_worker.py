"""A torchrun worker for tests/test_distributed.py: the CLI's extract, except that rank 1 dies in its first batch."""

import os
import sys

from ood_core import cli
from ood_core.engine import extract

if os.environ.get("RANK") == "1":

    def crash(*args, **kwargs):
        os._exit(
            3
        )  # a rank that dies (out of memory, a node lost): no exception, no cleanup

    extract.run_batches = crash
    from ood_core.engine import distributed

    distributed.run_batches = crash

sys.exit(cli.main(sys.argv[1:]))
