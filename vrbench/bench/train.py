"""Optimization traces: follow each estimator's gradients with SGD or Adam, and measure the
estimator along the way against the exact truth.

Every ``eval_every`` steps (and at the last) the trace records the exact objective
``J(θ_t)`` and gradient norm ``‖∇J(θ_t)‖``, and measures the estimator at ``θ_t`` exactly as
a sweep's cell does (:func:`vrbench.bench.runner.measure`): bias, variance with its 95%
interval, SNR and the per-coordinate variances, from ``eval_replicates`` independent
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

**Models of data sets.** A problem whose objective is a minibatch of a data set (the image
VAEs) takes every step on a fresh minibatch
(:meth:`~vrbench.problems.base.Problem.training_batch`), and each measurement row holds its
:meth:`~vrbench.problems.base.Problem.training_metrics` (the training ELBO and the
importance-weighted test bound) beside the wall-clock time of the steps so far. With
``eval_replicates = 0`` a run records only those (no reference gradient is computed,
and ``value`` is J only where it is exact or numerical). Parameter groups may have their
own optimizer and learning rate (``groups``: the papers train a VAE's prior by SGD, the
rest by Adam). With a :class:`Checkpoint`, a run saves its state at measurement steps and
resumes from the last one, with the numbers of an uninterrupted run.

**The runs of a command.** :class:`TrainPlan` is what ``vrbench train`` and a recipe's
``[train]`` and ``[shared]`` sections ask for: every problem × estimator × seed, with one
:class:`TrainSettings` (whose defaults are the command's and the recipes'), as a list of
:class:`Run`; :func:`vrbench.bench.runs.run_all` computes them, storing each.

**Why the relax2018 recipe's runs are not these.** :mod:`vrbench.bench.online` also measures
estimators along a run, in the protocol of the REBAR and RELAX papers, and cannot be folded
into this module's runs without changing one or the other's numbers: there, every step takes
one gradient step of each estimator's control parameters on ‖ĝ‖² from its own draws, and a
measurement uses the control reached so far; here an estimator's state is refitted on
independent draws at each measurement (:meth:`~vrbench.estimators.base.Estimator.fit`), as a
sweep's cell fits it, so that the measurement at step 0 is the cell's, number for number.
The random streams differ accordingly (one per estimator there, the driver's here).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import torch

import vrbench
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

TRAIN_FILE = "train.parquet"
"""Where ``vrbench train`` (and a recipe) writes the traces of its runs, in its output."""
SHARED_FILE = "shared_run.parquet"
"""Where ``vrbench train --measure`` (and a recipe's ``[shared]``) writes the traces of shared
runs, in its output."""
DEFAULT_SEEDS = (0, 1, 2)
"""The seeds of ``vrbench train`` and of a recipe's runs when none are given: one run each."""

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
    """Steps between two measurements (there is one at the first and the last step too)."""
    eval_replicates: int = 1000
    """Independent estimates behind each measurement of the estimator's bias and variance (0:
    no measurement, only J where exact and a problem's training metrics)."""
    device: str = "cpu"
    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB
    reference: ReferenceSettings = field(default_factory=ReferenceSettings)
    eval_samples: int | None = None
    """Draws per estimate of the measurements (default: ``n_samples``, those of a step)."""
    groups: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    """Per parameter group (:meth:`~vrbench.problems.base.Problem.parameter_groups`), its own
    ``optimizer`` and/or ``lr``; the other coordinates follow ``optimizer`` and ``lr``."""

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
        if self.eval_replicates == 1 or self.eval_replicates < 0:
            raise ParameterError(f"eval_replicates={self.eval_replicates} must be 0 "
                                 "(no measurement of the estimator) or at least 2")
        if not self.lr > 0:
            raise ParameterError(f"lr={self.lr} must be positive")
        for group, options in self.groups.items():
            unknown = sorted(set(options) - {"optimizer", "lr"})
            if unknown:
                raise ParameterError(f"group {group!r}: unknown key {unknown[0]!r}; valid keys: "
                                     "optimizer, lr")
            if options.get("optimizer", self.optimizer) not in OPTIMIZERS:
                raise ParameterError(f"group {group!r}: unknown optimizer "
                                     f"{options['optimizer']!r}; valid optimizers: "
                                     f"{', '.join(OPTIMIZERS)}")
            lr = options.get("lr", self.lr)
            if isinstance(lr, bool) or not isinstance(lr, int | float) or not lr > 0:
                raise ParameterError(f"group {group!r}: lr={lr!r} must be a positive number")

    def definition(self) -> dict[str, Any]:
        """What a run's numbers depend on (names a stored run; see :class:`Checkpoint`).

        ``eval_replicates`` keeps its earlier key, ``variance_replicates``, so that runs
        stored before the field was renamed are still found."""
        return {"steps": self.steps, "n_samples": self.n_samples, "lr": self.lr,
                "optimizer": self.optimizer, "eval_every": self.eval_every,
                "variance_replicates": self.eval_replicates, "device": self.device,
                "max_memory_mb": self.max_memory_mb, "reference": self.reference.definition(),
                "eval_samples": self.eval_samples,
                "groups": {k: dict(sorted(v.items())) for k, v in sorted(self.groups.items())}}


@dataclass(frozen=True)
class Run:
    """One optimization run: ``estimator`` drives it; ``measured`` (a shared run) are the
    estimators measured along it, or None (the driver alone, as ``vrbench train`` does)."""

    problem: Spec
    estimator: Spec
    seed: int
    settings: TrainSettings
    measured: tuple[Spec, ...] | None = None

    def key(self) -> str:
        """A hash of everything the run's numbers depend on (names its stored rows)."""
        text = json.dumps({
            "problem": self.problem.name, "params": dict(sorted(self.problem.params.items())),
            "estimator": str(self.estimator), "seed": self.seed,
            "measured": None if self.measured is None else [str(s) for s in self.measured],
            "settings": self.settings.definition(), "vrbench": vrbench.__version__},
            sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> str:
        kind = "training" if self.measured is None else "shared run driven by"
        return f"{kind} {self.estimator} on {self.problem}, seed {self.seed}"


class SkippedRun(NamedTuple):
    """A (problem, estimator) pair of a plan that cannot run, and why."""

    problem: Spec
    estimator: Spec
    reason: str


@dataclass(frozen=True)
class TrainPlan:
    """The runs of ``vrbench train`` or of a recipe's ``[train]``/``[shared]`` section: one
    per problem × estimator × seed, in that order."""

    problems: tuple[Spec, ...]
    estimators: tuple[Spec, ...]
    """The estimators that drive the runs."""
    settings: TrainSettings = field(default_factory=TrainSettings)
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    n_samples: Mapping[str, int] = field(default_factory=dict)
    """Draws per estimate of particular estimators (by their name in the results), where
    they differ from ``settings.n_samples``: estimators compared at equal evaluations of f."""
    measured: tuple[Spec, ...] | None = None
    """Shared runs: the estimators measured along each run (see :func:`shared_run`)."""

    def runs(self) -> tuple[list[Run], list[SkippedRun]]:
        """The runs, and the (problem, estimator) pairs left out because the estimator does
        not apply to the problem at its ``n_samples``."""
        runs: list[Run] = []
        skipped: list[SkippedRun] = []
        for problem_spec in self.problems:
            problem = problems.make(problem_spec.name, problem_spec.params)
            for estimator_spec in self.estimators:
                n = self.n_samples.get(str(estimator_spec), self.settings.n_samples)
                reason = estimators.make(estimator_spec.name, estimator_spec.params
                                         ).incompatibility(problem, n)
                if reason is not None:
                    skipped.append(SkippedRun(problem_spec, estimator_spec, reason))
                    continue
                settings = (self.settings if n == self.settings.n_samples
                            else dataclasses.replace(self.settings, n_samples=n))
                runs.extend(Run(problem_spec, estimator_spec, seed, settings, self.measured)
                            for seed in self.seeds)
        return runs, skipped


class Checkpoint(Protocol):
    """Where a run keeps its state between measurement steps (see
    :class:`vrbench.bench.runs.RunStore`): ``load`` returns the last saved state or None."""

    def load(self) -> dict[str, Any] | None: ...

    def save(self, state: dict[str, Any]) -> None: ...

    def due(self) -> bool:
        """Whether a save is due now (they are spaced in time; the numbers do not depend on
        when they happen)."""
        ...


def train(problem_spec: Spec, estimator_spec: Spec, seed: int, settings: TrainSettings,
          store: ReferenceStore | None = None, checkpoint: Checkpoint | None = None
          ) -> list[dict[str, Any]]:
    """One optimization run on ``settings.device``: a row per measurement (see the module).

    A measurement that fails (non-finite metrics, say) is a row with its ``error`` and no
    numbers; the run goes on.
    """
    problem_spec, problem = resolve_spec(problems, problem_spec)
    estimator_spec, estimator = resolve_spec(estimators, estimator_spec)
    reason = estimator.incompatibility(problem, settings.n_samples)
    if reason is not None:
        raise ParameterError(reason)
    subject = _Subject(problem_spec, problem, estimator_spec, estimator,
                       [(estimator_spec, estimator)], seed)
    with on_device(settings.device) as device:
        return _optimize(subject, settings, device, store, checkpoint)


def shared_run(problem_spec: Spec, driver_spec: Spec, measured_specs: list[Spec], seed: int,
               settings: TrainSettings, store: ReferenceStore | None = None,
               checkpoint: Checkpoint | None = None) -> list[dict[str, Any]]:
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
    subject = _Subject(problem_spec, problem, driver_spec, driver, measured, seed)
    with on_device(settings.device) as device:
        rows = _optimize(subject, settings, device, store, checkpoint)
    return [{**row, "driver": str(driver_spec)} for row in rows]


def _measured(problem: Problem, estimator: Estimator, cell: Cell, theta: torch.Tensor,
              step: int, reference: Reference | None) -> dict[str, Any]:
    """The trace's measurements at ``theta`` (streams of their own for each step)."""
    try:
        metrics, _, _ = measure(problem, estimator, cell, theta=theta,
                                stream="" if step == 0 else f"/step {step}",
                                reference=reference, timed=False)
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

    def value(self, theta: torch.Tensor, exclude: str | None) -> float | None:
        """J(θ), plus the problem's regularizer where it has one; without measurements of
        the estimator, only where J is exact or numerical (no sampled reference is drawn)."""
        if self.settings.eval_replicates == 0 and not (
                self.problem.has_exact_gradient or type(self.problem).numerical_reference
                is not Problem.numerical_reference):
            return None
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


class _Optimizers:
    """θ as one leaf tensor per contiguous run of coordinates that share an optimizer (the
    named parameter groups with settings of their own, and the rest), each run with its own
    optimizer; θ is their concatenation."""

    def __init__(self, problem: Problem, theta: torch.Tensor, settings: TrainSettings) -> None:
        groups = problem.parameter_groups()
        unknown = sorted(set(settings.groups) - set(groups))
        if unknown:
            raise ParameterError(f"{problem.name} has no parameter group {unknown[0]!r}; its "
                                 f"groups: {', '.join(groups)}")
        dim = problem.dim
        chosen = {name: groups[name].indices(dim)[:2] for name in settings.groups}
        cuts = sorted({0, dim, *(edge for span in chosen.values() for edge in span)})
        self.parts: list[tuple[slice, torch.Tensor, torch.optim.Optimizer]] = []
        for start, end in itertools.pairwise(cuts):
            owners = [name for name, (low, high) in chosen.items() if low <= start < high]
            options = settings.groups[owners[-1]] if owners else {}
            leaf = theta.detach()[start:end].clone().requires_grad_(True)
            make = OPTIMIZERS[options.get("optimizer", settings.optimizer)]
            self.parts.append((slice(start, end), leaf,
                               make([leaf], lr=options.get("lr", settings.lr))))

    def theta(self) -> torch.Tensor:
        return torch.cat([leaf.detach() for _, leaf, _ in self.parts])

    def step(self, grad: torch.Tensor, project: Callable[[torch.Tensor], torch.Tensor]) -> None:
        for where, leaf, optimizer in self.parts:
            leaf.grad = grad[where]
            optimizer.step()
        if project is not _identity:
            projected = project(self.theta())
            with torch.no_grad():
                for where, leaf, _ in self.parts:
                    leaf.copy_(projected[where])

    def state(self) -> list[dict[str, Any]]:
        return [{"leaf": leaf.detach().clone(), "optimizer": optimizer.state_dict()}
                for _, leaf, optimizer in self.parts]

    def restore(self, state: list[dict[str, Any]]) -> None:
        with torch.no_grad():
            for (_, leaf, optimizer), saved in zip(self.parts, state, strict=True):
                leaf.copy_(saved["leaf"])
                optimizer.load_state_dict(saved["optimizer"])


def describe_groups(groups: Mapping[str, Mapping[str, Any]]) -> str:
    """The parameter groups' own settings as a trace row's ``groups``: ``"prior: SGD, lr =
    0.01"`` (groups separated by ``"; "``)."""
    described = []
    for group, options in sorted(groups.items()):
        parts = []
        if "optimizer" in options:
            parts.append({"adam": "Adam", "sgd": "SGD"}.get(options["optimizer"],
                                                           options["optimizer"]))
        if "lr" in options:
            parts.append(f"lr = {options['lr']:g}")
        described.append(f"{group}: {', '.join(parts)}")
    return "; ".join(described)


def _identity(theta: torch.Tensor) -> torch.Tensor:
    return theta


def _metrics_generator(device: torch.device, seed: int, step: int) -> torch.Generator:
    """The draws of a measurement's training metrics: their own, per seed and step."""
    return devices.generator(device, 7_919 * seed + 104_729 * step + 17)


def _statistics(problem: Problem, theta: torch.Tensor) -> dict[str, float]:
    """The problem's exact statistics at θ, if it has any (``statistics(θ)``: the expected
    output length of a sequence policy, say), as ``exact_<name>`` columns."""
    statistics = getattr(problem, "statistics", None)
    return {} if statistics is None else {f"exact_{key}": value
                                          for key, value in statistics(theta).items()}


@dataclass(frozen=True)
class _Subject:
    """What a run optimizes, which estimator drives it, which are measured along it."""

    problem_spec: Spec
    problem: Problem
    driver_spec: Spec
    driver: Estimator
    measured: list[tuple[Spec, Estimator]]
    seed: int


def _optimize(subject: _Subject, settings: TrainSettings, device: torch.device,
              store: ReferenceStore | None,
              checkpoint: Checkpoint | None = None) -> list[dict[str, Any]]:
    problem, estimator, seed = subject.problem, subject.driver, subject.seed
    problem_spec = subject.problem_spec
    # The cells whose measurements at step 0 this run reproduces; later steps use their
    # streams with the step appended, independent of each other and of the optimization's
    # draws.
    reference_settings = None if problem.has_exact_gradient else settings.reference
    cells = [(spec, other, Cell(problem_spec, spec, settings.measured_samples,
                                max(2, settings.eval_replicates), seed,
                                settings.max_memory_mb, settings.device, reference_settings))
             for spec, other in subject.measured]
    references = _References(problem, problem_spec, seed, settings, store)
    generator = devices.generator(device, seed)
    fit_generator = devices.generator(device, seed + 1_000_003)
    optimizers = _Optimizers(problem, problem.initial_theta(), settings)
    project = _identity if type(problem).project is Problem.project else problem.project
    sign = -1.0 if problem.maximize else 1.0
    groups = {"groups": describe_groups(settings.groups)} if settings.groups else {}
    rows: list[dict[str, Any]] = []
    wall = 0.0
    state = None
    first = 0
    saved = None if checkpoint is None else checkpoint.load()
    if saved is not None:
        first, wall, rows = saved["step"], saved["wall"], saved["rows"]
        optimizers.restore(saved["optimizers"])
        generator.set_state(saved["generator"])
        fit_generator.set_state(saved["fit_generator"])
    for step in range(first, settings.steps + 1):
        current = optimizers.theta()
        resumed = saved is not None and step == first
        if (step % settings.eval_every == 0 or step == settings.steps) and not resumed:
            extra = problem.training_metrics(current, _metrics_generator(device, seed, step))
            for spec, other, cell in cells:
                rows.append({
                    "problem": str(problem_spec), "estimator": str(spec), "seed": seed,
                    "device": str(device), "n_samples": settings.measured_samples,
                    "step_samples": settings.n_samples,
                    "replicates": settings.eval_replicates, "optimizer": settings.optimizer,
                    "lr": settings.lr, **groups, "step": step, "wall_s": wall,
                    "value": references.value(current, other.name), **extra,
                    **_statistics(problem, current),
                    **(_measured(problem, other, cell, current, step,
                                 references.at(current, other.name))
                       if settings.eval_replicates else {"error": ""}),
                })
            if checkpoint is not None and step < settings.steps and checkpoint.due():
                checkpoint.save({"step": step, "wall": wall, "rows": rows,
                                 "optimizers": optimizers.state(),
                                 "generator": generator.get_state(),
                                 "fit_generator": fit_generator.get_state()})
        if step == settings.steps:
            break
        started = time.perf_counter()
        batch = problem.training_batch(generator)
        if step % settings.eval_every == 0:  # refit any state as θ moves, on fresh draws
            state = estimator.fit(batch, current, fit_generator)
        estimate = estimator.estimate(batch, current, settings.n_samples, 1, generator, state)
        optimizers.step(sign * (estimate[0] + _regularizer_grad(problem, current)), project)
        devices.synchronize(device)
        wall += time.perf_counter() - started
    return rows
