"""Sweeps: plan every cell, reuse the stored ones, run the rest in parallel, store each.

Every finished cell is written at once, atomically, as one Parquet part (see
:mod:`vrbench.bench.store`); a killed sweep loses only the cells in flight, and running the
same sweep again reuses every stored part (``force`` recomputes them, ``retry_errors`` the
failed ones). Cells run in local worker processes (``jobs``) or on a Dask cluster
(``scheduler``); a cell's numbers depend only on its definition, never on where or in which
order it ran.

Two kinds of failure are kept apart. A cell whose *computation* fails (the estimator raises,
returns NaN, runs out of time) is stored with status ``error``: running it again would fail
the same way. A cell lost to the *infrastructure* (its worker process died, the scheduler
went away, the sweep was interrupted) is retried within the run up to
:data:`MAX_ATTEMPTS` times and otherwise left ``missing``, never stored, so the next run
computes it. The table and the outcome count every planned cell, so a sweep reports itself
complete only when every cell holds numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import datetime
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from vrbench import estimators, problems
from vrbench.bench.cells import Cell, plan
from vrbench.bench.config import SweepConfig
from vrbench.bench.provenance import provenance
from vrbench.bench.reference import Reference, sweep_references
from vrbench.bench.runner import cell_row, lost_row, run_cell, skipped_row
from vrbench.bench.store import (
    PARTS_DIR,
    CellStore,
    assemble,
    exclusive_output,
    missing_row,
    write_plan,
    write_table,
)
from vrbench.components import Spec
from vrbench.devices import resolve_device
from vrbench.errors import VrbenchError

__all__ = ["MAX_ATTEMPTS", "PARTS_DIR", "SweepInterrupted", "SweepOutcome", "run_sweep"]

MAX_ATTEMPTS = 3
"""Times a cell is started within one run before a lost worker leaves it ``missing``."""

CONNECT_TIMEOUT_S = 5.0
"""How long to wait for a Dask scheduler before reporting it unreachable."""

PARENT_POLL_S = 1.0


class NothingToRun(VrbenchError):
    """A sweep whose every combination is incompatible."""


class SchedulerError(VrbenchError):
    """A Dask scheduler that cannot be reached or used."""


class StoreError(VrbenchError):
    """A finished cell that could not be stored (a full disk, say); the sweep stops."""


# --- Worker processes ------------------------------------------------------------------------

def _exit_with_parent(parent: int) -> None:
    """End this worker when the sweep's process ends, however it ends (even ``kill -9``).

    On Linux the kernel sends SIGKILL the moment the parent dies (``PR_SET_PDEATHSIG``); a
    thread that watches the parent's pid covers other systems.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="vrbench-parent-watch", daemon=True).start()


def _init_worker(threads: int, parent: int) -> None:
    # Ctrl-C reaches the whole process group; the sweep's process decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent)
    torch.set_num_threads(threads)


@contextlib.contextmanager
def _worker_pool(jobs: int, threads: int) -> Iterator[ProcessPoolExecutor]:
    """A process pool whose workers are stopped, not waited for, when the block is left early."""
    context = multiprocessing.get_context("spawn")  # fork after torch has run is not safe
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                               initargs=(threads, os.getpid()))
    finished = False
    try:
        yield pool
        finished = True
    finally:
        workers = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=finished, cancel_futures=True)
        if not finished:
            for worker in workers:
                with contextlib.suppress(Exception):
                    worker.kill()
            for worker in workers:
                with contextlib.suppress(Exception):
                    worker.join(timeout=5)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")


def _cell_arguments(cell: Cell, timeout: float | None,
                    references: dict[str, Reference]) -> tuple[Any, ...]:
    """The arguments of :func:`run_cell`: the cell's reference only where one was computed
    beforehand (a problem without an exact gradient)."""
    reference = references.get(cell.key())
    return (cell, timeout) if reference is None else (cell, timeout, reference)


def run_local(cells: list[Cell], jobs: int, timeout: float | None,
              threads: int | None = None, attempts: int = MAX_ATTEMPTS,
              references: dict[str, Reference] | None = None
              ) -> Iterator[tuple[Cell, dict[str, Any]]]:
    """Run cells in ``jobs`` worker processes (in this process when ``jobs == 1``), each with
    ``threads`` torch threads (default: the cores shared out among the workers) and its
    reference from ``references`` (by cell id) where one was computed beforehand.

    Yields each cell with its row. A cell whose worker died is started again in a fresh pool,
    up to ``attempts`` times in all, then yielded as ``missing``.
    """
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    references = references or {}
    if jobs == 1 or len(cells) <= 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for cell in cells:
                yield cell, run_cell(*_cell_arguments(cell, timeout, references))
        finally:
            torch.set_num_threads(previous)
        return
    started: dict[str, int] = {}
    pending = list(cells)
    while pending:
        retry: list[Cell] = []
        with _worker_pool(min(jobs, len(pending)), threads) as pool:
            futures = {pool.submit(run_cell, *_cell_arguments(cell, timeout, references)): cell
                       for cell in pending}
            for future in as_completed(futures):
                cell = futures.pop(future)
                started[cell.key()] = started.get(cell.key(), 0) + 1
                try:
                    row = future.result()
                except Exception as exc:  # the worker died: not the cell's own failure
                    if started[cell.key()] < attempts:
                        retry.append(cell)
                        continue
                    row = lost_row(cell, f"not computed: its worker process died "
                                         f"{attempts} times ({_describe(exc)}); run the sweep "
                                         "again to compute it")
                yield cell, row
        pending = retry


def connect(scheduler: str, timeout: float = CONNECT_TIMEOUT_S) -> Any:
    """A Dask client of the scheduler at ``scheduler``, or a one-line error within ``timeout``."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise SchedulerError("--scheduler needs Dask distributed: pip install "
                             "'vrbench[dask]'") from None
    try:
        return Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise SchedulerError(f"cannot reach the Dask scheduler at {scheduler!r} within "
                             f"{timeout:g} s: {_describe(exc)}") from None


def run_dask(cells: list[Cell], client: Any, timeout: float | None,
             references: dict[str, Reference] | None = None
             ) -> Iterator[tuple[Cell, dict[str, Any]]]:
    """Run cells on the Dask cluster of ``client``, releasing each future once it is yielded
    so the cluster forgets a stored cell (and never recomputes it when a worker is lost).

    Dask restarts a task whose worker died (up to its ``allowed-failures``); a cell the
    cluster still cannot compute, or loses with the scheduler, is yielded as ``missing``.
    """
    from dask.distributed import as_completed as dask_completed

    references = references or {}
    futures = {client.submit(run_cell, *_cell_arguments(cell, timeout, references), pure=False,
                             key=f"cell-{cell.key()}"): cell for cell in cells}
    try:
        for future in dask_completed(list(futures), loop=client.loop):
            cell = futures.pop(future)
            try:
                row = future.result()
            except (Exception, asyncio.CancelledError) as exc:
                row = lost_row(cell, f"not computed: lost on the Dask cluster "
                                     f"({_describe(exc)}); run the sweep again to compute it")
            finally:
                future.release()
            yield cell, row
    finally:
        if futures:  # left early: nothing else should run for this sweep
            with contextlib.suppress(Exception):
                client.cancel(list(futures))


# --- Interruption ----------------------------------------------------------------------------

class _Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, delivered like Ctrl-C so the sweep stops the same way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into an exception in the main thread (SIGINT already is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    previous = {sig: signal.signal(sig, terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- Sweeps ----------------------------------------------------------------------------------

@dataclass
class SweepOutcome:
    """What a sweep did, and the state of its whole table."""

    frame: pd.DataFrame
    path: Path
    ran: int
    reused: int
    failed: int
    skipped: int
    interrupted: int | None = None  # the signal that stopped the sweep, if one did
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = {status: int((self.frame["status"] == status).sum())
                           for status in ("ok", "error", "missing", "skipped")}

    @property
    def complete(self) -> bool:
        """Every planned cell holds numbers or a stored error."""
        return self.counts["missing"] == 0

    @property
    def exit_code(self) -> int:
        """0: every cell ok; 1: complete, with failed cells; 3: cells missing; 128 + signal
        number: interrupted."""
        if self.interrupted is not None:
            return 128 + self.interrupted
        if not self.complete:
            return 3
        return 1 if self.counts["error"] else 0


class SweepInterrupted(VrbenchError):
    """The sweep was stopped by a signal; its stored cells and table are kept."""

    def __init__(self, outcome: SweepOutcome) -> None:
        name = signal.Signals(outcome.interrupted or signal.SIGINT).name
        super().__init__(f"interrupted by {name}")
        self.outcome = outcome


def _specs(specs: list[Spec] | None, names: Iterable[str]) -> list[Spec]:
    return list(specs) if specs is not None else [Spec(name) for name in names]


def plan_sweep(config: SweepConfig) -> tuple[list[Cell], list[dict[str, Any]]]:
    """Every cell of the sweep (all seeds), and the rows of the skipped combinations."""
    problem_specs = _specs(config.problems, [
        name for name in problems.registry.names()
        if problems.registry.get(name).in_default_sweep])
    estimator_specs = _specs(config.estimators, estimators.registry.names())
    cells: list[Cell] = []
    skipped_rows: list[dict[str, Any]] = []
    for seed in config.seeds:
        seed_cells, skipped = plan(problem_specs, estimator_specs, config.n_samples,
                                   config.replicates, seed, config.max_memory_mb, config.device,
                                   config.reference)
        cells.extend(seed_cells)
        skipped_rows.extend(skipped_row(s, config.replicates, seed) for s in skipped)
    return cells, skipped_rows


def _nothing_to_run(skipped_rows: list[dict[str, Any]]) -> NothingToRun:
    reasons = list(dict.fromkeys(row["error"] for row in skipped_rows))
    shown = "; ".join(reasons[:5]) + (f"; and {len(reasons) - 5} more" if len(reasons) > 5
                                      else "")
    return NothingToRun(f"nothing to run: all {len(skipped_rows)} combinations are "
                        f"incompatible ({shown})")


def run_sweep(
    config: SweepConfig,
    *,
    scheduler: str | None = None,
    force: bool = False,
    retry_errors: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> SweepOutcome:
    """Run a sweep, resuming from stored cells, and write ``results.parquet``.

    Everything that can be checked is checked before any cell runs: the components and their
    parameters, the device, that something is compatible, that the output directory is
    writable and no other sweep writes to it, and that the scheduler answers.
    ``on_start(total, reused)`` is called once planning is done, ``on_row(row)`` after each
    cell that ran (including ``missing`` ones). Raises :class:`SweepInterrupted` (holding the
    outcome) after SIGINT, SIGTERM or SIGHUP, once the table of what was stored is written.
    """
    started = datetime.datetime.now(datetime.UTC)
    device = resolve_device(config.device)
    cells, skipped_rows = plan_sweep(config)
    if not cells:
        raise _nothing_to_run(skipped_rows)
    with exclusive_output(config.output) as (store, lock), contextlib.ExitStack() as stack:
        client = stack.enter_context(connect(scheduler)) if scheduler else None
        planned = [missing_row(cell_row(c), "not computed yet") for c in cells] + skipped_rows
        write_plan(config.output, planned)
        stored = {} if force else store.load(cells)
        pending = [c for c in cells if c.key() not in stored
                   or (retry_errors and stored[c.key()]["status"] == "error")]
        reused = len(cells) - len(pending)
        if on_start is not None:
            on_start(len(cells), reused)
        # One GPU is shared best by one process; CPU cells spread over the cores.
        jobs = config.jobs or (1 if device.type == "cuda" else os.cpu_count() or 1)
        tally = _run_pending(pending, store, stored, config, client, jobs, on_row)
        interrupted = tally.interrupted
        reason = ("not computed: the sweep was interrupted; run it again to compute the rest"
                  if interrupted is not None else "not computed")
        frame = assemble(planned, stored, tally.lost, reason)
        record = provenance(config.resolved())
        record.update(
            started=started.isoformat(timespec="seconds"),
            finished=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            scheduler=scheduler or f"local ({jobs} processes)",
            cells=len(cells), ran=len(pending), reused=reused,
            interrupted=None if interrupted is None else signal.Signals(interrupted).name,
        )
        path = write_table(config.output, frame, record)
        lock.finish()
    outcome = SweepOutcome(frame, path, tally.computed, reused, tally.failed,
                           len(skipped_rows), interrupted)
    if interrupted is not None:
        raise SweepInterrupted(outcome)
    return outcome


@dataclass
class _Tally:
    """What one run did: cells stored, of which failed; cells lost, with why; the signal
    that interrupted it, if one did."""

    computed: int = 0
    failed: int = 0
    lost: dict[str, str] = field(default_factory=dict)
    interrupted: int | None = None


def _run_pending(pending: list[Cell], store: CellStore, stored: dict[str, dict[str, Any]],
                 config: SweepConfig, client: Any, jobs: int,
                 on_row: Callable[[dict[str, Any]], None] | None) -> _Tally:
    """Run and store the pending cells; ``stored`` gains every stored row. The reference
    gradients of problems without an exact one are computed (or read) first, once each."""
    tally = _Tally()
    try:
        with _stop_on_signals():
            references = sweep_references(pending, config.output)
    except KeyboardInterrupt as exc:
        tally.interrupted = exc.signum if isinstance(exc, _Terminated) else signal.SIGINT
        return tally
    results = (run_dask(pending, client, config.cell_timeout, references) if client is not None
               else run_local(pending, jobs, config.cell_timeout, config.threads,
                              references=references))
    try:
        with _stop_on_signals():
            for cell, row in results:
                if row["status"] == "missing":
                    tally.lost[cell.key()] = row["error"]
                else:
                    try:
                        store.save(cell, row)
                    except OSError as exc:
                        raise StoreError(
                            f"could not store a finished cell in {store.directory}: "
                            f"{exc.strerror or exc}; the {len(stored)} cells stored so far "
                            "are kept; free the space and run the sweep again to resume"
                        ) from None
                    stored[cell.key()] = row
                    tally.computed += 1
                    tally.failed += row["status"] == "error"
                if on_row is not None:
                    on_row(row)
    except KeyboardInterrupt as exc:
        tally.interrupted = exc.signum if isinstance(exc, _Terminated) else signal.SIGINT
    finally:
        results.close()  # stops the workers when the loop was left early
    return tally
