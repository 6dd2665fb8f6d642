"""REINFORCE with the leave-one-out baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import Estimator, weighted_score
from vrbench.problems.base import Capability, Problem


@register("rloo")
@dataclass(frozen=True)
class RLOO(Estimator):
    """REINFORCE leave-one-out: each draw's baseline is the mean f of the other n − 1 draws.

    ``ĝ = (1/n) Σ_j (f_j − (1/(n−1)) Σ_{k≠j} f_k) ∇θ log p(x_j; θ)
    = (1/(n−1)) Σ_j (f_j − f̄) ∇θ log p(x_j; θ)``. Unbiased because each draw's baseline is
    independent of it; needs ``n ≥ 2``. On an amortized problem (f the mean of per-item terms
    ``f_b`` whose latents are drawn independently per item) each item's latents get their own
    signal ``f_jb − f̄_b``, the per-example REINFORCE-LOO of Dong, Mnih & Tucker's code
    (NeurIPS 2020): the other items' terms are independent of item b's score, so leaving them
    out keeps it unbiased and removes their noise. Kool, van Hoof & Welling, "Buy 4 REINFORCE
    samples, get a baseline for free!", ICLR 2019 workshop (DeepRLStructPred).
    """

    display_name = "RLOO"

    family = "score function"
    min_samples = 2
    reference = "Kool et al., 2019"

    def estimate(
        self,
        problem: Problem,
        theta: Tensor,
        n_samples: int,
        replicates: int,
        generator: torch.Generator,
        state: Any = None,
    ) -> Tensor:
        samples = problem.sample(theta, (replicates, n_samples), generator)
        scale = n_samples / (n_samples - 1)
        if Capability.AMORTIZED in problem.capabilities:
            items = problem.item_f(samples)  # (R, n, B)
            centered = (items - items.mean(dim=1, keepdim=True)) * (scale / items.shape[-1])
            return problem.item_weighted_score(theta, samples, centered)
        values = problem.f(samples)
        centered = values - values.mean(dim=1, keepdim=True)
        return weighted_score(problem, theta, samples, centered.mul_(scale))
