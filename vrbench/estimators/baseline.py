"""Score-function estimator with a constant baseline fitted on independent samples."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.base import Estimator, weighted_score
from vrbench.problems.base import Problem


@register("score_function_baseline")
@dataclass(frozen=True)
class ScoreFunctionBaseline(Estimator):
    """Score function with a mean baseline: ĝ = (1/n) Σ_j (f(x_j) − b) ∇θ log p(x_j; θ).

    ``b`` is the mean of f over ``fit_samples`` draws that are independent of the measured
    ones; since ``E[∇θ log p] = 0`` and ``b`` is independent of ``x_j``, the estimator stays
    unbiased, and its variance drops when f is far from zero on average. Williams (1992)
    introduced reinforcement baselines; the choice ``b ≈ E[f]`` is the classic one (Greensmith
    et al., "Variance reduction techniques for gradient estimates in reinforcement learning",
    JMLR 2004, discuss it and the optimal alternative).
    """

    display_name = "REINFORCE, mean baseline"

    fit_samples: int = 1000

    family = "score function"
    sample_average = True
    reference = "Williams, 1992; Greensmith et al., 2004"

    def __post_init__(self) -> None:
        check(self.fit_samples >= 1, self.name, f"fit_samples={self.fit_samples} must be >= 1")

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator) -> Tensor:
        samples = problem.sample(theta, (1, self.fit_samples), generator)
        return problem.f(samples).mean()

    def estimate(
        self,
        problem: Problem,
        theta: Tensor,
        n_samples: int,
        replicates: int,
        generator: torch.Generator,
        state: Tensor | None = None,
    ) -> Tensor:
        if state is None:
            raise ValueError(f"{self.name} needs its fitted baseline: call fit() first")
        samples = problem.sample(theta, (replicates, n_samples), generator)
        return weighted_score(problem, theta, samples, problem.f(samples) - state)
