"""Conformance checks that every estimator and problem passes, built-in or plugin.

``check_estimator`` and ``check_problem`` return a :class:`CheckReport`; inside pytest, call
``report.raise_if_failed()``. The statistical checks use fixed seeds and a threshold of
:data:`Z_THRESHOLD` standard errors per coordinate, so a correct component fails them with
probability below ~1e-4 even for 100-dimensional θ, while a bias of a few standard errors of
the mean is caught.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vrbench import problems as problem_registry
from vrbench.bench.metrics import EstimateAccumulator, Moments, bias_test
from vrbench.bench.runner import estimate_in_chunks
from vrbench.components import Component
from vrbench.estimators.base import Estimator
from vrbench.problems.base import DTYPE, Capability, Problem

Z_THRESHOLD = 5.0
BIAS_REPLICATES = 20_000
SMALL_BATCH = 64
FD_FULL_DIM = 32
FD_DIRECTIONS = 6


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


def _instance(obj: Any) -> Any:
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
    estimator: Estimator | type[Estimator],
    problems: Iterable[Problem | str] | None = None,
    seed: int = 0,
    bias_replicates: int = BIAS_REPLICATES,
) -> CheckReport:
    """Run the estimator conformance suite on every compatible problem (default: all registered).

    Checks: metadata; on each compatible problem, output shape ``(R, dim)`` and dtype float64,
    finite values, determinism under a seed, θ left untouched, independent replicates, and —
    where the estimator claims to be unbiased — a bias test of ``bias_replicates`` estimates.
    """
    estimator = _instance(estimator)
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
        _check_pair(report, estimator, problem, n, seed, bias_replicates)
    return report


def _check_pair(
    report: CheckReport,
    estimator: Estimator,
    problem: Problem,
    n: int,
    seed: int,
    bias_replicates: int,
) -> None:
    where = f"on {problem.name}"
    theta = problem.initial_theta()
    theta_copy = theta.clone()
    try:
        state = estimator.fit(problem, theta, torch.Generator().manual_seed(seed + 1))
        first = estimator.estimate(
            problem, theta, n, SMALL_BATCH, torch.Generator().manual_seed(seed), state
        )
        again = estimator.estimate(
            problem, theta, n, SMALL_BATCH, torch.Generator().manual_seed(seed), state
        )
    except Exception as exc:
        report.record(f"runs {where}", f"raised {type(exc).__name__}: {exc}")
        return
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
    # Streamed in chunks, like the harness, so wide problems stay within memory.
    generator = torch.Generator().manual_seed(seed + 2)
    accumulator = EstimateAccumulator(problem.exact_grad(theta), bias_replicates)
    varies = False
    try:
        for estimates, _ in estimate_in_chunks(problem, estimator, theta, n, bias_replicates,
                                               generator, state):
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


def finite_difference_error(problem: Problem, theta: Tensor, seed: int = 0) -> float:
    """Largest relative gap between ``∇J·v`` and central differences of ``J`` along ``v``.

    ``v`` runs over the coordinate axes when θ has at most :data:`FD_FULL_DIM` entries, and over
    :data:`FD_DIRECTIONS` random unit directions otherwise (each difference costs two solves).
    """
    if problem.dim <= FD_FULL_DIM:
        directions = torch.eye(problem.dim, dtype=DTYPE)
    else:
        g = torch.Generator().manual_seed(seed)
        directions = torch.randn(FD_DIRECTIONS, problem.dim, generator=g, dtype=DTYPE)
        directions /= directions.norm(dim=1, keepdim=True)
    h = 1e-5
    exact = directions @ problem.exact_grad(theta)
    fd = torch.stack([(problem.value(theta + h * v) - problem.value(theta - h * v)) / (2 * h)
                      for v in directions])
    return float((exact - fd).abs().max() / (1 + fd.abs().max()))


def check_problem(problem: Problem | type[Problem], seed: int = 0) -> CheckReport:
    """Run the problem conformance suite.

    Checks: metadata and capabilities; θ's shape; sample, f and score shapes; the exact
    gradient against central finite differences of the exact objective; the sampled mean of f
    against the exact objective and the score's mean against zero (within
    :data:`Z_THRESHOLD` standard errors).
    """
    problem = _instance(problem)
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
    theta = problem.initial_theta()
    report.record(
        "initial θ",
        None
        if theta.shape == (problem.dim,) and theta.dtype == DTYPE
        else f"got shape {tuple(theta.shape)} dtype {theta.dtype}",
    )
    generator = torch.Generator().manual_seed(seed)
    samples = problem.sample(theta, (100, 50), generator)
    values, scores = problem.f(samples), problem.score(theta, samples)
    report.record("f shape", None if values.shape == (100, 50) else f"got {tuple(values.shape)}")
    report.record(
        "score shape",
        None if scores.shape == (100, 50, problem.dim) else f"got {tuple(scores.shape)}",
    )
    error = finite_difference_error(problem, theta)
    report.record("exact gradient vs finite differences",
                  None if error <= 1e-6 else f"relative error {error:.3g}")
    z_value, _ = bias_test(Moments.of(values.reshape(-1, 1)), problem.value(theta).reshape(1))
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
