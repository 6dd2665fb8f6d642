"""Exact enumeration: the gradient summed over every outcome, the zero-variance reference."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import (
    MAX_SUPPORT,
    Estimator,
    enumerable_support,
    support_size,
    weighted_score,
)
from vrbench.problems.base import Problem


@register("exact_enumeration")
@dataclass(frozen=True)
class ExactEnumeration(Estimator):
    """The exact gradient from every outcome: ĝ = Σ_x p(x; θ) f(x) ∇θ log p(x; θ) = ∇J.

    Sums over the problem's support (:meth:`Problem.support` with an exact
    :meth:`Problem.log_prob`), so every estimate is ∇J up to rounding: zero variance, at the
    cost of ``|support|`` evaluations of f whatever ``n_samples`` is. It is the reference a
    sampling estimator has to beat at equal cost: one whose variance at ``n = |support|``
    draws is not small has no business on a problem this small. Applies to discrete problems
    that list at most 2^16 outcomes; unbiased (exact). The enumeration identity is the
    log-derivative trick itself (Williams, 1992; Mohamed et al., JMLR 2020, section 4).
    """

    display_name = "exact enumeration"
    requirement_note = "a listed support (at most 65,536 outcomes)"

    family = "exact"
    reference = "Mohamed et al., 2020, section 4"

    def incompatibility(self, problem: Problem, n_samples: int) -> str | None:
        if enumerable_support(problem) is None:
            return (f"{self.name} needs a problem that lists its support (at most "
                    f"{MAX_SUPPORT} outcomes) with an exact log_prob")
        return super().incompatibility(problem, n_samples)

    def f_evals(self, problem: Problem, n_samples: int) -> int:
        return support_size(problem.support())

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        support = problem.support()
        size = support_size(support)
        probs = problem.log_prob(theta, support).exp()
        gradient = weighted_score(problem, theta, support, size * probs * problem.f(support))
        return gradient.expand(replicates, -1).clone()
