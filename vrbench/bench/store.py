"""A sweep's output directory: one durable part per cell, the plan, a lock and the table.

::

    OUTPUT/
      cells/<cell id>.parquet   one finished cell (status ok or error), written atomically
      cells/unreadable/         parts that could not be read or do not fit the table's schema,
                                moved aside (and recomputed)
      plan.parquet              every row the latest sweep planned: its cells and skipped pairs
      results.parquet           the table: the plan with every stored cell filled in
      provenance.json           versions, revision, host, times and the configuration
      .vrbench.lock             held by the sweep writing here; says whether it finished

The table is always the plan with the stored cells filled in; a planned cell without a
stored part is a row with status ``missing``. So whatever happened to a sweep (a killed
worker, a lost scheduler, an interrupted run, a corrupt part), the table says exactly which
cells hold numbers. Parts are only ever replaced whole (write to a temporary file, then
rename), so a part on disk is either complete or absent.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pyarrow.parquet as pq

from vrbench.bench.cells import Cell
from vrbench.bench.results import (
    RESULTS_FILE,
    STORED_STATUSES,
    NoResults,
    read_table,
    stored_row_error,
    to_frame,
    write_results,
)
from vrbench.errors import VrbenchError

PARTS_DIR = "cells"
UNREADABLE_DIR = "unreadable"
PLAN_FILE = "plan.parquet"
LOCK_FILE = ".vrbench.lock"
TEMPORARY_SUFFIX = ".tmp"
LOCK_ATTEMPTS = 5


class StoreWarning(UserWarning):
    """Something in an output directory was repaired or could not be used as it was."""


class OutputError(VrbenchError):
    """An output directory that cannot be written, or that another sweep is writing."""


class StoreError(VrbenchError):
    """Something a sweep had to write could not be written (a full disk, say); the sweep
    stops, keeping every cell stored so far."""


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The frame's rows as dicts (``to_dict("records")``), keyed by its column names."""
    # pandas-stubs types the keys as any hashable label; a results table's are strings.
    return cast(list[dict[str, Any]], frame.to_dict("records"))


def write_atomically(target: Path, write: Any) -> None:
    """``write(temporary_path)``, then rename it onto ``target`` (atomic on POSIX)."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".",
                                         suffix=TEMPORARY_SUFFIX)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


class CellStore:
    """One durable Parquet part per finished cell, checked when read."""

    def __init__(self, output: str | os.PathLike[str]) -> None:
        self.output = Path(output)
        self.directory = self.output / PARTS_DIR

    def path(self, cell: Cell) -> Path:
        return self.directory / f"{cell.key()}.parquet"

    def prepare(self) -> None:
        """Create the directory and prove it writable, before any work is done."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            handle, probe = tempfile.mkstemp(dir=self.directory, prefix=".probe-",
                                             suffix=TEMPORARY_SUFFIX)
            os.close(handle)
            os.remove(probe)
        except OSError as exc:
            raise OutputError(f"cannot write to the output directory {self.output}: "
                              f"{exc.strerror or exc}") from None

    def remove_temporaries(self) -> int:
        """Delete the temporary files that interrupted writes left behind, among the cells
        and beside the table (``.results-*.tmp``, ``.plan*.tmp``); how many."""
        removed = 0
        leftovers = [*self.directory.glob(f".*{TEMPORARY_SUFFIX}"),
                     *self.directory.glob(f"tmp*{TEMPORARY_SUFFIX}"),  # older vrbench
                     *self.output.glob(f".*{TEMPORARY_SUFFIX}")]
        for leftover in leftovers:
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                leftover.unlink()
                removed += 1
        return removed

    def read(self, path: Path) -> dict[str, Any]:
        """The row stored at ``path``; raises ``ValueError`` when it is not a valid part: not
        Parquet, not one row, another cell's, or not fitting the table's schema (see
        :func:`~vrbench.bench.results.stored_row_error`)."""
        try:
            rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several types for damaged files
            raise ValueError(f"not a readable Parquet file ({type(exc).__name__}: {exc})"
                             ) from None
        if len(rows) != 1:
            raise ValueError(f"holds {len(rows)} rows, expected 1")
        row = rows[0]
        if row.get("cell_id") != path.stem:
            raise ValueError(f"holds cell {row.get('cell_id')!r}, expected {path.stem!r}")
        if row.get("status") not in STORED_STATUSES:
            raise ValueError(f"has status {row.get('status')!r}, expected one of "
                             f"{', '.join(STORED_STATUSES)}")
        problem = stored_row_error(row)
        if problem is not None:
            raise ValueError(problem)
        return row

    def read_cell(self, cell: Cell) -> dict[str, Any]:
        """The row stored for ``cell``, checked as :meth:`read` does and against the cell's
        definition; raises ``ValueError`` when it does not fit."""
        row = self.read(self.path(cell))
        mismatch = _mismatch(row, {"problem": str(cell.problem),
                                   "estimator": str(cell.estimator),
                                   "n_samples": cell.n_samples, "replicates": cell.replicates,
                                   "seed": cell.seed, "device": cell.device})
        if mismatch is not None:
            raise ValueError(mismatch)
        return row

    def load(self, cells: Iterable[Cell], repair: bool = True) -> dict[str, dict[str, Any]]:
        """The stored row of every cell that has a valid part, by cell id.

        A part that cannot be read is reported with a :class:`StoreWarning` and, with
        ``repair``, moved to ``cells/unreadable/`` so the cell is computed again.
        """
        stored: dict[str, dict[str, Any]] = {}
        for cell in cells:
            path = self.path(cell)
            if not path.exists():
                continue
            try:
                stored[cell.key()] = self.read_cell(cell)
            except ValueError as exc:
                if repair:
                    try:
                        moved = f"moved it to {self._move_aside(path)}"
                    except OSError as error:
                        moved = f"could not move it aside ({error.strerror or error})"
                    warnings.warn(f"stored cell {path} {exc}; {moved} and will compute the "
                                  "cell again", StoreWarning, stacklevel=2)
                else:
                    warnings.warn(f"stored cell {path} {exc}; it counts as missing",
                                  StoreWarning, stacklevel=2)
        return stored

    def _move_aside(self, path: Path) -> Path:
        target_dir = self.directory / UNREADABLE_DIR
        target_dir.mkdir(exist_ok=True)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%f")
        target = target_dir / f"{path.stem}-{stamp}{path.suffix}"
        os.replace(path, target)
        return target

    def save(self, cell: Cell, row: Mapping[str, Any]) -> None:
        """Store a finished cell (status ``ok`` or ``error``) atomically."""
        if row["status"] not in STORED_STATUSES:
            raise ValueError(f"only finished cells are stored, not status {row['status']!r}")
        frame = to_frame([row])
        write_atomically(self.path(cell), lambda tmp: frame.to_parquet(tmp, index=False))


DEFINING = ("problem", "estimator", "n_samples", "replicates", "seed", "device")
"""The columns of a stored row that its cell's definition fixes."""


def _mismatch(row: Mapping[str, Any], expected: Mapping[str, Any]) -> str | None:
    """How a stored row differs from what its cell defines (:data:`DEFINING`), or None."""
    for column in DEFINING:
        if column in expected and row.get(column) != expected[column]:
            return f"holds {column} = {row.get(column)!r}, but its cell has {expected[column]!r}"
    return None


class OutputLock:
    """Exclusive use of an output directory by one sweep, and whether that sweep finished.

    The lock is an ``flock`` on ``OUTPUT/.vrbench.lock``: the operating system releases it
    when its holder exits, however it exits, so a killed sweep never blocks the next one.
    The file's content records the holder and its state (``running`` until the sweep has
    written its table, then ``finished``), which tells readers whether ``results.parquet``
    is current.
    """

    def __init__(self, output: str | os.PathLike[str]) -> None:
        self.path = Path(output) / LOCK_FILE
        self._handle: int | None = None

    def __enter__(self) -> OutputLock:
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        for attempt in range(LOCK_ATTEMPTS):  # a reader holds it for microseconds at most
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt + 1 < LOCK_ATTEMPTS:
                    time.sleep(0.05)
        else:
            os.close(handle)
            holder = lock_state(self.path.parent)
            who = (f"pid {holder.get('pid')} on {holder.get('host')}, started "
                   f"{holder.get('started')}" if holder else "another process")
            raise OutputError(
                f"another vrbench sweep ({who}) is writing to {self.path.parent}; wait for it "
                "to finish (this command then reuses its cells) or choose another --output"
            ) from None
        self._handle = handle
        try:
            self._write("running")
        except OSError as exc:
            self.__exit__()
            raise StoreError(f"could not write the lock file {self.path}: "
                             f"{exc.strerror or exc}; nothing was computed; free the space "
                             "and run the same command again") from None
        return self

    def _write(self, state: str) -> None:
        assert self._handle is not None
        record = {"state": state, "pid": os.getpid(), "host": platform.node(),
                  "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        os.ftruncate(self._handle, 0)
        os.pwrite(self._handle, json.dumps(record).encode(), 0)
        os.fsync(self._handle)

    def finish(self) -> None:
        """Record that the table in this directory is complete for the sweep that ran."""
        self._write("finished")

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            os.close(self._handle)  # closing releases the flock
            self._handle = None


def lock_state(output: str | os.PathLike[str]) -> dict[str, Any]:
    """The last sweep's record from the lock file (``{}`` if none), with ``active`` telling
    whether that sweep still holds the lock."""
    path = Path(output) / LOCK_FILE
    try:
        handle = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return {}
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            active = False
        except BlockingIOError:
            active = True
        raw = os.read(handle, 4096)
    finally:
        os.close(handle)
    try:
        record = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        record = {}
    return {**record, "active": active} if record else ({"active": True} if active else {})


def write_plan(output: str | os.PathLike[str], rows: list[dict[str, Any]]) -> None:
    """Store the rows a sweep planned (identity columns; skipped rows whole)."""
    frame = to_frame(rows)
    target = Path(output) / PLAN_FILE
    write_atomically(target, lambda tmp: frame.to_parquet(tmp, index=False))


def missing_row(planned: Mapping[str, Any], reason: str) -> dict[str, Any]:
    """A planned cell that holds no numbers, and why."""
    return {**planned, "status": "missing", "error": reason}


def assemble(planned: Iterable[Mapping[str, Any]], stored: Mapping[str, Mapping[str, Any]],
             reasons: Mapping[str, str], default_reason: str) -> pd.DataFrame:
    """The table: each planned cell's stored row, or a ``missing`` row with its reason
    (``reasons`` by cell id, else ``default_reason``); skipped rows as planned."""
    rows = []
    for row in planned:
        key = row.get("cell_id")
        if row.get("status") == "skipped" or not isinstance(key, str):
            rows.append(dict(row))
        elif key in stored:
            rows.append(dict(stored[key]))
        else:
            rows.append(missing_row(row, reasons.get(key, default_reason)))
    return to_frame(rows)


def _stored_rows(directory: Path) -> dict[str, dict[str, Any]]:
    store = CellStore(directory)
    rows: dict[str, dict[str, Any]] = {}
    for path in sorted(store.directory.glob("*.parquet")):
        try:
            rows[path.stem] = store.read(path)
        except ValueError as exc:
            warnings.warn(f"stored cell {path} {exc}; it counts as missing", StoreWarning,
                          stacklevel=3)
    return rows


def read_results(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a results table (an output directory or a ``.parquet`` file) and its metadata.

    For a directory whose sweep is still running or was interrupted before writing its table,
    the table is assembled from the plan and the cells stored so far (``missing`` rows for
    the rest), with ``partial`` and ``state`` in the metadata: a stale ``results.parquet``
    is never returned in its place. Reading never changes the directory.
    """
    path = Path(path)
    if not path.exists():
        raise NoResults(f"no results at {path}: no such file or directory")
    if not path.is_dir():
        return read_table(path)
    state = lock_state(path)
    results = path / RESULTS_FILE
    if results.exists() and state.get("state", "finished") == "finished" \
            and not state.get("active"):
        return read_table(results)
    stored = _stored_rows(path)
    running = bool(state.get("active"))
    meta: dict[str, Any] = {"partial": True, "source": str(path),
                            "state": "running" if running else "interrupted"}
    plan = path / PLAN_FILE
    if plan.exists():
        planned, _ = read_table(plan)
        for row in frame_records(planned):
            key = row["cell_id"]  # read_table gives every row every column
            mismatch = _mismatch(stored[key], row) if key in stored else None
            if mismatch is not None:
                warnings.warn(f"stored cell {CellStore(path).directory / f'{key}.parquet'} "
                              f"{mismatch}; it counts as missing", StoreWarning, stacklevel=2)
                del stored[key]
        reason = ("not computed yet: the sweep writing here is still running" if running else
                  "not computed: the sweep writing here was interrupted; run it again to "
                  "compute the rest")
        return assemble(frame_records(planned), stored, {}, reason), meta
    if stored:
        return to_frame(list(stored.values())), meta
    raise NoResults(f"no results at {path}: it holds no {RESULTS_FILE}, no {PLAN_FILE} "
                       f"and no stored cells under {PARTS_DIR}/")


@contextlib.contextmanager
def exclusive_output(output: str | os.PathLike[str]) -> Iterator[tuple[CellStore, OutputLock]]:
    """Prepare ``output`` (writable, locked, temporaries cleaned) for one sweep."""
    store = CellStore(output)
    store.prepare()
    with OutputLock(output) as lock:
        store.remove_temporaries()
        yield store, lock


def write_table(output: str | os.PathLike[str], frame: pd.DataFrame,
                metadata: Mapping[str, Any]) -> Path:
    """Write ``results.parquet`` and ``provenance.json`` for a sweep."""
    path = write_results(frame, output, metadata)
    target = Path(output) / "provenance.json"
    text = json.dumps(dict(metadata), indent=2, default=str)
    write_atomically(target, lambda tmp: Path(tmp).write_text(text))
    return path
