"""Cells of a sweep: one (problem, estimator, n_samples) combination with its seed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

import vrbench
from vrbench import devices, estimators, problems
from vrbench.bench.reference import ReferenceSettings
from vrbench.components import Spec
from vrbench.errors import ParameterError
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Problem

DEFAULT_MAX_MEMORY_MB = 256
"""Working memory of one cell's tensors (beyond the ~0.4 GB of Python and torch)."""


@dataclass(frozen=True)
class Cell:
    """Everything that determines one measurement; its result depends on nothing else."""

    problem: Spec
    estimator: Spec
    n_samples: int
    replicates: int
    seed: int
    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB
    device: str = "cpu"
    reference: ReferenceSettings | None = None
    """How the reference gradient is computed, for a problem without an exact gradient."""

    def definition(self) -> dict[str, object]:
        """What the cell's numbers depend on. The device is named only when it is not the CPU,
        and the reference's settings only for a problem without an exact gradient, so other
        cells keep the definition (and random streams) they had before."""
        definition: dict[str, object] = {
            "problem": self.problem.name,
            "problem_params": dict(sorted(self.problem.params.items())),
            "estimator": self.estimator.name,
            "estimator_params": dict(sorted(self.estimator.params.items())),
            "n_samples": self.n_samples,
            "replicates": self.replicates,
            "seed": self.seed,
            "max_memory_mb": self.max_memory_mb,
        }
        if self.device != "cpu":
            definition["device"] = self.device
        if self.reference is not None:
            definition["reference"] = self.reference.definition()
        return definition

    def _digest(self, salt: str) -> bytes:
        text = json.dumps(self.definition(), sort_keys=True, default=str) + salt
        return hashlib.sha256(text.encode()).digest()

    def key(self) -> str:
        """Names the cell in results and on disk: a hash of its definition and vrbench's version,
        so a new version recomputes instead of reusing stored results."""
        return self._digest(f"/vrbench {vrbench.__version__}").hex()[:16]

    def generator(self, purpose: str) -> torch.Generator:
        """An independent random stream for ``purpose`` ("measure", "fit", "warmup").

        It depends on the definition alone: not on the order of cells, the worker, the machine
        or the version of vrbench.
        """
        digest = self._digest(f"/{purpose}")
        seed = int.from_bytes(digest[:8], "little") >> 1
        return devices.generator(torch.device(self.device), seed)

    def build(self) -> tuple[Problem, Estimator]:
        return (
            problems.make(self.problem.name, self.problem.params),
            estimators.make(self.estimator.name, self.estimator.params),
        )


@dataclass(frozen=True)
class Skipped:
    """A combination that was not run, and why."""

    problem: Spec
    estimator: Spec
    n_samples: int
    reason: str


def resolve_spec(registry: Any, spec: Spec) -> tuple[Spec, Any]:
    """The component of ``spec``, and ``spec`` with its values as the component holds them, so
    that ``t="0.49"`` from the command line and ``t=0.49`` from a file name the same cell."""
    component = registry.make(spec.name, spec.params)
    canonical = {key: getattr(component, key) for key in spec.params}
    return Spec(spec.name, canonical), component


def plan(
    problem_specs: Iterable[Spec],
    estimator_specs: Iterable[Spec],
    n_samples: Iterable[int],
    replicates: int,
    seed: int,
    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB,
    device: str = "cpu",
    reference: ReferenceSettings | None = None,
) -> tuple[list[Cell], list[Skipped]]:
    """Every compatible combination as a cell, the others with the reason they are skipped.

    Every component is built here, so unknown names and bad parameters are reported before
    any work starts, and so is an n at which one estimate of a problem would not fit in the
    memory budget (a :class:`~vrbench.errors.ParameterError`). Cells of problems without an
    exact gradient carry ``reference`` (default settings when None).
    """
    from vrbench.bench.runner import chunk_size  # the runner needs cells: imported here

    built_problems = [resolve_spec(problems, s) for s in problem_specs]
    built_estimators = [resolve_spec(estimators, s) for s in estimator_specs]
    cells: list[Cell] = []
    skipped: list[Skipped] = []
    fits: set[tuple[int, int]] = set()  # (problem, n) whose one estimate fits the budget
    for index, (p_spec, problem) in enumerate(built_problems):
        for e_spec, estimator in built_estimators:
            for n in n_samples:
                reason = estimator.incompatibility(problem, n)
                if reason is not None:
                    skipped.append(Skipped(p_spec, e_spec, n, reason))
                    continue
                if (index, n) not in fits:
                    try:
                        chunk_size(problem, n, replicates, max_memory_mb)
                    except MemoryError as exc:
                        raise ParameterError(f"n_samples = {n}: {exc}") from None
                    fits.add((index, n))
                settings = None if problem.has_exact_gradient else (
                    reference or ReferenceSettings())
                cells.append(Cell(p_spec, e_spec, n, replicates, seed, max_memory_mb, device,
                                  settings))
    return cells, skipped
