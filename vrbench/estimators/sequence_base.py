"""What the language-model RL estimators share: rollouts, advantages, clipping and KL terms.

Every estimator of this family is the gradient of a surrogate built from G outputs per prompt,
``ĝ = Σ_{i,p,t} w_ipt ∇θ log π_θ(y_ipt | p, y_ip<t)``, with per-token weights ``w`` that hold
the advantage, the importance ratio and its clipping, the normalization over tokens, outputs
and prompts, and the KL term; :meth:`Problem.token_weighted_score` contracts them (see
:mod:`vrbench.problems.sequences`). Weights depend on θ only through quantities the
implementations detach (advantages, ratios as coefficients), so their gradient is the
gradient of the surrogate exactly.

**The KL term** ``−β KL(π_θ ‖ π_ref)`` (β from the problem) is estimated from the per-token
log-ratios ``ℓ_t = log π(y_t|·) − log π_ref(y_t|·)`` with Schulman's estimators (Schulman,
"Approximating KL divergence", 2020): ``k1 = ℓ``, ``k2 = ℓ²/2``, ``k3 = e^{−ℓ} − 1 + ℓ``,
applied to each token (``kl_level = "token"``, then summed) or to the sequence's log-ratio
``L = Σ_t ℓ_t`` (``"sequence"``), and used either

* as a **reward penalty** (``kl_in = "reward"``): ``R − β k`` replaces the reward before the
  advantage is formed, with ℓ at the rollout (behaviour) policy, as implementations compute
  it when the rollouts are scored; or
* as a **loss** (``kl_in = "loss"``): ``β k`` is differentiated through ``log π_θ``, with ℓ at
  θ: token level ``−β k'(ℓ_t) ∇ log π(y_t|·)`` aggregated like the policy term, sequence level
  ``−β k'(L) ∇ log π(o)`` averaged over outputs.

On-policy, ``E[L ∇log π] = ∇KL`` and ``E[∇ log π] = 0``, so k1 as a reward (either level) and
k2 as a sequence-level loss give ``−β ∇KL`` exactly; k1 as a loss has mean zero; k3 as a
sequence loss has mean ``−β ∇KL(π_ref ‖ π_θ)``, the forward KL's gradient; token-level losses
miss the effect of each token on the later ones (Tang & Munos, "On a few pitfalls in KL
divergence gradient estimation for RL", 2025, sections 3 and 4; Shah et al., "A comedy of
estimators", 2025).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators.base import Estimator
from vrbench.problems.base import DTYPE, Capability, Problem

KL_ESTIMATES = ("none", "k1", "k2", "k3")
KL_PLACEMENTS = ("reward", "loss")
KL_LEVELS = ("sequence", "token")

STD_EPSILON = 1e-8
"""Added to a group's standard deviation before dividing by it (``(r − mean)/(std + ε)``), as
in oat, the framework of Liu et al.'s Dr. GRPO code (TRL adds 10⁻⁴, verl 10⁻⁶; all three take
the std with n − 1): an all-equal group gets advantage 0."""

WHITEN_EPSILON = 1e-8
"""Added to a batch's variance before its square root (``masked_whiten`` of OpenRLHF)."""


class Rollouts(NamedTuple):
    """One call's outputs, G per prompt for every prompt, each quantity ``(R, G, P[, L])``."""

    samples: Any
    rewards: Tensor  # (R, G, P)
    mask: Tensor  # (R, G, P, L)
    lengths: Tensor  # (R, G, P)
    log_probs: Tensor  # under θ, (R, G, P, L), 0 after the end
    behaviour_log_probs: Tensor  # under the policy that drew them
    reference_log_probs: Tensor


def rollouts(problem: Any, theta: Tensor, n: int, replicates: int,
             generator: torch.Generator, behaviour: bool) -> Rollouts:
    """``n`` outputs per prompt for each of ``replicates`` estimates, from π_θ, or from the
    behaviour policy π_old when ``behaviour`` (the off-policy estimators)."""
    shape = (replicates, n)
    if behaviour:
        samples = problem.sample_behaviour(theta, shape, generator)
        old_theta = problem.behaviour_theta(theta)
    else:
        samples = problem.sample(theta, shape, generator)
        old_theta = theta
    mask = problem.token_mask(samples)
    log_probs = problem.token_log_probs(theta, samples)
    old = log_probs if old_theta is theta else problem.token_log_probs(old_theta, samples)
    return Rollouts(samples, problem.prompt_rewards(samples), mask, mask.sum(-1), log_probs,
                    old, problem.reference_token_log_probs(samples))


def kl_estimate(log_ratio: Tensor, which: str) -> Tensor:
    """Schulman's k1, k2 or k3 of a log-ratio ``ℓ = log π − log π_ref``."""
    if which == "k1":
        return log_ratio
    if which == "k2":
        return log_ratio**2 / 2
    return torch.expm1(-log_ratio) + log_ratio


def kl_slope(log_ratio: Tensor, which: str) -> Tensor:
    """``dk/dℓ``: 1, ℓ and ``1 − e^{−ℓ}`` for k1, k2, k3."""
    if which == "k1":
        return torch.ones_like(log_ratio)
    if which == "k2":
        return log_ratio
    return -torch.expm1(-log_ratio)


def group_mean(values: Tensor) -> Tensor:
    """The mean over a group's outputs (dimension 1), broadcast back."""
    return values.mean(dim=1, keepdim=True)


def group_normalized(values: Tensor) -> Tensor:
    """GRPO's advantage ``(r − mean)/(std + ε)`` within each group, std with n − 1."""
    return (values - group_mean(values)) / (values.std(dim=1, keepdim=True) + STD_EPSILON)


def batch_whitened(values: Tensor, mask: Tensor) -> Tensor:
    """``(A − mean)/sqrt(var + ε)`` over every token of each replicate's batch (all prompts and
    outputs): the global normalization of REINFORCE++ (population variance)."""
    dims = tuple(range(1, values.dim()))
    count = mask.sum(dim=dims, keepdim=True)
    mean = (values * mask).sum(dim=dims, keepdim=True) / count
    variance = (((values - mean) * mask) ** 2).sum(dim=dims, keepdim=True) / count
    return (values - mean) * torch.rsqrt(variance + WHITEN_EPSILON) * mask


def clipped_slope(ratio: Tensor, advantage: Tensor, low: float, high: float) -> Tensor:
    """``∂/∂ log π`` of ``min(ρ A, clip(ρ, 1 − low, 1 + high) A)``: ``ρ A`` where the unclipped
    term is the smaller (ρ ≤ 1 + high for A ≥ 0, ρ ≥ 1 − low for A < 0), else 0."""
    active = torch.where(advantage >= 0, ratio <= 1 + high, ratio >= 1 - low)
    return torch.where(active, ratio * advantage, torch.zeros_like(advantage))


def reward_to_go(token_rewards: Tensor) -> Tensor:
    """``Σ_{s≥t} r_s`` along the last dimension."""
    return token_rewards.flip(-1).cumsum(-1).flip(-1)


@dataclass(frozen=True)
class SequenceEstimator(Estimator):
    """A language-model RL estimator: G outputs per prompt, a KL configuration.

    ``unbiased_configurations`` lists the ``(kl, kl_in, kl_level)`` for which the estimator
    is unbiased for the KL-regularized objective; an instance's ``unbiased`` says whether its
    own configuration is one (the class's, whether the default is).
    """

    kl: str = "k1"
    kl_in: str = "reward"
    kl_level: str = "sequence"

    family = "language-model RL"
    parameter_symbols: ClassVar = {"kl": "KL", "kl_in": "KL in", "kl_level": "KL per",
                                   "clip": "ε", "clip_low": "ε (low)", "clip_high": "ε (high)"}
    requires = frozenset({Capability.SEQUENCES})
    unbiased_configurations: ClassVar[frozenset[tuple[str, str, str]]] = frozenset()
    behaviour: ClassVar[bool] = True
    """Whether it learns from the stale behaviour policy's outputs (else from π_θ's)."""

    def __post_init__(self) -> None:
        check(self.kl in KL_ESTIMATES, self.name,
              f"kl={self.kl!r} is not one of {', '.join(KL_ESTIMATES)}")
        check(self.kl_in in KL_PLACEMENTS, self.name,
              f"kl_in={self.kl_in!r} is not one of {', '.join(KL_PLACEMENTS)}")
        check(self.kl_level in KL_LEVELS, self.name,
              f"kl_level={self.kl_level!r} is not one of {', '.join(KL_LEVELS)}")
        object.__setattr__(self, "unbiased", self.configuration in self.unbiased_configurations)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        defaults = {key: getattr(cls, key) for key in ("kl", "kl_in", "kl_level")}
        cls.unbiased = (defaults["kl"], defaults["kl_in"], defaults["kl_level"]) in \
            cls.unbiased_configurations

    @property
    def configuration(self) -> tuple[str, str, str]:
        return self.kl, self.kl_in, self.kl_level

    def draw(self, problem: Problem, theta: Tensor, n: int, replicates: int,
             generator: torch.Generator) -> Rollouts:
        return rollouts(problem, theta, n, replicates, generator, self.behaviour)

    # --- the KL term ----------------------------------------------------------------------

    def _kl_of(self, log_ratio: Tensor, mask: Tensor) -> Tensor:
        """The KL estimate of each output, ``(R, G, P)``, at this configuration's level."""
        if self.kl_level == "sequence":
            return kl_estimate(log_ratio.sum(-1), self.kl)
        return (kl_estimate(log_ratio, self.kl) * mask).sum(-1)

    def reward_penalty(self, problem: Any, ro: Rollouts, at_theta: bool = False) -> Tensor:
        """``β k`` per output when the KL is a reward penalty (else 0), ``(R, G, P)``; ℓ at the
        behaviour policy, or at θ with ``at_theta``."""
        if self.kl == "none" or self.kl_in != "reward" or problem.beta == 0:
            return torch.zeros_like(ro.rewards)
        log_probs = ro.log_probs if at_theta else ro.behaviour_log_probs
        beta: float = problem.beta
        return beta * self._kl_of(log_probs - ro.reference_log_probs, ro.mask)

    def token_penalties(self, problem: Any, ro: Rollouts) -> Tensor:
        """``β k`` per token for estimators with token rewards, ``(R, G, P, L)``: each token's
        own estimate (token level) or the sequence's at its last token (sequence level)."""
        if self.kl == "none" or self.kl_in != "reward" or problem.beta == 0:
            return torch.zeros_like(ro.mask)
        log_ratio = ro.behaviour_log_probs - ro.reference_log_probs
        beta: float = problem.beta
        if self.kl_level == "token":
            return beta * kl_estimate(log_ratio, self.kl) * ro.mask
        last = torch.nn.functional.one_hot(ro.lengths.long() - 1, ro.mask.shape[-1]).to(DTYPE)
        return beta * kl_estimate(log_ratio.sum(-1), self.kl)[..., None] * last

    def kl_loss_weights(self, problem: Any, ro: Rollouts,
                        token_factor: Tensor | float) -> Tensor:
        """The KL loss's per-token weights, ``(R, G, P, L)``, when the KL is a loss (else 0):
        token level ``−β k'(ℓ_t)`` times the policy term's ``token_factor``; sequence level
        ``−β k'(L)`` on every token of the output, averaged over the group."""
        if self.kl == "none" or self.kl_in != "loss" or problem.beta == 0:
            return torch.zeros_like(ro.mask)
        log_ratio = ro.log_probs - ro.reference_log_probs
        beta: float = problem.beta
        if self.kl_level == "token":
            return -beta * kl_slope(log_ratio, self.kl) * ro.mask * token_factor
        slope = kl_slope(log_ratio.sum(-1), self.kl)[..., None]
        return -beta * slope * ro.mask / ro.mask.shape[1]

    def gradient(self, problem: Any, theta: Tensor, ro: Rollouts, weights: Tensor) -> Tensor:
        """``(1/P) Σ_{i,p,t} w ∇ log π``: the estimate, averaged over prompts."""
        prompts = ro.rewards.shape[-1]
        score: Tensor = problem.token_weighted_score(theta, ro.samples, weights)
        return score / prompts


UNBIASED_KL = frozenset({("k1", "reward", "sequence"), ("k1", "reward", "token"),
                         ("k2", "loss", "sequence")})
"""The KL configurations whose on-policy expectation is ``−β ∇KL`` (see the module)."""
