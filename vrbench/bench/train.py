"""Optimization traces: follow each estimator's gradients with SGD or Adam, and measure the
estimator along the way against the exact truth.

Every ``eval_every`` steps (and at the last) the trace records the exact objective
``J(θ_t)`` and gradient norm ``‖∇J(θ_t)‖``, and measures the estimator at ``θ_t`` exactly as
a sweep's cell does (:func:`vrbench.bench.runner.measure`): bias, variance with its 95%
interval, SNR and the per-coordinate variances, from ``variance_replicates`` independent
estimates of ``n_samples`` draws. This is the log-variance-against-step figure of the REBAR
(Tucker et al., NeurIPS 2017), RELAX (Grathwohl et al., ICLR 2018) and DisARM (Dong et al.,
NeurIPS 2020) papers, with the truth exact rather than estimated. The measurement at step 0
is, number for number, the cell of the same problem, estimator, n, replicates and seed.

:func:`shared_run` measures *every* given estimator at the same θ_t along one run driven by
one of them (Dong et al.'s ``estimate_grad_basket``; Tucker et al.'s gradient-variance
tracking): the comparison is paired, free of the differences between runs.

Where a problem has no exact gradient, each measurement is against the reference gradient
at θ_t (:mod:`vrbench.bench.reference`), stored in ``store`` when one is given so that a
rerun reuses it. Where a problem has a :meth:`~vrbench.problems.base.Problem.regularizer`
(an ELBO's KL in closed form), optimization steps along the estimate plus its exact
gradient, and ``value`` records J(θ_t) plus it: the objective optimized.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from vrbench import devices, estimators, problems
from vrbench.bench.cells import DEFAULT_MAX_MEMORY_MB, Cell, resolve_spec
from vrbench.bench.reference import (
    Reference,
    ReferenceSettings,
    ReferenceStore,
    stored_reference,
    theta_label,
)
from vrbench.bench.runner import measure
from vrbench.components import Spec
from vrbench.devices import on_device, resolve_device
from vrbench.errors import ParameterError
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Problem

SHARED_FILE = "shared_run.parquet"
"""Where ``vrbench train --measure`` writes the traces of shared runs."""

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}

TRACE_METRICS = ("true_grad_norm", "bias_norm", "bias_pvalue", "variance", "variance_ci_low",
                 "variance_ci_high", "mse", "snr", "cosine", "mean_cosine",
                 "coordinate_variance", "reference", "reference_se", "parameter_groups",
                 "group_variance", "group_true_grad_norm")
"""The measurements of a trace row, besides the step, the time and the exact J."""


@dataclass(frozen=True)
class TrainSettings:
    """How to optimize, and how often and how precisely to measure the estimator."""

    steps: int = 200
    n_samples: int = 4
    lr: float = 0.05
    optimizer: str = "adam"
    eval_every: int = 10
    variance_replicates: int = 1000
    device: str = "cpu"
    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB
    reference: ReferenceSettings = field(default_factory=ReferenceSettings)
    eval_samples: int | None = None
    """Draws per estimate of the measurements (default: ``n_samples``, those of a step)."""

    @property
    def measured_samples(self) -> int:
        return self.n_samples if self.eval_samples is None else self.eval_samples

    def __post_init__(self) -> None:
        resolve_device(self.device)
        if self.optimizer not in OPTIMIZERS:
            raise ParameterError(f"unknown optimizer {self.optimizer!r}; valid optimizers: "
                                 f"{', '.join(OPTIMIZERS)}")
        if self.eval_samples is not None and self.eval_samples < 1:
            raise ParameterError(f"eval_samples={self.eval_samples} must be at least 1")
        for key in ("steps", "n_samples", "eval_every"):
            if getattr(self, key) < 1:
                raise ParameterError(f"{key}={getattr(self, key)} must be at least 1")
        if self.variance_replicates < 2:
            raise ParameterError(f"variance_replicates={self.variance_replicates} must be >= 2")
        if not self.lr > 0:
            raise ParameterError(f"lr={self.lr} must be positive")


def train(problem_spec: Spec, estimator_spec: Spec, seed: int, settings: TrainSettings,
          store: ReferenceStore | None = None) -> list[dict[str, Any]]:
    """One optimization run on ``settings.device``: a row per measurement (see the module).

    A measurement that fails (non-finite metrics, say) is a row with its ``error`` and no
    numbers; the run goes on.
    """
    problem_spec, problem = resolve_spec(problems, problem_spec)
    estimator_spec, estimator = resolve_spec(estimators, estimator_spec)
    reason = estimator.incompatibility(problem, settings.n_samples)
    if reason is not None:
        raise ParameterError(reason)
    with on_device(settings.device) as device:
        return _optimize(problem, estimator, problem_spec, estimator_spec, seed, settings,
                         device, [(estimator_spec, estimator)], store)


def shared_run(problem_spec: Spec, driver_spec: Spec, measured_specs: list[Spec], seed: int,
               settings: TrainSettings, store: ReferenceStore | None = None
               ) -> list[dict[str, Any]]:
    """One optimization run driven by ``driver_spec``, measuring every estimator of
    ``measured_specs`` that applies at n = ``settings.measured_samples`` (the driver among them
    when listed) at the same θ_t: a row per measured estimator and measurement, whose
    ``driver`` column names the run's estimator (see the module)."""
    problem_spec, problem = resolve_spec(problems, problem_spec)
    driver_spec, driver = resolve_spec(estimators, driver_spec)
    reason = driver.incompatibility(problem, settings.n_samples)
    if reason is not None:
        raise ParameterError(reason)
    measured = [resolve_spec(estimators, spec) for spec in measured_specs]
    measured = [(spec, estimator) for spec, estimator in measured
                if estimator.incompatibility(problem, settings.measured_samples) is None]
    if not measured:
        raise ParameterError(f"none of {', '.join(map(str, measured_specs))} applies to "
                             f"{problem_spec} at n = {settings.measured_samples}")
    with on_device(settings.device) as device:
        rows = _optimize(problem, driver, problem_spec, driver_spec, seed, settings, device,
                         measured, store)
    return [{**row, "driver": str(driver_spec)} for row in rows]


def _measured(problem: Problem, estimator: Estimator, cell: Cell, theta: torch.Tensor,
              step: int, reference: Reference | None) -> dict[str, Any]:
    """The trace's measurements at ``theta`` (streams of their own for each step)."""
    try:
        metrics, _, _ = measure(problem, estimator, cell, theta=theta,
                                stream="" if step == 0 else f"/step {step}",
                                reference=reference)
    except Exception as exc:  # a failed measurement must not end the run
        return {**dict.fromkeys(TRACE_METRICS), "error": f"{type(exc).__name__}: {exc}"}
    return {**{key: metrics.get(key) for key in TRACE_METRICS}, "error": ""}


class _References:
    """The ground truth at each measured θ_t, per estimator excluded from being its own
    reference: exact, or from the store (computed once, then reused)."""

    def __init__(self, problem: Problem, problem_spec: Spec, seed: int,
                 settings: TrainSettings, store: ReferenceStore | None) -> None:
        self.problem, self.problem_spec, self.seed = problem, problem_spec, seed
        self.settings, self.store = settings, store
        self.latest: dict[tuple[str, str | None], Reference] = {}

    def at(self, theta: torch.Tensor, exclude: str | None) -> Reference:
        # An exact gradient serves every estimator; a sampled reference excludes one.
        key = (theta_label(theta), None if self.problem.has_exact_gradient else exclude)
        if key not in self.latest:
            self.latest = {k: v for k, v in self.latest.items() if k[0] == key[0]}
            self.latest[key] = stored_reference(
                self.store, self.problem_spec, self.problem, theta, self.settings.reference,
                exclude, self.seed, self.settings.device)
        return self.latest[key]

    def value(self, theta: torch.Tensor, exclude: str | None) -> float:
        """J(θ), plus the problem's regularizer where it has one."""
        value = self.at(theta, exclude).value
        extra = self.problem.regularizer(theta)
        return value + (0.0 if extra is None else float(extra))


def _regularizer_grad(problem: Problem, theta: torch.Tensor) -> torch.Tensor | float:
    with torch.enable_grad():
        point = theta.detach().clone().requires_grad_(True)
        term = problem.regularizer(point)
        if term is None:
            return 0.0
        (grad,) = torch.autograd.grad(term, point)
    return grad


def _statistics(problem: Problem, theta: torch.Tensor) -> dict[str, float]:
    """The problem's exact statistics at θ, if it has any (``statistics(θ)``: the expected
    output length of a sequence policy, say), as ``exact_<name>`` columns."""
    statistics = getattr(problem, "statistics", None)
    return {} if statistics is None else {f"exact_{key}": value
                                          for key, value in statistics(theta).items()}


def _optimize(problem: Problem, estimator: Estimator, problem_spec: Spec, estimator_spec: Spec,
              seed: int, settings: TrainSettings, device: torch.device,
              measured: list[tuple[Spec, Estimator]],
              store: ReferenceStore | None) -> list[dict[str, Any]]:
    # The cells whose measurements at step 0 this run reproduces; later steps use their
    # streams with the step appended, independent of each other and of the optimization's
    # draws.
    reference_settings = None if problem.has_exact_gradient else settings.reference
    cells = [(spec, other, Cell(problem_spec, spec, settings.measured_samples,
                                settings.variance_replicates, seed, settings.max_memory_mb,
                                settings.device, reference_settings))
             for spec, other in measured]
    references = _References(problem, problem_spec, seed, settings, store)
    generator = devices.generator(device, seed)
    fit_generator = devices.generator(device, seed + 1_000_003)
    theta = problem.initial_theta().clone().requires_grad_(True)
    optimizer = OPTIMIZERS[settings.optimizer]([theta], lr=settings.lr)
    sign = -1.0 if problem.maximize else 1.0
    rows: list[dict[str, Any]] = []
    wall = 0.0
    state = None
    for step in range(settings.steps + 1):
        current = theta.detach().clone()
        if step % settings.eval_every == 0 or step == settings.steps:
            for spec, other, cell in cells:
                reference = references.at(current, other.name)
                rows.append({
                    "problem": str(problem_spec), "estimator": str(spec), "seed": seed,
                    "device": str(device), "n_samples": settings.measured_samples,
                    "step_samples": settings.n_samples,
                    "replicates": settings.variance_replicates, "optimizer": settings.optimizer,
                    "lr": settings.lr, "step": step, "wall_s": wall,
                    "value": references.value(current, other.name),
                    **_statistics(problem, current),
                    **_measured(problem, other, cell, current, step, reference),
                })
        if step == settings.steps:
            break
        started = time.perf_counter()
        if step % settings.eval_every == 0:  # refit any state as θ moves, on fresh draws
            state = estimator.fit(problem, current, fit_generator)
        estimate = estimator.estimate(problem, current, settings.n_samples, 1, generator, state)
        optimizer.zero_grad()
        theta.grad = sign * (estimate[0] + _regularizer_grad(problem, current))
        optimizer.step()
        with torch.no_grad():
            theta.copy_(problem.project(theta))
        devices.synchronize(device)
        wall += time.perf_counter() - started
    return rows
