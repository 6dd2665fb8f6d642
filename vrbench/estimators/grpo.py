"""GRPO: group-normalized advantages, clipped ratios, per-output token means, k3 KL loss."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.sequence_base import (
    SequenceEstimator,
    clipped_slope,
    group_mean,
    group_normalized,
)
from vrbench.problems.base import Problem


@register("grpo")
@dataclass(frozen=True)
class GRPO(SequenceEstimator):
    """GRPO: ``(r − mean)/std`` advantages, each output's tokens averaged, a k3 KL loss.

    The gradient of Shao et al.'s objective ("DeepSeekMath", 2024, eq. 3, with the outcome
    advantage of section 4.1.2 and the KL of eq. 4), G = n outputs per prompt from π_old:
    ``(1/P) Σ_p (1/G) Σ_i (1/|o_i|) Σ_t [min(ρ_t Â_i, clip(ρ_t, 1 − ε, 1 + ε) Â_i)
    − β k3_t]``, ``ρ_t = π_θ(y_t|·)/π_old(y_t|·)``, ``Â_i = (r_i − mean(r))/(std(r) + 10⁻⁸)``
    (std with G − 1, as in the released implementations; an all-equal group gets 0).

    Biased, three ways (Liu et al., "Understanding R1-Zero-like training", 2025, section
    3.1): dividing by std weighs each prompt by ``1/std`` (prompts whose groups are nearly all
    right or all wrong count most); dividing by ``|o_i|`` shrinks the push on long outputs,
    for and against (wrong answers are penalized less the longer they are); and the
    token-level k3 loss differentiates a KL estimate, giving neither the reverse KL's
    gradient nor the sequence's (Tang & Munos, 2025). Off-policy, the per-token ratio and its
    clipping add the bias of PPO's surrogate. ``std_normalize=false`` and
    ``length_normalize=false`` remove one normalization each (Liu et al.'s ablations; both
    removed, the policy term is Dr. GRPO's). Needs G ≥ 2.
    """

    display_name = "GRPO"

    clip: float = 0.2
    std_normalize: bool = True
    length_normalize: bool = True
    kl: str = "k3"
    kl_in: str = "loss"
    kl_level: str = "token"

    min_samples = 2
    reference = "Shao et al., 2024, eq. 3"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 < self.clip < 1, self.name, f"clip={self.clip} must lie in (0, 1)")

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        ro = self.draw(problem, theta, n_samples, replicates, generator)
        reward = ro.rewards - self.reward_penalty(problem, ro)
        advantage = group_normalized(reward) if self.std_normalize else \
            reward - group_mean(reward)
        ratio = (ro.log_probs - ro.behaviour_log_probs).exp()
        per_token = ro.mask / n_samples
        if self.length_normalize:
            per_token = per_token / ro.lengths[..., None]
        weights = clipped_slope(ratio, advantage[..., None], self.clip, self.clip) * per_token
        weights = weights + self.kl_loss_weights(problem, ro, per_token)
        return self.gradient(problem, theta, ro, weights)
