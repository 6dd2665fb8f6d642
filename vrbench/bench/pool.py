"""Worker processes for a local sweep, watched cell by cell from the sweep's process.

Each worker is a process of its own that computes one cell at a time, sent to it over a
pipe, so the sweep's process always knows which cell each worker holds. That is what lets a
failure cost only its own cell:

- a worker that **dies** (a component calls ``os._exit``, segfaults, or the out-of-memory
  killer ends it) is replaced, and its cell is run again alone, with no other cell beside
  it; if it dies again, the cell is recorded as an error naming the signal or exit code;
- a worker that **overruns** ``cell_timeout`` without stopping itself (a component that
  blocks signals or waits inside C code) is killed at the limit plus :data:`KILL_GRACE_S`,
  its cell recorded as timed out, and a fresh worker started;
- a worker that is **stopped** (SIGSTOP) is not charged for the time it spends stopped;
  stopped longer than its patience, it is killed and its cell given to a fresh worker,
  never recorded as an error unless the same happens when it runs alone.

Every other cell is computed as if nothing had happened: a cell's numbers depend only on
its definition, never on the worker or the order.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any

from vrbench.bench.cells import Cell
from vrbench.bench.runner import CellTimeout, cell_row, lost_row, prepare_worker, run_cell

if TYPE_CHECKING:
    from vrbench.bench.reference import Reference

KILL_GRACE_S = 2.0
"""Seconds past ``cell_timeout`` a worker may take to stop a cell itself before it is killed."""

STOPPED_PATIENCE_S = 30.0
"""Seconds a stopped worker is waited for (at most ``cell_timeout``) before it is replaced."""

START_FAILURES = 3
"""Workers in a row that may die before they are ready before the sweep gives up on them."""

TICK_S = 0.25
"""How often the sweep's process looks at its workers when no row arrives."""

MAX_CREDIT_S = 2.0
"""Most seconds one look may add to a cell's running time: if the sweep's own process was
not running for longer (stopped with its workers by Ctrl-Z, say), that time is not counted."""

PARENT_POLL_S = 1.0

WORKER_NAME = "vrbench-worker"
"""The name worker processes go by (``ps -o comm``, ``top``)."""


def _context() -> Any:
    """Where workers come from: a fork server that has imported torch and vrbench once, so a
    worker (or its replacement) starts in milliseconds and shares those pages; else fresh
    interpreters (``spawn``). Never a fork of the sweep's process: forking after torch has
    run is unsafe."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["vrbench.bench.pool", "vrbench.estimators",
                                        "vrbench.problems", "scipy.stats"])
        return context
    return multiprocessing.get_context("spawn")


# --- In the worker ---------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_with_parent(parent: int) -> None:
    """End this worker when the sweep's process ends, however it ends (even ``kill -9``).

    On Linux the kernel sends SIGKILL the moment the worker's parent dies
    (``PR_SET_PDEATHSIG``): the sweep's process, or the fork server that forked the worker,
    which ends with it. A thread that watches the sweep's pid covers other systems.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if not _alive(parent):  # the sweep ended before the line above
        os._exit(1)

    def watch() -> None:
        while _alive(parent):
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="vrbench-parent-watch", daemon=True).start()


def _serve(connection: Connection, threads: int, parent: int, environ: dict[str, str]) -> None:
    """A worker's life: say it is ready, then compute each cell it is sent until told to stop.

    What cells need is imported before the worker says it is ready, so a cell's time limit
    never counts the imports.
    """
    import torch

    # Ctrl-C reaches the whole process group; the sweep's process decides what happens.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent(parent)
    os.environ.clear()  # the sweep's, not that of the fork server it was forked from
    os.environ.update(environ)
    with contextlib.suppress(OSError, AttributeError):  # "vrbench-worker" in ps -o comm, top
        ctypes.CDLL(None).prctl(15, WORKER_NAME.encode(), 0, 0, 0)  # 15 = PR_SET_NAME
    torch.set_num_threads(threads)
    prepare_worker()
    connection.send(("ready", os.getpid()))
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        cell, timeout, reference = task
        arguments = (cell, timeout) if reference is None else (cell, timeout, reference)
        connection.send(("row", run_cell(*arguments)))


# --- In the sweep's process ------------------------------------------------------------------

def is_stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped by a signal (SIGSTOP, SIGTSTP); False where the
    system does not say (no ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return False
    return text[text.rfind(b")") + 2:][:1] == b"T"


def describe_exit(exitcode: int | None) -> str:
    """How a process ended, in words: ``signal 11, SIGSEGV`` or ``exit code 1``."""
    if exitcode is None:
        return "an unknown cause"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        text = f"signal {-exitcode}, {name}"
        if -exitcode == signal.SIGKILL:
            text += ": the out-of-memory killer, or kill -9"
        return text
    return f"exit code {exitcode}"


@dataclass
class _Worker:
    """One worker process, what it holds and how long it has run and been stopped."""

    process: Any
    connection: Connection
    ready: bool = False
    cell: Cell | None = None
    alone: bool = False  # the cell runs with no other beside it (a retry)
    running_s: float = 0.0  # time the cell has run while the worker was not stopped
    stopped_s: float = 0.0  # time the worker has been seen stopped, in a row
    was_stopped: bool = False  # seen stopped while it held this cell

    def send(self, cell: Cell, timeout: float | None, alone: bool,
             reference: Reference | None = None) -> None:
        self.connection.send((cell, timeout, reference))
        self.cell, self.alone = cell, alone
        self.running_s = self.stopped_s = 0.0
        self.was_stopped = False

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
        with contextlib.suppress(Exception):
            self.process.join(timeout=5)
        with contextlib.suppress(Exception):
            self.connection.close()


@dataclass
class _Faults:
    """Why each cell had to be taken from its worker, counted per cell."""

    deaths: dict[str, int] = field(default_factory=dict)
    stops: dict[str, int] = field(default_factory=dict)


class WorkerPool:
    """``jobs`` worker processes, each with ``threads`` torch threads, and the cells they hold.

    :meth:`run` yields each cell with its row as cells finish; see the module's docstring for
    what happens to a cell whose worker dies, overruns or is stopped.
    """

    def __init__(self, jobs: int, threads: int, timeout: float | None,
                 attempts: int = 3, references: dict[str, Reference] | None = None) -> None:
        self.jobs = jobs
        self.threads = threads
        self.timeout = timeout
        self.references = references or {}  # cell id: the reference gradient it is held against
        self.attempts = attempts
        self.patience = STOPPED_PATIENCE_S if timeout is None else min(timeout,
                                                                       STOPPED_PATIENCE_S)
        self._context = _context()
        self._workers: list[_Worker] = []
        self._start_failures = 0
        self._last_exit: int | None = None

    # -- workers --

    def _start(self) -> None:
        ours, theirs = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_serve, args=(theirs, self.threads, os.getpid(), dict(os.environ)),
            name=WORKER_NAME, daemon=True)
        process.start()
        theirs.close()
        self._workers.append(_Worker(process, ours))

    def _remove(self, worker: _Worker) -> None:
        worker.kill()
        self._workers.remove(worker)

    def close(self, wait_for_them: bool) -> None:
        """Stop every worker: asked to finish when ``wait_for_them``, else killed at once."""
        if wait_for_them:
            for worker in self._workers:
                with contextlib.suppress(Exception):
                    worker.connection.send(None)
            deadline = time.monotonic() + 5
            for worker in self._workers:
                with contextlib.suppress(Exception):
                    worker.process.join(timeout=max(0.0, deadline - time.monotonic()))
        for worker in self._workers:
            worker.kill()
        self._workers.clear()

    # -- the loop --

    def run(self, cells: list[Cell]) -> Iterator[tuple[Cell, dict[str, Any]]]:
        """Compute ``cells``; yield each with its row (``ok``, ``error`` or ``missing``)."""
        queue: deque[Cell] = deque(cells)
        again: deque[Cell] = deque()  # cells taken from a worker, to run again alone
        faults = _Faults()
        finished = False
        try:
            last = time.monotonic()
            while queue or again or any(w.cell is not None for w in self._workers):
                wanted = min(self.jobs, len(queue) + len(again)
                             + sum(w.cell is not None for w in self._workers))
                while len(self._workers) < wanted:
                    self._start()
                self._dispatch(queue, again)
                busy = [w for w in self._workers if w.cell is not None or not w.ready]
                ready = wait([w.connection for w in busy] + [w.process.sentinel for w in busy],
                             timeout=TICK_S)
                for worker in list(self._workers):
                    if worker.connection in ready:
                        yield from self._receive(worker, again, faults)
                for worker in list(self._workers):
                    if worker in self._workers and worker.process.sentinel in ready \
                            and not worker.process.is_alive():
                        yield from self._died(worker, again, faults)
                now = time.monotonic()
                yield from self._watch(min(now - last, MAX_CREDIT_S), again, faults)
                last = now
                if self._start_failures >= START_FAILURES:
                    yield from self._give_up(queue, again)
            finished = True
        finally:
            self.close(wait_for_them=finished)

    def _dispatch(self, queue: deque[Cell], again: deque[Cell]) -> None:
        """Send cells to idle workers; a cell to run again waits until it can run alone.

        A worker that died between cells (killed after it had sent its last row) holds no
        cell, so nothing waits on it: it is removed here, and the loop starts another.
        """
        for worker in [w for w in self._workers if w.cell is None and w.ready
                       and not w.process.is_alive()]:
            self._remove(worker)
        idle = [w for w in self._workers
                if w.ready and w.cell is None and not is_stopped(w.process.pid)]
        running = any(w.cell is not None for w in self._workers)
        if again:
            if not running and idle:
                self._send(idle[0], again, alone=True)
            return
        for worker in idle:
            if not queue:
                break
            self._send(worker, queue, alone=False)

    def _send(self, worker: _Worker, cells: deque[Cell], alone: bool) -> None:
        """Send the first of ``cells`` to ``worker``; if it died since it was seen alive, the
        cell stays first in line and the worker is removed."""
        cell = cells.popleft()
        try:
            worker.send(cell, self.timeout, alone=alone,
                        reference=self.references.get(cell.key()))
        except OSError:  # BrokenPipeError, ConnectionResetError: the cell never reached it
            cells.appendleft(cell)
            self._remove(worker)

    def _receive(self, worker: _Worker, again: deque[Cell], faults: _Faults
                 ) -> Iterator[tuple[Cell, dict[str, Any]]]:
        try:
            kind, payload = worker.connection.recv()
        except (EOFError, OSError):
            return  # it died while sending: its sentinel says so
        if kind == "ready":
            worker.ready = True
            self._start_failures = 0
            return
        cell, stopped = worker.cell, worker.was_stopped
        assert cell is not None
        worker.cell = None
        timed_out = payload["status"] == "error" and payload["error"].startswith(
            CellTimeout.__name__)
        if timed_out and stopped:
            # Its clock ran while it was stopped: not the cell's own doing.
            yield from self._stopped(cell, worker.alone, again, faults)
            return
        yield cell, payload

    def _died(self, worker: _Worker, again: deque[Cell], faults: _Faults
              ) -> Iterator[tuple[Cell, dict[str, Any]]]:
        cell, alone, exitcode = worker.cell, worker.alone, worker.process.exitcode
        if not worker.ready:
            self._start_failures += 1
            self._last_exit = exitcode
        self._remove(worker)
        if cell is None:
            return
        key = cell.key()
        faults.deaths[key] = faults.deaths.get(key, 0) + 1
        if alone and faults.deaths[key] >= 2:
            yield cell, error_row(
                cell, f"WorkerDied: its worker process died ({describe_exit(exitcode)}) while "
                      "computing this cell, also when it ran alone")
        else:
            again.append(cell)

    def _stopped(self, cell: Cell, alone: bool, again: deque[Cell], faults: _Faults
                 ) -> Iterator[tuple[Cell, dict[str, Any]]]:
        key = cell.key()
        faults.stops[key] = faults.stops.get(key, 0) + 1
        if alone and faults.stops[key] >= 2:
            yield cell, error_row(
                cell, "WorkerStopped: its worker process was stopped (SIGSTOP) while "
                      "computing this cell, also when it ran alone")
        elif faults.stops[key] >= self.attempts:
            yield cell, lost_row(cell, f"not computed: its worker process was stopped "
                                       f"{faults.stops[key]} times; run the sweep again to "
                                       "compute it")
        else:
            again.append(cell)

    def _watch(self, elapsed: float, again: deque[Cell], faults: _Faults
               ) -> Iterator[tuple[Cell, dict[str, Any]]]:
        """Charge running time to the cells, and act on workers stopped or overrunning."""
        for worker in list(self._workers):
            if is_stopped(worker.process.pid):
                worker.stopped_s += elapsed
                worker.was_stopped |= worker.cell is not None
                if worker.stopped_s > self.patience:
                    cell, alone = worker.cell, worker.alone
                    self._remove(worker)
                    if cell is not None:
                        yield from self._stopped(cell, alone, again, faults)
                continue
            worker.stopped_s = 0.0
            if worker.cell is None:
                continue
            worker.running_s += elapsed
            if self.timeout is not None and worker.running_s > self.timeout + KILL_GRACE_S:
                cell = worker.cell
                self._remove(worker)
                yield cell, error_row(
                    cell, f"CellTimeout: cell exceeded the time limit of {self.timeout:g} s "
                          "(its worker did not stop at the limit and was killed)")

    def _give_up(self, queue: deque[Cell], again: deque[Cell]
                 ) -> Iterator[tuple[Cell, dict[str, Any]]]:
        """Workers die as they start (a plugin that crashes on import, say): every cell left
        is missing, with the reason."""
        reason = (f"not computed: {START_FAILURES} worker processes in a row died as they "
                  f"started ({describe_exit(self._last_exit)}); run vrbench list to see "
                  "plugins that fail to load, then run the sweep again")
        while again or queue:
            cell = again.popleft() if again else queue.popleft()
            yield cell, lost_row(cell, reason)


def error_row(cell: Cell, message: str) -> dict[str, Any]:
    """The row of a cell whose computation failed in a way its worker could not report."""
    return {**cell_row(cell), "status": "error", "error": message}
