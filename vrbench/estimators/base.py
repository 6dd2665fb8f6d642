"""The estimator protocol: a problem and θ in, ``R`` independent gradient estimates out."""

from __future__ import annotations

import abc
import contextvars
import functools
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor

from vrbench.components import Component
from vrbench.problems.base import Capability, Problem
from vrbench.problems.latents import (
    VIEWS,
    _LogitView,
    is_view,
    logit_view,
    view_capabilities,
)

LOGIT_CAPABILITIES = frozenset({Capability.BERNOULLI_LOGITS, Capability.CATEGORICAL_LOGITS})
"""Requirements that the logit view of an amortized problem meets (see :class:`Estimator`)."""


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

    **Amortized problems.** An estimator whose requirements a problem does not meet, but the
    problem's logit view does (a problem with ``bernoulli_latents`` or
    ``categorical_latents``: see :mod:`vrbench.problems.latents`), runs on that view: its
    ``incompatibility``, ``fit``, ``estimate`` and ``f_evals`` receive the view (θ: the
    logits of every data item) instead of the problem, and its estimates are carried to the
    problem's θ by the chain rule. Every estimator for Bernoulli or categorical logits thus
    applies to every amortized problem without a line of its own; this base class does it
    (:meth:`__init_subclass__` wraps those four methods of every subclass).

    **Direct gradients.** Where f depends on θ itself (a VAE whose θ holds the decoder), the
    wrapped ``estimate`` adds the problem's :meth:`~vrbench.problems.base.Problem.
    direct_gradient`, ``E[∇θ f]`` from independent draws, to every estimate: estimators
    estimate the part through the distribution only. A problem that is not available here
    (its data is not installed) is incompatible with every estimator, with the reason.
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
        # A logits capability is met by a problem with such latents too, through its logit
        # view and the chain rule (see the class docstring): "bernoulli_logits or
        # bernoulli_latents".
        alternatives = {logits: latents for latents, view in VIEWS.items()
                        if cls.requires and cls.requires <= view.capabilities
                        for logits in LOGIT_CAPABILITIES & cls.requires}
        parts = [f"{c} or {alternatives[c]}" if c in alternatives else str(c)
                 for c in sorted(cls.requires)]
        views = [str(latents) for latents, view in VIEWS.items()
                 if cls.requires and cls.requires <= view.capabilities]
        if views and not alternatives:  # "relaxable (or bernoulli_latents, ...)"
            parts[-1] += f" (or {', '.join(views)}, through the logits)"
        if cls.requirement_note:
            parts.append(cls.requirement_note)
        # (an instance's own minimum, a property, is in the requirement note)
        if isinstance(cls.min_samples, int) and cls.min_samples > 1:
            parts.append(f"n ≥ {cls.min_samples}")
        return ", ".join(parts)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _route_through_views(cls)

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


_DIRECT = contextvars.ContextVar("vrbench_direct_compatibility", default=False)
"""Set while an estimator's compatibility with a problem itself (not its view) is decided, so
that the ``super().incompatibility`` calls of subclasses answer for the problem alone."""


def _direct_reason(estimator: Estimator, problem: Problem, n_samples: int) -> str | None:
    """Why ``estimator`` cannot run on ``problem`` itself (its logit view aside)."""
    token = _DIRECT.set(True)
    try:
        return estimator.incompatibility(problem, n_samples)
    finally:
        _DIRECT.reset(token)


def runs_on_view(estimator: Estimator, problem: Problem, n_samples: int) -> bool:
    """Whether ``estimator`` runs on the logit view of ``problem`` rather than on it."""
    if is_view(problem) or view_capabilities(problem) is None:
        return False
    return _direct_reason(estimator, problem, n_samples) is not None


def _incompatibility_through_view(method: Callable[..., str | None]) -> Callable[..., str | None]:
    @functools.wraps(method)
    def incompatibility(self: Estimator, problem: Problem, n_samples: int) -> str | None:
        missing = problem.unavailable()
        if missing is not None:
            return f"{problem.name} is not available here: {missing}"
        if _DIRECT.get() or is_view(problem) or view_capabilities(problem) is None:
            return method(self, problem, n_samples)
        reason = _direct_reason(self, problem, n_samples)
        if reason is None:
            return None
        view = logit_view(problem, problem.initial_theta())
        assert view is not None  # view_capabilities(problem) is not None, above
        on_view = method(self, view, n_samples)
        # Where the view meets the requirements, its reason (n too small, say) is the one.
        return on_view if on_view is None or self.requires <= view.capabilities else reason

    return incompatibility


def _fit_through_view(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def fit(self: Estimator, problem: Problem, theta: Tensor, generator: torch.Generator) -> Any:
        if not runs_on_view(self, problem, self.min_samples):
            return method(self, problem, theta, generator)
        view = logit_view(problem, theta)
        assert view is not None  # runs_on_view: the problem has a view
        return method(self, view, view.initial_theta(), generator)

    return fit


_ESTIMATING = contextvars.ContextVar("vrbench_estimating", default=False)
"""Set while an estimate is computed, so that an estimator calling another one's estimate
(a control variate around a base estimator) adds the problem's direct gradient once."""


def _estimate_through_view(method: Callable[..., Tensor]) -> Callable[..., Tensor]:
    @functools.wraps(method)
    def estimate(self: Estimator, problem: Problem, theta: Tensor, n_samples: int,
                 replicates: int, generator: torch.Generator, state: Any = None) -> Tensor:
        outermost = not _ESTIMATING.get()
        token = _ESTIMATING.set(True)
        try:
            if not runs_on_view(self, problem, n_samples):
                estimates = method(self, problem, theta, n_samples, replicates, generator,
                                   state)
            else:
                view = logit_view(problem, theta)
                assert isinstance(view, _LogitView)  # runs_on_view: the problem has a view
                estimates = view.pullback(method(
                    self, view, view.initial_theta(), n_samples, replicates, generator, state))
        finally:
            _ESTIMATING.reset(token)
        direct = problem.direct_gradient(theta, replicates, generator) if outermost else None
        return estimates if direct is None else estimates + direct

    return estimate


def _f_evals_through_view(method: Callable[..., int]) -> Callable[..., int]:
    @functools.wraps(method)
    def f_evals(self: Estimator, problem: Problem, n_samples: int) -> int:
        if not runs_on_view(self, problem, n_samples):
            return method(self, problem, n_samples)
        return method(self, logit_view(problem, problem.initial_theta()), n_samples)

    return f_evals


_THROUGH_VIEW = {"incompatibility": _incompatibility_through_view, "fit": _fit_through_view,
                 "estimate": _estimate_through_view, "f_evals": _f_evals_through_view}


def _route_through_views(cls: type) -> None:
    """Wrap the methods that ``cls`` itself defines so that they run on logit views where
    the problem itself does not suit them (see :class:`Estimator`)."""
    for name, wrap in _THROUGH_VIEW.items():
        if name in cls.__dict__ and not getattr(cls.__dict__[name], "__isabstractmethod__",
                                                False):
            setattr(cls, name, wrap(cls.__dict__[name]))


_route_through_views(Estimator)


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


VARIANT_NUMBERS = 2**14
"""Numbers that the variants of one draw may hold at once (f evaluated at a draw with one
coordinate or variable changed, for each of them): beyond, they are evaluated in blocks, so
that an estimator's memory grows with the problem's samples, not with their square."""


def variant_blocks(problem: Problem, items: int, evaluations_per_item: int) -> list[slice]:
    """Consecutive blocks of ``items`` (coordinates, variables) whose variants, each costing
    ``evaluations_per_item`` evaluations of f on samples of ``problem.sample_width()``
    numbers, hold at most :data:`VARIANT_NUMBERS` numbers per draw."""
    per_block = max(1, VARIANT_NUMBERS // (evaluations_per_item * problem.sample_width()))
    return [slice(start, min(start + per_block, items)) for start in range(0, items, per_block)]


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
