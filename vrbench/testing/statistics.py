"""The statistics of the conformance checks: mean tests that state their power, and tests that
an estimator's replicates are independent, whatever the number one call computes.

**The same verdict on any machine.** Every sample size below is a count computed from the
seed's draws and the settings (tolerance, caps), never from the clock, so the same command and
seed draw the same numbers and reach the same verdict on an idle or a loaded machine. A time
budget, where one is set, is only a cap: a test it stops is reported as stopped (see
:attr:`MeanTest.stopped`), and the check fails unless asked to accept the weaker power.

**Mean tests, one look.** A test of ``E[y_v] = e_v`` along ``k`` directions ``v`` (a gradient
estimate projected on ∇J and on coordinates, say) with a relative tolerance ``τ`` against a
unit ``u_v`` (‖∇J‖, |J|, ...) runs in two stages:

1. a *pilot* of :data:`PILOT_COUNT` draws (fewer when the cap is lower) measures the spread
   ``σ_v`` of ``y_v``;
2. the count that detects a deviation of ``τ u_v`` along any direction with probability
   :data:`POWER`, ``N = max_v ((z_α + z_β) σ_v / (τ u_v))²`` (times :data:`SAFETY`, since
   ``σ_v`` is itself estimated), capped by ``max_count``, is drawn afresh, independently of
   the pilot, and tested once: it fails if ``|ȳ_v − e_v| > z_α σ̂_v / √N`` along some
   direction.

``z_α`` is Bonferroni-corrected over the ``k`` directions, so a correct component fails one
test with probability at most :data:`ALPHA` (up to the normal approximation of the mean).
The pilot only sizes the sample and is never tested, so there is one look. A passing test
reports the smallest deviation it detects with probability :data:`POWER`,
``(z_α + z_β) σ̂_v / √N``, relative to ``u_v``: "bias < 0.6% of ‖∇J‖". The power calculation
is the textbook one for a two-sided z-test (e.g. Lehmann & Romano, "Testing Statistical
Hypotheses", 3rd ed., 2005, section 3.4).

The tested sample arrives in calls (one ``estimate()`` call per chunk). Their means vary as
independent replicates' would, ``Σ_c m_c (ȳ_c − ȳ)² / σ̂² ~ χ²_{C−1}``, unless the replicates
of a call are dependent; then the standard error ``σ̂/√N`` is too small, and a large
``|ȳ − e|`` is not evidence of bias (:attr:`MeanTest.dependent`, which words a failure; the
χ² approximation is too rough with heavy tails to fail a test on its own).

**Replicates per call.** The harness computes a cell's replicates in memory-bounded chunks,
one ``estimate()`` call each, and an estimate's distribution must not depend on how many
replicates share its call: :func:`call_size_test` compares, by ranks, how widely one large
call's estimates spread with how widely those of many calls of a few hundred, and of calls
of 1, 2 and 4 replicates, do.
Randomness shared within a call (one random point set, one random baseline per call), or a
baseline computed across the replicate axis, makes them differ.

**Independence.** Replicates can be dependent and keep their variance (identical pairs, say),
which no variance comparison sees, while every standard error computed from them is too
small. :func:`correlation_test` compares, within calls, the means of neighbouring blocks of
``h`` consecutive replicates (``h = 1, 2, 4, ...``): for independent replicates the product of
their deviations has mean zero. It sees dependence between replicates a few places apart in
one call; dependence between replicates far apart in a large call (the second half copying
the first) only shows in the calls of 2 and 4 replicates, and dependence between calls only
through the variance comparison above.

**Against a reference.** Where ``e_v`` is itself an estimate with standard error ``s_v`` (a
reference gradient, :mod:`vrbench.bench.reference`), the test compares in units of
``√(σ̂_v²/N + s_v²)``: both uncertainties count, and the smallest detectable deviation,
``(z_α + z_β) √(σ̂_v²/N + s_v²)``, can never fall below ``(z_α + z_β) s_v``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench.bench.metrics import Moments

ALPHA = 1e-5
"""Probability that a correct component fails one statistical test (all its directions)."""

POWER = 0.95
"""Probability with which a test detects a deviation of the size it reports."""

SAFETY = 1.3
"""Factor on the count computed from the pilot's spread, which is itself uncertain."""

PILOT_COUNT = 16_384
"""Draws of a mean test's pilot (at most a quarter of its cap, at least :data:`MIN_PILOT`):
enough to size the sample for heavy-tailed estimates too."""

MIN_PILOT = 256

MIN_COUNT = 1024
"""The tested sample has at least this many draws (or the cap, if lower)."""

MAX_CHUNK = 2**18
"""Most draws requested at once while drawing the tested sample (the draw function may split
them further); the time cap is checked between requests."""

MIN_BLOCKS = 32
"""Fewest pairs of blocks behind one scale of the correlation test."""

Draw = Callable[[int, torch.Generator], Iterator[Tensor]]
"""``draw(count, generator)`` yields ``count`` draws in chunks of shape ``(size, k)``, one
chunk per call of the component."""


def normal_quantile(p: float) -> float:
    """The standard normal quantile ``Φ⁻¹(p)``."""
    from scipy import stats  # imported here: it costs a second at start-up

    return float(stats.norm.ppf(p))


def z_threshold(alpha: float, directions: int) -> float:
    """The two-sided z threshold for ``directions`` tests at family-wise level ``alpha``."""
    return -normal_quantile(alpha / (2 * max(directions, 1)))


def _degenerate(sd: Tensor, mean: Tensor) -> Tensor:
    """Directions whose draws are all equal up to rounding."""
    return sd <= 1e-14 * (1.0 + mean.abs())


@dataclass(frozen=True)
class CallDispersion:
    """How much the means of the calls behind a sample vary, against independent replicates:
    per direction ``D_v = Σ_c m_c (ȳ_c,v − ȳ_v)² / σ̂_v²``, χ² with ``calls − 1`` degrees of
    freedom when the replicates are independent."""

    calls: int
    statistic: Tensor
    threshold: float

    @property
    def ratio(self) -> Tensor:
        """``D_v / (calls − 1)``: the variance of the call means over that of independent ones."""
        return self.statistic / max(self.calls - 1, 1)

    @property
    def dependent(self) -> bool:
        return self.calls >= 2 and bool((self.statistic > self.threshold).any())


def call_dispersion(calls: Sequence[Moments], total: Moments,
                    alpha: float = ALPHA) -> CallDispersion:
    """:class:`CallDispersion` of the calls' moments (``total`` merges them)."""
    from scipy import stats

    k = total.mean.numel()
    variance = total.variance() if total.count >= 2 else torch.zeros(k, dtype=torch.float64)
    between = sum((c.count * (c.mean - total.mean) ** 2 for c in calls),
                  torch.zeros(k, dtype=torch.float64))
    flat = _degenerate(variance.clamp_min(0).sqrt(), total.mean)
    statistic = torch.where(flat, 0.0, between / variance.clamp_min(1e-300))
    df = max(len(calls) - 1, 1)
    return CallDispersion(len(calls), statistic, float(stats.chi2.isf(alpha / k, df)))


@dataclass(frozen=True)
class MeanTest:
    """A one-look test of ``E[y_v] = expected_v`` along each direction, with its power."""

    count: int
    mean: Tensor
    sd: Tensor
    expected: Tensor
    units: Tensor
    tolerance: float
    threshold: float
    z_power: float
    seconds: float
    planned: int
    """Draws the pilot asked for, after the cap: ``count`` unless the time cap stopped it."""
    needed: int
    """Draws the pilot asked for to reach the tolerance, before the cap."""
    dispersion: CallDispersion | None = None
    expected_se: Tensor | None = None
    """Standard errors of ``expected`` where it is an estimate (a reference gradient)."""

    @property
    def stopped(self) -> bool:
        """Whether the time cap stopped the sample before its planned count."""
        return self.count < self.planned

    @property
    def capped(self) -> bool:
        """Whether the count cap (not the clock) kept the sample below the needed count."""
        return self.planned < self.needed

    @property
    def dependent(self) -> bool:
        """Whether the calls' means vary more than independent replicates allow."""
        return self.dispersion is not None and self.dispersion.dependent

    def _standard_errors(self) -> Tensor:
        se = self.sd / math.sqrt(max(self.count, 1))
        return se if self.expected_se is None else torch.sqrt(se**2 + self.expected_se**2)

    @property
    def z(self) -> Tensor:
        """``|ȳ_v − e_v|`` in standard errors; a direction without spread must match exactly."""
        diff = (self.mean - self.expected).abs()
        se = self._standard_errors()
        flat = _degenerate(se * math.sqrt(max(self.count, 1)), self.mean)
        exact = diff <= 1e-9 * (self.expected.abs() + self.units.abs() + 1e-300)
        return torch.where(flat, torch.where(exact, 0.0, math.inf), diff / se.clamp_min(1e-300))

    @property
    def max_z(self) -> float:
        return float(self.z.max())

    @property
    def worst(self) -> int:
        """The direction furthest from its expected value, in standard errors."""
        return int(self.z.argmax())

    @property
    def passed(self) -> bool:
        return self.count > 0 and self.max_z <= self.threshold

    @property
    def pvalue(self) -> float:
        """The test's p-value, Bonferroni-corrected over the directions (normal approximation)."""
        from scipy import stats

        return min(1.0, 2 * self.z.numel() * float(stats.norm.sf(self.max_z)))

    @property
    def detectable(self) -> Tensor:
        """Per direction, the deviation detected with probability ``POWER`` (0 without spread)."""
        return (self.threshold + self.z_power) * self._standard_errors()

    def detectable_relative_of(self, directions: slice | None = None) -> float:
        """The largest detectable deviation relative to its unit among ``directions`` (all by
        default; inf where the unit is 0)."""
        part = slice(None) if directions is None else directions
        detectable, units = self.detectable[part], self.units[part]
        relative = torch.where(detectable == 0, 0.0, detectable / units.abs().clamp_min(1e-300))
        relative = torch.where((units == 0) & (detectable > 0), math.inf, relative)
        return float(relative.max())

    @property
    def detectable_relative(self) -> float:
        """The largest detectable deviation relative to its unit (inf where the unit is 0)."""
        return self.detectable_relative_of()

    @property
    def reached(self) -> bool:
        """Whether a deviation of ``tolerance`` (relative) would have been detected."""
        return self.detectable_relative <= self.tolerance

    def deviation_relative(self, direction: int) -> float:
        """The measured ``|ȳ_v − e_v|`` relative to its unit along ``direction``."""
        unit = float(self.units[direction].abs())
        diff = float((self.mean[direction] - self.expected[direction]).abs())
        return diff / unit if unit > 0 else math.inf


def _checked(chunk: Tensor, width: int) -> Tensor:
    if chunk.dim() != 2 or chunk.shape[1] != width:
        raise ValueError(f"draws of shape {tuple(chunk.shape)}, expected (count, {width}): "
                         f"one number per expected value")
    return chunk.to(torch.float64)


def _moments(chunks: Iterator[Tensor], width: int) -> Moments:
    """Moments of the draws, each ``width`` numbers."""
    moments = Moments.empty(width)
    for chunk in chunks:
        moments = moments.merge(Moments.of(_checked(chunk, width)))
    return moments


def planned_count(pilot: Moments, units: Tensor | None, tolerance: float, threshold: float,
                  z_power: float, expected_se: Tensor | None = None) -> tuple[int, Tensor]:
    """The count that detects ``tolerance · units`` with the pilot's spread (before any cap),
    and the units (the pilot's spread when ``units`` is None). ``expected_se``, the standard
    errors of an expected value that is itself an estimate, takes its share of the tolerance."""
    pilot_sd = pilot.variance().clamp_min(0).sqrt()
    if units is None:
        units = pilot_sd
    target = tolerance * units.abs()
    if expected_se is not None:  # what the reference's own error leaves for the mean's
        room = (target / (threshold + z_power)) ** 2 - expected_se.to(target) ** 2
        # Where the reference alone exceeds the tolerance, match its standard error instead.
        target = (threshold + z_power) * torch.where(room > 0, room.clamp_min(0).sqrt(),
                                                     expected_se.to(target))
    flat = _degenerate(pilot_sd, pilot.mean)
    ratio = torch.where(flat, 0.0, pilot_sd / target.clamp_min(1e-300))
    ratio = torch.where(~flat & (target == 0), math.inf, ratio)
    needed = SAFETY * ((threshold + z_power) * float(ratio.max())) ** 2
    return int(min(math.ceil(needed), 2**62)), units


def mean_test(draw: Draw, expected: Tensor, units: Tensor | None, tolerance: float,
              generators: tuple[torch.Generator, torch.Generator], *, max_count: int,
              deadline: float | None = None, alpha: float = ALPHA,
              power: float = POWER, expected_se: Tensor | None = None) -> MeanTest:
    """Test ``E[y] = expected`` (shape ``(k,)``) with a pilot and one fresh sample (see above).

    ``units`` (shape ``(k,)``) turns the relative ``tolerance`` into absolute ones; ``None``
    measures the deviation in standard deviations of ``y`` (from the pilot). The pilot draws
    from ``generators[0]``, the tested sample from ``generators[1]``, in requests of
    ``MIN_COUNT, 2·MIN_COUNT, ...`` draws (at most :data:`MAX_CHUNK`) until the planned count,
    so the draws depend on the seeds and ``max_count`` alone. ``deadline`` (a
    ``time.perf_counter()`` instant, ``None`` for none) is checked between requests; a sample
    it stops has ``count < planned`` (:attr:`MeanTest.stopped`) and is tested as drawn.
    ``expected_se`` are the standard errors of ``expected`` where it is itself an estimate
    (see the module).
    """
    k = expected.numel()
    threshold, z_power = z_threshold(alpha, k), normal_quantile(power)
    started = time.perf_counter()
    pilot = _moments(draw(max(MIN_PILOT, min(PILOT_COUNT, max_count // 4)), generators[0]), k)
    needed, units = planned_count(pilot, units, tolerance, threshold, z_power,
                                  expected_se)
    planned = min(max(MIN_COUNT, needed), max_count)
    main = Moments.empty(k)
    calls: list[Moments] = []
    size = MIN_COUNT
    while main.count < planned:
        if deadline is not None and time.perf_counter() > deadline:
            break
        request = min(size, MAX_CHUNK, planned - main.count)
        for chunk in draw(request, generators[1]):
            calls.append(Moments.of(_checked(chunk, k)))
            main = main.merge(calls[-1])
        size *= 2
    sd = (main.variance().clamp_min(0).sqrt() if main.count >= 2
          else torch.full((k,), math.inf, dtype=torch.float64))
    return MeanTest(
        count=main.count, mean=main.mean, sd=sd, expected=expected.to(torch.float64),
        units=units.to(torch.float64), tolerance=tolerance, threshold=threshold,
        z_power=z_power, seconds=time.perf_counter() - started, planned=planned,
        needed=max(MIN_COUNT, needed),
        dispersion=call_dispersion(calls, main, alpha) if len(calls) >= 2 else None,
        expected_se=None if expected_se is None else expected_se.to(torch.float64),
    )


@dataclass(frozen=True)
class CallSizeTest:
    """Whether estimates from calls of several sizes spread as widely as one large call's.

    Per arm and direction, a rank test (Mann–Whitney) of the distances from the pooled median:
    ``auc`` is the probability that an estimate of the arm lies further out than one of the
    large call (½ when they are alike). Ranks, unlike variances, are not swayed by the rare
    large estimates of a heavy tail, which a small arm may not contain at all."""

    reference_size: int
    auc: Mapping[str, Tensor]
    z: Mapping[str, Tensor]
    standard_errors: Mapping[str, Tensor]
    """Per arm, the standard error of ``auc`` when the arms are alike."""
    spreads: Mapping[str, Tensor]
    """Per arm, and for ``"reference"``, the mean absolute deviation from the median (for the
    report)."""
    variances: Mapping[str, Tensor]
    threshold: float
    z_power: float

    @property
    def max_z(self) -> float:
        return max(float(z.abs().max()) for z in self.z.values())

    @property
    def worst(self) -> tuple[str, int]:
        """The arm and direction furthest from the reference, in standard errors."""
        arm = max(self.z, key=lambda a: float(self.z[a].abs().max()))
        return arm, int(self.z[arm].abs().argmax())

    @property
    def passed(self) -> bool:
        return self.max_z <= self.threshold

    def detectable_ratio(self, arm: str) -> float:
        """The ratio of spreads detected with probability ``POWER`` between normal estimates,
        whose distances from the median are half-normal: ``auc = (2/π) atan(ratio)``."""
        shift = (self.threshold + self.z_power) * float(self.standard_errors[arm].max())
        return math.tan(math.pi / 2 * min(0.5 + shift, 1.0 - 1e-12))


def _rank_z(first: Tensor, second: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per column, Mann–Whitney's ``P(first > second) + ½ P(=)``, its z-statistic and its null
    standard error, with average ranks for ties."""
    import numpy as np
    from scipy import stats

    a, b = first.shape[0], second.shape[0]
    pooled = torch.cat([first, second]).numpy()
    ranks = stats.rankdata(pooled, axis=0)
    count = a + b
    ties = np.array([float(((c := np.unique(column, return_counts=True)[1]) ** 3 - c).sum())
                     for column in pooled.T])
    variance = a * b / 12 * ((count + 1) - ties / (count * (count - 1)))
    u = ranks[:a].sum(axis=0) - a * (a + 1) / 2
    z = np.where(variance > 0, (u - a * b / 2) / np.sqrt(np.maximum(variance, 1e-300)), 0.0)
    se = np.sqrt(np.maximum(variance, 0)) / (a * b)

    def as_tensor(x: Any) -> Tensor:
        return torch.as_tensor(x, dtype=torch.float64)

    return as_tensor(u / (a * b)), as_tensor(z), as_tensor(se)


TIE_RESOLUTION = 1e-10
"""Distances from the median closer than this fraction of the largest estimate are ties."""


def _tied_to_rounding(first: Tensor, second: Tensor, scale: float) -> tuple[Tensor, Tensor]:
    """The distances on a grid of ``TIE_RESOLUTION · scale``, so that equal estimates stay tied.

    Estimates with few distinct values (a sequence policy's, at n = 1) tie in most places,
    and the same value computed in a call of 2 and in a call of 16,384 may differ in its last
    bits (another kernel for the product with the directions, or in the estimator): every
    such tie would then be broken the same way, and the ranks would separate the call sizes
    by rounding alone."""
    step = TIE_RESOLUTION * scale
    if step <= 0:
        return first, second
    return torch.round(first / step), torch.round(second / step)


def _spread(values: Tensor) -> Tensor:
    return (values - values.median(dim=0).values).abs().mean(dim=0)


def call_size_test(reference: Tensor, arms: Mapping[str, Tensor], *, alpha: float = ALPHA,
                   power: float = POWER) -> CallSizeTest:
    """Compare how widely the estimates of each arm (from calls of other sizes,
    ``(count, k)``) spread with ``reference`` (the estimates of one call, ``(B, k)``).

    The distances of both from their pooled median are ranked together, per direction; the
    Mann–Whitney z-statistics are Bonferroni-corrected over arms and directions. Estimates
    whose distribution depends on the call's size (a random effect shared by a call's
    replicates widens an arm of many calls, a point set shared by them narrows the one
    call, a statistic across the replicate axis makes small calls wider) rank apart.
    A direction where the estimates vary by rounding only (an exact estimator) is not tested.
    """
    reference = reference.to(torch.float64)
    aucs, zs, errors, spreads = {}, {}, {}, {"reference": _spread(reference)}
    variances = {"reference": reference.var(dim=0)}
    for label, values in arms.items():
        values = values.to(torch.float64)
        pooled = torch.cat([reference, values])
        center = pooled.median(dim=0).values
        aucs[label], zs[label], errors[label] = _rank_z(
            *_tied_to_rounding((values - center).abs(), (reference - center).abs(),
                               float(pooled.abs().max())))
        # Rounding scales with the whole estimate: an exact estimator's projections all vary
        # by ~1e-16 of its largest one, and their ranks mean nothing.
        rounding = pooled.std(dim=0) <= 1e-14 * (1.0 + float(pooled.mean(dim=0).abs().max()))
        zs[label] = torch.where(rounding, 0.0, zs[label])
        spreads[label], variances[label] = _spread(values), values.var(dim=0)
    k = reference.shape[1]
    return CallSizeTest(
        reference_size=reference.shape[0], auc=aucs, z=zs, standard_errors=errors,
        spreads=spreads, variances=variances,
        threshold=z_threshold(alpha, k * max(len(arms), 1)), z_power=normal_quantile(power),
    )


@dataclass(frozen=True)
class CorrelationTest:
    """Within calls, the correlation of the means of neighbouring blocks of ``h`` replicates,
    per arm (calls of one size), scale ``h`` and direction: 0 for independent replicates."""

    rows: tuple[tuple[str, int], ...]
    """``(arm, h)`` of each row of the tensors below."""
    blocks: tuple[int, ...]
    """Pairs of neighbouring blocks behind each row."""
    correlation: Tensor
    """``(rows, k)``: the estimated correlation of neighbouring block means."""
    z: Tensor
    """``(rows, k)``: the mean product of their deviations in standard errors."""
    detectable: Tensor
    """``(rows, k)``: the correlation detected with probability ``POWER``."""
    thresholds: Tensor
    """Per row, the two-sided threshold on ``|z|`` (Student t, Bonferroni-corrected)."""

    @property
    def excess(self) -> Tensor:
        """``|z|`` over each row's threshold (≤ 1 passes)."""
        return self.z.abs() / self.thresholds[:, None]

    @property
    def passed(self) -> bool:
        return not self.rows or bool((self.excess <= 1).all())

    @property
    def worst(self) -> tuple[int, int]:
        """``(row, direction)`` furthest beyond its threshold."""
        return divmod(int(self.excess.argmax()), self.z.shape[1])

    @property
    def detectable_pairs(self) -> float:
        """The correlation of consecutive replicates (``h = 1``) detected with probability
        ``POWER`` in the arm with the most pairs, the largest over the directions."""
        ones = [i for i, (_, h) in enumerate(self.rows) if h == 1]
        if not ones:
            return math.inf
        best = max(ones, key=lambda i: self.blocks[i])
        return float(self.detectable[best].max())


def correlation_test(arms: Mapping[str, Sequence[Tensor]], *, alpha: float = ALPHA,
                     power: float = POWER, min_blocks: int = MIN_BLOCKS) -> CorrelationTest:
    """Test that replicates are independent within calls (see the module).

    ``arms`` maps a label to calls of one size, each call's estimates ``(size, k)`` in the
    order returned. At scale ``h`` every call is cut into consecutive blocks of ``2h``
    replicates, and ``a``, ``b`` are the means of each block's halves, less the mean of the
    arm's estimates: ``E[a·b] = Cov(a, b) = 0`` for independent replicates. The mean of
    ``a·b`` over the arm's ``M`` blocks, in standard errors from their spread, is compared with
    the Student t threshold with ``M − 1`` degrees of freedom, Bonferroni-corrected over arms,
    scales and directions. Scales ``h = 1, 2, 4, ...`` run while at least ``min_blocks``
    blocks fit. Arms are tested apart, so that identical pairs in calls of two are not
    diluted by the many pairs of a large call. A direction without spread is not tested.
    """
    from scipy import stats

    rows: list[tuple[str, int]] = []
    blocks: list[int] = []
    products: list[Tensor] = []
    units: list[Tensor] = []
    flats: list[Tensor] = []
    for label, calls in arms.items():
        values = [c.to(torch.float64) for c in calls if c.shape[0] >= 2]
        if not values:
            continue
        everything = torch.cat(values)
        center, variance = everything.mean(dim=0), everything.var(dim=0)
        # Rounding scales with the whole estimate (see call_size_test).
        flat = variance.clamp_min(0).sqrt() <= 1e-14 * (1.0 + float(center.abs().max()))
        by_size: dict[int, list[Tensor]] = {}
        for call in values:
            by_size.setdefault(call.shape[0], []).append(call)
        stacked = [torch.stack(same) for same in by_size.values()]  # (calls, size, k) each
        h = 1
        while True:
            pieces = []
            for group in stacked:
                count = group.shape[1] // (2 * h)
                if count:
                    halves = group[:, : count * 2 * h].reshape(
                        group.shape[0] * count, 2, h, -1).mean(dim=2) - center
                    pieces.append(halves[:, 0] * halves[:, 1])
            found = sum(p.shape[0] for p in pieces)
            if found < min_blocks:
                break
            rows.append((label, h))
            blocks.append(found)
            products.append(torch.cat(pieces))
            units.append((variance / h).clamp_min(1e-300))
            flats.append(flat)
            h *= 2
    if not rows:
        empty = torch.zeros(0, 0, dtype=torch.float64)
        return CorrelationTest((), (), empty, empty, empty, torch.zeros(0, dtype=torch.float64))
    tests = len(rows) * products[0].shape[1]
    z_power = normal_quantile(power)
    correlations, zs, detectables, thresholds = [], [], [], []
    for count, product, unit, flat in zip(blocks, products, units, flats, strict=True):
        mean, se = product.mean(dim=0), product.std(dim=0) / math.sqrt(count)
        threshold = float(stats.t.isf(alpha / (2 * tests), count - 1))
        zs.append(torch.where(flat | (se <= 0), 0.0, mean / se.clamp_min(1e-300)))
        correlations.append(torch.where(flat, 0.0, mean / unit))
        detectables.append(torch.where(flat, 0.0, (threshold + z_power) * se / unit))
        thresholds.append(threshold)
    return CorrelationTest(tuple(rows), tuple(blocks), torch.stack(correlations),
                           torch.stack(zs), torch.stack(detectables),
                           torch.tensor(thresholds, dtype=torch.float64))
