"""The delta-method control variate with a fitted coefficient, around any base estimator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.base import Estimator
from vrbench.estimators.delta_method_second_order import (
    MAX_TAYLOR_SIZE,
    Expansion,
    taylor_expansion,
)
from vrbench.problems.base import DTYPE, Capability, Problem

COEFFICIENT_EPSILON = 1e-12
"""Added to the control variate's variance, so that a control without spread gets c = 0."""


class _TaylorSurrogate:
    """The problem with f replaced by its second-order expansion h (everything else the
    problem's own), so that the base estimator estimates ∇E[h] from the draws it would use
    for ∇E[f]."""

    def __init__(self, problem: Problem, expansion: Expansion, event_dims: int) -> None:
        self._problem = problem
        self._expansion = expansion
        self._event_dims = event_dims

    def __getattr__(self, name: str) -> Any:
        return getattr(self._problem, name)

    def pathwise_gradient(self, theta: Tensor, noise: Tensor) -> Tensor:
        # Autograd through h: a problem's own pathwise_gradient writes out its f's gradient.
        return Problem.pathwise_gradient(self, theta, noise)  # type: ignore[arg-type]

    def f(self, samples: Tensor) -> Tensor:
        point, value, slope, curvature = self._expansion
        batch = samples.shape[: samples.dim() - self._event_dims]
        centred = samples.reshape(*batch, point.numel()) - point
        return value + centred @ slope + 0.5 * ((centred @ curvature) * centred).sum(-1)


class State(NamedTuple):
    """The expansion h of f, the base estimator's own state and the coefficient of each
    coordinate of θ (one per parameter group)."""

    expansion: Expansion
    base: Any
    coefficients: Tensor


def expected_gradient(problem: Problem, theta: Tensor, expansion: Expansion) -> Tensor:
    """``∇θ E_θ[h]``, exactly: with ``μ(θ) = E[x]``, ``Σ(θ) = Cov[x]`` and h expanded at m,
    ``E[h] = f(m) + ∇f(m)ᵀ(μ − m) + ½ tr(H Σ) + ½ (μ − m)ᵀ H (μ − m)``."""
    point, _, slope, curvature = expansion
    with torch.enable_grad():
        variable = theta.detach().clone().requires_grad_(True)
        shift = problem.sample_mean(variable).reshape(-1) - point
        spread = (curvature * problem.sample_covariance(variable)).sum()
        expected = slope @ shift + 0.5 * spread + 0.5 * shift @ curvature @ shift
        (gradient,) = torch.autograd.grad(expected, variable)
    return gradient


@register("delta_cv")
@dataclass(frozen=True)
class DeltaControlVariate(Estimator):
    """A base estimator with the delta-method control variate and a fitted coefficient.

    With h the second-order Taylor expansion of f at the mean of x under θ,
    ``h(x) = f(m) + ∇f(m)ᵀ(x − m) + ½ (x − m)ᵀ ∇²f(m) (x − m)``, whose expectation and its
    gradient are known in closed form for a distribution of known mean and covariance:
    ``ĝ = ĝ_f − c ⊙ (ĝ_h − ∇θ E[h])``, where ``ĝ_f`` and ``ĝ_h`` are the base estimator's
    estimates of ∇E[f] and ∇E[h] from the *same* draws, and c, one coefficient per parameter
    group of θ (a Gaussian's means and scales), is
    ``c = Σ_k Cov(ĝ_f,k, ĝ_h,k) / Σ_k Var(ĝ_h,k)``, the variance-minimizing coefficient of
    the group, fitted on ``fit_samples`` independent draws. Unbiased for any c independent
    of the measured draws, since ``E[ĝ_h] = ∇E[h]``; the closer f is to quadratic, the more
    variance it removes, from any base. Mohamed, Rosca, Figurnov & Mnih, "Monte Carlo
    Gradient Estimation in Machine Learning", JMLR 2020, section 7.2 (the delta method) and
    section 8 (applied to the score-function, pathwise and measure-valued estimators, with
    the coefficient chosen per variable to minimize variance, as in their released
    ``control_variates.py``); Paisley, Blei & Jordan, ICML 2012. ``base`` must draw the same
    samples whatever f is (score function, pathwise, measure-valued estimators do); its f
    must be differentiable, with the mean and covariance of the samples known; at most
    2,000 entries per sample.
    """

    base: str = "score_function"
    fit_samples: int = 100

    display_name = "{base} + delta CV"
    requirement_note = ("what its base estimator requires, the samples' mean and covariance, "
                        f"at most {MAX_TAYLOR_SIZE:,} entries per sample")
    parameter_symbols: ClassVar = {"fit_samples": "fit draws"}
    component_parameters: ClassVar = {"base": "estimator"}  # base is written by its name
    family = "control variate"
    requires = frozenset({Capability.CONTINUOUS, Capability.DIFFERENTIABLE})
    reference = "Mohamed et al., 2020, sections 7.2 and 8"

    def __post_init__(self) -> None:
        from vrbench import estimators

        check(self.base in estimators.registry.names() and self.base != self.name,
              self.name, f"base={self.base!r} must be another registered estimator")
        check(self.fit_samples >= 2, self.name, f"fit_samples={self.fit_samples} must be >= 2")

    @property
    def _base(self) -> Estimator:
        from vrbench import estimators

        return estimators.make(self.base)

    @property
    def min_samples(self) -> int:  # type: ignore[override]
        return self._base.min_samples

    def incompatibility(self, problem: Problem, n_samples: int) -> str | None:
        reason = self._base.incompatibility(problem, n_samples)
        if reason is not None:
            return reason
        reason = super().incompatibility(problem, n_samples)
        if reason is not None:
            return reason
        for method in ("sample_mean", "sample_covariance"):
            if getattr(type(problem), method) is getattr(Problem, method):
                return f"{self.name} needs the mean and covariance of the samples as " \
                       "functions of θ"
        if problem.sample_width() > MAX_TAYLOR_SIZE:
            return (f"{self.name} expands f in all {problem.sample_width()} entries of a "
                    f"sample, more than {MAX_TAYLOR_SIZE}")
        return None

    def f_evals(self, problem: Problem, n_samples: int) -> int:
        return self._base.f_evals(problem, n_samples)

    def _paired(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                generator: torch.Generator, expansion: Expansion, base_state: Any
                ) -> tuple[Tensor, Tensor]:
        """The base estimator's estimates for f and for h from the same draws: the generator
        is rewound between the two."""
        base = self._base
        start = generator.get_state()
        for_f = base.estimate(problem, theta, n_samples, replicates, generator, base_state)
        after = generator.get_state()
        generator.set_state(start)
        surrogate = _TaylorSurrogate(problem, expansion, problem.sample_mean(theta).dim())
        for_h = base.estimate(surrogate, theta, n_samples, replicates,  # type: ignore[arg-type]
                              generator, base_state)
        generator.set_state(after)
        return for_f, for_h

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator) -> State:
        expansion = taylor_expansion(problem, theta)
        base_state = self._base.fit(problem, theta, generator)
        for_f, for_h = self._paired(problem, theta, 1, self.fit_samples, generator, expansion,
                                    base_state)
        covariance = ((for_f - for_f.mean(0)) * (for_h - for_h.mean(0))).mean(0)
        variance = for_h.var(0, unbiased=False)
        coefficients = torch.zeros(problem.dim, dtype=DTYPE)
        for group in problem.parameter_groups().values():
            coefficients[group] = covariance[group].sum() / (variance[group].sum()
                                                             + COEFFICIENT_EPSILON)
        return State(expansion, base_state, coefficients)

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: State | None = None) -> Tensor:
        if state is None:
            raise ValueError(f"{self.name} needs its fitted coefficients: call fit() first")
        for_f, for_h = self._paired(problem, theta, n_samples, replicates, generator,
                                    state.expansion, state.base)
        control = for_h - expected_gradient(problem, theta, state.expansion)
        return for_f - state.coefficients * control
