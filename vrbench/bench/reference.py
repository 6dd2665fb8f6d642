"""Reference gradients: ∇J(θ) of stated precision for problems without an exact gradient.

Every statistic of vrbench compares estimates with ∇J(θ). Where a problem knows it exactly
(closed form, enumeration, dynamic programming) the reference *is* the exact gradient, with
no uncertainty. Where it does not (:attr:`~vrbench.problems.base.Problem.has_exact_gradient`
is false), the reference is computed once per (problem, θ), in one of two ways:

* **Numerical.** The problem's :meth:`~vrbench.problems.base.Problem.numerical_reference`:
  a deterministic method (Gauss–Legendre quadrature of a one-dimensional integral per data
  point, an exact sum over part of the model) with an estimate of its error per coordinate.
* **Sampled.** The mean of N estimates of a declared unbiased estimator (the first of the
  problem's :attr:`~vrbench.problems.base.Problem.reference_estimators` that is not the
  estimator being measured: an estimator is never its own reference), each from
  :data:`REFERENCE_SAMPLES` draws, with its standard error per coordinate. A pilot of
  :data:`PILOT_ESTIMATES` estimates measures their spread; N is then the number that brings
  the standard error of the reference, ‖se‖₂ = √(trace Cov / N), to ``precision`` · ‖∇J‖
  (default 1%; :data:`SAFETY` times the pilot's count), at most ``max_estimates`` (then the
  precision reached is what is stated).
  N depends on the seeded pilot alone, never on the clock, so a reference is the same on
  every machine. J gets the same treatment: the mean of f over as many draws.

Bias tests then account for both uncertainties: the test directions are fixed before the
reference is drawn (the pilot mean's direction and the coordinate axes, or 16 fixed random
directions beyond 16 dimensions; see :func:`~vrbench.bench.metrics.bias_directions`), the
reference's projections on them are accumulated with their standard errors, and a mean is
compared with them in units of ``√(se_estimator² + se_reference²)``.

A sweep stores each reference beside its cells (``OUTPUT/references/<key>.parquet``, the key
a hash of the problem, θ, the reference estimator, the settings, the seed and the device), so
a rerun reuses it; :class:`ReferenceStore` reads and writes them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

import vrbench
from vrbench import devices, estimators
from vrbench.bench.metrics import Moments, bias_directions
from vrbench.components import Spec, parse_specs
from vrbench.errors import VrbenchError
from vrbench.problems.base import DTYPE, Problem

DEFAULT_PRECISION = 0.01
"""Target standard error of a sampled reference, relative to ‖∇J‖."""

DEFAULT_MAX_ESTIMATES = 1_000_000
"""Most estimates a sampled reference averages (its budget)."""

PILOT_ESTIMATES = 2_000
"""Estimates that size a sampled reference (not part of its mean)."""

REFERENCE_SAMPLES = 4
"""Draws per estimate of a sampled reference (or the estimator's ``min_samples``)."""

SAFETY = 1.1
"""Estimates planned beyond what the pilot says the precision needs (the pilot's spread is
itself an estimate)."""

REFERENCE_DIR = "references"
MEMORY_MB = 256


class ReferenceError(VrbenchError):
    """A reference gradient that cannot be computed (no unbiased estimator to compute it)."""


@dataclass(frozen=True)
class ReferenceSettings:
    """How precise a sampled reference should be, and its budget in estimates."""

    precision: float = DEFAULT_PRECISION
    max_estimates: int = DEFAULT_MAX_ESTIMATES

    def __post_init__(self) -> None:
        if not 0 < self.precision < 1:
            raise ReferenceError(f"reference precision {self.precision} must lie in (0, 1)")
        if self.max_estimates < PILOT_ESTIMATES:
            raise ReferenceError(f"reference budget of {self.max_estimates} estimates must be "
                                 f"at least {PILOT_ESTIMATES}")

    def definition(self) -> dict[str, Any]:
        return {"precision": self.precision, "max_estimates": self.max_estimates}


@dataclass(frozen=True, eq=False)
class Reference:
    """∇J(θ) and J(θ) as a statistic holds estimates against: exact, numerical or sampled.

    ``se`` is the standard error (or numerical error estimate) of each coordinate of
    ``grad``; ``directions`` are the unit directions bias tests project on and
    ``direction_se`` the standard errors of the reference's projections on them.
    """

    grad: Tensor
    se: Tensor
    value: float
    value_se: float
    directions: Tensor
    direction_se: Tensor
    method: str
    estimator: str = ""
    estimates: int = 0
    seconds: float = 0.0

    @property
    def exact(self) -> bool:
        return self.method == "exact"

    @property
    def se_norm(self) -> float:
        """‖se‖₂: the root mean square error of the whole reference vector."""
        return float(self.se.norm())

    @property
    def precision(self) -> float:
        """‖se‖₂ / ‖∇J‖: the reference's relative standard error."""
        norm = float(self.grad.norm())
        return self.se_norm / norm if norm > 0 else (0.0 if self.se_norm == 0 else math.inf)

    def expected(self) -> Tensor:
        """The reference's projections on :attr:`directions`."""
        return self.directions @ self.grad

    def describe(self) -> str:
        """How the reference was obtained, in words, for results and captions."""
        if self.exact:
            return "exact"
        precision = self.precision
        text = f"{precision:.2%}" if precision >= 1e-4 else f"{precision:.1e}"
        return f"{self.method}, ± {text} of ‖∇J‖"


def exact_reference(problem: Problem, theta: Tensor) -> Reference:
    """The exact ∇J and J as a reference without uncertainty."""
    value = float(problem.value(theta))
    grad = problem.exact_grad(theta).detach().cpu().to(DTYPE)
    directions = bias_directions(grad)
    return Reference(grad, torch.zeros_like(grad), value, 0.0,
                     directions, torch.zeros(directions.shape[0], dtype=DTYPE), "exact")


def numerical(problem: Problem, theta: Tensor) -> Reference:
    """The problem's numerical reference, its error bounds projected on the test directions
    (``Σ_i |v_i| error_i``: no cancellation assumed)."""
    started = time.perf_counter()
    result = problem.numerical_reference(theta)
    grad = result.grad.detach().cpu().to(DTYPE)
    error = result.grad_error.detach().cpu().to(DTYPE).abs()
    directions = bias_directions(grad)
    return Reference(grad, error, float(result.value), float(result.value_error), directions,
                     directions.abs() @ error, result.method,
                     seconds=time.perf_counter() - started)


def reference_estimator(problem: Problem, exclude: str | None = None) -> Spec:
    """The first of the problem's reference estimators that is not ``exclude`` (a name) and
    applies to it."""
    tried = []
    for text in problem.reference_estimators:
        (spec,) = parse_specs(text)
        tried.append(spec.name)
        if spec.name == exclude:
            continue
        candidate = estimators.make(spec.name, spec.params)
        samples = max(candidate.min_samples, REFERENCE_SAMPLES)
        if candidate.unbiased and candidate.incompatibility(problem, samples) is None:
            return spec
    raise ReferenceError(
        f"{problem.name} has no exact gradient and no unbiased reference estimator other than "
        f"{exclude!r} (its reference_estimators: {', '.join(tried) or 'none'})")


@dataclass(frozen=True)
class _Sampler:
    """The reference estimator, fitted at θ, drawing estimates of ``n`` samples."""

    problem: Problem
    estimator: Any
    theta: Tensor
    n: int
    state: Any
    device: torch.device

    def moments(self, count: int, generator: torch.Generator,
                directions: Tensor | None = None) -> tuple[Moments, Moments | None]:
        """The moments of ``count`` estimates, and of their projections on ``directions``."""
        from vrbench.bench.runner import estimate_in_chunks

        total: Moments | None = None
        projected: Moments | None = None
        for estimates, _ in estimate_in_chunks(self.problem, self.estimator, self.theta,
                                               self.n, count, generator, self.state,
                                               MEMORY_MB, self.device):
            batch = Moments.of(estimates)
            total = batch if total is None else total.merge(batch)
            if directions is not None:
                along = Moments.of(estimates @ directions.T)
                projected = along if projected is None else projected.merge(along)
        assert total is not None
        return total, projected


def _mean_of_f(problem: Problem, theta: Tensor, count: int, generator: torch.Generator
               ) -> tuple[float, float]:
    """The mean of f over ``count`` draws and its standard error."""
    moments: Moments | None = None
    size = max(1, min(count, 2**22 // max(1, problem.sample_width())))
    done = 0
    while done < count:
        chunk = min(size, count - done)
        values = problem.f(problem.sample(theta, (chunk, 1), generator)).reshape(chunk, 1)
        batch = Moments.of(values.detach().cpu().to(DTYPE))
        moments = batch if moments is None else moments.merge(batch)
        done += chunk
    assert moments is not None
    return float(moments.mean[0]), float(moments.variance()[0].sqrt()) / math.sqrt(count)


def sampled(problem: Problem, theta: Tensor, spec: Spec, settings: ReferenceSettings,
            seed: int, device: str | torch.device = "cpu") -> Reference:
    """The mean of N estimates of the estimator ``spec`` (see the module)."""
    where = devices.resolve_device(device)
    started = time.perf_counter()
    estimator = estimators.make(spec.name, spec.params)
    n = max(estimator.min_samples, REFERENCE_SAMPLES)

    def generator(purpose: int) -> torch.Generator:
        return devices.generator(where, seed * 1_000_003 + purpose)

    with devices.on_device(where):
        theta = theta.to(where)
        state = estimator.fit(problem, theta, generator(1))
        sampler = _Sampler(problem, estimator, theta, n, state, where)
        pilot, _ = sampler.moments(PILOT_ESTIMATES, generator(2))
        directions = bias_directions(pilot.mean)
        spread = float(pilot.variance().sum())
        target = (settings.precision * float(pilot.mean.norm())) ** 2
        needed = math.ceil(SAFETY * spread / target) if target > 0 else settings.max_estimates
        count = max(PILOT_ESTIMATES, min(settings.max_estimates, needed))
        total, projected = sampler.moments(count, generator(3), directions)
        value, value_se = _mean_of_f(problem, theta, count * n, generator(4))
    assert projected is not None
    se = (total.variance() / count).sqrt()
    return Reference(total.mean, se, value, value_se, directions,
                     (projected.variance() / count).sqrt(),
                     f"mean of {count:,} estimates of {spec} (n = {n})", str(spec), count,
                     time.perf_counter() - started)


def compute_reference(problem: Problem, theta: Tensor, settings: ReferenceSettings | None = None,
                      exclude: str | None = None, seed: int = 0,
                      device: str | torch.device = "cpu") -> Reference:
    """The reference at θ: exact where the problem has an exact gradient, else numerical
    where it offers one, else sampled from its first reference estimator other than
    ``exclude``."""
    if problem.has_exact_gradient:
        with devices.on_device(device):
            return exact_reference(problem, theta.to(devices.resolve_device(device)))
    try:
        with devices.on_device(device):
            return numerical(problem, theta.to(devices.resolve_device(device)))
    except NotImplementedError:
        pass
    return sampled(problem, theta, reference_estimator(problem, exclude),
                   settings or ReferenceSettings(), seed, device)


def theta_label(theta: Tensor) -> str:
    """A short digest of θ's values, naming it in reference keys."""
    data = theta.detach().cpu().to(DTYPE).contiguous().numpy().tobytes()
    return hashlib.sha256(data).hexdigest()[:16]


class ReferenceStore:
    """References stored beside a sweep's cells, one Parquet file each, reused by reruns."""

    def __init__(self, output: str | os.PathLike[str]) -> None:
        self.directory = Path(output) / REFERENCE_DIR

    def key(self, problem_spec: Spec, theta: Tensor, settings: ReferenceSettings,
            estimator: str, seed: int, device: str) -> str:
        text = json.dumps({
            "problem": problem_spec.name, "params": dict(sorted(problem_spec.params.items())),
            "theta": theta_label(theta), "settings": settings.definition(),
            "estimator": estimator, "seed": seed, "device": device,
            "vrbench": vrbench.__version__}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def load(self, key: str) -> Reference | None:
        import pyarrow.parquet as pq

        path = self.directory / f"{key}.parquet"
        if not path.exists():
            return None
        try:
            (row,) = pq.read_table(path).to_pylist()
        except Exception:  # a damaged file is computed again
            return None
        return _from_row(row)

    def save(self, key: str, reference: Reference) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.directory.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist([_to_row(reference)])
        handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".", suffix=".tmp")
        os.close(handle)
        try:
            pq.write_table(table, temporary)
            os.replace(temporary, self.directory / f"{key}.parquet")
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)


def _to_row(reference: Reference) -> dict[str, Any]:
    return {"grad": reference.grad.tolist(), "se": reference.se.tolist(),
            "value": reference.value, "value_se": reference.value_se,
            "directions": reference.directions.tolist(),
            "direction_se": reference.direction_se.tolist(), "method": reference.method,
            "estimator": reference.estimator, "estimates": reference.estimates,
            "seconds": reference.seconds}


def _from_row(row: Mapping[str, Any]) -> Reference:
    def tensor(values: Any) -> Tensor:
        return torch.tensor(values, dtype=DTYPE)

    return Reference(tensor(row["grad"]), tensor(row["se"]), row["value"], row["value_se"],
                     tensor(row["directions"]), tensor(row["direction_se"]), row["method"],
                     row["estimator"], row["estimates"], row["seconds"])


def stored_reference(store: ReferenceStore | None, problem_spec: Spec, problem: Problem,
                     theta: Tensor, settings: ReferenceSettings | None, exclude: str | None,
                     seed: int, device: str = "cpu") -> Reference:
    """:func:`compute_reference`, through ``store`` where the reference is not exact (read
    when stored, else computed and stored)."""
    numerical_offered = type(problem).numerical_reference is not Problem.numerical_reference
    if problem.has_exact_gradient or numerical_offered or store is None:
        return compute_reference(problem, theta, settings, exclude, seed, device)
    settings = settings or ReferenceSettings()
    estimator = str(reference_estimator(problem, exclude))
    key = store.key(problem_spec, theta, settings, estimator, seed, device)
    found = store.load(key)
    if found is not None:
        return found
    reference = compute_reference(problem, theta, settings, exclude, seed, device)
    store.save(key, reference)
    return reference


MAX_COORDINATES = 10_000
"""Largest θ whose per-coordinate columns (lists of ``dim`` numbers) a result row holds; a
larger θ (a network's 10⁵ weights) is summarized per parameter group instead."""

COORDINATE_COLUMNS = ("true_grad", "coordinate_bias", "coordinate_variance",
                      "coordinate_variance_ci_low", "coordinate_variance_ci_high",
                      "exact_coordinate_variance")


def reference_columns(reference: Reference, problem: Problem, metrics: Mapping[str, Any]
                      ) -> dict[str, Any]:
    """The columns a result row adds for its reference and parameter groups, and the
    per-coordinate columns emptied where θ has more than :data:`MAX_COORDINATES` entries.

    Per group g of :meth:`~vrbench.problems.base.Problem.parameter_groups`:
    ``group_true_grad_norm`` ‖∇J_g‖, ``group_bias_norm`` ‖mean ĝ_g − ∇J_g‖,
    ``group_variance`` the trace of the covariance of ĝ_g (the groups' variances sum to
    ``variance``) and ``group_reference_se`` ‖se_g‖ of the reference.
    """
    groups = problem.parameter_groups()
    bias = torch.tensor(metrics["coordinate_bias"], dtype=DTYPE)
    variance = torch.tensor(metrics["coordinate_variance"], dtype=DTYPE)
    columns: dict[str, Any] = {
        "reference": reference.describe(),
        "reference_se": reference.se_norm,
        "reference_estimates": reference.estimates,
        "reference_seconds": reference.seconds,
        "value_se": reference.value_se,
        "parameter_groups": list(groups),
        "group_true_grad_norm": [float(reference.grad[s].norm()) for s in groups.values()],
        "group_bias_norm": [float(bias[s].norm()) for s in groups.values()],
        "group_variance": [float(variance[s].sum()) for s in groups.values()],
        "group_reference_se": [float(reference.se[s].norm()) for s in groups.values()],
    }
    if reference.grad.numel() > MAX_COORDINATES:
        columns.update(dict.fromkeys(COORDINATE_COLUMNS))
    return columns


def sweep_references(cells: Any, output: str | os.PathLike[str]) -> dict[str, Reference]:
    """The reference of every cell (by cell id) whose problem has no exact gradient, read
    from or stored in ``output``'s reference store: one per (problem, θ) and reference
    estimator, shared by the cells measured against it. A reference that cannot be computed
    is left out: its cells then fail on their own, with the reason."""
    store = ReferenceStore(output)
    found: dict[str, Reference] = {}
    for cell in cells:
        if cell.reference is None:
            continue
        try:
            problem = cell.build()[0]
            with devices.on_device(cell.device):
                theta = problem.initial_theta()
            found[cell.key()] = stored_reference(store, cell.problem, problem, theta,
                                                 cell.reference, cell.estimator.name,
                                                 cell.seed, cell.device)
        except Exception:  # the cell reports it when it runs
            continue
    return found
