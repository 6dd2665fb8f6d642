"""What both conformance suites share: building the components they check, and naming them."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor

from vrbench import estimators as estimator_registry
from vrbench import problems as problem_registry
from vrbench.bench.runner import chunk_size
from vrbench.components import Component
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Problem
from vrbench.testing.report import percent, tolerance_text
from vrbench.testing.statistics import MeanTest

BIAS_TOLERANCE = 0.01
"""The relative bias the statistical checks aim to detect: 1% of ‖∇J‖ (or of |J|)."""

OTHER_THETAS = 2
"""θ checked besides the check θ (see :func:`check_thetas`)."""

THETA_STEP = 0.25
THETA_FLOOR = 0.2
"""A perturbation moves each entry of θ by up to ``THETA_STEP · (|θ_i| + THETA_FLOOR)``."""

THETA_TRIES = 6

SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def check_instance(problem: Problem | type[Problem] | str,
                   params: Mapping[str, Any] | None = None) -> Problem:
    """The problem as ``vrbench check`` tests it.

    A registered name or a class is built with its :attr:`~Problem.check_params`, overridden by
    ``params``; an instance is used as it is.
    """
    if isinstance(problem, Problem):
        return problem
    cls = problem_registry.registry.get(problem) if isinstance(problem, str) else problem
    return cls.from_params({**cls.check_params, **(params or {})})


def check_thetas(problem: Problem, others: int = OTHER_THETAS,
                 seed: int = 0) -> list[tuple[str | None, Tensor]]:
    """The θ the checks run at: ``(None, check_theta())`` and ``others`` perturbations of it,
    labelled θ₁, θ₂, ....

    Each perturbation moves entry ``i`` by ``THETA_STEP · (|θ_i| + THETA_FLOOR) · u_i`` with
    ``u_i`` uniform in [−1, 1], drawn from ``seed`` (so each seed checks other points), and
    is projected (:meth:`~vrbench.problems.base.Problem.project`); where ``value`` is not
    finite there (an unstable controller, say) the step is halved, up to :data:`THETA_TRIES`
    times. A
    component right at one θ only (a cache kept across calls, an ``exact_grad`` that reads
    the problem's parameters instead of its argument) is wrong at these.
    """
    base = problem.check_theta()
    points: list[tuple[str | None, Tensor]] = [(None, base)]
    generator = torch.Generator().manual_seed(2_147_483_629 - seed)
    for index in range(1, others + 1):
        uniforms = torch.rand(base.shape, generator=generator, dtype=base.dtype)
        step = (THETA_STEP * (base.detach().cpu().abs() + THETA_FLOOR) * (2 * uniforms - 1)
                ).to(base.device)
        for attempt in range(THETA_TRIES):
            point = problem.project(base + step / 2**attempt).detach()
            if _finite_value(problem, point):
                break
        points.append((f"θ{str(index).translate(SUBSCRIPTS)}", point))
    return points


def _finite_value(problem: Problem, theta: Tensor) -> bool:
    try:
        return bool(torch.isfinite(problem.value(theta)).all())
    except Exception:  # the checks that follow report it
        return False


def theta_note(problem: Problem, points: list[tuple[str | None, Tensor]]) -> str | None:
    """Where the other θ of :func:`check_thetas` lie, for the report's notes."""
    if len(points) < 2:
        return None
    base = points[0][1]
    parts = []
    for label, point in points[1:]:
        if point.numel() <= 4:
            parts.append(f"{label} = {_vector(point)}")
        else:
            parts.append(f"{label} at ‖θ − θ₀‖ = {float((point - base).norm()):.3g}")
    return (f"on {describe(problem)}, besides the check θ₀ = {_vector(base)}: "
            + ", ".join(parts))


def _vector(theta: Tensor) -> str:
    if theta.numel() > 4:
        return f"(dim {theta.numel()}, ‖θ‖ = {float(theta.norm()):.3g})"
    return "(" + ", ".join(f"{float(v):.4g}" for v in theta.reshape(-1)) + ")"


def estimator_instance(estimator: Estimator | type[Estimator] | str) -> Estimator:
    """An estimator from an instance, a class (default parameters) or a registered name."""
    if isinstance(estimator, str):
        return estimator_registry.make(estimator)
    return estimator.from_params() if isinstance(estimator, type) else estimator


def describe(problem: Problem) -> str:
    """The problem's name and the parameters that differ from their defaults: a spec."""
    name = problem.name if problem.name != "<unregistered>" else type(problem).__name__
    # Every problem is a dataclass; the Problem base class itself is not declared one.
    changed = [f"{f.name}={getattr(problem, f.name)}"
               for f in dataclasses.fields(problem)  # type: ignore[arg-type]
               if getattr(problem, f.name) != f.default]
    return name + (":" + ",".join(changed) if changed else "")


def subject(component: Component, kind: str) -> str:
    """How reports name a component; unregistered classes (not yet installed) by class name."""
    name = component.name
    return f"{kind} {name}" if name != "<unregistered>" else f"{kind} {type(component).__name__}"


def metadata_failure(component: Component, kind: str) -> str | None:
    if not (type(component).__doc__ or "").strip():
        return f"{kind} has no docstring stating what it computes"
    return None


def chunks(problem: Problem, n_samples: int, count: int) -> Iterator[int]:
    """Chunk sizes that add up to ``count`` draws of ``n_samples`` samples, as the harness
    chunks a cell at its default memory budget (:func:`vrbench.bench.runner.chunk_size`)."""
    size = chunk_size(problem, n_samples, count)
    done = 0
    while done < count:
        yield min(size, count - done)
        done += size


def direction_names(true_grad: Tensor, count: int) -> list[str]:
    """Names of the directions of :func:`vrbench.bench.metrics.bias_directions`."""
    from vrbench.bench.metrics import MAX_AXIS_TESTS

    names = ["∇J"] if bool(true_grad.norm() > 0) else []
    dim = true_grad.numel()
    if dim <= MAX_AXIS_TESTS:
        names += [f"coordinate {i}" for i in range(dim)]
    else:
        names += [f"random direction {i}" for i in range(count - len(names))]
    return names


def directions_text(true_grad: Tensor) -> str:
    from vrbench.bench.metrics import MAX_AXIS_TESTS, RANDOM_DIRECTIONS

    dim = true_grad.numel()
    if dim == 1:
        return "(θ has one coordinate)"
    others = (f"each of the {dim} coordinates" if dim <= MAX_AXIS_TESTS
              else f"{RANDOM_DIRECTIONS} random directions")
    return f"along ∇J and {others}" if bool(true_grad.norm() > 0) else f"along {others}"


def detectable_text(result: MeanTest, quantity: str, unit: str, grad: Tensor | None,
                    draws: str) -> str:
    """What a passing mean test could have detected: the smallest ``quantity`` (a bias, a
    deviation) it would have seen, relative to ``unit``, along the directions of ``grad`` when
    the test has them, and how many ``draws`` (estimates, samples) that took."""
    along = f" {directions_text(grad)}" if grad is not None else ""
    text = (f"{quantity} < {percent(result.detectable_relative)} of {unit}{along} "
            f"(max |z| = {result.max_z:.1f} ≤ {result.threshold:.1f}; {result.count:,} {draws}, "
            f"{result.seconds:.1f} s)")
    if result.stopped:
        text += (f"; the time budget stopped it after {result.count:,} of the "
                 f"{result.planned:,} {draws} planned")
    elif not result.reached and result.capped:
        text += (f"; {tolerance_text(result.tolerance)} would have taken about "
                 f"{result.needed:,} {draws}, beyond the cap of {result.planned:,} (--effort "
                 "raises it)")
    return text


def float64_cpu(tensor: Tensor) -> Tensor:
    return tensor.detach().to(device="cpu", dtype=torch.float64)
