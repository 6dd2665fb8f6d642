"""The harness: plans cells, runs them, measures bias, variance and time, stores results.

Names are imported on first use, so a worker process that only computes cells never loads
pandas and pyarrow, which the tables need (about 0.1 GB of a worker's memory).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vrbench.bench.cells import Cell, Skipped, plan
    from vrbench.bench.metrics import EstimateAccumulator, Moments
    from vrbench.bench.results import COLUMNS, STATUSES, ResultsError, to_frame, write_results
    from vrbench.bench.runner import run_cell, skipped_row
    from vrbench.bench.store import read_results

_HOMES = {
    "Cell": "cells", "Skipped": "cells", "plan": "cells",
    "EstimateAccumulator": "metrics", "Moments": "metrics",
    "COLUMNS": "results", "STATUSES": "results", "ResultsError": "results",
    "to_frame": "results", "write_results": "results",
    "run_cell": "runner", "skipped_row": "runner",
    "read_results": "store",
}

__all__ = [
    "COLUMNS",
    "STATUSES",
    "Cell",
    "EstimateAccumulator",
    "Moments",
    "ResultsError",
    "Skipped",
    "plan",
    "read_results",
    "run_cell",
    "skipped_row",
    "to_frame",
    "write_results",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'vrbench.bench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"vrbench.bench.{_HOMES[name]}"), name)
    globals()[name] = value
    return value
