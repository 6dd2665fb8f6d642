"""Optimization runs in the protocol of the REBAR and RELAX papers: control variates adapted
along the run, and every estimator measured at the same θ_t.

:mod:`vrbench.bench.train` refits an estimator's fitted state on independent draws at each
measurement. The papers adapt it instead: every step draws once, follows ĝ with θ's
optimizer, and takes one step of the control's own optimizer on ‖ĝ‖² (the estimator is
unbiased for every value of the control's parameters φ, so ‖ĝ‖² and the variance have the
same gradient in φ). This is what Grathwohl et al.'s toy script (github.com/duvenaud/relax,
``rebar_toy.py``: Adam at 0.01 for θ and for η, log λ and the network) and Tucker et al.'s
released code (github.com/tensorflow/models, research/rebar: the temperature and η by the
variance objective's gradient at ten times the model's learning rate) do. An estimator takes
part when it offers ``control_parameters`` and ``estimates_with`` (see
:class:`vrbench.estimators.rebar.REBAR`); any other runs as it is.

A *shared* run moves θ with one estimator (the ``driver``, or the exact gradient) while every
estimator adapts its own control on its own draws at the θ_t the run visits, and is measured
there: variances compared at the same θ_t, as the papers' figures of several estimators'
variance along one run do (Dong et al.'s ``estimate_grad_basket`` in the DisARM code), so that
a difference in where θ has got to is never taken for a difference between estimators. An
*own* run is the same with one estimator that both drives and is measured: the papers'
training curves.

Each measurement is the harness's (:func:`vrbench.bench.runner.measure`) with the control
parameters the estimator has reached, on streams of its own.

**Why this is not** ``vrbench train --measure`` (:func:`vrbench.bench.train.shared_run`).
Both measure several estimators at the θ_t of one run, but they cannot share one loop
without changing one or the other's numbers: here every estimator draws an estimate at every
step (its control adapts on it, and an estimator without a control is fitted once, at θ_0),
each from a stream of its own, and a measurement uses the control reached; there only the
driver draws between measurements, and each measured estimator is refitted on independent
draws at each measurement, so that step 0 is the sweep's cell number for number. Runs here
are on the CPU, their references are not stored, and they are not checkpointed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import torch

from vrbench import devices, estimators, problems
from vrbench.bench.cells import Cell, resolve_spec
from vrbench.bench.runner import measure
from vrbench.bench.train import OPTIMIZERS, TRACE_METRICS
from vrbench.components import Spec
from vrbench.errors import ParameterError
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Problem

EXACT_DRIVER = "exact"
"""A shared run's driver that follows the exact gradient ∇J(θ_t)."""


@dataclass(frozen=True)
class OnlineSettings:
    """How a run optimizes θ and adapts the controls, and how it measures them."""

    steps: int = 1000
    n_samples: int | Mapping[str, int] = 1
    """Draws per estimate: one number, or a table by estimator (its name in the results)
    with ``default``, so that estimators are compared at equal evaluations of f."""
    lr: float = 0.01
    control_lr: float = 0.01
    optimizer: str = "adam"
    eval_every: int = 100
    eval_replicates: int = 2000

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ParameterError(f"unknown optimizer {self.optimizer!r}; valid optimizers: "
                                 f"{', '.join(OPTIMIZERS)}")
        counts = self.n_samples.values() if isinstance(self.n_samples, Mapping) \
            else [self.n_samples]
        if any(not isinstance(n, int) or n < 1 for n in counts):
            raise ParameterError(f"n_samples={self.n_samples!r} must be positive integers")
        for key in ("steps", "eval_every"):
            if getattr(self, key) < 1:
                raise ParameterError(f"{key}={getattr(self, key)} must be at least 1")
        if self.eval_replicates < 2:
            raise ParameterError(f"eval_replicates={self.eval_replicates} must be >= 2")
        for key in ("lr", "control_lr"):
            if not getattr(self, key) > 0:
                raise ParameterError(f"{key}={getattr(self, key)} must be positive")

    def samples_for(self, estimator: str) -> int:
        """The draws per estimate of ``estimator``."""
        if isinstance(self.n_samples, Mapping):
            return int(self.n_samples.get(estimator, self.n_samples.get("default", 1)))
        return self.n_samples


class _Adaptive(Protocol):
    """An estimator whose control a run adapts (see :func:`adapts`)."""

    def control_parameters(self, problem: Problem, theta: torch.Tensor,
                           generator: torch.Generator) -> dict[str, torch.Tensor]: ...

    def estimates_with(self, problem: Problem, theta: torch.Tensor, uniforms: torch.Tensor,
                       params: dict[str, torch.Tensor],
                       create_graph: bool = False) -> torch.Tensor: ...


def adapts(estimator: Estimator) -> bool:
    """Whether ``estimator`` has a control whose parameters a run adapts."""
    return hasattr(estimator, "control_parameters") and hasattr(estimator, "estimates_with")


@dataclass(frozen=True)
class _Reached(Estimator):
    """``inner`` measured with the control parameters ``state`` it reached along a run (the
    harness's fit step returns them, refitting nothing)."""

    inner: Any = None
    state: Any = None

    def __post_init__(self) -> None:
        for key in ("name", "unbiased", "sample_average", "family", "evals_per_sample"):
            object.__setattr__(self, key, getattr(self.inner, key))

    def fit(self, problem: Problem, theta: torch.Tensor, generator: torch.Generator) -> Any:
        return self.state

    def estimate(self, problem: Problem, theta: torch.Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Any = None) -> torch.Tensor:
        estimates: torch.Tensor = self.inner.estimate(problem, theta, n_samples, replicates,
                                                      generator, state)
        return estimates


@dataclass
class _Follower:
    """One estimator along a run: its control's parameters and optimizer, its draws."""

    spec: Spec
    estimator: Estimator
    cell: Cell
    generator: torch.Generator
    n: int
    params: dict[str, torch.Tensor] | None = None
    optimizer: torch.optim.Optimizer | None = None
    wall: float = 0.0
    fit_state: Any = field(default=None)

    def step(self, problem: Problem, theta: torch.Tensor) -> torch.Tensor:
        """One estimate at θ; with a control, one step of its optimizer on ‖ĝ‖²."""
        n = self.n
        started = time.perf_counter()
        if self.params is None:
            estimate = self.estimator.estimate(problem, theta, n, 1, self.generator,
                                               self.fit_state)
        else:
            from vrbench.estimators.rebar import uniforms

            adaptive = cast(_Adaptive, self.estimator)
            with torch.enable_grad():
                estimate = adaptive.estimates_with(
                    problem, theta, uniforms((1, n, problem.dim), self.generator), self.params,
                    create_graph=True)
                assert self.optimizer is not None
                self.optimizer.zero_grad()
                (estimate**2).sum().backward()
            self.optimizer.step()
            estimate = estimate.detach()
        self.wall += time.perf_counter() - started
        return estimate[0]

    def reached(self) -> Estimator:
        if self.params is None:
            return self.estimator
        return _Reached(inner=self.estimator,
                        state={k: v.detach().clone() for k, v in self.params.items()})


def run(problem_spec: Spec, estimator_specs: Sequence[Spec], driver: str, seed: int,
        settings: OnlineSettings,
        on_step: Callable[[int], None] = lambda step: None) -> list[dict[str, Any]]:
    """One run on ``problem_spec``: θ follows ``driver`` (one of ``estimator_specs``, by its
    name in the results, or :data:`EXACT_DRIVER`), every estimator of ``estimator_specs``
    adapts its control at each θ_t and is measured there every ``eval_every`` steps (and at
    the last). A row per measurement and estimator, the columns of
    :mod:`vrbench.bench.train`'s traces plus ``driver``."""
    problem_spec, problem = resolve_spec(problems, problem_spec)
    device = torch.device("cpu")
    followers = []
    for index, spec in enumerate(estimator_specs):
        spec, estimator = resolve_spec(estimators, spec)
        n = settings.samples_for(str(spec))
        reason = estimator.incompatibility(problem, n)
        if reason is not None:
            raise ParameterError(reason)
        cell = Cell(problem_spec, spec, n, settings.eval_replicates, seed)
        generator = devices.generator(device, seed * 7_919 + index)
        follower = _Follower(spec, estimator, cell, generator, n)
        control = devices.generator(device, seed + 1_000_003 + index)
        theta0 = problem.initial_theta()
        if adapts(estimator):
            follower.params = estimator.control_parameters(problem, theta0, control)
            follower.optimizer = OPTIMIZERS[settings.optimizer](
                list(follower.params.values()), lr=settings.control_lr)
        else:  # fitted once at the start, as its cell would be (a baseline's mean, say)
            follower.fit_state = estimator.fit(problem, theta0, control)
        followers.append(follower)
    names = [str(f.spec) for f in followers]
    if driver != EXACT_DRIVER and driver not in names:
        raise ParameterError(f"driver {driver!r} is not one of the run's estimators; valid: "
                             f"{', '.join([*names, EXACT_DRIVER])}")
    theta = problem.initial_theta().clone().requires_grad_(True)
    optimizer = OPTIMIZERS[settings.optimizer]([theta], lr=settings.lr)
    sign = -1.0 if problem.maximize else 1.0
    rows: list[dict[str, Any]] = []
    for step in range(settings.steps + 1):
        current = theta.detach().clone()
        if step % settings.eval_every == 0 or step == settings.steps:
            value = float(problem.value(current))
            for follower in followers:
                rows.append({
                    "problem": str(problem_spec), "estimator": str(follower.spec),
                    "driver": driver, "seed": seed, "device": "cpu",
                    "n_samples": follower.n,
                    "replicates": settings.eval_replicates,
                    "optimizer": settings.optimizer, "lr": settings.lr, "step": step,
                    "wall_s": follower.wall, "value": value,
                    **_measured(problem, follower, current, step)})
            on_step(step)
        if step == settings.steps:
            break
        estimates = {str(f.spec): f.step(problem, current) for f in followers}
        direction = (problem.exact_grad(current) if driver == EXACT_DRIVER
                     else estimates[driver])
        optimizer.zero_grad()
        theta.grad = sign * direction.to(theta.dtype)
        optimizer.step()
        with torch.no_grad():
            theta.copy_(problem.project(theta))
    return rows


def _measured(problem: Problem, follower: _Follower, theta: torch.Tensor,
              step: int) -> dict[str, Any]:
    try:
        metrics, _, _ = measure(problem, follower.reached(), follower.cell, theta=theta,
                                stream="" if step == 0 else f"/step {step}", timed=False)
    except Exception as exc:  # a failed measurement must not end the run
        return {**dict.fromkeys(TRACE_METRICS), "error": f"{type(exc).__name__}: {exc}"}
    return {**{key: metrics[key] for key in TRACE_METRICS}, "error": ""}
