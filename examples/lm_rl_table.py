"""The language-model RL estimators' bias, direction and variance, tabulated from a sweep.

Reads a results directory of the sequence problems (``configs/llm_rl.toml`` writes one) and
prints, for every setting of the problem (prompt difficulty, β, staleness) and every estimator,
at each G: the bias as a fraction of ‖∇J‖, the cosine between the mean estimate and ∇J, and
the variance of one estimate relative to ‖∇J‖² (``Var ĝ / ‖∇J‖²``); then the bias against
staleness of the settings that sweep it.

    .venv/bin/vrbench run --config configs/llm_rl.toml
    .venv/bin/python examples/lm_rl_table.py results/llm_rl
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from vrbench.bench import read_results
from vrbench.reports.labels import Labels, plain

LABELS = Labels()

SETTING_KEYS = ("difficulty", "beta", "staleness")


def settings(frame: pd.DataFrame) -> pd.DataFrame:
    """The problem parameters of each row, with the problems' defaults filled in."""
    defaults = {"difficulty": "mixed", "beta": 0.0, "staleness": 0.0}
    params = frame["problem_params"].map(json.loads)
    return pd.DataFrame({key: params.map(lambda p, k=key: p.get(k, defaults[k]))
                         for key in SETTING_KEYS}, index=frame.index)


def cell_text(row: pd.Series) -> str:
    relative = row["bias_norm"] / row["true_grad_norm"]
    spread = row["variance"] / row["true_grad_norm"] ** 2
    return f"{relative:.0%} / {row['mean_cosine']:.3f} / {spread:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    args = parser.parse_args()
    frame, _ = read_results(args.results)
    frame = frame[(frame["status"] == "ok") & frame["problem"].str.startswith("lm_")]
    frame = frame.join(settings(frame))
    sizes = sorted(frame["n_samples"].unique())
    print("Each entry: bias as a fraction of ‖∇J‖ / cosine(E ĝ, ∇J) / Var ĝ ÷ ‖∇J‖².\n")
    for (difficulty, beta, staleness), block in frame.groupby(list(SETTING_KEYS)):
        problem = block["problem"].iloc[0]
        print(f"### {plain(LABELS.problem(problem))}: difficulty {difficulty}, β = {beta:g}, "
              f"staleness {staleness:g}; ‖∇J‖ = {block['true_grad_norm'].iloc[0]:.4g}\n")
        print("| estimator | " + " | ".join(f"G = {n}" for n in sizes) + " |")
        print("|---" * (len(sizes) + 1) + "|")
        for name, rows in block.groupby("estimator", sort=False):
            by_n = rows.set_index("n_samples")
            print(f"| {plain(LABELS.estimator(name))} | "
                  + " | ".join(cell_text(by_n.loc[n]) if n in by_n.index else "—"
                               for n in sizes) + " |")
        print()
    swept = frame[frame["difficulty"] == "mixed"]
    if swept["staleness"].nunique() > 1:
        largest = max(sizes)
        print(f"### Bias against staleness (mixed prompts, β = 0, G = {largest}): bias as a "
              "fraction of ‖∇J‖ / cosine\n")
        at = swept[swept["n_samples"] == largest]
        steps = sorted(at["staleness"].unique())
        print("| estimator | " + " | ".join(f"staleness {s:g}" for s in steps) + " |")
        print("|---" * (len(steps) + 1) + "|")
        for name, rows in at.groupby("estimator", sort=False):
            by_s = rows.set_index("staleness")
            print(f"| {plain(LABELS.estimator(name))} | " + " | ".join(
                f"{by_s.loc[s, 'bias_norm'] / by_s.loc[s, 'true_grad_norm']:.0%} / "
                f"{by_s.loc[s, 'mean_cosine']:.3f}" if s in by_s.index else "—"
                for s in steps) + " |")


if __name__ == "__main__":
    main()
