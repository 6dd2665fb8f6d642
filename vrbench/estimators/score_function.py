"""Plain score-function (REINFORCE) estimator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import Estimator, weighted_score
from vrbench.problems.base import Problem


@register("score_function")
@dataclass(frozen=True)
class ScoreFunction(Estimator):
    """Score-function / REINFORCE: ĝ = (1/n) Σ_j f(x_j) ∇θ log p(x_j; θ).

    Unbiased whenever differentiation and expectation can be swapped, because
    ``∇θ E[f(x)] = E[f(x) ∇θ log p(x; θ)]`` (the log-derivative trick). Applies to any problem
    with a score, including non-differentiable f, discrete x and MDP trajectories, but its
    variance grows with the magnitude of f. Williams, "Simple statistical gradient-following
    algorithms for connectionist reinforcement learning", Machine Learning 8, 1992.
    """

    display_name = "REINFORCE"

    family = "score function"
    sample_average = True
    reference = "Williams, 1992"

    def estimate(
        self,
        problem: Problem,
        theta: Tensor,
        n_samples: int,
        replicates: int,
        generator: torch.Generator,
        state: Any = None,
    ) -> Tensor:
        samples = problem.sample(theta, (replicates, n_samples), generator)
        return weighted_score(problem, theta, samples, problem.f(samples))
