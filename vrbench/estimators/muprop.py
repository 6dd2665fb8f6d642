"""MuProp: the first-order Taylor expansion of the relaxed f at the mean-field point as control
variate of the score function."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import Estimator, weighted_score
from vrbench.problems.base import Capability, Problem


@register("muprop")
@dataclass(frozen=True)
class MuProp(Estimator):
    """MuProp: score function with f's linearization at the mean-field point as control variate.

    With ``x̄ = E[x]`` (the mean-field point, in the encoding of relaxed samples, held fixed),
    f̃ the problem's extension of f to relaxed samples and ``h(x) = f̃(x̄) + ∇f̃(x̄)·(x − x̄)``:
    ``ĝ = (1/n) Σ_j (f(x_j) − h(x_j)) ∇θ log p(x_j; θ) + ∇f̃(x̄)·∇θ E[x]``, the second term the
    exact gradient of ``E[h(x)]``, a deterministic mean-field backward pass. Unbiased for any
    x̄; one evaluation of f per draw plus one of f̃ and its gradient at x̄ per estimate. The
    closer f is to linear over the support, the smaller the variance; a multilinear f of
    independent variables leaves only its interaction terms. Gu, Levine, Sutskever & Mnih,
    "MuProp: Unbiased backpropagation for stochastic neural networks", ICLR 2016, section 3
    (the estimator with one stochastic layer; the paper's extra learned baseline is omitted).
    Applies to relaxable discrete problems that know the mean of their samples.
    """

    display_name = "MuProp"
    requirement_note = "the samples' mean"

    family = "control variate"
    requires = frozenset({Capability.DISCRETE, Capability.RELAXABLE})
    reference = "Gu et al., 2016"

    def incompatibility(self, problem: Problem, n_samples: int) -> str | None:
        if type(problem).sample_mean is Problem.sample_mean:
            return f"{self.name} needs a problem that knows the mean of its samples"
        return super().incompatibility(problem, n_samples)

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        with torch.enable_grad():
            theta_var = theta.detach().clone().requires_grad_(True)
            mean = problem.sample_mean(theta_var)
            point = mean.detach().clone().requires_grad_(True)
            value_at_point = problem.f_relaxed(point[None, None])[0, 0]
            (slope,) = torch.autograd.grad(value_at_point, point)
            (correction,) = torch.autograd.grad((slope * mean).sum(), theta_var)
        samples = problem.sample(theta, (replicates, n_samples), generator)
        offsets = (problem.embed(samples) - point.detach()) * slope
        linear = value_at_point.detach() + offsets.reshape(replicates, n_samples, -1).sum(-1)
        return weighted_score(problem, theta, samples, problem.f(samples) - linear) + correction
