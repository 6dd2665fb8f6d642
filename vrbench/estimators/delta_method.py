"""Score function with a first-order Taylor (delta-method) control variate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import Estimator, weighted_score
from vrbench.problems.base import Capability, Problem


@register("delta_method")
@dataclass(frozen=True)
class DeltaMethod(Estimator):
    """Score function with the linearization of f at the mean as control variate.

    With ``m = E[x]`` at the current θ (held fixed) and ``h(x) = f(m) + ∇f(m)·(x − m)``:
    ``ĝ = (1/n) Σ_j (f(x_j) − h(x_j)) ∇θ log p(x_j; θ) + ∇θ E[h(x)]``, where
    ``∇θ E[h] = ∇f(m)·∇θ E[x]`` is exact. Unbiased for any h with known expectation; the
    closer f is to linear near m, the smaller the variance. Mohamed et al., "Monte Carlo
    Gradient Estimation in Machine Learning", JMLR 2020, section 7.2 (delta-method control
    variates). Needs a differentiable f and the mean of x as a function of θ.
    """

    display_name = "delta method"

    family = "control variate"
    sample_average = True
    requires = frozenset({Capability.CONTINUOUS, Capability.DIFFERENTIABLE,
                          Capability.REPARAMETERIZABLE})
    reference = "Mohamed et al., 2020, section 7.2"

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        with torch.enable_grad():
            theta_var = theta.detach().clone().requires_grad_(True)
            mean_of_x = problem.sample_mean(theta_var)
            point = mean_of_x.detach().clone().requires_grad_(True)
            value_at_point = problem.f(point)
            (slope,) = torch.autograd.grad(value_at_point.sum(), point)
            (correction,) = torch.autograd.grad((slope * mean_of_x).sum(), theta_var)
        samples = problem.sample(theta, (replicates, n_samples), generator)
        linear = value_at_point.detach() + (slope * (samples - point.detach())).reshape(
            replicates, n_samples, -1).sum(-1)
        return weighted_score(problem, theta, samples, problem.f(samples) - linear) + correction
