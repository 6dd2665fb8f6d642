"""The speed comparison is fair only if its references compute the same estimator: the numpy
floors and the naive loops of ``benchmarks/kernels.py`` must average to vrbench's exact gradient
(5-SE test), and the floors must have vrbench's variance."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks import kernels
from vrbench import estimators, problems
from vrbench.bench.metrics import Moments, bias_test
from vrbench.problems.base import DTYPE

FLOOR_REPLICATES = {"bernoulli_toy": 20_000, "bandit_gaussian_10": 20_000, "frozenlake": 5_000,
                    "sigmoid_belief_vae_digits": 4_000}
NAIVE_REPLICATES = {"bernoulli_toy": 100, "bandit_gaussian_10": 100, "frozenlake": 100,
                    "sigmoid_belief_vae_digits": 30}
N = 4


def _z(problem_name: str, estimates: np.ndarray) -> float:
    problem = problems.make(problem_name)
    exact = problem.exact_grad(problem.initial_theta())
    z, _ = bias_test(Moments.of(torch.as_tensor(estimates, dtype=DTYPE)), exact)
    return z


def _trace_variance(estimates: np.ndarray) -> tuple[float, float]:
    """Total variance and its standard error: the mean and SE of ``‖ĝ_r − mean‖²``."""
    squared = ((estimates - estimates.mean(axis=0)) ** 2).sum(axis=1)
    return float(squared.mean()), float(squared.std(ddof=1) / np.sqrt(len(squared)))


@pytest.mark.parametrize("estimator", ["score_function", "rloo"])
@pytest.mark.parametrize("problem_name", sorted(kernels.FLOOR))
def test_numpy_floor_is_the_same_estimator(problem_name, estimator):
    floor = kernels.FLOOR[problem_name](estimator, FLOOR_REPLICATES[problem_name], N,
                                 np.random.default_rng(7))
    assert _z(problem_name, floor) <= 5.0
    # Streamed in chunks (as at R = 10⁶), the floor averages the same estimates.
    kernel, replicates = kernels.FLOOR[problem_name], FLOOR_REPLICATES[problem_name]
    rng = np.random.default_rng(8)
    chunks = [kernel(estimator, 1_000, N, rng) for _ in range(replicates // 1_000)]
    streamed = kernels.streamed(kernel, estimator, replicates, N, np.random.default_rng(8),
                                chunk=1_000)
    np.testing.assert_allclose(streamed, np.concatenate(chunks).mean(axis=0), rtol=1e-9,
                               atol=1e-12)
    # Same estimator, so same total variance: compare with vrbench's on as many estimates.
    problem = problems.make(problem_name)
    ours = estimators.make(estimator).estimate(
        problem, problem.initial_theta(), N, FLOOR_REPLICATES[problem_name],
        torch.Generator().manual_seed(7))
    (theirs, se_theirs), (mine, se_mine) = _trace_variance(floor), _trace_variance(ours.numpy())
    assert abs(theirs - mine) <= 5.0 * np.hypot(se_theirs, se_mine), (theirs, mine)


@pytest.mark.parametrize("estimator", ["score_function", "rloo"])
@pytest.mark.parametrize("problem_name", sorted(kernels.NAIVE))
def test_naive_loop_is_the_same_estimator(problem_name, estimator):
    torch.manual_seed(11)
    naive = kernels.naive(problem_name, estimator, NAIVE_REPLICATES[problem_name], N)
    assert naive.shape[1] == problems.make(problem_name).dim
    assert _z(problem_name, naive) <= 5.0


@pytest.mark.parametrize(("estimator", "problem_name"), sorted(kernels.ESTIMATOR_FLOOR))
def test_estimator_floor_is_the_same_estimator(estimator, problem_name):
    """The floors of the estimators beyond the score function: unbiased (5 SE) and with
    vrbench's variance (5 SE) on 4,000 estimates each."""
    replicates = 4_000
    floor = kernels.ESTIMATOR_FLOOR[estimator, problem_name](
        estimator, replicates, N, np.random.default_rng(9))
    assert _z(problem_name, floor) <= 5.0
    problem = problems.make(problem_name)
    ours = estimators.make(estimator).estimate(problem, problem.initial_theta(), N, replicates,
                                               torch.Generator().manual_seed(9))
    (theirs, se_theirs), (mine, se_mine) = _trace_variance(floor), _trace_variance(ours.numpy())
    assert abs(theirs - mine) <= 5.0 * np.hypot(se_theirs, se_mine), (theirs, mine)


CONTINUOUS_REPLICATES = 20_000


def continuous_floor_extra(estimator_name: str, problem_name: str) -> dict:
    """What a continuous floor needs besides (R, n, rng): lax's surrogate, fitted by vrbench."""
    if estimator_name != "lax":
        return {}
    problem = problems.make(problem_name)
    fitted = estimators.make("lax").fit(problem, problem.initial_theta(),
                                        torch.Generator().manual_seed(1))
    return {"surrogate": [t.numpy() for t in fitted]}


@pytest.mark.parametrize(("estimator", "problem_name"), sorted(kernels.CONTINUOUS_FLOOR))
def test_continuous_floor_is_the_same_estimator(estimator, problem_name):
    extra = continuous_floor_extra(estimator, problem_name)
    floor = kernels.CONTINUOUS_FLOOR[(estimator, problem_name)](
        CONTINUOUS_REPLICATES, N, np.random.default_rng(7), **extra)
    assert _z(problem_name, floor) <= 5.0
    problem = problems.make(problem_name)
    vrbench_estimator = estimators.make(estimator)
    theta = problem.initial_theta()
    state = vrbench_estimator.fit(problem, theta, torch.Generator().manual_seed(1))
    ours = vrbench_estimator.estimate(problem, theta, N, CONTINUOUS_REPLICATES,
                                      torch.Generator().manual_seed(7), state)
    (theirs, se_theirs), (mine, se_mine) = _trace_variance(floor), _trace_variance(ours.numpy())
    assert abs(theirs - mine) <= 5.0 * np.hypot(se_theirs, se_mine), (theirs, mine)


WORKLOAD_REPLICATES = 4_000


def _workload_n(problem_name: str) -> int:
    """The n of each workload of ``benchmarks/side_by_side.py``."""
    return 4 if problem_name in ("frozenlake", "gaussian_step", "lqr_unstable") else 16


def _workload_reference(estimator_name: str, problem_name: str, n: int):
    """vrbench's estimates of a workload and what its floor and JAX kernel need besides."""
    problem = problems.make(problem_name)
    estimator = estimators.make(estimator_name)
    theta = problem.initial_theta()
    state = estimator.fit(problem, theta, torch.Generator().manual_seed(1))
    ours = estimator.estimate(problem, theta, n, WORKLOAD_REPLICATES,
                              torch.Generator().manual_seed(9), state)
    extra = continuous_floor_extra(estimator_name, problem_name)
    return ours.numpy(), extra


def _same_estimator(problem_name: str, theirs: np.ndarray, ours: np.ndarray) -> None:
    assert theirs.shape == ours.shape
    assert _z(problem_name, theirs) <= 5.0
    (mine, se_mine), (other, se_other) = _trace_variance(ours), _trace_variance(theirs)
    assert abs(other - mine) <= 5.0 * np.hypot(se_other, se_mine), (other, mine)


@pytest.mark.parametrize(("estimator", "problem_name"), sorted(kernels.WORKLOAD_FLOOR))
def test_workload_floor_is_the_same_estimator(estimator, problem_name):
    """The numpy floors of the side-by-side workloads: unbiased (5 SE) and with vrbench's
    variance (5 SE) on 4,000 estimates each."""
    n = _workload_n(problem_name)
    ours, extra = _workload_reference(estimator, problem_name, n)
    floor = kernels.WORKLOAD_FLOOR[estimator, problem_name](
        WORKLOAD_REPLICATES, n, np.random.default_rng(9), **extra)
    _same_estimator(problem_name, floor, ours)


@pytest.mark.parametrize(("estimator", "problem_name"), sorted(kernels.WORKLOAD_FLOOR))
def test_jax_kernel_is_the_same_estimator(estimator, problem_name):
    """The jitted JAX kernels (when JAX is installed): unbiased (5 SE) and with vrbench's
    variance (5 SE) on 4,000 estimates each."""
    jax_kernels = pytest.importorskip("benchmarks.jax_kernels", exc_type=ImportError)
    n = _workload_n(problem_name)
    ours, extra = _workload_reference(estimator, problem_name, n)
    if problem_name == "lqr_unstable":
        extra["system"] = kernels.lqr_system()
    if problem_name == "frozenlake":
        extra["table"] = kernels.frozenlake_table()
    kernel = jax_kernels.make(estimator, problem_name, WORKLOAD_REPLICATES, n, **extra)
    theta = jax_kernels.jnp.asarray(problems.make(problem_name).initial_theta().numpy())
    theirs = np.array(kernel(jax_kernels.jax.random.key(9), theta))
    _same_estimator(problem_name, theirs, ours)


@pytest.mark.parametrize(("estimator", "problem_spec"), kernels.SEQUENCE_FLOOR)
def test_sequence_floor_is_the_same_estimator(estimator, problem_spec):
    """The language-model RL floors compute vrbench's estimators, biased ones included: the
    same mean as vrbench's (two-sample test, 5 SE on every coordinate) and the same variance
    (5 SE), on 20,000 estimates each at G = 4."""
    from vrbench.components import parse_specs

    replicates = 20_000
    floor = kernels.floor_sequence(estimator, replicates, N, np.random.default_rng(9),
                                   spec=problem_spec)
    problem_parsed, estimator_parsed = parse_specs(problem_spec)[0], parse_specs(estimator)[0]
    problem = problems.make(problem_parsed.name, problem_parsed.params)
    ours = estimators.make(estimator_parsed.name, estimator_parsed.params).estimate(
        problem, problem.initial_theta(), N, replicates, torch.Generator().manual_seed(9)).numpy()
    difference = floor.mean(0) - ours.mean(0)
    se = np.sqrt((floor.var(0) + ours.var(0)) / replicates)
    varying = se > 1e-15
    assert np.abs(difference[varying] / se[varying]).max() <= 5.0
    assert np.abs(difference[~varying]).max(initial=0.0) < 1e-12
    (theirs, se_theirs), (mine, se_mine) = _trace_variance(floor), _trace_variance(ours)
    assert abs(theirs - mine) <= 5.0 * np.hypot(se_theirs, se_mine), (theirs, mine)
