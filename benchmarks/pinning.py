"""One core, one thread: how the speed benchmarks run every contender, as a single CLI cell
with ``--threads 1`` runs.

:func:`pin` must run before numpy, torch or JAX start their thread pools (import this module
first): it pins the process to one core and asks every library for one thread.
"""

from __future__ import annotations

import contextlib
import os

ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


def pin(cpu: int | None = None) -> int:
    """Pin this process to ``cpu`` (default: ``$BENCH_CORE``, else the last core it may run
    on) with one thread per library; returns the core."""
    for name, value in ONE_THREAD.items():
        os.environ.setdefault(name, value)
    cores = sorted(os.sched_getaffinity(0))
    if cpu is None:
        cpu = int(os.environ.get("BENCH_CORE", cores[-1]))
    chosen = cpu
    os.sched_setaffinity(0, {chosen})
    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # refused once torch has run parallel work
        torch.set_num_interop_threads(1)
    return chosen
