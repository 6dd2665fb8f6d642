"""Estimators on amortized problems through logit views, the shared-run mode, and the delta-
method control variate around any base estimator."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from vrbench import estimators, problems
from vrbench.bench import Cell, run_cell
from vrbench.bench.train import TrainSettings, shared_run
from vrbench.components import Spec
from vrbench.estimators.base import runs_on_view
from vrbench.problems.base import Capability
from vrbench.problems.latents import logit_view
from vrbench.testing import check_instance, sample_sizes

AMORTIZED = ("sigmoid_belief_vae_digits", "categorical_vae_digits")


@pytest.mark.parametrize("name", AMORTIZED)
def test_the_pullback_is_the_chain_rule_through_the_logits(name, generator):
    """``latent_pullback(θ, G)`` equals the vector-Jacobian product of ``latent_logits`` at θ
    with G, by autograd, for a batch of random G."""
    problem = check_instance(name)
    theta = problem.check_theta().clone().requires_grad_(True)
    logits = problem.latent_logits(theta)
    cotangents = torch.randn((3, *logits.shape), generator=generator, dtype=theta.dtype)
    expected = torch.stack([torch.autograd.grad(logits, theta, c, retain_graph=True)[0]
                            for c in cotangents])
    torch.testing.assert_close(problem.latent_pullback(theta.detach(), cotangents), expected)


@pytest.mark.parametrize("name", AMORTIZED)
def test_the_view_samples_the_problem_and_keeps_its_f(name, generator):
    """The view's f of its own samples has the problem's mean J (by enumeration), and on a
    draw equals the problem's f of the same latents."""
    problem = check_instance(name)
    theta = problem.check_theta()
    view = logit_view(problem, theta)
    samples = view.sample(view.initial_theta(), (20_000, 1), generator)
    values = view.f(samples)
    assert abs(float(values.mean()) - float(problem.value(theta))) < 4.5 * float(
        values.std()) / 20_000**0.5
    codes = samples.unflatten(-1 if samples.dim() == 3 else -2, tuple(
        view.logits.shape if samples.dim() == 3 else view.logits.shape[:-1]))
    torch.testing.assert_close(values, problem.f(problem.latent_samples(theta, codes)))


def test_every_logit_estimator_applies_to_both_digits_vaes():
    """Every estimator that runs on Bernoulli (categorical) logits runs on the binary
    (categorical) digits VAE, through its view, and the conformance matrix checks each."""
    kinds = {Capability.BERNOULLI_LOGITS: check_instance("sigmoid_belief_vae_digits"),
             Capability.CATEGORICAL_LOGITS: check_instance("categorical_vae_digits")}
    for name in estimators.registry.names():
        estimator = estimators.make(name)
        for capability, vae in kinds.items():
            if capability in estimator.requires:
                assert any(estimator.incompatibility(vae, n) is None
                           for n in sample_sizes(estimator)), f"{name} does not run on {vae}"
                assert runs_on_view(estimator, vae, estimator.min_samples)
    assert not runs_on_view(estimators.make("score_function"),
                            check_instance("sigmoid_belief_vae_digits"), 1)


def test_logit_estimators_on_a_view_give_the_same_numbers_as_on_logits():
    """On a view, ARM receives the logits of every image as θ and returns its estimate in
    θ of the encoder, through the chain rule: the same as ARM on the view by hand."""
    problem = check_instance("sigmoid_belief_vae_digits")
    theta = problem.check_theta()
    view = logit_view(problem, theta)
    arm = estimators.make("arm")
    through = arm.estimate(problem, theta, 3, 5, torch.Generator().manual_seed(1))
    by_hand = view.pullback(arm.estimate(view, view.initial_theta(), 3, 5,
                                         torch.Generator().manual_seed(1)))
    torch.testing.assert_close(through, by_hand)
    assert arm.f_evals(problem, 3) == 6
    assert estimators.make("mvd_bernoulli").f_evals(problem, 1) == 2 * view.dim


def test_a_shared_run_measures_every_estimator_as_its_cell_does():
    """Every estimator is measured at the same θ_t along the run, and the measurement at step
    0 is, number for number, the cell of that estimator at the initial θ."""
    settings = TrainSettings(steps=2, eval_every=1, eval_replicates=64, n_samples=2,
                             lr=0.01)
    problem = Spec("sigmoid_belief_vae_digits", {"batch": 2})
    measured = [Spec("rloo"), Spec("disarm"), Spec("arm"), Spec("gumbel_softmax"),
                Spec("vimco")]
    rows = pd.DataFrame(shared_run(problem, Spec("disarm"), measured, 0, settings))
    assert set(rows["estimator"]) == {"rloo", "disarm", "arm", "gumbel_softmax"}  # no vimco
    assert (rows["driver"] == "disarm").all() and (rows["error"] == "").all()
    assert rows.groupby("step")["value"].nunique().eq(1).all()  # one θ_t per step
    assert sorted(rows["step"].unique()) == [0, 1, 2]
    for name in ("rloo", "arm"):
        cell = run_cell(Cell(problem, Spec(name), 2, 64, 0))
        first = rows[(rows["step"] == 0) & (rows["estimator"] == name)].iloc[0]
        assert first["variance"] == cell["variance"]
        assert first["bias_pvalue"] == cell["bias_pvalue"]


@pytest.mark.parametrize("base", ["score_function", "reparameterization",
                                  "mvd_gaussian_coupled"])
def test_the_delta_control_variate_is_unbiased_and_pairs_its_draws(base):
    """Around each base estimator: the estimate for f is the base's own (same draws), the
    mean is within 4.5 standard errors of the quadrature gradient along every coordinate
    (Bonferroni over 62 would allow 5.2), and the variance does not exceed the base's."""
    problem = problems.make("bayesian_logistic_regression", {"batch": 8})
    theta = problem.check_theta()
    truth = problem.numerical_reference(theta).grad
    wrapped = estimators.make("delta_cv", {"base": base})
    state = wrapped.fit(problem, theta, torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(1)
    for_f, _ = wrapped._paired(problem, theta, 1, 50, generator, state.expansion, state.base)
    alone = estimators.make(base).estimate(problem, theta, 1, 50,
                                           torch.Generator().manual_seed(1), state.base)
    torch.testing.assert_close(for_f, alone)
    estimates = wrapped.estimate(problem, theta, 1, 4000, torch.Generator().manual_seed(2),
                                 state)
    z = (estimates.mean(0) - truth) / (estimates.std(0) / 4000**0.5)
    assert float(z.abs().max()) < 4.5
    plain = estimators.make(base).estimate(problem, theta, 1, 4000,
                                           torch.Generator().manual_seed(2), state.base)
    assert float(estimates.var(0).sum()) < float(plain.var(0).sum())


def test_the_delta_control_variate_refuses_what_its_base_cannot_run():
    wrapped = estimators.make("delta_cv", {"base": "reparameterization"})
    assert "requires" in wrapped.incompatibility(problems.make("bernoulli_toy"), 1)
    with pytest.raises(Exception, match="base='delta_cv' must be another registered"):
        estimators.make("delta_cv", {"base": "delta_cv"})
