"""Antithetic, stratified and quasi-Monte Carlo draws for the score-function and pathwise
estimators of problems that sample from uniforms (capability ``inverse_transform``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from vrbench.estimators import register
from vrbench.estimators.base import (
    Estimator,
    pathwise_from_uniforms,
    score_function_from_uniforms,
)
from vrbench.problems.base import DTYPE, Capability, Problem

EPSILON = 1e-12  # keeps uniforms inside (0, 1), where inverse CDFs are finite


def antithetic_uniforms(shape: tuple[int, int, int], generator: torch.Generator) -> Tensor:
    """``u`` for the first half of the draws and ``1 − u`` for the second (n must be even)."""
    replicates, n, k = shape
    half = torch.rand((replicates, n // 2, k), generator=generator, dtype=DTYPE)
    return torch.cat([half, 1 - half], dim=1).clamp(EPSILON, 1 - EPSILON)


def stratified_uniforms(shape: tuple[int, int, int], generator: torch.Generator) -> Tensor:
    """Draw ``j`` of ``n`` has its first coordinate uniform on ``[j/n, (j+1)/n)``."""
    n = shape[1]
    uniforms = torch.rand(shape, generator=generator, dtype=DTYPE)
    strata = torch.arange(n, dtype=DTYPE)[None, :]
    uniforms[..., 0] = (strata + uniforms[..., 0]) / n
    return uniforms.clamp(EPSILON, 1 - EPSILON)


def shifted_sobol_uniforms(shape: tuple[int, int, int], generator: torch.Generator) -> Tensor:
    """Randomized quasi-Monte Carlo: ``n`` scrambled Sobol points, each replicate shifted by
    its own uniform vector modulo 1 (a Cranley–Patterson rotation), so every point is uniform
    and the replicates are independent."""
    replicates, n, k = shape
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    shifts = torch.rand((replicates, 1, k), generator=generator, dtype=DTYPE)
    # SobolEngine always draws on the CPU.
    points = torch.quasirandom.SobolEngine(k, scramble=True, seed=seed).draw(n, dtype=DTYPE)
    points = points.to(shifts.device)
    return torch.remainder(points[None] + shifts, 1.0).clamp(EPSILON, 1 - EPSILON)


SCHEMES = {
    "antithetic": antithetic_uniforms,
    "stratified": stratified_uniforms,
    "qmc": shifted_sobol_uniforms,
}

SCORE = frozenset({Capability.INVERSE_TRANSFORM})
PATHWISE = SCORE | {Capability.REPARAMETERIZABLE, Capability.DIFFERENTIABLE}


@dataclass(frozen=True)
class _UniformScheme(Estimator):
    """The score-function or pathwise estimator with correlated uniforms."""

    scheme: ClassVar[str] = ""
    pathwise: ClassVar[bool] = False

    def incompatibility(self, problem: Problem, n_samples: int) -> str | None:
        if self.scheme == "antithetic" and n_samples % 2:
            return f"{self.name} needs an even n_samples, got {n_samples}"
        return super().incompatibility(problem, n_samples)

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> Tensor:
        uniforms = SCHEMES[self.scheme]((replicates, n_samples, problem.noise_dim), generator)
        if self.pathwise:
            return pathwise_from_uniforms(problem, theta, uniforms)
        return score_function_from_uniforms(problem, theta, uniforms)


@register("antithetic_score_function")
@dataclass(frozen=True)
class AntitheticScoreFunction(_UniformScheme):
    """Score function over antithetic pairs: draws from u and 1 − u.

    For a Gaussian the pair is (ε, −ε), for Bernoullis coupled uniforms. Each draw is still
    from p(x; θ), so the estimator is unbiased; the pair's negative correlation lowers the
    variance when f·score is monotone in u (Hammersley & Morton, "A new Monte Carlo
    technique: antithetic variates", 1956; Mohamed et al., JMLR 2020, section 8.2).
    """

    scheme = "antithetic"
    family = "antithetic sampling"
    requires = SCORE
    min_samples = 2
    reference = "Hammersley & Morton, 1956"


@register("antithetic_reparameterization")
@dataclass(frozen=True)
class AntitheticReparameterization(AntitheticScoreFunction):
    """Pathwise gradient over antithetic pairs (ε, −ε): unbiased, and exact for odd f′."""

    pathwise = True
    requires = PATHWISE


@register("stratified_score_function")
@dataclass(frozen=True)
class StratifiedScoreFunction(_UniformScheme):
    """Score function with stratified draws: draw j of n covers the j-th n-quantile.

    The first noise coordinate of draw ``j`` is uniform on ``[j/n, (j+1)/n)``; the average over
    the strata is unbiased, and the variance between strata is removed (Owen, "Monte Carlo
    theory, methods and examples", 2013, chapter 8; Mohamed et al., JMLR 2020, section 8).
    """

    scheme = "stratified"
    family = "stratified sampling"
    requires = SCORE
    reference = "Owen, 2013, chapter 8"


@register("stratified_reparameterization")
@dataclass(frozen=True)
class StratifiedReparameterization(StratifiedScoreFunction):
    """Pathwise gradient with stratified draws (see ``stratified_score_function``)."""

    pathwise = True
    requires = PATHWISE


@register("qmc_score_function")
@dataclass(frozen=True)
class QMCScoreFunction(_UniformScheme):
    """Score function with randomized quasi-Monte Carlo draws.

    The ``n`` draws of a replicate are scrambled Sobol points shifted by one uniform vector
    modulo 1 (a Cranley–Patterson rotation), so each draw is uniform and the estimator is
    unbiased, while the points fill the cube more evenly than independent draws (Owen, 2013,
    chapter 17; Buchholz, Wenzel & Mandt, "Quasi-Monte Carlo variational inference", ICML 2018).
    """

    scheme = "qmc"
    family = "quasi-Monte Carlo"
    requires = SCORE
    reference = "Buchholz et al., 2018"


@register("qmc_reparameterization")
@dataclass(frozen=True)
class QMCReparameterization(QMCScoreFunction):
    """Pathwise gradient with randomized quasi-Monte Carlo draws (see ``qmc_score_function``)."""

    pathwise = True
    requires = PATHWISE
