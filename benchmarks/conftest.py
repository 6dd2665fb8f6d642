"""``make bench`` runs every contender pinned to one core with one thread, as a single CLI
cell with ``--threads 1`` runs (see :mod:`benchmarks.pinning`); this runs before the benchmark
modules import numpy, torch or JAX."""

import os

from benchmarks import pinning

ALL_CORES = sorted(os.sched_getaffinity(0))
"""The cores before pinning: the default sweep's subprocess gets them back."""

pinning.pin()
