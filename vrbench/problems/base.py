"""The problem protocol: ``J(θ) = E_{x~p(x;θ)}[f(x)]`` together with its exact gradient."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

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
    """What a problem offers; estimators declare which of these they require.

    What each promises, the members it needs and its conformance checks are one record,
    :data:`vrbench.testing.capabilities.CAPABILITIES` (``vrbench list capabilities`` prints
    them).
    """

    DISCRETE = "discrete"
    CONTINUOUS = "continuous"
    DIFFERENTIABLE = "differentiable"
    REPARAMETERIZABLE = "reparameterizable"
    SEQUENTIAL = "sequential"
    TABULAR = "tabular"
    INVERSE_TRANSFORM = "inverse_transform"
    BERNOULLI_LOGITS = "bernoulli_logits"
    GAUSSIAN = "gaussian"
    BERNOULLI_LATENTS = "bernoulli_latents"
    CATEGORICAL_LATENTS = "categorical_latents"
    RELAXABLE = "relaxable"
    CATEGORICAL_LOGITS = "categorical_logits"
    AMORTIZED = "amortized"
    SEQUENCES = "sequences"
    MULTI_SAMPLE = "multi_sample"


class NumericalReference(NamedTuple):
    """J and ∇J from a deterministic numerical method (quadrature, a sum over part of the
    model), each with an estimate of its error: ``grad_error`` per coordinate of θ."""

    value: Tensor
    grad: Tensor
    value_error: Tensor
    grad_error: Tensor
    method: str = "numerical"
    """The method, in a few words, for results and captions."""


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
    check_params: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    """Parameter overrides under which ``vrbench check`` tests the problem and estimators on it
    (explicit parameters still win). Choose them so that ‖∇J‖ is not tiny against the spread
    of a score-function estimate, so that a 1% bias is detectable in seconds; see
    :meth:`check_theta`."""

    in_default_sweep: ClassVar[bool] = True
    """Whether a sweep that names no problems runs this one. Models of data sets at the
    papers' scale (the 200-latent image VAEs) say no: each of their cells takes minutes and
    each reference gradient hours on a CPU, so a sweep runs them where it names them."""

    reference_estimators: ClassVar[tuple[str, ...]] = ()
    """For a problem without an exact gradient: unbiased estimators (names, or
    ``name:key=value`` specs) whose mean over many estimates is its reference gradient, in
    order of preference (see :mod:`vrbench.bench.reference`). An estimator is never its own
    reference: the next one serves when the first is the one measured."""

    @property
    def has_exact_gradient(self) -> bool:
        """Whether :meth:`value` and :meth:`exact_grad` are exact. A problem where they are not
        (no closed form, no enumeration) returns False, raises ``NotImplementedError`` from
        both (unless a numerical value is known) and offers :meth:`numerical_reference` or
        :attr:`reference_estimators`: vrbench then measures against a reference of stated
        precision (:mod:`vrbench.bench.reference`)."""
        return True

    def numerical_reference(self, theta: Tensor) -> NumericalReference:
        """J and ∇J at θ by a deterministic numerical method with an error estimate, for a
        problem without an exact gradient (quadrature of a low-dimensional integral, an exact
        sum over part of the model); preferred to :attr:`reference_estimators` when offered."""
        raise NotImplementedError(f"{self.name} offers no numerical reference")

    def regularizer(self, theta: Tensor) -> Tensor | None:
        """An exact, differentiable term c(θ) of the objective that optimization follows, beside
        J (the KL of an ELBO against its prior, in closed form), or None (default).
        ``vrbench train`` steps along ĝ + ∇c(θ) and records J(θ) + c(θ); estimators estimate
        ∇J alone, whose variance is that of ĝ + ∇c."""
        return None

    def parameter_groups(self) -> dict[str, slice]:
        """Named, contiguous groups of θ's coordinates (the layers of a network: encoder,
        decoder; the means and scales of a Gaussian), over which results summarize the
        per-coordinate statistics; default: one group, θ."""
        return {"θ": slice(0, self.dim)}

    def unavailable(self) -> str | None:
        """Why the problem cannot run on this machine (data that is not installed), with how
        to make it run, or None (default). Every estimator is then incompatible with it, for
        that reason: sweeps skip its cells, ``vrbench check`` and ``train`` refuse it."""
        return None

    def direct_gradient(self, theta: Tensor, replicates: int,
                        generator: torch.Generator) -> Tensor | None:
        """For a problem whose f depends on θ besides through the samples (a VAE's decoder
        and prior, which θ holds beside the encoder): ``(R, dim)`` independent unbiased
        estimates of ``E_p[∇θ f(x; θ)]`` with x held fixed, from fresh draws. Then ``∇J =
        E_p[f ∇θ log p] + E_p[∇θ f]``: estimators estimate the first term, the harness adds
        this one to every estimate (the same for every estimator). None (default): f does not
        depend on θ."""
        return None

    def local_f(self, samples: Any) -> Tensor | None:
        """For bit vectors ``(..., dim)`` of a problem whose f is a sum of terms that each
        depend on a few bits (an amortized model's per-item ELBOs): ``(..., dim)``, for each
        bit the terms it can change. Estimators that weigh f per bit (ARM, DisARM) use them
        in place of f: the other terms are independent of the bit and only add noise. None
        (default): f does not split."""
        return None

    def training_batch(self, generator: torch.Generator) -> Problem:
        """The problem on a fresh minibatch of its data set, for one step of ``vrbench train``
        (a model of a data set follows the minibatch ELBO); default: itself."""
        return self

    def training_metrics(self, theta: Tensor, generator: torch.Generator) -> dict[str, float]:
        """Numbers ``vrbench train`` records at each measurement of a run (a model's training
        ELBO and its bound on held-out data); default: none."""
        return {}

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Length of θ."""

    @abc.abstractmethod
    def initial_theta(self) -> Tensor:
        """The θ at which the benchmark measures gradients, shape ``(dim,)``."""

    def check_theta(self) -> Tensor:
        """The θ at which ``vrbench check`` tests the problem and estimators on it.

        Defaults to :meth:`initial_theta`. Override it to move away from symmetric points (all
        logits equal, p = 1/2), where a bug that swaps coordinates or mixes up p and 1 − p
        cancels out, and where ‖∇J‖ may vanish so that no relative bias can be detected.
        """
        return self.initial_theta()

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
        # A product and a sum over n: several times faster on the CPU than einsum's batched
        # matrix products of (1, n) by (n, dim), which are too small for a BLAS.
        return (weights[..., None] * self.score(theta, samples)).sum(1) / weights.shape[1]

    @abc.abstractmethod
    def value(self, theta: Tensor) -> Tensor:
        """The exact objective ``J(θ)`` (a scalar tensor)."""

    @abc.abstractmethod
    def exact_grad(self, theta: Tensor) -> Tensor:
        """The exact gradient ``∇J(θ)``, shape ``(dim,)``."""

    # Optional: the log-probability and, for small discrete problems, the support.
    def log_prob(self, theta: Tensor, samples: Any) -> Tensor:
        """``log p(x; θ)`` of each sample, shape ``(R, n)``, differentiable in θ.

        Up to a term that does not depend on θ (the reward noise of a bandit, the transitions
        of an MDP), unless :meth:`support` is implemented, when it must be exact.
        ``vrbench check`` compares :meth:`score` with its autograd gradient at sampled points.
        """
        raise NotImplementedError(f"{self.name} has no log_prob")

    def support(self) -> Any:
        """Every possible sample, as samples of batch shape ``(1, K)`` (small discrete problems).

        With :meth:`log_prob`, ``vrbench check`` sums over the support instead of sampling:
        the probabilities must add to one, ``Σ p f`` must equal :meth:`value` and its autograd
        gradient :meth:`exact_grad`, exactly. Estimators use it to enumerate or to sample without
        replacement. A problem whose support is too large to list raises
        ``NotImplementedError``.
        """
        raise NotImplementedError(f"{self.name} does not enumerate its support")

    # AMORTIZED problems implement the three methods below.
    def item_inputs(self) -> Tensor:
        """The inputs ``x_b`` of the B data items, shape ``(B, P)`` (for input-dependent
        baselines)."""
        raise NotImplementedError(f"{self.name} has no per-item inputs")

    def item_f(self, samples: Any) -> Tensor:
        """Each item's term ``f_b`` of ``f = (1/B) Σ_b f_b``, shape ``(R, n, B)``."""
        raise NotImplementedError(f"{self.name} has no per-item objective")

    def item_weighted_score(self, theta: Tensor, samples: Any, weights: Tensor) -> Tensor:
        """``(1/n) Σ_j Σ_b w_jb ∇θ log q(z_jb | x_b; θ)``, shape ``(R, dim)``, for weights
        ``(R, n, B)``."""
        raise NotImplementedError(f"{self.name} has no per-item scores")

    # MULTI_SAMPLE problems implement the two methods below.
    def log_weights(self, samples: Any) -> Tensor:
        """``log w(x_b, z_bk)`` of each of the K codes of each item, shape ``(R, n, B, K)``,
        where ``w = p(x, z) / q(z | x; θ)`` with q at the θ of the draw."""
        raise NotImplementedError(f"{self.name} is not a multi-sample objective")

    def code_weighted_score(self, theta: Tensor, samples: Any, weights: Tensor) -> Tensor:
        """``(1/n) Σ_j Σ_b Σ_k w_jbk ∇θ log q(z_jbk | x_b; θ)``, shape ``(R, dim)``, for
        weights ``(R, n, B, K)``."""
        raise NotImplementedError(f"{self.name} is not a multi-sample objective")

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

    def pathwise_gradient(self, theta: Tensor, noise: Tensor) -> Tensor:
        """``(1/n) Σ_j ∇θ f(transform(θ, ε_j))`` for each replicate, ``(R, dim)``, from noise
        of batch shape ``(R, n)``: the pathwise estimate.

        By default one backward pass of autograd through a copy of θ per replicate (each
        replicate's copy only touches its own draws, so the gradient of the sum holds every
        replicate's own). A problem may override it with the gradient written out where
        autograd's graph costs more than the math (tests check the two agree).
        """
        with torch.enable_grad():
            copies = theta.detach().expand(noise.shape[0], -1).clone().requires_grad_(True)
            objective = self.f(self.transform(copies[:, None, :], noise)).mean(dim=1)
            (grad,) = torch.autograd.grad(objective.sum(), copies)
        return grad

    # Problems with INVERSE_TRANSFORM implement the two members below.
    noise_dim: ClassVar[int] = 0

    def from_uniforms(self, theta: Tensor, uniforms: Tensor) -> Any:
        """Samples from uniforms ``(R, n, noise_dim)``; ``1 − u`` gives the antithetic sample.

        Differentiable in θ when the problem is also reparameterizable; ``theta`` may then be a
        per-replicate batch ``(R, 1, dim)`` as in :meth:`transform`.
        """
        raise NotImplementedError(f"{self.name} does not sample from uniforms")

    # Problems with RELAXABLE implement the three members below (and optionally the three
    # after them).
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

    def embed(self, samples: Any) -> Tensor:
        """Discrete samples in the encoding of relaxed ones, so that ``f_relaxed(embed(x)) =
        f(x)``; the default returns the samples, for problems whose samples already are."""
        embedded: Tensor = samples
        return embedded

    def conditional_uniforms(self, theta: Tensor, hard: Tensor, uniforms: Tensor) -> Tensor:
        """Uniforms ``u`` distributed as ``U(0, 1)^noise_dim`` given ``harden(relax(θ, u, τ)) =
        hard``, made from fresh uniforms of the same shape (for Rao-Blackwellized relaxations).
        """
        raise NotImplementedError(f"{self.name} cannot draw noise given a discrete sample")

    def sample_mean(self, theta: Tensor) -> Tensor:
        """``E[x]`` as a differentiable function of θ: continuous reparameterizable problems
        implement it for the delta method, relaxable discrete ones (in the encoding of relaxed
        samples) for MuProp."""
        raise NotImplementedError(f"{self.name} does not know the mean of its samples")

    def sample_covariance(self, theta: Tensor) -> Tensor:
        """``Cov[x]`` as a differentiable function of θ, ``(P, P)`` with ``P`` the number of
        entries of :meth:`sample_mean` (x flattened in the same order)."""
        raise NotImplementedError(f"{self.name} does not know the covariance of its samples")

    # Problems with BERNOULLI_LATENTS or CATEGORICAL_LATENTS implement the three methods below
    # (see vrbench.problems.latents): estimators for logits then run on them.
    def latent_logits(self, theta: Tensor) -> Tensor:
        """The logits of the independent latents: ``(B, L)`` Bernoulli logits, one row per
        data item, or ``(B, D, K)`` categorical logits."""
        raise NotImplementedError(f"{self.name} has no latents with logits")

    def latent_samples(self, theta: Tensor, codes: Tensor) -> Any:
        """Samples made of the latents ``codes`` (0/1 or one-hot, of any leading batch shape
        followed by the shape of :meth:`latent_logits`; relaxed codes where f extends to
        them), with θ the parameters they were drawn under."""
        raise NotImplementedError(f"{self.name} has no latents with logits")

    def latent_pullback(self, theta: Tensor, grad_logits: Tensor) -> Tensor:
        """``(R, dim)`` gradients in θ from gradients in the logits ``(R, *logit shape)``:
        the chain rule through :meth:`latent_logits`."""
        raise NotImplementedError(f"{self.name} has no latents with logits")

    def coordinate_names(self) -> list[str]:
        """A short name for each coordinate of θ, for figures that show them separately."""
        return [f"θ{i}" for i in range(self.dim)]

    def nonsmooth_points(self, theta: Tensor) -> list[float]:
        """Values of a scalar sample x where f is not smooth (a step, a kink), so that
        quadrature over x splits there; smooth f: none."""
        return []

    def project(self, theta: Tensor) -> Tensor:
        """The nearest valid θ (e.g. σ > 0), applied after each optimization step."""
        return theta

    def sample_width(self) -> int:
        """Numbers stored per sample besides the score; sizes the harness's memory chunks."""
        return 1


def below(values: Tensor, bounds: Tensor | float, out: Tensor | None = None) -> Tensor:
    """``1.0`` where ``values < bounds`` and ``0.0`` elsewhere, in float64 (broadcast shape).

    Comparing straight into a float64 tensor is one pass; ``(values < bounds).to(DTYPE)``
    is two, and converting booleans to float64 is the slower of them on the CPU. ``out`` may
    be ``values`` itself when it is no longer needed.
    """
    with torch.no_grad():  # an indicator has no gradient, and out= refuses inputs that do
        if out is None:
            shape = torch.broadcast_shapes(values.shape, torch.as_tensor(bounds).shape)
            out = values.new_empty(shape, dtype=DTYPE)
        return torch.lt(values, bounds, out=out)


def gradient_of_value(problem: Problem, theta: Tensor) -> Tensor:
    """∇J by automatic differentiation of ``problem.value``: exact up to rounding where
    ``value`` is an exact sum (enumeration) written in torch."""
    with torch.enable_grad():
        point = theta.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(problem.value(point), point)
    return grad


def gaussian_event_shape(problem: Problem, theta: Tensor) -> tuple[int, ...]:
    """The shape of one sample of a :attr:`Capability.GAUSSIAN` problem: that of
    :meth:`Problem.sample_mean`, or ``()`` (univariate) for a problem without it."""
    try:
        return tuple(problem.sample_mean(theta).shape)
    except NotImplementedError:
        return ()


def asymmetric_theta(center: Tensor, scale: float = 0.5) -> Tensor:
    """``center`` plus a fixed pattern ``scale · sin(2.4 i + 1)`` that differs in every entry.

    For :meth:`Problem.check_theta`: no two entries are equal, so no coordinate is
    interchangeable with another and a softmax is far from uniform.
    """
    pattern = torch.sin(2.4 * torch.arange(center.numel(), dtype=DTYPE) + 1.0)
    return center + scale * pattern.reshape(center.shape)
