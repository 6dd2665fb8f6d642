"""DAPO's token-level policy gradient: one mean over all the tokens of a group."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.sequence_base import SequenceEstimator, clipped_slope, group_normalized
from vrbench.problems.base import Problem

NORMALIZATIONS = ("group", "batch")


@register("dapo")
@dataclass(frozen=True)
class DAPO(SequenceEstimator):
    """DAPO: GRPO's advantages, one token mean per group, decoupled clipping, no KL term.

    The gradient of Yu et al.'s objective ("DAPO: an open-source LLM reinforcement learning
    system at scale", 2025, eq. 8): ``(1/P) Σ_p (1/Σ_i |o_i|) Σ_i Σ_t min(ρ_t Â_i,
    clip(ρ_t, 1 − ε_low, 1 + ε_high) Â_i)``, ``Â_i = (r_i − mean(r))/(std(r) + 10⁻⁸)``,
    ε_low = 0.2, ε_high = 0.28 (clip-higher), G = n outputs per prompt from π_old; every token
    weighs the same within a group, so long outputs are not diluted as in GRPO.
    ``normalize = "batch"`` divides by the tokens of all prompts' groups instead (the
    ``token-mean`` aggregation of the authors' verl recipe). DAPO drops the KL term
    (``kl = "none"``) and filters groups whose rewards are all equal (dynamic sampling),
    which here would change the number of draws per estimate and is left out: such groups
    contribute 0 either way.

    Biased: the std normalization (as GRPO's), the random denominator ``Σ|o_i|`` (a ratio of
    random quantities), and, with β > 0, the missing KL gradient; off-policy, the clipping.
    Needs G ≥ 2.
    """

    display_name = "DAPO"

    clip_low: float = 0.2
    clip_high: float = 0.28
    normalize: str = "group"
    kl: str = "none"

    min_samples = 2
    reference = "Yu et al., 2025, eq. 8"

    def __post_init__(self) -> None:
        super().__post_init__()
        for key in ("clip_low", "clip_high"):
            value = getattr(self, key)
            check(0 < value < 1, self.name, f"{key}={value} must lie in (0, 1)")
        check(self.normalize in NORMALIZATIONS, self.name,
              f"normalize={self.normalize!r} is not one of {', '.join(NORMALIZATIONS)}")

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        ro = self.draw(problem, theta, n_samples, replicates, generator)
        advantage = group_normalized(ro.rewards - self.reward_penalty(problem, ro))
        ratio = (ro.log_probs - ro.behaviour_log_probs).exp()
        tokens = ro.lengths.sum(dim=1, keepdim=True)  # per group
        if self.normalize == "batch":
            tokens = tokens.sum(dim=2, keepdim=True) / ro.rewards.shape[-1]
        per_token = ro.mask / tokens[..., None]
        weights = clipped_slope(ratio, advantage[..., None], self.clip_low,
                                self.clip_high) * per_token
        weights = weights + self.kl_loss_weights(problem, ro, per_token)
        return self.gradient(problem, theta, ro, weights)
