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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from vrbench import devices, estimators, problems
from vrbench.bench.cells import DEFAULT_MAX_MEMORY_MB, Cell, resolve_spec
from vrbench.bench.runner import measure
from vrbench.components import Spec
from vrbench.devices import on_device, resolve_device
from vrbench.errors import ParameterError
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Problem

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}

TRACE_METRICS = ("true_grad_norm", "bias_norm", "bias_pvalue", "variance", "variance_ci_low",
                 "variance_ci_high", "mse", "snr", "cosine", "mean_cosine", "coordinate_variance")
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

    def __post_init__(self) -> None:
        resolve_device(self.device)
        if self.optimizer not in OPTIMIZERS:
            raise ParameterError(f"unknown optimizer {self.optimizer!r}; valid optimizers: "
                                 f"{', '.join(OPTIMIZERS)}")
        for key in ("steps", "n_samples", "eval_every"):
            if getattr(self, key) < 1:
                raise ParameterError(f"{key}={getattr(self, key)} must be at least 1")
        if self.variance_replicates < 2:
            raise ParameterError(f"variance_replicates={self.variance_replicates} must be >= 2")
        if not self.lr > 0:
            raise ParameterError(f"lr={self.lr} must be positive")


def train(problem_spec: Spec, estimator_spec: Spec, seed: int,
          settings: TrainSettings) -> list[dict[str, Any]]:
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
                         device)


def _measured(problem: Problem, estimator: Estimator, cell: Cell, theta: torch.Tensor,
              step: int) -> dict[str, Any]:
    """The trace's measurements at ``theta`` (streams of their own for each step)."""
    try:
        metrics, _, _ = measure(problem, estimator, cell, theta=theta,
                                stream="" if step == 0 else f"/step {step}")
    except Exception as exc:  # a failed measurement must not end the run
        return {**dict.fromkeys(TRACE_METRICS), "error": f"{type(exc).__name__}: {exc}"}
    return {**{key: metrics[key] for key in TRACE_METRICS}, "error": ""}


def _statistics(problem: Problem, theta: torch.Tensor) -> dict[str, float]:
    """The problem's exact statistics at θ, if it has any (``statistics(θ)``: the expected
    output length of a sequence policy, say), as ``exact_<name>`` columns."""
    statistics = getattr(problem, "statistics", None)
    return {} if statistics is None else {f"exact_{key}": value
                                          for key, value in statistics(theta).items()}


def _optimize(problem: Problem, estimator: Estimator, problem_spec: Spec, estimator_spec: Spec,
              seed: int, settings: TrainSettings, device: torch.device) -> list[dict[str, Any]]:
    # The cell whose measurement at step 0 this run reproduces; later steps use its streams
    # with the step appended, independent of each other and of the optimization's draws.
    cell = Cell(problem_spec, estimator_spec, settings.n_samples,
                settings.variance_replicates, seed, settings.max_memory_mb, settings.device)
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
            rows.append({
                "problem": str(problem_spec), "estimator": str(estimator_spec), "seed": seed,
                "device": str(device), "n_samples": settings.n_samples,
                "replicates": settings.variance_replicates, "optimizer": settings.optimizer,
                "lr": settings.lr, "step": step, "wall_s": wall,
                "value": float(problem.value(current)),
                **_statistics(problem, current),
                **_measured(problem, estimator, cell, current, step),
            })
        if step == settings.steps:
            break
        started = time.perf_counter()
        if step % settings.eval_every == 0:  # refit any state as θ moves, on fresh draws
            state = estimator.fit(problem, current, fit_generator)
        estimate = estimator.estimate(problem, current, settings.n_samples, 1, generator, state)
        optimizer.zero_grad()
        theta.grad = sign * estimate[0]
        optimizer.step()
        with torch.no_grad():
            theta.copy_(problem.project(theta))
        devices.synchronize(device)
        wall += time.perf_counter() - started
    return rows
