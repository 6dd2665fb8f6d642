"""Optimization traces: follow each estimator's gradients with SGD or Adam, track the exact J.

At every ``eval_every`` steps the trace records the exact objective ``J(θ_t)`` and the
variance of the estimator at ``θ_t`` (from ``variance_replicates`` independent estimates),
the standard comparison of the REBAR, RELAX and DisARM papers, with the truth exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from vrbench import devices, estimators, problems
from vrbench.components import Spec
from vrbench.devices import on_device, resolve_device
from vrbench.errors import ParameterError
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Problem

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
}


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 200
    n_samples: int = 4
    lr: float = 0.05
    optimizer: str = "adam"
    eval_every: int = 10
    variance_replicates: int = 256
    device: str = "cpu"

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


def train(problem_spec: Spec, estimator_spec: Spec, seed: int,
          settings: TrainSettings) -> list[dict[str, Any]]:
    """One optimization run on ``settings.device``; rows of (step, wall-clock, exact J,
    estimator variance)."""
    problem = problems.make(problem_spec.name, problem_spec.params)
    estimator = estimators.make(estimator_spec.name, estimator_spec.params)
    reason = estimator.incompatibility(problem, settings.n_samples)
    if reason is not None:
        raise ParameterError(reason)
    with on_device(settings.device) as device:
        return _optimize(problem, estimator, problem_spec, estimator_spec, seed, settings,
                         device)


def _optimize(problem: Problem, estimator: Estimator, problem_spec: Spec, estimator_spec: Spec,
              seed: int, settings: TrainSettings, device: torch.device) -> list[dict[str, Any]]:
    generator = devices.generator(device, seed)
    fit_generator = devices.generator(device, seed + 1_000_003)
    probe_generator = devices.generator(device, seed + 2_000_003)
    theta = problem.initial_theta().clone().requires_grad_(True)
    optimizer = OPTIMIZERS[settings.optimizer]([theta], lr=settings.lr)
    sign = -1.0 if problem.maximize else 1.0
    rows: list[dict[str, Any]] = []
    wall = 0.0
    state = None
    for step in range(settings.steps + 1):
        current = theta.detach().clone()
        if step % settings.eval_every == 0 or step == settings.steps:
            probe = estimator.estimate(problem, current, settings.n_samples,
                                       settings.variance_replicates, probe_generator,
                                       estimator.fit(problem, current, probe_generator))
            rows.append({
                "problem": str(problem_spec), "estimator": str(estimator_spec), "seed": seed,
                "device": str(device), "n_samples": settings.n_samples,
                "optimizer": settings.optimizer, "lr": settings.lr, "step": step, "wall_s": wall,
                "value": float(problem.value(current)),
                "grad_variance": float(probe.var(dim=0).sum()),
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
