"""The language-model RL recipes and what they read: claims on mean estimates and on exact
statistics along training, and recipes whose claims name cells their sweeps run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vrbench.bench.sweep import plan_sweep
from vrbench.bench.train import TrainSettings, train
from vrbench.components import parse_specs
from vrbench.reproduce import CLAIM_KINDS, _mean_interval, load_recipe

SEQUENCE_RECIPES = ["liu2025", "tang2025", "shah2025"]


def cell(estimator: str, problem: str, grad, bias, variance, replicates=10_000, n=4):
    return {"estimator": estimator, "problem": problem, "n_samples": n, "status": "ok",
            "true_grad": list(grad), "coordinate_bias": list(bias),
            "coordinate_variance": list(variance), "replicates": replicates,
            "problem_params": "{}", "variance": float(sum(variance)), "dim": len(grad)}


def test_estimate_claims_read_the_mean_estimate():
    grad = np.array([1.0, 0.0, 0.0])
    frame = pd.DataFrame([
        cell("scaled", "p:a=1", grad, -0.25 * grad, [1e-4] * 3),  # E ĝ = 0.75 ∇J
        cell("tilted", "p:a=1", grad, [0.0, 0.5, 0.0], [1e-4] * 3),  # cosine 0.894
        cell("scaled", "p:a=2", 2 * grad, -0.5 * grad, [1e-4] * 3)])
    claim = CLAIM_KINDS["estimate"]
    base = {"text": "t", "problem": "p:a=1", "n": 4}
    assert claim({**base, "estimators": ["scaled"], "measure": "projection", "expect": "near",
                  "threshold": 0.75, "tolerance": 0.01}, frame, None).outcome == "reproduced"
    assert claim({**base, "estimators": ["scaled"], "measure": "cosine", "expect": "above",
                  "threshold": 0.999}, frame, None).outcome == "reproduced"
    assert claim({**base, "estimators": ["tilted"], "measure": "cosine", "expect": "above",
                  "threshold": 0.999}, frame, None).outcome == "not reproduced"
    assert claim({**base, "estimators": ["tilted"], "measure": "relative_bias",
                  "expect": "below", "threshold": 0.45}, frame, None).outcome == \
        "not reproduced"
    verdict = claim({**base, "estimators": ["scaled"], "measure": "relative_bias",
                     "versus": "p:a=2", "expect": "near", "threshold": 1.0,
                     "tolerance": 0.01}, frame, None)
    assert verdict.outcome == "reproduced", verdict.lines
    missing = claim({**base, "estimators": ["absent"], "measure": "cosine", "expect": "above",
                     "threshold": 0.9}, frame, None)
    assert missing.outcome == "inconclusive" and "no measurement of absent" in missing.lines[0]


@pytest.mark.parametrize("measure", ["relative_bias", "cosine", "projection"])
def test_mean_intervals_cover_the_truth(measure):
    """Over 400 simulated cells the interval holds the true mean's measure at least 95% of
    the time (the triangle-inequality intervals are conservative)."""
    rng = np.random.default_rng(1)
    grad = np.array([0.3, -0.2, 0.1, 0.05])
    truth_mean = 0.8 * grad + np.array([0.02, 0.01, -0.03, 0.0])
    variance, replicates = np.array([0.4, 0.2, 0.3, 0.1]), 2_000
    truth = {"relative_bias": np.linalg.norm(truth_mean - grad) / np.linalg.norm(grad),
             "cosine": truth_mean @ grad / (np.linalg.norm(truth_mean) * np.linalg.norm(grad)),
             "projection": truth_mean @ grad / (grad @ grad)}[measure]
    covered = 0
    for _ in range(400):
        mean = truth_mean + rng.standard_normal(4) * np.sqrt(variance / replicates)
        row = pd.Series({"true_grad": list(grad), "coordinate_bias": list(mean - grad),
                         "coordinate_variance": list(variance), "replicates": replicates})
        _, low, high = _mean_interval(measure, row, np.random.default_rng(0))
        covered += low <= truth <= high
    assert covered >= 0.95 * 400 - 3 * math.sqrt(400 * 0.05 * 0.95)


def test_final_statistic_claims_compare_seed_by_seed():
    rows = []
    for seed, (a, b) in enumerate([(1.0, 2.0), (1.5, 2.5), (0.9, 3.0)]):
        for name, final in (("good", a), ("bad", b)):
            rows += [{"problem": "p", "estimator": name, "seed": seed, "step": 0, "exact_kl": 0.1},
                     {"problem": "p", "estimator": name, "seed": seed, "step": 10,
                      "exact_kl": final}]
    traces = pd.DataFrame(rows)
    claim = {"text": "t", "problem": "p", "column": "exact_kl", "better": ["good"],
             "worse": "bad", "direction": "lower"}
    assert CLAIM_KINDS["final_statistic"](claim, pd.DataFrame(), traces).outcome == "reproduced"
    assert CLAIM_KINDS["final_statistic"]({**claim, "direction": "higher"}, pd.DataFrame(),
                                          traces).outcome == "not reproduced"
    mixed = traces.copy()
    mixed.loc[(mixed["estimator"] == "good") & (mixed["seed"] == 2) & (mixed["step"] == 10),
              "exact_kl"] = 5.0
    assert CLAIM_KINDS["final_statistic"](claim, pd.DataFrame(), mixed).outcome == \
        "inconclusive"
    change = CLAIM_KINDS["final_statistic"]({**claim, "change": True}, pd.DataFrame(), traces)
    assert change.outcome == "reproduced" and "change of exact_kl" in change.lines[0]


def test_training_traces_carry_the_exact_statistics():
    rows = train(parse_specs("lm_pass_fail:beta=0.1")[0], parse_specs("rloo_group")[0], 0,
                 TrainSettings(steps=2, n_samples=2, eval_every=1, eval_replicates=50))
    assert len(rows) == 3
    for row in rows:
        assert {"exact_kl", "exact_length_incorrect", "exact_success", "mean_cosine"} <= set(row)
        assert 0 <= row["exact_success"] <= 1 and row["exact_kl"] >= 0


@pytest.mark.parametrize("name", SEQUENCE_RECIPES)
def test_recipe_claims_name_cells_the_sweep_runs(name, tmp_path):
    """A claim about a cell its sweep never runs would always read 'inconclusive'."""
    recipe = load_recipe(name)
    config = recipe.sweep_config(Path(tmp_path), quick=False, jobs=1)
    cells, _ = plan_sweep(config)
    pairs = {(str(c.estimator), str(c.problem), c.n_samples) for c in cells}
    estimators = {e for e, _, _ in pairs}
    trained = recipe.train_settings(quick=False) or {}
    trained_pairs = {(str(e), str(p)) for text in trained.get("estimators", [])
                     for e in parse_specs(text)
                     for ptext in trained.get("problems", []) for p in parse_specs(ptext)}
    for claim in recipe.claims:
        if claim["kind"] == "estimate":
            for problem in [claim["problem"], *([claim["versus"]] if "versus" in claim else [])]:
                for estimator in claim["estimators"]:
                    assert (estimator, problem, claim["n"]) in pairs, (claim["text"], estimator,
                                                                       problem, sorted(estimators))
        else:
            names = [*claim.get("better", []), claim.get("worse")]
            for estimator in names:
                assert (estimator, claim["problem"]) in trained_pairs, (claim["text"], estimator)


def test_the_llm_rl_configuration_plans_its_grid():
    from vrbench.bench.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "llm_rl.toml")
    cells, skipped = plan_sweep(config)
    assert len(cells) == 10 * (8 + 7) * 4 and not skipped
    assert {str(c.problem) for c in cells} >= {
        "lm_pass_fail:beta=0.1,difficulty=hard,staleness=0.5",
        "lm_pass_fail:difficulty=mixed,staleness=2.0"}
