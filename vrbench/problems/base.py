"""The problem protocol: ``J(θ) = E_{x~p(x;θ)}[f(x)]`` together with its exact gradient."""

from __future__ import annotations

import abc
from enum import StrEnum
from typing import Any, ClassVar

import torch
from torch import Tensor

from vrbench.components import Component, check

DTYPE = torch.float64
"""All problems compute in double precision so exact gradients are exact to ~1e-15."""

MAX_MAGNITUDE = 1e8
"""Largest location or scale parameter (and smallest scale, 1/MAX_MAGNITUDE). Within these
bounds, with ``|μ|/σ <= MAX_MAGNITUDE`` too, float64 resolves a sample ``x = μ + σε`` to
``~1e-8 σ`` and f stays far from overflow; beyond them samples round to ``μ`` and the
measured bias and variance would be rounding artefacts, not properties of the estimator."""

MAX_HORIZON = 10_000
"""Longest MDP horizon: episodes step together, one batched step per time step, and the exact
dynamic program keeps ``horizon × states × actions`` values."""

MAX_SIZE = 100_000
"""Largest count of arms, categories, states, dimensions or contexts of a problem."""


def check_magnitude(owner: str, key: str, value: float, limit: float = MAX_MAGNITUDE) -> None:
    """Refuse ``|value| > limit`` (see :data:`MAX_MAGNITUDE`), naming the limit."""
    check(abs(value) <= limit, owner,
          f"{key}={value:g} is out of range: |{key}| must be at most {limit:g} (float64 "
          "cannot resolve the problem's samples beyond it)")


def check_scale(owner: str, key: str, value: float) -> None:
    """Refuse a scale outside ``[1/MAX_MAGNITUDE, MAX_MAGNITUDE]``, naming the range."""
    check(1 / MAX_MAGNITUDE <= value <= MAX_MAGNITUDE, owner,
          f"{key}={value:g} must lie in [{1 / MAX_MAGNITUDE:g}, {MAX_MAGNITUDE:g}] (outside, "
          "float64 cannot resolve the problem's samples)")


def check_size(owner: str, key: str, value: int, low: int = 1, high: int = MAX_SIZE) -> None:
    """Refuse a count outside ``low..high``; ``high`` keeps the problem's tables and exact
    solution within memory and time."""
    check(low <= value <= high, owner,
          f"{key}={value} must lie in {low}..{high}" + (
              " (larger sizes would not fit the exact solution in memory and time)"
              if value > high else ""))


class Capability(StrEnum):
    """What a problem offers; estimators declare which of these they require."""

    DISCRETE = "discrete"
    """Samples are discrete (Bernoulli, categorical, actions, trajectories)."""
    CONTINUOUS = "continuous"
    """Samples are real-valued."""
    DIFFERENTIABLE = "differentiable"
    """f is differentiable (almost everywhere) in x, in torch, so pathwise gradients apply."""
    REPARAMETERIZABLE = "reparameterizable"
    """x = transform(θ, noise) with noise independent of θ (see :meth:`Problem.transform`)."""
    SEQUENTIAL = "sequential"
    """Samples are trajectories of an MDP; f is the (discounted) return ``Σ_t γ^t r_t``. The
    problem has ``gamma`` and implements ``step_score`` (per-step scores weighted per step),
    ``step_rewards`` and ``reward_to_go`` (the ``r_t`` and ``Σ_{k≥t} γ^k r_k``),
    ``exact_values`` and ``step_values`` (the exact ``V_t`` at the visited states):
    reward-to-go, state-value baselines and GAE apply."""
    TABULAR = "tabular"
    """A sequential problem with finitely many states (``TabularMDP``): state values can be
    fitted as a table from Monte Carlo returns."""
    INVERSE_TRANSFORM = "inverse_transform"
    """x = from_uniforms(θ, u) with u uniform on (0, 1)^noise_dim (see
    :meth:`Problem.from_uniforms`): antithetic, stratified and quasi-Monte Carlo apply."""
    BERNOULLI_LOGITS = "bernoulli_logits"
    """x is a vector of independent Bernoullis whose logits are θ, and f accepts any 0/1
    vector: ARM, DisARM and measure-valued gradients apply."""
    GAUSSIAN = "gaussian"
    """x ~ N(μ, diag σ²) in D ≥ 1 dimensions with θ = (μ_1..μ_D, σ_1..σ_D): measure-valued
    gradients apply. Samples have shape ``(R, n)`` plus the shape of
    :meth:`Problem.sample_mean` (``()`` when univariate, ``(D,)`` otherwise; a problem that
    does not implement it is univariate)."""
    RELAXABLE = "relaxable"
    """f extends to relaxed samples (see :meth:`Problem.relax`): Gumbel-softmax applies."""


class Problem(Component, abc.ABC):
    """An objective ``J(θ) = E_{x~p(x;θ)}[f(x)]`` with its exact gradient.

    Subclasses are frozen dataclasses (their fields are the problem's parameters) registered with
    :func:`vrbench.problems.register`. ``θ`` is always a flat float64 vector of length
    :attr:`dim`; samples are whatever the problem likes (tensors, tuples) with leading batch
    shape ``(R, n)``: estimators never look inside, they only pass samples back to
    :meth:`f` and :meth:`score`.
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    reference: ClassVar[str] = ""
    """The paper that introduced or popularized the problem."""
    maximize: ClassVar[bool] = False
    """Whether optimization ascends J (a return, an ELBO) rather than descends it (a loss)."""

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Length of θ."""

    @abc.abstractmethod
    def initial_theta(self) -> Tensor:
        """The θ at which the benchmark measures gradients, shape ``(dim,)``."""

    @abc.abstractmethod
    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Any:
        """Draw ``shape = (R, n)`` independent samples ``x ~ p(x; θ)``."""

    @abc.abstractmethod
    def f(self, samples: Any) -> Tensor:
        """The objective of each sample, shape ``(R, n)``."""

    @abc.abstractmethod
    def score(self, theta: Tensor, samples: Any) -> Tensor:
        """``∇θ log p(x; θ)`` of each sample, shape ``(R, n, dim)``."""

    def weighted_score(self, theta: Tensor, samples: Any, weights: Tensor) -> Tensor:
        """``(1/n) Σ_j w_j ∇θ log p(x_j; θ)`` for each replicate, shape ``(R, dim)``.

        ``weights`` has shape ``(R, n)``. This is the core of every score-function estimator;
        problems override it when contracting the weights first is cheaper than forming all
        ``R × n`` scores (the conformance suite checks the two agree).
        """
        return torch.einsum("rn,rnd->rd", weights, self.score(theta, samples)) / weights.shape[1]

    @abc.abstractmethod
    def value(self, theta: Tensor) -> Tensor:
        """The exact objective ``J(θ)`` (a scalar tensor)."""

    @abc.abstractmethod
    def exact_grad(self, theta: Tensor) -> Tensor:
        """The exact gradient ``∇J(θ)``, shape ``(dim,)``."""

    # Reparameterizable problems implement the two methods below.
    def sample_noise(self, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        """Draw the parameter-free noise ε of ``x = transform(θ, ε)``, batch shape ``(R, n)``."""
        raise NotImplementedError(f"{self.name} is not reparameterizable")

    def transform(self, theta: Tensor, noise: Tensor) -> Any:
        """Map noise to samples, differentiably in θ.

        ``theta`` is either ``(dim,)`` or a per-replicate batch ``(R, 1, dim)`` that broadcasts
        against the noise's ``(R, n)`` batch shape.
        """
        raise NotImplementedError(f"{self.name} is not reparameterizable")

    # Problems with INVERSE_TRANSFORM implement the two members below.
    noise_dim: ClassVar[int] = 0

    def from_uniforms(self, theta: Tensor, uniforms: Tensor) -> Any:
        """Samples from uniforms ``(R, n, noise_dim)``; ``1 − u`` gives the antithetic sample.

        Differentiable in θ when the problem is also reparameterizable; ``theta`` may then be a
        per-replicate batch ``(R, 1, dim)`` as in :meth:`transform`.
        """
        raise NotImplementedError(f"{self.name} does not sample from uniforms")

    # Problems with RELAXABLE implement the three members below.
    def relax(self, theta: Tensor, uniforms: Tensor, temperature: float) -> Tensor:
        """A continuous relaxation of a sample, differentiable in θ (Gumbel-softmax/Concrete);
        ``uniforms`` has shape ``(R, n, noise_dim)``."""
        raise NotImplementedError(f"{self.name} has no relaxation")

    def harden(self, relaxed: Tensor) -> Tensor:
        """The discrete sample a relaxed one rounds to, in the relaxed sample's encoding."""
        raise NotImplementedError(f"{self.name} has no relaxation")

    def f_relaxed(self, relaxed: Tensor) -> Tensor:
        """f extended to relaxed samples (equal to f on discrete ones)."""
        return self.f(relaxed)

    def sample_mean(self, theta: Tensor) -> Tensor:
        """``E[x]`` as a differentiable function of θ (continuous problems)."""
        raise NotImplementedError(f"{self.name} does not know the mean of its samples")

    def sample_covariance(self, theta: Tensor) -> Tensor:
        """``Cov[x]`` as a differentiable function of θ, ``(P, P)`` with ``P`` the number of
        entries of :meth:`sample_mean` (x flattened in the same order)."""
        raise NotImplementedError(f"{self.name} does not know the covariance of its samples")

    def project(self, theta: Tensor) -> Tensor:
        """The nearest valid θ (e.g. σ > 0), applied after each optimization step."""
        return theta

    def sample_width(self) -> int:
        """Numbers stored per sample besides the score; sizes the harness's memory chunks."""
        return 1
