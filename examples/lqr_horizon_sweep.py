"""How the variance of LQR policy gradients grows with the horizon, estimator by estimator.

Backpropagating through unstable dynamics multiplies the state's sensitivity by the closed-loop
matrix at every step, so the pathwise gradient's variance grows geometrically with the horizon
(Parmas, Rasmussen, Peters & Doya, "PIPPS", ICML 2018); the score function's grows with the
number of actions and the size of the returns instead. This runs one vrbench cell per
(problem, horizon, estimator) and prints the relative variance of one estimate,
``Var ĝ / ‖∇J‖²``, with its 95% interval (n = 1 trajectory per estimate), and the absolute
variances of the score-function and pathwise estimates.

    .venv/bin/python examples/lqr_horizon_sweep.py --replicates 4000 --horizons 5,10,20,40,80
"""

from __future__ import annotations

import argparse

from vrbench.bench.cells import Cell
from vrbench.bench.runner import run_cell
from vrbench.components import Spec

SYSTEMS = [("lqr_stable", {}), ("lqr_unstable", {}), ("lqr_unstable", {"gain": 0.1})]
ESTIMATORS = ["score_function", "reinforce_reward_to_go", "value_baseline_exact",
              "reparameterization"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=4000)
    parser.add_argument("--horizons", default="5,10,20,40,80")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    horizons = [int(h) for h in args.horizons.split(",")]
    print("| problem | H | ‖∇J‖ | " + " | ".join(ESTIMATORS)
          + " | Var score | Var pathwise | pathwise / score |")
    print("|---" * (6 + len(ESTIMATORS)) + "|")
    for name, params in SYSTEMS:
        label = name + "".join(f" {k}={v}" for k, v in params.items())
        for horizon in horizons:
            problem = Spec(name, {**params, "horizon": horizon})
            cells, rows = [], []
            for estimator in ESTIMATORS:
                row = run_cell(Cell(problem, Spec(estimator), 1, args.replicates, args.seed))
                if row["status"] != "ok":
                    raise SystemExit(f"{label} H={horizon} {estimator}: {row['error']}")
                rows.append(row)
                scale = row["true_grad_norm"] ** 2
                cells.append(f"{row['variance'] / scale:.3g} "
                             f"[{row['variance_ci_low'] / scale:.3g}, "
                             f"{row['variance_ci_high'] / scale:.3g}]")
            score, pathwise = rows[0]["variance"], rows[-1]["variance"]
            print(f"| {label} | {horizon} | {rows[0]['true_grad_norm']:.3g} | "
                  + " | ".join(cells) + f" | {score:.3g} | {pathwise:.3g} | "
                  f"{pathwise / score:.3g} |", flush=True)


if __name__ == "__main__":
    main()
