"""The harness: plans cells, runs them, measures bias, variance and time, stores results."""

from vrbench.bench.cells import Cell, Skipped, plan
from vrbench.bench.metrics import EstimateAccumulator, Moments
from vrbench.bench.results import COLUMNS, read_results, to_frame, write_results
from vrbench.bench.runner import run_cell, skipped_row

__all__ = [
    "COLUMNS",
    "Cell",
    "EstimateAccumulator",
    "Moments",
    "Skipped",
    "plan",
    "read_results",
    "run_cell",
    "skipped_row",
    "to_frame",
    "write_results",
]
