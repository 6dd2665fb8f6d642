"""Score function with the variance-minimizing constant baseline, per coordinate."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Problem


@register("score_function_optimal_baseline")
@dataclass(frozen=True)
class ScoreFunctionOptimalBaseline(Estimator):
    """Score function with the optimal constant baseline for each coordinate of θ.

    ``ĝ_i = (1/n) Σ_j (f(x_j) − b_i) s_i(x_j)`` with ``s = ∇θ log p`` and
    ``b_i = E[f s_i²] / E[s_i²]``, the constant minimizing the variance of coordinate ``i``
    (Greensmith, Bartlett & Baxter, "Variance reduction techniques for gradient estimates in
    reinforcement learning", JMLR 2004; Mohamed et al., JMLR 2020, section 7.4). Fitted on
    ``fit_samples`` independent draws, so the estimator stays unbiased.
    """

    display_name = "REINFORCE, optimal baseline"

    fit_samples: int = 2000

    family = "score function"
    sample_average = True
    reference = "Greensmith et al., 2004"

    def __post_init__(self) -> None:
        check(self.fit_samples >= 1, self.name, f"fit_samples={self.fit_samples} must be >= 1")

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator) -> Tensor:
        samples = problem.sample(theta, (1, self.fit_samples), generator)
        values, scores = problem.f(samples)[0], problem.score(theta, samples)[0]
        second = (scores**2).sum(dim=0)
        return torch.where(second > 0, (values[:, None] * scores**2).sum(0) / second, 0.0)

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Tensor | None = None) -> Tensor:
        if state is None:
            raise ValueError(f"{self.name} needs its fitted baseline: call fit() first")
        samples = problem.sample(theta, (replicates, n_samples), generator)
        scores = problem.score(theta, samples)
        return ((problem.f(samples)[..., None] - state) * scores).mean(dim=1)
