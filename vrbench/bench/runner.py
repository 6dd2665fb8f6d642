"""Running cells: fit, warm up, estimate in memory-bounded chunks, time, and summarize."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import json
import math
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.bench.cells import DEFAULT_MAX_MEMORY_MB, Cell, Skipped
from vrbench.bench.exact import exact_variance
from vrbench.bench.metrics import EstimateAccumulator, numerical_failure
from vrbench.bench.reference import Reference, compute_reference, reference_columns
from vrbench.devices import default_device, on_device, resolve_device, synchronize
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Problem

WORKING_COPIES = 4
"""Intermediate tensors per stored number while an estimator runs (samples, scores, products)."""

CHUNK_MB = 8
"""Working memory of one chunk (as :func:`chunk_size` counts it): small enough for a chunk's
tensors to stay in the CPU's caches and for the allocator to hand the same memory to every
chunk (see :func:`keep_freed_memory`), so that time goes to the estimator and not to faulting
in fresh pages. The memory budget only caps it."""

MIN_DRAWS = 2**14
"""Fewest draws (replicates × n) per chunk, budget permitting: every tensor operation costs a
few µs of fixed work, which tensors of fewer numbers would not amortize (the steps of an
episode, a rollout's time steps)."""


def chunk_size(problem: Problem, n_samples: int, replicates: int,
               max_memory_mb: int = DEFAULT_MAX_MEMORY_MB) -> int:
    """Replicates per chunk: about :data:`CHUNK_MB` of tensors, at least :data:`MIN_DRAWS`
    draws, and never more than fit in ``max_memory_mb``.

    The chunking changes the order in which random numbers are drawn, so the memory budget
    is part of a cell's definition (and these constants part of vrbench's version): the same
    definition always gives the same numbers. Raises ``MemoryError`` when even one estimate
    does not fit.
    """
    per_replicate = n_samples * (2 * problem.dim + problem.sample_width())
    numbers = max_memory_mb * 2**20 // (8 * WORKING_COPIES)
    if per_replicate > numbers:
        needed = per_replicate * 8 * WORKING_COPIES / 2**20
        raise MemoryError(
            f"one estimate of {problem.name} from {n_samples} samples needs about "
            f"{needed:.0f} MiB, more than the cell's memory budget of {max_memory_mb} MiB; "
            "raise max_memory_mb (--max-memory) or use fewer samples or a smaller problem")
    cached = max(-(-MIN_DRAWS // n_samples),
                 int(CHUNK_MB * 2**20) // (8 * WORKING_COPIES * per_replicate))
    return min(replicates, numbers // per_replicate, cached)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc's mallopt parameters (malloc.h)."""

MMAP_THRESHOLD = 32 * 2**20
"""The largest threshold glibc accepts on 64-bit systems (HEAP_MAX_SIZE / 2)."""


TOUCHED_MB = 8 * CHUNK_MB
"""Heap that :func:`keep_freed_memory` faults in once: room for a chunk's temporaries several
times over, so that what a cell keeps between chunks (its accumulator, the estimates) does
not push a chunk's temporaries onto untouched pages."""


@functools.cache
def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed memory for the next allocation (once per process).

    By default glibc serves large blocks from fresh ``mmap`` pages and returns freed memory to
    the system, so every chunk's tensors fault in new pages (~2 µs per 4 KiB, more than many
    estimators spend on the numbers in them). Serving blocks up to 32 MiB from the heap and
    never trimming it lets each chunk reuse the previous chunk's memory; the heap then stays
    at the largest chunk's size. The first :data:`TOUCHED_MB` of it are faulted in here:
    without that, a fresh process's first timed chunk still faulted in 350–600 pages in half
    of the runs measured, even after the warm-up, and read 1.5–1.8× the warm time. Returns
    whether the allocator accepted (glibc only).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(M_TRIM_THRESHOLD, 2**30)):
        return False
    blocks = 4  # each under the mmap threshold, so that they come from the heap
    touched = [torch.zeros(TOUCHED_MB * 2**20 // (8 * blocks), dtype=torch.float64)
               for _ in range(blocks)]
    del touched
    return True


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's garbage collector off inside the block (as ``timeit`` does): a full collection
    of a process that has just imported torch takes tens of ms, and it would land in
    whichever chunk is being timed; it runs between chunks instead."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def estimate_in_chunks(
    problem: Problem, estimator: Estimator, theta: Tensor, n_samples: int, replicates: int,
    generator: torch.Generator, state: Any = None,
    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB, device: str | torch.device = "cpu",
    deadline: Deadline | None = None,
) -> Iterator[tuple[Tensor, float]]:
    """``replicates`` estimates in memory-bounded chunks, each with the seconds it took.

    The estimator runs on ``device`` (where ``theta``, ``state`` and ``generator`` live); each
    chunk comes back on the CPU, checked: shape ``(size, dim)`` and finite values, else an
    error names the estimator. Peak memory is set by :func:`chunk_size`, not by ``replicates``.
    A ``deadline`` is checked before each chunk.
    """
    keep_freed_memory()
    chunk = chunk_size(problem, n_samples, replicates, max_memory_mb)
    where = resolve_device(device)
    # Entered per chunk, since the caller's code between chunks must run on its own default
    # device; where that is already ``where`` (the CPU, usually) nothing needs entering.
    device_mode = contextlib.nullcontext() if where == default_device() else where
    done = 0
    while done < replicates:
        if deadline is not None:
            deadline.check()
        size = min(chunk, replicates - done)
        with device_mode, _collector_paused():
            start = time.perf_counter()
            estimates = estimator.estimate(problem, theta, n_samples, size, generator, state)
            synchronize(where)
            seconds = time.perf_counter() - start
        yield checked_estimates(estimates, estimator, problem, size), seconds
        done += size


def checked_estimates(estimates: Any, estimator: Estimator, problem: Problem,
                      replicates: int) -> Tensor:
    """One call's ``replicates`` estimates, on the CPU, after checking what the harness and
    the conformance checks require of every call: a tensor of shape ``(replicates, dim)``
    with finite values. Raises ``ValueError`` or ``FloatingPointError`` naming the
    estimator."""
    expected = (replicates, problem.dim)
    if not isinstance(estimates, Tensor) or estimates.shape != expected:
        shape = tuple(estimates.shape) if isinstance(estimates, Tensor) \
            else type(estimates).__name__
        raise ValueError(f"{estimator.name} returned shape {shape}, expected {expected}")
    on_cpu = estimates.cpu()
    # A sum is finite only if every term is (one pass, a third of isfinite().all()'s time);
    # only a sum that overflowed needs the element-wise test.
    if not (bool(on_cpu.sum().isfinite()) or bool(torch.isfinite(on_cpu).all())):
        raise FloatingPointError(f"{estimator.name} returned non-finite estimates")
    return on_cpu


class CellTimeout(Exception):
    """A cell ran longer than its time limit."""


@dataclass(frozen=True)
class Deadline:
    """The time by which a cell must finish, checked between its steps.

    Where a signal can interrupt the cell (see :func:`_time_limit`) it stops even inside a
    step; elsewhere (a Dask worker's thread) these checks stop it at the next step.
    """

    seconds: float
    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(seconds, time.monotonic() + seconds)

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise CellTimeout(f"cell exceeded the time limit of {self.seconds:g} s")


def cell_reference(problem: Problem, estimator: Estimator, cell: Cell,
                   theta: Tensor | None = None) -> Reference:
    """The cell's ground truth at θ (default: the initial θ): the exact gradient, or a
    reference of the cell's settings from an estimator other than the measured one (see
    :mod:`vrbench.bench.reference`)."""
    with on_device(cell.device):
        theta = problem.initial_theta() if theta is None else theta
    return compute_reference(problem, theta, cell.reference, estimator.name, cell.seed,
                             cell.device)


def measure(
    problem: Problem, estimator: Estimator, cell: Cell, deadline: Deadline | None = None,
    theta: Tensor | None = None, stream: str = "", reference: Reference | None = None,
    timed: bool = True,
) -> tuple[dict[str, Any], float, float]:
    """Fit, warm up and measure one cell: ``(metrics, seconds per estimate, fit seconds)``.

    By default at the problem's initial θ with the cell's own random streams; ``theta`` and a
    ``stream`` suffix measure elsewhere (along an optimization run) with streams of their own,
    so that the measurement at the initial θ with no suffix is exactly the cell's. Estimation
    runs on the cell's device; the statistics are accumulated on the CPU. Raises when the
    exact gradient or the metrics are not finite, or the estimates are numerically
    meaningless (see :func:`vrbench.bench.metrics.numerical_failure`). Where the estimator's
    variance can be computed without sampling (:mod:`vrbench.bench.exact`), the metrics
    include it as ``exact_variance``. ``reference`` is the ground truth at θ (computed by
    :func:`cell_reference` when not given); the metrics say what it is and summarize each
    parameter group (:func:`~vrbench.bench.reference.reference_columns`). A caller that
    discards the times passes ``timed=False`` and skips the warm-up (:func:`warm_up`), which
    draws from a stream of its own: the metrics are the same either way.
    """
    with on_device(cell.device) as device:
        theta = problem.initial_theta() if theta is None else theta
        theta_before = theta.clone()
        if reference is None:
            reference = cell_reference(problem, estimator, cell, theta)
        true_grad = reference.grad.cpu()
        if not bool(torch.isfinite(true_grad).all()):
            raise FloatingPointError(f"{problem.name}'s exact gradient is not finite at these "
                                     f"parameters: {true_grad.tolist()[:8]}")
        if deadline is not None:
            deadline.check()
        start = time.perf_counter()
        state = estimator.fit(problem, theta, cell.generator("fit" + stream))
        synchronize(device)
        fit_seconds = time.perf_counter() - start
        if timed:
            warm_up(problem, estimator, theta, cell, state, stream, deadline)

    # An exact gradient is tested along the harness's own projections; a reference along the
    # directions its standard errors were accumulated on.
    accumulator = (EstimateAccumulator(true_grad, cell.replicates) if reference.exact else
                   EstimateAccumulator(true_grad, cell.replicates, reference.directions,
                                       reference.direction_se))
    elapsed = 0.0
    for estimates, seconds in estimate_in_chunks(problem, estimator, theta, cell.n_samples,
                                                 cell.replicates,
                                                 cell.generator("measure" + stream), state,
                                                 cell.max_memory_mb, device, deadline):
        accumulator.update(estimates)
        elapsed += seconds
    if not torch.equal(theta, theta_before):
        raise RuntimeError(f"{estimator.name} modified θ in place")
    metrics = accumulator.metrics()
    failure = numerical_failure(metrics, accumulator, estimator.unbiased)
    if failure is not None:
        raise FloatingPointError(failure)
    exact = exact_variance(problem, estimator, theta, cell.n_samples, state)
    metrics["exact_variance"] = math.nan if exact is None else exact.trace
    metrics["exact_coordinate_variance"] = None if exact is None else exact.per_coordinate
    metrics.update(reference_columns(reference, problem, metrics))
    return metrics, elapsed / cell.replicates, fit_seconds


WARMUP_CALLS = 3
"""Chunks a cell estimates before its timed ones, unless :data:`WARMUP_SECONDS` pass first."""

WARMUP_SECONDS = 0.1
"""After this long a cell's warm-up stops: a chunk this slow would spend under 5% of its time
faulting in its pages (8 MiB, ~2,000 pages at ~2 µs)."""


def warm_up(problem: Problem, estimator: Estimator, theta: Tensor, cell: Cell, state: Any,
            stream: str = "", deadline: Deadline | None = None) -> None:
    """Estimate a chunk, from the cell's ``warmup`` stream, up to :data:`WARMUP_CALLS` times.

    So that the timed chunks run on memory the allocator already holds (see
    :func:`keep_freed_memory`) and on warm caches: ``time_per_estimate_s`` is then the
    estimator's, as in a warm process, and not the first touch of fresh pages. Measured in
    fresh processes (cells of ten 1 ms chunks, four runs each): after one warm-up call the
    timed chunks read 7–13% slower than after three.
    """
    keep_freed_memory()
    size = chunk_size(problem, cell.n_samples, cell.replicates, cell.max_memory_mb)
    generator = cell.generator("warmup" + stream)
    start = time.perf_counter()
    for _ in range(WARMUP_CALLS):
        estimator.estimate(problem, theta, cell.n_samples, size, generator, state)
        if time.perf_counter() - start >= WARMUP_SECONDS:
            break
        if deadline is not None:
            deadline.check()


def _base_row(problem: Any, estimator: Any, n_samples: int) -> dict[str, Any]:
    return {
        "problem": str(problem),
        "problem_params": json.dumps(dict(problem.params), sort_keys=True, default=str),
        "estimator": str(estimator),
        "estimator_params": json.dumps(dict(estimator.params), sort_keys=True, default=str),
        "n_samples": n_samples,
    }


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the body after ``seconds`` (SIGALRM: main thread of a POSIX process only)."""
    usable = (hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if seconds is None or not usable:
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


def prepare_worker() -> None:
    """Import what computing a cell needs beyond this module (scipy's statistics, the
    registries and their plugins), so that a worker's first cell does not count the imports
    against its time limit."""
    import scipy.stats  # noqa: F401

    from vrbench import estimators, problems

    estimators.registry.names()
    problems.registry.names()


def run_cell(cell: Cell, timeout: float | None = None,
             reference: Reference | None = None) -> dict[str, Any]:
    """Run one cell; any failure becomes a row with status ``error`` instead of an exception.

    ``timeout`` (seconds) limits the whole cell: building the components, the exact value
    and gradient (or the reference, when not given), fitting and every estimate. Where the
    process allows it the cell is interrupted at the limit (see :func:`_time_limit`),
    elsewhere at its next step.
    """
    row = cell_row(cell)
    deadline = None if timeout is None else Deadline.after(timeout)
    try:
        with _time_limit(timeout):
            problem, estimator = cell.build()
            row.update(family=estimator.family, unbiased_claim=estimator.unbiased,
                       f_evals=estimator.f_evals(problem, cell.n_samples))
            if reference is None:
                reference = cell_reference(problem, estimator, cell)
            row["value"] = reference.value
            if not math.isfinite(row["value"]):
                raise FloatingPointError(f"{problem.name}'s exact value J = {row['value']} is "
                                         "not finite at these parameters")
            metrics, seconds, fit_seconds = measure(problem, estimator, cell, deadline,
                                                    reference=reference)
        if deadline is not None:
            deadline.check()
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


def lost_row(cell: Cell, message: str) -> dict[str, Any]:
    """The row of a cell that was not computed because the infrastructure failed (its worker
    died, the scheduler was lost): the store's ``missing`` row
    (:func:`~vrbench.bench.store.missing_row`); the next run computes it."""
    # Imported here: worker processes import this module and need neither the store nor
    # pandas; lost rows are made in the sweep's own process.
    from vrbench.bench.store import missing_row

    return missing_row(cell_row(cell), message)


def skipped_row(skip: Skipped, replicates: int, seed: int) -> dict[str, Any]:
    row = _base_row(skip.problem, skip.estimator, skip.n_samples)
    row.update(replicates=replicates, seed=seed, status="skipped", error=skip.reason)
    return row


