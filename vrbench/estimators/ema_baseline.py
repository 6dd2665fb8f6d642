"""Score function with an exponential-moving-average baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.base import Estimator, weighted_score
from vrbench.problems.base import Problem


@register("score_function_ema_baseline")
@dataclass(frozen=True)
class ScoreFunctionEMABaseline(Estimator):
    """Score function with an exponential-moving-average baseline of f.

    ``b ← β b + (1 − β) mean f(batch)`` over ``fit_batches`` batches of ``batch_size``
    independent draws, the running baseline of policy-gradient training (Williams, 1992;
    Sutton & Barto, 2018, section 13.4), fitted here before measurement so that it is
    independent of the measured draws: ``ĝ = (1/n) Σ_j (f(x_j) − b) ∇θ log p(x_j; θ)`` stays
    unbiased.
    """

    display_name = "REINFORCE, EMA baseline"
    parameter_symbols: ClassVar = {"decay": "β"}

    decay: float = 0.9
    fit_batches: int = 50
    batch_size: int = 16

    family = "score function"
    sample_average = True
    reference = "Williams, 1992"

    def __post_init__(self) -> None:
        check(0.0 <= self.decay < 1.0, self.name, f"decay={self.decay} must lie in [0, 1)")
        check(self.fit_batches >= 1 and self.batch_size >= 1, self.name,
              "fit_batches and batch_size must be >= 1")

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator) -> Tensor:
        batches = problem.f(problem.sample(theta, (self.fit_batches, self.batch_size),
                                           generator)).mean(dim=1)
        weights = (1 - self.decay) * self.decay ** torch.arange(
            self.fit_batches - 1, -1, -1, dtype=batches.dtype)
        return (weights * batches).sum() / weights.sum()  # bias-corrected, as in Adam

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Tensor | None = None) -> Tensor:
        if state is None:
            raise ValueError(f"{self.name} needs its fitted baseline: call fit() first")
        samples = problem.sample(theta, (replicates, n_samples), generator)
        return weighted_score(problem, theta, samples, problem.f(samples) - state)
