"""REBAR and RELAX: control variates from a continuous relaxation, kept unbiased."""

from __future__ import annotations

import itertools
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
Control = Callable[[Tensor], Tensor]
"""A control variate ``c(z)``: relaxed logits ``(R, n, D)`` to values ``(R, n)``."""


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
        c_z, c_z_tilde = control(z), control(z_tilde)
        (pathwise,) = torch.autograd.grad((c_z - c_z_tilde).mean(dim=1).sum(), copies,
                                          create_graph=create_graph)
    weights = problem.f(bits) - c_z_tilde
    if not create_graph:
        weights = weights.detach()
    score = bits - torch.sigmoid(theta)
    return pathwise + (weights[..., None] * score).mean(dim=1)


def relaxed_f(problem: Problem, scale: float | Tensor, temperature: float | Tensor) -> Control:
    """REBAR's control: ``η f(σ(z / λ))``."""
    return lambda z: scale * problem.f_relaxed(torch.sigmoid(z / temperature))


@register("rebar")
@dataclass(frozen=True)
class REBAR(Estimator):
    """REBAR for independent Bernoullis with logits θ: the relaxed f as control variate.

    ``ĝ = [f(b) − η f(σ(z̃/λ))] ∇θ log p(b) + η ∇θ f(σ(z/λ)) − η ∇θ f(σ(z̃/λ))`` with
    ``z = θ + logit(u)``, ``b = 1[z > 0]`` and ``z̃ ~ p(z | b)`` reparameterized. Unbiased for
    every scale η and temperature λ; (η, λ) are chosen on a small grid to minimize the
    variance over ``fit_samples`` independent draws. Three evaluations of f per draw. Tucker,
    Mnih, Maddison, Lawson & Sohl-Dickstein, "REBAR: Low-variance, unbiased gradient
    estimates for discrete latent variable models", NeurIPS 2017.
    """

    display_name = "REBAR"

    fit_samples: int = 256

    family = "discrete"
    requires = frozenset({Capability.BERNOULLI_LOGITS, Capability.RELAXABLE})
    evals_per_sample = 3
    reference = "Tucker et al., 2017"

    def __post_init__(self) -> None:
        check(self.fit_samples >= 2, self.name, f"fit_samples={self.fit_samples} must be >= 2")

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator
            ) -> tuple[float, float]:
        uniforms = _uniforms((self.fit_samples, 1, problem.dim), generator)

        def variance(choice: tuple[float, float]) -> float:
            control = relaxed_f(problem, *choice)
            estimates = relaxed_control_estimates(problem, theta, uniforms, control)
            return float(estimates.var(dim=0).sum())

        return min(itertools.product(SCALES, TEMPERATURES), key=variance)

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        uniforms = _uniforms((replicates, n_samples, problem.dim), generator)
        return relaxed_control_estimates(problem, theta, uniforms, relaxed_f(problem, *state))


@register("relax")
@dataclass(frozen=True)
class RELAX(Estimator):
    """RELAX for independent Bernoullis: REBAR's control plus a learned network.

    The control is ``c_φ(z) = η f(σ(z/λ)) + r_ρ(z)``, with ``r_ρ`` a one-hidden-layer tanh
    network of ``hidden`` units; φ = (η, log λ, ρ) is fitted by ``fit_steps`` Adam steps that
    minimize the estimator's second moment ``E‖ĝ‖²`` (its variance, since the mean is fixed)
    on batches of ``batch_size`` independent draws. The estimator
    ``[f(b) − c_φ(z̃)] ∇θ log p(b) + ∇θ c_φ(z) − ∇θ c_φ(z̃)`` is unbiased for every φ, and φ
    never sees the measured draws. Three evaluations of f per draw.
    Grathwohl, Choi, Wu, Roeder & Duvenaud, "Backpropagation through the void: optimizing
    control variates for black-box gradient estimation", ICLR 2018.
    """

    display_name = "RELAX"

    hidden: int = 16
    fit_steps: int = 100
    batch_size: int = 64
    lr: float = 0.01

    family = "discrete"
    requires = frozenset({Capability.BERNOULLI_LOGITS, Capability.RELAXABLE})
    evals_per_sample = 3
    reference = "Grathwohl et al., 2018"

    def __post_init__(self) -> None:
        for key in ("hidden", "fit_steps", "batch_size"):
            check(getattr(self, key) >= 1, self.name, f"{key}={getattr(self, key)} must be >= 1")
        check(self.lr > 0, self.name, f"lr={self.lr} must be positive")

    def _control(self, problem: Problem, params: dict[str, Tensor]) -> Control:
        def control(z: Tensor) -> Tensor:
            relaxed = problem.f_relaxed(torch.sigmoid(z / params["log_temperature"].exp()))
            network = torch.tanh(z @ params["w1"] + params["b1"]) @ params["w2"]
            return params["scale"] * relaxed + network

        return control

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator
            ) -> dict[str, Tensor]:
        dim = problem.dim
        params = {
            "scale": torch.ones((), dtype=DTYPE),
            "log_temperature": torch.full((), -0.7, dtype=DTYPE),
            "w1": 0.1 * torch.randn(dim, self.hidden, generator=generator, dtype=DTYPE),
            "b1": torch.zeros(self.hidden, dtype=DTYPE),
            "w2": torch.zeros(self.hidden, dtype=DTYPE),
        }
        for value in params.values():
            value.requires_grad_(True)
        optimizer = torch.optim.Adam(params.values(), lr=self.lr)
        for _ in range(self.fit_steps):
            uniforms = _uniforms((self.batch_size, 1, dim), generator)
            with torch.enable_grad():
                estimates = relaxed_control_estimates(
                    problem, theta, uniforms, self._control(problem, params), create_graph=True)
                loss = (estimates**2).sum(dim=1).mean()
                optimizer.zero_grad()
                loss.backward()
            optimizer.step()
        return {key: value.detach() for key, value in params.items()}

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        uniforms = _uniforms((replicates, n_samples, problem.dim), generator)
        return relaxed_control_estimates(problem, theta, uniforms,
                                         self._control(problem, state))
