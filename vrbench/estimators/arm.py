"""ARM and DisARM: antithetic estimators for Bernoulli logits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import Estimator
from vrbench.problems.base import DTYPE, Capability, Problem

LATENTS = (Capability.BERNOULLI_LOGITS, Capability.BERNOULLI_LATENTS)


class _BernoulliLatents(Estimator):
    """Shared by ARM and DisARM: they apply to Bernoulli logits θ, or to Bernoulli latents
    whose logits depend on θ (an amortized encoder), whose logit gradients they carry to θ
    by the chain rule (:meth:`~vrbench.problems.base.Problem.latent_pullback`)."""

    requirement_note = "bernoulli_logits or bernoulli_latents"

    def incompatibility(self, problem: Problem, n_samples: int) -> str | None:
        if not any(capability in problem.capabilities for capability in LATENTS):
            return (f"{self.name} requires a problem that is bernoulli_logits or "
                    "bernoulli_latents")
        return super().incompatibility(problem, n_samples)

    def logit_gradients(self, problem: Problem, logits: Tensor, u: Tensor,
                        f: Callable[[Tensor], Tensor]) -> Tensor:
        """Gradients in the logits, ``(R, *latent shape)``, from uniforms ``(R, n, ...)``."""
        raise NotImplementedError

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        logits = problem.latent_logits(theta)
        u = torch.rand((replicates, n_samples, *logits.shape), generator=generator,
                       dtype=DTYPE)
        grad = self.logit_gradients(problem, logits, u,
                                    lambda bits: problem.f(problem.latents(theta, bits)))
        return problem.latent_pullback(theta, grad)


def _per_draw(difference: Tensor, weight: Tensor) -> Tensor:
    """``mean_j difference_j · weight_j`` with ``difference (R, n)`` broadcast over the latent
    dimensions of ``weight (R, n, ...)``."""
    return (difference.reshape(*difference.shape, *[1] * (weight.dim() - 2)) * weight).mean(1)


@register("arm")
@dataclass(frozen=True)
class ARM(_BernoulliLatents):
    """Augment-REINFORCE-merge for independent Bernoullis with logits θ.

    With ``u ~ U(0, 1)^D``: ``ĝ_i = (f(1[u > σ(−θ)]) − f(1[u < σ(θ)])) (u_i − 1/2)``, averaged
    over n draws. Unbiased; two evaluations of f per draw. With Bernoulli latents whose
    logits ``φ(θ)`` depend on θ, the same estimate of ∇φ is carried to θ by the chain rule.
    Yin & Zhou, "ARM: Augment-REINFORCE-merge gradient for stochastic binary networks",
    ICLR 2019, theorem 1.
    """

    display_name = "ARM"

    family = "discrete"
    evals_per_sample = 2
    reference = "Yin & Zhou, 2019"

    def logit_gradients(self, problem: Problem, logits: Tensor, u: Tensor,
                        f: Callable[[Tensor], Tensor]) -> Tensor:
        upper = (u > torch.sigmoid(-logits)).to(DTYPE)
        lower = (u < torch.sigmoid(logits)).to(DTYPE)
        return _per_draw(f(upper) - f(lower), u - 0.5)


@register("disarm")
@dataclass(frozen=True)
class DisARM(_BernoulliLatents):
    """DisARM: ARM with the continuous augmentation integrated out.

    With ``b = 1[u < σ(θ)]`` and its antithetic ``b̃ = 1[1 − u < σ(θ)]``:
    ``ĝ_i = ½ (f(b) − f(b̃)) (−1)^{b̃_i} 1[b_i ≠ b̃_i] σ(|θ_i|)``, averaged over n pairs.
    Unbiased, never of higher variance than ARM; two evaluations of f per draw. With Bernoulli
    latents whose logits depend on θ, the estimate in the logits is carried to θ by the chain
    rule. Dong, Mnih & Tucker, "DisARM: An antithetic gradient estimator for binary latent
    variables", NeurIPS 2020, equation 5. Derived independently as U2G, written
    ``½ (f(b̃) − f(b)) (b̃ − b) max(p, 1 − p)``, by Yin, Ho, Yan, Qian & Zhou, "Probabilistic
    best subset selection via gradient-based optimization", arXiv:2006.06448, 2020: the same
    estimator, so vrbench lists it once.
    """

    display_name = "DisARM"

    family = "discrete"
    evals_per_sample = 2
    reference = "Dong et al., 2020"

    def logit_gradients(self, problem: Problem, logits: Tensor, u: Tensor,
                        f: Callable[[Tensor], Tensor]) -> Tensor:
        p = torch.sigmoid(logits)
        b, b_tilde = (u < p).to(DTYPE), (1 - u < p).to(DTYPE)
        sign = 1 - 2 * b_tilde
        weight = 0.5 * sign * (b != b_tilde).to(DTYPE) * torch.sigmoid(logits.abs())
        return _per_draw(f(b) - f(b_tilde), weight)
