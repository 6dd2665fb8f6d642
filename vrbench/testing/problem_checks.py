"""The problem conformance suite, :func:`check_problem`: a problem checked from every side."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from vrbench import devices
from vrbench.bench.metrics import bias_directions
from vrbench.devices import built_on_cpu, on_device, resolve_device
from vrbench.estimators.base import per_replicate_gradient
from vrbench.problems.base import DTYPE, Capability, Problem
from vrbench.testing.common import (
    BIAS_TOLERANCE,
    check_instance,
    chunks,
    describe,
    direction_names,
    directions_text,
    float64_cpu,
    metadata_failure,
)
from vrbench.testing.meta import meta_problem_failure
from vrbench.testing.report import CheckReport, PowerRecord, percent, tolerance_text
from vrbench.testing.statistics import MeanTest, mean_test

TIME_BUDGET = 20.0
"""Seconds that the sampled tests of one problem may spend together, by default."""

MAX_DRAWS = 50_000_000
"""Cap on the draws of one sampled test."""

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


@built_on_cpu
def _difference_directions(dim: int, seed: int) -> Tensor:
    """The coordinate axes up to :data:`FD_FULL_DIM` entries, else random unit directions."""
    if dim <= FD_FULL_DIM:
        return torch.eye(dim, dtype=DTYPE)
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(FD_DIRECTIONS, dim, generator=g, dtype=DTYPE)
    return directions / directions.norm(dim=1, keepdim=True)


def finite_difference_error(problem: Problem, theta: Tensor, seed: int = 0) -> float:
    """Relative error of ∇J against central differences of J: ``max_v |∇J·v − fd_v| / scale``.

    ``scale = max(max_v |fd_v|, FD_FLOOR · max(1, |J|))``, the size of the gradient along the
    directions ``v`` with a floor where it vanishes; ``v`` runs over the coordinate axes up to
    :data:`FD_FULL_DIM` entries, else over :data:`FD_DIRECTIONS` random unit directions (each
    difference costs two evaluations of J). A gradient 3% too large reads 0.03.
    """
    directions = _difference_directions(problem.dim, seed).to(theta.device)
    exact = directions @ problem.exact_grad(theta)
    fd = torch.stack([(problem.value(theta + FD_STEP * v) - problem.value(theta - FD_STEP * v))
                      / (2 * FD_STEP) for v in directions])
    scale = max(float(fd.abs().max()), FD_FLOOR * max(1.0, abs(float(problem.value(theta)))))
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


def check_problem(problem: Problem | type[Problem] | str, *,
                  tolerance: float = BIAS_TOLERANCE, time_budget: float | None = TIME_BUDGET,
                  max_draws: int = MAX_DRAWS, seed: int = 0,
                  device: str | torch.device = "cpu") -> CheckReport:
    """Run the problem conformance suite, computing on ``device``.

    A name or a class is built with its ``check_params``, and everything is checked at
    ``check_theta()`` (see :func:`~vrbench.testing.check_instance`). Exact checks: metadata,
    capabilities and the members each needs, shapes of θ, samples, f and score, devices (also
    on torch's meta device), ``weighted_score`` against the scores, ``exact_grad`` against
    central finite differences of ``value``, the score against the autograd gradient of
    ``log_prob`` where implemented, and, for problems that enumerate their ``support``, the
    probabilities, ``value``, ``exact_grad`` and the score's mean by exact sums; plus the
    capabilities' own identities (a Gaussian's score, Bernoulli bits, an MDP's step scores).

    Sampled checks, each sized to detect a relative error of ``tolerance`` with probability
    95% and reporting what it could detect (see :func:`~vrbench.testing.statistics.mean_test`):
    the mean of f under ``sample`` equals ``value`` (relative to |J|); the score has mean
    zero (relative to its standard deviation); ``E[(f − J) score] = ∇J`` (relative to ‖∇J‖),
    which a wrong score or a sampler drawing from another distribution breaks; and the same
    for every other way the capabilities let estimators draw (``transform``,
    ``from_uniforms``, ``relax``/``harden``, the Gaussian and Bernoulli forms), including the
    pathwise mean where f is differentiable. They share ``time_budget`` seconds
    (``None``: no limit); each draws at most ``max_draws``.
    """
    device = resolve_device(device)
    problem = check_instance(problem)
    where = describe(problem)
    report = CheckReport(f"problem {where}")
    report.record("metadata", metadata_failure(problem, "problem"))
    caps = set(problem.capabilities)
    unknown = caps - set(Capability)
    both = {Capability.DISCRETE, Capability.CONTINUOUS} <= caps
    report.record("capabilities", f"unknown {sorted(unknown)}" if unknown else
                  "both discrete and continuous" if both else None)
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
            value = problem.value(theta).detach()
            true_grad = problem.exact_grad(theta).detach()
    except Exception as exc:
        report.record("runs", f"raised {type(exc).__name__}: {exc}")
        return report
    for label, vector in (("initial θ", initial), ("check θ", theta)):
        report.record(label, None if vector.shape == (problem.dim,) and vector.dtype == DTYPE
                      else f"got shape {tuple(vector.shape)} dtype {vector.dtype}, expected "
                           f"({problem.dim},) float64")
    report.record("runs off the CPU", meta_problem_failure(problem))
    try:
        _exact_checks(report, problem, theta, initial, value, true_grad, seed, device)
    except Exception as exc:
        report.record("runs", f"raised {type(exc).__name__}: {exc}")
        return report
    _sampled_checks(report, problem, theta, value, true_grad, where, seed, tolerance,
                    time_budget, max_draws, device)
    records = report.power
    if records and not any(r.reached for r in records):
        report.record("power", "none of the sampled tests reached the tolerance of "
                      f"{tolerance_text(tolerance)}; raise --time-budget or --bias-tolerance, or "
                      "set check_params where |J| and ‖∇J‖ are large against the spread of f")
    return report


def _exact_checks(report: CheckReport, problem: Problem, theta: Tensor, initial: Tensor,
                  value: Tensor, true_grad: Tensor, seed: int, device: torch.device) -> None:
    with on_device(device):
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
    with on_device(device):
        thetas = {"check θ": theta}
        if not torch.equal(initial, theta):
            thetas["initial θ"] = initial
        for label, point in thetas.items():
            error = finite_difference_error(problem, point)
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
        ok_shape = problem.dim == 2 and isinstance(samples, Tensor) and samples.shape == SHAPE
        report.record("Gaussian samples and θ = (μ, σ)", None if ok_shape else
                      f"expected dim 2 and samples of shape {SHAPE}")
        if ok_shape:
            eps = (samples - theta[0]) / theta[1]
            gaussian = torch.stack([eps / theta[1], (eps**2 - 1) / theta[1]], dim=-1)
            report.record("score is the Gaussian score", _mismatch(scores, gaussian,
                          "score against (ε/σ, (ε² − 1)/σ)"))
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
    if Capability.SEQUENTIAL in caps:
        ones = torch.ones_like(samples.rewards)
        report.record("step scores with unit weights equal the score", _mismatch(
            problem.step_score(theta, samples, ones), scores, "step_score(θ, x, 1)"))
        report.record("reward-to-go at the first step equals f", _mismatch(
            problem.reward_to_go(samples)[..., 0], problem.f(samples), "reward_to_go[..., 0]"))
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


def _sampled_checks(report: CheckReport, problem: Problem, theta: Tensor, value: Tensor,
                    true_grad: Tensor, where: str, seed: int, tolerance: float,
                    time_budget: float | None, max_draws: int, device: torch.device) -> None:
    tests = _sampled_tests(problem, theta, float64_cpu(value).reshape(1),
                           float64_cpu(true_grad), device)
    for index, test in enumerate(tests):
        started = time.perf_counter()
        budget = None if time_budget is None else time_budget / (len(tests) - index)
        try:
            result = mean_test(test.draw, test.expected, test.units, tolerance,
                               (devices.generator(device, seed + 10 + 2 * index),
                                devices.generator(device, seed + 11 + 2 * index)),
                               time_budget=budget, max_count=max_draws)
        except Exception as exc:
            report.record(test.name, f"raised {type(exc).__name__}: {exc}")
            continue
        if time_budget is not None:
            time_budget -= time.perf_counter() - started
        report.power.append(PowerRecord(test.name, where, None, result.detectable_relative,
                                        tolerance))
        report.record(test.name, None if result.passed else _failure(result, test),
                      "" if not result.passed else _detail(result, test))


def _sampled_tests(problem: Problem, theta: Tensor, value: Tensor, true_grad: Tensor,
                   device: torch.device) -> list[_Sampled]:
    caps = problem.capabilities
    directions = bias_directions(true_grad)
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

    def centered_score(sampler: Callable[[int, torch.Generator], Any]) -> Callable:
        def compute(size: int, g: torch.Generator) -> Tensor:
            samples = sampler(size, g)
            weights = problem.f(samples) - value.to(theta.device)
            return problem.weighted_score(theta, samples, weights) @ to_device.T
        return stream(compute)

    def sample(size: int, g: torch.Generator) -> Any:
        return problem.sample(theta, (size, 1), g)

    def uniforms(size: int, g: torch.Generator) -> Tensor:
        return torch.rand((size, 1, problem.noise_dim), generator=g, dtype=DTYPE).clamp(
            UNIFORM_EPSILON, 1 - UNIFORM_EPSILON)

    expected_grad = directions @ true_grad
    zeros = torch.zeros(directions.shape[0], dtype=DTYPE)
    grad_test = "E[(f − J)·score] equals ∇J"
    tests = [
        _Sampled("sampled mean of f equals J", f_mean(sample), value, j_units, "|J|"),
        _Sampled("score has mean zero", stream(
            lambda size, g: problem.score(theta, sample(size, g))[:, 0] @ to_device.T),
            zeros, None, "the score's standard deviation", true_grad),
        _Sampled(grad_test, centered_score(sample), expected_grad, norm, "‖∇J‖", true_grad),
    ]
    pathwise = {Capability.REPARAMETERIZABLE, Capability.DIFFERENTIABLE} <= caps
    if Capability.REPARAMETERIZABLE in caps:
        def transformed(size: int, g: torch.Generator) -> Any:
            return problem.transform(theta, problem.sample_noise((size, 1), g))

        tests.append(_Sampled("mean of f(transform(θ, ε)) equals J", f_mean(transformed),
                              value, j_units, "|J|"))
        if pathwise:
            def through_transform(size: int, g: torch.Generator) -> Tensor:
                noise = problem.sample_noise((size, 1), g)
                return per_replicate_gradient(theta, size, lambda copies: problem.f(
                    problem.transform(copies, noise)).mean(1)) @ to_device.T

            tests.append(_Sampled("pathwise mean through transform equals ∇J",
                                  stream(through_transform), expected_grad, norm, "‖∇J‖",
                                  true_grad))
    if Capability.INVERSE_TRANSFORM in caps:
        def inverted(size: int, g: torch.Generator) -> Any:
            return problem.from_uniforms(theta, uniforms(size, g))

        tests.append(_Sampled("mean of f(from_uniforms(θ, u)) equals J", f_mean(inverted),
                              value, j_units, "|J|"))
        tests.append(_Sampled(f"{grad_test} for from_uniforms samples", centered_score(inverted),
                              expected_grad, norm, "‖∇J‖", true_grad))
        if pathwise:
            def through_uniforms(size: int, g: torch.Generator) -> Tensor:
                u = uniforms(size, g)
                return per_replicate_gradient(theta, size, lambda copies: problem.f(
                    problem.from_uniforms(copies, u)).mean(1)) @ to_device.T

            tests.append(_Sampled("pathwise mean through from_uniforms equals ∇J",
                                  stream(through_uniforms), expected_grad, norm, "‖∇J‖",
                                  true_grad))
    if Capability.RELAXABLE in caps:
        def hardened(size: int, g: torch.Generator) -> Any:
            return problem.harden(problem.relax(theta, uniforms(size, g), RELAX_TEMPERATURE))

        tests.append(_Sampled("mean of f_relaxed(harden(relax(θ, u, τ))) equals J",
                              f_mean(hardened, problem.f_relaxed), value, j_units, "|J|"))
    if Capability.GAUSSIAN in caps:
        def gaussian(size: int, g: torch.Generator) -> Tensor:
            return theta[0] + theta[1] * torch.randn((size, 1), generator=g, dtype=DTYPE)

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
        tests.append(_Sampled("sampled mean of x equals sample_mean(θ)", stream(
            lambda size, g: sample(size, g).reshape(size, -1)), mean_x, None,
            "the standard deviation of x"))
    return tests


def _detail(result: MeanTest, test: _Sampled) -> str:
    along = f" {directions_text(test.grad)}" if test.grad is not None else ""
    text = (f"deviation < {percent(result.detectable_relative)} of {test.unit}{along} "
            f"(max |z| = {result.max_z:.1f} ≤ {result.threshold:.1f}; {result.count:,} draws, "
            f"{result.seconds:.1f} s)")
    if not result.reached:
        text += (f"; the tolerance of {tolerance_text(result.tolerance)} was not reached "
                 "within the budget")
    return text


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
