"""ARM and DisARM: antithetic estimators for Bernoulli logits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import Estimator
from vrbench.problems.base import DTYPE, Capability, Problem, below


class _AntitheticPair(Estimator):
    """Shared by ARM and DisARM: one uniform per bit and draw, turned into an antithetic pair
    of bit vectors by :meth:`logit_gradients`."""

    family = "discrete"
    requires = frozenset({Capability.BERNOULLI_LOGITS})
    evals_per_sample = 2

    def logit_gradients(self, theta: Tensor, u: Tensor, f: Callable[[Tensor], Tensor]
                        ) -> Tensor:
        """Gradients in the logits θ, ``(R, dim)``, from uniforms ``(R, n, dim)``."""
        raise NotImplementedError

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        u = torch.rand((replicates, n_samples, problem.dim), generator=generator, dtype=DTYPE)
        return self.logit_gradients(theta, u, _signal(problem))


def _signal(problem: Problem) -> Callable[[Tensor], Tensor]:
    """f, or where the problem splits it into each bit's own terms
    (:meth:`~vrbench.problems.base.Problem.local_f`: an amortized model's per-item ELBO)
    those: bit i's signal then holds only the terms its bit can change, as the papers' code
    uses per-example ELBOs. The terms left out are independent of bit i, so the estimator
    stays unbiased, without their noise."""
    def signal(bits: Tensor) -> Tensor:
        local = problem.local_f(bits)
        return problem.f(bits) if local is None else local

    return signal


def _per_draw(difference: Tensor, weight: Tensor) -> Tensor:
    """``mean_j difference_j · weight_j`` for ``weight (R, n, ...)`` and ``difference (R, n)``
    (one signal per draw, broadcast over the latent dimensions) or of ``weight``'s shape (one
    per bit)."""
    if difference.dim() < weight.dim():
        difference = difference.reshape(*difference.shape, *[1] * (weight.dim() - 2))
    return (difference * weight).sum(1) / weight.shape[1]


@register("arm")
@dataclass(frozen=True)
class ARM(_AntitheticPair):
    """Augment-REINFORCE-merge for independent Bernoullis with logits θ.

    With ``u ~ U(0, 1)^D``: ``ĝ_i = (f(1[u > σ(−θ)]) − f(1[u < σ(θ)])) (u_i − 1/2)``, averaged
    over n draws. Unbiased; two evaluations of f per draw.
    Yin & Zhou, "ARM: Augment-REINFORCE-merge gradient for stochastic binary networks",
    ICLR 2019, theorem 1.
    """

    display_name = "ARM"
    reference = "Yin & Zhou, 2019"

    def logit_gradients(self, theta: Tensor, u: Tensor, f: Callable[[Tensor], Tensor]
                        ) -> Tensor:
        upper = below(torch.sigmoid(-theta), u)
        lower = below(u, torch.sigmoid(theta))
        return _per_draw(f(upper) - f(lower), u - 0.5)


@register("disarm")
@dataclass(frozen=True)
class DisARM(_AntitheticPair):
    """DisARM: ARM with the continuous augmentation integrated out.

    With ``b = 1[u < σ(θ)]`` and its antithetic ``b̃ = 1[1 − u < σ(θ)]``:
    ``ĝ_i = ½ (f(b) − f(b̃)) (−1)^{b̃_i} 1[b_i ≠ b̃_i] σ(|θ_i|)``, averaged over n pairs.
    Unbiased, never of higher variance than ARM; two evaluations of f per draw.
    Dong, Mnih & Tucker, "DisARM: An antithetic gradient estimator for binary latent
    variables", NeurIPS 2020, equation 5. Derived independently as U2G, written
    ``½ (f(b̃) − f(b)) (b̃ − b) max(p, 1 − p)``, by Yin, Ho, Yan, Qian & Zhou, "Probabilistic
    best subset selection via gradient-based optimization", arXiv:2006.06448, 2020: the same
    estimator, so vrbench lists it once.
    """

    display_name = "DisARM"
    reference = "Dong et al., 2020"

    def logit_gradients(self, theta: Tensor, u: Tensor, f: Callable[[Tensor], Tensor]
                        ) -> Tensor:
        p = torch.sigmoid(theta)
        flipped = 1 - u
        # The bits replace the uniforms: two tensors of the draws' size rather than four.
        b_tilde, b = below(flipped, p, out=flipped), below(u, p, out=u)
        # (−1)^{b̃} 1[b ≠ b̃] is b − b̃, which is 0, 1 or −1.
        differences = _per_draw(f(b) - f(b_tilde), b.sub_(b_tilde))
        return 0.5 * torch.sigmoid(theta.abs()) * differences
