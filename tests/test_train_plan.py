"""One training path: `vrbench train` and a recipe's runs take their defaults from one
TrainSettings and are planned by one TrainPlan; the harness and the conformance checks share
one missing row and one estimate validator."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vrbench import estimators, problems
from vrbench.bench import runner, store
from vrbench.bench.cells import Cell
from vrbench.bench.train import DEFAULT_SEEDS, TrainPlan, TrainSettings
from vrbench.cli import _parser, _train_plan
from vrbench.components import Spec
from vrbench.reproduce import SETTINGS_KEYS, _plan
from vrbench.testing import estimator_checks


def _train_action_defaults() -> dict[str, object]:
    (commands,) = (a for a in _parser()._actions if a.dest == "command")
    train = commands.choices["train"]
    return {action.dest: action.default for action in train._actions}


def test_the_cli_and_a_recipe_default_to_the_same_settings():
    args = _parser().parse_args(["train", "-e", "score_function", "-p", "bernoulli_toy"])
    cli = _train_plan(args)
    recipe = _plan({"problems": ["bernoulli_toy"], "estimators": ["score_function"]}, "cpu")
    assert cli.settings == recipe.settings == TrainSettings()
    assert cli.seeds == recipe.seeds == DEFAULT_SEEDS


def test_every_setting_has_an_option_and_a_recipe_key_of_its_name():
    """An option feeds the field of its name, with the field's default (one copy of each)."""
    options = _train_action_defaults()
    defaults = TrainSettings()
    for field in dataclasses.fields(TrainSettings):
        if field.name in ("reference", "groups"):  # two options; repeatable --group
            continue
        assert field.name in options, field.name
        assert options[field.name] == getattr(defaults, field.name), field.name
    assert options["reference_precision"] == defaults.reference.precision
    assert options["reference_estimates"] == defaults.reference.max_estimates
    assert options["seed"] == list(DEFAULT_SEEDS)
    for key in SETTINGS_KEYS:
        assert key in {f.name for f in dataclasses.fields(TrainSettings)}, key


def test_a_recipe_key_reaches_its_field():
    plan = _plan({"problems": ["bernoulli_toy"], "estimators": ["score_function"],
                  "eval_replicates": 7, "steps": 3, "seeds": [5]}, "cpu")
    assert (plan.settings.eval_replicates, plan.settings.steps, plan.seeds) == (7, 3, (5,))
    args = _parser().parse_args(["train", "-e", "score_function", "-p", "bernoulli_toy",
                                 "--eval-replicates", "7", "--steps", "3", "--seed", "5"])
    assert _train_plan(args).settings == plan.settings


def test_the_plan_is_problems_by_estimators_by_seeds_and_skips_what_cannot_run():
    plan = TrainPlan((Spec("bernoulli_toy"), Spec("gaussian_quadratic")),
                     (Spec("score_function"), Spec("reparameterization")),
                     TrainSettings(n_samples=3), seeds=(0, 1),
                     n_samples={"score_function": 5})
    runs, skipped = plan.runs()
    assert [(str(r.problem), str(r.estimator), r.seed, r.settings.n_samples) for r in runs] == [
        ("bernoulli_toy", "score_function", 0, 5), ("bernoulli_toy", "score_function", 1, 5),
        ("gaussian_quadratic", "score_function", 0, 5),
        ("gaussian_quadratic", "score_function", 1, 5),
        ("gaussian_quadratic", "reparameterization", 0, 3),
        ("gaussian_quadratic", "reparameterization", 1, 3)]
    assert [(str(s.problem), str(s.estimator)) for s in skipped] == [
        ("bernoulli_toy", "reparameterization")]
    assert skipped[0].reason == estimators.make("reparameterization").incompatibility(
        problems.make("bernoulli_toy"), 3)
    # A per-estimator n equal to the default leaves the settings, and the runs' keys, as is.
    same = dataclasses.replace(plan, n_samples={"score_function": 3}).runs()[0]
    assert same[0].settings is plan.settings


def test_a_lost_cell_is_the_stores_missing_row():
    cell = Cell(Spec("bernoulli_toy"), Spec("score_function"), 2, 100, 0)
    assert runner.lost_row(cell, "lost") == store.missing_row(runner.cell_row(cell), "lost")


class _Wide(estimators.make("score_function").__class__):
    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        estimates = super().estimate(problem, theta, n_samples, replicates, generator, state)
        return torch.cat([estimates, estimates], dim=1)


class _Infinite(estimators.make("score_function").__class__):
    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        return torch.full((replicates, problem.dim), torch.inf, dtype=torch.float64)


@pytest.mark.parametrize(("estimator", "error", "message"), [
    (_Wide(), ValueError, r"score_function returned shape \(3, 2\), expected \(3, 1\)"),
    (_Infinite(), FloatingPointError, "score_function returned non-finite estimates"),
])
def test_the_harness_and_the_checks_validate_estimates_alike(estimator, error, message):
    problem = problems.make("bernoulli_toy")
    theta = problem.initial_theta()
    with pytest.raises(error, match=message):
        next(runner.estimate_in_chunks(problem, estimator, theta, 2, 3,
                                       torch.Generator().manual_seed(0)))
    with pytest.raises(error, match=message):
        runner.checked_estimates(estimator.estimate(problem, theta, 2, 3,
                                                    torch.Generator().manual_seed(0)),
                                 estimator, problem, 3)
    assert estimator_checks.checked_estimates is runner.checked_estimates
