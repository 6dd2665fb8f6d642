"""The variance figures of a sweep: variance against samples per estimate, and measured
bias against variance at one n."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from vrbench.reports.axes import exact_axis
from vrbench.reports.figures.common import (
    DAGGER,
    REFERENCE_COLOR,
    at_slot,
    biased_estimators,
    caret_handle,
    dagger,
    draw_interval,
    exact_slots,
    reaches_zero,
    set_log_limits,
    size_in,
    text_handle,
)
from vrbench.reports.figures.legend import EstimatorLegend
from vrbench.reports.figures.pages import problem_figures
from vrbench.reports.labels import plain
from vrbench.reports.registry import FigureContext, Needs, NotDrawn, Pages, figure
from vrbench.reports.style import EstimatorStyle, FigureStyle, estimator_order
from vrbench.reports.values import fit_note, ground_truth_note, ok_cells, shown_variance

GUIDE: dict[str, Any] = {"color": "0.8", "linewidth": 4.0, "solid_capstyle": "butt", "alpha": 0.9}
"""The slope guide: a broad pale band, behind the data, that no estimator's line (thin,
coloured or dark, with markers) can be taken for."""
GUIDE_GAP_DECADES, GUIDE_GAP_PER_DECADE = 0.45, 0.09
"""How far (decades) the guide sits above the highest point: at least the first, and the
second per decade the panel spans, so that the band never touches a marker at any scale."""
LONE_MARGIN, X_MARGIN = 3.0, 2.5
"""The x range about a single measured variance (a factor either way), and the margin
(a factor) about the measured ones."""
POINT_GROWTH_PT = 0.8
"""The bias figure's points are this much larger than the style's markers: a point alone
has no line to be found by."""


def _samples_caption(context: FigureContext) -> str:
    frame = context.cells
    exact = bool(frame.loc[frame["status"] == "ok", "exact"].fillna(False).any())
    return ("Variance of one estimate against samples per estimate n, with 95% intervals; "
            "the broad grey band has slope −1 (plain averaging)."
            + (" Exact estimators sit in the grey strip labelled “exact”." if exact else "")
            + fit_note(frame, lambda e: plain(context.labels.estimator(e))))


@figure("variance_vs_samples", Needs.CELLS, _samples_caption,
        title="Variance against samples per estimate")
def variance_vs_samples(context: FigureContext) -> Pages:
    """Variance of one estimate against samples per estimate, log–log, with 95% intervals.

    The broad pale band is a guide of slope −1 (plain Monte Carlo averaging), behind and
    above every curve. The x ticks are the sample sizes that were run. An interval whose
    lower end reaches 0 runs to the bottom of the axis and ends in a caret. Drawn when the
    results hold at least two sample sizes.
    """
    styles, fig_style = context.estimator_styles, context.figure_style
    ok = ok_cells(context.cells)
    if ok.empty:
        raise NotDrawn("no cell of the selection ran")
    sizes = sorted(int(n) for n in ok["n_samples"].unique())
    if len(sizes) < 2:
        raise NotDrawn(f"needs two or more sample sizes n; the selection has only n = "
                       f"{sizes[0]} (choose n = \"all\" or several n)")
    biased = biased_estimators(ok)
    extras = [Line2D([], [], label="slope −1 (∝ 1/n)", **GUIDE)]
    if ok["bias_rejected"].any():
        extras.append(text_handle(f"{DAGGER} unbiasedness rejected"))
    if reaches_zero(ok):
        extras.append(caret_handle("interval reaches 0", "v"))

    return problem_figures(
        context, EstimatorLegend(ok, styles, context.labels, biased, extras),
        lambda ax, problem: _variance_panel(ax, ok[ok["problem"] == problem], styles, fig_style),
        ["samples per estimate n", "(log scale)"], ["variance of one estimate", "(log scale)"])


def _variance_panel(ax: Axes, rows: pd.DataFrame, styles: Mapping[str, EstimatorStyle],
                    fig_style: FigureStyle) -> None:
    shown = shown_variance(rows)
    exact = rows["exact"].to_numpy(dtype=bool)
    measured = shown["variance"].to_numpy()[~exact]
    ends = np.concatenate([shown["low"].to_numpy()[~exact], shown["high"].to_numpy()[~exact]])
    n = np.array(sorted(rows["n_samples"].unique()), dtype=float)
    anchor = _guide_anchor(rows, shown, n[0])
    span = np.concatenate([measured, ends, [] if anchor is None else
                           [anchor, anchor * n[0] / n[-1]]])
    slots = exact_slots(rows, "exact")
    strip = exact_axis(ax, "y", span, len(slots))
    if strip is None:
        set_log_limits(ax, "y", span)
    floor = strip.start if strip is not None else ax.get_ylim()[0]
    for estimator in estimator_order(rows["estimator"]):
        group = rows[rows["estimator"] == estimator].sort_values("n_samples")
        values = shown.loc[group.index]
        is_exact = group["exact"].to_numpy(dtype=bool)
        y = np.array([at_slot(strip, slots, estimator, v, e)
                      for v, e in zip(values["variance"], is_exact, strict=True)])
        style = styles[estimator]
        x = group["n_samples"].to_numpy(dtype=float)
        for xi, e, lo, hi in zip(x, is_exact, values["low"], values["high"], strict=True):
            if not e:
                draw_interval(ax, xi, lo, hi, floor, style.color)
        ax.plot(x, y, linestyle="none", markersize=fig_style.marker, zorder=2,
                **style.marker_kwargs())
        # The line joins measured points, and exact ones, but never crosses the axis break
        # between them: a slope from a variance into the "exact" strip means nothing.
        breaks = np.flatnonzero(is_exact[1:] != is_exact[:-1]) + 1
        ax.plot(np.insert(x, breaks, np.nan), np.insert(y, breaks, np.nan),
                color=style.color, linestyle=style.linestyle, zorder=1.8)
        rejected = group["bias_rejected"].to_numpy(dtype=bool)
        for xi, yi in zip(x[rejected], y[rejected], strict=True):
            dagger(ax, xi, yi, style.color)
    if anchor is not None:
        ax.plot(n, anchor * n[0] / n, zorder=0.6, **GUIDE)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(n.tolist()))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(n[0] / 1.3, n[-1] * 1.3)


def _guide_anchor(rows: pd.DataFrame, shown: pd.DataFrame, first_n: float) -> float | None:
    """The slope −1 guide's value at the smallest n: clear above every measured point and
    interval at every n (a curve falling slower than 1/n included), by a gap that grows with
    the decades the panel spans, so that the band (4 pt) never touches a marker."""
    measured = ~rows["exact"].to_numpy(dtype=bool)
    top = np.fmax(shown["variance"].to_numpy(dtype=float), shown["high"].to_numpy(dtype=float))
    n = rows["n_samples"].to_numpy(dtype=float)
    keep = measured & np.isfinite(top) & (top > 0)
    if not keep.any():
        return None
    level = top[keep] * n[keep] / first_n  # each point's 1/n line, at the smallest n
    positive = shown["variance"].to_numpy(dtype=float)[keep]
    positive = positive[positive > 0]
    decades = math.log10(level.max() / positive.min()) if positive.size else 1.0
    return float(level.max()) * 10 ** max(GUIDE_GAP_DECADES, GUIDE_GAP_PER_DECADE * (decades + 1))


def _bias_caption(context: FigureContext) -> str:
    return (f"Measured bias against variance at n = {context.n}. Dashed: √(variance / R), "
            "the bias that sampling error alone shows; points well above it are biased. "
            "“(biased)”: biased by design; †: the claim of unbiasedness is rejected."
            + ground_truth_note(context.cells, lambda p: plain(context.labels.problem(p))))


@figure("bias_vs_variance", Needs.CELLS, _bias_caption, title="Bias against variance")
def bias_vs_variance(context: FigureContext) -> Pages:
    """Measured bias against variance at one sample size ``n``, one point per estimator.

    The dashed line ``‖bias‖ = sqrt(variance / R)`` is the root-mean-square of an unbiased
    estimator's measured bias (``E‖ḡ − ∇J‖² = trace Σ / R``): unbiased estimators scatter
    around or below it, a biased one stands clearly above it. A dagger marks an estimator
    whose claim of unbiasedness the bias test rejects; "(biased)" in the legend, one that
    does not claim it.
    """
    styles, fig_style, n = context.estimator_styles, context.figure_style, context.sample_size()
    ok = ok_cells(context.cells)
    ok = ok[ok["n_samples"] == n]
    if ok.empty:
        raise NotDrawn(f"no cell of the selection ran at n = {n}")
    biased = biased_estimators(ok)
    extras = [Line2D([], [], color=REFERENCE_COLOR, linestyle="--", linewidth=0.8,
                     label="√(variance / R)")]
    if ok["bias_rejected"].any():
        extras.append(text_handle(f"{DAGGER} unbiasedness rejected"))

    return problem_figures(
        context, EstimatorLegend(ok, styles, context.labels, biased, extras, lines=False),
        lambda ax, problem: _bias_panel(ax, ok[ok["problem"] == problem], styles, fig_style),
        ["variance of one estimate", f"at n = {n}", "(log scale)"],
        ["measured ‖bias‖", "(log scale)"])


def _bias_panel(ax: Axes, rows: pd.DataFrame, styles: Mapping[str, EstimatorStyle],
                fig_style: FigureStyle) -> None:
    variances = shown_variance(rows)["variance"].to_numpy()
    bias = rows["bias_norm"].astype(float).to_numpy()
    exact = rows["exact"].to_numpy(dtype=bool)
    bias_exact = rows["bias_exact"].to_numpy(dtype=bool)
    replicates = float(rows["replicates"].median())
    measured = variances[~exact]
    measured = measured[np.isfinite(measured) & (measured > 0)]
    x_slots, y_slots = exact_slots(rows, "exact"), exact_slots(rows, "bias_exact")
    x_strip = exact_axis(ax, "x", measured, len(x_slots), most=3)
    if x_strip is None and measured.size:
        low, high = float(measured.min()), float(measured.max())
        low, high = (low / LONE_MARGIN, high * LONE_MARGIN) if low == high else (low, high)
        ax.set_xlim(low / X_MARGIN, high * X_MARGIN)
    # The guide across the whole axis above the exact strip, and the y axis holding it.
    x_low, x_high = ax.get_xlim()
    x_low = x_strip.start if x_strip is not None else x_low
    grid = np.geomspace(x_low, x_high, 50) if measured.size else np.array([])
    sampling = np.sqrt(grid / replicates)
    y_strip = exact_axis(ax, "y", np.concatenate([bias[~bias_exact], sampling]),
                         len(y_slots))
    if y_strip is None:
        set_log_limits(ax, "y", np.concatenate([bias[~bias_exact], sampling]))
    xs = np.array([at_slot(x_strip, x_slots, name, v, e) for name, v, e in
                   zip(rows["estimator"], variances, exact, strict=True)])
    ys = np.array([at_slot(y_strip, y_slots, name, float(b), e) for name, b, e in
                   zip(rows["estimator"], bias, bias_exact, strict=True)])
    size = fig_style.marker + POINT_GROWTH_PT
    xs = _dodge(ax, xs, ys, size)
    for i, (_, row) in enumerate(rows.iterrows()):
        style = styles[row["estimator"]]
        ax.plot([xs[i]], [ys[i]], linestyle="none", markersize=size, clip_on=False,
                **style.marker_kwargs())
        if row["bias_rejected"]:
            dagger(ax, xs[i], ys[i], style.color)
    if grid.size:
        ax.plot(grid, sampling, linestyle="--", color=REFERENCE_COLOR, linewidth=0.8,
                zorder=0.5)
        ax.set_xlim(ax.get_xlim())  # the guide must not widen the view


def _dodge(ax: Axes, xs: np.ndarray, ys: np.ndarray, size_pt: float) -> np.ndarray:
    """``xs`` with the points that would overprint each other (closer than a marker on the
    axes as laid out now) spread sideways, a marker apart, about their middle: coincident
    points (REINFORCE++ and its baseline variant) stay visible. Others do not move."""
    if len(xs) < 2:
        return xs
    box = ax.get_position()
    width_pt = box.width * size_in(ax)[0] * 72
    height_pt = box.height * size_in(ax)[1] * 72
    log = np.log10
    (x0, x1), (y0, y1) = (log(np.array(ax.get_xlim())), log(np.array(ax.get_ylim())))
    shown = np.isfinite(xs) & np.isfinite(ys) & (xs > 0) & (ys > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        px = np.where(shown, (log(xs) - x0) / (x1 - x0) * width_pt, np.nan)
        py = np.where(shown, (log(ys) - y0) / (y1 - y0) * height_pt, np.nan)
    near = size_pt * 0.8
    cluster = list(range(len(xs)))  # union of points closer than a marker

    def root(i: int) -> int:
        while cluster[i] != i:
            i = cluster[i]
        return i

    for i, j in itertools.combinations(range(len(xs)), 2):
        if math.hypot(px[i] - px[j], py[i] - py[j]) < near:
            cluster[root(j)] = root(i)
    moved = px.copy()
    for members in pd.Series(range(len(xs))).groupby([root(i) for i in range(len(xs))]):
        index = list(members[1])
        if len(index) < 2:
            continue
        centre = px[index].mean()
        for k, i in enumerate(sorted(index, key=lambda i: (px[i], i))):
            moved[i] = centre + (k - (len(index) - 1) / 2) * size_pt
    return np.where(shown, 10 ** (x0 + moved / width_pt * (x1 - x0)), xs)

