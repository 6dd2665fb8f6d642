"""Sweeps: plan every cell, reuse the finished ones, run the rest in parallel, store each.

Every finished cell is written at once, atomically, as one Parquet part under
``OUTPUT/cells/<cell id>.parquet``; a killed sweep loses only the cells in flight, and
running the same sweep again reuses every stored part (``force`` recomputes them). The final
``OUTPUT/results.parquet`` gathers the planned cells in plan order, so an interrupted and
resumed sweep gives the same table as an uninterrupted one. Cells run in local processes
(``jobs``) or on a Dask cluster (``scheduler``); a cell's numbers depend only on its
definition, never on where or in which order it ran.
"""

from __future__ import annotations

import datetime
import json
import multiprocessing
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import torch

from vrbench import estimators, problems
from vrbench.bench.cells import Cell, plan
from vrbench.bench.config import SweepConfig
from vrbench.bench.provenance import provenance
from vrbench.bench.results import to_frame, write_results
from vrbench.bench.runner import error_row, run_cell, skipped_row
from vrbench.components import Spec
from vrbench.devices import resolve_device

PARTS_DIR = "cells"
PROVENANCE_FILE = "provenance.json"


class CellStore:
    """One durable Parquet part per finished cell."""

    def __init__(self, output: str | os.PathLike[str]) -> None:
        self.directory = Path(output) / PARTS_DIR

    def path(self, cell: Cell) -> Path:
        return self.directory / f"{cell.key()}.parquet"

    def has(self, cell: Cell) -> bool:
        return self.path(cell).exists()

    def load(self, cell: Cell) -> dict[str, Any]:
        return pq.read_table(self.path(cell)).to_pylist()[0]

    def save(self, cell: Cell, row: dict[str, Any]) -> None:
        """Write the row to a temporary file, then rename it into place (atomic on POSIX)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        os.close(handle)
        try:
            to_frame([row]).to_parquet(temporary, index=False)
            os.replace(temporary, self.path(cell))
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_local(cells: list[Cell], jobs: int, timeout: float | None,
              threads: int | None = None) -> Iterator[tuple[Cell, dict]]:
    """Run cells in ``jobs`` worker processes (in this process when ``jobs == 1``), each with
    ``threads`` torch threads (default: the cores shared out among the workers)."""
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    if jobs == 1 or len(cells) <= 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for cell in cells:
                yield cell, run_cell(cell, timeout)
        finally:
            torch.set_num_threads(previous)
        return
    context = multiprocessing.get_context("spawn")  # fork after torch has run is not safe
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(run_cell, cell, timeout): cell for cell in cells}
        for future in as_completed(futures):
            cell = futures[future]
            try:
                yield cell, future.result()
            except Exception as exc:  # a crashed worker loses its cell, not the sweep
                yield cell, error_row(cell, f"worker failed: {type(exc).__name__}: {exc}")


def run_dask(cells: list[Cell], scheduler: str, timeout: float | None
             ) -> Iterator[tuple[Cell, dict]]:
    """Run cells on the Dask distributed cluster at ``scheduler`` (e.g. ``tcp://host:8786``)."""
    from dask.distributed import Client
    from dask.distributed import as_completed as dask_completed

    with Client(scheduler) as client:
        futures = {client.submit(run_cell, cell, timeout, pure=False, key=f"cell-{cell.key()}"):
                   cell for cell in cells}
        for future in dask_completed(list(futures)):
            cell = futures[future]
            try:
                yield cell, future.result()
            except Exception as exc:
                yield cell, error_row(cell, f"worker failed: {type(exc).__name__}: {exc}")


@dataclass
class SweepOutcome:
    """What a sweep did and where its results are."""

    frame: pd.DataFrame
    path: Path
    ran: int
    reused: int
    failed: int
    skipped: int


def _specs(specs: list[Spec] | None, names: Iterable[str]) -> list[Spec]:
    return list(specs) if specs is not None else [Spec(name) for name in names]


def plan_sweep(config: SweepConfig) -> tuple[list[Cell], list[dict[str, Any]]]:
    """Every cell of the sweep (all seeds), and the rows of the skipped combinations."""
    problem_specs = _specs(config.problems, problems.registry.names())
    estimator_specs = _specs(config.estimators, estimators.registry.names())
    cells: list[Cell] = []
    skipped_rows: list[dict[str, Any]] = []
    for seed in config.seeds:
        seed_cells, skipped = plan(problem_specs, estimator_specs, config.n_samples,
                                   config.replicates, seed, config.max_memory_mb, config.device)
        cells.extend(seed_cells)
        skipped_rows.extend(skipped_row(s, config.replicates, seed) for s in skipped)
    return cells, skipped_rows


def run_sweep(
    config: SweepConfig,
    *,
    scheduler: str | None = None,
    force: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> SweepOutcome:
    """Run a sweep, resuming from stored cells, and write ``results.parquet``.

    ``on_start(total, reused)`` is called once planning is done, ``on_row(row)`` after each
    cell that ran.
    """
    started = datetime.datetime.now(datetime.UTC)
    device = resolve_device(config.device)
    cells, skipped_rows = plan_sweep(config)
    store = CellStore(config.output)
    pending = [c for c in cells if force or not store.has(c)]
    reused = len(cells) - len(pending)
    if on_start is not None:
        on_start(len(cells), reused)
    # One GPU is shared best by one process; CPU cells spread over the cores.
    jobs = config.jobs or (1 if device.type == "cuda" else os.cpu_count() or 1)
    results = (run_dask(pending, scheduler, config.cell_timeout) if scheduler
               else run_local(pending, jobs, config.cell_timeout, config.threads))
    failed = 0
    for cell, row in results:
        store.save(cell, row)
        failed += row["status"] == "error"
        if on_row is not None:
            on_row(row)
    frame = to_frame([store.load(c) for c in cells] + skipped_rows)
    record = provenance(config.resolved())
    record.update(
        started=started.isoformat(timespec="seconds"),
        finished=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        scheduler=scheduler or f"local ({jobs} processes)",
        cells=len(cells), ran=len(pending), reused=reused,
    )
    path = write_results(frame, config.output, record)
    (Path(config.output) / PROVENANCE_FILE).write_text(json.dumps(record, indent=2, default=str))
    return SweepOutcome(frame, path, len(pending), reused, failed, len(skipped_rows))
