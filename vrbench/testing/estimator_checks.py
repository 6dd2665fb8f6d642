"""The estimator conformance suite, :func:`check_estimator`."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from vrbench import devices
from vrbench import problems as problem_registry
from vrbench.bench.reference import Reference, ReferenceSettings, compute_reference
from vrbench.bench.runner import checked_estimates, estimate_in_chunks
from vrbench.devices import on_device, resolve_device
from vrbench.estimators.base import Estimator
from vrbench.problems.base import DTYPE, Capability, Problem
from vrbench.testing.common import (
    BIAS_TOLERANCE,
    OTHER_THETAS,
    check_instance,
    check_thetas,
    describe,
    detectable_text,
    direction_names,
    estimator_instance,
    metadata_failure,
    subject,
    theta_note,
)
from vrbench.testing.meta import meta_estimates_failure
from vrbench.testing.problem_checks import OTHER_THETA_REFERENCE, determinism_failure
from vrbench.testing.report import CheckReport, PowerRecord, percent, tolerance_text
from vrbench.testing.statistics import (
    CallSizeTest,
    CorrelationTest,
    MeanTest,
    call_size_test,
    correlation_test,
    mean_test,
)

SAMPLE_SIZES = (1, 2, 5, 16)
"""Sample sizes checked by default (those below the estimator's ``min_samples`` replaced by it)."""

TIME_BUDGET = 600.0
"""Seconds per problem, all sample sizes and θ together, after which the checks stop: a cap
for runaway checks, not a size (the sizes are counts, see :data:`BIAS_WORK`), ten times what
the slowest built-in problem takes on an idle 2-core machine."""

BIAS_WORK = 1.5e8
"""Numbers (estimates × n × (2 dim + sample width), the harness's memory measure) a bias test
at the check θ may draw with ``effort=1``: 0.5 to 10 s for a score-function estimator on an
idle 2-core machine, depending on the problem."""

MAX_ESTIMATES = 50_000_000
"""Cap on the estimates of one bias test."""

OTHER_THETA_TOLERANCE = 5.0
"""The bias tests at the other θ are sized for this multiple of the tolerance..."""
OTHER_THETA_SHARE = 0.125
"""... with this share of the bias test's work for each other θ."""

SMALL_BATCH = 64
CHUNKING_CALLS = 32
CHUNKING_REPLICATES = 16_384
"""Estimates of the one large call of the call-size test, fewer where they are large (below)."""
CHUNKING_WORK = 2**23
"""Numbers (samples times their width) the large call may hold."""
CHUNKING_MINIMUM = 256
SMALL_CALLS = (1, 2, 4)
"""Replicates per call of the small calls of the call-size and correlation tests..."""
SMALL_CALL_ESTIMATES = 512
"""... and the estimates from each size (512 calls of 1, 256 of 2, 128 of 4), at the
smallest n checked."""

CHECK_REFERENCE = ReferenceSettings(precision=0.001, max_estimates=200_000)
"""The reference gradient of a problem without an exact one, at the check θ: as precise as
200,000 estimates allow, up to 0.1% of ‖∇J‖ (a bias test cannot see a bias much below the
reference's own standard error). At the other θ, see
:data:`vrbench.testing.problem_checks.OTHER_THETA_REFERENCE`."""


@dataclass(frozen=True)
class Settings:
    """How large the statistical tests of :func:`check_estimator` are (see its arguments)."""

    tolerance: float = BIAS_TOLERANCE
    time_budget: float | None = TIME_BUDGET
    effort: float = 1.0
    max_estimates: int = MAX_ESTIMATES
    chunking_replicates: int = CHUNKING_REPLICATES
    small_call_estimates: int = SMALL_CALL_ESTIMATES
    other_thetas: int = OTHER_THETAS
    accept_partial: bool = False
    seed: int = 0

    def bias_count(self, problem: Problem, n: int, share: float = 1.0) -> int:
        """Cap on the estimates of a bias test: the work of :data:`BIAS_WORK` times ``effort``
        and ``share``, at most ``max_estimates``, at least 1,024."""
        work = n * (2 * problem.dim + problem.sample_width())
        return int(max(1024, share * min(self.max_estimates, self.effort * BIAS_WORK / work)))


def sample_sizes(estimator: Estimator, n: Iterable[int] | None = None) -> list[int]:
    """The ``n_samples`` to check: ``n`` if given, else ``min_samples``, 2, 5 and 16 (those
    below ``min_samples`` left out)."""
    if n is not None:
        return sorted(set(n))
    return sorted({s for s in (estimator.min_samples, *SAMPLE_SIZES) if s >= estimator.min_samples})


def check_estimator(
    estimator: Estimator | type[Estimator] | str,
    problems: Iterable[Problem | type[Problem] | str] | None = None,
    *,
    n: Iterable[int] | None = None,
    bias_tolerance: float = BIAS_TOLERANCE,
    time_budget: float | None = TIME_BUDGET,
    effort: float = 1.0,
    max_estimates: int = MAX_ESTIMATES,
    chunking_replicates: int = CHUNKING_REPLICATES,
    small_call_estimates: int = SMALL_CALL_ESTIMATES,
    other_thetas: int = OTHER_THETAS,
    accept_partial: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> CheckReport:
    """Run the estimator conformance suite on every compatible problem (default: all registered).

    Problems given by name or class are built with their ``check_params`` (see
    :func:`~vrbench.testing.check_instance`); instances as they are. Each is checked at its
    ``check_theta()`` and at ``other_thetas`` perturbations of it
    (:func:`~vrbench.testing.common.check_thetas`), the estimator fitted at each before any
    estimate. First the problem must be usable: f and ``sample`` deterministic under a seed
    (else the problem is blamed and skipped). Then at every sample size of
    :func:`sample_sizes` (or ``n``) the estimator allows:

    * output shape ``(R, dim)``, dtype float64, device, finite values (a NaN or an infinity at
      any ``n`` fails, naming it), the same estimates under the same seed, θ untouched, and the
      estimator runs on torch's meta device (a stand-in for a GPU); shape and finite values at
      the other θ too;
    * the variance of an estimate does not depend on how many replicates one ``estimate()``
      call computes: one call of ``chunking_replicates`` (fewer for problems with wide
      samples) against 32 calls of a 32nd of that and ``small_call_estimates`` estimates from
      calls of 1, 2 and 4 (:func:`~vrbench.testing.statistics.call_size_test`);
    * replicates are independent within a call
      (:func:`~vrbench.testing.statistics.correlation_test`);
    * if it claims to be unbiased, a bias test along ∇J and each coordinate (or 16 random
      directions beyond 16 dimensions) sized to detect a bias of ``bias_tolerance`` · ‖∇J‖
      with probability 95% (:func:`~vrbench.testing.statistics.mean_test`), with at most
      :data:`BIAS_WORK` · ``effort`` numbers' worth of estimates (and ``max_estimates``); then
      one test at the other θ together, their calls interleaved, sized for
      :data:`OTHER_THETA_TOLERANCE` times the tolerance with an eighth of that work each.

    On a problem without an exact gradient, ∇J at every θ is a reference
    (:func:`~vrbench.bench.reference.compute_reference`, never from the estimator checked:
    :data:`CHECK_REFERENCE` at the check θ, a reference as precise against the wider
    tolerance at the others), and its standard errors add in quadrature to every bias test's,
    which states the power that leaves.

    Every count is computed from the seed's draws and these settings, so the same arguments
    give the same verdict on any machine. ``time_budget`` seconds per problem (``None``: no
    limit) only caps them: a test it stops fails, saying so, unless ``accept_partial``, when
    it is judged on what was drawn and reports that weaker power.

    Every passing bias test reports the smallest bias it would have detected. If the tolerance
    was reached on no problem at all, the check fails: it could not have seen a bias that size.
    """
    device = resolve_device(device)
    settings = Settings(bias_tolerance, time_budget, effort, max_estimates, chunking_replicates,
                        small_call_estimates, other_thetas, accept_partial, seed)
    estimator = estimator_instance(estimator)
    report = CheckReport(subject(estimator, "estimator"))
    report.record("metadata", metadata_failure(estimator, "estimator"))
    bad_caps = set(estimator.requires) - set(Capability)
    report.record("requirements", f"unknown capabilities {sorted(bad_caps)}" if bad_caps else None)
    report.record("unbiased claim", None if isinstance(estimator.unbiased, bool)
                  else f"unbiased must be a bool, got {estimator.unbiased!r}")
    counts_ok = all(isinstance(v, int) and v >= 1
                    for v in (estimator.min_samples, estimator.evals_per_sample))
    report.record("sample counts", None if counts_ok else
                  f"min_samples={estimator.min_samples!r} and evals_per_sample="
                  f"{estimator.evals_per_sample!r} must be integers >= 1")
    sizes = sample_sizes(estimator, n)
    pool = [check_instance(p) for p in
            (problems if problems is not None else problem_registry.registry.names())]
    compatible: list[tuple[Problem, list[int]]] = []
    for problem in pool:
        reasons = {size: estimator.incompatibility(problem, size) for size in sizes}
        allowed = [size for size, reason in reasons.items() if reason is None]
        if allowed:
            compatible.append((problem, allowed))
            report.notes += [f"not run on {describe(problem)} at n={size}: {reason}"
                             for size, reason in reasons.items() if reason is not None]
        elif problems is not None:  # a problem asked for by name: say why it did not run
            report.notes.append(f"not run on {describe(problem)}: {reasons[sizes[0]]}")
    report.record("applies to some problem", None if compatible else
                  f"no compatible problem among those checked at n={','.join(map(str, sizes))}")
    for problem, allowed in compatible:
        _check_on(report, estimator, problem, allowed, settings, device)
    bias_records = [r for r in report.power if r.test == "unbiased" and r.theta is None]
    if bias_records and not any(r.reached for r in bias_records):
        best = min(bias_records, key=lambda r: r.detectable)
        report.record(
            "power",
            f"a bias of {tolerance_text(bias_tolerance)} of ‖∇J‖ was detectable on none of the "
            f"{len({r.where for r in bias_records})} problem(s) checked (smallest detectable: "
            f"{percent(best.detectable)} on {best.where} at n={best.n}), so the bias tests "
            "could not have caught one that size; raise --effort or --bias-tolerance, or "
            "check on problems where ‖∇J‖ is large against the estimates' spread")
    return report


class _Pair:
    """An estimator, a problem at one θ, and what the checks there share."""

    def __init__(self, estimator: Estimator, problem: Problem, label: str | None, theta: Tensor,
                 state: Any, reference: Reference, device: torch.device) -> None:
        self.estimator, self.problem, self.theta, self.state = estimator, problem, theta, state
        self.label, self.true_grad, self.device = label, reference.grad, device
        self.directions = reference.directions
        self.expected_se = None if reference.exact else reference.direction_se

    def generator(self, seed: int, n: int, purpose: int) -> torch.Generator:
        return devices.generator(self.device, seed + 7919 * n + 104_729 * purpose)

    def estimate(self, n: int, replicates: int, generator: torch.Generator) -> Tensor:
        with on_device(self.device):
            return self.estimator.estimate(self.problem, self.theta, n, replicates, generator,
                                           self.state)

    def projected(self, n: int, replicates: int, generator: torch.Generator) -> Tensor:
        """One call's estimates on the CPU, checked, projected on the bias directions."""
        estimates = checked_estimates(self.estimate(n, replicates, generator), self.estimator,
                                      self.problem, replicates)
        return estimates.detach().to(DTYPE) @ self.directions.T

    def stream(self, n: int, count: int, generator: torch.Generator) -> Iterator[Tensor]:
        """``count`` projected estimates in the harness's memory-bounded chunks."""
        for estimates, _ in estimate_in_chunks(self.problem, self.estimator, self.theta, n, count,
                                               generator, self.state, device=self.device):
            yield estimates @ self.directions.T


class _OutOfTime(Exception):
    """The problem's time budget ran out before a test began."""


def _check_on(report: CheckReport, estimator: Estimator, problem: Problem, sizes: Sequence[int],
              settings: Settings, device: torch.device) -> None:
    where = describe(problem)
    started = time.perf_counter()
    deadline = None if settings.time_budget is None else started + settings.time_budget
    try:
        with on_device(device):
            fault = determinism_failure(problem, problem.check_theta(), device, settings.seed)
    except Exception as exc:
        fault = f"sampling or f raised {type(exc).__name__}: {exc}"
    if fault is not None:
        report.record("problem usable", f"{fault}. This is the problem's fault, not the "
                      f"estimator's: its checks on {where} were skipped (`vrbench check` on the "
                      "problem says more)", where=where)
        return
    try:
        with on_device(device):
            points = check_thetas(problem, settings.other_thetas, settings.seed)
            # Fit at every θ before any estimate: state kept outside what fit returns (a
            # global, a cache) is then stale at all but the last.
            fitted = [(label, theta, estimator.fit(problem, theta, devices.generator(
                device, settings.seed + 1 + index))) for index, (label, theta) in
                enumerate(points)]
        # Without an exact gradient, a reference at every θ, never from the estimator checked;
        # at the other θ as precise against their wider tolerance as the check θ's.
        references = [compute_reference(
            problem, theta, CHECK_REFERENCE if label is None else OTHER_THETA_REFERENCE,
            estimator.name, settings.seed + 1000 * index, device)
            for index, (label, theta, _) in enumerate(fitted)]
        pairs = [_Pair(estimator, problem, label, theta, state, reference, device)
                 for (label, theta, state), reference in zip(fitted, references, strict=True)]
    except Exception as exc:
        report.record("fits", f"raised {type(exc).__name__}: {exc}", where=where)
        return
    note = theta_note(problem, points)
    if note is not None:
        report.notes.append(f"other θ {note}")
    if not references[0].exact:
        report.notes.append(
            f"on {where}, estimates are held against reference gradients: "
            + "; ".join(f"at {label or 'the check θ'}, {reference.describe()}"
                        for (label, _, _), reference in zip(fitted, references, strict=True)))
    report.record("runs off the CPU", meta_estimates_failure(estimator, problem, sizes[0]),
                  where=where)
    main, others = pairs[0], pairs[1:]
    scope = _Scope(report, settings, where, deadline)
    try:
        for n in sizes:
            if not _structure(report, main, n, settings.seed, where):
                continue
            if not all(_runs(report, pair, n, settings.seed, where) for pair in others):
                continue
            _out_of_time(deadline)
            independent = _replicates(report, main, n, settings, where, small=n == sizes[0])
            if not estimator.unbiased:
                continue
            if not independent:
                report.notes.append(
                    f"bias not tested on {where} at n={n}: its replicates are dependent "
                    "(above), so its standard error would be understated")
                continue
            _out_of_time(deadline)
            _bias(scope, [main], n, settings.tolerance, settings.bias_count(problem, n))
            if others:
                _out_of_time(deadline)
                _bias(scope, others, n, OTHER_THETA_TOLERANCE * settings.tolerance,
                      settings.bias_count(problem, n, OTHER_THETA_SHARE))
    except _OutOfTime:
        message = (f"the time budget of {settings.time_budget:g} s for {where} ran out before "
                   "its tests were complete; raise --time-budget (the tests' sizes do not "
                   "depend on it)")
        if settings.accept_partial:
            report.notes.append(message + "; accepted (--accept-partial)")
        else:
            report.record("time budget", message, where=where)


def _out_of_time(deadline: float | None) -> None:
    if deadline is not None and time.perf_counter() > deadline:
        raise _OutOfTime


def _structure(report: CheckReport, pair: _Pair, n: int, seed: int, where: str) -> bool:
    """Shape, dtype, device, finite values, determinism and θ untouched; whether to go on."""
    theta_before = pair.theta.clone()
    try:
        first = pair.estimate(n, SMALL_BATCH, pair.generator(seed, n, 0))
        again = pair.estimate(n, SMALL_BATCH, pair.generator(seed, n, 0))
    except Exception as exc:
        report.record("runs", f"raised {type(exc).__name__}: {exc}", where=where, n=n)
        return False
    expected_shape = (SMALL_BATCH, pair.problem.dim)
    if not isinstance(first, Tensor) or first.shape != expected_shape:
        shape = tuple(first.shape) if isinstance(first, Tensor) else type(first).__name__
        report.record("shape", f"got {shape}, expected {expected_shape}", where=where, n=n)
        return False
    report.record("shape", None, where=where, n=n)
    report.record("device", None if first.device.type == pair.device.type
                  else f"estimates on {first.device}, expected {pair.device}", where=where, n=n)
    report.record("dtype", None if first.dtype == DTYPE else f"got {first.dtype}",
                  where=where, n=n)
    first, again = first.detach().cpu(), again.detach().cpu()
    bad = int((~torch.isfinite(first)).any(dim=1).sum())
    report.record("finite", None if bad == 0 else
                  f"{bad} of {SMALL_BATCH} estimates contain NaN or infinite values",
                  where=where, n=n)
    same = first.shape == again.shape and bool(torch.isclose(first, again, rtol=0, atol=0,
                                                             equal_nan=True).all())
    report.record("deterministic under a seed", None if same
                  else "the same seed gave different estimates: draw only from the generator "
                       "handed in, and keep no state between calls", where=where, n=n)
    report.record("θ not mutated", None if torch.equal(pair.theta, theta_before)
                  else "θ was modified in place", where=where, n=n)
    return bad == 0 and first.dtype == DTYPE


def _runs(report: CheckReport, pair: _Pair, n: int, seed: int, where: str) -> bool:
    """Shape and finite values at another θ; whether to go on."""
    try:
        pair.projected(n, SMALL_BATCH, pair.generator(seed, n, 5))
    except Exception as exc:
        report.record("runs", f"{type(exc).__name__}: {exc}", where=where, n=n,
                      theta=pair.label)
        return False
    report.record("runs", None, where=where, n=n, theta=pair.label)
    return True


def _chunking_replicates(problem: Problem, n: int, most: int) -> int:
    work = n * (2 * problem.dim + problem.sample_width())
    replicates = max(CHUNKING_MINIMUM, min(most, CHUNKING_WORK // work))
    return replicates - replicates % CHUNKING_CALLS


def _replicates(report: CheckReport, pair: _Pair, n: int, settings: Settings, where: str,
                small: bool) -> bool:
    """The call-size and correlation tests, with the small calls if ``small``; whether the
    replicates look independent."""
    seed = settings.seed
    replicates = _chunking_replicates(pair.problem, n, settings.chunking_replicates)
    size = replicates // CHUNKING_CALLS
    try:
        one = pair.projected(n, replicates, pair.generator(seed, n, 1))
        generator = pair.generator(seed, n, 2)
        many = [pair.projected(n, size, generator) for _ in range(CHUNKING_CALLS)]
        small_calls: dict[int, list[Tensor]] = {}
        for index, calls in enumerate(SMALL_CALLS if small else ()):
            generator = pair.generator(seed, n, 6 + index)
            count = max(1, settings.small_call_estimates // calls)
            small_calls[calls] = [pair.projected(n, calls, generator) for _ in range(count)]
    except (ValueError, FloatingPointError) as exc:
        report.record("batched estimates", str(exc), where=where, n=n)
        return False
    arms = {f"{CHUNKING_CALLS} calls of {size:,}": torch.cat(many)}
    arms.update({f"calls of {calls}": torch.cat(values)
                 for calls, values in small_calls.items()})
    sizes = call_size_test(one, arms)
    correlation = correlation_test({
        f"one call of {replicates:,}": [one], f"{CHUNKING_CALLS} calls of {size:,}": many,
        **{f"calls of {calls}": values for calls, values in small_calls.items()}})
    names = direction_names(pair.true_grad, one.shape[1])
    report.power.append(PowerRecord("variance independent of the replicates per call", where,
                                    n, max(sizes.detectable_ratio(a) for a in arms), None))
    report.power.append(PowerRecord("replicates independent", where, n,
                                    correlation.detectable_pairs, None))
    report.record("variance independent of the replicates per call",
                  None if sizes.passed else _call_size_failure(sizes, names),
                  where=where, n=n)
    report.record("replicates independent",
                  None if correlation.passed else _correlation_failure(correlation, names),
                  where=where, n=n)
    return sizes.passed and correlation.passed


def _call_size_failure(test: CallSizeTest, names: list[str]) -> str:
    arm, direction = test.worst
    auc = float(test.auc[arm][direction])
    text = (f"along {names[direction]} an estimate from {arm} lies further from the median "
            f"than one from a call of {test.reference_size:,} with probability {auc:.3f}, not "
            f"½ ({float(test.z[arm][direction]):+.1f} standard errors; threshold "
            f"±{test.threshold:.1f}; mean absolute deviations "
            f"{float(test.spreads[arm][direction]):.4g} and "
            f"{float(test.spreads['reference'][direction]):.4g}, variances "
            f"{float(test.variances[arm][direction]):.4g} and "
            f"{float(test.variances['reference'][direction]):.4g}): ")
    if arm.startswith("calls of"):
        return text + ("an estimate depends on how many replicates its call computes (a "
                       "baseline or a statistic taken across the replicate axis?), so the "
                       "harness, which computes thousands per call, would measure a variance "
                       "no single estimate has")
    return text + ("replicates of one call share randomness, so the measured variance depends "
                   "on the harness's chunking (--max-memory)")


def _correlation_failure(test: CorrelationTest, names: list[str]) -> str:
    row, direction = test.worst
    arm, h = test.rows[row]
    what = ("consecutive replicates" if h == 1
            else f"the means of neighbouring blocks of {h} replicates")
    return (f"along {names[direction]} {what} are correlated in the {arm} "
            f"({float(test.correlation[row, direction]):+.3g}; "
            f"{float(test.z[row, direction]):+.1f} standard errors over "
            f"{test.blocks[row]:,} pairs, threshold ±{float(test.thresholds[row]):.1f}): the "
            "replicates are not independent, so every standard error computed from them "
            "(the bias tests', the harness's p-values and intervals) is understated. Each "
            "replicate must come from draws of its own")


@dataclass(frozen=True)
class _Scope:
    """The checks on one problem: their report, their sizes, where and until when they run."""

    report: CheckReport
    settings: Settings
    where: str
    deadline: float | None


def _bias(scope: _Scope, pairs: Sequence[_Pair], n: int, tolerance: float,
          max_count: int) -> None:
    """One bias test at the θ of ``pairs`` together, their calls interleaved."""
    report, settings, where = scope.report, scope.settings, scope.where
    expected = torch.cat([p.directions @ p.true_grad for p in pairs])
    units = torch.cat([torch.full((p.directions.shape[0],), float(p.true_grad.norm()),
                                  dtype=DTYPE) for p in pairs])
    # A reference's standard errors count in quadrature (an exact gradient's are 0).
    expected_se = None if all(p.expected_se is None for p in pairs) else torch.cat([
        torch.zeros(p.directions.shape[0], dtype=DTYPE) if p.expected_se is None
        else p.expected_se.to(DTYPE) for p in pairs])
    purpose = 3 if pairs[0].label is None else 8

    def draw(count: int, generator: torch.Generator) -> Iterator[Tensor]:
        streams = [p.stream(n, count, generator) for p in pairs]
        for chunks in zip(*streams, strict=True):
            yield torch.cat(chunks, dim=1)

    try:
        test = mean_test(draw, expected, units, tolerance,
                         (pairs[0].generator(settings.seed, n, purpose),
                          pairs[0].generator(settings.seed, n, purpose + 1)),
                         max_count=max_count, deadline=scope.deadline,
                         expected_se=expected_se)
    except (ValueError, FloatingPointError) as exc:
        report.record("unbiased", str(exc), where=where, n=n, theta=pairs[0].label)
        return
    start = 0
    for pair in pairs:
        stop = start + pair.directions.shape[0]
        part = _part(test, slice(start, stop))
        start = stop
        report.power.append(PowerRecord("unbiased", where, n, part.detectable_relative,
                                        tolerance, pair.label))
        unit = "‖∇J‖" if pair.expected_se is None else "‖∇J‖ (vs reference ± its se)"
        detail = bias_detail(part, pair.true_grad, unit)
        failure = None
        if part.stopped and not settings.accept_partial:
            failure = (f"stopped by the time budget after {part.count:,} of {part.planned:,} "
                       f"estimates ({detail}); raise --time-budget, or pass --accept-partial to "
                       "accept this weaker power")
        elif not part.passed:
            # A mean far from ∇J is bias only if the replicates are independent.
            failure = (_dependence_failure(test, part) if test.dependent
                       else bias_failure(part, pair.true_grad, pair.label))
        report.record("unbiased", failure, "" if failure else detail, where=where, n=n,
                      theta=pair.label)


def _part(test: MeanTest, directions: slice) -> MeanTest:
    """The test restricted to some of its directions (its threshold unchanged)."""
    return replace(test, mean=test.mean[directions], sd=test.sd[directions],
                   expected=test.expected[directions], units=test.units[directions],
                   expected_se=None if test.expected_se is None
                   else test.expected_se[directions])


def bias_detail(test: MeanTest, true_grad: Tensor, unit: str = "‖∇J‖") -> str:
    """What a passing bias test could have detected."""
    return detectable_text(test, "bias", unit, true_grad, "estimates")


def bias_failure(test: MeanTest, true_grad: Tensor, theta: str | None = None) -> str:
    worst = test.worst
    names = direction_names(true_grad, test.z.numel())
    grad = "∇J" if theta is None else f"∇J({theta})"
    if math.isinf(test.max_z):
        return (f"along {names[worst]} all {test.count:,} estimates are equal, and differ from "
                f"{grad}: a bias of {percent(test.deviation_relative(worst))} of ‖∇J‖")
    text = (f"the mean estimate is {test.max_z:.1f} standard errors from {grad} along "
            f"{names[worst]} (threshold {test.threshold:.1f}; {test.count:,} estimates): a bias "
            f"of {percent(test.deviation_relative(worst))} of ‖∇J‖ there")
    if worst != 0 and names[0] == "∇J":
        signed = float(test.mean[0] - test.expected[0]) / float(test.units[0])
        text += (f"; along ∇J the mean is off by {100 * signed:+.3g}% of ‖∇J‖ "
                 f"({float(test.z[0]):.1f} standard errors)")
    if theta is not None:
        text += ("; unbiased at the check θ but not here: does the estimator keep something "
                 "across calls (a cache, a global) or use state fitted at another θ?")
    return text


def _dependence_failure(test: MeanTest, part: MeanTest) -> str:
    assert test.dispersion is not None
    ratio = float(test.dispersion.ratio.max())
    return (f"the means of the {test.dispersion.calls} calls behind these {test.count:,} "
            f"estimates vary {ratio:.3g} times as much as independent replicates' would "
            f"(χ² threshold {test.dispersion.threshold / max(test.dispersion.calls - 1, 1):.3g}"
            f" times): the replicates of one call are dependent, so the standard error is "
            f"understated and the mean's distance from ∇J ({part.max_z:.1f} such standard "
            "errors) says nothing about bias")
