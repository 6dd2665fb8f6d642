"""RLOO from a stale policy's outputs, corrected by sequence-level importance weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.sequence_base import UNBIASED_KL, SequenceEstimator
from vrbench.problems.base import Problem


@register("rloo_importance_weighted")
@dataclass(frozen=True)
class RLOOImportanceWeighted(SequenceEstimator):
    """Off-policy RLOO: outputs of π_old, each term weighted by ``π_θ(o)/π_old(o)``.

    ``ĝ = (1/P) Σ_p (1/G) Σ_i w_pi (r_pi − (1/(G−1)) Σ_{k≠i} r_pk) ∇θ log π_θ(o_pi|p)``,
    ``w = π_θ(o)/π_old(o)`` the sequence's importance weight, ``r = R − β k1`` with the
    log-ratio at θ (not at π_old), and a KL loss term weighted by w too. Unbiased at every
    staleness, since ``E_old[w g(o)] = E_θ[g(o)]`` and the baseline is independent of its
    output (Precup, Sutton & Singh, "Eligibility traces for off-policy policy evaluation",
    ICML 2000; with Kool et al.'s leave-one-out baseline); the price is the variance of w,
    which grows with the distance between π_old and π_θ. The unbiased reference against which
    the clipped estimators' bias from staleness is read. Needs G ≥ 2.
    """

    display_name = "RLOO (importance-weighted)"

    unbiased_configurations = UNBIASED_KL
    min_samples = 2
    reference = "Precup et al., 2000; Kool et al., 2019"

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        ro = self.draw(problem, theta, n_samples, replicates, generator)
        weight = (ro.log_probs - ro.behaviour_log_probs).sum(-1).exp()
        reward = ro.rewards - self.reward_penalty(problem, ro, at_theta=True)
        advantage = (reward - reward.mean(dim=1, keepdim=True)) / (n_samples - 1)
        weights = (weight * advantage)[..., None] * ro.mask
        weights = weights + weight[..., None] * self.kl_loss_weights(problem, ro, 1 / n_samples)
        return self.gradient(problem, theta, ro, weights)
