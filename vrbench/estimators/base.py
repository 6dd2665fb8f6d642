"""The estimator protocol: a problem and θ in, ``R`` independent gradient estimates out."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from vrbench.components import Component
from vrbench.problems.base import Capability, Problem


class Estimator(Component, abc.ABC):
    """Turns a problem and θ into a batch of independent gradient estimates.

    Subclasses are frozen dataclasses (fields are hyper-parameters) registered with
    :func:`vrbench.estimators.register`. Class attributes declare what the estimator needs and
    promises, so the harness only pairs it with problems it applies to:

    * ``family``: a short group name (``"score function"``, ``"pathwise"``, ...);
    * ``requires``: capabilities the problem must have;
    * ``unbiased``: whether ``E[ĝ] = ∇J(θ)`` is claimed (the test suite checks the claim);
    * ``min_samples``: the smallest ``n_samples`` it is defined for;
    * ``evals_per_sample``: evaluations of f per draw, so ``f_evals = evals_per_sample · n``;
    * ``sample_average``: whether an estimate from n draws is the mean of n independent
      single-draw terms (given the fitted state), so its variance is the one-draw variance
      over n (lets :mod:`vrbench.bench.exact` compute it for any n).
    """

    family: ClassVar[str] = "other"
    requires: ClassVar[frozenset[Capability]] = frozenset()
    unbiased: ClassVar[bool] = True
    min_samples: ClassVar[int] = 1
    evals_per_sample: ClassVar[int] = 1
    sample_average: ClassVar[bool] = False
    reference: ClassVar[str] = ""
    requirement_note: ClassVar[str] = ""
    """What :meth:`incompatibility` checks beyond ``requires`` and ``min_samples``, in words
    (``vrbench list`` shows it)."""

    @classmethod
    def requirements(cls) -> str:
        """What a problem and n must offer for this estimator to run, in words."""
        parts = list(sorted(cls.requires))
        if cls.requirement_note:
            parts.append(cls.requirement_note)
        if cls.min_samples > 1:
            parts.append(f"n ≥ {cls.min_samples}")
        return ", ".join(parts)

    def incompatibility(self, problem: Problem, n_samples: int) -> str | None:
        """Why this estimator cannot run on ``problem`` with ``n_samples``, or ``None``."""
        missing = sorted(self.requires - problem.capabilities)
        if missing:
            return f"{self.name} requires a problem that is {', '.join(missing)}"
        if (Capability.MULTI_SAMPLE in problem.capabilities
                and Capability.MULTI_SAMPLE not in self.requires):
            return (f"{self.name} assumes ∇J = E[f ∇θ log p], which does not hold for the "
                    "multi-sample objective of a multi_sample problem")
        if n_samples < self.min_samples:
            return f"{self.name} needs n_samples >= {self.min_samples}, got {n_samples}"
        return None

    def f_evals(self, problem: Problem, n_samples: int) -> int:
        """Evaluations of f that one estimate from ``n_samples`` draws costs."""
        return self.evals_per_sample * n_samples

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator) -> Any:
        """Fit any state (a baseline, a control variate) before measurement.

        The harness passes a generator independent of the one used for measurement, so the
        fitted state is independent of the measured samples. Stateless estimators return None.
        """
        return None

    @abc.abstractmethod
    def estimate(
        self,
        problem: Problem,
        theta: Tensor,
        n_samples: int,
        replicates: int,
        generator: torch.Generator,
        state: Any = None,
    ) -> Tensor:
        """``replicates`` independent estimates of ``∇J(θ)``, shape ``(replicates, dim)``.

        Each estimate uses ``n_samples`` fresh draws; the computation is batched over
        replicates and samples.
        """


def weighted_score(problem: Problem, theta: Tensor, samples: Any, weights: Tensor) -> Tensor:
    """``(1/n) Σ_j w_j ∇θ log p(x_j; θ)`` for each replicate: the core of score-function methods.

    ``weights`` has shape ``(R, n)``; the result has shape ``(R, dim)``. Computed by
    :meth:`Problem.weighted_score`, which a problem may specialize.
    """
    return problem.weighted_score(theta, samples, weights)


def per_replicate_gradient(theta: Tensor, replicates: int,
                           objective: Callable[[Tensor], Tensor]) -> Tensor:
    """``∇θ objective`` for each replicate in one backward pass.

    θ is copied once per replicate as an ``(R, 1, dim)`` batch; ``objective`` maps it to one
    value per replicate (shape ``(R,)``), and since replicate ``r`` only touches its own copy
    of θ, the gradient of their sum holds every replicate's own gradient.
    """
    with torch.enable_grad():
        copies = theta.detach().expand(replicates, -1).clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(objective(copies[:, None, :]).sum(), copies)
    return grad


def score_function_from_uniforms(problem: Problem, theta: Tensor, uniforms: Tensor) -> Tensor:
    """The score-function estimate from samples ``from_uniforms(θ, u)``, ``u: (R, n, k)``."""
    samples = problem.from_uniforms(theta, uniforms)
    return weighted_score(problem, theta, samples, problem.f(samples))


def pathwise_from_uniforms(problem: Problem, theta: Tensor, uniforms: Tensor) -> Tensor:
    """The pathwise estimate from samples ``from_uniforms(θ, u)``, ``u: (R, n, k)``."""
    return per_replicate_gradient(
        theta, uniforms.shape[0],
        lambda copies: problem.f(problem.from_uniforms(copies, uniforms)).mean(dim=1))


MAX_SUPPORT = 2**16
"""Largest support that estimators enumerating it (exactly or without replacement) accept."""


def enumerable_support(problem: Problem) -> Any:
    """``problem.support()`` if it lists at most :data:`MAX_SUPPORT` outcomes with an exact
    ``log_prob``, else ``None``."""
    if type(problem).log_prob is Problem.log_prob:
        return None
    try:
        support = problem.support()
    except NotImplementedError:
        return None
    return support if support_size(support) <= MAX_SUPPORT else None


def support_size(samples: Any) -> int:
    """The number of samples in a batch of shape ``(1, N)`` (any structure of tensors)."""
    leaf = samples
    while not isinstance(leaf, Tensor):
        leaf = leaf[0]
    return leaf.shape[1]


def take(samples: Any, index: Tensor) -> Any:
    """The samples at positions ``index`` (shape ``(R, n)``) of a batch of shape ``(1, N)``,
    for samples that are tensors or (named) tuples of them."""
    if isinstance(samples, Tensor):
        return samples[0][index]
    parts = [take(part, index) for part in samples]
    return type(samples)(*parts) if hasattr(samples, "_fields") else type(samples)(parts)
