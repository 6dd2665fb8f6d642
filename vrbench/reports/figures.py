"""The figures of a report, each a function of an annotated results table.

Every figure function returns a list of pages ``(suffix, Figure)``: one page when its
panels fit in :data:`~vrbench.reports.style.PAGE_HEIGHT_IN`, else several, each complete
with its legend (``suffix`` is ``""``, ``"-1"``, ``"-2"``, ... or ``"-<problem>"`` with the
per-problem layout). The conventions follow the field's papers: variance on a log axis
against samples or as a ratio to REINFORCE (Grathwohl et al. 2018, fig. 1 and table 1;
Dong et al. 2020, figs. 2 and 5), estimators coloured by family (Mohamed et al. 2020).

Exact estimators (see :data:`~vrbench.reports.values.EXACT_RTOL`) are drawn in a shaded
strip at the bottom of a log axis, labelled "exact", never dropped.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from vrbench.reports.axes import Strip, exact_axis, log_axis, text_width_in, wrap_name
from vrbench.reports.paging import paginate
from vrbench.reports.style import EstimatorStyle, FigureStyle, estimator_order
from vrbench.reports.values import (
    NO_REFERENCE,
    REFERENCE,
    describe_reference,
    ok_cells,
    problem_groups,
    problem_references,
    shown_variance,
)

Pages = list[tuple[str, Figure]]

REFERENCE_COLOR = "0.45"
DAGGER = "\u2020"
AXIS_LABEL_IN = 0.45
"""Room for the shared axis labels and tick labels of a grid of panels."""


def _log_axes(ax: plt.Axes, x: bool = True, y: bool = True) -> None:
    """Log scales with 2 to 5 labelled ticks on the chosen axes."""
    for use, which in ((x, "x"), (y, "y")):
        if use:
            log_axis(ax, which)


# ----------------------------------------------------------------------------- legends


def _label(name: str, biased: AbstractSet[str]) -> str:
    return f"{name} (biased)" if name in biased else name


def _handle(style: EstimatorStyle, label: str) -> Line2D:
    return Line2D([], [], label=label, markersize=4, **style.line_kwargs())


def _text_handle(label: str) -> Line2D:
    return Line2D([], [], linestyle="none", marker="none", label=label)


@dataclass(frozen=True)
class _LegendLayout:
    columns: int
    height: float
    """Inches, with the padding around the legend."""
    wrap: float | None
    """Width (in) labels are broken to, at underscores, when they would force one column."""


def _legend_layout(labels: list[str], fig_style: FigureStyle, width: float) -> _LegendLayout:
    """Columns and height of a legend of ``labels`` across ``width``: as many columns as the
    longest label allows, and at least two when breaking long names over two lines lets
    them fit (a one-column legend of 20 estimators would be taller than the panels)."""
    if not labels:
        return _LegendLayout(1, 0.0, None)
    size = fig_style.small
    handle = 3.6 * size / 72
    widest = max(text_width_in(label, size) for label in labels)
    columns = max(1, min(len(labels), int((width - 0.1) // (widest + handle))))
    columns = math.ceil(len(labels) / math.ceil(len(labels) / columns))  # even columns
    wrap = None
    if columns == 1 and len(labels) > 4:
        wrap = (width - 0.1) / 2 - handle
        if all(text_width_in(line, size) <= wrap for label in labels
               for line in wrap_name(label, wrap, size).split("\n")):
            columns = 2
        else:
            wrap = None
    lines = [len(wrap_name(label, wrap, size).split("\n")) if wrap else 1 for label in labels]
    per_column = math.ceil(len(labels) / columns)
    tallest = max(sum(lines[i:i + per_column]) * 1.2 + 0.5 * len(lines[i:i + per_column])
                  for i in range(0, len(lines), per_column))
    return _LegendLayout(columns, tallest * size / 72 + 0.15, wrap)


def _add_legend(fig: Figure, handles: list[Line2D], layout: _LegendLayout,
                size: float) -> None:
    # Above the panels, in room added to the figure's height for it: no panel gives way.
    if layout.wrap is not None:
        for handle in handles:
            handle.set_label(wrap_name(handle.get_label(), layout.wrap, size))
    fig.legend(handles=handles, loc="outside upper center", ncols=layout.columns,
               frameon=False,
               handlelength=2.2, columnspacing=1.0, handletextpad=0.4, borderaxespad=0.1,
               borderpad=0.2)


# ----------------------------------------------------------------------------- pages


def _paginate(groups: list[list[str]], height: Callable[[list[str]], float],
              fig_style: FigureStyle, layout: str) -> list[list[str]]:
    """Problems in pages whose figure fits the page height (see
    :func:`~vrbench.reports.paging.paginate`), or one per page with the per-problem
    layout."""
    if layout == "per-problem":
        return [[p] for group in groups for p in group]
    return paginate(groups, height, fig_style.max_height)


def _suffixes(pages: list[list[str]], layout: str) -> list[str]:
    if layout == "per-problem":
        return [f"-{page[0]}" for page in pages]
    return [""] if len(pages) == 1 else [f"-{i}" for i in range(1, len(pages) + 1)]


def _grid_width(fig_style: FigureStyle, layout: str, columns: int | None) -> tuple[float, int]:
    """Figure width and panels per row of a per-problem grid."""
    if layout == "per-problem":
        return min(fig_style.width, 3.25), 1
    return fig_style.width, columns or fig_style.columns


def _problem_grid_pages(rows: pd.DataFrame, fig_style: FigureStyle, layout: str,
                        legend_labels: Callable[[list[str]], list[str]],
                        columns: int | None = None
                        ) -> list[tuple[str, Figure, list[tuple[plt.Axes, str]], _LegendLayout]]:
    """Pages of one titled panel per problem, each figure with room for its legend above.
    Returns ``(suffix, figure, [(axes, problem)], legend layout)``."""
    width, per_row = _grid_width(fig_style, layout, columns)
    groups = problem_groups(rows)
    count = sum(len(group) for group in groups)
    if count < per_row:  # a few panels: narrower, not stretched flat across the page
        width = max(min(fig_style.width, 3.25), width * count / per_row)
        per_row = count

    def height(page: list[str]) -> float:
        legend = _legend_layout(legend_labels(page), fig_style, width).height
        return legend + math.ceil(len(page) / per_row) * fig_style.panel + AXIS_LABEL_IN

    pages = _paginate(groups, height, fig_style, layout)
    out = []
    # A title spans its panel, which is the figure's share less the y tick labels.
    title_in = width / min(per_row, max(len(p) for p in pages)) - 0.75
    for suffix, page in zip(_suffixes(pages, layout), pages, strict=True):
        legend_layout = _legend_layout(legend_labels(page), fig_style, width)
        count = min(per_row, len(page))
        rows_ = math.ceil(len(page) / count)
        fig = plt.figure(figsize=(width, height(page)), layout="constrained")
        axes = fig.subplots(rows_, count, squeeze=False).ravel().tolist()
        for extra in axes[len(page):]:
            extra.set_visible(False)
        for ax, problem in zip(axes, page, strict=False):
            ax.set_title(wrap_name(problem, title_in, fig_style.font))
        out.append((suffix, fig, list(zip(axes, page, strict=False)), legend_layout))
    return out


@dataclass(frozen=True)
class _EstimatorLegend:
    """The legend of a page of problems: one entry per estimator drawn on it, in the shared
    order, then the figure's extra entries (reference lines, notes)."""

    rows: pd.DataFrame
    styles: dict[str, EstimatorStyle]
    biased: AbstractSet[str] = frozenset()
    extras: Sequence[Line2D] = ()
    column: str = "estimator"

    def _names(self, page: list[str]) -> list[str]:
        return estimator_order(self.rows.loc[self.rows["problem"].isin(page), self.column])

    def labels(self, page: list[str]) -> list[str]:
        """The entries' texts, which size the legend while pages are laid out."""
        return ([_label(e, self.biased) for e in self._names(page)]
                + [h.get_label() for h in self.extras])

    def handles(self, page: list[str]) -> list[Line2D]:
        return ([_handle(self.styles[e], _label(e, self.biased))
                 for e in self._names(page)] + list(self.extras))


def _problem_figures(rows: pd.DataFrame, fig_style: FigureStyle, layout: str,
                     legend: _EstimatorLegend, draw: Callable[[plt.Axes, str], None],
                     xlabel: str, ylabel: str, columns: int | None = None) -> Pages:
    """Pages of one panel per problem, each drawn by ``draw(axes, problem)``, with the page's
    legend above and the axis labels shared."""
    pages: Pages = []
    for suffix, fig, panels, legend_layout in _problem_grid_pages(
            rows, fig_style, layout, legend.labels, columns):
        for ax, problem in panels:
            draw(ax, problem)
        _add_legend(fig, legend.handles([problem for _, problem in panels]), legend_layout,
                    fig_style.small)
        _shared_labels(fig, xlabel, ylabel)
        pages.append((suffix, fig))
    return pages


def _shared_labels(fig: Figure, xlabel: str, ylabel: str | None = None) -> None:
    """Axis labels shared by all panels, broken into lines that fit the figure."""
    width, height = fig.get_size_inches()
    size = plt.rcParams["figure.labelsize"]
    size = size if isinstance(size, float) else plt.rcParams["font.size"]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    if len(panels) == 1 and ylabel:  # beside its panel, not beside the legend above it
        panels[0].set_ylabel(ylabel)
        ylabel = None
    fig.supxlabel(_lines(xlabel.split(" "), width - 0.3, size, " "))
    if ylabel:
        fig.supylabel(_lines(ylabel.split(" "), height - 0.5, size, " "))


def _biased(rows: pd.DataFrame) -> set[str]:
    claims = rows["unbiased_claim"]
    return set(rows.loc[claims.notna() & ~claims.fillna(True).astype(bool), "estimator"])


def _dagger(ax: plt.Axes, x: float, y: float, color: str) -> None:
    ax.annotate(DAGGER, (x, y), xytext=(3, 2), textcoords="offset points", fontsize="small",
                color=color, fontweight="bold", annotation_clip=False)


def _exact_slots(rows: pd.DataFrame, column: str) -> dict[str, int]:
    """Estimators with an exact value in ``column`` → their slot in the exact strip."""
    names = rows.loc[rows[column].fillna(False).astype(bool), "estimator"]
    return {name: i for i, name in enumerate(estimator_order(names))}


def _at(strip: Strip | None, slots: dict[str, int], name: str, value: float,
        exact: bool) -> float:
    return strip.slot(slots[name]) if exact and strip is not None else value


# ----------------------------------------------------------------------------- figures


def variance_vs_samples(frame: pd.DataFrame, styles: dict[str, EstimatorStyle],
                        fig_style: FigureStyle, layout: str = "pages") -> Pages:
    """Variance of one estimate against samples per estimate, log–log, with 95% intervals.

    The dashed grey guide has slope −1 (plain Monte Carlo averaging), drawn above every
    curve. The x ticks are the sample sizes that were run. Drawn when the results hold at
    least two sample sizes.
    """
    ok = ok_cells(frame)
    if ok.empty or ok["n_samples"].nunique() < 2:
        return []
    biased = _biased(ok)
    extras = [Line2D([], [], color=REFERENCE_COLOR, linestyle="--", linewidth=0.8,
                     label="slope −1 (∝ 1/n)")]
    if ok["bias_rejected"].any():
        extras.append(_text_handle(f"{DAGGER} unbiasedness rejected"))

    return _problem_figures(
        ok, fig_style, layout, _EstimatorLegend(ok, styles, biased, extras),
        lambda ax, problem: _variance_panel(ax, ok[ok["problem"] == problem], styles, fig_style),
        "samples per estimate n (log scale)", "variance of one estimate (log scale)")


def _variance_panel(ax: plt.Axes, rows: pd.DataFrame, styles: dict[str, EstimatorStyle],
                    fig_style: FigureStyle) -> None:
    shown = shown_variance(rows)
    exact = rows["exact"].to_numpy(dtype=bool)
    measured = shown["variance"].to_numpy()[~exact]
    n = np.array(sorted(rows["n_samples"].unique()), dtype=float)
    first = rows.loc[(rows["n_samples"] == n[0]) & ~rows["exact"], "variance"].astype(float)
    anchor = 2.0 * float(first.max()) if not first.empty else None
    span = measured if anchor is None else np.append(measured, anchor)
    slots = _exact_slots(rows, "exact")
    strip = exact_axis(ax, "y", span, len(slots))
    for estimator in estimator_order(rows["estimator"]):
        group = rows[rows["estimator"] == estimator].sort_values("n_samples")
        values = shown.loc[group.index]
        is_exact = group["exact"].to_numpy(dtype=bool)
        y = np.array([_at(strip, slots, estimator, v, e)
                      for v, e in zip(values["variance"], is_exact, strict=True)])
        low = np.where(is_exact, 0.0, (values["variance"] - values["low"]).clip(lower=0))
        high = np.where(is_exact, 0.0, values["high"] - values["variance"])
        style = styles[estimator]
        ax.errorbar(group["n_samples"], y, yerr=[low, high], capsize=0, elinewidth=0.7,
                    markersize=fig_style.marker, **{**style.line_kwargs(), "linestyle": "none"})
        # The line joins measured points, and exact ones, but never crosses the axis break
        # between them: a slope from a variance into the "exact" strip means nothing.
        x = group["n_samples"].to_numpy(dtype=float)
        breaks = np.flatnonzero(is_exact[1:] != is_exact[:-1]) + 1
        ax.plot(np.insert(x, breaks, np.nan), np.insert(y, breaks, np.nan),
                color=style.color, linestyle=style.linestyle)
        rejected = group["bias_rejected"].to_numpy(dtype=bool)
        for xi, yi in zip(group["n_samples"].to_numpy()[rejected], y[rejected], strict=True):
            _dagger(ax, xi, yi, style.color)
    if anchor is not None:
        ax.plot(n, anchor * n[0] / n, linestyle="--", color=REFERENCE_COLOR, linewidth=0.8,
                zorder=0.5)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(n))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(n[0] / 1.3, n[-1] * 1.3)


def bias_vs_variance(frame: pd.DataFrame, styles: dict[str, EstimatorStyle],
                     fig_style: FigureStyle, n: int, layout: str = "pages") -> Pages:
    """Measured bias against variance at one sample size ``n``, one point per estimator.

    The dashed line ``‖bias‖ = sqrt(variance / R)`` is the root-mean-square of an unbiased
    estimator's measured bias (``E‖ḡ − ∇J‖² = trace Σ / R``): unbiased estimators scatter
    around or below it, a biased one stands clearly above it. A dagger marks an estimator
    whose claim of unbiasedness the bias test rejects; "(biased)" in the legend, one that
    does not claim it.
    """
    ok = ok_cells(frame)
    ok = ok[ok["n_samples"] == n]
    if ok.empty:
        return []
    biased = _biased(ok)
    extras = [Line2D([], [], color=REFERENCE_COLOR, linestyle="--", linewidth=0.8,
                     label="√(variance / R)")]
    if ok["bias_rejected"].any():
        extras.append(_text_handle(f"{DAGGER} unbiasedness rejected"))

    return _problem_figures(
        ok, fig_style, layout, _EstimatorLegend(ok, styles, biased, extras),
        lambda ax, problem: _bias_panel(ax, ok[ok["problem"] == problem], styles, fig_style),
        f"variance of one estimate at n = {n} (log scale)", "measured ‖bias‖ (log scale)")


def _bias_panel(ax: plt.Axes, rows: pd.DataFrame, styles: dict[str, EstimatorStyle],
                fig_style: FigureStyle) -> None:
    variances = shown_variance(rows)["variance"].to_numpy()
    bias = rows["bias_norm"].astype(float).to_numpy()
    exact = rows["exact"].to_numpy(dtype=bool)
    bias_exact = rows["bias_exact"].to_numpy(dtype=bool)
    replicates = float(rows["replicates"].median())
    measured = variances[~exact]
    grid = np.geomspace(measured.min(), measured.max(), 20) if measured.size else np.array([])
    if grid.size and grid[0] == grid[-1]:
        grid = np.array([grid[0] / 3, grid[0] * 3])
    sampling = np.sqrt(grid / replicates)
    x_slots, y_slots = _exact_slots(rows, "exact"), _exact_slots(rows, "bias_exact")
    x_strip = exact_axis(ax, "x", np.concatenate([measured, grid]), len(x_slots), most=3)
    y_strip = exact_axis(ax, "y", np.concatenate([bias[~bias_exact], sampling]), len(y_slots))
    for i, (_, row) in enumerate(rows.iterrows()):
        name = row["estimator"]
        style = styles[name]
        x = _at(x_strip, x_slots, name, variances[i], exact[i])
        y = _at(y_strip, y_slots, name, bias[i], bias_exact[i])
        ax.plot([x], [y], linestyle="none", markersize=fig_style.marker + 0.8, clip_on=False,
                **style.marker_kwargs())
        if row["bias_rejected"]:
            _dagger(ax, x, y, style.color)
    if grid.size:
        ax.plot(grid, sampling, linestyle="--", color=REFERENCE_COLOR, linewidth=0.8,
                zorder=0.5)
        if x_strip is None:
            ax.set_xlim(grid[0] / 2.5, grid[-1] * 2.5)


WORK_LABELS = {
    "f_evals": "variance × f-evaluations",
    "time_per_estimate_s": "variance × seconds",
}
WORK_PLOT_IN = 1.45
"""Narrowest plotting area of a work-normalized panel, beside its estimator names."""


def work_normalized(frame: pd.DataFrame, styles: dict[str, EstimatorStyle],
                    fig_style: FigureStyle, cost: str, n: int, reference: str = REFERENCE,
                    layout: str = "pages") -> Pages:
    """Variance × cost per estimate relative to ``reference`` at one ``n``, a dot per
    estimator with its 95% interval, ranked: which estimator gives the most precision per
    f-evaluation (``cost="f_evals"``) or per second (``cost="time_per_estimate_s"``). The
    ratio is at the same n for both; below 1 is better. A log scale of ratios with the
    reference line at 1 shows factors evenly in both directions (no bar lengths from an
    arbitrary origin). Intervals carry the uncertainty of both variances; costs are single
    measurements (f-evaluations are exact counts; times are one timing of the cell).

    Expects the columns ``<cost>_ratio``, ``<cost>_ratio_low``, ``<cost>_ratio_high`` (see
    :func:`vrbench.reports.values.relative`).
    """
    column = f"{cost}_ratio"
    ran = frame[(frame["status"] != "skipped") & (frame["n_samples"] == n)]
    if ran.empty or column not in ran or ran[column].notna().sum() == 0:
        return []
    biased = _biased(ran)
    refs = problem_references(ran, reference)  # each problem's own
    label_in = max(text_width_in(_work_label(r, biased, refs.get(r["problem"])),
                                 fig_style.small) for _, r in ran.iterrows()) + 0.12
    width = fig_style.width if layout != "per-problem" else min(fig_style.width, 3.25)
    per_row = max(1, int(width // (label_in + WORK_PLOT_IN)))
    row_in = fig_style.small * 1.45 / 72

    def panel_height(problem: str) -> float:
        return (ran["problem"] == problem).sum() * row_in + 0.5

    def height(page: list[str]) -> float:
        rows = [page[i:i + per_row] for i in range(0, len(page), per_row)]
        return sum(max(panel_height(p) for p in r) for r in rows) + AXIS_LABEL_IN + 0.2

    pages_ = _paginate(problem_groups(ran), height, fig_style, layout)
    pages: Pages = []
    for suffix, page in zip(_suffixes(pages_, layout), pages_, strict=True):
        rows_of = [page[i:i + per_row] for i in range(0, len(page), per_row)]
        heights = [max(panel_height(p) for p in r) for r in rows_of]
        fig = plt.figure(figsize=(width, height(page)), layout="constrained")
        grid = fig.add_gridspec(len(rows_of), min(per_row, len(page)), height_ratios=heights)
        for r, row_problems in enumerate(rows_of):
            for c, problem in enumerate(row_problems):
                _work_panel(fig.add_subplot(grid[r, c]), ran[ran["problem"] == problem],
                            problem, column, styles, fig_style, biased, refs.get(problem))
        _shared_labels(fig, f"{WORK_LABELS[cost]} per estimate relative to "
                            f"{describe_reference(refs, reference, page)}, at "
                            f"n = {n} (log scale; < 1 is better)")
        pages.append((suffix, fig))
    return pages


def _work_label(row: pd.Series, biased: set[str], reference: str | None) -> str:
    label = _label(row["estimator"], biased)
    if row.get("bias_rejected", False):
        label += f" {DAGGER}"
    if row["status"] != "ok":
        label += " (failed)" if row["status"] == "error" else " (missing)"
    elif row["estimator"] == reference:
        label += " (ref.)"
    return label


def _work_panel(ax: plt.Axes, rows: pd.DataFrame, problem: str, column: str,
                styles: dict[str, EstimatorStyle], fig_style: FigureStyle, biased: set[str],
                reference: str | None) -> None:
    order = rows.assign(_key=rows[column].astype(float).fillna(np.inf)).sort_values(
        ["_key", "estimator"], ascending=[False, True])
    values = order[column].astype(float).to_numpy()
    low = order[f"{column}_low"].astype(float).to_numpy()
    high = order[f"{column}_high"].astype(float).to_numpy()
    exact = order["exact"].fillna(False).to_numpy(dtype=bool) & (values == 0)
    positive = np.isfinite(values) & (values > 0)
    ends = np.concatenate([values[positive], low[positive], high[positive], [1.0]])
    slots = {name: i for i, name in enumerate(order.loc[exact, "estimator"])}
    strip = exact_axis(ax, "x", ends, len(slots), most=4, plain=True)
    ax.axvline(1.0, color=REFERENCE_COLOR, linestyle="--", linewidth=0.8, zorder=0.5)
    floor_x = strip.start if strip is not None else 0.0
    for y, (_, row) in enumerate(order.iterrows()):
        value = values[y]
        if row["status"] != "ok" or not np.isfinite(value):
            continue
        style = styles[row["estimator"]]
        x = _at(strip, slots, row["estimator"], value, exact[y])
        if value > 0 and row["estimator"] != reference and np.isfinite(high[y]):
            ax.plot([max(low[y], floor_x), high[y]], [y, y], color=style.color,
                    linewidth=1.0, solid_capstyle="butt")
        ax.plot([x], [y], linestyle="none", markersize=fig_style.marker, clip_on=False,
                **style.marker_kwargs())
    ax.set_yticks(range(len(order)), [_work_label(r, biased, reference)
                                      for _, r in order.iterrows()])
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(-0.7, len(order) - 0.3)
    ax.spines["left"].set_visible(False)
    ax.set_title(problem)
    for tick, name in zip(ax.get_yticklabels(), order["estimator"], strict=True):
        if name in biased:
            tick.set_fontstyle("italic")
    if strip is None:  # 1 in view, with room on both sides
        low_, high_ = ax.get_xlim()
        ax.set_xlim(min(low_, 0.5), max(high_, 2.0))
    if reference is None:  # no ratios: say why the panel is empty
        ax.text(0.5, 0.5, f"{NO_REFERENCE}: no reference ran", transform=ax.transAxes,
                ha="center", va="center", fontsize=fig_style.small, color=REFERENCE_COLOR)


def relative_variance_heatmap(frame: pd.DataFrame, fig_style: FigureStyle, n: int,
                              styles: dict[str, EstimatorStyle] | None = None,
                              reference: str = REFERENCE, layout: str = "pages") -> Pages:
    """log10(variance / variance of ``reference``) at one ``n``, estimators × problems.

    Blue is better. Exact estimators read "exact" in the darkest blue; grey cells are pairs
    that do not apply; "err" marks a failed cell; boxed bold cells are the best unbiased
    estimator and those tied with it; a dagger, a rejected claim of unbiasedness. Estimators
    come grouped by family, each with its marker. Expects the columns ``ratio`` and ``best``
    (see :func:`vrbench.reports.values.relative` and :func:`~vrbench.reports.values.best`).
    """
    ran = frame[(frame["n_samples"] == n) & (frame["status"] != "skipped")]
    if ran.empty or ran["ratio"].notna().sum() == 0:
        return []
    refs = problem_references(ran, reference)
    size = fig_style.small
    label_in = max(text_width_in(e, size) for e in ran["estimator"]) + 0.25
    cell_in = text_width_in("exact†", size * 0.92) + 0.1
    room = fig_style.width - label_in - 0.1
    columns = 1 if layout == "per-problem" else max(1, int(room // cell_in))
    page_problems = ([[p] for group in problem_groups(ran) for p in group]
                     if layout == "per-problem" else
                     paginate(problem_groups(ran), len, float(columns)))
    row_in = size * 1.55 / 72
    logs = np.log10(ran["ratio"].astype(float).where(ran["ratio"] > 0))
    largest = float(np.nanmax(np.abs(logs))) if logs.notna().any() else 1.0
    bound = min(max(largest, 0.5), 6.0)
    norm = TwoSlopeNorm(vmin=-bound, vcenter=0.0, vmax=bound)
    step = 0.5 if bound < 2 else 1 if bound < 4 else 2
    ticks = np.arange(-math.floor(bound / step), math.floor(bound / step) + 1) * step
    extend = "both" if largest > bound else "neither"  # arrows: the scale clips the values
    cmap = plt.get_cmap("RdBu_r")
    parts = ["exact: zero variance", "grey: not applicable", "err: failed",
             "box: best unbiased and ties", f"{DAGGER}: unbiasedness rejected",
             "italic: biased by design", "ref: the problem's reference"]
    pages: Pages = []
    sheets = []
    for problems in page_problems:
        cells = ran[ran["problem"].isin(problems)]
        header_in = max(text_width_in(p, size) for p in problems) * 0.66 + 0.1
        # At least a column wide, so that the colour bar over the cells has room.
        width = min(fig_style.width, max(3.25, label_in + len(problems) * cell_in + 0.3))
        notes = parts + ([f"{NO_REFERENCE}: no reference variance to compare with"]
                         if cells.loc[cells["status"] == "ok", "ratio"].isna().any() else [])
        note = _lines(notes, width - 0.1, size * 0.95)
        label_parts = ["log10 variance ratio",
                       f"to {describe_reference(refs, reference, problems)}",
                       f"at n = {n}", "(< 0: better)"]
        label = _lines(label_parts, width - label_in - 0.2, size, joint=" ")
        fixed = (header_in + 0.75 + (note.count("\n") + 1) * size * 1.4 / 72
                 + label.count("\n") * size * 1.4 / 72)
        # Too many estimators for one page: rows split between families where possible.
        family_of = dict(zip(cells["estimator"], cells["family"], strict=True))
        families = [list(group) for _, group in itertools.groupby(
            estimator_order(cells["estimator"]), key=family_of.get)]
        for rows in paginate(families, lambda part, fixed=fixed: fixed + len(part) * row_in,
                             fig_style.max_height):
            sheets.append((problems, rows, width, note, label, fixed + len(rows) * row_in))
    split_rows = len(sheets) > len(page_problems)
    if layout == "per-problem" and not split_rows:
        suffixes = _suffixes(page_problems, layout)
    else:
        suffixes = _suffixes([rows for _, rows, *_ in sheets], "pages")
    for suffix, (problems, estimators, width, note, label, height) in zip(
            suffixes, sheets, strict=True):
        cells = ran[ran["problem"].isin(problems) & ran["estimator"].isin(estimators)]
        fig = plt.figure(figsize=(width, height), layout="constrained")
        ax = fig.add_subplot()
        _heatmap(ax, cells, estimators, problems, norm, cmap, fig_style, styles, refs)
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                           location="top", fraction=0.04, pad=0.02, aspect=35, ticks=ticks,
                           extend=extend)
        # Over the colour bar, which is as wide as the cells, not the figure.
        bar.set_label(label, fontsize=size)
        bar.ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}".replace("-", "−")))
        bar.ax.tick_params(labelsize=size)
        bar.solids.set_rasterized(False)  # the whole figure vector, colour bar included
        fig.supxlabel(note, fontsize=size * 0.95)
        pages.append((suffix, fig))
    return pages


def _lines(parts: list[str], width_in: float, size: float, joint: str = " · ") -> str:
    """``parts`` joined by ``joint`` into lines no wider than ``width_in``."""
    lines = [parts[0]]
    for part in parts[1:]:
        if text_width_in(f"{lines[-1]}{joint}{part}", size) <= width_in:
            lines[-1] = f"{lines[-1]}{joint}{part}"
        else:
            lines.append(part)
    return "\n".join(lines)


def _heatmap(ax: plt.Axes, cells: pd.DataFrame, estimators: list[str], problems: list[str],
             norm: TwoSlopeNorm, cmap, fig_style: FigureStyle,  # type: ignore[no-untyped-def]
             styles: dict[str, EstimatorStyle] | None, refs: dict[str, str | None]) -> None:
    index = {(r["problem"], r["estimator"]): r for _, r in cells.iterrows()}
    for i, estimator in enumerate(estimators):
        if styles is not None and estimator in styles:  # the estimator's identity marker
            style = styles[estimator]
            ax.plot([-0.28], [i + 0.5], linestyle="none", markersize=fig_style.marker,
                    clip_on=False, **style.marker_kwargs())
        for j, problem in enumerate(problems):
            _heat_cell(ax, index.get((problem, estimator)), i, j, norm, cmap, fig_style,
                       estimator == refs.get(problem))
    ax.set_xlim(-0.5, len(problems))
    ax.set_ylim(len(estimators), 0)
    ax.set_xticks(np.arange(len(problems)) + 0.5, problems, rotation=40, ha="right",
                  rotation_mode="anchor")
    ax.set_yticks(np.arange(len(estimators)) + 0.5, estimators)
    biased = _biased(cells)
    for tick, name in zip(ax.get_yticklabels(), estimators, strict=True):
        if name in biased:
            tick.set_fontstyle("italic")
    ax.tick_params(length=0, pad=1)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _heat_cell(ax: plt.Axes, row: pd.Series | None, i: int, j: int, norm: TwoSlopeNorm,
               cmap, fig_style: FigureStyle,  # type: ignore[no-untyped-def]
               is_reference: bool) -> None:
    face, text, color = "0.87", "", "black"  # grey: not applicable, or not in the results
    if row is not None and row["status"] != "ok":
        face, text, color = "white", "err" if row["status"] == "error" else "miss", "#B00000"
    elif row is not None and row["exact"]:
        face, text, color = cmap(norm(norm.vmin)), "exact", "white"
    elif row is not None and pd.notna(row["ratio"]) and row["ratio"] > 0:
        value = math.log10(row["ratio"])
        face = cmap(norm(float(np.clip(value, norm.vmin, norm.vmax))))
        rounded = round(value, 1)
        text = "ref" if is_reference else f"{rounded + 0.0:.1f}".replace("-", "−")
        color = "white" if abs(value) > 0.55 * norm.vmax else "black"
    elif row is not None:
        face, text = "white", NO_REFERENCE
    best = row is not None and bool(row.get("best", False))
    if row is not None and row.get("bias_rejected", False):
        text += DAGGER
    ax.add_patch(Rectangle((j, i), 1, 1, facecolor=face, edgecolor="white", linewidth=0.6))
    if best:
        ax.add_patch(Rectangle((j + 0.05, i + 0.07), 0.9, 0.86, facecolor="none",
                               edgecolor="black", linewidth=0.9))
    if text:
        ax.text(j + 0.5, i + 0.53, text, ha="center", va="center", color=color,
                fontsize=fig_style.small * 0.92, fontweight="bold" if best else "normal")


TRAINING_METRICS = {"train_elbo": "training ELBO", "test_bound": "100-sample test bound"}
"""Columns of the training metrics of models of data sets, and their axis labels."""


def training_traces(traces: pd.DataFrame, styles: dict[str, EstimatorStyle],
                    fig_style: FigureStyle, x: str, layout: str = "pages",
                    column: str = "value") -> Pages:
    """Exact objective along optimization, mean over seeds with a min–max band; ``x`` is
    ``"step"`` or ``"wall_s"``. The comparison of the REBAR, RELAX and DisARM papers, with
    J(θ) exact instead of a Monte Carlo bound. ``column`` one of :data:`TRAINING_METRICS`
    draws a model's training ELBO or its test bound instead (the papers' own figures)."""
    if traces is None or traces.empty or column not in traces:
        return []
    traces = traces[pd.to_numeric(traces[column], errors="coerce").notna()]
    if traces.empty:
        return []
    if column != "value":
        traces = traces.assign(value=traces[column].astype(float))

    def draw(ax: plt.Axes, problem: str) -> None:
        rows = traces[traces["problem"] == problem]
        for estimator in estimator_order(rows["estimator"]):
            group = rows[rows["estimator"] == estimator]
            by_step = group.groupby("step").agg(x=(x, "mean"), mean=("value", "mean"),
                                                low=("value", "min"), high=("value", "max"))
            if x == "wall_s":  # log time: the start, at t = 0, is in the by-step figure
                by_step = by_step[by_step["x"] > 0]
            style = styles[estimator]
            ax.plot(by_step["x"], by_step["mean"], markevery=max(1, len(by_step) // 5),
                    markersize=fig_style.marker, **style.line_kwargs())
            ax.fill_between(by_step["x"], by_step["low"], by_step["high"],
                            color=style.color, alpha=0.15, linewidth=0)
        if x == "wall_s":
            log_axis(ax, "x", most=4)

    xlabel = {"step": "optimization step", "wall_s": "wall-clock time (s, log scale)"}[x]
    ylabel = TRAINING_METRICS.get(column, "exact objective J(θ)")
    return _problem_figures(traces, fig_style, layout, _EstimatorLegend(traces, styles), draw,
                            xlabel + _train_settings(traces), ylabel,
                            columns=min(3, fig_style.columns))


def _train_settings(traces: pd.DataFrame) -> str:
    """The settings the traces share, for the axis label: ", n = 4, adam, lr = 0.05"."""
    parts = []
    for column, text in (("n_samples", "n = {}"), ("optimizer", "{}"), ("lr", "lr = {:g}")):
        if column in traces and traces[column].nunique() == 1:
            parts.append(text.format(traces[column].iloc[0]))
    return "".join(f", {part}" for part in parts)


def bias_vs_temperature(frame: pd.DataFrame, styles: dict[str, EstimatorStyle],
                        fig_style: FigureStyle, n: int, layout: str = "pages") -> Pages:
    """Bias of relaxed estimators against their temperature at one ``n``, one panel per
    problem.

    Drawn when the results hold an estimator at several temperatures, e.g. from
    ``-e gumbel_softmax:temperature=0.1,gumbel_softmax:temperature=1``; the bias of the
    relaxation shrinks as the temperature goes to zero.
    """
    ok = ok_cells(frame)
    params = ok["estimator_params"].fillna("{}").map(json.loads)
    temperature = params.map(lambda p: p.get("temperature"))
    ok = ok.assign(temperature=pd.to_numeric(temperature, errors="coerce"),
                   base=ok["estimator"].str.split(":").str[0])
    ok = ok[ok["temperature"].notna() & (ok["n_samples"] == n)]
    ok = ok[ok.groupby(["problem", "base"])["temperature"].transform("nunique") > 1]
    if ok.empty:
        return []
    base_styles = {base: styles[min(v for v in styles if v.split(":")[0] == base)]
                   for base in ok["base"].unique()}

    def draw(ax: plt.Axes, problem: str) -> None:
        rows = ok[ok["problem"] == problem]
        for base in estimator_order(rows["base"]):
            group = rows[rows["base"] == base].sort_values("temperature")
            ax.plot(group["temperature"], group["bias_norm"], markersize=fig_style.marker,
                    **{**base_styles[base].line_kwargs(), "linestyle": "-"})
        _log_axes(ax)

    return _problem_figures(ok, fig_style, layout,
                            _EstimatorLegend(ok, base_styles, column="base"), draw,
                            f"temperature τ at n = {n} (log scale)", "‖bias‖ (log scale)",
                            columns=min(3, fig_style.columns))


# ----------------------------------------------------------------------------- landscapes

MAX_COORDINATE_PANELS = 3
"""Up to this many coordinates of θ, a swept problem gets a panel per coordinate."""


def _base_name(problem: str) -> str:
    return problem.split(":")[0]


def _defaults(name: str) -> dict:
    from vrbench import problems  # only to name defaults and coordinates

    return problems.registry.get(name).parameters() if name in problems.registry else {}


def _coordinate_names(name: str, dim: int) -> list[str]:
    from vrbench import problems

    if name in problems.registry:
        names = problems.make(name).coordinate_names()
        if len(names) == dim:
            return names
    return [f"θ{i}" for i in range(dim)]


def swept_parameters(frame: pd.DataFrame) -> dict[str, str]:
    """Problems measured at several values of exactly one of their parameters: name →
    parameter (a sweep's grid, see :mod:`vrbench.components`)."""
    ok = ok_cells(frame)
    swept = {}
    for name, rows in ok.groupby(ok["problem"].map(_base_name), sort=False):
        params = rows["problem_params"].fillna("{}").map(json.loads)
        defaults = _defaults(name)
        keys = sorted(set().union(*params))
        varying = [key for key in keys
                   if len({json.dumps(p.get(key, defaults.get(key))) for p in params}) > 1]
        if len(varying) == 1:
            swept[name] = varying[0]
    return swept


def _landscape_rows(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """One row per panel point: the swept problems' ok cells at ``n``, with ``x`` (the
    parameter's value) and ``panel`` (problem and coordinate, or the trace)."""
    ok = ok_cells(frame)
    ok = ok[ok["n_samples"] == n]
    pieces = []
    for name, key in swept_parameters(frame).items():
        rows = ok[ok["problem"].map(_base_name) == name]
        if rows.empty:
            continue
        default = _defaults(name).get(key)
        x = rows["problem_params"].fillna("{}").map(lambda p, k=key, d=default:
                                                    json.loads(p).get(k, d))
        rows = rows.assign(x=pd.to_numeric(x, errors="coerce"), parameter=key)
        rows = rows[rows["x"].notna()]
        dim = int(rows["dim"].iloc[0])
        if dim <= MAX_COORDINATE_PANELS:
            names = _coordinate_names(name, dim)
            for k, coordinate in enumerate(names):
                pieces.append(rows.assign(problem=f"{name}: ∂J/∂{coordinate}", coordinate=k))
        else:
            pieces.append(rows.assign(problem=f"{name}: trace", coordinate=-1))
    return pd.concat(pieces) if pieces else pd.DataFrame()


def _coordinate(rows: pd.DataFrame, column: str, k: int) -> np.ndarray:
    """``column`` (a trace) or its per-coordinate list's entry ``k`` (k ≥ 0)."""
    if k < 0:
        return rows[column].astype(float).to_numpy()
    lists = {"variance": "coordinate_variance", "variance_ci_low": "coordinate_variance_ci_low",
             "variance_ci_high": "coordinate_variance_ci_high",
             "exact_variance": "exact_coordinate_variance"}[column]
    return np.array([v[k] if isinstance(v, list | np.ndarray) and len(v) > k else math.nan
                     for v in rows[lists]], dtype=float)


def variance_vs_parameter(frame: pd.DataFrame, styles: dict[str, EstimatorStyle],
                          fig_style: FigureStyle, n: int, layout: str = "pages") -> Pages:
    """Variance of one estimate against a swept problem parameter at one ``n``, one line per
    estimator, with 95% intervals: the variance landscapes of Mohamed et al. (JMLR 2020,
    figure 2). Problems whose θ has at most :data:`MAX_COORDINATE_PANELS` coordinates get a
    panel per coordinate (the variance of ∂J/∂μ and of ∂J/∂σ apart, as the paper draws them);
    others, the trace. Where the variance was computed without sampling
    (``exact_variance``), a thin line of the estimator's colour traces it under the points.
    """
    rows = _landscape_rows(frame, n)
    if rows.empty:
        return []
    biased = _biased(rows)
    has_exact = rows["exact_variance"].notna().any()
    extras = ([Line2D([], [], color="0.3", linewidth=0.8, label="computed exactly")]
              if has_exact else [])

    return _problem_figures(
        rows, fig_style, layout, _EstimatorLegend(rows, styles, biased, extras),
        lambda ax, panel: _parameter_panel(ax, rows[rows["problem"] == panel], styles, fig_style),
        f"the swept problem parameter (n = {n})", "variance of one estimate (log scale)")


def _parameter_panel(ax: plt.Axes, rows: pd.DataFrame, styles: dict[str, EstimatorStyle],
                     fig_style: FigureStyle) -> None:
    k = int(rows["coordinate"].iloc[0])
    variance = _coordinate(rows, "variance", k)
    exact_values = _coordinate(rows, "exact_variance", k)
    scale = np.nanmax(np.concatenate([variance, [0.0]]))
    zero = variance <= 1e-12 * max(float(rows["true_grad_norm"].max()) ** 2, scale)
    rows = rows.assign(_variance=variance, _low=_coordinate(rows, "variance_ci_low", k),
                       _high=_coordinate(rows, "variance_ci_high", k), _exact=exact_values,
                       _zero=zero)
    slots = {name: i for i, name in enumerate(estimator_order(rows.loc[rows["_zero"],
                                                                       "estimator"]))}
    span = np.concatenate([variance[~zero], exact_values[np.isfinite(exact_values)
                                                         & (exact_values > 0)]])
    strip = exact_axis(ax, "y", span, len(slots))
    for estimator in estimator_order(rows["estimator"]):
        group = rows[rows["estimator"] == estimator].sort_values("x")
        style = styles[estimator]
        is_zero = group["_zero"].to_numpy(dtype=bool)
        y = np.array([_at(strip, slots, estimator, v, z)
                      for v, z in zip(group["_variance"], is_zero, strict=True)])
        low = np.where(is_zero, 0.0, (group["_variance"] - group["_low"]).clip(lower=0))
        high = np.where(is_zero, 0.0, group["_high"] - group["_variance"])
        ax.errorbar(group["x"], y, yerr=[np.nan_to_num(low), np.nan_to_num(high)], capsize=0,
                    elinewidth=0.7, markersize=fig_style.marker,
                    **{**style.line_kwargs(), "linestyle": "none"})
        known = group["_exact"].notna() & (group["_exact"] > 0)
        if known.any():
            ax.plot(group.loc[known, "x"], group.loc[known, "_exact"], color=style.color,
                    linewidth=0.9, zorder=0.8)
        if not known.all():  # no exact curve: join the measured points instead
            ax.plot(group["x"], y, color=style.color, linewidth=0.6, alpha=0.6,
                    linestyle=style.line_kwargs().get("linestyle", "-"), zorder=0.7)
    x = rows["x"].astype(float)
    if (x > 0).all() and x.max() / x.min() >= 20:
        log_axis(ax, "x", most=4, plain=True)
    ax.set_xlabel(str(rows["parameter"].iloc[0]), labelpad=1)


def training_variance(traces: pd.DataFrame, styles: dict[str, EstimatorStyle],
                      fig_style: FigureStyle, layout: str = "pages") -> Pages:
    """Variance of the estimator at θ_t against the optimization step (log scale), mean over
    seeds with a min–max band, beside the exact ‖∇J(θ_t)‖² (dashed): the variance figures of
    REBAR (Tucker et al. 2017), RELAX (Grathwohl et al. 2018) and DisARM (Dong et al. 2020),
    with the gradient's own size exact. A variance below the dashed line is an SNR above 1.
    """
    if traces is None or "variance" not in traces or traces["variance"].notna().sum() == 0:
        return []
    traces = traces[traces["variance"].notna()]
    exact = "reference" not in traces or (traces["reference"].fillna("exact") == "exact").all()
    extras = [Line2D([], [], color="black", linestyle="--", linewidth=0.8,
                     label="‖∇J(θ_t)‖² " + ("(exact)" if exact else "(reference)"))]

    def draw(ax: plt.Axes, problem: str) -> None:
        rows = traces[traces["problem"] == problem]
        for estimator in estimator_order(rows["estimator"]):
            group = rows[rows["estimator"] == estimator]
            by_step = group.groupby("step")["variance"].agg(
                mean=lambda v: float(np.exp(np.log(v.clip(lower=1e-300)).mean())),
                low="min", high="max")
            style = styles[estimator]
            ax.plot(by_step.index, by_step["mean"], markevery=max(1, len(by_step) // 5),
                    markersize=fig_style.marker, **style.line_kwargs())
            ax.fill_between(by_step.index, by_step["low"], by_step["high"],
                            color=style.color, alpha=0.15, linewidth=0)
        grad = rows.groupby("step")["true_grad_norm"].apply(lambda g: float((g**2).mean()))
        ax.plot(grad.index, grad.to_numpy(), color="black", linestyle="--", linewidth=0.8)
        positive = rows.loc[rows["variance"] > 0, "variance"]
        if positive.size or (grad.to_numpy() > 0).any():
            log_axis(ax, "y")

    return _problem_figures(traces, fig_style, layout,
                            _EstimatorLegend(traces, styles, extras=extras), draw,
                            "optimization step" + _train_settings(traces),
                            "variance of one estimate (log scale)",
                            columns=min(3, fig_style.columns))


MAX_GROUP_PANELS = 4
"""Most parameter groups drawn as panels of their own in the shared-run figure."""


def _by_group(shared: pd.DataFrame) -> pd.DataFrame:
    """The shared-run rows with one row per parameter group (``problem`` naming the panel,
    ``variance`` and ``true_grad_norm`` the group's) where a problem has 2 to
    :data:`MAX_GROUP_PANELS` groups; otherwise the rows as they are."""
    if "parameter_groups" not in shared:
        return shared
    parts = []
    for problem, rows in shared.groupby("problem", sort=False):
        names = rows["parameter_groups"].dropna()
        count = len(names.iloc[0]) if not names.empty else 0
        if not 2 <= count <= MAX_GROUP_PANELS:
            parts.append(rows)
            continue
        for index, group in enumerate(names.iloc[0]):
            parts.append(rows.assign(
                problem=f"{problem}: {group}",
                variance=rows["group_variance"].map(lambda v, i=index: v[i]),
                true_grad_norm=rows["group_true_grad_norm"].map(lambda v, i=index: v[i])))
    return pd.concat(parts, ignore_index=True)


def _biased_by_claim(rows: pd.DataFrame) -> set[str]:
    """Estimators of ``rows`` (specs) that do not claim to be unbiased, by their registry."""
    from vrbench import estimators
    from vrbench.components import parse_specs

    biased = set()
    for name in set(rows["estimator"]):
        try:
            (spec,) = parse_specs(name)
            if not estimators.make(spec.name, spec.params).unbiased:
                biased.add(name)
        except Exception:  # an estimator this installation does not know
            continue
    return biased


def shared_run_variance(shared: pd.DataFrame, styles: dict[str, EstimatorStyle],
                        fig_style: FigureStyle, layout: str = "pages") -> Pages:
    """Variance of one estimate of every estimator at the same θ_t along one optimization run
    (``vrbench train --measure``), geometric mean over seeds with a min–max band, beside
    ‖∇J(θ_t)‖² (dashed), a panel per problem and, where θ has a few parameter groups, per
    group: the figure of Dong et al. (2020, figure 2), Tucker et al. (2017) and Mohamed et
    al. (2020, section 8), with every estimator measured at the same θ_t."""
    if shared is None or "variance" not in shared or shared["variance"].notna().sum() == 0:
        return []
    shared = _by_group(shared[shared["variance"].notna()])
    reference = shared.get("reference")
    exact = reference is None or (reference.fillna("exact") == "exact").all()
    extras = [Line2D([], [], color="black", linestyle="--", linewidth=0.8,
                     label="‖∇J(θ_t)‖² " + ("(exact)" if exact else "(reference)"))]

    def draw(ax: plt.Axes, problem: str) -> None:
        rows = shared[shared["problem"] == problem]
        for estimator in estimator_order(rows["estimator"]):
            group = rows[rows["estimator"] == estimator]
            by_step = group.groupby("step")["variance"].agg(
                mean=lambda v: float(np.exp(np.log(v.clip(lower=1e-300)).mean())),
                low="min", high="max")
            style = styles[estimator]
            ax.plot(by_step.index, by_step["mean"], markevery=max(1, len(by_step) // 5),
                    markersize=fig_style.marker, **style.line_kwargs())
            ax.fill_between(by_step.index, by_step["low"], by_step["high"],
                            color=style.color, alpha=0.15, linewidth=0)
        grad = rows.groupby("step")["true_grad_norm"].apply(lambda g: float((g**2).mean()))
        ax.plot(grad.index, grad.to_numpy(), color="black", linestyle="--", linewidth=0.8)
        if (rows["variance"] > 0).any() or (grad.to_numpy() > 0).any():
            log_axis(ax, "y")

    drivers = sorted(set(shared["driver"].dropna())) if "driver" in shared else []
    driven = f" of the run driven by {', '.join(drivers)}" if drivers else ""
    return _problem_figures(shared, fig_style, layout,
                            _EstimatorLegend(shared, styles, _biased_by_claim(shared),
                                             extras=extras), draw,
                            "optimization step" + driven + _train_settings(shared),
                            "variance of one estimate at θ_t (log scale)",
                            columns=min(3, fig_style.columns))
