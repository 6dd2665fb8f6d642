"""The exact variance of an estimator, where it can be computed without sampling.

An estimate is a function of its random draws. When those draws take finitely many values
(a small discrete support) or can be integrated by quadrature (a univariate Gaussian), the
estimator is run once on every outcome, each weighted by its probability, and the variance
of one estimate is summed exactly:

* **Enumeration.** A problem with ``support()`` and an exact ``log_prob`` (see
  :class:`~vrbench.problems.base.Problem`): every n-tuple of outcomes, with probability the
  product of theirs, up to :data:`MAX_OUTCOMES` tuples.
* **Quadrature.** A univariate Gaussian problem (capability ``GAUSSIAN``, ``dim == 2``):
  composite Gauss–Legendre quadrature of the standard normal noise ε over [−12, 12], split at
  the points where f is not smooth (:meth:`~vrbench.problems.base.Problem.nonsmooth_points`),
  refined until two resolutions agree to :data:`QUADRATURE_RTOL`; one draw (``n = 1``).
* **Averages.** An estimator that declares ``sample_average`` (its estimate from n draws is
  the mean of n independent single-draw terms, given its fitted state) has ``1/n`` times its
  single-draw variance, so the one-draw computation serves every n.

The estimator is handed a stand-in for the problem whose ``sample`` (or ``sample_noise``)
returns those outcomes instead of random ones. It qualifies only if it draws exactly once,
through that method, with the shape asked for, and never from its generator; anything else
(extra uniforms, a second draw) and the exact variance is unknown (``None``). The variance
is conditional on the fitted state, as the measured one is.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vrbench.estimators.base import Estimator
from vrbench.problems.base import DTYPE, Capability, Problem

MAX_OUTCOMES = 2**16
"""Most n-tuples of outcomes enumerated for one exact variance."""

QUADRATURE_RTOL = 1e-9
NOISE_BOUND = 12.0
"""ε beyond ±12 has probability 4e-33: outside every float64 sum."""
NODES_PER_PANEL = 16
FIRST_PANELS = 64
MAX_PANELS = 4096


class _NotExact(Exception):
    """The estimator draws in a way the stand-in cannot answer exactly."""


@dataclass(frozen=True)
class ExactVariance:
    """The trace of the covariance of one estimate, and its diagonal (per coordinate)."""

    trace: float
    per_coordinate: list[float]


class _FixedDraws:
    """A problem whose one draw is a fixed batch of outcomes (everything else delegated)."""

    def __init__(self, problem: Problem, method: str, outcomes: Callable[[Tensor | None], Any],
                 shape: tuple[int, int]) -> None:
        self._problem = problem
        self._method = method
        self._outcomes = outcomes
        self._shape = shape
        self.draws = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._problem, name)

    def _draw(self, method: str, shape: tuple[int, int], theta: Tensor | None) -> Any:
        self.draws += 1
        if method != self._method or tuple(shape) != self._shape or self.draws > 1:
            raise _NotExact
        return self._outcomes(theta)

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Any:
        return self._draw("sample", shape, theta)

    def sample_noise(self, shape: tuple[int, int], generator: torch.Generator) -> Any:
        return self._draw("sample_noise", shape, None)


def _weighted_moments(estimates: Tensor, weights: Tensor) -> ExactVariance:
    weights = weights / weights.sum()
    mean = weights @ estimates
    per_coordinate = weights @ (estimates - mean) ** 2
    return ExactVariance(float(per_coordinate.sum()), per_coordinate.tolist())


def _run(problem: Problem, estimator: Estimator, theta: Tensor, n: int, state: Any,
         method: str, outcomes: Callable[[Tensor | None], Any], count: int) -> Tensor:
    """The estimator's ``count`` estimates on the fixed outcomes, or :class:`_NotExact`."""
    stand_in = _FixedDraws(problem, method, outcomes, (count, n))
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    estimates = estimator.estimate(stand_in, theta, n, count, generator, state)  # type: ignore[arg-type]
    if not torch.equal(generator.get_state(), before) or stand_in.draws > 1:
        raise _NotExact
    if estimates.shape != (count, problem.dim):
        raise _NotExact
    return estimates.to(DTYPE)


def _take(support: Any, index: Tensor) -> Any:
    """The outcomes ``support[0, index]`` (a tensor or a named tuple of tensors)."""
    if isinstance(support, Tensor):
        return support[0][index]
    if isinstance(support, tuple) and hasattr(support, "_fields"):
        return type(support)(*(_take(field, index) for field in support))
    raise _NotExact


def _by_enumeration(problem: Problem, estimator: Estimator, theta: Tensor, n: int,
                    state: Any) -> ExactVariance | None:
    try:
        support = problem.support()
        log_p = problem.log_prob(theta, support)[0]
    except NotImplementedError:
        return None
    outcomes = log_p.shape[0]
    if outcomes**n > MAX_OUTCOMES:
        return None
    index = torch.tensor(list(itertools.product(range(outcomes), repeat=n)), dtype=torch.long)
    tuples = _take(support, index)
    probability = log_p[index].sum(dim=1).exp()
    estimates = _run(problem, estimator, theta, n, state, "sample", lambda _: tuples,
                     index.shape[0])
    return _weighted_moments(estimates, probability)


def _noise_rule(breaks: list[float], panels: int) -> tuple[Tensor, Tensor]:
    """Nodes and weights of composite Gauss–Legendre for E[g(ε)], ε ~ N(0, 1)."""
    inner = sorted(b for b in breaks if -NOISE_BOUND < b < NOISE_BOUND)
    edges = np.unique(np.concatenate([np.linspace(-NOISE_BOUND, NOISE_BOUND, panels + 1),
                                      inner]))
    unit_nodes, unit_weights = np.polynomial.legendre.leggauss(NODES_PER_PANEL)
    half = np.diff(edges)[:, None] / 2
    middle = (edges[:-1] + edges[1:])[:, None] / 2
    nodes = (middle + half * unit_nodes).ravel()
    weights = (half * unit_weights).ravel() * np.exp(-0.5 * nodes**2) / math.sqrt(2 * math.pi)
    return torch.tensor(nodes, dtype=DTYPE), torch.tensor(weights, dtype=DTYPE)


def _on_noise(problem: Problem, estimator: Estimator, theta: Tensor, state: Any,
              noise: Tensor) -> Tensor:
    """The estimator's one-draw estimates at the noise points ``noise`` ``(count, 1)``:
    estimators draw either x (score function) or ε (pathwise), and the stand-in answers
    whichever they ask for with the same points."""

    def transformed(th: Tensor | None) -> Any:
        assert th is not None  # the θ that sample() is called with
        return problem.transform(th, noise)

    try:
        return _run(problem, estimator, theta, 1, state, "sample", transformed, noise.shape[0])
    except _NotExact:
        return _run(problem, estimator, theta, 1, state, "sample_noise", lambda _: noise,
                    noise.shape[0])


def _by_quadrature(problem: Problem, estimator: Estimator, theta: Tensor,
                   state: Any) -> ExactVariance | None:
    mu, sigma = float(theta[0]), float(theta[1])
    breaks = [(x - mu) / sigma for x in problem.nonsmooth_points(theta)]
    previous = None
    panels = FIRST_PANELS
    while panels <= MAX_PANELS:
        nodes, weights = _noise_rule(breaks, panels)
        result = _weighted_moments(_on_noise(problem, estimator, theta, state, nodes[:, None]),
                                   weights)
        if previous is not None and math.isclose(result.trace, previous.trace,
                                                 rel_tol=QUADRATURE_RTOL, abs_tol=1e-300):
            return result
        previous = result
        panels *= 2
    return None


def exact_variance(problem: Problem, estimator: Estimator, theta: Tensor, n: int,
                   state: Any = None) -> ExactVariance | None:
    """The exact variance of one estimate from ``n`` draws at ``theta``, or None when it
    cannot be computed exactly (see the module) or θ is not on the CPU."""
    if theta.device.type != "cpu":
        return None
    try:
        found = _by_enumeration(problem, estimator, theta, n, state)
        if found is not None:
            return found
        if not estimator.sample_average:
            return None
        single = _by_enumeration(problem, estimator, theta, 1, state)
        if single is None and Capability.GAUSSIAN in problem.capabilities and problem.dim == 2:
            single = _by_quadrature(problem, estimator, theta, state)
    except _NotExact:
        return None
    if single is None:
        return None
    return ExactVariance(single.trace / n, [v / n for v in single.per_coordinate])
