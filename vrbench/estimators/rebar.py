"""REBAR and RELAX: control variates from a continuous relaxation, kept unbiased.

Both relax ``b = 1[z > 0]``, ``z = θ + logit(u)``, to ``σ(z/λ + κθ)``: with ``κ = λ/(1 + λ)``
(``relaxation="shifted"``), the relaxation of Tucker et al.'s released REBAR code
(github.com/tensorflow/models, research/rebar, ``muprop_relaxation``, on by default), or
with ``κ = 0`` (``"plain"``), the concrete relaxation ``σ(z/λ)`` of their paper and of
Grathwohl et al.'s toy script (github.com/duvenaud/relax, ``rebar_toy.py``). The control's
parameters φ (REBAR's scale η and temperature λ; RELAX's also a network) are either fitted at
each θ on independent draws (:meth:`fit`, as a sweep's cell measures an estimator), or
adapted along an optimization run by a gradient step on the single-draw second moment
``‖ĝ‖²`` each step, the papers' protocol (:meth:`control_parameters` and
:meth:`estimates_with`; see :mod:`vrbench.reproduce`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.base import Estimator
from vrbench.problems.base import DTYPE, Capability, Problem

EPSILON = 1e-12
TEMPERATURES = (0.1, 0.3, 0.5, 1.0, 2.0)
SCALES = (0.0, 0.5, 1.0)
RELAXATIONS = ("shifted", "plain")
Control = Callable[[Tensor, Tensor], Tensor]
"""A control variate ``c(z; θ)``: logistic noise shifted by the logits ``z`` ``(R, n, D)``,
and the logits θ ``(R, 1, D)`` (the shifted relaxation depends on them directly), to values
``(R, n)``."""


def uniforms(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """The two uniforms ``(u, v)`` of each draw, shape ``(2, *shape)``, kept off 0 and 1."""
    return _uniforms(shape, generator)


def _logit(u: Tensor) -> Tensor:
    return torch.log(u) - torch.log1p(-u)


def _uniforms(shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    return torch.rand((2, *shape), generator=generator, dtype=DTYPE).clamp(EPSILON, 1 - EPSILON)


def relaxed_control_estimates(problem: Problem, theta: Tensor, uniforms: Tensor,
                              control: Control, create_graph: bool = False) -> Tensor:
    """``[f(b) − c(z̃)] ∇θ log p(b) + ∇θ c(z) − ∇θ c(z̃)`` averaged over draws, ``(R, D)``.

    ``z = θ + logit(u)``, ``b = 1[z > 0]``, and ``z̃ ~ p(z | b)`` through
    ``u′ = 1 − p + v p`` (b = 1) or ``u′ = v (1 − p)`` (b = 0), reparameterized in θ. Unbiased
    for any control c independent of the draws (Grathwohl et al., ICLR 2018, equation 7).
    ``create_graph`` keeps the graph so that c's parameters can be fitted through it.
    """
    u, v = uniforms[0], uniforms[1]
    bits = (theta + _logit(u) > 0).to(DTYPE)
    with torch.enable_grad():
        copies = theta.detach().expand(u.shape[0], -1).clone().requires_grad_(True)
        logits = copies[:, None, :]
        p = torch.sigmoid(logits)
        z = logits + _logit(u)
        u_given_b = torch.where(bits > 0, 1 - p + v * p, v * (1 - p))
        z_tilde = logits + _logit(u_given_b.clamp(EPSILON, 1 - EPSILON))
        c_z, c_z_tilde = control(z, logits), control(z_tilde, logits)
        (pathwise,) = torch.autograd.grad((c_z - c_z_tilde).mean(dim=1).sum(), copies,
                                          create_graph=create_graph)
    weights = problem.f(bits) - c_z_tilde
    if not create_graph:
        weights = weights.detach()
    score = bits - torch.sigmoid(theta)
    return pathwise + (weights[..., None] * score).mean(dim=1)


def relaxed(z: Tensor, logits: Tensor, temperature: float | Tensor, relaxation: str) -> Tensor:
    """The relaxed sample ``σ(z/λ + κθ)``, ``κ = λ/(1 + λ)`` for the shifted relaxation, 0
    for the plain one (see the module)."""
    shift = temperature / (1 + temperature) * logits if relaxation == "shifted" else 0.0
    return torch.sigmoid(z / temperature + shift)


def relaxed_f(problem: Problem, scale: float | Tensor, temperature: float | Tensor,
              relaxation: str = "shifted") -> Control:
    """REBAR's control: ``η f(σ(z/λ + κθ))``."""
    return lambda z, logits: scale * problem.f_relaxed(relaxed(z, logits, temperature,
                                                               relaxation))


class _RelaxedControl(Estimator):
    """What REBAR and RELAX share: the estimator of :func:`relaxed_control_estimates` with
    a control of parameters φ, fitted at θ or adapted along a run."""

    relaxation: str = "shifted"

    family = "discrete"
    requires = frozenset({Capability.BERNOULLI_LOGITS, Capability.RELAXABLE})
    evals_per_sample = 3

    def _check_relaxation(self) -> None:
        check(self.relaxation in RELAXATIONS, self.name,
              f"relaxation={self.relaxation!r}; valid: {', '.join(RELAXATIONS)}")

    def control(self, problem: Problem, params: dict[str, Tensor]) -> Control:
        """The control variate of parameters ``params``."""
        raise NotImplementedError

    def control_parameters(self, problem: Problem, theta: Tensor,
                           generator: torch.Generator) -> dict[str, Tensor]:
        """The parameters φ where adaptation starts, leaves that require gradients."""
        raise NotImplementedError

    def estimates_with(self, problem: Problem, theta: Tensor, uniforms: Tensor,
                       params: dict[str, Tensor], create_graph: bool = False) -> Tensor:
        """Estimates ``(R, D)`` from ``uniforms`` ``(2, R, n, D)`` with the control of
        ``params``; with ``create_graph`` differentiable in them, so that a step on
        ``‖ĝ‖²`` adapts φ (the estimator is unbiased for every φ, so its second moment and
        its variance have the same gradient)."""
        return relaxed_control_estimates(problem, theta, uniforms, self.control(problem, params),
                                         create_graph=create_graph)

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        draws = _uniforms((replicates, n_samples, problem.dim), generator)
        return self.estimates_with(problem, theta, draws, state)


@register("rebar")
@dataclass(frozen=True)
class REBAR(_RelaxedControl):
    """REBAR for independent Bernoullis with logits θ: the relaxed f as control variate.

    ``ĝ = [f(b) − η f(σ_λ(z̃))] ∇θ log p(b) + η ∇θ f(σ_λ(z)) − η ∇θ f(σ_λ(z̃))`` with
    ``z = θ + logit(u)``, ``b = 1[z > 0]``, ``z̃ ~ p(z | b)`` reparameterized, and
    ``σ_λ(z) = σ(z/λ + κθ)``, ``κ = λ/(1 + λ)`` (``relaxation="shifted"``, the released code's)
    or 0 (``"plain"``). Unbiased for every scale η and temperature λ. Fitted at θ, (η, λ) are
    chosen on a small grid to minimize the variance over ``fit_samples`` independent draws;
    along a run they are adapted from η = 1, λ = 0.5 by gradient steps on ‖ĝ‖², as the
    authors' code does. Three evaluations of f per draw. Tucker, Mnih, Maddison, Lawson &
    Sohl-Dickstein, "REBAR: Low-variance, unbiased gradient estimates for discrete latent
    variable models", NeurIPS 2017.
    """

    display_name = "REBAR"

    fit_samples: int = 256
    relaxation: str = "shifted"

    reference = "Tucker et al., 2017"

    def __post_init__(self) -> None:
        check(self.fit_samples >= 2, self.name, f"fit_samples={self.fit_samples} must be >= 2")
        self._check_relaxation()

    def control(self, problem: Problem, params: dict[str, Tensor]) -> Control:
        return relaxed_f(problem, params["eta"], params["log_temperature"].exp(),
                         self.relaxation)

    def control_parameters(self, problem: Problem, theta: Tensor,
                           generator: torch.Generator) -> dict[str, Tensor]:
        return {"eta": torch.ones((), dtype=DTYPE, requires_grad=True),
                "log_temperature": torch.full((), math.log(0.5), dtype=DTYPE,
                                              requires_grad=True)}

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator
            ) -> dict[str, Tensor]:
        draws = _uniforms((self.fit_samples, 1, problem.dim), generator)

        def variance(choice: tuple[float, float]) -> float:
            control = relaxed_f(problem, *choice, self.relaxation)
            estimates = relaxed_control_estimates(problem, theta, draws, control)
            return float(estimates.var(dim=0).sum())

        eta, temperature = min(itertools.product(SCALES, TEMPERATURES), key=variance)
        return {"eta": torch.tensor(eta, dtype=DTYPE),
                "log_temperature": torch.tensor(math.log(temperature), dtype=DTYPE)}


@register("relax")
@dataclass(frozen=True)
class RELAX(_RelaxedControl):
    """RELAX for independent Bernoullis: REBAR's control plus a learned network.

    The control is ``c_φ(z) = η f(σ_λ(z)) + r_ρ(z)`` (the form of the paper's VAE
    experiments), ``σ_λ`` REBAR's relaxation and ``r_ρ`` a one-hidden-layer tanh network of
    ``hidden`` units, starting at 0; φ = (η, log λ, ρ) is fitted by ``fit_steps`` Adam steps
    that minimize the estimator's second moment ``E‖ĝ‖²`` (its variance, since the mean is
    fixed) on batches of ``batch_size`` independent draws, or adapted along a run by one
    such step a draw. The estimator ``[f(b) − c_φ(z̃)] ∇θ log p(b) + ∇θ c_φ(z) − ∇θ c_φ(z̃)``
    is unbiased for every φ, and a fitted φ never sees the measured draws. Three evaluations
    of f per draw. Grathwohl, Choi, Wu, Roeder & Duvenaud, "Backpropagation through the
    void: optimizing control variates for black-box gradient estimation", ICLR 2018.
    """

    display_name = "RELAX"

    hidden: int = 16
    fit_steps: int = 100
    batch_size: int = 64
    lr: float = 0.01
    relaxation: str = "shifted"

    reference = "Grathwohl et al., 2018"

    def __post_init__(self) -> None:
        for key in ("hidden", "fit_steps", "batch_size"):
            check(getattr(self, key) >= 1, self.name, f"{key}={getattr(self, key)} must be >= 1")
        check(self.lr > 0, self.name, f"lr={self.lr} must be positive")
        self._check_relaxation()

    def control(self, problem: Problem, params: dict[str, Tensor]) -> Control:
        def control(z: Tensor, logits: Tensor) -> Tensor:
            temperature = params["log_temperature"].exp()
            value = problem.f_relaxed(relaxed(z, logits, temperature, self.relaxation))
            network = torch.tanh(z @ params["w1"] + params["b1"]) @ params["w2"]
            return params["scale"] * value + network

        return control

    def control_parameters(self, problem: Problem, theta: Tensor,
                           generator: torch.Generator) -> dict[str, Tensor]:
        dim = problem.dim
        params = {
            "scale": torch.ones((), dtype=DTYPE),
            "log_temperature": torch.full((), math.log(0.5), dtype=DTYPE),
            "w1": 0.1 * torch.randn(dim, self.hidden, generator=generator, dtype=DTYPE),
            "b1": torch.zeros(self.hidden, dtype=DTYPE),
            "w2": torch.zeros(self.hidden, dtype=DTYPE),
        }
        return {key: value.requires_grad_(True) for key, value in params.items()}

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator
            ) -> dict[str, Tensor]:
        params = self.control_parameters(problem, theta, generator)
        optimizer = torch.optim.Adam(params.values(), lr=self.lr)
        for _ in range(self.fit_steps):
            draws = _uniforms((self.batch_size, 1, problem.dim), generator)
            with torch.enable_grad():
                estimates = self.estimates_with(problem, theta, draws, params,
                                                create_graph=True)
                loss = (estimates**2).sum(dim=1).mean()
                optimizer.zero_grad()
                loss.backward()
            optimizer.step()
        return {key: value.detach() for key, value in params.items()}
