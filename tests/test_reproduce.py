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

NAMES = ["disarm2020", "kool2019", "liu2025", "mohamed2020", "relax2018", "shah2025", "tang2025"]


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
    train = recipe.train_settings(quick=True)
    if train is not None:
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
    traces = pd.read_parquet(tmp_path / "train.parquet")
    assert set(traces["estimator"]) == {"score_function", "rebar", "relax"}
    assert traces["variance"].notna().all() and (traces["error"] == "").all()


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
