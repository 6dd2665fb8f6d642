"""Does a cell's ``time_per_estimate_s`` measure the estimator? Compare it with the same
estimator timed through the Python API in a warm process.

For each workload of ``benchmarks/workloads.py`` and each R, a fresh process runs the cell
as ``vrbench run`` would (``run_cell``, one thread, pinned to the same core as this one) and
reports its ``time_per_estimate_s``; this process, warmed up, times ``estimate_in_chunks``
over the same R. Each is the median of ``--rounds`` runs, interleaved. The target: the two
agree within 20%. Run from the repository root (not a test: it times things):

    .venv/bin/python benchmarks/check_timing.py                 # R = 10⁴ and 10⁵
    .venv/bin/python benchmarks/check_timing.py -w lax -R 1000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import pinning  # noqa: E402  (pins before numpy, torch and JAX start threads)

CORE = pinning.pin()

WARM_SECONDS = 0.2
"""How long each turn of the warm timing lasts at least."""

from benchmarks.workloads import WORKLOADS, Workload  # noqa: E402
from vrbench.bench.cells import Cell  # noqa: E402
from vrbench.bench.runner import estimate_in_chunks  # noqa: E402
from vrbench.components import Spec  # noqa: E402

CELL = """
import json, sys
import torch
torch.set_num_threads(1)
from vrbench.bench.cells import Cell
from vrbench.bench.runner import run_cell
from vrbench.components import Spec
row = run_cell(Cell(Spec(sys.argv[1]), Spec(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), 0))
assert row["status"] == "ok", row["error"]
print(json.dumps(row["time_per_estimate_s"]))
"""


def cell_time(workload: Workload, replicates: int) -> float:
    """``time_per_estimate_s`` of the cell, run in a fresh process pinned to this core."""
    command = [sys.executable, "-c", CELL, workload.problem, workload.estimator,
               str(workload.n), str(replicates)]
    result = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT,
                            preexec_fn=lambda: os.sched_setaffinity(0, {CORE}))
    return json.loads(result.stdout.strip().splitlines()[-1])


def warm_timer(workload: Workload, replicates: int):
    """Seconds per estimate of ``estimate_in_chunks`` in this (warmed) process, with the
    cell's own fit and measurement streams."""
    cell = Cell(Spec(workload.problem), Spec(workload.estimator), workload.n, replicates, 0)
    problem, estimator = cell.build()
    theta = problem.initial_theta()
    state = estimator.fit(problem, theta, cell.generator("fit"))

    def once() -> float:
        start = time.perf_counter()
        for _ in estimate_in_chunks(problem, estimator, theta, workload.n, replicates,
                                    cell.generator("measure"), state):
            pass
        return (time.perf_counter() - start) / replicates

    # A call at R = 10⁴ lasts about a millisecond: right after a fresh cell process has run on
    # this core, one call alone measures the caches that process left cold. Each turn is
    # therefore the median of as many calls as fill WARM_SECONDS, after one untimed call.
    repeats = max(1, math.ceil(WARM_SECONDS / (once() * replicates)))

    def run() -> float:
        once()
        return statistics.median(once() for _ in range(repeats))

    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-w", "--workload", action="append", default=[])
    parser.add_argument("-R", "--replicates", type=int, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    chosen = [w for w in WORKLOADS
              if not args.workload or any(part in w.label for part in args.workload)]
    print(f"core {CORE}, one thread, medians of {args.rounds} interleaved runs, µs per "
          "estimate\n")
    print("| workload | R | cell's time_per_estimate_s | warm Python API | ratio | within 20% |")
    print("|---|---|---|---|---|---|")
    for workload in chosen:
        for replicates in args.replicates or [10_000, 100_000]:
            warm = warm_timer(workload, replicates)
            cells, warms = [], []
            for _ in range(args.rounds):
                cells.append(cell_time(workload, replicates))
                warms.append(warm())
            cell, direct = statistics.median(cells) * 1e6, statistics.median(warms) * 1e6
            ratio = cell / direct
            print(f"| {workload.label} | {replicates:,} | {cell:.3g} | {direct:.3g} "
                  f"| {ratio:.2f} | {'yes' if abs(ratio - 1) <= 0.2 else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
