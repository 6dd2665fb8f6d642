"""vrbench reproduce: every shipped recipe is valid, runs quickly, and its note holds each
claim against the measurements, saying "not reproduced" when the numbers say so."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from vrbench import estimators, problems
from vrbench.cli import main
from vrbench.components import parse_specs
from vrbench.reproduce import (
    CLAIM_KINDS,
    RecipeError,
    _claim_along_training,
    _outcome,
    available,
    load_recipe,
    reproduce,
)

NAMES = [
    "disarm2020",
    "disarm2020_fashion",
    "kool2019",
    "liu2025",
    "mohamed2020",
    "mohamed2020_logistic",
    "relax2018",
    "shah2025",
    "tang2025",
]


def test_the_shipped_recipes_are_listed(capsys):
    assert main(["reproduce", "--list"]) == 0
    out = capsys.readouterr().out
    for name in NAMES:
        assert name in out
    assert [r.name for r in available()] == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_every_recipe_names_real_components_and_valid_claims(name, tmp_path):
    recipe = load_recipe(name)
    assert recipe.title and recipe.paper and recipe.published and recipe.setting
    config = recipe.sweep_config(tmp_path, quick=True, jobs=1)  # validates the sweep
    if config is not None:
        assert config.estimators and config.problems
    for train in (recipe.train_settings(quick=True), recipe.train_settings(True, "shared")):
        if train is None:
            continue
        for text in train["estimators"]:
            for spec in parse_specs(text):
                estimators.make(spec.name, spec.params)
        for text in train["problems"]:
            for spec in parse_specs(text):
                problems.make(spec.name, spec.params)
    assert recipe.claims and all(c["kind"] in CLAIM_KINDS for c in recipe.claims)


def test_a_bad_recipe_is_refused_by_name(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('title = "x"\n[[claims]]\nkind = "vibes"\ntext = "x"\n')
    with pytest.raises(RecipeError, match="claim 1 has kind 'vibes'; valid kinds"):
        load_recipe(str(path))
    with pytest.raises(RecipeError, match="unknown recipe 'nope'; valid recipes: disarm2020"):
        load_recipe("nope")


def test_a_sweep_recipe_reproduces_quickly_and_resumes(tmp_path):
    recipe = load_recipe("mohamed2020")
    note = reproduce(recipe, tmp_path, quick=True, jobs=1)
    text = note.read_text()
    assert "![variance_vs_parameter](figures/variance_vs_parameter.png)" in text
    assert (tmp_path / "figures" / "variance_vs_parameter.pdf").exists()
    # The published lessons show even at the quick size: pathwise loses to the score function
    # for cos(kx) at large k, and different estimators win in different places.
    assert "**For cos(kx) at large k the pathwise estimator loses to the score function**: " \
           "reproduced." in text
    assert "**No estimator has the lowest variance everywhere**: reproduced." in text
    parts = sorted((tmp_path / "cells").glob("*.parquet"))
    stamps = [p.stat().st_mtime_ns for p in parts]
    reproduce(recipe, tmp_path, quick=True, jobs=1)
    assert [p.stat().st_mtime_ns for p in parts] == stamps  # every cell reused


def test_a_training_recipe_reproduces_quickly(tmp_path):
    recipe = load_recipe("relax2018")
    note = reproduce(recipe, tmp_path, quick=True)
    text = note.read_text()
    assert "training_variance" in text and (tmp_path / "train.parquet").exists()
    assert "**Code checked against.**" in text
    assert "figures/same_theta/training_variance.png" in text
    traces = pd.read_parquet(tmp_path / "train.parquet")
    names = {"score_function", "rebar", "rebar:relaxation=plain", "relax"}
    assert set(traces["estimator"]) == names
    assert traces["variance"].notna().all() and (traces["error"] == "").all()
    shared = pd.read_parquet(tmp_path / "same_theta" / "train.parquet")
    assert set(shared["estimator"]) == names and set(shared["driver"]) == {"relax"}
    # Every estimator is measured at the same θ_t: one exact J per step and seed.
    assert (shared.groupby(["problem", "seed", "step"])["value"].nunique() == 1).all()
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / "online").glob("*.parquet")}
    reproduce(recipe, tmp_path, quick=True)  # the stored runs are reused
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "online").glob("*.parquet")} == mtimes


def test_relax2018_holds_the_published_ordering_at_the_same_theta():
    """REBAR against REINFORCE and against RELAX at the same θ_t along the run, with the
    relaxation of the authors' released code, adapted as the authors adapt it."""
    recipe = load_recipe("relax2018")
    pairs = {(c["lower"], c["higher"]) for c in recipe.claims
             if c["kind"] == "along_training" and c.get("run") == "same_theta"}
    assert {("rebar", "score_function"), ("relax", "rebar"), ("relax", "score_function")} <= pairs
    assert estimators.make("rebar").relaxation == "shifted"
    online = recipe.online_settings(quick=False)
    assert online["lr"] == online["control_lr"] == 0.01 and online["n_samples"] == 1
    assert online["steps"]["default"] == 10_000
    for source in ("github.com/tensorflow/models", "research/rebar", "github.com/duvenaud/relax",
                   "rebar_toy.py"):
        assert source in recipe.sources


@pytest.mark.parametrize("name", NAMES)
def test_every_note_names_the_authors_code_it_was_checked_against(name):
    assert "github.com/" in load_recipe(name).sources


@pytest.mark.parametrize(("name", "sources"), [
    ("liu2025", ["github.com/sail-sg/understand-r1-zero", "train_zero_math.py",
                 "github.com/sail-sg/oat", "oat/algorithms/ppo.py", "oat/utils/ops.py"]),
    ("tang2025", ["released no code", "github.com/huggingface/trl",
                  "trl/trainer/grpo_trainer.py", "trl/trainer/rloo_trainer.py",
                  "github.com/allenai/open-instruct", "open_instruct/grpo_utils.py"]),
    ("shah2025", ["code: none found", "github.com/volcengine/verl",
                  "verl/trainer/ppo/core_algos.py", "verl/trainer/ppo/ray_trainer.py",
                  "verl/workers/actor/dp_actor.py", "github.com/huggingface/trl"]),
])
def test_language_model_rl_notes_name_the_code_they_read(name, sources):
    """The authors' code where they released it; where they did not, the note says so and
    names the implementations of the same configurations that were read instead."""
    recipe = load_recipe(name)
    for source in sources:
        assert source in recipe.sources


def test_a_claim_the_numbers_contradict_is_not_reproduced(tmp_path):
    """The same recipe with a claim turned around: the note must say so."""
    recipe = load_recipe("mohamed2020")
    flipped = [dict(c, expect="below") if c.get("at") == "largest" else c
               for c in recipe.claims]
    note = reproduce(dataclasses.replace(recipe, claims=flipped), tmp_path, quick=True, jobs=1)
    assert "**For cos(kx) at large k the pathwise estimator loses to the score function**: " \
           "not reproduced." in note.read_text()


@pytest.mark.parametrize(("low", "high", "expect", "outcome"), [
    (0.2, 0.8, "below", "reproduced"), (1.2, 3.0, "below", "not reproduced"),
    (0.8, 1.2, "below", "inconclusive"), (1.2, 3.0, "above", "reproduced"),
])
def test_outcomes_follow_the_interval(low, high, expect, outcome):
    assert _outcome(low, high, expect) == outcome


def test_along_training_needs_significance_and_never_contradiction():
    def traces(ratio: float, spread: float) -> pd.DataFrame:
        rows = []
        for step in range(5):
            for seed in range(3):
                for name, variance in (("a", ratio), ("b", 1.0)):
                    rows.append({"problem": "p", "estimator": name, "seed": seed, "step": step,
                                 "variance": variance, "variance_ci_low": variance / spread,
                                 "variance_ci_high": variance * spread})
        return pd.DataFrame(rows)

    claim = {"text": "a below b", "problem": "p", "lower": "a", "higher": "b"}
    assert _claim_along_training(claim, pd.DataFrame(), traces(0.5, 1.1)).outcome == "reproduced"
    assert _claim_along_training(claim, pd.DataFrame(), traces(2.0, 1.1)).outcome == \
        "not reproduced"
    assert _claim_along_training(claim, pd.DataFrame(), traces(0.9, 2.0)).outcome == \
        "inconclusive"


def test_tied_estimators_count_as_one_winner():
    """Two estimators that trade the lead within their intervals are one winner, not two."""
    def rows(winner_low: dict[str, float]) -> list[dict]:
        out = []
        for x, variances in winner_low.items():
            for name, (variance, half) in variances.items():
                out.append({"problem": f"gaussian_cosine:omega={x}", "estimator": name,
                            "status": "ok", "n_samples": 1, "dim": 2, "variance": 2 * variance,
                            "problem_params": f'{{"omega": {x}}}',
                            "coordinate_variance": [variance, variance],
                            "coordinate_variance_ci_low": [variance - half] * 2,
                            "coordinate_variance_ci_high": [variance + half] * 2})
        return out

    alternating = {0.5: {"a": (1.0, 0.1), "b": (1.05, 0.1), "c": (5.0, 0.1)},
                   2.0: {"a": (1.05, 0.1), "b": (1.0, 0.1), "c": (5.0, 0.1)}}
    claim = {"text": "no single winner", "problems": ["gaussian_cosine"],
             "symbols": {"omega": "k"}}
    verdict = CLAIM_KINDS["no_single_winner"](claim, pd.DataFrame(rows(alternating)), None)
    assert verdict.outcome == "not reproduced"  # a (tied with b) is best everywhere
    assert any("a = b (k = 0.5 to 2)" in line for line in verdict.lines), verdict.lines
    apart = {0.5: {"a": (1.0, 0.01), "b": (2.0, 0.01)}, 2.0: {"a": (2.0, 0.01),
                                                              "b": (1.0, 0.01)}}
    verdict = CLAIM_KINDS["no_single_winner"](claim, pd.DataFrame(rows(apart)), None)
    assert verdict.outcome == "reproduced" and "2 estimators at least" in verdict.lines[-1]


def test_online_runs_adapt_the_controls_at_one_theta():
    from vrbench.bench.online import OnlineSettings, run
    from vrbench.components import Spec

    def last(control_lr: float) -> pd.DataFrame:
        settings = OnlineSettings(steps=40, eval_every=20, eval_replicates=400,
                                  control_lr=control_lr)
        rows = pd.DataFrame(run(Spec("bernoulli_toy", {"t": 0.45, "theta": 1.0}),
                                [Spec("score_function"), Spec("rebar")], "score_function", 0,
                                settings))
        assert (rows.groupby("step")["value"].nunique() == 1).all()  # one θ_t per step
        return rows[rows["step"] == 40].set_index("estimator")

    frozen, adapted = last(1e-12), last(0.05)
    # θ follows REINFORCE's draws, the same in both runs; only REBAR's control differs.
    assert frozen.loc["score_function", "variance"] == adapted.loc["score_function", "variance"]
    assert frozen.loc["rebar", "variance"] != adapted.loc["rebar", "variance"]


@pytest.mark.parametrize("relaxation", ["shifted", "plain"])
def test_rebar_is_unbiased_with_either_relaxation_away_from_zero(relaxation):
    import torch

    problem = problems.make("bernoulli_toy", {"t": 0.45, "theta": 1.5})
    theta = problem.initial_theta()
    rebar = estimators.make("rebar", {"relaxation": relaxation})
    state = {"eta": torch.tensor(1.3, dtype=torch.float64),
             "log_temperature": torch.tensor(0.2, dtype=torch.float64)}
    estimates = rebar.estimate(problem, theta, 1, 200_000, torch.Generator().manual_seed(0),
                               state)
    error = float(estimates.mean(0)[0] - problem.exact_grad(theta)[0])
    standard_error = float(estimates.std(0)[0]) / 200_000**0.5
    assert abs(error) < 4.5 * standard_error  # a bias of 4.5 SE would be caught
