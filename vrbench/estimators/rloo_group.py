"""RLOO over each prompt's group of outputs (the language-model form of leave-one-out)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.sequence_base import UNBIASED_KL, SequenceEstimator
from vrbench.problems.base import Problem


@register("rloo_group")
@dataclass(frozen=True)
class RLOOGroup(SequenceEstimator):
    """REINFORCE leave-one-out per prompt: each output's baseline is its group's other rewards.

    ``ĝ = (1/P) Σ_p (1/G) Σ_i (r_pi − (1/(G−1)) Σ_{k≠i} r_pk) ∇θ log π_θ(o_pi|p)`` with
    ``r = R − β k`` (default k1 of the sequence in the reward) and G = n outputs per prompt
    from π_θ. Unbiased, because each baseline is independent of its own output, for k1 in the
    reward or k2 as a sequence-level loss; biased by the KL term otherwise (see
    :mod:`vrbench.estimators.sequence_base`). Ahmadian et al., "Back to basics: revisiting
    REINFORCE style optimization for learning from human feedback in LLMs", ACL 2024, eq. 5
    (after Kool et al., 2019); needs G ≥ 2.
    """

    display_name = "RLOO (group)"

    unbiased_configurations = UNBIASED_KL
    behaviour = False
    min_samples = 2
    reference = "Ahmadian et al., 2024"

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        ro = self.draw(problem, theta, n_samples, replicates, generator)
        reward = ro.rewards - self.reward_penalty(problem, ro)
        advantage = (reward - reward.mean(dim=1, keepdim=True)) / (n_samples - 1)
        weights = advantage[..., None] * ro.mask
        weights = weights + self.kl_loss_weights(problem, ro, 1 / n_samples)
        return self.gradient(problem, theta, ro, weights)
