"""The results table: its columns, and reading and writing it as Parquet."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

RESULTS_FILE = "results.parquet"

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
    "fit_time_s": "float64",
    "device": "string",
    "problem_params": "string",
    "estimator_params": "string",
    "cell_id": "string",
    "traceback": "string",
}
"""Every column of a results table and its pandas dtype, in order."""

STATUSES = ("ok", "skipped", "error")


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
    schema_meta[b"vrbench"] = json.dumps(dict(metadata), default=str).encode()
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


def read_results(path: str | os.PathLike[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a results table (a directory or a ``.parquet`` file) and its metadata.

    A directory without ``results.parquet`` but with stored cells (a sweep still running, or
    killed) gives the cells finished so far, with ``{"partial": True}`` as metadata.
    """
    path = Path(path)
    if path.is_dir():
        parts = sorted((path / "cells").glob("*.parquet"))
        if not (path / RESULTS_FILE).exists() and parts:
            rows = [row for part in parts for row in pq.read_table(part).to_pylist()]
            return to_frame(rows), {"partial": True, "source": str(path)}
        path = path / RESULTS_FILE
    if not path.exists():
        raise FileNotFoundError(f"no results at {path}")
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(b"vrbench", b"{}")
    return to_frame(table.to_pandas().to_dict("records")), json.loads(raw)
