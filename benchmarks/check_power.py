"""How often `vrbench check` catches deliberately wrong components, and how long it takes.

Not a speed benchmark: this runs the conformance suite, at its default settings, on the
wrong (and correct) plugin components of ``tests/wrong_components.py`` over several seeds and
prints one JSON line per run (what failed, on which problems, how long it took), then a
Markdown table of detection rates. Run from the repository root:

    .venv/bin/python benchmarks/check_power.py estimators --seeds 0,1,2,3,4
    .venv/bin/python benchmarks/check_power.py problems --seeds 0,1,2,3,4

Each estimator run is a whole-suite check (every compatible built-in problem) unless
``--problems`` names some; expect three to four minutes of CPU per whole-suite run.
``--only`` takes labels or unique prefixes of them, separated by ``|``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import wrong_components as wrong
from vrbench.problems import Problem
from vrbench.testing import check_estimator, check_problem


class PoissonWithoutLogProb(wrong.Poisson):
    """wrong.Poisson as a plugin author who skipped the optional log_prob would write it."""

    log_prob = Problem.log_prob


class GaussianStepWithoutLogProb(wrong.GaussianStepLogScale):
    """wrong.GaussianStepLogScale without the optional log_prob."""

    log_prob = Problem.log_prob


ESTIMATORS = {
    "copied score function (correct)": wrong.CopiedScoreFunction(),
    "score function × 1.01": wrong.ScaledScoreFunction(1.01),
    "score function × 1.02": wrong.ScaledScoreFunction(1.02),
    "score function × 1.05": wrong.ScaledScoreFunction(1.05),
    "RLOO with n/(n−1) = 2": wrong.RLOOFactorTwo(),
    "RLOO claiming min_samples = 1": wrong.RLOOFromOne(),
    "baseline including the draw itself": wrong.SelfIncludingBaseline(),
    "one random baseline per call": wrong.SharedBaselinePerCall(),
    "score at the first θ it saw (a cache)": wrong.FirstThetaScoreFunction(),
    "replicates in identical pairs": wrong.PairedReplicates(),
    "second half of the replicates repeats the first": wrong.RepeatedHalves(),
    "leave-one-out over the replicate axis": wrong.ReplicateAxisLeaveOneOut(),
    "leave-one-out over the draw axis (correct)": wrong.DrawAxisLeaveOneOut(),
}

PROBLEMS = {
    "Poisson (correct)": wrong.Poisson(),
    "Poisson, value and ∇J +0.5%": PoissonWithoutLogProb(value_error=0.005),
    "Poisson, value and ∇J +1%": PoissonWithoutLogProb(value_error=0.01),
    "Poisson, value and ∇J +3%": PoissonWithoutLogProb(value_error=0.03),
    "Poisson, sampler rate +0.5%": PoissonWithoutLogProb(rate_error=0.005),
    "Poisson, sampler rate +1%": PoissonWithoutLogProb(rate_error=0.01),
    "Poisson, score sign flipped": PoissonWithoutLogProb(score_sign=-1.0),
    "Gaussian (correct)": wrong.GaussianStepLogScale(),
    "Gaussian, value and ∇J +1%": GaussianStepWithoutLogProb(value_error=0.01),
    "Gaussian, value and ∇J +3%": GaussianStepWithoutLogProb(value_error=0.03),
    "Gaussian, sampler σ +0.5%": GaussianStepWithoutLogProb(scale_error=0.005),
    "Gaussian, sampler σ +1%": GaussianStepWithoutLogProb(scale_error=0.01),
    "Gaussian, log σ score +5%": GaussianStepWithoutLogProb(score_error=0.05),
    "Gaussian, log σ score +10%": GaussianStepWithoutLogProb(score_error=0.10),
    "Gaussian, ∂/∂σ for ∂/∂log σ": GaussianStepWithoutLogProb(sigma_score=True),
    "Gaussian, log σ score +1%, with log_prob": wrong.GaussianStepLogScale(score_error=0.01),
    "Gaussian, exact_grad from its fields, not θ": wrong.GaussianStepFromFields(),
    "Poisson, sampler from its fields, not θ": wrong.PoissonSamplerFromFields(),
    "Poisson, noise drawn in f (global generator)": wrong.NoisyRewardPoisson(),
    "Poisson, noise drawn in f (seeded there)": wrong.SeededNoiseReward(),
}


STATISTICAL = ("unbiased", "variance independent of the replicates per call",
               "replicates independent", "problem usable")


def run(kind: str, label: str, seed: int, problems: list[str] | None = None) -> dict:
    started = time.perf_counter()
    cpu = time.process_time()
    if kind == "estimators":
        report = check_estimator(ESTIMATORS[label], problems=problems, seed=seed)
    else:
        report = check_problem(PROBLEMS[label], seed=seed)
    failures = [f for f in report.failures if not f.startswith("metadata")]
    statistical = [o for o in report.outcomes if o.failure is not None
                   and o.check in STATISTICAL]
    return {
        "kind": kind, "component": label, "seed": seed,
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1),
        "checks_failed": sorted({o.check for o in report.outcomes if o.failure}),
        "failed": bool(failures),
        "failures": failures,
        "problems_failed": sorted({o.where for o in statistical}),
        "problems_checked": len({r.where for r in report.power}),
        "summary": report.summary_lines(),
    }


def table(rows: list[dict]) -> str:
    lines = ["| component | caught | seeds | problems failing (mean) | checks failing | "
             "CPU s per run |", "| --- | --- | --- | --- | --- | --- |"]
    for label in dict.fromkeys(r["component"] for r in rows):
        mine = [r for r in rows if r["component"] == label]
        caught = sum(r["failed"] for r in mine)
        problems = sum(len(r["problems_failed"]) for r in mine) / len(mine)
        checked = max(r["problems_checked"] for r in mine)
        seconds = sum(r["cpu_seconds"] for r in mine) / len(mine)
        checks = sorted({c for r in mine for c in r["checks_failed"]} - {"metadata"})
        lines.append(f"| {label} | {caught}/{len(mine)} | "
                     f"{','.join(str(r['seed']) for r in mine)} | "
                     f"{problems:.1f} of {checked} | {', '.join(checks) or '—'} | "
                     f"{seconds:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["estimators", "problems"])
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--only", help="component labels, or unique prefixes of them, "
                                       "separated by | (default: all)")
    parser.add_argument("--problems", help="estimators: comma-separated problems to check on "
                                           "(default: every compatible one)")
    parser.add_argument("--output", help="append the JSON lines to this file")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as `vrbench check` does
    components = ESTIMATORS if args.kind == "estimators" else PROBLEMS
    labels = ([next(k for k in components if k.startswith(prefix))
               for prefix in args.only.split("|")] if args.only else list(components))
    rows = []
    for label in labels:
        for seed in (int(s) for s in args.seeds.split(",")):
            row = run(args.kind, label, seed,
                      args.problems.split(",") if args.problems else None)
            rows.append(row)
            line = json.dumps(row, ensure_ascii=False)
            print(line, flush=True)
            if args.output:
                with open(args.output, "a") as out:
                    out.write(line + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
