"""Reference gradients: sampled ones within their stated error of exact gradients, numerical
ones against an independent computation, bias tests that account for both uncertainties,
and a problem without an exact gradient through run, check, train, report and reproduce."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import integrate, special

from vrbench import estimators, problems
from vrbench.bench import Cell, run_cell
from vrbench.bench.config import SweepConfig
from vrbench.bench.reference import (
    MAX_COORDINATES,
    REFERENCE_DIR,
    ReferenceError,
    ReferenceSettings,
    compute_reference,
    exact_reference,
    reference_estimator,
    sampled,
)
from vrbench.bench.runner import measure
from vrbench.bench.sweep import run_sweep
from vrbench.cli import main
from vrbench.components import Spec
from vrbench.estimators.base import Estimator, weighted_score
from vrbench.problems.base import DTYPE
from vrbench.problems.vae import SigmoidBeliefVAEDigits
from vrbench.testing import check_estimator, check_instance

NO_EXACT_VAE = Spec("sigmoid_belief_vae_digits", {"latents": 13, "batch": 1})
"""13 latent bits: one more than the exact solution enumerates."""


def _z_scores(reference, exact):
    """The reference's errors against the exact gradient, in its own standard errors: per
    coordinate (where it has spread) and along its test directions."""
    error = reference.grad - exact
    spread = reference.se > 0
    assert torch.equal(error[~spread], torch.zeros_like(error[~spread]))
    return error[spread] / reference.se[spread], (reference.directions @ error
                                                  / reference.direction_se)


@pytest.mark.parametrize("precision", [0.05, 0.02, 0.01])
@pytest.mark.parametrize(("problem", "estimator"), [("categorical_potts", "indecater"),
                                                    ("bernoulli_vector", "rloo")])
def test_sampled_reference_is_within_its_standard_error_of_the_exact_gradient(
        problem, estimator, precision):
    """At each precision the stated ‖se‖ reaches the target, the errors per coordinate are
    standard normal in units of se (their sum of squares within 5 standard deviations of a
    chi-square's mean) and none along the test directions exceeds 4.9 se (Bonferroni over
    17 directions at 1e-5)."""
    instance = check_instance(problem)
    theta = instance.check_theta()
    reference = sampled(instance, theta, Spec(estimator), ReferenceSettings(precision, 10**6),
                        seed=3)
    exact = instance.exact_grad(theta)
    assert reference.precision <= 1.1 * precision
    per_coordinate, along = _z_scores(reference, exact)
    count = per_coordinate.numel()
    assert abs(float((per_coordinate**2).sum()) - count) < 5 * math.sqrt(2 * count)
    assert float(along.abs().max()) < 4.9
    assert reference.estimates >= 2000 and reference.method.startswith("mean of")


def test_sampled_reference_on_an_amortized_problem_with_hundreds_of_coordinates():
    """The digits VAE (650 coordinates, a few hundred of them touched by three images), its
    DisARM reference against the exact gradient."""
    problem = problems.make("sigmoid_belief_vae_digits", {"batch": 3})
    theta = problem.initial_theta()
    reference = sampled(problem, theta, Spec("disarm"), ReferenceSettings(0.05, 10**6), seed=1)
    per_coordinate, along = _z_scores(reference, problem.exact_grad(theta))
    count = per_coordinate.numel()
    assert count > 250
    assert abs(float((per_coordinate**2).sum()) - count) < 5 * math.sqrt(2 * count)
    assert float(along.abs().max()) < 4.9
    assert abs(reference.value - float(problem.value(theta))) < 4.5 * reference.value_se


def test_a_reference_is_deterministic_and_its_size_does_not_depend_on_the_clock():
    problem = check_instance("bernoulli_vector")
    theta = problem.check_theta()
    first = sampled(problem, theta, Spec("rloo"), ReferenceSettings(0.05), seed=5)
    again = sampled(problem, theta, Spec("rloo"), ReferenceSettings(0.05), seed=5)
    assert first.estimates == again.estimates
    assert torch.equal(first.grad, again.grad) and torch.equal(first.se, again.se)


def test_a_budget_smaller_than_the_precision_needs_states_the_precision_reached():
    problem = check_instance("categorical_potts")
    theta = problem.check_theta()
    reference = sampled(problem, theta, Spec("score_function"),
                        ReferenceSettings(0.001, 4000), seed=0)
    assert reference.estimates == 4000
    assert reference.precision > 0.001
    assert f"{reference.precision:.2%}" in reference.describe()


def test_an_estimator_is_never_its_own_reference():
    problem = problems.make(NO_EXACT_VAE.name, NO_EXACT_VAE.params)
    assert not problem.has_exact_gradient
    assert reference_estimator(problem).name == "disarm"
    assert reference_estimator(problem, exclude="disarm").name == "rloo"

    @dataclass(frozen=True)
    class OnlyDisARM(SigmoidBeliefVAEDigits):
        reference_estimators = ("disarm",)

    with pytest.raises(ReferenceError, match="no unbiased reference estimator other than"):
        reference_estimator(OnlyDisARM(latents=13, batch=1), exclude="disarm")


@dataclass(frozen=True)
class ScaledRLOO(Estimator):
    """RLOO times ``scale``: E ĝ = scale · ∇J, claimed unbiased (a deliberately wrong one)."""

    scale: float = 1.1
    min_samples = 2

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        samples = problem.sample(theta, (replicates, n_samples), generator)
        f = problem.f(samples)
        others = (f.sum(dim=1, keepdim=True) - f) / (n_samples - 1)
        return self.scale * weighted_score(problem, theta, samples, f - others)


def test_a_biased_estimator_is_caught_against_a_reference_and_a_correct_one_is_not():
    """On the VAE with 13 latents (no exact gradient) against a DisARM reference of ±2%:
    RLOO is not rejected, RLOO × 1.1 is, by a bias test whose standard errors are those of
    the mean and of the reference together."""
    problem = problems.make(NO_EXACT_VAE.name, NO_EXACT_VAE.params)
    theta = problem.initial_theta()
    reference = compute_reference(problem, theta, ReferenceSettings(0.02, 10**6), "rloo", 0)
    assert reference.estimator == "disarm" and reference.precision <= 0.022
    cell = Cell(NO_EXACT_VAE, Spec("rloo"), 4, 10_000, 0)
    correct, _, _ = measure(problem, estimators.make("rloo"), cell, reference=reference)
    wrong, _, _ = measure(problem, ScaledRLOO(), cell, reference=reference)
    assert correct["bias_pvalue"] > 1e-3
    assert wrong["bias_pvalue"] < 1e-6
    assert correct["reference"].startswith("mean of") and "disarm" in correct["reference"]
    assert correct["reference_se"] == pytest.approx(reference.se_norm)


def test_check_states_its_power_against_a_reference():
    """vrbench check on a problem without an exact gradient (its reference: quadrature): a
    wrong estimator fails, and a correct one's pass names the reference and says what it
    could have detected."""
    problem = check_instance("bayesian_logistic_regression")
    wrong = check_estimator(ScaledRLOO(scale=1.05), problems=[problem], n=[4],
                            time_budget=None, max_estimates=20_000, chunking_replicates=256)
    assert any("unbiased" in failure for failure in wrong.failures)
    right = check_estimator(estimators.make("rloo"), problems=[problem], n=[4],
                            time_budget=None, max_estimates=20_000, chunking_replicates=256)
    bias = [r for r in right.power if r.test == "unbiased"]
    assert bias and all(math.isfinite(r.detectable) for r in bias)
    assert not [f for f in right.failures if not f.startswith("power")]
    assert any("reference gradient" in note for note in right.notes)
    assert any("vs reference" in line for _, line in right.grouped_lines())


def test_exact_problems_keep_their_exact_gradient():
    problem = problems.make("bernoulli_toy")
    theta = problem.initial_theta()
    reference = compute_reference(problem, theta, exclude="score_function")
    assert reference.exact and reference.se_norm == 0
    assert torch.equal(reference.grad, problem.exact_grad(theta))
    assert exact_reference(problem, theta).describe() == "exact"
    row = run_cell(Cell(Spec("bernoulli_toy"), Spec("score_function"), 2, 200, 0))
    assert row["reference"] == "exact" and row["reference_se"] == 0


def test_the_breast_cancer_quadrature_against_scipy():
    """Value and gradient of the logistic regression's expected log-likelihood by adaptive
    scipy quadrature, data point by data point, in numpy: within the stated error (plus
    quad's own 1e-11)."""
    problem = problems.make("bayesian_logistic_regression", {"batch": 6})
    theta = problem.check_theta()
    numerical = problem.numerical_reference(theta)
    signed, squares = (t.numpy() for t in problem._data)
    mu, sigma = theta[:31].numpy(), theta[31:].numpy()

    def expect(g, mean, spread):
        density = lambda t: g(mean + spread * t) * np.exp(-t * t / 2) / math.sqrt(2 * math.pi)  # noqa: E731
        return integrate.quad(density, -np.inf, np.inf, epsabs=1e-13, epsrel=1e-13,
                              limit=400)[0]

    value, d_mu, d_sigma = 0.0, np.zeros(31), np.zeros(31)
    for x, x2 in zip(signed, squares, strict=True):
        mean, spread = x @ mu, math.sqrt(x2 @ sigma**2)
        value += expect(lambda a: -np.logaddexp(0.0, -a), mean, spread)
        d_mu += x * expect(lambda a: special.expit(-a), mean, spread)
        d_sigma -= sigma * x2 * expect(lambda a: special.expit(a) * special.expit(-a), mean,
                                       spread)
    independent = torch.tensor(np.concatenate([d_mu, d_sigma]), dtype=DTYPE)
    assert abs(float(numerical.value) - value) <= float(numerical.value_error) + 1e-11 * abs(value)
    error = (numerical.grad - independent).abs()
    assert bool((error <= numerical.grad_error + 1e-11 * independent.abs().max()).all())
    assert float(numerical.grad_error.max()) < 1e-9 * float(independent.abs().max())


def test_large_theta_is_summarized_per_parameter_group():
    """A VAE of 160 latents has 10,400 coordinates: per-coordinate lists are left empty, the
    groups' variances add up to the variance."""
    problem_spec = Spec("sigmoid_belief_vae_digits", {"latents": 160, "batch": 1})
    problem = problems.make(problem_spec.name, problem_spec.params)
    assert problem.dim > MAX_COORDINATES
    cell = Cell(problem_spec, Spec("rloo"), 2, 64, 0,
                reference=ReferenceSettings(0.5, 2000))
    row = run_cell(cell)
    assert row["status"] == "ok", row.get("error")
    assert row["coordinate_variance"] is None and row["true_grad"] is None
    assert row["parameter_groups"] == ["encoder weights", "encoder biases"]
    assert sum(row["group_variance"]) == pytest.approx(row["variance"])
    assert math.hypot(*row["group_true_grad_norm"]) == pytest.approx(row["true_grad_norm"])
    assert row["reference_estimates"] == 2000


def test_a_sweep_computes_each_reference_once_and_reuses_it(tmp_path):
    config = SweepConfig(estimators=[Spec("rloo"), Spec("disarm")], problems=[NO_EXACT_VAE],
                         n_samples=[4], replicates=500, output=str(tmp_path), jobs=1,
                         reference_precision=0.05, reference_estimates=5000)
    frame = run_sweep(config).frame.set_index("estimator")
    stored = sorted((tmp_path / REFERENCE_DIR).glob("*.parquet"))
    assert len(stored) == 2  # DisARM's for RLOO, RLOO's for DisARM
    assert "disarm" in frame.loc["rloo", "reference"]
    assert "rloo" in frame.loc["disarm", "reference"]
    assert (frame["status"] == "ok").all()
    stamps = [path.stat().st_mtime_ns for path in stored]
    same = run_sweep(config)  # the stored cells (reference and group columns) fit the schema
    assert (same.ran, same.reused) == (0, len(frame))
    again = run_sweep(SweepConfig(**{**config.__dict__, "replicates": 600})).frame
    assert (again["status"] == "ok").all()
    assert [path.stat().st_mtime_ns for path in stored] == stamps  # reused, not recomputed
    assert again.set_index("estimator").loc["rloo", "reference"] == frame.loc["rloo",
                                                                             "reference"]


def test_a_problem_without_an_exact_gradient_runs_through_every_command(tmp_path):
    """run, check, train (shared-run mode), report and reproduce on the Bayesian logistic
    regression, whose ground truth is quadrature."""
    problem = "bayesian_logistic_regression:batch=8"
    out = tmp_path / "run"
    assert main(["run", "-e", "reparameterization,score_function", "-p", problem, "-n", "1",
                 "-r", "200", "-o", str(out), "-j", "1"]) == 0
    frame = pd.read_parquet(out / "results.parquet")
    assert (frame["status"] == "ok").all()
    assert frame["reference"].str.startswith("quadrature").all()
    assert main(["check", "reparameterization", "-p", problem, "-n", "1",
                 "--bias-tolerance", "0.05", "--effort", "0.1"]) == 0
    trained = tmp_path / "train"
    assert main(["train", "-e", "reparameterization", "-p", problem, "--steps", "4",
                 "--eval-every", "2", "--eval-replicates", "50", "-n", "2", "--seed", "0",
                 "--measure", "score_function,reparameterization,delta_cv",
                 "-o", str(trained)]) == 0
    shared = pd.read_parquet(trained / "shared_run.parquet")
    assert set(shared["estimator"]) == {"score_function", "reparameterization", "delta_cv"}
    assert (shared["driver"] == "reparameterization").all() and (shared["error"] == "").all()
    assert main(["report", str(out), str(trained), "-o", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "shared_run_variance.png").exists()
    assert (tmp_path / "report" / "bias_vs_variance.png").exists()
    # The tables say what bias is held against (LaTeX sets the parameter as math).
    for table, size in (("summary.md", "N = 8"), ("table_cells.tex", "$N = 8$")):
        assert f"No exact gradient on Bayesian logistic regression, {size}" in (
            tmp_path / "report" / table).read_text()
    note = tmp_path / "paper"
    assert main(["reproduce", "mohamed2020_logistic", "--quick", "-o", str(note)]) == 0
    text = (note / "NOTE.md").read_text()
    assert "shared_run_variance" in text and "reparameterization ÷ score_function" in text
