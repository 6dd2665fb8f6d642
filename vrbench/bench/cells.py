"""Cells of a sweep: one (problem, estimator, n_samples) combination with its seed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from vrbench import estimators, problems
from vrbench.components import Spec
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Problem


@dataclass(frozen=True)
class Cell:
    """Everything that determines one measurement; its result depends on nothing else."""

    problem: Spec
    estimator: Spec
    n_samples: int
    replicates: int
    seed: int

    def definition(self) -> dict[str, object]:
        return {
            "problem": self.problem.name,
            "problem_params": dict(sorted(self.problem.params.items())),
            "estimator": self.estimator.name,
            "estimator_params": dict(sorted(self.estimator.params.items())),
            "n_samples": self.n_samples,
            "replicates": self.replicates,
            "seed": self.seed,
        }

    def key(self) -> str:
        """A stable hash of the definition (it names the cell in results)."""
        text = json.dumps(self.definition(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def generator(self, purpose: str) -> torch.Generator:
        """An independent random stream for ``purpose`` ("measure", "fit", "warmup")."""
        digest = hashlib.sha256(f"{self.key()}/{purpose}".encode()).digest()
        return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)

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


def plan(
    problem_specs: Iterable[Spec],
    estimator_specs: Iterable[Spec],
    n_samples: Iterable[int],
    replicates: int,
    seed: int,
) -> tuple[list[Cell], list[Skipped]]:
    """Every compatible combination as a cell, the others with the reason they are skipped.

    Every component is built here, so unknown names and bad parameters are reported before
    any work starts.
    """
    built_problems = [(s, problems.make(s.name, s.params)) for s in problem_specs]
    built_estimators = [(s, estimators.make(s.name, s.params)) for s in estimator_specs]
    cells: list[Cell] = []
    skipped: list[Skipped] = []
    for p_spec, problem in built_problems:
        for e_spec, estimator in built_estimators:
            for n in n_samples:
                reason = estimator.incompatibility(problem, n)
                if reason is None:
                    cells.append(Cell(p_spec, e_spec, n, replicates, seed))
                else:
                    skipped.append(Skipped(p_spec, e_spec, n, reason))
    return cells, skipped
