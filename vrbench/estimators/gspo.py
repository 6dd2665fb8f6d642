"""GSPO: a sequence-level, length-normalized importance ratio, clipped per output."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.sequence_base import SequenceEstimator, clipped_slope, group_normalized
from vrbench.problems.base import Problem


@register("gspo")
@dataclass(frozen=True)
class GSPO(SequenceEstimator):
    """GSPO: clip the sequence's ratio ``(π_θ(o)/π_old(o))^{1/|o|}``, not each token's.

    The gradient of Zheng et al.'s objective ("Group sequence policy optimization", 2025,
    eqs. 5–7): ``(1/P) Σ_p (1/G) Σ_i min(s_i Â_i, clip(s_i, 1 − ε_low, 1 + ε_high) Â_i)``,
    ``s_i = exp((1/|o_i|) Σ_t log(π_θ(y_t|·)/π_old(y_t|·)))``, ``Â_i = (r_i − mean(r))/(std(r)
    + 10⁻⁸)``, with the paper's ε_low = 3·10⁻⁴, ε_high = 4·10⁻⁴; unclipped, its gradient is
    ``s_i Â_i (1/|o_i|) Σ_t ∇ log π(y_t|·)``. No KL term (``kl = "none"``).

    Biased: on-policy (s = 1) it is GRPO's policy term, with GRPO's std and length
    normalizations; off-policy ``s_i`` is not the sequence's importance weight (its
    1/|o_i|-th power), and whole outputs are clipped away. Needs G ≥ 2.
    """

    display_name = "GSPO"

    clip_low: float = 3e-4
    clip_high: float = 4e-4
    kl: str = "none"

    min_samples = 2
    reference = "Zheng et al., 2025, eq. 5"

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("clip_low", "clip_high"):
            value = getattr(self, key)
            check(0 < value < 1, self.name, f"{key}={value} must lie in (0, 1)")

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        ro = self.draw(problem, theta, n_samples, replicates, generator)
        advantage = group_normalized(ro.rewards - self.reward_penalty(problem, ro))
        ratio = ((ro.log_probs - ro.behaviour_log_probs).sum(-1) / ro.lengths).exp()
        per_output = clipped_slope(ratio, advantage, self.clip_low, self.clip_high)
        per_token = ro.mask / (n_samples * ro.lengths[..., None])
        weights = per_output[..., None] * per_token
        weights = weights + self.kl_loss_weights(problem, ro, per_token)
        return self.gradient(problem, theta, ro, weights)
