"""Conformance checks that every estimator and problem passes, built-in or plugin.

``check_estimator`` and ``check_problem`` return a :class:`CheckReport`; inside pytest, call
``report.raise_if_failed()``. The statistical checks use fixed seeds and a threshold of
:data:`Z_THRESHOLD` standard errors per coordinate, so a correct component fails them with
probability below ~1e-4 even for 100-dimensional θ, while a bias of a few standard errors of
the mean is caught.

Both suites also run the component on torch's ``meta`` device, a stand-in for a GPU that
needs none: meta tensors carry shapes but no data, so a tensor left on the CPU (a constant
built without :mod:`vrbench.devices`, a NumPy round trip) makes torch raise "not on the
expected device", exactly as it would on CUDA. See :class:`MetaDevice`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from vrbench import devices
from vrbench import estimators as estimator_registry
from vrbench import problems as problem_registry
from vrbench.bench.metrics import EstimateAccumulator, Moments, bias_test
from vrbench.bench.runner import estimate_in_chunks
from vrbench.components import Component
from vrbench.devices import built_on_cpu, on_device, resolve_device
from vrbench.estimators.base import Estimator
from vrbench.problems.base import DTYPE, Capability, Problem

Z_THRESHOLD = 5.0
BIAS_REPLICATES = 20_000
SMALL_BATCH = 64
FD_FULL_DIM = 32
FD_DIRECTIONS = 6
META_BATCH = 8
META_VALUE_READS = 10_000


class MetaDevice(TorchFunctionMode):
    """Run code on torch's meta device as if it were a GPU, to find device bugs on a CPU.

    Use as ``with torch.device("meta"), MetaDevice(generators): ...``. Meta tensors have no
    values, so reading one (``bool``, ``int``, ``float``, ``item``) gets a fixed answer
    (true, 1) instead of an error; after :data:`META_VALUE_READS` such reads the run stops, in
    case a loop waits on a sampled value. Random draws must come from ``generators`` (those
    handed to the component): on a GPU any other generator would live on the CPU and fail.
    Seeded constants belong in :func:`vrbench.devices.built_on_cpu`, which this allows.
    """

    _READS: ClassVar[dict[Any, Any]] = {
        Tensor.__bool__: True, Tensor.__int__: 1, Tensor.__index__: 1,
        Tensor.__float__: 1.0, Tensor.item: 1,
    }

    def __init__(self, generators: Iterable[torch.Generator]) -> None:
        super().__init__()
        self.generators = list(generators)
        self.reads = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in self._READS and args and isinstance(args[0], Tensor) and args[0].is_meta:
            self.reads += 1
            if self.reads > META_VALUE_READS:
                raise RuntimeError(f"read {META_VALUE_READS} tensor values on the meta device; "
                                   "does a loop wait on a sampled value?")
            return self._READS[func]
        drawn_from = kwargs.get("generator")
        if (drawn_from is not None and all(drawn_from is not g for g in self.generators)
                and _draw_device(args, kwargs).type == "meta"):
            raise RuntimeError(
                f"{getattr(func, '__name__', func)} draws from a generator that was not handed "
                "in; off the CPU it would not match the device (build seeded constants with "
                "vrbench.devices.built_on_cpu)")
        return func(*args, **kwargs)


def _draw_device(args: tuple, kwargs: dict) -> torch.device:
    """Where a random function draws: its ``device`` argument, else its input's device."""
    if kwargs.get("device") is not None:
        return torch.device(kwargs["device"])
    tensors = [a for a in args if isinstance(a, Tensor)]
    return tensors[0].device if tensors else torch.get_default_device()


def _meta_estimates_failure(estimator: Estimator, problem: Problem, n: int) -> str | None:
    """Why ``estimator`` cannot run on ``problem`` off the CPU, or None (see MetaDevice)."""
    fit_generator, generator = torch.Generator(), torch.Generator()
    try:
        with torch.device("meta"), MetaDevice([fit_generator, generator]):
            theta = problem.initial_theta()
            state = estimator.fit(problem, theta, fit_generator)
            estimates = estimator.estimate(problem, theta, n, META_BATCH, generator, state)
    except Exception as exc:
        return f"raised {type(exc).__name__}: {exc}"
    if not isinstance(estimates, Tensor) or not estimates.is_meta:
        return "estimates were not on the device of θ"
    return None


def _meta_problem_failure(problem: Problem) -> str | None:
    """Why ``problem`` cannot run off the CPU, or None (see MetaDevice)."""
    generator = torch.Generator()
    try:
        with torch.device("meta"), MetaDevice([generator]):
            theta = problem.initial_theta()
            samples = problem.sample(theta, (4, 2), generator)
            outputs = {"θ": theta, "f": problem.f(samples), "score": problem.score(theta, samples),
                       "J": problem.value(theta), "∇J": problem.exact_grad(theta)}
    except Exception as exc:
        return f"raised {type(exc).__name__}: {exc}"
    stray = [name for name, tensor in outputs.items() if not tensor.is_meta]
    return f"{', '.join(stray)} not on the device of θ" if stray else None


@dataclass
class CheckReport:
    """The outcome of a conformance run: what passed and what failed, and by how much."""

    subject: str
    passed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def record(self, check: str, failure: str | None) -> None:
        if failure is None:
            self.passed.append(check)
        else:
            self.failures.append(f"{check}: {failure}")

    def raise_if_failed(self) -> None:
        if self.failures:
            raise AssertionError(
                f"{self.subject} failed {len(self.failures)} check(s):\n  "
                + "\n  ".join(self.failures)
            )

    def __str__(self) -> str:
        lines = [f"{self.subject}: {len(self.passed)} passed, {len(self.failures)} failed"]
        lines += [f"  FAIL {f}" for f in self.failures]
        return "\n".join(lines)


def _instance(obj: Any, registry: Any) -> Any:
    """A component from an instance, a class or a registered name."""
    if isinstance(obj, str):
        return registry.make(obj)
    return obj.from_params() if isinstance(obj, type) else obj


def _metadata_failure(component: Component, kind: str) -> str | None:
    if not (type(component).__doc__ or "").strip():
        return f"{kind} has no docstring stating what it computes"
    return None


def _subject(component: Component, kind: str) -> str:
    """How reports name a component; unregistered classes (not yet installed) by class name."""
    name = component.name
    return f"{kind} {name}" if name != "<unregistered>" else f"{kind} {type(component).__name__}"


def check_estimator(
    estimator: Estimator | type[Estimator] | str,
    problems: Iterable[Problem | str] | None = None,
    seed: int = 0,
    bias_replicates: int = BIAS_REPLICATES,
    device: str | torch.device = "cpu",
) -> CheckReport:
    """Run the estimator conformance suite on every compatible problem (default: all registered).

    Checks: metadata; on each compatible problem, output shape ``(R, dim)``, dtype float64 and
    device, finite values, determinism under a seed, θ left untouched, independent
    replicates, and — where the estimator claims to be unbiased — a bias test of
    ``bias_replicates`` estimates. The estimator runs on ``device``.
    """
    device = resolve_device(device)
    estimator = _instance(estimator, estimator_registry)
    report = CheckReport(_subject(estimator, "estimator"))
    report.record("metadata", _metadata_failure(estimator, "estimator"))
    bad_caps = set(estimator.requires) - set(Capability)
    report.record("requirements", f"unknown capabilities {sorted(bad_caps)}" if bad_caps else None)
    report.record("unbiased claim", None if isinstance(estimator.unbiased, bool)
                  else f"unbiased must be a bool, got {estimator.unbiased!r}")
    counts_ok = all(isinstance(v, int) and v >= 1
                    for v in (estimator.min_samples, estimator.evals_per_sample))
    report.record("sample counts", None if counts_ok else
                  f"min_samples={estimator.min_samples!r} and evals_per_sample="
                  f"{estimator.evals_per_sample!r} must be integers >= 1")
    pool = [
        problem_registry.make(p) if isinstance(p, str) else p
        for p in (problems if problems is not None else problem_registry.registry.names())
    ]
    n = max(2, estimator.min_samples)
    compatible = [p for p in pool if estimator.incompatibility(p, n) is None]
    report.record(
        "applies to some problem",
        None if compatible else "no compatible problem among those checked",
    )
    for problem in compatible:
        _check_pair(report, estimator, problem, n, seed, bias_replicates, device)
    return report


def _check_pair(
    report: CheckReport,
    estimator: Estimator,
    problem: Problem,
    n: int,
    seed: int,
    bias_replicates: int,
    device: torch.device,
) -> None:
    where = f"on {problem.name}"
    with on_device(device):
        theta = problem.initial_theta()
        theta_copy = theta.clone()
        try:
            state = estimator.fit(problem, theta, devices.generator(device, seed + 1))
            first = estimator.estimate(
                problem, theta, n, SMALL_BATCH, devices.generator(device, seed), state
            )
            again = estimator.estimate(
                problem, theta, n, SMALL_BATCH, devices.generator(device, seed), state
            )
        except Exception as exc:
            report.record(f"runs {where}", f"raised {type(exc).__name__}: {exc}")
            return
        true_grad = problem.exact_grad(theta).cpu()
    report.record(f"device {where}", None if first.device.type == device.type
                  else f"estimates on {first.device}, expected {device}")
    first, again = first.cpu(), again.cpu()
    report.record(
        f"shape {where}",
        None
        if first.shape == (SMALL_BATCH, problem.dim)
        else f"got {tuple(first.shape)}, expected {(SMALL_BATCH, problem.dim)}",
    )
    report.record(f"dtype {where}", None if first.dtype == DTYPE else f"got {first.dtype}")
    report.record(
        f"finite {where}", None if bool(torch.isfinite(first).all()) else "non-finite estimates"
    )
    report.record(
        f"deterministic under a seed {where}",
        None if torch.equal(first, again) else "same seed gave different estimates",
    )
    report.record(
        f"θ not mutated {where}",
        None if torch.equal(theta, theta_copy) else "θ was modified in place",
    )
    report.record(f"runs off the CPU {where}", _meta_estimates_failure(estimator, problem, n))
    # Streamed in chunks, like the harness, so wide problems stay within memory.
    generator = devices.generator(device, seed + 2)
    accumulator = EstimateAccumulator(true_grad, bias_replicates)
    varies = False
    try:
        for estimates, _ in estimate_in_chunks(problem, estimator, theta, n, bias_replicates,
                                               generator, state, device=device):
            varies = varies or bool((estimates != first[0]).any())
            accumulator.update(estimates)
    except (ValueError, FloatingPointError) as exc:
        report.record(f"batched estimates {where}", str(exc))
        return
    exact = torch.allclose(first[0], accumulator.true_grad, rtol=1e-10, atol=1e-14)
    report.record(f"independent replicates {where}",
                  None if varies or exact  # a zero-variance estimator may repeat itself
                  else f"all {bias_replicates} replicates are identical")
    if not estimator.unbiased:
        return
    t_stat, _ = accumulator.bias_test()
    report.record(
        f"unbiased {where}",
        None if t_stat <= Z_THRESHOLD
        else f"mean estimate is {t_stat:.1f} standard errors from the exact gradient "
             f"along some direction (threshold {Z_THRESHOLD}, {bias_replicates} estimates "
             f"of {n} samples)",
    )


@built_on_cpu
def _difference_directions(dim: int, seed: int) -> Tensor:
    """The coordinate axes up to :data:`FD_FULL_DIM` entries, else random unit directions."""
    if dim <= FD_FULL_DIM:
        return torch.eye(dim, dtype=DTYPE)
    g = torch.Generator().manual_seed(seed)
    directions = torch.randn(FD_DIRECTIONS, dim, generator=g, dtype=DTYPE)
    return directions / directions.norm(dim=1, keepdim=True)


def finite_difference_error(problem: Problem, theta: Tensor, seed: int = 0) -> float:
    """Largest relative gap between ``∇J·v`` and central differences of ``J`` along ``v``.

    ``v`` runs over the coordinate axes when θ has at most :data:`FD_FULL_DIM` entries, and over
    :data:`FD_DIRECTIONS` random unit directions otherwise (each difference costs two solves).
    """
    directions = _difference_directions(problem.dim, seed).to(theta.device)
    h = 1e-5
    exact = directions @ problem.exact_grad(theta)
    fd = torch.stack([(problem.value(theta + h * v) - problem.value(theta - h * v)) / (2 * h)
                      for v in directions])
    return float((exact - fd).abs().max() / (1 + fd.abs().max()))


def _weighted_score_failure(weights: Tensor, scores: Tensor, weighted: Tensor) -> str | None:
    """Why ``weighted`` is not ``(1/n) Σ_j w_j score_j``, or None."""
    if scores.shape[:2] != weights.shape or weighted.shape != (scores.shape[0], scores.shape[2]):
        return f"weighted_score returned shape {tuple(weighted.shape)}"
    reference = torch.einsum("rn,rnd->rd", weights, scores) / weights.shape[1]
    scale = float(reference.abs().max())
    if torch.allclose(weighted, reference, rtol=1e-9, atol=1e-12 * scale):
        return None
    return f"differs from the scores by up to {float((weighted - reference).abs().max()):.3g}"


def check_problem(problem: Problem | type[Problem] | str, seed: int = 0,
                  device: str | torch.device = "cpu") -> CheckReport:
    """Run the problem conformance suite, computing on ``device``.

    Checks: metadata and capabilities; θ's shape; sample, f and score shapes;
    ``weighted_score`` against the scores; the exact gradient against central finite
    differences of the exact objective; the sampled mean of f
    against the exact objective and the score's mean against zero (within
    :data:`Z_THRESHOLD` standard errors).
    """
    device = resolve_device(device)
    problem = _instance(problem, problem_registry)
    report = CheckReport(_subject(problem, "problem"))
    report.record("metadata", _metadata_failure(problem, "problem"))
    caps = set(problem.capabilities)
    unknown = caps - set(Capability)
    both = {Capability.DISCRETE, Capability.CONTINUOUS} <= caps
    report.record(
        "capabilities",
        f"unknown {sorted(unknown)}"
        if unknown
        else "both discrete and continuous"
        if both
        else None,
    )
    with on_device(device):
        theta = problem.initial_theta()
        samples = problem.sample(theta, (100, 50), devices.generator(device, seed))
        values, scores = problem.f(samples), problem.score(theta, samples)
        weights = torch.randn(values.shape, generator=devices.generator(device, seed + 1),
                              dtype=DTYPE)
        weighted = problem.weighted_score(theta, samples, weights)
        error = finite_difference_error(problem, theta)
        value = problem.value(theta).reshape(1).cpu()
    report.record(
        "initial θ",
        None
        if theta.shape == (problem.dim,) and theta.dtype == DTYPE
        else f"got shape {tuple(theta.shape)} dtype {theta.dtype}",
    )
    report.record("device", None if values.device.type == scores.device.type == device.type
                  else f"f on {values.device} and score on {scores.device}, expected {device}")
    report.record("runs off the CPU", _meta_problem_failure(problem))
    values, scores = values.cpu(), scores.cpu()
    report.record("f shape", None if values.shape == (100, 50) else f"got {tuple(values.shape)}")
    report.record(
        "score shape",
        None if scores.shape == (100, 50, problem.dim) else f"got {tuple(scores.shape)}",
    )
    report.record("weighted score equals the mean of weighted scores",
                  _weighted_score_failure(weights.cpu(), scores, weighted.cpu()))
    report.record("exact gradient vs finite differences",
                  None if error <= 1e-6 else f"relative error {error:.3g}")
    z_value, _ = bias_test(Moments.of(values.reshape(-1, 1)), value)
    report.record(
        "sampled mean of f equals J",
        None if z_value <= Z_THRESHOLD else f"{z_value:.1f} standard errors apart",
    )
    z_score, _ = bias_test(Moments.of(scores.reshape(-1, problem.dim)),
                           torch.zeros(problem.dim, dtype=DTYPE))
    report.record(
        "score has mean zero",
        None if z_score <= Z_THRESHOLD else f"{z_score:.1f} standard errors from zero",
    )
    return report
