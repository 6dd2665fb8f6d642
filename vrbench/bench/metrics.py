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

import torch
from torch import Tensor

MAX_GROUPS = 32
"""Groups (batches) used for the variance's confidence interval."""


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


class EstimateAccumulator:
    """Accumulates ``R`` estimates, chunk by chunk, against the exact gradient."""

    def __init__(self, true_grad: Tensor, replicates: int) -> None:
        self.true_grad = true_grad.to(torch.float64)
        self.replicates = replicates
        self.groups = min(MAX_GROUPS, replicates // 2)
        dim = true_grad.numel()
        self.group_moments = [Moments.empty(dim) for _ in range(max(self.groups, 1))]
        self.cosine_sum = 0.0
        self.seen = 0

    def _group_of(self, index: int) -> int:
        return index * len(self.group_moments) // self.replicates

    def update(self, batch: Tensor) -> None:
        """Add the next chunk of estimates, shape ``(k, dim)``, in replicate order."""
        batch = batch.to(torch.float64)
        start, stop = self.seen, self.seen + batch.shape[0]
        index = start
        while index < stop:
            group = self._group_of(index)
            group_end = min(stop, -(-(group + 1) * self.replicates // len(self.group_moments)))
            part = batch[index - start : group_end - start]
            self.group_moments[group] = self.group_moments[group].merge(Moments.of(part))
            index = group_end
        true_norm = self.true_grad.norm()
        if true_norm > 0:
            norms = batch.norm(dim=1) * true_norm
            cosines = torch.where(norms > 0, batch @ self.true_grad / norms.clamp_min(1e-300), 0)
            self.cosine_sum += float(cosines.sum())
        self.seen = stop

    def metrics(self) -> dict[str, float]:
        """The metrics of the cell; call after all ``R`` estimates were added."""
        if self.seen != self.replicates:
            raise RuntimeError(f"expected {self.replicates} estimates, got {self.seen}")
        total = Moments.empty(self.true_grad.numel())
        for moments in self.group_moments:
            total = total.merge(moments)
        return cell_metrics(
            total,
            self.group_moments if self.groups >= 2 else [],
            self.true_grad,
            self.cosine_sum / self.replicates,
        )


def bias_pvalue(moments: Moments, true_grad: Tensor) -> float:
    """p-value of H0: E ĝ = ∇J, per-coordinate t-tests with a Bonferroni correction.

    Coordinates whose estimates never vary are skipped: with a sparse reward they are events
    not yet seen, not evidence. If no coordinate varies the estimator is deterministic and is
    tested exactly: it passes if it equals the exact gradient to rounding, else p = 0.
    """
    count = moments.count
    diff = moments.mean - true_grad
    var = moments.variance()
    tested = var > (1e-14 * (1.0 + moments.mean.abs())) ** 2
    n_tested = int(tested.sum())
    if n_tested == 0:
        return 1.0 if bool((diff.abs() <= 1e-10 * (1.0 + true_grad.abs())).all()) else 0.0
    from scipy import stats  # imported here: it costs a second at start-up

    t_stat = (diff[tested] / torch.sqrt(var[tested] / count)).abs().numpy()
    p_min = float((2 * stats.t.sf(t_stat, df=count - 1)).min())
    return min(1.0, n_tested * p_min)


def cell_metrics(
    total: Moments, groups: list[Moments], true_grad: Tensor, mean_cosine: float
) -> dict[str, float]:
    """Bias, variance (with its 95% interval), MSE and friends from the merged moments."""
    count = total.count
    bias = total.mean - true_grad
    variance = float(total.variance().sum()) if count >= 2 else math.nan
    ci_low = ci_high = math.nan
    if len(groups) >= 2:
        from scipy import stats

        group_vars = torch.tensor([float(g.variance().sum()) for g in groups], dtype=torch.float64)
        half_width = float(
            stats.t.ppf(0.975, df=len(groups) - 1) * group_vars.std() / math.sqrt(len(groups))
        )
        ci_low, ci_high = max(0.0, variance - half_width), variance + half_width
    true_norm = float(true_grad.norm())
    return {
        "dim": true_grad.numel(),
        "true_grad_norm": true_norm,
        "bias_norm": float(bias.norm()),
        "bias_pvalue": bias_pvalue(total, true_grad) if count >= 2 else math.nan,
        "variance": variance,
        "variance_ci_low": ci_low,
        "variance_ci_high": ci_high,
        "mse": float((total.m2 / count).sum() + (bias**2).sum()),
        "snr": true_norm / math.sqrt(variance) if variance > 0 else math.inf,
        "cosine": mean_cosine,
    }
