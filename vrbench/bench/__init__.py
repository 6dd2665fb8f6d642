"""The harness: plans cells, runs them, measures bias, variance and time, stores results."""

from vrbench.bench.cells import Cell, Skipped, plan
from vrbench.bench.metrics import EstimateAccumulator, Moments
from vrbench.bench.results import COLUMNS, STATUSES, ResultsError, to_frame, write_results
from vrbench.bench.runner import run_cell, skipped_row
from vrbench.bench.store import read_results

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
