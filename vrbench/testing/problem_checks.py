"""The problem conformance suite, :func:`check_problem`: a problem checked from every side."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from vrbench import devices
from vrbench.bench.reference import Reference, ReferenceSettings, compute_reference
from vrbench.devices import built_on_cpu, on_device, resolve_device
from vrbench.estimators.base import per_replicate_gradient
from vrbench.problems.base import DTYPE, Capability, Problem, gaussian_event_shape
from vrbench.testing.common import (
    BIAS_TOLERANCE,
    OTHER_THETAS,
    check_instance,
    check_thetas,
    chunks,
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

EXACT_TOLERANCE = 1e-9
"""Relative tolerance of identities that hold exactly (enumeration, autograd, shortcuts)."""

RELAX_TEMPERATURE = 0.5
UNIFORM_EPSILON = 1e-12
SHAPE = (100, 50)
PATHWISE_SHAPE = (16, 4)
"""Replicates and draws on which a problem's own ``pathwise_gradient`` is held to autograd's."""


@built_on_cpu
def _difference_directions(dim: int, seed: int) -> Tensor:
    """The coordinate axes up to :data:`FD_FULL_DIM` entries, else random unit directions."""
    if dim <= FD_FULL_DIM:
        return torch.eye(dim, dtype=DTYPE)
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(FD_DIRECTIONS, dim, generator=g, dtype=DTYPE)
    return directions / directions.norm(dim=1, keepdim=True)


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


def _mismatch(actual: Tensor, expected: Tensor, what: str) -> str | None:
    """Why ``actual`` differs from ``expected`` beyond rounding, or None."""
    actual, expected = float64_cpu(actual), float64_cpu(expected)
    if actual.shape != expected.shape:
        return f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    error = float((actual - expected).abs().max()) if actual.numel() else 0.0
    scale = max(float(expected.abs().max()) if expected.numel() else 0.0, 1e-300)
    if error <= EXACT_TOLERANCE * scale or error <= 1e-14:
        return None
    return f"{what} differs by {error:.3g} ({error / scale:.3g} of its size)"


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


def _implements(problem: Problem, member: str) -> bool:
    """Whether ``problem`` overrides an optional member of the protocol (or has the attribute)."""
    if member == "noise_dim":
        return isinstance(problem.noise_dim, int) and problem.noise_dim >= 1
    base = getattr(Problem, member, None)
    own = getattr(type(problem), member, None)
    if base is None:
        return own is not None
    return own is not base


@dataclass(frozen=True)
class _Sampled:
    """A sampled test: its name, its draws ``(size, k)``, the expected mean and its units."""

    name: str
    draw: Callable[[int, torch.Generator], Iterator[Tensor]]
    expected: Tensor
    units: Tensor | None
    unit: str
    grad: Tensor | None = None
    """∇J, when the draws are projections on its :func:`bias_directions`."""
    expected_se: Tensor | None = None
    """The standard errors of ``expected`` where it comes from a reference."""


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
    report = CheckReport(f"problem {where}")
    report.record("metadata", metadata_failure(problem, "problem"))
    caps = set(problem.capabilities)
    unknown = caps - set(Capability)
    both = {Capability.DISCRETE, Capability.CONTINUOUS} <= caps
    orphan = Capability.TABULAR in caps and Capability.SEQUENTIAL not in caps
    report.record("capabilities", f"unknown {sorted(unknown)}" if unknown else
                  "both discrete and continuous" if both else
                  "tabular without sequential" if orphan else None)
    for capability in sorted(caps - unknown):
        members = Capability(capability).members
        missing = [m for m in members if not _implements(problem, m)]
        if members:
            report.record(f"members of {capability}", f"does not implement {', '.join(missing)}"
                          if missing else None)
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
    for label, vector in (("initial θ", initial), ("check θ", theta)):
        report.record(label, None if vector.shape == (problem.dim,) and vector.dtype == DTYPE
                      else f"got shape {tuple(vector.shape)} dtype {vector.dtype}, expected "
                           f"({problem.dim},) float64")
    report.record("runs off the CPU", meta_problem_failure(problem))
    try:
        _exact_checks(report, problem, theta, initial, value, true_grad, seed, device, points)
    except Exception as exc:
        report.record("runs", f"raised {type(exc).__name__}: {exc}")
        return report
    deadline = None if time_budget is None else time.perf_counter() + time_budget
    sizing = _Sizing(tolerance, effort, max_draws, deadline, accept_partial, time_budget)
    _sampled_checks(report, problem, None, theta, value, reference, where, seed, sizing,
                    device)
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
        _sampled_checks(report, problem, label, point,
                        torch.tensor(point_reference.value, dtype=DTYPE), point_reference,
                        where, seed + 1000 * index, sizing.at_other_theta(), device)
    records = [r for r in report.power if r.theta is None]
    if records and not any(r.reached for r in records):
        report.record("power", "none of the sampled tests reached the tolerance of "
                      f"{tolerance_text(tolerance)}; raise --effort or --bias-tolerance, or "
                      "set check_params where |J| and ‖∇J‖ are large against the spread of f")
    return report


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


def _exact_checks(report: CheckReport, problem: Problem, theta: Tensor, initial: Tensor,
                  value: Tensor, true_grad: Tensor, seed: int, device: torch.device,
                  points: list[tuple[str | None, Tensor]]) -> None:
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
        optional = [("log_prob", lambda: _log_prob_checks(report, problem, theta, seed, device)),
                    ("support", lambda: _support_checks(report, problem, theta, value,
                                                        true_grad)),
                    ("capability identities", lambda: _capability_identities(
                        report, problem, theta, samples, scores, seed, device))]
        for member, checks in optional:
            if member in ("log_prob", "support") and not _implements(problem, member):
                continue
            if member == "support" and not _implements(problem, "log_prob"):
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

    jacobian = torch.autograd.functional.jacobian(log_probs, theta)
    report.record("score is the gradient of log_prob",
                  _mismatch(problem.score(theta, few).reshape(8, -1), jacobian,
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
                  _mismatch(probs.sum(), torch.ones((), dtype=DTYPE), "Σ p(x)"))
    report.record("value equals the sum over the support",
                  _mismatch(value, enumerated.detach(), "value(θ) against Σ p(x) f(x)"))
    report.record("exact gradient equals the gradient of the sum over the support",
                  _mismatch(true_grad, gradient, "exact_grad(θ) against ∇θ Σ p(x) f(x)"))
    scores = problem.score(theta, support).reshape(probs.numel(), -1)
    mean_score = float((probs @ scores).abs().max())
    scale = float((probs @ scores.abs()).max())
    report.record("score has mean zero over the support",
                  None if mean_score <= EXACT_TOLERANCE * scale else
                  f"Σ p(x) score(x) is {mean_score:.3g} ({mean_score / scale:.3g} of E|score|)")
    report.record("E[f·score] over the support equals the exact gradient",
                  _mismatch(probs @ (f.detach()[:, None] * scores), true_grad,
                            "Σ p(x) f(x) score(x) against exact_grad(θ)"))


def _capability_identities(report: CheckReport, problem: Problem, theta: Tensor, samples: Any,
                           scores: Tensor, seed: int, device: torch.device) -> None:
    caps = problem.capabilities
    if Capability.GAUSSIAN in caps:
        _gaussian_identities(report, problem, theta, samples, scores)
    if Capability.BERNOULLI_LOGITS in caps:
        ok_bits = (isinstance(samples, Tensor) and samples.shape == (*SHAPE, problem.dim)
                   and bool(((samples == 0) | (samples == 1)).all()))
        report.record("Bernoulli samples are 0/1 vectors", None if ok_bits else
                      f"expected 0/1 tensors of shape {(*SHAPE, problem.dim)}")
        if ok_bits:
            report.record("score is b − sigmoid(θ)", _mismatch(
                scores, samples - torch.sigmoid(theta), "score against b − sigmoid(θ)"))
            bits = samples[:2, :3, None, :].expand(2, 3, problem.dim, problem.dim)
            stacked = problem.f(bits)
            report.record("f accepts extra batch dimensions of bits",
                          None if stacked.shape == (2, 3, problem.dim)
                          else f"f of bits (2, 3, {problem.dim}, {problem.dim}) has shape "
                               f"{tuple(stacked.shape)}, expected (2, 3, {problem.dim})")
    if Capability.CATEGORICAL_LOGITS in caps:
        _categorical_identities(report, problem, theta, samples, scores)
    if Capability.SEQUENTIAL in caps:
        _sequential_identities(report, problem, theta, samples, scores)
    if Capability.TABULAR in caps:
        _tabular_identities(report, problem, theta, samples)
    if Capability.AMORTIZED in caps:
        _amortized_identities(report, problem, theta, samples, seed, device)
    if {Capability.BERNOULLI_LATENTS, Capability.CATEGORICAL_LATENTS} & caps:
        _latent_identities(report, problem, theta, seed, device)
    if Capability.MULTI_SAMPLE in caps:
        _multi_sample_identities(report, problem, theta, samples, seed, device)
    if Capability.SEQUENCES in caps:
        _sequence_identities(report, problem, theta, samples, seed, device)
    if ({Capability.REPARAMETERIZABLE, Capability.DIFFERENTIABLE} <= caps
            and _implements(problem, "pathwise_gradient")):
        _pathwise_gradient_identity(report, problem, theta, seed, device)
    if Capability.RELAXABLE in caps:
        uniforms = torch.rand((2, 3, problem.noise_dim), generator=devices.generator(
            device, seed + 3), dtype=DTYPE).clamp(UNIFORM_EPSILON, 1 - UNIFORM_EPSILON)
        with torch.enable_grad():
            point = theta.detach().clone().requires_grad_(True)
            relaxed = problem.f_relaxed(problem.relax(point, uniforms, RELAX_TEMPERATURE))
        report.record("relaxed f is differentiable in θ", None if relaxed.requires_grad
                      and relaxed.shape == (2, 3) else
                      f"f_relaxed(relax(θ, u, τ)) has shape {tuple(relaxed.shape)} and "
                      f"requires_grad={relaxed.requires_grad}")
        hard = problem.harden(problem.relax(theta, uniforms, RELAX_TEMPERATURE))
        embedded = problem.embed(problem.sample(theta, (2, 3), devices.generator(device, seed)))
        report.record("embed(x) is in the encoding of harden(relax(θ, u, τ))", None
                      if isinstance(embedded, Tensor) and embedded.shape == hard.shape else
                      f"embed(sample) has shape {_shape_text(embedded)}, harden(relax(θ, u, τ)) "
                      f"{tuple(hard.shape)}")


def _pathwise_gradient_identity(report: CheckReport, problem: Problem, theta: Tensor,
                                seed: int, device: torch.device) -> None:
    """A problem's own ``pathwise_gradient`` against the protocol's default, autograd through
    ``f(transform(θ, ε))``, on the same noise: they compute the same numbers, up to rounding."""
    noise = problem.sample_noise(PATHWISE_SHAPE, devices.generator(device, seed + 4))
    own = problem.pathwise_gradient(theta, noise)
    autograd = Problem.pathwise_gradient(problem, theta, noise)
    report.record("pathwise_gradient equals autograd through transform", _mismatch(
        own, autograd, f"pathwise_gradient(θ, ε) against autograd at {PATHWISE_SHAPE} draws"))


def _shape_text(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__


def _gaussian_layout(problem: Problem, theta: Tensor) -> tuple[int, tuple[int, ...]] | None:
    """``(D, event shape)`` of a GAUSSIAN problem, or None if θ and ``sample_mean`` do not fit
    θ = (μ_1..μ_D, σ_1..σ_D) with samples ``()`` when D = 1 and ``(D,)`` otherwise."""
    size, event = problem.dim // 2, gaussian_event_shape(problem, theta)
    fits = problem.dim % 2 == 0 and (event == (size,) or (event == () and size == 1))
    return (size, event) if fits else None


def _gaussian_identities(report: CheckReport, problem: Problem, theta: Tensor, samples: Any,
                         scores: Tensor) -> None:
    layout = _gaussian_layout(problem, theta)
    ok_shape = (layout is not None and isinstance(samples, Tensor)
                and samples.shape == (*SHAPE, *layout[1]))
    report.record("Gaussian samples and θ = (μ, σ)", None if ok_shape else
                  f"expected dim 2D, and samples of shape {SHAPE} (D = 1) or {(*SHAPE, 'D')} "
                  f"matching sample_mean(θ); got dim {problem.dim} and samples of shape "
                  f"{_shape_text(samples)}")
    if layout is None or not ok_shape:
        return
    size = layout[0]
    mu, sigma = theta[:size], theta[size:]
    eps = (samples.reshape(*SHAPE, size) - mu) / sigma
    gaussian = torch.cat([eps / sigma, (eps**2 - 1) / sigma], dim=-1)
    report.record("score is the Gaussian score", _mismatch(scores, gaussian,
                  "score against (ε/σ, (ε² − 1)/σ)"))


def _categorical_identities(report: CheckReport, problem: Problem, theta: Tensor, samples: Any,
                            scores: Tensor) -> None:
    ok = (isinstance(samples, Tensor) and samples.dim() == 4 and samples.shape[:2] == SHAPE
          and samples.shape[2] * samples.shape[3] == problem.dim
          and bool(((samples == 0) | (samples == 1)).all())
          and bool((samples.sum(-1) == 1).all()))
    report.record("categorical samples are one-hot (R, n, D, K) with D·K = dim", None if ok
                  else f"got {_shape_text(samples)} for dim {problem.dim}")
    if not ok:
        return
    variables, categories = samples.shape[2:]
    probs = torch.softmax(theta.reshape(variables, categories), dim=-1)
    report.record("score is onehot(x) − softmax(θ)", _mismatch(
        scores, (samples - probs).flatten(-2), "score against onehot(x) − softmax(θ)"))
    same_variable = torch.eye(variables, dtype=torch.bool)[:, None, :, None]
    category = torch.eye(categories, dtype=samples.dtype)[None, :, None, :]
    variants = torch.where(same_variable, category, samples[:2, :3, None, None])
    stacked = problem.f(variants)
    report.record("f accepts extra batch dimensions of one-hot samples",
                  None if stacked.shape == (2, 3, variables, categories) else
                  f"f of one-hot samples {tuple(variants.shape)} has shape "
                  f"{tuple(stacked.shape)}, expected {(2, 3, variables, categories)}")


def _sequential_identities(report: CheckReport, problem: Any, theta: Tensor, samples: Any,
                           scores: Tensor) -> None:
    rewards = problem.step_rewards(samples)
    steps = rewards.shape[-1]
    report.record("step rewards have shape (R, n, T)", None if rewards.shape == (*SHAPE, steps)
                  and 1 <= steps <= problem.horizon else
                  f"got {tuple(rewards.shape)} with horizon {problem.horizon}")
    report.record("step scores with unit weights equal the score", _mismatch(
        problem.step_score(theta, samples, torch.ones_like(rewards)), scores,
        "step_score(θ, x, 1)"))
    discounted = rewards * problem.gamma ** torch.arange(steps, dtype=DTYPE)
    report.record("reward-to-go sums the discounted step rewards", _mismatch(
        problem.reward_to_go(samples), discounted.flip(-1).cumsum(-1).flip(-1),
        "reward_to_go against Σ_{k≥t} γ^k r_k"))
    report.record("reward-to-go at the first step equals f", _mismatch(
        problem.reward_to_go(samples)[..., 0], problem.f(samples), "reward_to_go[..., 0]"))
    values = problem.step_values(theta, samples, problem.exact_values(theta))
    report.record("exact step values have the steps' shape", None
                  if values.shape == rewards.shape else
                  f"step_values(θ, x, exact_values(θ)) has shape {tuple(values.shape)}, the "
                  f"step rewards {tuple(rewards.shape)}")


def _tabular_identities(report: CheckReport, problem: Any, theta: Tensor,
                        samples: Any) -> None:
    policy = problem.policy(theta)
    ok_policy = (policy.dim() == 2 and bool((policy >= 0).all())
                 and _mismatch(policy.sum(-1), torch.ones_like(policy[:, 0]), "") is None)
    report.record("policy(θ) is a distribution over actions in each state", None if ok_policy
                  else f"policy(θ) of shape {tuple(policy.shape)} has rows that are not "
                       "distributions")
    pairs = getattr(samples, "pairs", None)
    ok_pairs = (isinstance(pairs, Tensor) and pairs.shape[:2] == SHAPE
                and bool(((pairs >= -1) & (pairs < policy.numel())).all()))
    report.record("samples hold the visited state-action pairs", None if ok_pairs else
                  "expected samples.pairs of shape (R, n, T) holding s·A + a, −1 after the end")


def _amortized_identities(report: CheckReport, problem: Problem, theta: Tensor, samples: Any,
                          seed: int, device: torch.device) -> None:
    inputs = problem.item_inputs()
    items = problem.item_f(samples)
    count = inputs.shape[0]
    report.record("item_f has one term per item", None if inputs.dim() == 2
                  and items.shape == (*SHAPE, count) else
                  f"item_inputs() has shape {tuple(inputs.shape)} and item_f "
                  f"{tuple(items.shape)}, expected (B, P) and {(*SHAPE, 'B')}")
    if items.shape != (*SHAPE, count):
        return
    report.record("f is the mean of the item terms", _mismatch(
        items.mean(-1), problem.f(samples), "mean_b item_f against f"))
    weights = torch.randn(SHAPE, generator=devices.generator(device, seed + 4), dtype=DTYPE)
    report.record("item_weighted_score with equal item weights is weighted_score", _mismatch(
        problem.item_weighted_score(theta, samples, weights[..., None].expand(*SHAPE, count)),
        problem.weighted_score(theta, samples, weights),
        "item_weighted_score(θ, x, w·1_B) against weighted_score(θ, x, w)"))


def _latent_identities(report: CheckReport, problem: Problem, theta: Tensor, seed: int,
                       device: torch.device) -> None:
    """The pullback of logit gradients is the chain rule through ``latent_logits``."""
    with torch.enable_grad():
        point = theta.detach().clone().requires_grad_(True)
        logits = problem.latent_logits(point)
        cotangents = torch.randn((2, *logits.shape), generator=devices.generator(device, seed + 5),
                                 dtype=DTYPE)
        expected = torch.stack([torch.autograd.grad(logits, point, c, retain_graph=True)[0]
                                for c in cotangents])
    report.record("latent_pullback is the chain rule through latent_logits", _mismatch(
        problem.latent_pullback(theta, cotangents), expected,
        "latent_pullback(θ, G) against the vector-Jacobian product of latent_logits"))


def _multi_sample_identities(report: CheckReport, problem: Problem, theta: Tensor,
                             samples: Any, seed: int, device: torch.device) -> None:
    log_weights = problem.log_weights(samples)
    ok = log_weights.dim() == 4 and log_weights.shape[:2] == SHAPE
    report.record("log_weights has shape (R, n, B, K)", None if ok
                  else f"got {tuple(log_weights.shape)}")
    if not ok:
        return
    report.record("f is the multi-sample bound of the weights", _mismatch(
        _multi_sample_bound(log_weights), problem.f(samples),
        "(1/B) Σ_b log (1/K) Σ_k w_bk against f"))
    weights = torch.randn(SHAPE, generator=devices.generator(device, seed + 4), dtype=DTYPE)
    report.record("code_weighted_score with equal code weights is weighted_score", _mismatch(
        problem.code_weighted_score(theta, samples, weights[..., None, None].expand_as(
            log_weights)), problem.weighted_score(theta, samples, weights),
        "code_weighted_score(θ, x, w·1_BK) against weighted_score(θ, x, w)"))


def _sequence_identities(report: CheckReport, problem: Any, theta: Tensor, samples: Any,
                         seed: int, device: torch.device) -> None:
    rewards = problem.prompt_rewards(samples)
    mask = problem.token_mask(samples)
    log_probs = problem.token_log_probs(theta, samples)
    reference = problem.reference_token_log_probs(samples)
    prompts = rewards.shape[-1] if rewards.dim() == 3 else 0
    ok = (rewards.shape[:2] == SHAPE and rewards.dim() == 3 and mask.dim() == 4
          and mask.shape[:3] == rewards.shape and log_probs.shape == mask.shape
          and reference.shape == mask.shape)
    report.record("prompt rewards (R, n, P) and token tables (R, n, P, L)", None if ok else
                  f"prompt_rewards {tuple(rewards.shape)}, token_mask {tuple(mask.shape)}, "
                  f"token_log_probs {tuple(log_probs.shape)}, reference_token_log_probs "
                  f"{tuple(reference.shape)}")
    if not ok:
        return
    if _implements(problem, "log_prob"):
        report.record("token log-probabilities add up to log_prob", _mismatch(
            (log_probs * mask).sum((-1, -2)), problem.log_prob(theta, samples),
            "Σ_p Σ_t token_log_probs against log_prob"))
    penalized = rewards - problem.beta * ((log_probs - reference) * mask).sum(-1)
    report.record("f is the mean over prompts of R − β log(π/π_ref)", _mismatch(
        problem.f(samples), penalized.mean(-1), "f against mean_p (R − β Σ_t ℓ_t)"))
    weights = torch.randn(SHAPE, generator=devices.generator(device, seed + 5), dtype=DTYPE)
    expanded = weights[..., None, None].expand(*SHAPE, prompts, mask.shape[-1])
    report.record("token_weighted_score with per-sample weights is n × weighted_score",
                  _mismatch(problem.token_weighted_score(theta, samples, expanded) / SHAPE[1],
                            problem.weighted_score(theta, samples, weights),
                            "token_weighted_score(θ, x, w·1) / n against weighted_score"))
    values = problem.exact_token_values(theta, samples, problem.beta)
    first = values[..., 0].mean(-1) if values.shape == mask.shape else values
    report.record("exact value of the first token averages over prompts to J", _mismatch(
        first, problem.value(theta).detach().expand(SHAPE),
        "mean_p exact_token_values[..., 0] against value(θ)"))
    old_theta = problem.behaviour_theta(theta)
    behaviour = problem.sample_behaviour(theta, (2, 3), devices.generator(device, seed + 6))
    report.record("behaviour samples' token log-probabilities add up to log_prob at θ_old",
                  _mismatch((problem.token_log_probs(old_theta, behaviour)
                             * problem.token_mask(behaviour)).sum((-1, -2)),
                            problem.log_prob(old_theta, behaviour),
                            "Σ_p Σ_t token_log_probs(θ_old) against log_prob(θ_old)")
                  if _implements(problem, "log_prob") else None)


def _multi_sample_bound(log_weights: Tensor) -> Tensor:
    """``(1/B) Σ_b log (1/K) Σ_k w_bk`` from ``log w`` of shape ``(..., B, K)``."""
    return (torch.logsumexp(log_weights, dim=-1) - math.log(log_weights.shape[-1])).mean(-1)


def _sampled_checks(report: CheckReport, problem: Problem, label: str | None, theta: Tensor,
                    value: Tensor, reference: Reference, where: str, seed: int, sizing: _Sizing,
                    device: torch.device) -> None:
    tests = _sampled_tests(problem, theta, float64_cpu(value).reshape(1), reference, device)
    for index, test in enumerate(tests):
        if sizing.deadline is not None and time.perf_counter() > sizing.deadline:
            message = (f"the time budget of {sizing.time_budget:g} s ran out before this test "
                       "began; raise --time-budget (the tests' sizes do not depend on it)")
            if sizing.accept_partial:
                report.notes.append(f"{test.name}{_at_theta(label)}: {message}; accepted "
                                    "(--accept-partial)")
            else:
                report.record(test.name, message, theta=label)
            continue
        try:
            result = mean_test(test.draw, test.expected, test.units, sizing.tolerance,
                               (devices.generator(device, seed + 10 + 2 * index),
                                devices.generator(device, seed + 11 + 2 * index)),
                               max_count=sizing.max_count(problem), deadline=sizing.deadline,
                               expected_se=test.expected_se)
        except Exception as exc:
            report.record(test.name, f"raised {type(exc).__name__}: {exc}", theta=label)
            continue
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
                   device: torch.device) -> list[_Sampled]:
    caps = problem.capabilities
    true_grad = reference.grad
    directions = reference.directions
    to_device = directions.to(theta.device)
    norm = torch.full((directions.shape[0],), float(true_grad.norm()), dtype=DTYPE)
    j_units = value.abs()

    def stream(compute: Callable[[int, torch.Generator], Tensor]) -> Callable[
            [int, torch.Generator], Iterator[Tensor]]:
        def draw(count: int, generator: torch.Generator) -> Iterator[Tensor]:
            for size in chunks(problem, 1, count):
                with on_device(device):
                    yield float64_cpu(compute(size, generator))
        return draw

    def f_mean(sampler: Callable[[int, torch.Generator], Any],
               f: Callable[[Any], Tensor] = problem.f) -> Callable:
        return stream(lambda size, g: f(sampler(size, g)).reshape(size, 1))

    def direct(size: int, g: torch.Generator) -> Tensor | float:
        # E[∇θ f] with x held fixed, for a problem whose f depends on θ (a VAE's decoder):
        # ∇J = E[(f − J) score] + E[∇θ f].
        part = problem.direct_gradient(theta, size, g)
        return 0.0 if part is None else part @ to_device.T

    def centered_score(sampler: Callable[[int, torch.Generator], Any]) -> Callable:
        def compute(size: int, g: torch.Generator) -> Tensor:
            samples = sampler(size, g)
            weights = problem.f(samples) - value.to(theta.device)
            return problem.weighted_score(theta, samples, weights) @ to_device.T + direct(
                size, g)
        return stream(compute)

    def pathwise_mean(draw_noise: Callable[[int, torch.Generator], Tensor],
                      to_samples: Callable[[Tensor, Tensor], Any]) -> Callable:
        # The gradient of f's sample mean through to_samples(θ, noise), with the noise held
        # fixed while each replicate's copy of θ is differentiated.
        def compute(size: int, g: torch.Generator) -> Tensor:
            noise = draw_noise(size, g)
            return per_replicate_gradient(theta, size, lambda copies: problem.f(
                to_samples(copies, noise)).mean(1)) @ to_device.T
        return stream(compute)

    def sample(size: int, g: torch.Generator) -> Any:
        return problem.sample(theta, (size, 1), g)

    def standard_noise(size: int, g: torch.Generator) -> Tensor:
        return problem.sample_noise((size, 1), g)

    def uniforms(size: int, g: torch.Generator) -> Tensor:
        return torch.rand((size, 1, problem.noise_dim), generator=g, dtype=DTYPE).clamp(
            UNIFORM_EPSILON, 1 - UNIFORM_EPSILON)

    def multi_sample_gradient(size: int, g: torch.Generator) -> Tensor:
        # ∇J = E[(1/B) Σ_b Σ_k (L_b − w̃_bk) ∇θ log q(z_bk|x_b)] (see Capability.MULTI_SAMPLE);
        # J, a constant, is subtracted from L_b as a baseline.
        samples = sample(size, g)
        log_weights = problem.log_weights(samples)
        bounds = torch.logsumexp(log_weights, dim=-1, keepdim=True) - math.log(
            log_weights.shape[-1])
        signal = bounds - value.to(theta.device) - torch.softmax(log_weights, dim=-1)
        return problem.code_weighted_score(theta, samples, signal / log_weights.shape[2]
                                           ) @ to_device.T + direct(size, g)

    def per_item_gradient(size: int, g: torch.Generator) -> Tensor:
        samples = sample(size, g)
        items = problem.item_f(samples)
        weights = (items - value.to(theta.device)) / items.shape[-1]
        return problem.item_weighted_score(theta, samples, weights) @ to_device.T + direct(
            size, g)

    expected_grad = directions @ true_grad
    zeros = torch.zeros(directions.shape[0], dtype=DTYPE)
    grad_test = "E[(f − J)·score] equals ∇J"
    if type(problem).direct_gradient is not Problem.direct_gradient:
        grad_test = "E[(f − J)·score] + E[∇θ f] equals ∇J"
    tests = [
        _Sampled("sampled mean of f equals J", f_mean(sample), value, j_units, "|J|"),
        _Sampled("score has mean zero", stream(
            lambda size, g: problem.score(theta, sample(size, g))[:, 0] @ to_device.T),
            zeros, None, "the score's standard deviation", true_grad),
    ]
    if Capability.MULTI_SAMPLE in caps:
        # f depends on θ through the weights, so E[(f − J)·score] is not ∇J here.
        tests.append(_Sampled("E[(1/B) Σ_bk ((L_b − J) − w̃_bk) ∇θ log q(z_bk)] equals ∇J",
                              stream(multi_sample_gradient), expected_grad, norm, "‖∇J‖",
                              true_grad))
    else:
        tests.append(_Sampled(grad_test, centered_score(sample), expected_grad, norm, "‖∇J‖",
                              true_grad))
    if Capability.AMORTIZED in caps:
        tests.append(_Sampled("E[(1/B) Σ_b (f_b − J) ∇θ log q(z_b|x_b)] equals ∇J",
                              stream(per_item_gradient), expected_grad, norm, "‖∇J‖", true_grad))
    if Capability.SEQUENCES in caps:
        with on_device(device):
            old_theta = problem.behaviour_theta(theta)  # type: ignore[attr-defined]
            old_value = float64_cpu(problem.value(old_theta).detach()).reshape(1)
        tests.append(_Sampled("mean of f under sample_behaviour equals J at behaviour_theta",
                              f_mean(lambda size, g: problem.sample_behaviour(  # type: ignore
                                  theta, (size, 1), g)), old_value, old_value.abs(), "|J|"))
    if Capability.SEQUENTIAL in caps:
        with on_device(device):
            exact_values = problem.exact_values(theta)  # type: ignore[attr-defined]
        tests.append(_Sampled("mean of the exact value of the first state equals J", stream(
            lambda size, g: problem.step_values(  # type: ignore[attr-defined]
                theta, sample(size, g), exact_values)[..., :1].reshape(size, 1)),
            value, j_units, "|J|"))
    pathwise = {Capability.REPARAMETERIZABLE, Capability.DIFFERENTIABLE} <= caps
    if Capability.REPARAMETERIZABLE in caps:
        def transformed(size: int, g: torch.Generator) -> Any:
            return problem.transform(theta, standard_noise(size, g))

        tests.append(_Sampled("mean of f(transform(θ, ε)) equals J", f_mean(transformed),
                              value, j_units, "|J|"))
        if pathwise:
            tests.append(_Sampled("pathwise mean through transform equals ∇J",
                                  pathwise_mean(standard_noise, problem.transform),
                                  expected_grad, norm, "‖∇J‖", true_grad))
    if Capability.INVERSE_TRANSFORM in caps:
        def inverted(size: int, g: torch.Generator) -> Any:
            return problem.from_uniforms(theta, uniforms(size, g))

        tests.append(_Sampled("mean of f(from_uniforms(θ, u)) equals J", f_mean(inverted),
                              value, j_units, "|J|"))
        tests.append(_Sampled(f"{grad_test} for from_uniforms samples", centered_score(inverted),
                              expected_grad, norm, "‖∇J‖", true_grad))
        if pathwise:
            tests.append(_Sampled("pathwise mean through from_uniforms equals ∇J",
                                  pathwise_mean(uniforms, problem.from_uniforms),
                                  expected_grad, norm, "‖∇J‖", true_grad))
    if Capability.RELAXABLE in caps:
        def hardened(size: int, g: torch.Generator) -> Any:
            return problem.harden(problem.relax(theta, uniforms(size, g), RELAX_TEMPERATURE))

        tests.append(_Sampled("mean of f_relaxed(harden(relax(θ, u, τ))) equals J",
                              f_mean(hardened, problem.f_relaxed), value, j_units, "|J|"))
    layout = _gaussian_layout(problem, theta) if Capability.GAUSSIAN in caps else None
    if layout is not None:
        def gaussian(size: int, g: torch.Generator) -> Tensor:
            count, event = layout
            eps = torch.randn((size, 1, count), generator=g, dtype=DTYPE)
            return (theta[:count] + theta[count:] * eps).reshape(size, 1, *event)

        tests.append(_Sampled("mean of f(μ + σε) equals J", f_mean(gaussian), value, j_units,
                              "|J|"))
    if Capability.BERNOULLI_LOGITS in caps:
        def bits(size: int, g: torch.Generator) -> Tensor:
            u = torch.rand((size, 1, problem.dim), generator=g, dtype=DTYPE)
            return (u < torch.sigmoid(theta)).to(DTYPE)

        tests.append(_Sampled("mean of f(1[u < sigmoid(θ)]) equals J", f_mean(bits), value,
                              j_units, "|J|"))
    if _implements(problem, "sample_mean"):
        with on_device(device):
            mean_x = float64_cpu(problem.sample_mean(theta)).reshape(-1)
        # Relaxable problems state the mean in the encoding of relaxed samples.
        encode = problem.embed if Capability.RELAXABLE in caps else (lambda x: x)
        tests.append(_Sampled("sampled mean of x equals sample_mean(θ)", stream(
            lambda size, g: encode(sample(size, g)).reshape(size, -1)), mean_x, None,
            "the standard deviation of x"))
    if reference.exact:
        return tests
    # J and ∇J are a reference: their own standard errors count in every test against them.
    uncertain = {id(value): torch.tensor([reference.value_se], dtype=DTYPE),
                 id(expected_grad): reference.direction_se}
    return [replace(test, expected_se=uncertain.get(id(test.expected)))
            for test in tests]


def _failure(result: MeanTest, test: _Sampled) -> str:
    worst = result.worst
    along = ""
    if test.grad is not None:
        along = f" along {direction_names(test.grad, result.z.numel())[worst]}"
    deviation = result.deviation_relative(worst)
    size = f"{percent(deviation)} of {test.unit}" if math.isfinite(deviation) else "a deviation"
    return (f"{size}{along}: {result.max_z:.1f} standard errors (threshold "
            f"{result.threshold:.1f}; {result.count:,} draws; expected "
            f"{float(result.expected[worst]):.6g}, sampled {float(result.mean[worst]):.6g})")
