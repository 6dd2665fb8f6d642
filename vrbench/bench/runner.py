"""Running cells: fit, warm up, estimate in memory-bounded chunks, time, and summarize."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from vrbench.bench.cells import DEFAULT_MAX_MEMORY_MB, Cell, Skipped
from vrbench.bench.metrics import EstimateAccumulator
from vrbench.devices import on_device, synchronize
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Problem

WORKING_COPIES = 4
"""Intermediate tensors per stored number while an estimator runs (samples, scores, products)."""

WARMUP_REPLICATES = 8


def chunk_size(problem: Problem, n_samples: int, replicates: int,
               max_memory_mb: int = DEFAULT_MAX_MEMORY_MB) -> int:
    """Replicates per chunk so that a chunk's tensors fit in ``max_memory_mb``.

    The chunking changes the order in which random numbers are drawn, so the memory budget
    is part of a cell's definition: the same definition always gives the same numbers.
    """
    per_replicate = n_samples * (2 * problem.dim + problem.sample_width())
    numbers = max_memory_mb * 2**20 // (8 * WORKING_COPIES)
    return max(1, min(replicates, numbers // per_replicate))


def estimate_in_chunks(
    problem: Problem, estimator: Estimator, theta: Tensor, n_samples: int, replicates: int,
    generator: torch.Generator, state: Any = None,
    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB, device: str | torch.device = "cpu",
) -> Iterator[tuple[Tensor, float]]:
    """``replicates`` estimates in memory-bounded chunks, each with the seconds it took.

    The estimator runs on ``device`` (where ``theta``, ``state`` and ``generator`` live); each
    chunk comes back on the CPU, checked: shape ``(size, dim)`` and finite values, else an
    error names the estimator. Peak memory is set by :func:`chunk_size`, not by ``replicates``.
    """
    chunk = chunk_size(problem, n_samples, replicates, max_memory_mb)
    done = 0
    while done < replicates:
        size = min(chunk, replicates - done)
        with on_device(device) as where:
            start = time.perf_counter()
            estimates = estimator.estimate(problem, theta, n_samples, size, generator, state)
            synchronize(where)
            seconds = time.perf_counter() - start
        if estimates.shape != (size, problem.dim):
            raise ValueError(
                f"{estimator.name} returned shape {tuple(estimates.shape)}, "
                f"expected {(size, problem.dim)}"
            )
        estimates = estimates.cpu()
        if not bool(torch.isfinite(estimates).all()):
            raise FloatingPointError(f"{estimator.name} returned non-finite estimates")
        yield estimates, seconds
        done += size


def measure(
    problem: Problem, estimator: Estimator, cell: Cell
) -> tuple[dict[str, float], float, float]:
    """Fit, warm up and measure one cell: ``(metrics, seconds per estimate, fit seconds)``.

    Estimation runs on the cell's device; the statistics are accumulated on the CPU.
    """
    with on_device(cell.device) as device:
        theta = problem.initial_theta()
        theta_before = theta.clone()
        start = time.perf_counter()
        state = estimator.fit(problem, theta, cell.generator("fit"))
        synchronize(device)
        fit_seconds = time.perf_counter() - start
        warmup = min(cell.replicates, WARMUP_REPLICATES)
        estimator.estimate(problem, theta, cell.n_samples, warmup, cell.generator("warmup"),
                           state)
        true_grad = problem.exact_grad(theta).cpu()

    accumulator = EstimateAccumulator(true_grad, cell.replicates)
    elapsed = 0.0
    for estimates, seconds in estimate_in_chunks(problem, estimator, theta, cell.n_samples,
                                                 cell.replicates, cell.generator("measure"),
                                                 state, cell.max_memory_mb, device):
        accumulator.update(estimates)
        elapsed += seconds
    if not torch.equal(theta, theta_before):
        raise RuntimeError(f"{estimator.name} modified θ in place")
    return accumulator.metrics(), elapsed / cell.replicates, fit_seconds


def _base_row(problem: Any, estimator: Any, n_samples: int) -> dict[str, Any]:
    return {
        "problem": str(problem),
        "problem_params": json.dumps(dict(problem.params), sort_keys=True, default=str),
        "estimator": str(estimator),
        "estimator_params": json.dumps(dict(estimator.params), sort_keys=True, default=str),
        "n_samples": n_samples,
    }


class CellTimeout(Exception):
    """A cell ran longer than its time limit."""


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the body after ``seconds`` (SIGALRM: main thread of a POSIX process only)."""
    usable = (seconds is not None and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise CellTimeout(f"cell exceeded the time limit of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_cell(cell: Cell, timeout: float | None = None) -> dict[str, Any]:
    """Run one cell; any failure becomes a row with status ``error`` instead of an exception.

    With ``timeout`` (seconds) a cell that runs longer is interrupted where the process allows
    it (see :func:`_time_limit`) and otherwise marked as an error when it finishes.
    """
    row = cell_row(cell)
    started = time.perf_counter()
    try:
        problem, estimator = cell.build()
        row.update(
            family=estimator.family,
            unbiased_claim=estimator.unbiased,
            f_evals=estimator.f_evals(problem, cell.n_samples),
            value=float(problem.value(problem.initial_theta())),
        )
        with _time_limit(timeout):
            metrics, seconds, fit_seconds = measure(problem, estimator, cell)
        if timeout is not None and time.perf_counter() - started > timeout:
            raise CellTimeout(f"cell exceeded the time limit of {timeout:g} s")
        row.update(metrics, time_per_estimate_s=seconds, fit_time_s=fit_seconds, status="ok")
        row["error"] = ""
    except Exception as exc:  # one failing cell must never take a sweep down
        row.update(status="error", error=f"{type(exc).__name__}: {exc}")
        row["traceback"] = traceback.format_exc(limit=5)
    return row


def cell_row(cell: Cell) -> dict[str, Any]:
    """The identifying columns of a cell's row."""
    row = _base_row(cell.problem, cell.estimator, cell.n_samples)
    row.update(replicates=cell.replicates, seed=cell.seed, device=cell.device,
               cell_id=cell.key())
    return row


def error_row(cell: Cell, message: str) -> dict[str, Any]:
    """The row of a cell that failed outside :func:`run_cell` (a crashed worker, say)."""
    return {**cell_row(cell), "status": "error", "error": message}


def skipped_row(skip: Skipped, replicates: int, seed: int) -> dict[str, Any]:
    row = _base_row(skip.problem, skip.estimator, skip.n_samples)
    row.update(replicates=replicates, seed=seed, status="skipped", error=skip.reason)
    return row


