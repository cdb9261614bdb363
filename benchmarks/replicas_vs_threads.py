"""One replica with all threads against N single-thread replicas, on the embedded model.

    .venv/bin/python benchmarks/replicas_vs_threads.py [--backend all] [--max-concurrency 1,4,8]

Runs ``wattserve sweep`` (replicas 1 and 2 by default, each point through the bench runner)
into a fresh directory and prints, for each backend and concurrency, device tokens/s of
1 replica x 2 threads and 2 replicas x 1 thread side by side with their ratio. Extra
arguments go to ``wattserve sweep`` unchanged. A few minutes on a quiet 2-core machine.
"""

from __future__ import annotations

import sys
import tempfile

from wattserve.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    defaults = {
        "--backend": "all",
        "--replicas": "1,2",
        "--max-concurrency": "1,4,8",
        "--output-len": "32",
        "--input-len": "32",
        "--num-prompts": "8",
    }
    for flag, value in defaults.items():
        if flag not in args:
            args += [flag, value]
    if "--result-dir" not in args:
        args += ["--result-dir", tempfile.mkdtemp(prefix="wattserve-replicas-")]
    main(["sweep", *args])
