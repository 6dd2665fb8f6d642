"""Sequence-level REINFORCE over a prompt set, with the KL to the reference in the reward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.sequence_base import UNBIASED_KL, SequenceEstimator
from vrbench.problems.base import Problem


@register("reinforce_sequence")
@dataclass(frozen=True)
class ReinforceSequence(SequenceEstimator):
    """Sequence-level REINFORCE: each output's penalized reward times its sequence score.

    ``ĝ = (1/P) Σ_p (1/G) Σ_i (R_p(o_pi) − β k(o_pi)) ∇θ log π_θ(o_pi|p)``, G = n outputs per
    prompt drawn from π_θ, with the KL estimate k as a reward penalty (default k1 of the
    sequence, ``log π(o)/π_ref(o)``). Unbiased for ``J = E[R] − β KL`` with k1 in the reward
    (either level) or k2 as a sequence-level loss (see
    :mod:`vrbench.estimators.sequence_base`); other KL configurations are biased by their KL
    term. Each prompt's score is weighted by its own reward only (its outputs are independent
    of the other prompts'), unlike ``score_function`` on the whole sample. Williams, "Simple
    statistical gradient-following algorithms", 1992, eq. 11; Ahmadian et al., "Back to
    basics: revisiting REINFORCE style optimization for learning from human feedback in
    LLMs", ACL 2024, section 3.
    """

    display_name = "REINFORCE (sequence)"

    unbiased_configurations = UNBIASED_KL
    behaviour = False
    sample_average = True
    reference = "Williams, 1992; Ahmadian et al., 2024"

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        ro = self.draw(problem, theta, n_samples, replicates, generator)
        advantage = ro.rewards - self.reward_penalty(problem, ro)
        weights = advantage[..., None] * ro.mask / n_samples
        weights = weights + self.kl_loss_weights(problem, ro, 1 / n_samples)
        return self.gradient(problem, theta, ro, weights)
