"""The estimator conformance suite, :func:`check_estimator`."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from vrbench import devices
from vrbench import problems as problem_registry
from vrbench.bench.reference import Reference, ReferenceSettings, compute_reference
from vrbench.bench.runner import estimate_in_chunks
from vrbench.devices import on_device, resolve_device
from vrbench.estimators.base import Estimator
from vrbench.problems.base import DTYPE, Capability, Problem
from vrbench.testing.common import (
    BIAS_TOLERANCE,
    check_instance,
    describe,
    detectable_text,
    direction_names,
    estimator_instance,
    metadata_failure,
    subject,
)
from vrbench.testing.meta import meta_estimates_failure
from vrbench.testing.report import CheckReport, PowerRecord, percent, tolerance_text
from vrbench.testing.statistics import MeanTest, chunking_test, mean_test

SAMPLE_SIZES = (1, 2, 5, 16)
"""Sample sizes checked by default (those below the estimator's ``min_samples`` replaced by it)."""

TIME_BUDGET = 8.0
"""Seconds per problem, all sample sizes together, that the checks may spend by default."""

MAX_ESTIMATES = 50_000_000
"""Cap on the estimates of one bias test."""

SMALL_BATCH = 64
CHUNKING_CALLS = 32
CHUNKING_REPLICATES = 16_384
"""Estimates in each arm of the chunking test, fewer where they are large (see below)."""
CHUNKING_WORK = 2**23
"""Numbers (samples times their width) the chunking test may hold per arm."""
CHUNKING_MINIMUM = 256
CHUNKING_SHARE = 0.2
"""Share of a time budget the chunking test is sized for."""

CHECK_REFERENCE = ReferenceSettings(precision=0.001, max_estimates=200_000)
"""The reference gradient of a problem without an exact one, at the check θ: as precise as
200,000 estimates allow, up to 0.1% of ‖∇J‖ (a bias test cannot see a bias much below the
reference's own standard error)."""


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
    max_estimates: int = MAX_ESTIMATES,
    chunking_replicates: int = CHUNKING_REPLICATES,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> CheckReport:
    """Run the estimator conformance suite on every compatible problem (default: all registered).

    Problems given by name or class are built with their ``check_params`` and checked at their
    ``check_theta()`` (see :func:`~vrbench.testing.check_instance`); instances as they are.
    On each, at every sample size of :func:`sample_sizes` (or ``n``) the estimator allows:

    * output shape ``(R, dim)``, dtype float64, device, finite values (a NaN or an infinity at
      any ``n`` fails, naming it), the same estimates under the same seed, θ untouched, and the
      estimator runs on torch's meta device (a stand-in for a GPU);
    * the variance of its replicates does not depend on how they are split into ``estimate()``
      calls (:func:`~vrbench.testing.statistics.chunking_test`);
    * if it claims to be unbiased, a bias test along ∇J and each coordinate (or 16 random
      directions beyond 16 dimensions) sized to detect a bias of ``bias_tolerance`` · ‖∇J‖
      with probability 95% (:func:`~vrbench.testing.statistics.mean_test`), within
      ``time_budget`` seconds per problem (``None``: no limit, and the outcome depends on
      ``seed`` alone) and ``max_estimates``.

    The chunking test compares ``chunking_replicates`` estimates from one call with as many
    from 32 calls (fewer for problems with wide samples).

    Every passing bias test reports the smallest bias it would have detected. If the tolerance
    was reached on no problem at all, the check fails: it could not have seen a bias that size.
    """
    device = resolve_device(device)
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
        _check_on(report, estimator, problem, allowed, seed, bias_tolerance, time_budget,
                  max_estimates, chunking_replicates, device)
    bias_records = [r for r in report.power if r.test == "unbiased"]
    if bias_records and not any(r.reached for r in bias_records):
        best = min(bias_records, key=lambda r: r.detectable)
        report.record(
            "power",
            f"a bias of {tolerance_text(bias_tolerance)} of ‖∇J‖ was detectable on none of the "
            f"{len({r.where for r in bias_records})} problem(s) checked (smallest detectable: "
            f"{percent(best.detectable)} on {best.where} at n={best.n}), so the bias tests "
            "could not have caught one that size; raise --time-budget or --bias-tolerance, or "
            "check on problems where ‖∇J‖ is large against the estimates' spread")
    return report


def _check_on(report: CheckReport, estimator: Estimator, problem: Problem, sizes: Sequence[int],
              seed: int, tolerance: float, time_budget: float | None, max_estimates: int,
              chunking_replicates: int, device: torch.device) -> None:
    where = describe(problem)
    try:
        with on_device(device):
            theta = problem.check_theta()
            state = estimator.fit(problem, theta, devices.generator(device, seed + 1))
        reference = compute_reference(problem, theta, CHECK_REFERENCE, estimator.name, seed,
                                      device)
    except Exception as exc:
        report.record("fits", f"raised {type(exc).__name__}: {exc}", where=where)
        return
    if not reference.exact:
        report.notes.append(f"on {where}, estimates are held against a reference gradient: "
                            f"{reference.describe()}")
    report.record("runs off the CPU", meta_estimates_failure(estimator, problem, sizes[0]),
                  where=where)
    pair = _Pair(estimator, problem, theta, state, reference, device)
    per_size = None if time_budget is None else time_budget / len(sizes)
    for n in sizes:
        started = time.perf_counter()
        if not _structure(report, pair, n, seed, where):
            continue
        most = chunking_replicates
        if per_size is not None:
            # The two small calls above say roughly what an estimate costs (pessimistically,
            # with a call's overhead); the chunking test gets a share of the budget.
            per_estimate = (time.perf_counter() - started) / (2 * SMALL_BATCH)
            most = min(most, int(CHUNKING_SHARE * per_size / (2 * per_estimate)))
        if not _chunking(report, pair, n, seed, where, most):
            continue
        if estimator.unbiased:
            left = None if per_size is None else max(0.0, per_size - (time.perf_counter()
                                                                      - started))
            _bias(report, pair, n, seed, where, tolerance, left, max_estimates)


class _Pair:
    """An estimator, a problem, and what the checks on them share."""

    def __init__(self, estimator: Estimator, problem: Problem, theta: Tensor, state: Any,
                 reference: Reference, device: torch.device) -> None:
        self.estimator, self.problem, self.theta, self.state = estimator, problem, theta, state
        self.true_grad, self.device = reference.grad, device
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
        estimates = self.estimate(n, replicates, generator)
        if estimates.shape != (replicates, self.problem.dim):
            raise ValueError(f"returned shape {tuple(estimates.shape)}, expected "
                             f"{(replicates, self.problem.dim)}")
        estimates = estimates.detach().cpu().to(DTYPE)
        if not bool(torch.isfinite(estimates).all()):
            raise FloatingPointError("returned non-finite estimates")
        return estimates @ self.directions.T

    def stream(self, n: int, count: int, generator: torch.Generator) -> Iterator[Tensor]:
        """``count`` projected estimates in the harness's memory-bounded chunks."""
        for estimates, _ in estimate_in_chunks(self.problem, self.estimator, self.theta, n, count,
                                               generator, self.state, device=self.device):
            yield estimates @ self.directions.T


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
                  else "the same seed gave different estimates", where=where, n=n)
    report.record("θ not mutated", None if torch.equal(pair.theta, theta_before)
                  else "θ was modified in place", where=where, n=n)
    return bad == 0 and first.dtype == DTYPE


def _chunking_replicates(problem: Problem, n: int, most: int) -> int:
    work = n * (2 * problem.dim + problem.sample_width())
    replicates = max(CHUNKING_MINIMUM, min(most, CHUNKING_WORK // work))
    return replicates - replicates % CHUNKING_CALLS


def _chunking(report: CheckReport, pair: _Pair, n: int, seed: int, where: str,
              most: int) -> bool:
    replicates = _chunking_replicates(pair.problem, n, most)
    try:
        generators = (pair.generator(seed, n, 1), pair.generator(seed, n, 2))
        test = chunking_test(lambda size, g: pair.projected(n, size, g), replicates,
                             CHUNKING_CALLS, generators)
    except (ValueError, FloatingPointError) as exc:
        report.record("batched estimates", str(exc), where=where, n=n)
        return False
    report.power.append(PowerRecord("variance independent of chunking", where, n,
                                    test.detectable_relative, None))
    if test.passed:
        report.record("variance independent of chunking", None, where=where, n=n)
        return True
    worst = int(test.z.argmax())
    name = direction_names(pair.true_grad, test.z.numel())[worst]
    report.record(
        "variance independent of chunking",
        f"along {name} the variance of {replicates} estimates from one call is "
        f"{float(test.one_call[worst]):.4g} and from {test.calls} calls "
        f"{float(test.many_calls[worst]):.4g}, {test.max_z:.1f} standard errors apart "
        f"(threshold {test.threshold:.1f}): replicates of one call share randomness, so the "
        "measured variance depends on the harness's chunking",
        where=where, n=n)
    return True


def _bias(report: CheckReport, pair: _Pair, n: int, seed: int, where: str, tolerance: float,
          time_budget: float | None, max_estimates: int) -> None:
    expected = pair.directions @ pair.true_grad
    units = torch.full_like(expected, float(pair.true_grad.norm()))
    try:
        test = mean_test(lambda count, g: pair.stream(n, count, g), expected, units, tolerance,
                         (pair.generator(seed, n, 3), pair.generator(seed, n, 4)),
                         time_budget=time_budget, max_count=max_estimates,
                         expected_se=pair.expected_se)
    except (ValueError, FloatingPointError) as exc:
        report.record("unbiased", str(exc), where=where, n=n)
        return
    report.power.append(PowerRecord("unbiased", where, n, test.detectable_relative, tolerance))
    if test.passed:
        unit = "‖∇J‖" if pair.expected_se is None else "‖∇J‖ (vs reference ± its se)"
        report.record("unbiased", None, bias_detail(test, pair.true_grad, unit), where=where,
                      n=n)
        return
    report.record("unbiased", bias_failure(test, pair.true_grad), where=where, n=n)


def bias_detail(test: MeanTest, true_grad: Tensor, unit: str = "‖∇J‖") -> str:
    """What a passing bias test could have detected."""
    return detectable_text(test, "bias", unit, true_grad, "estimates")


def bias_failure(test: MeanTest, true_grad: Tensor) -> str:
    worst = test.worst
    names = direction_names(true_grad, test.z.numel())
    if math.isinf(test.max_z):
        return (f"along {names[worst]} all {test.count:,} estimates are equal, and differ from "
                f"∇J: a bias of {percent(test.deviation_relative(worst))} of ‖∇J‖")
    text = (f"the mean estimate is {test.max_z:.1f} standard errors from ∇J along {names[worst]} "
            f"(threshold {test.threshold:.1f}; {test.count:,} estimates): a bias of "
            f"{percent(test.deviation_relative(worst))} of ‖∇J‖ there")
    if worst != 0 and names[0] == "∇J":
        signed = float(test.mean[0] - test.expected[0]) / float(test.units[0])
        text += (f"; along ∇J the mean is off by {100 * signed:+.3g}% of ‖∇J‖ "
                 f"({float(test.z[0]):.1f} standard errors)")
    return text
