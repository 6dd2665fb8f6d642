"""Antithetic, stratified and quasi-Monte Carlo draws for the score-function and pathwise
estimators of problems that sample from uniforms (capability ``inverse_transform``)."""

from __future__ import annotations

import functools
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


SOBOL_BITS = 30
"""torch's Sobol points are multiples of 2^-30."""


@functools.cache
def sobol_integers(n: int, k: int) -> Tensor:
    """The first ``n`` points of the (unscrambled) ``k``-dimensional Sobol sequence, as
    integers below ``2^30`` of shape ``(n, k)``, on the CPU (Sobol, 1967; Joe & Kuo's
    direction numbers, as in torch.quasirandom.SobolEngine)."""
    with torch.device("cpu"):
        points = torch.quasirandom.SobolEngine(k, scramble=False).draw(n, dtype=DTYPE)
    integers: Tensor = (points * 2**SOBOL_BITS).to(torch.int64)
    return integers


def digitally_shifted_sobol_uniforms(shape: tuple[int, int, int],
                                     generator: torch.Generator) -> Tensor:
    """Randomized quasi-Monte Carlo: the first ``n`` Sobol points, digitally shifted by an
    independent uniform vector for each replicate.

    Point ``x`` of replicate ``r`` becomes ``x ⊕ D_r``, the bitwise exclusive or of their
    binary digits, with ``D_r`` uniform on ``[0, 1)^k`` (its first 30 bits drawn as an
    integer, the rest as a uniform fraction of the last binary place): every point is
    uniform, so the estimate is unbiased, the shift keeps the Sobol net's stratification
    (each of the ``n`` intervals ``[j/n, (j+1)/n)`` of a coordinate holds one point when ``n`` is
    a power of 2), and the replicates, drawn with independent shifts, are independent (Owen,
    "Monte Carlo theory, methods and examples", 2013, section 17.6; L'Ecuyer & Lemieux,
    "Recent advances in randomized quasi-Monte Carlo methods", 2002).
    """
    replicates, n, k = shape
    shifts = torch.randint(2**SOBOL_BITS, (replicates, 1, k), generator=generator)
    fractions = torch.rand((replicates, 1, k), generator=generator, dtype=DTYPE)
    points = sobol_integers(n, k).to(shifts.device)
    shifted = torch.bitwise_xor(points, shifts).to(DTYPE) + fractions
    uniforms: Tensor = (shifted / 2**SOBOL_BITS).clamp(EPSILON, 1 - EPSILON)
    return uniforms


SCHEMES = {
    "antithetic": antithetic_uniforms,
    "stratified": stratified_uniforms,
    "qmc": digitally_shifted_sobol_uniforms,
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

    display_name = "antithetic REINFORCE"

    scheme = "antithetic"
    family = "antithetic sampling"
    requires = SCORE
    min_samples = 2
    reference = "Hammersley & Morton, 1956"


@register("antithetic_reparameterization")
@dataclass(frozen=True)
class AntitheticReparameterization(AntitheticScoreFunction):
    """Pathwise gradient over antithetic pairs (ε, −ε): unbiased, and exact for odd f′."""

    display_name = "antithetic pathwise"

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

    display_name = "stratified REINFORCE"

    scheme = "stratified"
    family = "stratified sampling"
    requires = SCORE
    reference = "Owen, 2013, chapter 8"


@register("stratified_reparameterization")
@dataclass(frozen=True)
class StratifiedReparameterization(StratifiedScoreFunction):
    """Pathwise gradient with stratified draws (see ``stratified_score_function``)."""

    display_name = "stratified pathwise"

    pathwise = True
    requires = PATHWISE


@register("qmc_score_function")
@dataclass(frozen=True)
class QMCScoreFunction(_UniformScheme):
    """Score function with randomized quasi-Monte Carlo draws.

    The ``n`` draws of a replicate are the first ``n`` Sobol points under a random digital
    shift of its own (see ``digitally_shifted_sobol_uniforms``), so each draw is uniform and
    the estimator is unbiased, while the points fill the cube more evenly than independent
    draws (Owen, 2013, chapter 17; Buchholz, Wenzel & Mandt, "Quasi-Monte Carlo variational
    inference", ICML 2018). Replicates use independent shifts, so they are independent
    randomized-QMC estimates: the variance vrbench reports is the variance of one n-point
    estimate over the randomization, its mean squared error, which for smooth integrands
    falls faster than 1/n.
    """

    display_name = "RQMC REINFORCE"

    scheme = "qmc"
    family = "quasi-Monte Carlo"
    requires = SCORE
    reference = "Buchholz et al., 2018"


@register("qmc_reparameterization")
@dataclass(frozen=True)
class QMCReparameterization(QMCScoreFunction):
    """Pathwise gradient with randomized quasi-Monte Carlo draws (see ``qmc_score_function``)."""

    display_name = "RQMC pathwise"

    pathwise = True
    requires = PATHWISE
