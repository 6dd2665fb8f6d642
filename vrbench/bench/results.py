"""The results table: its columns and statuses, and reading and writing it as Parquet."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

import vrbench
from vrbench.errors import VrbenchError

RESULTS_FILE = "results.parquet"

SCHEMA_VERSION = 3
"""Version of the table's layout, stored in its metadata. 1: vrbench 0.1; 2: adds the
``missing`` status and the per-coordinate columns; 3: adds the reference and
parameter-group columns. Older tables are read as they are (their
columns are a subset); newer ones are refused."""

COLUMNS: dict[str, str] = {
    "problem": "string",
    "estimator": "string",
    "n_samples": "int64",
    "replicates": "int64",
    "seed": "int64",
    "dim": "Int64",
    "true_grad_norm": "float64",
    "bias_norm": "float64",
    "bias_pvalue": "float64",
    "variance": "float64",
    "variance_ci_low": "float64",
    "variance_ci_high": "float64",
    "mse": "float64",
    "time_per_estimate_s": "float64",
    "status": "string",
    "error": "string",
    # Beyond the required columns:
    "family": "string",
    "unbiased_claim": "boolean",
    "f_evals": "Int64",
    "value": "float64",
    "snr": "float64",
    "cosine": "float64",
    "mean_cosine": "float64",
    "fit_time_s": "float64",
    "device": "string",
    "problem_params": "string",
    "estimator_params": "string",
    "cell_id": "string",
    "traceback": "string",
    # Per coordinate of θ (lists of length dim), summing to the trace columns above:
    "true_grad": "object",
    "coordinate_bias": "object",
    "coordinate_variance": "object",
    "coordinate_variance_ci_low": "object",
    "coordinate_variance_ci_high": "object",
    # The variance computed without sampling, where it can be (else empty):
    "exact_variance": "float64",
    "exact_coordinate_variance": "object",
    # The ground truth the cell was measured against (see vrbench.bench.reference): "exact",
    # or a reference with the standard error of its gradient (‖se‖₂) and of J:
    "reference": "string",
    "reference_se": "float64",
    "reference_estimates": "Int64",
    "reference_seconds": "float64",
    "value_se": "float64",
    # Per parameter group of θ (lists, one entry per group, in the order of parameter_groups);
    # the only per-coordinate summaries of a θ with more than 10,000 entries, whose
    # per-coordinate columns above are then empty:
    "parameter_groups": "object",
    "group_true_grad_norm": "object",
    "group_bias_norm": "object",
    "group_variance": "object",
    "group_reference_se": "object",
}
"""Every column of a results table and its pandas dtype, in order."""

STATUSES = ("ok", "error", "missing", "skipped")
"""``ok``: measured. ``error``: the computation failed (the estimator or problem raised,
returned non-finite numbers or exceeded the time limit); deterministic, so stored and kept.
``missing``: not computed, because a worker or the scheduler was lost or the sweep was
interrupted; running the sweep again computes it. ``skipped``: the estimator does not apply
to the problem at that n (the reason is in ``error``)."""

STORED_STATUSES = ("ok", "error")
"""The statuses of a finished cell, the only ones stored as cell parts."""

REQUIRED_COLUMNS = tuple(COLUMNS)[: list(COLUMNS).index("error") + 1]
"""Columns every results table has had since the first vrbench; a table without one of them
is refused, naming it. Later columns are added empty when an older table lacks them."""


OK_FINITE = ("true_grad_norm", "bias_norm", "variance", "mse", "cosine", "value",
             "time_per_estimate_s", "fit_time_s")
"""Columns a measured cell (status ``ok``) always holds as finite numbers."""

OK_VECTORS = ("true_grad", "coordinate_bias", "coordinate_variance")
"""Per-coordinate columns a measured cell holds as ``dim`` finite numbers."""

NAME_LISTS = ("parameter_groups",)
"""List columns that hold names (one per parameter group) rather than numbers."""

IDENTITY = ("problem", "estimator", "n_samples", "replicates", "seed", "status", "error",
            "device", "problem_params", "estimator_params", "cell_id")
"""Columns a stored cell never leaves empty."""


def _type_error(column: str, dtype: str, value: Any) -> str | None:
    """What is wrong with ``value`` as an entry of ``column`` (pandas ``dtype``), or None."""
    if value is None:
        return f"empty {column!r}" if column in IDENTITY else None
    if dtype == "string":
        fits = isinstance(value, str)
    elif dtype in ("int64", "Int64"):
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif dtype == "float64":
        fits = isinstance(value, int | float) and not isinstance(value, bool)
    elif dtype == "boolean":
        fits = isinstance(value, bool)
    elif column in NAME_LISTS:
        fits = isinstance(value, list) and all(isinstance(x, str) for x in value)
    else:  # lists of numbers, one per coordinate or parameter group
        fits = isinstance(value, list) and all(
            x is None or (isinstance(x, int | float) and not isinstance(x, bool))
            for x in value)
    return None if fits else f"{column!r} = {str(value)[:40]!r} is not of type {dtype}"


def stored_row_error(row: Mapping[str, Any]) -> str | None:
    """Why ``row`` cannot be a finished cell of a results table, or None if it can.

    Every column is there with its type, the identifying columns are filled, and a cell
    measured ``ok`` holds finite numbers: its metrics (:data:`OK_FINITE`) and ``dim`` of them
    per coordinate (:data:`OK_VECTORS`). A file can parse and still fail this: columns
    dropped or retyped by hand or by another tool.
    """
    absent = [column for column in COLUMNS if column not in row]
    if absent:
        return f"has no {', '.join(repr(c) for c in absent[:5])} column" + (
            f" (and {len(absent) - 5} more)" if len(absent) > 5 else "")
    for column, dtype in COLUMNS.items():
        problem = _type_error(column, dtype, row[column])
        if problem is not None:
            return f"has {problem}"
    if row["status"] not in STORED_STATUSES:
        return f"has status {row['status']!r}, expected one of {', '.join(STORED_STATUSES)}"
    if row["status"] != "ok":
        return None if row["error"] else "has status 'error' without a message"
    bad = [c for c in OK_FINITE if row[c] is None or not math.isfinite(row[c])]
    if bad:
        return f"has status 'ok' without finite {', '.join(repr(c) for c in bad)}"
    dim = row["dim"]
    if not isinstance(dim, int) or dim < 1:
        return f"has status 'ok' with dim = {dim!r}"
    for column in OK_VECTORS:
        values = row[column]
        if values is None or len(values) != dim or not all(
                x is not None and math.isfinite(x) for x in values):
            return f"has status 'ok' without {dim} finite numbers in {column!r}"
    return None


class ResultsError(VrbenchError):
    """A results table that is absent, unreadable, or not in a layout this vrbench reads."""


class NoResults(ResultsError):
    """A path that holds no results table at all."""


def to_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Rows (dicts) as a results table with every column, in order, with its dtype."""
    frame = pd.DataFrame(list(rows))
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    frame = frame[list(COLUMNS)].astype(COLUMNS)
    frame["error"] = frame["error"].fillna("")
    return frame


def write_results(
    frame: pd.DataFrame, directory: str | os.PathLike[str], metadata: Mapping[str, Any]
) -> Path:
    """Write ``directory/results.parquet`` atomically, with ``metadata`` as JSON in the footer."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    record = {**dict(metadata), "schema_version": SCHEMA_VERSION}
    schema_meta[b"vrbench"] = json.dumps(record, default=str).encode()
    table = table.replace_schema_metadata(schema_meta)
    target = directory / RESULTS_FILE
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".results-", suffix=".tmp")
    os.close(handle)
    try:
        pq.write_table(table, temporary)
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return target


def read_table(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read one results (or plan) Parquet file and its metadata, checking its layout.

    Raises :class:`ResultsError` naming the file and what is wrong: not Parquet, written by
    a newer vrbench, missing required columns, or unknown statuses. Optional columns that
    the file lacks (it may come from an older vrbench) are added empty.
    """
    path = Path(path)
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise NoResults(f"no results at {path}: no such file") from None
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise ResultsError(f"{path} is not a readable Parquet file: {exc}") from None
    raw = (table.schema.metadata or {}).get(b"vrbench", b"{}")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        meta = {}
    version = meta.get("schema_version", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ResultsError(
            f"{path} was written by vrbench {meta.get('vrbench_version', '?')} with table "
            f"layout {version}; this vrbench ({vrbench.__version__}) reads layouts up to "
            f"{SCHEMA_VERSION}: upgrade vrbench to read it")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise ResultsError(f"{path} is not a vrbench results table: it has no "
                           f"{', '.join(repr(c) for c in missing)} column")
    frame = table.to_pandas()
    unknown = sorted(set(frame["status"].dropna()) - set(STATUSES))
    if unknown or frame["status"].isna().any():
        shown = unknown or ["(empty)"]
        raise ResultsError(f"{path}: unknown status {', '.join(map(str, shown))}; valid "
                           f"statuses: {', '.join(STATUSES)}")
    try:
        return to_frame(frame.to_dict("records")), meta
    except (ValueError, TypeError) as exc:
        raise ResultsError(f"{path}: a column does not have its expected type: {exc}") from None
