"""Training runs that resume like sweeps: each finished run stored, each running one
checkpointed.

``vrbench train`` (and a recipe's training) is a list of runs
(:class:`~vrbench.bench.train.Run`, planned by :class:`~vrbench.bench.train.TrainPlan`), one
per (problem, estimator, seed), or per (problem, driver, seed) for shared runs. Each finished
run's rows are written at once, atomically, to ``OUTPUT/runs/<key>.parquet``, the key a hash
of everything its numbers depend on (the problem, the estimators, the seed, the settings and
the vrbench version), and running the same command again reuses it. A run in progress saves
its state (θ, the optimizers, the random generators and its rows so far) to
``OUTPUT/runs/<key>.ckpt`` at a measurement step at most every :data:`CHECKPOINT_SECONDS`, and
a rerun resumes from there with the numbers an uninterrupted run would have had: a 10⁶-step
GPU run survives a lost machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from vrbench.bench.reference import ReferenceStore
from vrbench.bench.store import frame_records, write_atomically
from vrbench.bench.train import Run, shared_run, train

RUNS_DIR = "runs"
CHECKPOINT_SECONDS = 60.0
"""Least time between two checkpoints of a run."""


class FileCheckpoint:
    """A run's state in one file, replaced atomically (see :class:`~vrbench.bench.train.
    Checkpoint`)."""

    def __init__(self, path: Path, seconds: float = CHECKPOINT_SECONDS) -> None:
        self.path, self.seconds = path, seconds
        self.last = time.monotonic()

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=False)  # type: ignore[no-any-return]
        except Exception:  # a damaged checkpoint: the run starts over
            return None

    def due(self) -> bool:
        return time.monotonic() - self.last >= self.seconds

    def save(self, state: dict[str, Any]) -> None:
        _atomic(self.path, lambda target: torch.save(state, target))
        self.last = time.monotonic()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, write)


class RunStore:
    """Finished runs and checkpoints under ``OUTPUT/runs``."""

    def __init__(self, output: str | os.PathLike[str],
                 checkpoint_seconds: float = CHECKPOINT_SECONDS) -> None:
        self.directory = Path(output) / RUNS_DIR
        self.references = ReferenceStore(output)
        self.checkpoint_seconds = checkpoint_seconds

    def finished(self, run: Run) -> list[dict[str, Any]] | None:
        path = self.directory / f"{run.key()}.parquet"
        if not path.exists():
            return None
        try:
            return frame_records(pd.read_parquet(path))
        except Exception:  # unreadable: computed again
            return None

    def run(self, run: Run) -> list[dict[str, Any]]:
        """The run's rows: stored, or computed (resuming from its checkpoint) and stored."""
        rows = self.finished(run)
        if rows is not None:
            return rows
        checkpoint = FileCheckpoint(self.directory / f"{run.key()}.ckpt",
                                    self.checkpoint_seconds)
        if run.measured is None:
            rows = train(run.problem, run.estimator, run.seed, run.settings, self.references,
                         checkpoint)
        else:
            rows = shared_run(run.problem, run.estimator, list(run.measured), run.seed,
                              run.settings, self.references, checkpoint)
        frame = pd.DataFrame(rows)
        _atomic(self.directory / f"{run.key()}.parquet",
                lambda target: frame.to_parquet(target, index=False))
        checkpoint.remove()
        return self.finished(run) or rows


def run_all(runs: Iterable[Run], output: str | os.PathLike[str],
            on_run: Callable[[Run], None] = lambda run: None) -> pd.DataFrame:
    """Every run's rows (each stored or resumed, see the module), in order."""
    store = RunStore(output)
    rows: list[dict[str, Any]] = []
    for run in runs:
        on_run(run)
        rows.extend(store.run(run))
    return pd.DataFrame(rows)
