"""PPO's clipped surrogate with the behaviour policy's exact critic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.sequence_base import SequenceEstimator, clipped_slope, reward_to_go


@register("ppo_clip")
@dataclass(frozen=True)
class PPOClip(SequenceEstimator):
    """PPO: per-token clipped ratios, advantages from the stale policy's exact critic.

    The gradient of PPO's clipped surrogate (Schulman et al., "Proximal policy optimization
    algorithms", 2017, eq. 7) as RLHF applies it (Ouyang et al., "Training language models to
    follow instructions with human feedback", NeurIPS 2022, eq. 2: a k1 KL penalty on every
    token, the reward at the end): ``(1/P) Σ_p (1/G) Σ_i Σ_t min(ρ_t A_t, clip(ρ_t, 1 − ε,
    1 + ε) A_t)``, ``A_t = G_t − V_old(y_<t)``, ``G_t = R − β Σ_{s≥t} k1_s`` (KL at π_old),
    with ``V_old`` the behaviour policy's exact value of each prefix (an oracle critic:
    generalized advantage estimation with λ = γ = 1 and a perfect value function), ε = 0.2,
    tokens summed per output and outputs averaged. Only the KL configurations k1 or none, in
    the reward, are defined (the critic's return).

    On-policy (staleness 0) ``ρ = 1``, nothing is clipped, and it is REINFORCE with
    reward-to-go and an exact state-value baseline: unbiased (checked exactly in the test
    suite). Off-policy it is biased: the per-token ratio ignores how π_old's prefixes differ
    from π_θ's, and clipping drops the terms that moved most. It declares itself biased
    because its purpose is the off-policy setting.
    """

    display_name = "PPO"  # the clip range follows where it is not the default
    parameter_symbols: ClassVar = {**SequenceEstimator.parameter_symbols, "clip": "clip ε"}

    clip: float = 0.2
    kl_level: str = "token"

    reference = "Schulman et al., 2017, eq. 7; Ouyang et al., 2022"

    def __post_init__(self) -> None:
        super().__post_init__()
        check(0 < self.clip < 1, self.name, f"clip={self.clip} must lie in (0, 1)")
        check(self.kl in ("k1", "none") and self.kl_in == "reward", self.name,
              f"kl={self.kl!r}, kl_in={self.kl_in!r}: the critic's return is defined for the "
              "k1 penalty in the reward (kl=k1) or none (kl=none), with kl_in=reward")

    # ``problem: Any``: beta, behaviour_theta and exact_token_values are members of the
    # sequence problems (Capability.SEQUENCES), not of the Problem class.
    def estimate(self, problem: Any, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        ro = self.draw(problem, theta, n_samples, replicates, generator)
        returns = ro.rewards[..., None] * ro.mask - reward_to_go(self.token_penalties(problem, ro))
        beta = problem.beta if self.kl == "k1" else 0.0
        values = problem.exact_token_values(problem.behaviour_theta(theta), ro.samples, beta)
        advantage = (returns - values) * ro.mask
        ratio = (ro.log_probs - ro.behaviour_log_probs).exp()
        weights = clipped_slope(ratio, advantage, self.clip, self.clip) * ro.mask / n_samples
        return self.gradient(problem, theta, ro, weights)
