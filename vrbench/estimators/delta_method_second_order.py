"""Score function with a second-order Taylor (delta-method) control variate."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import Estimator, weighted_score
from vrbench.problems.base import Capability, Problem

MAX_TAYLOR_SIZE = 2_000
"""Most entries of a sample: the Hessian of f holds their square, and each draw costs as many
squared multiply-adds."""


class Expansion(NamedTuple):
    """``h(x) = value + slopeᵀ(x − point) + ½ (x − point)ᵀ curvature (x − point)``, x flat."""

    point: Tensor  # (P,)
    value: Tensor  # ()
    slope: Tensor  # (P,)
    curvature: Tensor  # (P, P)


def taylor_expansion(problem: Problem, theta: Tensor) -> Expansion:
    """The second-order expansion of f at the mean of x under θ."""
    mean = problem.sample_mean(theta).detach()

    def flat_f(point: Tensor) -> Tensor:
        return problem.f(point.reshape(mean.shape))

    point = mean.reshape(-1)
    with torch.enable_grad():
        variable = point.clone().requires_grad_(True)
        value = flat_f(variable)
        (slope,) = torch.autograd.grad(value, variable)
    curvature = torch.autograd.functional.hessian(flat_f, point)
    return Expansion(point, value.detach(), slope, curvature)


def _overrides(problem: Problem, method: str) -> bool:
    return getattr(type(problem), method) is not getattr(Problem, method)


@register("delta_method_second_order")
@dataclass(frozen=True)
class DeltaMethodSecondOrder(Estimator):
    """Score function with the second-order Taylor expansion of f at the mean as control variate.

    With ``m = E[x]`` and ``H = ∇²f(m)`` at the θ of :meth:`fit` (held fixed),
    ``h(x) = f(m) + ∇f(m)ᵀ(x − m) + ½ (x − m)ᵀ H (x − m)`` and
    ``ĝ = (1/n) Σ_j (f(x_j) − h(x_j)) ∇θ log p(x_j; θ) + ∇θ E_θ[h]``, where, with
    ``μ(θ) = E_θ[x]`` and ``Σ(θ) = Cov_θ[x]``,
    ``E_θ[h] = f(m) + ∇f(m)ᵀ(μ − m) + ½ tr(H Σ) + ½ (μ − m)ᵀ H (μ − m)`` is differentiated
    exactly. Unbiased for any expansion point (a control variate with known mean); exact with
    zero variance when f is quadratic, and no better than the first-order ``delta_method`` where
    f has no curvature. The delta method of Mohamed et al., "Monte Carlo Gradient Estimation in
    Machine Learning", JMLR 2020, section 7.2, taken to second order as in Paisley, Blei &
    Jordan, "Variational Bayesian inference with stochastic search", ICML 2012. Needs a
    differentiable f and the problem's ``sample_mean`` and ``sample_covariance``; at most
    2,000 entries per sample.
    """

    display_name = "delta method, 2nd order"
    requirement_note = "the samples' mean and covariance, a small sample"

    family = "control variate"
    requires = frozenset({Capability.CONTINUOUS, Capability.DIFFERENTIABLE,
                          Capability.REPARAMETERIZABLE})
    reference = "Mohamed et al., 2020, section 7.2; Paisley et al., 2012"

    def incompatibility(self, problem: Problem, n_samples: int) -> str | None:
        reason = super().incompatibility(problem, n_samples)
        if reason is not None:
            return reason
        if not (_overrides(problem, "sample_mean") and _overrides(problem, "sample_covariance")):
            return f"{self.name} needs the mean and covariance of the samples as functions of θ"
        if problem.sample_width() > MAX_TAYLOR_SIZE:
            return (f"{self.name} expands f in all {problem.sample_width()} entries of a sample, "
                    f"more than {MAX_TAYLOR_SIZE}")
        return None

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator) -> Expansion:
        return taylor_expansion(problem, theta)

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Expansion | None = None) -> Tensor:
        expansion = state if state is not None else taylor_expansion(problem, theta)
        point, value, slope, curvature = expansion
        samples = problem.sample(theta, (replicates, n_samples), generator)
        centred = samples.reshape(replicates, n_samples, -1) - point
        taylor = value + centred @ slope + 0.5 * ((centred @ curvature) * centred).sum(-1)
        with torch.enable_grad():
            variable = theta.detach().clone().requires_grad_(True)
            shift = problem.sample_mean(variable).reshape(-1) - point
            spread = (curvature * problem.sample_covariance(variable)).sum()  # tr(H Σ)
            expected = slope @ shift + 0.5 * spread + 0.5 * shift @ curvature @ shift
            (correction,) = torch.autograd.grad(expected, variable)
        return weighted_score(problem, theta, samples, problem.f(samples) - taylor) + correction
