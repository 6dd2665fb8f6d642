"""The problem conformance suite, :func:`check_problem`: a problem checked from every side."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from vrbench import devices
from vrbench.bench.reference import Reference, ReferenceSettings, compute_reference
from vrbench.devices import built_on_cpu, on_device, resolve_device
from vrbench.problems.base import DTYPE, Capability, Problem
from vrbench.testing.capabilities import (
    EXACT_TOLERANCE,
    SHAPE,
    SPECS,
    ExactContext,
    SampledContext,
    SampledTest,
    implements,
    mismatch,
    specs_of,
)
from vrbench.testing.common import (
    BIAS_TOLERANCE,
    OTHER_THETAS,
    check_instance,
    check_thetas,
    describe,
    detectable_text,
    direction_names,
    float64_cpu,
    metadata_failure,
    theta_note,
)
from vrbench.testing.meta import meta_problem_failure
from vrbench.testing.report import CheckReport, PowerRecord, percent, tolerance_text
from vrbench.testing.statistics import MeanTest, mean_test

CHECK_REFERENCE = ReferenceSettings(precision=0.001, max_estimates=200_000)
"""The reference of a problem without an exact gradient, at the check θ (see
:data:`vrbench.testing.estimator_checks.CHECK_REFERENCE`)."""

TIME_BUDGET = 600.0
"""Seconds after which the sampled tests of one problem stop, by default (a cap, not a size:
the sizes are counts, see :data:`SAMPLED_WORK`)."""

SAMPLED_WORK = 2e8
"""Numbers (draws × (2 dim + sample width)) one sampled test at the check θ may draw with
``effort=1``."""

MAX_DRAWS = 50_000_000
"""Cap on the draws of one sampled test."""

OTHER_THETA_TOLERANCE = 5.0
"""The sampled tests at the other θ are sized for this multiple of the tolerance..."""
OTHER_THETA_SHARE = 0.125
"""... with this share of a test's work at the check θ."""

OTHER_THETA_REFERENCE = ReferenceSettings(
    precision=OTHER_THETA_TOLERANCE * CHECK_REFERENCE.precision,
    max_estimates=CHECK_REFERENCE.max_estimates)
"""The reference of a problem without an exact gradient at each other θ (of this check and
the estimator check): the tests there are sized for :data:`OTHER_THETA_TOLERANCE` times the
tolerance, so a reference that much less precise takes the same share of it, at about 25
times fewer estimates than the check θ's."""

DETERMINISM_SHAPE = (8, 4)

FD_STEP = 1e-5
FD_FULL_DIM = 32
FD_DIRECTIONS = 6
FD_TOLERANCE = 1e-5
"""Largest relative error of ∇J against central differences; they err by ~1e-10 here."""

FD_FLOOR = 1e-7
"""Absolute floor (times max(1, |J|)) of the finite differences' scale, where ∇J ≈ 0."""

PROTOCOL = "protocol"
"""The group of the checks every problem runs, whatever its capabilities."""

PATHWISE_SHAPE = (16, 4)
"""Replicates and draws on which a problem's own ``pathwise_gradient`` is held to autograd's."""


@built_on_cpu
def _difference_directions(dim: int, seed: int) -> Tensor:
    """The coordinate axes up to :data:`FD_FULL_DIM` entries, else random unit directions."""
    if dim <= FD_FULL_DIM:
        return torch.eye(dim, dtype=DTYPE)
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(FD_DIRECTIONS, dim, generator=g, dtype=DTYPE)
    norms: Tensor = directions.norm(dim=1, keepdim=True)
    return directions / norms


def _numerical_value(problem: Problem) -> Callable[[Tensor], Tensor]:
    return lambda theta: problem.numerical_reference(theta).value


def finite_difference_error(problem: Problem, theta: Tensor, seed: int = 0) -> float:
    """Relative error of ∇J against central differences of J: ``max_v |∇J·v − fd_v| / scale``.

    ``scale = max(max_v |fd_v|, FD_FLOOR · max(1, |J|))``, the size of the gradient along the
    directions ``v`` with a floor where it vanishes; ``v`` runs over the coordinate axes up to
    :data:`FD_FULL_DIM` entries, else over :data:`FD_DIRECTIONS` random unit directions (each
    difference costs two evaluations of J). A gradient 3% too large reads 0.03.
    """
    directions = _difference_directions(problem.dim, seed).to(theta.device)
    value: Callable[[Tensor], Tensor]
    if problem.has_exact_gradient:
        value, grad = problem.value, problem.exact_grad(theta)
    else:  # a numerical reference: its gradient against differences of its value
        value, grad = _numerical_value(problem), problem.numerical_reference(theta).grad
    exact = directions @ grad
    fd = torch.stack([(value(theta + FD_STEP * v) - value(theta - FD_STEP * v))
                      / (2 * FD_STEP) for v in directions])
    scale = max(float(fd.abs().max()), FD_FLOOR * max(1.0, abs(float(value(theta)))))
    return float((exact - fd).abs().max()) / scale


def _weighted_score_failure(weights: Tensor, scores: Tensor, weighted: Tensor) -> str | None:
    """Why ``weighted`` is not ``(1/n) Σ_j w_j score_j``, or None."""
    if scores.shape[:2] != weights.shape or weighted.shape != (scores.shape[0], scores.shape[2]):
        return f"weighted_score returned shape {tuple(weighted.shape)}"
    reference = torch.einsum("rn,rnd->rd", weights, scores) / weights.shape[1]
    scale = float(reference.abs().max())
    if torch.allclose(weighted, reference, rtol=1e-9, atol=1e-12 * scale):
        return None
    return f"differs from the scores by up to {float((weighted - reference).abs().max()):.3g}"


def _same(first: Tensor, second: Tensor) -> bool:
    return first.shape == second.shape and bool(
        torch.isclose(first, second, rtol=0, atol=0, equal_nan=True).all())


def _rows(samples: Any, index: slice) -> Any:
    """``samples`` with only the replicates ``index`` (a tensor or a tuple of tensors with
    leading shape ``(R, n)``), or None for other kinds of samples."""
    if isinstance(samples, Tensor):
        return samples[index]
    if isinstance(samples, tuple) and all(isinstance(t, Tensor) and t.dim() >= 2
                                          for t in samples):
        rows = [t[index] for t in samples]
        return type(samples)(*rows) if hasattr(samples, "_fields") else tuple(rows)
    return None


def determinism_failure(problem: Problem, theta: Tensor, device: torch.device,
                        seed: int = 0) -> str | None:
    """Why f or ``sample`` is not deterministic, or None.

    Every statistical check, and every estimator's "same estimates under the same seed",
    needs f to be a function of the samples alone and ``sample`` to draw only from its
    generator: f twice on the same samples, ``sample`` twice under the same seed, and f on
    the samples less their first replicate (against the rest of f's output) must agree
    exactly. Noise in f drawn from torch's global generator fails the first, noise from a
    private generator seeded in f the last.
    """
    generator_seed = seed + 5
    first = problem.sample(theta, DETERMINISM_SHAPE, devices.generator(device, generator_seed))
    again = problem.sample(theta, DETERMINISM_SHAPE, devices.generator(device, generator_seed))
    values = float64_cpu(problem.f(first))
    if not _same(values, float64_cpu(problem.f(first))):
        return ("f gave different values for the same samples: f must be a deterministic "
                "function of the samples (draw any noise in sample(), from the generator handed "
                "in)")
    if not _same(values, float64_cpu(problem.f(again))):
        return ("sample() drew different samples under the same seed: draw only from the "
                "generator handed in")
    rest = _rows(first, slice(1, None))
    if rest is not None and not _same(float64_cpu(problem.f(rest)), values[1:]):
        return ("f of the samples less their first replicate differs from the rest of f of "
                "all of them: f must depend on each sample alone (no noise drawn inside f, no "
                "statistic across the batch)")
    return None


def check_problem(problem: Problem | type[Problem] | str, *,
                  tolerance: float = BIAS_TOLERANCE, time_budget: float | None = TIME_BUDGET,
                  effort: float = 1.0, max_draws: int = MAX_DRAWS,
                  other_thetas: int = OTHER_THETAS, accept_partial: bool = False,
                  seed: int = 0, device: str | torch.device = "cpu") -> CheckReport:
    """Run the problem conformance suite, computing on ``device``.

    A name or a class is built with its ``check_params`` (see
    :func:`~vrbench.testing.check_instance`) and checked at ``check_theta()`` and at
    ``other_thetas`` perturbations of it (:func:`~vrbench.testing.common.check_thetas`).
    Exact checks: metadata, capabilities and the members each needs, shapes of θ, samples, f
    and score, devices (also on torch's meta device), f a deterministic function of the
    samples and ``sample`` deterministic under a seed (:func:`determinism_failure`),
    ``weighted_score`` against the scores, ``exact_grad`` against central finite differences
    of ``value`` at every θ checked and at ``initial_theta()``, the score against the autograd
    gradient of ``log_prob`` where implemented, and, for problems that enumerate their
    ``support``, the probabilities, ``value``, ``exact_grad`` and the score's mean by exact
    sums; plus the capabilities' own identities (a Gaussian's layout and score, Bernoulli
    bits, one-hot categoricals, an episode's step scores, rewards and values, per-item and
    per-code terms), and a ``pathwise_gradient`` the problem writes out against autograd
    through ``transform``.

    Sampled checks, each sized to detect a relative error of ``tolerance`` with probability
    95% and reporting what it could detect (see :func:`~vrbench.testing.statistics.mean_test`):
    the mean of f under ``sample`` equals ``value`` (relative to |J|); the score has mean
    zero (relative to its standard deviation); ``E[(f − J) score] = ∇J`` (relative to ‖∇J‖),
    which a wrong score or a sampler drawing from another distribution breaks; and the same
    for every other way the capabilities let estimators draw (``transform``,
    ``from_uniforms``, ``relax``/``harden``, the Gaussian and Bernoulli forms), including the
    pathwise mean where f is differentiable; the per-item form of ∇J (``AMORTIZED``), its
    multi-sample form in place of ``E[(f − J) score]`` (``MULTI_SAMPLE``), and the mean of the
    exact value of the first state (``SEQUENTIAL``). Each draws at most :data:`SAMPLED_WORK` ·
    ``effort`` numbers' worth (and ``max_draws``); at the other θ the same tests are sized
    for :data:`OTHER_THETA_TOLERANCE` times the tolerance with an eighth of that.

    Without an exact gradient, J and ∇J at every θ are a reference
    (:func:`~vrbench.bench.reference.compute_reference`: :data:`CHECK_REFERENCE` at the check
    θ, :data:`OTHER_THETA_REFERENCE` at the others) whose standard errors add in quadrature to
    the tests against them; a numerical reference's gradient is held to finite differences of
    its value, a sampled one's is not.

    The sizes are counts from the seed's draws and these settings, so the verdict is the same
    on any machine; ``time_budget`` seconds (``None``: no limit) only caps them: a test it
    stops fails, saying so, unless ``accept_partial``.
    """
    device = resolve_device(device)
    problem = check_instance(problem)
    where = describe(problem)
    report = GroupedReport(f"problem {where}")
    report.record("metadata", metadata_failure(problem, "problem"))
    caps = set(problem.capabilities)
    unknown = caps - set(Capability)
    both = {Capability.DISCRETE, Capability.CONTINUOUS} <= caps
    orphan = Capability.TABULAR in caps and Capability.SEQUENTIAL not in caps
    report.record("capabilities", f"unknown {sorted(unknown)}" if unknown else
                  "both discrete and continuous" if both else
                  "tabular without sequential" if orphan else None)
    for capability in sorted(caps - unknown):
        members = SPECS[Capability(capability)].members
        missing = [m for m in members if not implements(problem, m)]
        if members:
            with report.grouped(capability):
                report.record(f"members of {capability}",
                              f"does not implement {', '.join(missing)}" if missing else None)
    try:
        with on_device(device):
            theta = problem.check_theta()
            initial = problem.initial_theta()
            points = check_thetas(problem, other_thetas, seed)
        reference = compute_reference(problem, theta, CHECK_REFERENCE, None, seed, device)
        value = torch.tensor(reference.value, dtype=DTYPE)
        true_grad = reference.grad
    except Exception as exc:
        report.record("runs", f"raised {type(exc).__name__}: {exc}")
        return report
    note = theta_note(problem, points)
    if note is not None:
        report.notes.append(f"other θ {note}")
    if not reference.exact:
        report.notes.append(f"no exact gradient: J and ∇J are a reference, "
                            f"{reference.describe()}")
    for name, vector in (("initial θ", initial), ("check θ", theta)):
        report.record(name, None if vector.shape == (problem.dim,) and vector.dtype == DTYPE
                      else f"got shape {tuple(vector.shape)} dtype {vector.dtype}, expected "
                           f"({problem.dim},) float64")
    report.record("runs off the CPU", meta_problem_failure(problem))
    suite = _Suite(report, problem, where, device)
    try:
        _exact_checks(suite, theta, initial, value, true_grad, seed, points)
    except Exception as exc:
        report.record("runs", f"raised {type(exc).__name__}: {exc}")
        return report
    deadline = None if time_budget is None else time.perf_counter() + time_budget
    sizing = _Sizing(tolerance, effort, max_draws, deadline, accept_partial, time_budget)
    _sampled_checks(suite, None, theta, value, reference, seed, sizing)
    for index, (label, point) in enumerate(points[1:], start=1):
        try:
            # Without an exact gradient, a reference of its own at each θ, as precise against
            # the wider tolerance there as the check θ's against the tolerance.
            point_reference = compute_reference(problem, point, OTHER_THETA_REFERENCE,
                                                None, seed + 1000 * index, device)
        except Exception as exc:
            report.record("runs", f"raised {type(exc).__name__}: {exc}", theta=label)
            continue
        if not point_reference.exact:
            report.notes.append(f"at {label}, J and ∇J are a reference, "
                                f"{point_reference.describe()}")
        _sampled_checks(suite, label, point, torch.tensor(point_reference.value, dtype=DTYPE),
                        point_reference, seed + 1000 * index, sizing.at_other_theta())
    records = [r for r in report.power if r.theta is None]
    if records and not any(r.reached for r in records):
        report.record("power", "none of the sampled tests reached the tolerance of "
                      f"{tolerance_text(tolerance)}; raise --effort or --bias-tolerance, or "
                      "set check_params where |J| and ‖∇J‖ are large against the spread of f")
    return report


@dataclass
class GroupedReport(CheckReport):
    """A problem's report that also knows which group each outcome belongs to: ``protocol``,
    or the capability whose record made the check (see
    :func:`~vrbench.testing.parametrize_with_checks`)."""

    group: str = PROTOCOL
    groups: list[str] = field(default_factory=list)
    """The group of each of ``outcomes``."""

    def record(self, check: str, failure: str | None, detail: str = "",
               where: str | None = None, n: int | None = None,
               theta: str | None = None) -> None:
        super().record(check, failure, detail, where, n, theta)
        self.groups.append(self.group)

    @contextmanager
    def grouped(self, group: str) -> Iterator[None]:
        """Record into ``group`` inside the block."""
        outer, self.group = self.group, group
        try:
            yield
        finally:
            self.group = outer


@dataclass(frozen=True)
class _Sizing:
    """How large the sampled tests are, and when they stop."""

    tolerance: float
    effort: float
    max_draws: int
    deadline: float | None
    accept_partial: bool
    time_budget: float | None
    share: float = 1.0

    def at_other_theta(self) -> _Sizing:
        return replace(self, tolerance=OTHER_THETA_TOLERANCE * self.tolerance,
                       share=OTHER_THETA_SHARE)

    def max_count(self, problem: Problem) -> int:
        work = 2 * problem.dim + problem.sample_width()
        return int(max(1024, min(self.max_draws, self.share * self.effort * SAMPLED_WORK / work)))


def _exact_checks(suite: _Suite, theta: Tensor, initial: Tensor, value: Tensor,
                  true_grad: Tensor, seed: int, points: list[tuple[str | None, Tensor]]
                  ) -> None:
    """The checks without sampling error, at the check θ ``theta`` (J = ``value``,
    ∇J = ``true_grad``), the ``initial`` θ and the other ``points``."""
    report, problem, device = suite.report, suite.problem, suite.device
    with on_device(device):
        report.record("f and sample deterministic",
                      determinism_failure(problem, theta, device, seed))
        samples = problem.sample(theta, SHAPE, devices.generator(device, seed))
        values, scores = problem.f(samples), problem.score(theta, samples)
        weights = torch.randn(values.shape, generator=devices.generator(device, seed + 1),
                              dtype=DTYPE)
        weighted = problem.weighted_score(theta, samples, weights)
    report.record("device", None if values.device.type == scores.device.type == device.type
                  else f"f on {values.device} and score on {scores.device}, expected {device}")
    values, scores = float64_cpu(values), float64_cpu(scores)
    report.record("f shape", None if values.shape == SHAPE else f"got {tuple(values.shape)}")
    report.record("score shape", None if scores.shape == (*SHAPE, problem.dim)
                  else f"got {tuple(scores.shape)}")
    report.record("weighted score equals the mean of weighted scores",
                  _weighted_score_failure(weights.cpu(), scores, float64_cpu(weighted)))
    report.record("value is a finite scalar", None if value.numel() == 1 and bool(
        torch.isfinite(value).all()) else f"got {value}")
    numerical = type(problem).numerical_reference is not Problem.numerical_reference
    if not (problem.has_exact_gradient or numerical):
        report.notes.append("no exact gradient and no numerical reference: the gradient is not "
                            "checked against finite differences")
    with on_device(device):
        thetas = {"check θ": theta}
        if not torch.equal(initial, theta):
            thetas["initial θ"] = initial
        thetas.update({label: point for label, point in points[1:] if label is not None})
        for label, point in thetas.items():
            if not (problem.has_exact_gradient or numerical):
                break
            try:
                error = finite_difference_error(problem, point)
            except Exception as exc:
                report.record(f"exact gradient vs finite differences at the {label}",
                              f"raised {type(exc).__name__}: {exc}")
                continue
            measured = (f"relative error {error:.3g} = max |∇J·v − fd_v| / max |fd_v| "
                        f"(threshold {FD_TOLERANCE:g}; central differences with h = {FD_STEP:g})")
            report.record(f"exact gradient vs finite differences at the {label}",
                          None if error <= FD_TOLERANCE else measured,
                          measured if error <= FD_TOLERANCE else "")
        optional: list[tuple[str, Callable[[], None]]] = [
            ("log_prob", lambda: _log_prob_checks(report, problem, theta, seed, device)),
            ("support", lambda: _support_checks(report, problem, theta, value, true_grad)),
            ("capability identities", lambda: _capability_identities(
                ExactContext(report, problem, theta, samples, scores, seed, device)))]
        for member, checks in optional:
            if member in ("log_prob", "support") and not implements(problem, member):
                continue
            if member == "support" and not implements(problem, "log_prob"):
                report.record("support", "support() needs an exact log_prob()")
                continue
            try:
                checks()
            except NotImplementedError:
                continue  # a support too large to list, say
            except Exception as exc:
                report.record(member, f"raised {type(exc).__name__}: {exc}")


def _log_prob_checks(report: CheckReport, problem: Problem, theta: Tensor, seed: int,
                     device: torch.device) -> None:
    samples = problem.sample(theta, SHAPE, devices.generator(device, seed))
    log_prob = problem.log_prob(theta, samples)
    report.record("log_prob shape", None if log_prob.shape == SHAPE
                  else f"got {tuple(log_prob.shape)}")
    few = problem.sample(theta, (1, 8), devices.generator(device, seed + 2))

    def log_probs(point: Tensor) -> Tensor:
        return problem.log_prob(point, few).reshape(-1)

    jacobian: Tensor = torch.autograd.functional.jacobian(
        log_probs, theta)
    report.record("score is the gradient of log_prob",
                  mismatch(problem.score(theta, few).reshape(8, -1), jacobian,
                            "score(θ, x) against ∇θ log_prob(θ, x) at 8 samples"))


def _support_checks(report: CheckReport, problem: Problem, theta: Tensor, value: Tensor,
                    true_grad: Tensor) -> None:
    support = problem.support()
    with torch.enable_grad():
        point = theta.detach().clone().requires_grad_(True)
        probs = problem.log_prob(point, support).reshape(-1).exp()
        f = problem.f(support).reshape(-1)
        enumerated = probs @ f
        (gradient,) = torch.autograd.grad(enumerated, point)
    probs = probs.detach()
    report.record("support probabilities add up to one",
                  mismatch(probs.sum(), torch.ones((), dtype=DTYPE), "Σ p(x)"))
    report.record("value equals the sum over the support",
                  mismatch(value, enumerated.detach(), "value(θ) against Σ p(x) f(x)"))
    report.record("exact gradient equals the gradient of the sum over the support",
                  mismatch(true_grad, gradient, "exact_grad(θ) against ∇θ Σ p(x) f(x)"))
    scores = problem.score(theta, support).reshape(probs.numel(), -1)
    mean_score = float((probs @ scores).abs().max())
    scale = float((probs @ scores.abs()).max())
    report.record("score has mean zero over the support",
                  None if mean_score <= EXACT_TOLERANCE * scale else
                  f"Σ p(x) score(x) is {mean_score:.3g} ({mean_score / scale:.3g} of E|score|)")
    report.record("E[f·score] over the support equals the exact gradient",
                  mismatch(probs @ (f.detach()[:, None] * scores), true_grad,
                            "Σ p(x) f(x) score(x) against exact_grad(θ)"))


def _capability_identities(ctx: ExactContext) -> None:
    """The exact checks of each capability the problem declares, by name (as the members are
    checked), then a ``pathwise_gradient`` the problem writes out against autograd."""
    for spec in sorted(specs_of(ctx.problem), key=lambda spec: spec.capability.value):
        if spec.exact_checks is None:
            continue
        with _grouped(ctx.report, spec.capability.value):
            try:
                spec.exact_checks(ctx)
            except NotImplementedError:
                raise
            except Exception as exc:  # the capability's failure, and the end of the identities
                ctx.report.record("capability identities", f"raised {type(exc).__name__}: {exc}")
                return
    if ({Capability.REPARAMETERIZABLE, Capability.DIFFERENTIABLE} <= ctx.problem.capabilities
            and implements(ctx.problem, "pathwise_gradient")):
        _pathwise_gradient_identity(ctx.report, ctx.problem, ctx.theta, ctx.seed, ctx.device)


def _pathwise_gradient_identity(report: CheckReport, problem: Problem, theta: Tensor,
                                seed: int, device: torch.device) -> None:
    """A problem's own ``pathwise_gradient`` against the protocol's default, autograd through
    ``f(transform(θ, ε))``, on the same noise: they compute the same numbers, up to rounding."""
    noise = problem.sample_noise(PATHWISE_SHAPE, devices.generator(device, seed + 4))
    own = problem.pathwise_gradient(theta, noise)
    autograd = Problem.pathwise_gradient(problem, theta, noise)
    report.record("pathwise_gradient equals autograd through transform", mismatch(
        own, autograd, f"pathwise_gradient(θ, ε) against autograd at {PATHWISE_SHAPE} draws"))


@dataclass(frozen=True)
class _Suite:
    """What every test of one problem's check shares, exact or sampled: where it records,
    what it checks and on which device."""

    report: CheckReport
    problem: Problem
    where: str
    device: torch.device


def _sampled_checks(suite: _Suite, label: str | None, theta: Tensor, value: Tensor,
                    reference: Reference, seed: int, sizing: _Sizing) -> None:
    tests = _sampled_tests(suite.problem, theta, float64_cpu(value).reshape(1), reference,
                           suite.device)
    for index, test in enumerate(tests):
        with _grouped(suite.report, test.group):
            _sampled_check(suite, label, test, index, seed, sizing)


def _grouped(report: CheckReport, group: str) -> AbstractContextManager[None]:
    return report.grouped(group) if isinstance(report, GroupedReport) else nullcontext()


def _sampled_check(suite: _Suite, label: str | None, test: SampledTest, index: int, seed: int,
                   sizing: _Sizing) -> None:
    report, problem, where, device = suite.report, suite.problem, suite.where, suite.device
    if sizing.deadline is not None and time.perf_counter() > sizing.deadline:
        message = (f"the time budget of {sizing.time_budget:g} s ran out before this test "
                   "began; raise --time-budget (the tests' sizes do not depend on it)")
        if sizing.accept_partial:
            report.notes.append(f"{test.name}{_at_theta(label)}: {message}; accepted "
                                "(--accept-partial)")
        else:
            report.record(test.name, message, theta=label)
        return
    try:
        result = mean_test(test.draw, test.expected, test.units, sizing.tolerance,
                           (devices.generator(device, seed + 10 + 2 * index),
                            devices.generator(device, seed + 11 + 2 * index)),
                           max_count=sizing.max_count(problem), deadline=sizing.deadline,
                           expected_se=test.expected_se)
    except Exception as exc:
        report.record(test.name, f"raised {type(exc).__name__}: {exc}", theta=label)
        return
    report.power.append(PowerRecord(test.name, where, None, result.detectable_relative,
                                    sizing.tolerance, label))
    detail = detectable_text(result, "deviation", test.unit, test.grad, "draws")
    if result.stopped and not sizing.accept_partial:
        failure: str | None = (f"stopped by the time budget ({detail}); raise --time-budget, "
                               "or pass --accept-partial to accept this weaker power")
    elif not result.passed and result.dependent:
        failure = (f"{_failure(result, test)}; but the means of the calls to sample() vary "
                   "more than independent draws' would, so the draws of one call are "
                   "dependent and the standard error is understated")
    else:
        failure = None if result.passed else _failure(result, test)
    report.record(test.name, failure, "" if failure else detail, theta=label)


def _at_theta(label: str | None) -> str:
    return "" if label is None else f" at {label}"


def _sampled_tests(problem: Problem, theta: Tensor, value: Tensor, reference: Reference,
                   device: torch.device) -> list[SampledTest]:
    """The sampled tests at one θ: f's mean, the score's mean and ``E[(f − J)·score] = ∇J``
    under ``sample``; then those of each capability the problem declares (in the order of
    :data:`~vrbench.testing.capabilities.CAPABILITIES`: a test's seed is its position); then
    the mean of x against ``sample_mean`` where the problem gives it."""
    ctx = SampledContext(problem, theta, value, reference, device)
    specs = specs_of(problem)
    tests = [
        ctx.mean_of_f("sampled mean of f equals J", ctx.f_mean(ctx.sample)),
        SampledTest("score has mean zero", ctx.stream(
            lambda size, g: problem.score(theta, ctx.sample(size, g))[:, 0] @ ctx.directions.T),
            ctx.zeros, None, "the score's standard deviation", ctx.true_grad),
    ]
    if all(spec.score_gradient for spec in specs):
        tests.append(ctx.gradient(ctx.grad_test, ctx.centered_score(ctx.sample)))
    for spec in specs:
        if spec.sampled_checks is not None:
            tests += [replace(test, group=spec.capability.value)
                      for test in spec.sampled_checks(ctx)]
    if implements(problem, "sample_mean"):
        with on_device(device):
            mean_x = float64_cpu(problem.sample_mean(theta)).reshape(-1)
        # Relaxable problems state the mean in the encoding of relaxed samples.
        encode = problem.embed if Capability.RELAXABLE in problem.capabilities else (
            lambda x: x)
        tests.append(SampledTest("sampled mean of x equals sample_mean(θ)", ctx.stream(
            lambda size, g: encode(ctx.sample(size, g)).reshape(size, -1)), mean_x, None,
            "the standard deviation of x"))
    if reference.exact:
        return tests
    # J and ∇J are a reference: their own standard errors count in every test against them.
    uncertain = {id(ctx.value): torch.tensor([reference.value_se], dtype=DTYPE),
                 id(ctx.expected_grad): reference.direction_se}
    return [replace(test, expected_se=uncertain.get(id(test.expected)))
            for test in tests]


def _failure(result: MeanTest, test: SampledTest) -> str:
    worst = result.worst
    along = ""
    if test.grad is not None:
        along = f" along {direction_names(test.grad, result.z.numel())[worst]}"
    deviation = result.deviation_relative(worst)
    size = f"{percent(deviation)} of {test.unit}" if math.isfinite(deviation) else "a deviation"
    return (f"{size}{along}: {result.max_z:.1f} standard errors (threshold "
            f"{result.threshold:.1f}; {result.count:,} draws; expected "
            f"{float(result.expected[worst]):.6g}, sampled {float(result.mean[worst]):.6g})")
