"""A score-function estimator whose baseline is the median of f."""

from dataclasses import dataclass

import torch
from torch import Tensor

from vrbench.estimators import Estimator, weighted_score
from vrbench.problems import Problem


@dataclass(frozen=True)
class MedianBaseline(Estimator):
    """Score function with a median baseline: ĝ = (1/n) Σ_j (f(x_j) − b) ∇θ log p(x_j; θ).

    ``b`` is the median of f over ``fit_samples`` independent draws. Any baseline independent
    of the measured draws keeps the estimator unbiased, since the score has mean zero
    (Williams, 1992); the median is robust to heavy-tailed rewards.
    """

    fit_samples: int = 1001

    family = "score function"
    unbiased = True
    display_name = "REINFORCE, median baseline"

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator) -> Tensor:
        samples = problem.sample(theta, (1, self.fit_samples), generator)
        return problem.f(samples).median()

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None) -> Tensor:
        samples = problem.sample(theta, (replicates, n_samples), generator)
        return weighted_score(problem, theta, samples, problem.f(samples) - state)
