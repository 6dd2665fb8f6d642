"""The figures of a report, each a function of a results table."""

from __future__ import annotations

import json
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import Formatter

from vrbench.reports.style import EstimatorStyle

BASELINE_ESTIMATOR = "score_function"
EXACT_RATIO = 1e-20
MIN_BAR_IN = 1.2
"""Narrowest bar area of a ranked-bar panel, in inches, so its tick labels fit."""
"""Variances this far below a panel's largest are rounding noise of an exact estimator."""


def _panels(count: int, settings: dict[str, float], columns: int = 4,
            sharex: bool = False) -> tuple[Figure, list[plt.Axes]]:
    columns = max(1, min(columns, count, int(settings["columns"])))
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(settings["width"], settings["panel"] * rows
                                                     + 0.6), squeeze=False, sharex=sharex)
    flat = list(axes.ravel())
    for extra in flat[count:]:
        extra.set_visible(False)
    return fig, flat[:count]


class _SparseMinorLabels(Formatter):
    """Labels for a log axis's minor ticks, only when the view holds no decade (whose major
    labels would otherwise be the only ones): at 2 and 5 × 10^k if one is in view, else at the
    whole multiples of 10^k in view, else at every minor tick. Readable in narrow panels."""

    TIERS = ((2, 5), tuple(range(1, 10)))

    def __call__(self, x: float, pos: int | None = None) -> str:
        low, high = sorted(self.axis.get_view_interval())
        if low <= 0 or not low <= x <= high or math.ceil(math.log10(low)) <= math.log10(high):
            return ""
        exponents = range(math.floor(math.log10(low)), math.floor(math.log10(high)) + 1)
        exponent = math.floor(math.log10(x))
        mantissa = x / 10.0**exponent
        for tier in self.TIERS:
            if any(low <= c * 10.0**e <= high for e in exponents for c in tier):
                if not any(math.isclose(mantissa, c, rel_tol=1e-9) for c in tier):
                    return ""
                break
        return rf"$\mathdefault{{{mantissa:.2g}\times10^{{{exponent}}}}}$"


def _problem_panels(rows: pd.DataFrame, settings: dict[str, float], columns: int = 4
                    ) -> tuple[Figure, list[tuple[plt.Axes, pd.DataFrame]]]:
    """One panel per problem, titled, in order of first appearance, each with its rows."""
    problems = list(dict.fromkeys(rows["problem"]))
    fig, axes = _panels(len(problems), settings, columns=columns)
    for ax, problem in zip(axes, problems, strict=True):
        ax.set_title(problem)
    return fig, [(ax, rows[rows["problem"] == problem])
                 for ax, problem in zip(axes, problems, strict=True)]


def _without_exact(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows whose variance is not the rounding noise of an exact estimator: those would
    stretch a log axis over 30 decades (see :data:`EXACT_RATIO`)."""
    return rows[rows["variance"] > EXACT_RATIO * rows["variance"].max()]


def _log_axes(ax: plt.Axes, x: bool = True, y: bool = True) -> None:
    """Log scales labelled at the decades, and at a few minor ticks where no decade is in view,
    so tick labels never crowd and never vanish."""
    for use, axis, setter in ((x, ax.xaxis, ax.set_xscale), (y, ax.yaxis, ax.set_yscale)):
        if use:
            setter("log")
            axis.set_minor_formatter(_SparseMinorLabels())


def _shared_labels(fig: Figure, xlabel: str, ylabel: str | None = None) -> None:
    fig.supxlabel(xlabel, fontsize="medium")
    if ylabel:
        fig.supylabel(ylabel, fontsize="medium")


def _legend(fig: Figure, styles: dict[str, EstimatorStyle], names: list[str],
            settings: dict[str, float]) -> None:
    handles = [Line2D([], [], color=styles[n].color, marker=styles[n].marker, linestyle="-",
                      markersize=5, label=n) for n in names]
    # As many columns as the longest name allows, so the legend never runs past the figure.
    longest = max(len(n) for n in names) + 5
    columns = max(1, min(4, int(settings["width"] * settings["chars_per_inch"] / longest)))
    fig.legend(handles=handles, loc="outside upper center", ncols=min(columns, len(handles)),
               frameon=False)


def _ok(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[(frame["status"] == "ok") & frame["variance"].notna()]


def variance_vs_samples(frame: pd.DataFrame, styles: dict[str, EstimatorStyle],
                        settings: dict[str, float]) -> Figure | None:
    """Variance of one estimate against samples per estimate, log–log, with 95% intervals.

    The dashed grey line has slope −1: plain Monte Carlo averaging of independent draws.
    Exact estimators (zero variance up to rounding) are left out.
    """
    ok = _ok(frame)
    if ok.empty:
        return None
    fig, panels = _problem_panels(ok, settings)
    for ax, rows in panels:
        rows = _without_exact(rows)
        for estimator, group in rows.groupby("estimator", sort=True):
            group = group.sort_values("n_samples")
            style = styles[estimator]
            low = (group["variance"] - group["variance_ci_low"]).clip(lower=0)
            high = group["variance_ci_high"] - group["variance"]
            ax.errorbar(group["n_samples"], group["variance"], yerr=[low, high],
                        color=style.color, marker=style.marker, markersize=3.5, linewidth=1,
                        capsize=1.5)
        n = np.array(sorted(rows["n_samples"].unique()), dtype=float)
        if len(n) > 1:
            anchor = rows.loc[rows["n_samples"] == n[0], "variance"].max()
            ax.plot(n, anchor * n[0] / n, linestyle="--", color="0.6", linewidth=0.8)
        _log_axes(ax)
    _shared_labels(fig, "samples per estimate (log scale)", "variance of one estimate (log scale)")
    _legend(fig, styles, sorted(ok["estimator"].unique()), settings)
    return fig


def bias_vs_variance(frame: pd.DataFrame, styles: dict[str, EstimatorStyle],
                     settings: dict[str, float]) -> Figure | None:
    """Measured bias against variance; hollow markers claim unbiasedness, filled ones do not.

    The dashed line ``‖bias‖ = sqrt(variance / R)`` is the root-mean-square of an unbiased
    estimator's measured bias (``E‖ḡ − ∇J‖² = trace Σ / R``): unbiased estimators scatter
    around it, a biased one stands clearly above it.
    """
    ok = _ok(frame)
    ok = ok[(ok["bias_norm"] > 0) & (ok["variance"] > 0)]  # log axes: exact estimators drop out
    if ok.empty:
        return None
    fig, panels = _problem_panels(ok, settings)
    for ax, rows in panels:
        rows = _without_exact(rows)  # never empty
        for row in rows.itertuples(index=False):
            style = styles[row.estimator]
            claimed = bool(row.unbiased_claim) if not pd.isna(row.unbiased_claim) else False
            ax.scatter(row.variance, row.bias_norm, marker=style.marker, s=18,
                       facecolors="none" if claimed else style.color, edgecolors=style.color,
                       linewidths=0.9)
        grid = np.geomspace(rows["variance"].min(), rows["variance"].max(), 20)
        floor = np.sqrt(grid / rows["replicates"].median())
        ax.plot(grid, floor, linestyle="--", color="0.6", linewidth=0.8)
        _log_axes(ax)
    _shared_labels(fig, "variance of one estimate (log scale)", "‖bias‖ (log scale)")
    _legend(fig, styles, sorted(ok["estimator"].unique()), settings)
    return fig


def work_normalized(frame: pd.DataFrame, styles: dict[str, EstimatorStyle],
                    settings: dict[str, float], cost: str) -> Figure | None:
    """Variance × cost per estimate, ranked, at each estimator's largest n: which estimator
    gives the most precision per f-evaluation (``cost="f_evals"``) or per second
    (``cost="time_per_estimate_s"``). Lower is better."""
    ok = _ok(frame)
    ok = ok[ok[cost].notna() & (ok[cost] > 0)]
    if ok.empty:
        return None
    # Sorted labels keep the results' order, so panels come in the order of the sweep.
    largest = ok.loc[sorted(ok.groupby(["problem", "estimator"])["n_samples"].idxmax())]
    largest = largest.assign(work=largest["variance"] * largest[cost].astype(float))
    largest = largest[largest["work"] > 0]
    largest = largest[largest["work"] > EXACT_RATIO * largest.groupby("problem")["work"]
                      .transform("max")]  # exact estimators would stretch the axis 30 decades
    # Each panel carries its estimator names; keep room for MIN_BAR_IN of bars beside them.
    names_in = largest["estimator"].str.len().max() / settings["chars_per_inch"]
    columns = max(1, int(settings["width"] // (names_in + MIN_BAR_IN)))
    fig, panels = _problem_panels(largest, settings, columns=columns)
    label = {"f_evals": "variance × f-evaluations per estimate (log scale)",
             "time_per_estimate_s": "variance × seconds per estimate (log scale)"}[cost]
    for ax, rows in panels:
        rows = rows.sort_values("work", ascending=False)
        positions = np.arange(len(rows))
        ax.barh(positions, rows["work"], color=[styles[e].color for e in rows["estimator"]])
        ax.set_yticks(positions, rows["estimator"])
        _log_axes(ax, y=False)
    _shared_labels(fig, label)
    return fig


def relative_variance_heatmap(frame: pd.DataFrame, settings: dict[str, float]) -> Figure | None:
    """log10(variance / variance of score_function) at the same n, estimators × problems.

    Uses the largest n at which score_function ran on each problem; negative is better.
    """
    import seaborn as sns

    ok = _ok(frame)
    reference = ok[ok["estimator"] == BASELINE_ESTIMATOR]
    if reference.empty:
        return None
    n_ref = reference.groupby("problem")["n_samples"].max()
    ref_var = reference.set_index(["problem", "n_samples"])["variance"]
    cells = ok[ok.apply(lambda r: n_ref.get(r["problem"]) == r["n_samples"], axis=1)]
    ratio = cells.assign(log_ratio=[
        math.log10(v / ref_var[(p, n)]) if v > 0 and ref_var[(p, n)] > 0 else np.nan
        for p, n, v in zip(cells["problem"], cells["n_samples"], cells["variance"], strict=True)
    ])
    table = ratio.pivot_table(index="estimator", columns="problem", values="log_ratio")
    table = table[list(dict.fromkeys(p for p in ok["problem"] if p in table.columns))]
    height = 0.3 * len(table) + 1.6
    fig, ax = plt.subplots(figsize=(settings["width"], height))
    # Beyond 10⁶ either way the colour saturates: exact estimators reach 10⁻³⁰ (rounding)
    # and would wash out every other cell; the annotations keep the numbers.
    bound = float(np.nanmax(np.abs(table.to_numpy()))) if table.notna().any().any() else 1.0
    bound = min(max(bound, 0.5), 6.0)
    sns.heatmap(table, ax=ax, cmap="vlag", center=0, vmin=-bound, vmax=bound, annot=True,
                fmt=".1f", annot_kws={"fontsize": 6}, linewidths=0.4,
                cbar_kws={"label": "log10 variance ratio to score_function"})
    colorbar = ax.collections[0].colorbar
    if colorbar is not None and colorbar.solids is not None:
        colorbar.solids.set_rasterized(False)  # keep the whole figure vector
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="x", rotation=45)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return fig


def training_traces(traces: pd.DataFrame, styles: dict[str, EstimatorStyle],
                    settings: dict[str, float], x: str) -> Figure | None:
    """Exact objective along optimization, mean over seeds with a min–max band; ``x`` is
    ``"step"`` or ``"wall_s"``."""
    if traces is None or traces.empty:
        return None
    fig, panels = _problem_panels(traces, settings, columns=3)
    for ax, rows in panels:
        for estimator, group in rows.groupby("estimator", sort=True):
            by_step = group.groupby("step").agg(x=(x, "mean"), mean=("value", "mean"),
                                                low=("value", "min"), high=("value", "max"))
            style = styles[estimator]
            ax.plot(by_step["x"], by_step["mean"], color=style.color, linewidth=1.1)
            ax.fill_between(by_step["x"], by_step["low"], by_step["high"], color=style.color,
                            alpha=0.2, linewidth=0)
    _shared_labels(fig, {"step": "optimization step", "wall_s": "wall-clock time (s)"}[x],
                   "exact objective J(θ)")
    _legend(fig, styles, sorted(traces["estimator"].unique()), settings)
    return fig


def bias_vs_temperature(frame: pd.DataFrame, styles: dict[str, EstimatorStyle],
                        settings: dict[str, float]) -> Figure | None:
    """Bias of relaxed estimators against their temperature, one panel per problem.

    Drawn when the results hold an estimator at several temperatures, e.g. from
    ``-e gumbel_softmax:temperature=0.1,gumbel_softmax:temperature=1``; the bias of the
    relaxation shrinks as the temperature goes to zero.
    """
    ok = _ok(frame)
    params = ok["estimator_params"].fillna("{}").map(json.loads)
    temperature = params.map(lambda p: p.get("temperature"))
    ok = ok.assign(temperature=pd.to_numeric(temperature, errors="coerce"),
                   base=ok["estimator"].str.split(":").str[0])
    ok = ok[ok["temperature"].notna()]
    ok = ok[ok.groupby(["problem", "base"])["temperature"].transform("nunique") > 1]
    if ok.empty:
        return None
    largest = ok[ok["n_samples"] == ok.groupby("problem")["n_samples"].transform("max")]
    fig, panels = _problem_panels(largest, settings, columns=3)
    colors = estimator_styles_for_bases(sorted(largest["base"].unique()), styles)
    for ax, rows in panels:
        for base, group in rows.groupby("base", sort=True):
            group = group.sort_values("temperature")
            ax.plot(group["temperature"], group["bias_norm"], marker=colors[base].marker,
                    color=colors[base].color, markersize=3.5, linewidth=1, label=base)
        _log_axes(ax)
    _shared_labels(fig, "temperature τ (log scale)", "‖bias‖ (log scale)")
    _legend(fig, colors, sorted(colors), settings)
    return fig


def estimator_styles_for_bases(bases: list[str], styles: dict[str, EstimatorStyle]
                               ) -> dict[str, EstimatorStyle]:
    """One style per estimator family name, taken from the first of its variants."""
    chosen = {}
    for base in bases:
        variant = next((name for name in sorted(styles) if name.split(":")[0] == base), None)
        chosen[base] = styles[variant] if variant else next(iter(styles.values()))
    return chosen
