"""The statistics of the conformance checks: mean tests that state their power, and a test that
an estimator's replicates do not depend on how they are split into calls.

**Mean tests, one look.** A test of ``E[y_v] = e_v`` along ``k`` directions ``v`` (a gradient
estimate projected on ∇J and on coordinates, say) with a relative tolerance ``τ`` against a
unit ``u_v`` (‖∇J‖, |J|, ...) runs in two stages:

1. a *pilot* sample measures the spread ``σ_v`` of ``y_v`` and the time one draw takes;
2. the count that detects a deviation of ``τ u_v`` along any direction with probability
   :data:`POWER`, ``N = max_v ((z_α + z_β) σ_v / (τ u_v))²`` (times :data:`SAFETY`, since
   ``σ_v`` is itself estimated), capped by ``max_count``, is drawn afresh, independently of
   the pilot, until it is complete or the time budget is spent, and tested once: it fails if
   ``|ȳ_v − e_v| > z_α σ̂_v / √N`` along some direction.

``z_α`` is Bonferroni-corrected over the ``k`` directions, so a correct component fails one
test with probability at most :data:`ALPHA` (up to the normal approximation of the mean).
The pilot only sizes the sample and is never tested, so there is one look and no inflation of
false alarms; stopping the tested sample early when time runs out depends on the clock, not
on the data, and is equally harmless. A passing test reports the smallest deviation it detects
with probability :data:`POWER`, ``(z_α + z_β) σ̂_v / √N``, relative to ``u_v``: "bias < 0.6%
of ‖∇J‖". The power calculation is the textbook one for a two-sided z-test (e.g. Lehmann &
Romano, "Testing Statistical Hypotheses", 3rd ed., 2005, section 3.4).

**Chunking.** The harness computes a cell's replicates in memory-bounded chunks, one
``estimate()`` call each, so replicates must be independent whatever the chunking, or the
measured variance depends on the memory budget. :func:`chunking_test` compares the variance
of ``B`` estimates from one call with that of ``B`` estimates from ``C`` calls: randomness
shared within a call (one random point set, one random baseline per call) makes them differ.

**Against a reference.** Where ``e_v`` is itself an estimate with standard error ``s_v`` (a
reference gradient, :mod:`vrbench.bench.reference`), the test compares in units of
``√(σ̂_v²/N + s_v²)``: both uncertainties count, and the smallest detectable deviation,
``(z_α + z_β) √(σ̂_v²/N + s_v²)``, can never fall below ``(z_α + z_β) s_v``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from vrbench.bench.metrics import Moments

ALPHA = 1e-5
"""Probability that a correct component fails one statistical test (all its directions)."""

POWER = 0.95
"""Probability with which a test detects a deviation of the size it reports."""

SAFETY = 1.3
"""Factor on the count computed from the pilot's spread, which is itself uncertain."""

PILOT_CHUNKS = (128, 128, 256, 512, 1024, 2048, 4096)
"""Pilot draws, in calls (8,192 in all); the pilot stops once it has used :data:`PILOT_SHARE`
of the time budget, and without one after a quarter of ``max_count`` (at least 1,024)."""

PILOT_SHARE = 0.1
"""Largest share of a test's time budget the pilot may use."""

MIN_PILOT = 1024

MIN_COUNT = 1024
"""The tested sample never has fewer draws than this, even when the budget is spent."""

Draw = Callable[[int, torch.Generator], Iterator[Tensor]]
"""``draw(count, generator)`` yields ``count`` draws in chunks of shape ``(size, k)``."""


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
    expected_se: Tensor | None = None
    """Standard errors of ``expected`` where it is an estimate (a reference gradient)."""

    def _standard_errors(self) -> Tensor:
        se = self.sd / math.sqrt(self.count)
        return se if self.expected_se is None else torch.sqrt(se**2 + self.expected_se**2)

    @property
    def z(self) -> Tensor:
        """``|ȳ_v − e_v|`` in standard errors; a direction without spread must match exactly."""
        diff = (self.mean - self.expected).abs()
        se = self._standard_errors()
        flat = _degenerate(se * math.sqrt(self.count), self.mean)
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
        return self.max_z <= self.threshold

    @property
    def detectable(self) -> Tensor:
        """Per direction, the deviation detected with probability ``POWER`` (0 without spread)."""
        return (self.threshold + self.z_power) * self._standard_errors()

    @property
    def detectable_relative(self) -> float:
        """The largest detectable deviation relative to its unit (inf where the unit is 0)."""
        detectable = self.detectable
        relative = torch.where(detectable == 0, 0.0,
                               detectable / self.units.abs().clamp_min(1e-300))
        relative = torch.where((self.units == 0) & (detectable > 0), math.inf, relative)
        return float(relative.max())

    @property
    def reached(self) -> bool:
        """Whether a deviation of ``tolerance`` (relative) would have been detected."""
        return self.detectable_relative <= self.tolerance

    def deviation_relative(self, direction: int) -> float:
        """The measured ``|ȳ_v − e_v|`` relative to its unit along ``direction``."""
        unit = float(self.units[direction].abs())
        diff = float((self.mean[direction] - self.expected[direction]).abs())
        return diff / unit if unit > 0 else math.inf


def _moments(chunks: Iterator[Tensor], width: int) -> tuple[Moments, float]:
    """Moments of the draws, each ``width`` numbers, and the seconds they took."""
    moments: Moments | None = None
    start = time.perf_counter()
    for chunk in chunks:
        if chunk.dim() != 2 or chunk.shape[1] != width:
            raise ValueError(f"draws of shape {tuple(chunk.shape)}, expected (count, {width}): "
                             f"one number per expected value")
        batch = Moments.of(chunk.to(torch.float64))
        moments = batch if moments is None else moments.merge(batch)
    if moments is None:
        raise ValueError("no draws")
    return moments, time.perf_counter() - start


def mean_test(draw: Draw, expected: Tensor, units: Tensor | None, tolerance: float,
              generators: tuple[torch.Generator, torch.Generator], *,
              time_budget: float | None, max_count: int,
              alpha: float = ALPHA, power: float = POWER,
              expected_se: Tensor | None = None) -> MeanTest:
    """Test ``E[y] = expected`` (shape ``(k,)``) with a pilot and one fresh sample (see above).

    ``units`` (shape ``(k,)``) turns the relative ``tolerance`` into absolute ones; ``None``
    measures the deviation in standard deviations of ``y`` (from the pilot). The pilot draws
    from ``generators[0]``, the tested sample from ``generators[1]``. ``time_budget`` (seconds,
    ``None`` for none) and ``max_count`` cap the tested sample; it is drawn in growing chunks,
    each sized by the speed of the last to fit the time left, and stops when time is up (the
    clock, not the data, decides, so the single look stays valid). Without a time budget the
    outcome depends on the seeds alone. ``expected_se`` are the standard errors of
    ``expected`` where it is itself an estimate (see the module).
    """
    k = expected.numel()
    threshold, z_power = z_threshold(alpha, k), normal_quantile(power)
    started = time.perf_counter()
    pilot: Moments | None = None
    for size in PILOT_CHUNKS:
        chunk_moments, _ = _moments(draw(size, generators[0]), k)
        pilot = chunk_moments if pilot is None else pilot.merge(chunk_moments)
        if (pilot.count >= max(MIN_PILOT, max_count // 4) if time_budget is None
                else time.perf_counter() - started > PILOT_SHARE * time_budget):
            break
    assert pilot is not None
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
    needed = min(SAFETY * ((threshold + z_power) * float(ratio.max())) ** 2, float(max_count))
    count = int(max(MIN_COUNT, math.ceil(needed)))
    deadline = None if time_budget is None else started + time_budget
    main: Moments | None = None
    size, seconds_per_draw = MIN_COUNT, math.inf
    while main is None or main.count < count:
        if deadline is not None and main is not None:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            size = max(1, min(size, int(left / seconds_per_draw)))
        size = min(size, count - (main.count if main is not None else 0))
        chunk_moments, seconds = _moments(draw(size, generators[1]), k)
        main = chunk_moments if main is None else main.merge(chunk_moments)
        seconds_per_draw = seconds / size
        size *= 2
    return MeanTest(
        count=main.count, mean=main.mean, sd=main.variance().clamp_min(0).sqrt(),
        expected=expected.to(torch.float64), units=units.to(torch.float64), tolerance=tolerance,
        threshold=threshold, z_power=z_power, seconds=time.perf_counter() - started,
        expected_se=None if expected_se is None else expected_se.to(torch.float64),
    )


@dataclass(frozen=True)
class ChunkingTest:
    """Variances of ``B`` estimates from one call and from ``calls`` calls, per direction."""

    replicates: int
    calls: int
    one_call: Tensor
    many_calls: Tensor
    standard_error: Tensor
    rounding: Tensor
    """Directions where both arms vary by rounding errors only (an exact estimator)."""
    threshold: float
    z_power: float

    @property
    def z(self) -> Tensor:
        diff = (self.many_calls - self.one_call).abs()
        exact = diff <= 1e-9 * (self.many_calls + self.one_call)
        z = torch.where(self.standard_error > 0, diff / self.standard_error.clamp_min(1e-300),
                        torch.where(exact, 0.0, math.inf))
        return torch.where(self.rounding, 0.0, z)

    @property
    def max_z(self) -> float:
        return float(self.z.max())

    @property
    def passed(self) -> bool:
        return self.max_z <= self.threshold

    @property
    def detectable_relative(self) -> float:
        """The relative difference of the variances detected with probability ``POWER``."""
        scale = torch.maximum(self.one_call, self.many_calls)
        relative = torch.where(scale > 0, (self.threshold + self.z_power) * self.standard_error
                               / scale.clamp_min(1e-300), 0.0)
        return float(relative.max())


def _variance_and_se(values: Tensor) -> tuple[Tensor, Tensor]:
    """Per column: the sample variance and its standard error (from the squared deviations)."""
    squared = (values - values.mean(dim=0)) ** 2
    count = values.shape[0]
    return squared.sum(dim=0) / (count - 1), squared.std(dim=0) / math.sqrt(count)


def chunking_test(draw_call: Callable[[int, torch.Generator], Tensor], replicates: int,
                  calls: int, generators: tuple[torch.Generator, torch.Generator], *,
                  alpha: float = ALPHA, power: float = POWER) -> ChunkingTest:
    """Compare ``replicates`` estimates from one call with as many from ``calls`` calls.

    ``draw_call(size, generator)`` returns the projections ``(size, k)`` of one ``estimate()``
    call. The variance of each arm is taken around its own grand mean, so a random effect
    shared by the replicates of a call (which one call hides) inflates the many-call variance,
    and a random point set shared by a call's replicates makes the one-call variance that of a
    single point set. Each arm's standard error comes from the spread of its squared
    deviations; the z-statistic of their difference is Bonferroni-corrected over directions.
    """
    one = draw_call(replicates, generators[0]).to(torch.float64)
    size = replicates // calls
    many = torch.cat([draw_call(size, generators[1]).to(torch.float64) for _ in range(calls)])
    one_var, one_se = _variance_and_se(one)
    many_var, many_se = _variance_and_se(many)
    rounding = (_degenerate(one_var.sqrt(), one.mean(dim=0))
                & _degenerate(many_var.sqrt(), many.mean(dim=0)))
    return ChunkingTest(
        replicates=replicates, calls=calls, one_call=one_var, many_calls=many_var,
        standard_error=torch.sqrt(one_se**2 + many_se**2), rounding=rounding,
        threshold=z_threshold(alpha, one.shape[1]), z_power=normal_quantile(power),
    )
