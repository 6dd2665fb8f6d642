"""What the conformance suite catches: deliberately wrong plugin components (written from the
docs, in tests/wrong_components.py) fail it, and correct ones pass at the same settings.

Without a time budget the bias and sampled tests draw the count their pilot asks for (sized
to detect 1% of ‖∇J‖ or of |J| with probability 95%), so these outcomes depend on the seeds
alone. benchmarks/check_power.py measures the detection rates over seeds at the default,
time-budgeted settings.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass

import pytest
import torch

from tests import wrong_components as wrong
from vrbench import estimators, problems
from vrbench.bench.cells import Cell
from vrbench.bench.runner import run_cell
from vrbench.components import Spec
from vrbench.estimators import noise_schemes
from vrbench.problems import Capability, Problem
from vrbench.problems.base import DTYPE
from vrbench.problems.bernoulli import BernoulliToy
from vrbench.problems.categorical import CategoricalTarget
from vrbench.problems.gaussian import GaussianQuadraticND
from vrbench.problems.iwae import IWAEDigits
from vrbench.problems.lqr import StableLQR
from vrbench.problems.vae import SigmoidBeliefVAEDigits
from vrbench.testing import check_estimator, check_problem

CALL_SIZE = "variance independent of the replicates per call"

REACHABLE = ["bernoulli_toy", "bandit_gaussian_10", "categorical_target", "gaussian_quadratic",
             "gaussian_step"]
"""Problems where the default check settings reach 1% of ‖∇J‖ within seconds."""


def failed(report, check: str, theta: str | None = None) -> set[tuple[str | None, int | None]]:
    """(problem, n) of the failures of ``check`` at the check θ (or at ``theta``, "any": all)."""
    return {(o.where, o.n) for o in report.outcomes if o.check == check and o.failure
            and (theta == "any" or o.theta == theta)}


def check_theta_failures(report, check: str) -> list[str]:
    return [o.line() for o in report.outcomes
            if o.check == check and o.failure and o.theta is None]


def measured_bias(failure: str) -> float:
    """The relative bias along ∇J a failing bias test measured, in percent."""
    along_gradient = re.search(r"along ∇J the mean is off by ([+−-]?[\d.]+)%", failure)
    if along_gradient:
        return abs(float(along_gradient.group(1)))
    return float(re.search(r"along ∇J .*: a bias of ([\d.]+)% of ‖∇J‖", failure).group(1))


@pytest.mark.parametrize("problem", REACHABLE)
def test_a_two_percent_bias_is_caught_at_every_n_and_a_correct_copy_passes(problem, one_thread):
    """Sized to detect 1% of ‖∇J‖ with probability 95%, a test sees a 2% bias at ~12 standard
    errors against a threshold of ~4.6: it cannot miss it."""
    scaled = check_estimator(wrong.ScaledScoreFunction(1.02), problems=[problem], n=[1, 4],
                             time_budget=None)
    assert {n for _, n in failed(scaled, "unbiased")} == {1, 4}, scaled.failures
    assert all(1.5 < measured_bias(f) < 2.5 for f in check_theta_failures(scaled, "unbiased"))
    correct = check_estimator(wrong.CopiedScoreFunction(), problems=[problem], n=[1, 4],
                              time_budget=None)
    correct.raise_if_failed()
    bias_tests = [r for r in correct.power if r.test == "unbiased" and r.theta is None]
    assert len(bias_tests) == 2 and all(r.reached for r in bias_tests), bias_tests
    assert all(o.detail.startswith("bias <") for o in correct.outcomes if o.check == "unbiased")


def test_rloo_with_a_hard_coded_factor_is_exact_at_two_samples_and_caught_above():
    report = check_estimator(wrong.RLOOFactorTwo(), problems=["bandit_gaussian_10"], n=[2, 4],
                             time_budget=None, max_estimates=200_000)
    assert {n for _, n in failed(report, "unbiased")} == {4}, report.failures
    (failure,) = check_theta_failures(report, "unbiased")
    assert "at n=4" in failure and 45 < measured_bias(failure) < 55  # 2/(4/3) − 1 = 50%


def test_nan_at_one_sample_fails_naming_the_sample_size():
    report = check_estimator(wrong.RLOOFromOne(), problems=["bernoulli_toy"], time_budget=None,
                             max_estimates=10_000)
    assert {n for _, n in failed(report, "finite")} == {1}
    assert any("finite on bernoulli_toy" in f and "at n=1" in f for f in report.failures)
    assert not failed(report, "unbiased")  # the larger n are fine
    assert not failed(report, "deterministic under a seed")  # NaN where NaN was


def test_a_baseline_that_includes_the_draw_is_caught_at_every_n():
    report = check_estimator(wrong.SelfIncludingBaseline(), problems=["bandit_gaussian_10"],
                             time_budget=None)
    assert {n for _, n in failed(report, "unbiased")} == {1, 2, 5, 16}


def test_randomness_shared_by_the_replicates_of_a_call_is_caught():
    report = check_estimator(wrong.SharedBaselinePerCall(), problems=["bernoulli_toy"], n=[2],
                             time_budget=None, max_estimates=10_000)
    assert failed(report, CALL_SIZE), report.failures
    assert not failed(report, "unbiased", "any")
    assert any(note.startswith("bias not tested") for note in report.notes)


def test_a_check_that_could_not_detect_the_tolerance_anywhere_fails():
    """The cap on a test's estimates (--effort), not the clock, keeps it from 1%: the same
    failure on any machine."""
    report = check_estimator(wrong.CopiedScoreFunction(), problems=["frozenlake_8x8"], n=[1],
                             effort=0.01, chunking_replicates=1024, small_call_estimates=64)
    (failure,) = report.failures
    assert failure.startswith("power: a bias of 1% of ‖∇J‖ was detectable on none")
    detail = next(o for o in report.outcomes if o.check == "unbiased").detail
    assert detail.startswith("bias <") and "beyond the cap of" in detail


def _previous_qmc(shape, generator):
    """The QMC draws vrbench used to make: one scramble per call, shared by its replicates."""
    replicates, n, k = shape
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    shifts = torch.rand((replicates, 1, k), generator=generator, dtype=DTYPE)
    points = torch.quasirandom.SobolEngine(k, scramble=True, seed=seed).draw(n, dtype=DTYPE)
    return torch.remainder(points[None] + shifts, 1.0).clamp(1e-12, 1 - 1e-12)


def test_qmc_replicates_are_independent_of_chunking(monkeypatch):
    estimator = estimators.make("qmc_score_function")
    check_estimator(estimator, problems=["bernoulli_toy", "gaussian_cosine"], time_budget=None,
                    max_estimates=10_000).raise_if_failed()
    monkeypatch.setitem(noise_schemes.SCHEMES, "qmc", _previous_qmc)
    shared = check_estimator(estimator, problems=["bernoulli_toy", "gaussian_cosine"],
                             time_budget=None, max_estimates=10_000)
    assert len(failed(shared, CALL_SIZE)) >= 4, shared.failures


def _qmc_bernoulli_variance(theta: float, t: float, n: int) -> float:
    """Exact variance of qmc_score_function on bernoulli_toy for n a power of 2.

    A digitally shifted 1-D Sobol net of n = 2^m points is {(j + V)/n} with V uniform, so the
    count C of ones (u < p) is ⌊np⌋ + Bernoulli(φ), φ = frac(np), and the estimate
    (1/n)(C((1 − t)²(1 − p) + t²p) − n t² p) has variance φ(1 − φ)((1 − t)²(1 − p) + t²p)²/n².
    """
    p = 1 / (1 + math.exp(-theta))
    phi = n * p - math.floor(n * p)
    return phi * (1 - phi) * ((1 - t) ** 2 * (1 - p) + t**2 * p) ** 2 / n**2


@pytest.mark.parametrize("max_memory_mb", [1, 256])
def test_qmc_variance_is_exact_at_every_memory_budget(max_memory_mb):
    """The harness's variance and interval hold the closed form whatever the chunking."""
    cell = Cell(problem=Spec("bernoulli_toy", {"theta": "0.3", "t": "0.499"}),
                estimator=Spec("qmc_score_function"), n_samples=4, replicates=200_000, seed=0,
                max_memory_mb=max_memory_mb)
    row = run_cell(cell)
    assert row["status"] == "ok", row.get("error")
    exact = _qmc_bernoulli_variance(0.3, 0.499, 4)
    standard_error = (row["variance_ci_high"] - row["variance_ci_low"]) / (2 * 2.04)  # t(31)
    assert abs(row["variance"] - exact) < 5 * standard_error


# Problems.


class PoissonWithoutLogProb(wrong.Poisson):
    """wrong.Poisson without the optional log_prob, so only the sampled checks can see it."""

    log_prob = Problem.log_prob


class GaussianWithoutLogProb(wrong.GaussianStepLogScale):
    """wrong.GaussianStepLogScale without the optional log_prob."""

    log_prob = Problem.log_prob


def _statistical_failures(report) -> set[str]:
    return {o.check for o in report.outcomes if o.failure and o.check != "metadata"}


@pytest.mark.parametrize("problem", [wrong.Poisson(), wrong.GaussianStepLogScale(),
                                     PoissonWithoutLogProb(), GaussianWithoutLogProb()])
def test_correct_plugin_problems_pass(problem, one_thread):
    report = check_problem(problem, time_budget=None)
    assert not _statistical_failures(report), report.failures
    assert all(r.reached for r in report.power), report.power


@pytest.mark.parametrize(("problem", "caught_by"), [
    (PoissonWithoutLogProb(value_error=0.03), {"sampled mean of f equals J",
                                               "E[(f − J)·score] equals ∇J"}),
    (GaussianWithoutLogProb(value_error=0.03), {"sampled mean of f equals J",
                                                "E[(f − J)·score] equals ∇J"}),
    (PoissonWithoutLogProb(rate_error=0.01), {"score has mean zero"}),
    (GaussianWithoutLogProb(scale_error=0.01), {"E[(f − J)·score] equals ∇J"}),
    (PoissonWithoutLogProb(score_sign=-1.0), {"E[(f − J)·score] equals ∇J"}),
    (GaussianWithoutLogProb(sigma_score=True), {"E[(f − J)·score] equals ∇J"}),
    (wrong.GaussianStepLogScale(score_error=0.01), {"score is the gradient of log_prob"}),
])
def test_wrong_plugin_problems_are_caught(problem, caught_by, one_thread):
    """Value and ∇J 3% too large together (finite differences agree), a sampler 1% off, a
    score with a flipped sign or on the wrong parameterization in one coordinate."""
    report = check_problem(problem, time_budget=None)
    assert caught_by <= _statistical_failures(report), report.failures


@dataclass(frozen=True)
class _GradientThreePercentOff(BernoulliToy):
    """bernoulli_toy whose exact gradient alone is 3% too large."""

    name = "gradient_off_for_test"

    def exact_grad(self, theta):
        return 1.03 * super().exact_grad(theta)


@dataclass(frozen=True)
class _ValueAndGradientOff(BernoulliToy):
    """bernoulli_toy whose value and gradient are both 3% too large."""

    name = "value_off_for_test"

    def value(self, theta):
        return 1.03 * super().value(theta)

    def exact_grad(self, theta):
        return 1.03 * super().exact_grad(theta)


def test_finite_difference_failures_state_the_relative_error_and_threshold():
    report = check_problem(_GradientThreePercentOff(t=0.3, theta=0.6), time_budget=None,
                           max_draws=10_000)
    failure = next(f for f in report.failures if f.startswith("exact gradient vs finite"))
    assert "relative error 0.03 " in failure and "threshold 1e-05" in failure


def test_enumeration_catches_a_consistent_error_exactly():
    report = check_problem(_ValueAndGradientOff(t=0.3, theta=0.6), time_budget=None,
                           max_draws=10_000)
    assert {"value equals the sum over the support",
            "exact gradient equals the gradient of the sum over the support"} <= {
        o.check for o in report.outcomes if o.failure}
    assert not failed(report, "exact gradient vs finite differences at the check θ")


@dataclass(frozen=True)
class _ClaimsInverseTransform(BernoulliToy):
    """bernoulli_toy claiming inverse_transform without from_uniforms (the base raises)."""

    name = "claims_for_test"
    capabilities = frozenset({Capability.DISCRETE, Capability.INVERSE_TRANSFORM})
    from_uniforms = Problem.from_uniforms


def test_a_capability_without_its_members_is_reported():
    report = check_problem(_ClaimsInverseTransform(), time_budget=None, max_draws=10_000)
    assert "members of inverse_transform: does not implement from_uniforms" in report.failures


def test_built_in_problems_declare_check_settings_that_break_symmetry():
    for name in ("bandit_gaussian_10", "categorical_target", "frozenlake", "bernoulli_vector",
                 "lqr_unstable", "gaussian_cosine_10d"):
        theta = problems.make(name).check_theta() if name != "bernoulli_vector" else (
            problems.make(name, {"D": 4}).check_theta())
        assert len(set(theta.tolist())) == theta.numel(), name


# What each capability promises, broken one at a time in otherwise correct built-ins.


@dataclass(frozen=True)
class _ItemsShifted(SigmoidBeliefVAEDigits):
    """Each item's term is the next item's: f (their mean) is unchanged, but an item's term no
    longer depends on its own latent, so per-item learning signals (NVIL) are biased."""

    name = "items_shifted_for_test"

    def item_f(self, samples):
        return super().item_f(samples).roll(1, dims=-1)


@dataclass(frozen=True)
class _ValuesShifted(StableLQR):
    """Exact state values one unit too large: J, ∇J and the samples are right."""

    name = "values_shifted_for_test"

    def exact_values(self, theta):
        values = super().exact_values(theta)
        return values._replace(c=values.c + 1.0)


@dataclass(frozen=True)
class _CodeScoresNotAveraged(IWAEDigits):
    """code_weighted_score that forgets to divide by n."""

    name = "code_scores_for_test"

    def code_weighted_score(self, theta, samples, weights):
        return weights.shape[1] * super().code_weighted_score(theta, samples, weights)


@dataclass(frozen=True)
class _MeanOfIndices(CategoricalTarget):
    """A relaxable problem whose sample_mean is not in the encoding of relaxed samples (the
    probabilities in reverse order)."""

    name = "mean_reversed_for_test"

    def sample_mean(self, theta):
        return super().sample_mean(theta).flip(-1)


@dataclass(frozen=True)
class _MultivariateWithoutMean(GaussianQuadraticND):
    """A D-dimensional Gaussian problem without sample_mean, so it claims to be univariate."""

    name = "gaussian_without_mean_for_test"

    sample_mean = Problem.sample_mean
    sample_covariance = Problem.sample_covariance


@pytest.mark.parametrize(("problem", "caught_by"), [
    (_ItemsShifted(batch=2), "E[(1/B) Σ_b (f_b − J) ∇θ log q(z_b|x_b)] equals ∇J"),
    (_ValuesShifted(), "mean of the exact value of the first state equals J"),
    (_CodeScoresNotAveraged(batch=2),
     "code_weighted_score with equal code weights is weighted_score"),
    (_MeanOfIndices(), "sampled mean of x equals sample_mean(θ)"),
    (_MultivariateWithoutMean(D=3), "Gaussian samples and θ = (μ, σ)"),
])
def test_a_broken_capability_promise_is_caught(problem, caught_by, one_thread):
    report = check_problem(problem, time_budget=None, max_draws=20_000)
    # 20,000 draws see these errors, which are large, but not 1% everywhere: no power claim.
    assert _statistical_failures(report) - {"power"} == {caught_by}, report.failures


# Wrong at other θ, in how replicates relate, or in f's determinism: each caught at several
# seeds, each with a correct twin that passes at the same seeds.

SEEDS = [0, 1, 2]
PAIR_PROBLEMS = ["bernoulli_toy", "bandit_bernoulli_k"]
SMALL = {"n": [2], "max_estimates": 100_000, "chunking_replicates": 4096}
"""Settings that keep one of these checks to a few seconds (the errors are large; 1% of
‖∇J‖ is then out of reach, which the check reports as a "power" failure)."""


def beyond_power(report) -> list[str]:
    return [f for f in report.failures if not f.startswith("power")]


@pytest.mark.parametrize("seed", SEEDS)
def test_an_estimator_caching_its_first_theta_is_caught_at_the_other_theta(seed, one_thread):
    report = check_estimator(wrong.FirstThetaScoreFunction(), problems=PAIR_PROBLEMS, seed=seed,
                             **SMALL)
    assert not failed(report, "unbiased")  # right at the first θ it saw
    at_others = {o.theta for o in report.outcomes if o.check == "unbiased" and o.failure}
    assert at_others and None not in at_others, report.failures
    assert all("does the estimator keep something across calls" in f
               for f in report.failures if f.startswith("unbiased")), report.failures
    twin = check_estimator(wrong.CopiedScoreFunction(), problems=PAIR_PROBLEMS, seed=seed,
                           **SMALL)
    assert not beyond_power(twin), twin.failures
    assert {o.theta for o in twin.outcomes if o.check == "unbiased"} == {None, "θ₁", "θ₂"}


class _ScaledAwayFromTheCheckTheta(wrong.CopiedScoreFunction):
    """Score function 20% too large at any θ but the problem's check θ."""

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        estimates = super().estimate(problem, theta, n_samples, replicates, generator, state)
        at_check = theta.is_meta or torch.equal(theta, problem.check_theta().to(theta))
        return estimates if at_check else 1.2 * estimates


def test_a_problem_without_an_exact_gradient_is_checked_against_references_at_every_theta(
        one_thread):
    """Each other θ has a reference of its own (quadrature here), which an estimator wrong
    only away from the check θ fails against; the correct twin passing there is in
    test_reference.py."""
    report = check_estimator(_ScaledAwayFromTheCheckTheta(),
                             problems=["bayesian_logistic_regression"], n=[2],
                             max_estimates=80_000, chunking_replicates=1024)
    assert not failed(report, "unbiased")
    assert {o.theta for o in report.outcomes if o.check == "unbiased" and o.failure} == {
        "θ₁", "θ₂"}, report.failures
    assert any("reference gradients: at the check θ" in note and "at θ₂, quadrature" in note
               for note in report.notes), report.notes


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("estimator", [wrong.PairedReplicates(), wrong.RepeatedHalves()])
def test_replicates_that_repeat_each_other_are_caught(estimator, seed, one_thread):
    """Identical pairs, in a row or half a call apart: the variance of each estimate is right,
    so only the correlation test is sure to see them (the rank test of the call sizes, which
    assumes independent estimates, may too); the bias test is then not run, since its
    standard error would be √2 too small."""
    report = check_estimator(estimator, problems=PAIR_PROBLEMS, seed=seed, **SMALL)
    assert failed(report, "replicates independent") == {(p, 2) for p in (
        "bernoulli_toy:t=0.3,theta=0.6", "bandit_bernoulli_k")}, report.failures
    assert {o.check for o in report.outcomes if o.failure} <= {"replicates independent",
                                                               CALL_SIZE}, report.failures
    assert not [o for o in report.outcomes if o.check == "unbiased"]


@pytest.mark.parametrize("seed", SEEDS)
def test_an_estimator_whose_variance_depends_on_the_replicates_per_call_is_caught(seed,
                                                                                   one_thread):
    """A leave-one-out over the replicate axis: its variance in calls of 1 is the score
    function's, in large calls 2–4 times smaller."""
    report = check_estimator(wrong.ReplicateAxisLeaveOneOut(), problems=PAIR_PROBLEMS,
                             seed=seed, **SMALL)
    assert failed(report, CALL_SIZE), report.failures
    assert any("calls of 1" in f or "calls of 2" in f for f in report.failures)
    twin = check_estimator(wrong.DrawAxisLeaveOneOut(), problems=PAIR_PROBLEMS, seed=seed,
                           **SMALL)
    assert not beyond_power(twin), twin.failures


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("problem", "caught_by"), [
    (wrong.GaussianStepFromFields(), "exact gradient vs finite differences at the θ"),
    (wrong.PoissonSamplerFromFields(), "sampled mean of f equals J"),
])
def test_a_problem_right_only_at_its_initial_theta_is_caught(problem, caught_by, seed,
                                                              one_thread):
    report = check_problem(problem, seed=seed, max_draws=200_000)
    failing = {(o.check, o.theta) for o in report.outcomes if o.failure and o.check != "power"}
    assert failing and all(theta is not None or check.endswith(("θ₁", "θ₂"))
                           for check, theta in failing), report.failures
    assert any(check.startswith(caught_by) for check, _ in failing), report.failures


@pytest.mark.parametrize("seed", SEEDS)
def test_correct_twins_of_the_theta_dependent_problems_pass(seed, one_thread):
    for problem in (wrong.GaussianStepLogScale(), wrong.Poisson()):
        report = check_problem(problem, seed=seed, max_draws=200_000)
        assert not _statistical_failures(report) - {"power"}, report.failures


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("problem", [wrong.NoisyRewardPoisson(), wrong.SeededNoiseReward()])
def test_a_random_f_is_blamed_on_the_problem(problem, seed, one_thread):
    report = check_problem(problem, seed=seed, max_draws=20_000)
    assert failed(report, "f and sample deterministic") == {(None, None)}, report.failures
    on_it = check_estimator(wrong.CopiedScoreFunction(), problems=[problem, wrong.Poisson()],
                            seed=seed, **SMALL)
    (failure,) = beyond_power(on_it)
    assert failure.startswith(f"problem usable on {type(problem).__name__}: f ")
    assert "the problem's fault, not the estimator's" in failure
    assert check_problem(wrong.Poisson(), seed=seed, max_draws=20_000).outcomes[0].failure is None


# The same verdict on any machine.

TIMES = re.compile(r"\d[\d.,]* s\b")


def _lines(report) -> list[str]:
    lines = [("PASS " if ok else "FAIL ") + line for ok, line in report.grouped_lines()]
    lines += report.notes + report.summary_lines() + [str(report)]
    return [TIMES.sub("<time>", line) for line in lines]


def _slower_clock(monkeypatch, factor: float) -> None:
    """Make every clock reading run ``factor`` times fast: a machine that many times slower."""
    real = time.perf_counter
    origin = real()
    monkeypatch.setattr(time, "perf_counter", lambda: origin + factor * (real() - origin))


def _check(**options):
    return check_estimator(wrong.CopiedScoreFunction(), problems=["bernoulli_toy"], n=[1, 2],
                           seed=3, max_estimates=200_000, chunking_replicates=4096, **options)


def test_the_same_command_and_seed_give_the_same_output_on_a_slower_machine(monkeypatch,
                                                                            one_thread):
    """The tests' sizes are counts from the seed: a machine 30 times slower (or loaded) draws
    the same estimates and prints the same lines, times apart."""
    quick = _lines(_check())
    _slower_clock(monkeypatch, 30.0)
    assert _lines(_check()) == quick
    assert any("bias <" in line for line in quick)


def test_a_time_budget_that_stops_a_test_fails_unless_partial_results_are_accepted(
        monkeypatch, one_thread):
    _slower_clock(monkeypatch, 1e4)
    stopped = _check(time_budget=60)
    assert not stopped.ok and all("time budget" in f for f in stopped.failures), stopped.failures
    accepted = _check(time_budget=60, accept_partial=True)
    assert accepted.ok, accepted.failures
    assert any("time budget" in note and "accepted" in note for note in accepted.notes) or any(
        "stopped it after" in o.detail for o in accepted.outcomes)
