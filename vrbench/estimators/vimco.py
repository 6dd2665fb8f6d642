"""Gradients of multi-sample bounds: naive REINFORCE and VIMCO's leave-one-out signals."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Capability, Problem


def leave_one_out_bounds(log_weights: Tensor) -> Tensor:
    """``L_{−k} = log (1/K) (Σ_{i≠k} w_i + ŵ_{−k})`` for each k, with ``ŵ_{−k}`` the geometric
    mean of the other K − 1 weights; ``log_weights`` has the K codes on its last axis."""
    count = log_weights.shape[-1]
    others = (log_weights.sum(-1, keepdim=True) - log_weights) / (count - 1)  # log ŵ_{−k}
    own = torch.eye(count, dtype=torch.bool)
    # Row k holds log w_i for i ≠ k and log ŵ_{−k} in place of log w_k.
    replaced = torch.where(own, others[..., :, None], log_weights[..., None, :])
    return torch.logsumexp(replaced, dim=-1) - math.log(count)


@dataclass(frozen=True)
class _MultiSample(Estimator):
    """``Σ_k (L − b_k − w̃_k) ∇θ log q(z_k)`` per item, averaged over the B items and n draws."""

    leave_one_out: ClassVar[bool] = False

    family = "multi-sample"
    requires = frozenset({Capability.MULTI_SAMPLE})

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        samples = problem.sample(theta, (replicates, n_samples), generator)
        log_weights = problem.log_weights(samples)  # (R, n, B, K)
        count = log_weights.shape[-1]
        bound = torch.logsumexp(log_weights, dim=-1, keepdim=True) - math.log(count)
        signal = bound - leave_one_out_bounds(log_weights) if self.leave_one_out else bound
        weights = (signal - torch.softmax(log_weights, dim=-1)) / log_weights.shape[2]
        return problem.code_weighted_score(theta, samples, weights)


@register("multi_sample_score_function")
@dataclass(frozen=True)
class MultiSampleScoreFunction(_MultiSample):
    """REINFORCE for a multi-sample bound: one learning signal shared by the K codes.

    For ``L = log (1/K) Σ_k w_k`` with ``w_k = p(x, z_k)/q(z_k|x; θ)`` and ``z_1..z_K ~ q``
    independently: ``ĝ = Σ_k (L − w̃_k) ∇θ log q(z_k|x)``, ``w̃_k = w_k/Σ_i w_i``, averaged over
    the B data items and n draws. The first term is the score function of the K-sample
    distribution, the second the gradient of L through the weights (``∇θ log w_k =
    −∇θ log q(z_k|x)`` for encoder parameters). Unbiased; high variance, since every code
    gets the same signal L. Mnih & Rezende, "Variational inference for Monte Carlo
    objectives", ICML 2016, section 2 (the estimator VIMCO improves on).
    """

    display_name = "REINFORCE, multi-sample"

    reference = "Mnih & Rezende, 2016"


@register("vimco")
@dataclass(frozen=True)
class VIMCO(_MultiSample):
    """VIMCO: each code's learning signal is L minus a leave-one-out estimate of L.

    ``ĝ = Σ_k (L − L_{−k} − w̃_k) ∇θ log q(z_k|x)`` with ``L_{−k} = log (1/K) (Σ_{i≠k} w_i +
    ŵ_{−k})``, where the missing weight is replaced by the geometric mean of the others,
    ``ŵ_{−k} = exp((1/(K−1)) Σ_{i≠k} log w_i)``: a per-code baseline that depends only on the
    other codes, so the estimator stays unbiased, and the signal measures how much code k
    contributes to the bound. Needs K ≥ 2 codes per draw (a property of the problem, so it
    works from n = 1). Mnih & Rezende, "Variational inference for Monte Carlo objectives",
    ICML 2016, section 3 (the geometric-mean variant, which the paper found slightly better
    than the arithmetic mean).
    """

    display_name = "VIMCO"

    leave_one_out = True
    reference = "Mnih & Rezende, 2016"
