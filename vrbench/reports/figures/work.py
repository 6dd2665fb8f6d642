"""The work-normalized figures: variance × cost (f-evaluations or seconds) per estimate
relative to the reference, ranked per problem."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from vrbench.reports.axes import exact_axis, text_width_in, wrap_label
from vrbench.reports.figures.common import (
    DAGGER,
    REFERENCE_COLOR,
    at_slot,
    biased_estimators,
    draw_interval,
    reference_words,
    set_log_limits,
)
from vrbench.reports.figures.pages import (
    AXIS_LABEL_IN,
    alike_groups,
    figure_width,
    page_suffixes,
    paginate_problems,
    shared_labels,
)
from vrbench.reports.labels import Labels
from vrbench.reports.registry import FigureContext, Needs, NotDrawn, Pages, figure
from vrbench.reports.values import (
    NO_REFERENCE,
    describe_reference,
    is_biased,
    problem_references,
    ranked_ratios,
)

TIME_NOTE = ("Each time is one measurement per cell (the wall-clock time of its R estimates "
             "over R, once), whose spread is not in the interval: the intervals carry the "
             "variances' uncertainty only, so close times may differ by timing noise alone.")
"""How the time-normalized figure's caption states what the time is."""
FEVALS_NOTE = ("f-evaluations count the evaluations of f that one estimate makes; they "
               "count neither the draws a baseline or control variate spends fitting itself "
               "before the sweep nor evaluations of ∇f (the pathwise estimator's).")
"""How the f-evaluation-normalized figure's caption states what is counted."""
WORK_LABELS = {
    "f_evals": "variance × f-evaluations",
    "time_per_estimate_s": "variance × seconds",
}
WORK_PLOT_IN = 1.45
"""Narrowest plotting area of a work-normalized panel, beside its estimator names."""


LABEL_PAD_IN = 0.12
"""Between the estimators' names and the plot."""
ROW_EM = 1.45
"""An estimator's row, in ems of the small font."""
PANEL_PAD_IN, PAGE_PAD_IN = 0.5, 0.3
"""Room in a panel besides its rows (title, x ticks), and on a page besides its panels and
the shared labels."""
TITLE_MARGIN_IN = 0.15
"""A panel's title is this much narrower than its share of the page."""


def work_normalized(context: FigureContext, cost: str) -> Pages:
    """Variance × cost per estimate relative to ``reference`` at one ``n``, a dot per
    estimator with its 95% interval, ranked: which estimator gives the most precision per
    f-evaluation (``cost="f_evals"``) or per second (``cost="time_per_estimate_s"``). The
    ratio is at the same n for both; below 1 is better. A biased estimator (by design, or
    its claim rejected by the bias test) is placed and ranked by its mean squared error
    × cost instead, and says so ("MSE"): a low variance bought with bias never outranks an
    unbiased estimator of lower error. A log scale of ratios with the reference line at 1
    shows factors evenly in both directions (no bar lengths from an arbitrary origin).
    Intervals carry the uncertainty of both variances; costs are single measurements
    (f-evaluations are exact counts; times are one timing of the cell).

    Expects the columns ``<cost>_ratio``, ``<cost>_ratio_low``, ``<cost>_ratio_high`` and
    their ``<cost>_mse_`` counterparts (see :func:`vrbench.reports.values.relative`).
    """
    figure_style, labels = context.figure_style, context.labels
    n, reference, layout = context.sample_size(), context.reference, context.layout
    frame = context.cells
    column = f"{cost}_ratio"
    ran = frame[(frame["status"] != "skipped") & (frame["n_samples"] == n)]
    if ran.empty:
        raise NotDrawn(f"no cell of the selection ran at n = {n}")
    if column not in ran or ran[column].notna().sum() == 0:
        raise NotDrawn(f"no reference estimator ({reference}, or a fallback) ran on the "
                       f"selected problems at n = {n}")
    ran = ran.join(ranked_ratios(ran, f"{cost}_").add_prefix("_rank_"))
    biased = biased_estimators(ran)
    refs = problem_references(ran, reference)  # each problem's own
    label_in = max(text_width_in(_work_label(r, biased, refs.get(r["problem"]), labels),
                                 figure_style.small) for _, r in ran.iterrows()) + LABEL_PAD_IN
    width = figure_width(figure_style, layout)
    per_row = max(1, int(width // (label_in + WORK_PLOT_IN)))
    row_in = figure_style.small * ROW_EM / 72

    def panel_height(problem: str) -> float:
        return float((ran["problem"] == problem).sum() * row_in + PANEL_PAD_IN)

    def height(page: list[str]) -> float:
        rows = [page[i:i + per_row] for i in range(0, len(page), per_row)]
        return sum(max(panel_height(p) for p in r) for r in rows) + AXIS_LABEL_IN + PAGE_PAD_IN

    pages_ = paginate_problems(alike_groups(ran), height, figure_style, layout)
    pages: Pages = []
    for suffix, page in zip(page_suffixes(pages_, layout), pages_, strict=True):
        rows_of = [page[i:i + per_row] for i in range(0, len(page), per_row)]
        heights = [max(panel_height(p) for p in r) for r in rows_of]
        fig = plt.figure(figsize=(width, height(page)), layout="constrained")
        grid = fig.add_gridspec(len(rows_of), min(per_row, len(page)), height_ratios=heights)
        for r, row_problems in enumerate(rows_of):
            for c, problem in enumerate(row_problems):
                _work_panel(fig.add_subplot(grid[r, c]), ran[ran["problem"] == problem],
                            problem, context, biased, refs.get(problem),
                            width / min(per_row, len(page)) - TITLE_MARGIN_IN)
        what = [f"{WORK_LABELS[cost]} per estimate", "(MSE × cost for biased estimators)"] \
            if is_biased(ran).any() else [f"{WORK_LABELS[cost]} per estimate"]
        shared_labels(fig, [*what, "relative to",
                             describe_reference(refs, reference, page, labels.estimator,
                                                labels.problem) + ",",
                             f"at n = {n}", "(log scale; < 1 is better)"])
        pages.append((suffix, fig))
    return pages


def _work_label(row: pd.Series, biased: set[str], reference: str | None,
                labels: Labels) -> str:
    label = labels.estimator(row["estimator"])
    if row["estimator"] in biased:
        label += " (biased: MSE)"
    elif row.get("bias_rejected", False):
        label += f" {DAGGER} (MSE)"
    if row["status"] != "ok":
        label += " (failed)" if row["status"] == "error" else " (missing)"
    elif row["estimator"] == reference:
        label += " (ref.)"
    return label


def _work_panel(ax: Axes, rows: pd.DataFrame, problem: str, context: FigureContext,
                biased: set[str], reference: str | None, title_in: float = 3.0) -> None:
    """One problem's ranked dots: best (lowest ratio) at the top. The title ends at the
    plot's right edge and extends over the estimators' names, broken to the panel's width:
    never past the figure's edge."""
    figure_style, estimator_styles = context.figure_style, context.estimator_styles
    labels = context.labels
    order = rows.assign(_key=rows["_rank_ratio"].astype(float).fillna(np.inf)).sort_values(
        ["_key", "estimator"], ascending=[False, True])
    values = order["_rank_ratio"].astype(float).to_numpy()
    low = order["_rank_ratio_low"].astype(float).to_numpy()
    high = order["_rank_ratio_high"].astype(float).to_numpy()
    exact = order["exact"].fillna(False).to_numpy(dtype=bool) & (values == 0)
    positive = np.isfinite(values) & (values > 0)
    ends = np.concatenate([values[positive], low[positive & (low > 0)], high[positive], [1.0]])
    slots = {name: i for i, name in enumerate(order.loc[exact, "estimator"])}
    strip = exact_axis(ax, "x", ends, len(slots), most=4, plain=True)
    if strip is None:
        set_log_limits(ax, "x", np.concatenate([ends, [0.5, 2.0]]))
    floor_x = strip.start if strip is not None else ax.get_xlim()[0]
    ax.axvline(1.0, color=REFERENCE_COLOR, linestyle="--", linewidth=0.8, zorder=0.5)
    for y, (_, row) in enumerate(order.iterrows()):
        value = values[y]
        if row["status"] != "ok" or not np.isfinite(value):
            continue
        style = estimator_styles[row["estimator"]]
        x = at_slot(strip, slots, row["estimator"], value, exact[y])
        if value > 0 and row["estimator"] != reference:
            draw_interval(ax, y, low[y], high[y], floor_x, style.color, vertical=False)
        ax.plot([x], [y], linestyle="none", markersize=figure_style.marker, clip_on=False,
                zorder=2, **style.marker_kwargs())
    ax.set_yticks(range(len(order)), [_work_label(r, biased, reference, labels)
                                      for _, r in order.iterrows()])
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(-0.7, len(order) - 0.3)
    ax.spines["left"].set_visible(False)
    ax.set_title(wrap_label(labels.problem(problem), title_in, figure_style.font),
                 loc="right")
    for tick, (_, row) in zip(ax.get_yticklabels(), order.iterrows(), strict=True):
        if row["estimator"] in biased:
            tick.set_fontstyle("italic")
    if reference is None:  # no ratios: say why the panel is empty
        ax.text(0.5, 0.5, f"{NO_REFERENCE}: no reference ran", transform=ax.transAxes,
                ha="center", va="center", fontsize=figure_style.small, color=REFERENCE_COLOR)



figure("work_normalized_fevals", Needs.CELLS, lambda context: (
    f"Variance × f-evaluations per estimate relative to {reference_words(context)} at "
    f"n = {context.n}, with 95% intervals (from both variances); below 1 is better. Biased "
    "estimators are placed by their mean squared error instead (“MSE”). " + FEVALS_NOTE),
    title="Variance per f-evaluation", needs_reference=True, cost="f_evals")(work_normalized)
figure("work_normalized_time", Needs.CELLS, lambda context: (
    f"Variance × seconds per estimate relative to {reference_words(context)} at "
    f"n = {context.n} (biased estimators: MSE × seconds). " + TIME_NOTE),
    title="Variance per second", needs_reference=True,
    cost="time_per_estimate_s")(work_normalized)
