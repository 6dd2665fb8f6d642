"""The training figures of models of data sets (VAEs, IWAE, sigmoid belief nets): their
training ELBO and test bound along training, and the gap of each estimator's to the
reference's at the same seeds."""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from vrbench.reports.figures.common import REFERENCE_COLOR
from vrbench.reports.figures.legend import EstimatorLegend
from vrbench.reports.figures.pages import CURVE_COLUMNS, problem_figures
from vrbench.reports.figures.training import (
    BAND_ALPHA,
    MARKS_PER_CURVE,
    TRAINING_METRICS,
    no_column,
    train_settings,
    training_traces,
)
from vrbench.reports.registry import (
    NO_TRACES,
    FigureContext,
    FigureEntry,
    Needs,
    NotDrawn,
    Pages,
    register,
)
from vrbench.reports.style import estimator_order


def training_gap(context: FigureContext, column: str) -> Pages:
    """Each estimator's training metric (``column`` of :data:`TRAINING_METRICS`) minus that of
    ``reference`` (or, where it did not run, the first estimator in the legend's order) on
    the same problem, seed and step, mean over seeds with a min–max band. A seed fixes the
    initial θ and the measurements' draws, so the pairs share them: the gaps the by-step
    figure's scale (hundreds of nats) hides, the comparison :func:`vrbench.reproduce`'s
    ``final_metric`` claims make."""
    styles, fig_style, labels = context.estimator_styles, context.figure_style, context.labels
    traces, reference = context.traces, context.reference
    if traces is None or traces.empty:
        raise NotDrawn(NO_TRACES)
    if column not in traces or pd.to_numeric(traces[column], errors="coerce").notna().sum() == 0:
        raise NotDrawn(no_column(column))
    traces = traces[pd.to_numeric(traces[column], errors="coerce").notna()]
    gaps, bases = [], {}
    for problem, rows in traces.groupby("problem", sort=False):
        names = estimator_order(rows["estimator"])
        base = reference if reference in names else names[0]
        table = rows.pivot_table(index=["seed", "step"], columns="estimator",
                                 values=column, aggfunc="mean")
        for name in names:
            if name == base:
                continue
            gap = (table[name] - table[base]).dropna()
            if not gap.empty:
                bases[problem] = base
                gaps.append(pd.DataFrame({"problem": problem, "estimator": name,
                                          "step": gap.index.get_level_values("step"),
                                          "gap": gap.to_numpy()}))
    if not gaps:
        raise NotDrawn("needs two or more estimators run with the same seeds on a problem")
    frame = pd.concat(gaps, ignore_index=True)
    names = sorted(set(bases.values()))
    base_label = "; ".join(labels.estimator(name) for name in names)
    extras = [Line2D([], [], color=REFERENCE_COLOR, linestyle="-", linewidth=0.8,
                     label=f"{base_label} (0)")]

    def draw(ax: Axes, problem: str) -> None:
        ax.axhline(0.0, color=REFERENCE_COLOR, linewidth=0.8, zorder=0.5)
        rows = frame[frame["problem"] == problem]
        for estimator in estimator_order(rows["estimator"]):
            by_step = rows[rows["estimator"] == estimator].groupby("step")["gap"].agg(
                ["mean", "min", "max"])
            style = styles[estimator]
            ax.plot(by_step.index, by_step["mean"],
                    markevery=max(1, len(by_step) // MARKS_PER_CURVE),
                    markersize=fig_style.marker, **style.line_kwargs())
            ax.fill_between(by_step.index, by_step["min"], by_step["max"],
                            color=style.color, alpha=BAND_ALPHA, linewidth=0)

    seeds = int(frame.groupby(["problem", "estimator", "step"]).size().max())
    return problem_figures(context, EstimatorLegend(frame, styles, labels, extras=extras), draw,
                           ["optimization step", *train_settings(traces)],
                           [f"{TRAINING_METRICS[column]} gap", f"to {base_label}",
                            f"(same seeds: mean of {seeds}, min–max)"],
                           columns=min(CURVE_COLUMNS, fig_style.columns))


METRIC_WORDS = {"train_elbo": "ELBO on the training images",
                "test_bound": "importance-weighted bound on the test images"}
"""How the captions name each metric of :data:`TRAINING_METRICS`."""


def _register_curves(column: str, words: str) -> None:
    """The metric's figures by step and by time."""
    register(FigureEntry(
        f"{column}_by_step", Needs.TRACES,
        lambda context: training_traces(context, "step", column),
        lambda _: f"The model's {words} during training, mean over seeds with min–max band."))
    register(FigureEntry(
        f"{column}_by_time", Needs.TRACES,
        lambda context: training_traces(context, "wall_s", column),
        lambda _: (f"The model's {words} against the wall-clock time of the training steps, "
                   "mean over seeds with min–max band.")))


def _register_gap(column: str, words: str) -> None:
    """The metric's gap to the reference, by step."""
    register(FigureEntry(
        f"{column}_gap_by_step", Needs.TRACES, lambda context: training_gap(context, column),
        lambda _: (f"The model's {words} minus the reference estimator's at the same seed and "
                   "step (the same initial θ and measurement draws), mean over seeds with "
                   "min–max band.")))


for _column, _words in METRIC_WORDS.items():
    _register_curves(_column, _words)
    _register_gap(_column, _words)
