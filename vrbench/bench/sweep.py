"""Sweeps: plan every cell, reuse the stored ones, run the rest in parallel, store each.

Every finished cell is written at once, atomically, as one Parquet part (see
:mod:`vrbench.bench.store`); a killed sweep loses only the cells in flight, and running the
same sweep again reuses every stored part (``force`` recomputes them, ``retry_errors`` the
failed ones). Cells run in local worker processes (``jobs``, see :mod:`vrbench.bench.pool`)
or on a Dask cluster (``scheduler``); a cell's numbers depend only on its definition, never
on where or in which order it ran.

Two kinds of failure are kept apart. A cell whose *computation* fails (the estimator raises,
returns NaN, runs out of time, kills its worker process each time it runs) is stored with
status ``error``: running it again would fail the same way. A cell lost to the
*infrastructure* (its worker was stopped, the scheduler went away, the sweep was
interrupted) is retried within the run up to :data:`MAX_ATTEMPTS` times and otherwise left
``missing``, never stored, so the next run computes it. The table and the outcome count
every planned cell, so a sweep reports itself complete only when every cell holds numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from vrbench import estimators, problems
from vrbench.bench.cells import Cell, plan
from vrbench.bench.config import CONFIRM_CELLS, SweepConfig
from vrbench.bench.pool import KILL_GRACE_S, WorkerPool, error_row, is_stopped
from vrbench.bench.provenance import provenance
from vrbench.bench.reference import Reference, sweep_references
from vrbench.bench.results import RESULTS_FILE
from vrbench.bench.runner import cell_row, lost_row, prepare_worker, run_cell, skipped_row
from vrbench.bench.store import (
    PARTS_DIR,
    CellStore,
    StoreError,
    assemble,
    exclusive_output,
    missing_row,
    write_plan,
    write_table,
)
from vrbench.components import Spec
from vrbench.devices import resolve_device
from vrbench.errors import VrbenchError

__all__ = ["CONFIRM_CELLS", "MAX_ATTEMPTS", "PARTS_DIR", "PlanTooLarge", "StoreError",
           "SweepInterrupted", "SweepOutcome", "run_sweep"]

MAX_ATTEMPTS = 3
"""Times a cell is started within one run before the infrastructure (a stopped worker, a
cluster that loses it) leaves it ``missing``."""

CONNECT_TIMEOUT_S = 5.0
"""How long to wait for a Dask scheduler before reporting it unreachable."""


class NothingToRun(VrbenchError):
    """A sweep whose every combination is incompatible."""


class SchedulerError(VrbenchError):
    """A Dask scheduler that cannot be reached or used."""


# --- Running cells --------------------------------------------------------------------------

def run_local(cells: list[Cell], jobs: int, timeout: float | None,
              threads: int | None = None, attempts: int = MAX_ATTEMPTS,
              in_process: bool = False, references: dict[str, Reference] | None = None
              ) -> Generator[tuple[Cell, dict[str, Any]], None, None]:
    """Run cells in ``jobs`` worker processes, each with ``threads`` torch threads (default:
    the cores shared out among the workers) and its reference from ``references`` (by cell
    id) where one was computed beforehand, and yield each cell with its row.

    A worker that dies, overruns ``timeout`` or is stopped costs only the cell it holds (see
    :mod:`vrbench.bench.pool`). ``in_process`` runs the cells one by one in this process
    instead, for debuggers and profilers: a component that crashes or hangs then stops the
    sweep, and the time limit holds only where SIGALRM can interrupt the cell.
    """
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    if not in_process:
        yield from WorkerPool(jobs, threads, timeout, attempts, references).run(cells)
        return
    references = references or {}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for cell in cells:
            yield cell, run_cell(*_cell_arguments(cell, timeout, references.get(cell.key())))
    finally:
        torch.set_num_threads(previous)


def _cell_arguments(cell: Cell, timeout: float | None, reference: Reference | None
                    ) -> tuple[Any, ...]:
    """The arguments of :func:`run_cell`: the reference only where one was computed
    beforehand (a problem without an exact gradient), so that a stand-in for run_cell with
    the two-argument form still serves every other cell."""
    return (cell, timeout) if reference is None else (cell, timeout, reference)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")


def _plausible_address(scheduler: str) -> bool:
    """Whether ``scheduler`` looks like a Dask address: ``tcp://HOST:PORT`` (or another
    protocol), ``HOST:PORT``, or a scheduler file's path ending in ``.json``."""
    if scheduler.endswith(".json"):
        return True
    rest = scheduler.split("://", 1)[1] if "://" in scheduler else scheduler
    host, _, port = rest.rpartition(":")
    return bool(host) and port.isdigit() and not any(c.isspace() for c in scheduler)


def check_scheduler(scheduler: str | None) -> None:
    """Refuse an address that cannot be a Dask scheduler's (an empty one included)."""
    if scheduler is None:
        return
    if not scheduler.strip():
        raise SchedulerError("--scheduler is empty: give the address of a Dask scheduler, "
                             "tcp://HOST:PORT, or leave the option out to run on this machine")
    if not _plausible_address(scheduler):
        raise SchedulerError(f"--scheduler {scheduler!r} is not a Dask scheduler address: give "
                             "tcp://HOST:PORT (or HOST:PORT), or leave the option out to run "
                             "on this machine")


def connect(scheduler: str, timeout: float = CONNECT_TIMEOUT_S) -> Any:
    """A Dask client of the scheduler at ``scheduler``, or a one-line error within ``timeout``."""
    check_scheduler(scheduler)
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


DASK_TOPIC = "vrbench-cell"
"""The event topic on which a Dask task says that its cell started, and on which worker."""


def _tell(cell: Cell, event: str) -> None:
    with contextlib.suppress(Exception):  # outside a worker (tests), nothing to tell
        from distributed import get_worker

        worker = get_worker()
        worker.log_event(DASK_TOPIC, {"cell": cell.key(), "worker": worker.address,
                                      "event": event, "host": socket.gethostname(),
                                      "pid": os.getpid()})


def run_cell_on_dask(cell: Cell, timeout: float | None,
                     reference: Reference | None = None) -> dict[str, Any]:
    """:func:`run_cell` on a Dask worker (against ``reference`` where one was computed
    beforehand), telling the sweep when the cell starts there and when it is done, so that its
    time limit counts from its start (after the imports) and a death of that worker while it
    runs is charged to it."""
    prepare_worker()
    _tell(cell, "start")
    time.sleep(EVENT_FLUSH_S)  # lets the worker send it before the cell can kill the process
    row = run_cell(*_cell_arguments(cell, timeout, reference))
    _tell(cell, "done")
    return row


EVENT_FLUSH_S = 0.05
"""A pause after a task says it started: its worker sends events every few milliseconds."""

WORKER_SILENCE_S = 10.0
"""A Dask worker on another machine not heard from for this long at a cell's time limit is
taken to be stopped: its cell is not charged with the time and runs again. (On this machine,
the worker's process says whether it is stopped.)"""

RESTART_TIMEOUT_S = 30.0
"""How long the restart of a Dask worker whose cell overran may take."""


class _DaskCells:
    """The futures of a sweep's cells on a Dask cluster, when and where each started."""

    def __init__(self, client: Any, timeout: float | None,
                 references: dict[str, Reference] | None = None) -> None:
        from dask.distributed import as_completed as dask_completed

        self.client = client
        self.timeout = timeout
        self.references = references or {}  # cell id: its reference gradient
        self.cells: dict[Any, Cell] = {}
        self.tries: dict[str, int] = {}
        self.started: dict[str, tuple[float, dict[str, Any]]] = {}  # cell id: (time, where)
        self.unfinished: dict[str, int] = {}  # cell id: runs of its task that did not finish
        self.after_restart: queue.SimpleQueue[Cell] = queue.SimpleQueue()
        self.restarting = 0  # cells handed to restarts, not yet submitted again
        self.restarts: list[threading.Thread] = []
        self.completed = dask_completed(loop=client.loop)
        client.subscribe_topic(DASK_TOPIC, self._on_event)

    def _on_event(self, event: tuple[float, dict[str, str]]) -> None:
        key, what = event[1]["cell"], event[1].get("event", "start")
        if what == "start":
            self.started[key] = (time.monotonic(), event[1])
            self.unfinished[key] = self.unfinished.get(key, 0) + 1
        else:
            self.started.pop(key, None)
            self.unfinished[key] = self.unfinished.get(key, 0) - 1

    @property
    def pending(self) -> bool:
        return bool(self.cells) or self.restarting > 0

    def submit(self, cell: Cell) -> None:
        key = cell.key()
        self.tries[key] = self.tries.get(key, 0) + 1
        self.started.pop(key, None)
        self.unfinished.pop(key, None)
        name = f"cell-{key}" + (f"-try{self.tries[key]}" if self.tries[key] > 1 else "")
        future = self.client.submit(run_cell_on_dask, cell, self.timeout,
                                    self.references.get(key), pure=False, key=name)
        self.cells[future] = cell
        self.completed.add(future)

    def submit_restarted(self) -> None:
        """Submit again the cells whose stopped worker has been restarted."""
        while not self.after_restart.empty():
            self.restarting -= 1
            self.submit(self.after_restart.get())

    def release(self, future: Any) -> Cell:
        cell = self.cells.pop(future)
        with contextlib.suppress(Exception):
            future.release()
        return cell

    def close(self) -> None:
        deadline = time.monotonic() + 5  # a restart goes on without the sweep
        for thread in self.restarts:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(Exception):
            self.client.unsubscribe_topic(DASK_TOPIC)
        if self.cells:  # left early: nothing else should run for this sweep
            with contextlib.suppress(Exception):
                self.client.cancel(list(self.cells))

    def overrunning(self) -> list[tuple[Any, dict[str, Any]]]:
        """The futures whose cell has run past its limit, with where it runs (the worker's
        address, host and pid)."""
        if self.timeout is None:
            return []
        now = time.monotonic()
        late = []
        for future, cell in self.cells.items():
            started = self.started.get(cell.key())
            if started is not None and now - started[0] > self.timeout + KILL_GRACE_S:
                late.append((future, started[1]))
        return late

    def state(self, where: dict[str, Any]) -> str:
        """``gone`` (the worker is no longer in the cluster: it died or was restarted),
        ``stopped`` (its process is stopped, or a worker elsewhere has not been heard from for
        :data:`WORKER_SILENCE_S`) or ``running``."""
        try:
            info = self.client.scheduler_info()["workers"].get(where["worker"])
        except Exception:
            return "running"
        if info is None:
            return "gone"
        if where.get("host") == socket.gethostname() and isinstance(where.get("pid"), int):
            return "stopped" if is_stopped(where["pid"]) else "running"
        last_seen = info.get("last_seen", info.get("last-seen"))
        silent = last_seen is not None and time.time() - last_seen > WORKER_SILENCE_S
        return "stopped" if silent else "running"

    def restart(self, worker: str, then: Cell | None = None) -> None:
        """Restart ``worker`` through its nanny, ending the task stuck on it, or, where it has
        no nanny, retire it (abandoned: the scheduler gives it nothing more); then submit
        ``then`` again. In a thread of its own, so that the other cells' results keep coming
        meanwhile."""

        def restart() -> None:
            try:
                status = self.client.restart_workers([worker], timeout=RESTART_TIMEOUT_S,
                                                     raise_for_error=False)
                if status.get(worker) != "OK":
                    self.client.retire_workers([worker], close_workers=True, remove=True)
            except Exception:  # the cluster decides; the sweep goes on
                pass
            finally:
                if then is not None:
                    self.after_restart.put(then)

        self.restarting += then is not None
        thread = threading.Thread(target=restart, name="vrbench-restart", daemon=True)
        thread.start()
        self.restarts.append(thread)


def run_dask(cells: list[Cell], client: Any, timeout: float | None,
             attempts: int = MAX_ATTEMPTS, references: dict[str, Reference] | None = None
             ) -> Generator[tuple[Cell, dict[str, Any]], None, None]:
    """Run cells on the Dask cluster of ``client``, releasing each future once it is yielded
    so the cluster forgets a stored cell (and never recomputes it when a worker is lost).

    A cell that runs past ``timeout`` (counted from when it started on its worker) is
    recorded as timed out, its task cancelled and its worker restarted, unless the worker
    was stopped (or, elsewhere, stopped answering): then the cell runs again once the worker is
    restarted. Dask restarts a task whose worker died (up to its ``allowed-failures``); a
    cell that was running on every worker that died is recorded as an error, one lost beside
    it is submitted again (up to ``attempts`` times), and one lost with the scheduler is
    ``missing``.
    """
    run = _DaskCells(client, timeout, references)
    try:
        for cell in cells:
            run.submit(cell)
        while run.pending:
            run.submit_restarted()
            batch = run.completed.next_batch(block=False)
            if not batch:
                for future, where in run.overrunning():
                    yield from _overran(run, future, where, attempts)
                time.sleep(0.1)
                continue
            for future in batch:
                if future in run.cells:  # else cancelled after it overran
                    yield from _finished(run, future, attempts)
    finally:
        run.close()


def _overran(run: _DaskCells, future: Any, where: dict[str, Any], attempts: int
             ) -> Iterator[tuple[Cell, dict[str, Any]]]:
    state, worker = run.state(where), where["worker"]
    if state == "gone":  # its worker died: Dask runs the task again, and it says when
        run.started.pop(run.cells[future].key(), None)
        return
    cell = run.release(future)
    with contextlib.suppress(Exception):
        future.cancel()
    if state == "running":
        run.restart(worker)
        yield cell, error_row(cell, f"CellTimeout: cell exceeded the time limit of "
                                    f"{run.timeout:g} s (its Dask task was cancelled and its "
                                    "worker restarted)")
    elif run.tries[cell.key()] < attempts:
        run.restart(worker, then=cell)
    else:
        run.restart(worker)
        yield cell, lost_row(cell, f"not computed: its Dask worker was stopped "
                                   f"{attempts} times; run the sweep again to compute it")


def _finished(run: _DaskCells, future: Any, attempts: int
              ) -> Iterator[tuple[Cell, dict[str, Any]]]:
    key = run.cells[future].key()
    try:
        row = future.result()
    except (Exception, asyncio.CancelledError) as exc:
        cell = run.release(future)
        if type(exc).__name__ == "KilledWorker":
            deaths = getattr(exc, "allowed_failures", 0) + 1
            if run.unfinished.get(key, 0) >= deaths:  # running each time a worker died
                yield cell, error_row(cell, f"WorkerDied: each of the {deaths} Dask workers "
                                            "that ran this cell died while computing it")
                return
            if run.tries[key] < attempts:  # lost beside a cell that killed its workers
                run.submit(cell)
                return
            # Its workers died each of the times it was submitted: it kills them, whether or
            # not its start reached the sweep before they did.
            yield cell, error_row(cell, f"WorkerDied: the Dask workers that ran this cell "
                                        f"died each of the {attempts} times it was submitted "
                                        f"({deaths} deaths each time)")
            return
        yield cell, lost_row(cell, f"not computed: lost on the Dask cluster "
                                   f"({_describe(exc)}); run the sweep again to compute it")
        return
    yield run.release(future), row


# --- Interruption ----------------------------------------------------------------------------

class _Terminated(KeyboardInterrupt):
    """SIGINT, SIGTERM or SIGHUP, delivered like Ctrl-C so the sweep stops the same way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _StopSignals:
    """SIGINT, SIGTERM and SIGHUP stop a sweep once, and only while its cells run.

    The first signal while :attr:`armed` raises :class:`_Terminated` in the main thread;
    every other one (a second Ctrl-C, a signal while the plan is stored or the table written)
    is only noted, so that the sweep always ends by writing its table and releasing its lock.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: list[int] = []
        self.armed = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            # A signal the sweep was started to ignore (nohup, a background job) stays ignored.
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS
                              if signal.getsignal(sig) is not signal.SIG_IGN}
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.received.append(signum)
        if self.armed and len(self.received) == 1:
            self.armed = False
            raise _Terminated(signum)

    @property
    def first(self) -> int | None:
        return self.received[0] if self.received else None

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
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


MAX_COMBINATIONS = 1_000_000
"""Most (problem, estimator, n, seed) combinations a sweep may plan at all."""


class PlanTooLarge(VrbenchError):
    """A sweep that plans more cells than it may without confirmation, or more than it may."""


def _check_size(config: SweepConfig, problem_specs: list[Spec],
                estimator_specs: list[Spec]) -> None:
    sizes = (len(problem_specs), len(estimator_specs), len(config.n_samples), len(config.seeds))
    combinations = sizes[0] * sizes[1] * sizes[2] * sizes[3]
    if combinations > MAX_COMBINATIONS:
        raise PlanTooLarge(
            f"the sweep has {combinations:,} combinations ({sizes[0]:,} problems × "
            f"{sizes[1]:,} estimators × {sizes[2]:,} n × {sizes[3]:,} seeds), more than "
            f"the {MAX_COMBINATIONS:,} a sweep may plan; split it into several sweeps")


def plan_sweep(config: SweepConfig, confirmed: bool = True
               ) -> tuple[list[Cell], list[dict[str, Any]]]:
    """Every cell of the sweep (all seeds), and the rows of the skipped combinations.

    Refuses (:class:`PlanTooLarge`) more than :data:`MAX_COMBINATIONS` combinations, and,
    unless ``confirmed``, more than :data:`CONFIRM_CELLS` cells.
    """
    problem_specs = _specs(config.problems, [
        name for name in problems.registry.names()
        if problems.registry.get(name).in_default_sweep])
    estimator_specs = _specs(config.estimators, estimators.registry.names())
    _check_size(config, problem_specs, estimator_specs)
    cells: list[Cell] = []
    skipped_rows: list[dict[str, Any]] = []
    for seed in config.seeds:
        seed_cells, skipped = plan(problem_specs, estimator_specs, config.n_samples,
                                   config.replicates, seed, config.max_memory_mb, config.device,
                                   config.reference)
        cells.extend(seed_cells)
        skipped_rows.extend(skipped_row(s, config.replicates, seed) for s in skipped)
    if len(cells) > CONFIRM_CELLS and not confirmed:
        raise PlanTooLarge(
            f"the sweep plans {len(cells):,} cells, more than {CONFIRM_CELLS:,}: check the "
            "grids and lists of estimators, problems, n and seeds, and add --yes (confirmed="
            "True in Python) to run it")
    keys: dict[str, Cell] = {}
    for cell in cells:
        twin = keys.setdefault(cell.key(), cell)
        if twin is not cell:
            raise VrbenchError(f"the sweep plans the cell {cell.estimator} on {cell.problem} "
                               f"at n={cell.n_samples}, seed {cell.seed} twice: list each "
                               "problem, estimator, n and seed once")
    return cells, skipped_rows


def _nothing_to_run(skipped_rows: list[dict[str, Any]]) -> NothingToRun:
    reasons = list(dict.fromkeys(row["error"] for row in skipped_rows))
    shown = "; ".join(reasons[:5]) + (f"; and {len(reasons) - 5} more" if len(reasons) > 5
                                      else "")
    return NothingToRun(f"nothing to run: all {len(skipped_rows)} combinations are "
                        f"incompatible ({shown})")


@dataclass(frozen=True)
class PlanSummary:
    """What a sweep would do: its cells, the skipped combinations, the cells already stored."""

    cells: int
    skipped: int
    stored: int


def summarize_plan(config: SweepConfig, scheduler: str | None = None) -> PlanSummary:
    """Check and plan a sweep as :func:`run_sweep` does, and count what it would compute,
    without running anything or writing anything (a dry run)."""
    resolve_device(config.device)
    check_scheduler(scheduler)
    cells, skipped_rows = plan_sweep(config)
    if not cells:
        raise _nothing_to_run(skipped_rows)
    store = CellStore(config.output)
    stored = store.load(cells, repair=False) if store.directory.is_dir() else {}
    return PlanSummary(len(cells), len(skipped_rows), len(stored))


def run_sweep(
    config: SweepConfig,
    *,
    scheduler: str | None = None,
    force: bool = False,
    retry_errors: bool = False,
    confirmed: bool = False,
    in_process: bool = False,
    on_start: Callable[[int, int], None] | None = None,
    on_row: Callable[[dict[str, Any]], None] | None = None,
) -> SweepOutcome:
    """Run a sweep, resuming from stored cells, and write ``results.parquet``.

    Everything that can be checked is checked before any cell runs: the components and their
    parameters, the device, that something is compatible, the size of the plan (more than
    :data:`CONFIRM_CELLS` cells need ``confirmed``), that the output directory is writable and
    no other sweep writes to it, and that the scheduler answers. ``in_process`` runs the
    cells in this process instead of worker processes (see :func:`run_local`).
    ``on_start(total, reused)`` is called once planning is done, ``on_row(row)`` after each
    cell that ran (including ``missing`` ones). Raises :class:`SweepInterrupted` (holding the
    outcome) after SIGINT, SIGTERM or SIGHUP, once the table of what was stored is written,
    and :class:`StoreError` when the output cannot be written (a full disk).
    """
    started = datetime.datetime.now(datetime.UTC)
    device = resolve_device(config.device)
    check_scheduler(scheduler)
    cells, skipped_rows = plan_sweep(config, confirmed)
    if not cells:
        raise _nothing_to_run(skipped_rows)
    with _StopSignals() as signals, exclusive_output(config.output) as (store, lock), \
            contextlib.ExitStack() as stack:
        client = stack.enter_context(connect(scheduler)) if scheduler is not None else None
        planned = [missing_row(cell_row(c), "not computed yet") for c in cells] + skipped_rows
        _written(lambda: write_plan(config.output, planned), f"the plan of the sweep in "
                 f"{config.output}", "nothing was computed")
        stored = {} if force else store.load(cells)
        pending = [c for c in cells if c.key() not in stored
                   or (retry_errors and stored[c.key()]["status"] == "error")]
        reused = len(cells) - len(pending)
        if on_start is not None:
            on_start(len(cells), reused)
        # One GPU is shared best by one process; CPU cells spread over the cores.
        jobs = config.jobs or (1 if device.type == "cuda" else os.cpu_count() or 1)
        tally = _run_pending(pending, store, stored,
                             _Execution(config, client, jobs, in_process, on_row), signals)
        interrupted = signals.first
        reason = ("not computed: the sweep was interrupted; run it again to compute the rest"
                  if interrupted is not None else "not computed")
        frame = assemble(planned, stored, tally.lost, reason)
        record = provenance(config.resolved())
        record.update(
            started=started.isoformat(timespec="seconds"),
            finished=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            scheduler=scheduler or ("this process" if in_process
                                    else f"local ({jobs} processes)"),
            cells=len(cells), ran=len(pending), reused=reused,
            interrupted=None if interrupted is None else signal.Signals(interrupted).name,
        )
        path = _written(lambda: write_table(config.output, frame, record),
                        f"the table {Path(config.output) / RESULTS_FILE}",
                        f"the {len(stored)} finished cells are stored under "
                        f"{store.directory}")
        _written(lock.finish, f"the lock file in {config.output}", "the table is written")
    outcome = SweepOutcome(frame, path, tally.computed, reused, tally.failed,
                           len(skipped_rows), interrupted)
    if interrupted is not None:
        raise SweepInterrupted(outcome)
    return outcome


def _written(write: Callable[[], Any], what: str, kept: str) -> Any:
    """``write()``, with an ``OSError`` (a full disk) turned into a :class:`StoreError`."""
    try:
        return write()
    except OSError as exc:
        raise StoreError(f"could not write {what}: {exc.strerror or exc}; {kept}; free "
                         "the space and run the same command again to resume") from None


@dataclass
class _Tally:
    """What one run did: cells stored, of which failed; cells lost, with why."""

    computed: int = 0
    failed: int = 0
    lost: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Execution:
    """Where a sweep's cells run: on a Dask ``client``, else in ``jobs`` local worker
    processes (or in this process), and what is told of each finished row."""

    config: SweepConfig
    client: Any
    jobs: int
    in_process: bool
    on_row: Callable[[dict[str, Any]], None] | None


def _run_pending(pending: list[Cell], store: CellStore, stored: dict[str, dict[str, Any]],
                 execution: _Execution, signals: _StopSignals) -> _Tally:
    """Run and store the pending cells; ``stored`` gains every stored row. The reference
    gradients of problems without an exact one are computed (or read) first, once each.
    Nothing runs when a signal came while the sweep was being prepared."""
    config, client, on_row = execution.config, execution.client, execution.on_row
    tally = _Tally()
    if signals.received:
        return tally
    try:
        signals.armed = True
        references = sweep_references(pending, config.output)
    except KeyboardInterrupt:
        if not signals.received:  # not ours: a KeyboardInterrupt raised some other way
            raise
        return tally
    finally:
        signals.armed = False
    if signals.received:
        return tally
    results = (run_dask(pending, client, config.cell_timeout, references=references)
               if client is not None
               else run_local(pending, execution.jobs, config.cell_timeout, config.threads,
                              in_process=execution.in_process, references=references))
    try:
        signals.armed = True
        for cell, row in results:
            if row["status"] == "missing":
                tally.lost[cell.key()] = row["error"]
            else:
                _written(functools.partial(store.save, cell, row),
                         f"a finished cell to {store.path(cell)}",
                         f"the {len(stored)} cells stored so far are kept")
                stored[cell.key()] = row
                tally.computed += 1
                tally.failed += row["status"] == "error"
            if on_row is not None:
                on_row(row)
    except KeyboardInterrupt:
        if not signals.received:  # not ours: a KeyboardInterrupt raised some other way
            raise
    finally:
        signals.armed = False
        results.close()  # stops the workers when the loop was left early
    return tally
