"""The pathwise (reparameterization) estimator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Capability, Problem


@register("reparameterization")
@dataclass(frozen=True)
class Reparameterization(Estimator):
    """Pathwise gradient: ĝ = (1/n) Σ_j ∇θ f(g(θ, ε_j)), ε_j drawn independently of θ.

    Applies when ``x = g(θ, ε)`` is differentiable in θ and f is differentiable in x; then it
    is unbiased and usually of far lower variance than the score function. All ``R``
    estimates come from one backward pass, or from the problem's own gradient of the path
    (see :meth:`~vrbench.problems.base.Problem.pathwise_gradient`). Kingma & Welling,
    "Auto-Encoding Variational Bayes", ICLR 2014; Rezende, Mohamed & Wierstra, ICML 2014.
    """

    display_name = "pathwise"

    family = "pathwise"
    sample_average = True
    requires = frozenset({Capability.REPARAMETERIZABLE, Capability.DIFFERENTIABLE})
    reference = "Kingma & Welling, 2014; Rezende et al., 2014"

    def estimate(
        self,
        problem: Problem,
        theta: Tensor,
        n_samples: int,
        replicates: int,
        generator: torch.Generator,
        state: Any = None,
    ) -> Tensor:
        noise = problem.sample_noise((replicates, n_samples), generator)
        return problem.pathwise_gradient(theta, noise)
