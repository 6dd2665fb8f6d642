"""NVIL: per-item learning signals with an input-dependent baseline learned on the side."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.base import Estimator
from vrbench.problems.base import DTYPE, Capability, Problem


def _baseline(params: dict[str, Tensor], inputs: Tensor) -> Tensor:
    """``c + C_ψ(x)`` for every item: a constant plus a one-hidden-layer tanh network."""
    hidden = torch.tanh(inputs @ params["w1"] + params["b1"])
    return params["c"] + hidden @ params["w2"]


@register("nvil")
@dataclass(frozen=True)
class NVIL(Estimator):
    """Neural variational inference and learning: a learned, input-dependent baseline.

    For a problem whose sample holds one latent ``z_b ~ q(·|x_b; θ)`` per data item and
    ``f = (1/B) Σ_b f_b(z_b)`` (an amortized ELBO, ``f_b = log p(x_b, z_b) − log q(z_b|x_b)``):
    ``ĝ = (1/n) Σ_j (1/B) Σ_b (f_b(z_jb) − c − C_ψ(x_b)) ∇θ log q(z_jb|x_b)``. Each item's
    latent is credited with its own signal only (the others' terms have mean zero against its
    score), and the baseline ``c + C_ψ(x)``, a constant plus a tanh network of ``hidden``
    units on the item's input, is fitted before measurement on ``fit_samples`` independent
    draws: ``fit_steps`` Adam steps on the squared centred signal, divided as in the paper by
    ``max(1, v)``, ``v`` its current mean square (the variance normalization). Unbiased, since
    the baseline depends on the input only. Mnih & Gregor, "Neural variational inference and
    learning in belief networks", ICML 2014, section 3 (learning signal, input-dependent
    baseline, variance normalization).

    The paper also divides the estimate itself by ``max(1, √v)``, an adaptive step size that
    rescales every estimate by the same constant (direction and signal-to-noise ratio
    unchanged); vrbench reports the estimate before that division, which estimates ∇J.
    """

    display_name = "NVIL"

    hidden: int = 100
    fit_samples: int = 1024
    fit_steps: int = 100
    lr: float = 0.01

    family = "score function"
    requires = frozenset({Capability.AMORTIZED})
    reference = "Mnih & Gregor, 2014"

    def __post_init__(self) -> None:
        for key in ("hidden", "fit_samples", "fit_steps"):
            check(getattr(self, key) >= 1, self.name, f"{key}={getattr(self, key)} must be >= 1")
        check(self.lr > 0, self.name, f"lr={self.lr} must be positive")

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator
            ) -> dict[str, Tensor]:
        inputs = problem.item_inputs()
        signals = problem.item_f(problem.sample(theta, (1, self.fit_samples), generator))[0]
        params = {
            "w1": 0.1 * torch.randn(inputs.shape[1], self.hidden, generator=generator,
                                    dtype=DTYPE),
            "b1": torch.zeros(self.hidden, dtype=DTYPE),
            "w2": torch.zeros(self.hidden, dtype=DTYPE),
            "c": signals.mean(),
        }
        for value in params.values():
            value.requires_grad_(True)
        optimizer = torch.optim.Adam(params.values(), lr=self.lr)
        for _ in range(self.fit_steps):
            with torch.enable_grad():
                centred = signals - _baseline(params, inputs)
                variance = (centred.detach() ** 2).mean()
                loss = (centred**2).mean() / variance.clamp_min(1.0)
                optimizer.zero_grad()
                loss.backward()
            optimizer.step()
        return {key: value.detach() for key, value in params.items()}

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: dict[str, Tensor] | None = None) -> Tensor:
        if state is None:
            raise ValueError(f"{self.name} needs its fitted baseline: call fit() first")
        samples = problem.sample(theta, (replicates, n_samples), generator)
        signals = problem.item_f(samples)  # (R, n, B)
        weights = (signals - _baseline(state, problem.item_inputs())) / signals.shape[-1]
        return problem.item_weighted_score(theta, samples, weights)
