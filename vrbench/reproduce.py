"""``vrbench reproduce``: the field's classic comparisons, re-run with exact references.

A recipe (a TOML file under ``configs/papers/``) holds a sweep configuration and/or training
runs, a figure spec, and the paper's published claims, each stated as a check on the
measurements. Reproducing it runs the sweep (resumable, like any sweep) and the training
runs, writes the figures, and writes ``NOTE.md``: the paper, what it reports, where
vrbench's setting differs, and beside each claim the numbers vrbench measured and whether
they bear it out, fail it, or cannot tell (intervals that straddle the claim).

A recipe's keys::

    title, paper, published, setting   # text for the note
    [sweep]      # a sweep configuration (see vrbench.bench.config), without output
    [train]      # estimators, problems, steps, n_samples, lr, optimizer, eval_every,
                 # eval_replicates, seeds, groups (a parameter group's own optimizer
                 # and lr: { prior = { optimizer = "sgd", lr = 1e-2 } })
    [online]     # the papers' protocol (vrbench.bench.online): estimators, problems, steps
                 # (a number, or a table by problem with default), n_samples, lr, control_lr,
                 # optimizer, eval_every, eval_replicates, seeds, driver (the estimator whose
                 # steps move θ in the shared run, or "exact")
    [shared]     # shared runs (vrbench train --measure): driver, estimators (measured),
                 # problems, and the keys of [train] with eval_samples; measured against a
                 # reference where the problem has no exact gradient
    [figures]    # a figure spec (see vrbench.reports.selection.load_spec)
    [quick]      # quick.sweep, quick.train, quick.online and quick.shared override the above
                 # for --quick
    sources      # the authors' code each part was checked against, for the note
    [[claims]]   # each: text, kind, the kind's keys (see CLAIM_KINDS), and optionally
                 # explain: why the claim may not hold in vrbench's setting, printed when
                 # the measurements do not bear it out; along_training claims take run =
                 # "own" (each estimator's own run, the default) or "same_theta" (the
                 # estimators at the θ_t of one shared run: [online]'s or [shared]'s)
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import vrbench
from vrbench.bench import online
from vrbench.bench.config import SweepConfig, parse_config
from vrbench.bench.provenance import git_revision
from vrbench.bench.runs import run_all
from vrbench.bench.store import read_results
from vrbench.bench.sweep import run_sweep
from vrbench.bench.train import DEFAULT_SEEDS, SHARED_FILE, TRAIN_FILE, TrainPlan, TrainSettings
from vrbench.components import Spec, parse_specs
from vrbench.errors import ParameterError, VrbenchError
from vrbench.tomlfiles import read_toml, refuse_unknown_keys

RECIPES_DIR = Path(__file__).resolve().parents[1] / "configs" / "papers"
"""Where the shipped recipes live (in a source checkout)."""

SAME_THETA_DIR = "same_theta"
"""Where the shared run's traces (:data:`~vrbench.bench.train.TRAIN_FILE`) and figures go,
under the output."""
NOTE_FILE = "NOTE.md"
RECIPE_KEYS = ("title", "paper", "published", "setting", "sources", "sweep", "train",
               "online", "shared", "figures", "quick", "claims")
TRAIN_KEYS = ("estimators", "problems", "steps", "n_samples", "lr", "optimizer", "eval_every",
              "eval_replicates", "seeds", "groups")
ONLINE_KEYS = ("estimators", "problems", "steps", "n_samples", "lr", "control_lr", "optimizer",
               "eval_every", "eval_replicates", "seeds", "driver")
SHARED_KEYS = (*TRAIN_KEYS, "driver", "eval_samples")


class RecipeError(VrbenchError):
    """A recipe that cannot be read or run."""


@dataclass(frozen=True)
class Recipe:
    """A reproduction: what to run, what to draw, and the claims to check."""

    name: str
    path: Path
    title: str
    paper: str
    published: str
    setting: str
    sweep: Mapping[str, Any] | None
    train: Mapping[str, Any] | None
    figures: Mapping[str, Any]
    quick: Mapping[str, Any]
    claims: list[Mapping[str, Any]] = field(default_factory=list)
    online: Mapping[str, Any] | None = None
    sources: str = ""
    shared: Mapping[str, Any] | None = None

    def sweep_config(self, output: Path, quick: bool, jobs: int | None) -> SweepConfig | None:
        if self.sweep is None:
            return None
        data = {**self.sweep, **(self.quick.get("sweep", {}) if quick else {})}
        config = parse_config(data, f"{self.path} [sweep]")
        return dataclasses.replace(config, output=str(output), jobs=jobs or config.jobs)

    def train_settings(self, quick: bool, section: str = "train") -> dict[str, Any] | None:
        """The ``[train]`` (or ``[shared]``) settings, with ``[quick.…]`` over them."""
        base = self.train if section == "train" else self.shared
        if base is None:
            return None
        data = {**base, **(self.quick.get(section, {}) if quick else {})}
        valid = TRAIN_KEYS if section == "train" else SHARED_KEYS
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise RecipeError(f"{self.path} [{section}]: unknown key {unknown[0]!r}; valid "
                              f"keys: {', '.join(valid)}")
        return data

    def online_settings(self, quick: bool) -> dict[str, Any] | None:
        if self.online is None:
            return None
        data = {**self.online, **(self.quick.get("online", {}) if quick else {})}
        unknown = sorted(set(data) - set(ONLINE_KEYS))
        if unknown:
            raise RecipeError(f"{self.path} [online]: unknown key {unknown[0]!r}; valid keys: "
                              f"{', '.join(ONLINE_KEYS)}")
        return data


def _text(data: Mapping[str, Any], key: str, path: Path) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise RecipeError(f"{path}: key {key!r} must be text")
    return value.strip()


def load_recipe(name_or_path: str) -> Recipe:
    """A shipped recipe by name, or a recipe file by path."""
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = RECIPES_DIR / f"{name_or_path}.toml"
        if not path.exists():
            names = ", ".join(r.name for r in available()) or "(none)"
            raise RecipeError(f"unknown recipe {name_or_path!r}; valid recipes: {names}")
    data = read_toml(path, "recipe", RecipeError)
    refuse_unknown_keys(data, RECIPE_KEYS, path, RecipeError)
    claims = data.get("claims", [])
    for index, claim in enumerate(claims, 1):
        kind = claim.get("kind")
        if kind not in CLAIM_KINDS:
            raise RecipeError(f"{path}: claim {index} has kind {kind!r}; valid kinds: "
                              f"{', '.join(CLAIM_KINDS)}")
    return Recipe(name=path.stem, path=path, title=_text(data, "title", path),
                  paper=_text(data, "paper", path), published=_text(data, "published", path),
                  setting=_text(data, "setting", path), sweep=data.get("sweep"),
                  train=data.get("train"), shared=data.get("shared"),
                  figures=data.get("figures", {}),
                  quick=data.get("quick", {}), claims=claims, online=data.get("online"),
                  sources=_text(data, "sources", path))


def available() -> list[Recipe]:
    """Every shipped recipe."""
    return [load_recipe(str(path)) for path in sorted(RECIPES_DIR.glob("*.toml"))]


# --- Claims -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """A claim, whether the measurements bear it out, and the numbers that say so."""

    text: str
    outcome: str  # "reproduced", "not reproduced" or "inconclusive"
    lines: list[str]
    explanation: str = ""


def _interval(value: float, low: float, high: float) -> str:
    return f"{value:.3g} [{low:.3g}, {high:.3g}]"


def _fixed_interval(value: float, low: float, high: float) -> str:
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def _outcome(low: float, high: float, expect: str, threshold: float = 1.0) -> str:
    """For a ratio with interval [low, high] expected ``below`` or ``above`` ``threshold``."""
    inside, outside = ((high < threshold, low > threshold) if expect == "below"
                       else (low > threshold, high < threshold))
    return "reproduced" if inside else "not reproduced" if outside else "inconclusive"


def _variance(row: pd.Series, k: int | None) -> tuple[float, float, float]:
    """Variance and its 95% interval: the trace, or coordinate ``k``."""
    if k is None:
        return (float(row["variance"]), float(row["variance_ci_low"]),
                float(row["variance_ci_high"]))
    return (float(row["coordinate_variance"][k]), float(row["coordinate_variance_ci_low"][k]),
            float(row["coordinate_variance_ci_high"][k]))


def _ratio(a: pd.Series, b: pd.Series, k: int | None) -> tuple[float, float, float]:
    from vrbench.reports.values import ratio_interval

    return ratio_interval(*_variance(a, k), *_variance(b, k))


def _base(problem: str) -> str:
    return problem.split(":")[0]


def _swept_value(frame: pd.DataFrame, problem: str) -> tuple[str | None, pd.Series]:
    """The swept parameter of ``problem`` and each row's value of it (NaN if not swept)."""
    from vrbench.reports.figures import _defaults, swept_parameters

    key = swept_parameters(frame).get(problem)
    if key is None:
        return None, pd.Series(math.nan, index=frame.index)
    default = _defaults(problem).get(key)
    values = frame["problem_params"].fillna("{}").map(
        lambda p: json.loads(p).get(key, default))
    return key, pd.to_numeric(values, errors="coerce")


def _of_problem(frame: pd.DataFrame, problem: str) -> pd.Series:
    """Rows of ``problem``: a name (every parameter value) or a full spec."""
    return frame["problem"] == problem if ":" in problem else \
        frame["problem"].map(_base) == problem


def _pick(frame: pd.DataFrame, claim: Mapping[str, Any]) -> tuple[pd.DataFrame, str]:
    """The ok cells of the claim's problem at its n and swept-parameter value."""
    rows = frame[(frame["status"] == "ok") & _of_problem(frame, claim["problem"])]
    where = [claim["problem"]]
    key, values = _swept_value(frame, _base(claim["problem"]))
    at = claim.get("at")
    if key is not None and at is not None:
        chosen = values[rows.index]
        target = chosen.max() if at == "largest" else chosen.min() if at == "smallest" else at
        rows = rows[np.isclose(chosen, float(target))]
        where.append(f"{claim.get('symbols', {}).get(key, key)} = {float(target):g}")
    n = claim.get("n", "largest")
    if not rows.empty:
        target_n = rows["n_samples"].max() if n == "largest" else int(n)
        rows = rows[rows["n_samples"] == target_n]
        where.append(f"n = {target_n}")
    return rows, ", ".join(where)


def _coordinates(claim: Mapping[str, Any], dim: int) -> list[int | None]:
    coordinates = claim.get("coordinates", "trace")
    if coordinates == "each":
        return list(range(dim))
    if coordinates == "trace":
        return [None]
    return [int(coordinates)]


def _names(problem: str) -> list[str]:
    from vrbench import problems

    return problems.make(problem).coordinate_names()


def _claim_ratio(claim: Mapping[str, Any], frame: pd.DataFrame,
                 traces: pd.DataFrame | None) -> Verdict:
    """``numerator``'s variance over ``denominator``'s, expected ``below`` or ``above``
    ``threshold`` (default 1), at ``problem`` (a name or a full spec; ``at`` the swept
    parameter's largest/smallest/value; ``n``, default the largest), for the trace or
    ``coordinates = "each"``."""
    rows, where = _pick(frame, claim)
    lines, outcomes = [], []
    by_name = {row["estimator"]: row for _, row in rows.iterrows()}
    a, b = by_name.get(claim["numerator"]), by_name.get(claim["denominator"])
    if a is None or b is None:
        return Verdict(claim["text"], "inconclusive",
                       [f"no measurement of {claim['numerator']} and {claim['denominator']} "
                        f"at {where}"])
    threshold = float(claim.get("threshold", 1.0))
    for k in _coordinates(claim, int(a["dim"])):
        ratio = _ratio(a, b, k)
        outcome = _outcome(ratio[1], ratio[2], claim["expect"], threshold)
        outcomes.append(outcome)
        label = "trace" if k is None else f"∂J/∂{_names(_base(claim['problem']))[k]}"
        lines.append(f"{where}, {label}: variance of {claim['numerator']} ÷ "
                     f"{claim['denominator']} = {_interval(*ratio)} (expected {claim['expect']}"
                     f" {threshold:g}): {outcome}")
    return Verdict(claim["text"], _combine(outcomes), lines)


def _combine(outcomes: list[str]) -> str:
    if all(o == "reproduced" for o in outcomes):
        return "reproduced"
    if any(o == "not reproduced" for o in outcomes):
        return "not reproduced"
    return "inconclusive"


def _claim_ratio_by_n(claim: Mapping[str, Any], frame: pd.DataFrame,
                      traces: pd.DataFrame | None) -> Verdict:
    """As ``ratio``, at every n of the sweep from ``min_n`` (default 1) on."""
    ok = frame[(frame["status"] == "ok") & _of_problem(frame, claim["problem"])]
    outcomes, lines = [], []
    for n in sorted(n for n in ok["n_samples"].unique() if n >= claim.get("min_n", 1)):
        verdict = _claim_ratio({**claim, "n": int(n)}, frame, traces)
        outcomes.append(verdict.outcome)
        lines += verdict.lines
    return Verdict(claim["text"], _combine(outcomes) if outcomes else "inconclusive", lines)


def _claim_no_single_winner(claim: Mapping[str, Any], frame: pd.DataFrame,
                            traces: pd.DataFrame | None) -> Verdict:
    """Across ``problems`` (each swept), per coordinate and parameter value, no one estimator
    is among the lowest-variance ones everywhere. At each point the best are the estimator
    of lowest variance and every one whose 95% interval overlaps its interval (tied: the
    measurements cannot order them), so two estimators that trade places within their
    intervals count as one winner. The number of winners reported is the fewest estimators
    that include one of the best at every point."""
    lines, points = [], []
    symbol = claim.get("symbols", {})
    for problem in claim["problems"]:
        key, values = _swept_value(frame, problem)
        ok = frame[(frame["status"] == "ok") & (frame["problem"].map(_base) == problem)]
        if ok.empty or key is None:
            lines.append(f"{problem}: not measured over a swept parameter")
            continue
        ok = ok[ok["n_samples"] == ok["n_samples"].max()]
        name = symbol.get(key, key)
        for k in range(int(ok["dim"].iloc[0])):
            best_by_x = []
            for x, cells in ok.groupby(values[ok.index]):
                variance = cells["coordinate_variance"].map(lambda v, k=k: v[k]).astype(float)
                low = cells["coordinate_variance_ci_low"].map(lambda v, k=k: v[k]).astype(float)
                high = cells["coordinate_variance_ci_high"].map(
                    lambda v, k=k: v[k]).astype(float)
                leader = variance.idxmin()
                tied = frozenset(cells.loc[low <= high[leader], "estimator"])
                best_by_x.append((x, tied))
                points.append(tied)
            text = "; ".join(f"{' = '.join(sorted(tied))} ({name} = {_number(lo)}"
                             + (f" to {_number(hi)})" if lo != hi else ")")
                             for tied, lo, hi in _runs(best_by_x))
            lines.append(f"{problem}, ∂J/∂{_names(problem)[k]}: lowest variance "
                         f"(= : tied within the 95% intervals): {text}")
    everywhere = frozenset.intersection(*points) if points else frozenset()
    winners = _fewest_covering(points)
    outcome = "reproduced" if points and not everywhere else "not reproduced"
    if everywhere:
        lines.append(f"among the lowest variance everywhere: {', '.join(sorted(everywhere))}")
    lines.append(f"{len(winners)} estimators at least are needed to hold the lowest variance "
                 f"(or a tie for it) at every point: {', '.join(sorted(winners))}")
    return Verdict(claim["text"], outcome, lines)


def _number(value: float) -> str:
    """A grid value as a reader writes it: ``0.631``, ``−3``, ``10``."""
    return f"{float(value):.3g}".replace("-", "−")


def _fewest_covering(sets: list[frozenset[str]]) -> set[str]:
    """The fewest estimators that include a member of every set (ties counted as one)."""
    names = sorted(set().union(*sets)) if sets else []
    for size in range(1, len(names) + 1):
        for chosen in itertools.combinations(names, size):
            if all(s & set(chosen) for s in sets):
                return set(chosen)
    return set()


def _runs(pairs: list[tuple[float, Any]]) -> list[tuple[Any, float, float]]:
    """Consecutive parameter values with the same winners, as (winners, first, last)."""
    runs: list[tuple[Any, float, float]] = []
    for x, name in pairs:
        if runs and runs[-1][0] == name:
            runs[-1] = (name, runs[-1][1], x)
        else:
            runs.append((name, x, x))
    return runs


def _step_ratios(rows: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    """Per step: ``a``'s variance over ``b``'s, the geometric mean over seeds, with a 95%
    interval from each seed's ratio interval (log half-widths combined in quadrature and
    divided by the number of seeds, as for a mean of independent estimates)."""
    from vrbench.reports.values import ratio_interval

    out = []
    for step, at_step in rows.groupby("step"):
        logs, errors = [], []
        for _, seeded in at_step.groupby("seed"):
            pair = seeded.set_index("estimator")
            if a not in pair.index or b not in pair.index:
                continue
            ratio, low, high = ratio_interval(
                *(float(pair[c].loc[a]) for c in ("variance", "variance_ci_low",
                                                  "variance_ci_high")),
                *(float(pair[c].loc[b]) for c in ("variance", "variance_ci_low",
                                                  "variance_ci_high")))
            if ratio > 0 and low > 0 and math.isfinite(high):
                logs.append(math.log(ratio))
                errors.append((math.log(high) - math.log(low)) / (2 * 1.96))
        if logs:
            center = float(np.mean(logs))
            error = math.sqrt(sum(e**2 for e in errors)) / len(errors)
            out.append((step, math.exp(center), center, error))
    return pd.DataFrame(out, columns=["step", "ratio", "log_ratio", "log_error"])


def _claim_along_training(claim: Mapping[str, Any], frame: pd.DataFrame,
                          traces: pd.DataFrame | None) -> Verdict:
    """``lower``'s variance below ``higher``'s along the run on ``problem``: never
    significantly above it at any measured step from ``from_step`` (default 0) on (95%
    family-wise over the steps), and significantly below at a fraction ``at_least`` (default
    0.5) of them. Ratios are geometric means over seeds; ``run = "same_theta"`` compares
    the estimators at the θ_t of one shared run, step by step."""
    from scipy import stats

    if traces is None:
        return Verdict(claim["text"], "inconclusive", ["no training traces"])
    run = claim.get("run", "own")
    traces = traces[traces["run"] == run] if "run" in traces else traces
    rows = traces[_of_problem(traces, claim["problem"]) & traces["variance"].notna()]
    low, high = claim["lower"], claim["higher"]
    ratios = _step_ratios(rows, low, high)
    if ratios.empty:
        return Verdict(claim["text"], "inconclusive", [f"no traces of {low} and {high}"])
    ratios = ratios[ratios["step"] >= claim.get("from_step", 0)]
    if ratios.empty:
        return Verdict(claim["text"], "inconclusive",
                       [f"no measured step from {claim.get('from_step', 0)} on"])
    z = stats.norm.ppf(1 - 0.025 / len(ratios))  # Bonferroni over the steps
    below = int((ratios["log_ratio"] + z * ratios["log_error"] < 0).sum())
    above = int((ratios["log_ratio"] - z * ratios["log_error"] > 0).sum())
    needed = float(claim.get("at_least", 0.5))
    if above:
        outcome = "not reproduced"
    elif below >= needed * len(ratios):
        outcome = "reproduced"
    else:
        outcome = "inconclusive"
    where = (f"at the same θ_t (the run θ follows {rows['driver'].iloc[0]}'s steps), "
             if run == "same_theta" and "driver" in rows else "along each one's own run, ")
    lines = [f"{claim['problem']}: variance of {low} ÷ {high} {where}over {len(ratios)} "
             f"measured steps (geometric mean over seeds): median "
             f"{ratios['ratio'].median():.3g}, range "
             f"{ratios['ratio'].min():.3g}–{ratios['ratio'].max():.3g}; significantly below 1 "
             f"at {below}, above 1 at {above}, undecided at {len(ratios) - below - above} "
             f"(95% family-wise; claimed: never above, below at ≥ {needed:.0%})"
             + (f"; steps from {claim['from_step']} on" if claim.get("from_step") else "")]
    picks = ratios.iloc[np.unique(np.linspace(0, len(ratios) - 1, 6).round().astype(int))]
    lines.append("the ratio along the run: " + ", ".join(
        f"{ratio:.3g} at step {int(step)}" for step, ratio in zip(picks["step"], picks["ratio"],
                                                                  strict=True)))
    return Verdict(claim["text"], outcome, lines)


def _claim_final_value(claim: Mapping[str, Any], frame: pd.DataFrame,
                       traces: pd.DataFrame | None) -> Verdict:
    """Each of ``better`` ends with an exact J ``direction`` ("lower" or "higher") than
    ``worse``'s, on ``problem`` (mean over seeds of the last measured step)."""
    if traces is None:
        return Verdict(claim["text"], "inconclusive", ["no training traces"])
    traces = traces[traces["run"] == "own"] if "run" in traces else traces
    rows = traces[_of_problem(traces, claim["problem"])]
    last = rows[rows["step"] == rows["step"].max()]
    final = last.groupby("estimator")["value"].agg(["mean", "min", "max"])
    lines = [f"{claim['problem']}, final exact J at step {int(rows['step'].max())} (mean over "
             f"seeds, min–max): " + "; ".join(
                 f"{e} {r['mean']:.6g} ({r['min']:.6g}–{r['max']:.6g})"
                 for e, r in final.iterrows())]
    worse = final["mean"].get(claim["worse"], math.nan)
    lower = claim.get("direction", "lower") == "lower"
    outcomes = []
    for name in claim["better"]:
        value = final["mean"].get(name, math.nan)
        if math.isnan(value) or math.isnan(worse):
            outcomes.append("inconclusive")
        else:
            outcomes.append("reproduced" if (value < worse if lower else value > worse)
                            else "not reproduced")
    return Verdict(claim["text"], _combine(outcomes), lines)


def _seed_interval(values: pd.Series) -> tuple[float, float, float]:
    """Mean over seeds and its 95% t-interval (the mean alone for one seed)."""
    from scipy import stats

    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(
        len(values)))
    return mean, mean - half, mean + half


def _claim_final_metric(claim: Mapping[str, Any], frame: pd.DataFrame,
                        traces: pd.DataFrame | None) -> Verdict:
    """Each of ``better`` ends with a ``column`` (a training metric: ``train_elbo``,
    ``test_bound``; default ``value``) ``direction`` ("higher", default, or "lower") than
    ``worse`` on ``problem``, at the last measured step: the mean over seeds of the
    difference with a 95% t-interval, paired by seed where both ran the same seeds (a seed
    fixes the initial θ and the measurements' draws, so the pairs share them), reproduced
    when it excludes zero on the claimed side, not reproduced when it excludes it on the
    other, else inconclusive."""
    from scipy import stats

    column = claim.get("column", "value")
    if traces is None or column not in traces:
        return Verdict(claim["text"], "inconclusive", [f"no training traces with {column}"])
    traces = traces[traces["run"] == "own"] if "run" in traces else traces
    rows = traces[_of_problem(traces, claim["problem"]) & traces[column].notna()]
    if rows.empty:
        return Verdict(claim["text"], "inconclusive", [f"no {column} on {claim['problem']}"])
    step = int(rows["step"].max())
    last = rows[rows["step"] == step].groupby("estimator")[column]
    summary = {name: _seed_interval(values.astype(float)) for name, values in last}
    lines = [f"{claim['problem']}, {column} at step {step:,} (mean over "
             f"{last.size().max()} seeds, 95% t-interval): " + "; ".join(
                 # Two decimals: the gaps are tenths of a nat on ELBOs of hundreds.
                 f"{name} {_fixed_interval(*summary[name])}" for name in sorted(summary))]
    higher = claim.get("direction", "higher") == "higher"
    outcomes = []
    for name in claim["better"]:
        if name not in summary or claim["worse"] not in summary:
            outcomes.append("inconclusive")
            continue
        seeded = rows[rows["step"] == step].set_index("seed")
        a = seeded[seeded["estimator"] == name][column].astype(float)
        b = seeded[seeded["estimator"] == claim["worse"]][column].astype(float)
        difference = float(a.mean() - b.mean())
        if len(a) < 2 or len(b) < 2:
            outcomes.append("inconclusive")
            continue
        if sorted(a.index) == sorted(b.index):
            paired = a - b.loc[a.index]
            se, dof = float(paired.std(ddof=1)) / math.sqrt(len(paired)), len(paired) - 1.0
        else:
            se2a, se2b = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
            se = math.sqrt(se2a + se2b)
            dof = (se2a + se2b) ** 2 / (se2a**2 / (len(a) - 1) + se2b**2 / (len(b) - 1)) \
                if se > 0 else 1.0
        half = float(stats.t.ppf(0.975, dof)) * se
        signed = difference if higher else -difference
        outcome = ("reproduced" if signed - half > 0 else
                   "not reproduced" if signed + half < 0 else "inconclusive")
        outcomes.append(outcome)
        interval = _fixed_interval(difference, difference - half, difference + half)
        pairing = ", paired by seed" if sorted(a.index) == sorted(b.index) else ""
        lines.append(f"{name} − {claim['worse']}{pairing}: {interval} (claimed "
                     f"{'above' if higher else 'below'} 0): {outcome}")
    return Verdict(claim["text"], _combine(outcomes), lines)


MEAN_MEASURES = ("relative_bias", "cosine", "projection")
NOISE_DRAWS = 4000


def _mean_interval(measure: str, row: pd.Series,
                   generator: np.random.Generator) -> tuple[float, float, float]:
    """``measure`` of a cell's mean estimate m against ∇J = g, with an interval of at least
    95% coverage. The mean's error e ~ N(0, diag(coordinate variances)/R) has ‖e‖ ≤ r with
    probability 95% (r from 4,000 draws), so by the triangle inequality the true mean's
    ``relative_bias`` lies within ``r/‖g‖`` of the measured one and its angle to g within
    ``arcsin(r/‖m‖)``; the ``projection`` m·g/‖g‖², linear in m, gets its exact Gaussian
    interval."""
    grad = np.asarray(row["true_grad"], dtype=float)
    mean = grad + np.asarray(row["coordinate_bias"], dtype=float)
    spread = np.sqrt(np.asarray(row["coordinate_variance"], dtype=float)
                     / float(row["replicates"]))
    norm, mean_norm = float(np.linalg.norm(grad)), float(np.linalg.norm(mean))
    if measure == "projection":
        value = float(mean @ grad) / norm**2
        half = 1.96 * float(np.linalg.norm(grad * spread)) / norm**2
        return value, value - half, value + half
    radius = float(np.quantile(np.linalg.norm(
        spread * generator.standard_normal((NOISE_DRAWS, grad.size)), axis=1), 0.95))
    if measure == "relative_bias":
        value = float(np.linalg.norm(mean - grad)) / norm
        return value, max(0.0, value - radius / norm), value + radius / norm
    value = float(mean @ grad) / (mean_norm * norm) if mean_norm > 0 else 0.0
    angle = math.acos(min(1.0, max(-1.0, value)))
    spread_angle = math.asin(radius / mean_norm) if radius < mean_norm else math.pi
    return value, math.cos(min(math.pi, angle + spread_angle)), \
        math.cos(max(0.0, angle - spread_angle))


def _claim_estimate(claim: Mapping[str, Any], frame: pd.DataFrame,
                    traces: pd.DataFrame | None) -> Verdict:
    """A property ``measure`` of each of ``estimators``' mean estimate at ``problem`` (a name
    or a full spec; ``n``, default the largest): ``relative_bias`` ‖E ĝ − ∇J‖/‖∇J‖,
    ``cosine`` between E ĝ and ∇J, or ``projection`` E ĝ·∇J/‖∇J‖² (the step along ∇J in units
    of the exact one), expected ``below`` or ``above`` ``threshold``, or ``near`` it (within
    ``tolerance``); with ``versus`` (another problem spec), the ratio of the measure on
    ``problem`` to that on ``versus`` (intervals divided as intervals). Intervals have at
    least 95% coverage (see :func:`_mean_interval`)."""
    rows, where = _pick(frame, claim)
    by_name = {row["estimator"]: row for _, row in rows.iterrows()}
    other: dict[str, pd.Series] = {}
    if "versus" in claim:
        versus_rows, versus_where = _pick(frame, {**claim, "problem": claim["versus"]})
        other = {row["estimator"]: row for _, row in versus_rows.iterrows()}
        where = f"{where} against {versus_where}"
    measure, expect = claim["measure"], claim["expect"]
    threshold = float(claim.get("threshold", 0.0))
    tolerance = float(claim.get("tolerance", 0.0))
    generator = np.random.default_rng(0)
    lines, outcomes = [], []
    for name in claim["estimators"]:
        row = by_name.get(name)
        if row is None or ("versus" in claim and name not in other):
            lines.append(f"no measurement of {name} at {where}")
            outcomes.append("inconclusive")
            continue
        value, low, high = _mean_interval(measure, row, generator)
        if "versus" in claim:
            base, base_low, base_high = _mean_interval(measure, other[name], generator)
            value = value / base
            low, high = (low / base_high, high / base_low) if base_low > 0 else \
                (-math.inf, math.inf)
        if expect == "near":
            inside = low >= threshold - tolerance and high <= threshold + tolerance
            outside = low > threshold + tolerance or high < threshold - tolerance
            outcome = "reproduced" if inside else "not reproduced" if outside else \
                "inconclusive"
            wanted = f"expected {threshold:g} ± {tolerance:g}"
        else:
            outcome = _outcome(low, high, expect, threshold)
            wanted = f"expected {expect} {threshold:g}"
        outcomes.append(outcome)
        what = measure.replace("_", " ") + (" ratio" if "versus" in claim else "")
        lines.append(f"{where}, {name}: {what} of the mean estimate "
                     f"{_interval(value, low, high)} ({wanted}): {outcome}")
    return Verdict(claim["text"], _combine(outcomes), lines)


def _claim_final_statistic(claim: Mapping[str, Any], frame: pd.DataFrame,
                           traces: pd.DataFrame | None) -> Verdict:
    """A trace column ``column`` (an exact statistic such as ``exact_kl``) at the last step,
    or its change from the first step with ``change = true``: each of ``better`` ends
    ``direction`` ("lower" or "higher") than ``worse``, seed by seed on ``problem``. Every
    seed agreeing reproduces the claim, none contradicts it, a split is inconclusive."""
    if traces is None or claim["column"] not in traces:
        return Verdict(claim["text"], "inconclusive", [f"no traces with {claim['column']}"])
    rows = traces[_of_problem(traces, claim["problem"])]
    column, lower = claim["column"], claim.get("direction", "lower") == "lower"
    first = rows[rows["step"] == rows["step"].min()].set_index(["estimator", "seed"])[column]
    last = rows[rows["step"] == rows["step"].max()].set_index(["estimator", "seed"])[column]
    values = last - first if claim.get("change", False) else last
    label = f"change of {column} from step 0" if claim.get("change", False) else column
    summary = values.groupby("estimator").agg(["mean", "min", "max"])
    lines = [f"{claim['problem']}, {label} at step {int(rows['step'].max())} (mean over seeds, "
             "min–max): " + "; ".join(f"{e} {r['mean']:.4g} ({r['min']:.4g}–{r['max']:.4g})"
                                     for e, r in summary.iterrows())]
    outcomes = []
    for name in claim["better"]:
        if name not in summary.index or claim["worse"] not in summary.index:
            outcomes.append("inconclusive")
            continue
        pairs = pd.concat([values.xs(name), values.xs(claim["worse"])], axis=1).dropna()
        holds = (pairs.iloc[:, 0] < pairs.iloc[:, 1]) if lower else \
            (pairs.iloc[:, 0] > pairs.iloc[:, 1])
        outcomes.append("reproduced" if holds.all() and len(holds) else
                        "not reproduced" if not holds.any() else "inconclusive")
    return Verdict(claim["text"], _combine(outcomes), lines)


CLAIM_KINDS: dict[str, Callable[..., Verdict]] = {
    "ratio": _claim_ratio,
    "ratio_by_n": _claim_ratio_by_n,
    "no_single_winner": _claim_no_single_winner,
    "along_training": _claim_along_training,
    "final_value": _claim_final_value,
    "final_metric": _claim_final_metric,
    "estimate": _claim_estimate,
    "final_statistic": _claim_final_statistic,
}
"""How each kind of claim is checked against the measurements (see each function)."""


# --- Running a recipe -------------------------------------------------------------------------

SETTINGS_KEYS = ("steps", "lr", "optimizer", "eval_every", "eval_replicates", "eval_samples",
                 "groups")
"""Keys of a recipe's ``[train]``/``[shared]`` section that are :class:`TrainSettings` fields
of the same name (``n_samples`` may also be a table by estimator)."""


def _plan(section: Mapping[str, Any], device: str) -> TrainPlan:
    """The runs of a ``[train]`` (or ``[shared]``) section: what it leaves out is
    :class:`TrainSettings`'s default, as for ``vrbench train``. ``n_samples`` is one number,
    or a table of numbers by estimator (with ``default``) so estimators can be compared at
    equal evaluations of f."""
    samples = section.get("n_samples", TrainSettings.n_samples)
    by_estimator = dict(samples) if isinstance(samples, Mapping) else {}
    n_samples = by_estimator.pop("default", TrainSettings.n_samples) \
        if isinstance(samples, Mapping) else samples
    settings = TrainSettings(**{key: section[key] for key in SETTINGS_KEYS if key in section},
                             n_samples=n_samples, device=device)
    return TrainPlan(_specs(section["problems"]), _specs(section["estimators"]), settings,
                     tuple(section.get("seeds", DEFAULT_SEEDS)), by_estimator)


def _specs(texts: list[str]) -> tuple[Spec, ...]:
    return tuple(spec for text in texts for spec in parse_specs(text))


def _run_plan(plan: TrainPlan, output: Path, on_status: Callable[[str], None]) -> pd.DataFrame:
    """Every run of ``plan``, each stored in ``output`` and reused, or resumed from its last
    checkpoint, by a rerun (:mod:`vrbench.bench.runs`); a pair that cannot run is an error,
    raised before any work."""
    runs, skipped = plan.runs()
    if skipped:
        raise ParameterError(skipped[0].reason)
    return run_all(runs, output, lambda run: on_status(run.describe()))


def _train_all(settings: Mapping[str, Any], output: Path,
               on_status: Callable[[str], None], device: str = "cpu") -> pd.DataFrame:
    """Every (problem, estimator, seed) training run of a ``[train]`` section."""
    return _run_plan(_plan(settings, device), output, on_status)


def _steps_for(steps: int | Mapping[str, int], problem: str) -> int:
    """A number of steps, or a table of them by problem (with ``default``)."""
    if isinstance(steps, Mapping):
        return int(steps.get(problem, steps.get("default", online.OnlineSettings.steps)))
    return int(steps)


ONLINE_SETTINGS_KEYS = ("n_samples", "lr", "control_lr", "optimizer", "eval_every",
                        "eval_replicates")
"""Keys of a recipe's ``[online]`` section that are
:class:`~vrbench.bench.online.OnlineSettings` fields of the same name."""


ONLINE_DIR = "online"
"""Where the runs of an ``[online]`` section are kept, with the settings that made them, so
that running a recipe again reuses them."""


def _online_all(settings: dict[str, Any], output: Path, on_status: Callable[[str], None]
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The papers' protocol (:mod:`vrbench.bench.online`): for each problem and seed, one
    shared run that follows ``driver`` with every estimator measured at its θ_t, and each
    other estimator's own run. Returns (own runs' traces, the shared runs' traces), reused
    from ``output`` when the same settings (and vrbench version) made them."""
    store = output / ONLINE_DIR
    key = json.dumps({"settings": settings, "vrbench": vrbench.__version__}, sort_keys=True,
                     default=str)
    files = [store / "own.parquet", store / "same_theta.parquet"]
    if (store / "settings.json").exists() and all(f.exists() for f in files) and \
            (store / "settings.json").read_text() == key:
        on_status("reusing the stored runs")
        own, shared = (pd.read_parquet(f) for f in files)
        return own, shared
    own, shared = _online_runs(settings, on_status)
    store.mkdir(parents=True, exist_ok=True)
    own.to_parquet(files[0], index=False)
    shared.to_parquet(files[1], index=False)
    (store / "settings.json").write_text(key)
    return own, shared


def _online_runs(settings: dict[str, Any], on_status: Callable[[str], None]
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    problem_specs = [s for text in settings["problems"] for s in parse_specs(text)]
    estimator_specs = [s for text in settings["estimators"] for s in parse_specs(text)]
    driver = settings.get("driver", str(estimator_specs[-1]))
    # What the section leaves out is OnlineSettings' default; the control's learning rate
    # is θ's unless given.
    options = {key: settings[key] for key in ONLINE_SETTINGS_KEYS if key in settings}
    if "lr" in options:
        options.setdefault("control_lr", options["lr"])
    own: list[dict[str, Any]] = []
    shared: list[dict[str, Any]] = []
    for problem in problem_specs:
        run_settings = online.OnlineSettings(
            steps=_steps_for(settings.get("steps", online.OnlineSettings.steps), str(problem)),
            **options)
        for seed in settings.get("seeds", DEFAULT_SEEDS):
            on_status(f"all estimators along {driver}'s run on {problem}, seed {seed}")
            rows = online.run(problem, estimator_specs, driver, seed, run_settings)
            shared += rows
            own += [row for row in rows if row["estimator"] == driver]
            for estimator in estimator_specs:
                if str(estimator) == driver:  # its own run is the shared one
                    continue
                on_status(f"{estimator}'s own run on {problem}, seed {seed}")
                own += online.run(problem, [estimator], str(estimator), seed, run_settings)
    return (pd.DataFrame(own).assign(run="own"),
            pd.DataFrame(shared).assign(run="same_theta"))


def _shared_all(settings: Mapping[str, Any], output: Path,
                on_status: Callable[[str], None], device: str = "cpu") -> pd.DataFrame:
    """Every (problem, seed) shared run driven by ``driver``, measuring ``estimators``."""
    (driver,) = parse_specs(settings["driver"])
    plan = dataclasses.replace(_plan(settings, device), estimators=(driver,),
                               measured=_specs(settings["estimators"]))
    frame = _run_plan(plan, output, on_status)
    output.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(output / SHARED_FILE, index=False)
    return frame


def reproduce(recipe: Recipe, output: str | Path, quick: bool = False,
              jobs: int | None = None,
              on_status: Callable[[str], None] = lambda message: None,
              device: str = "cpu") -> Path:
    """Run ``recipe`` into ``output`` (its cells resume like any sweep's) and write the
    figures and the note; returns the note's path."""
    from vrbench.reports.build import build_report
    from vrbench.reports.selection import ReportSpec, load_spec
    from vrbench.reports.values import annotate

    output = Path(output)
    config = recipe.sweep_config(output, quick, jobs)
    if config is not None and device != "cpu":
        config = dataclasses.replace(config, device=device)
    train_settings = recipe.train_settings(quick)
    online_settings = recipe.online_settings(quick)
    frame = pd.DataFrame()
    if config is not None:
        on_status("running the sweep")
        frame = run_sweep(config).frame
    pieces = [_train_all(train_settings, output, on_status, device).assign(run="own")] \
        if train_settings else []
    shared = None
    if online_settings:
        own, shared = _online_all(online_settings, output, on_status)
        pieces.append(own)
    output.mkdir(parents=True, exist_ok=True)
    same_theta = output / SAME_THETA_DIR
    for stale in (output / TRAIN_FILE, same_theta / TRAIN_FILE, output / SHARED_FILE):
        if stale.exists():  # traces of an earlier version of the recipe
            stale.unlink()
    traces = pd.concat(pieces, ignore_index=True) if pieces else None
    if traces is not None:
        traces.drop(columns="run").to_parquet(output / TRAIN_FILE, index=False)
    if shared is not None:
        same_theta.mkdir(exist_ok=True)
        shared.drop(columns="run").to_parquet(same_theta / TRAIN_FILE, index=False)
        traces = pd.concat([traces, shared], ignore_index=True)
    shared_settings = recipe.train_settings(quick, "shared")
    if shared_settings:  # drawn by the report of the output (shared_run_variance)
        measured = _shared_all(shared_settings, output, on_status, device)
        traces = pd.concat([traces, measured.assign(run="same_theta")], ignore_index=True)
    spec_path = output / "figures.toml"
    spec_path.write_text(_toml(recipe.figures))
    on_status("drawing the figures")
    spec = load_spec(spec_path) if recipe.figures else ReportSpec()
    reports = [("", build_report([output], output / "figures", spec=spec))]
    if shared is not None:
        reports.append((SAME_THETA_DIR, build_report(
            [same_theta], output / "figures" / SAME_THETA_DIR,
            spec=dataclasses.replace(spec, figures=("training_variance",)))))
    if config is not None:
        frame, _ = read_results(output)
        frame = annotate(frame)
    # Parameters are written as the figures write them ("k", not "omega").
    symbols = dict(recipe.figures.get("symbols", {}))
    claims = [{"symbols": symbols, **c} for c in recipe.claims]
    verdicts = [dataclasses.replace(CLAIM_KINDS[c["kind"]](c, frame, traces),
                                    explanation=" ".join(c.get("explain", "").split()))
                for c in claims]
    note = output / NOTE_FILE
    note.write_text(_note(recipe, verdicts, reports, output, quick))
    return note


def _toml(values: Mapping[str, Any]) -> str:
    """A figure spec as TOML: strings, numbers and lists, and tables of them (``labels``,
    ``symbols``) after the plain keys."""
    def literal(value: Any) -> str:
        if isinstance(value, str):
            return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, list | tuple):
            return "[" + ", ".join(literal(v) for v in value) + "]"
        return str(value)

    plain = "".join(f"{key} = {literal(value)}\n" for key, value in values.items()
                    if not isinstance(value, Mapping))
    tables = "".join(f"[{key}]\n" + "".join(f"{literal(k)} = {literal(v)}\n"
                                              for k, v in value.items())
                     for key, value in values.items() if isinstance(value, Mapping))
    return plain + tables


def _note(recipe: Recipe, verdicts: list[Verdict], reports: list[tuple[str, Any]],
          output: Path, quick: bool) -> str:
    today = datetime.date.today().isoformat()
    revision = git_revision() or "unknown"
    parts = [f"# {recipe.title}", "", f"**Paper.** {recipe.paper}", "",
             f"**Published.** {recipe.published}", "",
             f"**vrbench's setting.** {recipe.setting}", ""]
    if recipe.sources:
        parts += [f"**Code checked against.** {recipe.sources}", ""]
    parts += ["## Claims against the measurements", ""]
    counts = {o: sum(v.outcome == o for v in verdicts)
              for o in ("reproduced", "not reproduced", "inconclusive")}
    parts.append(f"{counts['reproduced']} reproduced, {counts['not reproduced']} not "
                 f"reproduced, {counts['inconclusive']} inconclusive (an interval that "
                 "straddles the claim). Intervals are 95%: of variance ratios from the "
                 "variances' batch means, of properties of a mean estimate with at least 95% "
                 "coverage from its coordinates' standard errors.")
    parts.append("")
    for verdict in verdicts:
        parts.append(f"- **{verdict.text}**: {verdict.outcome}.")
        parts += [f"  - {line}" for line in verdict.lines]
        if verdict.outcome != "reproduced" and verdict.explanation:
            parts.append(f"  - Why: {verdict.explanation}")
    parts += ["", "## Figures", ""]
    for where, report in reports:
        if where == SAME_THETA_DIR:
            parts += ["", "Every estimator at the same θ_t, along the run that follows the "
                      "driver's steps:", ""]
        images = sorted(p.relative_to(output) for p in report if p.suffix == ".png")
        parts += [f"![{image.stem}]({image.as_posix()})" for image in images] or ["(none)"]
        asked = [f"{name}: {why}" for name, why in report.not_drawn.items()
                 if name in report.requested]
        if asked:
            parts += ["", "Not drawn: " + "; ".join(asked) + "."]
    size = " with --quick (fewer replicates and steps: a smoke test, not a reproduction)" \
        if quick else ""
    parts += ["", "## Provenance", "",
              f"Written by `vrbench reproduce {recipe.name}`{size} on {today}: vrbench "
              f"{vrbench.__version__}, revision {revision}; the recipe is {recipe.path.name}. "
              "Running the same command again reuses every stored cell.", ""]
    return "\n".join(parts)
