"""Dr. GRPO: GRPO without the standard-deviation and length normalizations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.sequence_base import SequenceEstimator, clipped_slope, group_mean
from vrbench.problems.base import Problem


@register("dr_grpo")
@dataclass(frozen=True)
class DrGRPO(SequenceEstimator):
    """Dr. GRPO: advantages ``r − mean(r)``, tokens summed, outputs averaged.

    The gradient of Liu et al.'s objective ("Understanding R1-Zero-like training: a critical
    perspective", 2025, section 3.2, the Dr. GRPO objective): ``(1/P) Σ_p (1/G) Σ_i Σ_t
    [min(ρ_t Â_i, clip(ρ_t, 1 − ε, 1 + ε) Â_i) − β k3_t]``, ``Â_i = r_i − mean(r)``, G = n
    outputs per prompt from π_old. The KL term, when β > 0, is the k3 loss aggregated like the
    policy term, as in the authors' code (``oat``'s PPO learner with ``critic_type=drgrpo``);
    the code also divides the token sum by the generation budget, a constant that only scales
    the step, left out here.

    Biased: the mean includes the output itself, so on-policy with β = 0 ``E[ĝ] =
    (1 − 1/G) ∇J`` exactly: the right direction (cosine 1), a shorter step; with β > 0 the k3
    loss adds a bias in direction (see :mod:`vrbench.estimators.sequence_base`); off-policy,
    the per-token ratio and clipping add theirs. Needs G ≥ 2.
    """

    display_name = "Dr. GRPO"

    clip: float = 0.2
    kl: str = "k3"
    kl_in: str = "loss"
    kl_level: str = "token"

    min_samples = 2
    reference = "Liu et al., 2025, section 3.2"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 < self.clip < 1, self.name, f"clip={self.clip} must lie in (0, 1)")

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        ro = self.draw(problem, theta, n_samples, replicates, generator)
        reward = ro.rewards - self.reward_penalty(problem, ro)
        advantage = reward - group_mean(reward)
        ratio = (ro.log_probs - ro.behaviour_log_probs).exp()
        per_token = ro.mask / n_samples
        weights = clipped_slope(ratio, advantage[..., None], self.clip, self.clip) * per_token
        weights = weights + self.kl_loss_weights(problem, ro, per_token)
        return self.gradient(problem, theta, ro, weights)
