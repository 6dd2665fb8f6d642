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
from matplotlib import patheffects
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from vrbench.reports.axes import Strip, exact_axis, log_axis, text_width_in, wrap_label
from vrbench.reports.labels import Labels, with_note, words
from vrbench.reports.paging import paginate
from vrbench.reports.style import EstimatorStyle, FigureStyle, estimator_order
from vrbench.reports.values import (
    NO_REFERENCE,
    REFERENCE,
    describe_reference,
    heatmap_key,
    is_biased,
    ok_cells,
    problem_groups,
    problem_references,
    ranked_ratios,
    row_order,
    shown_variance,
)

Pages = list[tuple[str, Figure]]


class NotDrawn(Exception):
    """A figure that the selected results cannot show; the message says why."""


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


def _label(name: str, biased: AbstractSet[str], labels: Labels) -> str:
    shown = labels.estimator(name)
    return with_note(shown, "biased") if name in biased else shown


def _handle(style: EstimatorStyle, label: str, line: bool = True) -> Line2D:
    """A legend entry as the panels draw the estimator: line and marker, or the marker
    alone where the panels draw no lines."""
    kwargs = style.line_kwargs() if line else {"linestyle": "none", **style.marker_kwargs()}
    return Line2D([], [], label=label, markersize=4, **kwargs)


def _text_handle(label: str) -> Line2D:
    return Line2D([], [], linestyle="none", marker="none", label=label)


@dataclass(frozen=True)
class _LegendLayout:
    columns: int
    height: float
    """Inches, with the padding around the legend."""
    wrap: float | None
    """Width (in) labels are broken to, between words, when they would force one column."""


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
               for line in wrap_label(label, wrap, size).split("\n")):
            columns = 2
        else:
            wrap = None
    lines = [len(wrap_label(label, wrap, size).split("\n")) if wrap else 1 for label in labels]
    per_column = math.ceil(len(labels) / columns)
    tallest = max(sum(lines[i:i + per_column]) * 1.2 + 0.5 * len(lines[i:i + per_column])
                  for i in range(0, len(lines), per_column))
    return _LegendLayout(columns, tallest * size / 72 + 0.15, wrap)


def _add_legend(fig: Figure, handles: list[Line2D], layout: _LegendLayout,
                size: float) -> None:
    # Above the panels, in room added to the figure's height for it: no panel gives way.
    if layout.wrap is not None:
        for handle in handles:
            handle.set_label(wrap_label(handle.get_label(), layout.wrap, size))
    fig.legend(handles=handles, loc="outside upper center", ncols=layout.columns,
               frameon=False,
               handlelength=2.2, columnspacing=1.0, handletextpad=0.4, borderaxespad=0.1,
               borderpad=0.2)


# ----------------------------------------------------------------------------- pages


def _kind(problem: str) -> str:
    """What a problem is (``gaussian``, ``mdp``, ``sequences``): the module of its class, or
    its name where this installation does not know it."""
    from vrbench import problems

    name = _base_name(problem)
    if name in problems.registry:
        return problems.registry.get(name).__module__.rsplit(".", 1)[-1]
    return name


def _alike_groups(rows: pd.DataFrame) -> list[list[str]]:
    """Problems (panels) in runs of alike ones: the groups of
    :func:`~vrbench.reports.values.problem_groups` (by the estimators that ran), gathered by
    kind (Bernoulli, Gaussian, MDP, sequence problems, in order of first appearance), split
    where a problem or a non-numeric parameter (``difficulty=easy``) changes. Pages break
    between runs where they can."""
    order = [p for group in problem_groups(rows) for p in group]
    kinds = list(dict.fromkeys(_kind(p) for p in order))
    order = sorted(order, key=lambda p: kinds.index(_kind(p)))  # stable within a kind
    params = (dict(zip(rows["problem"], rows["problem_params"], strict=False))
              if "problem_params" in rows else {})

    def alike(problem: str) -> tuple[str, str, str]:
        given = json.loads(params.get(problem) or "{}")
        words_ = {k: v for k, v in given.items() if isinstance(v, str)}
        return _kind(problem), _base_name(problem), json.dumps(words_, sort_keys=True)

    return [list(run) for _, run in itertools.groupby(order, key=alike)]


def _paginate(groups: list[list[str]], height: Callable[[list[str]], float],
              fig_style: FigureStyle, layout: str, per_row: int | None = None
              ) -> list[list[str]]:
    """Problems in pages whose figure fits the page height (see
    :func:`~vrbench.reports.paging.paginate`), each page but the last with no empty slot
    in its rows of ``per_row`` panels where that costs no extra page or broken group; or
    one per page with the per-problem layout."""
    if layout == "per-problem":
        return [[p] for group in groups for p in group]
    waste = (None if per_row is None else
             lambda page: math.ceil(len(page) / per_row) * per_row - len(page))
    return paginate(groups, height, fig_style.max_height, waste)


def _suffixes(pages: list[list[str]], layout: str) -> list[str]:
    if layout == "per-problem":
        return [f"-{page[0]}" for page in pages]
    return [""] if len(pages) == 1 else [f"-{i}" for i in range(1, len(pages) + 1)]


def _grid_width(fig_style: FigureStyle, layout: str, columns: int | None) -> tuple[float, int]:
    """Figure width and panels per row of a per-problem grid."""
    if layout == "per-problem":
        return min(fig_style.width, 3.25), 1
    return fig_style.width, columns or fig_style.columns


def figure_width(fig_style: FigureStyle, layout: str) -> float:
    """The width of every figure of a style: the text (or column) width, so that all of
    them print at one scale, their fonts at the style's sizes; one column (3.25 in) each
    with the per-problem layout."""
    return _grid_width(fig_style, layout, None)[0]


def _problem_grid_pages(rows: pd.DataFrame, fig_style: FigureStyle, layout: str,
                        legend_labels: Callable[[list[str]], list[str]],
                        title: Callable[[str], str], columns: int | None = None
                        ) -> list[tuple[str, Figure, list[tuple[plt.Axes, str]], _LegendLayout]]:
    """Pages of one titled panel per problem, each figure with room for its legend above.
    Returns ``(suffix, figure, [(axes, problem)], legend layout)``. Every page has the
    style's width; a page of fewer panels than a row holds centres them at the size they
    have in a full row; a page of several rows has as many columns as spread its panels
    evenly (5 panels: 3 + 2, not 4 + 1), its last row centred."""
    width, per_row = _grid_width(fig_style, layout, columns)
    groups = _alike_groups(rows)

    def height(page: list[str]) -> float:
        legend = _legend_layout(legend_labels(page), fig_style, width).height
        return legend + math.ceil(len(page) / per_row) * fig_style.panel + AXIS_LABEL_IN

    pages = _paginate(groups, height, fig_style, layout, per_row)
    out = []
    for suffix, page in zip(_suffixes(pages, layout), pages, strict=True):
        legend_layout = _legend_layout(legend_labels(page), fig_style, width)
        rows_ = math.ceil(len(page) / per_row)
        cols = per_row if rows_ == 1 else math.ceil(len(page) / rows_)
        title_in = width / cols - 0.45  # a panel's share, less its y tick labels
        fig = plt.figure(figsize=(width, height(page)), layout="constrained")
        # Half-slots: a row of fewer panels than the others sits in the middle.
        grid = fig.add_gridspec(rows_, 2 * cols)
        last = len(page) - (rows_ - 1) * cols
        axes = []
        for i in range(len(page)):
            row, col = divmod(i, cols)
            offset = cols - last if row == rows_ - 1 else 0
            axes.append(fig.add_subplot(grid[row, offset + 2 * col:offset + 2 * col + 2]))
        for ax, problem in zip(axes, page, strict=True):
            ax.set_title(wrap_label(title(problem), title_in, fig_style.font))
        out.append((suffix, fig, list(zip(axes, page, strict=True)), legend_layout))
    return out


@dataclass(frozen=True)
class _EstimatorLegend:
    """The legend of a page of problems: one entry per estimator drawn on it, in the shared
    order, then the figure's extra entries (reference lines, notes)."""

    rows: pd.DataFrame
    styles: dict[str, EstimatorStyle]
    labels: Labels
    biased: AbstractSet[str] = frozenset()
    extras: Sequence[Line2D] = ()
    column: str = "estimator"
    lines: bool = True
    """Whether the panels join an estimator's points by a line (else markers alone)."""

    def _names(self, page: list[str]) -> list[str]:
        return estimator_order(self.rows.loc[self.rows["problem"].isin(page), self.column])

    def texts(self, page: list[str]) -> list[str]:
        """The entries' texts, which size the legend while pages are laid out."""
        return ([_label(e, self.biased, self.labels) for e in self._names(page)]
                + [h.get_label() for h in self.extras])

    def handles(self, page: list[str]) -> list[Line2D]:
        return ([_handle(self.styles[e], _label(e, self.biased, self.labels), self.lines)
                 for e in self._names(page)] + list(self.extras))


def _problem_figures(rows: pd.DataFrame, fig_style: FigureStyle, layout: str,
                     legend: _EstimatorLegend, draw: Callable[[plt.Axes, str], None],
                     xlabel: Sequence[str], ylabel: Sequence[str], columns: int | None = None,
                     title: Callable[[str], str] | None = None) -> Pages:
    """Pages of one panel per problem, each drawn by ``draw(axes, problem)``, with the page's
    legend above and the axis labels (phrases, see :func:`_shared_labels`) shared. Panels
    are titled with the problem's display name, or ``title(problem)``."""
    pages: Pages = []
    for suffix, fig, panels, legend_layout in _problem_grid_pages(
            rows, fig_style, layout, legend.texts, title or legend.labels.problem, columns):
        for ax, problem in panels:
            draw(ax, problem)
        _add_legend(fig, legend.handles([problem for _, problem in panels]), legend_layout,
                    fig_style.small)
        _shared_labels(fig, xlabel, ylabel)
        pages.append((suffix, fig))
    return pages


def _shared_labels(fig: Figure, xlabel: Sequence[str], ylabel: Sequence[str] | None = None
                   ) -> None:
    """Axis labels shared by all panels, each given as phrases ("variance of one estimate",
    "at n = 16", "(log scale)") and broken into lines only between phrases, never inside
    one."""
    width, height = fig.get_size_inches()
    size = plt.rcParams["figure.labelsize"]
    size = size if isinstance(size, float) else plt.rcParams["font.size"]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    rows = {ax.get_subplotspec().rowspan.start for ax in panels if ax.get_subplotspec()}
    if ylabel and (len(panels) == 1 or len(rows) == 1):
        # One row: beside its first panel (which may sit in the middle of the page), not
        # at the page's edge or beside the legend above it.
        first = min(panels, key=lambda ax: ax.get_subplotspec().colspan.start
                    if ax.get_subplotspec() else 0)
        first.set_ylabel(_lines(list(ylabel), height - 0.9, size, " "))
        ylabel = None
    fig.supxlabel(_lines(list(xlabel), width - 0.3, size, " "))
    if ylabel:
        fig.supylabel(_lines(list(ylabel), height - 0.5, size, " "))


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


GUIDE = {"color": "0.8", "linewidth": 4.0, "solid_capstyle": "butt", "alpha": 0.9}
"""The slope guide: a broad pale band, behind the data, that no estimator's line (thin,
coloured or dark, with markers) can be taken for."""
CLIPPED = "clipped"


def variance_vs_samples(frame: pd.DataFrame, styles: dict[str, EstimatorStyle],
                        fig_style: FigureStyle, layout: str = "pages",
                        labels: Labels | None = None) -> Pages:
    """Variance of one estimate against samples per estimate, log–log, with 95% intervals.

    The broad pale band is a guide of slope −1 (plain Monte Carlo averaging), behind and
    above every curve. The x ticks are the sample sizes that were run. An interval whose
    lower end reaches 0 runs to the bottom of the axis and ends in a caret. Drawn when the
    results hold at least two sample sizes.
    """
    labels = labels or Labels()
    ok = ok_cells(frame)
    if ok.empty:
        raise NotDrawn("no cell of the selection ran")
    sizes = sorted(int(n) for n in ok["n_samples"].unique())
    if len(sizes) < 2:
        raise NotDrawn(f"needs two or more sample sizes n; the selection has only n = "
                       f"{sizes[0]} (choose n = \"all\" or several n)")
    biased = _biased(ok)
    extras = [Line2D([], [], label="slope −1 (∝ 1/n)", **GUIDE)]
    if ok["bias_rejected"].any():
        extras.append(_text_handle(f"{DAGGER} unbiasedness rejected"))
    if _reaches_zero(ok):
        extras.append(_caret_handle("interval reaches 0", "v"))

    return _problem_figures(
        ok, fig_style, layout, _EstimatorLegend(ok, styles, labels, biased, extras),
        lambda ax, problem: _variance_panel(ax, ok[ok["problem"] == problem], styles, fig_style),
        ["samples per estimate n", "(log scale)"], ["variance of one estimate", "(log scale)"])


def _reaches_zero(rows: pd.DataFrame) -> bool:
    """Whether some measured (not exact) variance's interval reaches down to 0."""
    low = rows["variance_ci_low"].astype(float)
    return bool(((low <= 0) & ~rows["exact"].fillna(False).astype(bool)).any())


def _caret_handle(label: str, marker: str) -> Line2D:
    return Line2D([], [], linestyle="none", marker=marker, color="0.3", markersize=3.5,
                  label=label)


def _interval(ax: plt.Axes, at: float, low: float, high: float, floor: float, color: str,
              vertical: bool = True) -> None:
    """A 95% interval ``[low, high]`` at ``at`` on a log axis whose visible range starts at
    ``floor``: a lower end at or below it (0, say) is drawn to the floor and marked by a
    caret, never sent off the axis."""
    if not (math.isfinite(high) and high > 0):
        return
    clipped = not (low > floor)
    start = floor if clipped else low
    ends = ([at, at], [start, high]) if vertical else ([start, high], [at, at])
    ax.plot(*ends, color=color, linewidth=0.7, solid_capstyle="butt", zorder=1.5)
    if clipped:
        point = (at, floor) if vertical else (floor, at)
        ax.plot(*[[v] for v in point], linestyle="none", marker="v" if vertical else "<",
                color=color, markersize=3.0, clip_on=False, zorder=1.6, gid=CLIPPED)


def _set_log_limits(ax: plt.Axes, which: str, values: np.ndarray) -> None:
    """Log-axis limits around the positive ``values`` with a margin of 6% of the span."""
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return
    lo, hi = float(values.min()), float(values.max())
    margin = 10 ** (0.06 * max(math.log10(hi / lo), 0.3))
    (ax.set_ylim if which == "y" else ax.set_xlim)(lo / margin, hi * margin)


def _variance_panel(ax: plt.Axes, rows: pd.DataFrame, styles: dict[str, EstimatorStyle],
                    fig_style: FigureStyle) -> None:
    shown = shown_variance(rows)
    exact = rows["exact"].to_numpy(dtype=bool)
    measured = shown["variance"].to_numpy()[~exact]
    ends = np.concatenate([shown["low"].to_numpy()[~exact], shown["high"].to_numpy()[~exact]])
    n = np.array(sorted(rows["n_samples"].unique()), dtype=float)
    anchor = _guide_anchor(rows, shown, n[0])
    span = np.concatenate([measured, ends, [] if anchor is None else
                           [anchor, anchor * n[0] / n[-1]]])
    slots = _exact_slots(rows, "exact")
    strip = exact_axis(ax, "y", span, len(slots))
    if strip is None:
        _set_log_limits(ax, "y", span)
    floor = strip.start if strip is not None else ax.get_ylim()[0]
    for estimator in estimator_order(rows["estimator"]):
        group = rows[rows["estimator"] == estimator].sort_values("n_samples")
        values = shown.loc[group.index]
        is_exact = group["exact"].to_numpy(dtype=bool)
        y = np.array([_at(strip, slots, estimator, v, e)
                      for v, e in zip(values["variance"], is_exact, strict=True)])
        style = styles[estimator]
        x = group["n_samples"].to_numpy(dtype=float)
        for xi, e, lo, hi in zip(x, is_exact, values["low"], values["high"], strict=True):
            if not e:
                _interval(ax, xi, lo, hi, floor, style.color)
        ax.plot(x, y, linestyle="none", markersize=fig_style.marker, zorder=2,
                **style.marker_kwargs())
        # The line joins measured points, and exact ones, but never crosses the axis break
        # between them: a slope from a variance into the "exact" strip means nothing.
        breaks = np.flatnonzero(is_exact[1:] != is_exact[:-1]) + 1
        ax.plot(np.insert(x, breaks, np.nan), np.insert(y, breaks, np.nan),
                color=style.color, linestyle=style.linestyle, zorder=1.8)
        rejected = group["bias_rejected"].to_numpy(dtype=bool)
        for xi, yi in zip(x[rejected], y[rejected], strict=True):
            _dagger(ax, xi, yi, style.color)
    if anchor is not None:
        ax.plot(n, anchor * n[0] / n, zorder=0.6, **GUIDE)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(n))
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
    return float(level.max()) * 10 ** max(0.45, 0.09 * (decades + 1))


def bias_vs_variance(frame: pd.DataFrame, styles: dict[str, EstimatorStyle],
                     fig_style: FigureStyle, n: int, layout: str = "pages",
                     labels: Labels | None = None) -> Pages:
    """Measured bias against variance at one sample size ``n``, one point per estimator.

    The dashed line ``‖bias‖ = sqrt(variance / R)`` is the root-mean-square of an unbiased
    estimator's measured bias (``E‖ḡ − ∇J‖² = trace Σ / R``): unbiased estimators scatter
    around or below it, a biased one stands clearly above it. A dagger marks an estimator
    whose claim of unbiasedness the bias test rejects; "(biased)" in the legend, one that
    does not claim it.
    """
    labels = labels or Labels()
    ok = ok_cells(frame)
    ok = ok[ok["n_samples"] == n]
    if ok.empty:
        raise NotDrawn(f"no cell of the selection ran at n = {n}")
    biased = _biased(ok)
    extras = [Line2D([], [], color=REFERENCE_COLOR, linestyle="--", linewidth=0.8,
                     label="√(variance / R)")]
    if ok["bias_rejected"].any():
        extras.append(_text_handle(f"{DAGGER} unbiasedness rejected"))

    return _problem_figures(
        ok, fig_style, layout, _EstimatorLegend(ok, styles, labels, biased, extras,
                                                lines=False),
        lambda ax, problem: _bias_panel(ax, ok[ok["problem"] == problem], styles, fig_style),
        ["variance of one estimate", f"at n = {n}", "(log scale)"],
        ["measured ‖bias‖", "(log scale)"])


def _bias_panel(ax: plt.Axes, rows: pd.DataFrame, styles: dict[str, EstimatorStyle],
                fig_style: FigureStyle) -> None:
    variances = shown_variance(rows)["variance"].to_numpy()
    bias = rows["bias_norm"].astype(float).to_numpy()
    exact = rows["exact"].to_numpy(dtype=bool)
    bias_exact = rows["bias_exact"].to_numpy(dtype=bool)
    replicates = float(rows["replicates"].median())
    measured = variances[~exact]
    measured = measured[np.isfinite(measured) & (measured > 0)]
    x_slots, y_slots = _exact_slots(rows, "exact"), _exact_slots(rows, "bias_exact")
    x_strip = exact_axis(ax, "x", measured, len(x_slots), most=3)
    if x_strip is None and measured.size:
        low, high = float(measured.min()), float(measured.max())
        low, high = (low / 3, high * 3) if low == high else (low, high)
        ax.set_xlim(low / 2.5, high * 2.5)
    # The guide across the whole axis above the exact strip, and the y axis holding it.
    x_low, x_high = ax.get_xlim()
    x_low = x_strip.start if x_strip is not None else x_low
    grid = np.geomspace(x_low, x_high, 50) if measured.size else np.array([])
    sampling = np.sqrt(grid / replicates)
    y_strip = exact_axis(ax, "y", np.concatenate([bias[~bias_exact], sampling]),
                         len(y_slots))
    if y_strip is None:
        _set_log_limits(ax, "y", np.concatenate([bias[~bias_exact], sampling]))
    xs = np.array([_at(x_strip, x_slots, name, v, e) for name, v, e in
                   zip(rows["estimator"], variances, exact, strict=True)])
    ys = np.array([_at(y_strip, y_slots, name, b, e) for name, b, e in
                   zip(rows["estimator"], bias, bias_exact, strict=True)])
    size = fig_style.marker + 0.8
    xs = _dodge(ax, xs, ys, size)
    for i, (_, row) in enumerate(rows.iterrows()):
        style = styles[row["estimator"]]
        ax.plot([xs[i]], [ys[i]], linestyle="none", markersize=size, clip_on=False,
                **style.marker_kwargs())
        if row["bias_rejected"]:
            _dagger(ax, xs[i], ys[i], style.color)
    if grid.size:
        ax.plot(grid, sampling, linestyle="--", color=REFERENCE_COLOR, linewidth=0.8,
                zorder=0.5)
        ax.set_xlim(ax.get_xlim())  # the guide must not widen the view


def _dodge(ax: plt.Axes, xs: np.ndarray, ys: np.ndarray, size_pt: float) -> np.ndarray:
    """``xs`` with the points that would overprint each other (closer than a marker on the
    axes as laid out now) spread sideways, a marker apart, about their middle: coincident
    points (REINFORCE++ and its baseline variant) stay visible. Others do not move."""
    if len(xs) < 2:
        return xs
    fig = ax.get_figure()
    box = ax.get_position()
    width_pt = box.width * fig.get_size_inches()[0] * 72
    height_pt = box.height * fig.get_size_inches()[1] * 72
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


WORK_LABELS = {
    "f_evals": "variance × f-evaluations",
    "time_per_estimate_s": "variance × seconds",
}
WORK_PLOT_IN = 1.45
"""Narrowest plotting area of a work-normalized panel, beside its estimator names."""


def work_normalized(frame: pd.DataFrame, styles: dict[str, EstimatorStyle],
                    fig_style: FigureStyle, cost: str, n: int, reference: str = REFERENCE,
                    layout: str = "pages", labels: Labels | None = None) -> Pages:
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
    labels = labels or Labels()
    column = f"{cost}_ratio"
    ran = frame[(frame["status"] != "skipped") & (frame["n_samples"] == n)]
    if ran.empty:
        raise NotDrawn(f"no cell of the selection ran at n = {n}")
    if column not in ran or ran[column].notna().sum() == 0:
        raise NotDrawn(f"no reference estimator ({reference}, or a fallback) ran on the "
                       f"selected problems at n = {n}")
    ran = ran.join(ranked_ratios(ran, f"{cost}_").add_prefix("_rank_"))
    biased = _biased(ran)
    refs = problem_references(ran, reference)  # each problem's own
    label_in = max(text_width_in(_work_label(r, biased, refs.get(r["problem"]), labels),
                                 fig_style.small) for _, r in ran.iterrows()) + 0.12
    width = figure_width(fig_style, layout)
    per_row = max(1, int(width // (label_in + WORK_PLOT_IN)))
    row_in = fig_style.small * 1.45 / 72

    def panel_height(problem: str) -> float:
        return (ran["problem"] == problem).sum() * row_in + 0.5

    def height(page: list[str]) -> float:
        rows = [page[i:i + per_row] for i in range(0, len(page), per_row)]
        return sum(max(panel_height(p) for p in r) for r in rows) + AXIS_LABEL_IN + 0.3

    pages_ = _paginate(_alike_groups(ran), height, fig_style, layout)
    pages: Pages = []
    for suffix, page in zip(_suffixes(pages_, layout), pages_, strict=True):
        rows_of = [page[i:i + per_row] for i in range(0, len(page), per_row)]
        heights = [max(panel_height(p) for p in r) for r in rows_of]
        fig = plt.figure(figsize=(width, height(page)), layout="constrained")
        grid = fig.add_gridspec(len(rows_of), min(per_row, len(page)), height_ratios=heights)
        for r, row_problems in enumerate(rows_of):
            for c, problem in enumerate(row_problems):
                _work_panel(fig.add_subplot(grid[r, c]), ran[ran["problem"] == problem],
                            problem, styles, fig_style, biased, refs.get(problem), labels,
                            width / min(per_row, len(page)) - 0.15)
        what = [f"{WORK_LABELS[cost]} per estimate", "(MSE × cost for biased estimators)"] \
            if is_biased(ran).any() else [f"{WORK_LABELS[cost]} per estimate"]
        _shared_labels(fig, [*what, "relative to",
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


def _work_panel(ax: plt.Axes, rows: pd.DataFrame, problem: str,
                styles: dict[str, EstimatorStyle], fig_style: FigureStyle, biased: set[str],
                reference: str | None, labels: Labels, title_in: float = 3.0) -> None:
    """One problem's ranked dots: best (lowest ratio) at the top. The title ends at the
    plot's right edge and extends over the estimators' names, broken to the panel's width:
    never past the figure's edge."""
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
        _set_log_limits(ax, "x", np.concatenate([ends, [0.5, 2.0]]))
    floor_x = strip.start if strip is not None else ax.get_xlim()[0]
    ax.axvline(1.0, color=REFERENCE_COLOR, linestyle="--", linewidth=0.8, zorder=0.5)
    for y, (_, row) in enumerate(order.iterrows()):
        value = values[y]
        if row["status"] != "ok" or not np.isfinite(value):
            continue
        style = styles[row["estimator"]]
        x = _at(strip, slots, row["estimator"], value, exact[y])
        if value > 0 and row["estimator"] != reference:
            _interval(ax, y, low[y], high[y], floor_x, style.color, vertical=False)
        ax.plot([x], [y], linestyle="none", markersize=fig_style.marker, clip_on=False,
                zorder=2, **style.marker_kwargs())
    ax.set_yticks(range(len(order)), [_work_label(r, biased, reference, labels)
                                      for _, r in order.iterrows()])
    ax.tick_params(axis="y", length=0)
    ax.set_ylim(-0.7, len(order) - 0.3)
    ax.spines["left"].set_visible(False)
    ax.set_title(wrap_label(labels.problem(problem), title_in, fig_style.font), loc="right")
    for tick, (_, row) in zip(ax.get_yticklabels(), order.iterrows(), strict=True):
        if row["estimator"] in biased:
            tick.set_fontstyle("italic")
    if reference is None:  # no ratios: say why the panel is empty
        ax.text(0.5, 0.5, f"{NO_REFERENCE}: no reference ran", transform=ax.transAxes,
                ha="center", va="center", fontsize=fig_style.small, color=REFERENCE_COLOR)


HEAT_LIMIT = 12.0
"""The colour scale of the heatmap spans the data up to this many decades either way (the
ratio of an exact estimator's rounding error, :data:`~vrbench.reports.values.EXACT_RTOL`):
it never saturates on a measured ratio, so no value looks like another, or like "exact"."""
EXACT_HATCH = "#8fb3d9"


def _heat_norm(logs: pd.Series, most: int = 9) -> tuple[TwoSlopeNorm, np.ndarray, str]:
    """The heatmap's colour scale, symmetric about 0 and as long either way as the larger
    side of the data needs (so one shade is one factor, better or worse), its colour-bar
    ticks (at most ``most``, symmetric, reaching the data's ends), and whether the bar ends
    in arrows (values beyond the scale)."""
    finite = logs[np.isfinite(logs)]
    low = float(finite.min()) if finite.size else -0.5
    high = float(finite.max()) if finite.size else 0.5
    reach = min(max(-low, high, 0.5), HEAT_LIMIT)
    for step in (0.5, 1, 2, 4, 5, 10):
        top = math.ceil(reach / step - 1e-9) * step
        if 2 * round(top / step) + 1 <= most or step == 10:
            break
    reach = min(max(reach, top), HEAT_LIMIT)
    ticks = np.arange(-round(top / step), round(top / step) + 1) * step
    ticks = ticks[np.abs(ticks) <= reach + 1e-9]
    extend = {(True, True): "both", (True, False): "min", (False, True): "max"}.get(
        (low < -reach - 1e-9, high > reach + 1e-9), "neither")
    return TwoSlopeNorm(vmin=-reach, vcenter=0.0, vmax=reach), ticks, extend


def _signed(value: float, digits: int = 1) -> str:
    """``value`` with its sign written either way (``−0.3``, ``+0.1``, ``0``): the sign,
    not only the shade, says better or worse, in greyscale too."""
    text = f"{round(value, digits) + 0.0:+.{digits}f}".replace("-", "−")
    return text[1:] if float(text.replace("−", "-")) == 0 else text


def relative_variance_heatmap(frame: pd.DataFrame, fig_style: FigureStyle, n: int,
                              styles: dict[str, EstimatorStyle] | None = None,
                              reference: str = REFERENCE, layout: str = "pages",
                              labels: Labels | None = None) -> Pages:
    """log10(variance / variance of ``reference``) at one ``n``, estimators × problems.

    Blue is better. The colour scale reaches the largest ratio either way (see
    :data:`HEAT_LIMIT`), so −8.2 is darker than −6 and not saturated. A biased estimator
    (italic row; a dagger where the test rejects a claim) is coloured by its mean squared
    error relative to the reference variance, never by its variance alone. Exact
    estimators read "exact" on hatched white; grey cells are pairs that do not apply; "err"
    marks a failed cell; the best unbiased estimator and those tied with it have a bold
    number and a black outline with a white edge (seen on dark and light cells alike).
    Estimators come grouped by family, each with its marker. Expects the columns ``ratio``,
    ``mse_ratio`` and ``best`` (see :func:`vrbench.reports.values.relative` and
    :func:`~vrbench.reports.values.best`).
    """
    labels = labels or Labels()
    ran = frame[(frame["n_samples"] == n) & (frame["status"] != "skipped")]
    if ran.empty:
        raise NotDrawn(f"no cell of the selection ran at n = {n}")
    if ran["ratio"].notna().sum() == 0:
        raise NotDrawn(f"no reference estimator ({reference}, or a fallback) ran on the "
                       f"selected problems at n = {n}")
    ran = ran.join(ranked_ratios(ran).add_prefix("_rank_"))
    refs = problem_references(ran, reference)
    size = fig_style.small
    width = figure_width(fig_style, layout)
    cell_in = max(text_width_in("exact†", size * 0.92) + 0.12, 0.42)
    names = {e: labels.estimator(e) for e in ran["estimator"]}
    label_in = max(text_width_in(name, size) for name in names.values()) + 0.25
    count = ran["problem"].nunique()
    if layout != "per-problem" and label_in + count * cell_in > width - 0.15:
        # Long names break between words, so that the problems fit across the page.
        room = max(width - 0.4 - count * cell_in, max(
            text_width_in(word, size) for name in names.values() for word in words(name)))
        names = {e: wrap_label(name, room, size) for e, name in names.items()}
        label_in = max(text_width_in(line, size) for name in names.values()
                       for line in name.split("\n")) + 0.25
    room = width - label_in - 0.15
    columns = 1 if layout == "per-problem" else max(1, int(room // cell_in))
    page_problems = ([[p] for group in _alike_groups(ran) for p in group]
                     if layout == "per-problem" else
                     paginate(_alike_groups(ran), len, float(columns)))
    lines = max(name.count("\n") + 1 for name in names.values())
    row_in = size * (0.35 + 1.2 * lines) / 72
    logs = np.log10(ran["_rank_ratio"].astype(float).where(ran["_rank_ratio"] > 0))
    # As many colour-bar labels as the narrowest bar (the cells of a page) holds, a third
    # of an inch apart, and the same on every page.
    bar_in = min(len(page) for page in page_problems) * cell_in
    norm, ticks, extend = _heat_norm(logs, most=max(3, int(bar_in / 0.33)))
    cmap = plt.get_cmap("RdBu_r")
    pages: Pages = []
    sheets = []
    for problems in page_problems:
        cells = ran[ran["problem"].isin(problems)]
        header_in = max(text_width_in(labels.problem(p), size) for p in problems) * 0.66 + 0.1
        note = _lines(heatmap_key(cells), width - 0.1, size * 0.95)
        label_parts = ["log₁₀ variance ratio",
                       "to " + describe_reference(refs, reference, problems, labels.estimator,
                                                  labels.problem),
                       f"at n = {n}", "(< 0: better)"]
        label = _lines(label_parts, width - 0.2, size, joint=" ")
        fixed = (header_in + 0.8 + (note.count("\n") + 1) * size * 1.4 / 72
                 + (label.count("\n") + 1) * size * 1.4 / 72)
        # Too many estimators for one page: rows split between families where possible.
        family_of = dict(zip(cells["estimator"], cells["family"], strict=True))
        families = [list(group) for _, group in itertools.groupby(
            row_order(cells, reference), key=family_of.get)]
        for rows in paginate(families, lambda part, fixed=fixed: fixed + len(part) * row_in,
                             fig_style.max_height):
            sheets.append((problems, rows, note, label, fixed + len(rows) * row_in))
    split_rows = len(sheets) > len(page_problems)
    if layout == "per-problem" and not split_rows:
        suffixes = _suffixes(page_problems, layout)
    else:
        suffixes = _suffixes([rows for _, rows, *_ in sheets], "pages")
    for suffix, (problems, estimators, note, label, height) in zip(suffixes, sheets,
                                                                     strict=True):
        cells = ran[ran["problem"].isin(problems) & ran["estimator"].isin(estimators)]
        fig = plt.figure(figsize=(width, height), layout="constrained")
        # The cells keep their size, centred in the style's width: every figure of a style
        # is as wide as the others, so that all of them print at one scale.
        content = min(width, label_in + len(problems) * cell_in + 0.2)
        side = max((width - content) / 2, 0.01)
        grid = fig.add_gridspec(1, 3, width_ratios=[side, content, side])
        ax = fig.add_subplot(grid[0, 1])
        _heatmap(ax, cells, estimators, problems, norm, cmap, fig_style, styles, refs, labels,
                 names)
        # A tenth of an inch between the bar's ticks and the first row, however many rows.
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax,
                           location="top", fraction=0.04,
                           pad=0.1 / max(len(estimators) * row_in, 0.5), aspect=35,
                           ticks=ticks, extend=extend)
        bar.ax.xaxis.set_major_formatter(FuncFormatter(
            lambda x, _: _signed(x, 0 if float(x).is_integer() else 1)))
        bar.ax.tick_params(labelsize=size)
        bar.solids.set_rasterized(False)  # the whole figure vector, colour bar included
        bar.solids.set_edgecolor("face")  # no hairline gaps between the bar's patches
        bar.outline.set_linewidth(0.5)
        # The scale's title across the whole width, so that no word of it is cut off.
        fig.suptitle(label, fontsize=size)
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
             styles: dict[str, EstimatorStyle] | None, refs: dict[str, str | None],
             labels: Labels, names: dict[str, str]) -> None:
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
    ax.set_xticks(np.arange(len(problems)) + 0.5, [labels.problem(p) for p in problems],
                  rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(np.arange(len(estimators)) + 0.5, [names[e] for e in estimators])
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
    face, text, color, hatch = "0.87", "", "black", False  # grey: not applicable
    if row is not None and row["status"] != "ok":
        face, text, color = "white", "err" if row["status"] == "error" else "miss", "#B00000"
    elif row is not None and row["exact"] and row["_rank_ratio"] == 0:
        face, text, hatch = "white", "exact", True
    elif row is not None and pd.notna(row["_rank_ratio"]) and row["_rank_ratio"] > 0:
        value = math.log10(row["_rank_ratio"])
        shade = float(norm(float(np.clip(value, norm.vmin, norm.vmax))))
        face = cmap(shade)
        text = "ref" if is_reference else _signed(value)
        color = "white" if abs(shade - 0.5) > 0.32 else "black"
    elif row is not None:
        face, text = "white", NO_REFERENCE
    best = row is not None and bool(row.get("best", False))
    if row is not None and row.get("bias_rejected", False):
        text += DAGGER
    ax.add_patch(Rectangle((j, i), 1, 1, facecolor=face, edgecolor="white", linewidth=0.6))
    if hatch:  # exact: unlike any colour of the scale, however dark
        ax.add_patch(Rectangle((j + 0.03, i + 0.05), 0.94, 0.9, facecolor="none",
                               edgecolor=EXACT_HATCH, hatch="//////", linewidth=0))
    if best:  # black with a white edge: seen on the darkest and the palest cells
        ax.add_patch(Rectangle((j + 0.07, i + 0.1), 0.86, 0.8, facecolor="none",
                               edgecolor="black", linewidth=1.0, path_effects=[
                                   patheffects.withStroke(linewidth=2.6, foreground="white")]))
    if text:
        halo = [patheffects.withStroke(linewidth=2.0, foreground="white")] if hatch else None
        ax.text(j + 0.5, i + 0.53, text, ha="center", va="center", color=color,
                fontsize=fig_style.small * 0.92, fontweight="bold" if best else "normal",
                path_effects=halo)


TRAINING_METRICS = {"train_elbo": "training ELBO", "test_bound": "100-sample test bound"}
"""Columns of the training metrics of models of data sets, and their axis labels."""


def training_traces(traces: pd.DataFrame, styles: dict[str, EstimatorStyle],
                    fig_style: FigureStyle, x: str, layout: str = "pages",
                    labels: Labels | None = None, column: str = "value") -> Pages:
    """Exact objective along optimization, mean over seeds with a min–max band; ``x`` is
    ``"step"`` or ``"wall_s"``. The comparison of the REBAR, RELAX and DisARM papers, with
    J(θ) exact instead of a Monte Carlo bound. ``column`` one of :data:`TRAINING_METRICS`
    draws a model's training ELBO or its test bound instead (the papers' own figures: Dong et
    al. 2020, figures 2 and 5). Panels are the problems whose traces hold the column."""
    labels = labels or Labels()
    if traces is None or traces.empty:
        raise NotDrawn(NO_TRACES)
    if column not in traces or pd.to_numeric(traces[column], errors="coerce").notna().sum() == 0:
        raise NotDrawn(_no_column(column))
    traces = traces[pd.to_numeric(traces[column], errors="coerce").notna()]
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

    xlabel = {"step": ["optimization step"],
              "wall_s": ["wall-clock time of the steps", "(s, log scale)"]}[x]
    ylabel = [TRAINING_METRICS[column]] if column in TRAINING_METRICS else \
        ["exact objective J(θ)"]
    return _problem_figures(traces, fig_style, layout, _EstimatorLegend(traces, styles, labels),
                            draw, xlabel + _train_settings(traces), ylabel,
                            columns=min(3, fig_style.columns))


def training_gap(traces: pd.DataFrame, styles: dict[str, EstimatorStyle],
                 fig_style: FigureStyle, column: str, reference: str, layout: str = "pages",
                 labels: Labels | None = None) -> Pages:
    """Each estimator's training metric (``column`` of :data:`TRAINING_METRICS`) minus that of
    ``reference`` (or, where it did not run, the first estimator in the legend's order) on
    the same problem, seed and step, mean over seeds with a min–max band. A seed fixes the
    initial θ and the measurements' draws, so the pairs share them: the gaps the by-step
    figure's scale (hundreds of nats) hides, the comparison :func:`vrbench.reproduce`'s
    ``final_metric`` claims make."""
    labels = labels or Labels()
    if traces is None or traces.empty:
        raise NotDrawn(NO_TRACES)
    if column not in traces or pd.to_numeric(traces[column], errors="coerce").notna().sum() == 0:
        raise NotDrawn(_no_column(column))
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

    def draw(ax: plt.Axes, problem: str) -> None:
        ax.axhline(0.0, color=REFERENCE_COLOR, linewidth=0.8, zorder=0.5)
        rows = frame[frame["problem"] == problem]
        for estimator in estimator_order(rows["estimator"]):
            by_step = rows[rows["estimator"] == estimator].groupby("step")["gap"].agg(
                ["mean", "min", "max"])
            style = styles[estimator]
            ax.plot(by_step.index, by_step["mean"], markevery=max(1, len(by_step) // 5),
                    markersize=fig_style.marker, **style.line_kwargs())
            ax.fill_between(by_step.index, by_step["min"], by_step["max"],
                            color=style.color, alpha=0.15, linewidth=0)

    seeds = int(frame.groupby(["problem", "estimator", "step"]).size().max())
    return _problem_figures(frame, fig_style, layout,
                            _EstimatorLegend(frame, styles, labels, extras=extras), draw,
                            ["optimization step", *_train_settings(traces)],
                            [f"{TRAINING_METRICS[column]} gap", f"to {base_label}",
                             f"(same seeds: mean of {seeds}, min–max)"],
                            columns=min(3, fig_style.columns))


NO_TRACES = ("needs optimization traces (vrbench train, or a recipe's training runs: "
             "train.parquet in a results directory)")


def _no_column(column: str) -> str:
    """Why traces without ``column`` cannot draw it."""
    if column == "value":
        return ("no problem of the traces has an exact or numerical objective J(θ) (models of "
                "data sets record their training ELBO and test bound instead: "
                "train_elbo_by_step, test_bound_by_step)")
    return (f"the traces hold no {TRAINING_METRICS[column]}: only models of data sets "
            "(binary_vae_linear, binary_vae_nonlinear, binary_iwae, sigmoid_belief_net, "
            "categorical_vae_nonlinear) record it")


def _train_settings(traces: pd.DataFrame) -> list[str]:
    """The settings the traces share, as phrases of the axis label: "(n = 4,", "Adam,",
    "lr = 0.05)"."""
    parts = []
    for column, text in (("n_samples", "n = {}"), ("optimizer", "{}"), ("lr", "lr = {:g}")):
        if column in traces and traces[column].nunique() == 1:
            value = traces[column].iloc[0]
            parts.append(text.format({"adam": "Adam", "sgd": "SGD"}.get(value, value)))
    if not parts:
        return []
    phrases = [f"{part}," for part in parts[:-1]] + [parts[-1]]
    if "groups" in traces and traces["groups"].notna().all() and \
            traces["groups"].nunique() == 1:
        # Parameter groups with their own optimizer, after the rest's: "(Adam, lr = 0.0001;
        # prior: SGD, lr = 0.01)".
        phrases[-1] += ";"
        phrases.append(str(traces["groups"].iloc[0]))
    phrases[0], phrases[-1] = f"({phrases[0]}", f"{phrases[-1]})"
    return phrases


def bias_vs_temperature(frame: pd.DataFrame, styles: dict[str, EstimatorStyle],
                        fig_style: FigureStyle, n: int, layout: str = "pages",
                        labels: Labels | None = None) -> Pages:
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
        raise NotDrawn(f"needs one estimator at several temperatures at n = {n} (e.g. -e "
                       "'gumbel_softmax:temperature=0.1,gumbel_softmax:temperature=1')")
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
                            _EstimatorLegend(ok, base_styles, labels, column="base"), draw,
                            ["temperature τ", f"at n = {n}", "(log scale)"],
                            ["‖bias‖", "(log scale)"], columns=min(3, fig_style.columns))


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


MIN_GRID = 3
"""Fewest values of a parameter that make a landscape; two are a comparison, which the
other figures show."""


@dataclass(frozen=True)
class ParameterGrid:
    """Problems that differ in one parameter alone: a landscape's x axis."""

    name: str
    """The registered problem."""
    parameter: str
    fixed: dict
    """The other parameters, the same for every problem of the grid (defaults included)."""
    values: dict[str, float]
    """Problem (results name) → its value of ``parameter``."""
    given: frozenset[str] = frozenset()
    """The parameters of ``fixed`` that some problem of the results names (the others are
    defaults everywhere, and the grid's name leaves them out)."""

    @property
    def spec(self) -> str:
        """The problem the grid is a landscape of, as a results name, ``parameter`` and the
        defaults left out (``gaussian_cosine:mu=1.0,sigma=1.0``)."""
        shown = {k: v for k, v in self.fixed.items() if k in self.given}
        if not shown:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in sorted(shown.items()))


def parameter_grids(frame: pd.DataFrame) -> tuple[list[ParameterGrid], list[str]]:
    """Every one-parameter grid of the ok cells: for each problem and parameter, the problems
    that share every other parameter (defaults filled in) and hold at least
    :data:`MIN_GRID` numeric values of it. Also, so that a refusal can say what was found,
    a line per parameter that varies without making a grid."""
    ok = ok_cells(frame)
    grids: list[ParameterGrid] = []
    found: list[str] = []
    for name, rows in ok.groupby(ok["problem"].map(_base_name), sort=False):
        defaults = _defaults(name)
        given = {problem: json.loads(p or "{}") for problem, p in
                 zip(rows["problem"], rows["problem_params"].fillna("{}"), strict=True)}
        named = frozenset().union(*given.values())
        params = {problem: {**defaults, **values} for problem, values in given.items()}
        for key in sorted(set().union(*params.values())):
            subgroups: dict[str, dict[str, object]] = {}
            for problem, values in params.items():
                others = json.dumps({k: v for k, v in values.items() if k != key},
                                    sort_keys=True, default=str)
                subgroups.setdefault(others, {})[problem] = values.get(key)
            counts = []
            for others, group in subgroups.items():
                numeric = {p: float(v) for p, v in group.items()
                           if isinstance(v, int | float) and not isinstance(v, bool)}
                distinct = sorted(set(numeric.values()))
                if len(numeric) == len(group) and len(distinct) >= MIN_GRID:
                    grids.append(ParameterGrid(name, key, json.loads(others), numeric,
                                               named - {key}))
                elif len({json.dumps(v, default=str) for v in group.values()}) < 2:
                    continue  # does not vary here
                elif len(numeric) < len(group):
                    counts.append("values that are not numbers")
                else:
                    counts.append(f"{len(distinct)} values "
                                  f"({', '.join(f'{v:g}' for v in distinct)})")
            if counts:
                shown = sorted(set(counts))
                found.append(f"{name}: {key} at {' or '.join(shown[:3])}"
                             f"{' …' if len(shown) > 3 else ''} with the others fixed")
    return grids, found


def _landscape_rows(frame: pd.DataFrame, n: int, labels: Labels
                    ) -> tuple[pd.DataFrame, list[str]]:
    """One row per panel point: the grids' ok cells at ``n``, with ``x`` (the parameter's
    value), the panel (grid and coordinate, the total variance, or the bias, in the
    ``problem`` column), ``coordinate`` (-1: total variance), ``quantity`` ("variance" or
    "bias") and the panel's ``title``; and what was found where there is no grid."""
    ok = ok_cells(frame)
    ok = ok[ok["n_samples"] == n]
    grids, found = parameter_grids(ok)
    pieces = []
    for grid in grids:
        rows = ok[ok["problem"].isin(list(grid.values))]
        rows = rows.assign(x=rows["problem"].map(grid.values), parameter=grid.parameter)
        shown = labels.problem(grid.spec)
        panel = f"{grid.spec} [{grid.parameter}]"
        dim = int(rows["dim"].iloc[0])
        if dim <= MAX_COORDINATE_PANELS:
            for k, coordinate in enumerate(_coordinate_names(grid.name, dim)):
                pieces.append(rows.assign(problem=f"{panel}: ∂J/∂{coordinate}", coordinate=k,
                                          quantity="variance",
                                          title=f"{shown}: ∂J/∂{coordinate}"))
        else:
            pieces.append(rows.assign(problem=f"{panel}: total variance", coordinate=-1,
                                      quantity="variance", title=f"{shown}: total variance"))
        if _biased(rows) or rows["bias_rejected"].fillna(False).astype(bool).any():
            pieces.append(rows.assign(problem=f"{panel}: bias", coordinate=-1,
                                      quantity="bias", title=f"{shown}: ‖bias‖"))
    return (pd.concat(pieces) if pieces else pd.DataFrame()), found


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
                          fig_style: FigureStyle, n: int, layout: str = "pages",
                          labels: Labels | None = None) -> Pages:
    """Variance of one estimate against a swept problem parameter at one ``n``, one line per
    estimator, with 95% intervals: the variance landscapes of Mohamed et al. (JMLR 2020,
    figures 2 and 3). A landscape is drawn for every grid of one parameter among problems
    that share all their others (see :func:`parameter_grids`): the staleness sweep of the
    mixed prompts beside the on/off-policy pairs of the others. Problems whose θ has at
    most :data:`MAX_COORDINATE_PANELS` coordinates get a panel per coordinate, side by
    side, one row per grid (the variance of ∂J/∂μ beside that of ∂J/∂σ for each cost, as
    the paper draws them); others, the total variance (the trace of the covariance). Where
    an estimator of the grid is biased (by design or by the bias test), a panel of the
    measured ‖bias‖ follows. Each panel's x axis is the swept parameter, written with its
    symbol (see :mod:`vrbench.reports.labels`), a tick at every value: logarithmic over a
    positive grid spanning a decade, symmetric-logarithmic (linear below the smallest
    positive value) over one that starts at 0 and spans one, else linear. Where the
    variance was computed without sampling (``exact_variance``), a thin line of the
    estimator's colour traces it under the points.
    """
    labels = labels or Labels()
    rows, found = _landscape_rows(frame, n, labels)
    if rows.empty:
        seen = ("; found " + "; ".join(found)) if found else \
            "; no problem was run at several values of one of its parameters"
        raise NotDrawn(f"needs a problem run over a grid of at least {MIN_GRID} values of one "
                       f"parameter with its others fixed, at n = {n} (e.g. -p "
                       f"'gaussian_cosine:omega=0.5|1|2|4'){seen}")
    biased = _biased(rows)
    has_exact = rows["exact_variance"].notna().any()
    extras = ([Line2D([], [], color="0.3", linewidth=0.8, label="computed exactly")]
              if has_exact else [])
    if _reaches_zero(rows[rows["quantity"] == "variance"]):
        extras.append(_caret_handle("interval reaches 0", "v"))
    # Every grid's panels side by side, a row per grid, as the paper draws them.
    per_grid = {len(set(group)) for _, group in rows.groupby(
        rows["problem"].map(lambda p: p.partition("]")[0]))["problem"]}
    columns = next(iter(per_grid)) if len(per_grid) == 1 and \
        2 <= next(iter(per_grid)) <= MAX_COORDINATE_PANELS + 1 else None
    if columns == 2 and (rows["coordinate"] < 0).all() and fig_style.columns < columns + 1:
        # A one-column page stacks the total variance above the bias: a panel of the full
        # width labels every value of the grid, and the legend is no more than a quarter
        # of the figure.
        columns = 1
    titles = dict(zip(rows["problem"], rows["title"], strict=False))
    ylabel = (["variance of one estimate", "(log scale)"]
              if (rows["quantity"] == "variance").all() else
              ["variance of one estimate", "or ‖bias‖ as titled", "(log scale)"])
    return _problem_figures(
        rows, fig_style, layout, _EstimatorLegend(rows, styles, labels, biased, extras),
        lambda ax, panel: _parameter_panel(ax, rows[rows["problem"] == panel], styles,
                                           fig_style, labels),
        [f"n = {n} sample{'s' if n > 1 else ''} per estimate"], ylabel, columns=columns,
        title=titles.get)


def _parameter_panel(ax: plt.Axes, rows: pd.DataFrame, styles: dict[str, EstimatorStyle],
                     fig_style: FigureStyle, labels: Labels) -> None:
    if rows["quantity"].iloc[0] == "bias":
        bias = rows["bias_norm"].astype(float).to_numpy()
        nothing = np.full(len(rows), math.nan)
        rows = rows.assign(_variance=bias, _low=nothing, _high=nothing, _exact=nothing,
                           _zero=rows["bias_exact"].fillna(False).to_numpy(dtype=bool))
    else:
        k = int(rows["coordinate"].iloc[0])
        variance = _coordinate(rows, "variance", k)
        exact_values = _coordinate(rows, "exact_variance", k)
        scale = np.nanmax(np.concatenate([variance, [0.0]]))
        zero = variance <= 1e-12 * max(float(rows["true_grad_norm"].max()) ** 2, scale)
        rows = rows.assign(_variance=variance, _low=_coordinate(rows, "variance_ci_low", k),
                           _high=_coordinate(rows, "variance_ci_high", k),
                           _exact=exact_values, _zero=zero)
    values = rows["_variance"].to_numpy(dtype=float)
    exact_values = rows["_exact"].to_numpy(dtype=float)
    zero = rows["_zero"].to_numpy(dtype=bool)
    slots = {name: i for i, name in enumerate(estimator_order(rows.loc[rows["_zero"],
                                                                       "estimator"]))}
    span = np.concatenate([values[~zero], exact_values[np.isfinite(exact_values)
                                                       & (exact_values > 0)]])
    ends = np.concatenate([rows["_low"].to_numpy()[~zero], rows["_high"].to_numpy()[~zero]])
    strip = exact_axis(ax, "y", np.concatenate([span, ends]), len(slots))
    if strip is None:
        _set_log_limits(ax, "y", np.concatenate([span, ends]))
    floor = strip.start if strip is not None else ax.get_ylim()[0]
    for estimator in estimator_order(rows["estimator"]):
        group = rows[rows["estimator"] == estimator].sort_values("x")
        style = styles[estimator]
        is_zero = group["_zero"].to_numpy(dtype=bool)
        y = np.array([_at(strip, slots, estimator, v, z)
                      for v, z in zip(group["_variance"], is_zero, strict=True)])
        for xi, z, lo, hi in zip(group["x"], is_zero, group["_low"], group["_high"],
                                 strict=True):
            if not z:
                _interval(ax, xi, lo, hi, floor, style.color)
        ax.plot(group["x"], y, linestyle="none", markersize=fig_style.marker, zorder=2,
                **style.marker_kwargs())
        known = group["_exact"].notna() & (group["_exact"] > 0)
        if known.any():
            ax.plot(group.loc[known, "x"], group.loc[known, "_exact"], color=style.color,
                    linewidth=0.9, zorder=0.8)
        if not known.all():  # no exact curve: join the measured points instead
            ax.plot(group["x"], y, color=style.color, linewidth=0.6, alpha=0.6,
                    linestyle=style.line_kwargs().get("linestyle", "-"), zorder=0.7)
    _parameter_axis(ax, np.array(sorted(set(rows["x"].astype(float)))), fig_style)
    ax.set_xlabel(labels.symbol(str(rows["parameter"].iloc[0]),
                                _base_name(str(rows["problem"].iloc[0]))), labelpad=1)


def _parameter_axis(ax: plt.Axes, values: np.ndarray, fig_style: FigureStyle) -> None:
    """The x axis of a landscape: a tick at every value of the grid, labelled where the
    label does not overprint a neighbour's (the ends first); a log scale over a positive
    grid spanning a decade, a symmetric-log one (linear up to the smallest positive value)
    over a grid from 0 spanning one, else linear."""
    positive = values[values > 0]
    spans_decade = positive.size >= 2 and positive.max() / positive.min() >= 8
    if spans_decade and (values > 0).all():
        ax.set_xscale("log")
        ax.set_xlim(values[0] / 1.25, values[-1] * 1.25)
    elif spans_decade and (values >= 0).all():
        ax.set_xscale("symlog", linthresh=float(positive.min()), linscale=0.6)
        ax.set_xlim(-0.25 * float(positive.min()), values[-1] * 1.25)
    ax.xaxis.set_major_locator(FixedLocator(values))
    ax.xaxis.set_minor_locator(NullLocator())
    transform = ax.xaxis.get_transform()
    low, high = transform.transform(np.array(ax.get_xlim()))
    # The panel's width as the grid lays it out now, less its share of the y labels.
    width_in = ax.get_position().width * ax.get_figure().get_size_inches()[0] - 0.2
    at = (transform.transform(values) - low) / (high - low) * width_in
    texts = [f"{v:g}" for v in values]
    room = [text_width_in(t, fig_style.small) for t in texts]
    shown: list[int] = []
    for i in [0, len(values) - 1, *range(1, len(values) - 1)]:
        if i in shown:
            continue
        if all(abs(at[i] - at[j]) >= (room[i] + room[j]) / 2 + 0.04 for j in shown):
            shown.append(i)
    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda x, _: next((texts[i] for i in shown if math.isclose(x, values[i],
                                                                   abs_tol=1e-12)), "")))


def _gradient_norm_handle(reference: pd.Series | None) -> Line2D:
    """The legend entry of the dashed ‖∇J(θ_t)‖² line, saying whether ∇J is exact or a
    reference (``reference``: the rows' reference column, absent or "exact" where exact)."""
    exact = reference is None or (reference.fillna("exact") == "exact").all()
    return Line2D([], [], color="black", linestyle="--", linewidth=0.8,
                  label="‖∇J(θ_t)‖² " + ("(exact)" if exact else "(reference)"))


def _draw_variance_along_steps(ax: plt.Axes, rows: pd.DataFrame,
                               styles: dict[str, EstimatorStyle],
                               fig_style: FigureStyle) -> np.ndarray:
    """Each estimator's variance against the step (geometric mean over seeds, the band
    from the least to the largest) and ‖∇J(θ_t)‖² dashed; returns the latter's values."""
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
    return grad.to_numpy()


def training_variance(traces: pd.DataFrame, styles: dict[str, EstimatorStyle],
                      fig_style: FigureStyle, layout: str = "pages",
                      labels: Labels | None = None) -> Pages:
    """Variance of the estimator at θ_t against the optimization step (log scale), mean over
    seeds with a min–max band, beside the exact ‖∇J(θ_t)‖² (dashed): the variance figures of
    REBAR (Tucker et al. 2017), RELAX (Grathwohl et al. 2018) and DisARM (Dong et al. 2020),
    with the gradient's own size exact. A variance below the dashed line is an SNR above 1.
    """
    labels = labels or Labels()
    if traces is None:
        raise NotDrawn(NO_TRACES)
    if "variance" not in traces or traces["variance"].notna().sum() == 0:
        raise NotDrawn("the optimization traces hold no measured variance")
    traces = traces[traces["variance"].notna()]
    extras = [_gradient_norm_handle(traces.get("reference"))]

    def draw(ax: plt.Axes, problem: str) -> None:
        rows = traces[traces["problem"] == problem]
        grad = _draw_variance_along_steps(ax, rows, styles, fig_style)
        if (rows["variance"] > 0).any() or (grad > 0).any():
            log_axis(ax, "y")

    return _problem_figures(traces, fig_style, layout,
                            _EstimatorLegend(traces, styles, labels, extras=extras), draw,
                            ["optimization step", *_train_settings(traces)],
                            ["variance of one estimate", "(log scale)"],
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


def shared_run_variance(shared: pd.DataFrame | None, styles: dict[str, EstimatorStyle],
                        fig_style: FigureStyle, layout: str = "pages",
                        labels: Labels | None = None) -> Pages:
    """Variance of one estimate of every estimator at the same θ_t along one optimization run
    (``vrbench train --measure``), geometric mean over seeds with a min–max band, beside
    ‖∇J(θ_t)‖² (dashed), a panel per problem and, where θ has a few parameter groups, per
    group: the figure of Dong et al. (2020, figure 2), Tucker et al. (2017) and Mohamed et
    al. (2020, section 8), with every estimator measured at the same θ_t."""
    labels = labels or Labels()
    if shared is None:
        raise NotDrawn("there are no shared runs (vrbench train --measure)")
    if "variance" not in shared or shared["variance"].notna().sum() == 0:
        raise NotDrawn("the shared runs hold no measured variance")
    shared = _by_group(shared[shared["variance"].notna()])
    extras = [_gradient_norm_handle(shared.get("reference"))]

    def draw(ax: plt.Axes, problem: str) -> None:
        rows = shared[shared["problem"] == problem]
        grad = _draw_variance_along_steps(ax, rows, styles, fig_style)
        if (rows["variance"] > 0).any() or (grad > 0).any():
            log_axis(ax, "y")

    def title(panel: str) -> str:  # "problem: parameter group" where θ is drawn by group
        problem, _, group = panel.partition(": ")
        return labels.problem(problem) + (f": {group}" if group else "")

    drivers = sorted(set(shared["driver"].dropna())) if "driver" in shared else []
    driven = ([f"(run driven by {', '.join(labels.estimator(d) for d in drivers)})"]
              if drivers else [])
    return _problem_figures(shared, fig_style, layout,
                            _EstimatorLegend(shared, styles, labels, _biased_by_claim(shared),
                                             extras=extras), draw,
                            ["optimization step", *driven, *_train_settings(shared)],
                            ["variance of one estimate", "at θ_t", "(log scale)"],
                            columns=min(3, fig_style.columns), title=title)
