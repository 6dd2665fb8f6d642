"""Streaming statistics of a stream of gradient estimates and the metrics of one cell.

Estimates arrive in chunks; per-coordinate means and sums of squared deviations are merged
with the pairwise update of Chan, Golub & LeVeque ("Updating formulae and a pairwise
algorithm for computing sample variances", 1979), so memory does not grow with the number
of replicates. The replicates are also split into contiguous groups whose variances give the
confidence interval of the variance by the method of batch means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

MAX_GROUPS = 32
"""Groups (batches) used for the variance's confidence interval."""

MAX_AXIS_TESTS = 16
"""Up to this dimension the bias test looks at every coordinate; beyond, at random directions."""

RANDOM_DIRECTIONS = 16


@dataclass
class Moments:
    """Count, per-coordinate mean and sum of squared deviations of a set of vectors."""

    count: int
    mean: Tensor
    m2: Tensor

    @classmethod
    def empty(cls, dim: int) -> Moments:
        zeros = torch.zeros(dim, dtype=torch.float64)
        return cls(0, zeros, zeros.clone())

    @classmethod
    def of(cls, batch: Tensor) -> Moments:
        mean = batch.mean(dim=0)
        return cls(batch.shape[0], mean, ((batch - mean) ** 2).sum(dim=0))

    def merge(self, other: Moments) -> Moments:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        total = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / total)
        m2 = self.m2 + other.m2 + delta**2 * (self.count * other.count / total)
        return Moments(total, mean, m2)

    def variance(self) -> Tensor:
        """Unbiased per-coordinate variance (needs count >= 2)."""
        return self.m2 / (self.count - 1)


def bias_directions(true_grad: Tensor, coordinates: bool = True) -> Tensor:
    """The unit directions ``v`` along which ``E⟨ĝ, v⟩ = ⟨∇J, v⟩`` is tested, ``(k, dim)``.

    The gradient's own direction, then every coordinate axis when θ has at most
    :data:`MAX_AXIS_TESTS` entries (and ``coordinates``), else :data:`RANDOM_DIRECTIONS`
    fixed random directions. Random projections average over many coordinates, so their means
    are close to normal even when single coordinates hinge on rare events (a state that a few
    trajectories in 10⁴ reach, an arm a near-deterministic policy almost never pulls), where a
    per-coordinate t-test would wrongly reject a correct estimator.
    """
    dim = true_grad.numel()
    if dim <= MAX_AXIS_TESTS and coordinates:
        others = torch.eye(dim, dtype=torch.float64)
    else:
        g = torch.Generator().manual_seed(0)
        others = torch.randn(RANDOM_DIRECTIONS, dim, generator=g, dtype=torch.float64)
        others /= others.norm(dim=1, keepdim=True)
    norm = true_grad.norm()
    if norm == 0:
        return others
    return torch.cat([(true_grad / norm)[None], others])


def _varies(projected: Moments) -> Tensor:
    """Which projections vary by more than float64 rounding of the estimate.

    Rounding scales with the whole vector, not with each projection: an estimator that is
    exact up to rounding (a control variate equal to f) spreads every projection, even one
    whose mean is near zero, by ~1e-16 of the largest."""
    scale = projected.mean.abs().amax() if projected.mean.numel() else 0.0
    return projected.variance() > (1e-14 * (1.0 + scale)) ** 2


def bias_test(projected: Moments, expected: Tensor, groups: list[Moments] | None = None,
              expected_se: Tensor | None = None) -> tuple[float, float]:
    """``(max |t|, p-value)`` of H0: the projected means equal ``expected``.

    One t-test per direction, Bonferroni-corrected, on the sample variance (``N − 1`` degrees
    of freedom). With ``groups`` (the projections' moments in contiguous batches of
    replicates, at least two) also on the batch means, ``Σ_g n_g (ȳ_g − ȳ)² / ((G − 1) N)``
    with ``G − 1`` degrees of freedom, which stays right when neighbouring replicates are
    dependent; the result is the larger p-value of the two, so it holds its level where
    either test does (the batch means' few degrees of freedom make them the more fragile
    under heavy tails, the plain variance under dependence). ``expected_se``, the standard
    errors of a reference's projections (see :mod:`vrbench.bench.reference`), adds in
    quadrature to the mean's standard error in both. If no projection varies (and the
    reference is exact) the estimator is deterministic and is compared exactly: equal to
    rounding passes (p = 1), else p = 0.
    """
    diff = (projected.mean - expected).abs()
    varies = _varies(projected)
    reference_variance = torch.zeros_like(diff)
    if expected_se is not None and bool((expected_se > 0).any()):
        reference_variance = expected_se.to(diff) ** 2
        varies = varies | (expected_se > 0)
    if not bool(varies.any()):
        exact = bool((diff <= 1e-10 * (1.0 + expected.abs())).all())
        return (0.0, 1.0) if exact else (math.inf, 0.0)
    tests = [(projected.variance() / projected.count + reference_variance, projected.count - 1)]
    batches = [g for g in groups or [] if g.count > 0]
    if len(batches) >= 2:
        counts = torch.tensor([g.count for g in batches], dtype=torch.float64)
        means = torch.stack([g.mean for g in batches])
        spread = (counts[:, None] * (means - projected.mean) ** 2).sum(dim=0)
        tests.append((spread / ((len(batches) - 1) * projected.count) + reference_variance,
                      len(batches) - 1))
    return max((_t_test(diff[varies], variance[varies], df) for variance, df in tests),
               key=lambda result: result[1])


def _t_test(diff: Tensor, variance_of_mean: Tensor, df: int) -> tuple[float, float]:
    """``(max |t|, Bonferroni p-value)`` of the deviations ``diff`` in standard errors."""
    from scipy import stats  # imported here: it costs a second at start-up

    se = torch.sqrt(variance_of_mean)
    t = torch.where(se > 0, diff / se.clamp_min(1e-300),
                    torch.where(diff > 0, math.inf, 0.0))
    t_stat = float(t.max())
    return t_stat, min(1.0, diff.numel() * float(2 * stats.t.sf(t_stat, df=df)))


class EstimateAccumulator:
    """Accumulates ``R`` estimates, chunk by chunk, against the exact gradient."""

    def __init__(self, true_grad: Tensor, replicates: int, directions: Tensor | None = None,
                 expected_se: Tensor | None = None) -> None:
        self.true_grad = true_grad.to(torch.float64)
        self.replicates = replicates
        self.groups = min(MAX_GROUPS, replicates // 2)
        dim = true_grad.numel()
        self.group_moments = [Moments.empty(dim) for _ in range(max(self.groups, 1))]
        # Projections, not coordinates: see bias_directions and bias_test. A reference gradient
        # brings its own test directions, fixed before it was drawn, and their standard errors.
        self.directions = (bias_directions(self.true_grad, coordinates=False)
                           if directions is None else directions.to(torch.float64))
        self.expected_se = expected_se
        self.projected = Moments.empty(self.directions.shape[0])
        self.projected_groups = [Moments.empty(self.directions.shape[0])
                                 for _ in range(max(self.groups, 1))]
        self.cosine_sum = 0.0
        self.seen = 0

    def _group_of(self, index: int) -> int:
        return index * len(self.group_moments) // self.replicates

    def update(self, batch: Tensor) -> None:
        """Add the next chunk of estimates, shape ``(k, dim)``, in replicate order."""
        batch = batch.to(torch.float64)
        projections = batch @ self.directions.T
        start, stop = self.seen, self.seen + batch.shape[0]
        index = start
        while index < stop:
            group = self._group_of(index)
            group_end = min(stop, -(-(group + 1) * self.replicates // len(self.group_moments)))
            part = slice(index - start, group_end - start)
            self.group_moments[group] = self.group_moments[group].merge(Moments.of(batch[part]))
            self.projected_groups[group] = self.projected_groups[group].merge(
                Moments.of(projections[part]))
            index = group_end
        self.projected = self.projected.merge(Moments.of(projections))
        true_norm = self.true_grad.norm()
        if true_norm > 0:
            norms = batch.norm(dim=1) * true_norm
            cosines = torch.where(norms > 0, batch @ self.true_grad / norms.clamp_min(1e-300), 0)
            self.cosine_sum += float(cosines.sum())
        self.seen = stop

    def bias_test(self) -> tuple[float, float]:
        """``(max |t|, p-value)`` of the bias test along ∇J and :data:`RANDOM_DIRECTIONS`
        random directions (or a reference's directions), on the sample variance and on the
        batch means of the replicates' contiguous groups, with a reference's standard errors
        in quadrature (see :func:`bias_test`)."""
        groups = self.projected_groups if self.groups >= 2 else None
        return bias_test(self.projected, self.directions @ self.true_grad, groups,
                         self.expected_se)

    def constant(self) -> bool:
        """Whether every estimate so far is the same vector, to float64 resolution."""
        return not bool(_varies(self.projected).any())

    def metrics(self) -> dict[str, Any]:
        """The metrics of the cell; call after all ``R`` estimates were added."""
        if self.seen != self.replicates:
            raise RuntimeError(f"expected {self.replicates} estimates, got {self.seen}")
        total = Moments.empty(self.true_grad.numel())
        for moments in self.group_moments:
            total = total.merge(moments)
        metrics = cell_metrics(
            total,
            self.group_moments if self.groups >= 2 else [],
            self.true_grad,
            self.cosine_sum / self.replicates,
        )
        metrics["bias_pvalue"] = self.bias_test()[1] if self.replicates >= 2 else math.nan
        return metrics


def cell_metrics(
    total: Moments, groups: list[Moments], true_grad: Tensor, mean_cosine: float
) -> dict[str, Any]:
    """Bias, variance (with its 95% interval), MSE and friends from the merged moments.

    The variance is the trace of the covariance of one estimate; its per-coordinate terms
    (``coordinate_variance``, each with its own interval) sum to it, so a figure can show
    the variance of ∂J/∂μ and ∂J/∂σ separately. Intervals come from the batch means of
    ``groups``: ``t_{0.975, G−1} · sd(group variances) / √G`` around the variance.
    """
    count = total.count
    bias = total.mean - true_grad
    per_coordinate = total.variance() if count >= 2 else torch.full_like(total.mean, math.nan)
    variance = float(per_coordinate.sum())
    ci_low = ci_high = math.nan
    coordinate_low = coordinate_high = torch.full_like(per_coordinate, math.nan)
    if len(groups) >= 2:
        from scipy import stats

        group_vars = torch.stack([g.variance() for g in groups])  # (G, dim)
        quantile = stats.t.ppf(0.975, df=len(groups) - 1) / math.sqrt(len(groups))
        half_width = float(quantile * group_vars.sum(dim=1).std())
        ci_low, ci_high = max(0.0, variance - half_width), variance + half_width
        coordinate_half = quantile * group_vars.std(dim=0)
        coordinate_low = (per_coordinate - coordinate_half).clamp_min(0.0)
        coordinate_high = per_coordinate + coordinate_half
    true_norm = float(true_grad.norm())
    mean_norm = float(total.mean.norm())
    return {
        "dim": true_grad.numel(),
        "true_grad_norm": true_norm,
        "bias_norm": float(bias.norm()),
        "variance": variance,
        "variance_ci_low": ci_low,
        "variance_ci_high": ci_high,
        "mse": float((total.m2 / count).sum() + (bias**2).sum()),
        "snr": true_norm / math.sqrt(variance) if variance > 0 else math.inf,
        "cosine": mean_cosine,
        # The direction of the mean estimate: a biased estimator can still point along ∇J.
        "mean_cosine": float(total.mean @ true_grad) / (mean_norm * true_norm)
        if mean_norm > 0 and true_norm > 0 else math.nan,
        "true_grad": true_grad.tolist(),
        "coordinate_bias": bias.tolist(),
        "coordinate_variance": per_coordinate.tolist(),
        "coordinate_variance_ci_low": coordinate_low.tolist(),
        "coordinate_variance_ci_high": coordinate_high.tolist(),
    }


FINITE_METRICS = ("true_grad_norm", "bias_norm", "variance", "mse", "cosine")
"""Metrics that a measured cell must have finite; an infinite or NaN one makes it an error."""


def numerical_failure(metrics: dict[str, Any], accumulator: EstimateAccumulator,
                      unbiased_claim: bool) -> str | None:
    """Why a cell's numbers cannot be trusted as float64 results, or None.

    * A metric in :data:`FINITE_METRICS` (or the variance interval, when it has one) is
      infinite or NaN: the estimates or the exact solution overflowed.
    * An estimator claiming to be unbiased gave the same estimate every time, and that
      estimate is not ∇J: in float64 its samples (or f) did not vary at all, which is
      catastrophic cancellation (``μ + σε`` rounding to ``μ``, say), not a measured bias.
    """
    checked = [*FINITE_METRICS]
    if accumulator.groups >= 2:
        checked += ["variance_ci_low", "variance_ci_high"]
    bad = [f"{key}={metrics[key]}" for key in checked if not math.isfinite(metrics[key])]
    if bad:
        return (f"non-finite metrics ({', '.join(bad)}): the estimates or the problem's exact "
                "solution overflow float64 at these parameters")
    if unbiased_claim and accumulator.constant() and metrics["bias_pvalue"] == 0.0:
        return (f"every estimate is the same vector yet differs from ∇J by ‖bias‖ = "
                f"{metrics['bias_norm']:.3g} (‖∇J‖ = {metrics['true_grad_norm']:.3g}): the "
                "samples or f do not vary in float64 at these parameters (catastrophic "
                "cancellation), or the estimator ignores its samples")
    return None
