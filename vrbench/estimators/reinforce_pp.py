"""REINFORCE++: token-level KL rewards, returns normalized over the whole batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.sequence_base import (
    Rollouts,
    SequenceEstimator,
    batch_whitened,
    clipped_slope,
    reward_to_go,
)
from vrbench.problems.base import Problem


@dataclass(frozen=True)
class _ReinforcePlusPlus(SequenceEstimator):
    clip: float = 0.2
    kl: str = "k1"
    kl_in: str = "reward"
    kl_level: str = "token"

    reference = "Hu, 2025, eqs. 8–10"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 < self.clip < 1, self.name, f"clip={self.clip} must lie in (0, 1)")

    def returns(self, problem: Any, ro: Rollouts) -> Tensor:
        """Each token's return ``R − β Σ_{s≥t} k_s``, ``(R, G, P, L)``."""
        return ro.rewards[..., None] * ro.mask - reward_to_go(self.token_penalties(problem, ro))

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        ro = self.draw(problem, theta, n_samples, replicates, generator)
        advantage = batch_whitened(self.returns(problem, ro), ro.mask)
        ratio = (ro.log_probs - ro.behaviour_log_probs).exp()
        prompts = ro.rewards.shape[-1]
        per_token = ro.mask * prompts / ro.mask.sum(dim=(1, 2, 3), keepdim=True)
        weights = clipped_slope(ratio, advantage, self.clip, self.clip) * per_token
        weights = weights + self.kl_loss_weights(problem, ro, per_token)
        return self.gradient(problem, theta, ro, weights)


@register("reinforce_pp")
@dataclass(frozen=True)
class ReinforcePlusPlus(_ReinforcePlusPlus):
    """REINFORCE++: token returns with a k1 KL reward, whitened over the whole batch.

    Hu, "REINFORCE++: a simple and efficient approach for aligning large language models",
    2025: each token's return is ``R − β Σ_{s≥t} k1_s`` (eqs. 8–9, KL at the rollout policy),
    normalized over every token of the batch, all prompts and outputs together (eq. 10:
    ``(A − mean)/std``, population variance, as OpenRLHF's ``masked_whiten``), then PPO's
    clipped surrogate (ε = 0.2) averaged over the batch's tokens (OpenRLHF's token-level
    loss). G = n outputs per prompt from π_old; G = 1 is the paper's default.

    Biased: the whitening subtracts a batch mean that includes each token's own return, and
    divides by a random std (a ratio of random quantities); the token mean weighs outputs by
    their length; off-policy, the clipping. Unlike GRPO's, its normalization is shared by
    all prompts: it does not reweigh easy against hard prompts.
    """

    display_name = "REINFORCE++"


@register("reinforce_pp_baseline")
@dataclass(frozen=True)
class ReinforcePlusPlusBaseline(_ReinforcePlusPlus):
    """REINFORCE++-baseline: each group's mean reward subtracted before batch whitening.

    As ``reinforce_pp`` with the return ``(R_i − mean_k R_k) − β Σ_{s≥t} k1_s``: the group
    mean of the rewards removed first, then the batch whitening (Hu et al.'s
    ``reinforce_baseline`` advantage, REINFORCE++ paper v2 and OpenRLHF). Biased for the
    reasons of ``reinforce_pp``, and the group mean includes the output itself (a factor
    ``1 − 1/G`` before whitening, as in Dr. GRPO). Needs G ≥ 2.
    """

    display_name = "REINFORCE++ (baseline)"

    min_samples = 2

    def returns(self, problem: Any, ro: Rollouts) -> Tensor:
        centred = ro.rewards - ro.rewards.mean(dim=1, keepdim=True)
        return centred[..., None] * ro.mask - reward_to_go(self.token_penalties(problem, ro))
