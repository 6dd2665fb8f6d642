"""The level of vrbench's bias tests: how often a correct estimator is flagged as biased.

Not a speed benchmark. For correct (unbiased, built-in) estimators on every compatible problem,
at θ along an optimization run as ``vrbench train`` makes one (Adam, lr 0.05, n = 4, the
score function's gradients; steps 0, 50, 100, 150 and 200), or with ``--where check`` at the
θ where ``vrbench check`` runs, this measures the estimator as a trace row does (R = 1000
estimates of n = 4 draws, the harness's chunks) and records the p-value of the harness's
bias test (the ``bias_pvalue`` of results and traces), and, with
``--check``, the p-value of the conformance check's bias test at ``--check-estimates``
estimates. A test holds its level if the fraction of p-values below α is at most α (up to
sampling error: about ``α + 3 √(α/runs)``). Each measurement has random streams of its own.
Where every estimate is the same vector and differs from ∇J (a step reward never reached
in 4,000 draws), the harness reports an error, not a p-value, and so does this (such rows
are left out of the rates). Prints one JSON line per measurement, then a table of rejection
rates. Run from the repository root:

    .venv/bin/python benchmarks/bias_test_level.py --seeds 0,1 --output level.jsonl

``--compare`` adds the p-values of the tests vrbench used before (a t-test per coordinate on
the plain sample variance) and of variants, from the same estimates, to show what changed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
import zlib
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from vrbench import devices, estimators, problems
from vrbench.bench.metrics import EstimateAccumulator, bias_directions, numerical_failure
from vrbench.bench.runner import estimate_in_chunks
from vrbench.testing import check_instance, sample_sizes
from vrbench.testing.common import check_thetas

STEPS = (0, 50, 100, 150, 200)
ALPHAS = (0.05, 0.01, 0.001, 1e-4)
CPU = torch.device("cpu")


def training_thetas(problem, seed: int, steps: tuple[int, ...] = STEPS, n: int = 4,
                    lr: float = 0.05) -> dict[int, torch.Tensor]:
    """θ along ``vrbench train``'s optimization with the score function (its loop, its seeds)."""
    estimator = estimators.make("score_function")
    generator = devices.generator(CPU, seed)
    theta = problem.initial_theta().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([theta], lr=lr)
    sign = -1.0 if problem.maximize else 1.0
    kept = {}
    for step in range(max(steps) + 1):
        if step in steps:
            kept[step] = theta.detach().clone()
        if step == max(steps):
            break
        estimate = estimator.estimate(problem, theta.detach(), n, 1, generator)
        optimizer.zero_grad()
        theta.grad = sign * estimate[0]
        optimizer.step()
        with torch.no_grad():
            theta.copy_(problem.project(theta))
    return kept


def stream_seed(*parts: object) -> int:
    """A seed of its own for each measurement, so that p-values of different triples are
    independent (the same seed at every step would repeat one unlucky draw along a run)."""
    return zlib.crc32("/".join(map(str, parts)).encode())


def measure(problem, estimator, theta, seed: int, n: int, replicates: int) -> dict:
    """The harness's bias p-value at ``theta`` (None where every estimate is the same vector,
    which the harness reports as an error), and the estimates it was computed from."""
    state = estimator.fit(problem, theta, devices.generator(CPU, stream_seed(seed, "fit")))
    true_grad = problem.exact_grad(theta).detach()
    accumulator = EstimateAccumulator(true_grad, replicates)
    kept = []
    for estimates, _ in estimate_in_chunks(problem, estimator, theta, n, replicates,
                                           devices.generator(CPU, seed), state):
        accumulator.update(estimates)
        kept.append(estimates.to(torch.float64))
    failure = numerical_failure(accumulator.metrics(), accumulator, estimator.unbiased)
    return {"pvalue": None if failure else accumulator.bias_test()[1], "failure": failure,
            "estimates": torch.cat(kept), "true_grad": true_grad}


def _t_pvalue(projections: torch.Tensor, expected: torch.Tensor, groups: int) -> float:
    """Bonferroni p-value of t-tests of the projections' means, on ``groups`` batch means
    (``groups = R``: the plain t-test on the sample variance)."""
    from scipy import stats

    count = projections.shape[0]
    bounds = [count * g // groups for g in range(groups + 1)]
    means = torch.stack([projections[a:b].mean(0) for a, b in itertools.pairwise(bounds)])
    se = means.std(0) / math.sqrt(groups)
    varies = se > 1e-14 * (1 + projections.mean(0).abs())
    if not bool(varies.any()):
        return math.nan
    t = float(((projections.mean(0) - expected).abs()[varies] / se[varies]).max())
    return min(1.0, int(varies.sum()) * 2 * float(stats.t.sf(t, groups - 1)))


def compare(estimates: torch.Tensor, true_grad: torch.Tensor) -> dict[str, float]:
    """p-values of the tests vrbench used before (per coordinate up to 16 dimensions, plain
    t) and of variants, from the same estimates."""
    count = estimates.shape[0]
    rows = {}
    for name, coordinates in (("coordinates", True), ("projections", False)):
        directions = bias_directions(true_grad, coordinates=coordinates)
        projections, expected = estimates @ directions.T, directions @ true_grad
        rows[f"pvalue_{name}_t"] = _t_pvalue(projections, expected, count)
        rows[f"pvalue_{name}_batch_means"] = _t_pvalue(projections, expected, min(32, count))
    return rows


def check_pvalue(problem, estimator, theta, seed: int, n: int, count: int) -> float:
    """The p-value of the conformance check's bias test with ``count`` estimates."""
    from vrbench.testing.statistics import mean_test

    state = estimator.fit(problem, theta, devices.generator(CPU, stream_seed(seed, "check fit")))
    true_grad = problem.exact_grad(theta).detach().to(torch.float64)
    directions = bias_directions(true_grad, coordinates=True)

    def draw(size, generator):
        for estimates, _ in estimate_in_chunks(problem, estimator, theta, n, size, generator,
                                               state):
            yield estimates.to(torch.float64) @ directions.T

    units = torch.full((directions.shape[0],), float(true_grad.norm()), dtype=torch.float64)
    test = mean_test(draw, directions @ true_grad, units, 0.01,
                     (devices.generator(CPU, stream_seed(seed, "pilot")),
                      devices.generator(CPU, stream_seed(seed, "check"))),
                     max_count=count)
    return test.pvalue


def table(rows: list[dict], key: str) -> str:
    values = [r[key] for r in rows if r.get(key) is not None and not math.isnan(r[key])]
    lines = [f"{key}: {len(values)} p-values",
             "| α | rejected | rate | bound (α + 3√(α/N)) |", "| --- | --- | --- | --- |"]
    for alpha in ALPHAS:
        rejected = sum(p < alpha for p in values)
        bound = alpha + 3 * math.sqrt(alpha / max(len(values), 1))
        lines.append(f"| {alpha:g} | {rejected} | {rejected / max(len(values), 1):.4f} | "
                     f"{bound:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--estimators", help="comma-separated (default: every unbiased one)")
    parser.add_argument("--problems", help="comma-separated (default: every problem)")
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--check", action="store_true",
                        help="also the conformance check's bias test (slower)")
    parser.add_argument("--check-estimates", type=int, default=20_000)
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--where", choices=["training", "check"], default="training",
                        help="θ along a training run (default problems), or where `vrbench "
                             "check` runs (check_params: the check θ and its two perturbations)")
    parser.add_argument("--output", help="append the JSON lines to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    estimator_names = (args.estimators.split(",") if args.estimators else
                       [e for e in estimators.registry.names() if estimators.make(e).unbiased])
    problem_names = args.problems.split(",") if args.problems else problems.registry.names()
    rows = []
    for problem_name in problem_names:
        problem = (problems.make(problem_name) if args.where == "training"
                   else check_instance(problem_name))
        if not problem.has_exact_gradient:
            continue  # the level is measured against exact gradients only
        for seed in (int(s) for s in args.seeds.split(",")):
            thetas = (training_thetas(problem, seed) if args.where == "training" else
                      {label or "θ₀": theta for label, theta in check_thetas(problem, seed=seed)})
            for estimator_name in estimator_names:
                estimator = estimators.make(estimator_name)
                if estimator.incompatibility(problem, args.n) is not None or (
                        args.n not in sample_sizes(estimator, [args.n])):
                    continue
                for step, theta in thetas.items():
                    started = time.perf_counter()
                    row = {"problem": problem_name, "estimator": estimator_name, "seed": seed,
                           "step": step}
                    triple_seed = stream_seed(problem_name, estimator_name, step, seed)
                    try:
                        measured = measure(problem, estimator, theta, triple_seed, args.n,
                                           args.replicates)
                        row["pvalue"] = measured["pvalue"]
                        if measured["failure"]:
                            row["error"] = measured["failure"]
                        elif args.compare:
                            row.update(compare(measured["estimates"], measured["true_grad"]))
                        if args.check and not measured["failure"]:
                            row["check_pvalue"] = check_pvalue(problem, estimator, theta,
                                                               triple_seed, args.n,
                                                               args.check_estimates)
                    except Exception as exc:  # a failed measurement is not a rejection
                        row["error"] = f"{type(exc).__name__}: {exc}"
                    row["seconds"] = round(time.perf_counter() - started, 2)
                    rows.append(row)
                    line = json.dumps(row)
                    print(line, flush=True)
                    if args.output:
                        with open(args.output, "a") as out:
                            out.write(line + "\n")
    for key in ("pvalue", "pvalue_coordinates_t", "pvalue_coordinates_batch_means",
                "pvalue_projections_t", "pvalue_projections_batch_means", "check_pvalue"):
        if any(key in r for r in rows):
            print(table(rows, key))


if __name__ == "__main__":
    main()
