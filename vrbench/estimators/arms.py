"""ARMS: leave-one-out REINFORCE over mutually antithetic Bernoulli samples from a copula."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import Estimator
from vrbench.problems.base import DTYPE, Capability, Problem


def dirichlet_copula_uniforms(shape: tuple[int, int, int], generator: torch.Generator
                              ) -> Tensor:
    """``u_i = (1 − d_i)^{n−1}`` with ``d ~ Dirichlet(1, …, 1)`` over the n draws (axis 1):
    each ``u_i`` is uniform on (0, 1), and the n of them are negatively dependent."""
    exponentials = -torch.log1p(-torch.rand(shape, generator=generator, dtype=DTYPE))
    weights = exponentials / exponentials.sum(dim=1, keepdim=True)
    return (1 - weights) ** (shape[1] - 1)


@register("arms")
@dataclass(frozen=True)
class ARMS(Estimator):
    """ARMS: RLOO on n antithetic Bernoulli vectors, corrected for their correlation.

    For each coordinate, n uniforms ``u_1..u_n`` from the Dirichlet copula (uniform marginals,
    negatively dependent) give ``b_i = 1[u_i < p]`` when ``p = σ(θ) < 1/2``, else
    ``b_i = 1[1 − u_i < p]``; then ``ĝ = (1/n) Σ_i (n/(n−1)) (f(b_i) − f̄)(b_i − p) /
    (1 − ρ)``, where ``ρ`` is the correlation of two of the bits, ``1 − ρ = (q − C(q, q)) /
    (p (1 − p))`` with ``q = min(p, 1 − p)`` and the copula's bivariate CDF
    ``C(a, b) = max(0, a^{1/(n−1)} + b^{1/(n−1)} − 1)^{n−1}``. Leave-one-out baselines of
    correlated draws would scale the gradient by ``1 − ρ``; dividing restores it, so ARMS is
    unbiased. With n = 2 it is DisARM, with independent draws RLOO. n evaluations of f per
    estimate, n ≥ 2. Dimitriev & Zhou, "ARMS: Antithetic-REINFORCE-Multi-Sample gradient for
    binary variables", ICML 2021 (the Dirichlet-copula estimator, ARMS-D).
    """

    display_name = "ARMS"

    family = "discrete"
    requires = frozenset({Capability.BERNOULLI_LOGITS})
    min_samples = 2
    reference = "Dimitriev & Zhou, 2021"

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        p = torch.sigmoid(theta)
        q = torch.minimum(p, 1 - p)
        u = dirichlet_copula_uniforms((replicates, n_samples, problem.dim), generator)
        bits = torch.where(p < 0.5, u < p, 1 - u < p).to(DTYPE)
        power = 1.0 / (n_samples - 1)
        both = (2 * q**power - 1).clamp_min(0.0) ** (n_samples - 1)  # C(q, q)
        correction = p * (1 - p) / (q - both)
        values = problem.f(bits)
        centred = (values - values.mean(dim=1, keepdim=True)) * (n_samples / (n_samples - 1))
        return (centred[..., None] * (bits - p)).mean(dim=1) * correction
