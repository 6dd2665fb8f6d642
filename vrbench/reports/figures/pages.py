"""Pages of panels: problems grouped into runs of alike ones, split into pages that fit the
style's page height, one titled panel per problem with the legend above and the axis labels
shared."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from vrbench.reports.axes import wrap_label
from vrbench.reports.figures.common import base_name, join_lines
from vrbench.reports.figures.legend import (
    EstimatorLegend,
    LegendLayout,
    add_legend,
    legend_layout,
)
from vrbench.reports.paging import paginate
from vrbench.reports.registry import FigureContext, Pages
from vrbench.reports.style import FigureStyle
from vrbench.reports.values import problem_groups

AXIS_LABEL_IN = 0.45
"""Room for the shared axis labels and tick labels of a grid of panels."""
ONE_COLUMN_IN = 3.25
"""A figure's width with the per-problem layout: one column of a two-column paper."""
Y_TICK_LABELS_IN = 0.45
"""A panel's y tick labels, which its title does not extend over."""
X_LABEL_MARGIN_IN = 0.3
"""The shared x label's margin within the figure's width."""
Y_LABEL_MARGIN_IN, PANEL_Y_LABEL_MARGIN_IN = 0.5, 0.9
"""The shared y label's margin within the figure's height, and a one-row figure's y label's
(beside its panel, clear of the legend above it)."""
CURVE_COLUMNS = 3
"""Most panels per row of curves (along optimization, against temperature): wide enough
for a curve's course to read."""


class GridPage(NamedTuple):
    """A page of :func:`problem_grid_pages`: its file suffix, the figure, its panels (axes,
    problem) and the layout of its legend."""

    suffix: str
    figure: Figure
    panels: list[tuple[Axes, str]]
    legend: LegendLayout


def problem_kind(problem: str) -> str:
    """What a problem is (``gaussian``, ``mdp``, ``sequences``): the module of its class, or
    its name where this installation does not know it."""
    from vrbench import problems

    name = base_name(problem)
    if name in problems.registry:
        return problems.registry.get(name).__module__.rsplit(".", 1)[-1]
    return name


def alike_groups(rows: pd.DataFrame) -> list[list[str]]:
    """Problems (panels) in runs of alike ones: the groups of
    :func:`~vrbench.reports.values.problem_groups` (by the estimators that ran), gathered by
    kind (Bernoulli, Gaussian, MDP, sequence problems, in order of first appearance), split
    where a problem or a non-numeric parameter (``difficulty=easy``) changes. Pages break
    between runs where they can."""
    order = [p for group in problem_groups(rows) for p in group]
    kinds = list(dict.fromkeys(problem_kind(p) for p in order))
    order = sorted(order, key=lambda p: kinds.index(problem_kind(p)))  # stable within a kind
    params = (dict(zip(rows["problem"], rows["problem_params"], strict=False))
              if "problem_params" in rows else {})

    def alike(problem: str) -> tuple[str, str, str]:
        given = json.loads(params.get(problem) or "{}")
        words_ = {k: v for k, v in given.items() if isinstance(v, str)}
        return problem_kind(problem), base_name(problem), json.dumps(words_, sort_keys=True)

    return [list(run) for _, run in itertools.groupby(order, key=alike)]


def paginate_problems(groups: list[list[str]], height: Callable[[list[str]], float],
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


def page_suffixes(pages: list[list[str]], layout: str) -> list[str]:
    """The file suffixes of ``pages``: none for one page, ``-1``, ``-2``, ... for several,
    ``-<problem>`` with the per-problem layout."""
    if layout == "per-problem":
        return [f"-{page[0]}" for page in pages]
    return [""] if len(pages) == 1 else [f"-{i}" for i in range(1, len(pages) + 1)]


def grid_width(fig_style: FigureStyle, layout: str, columns: int | None) -> tuple[float, int]:
    """Figure width and panels per row of a per-problem grid."""
    if layout == "per-problem":
        return min(fig_style.width, ONE_COLUMN_IN), 1
    return fig_style.width, columns or fig_style.columns


def figure_width(fig_style: FigureStyle, layout: str) -> float:
    """The width of every figure of a style: the text (or column) width, so that all of
    them print at one scale, their fonts at the style's sizes; one column (3.25 in) each
    with the per-problem layout."""
    return grid_width(fig_style, layout, None)[0]


def problem_grid_pages(rows: pd.DataFrame, fig_style: FigureStyle, layout: str,
                       legend_labels: Callable[[list[str]], list[str]],
                       title: Callable[[str], str], columns: int | None = None
                       ) -> list[GridPage]:
    """Pages of one titled panel per problem, each figure with room for its legend above.
    Every page has the
    style's width; a page of fewer panels than a row holds centres them at the size they
    have in a full row; a page of several rows has as many columns as spread its panels
    evenly (5 panels: 3 + 2, not 4 + 1), its last row centred."""
    width, per_row = grid_width(fig_style, layout, columns)
    groups = alike_groups(rows)

    def height(page: list[str]) -> float:
        legend = legend_layout(legend_labels(page), fig_style, width).height
        return legend + math.ceil(len(page) / per_row) * fig_style.panel + AXIS_LABEL_IN

    pages = paginate_problems(groups, height, fig_style, layout, per_row)
    out: list[GridPage] = []
    for suffix, page in zip(page_suffixes(pages, layout), pages, strict=True):
        legend = legend_layout(legend_labels(page), fig_style, width)
        rows_ = math.ceil(len(page) / per_row)
        cols = per_row if rows_ == 1 else math.ceil(len(page) / rows_)
        title_in = width / cols - Y_TICK_LABELS_IN  # a panel's share
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
        out.append(GridPage(suffix, fig, list(zip(axes, page, strict=True)), legend))
    return out


def problem_figures(context: FigureContext, legend: EstimatorLegend,
                    draw: Callable[[Axes, str], None], xlabel: Sequence[str],
                    ylabel: Sequence[str], columns: int | None = None,
                    title: Callable[[str], str] | None = None) -> Pages:
    """Pages of one panel per problem of the legend's rows, in the context's style and
    layout, each drawn by ``draw(axes, problem)``, with the page's legend above and the axis
    labels (phrases, see :func:`shared_labels`) shared. Panels are titled with the
    problem's display name, or ``title(problem)``."""
    figure_style = context.figure_style
    pages: Pages = []
    for suffix, fig, panels, layout_of_legend in problem_grid_pages(
            legend.rows, figure_style, context.layout, legend.texts,
            title or legend.labels.problem, columns):
        for ax, problem in panels:
            draw(ax, problem)
        add_legend(fig, legend.handles([problem for _, problem in panels]), layout_of_legend,
                   figure_style.small)
        shared_labels(fig, xlabel, ylabel)
        pages.append((suffix, fig))
    return pages


def _first_column(ax: Axes) -> int:
    spec = ax.get_subplotspec()
    return spec.colspan.start if spec is not None else 0


def shared_labels(fig: Figure, xlabel: Sequence[str], ylabel: Sequence[str] | None = None
                  ) -> None:
    """Axis labels shared by all panels, each given as phrases ("variance of one estimate",
    "at n = 16", "(log scale)") and broken into lines only between phrases, never inside
    one."""
    width, height = fig.get_size_inches()
    size = plt.rcParams["figure.labelsize"]
    size = size if isinstance(size, float) else plt.rcParams["font.size"]
    panels = [ax for ax in fig.axes if ax.get_visible()]
    rows = {spec.rowspan.start for ax in panels if (spec := ax.get_subplotspec()) is not None}
    if ylabel and (len(panels) == 1 or len(rows) == 1):
        # One row: beside its first panel (which may sit in the middle of the page), not
        # at the page's edge or beside the legend above it.
        first = min(panels, key=_first_column)
        first.set_ylabel(join_lines(list(ylabel), height - PANEL_Y_LABEL_MARGIN_IN, size, " "))
        ylabel = None
    fig.supxlabel(join_lines(list(xlabel), width - X_LABEL_MARGIN_IN, size, " "))
    if ylabel:
        fig.supylabel(join_lines(list(ylabel), height - Y_LABEL_MARGIN_IN, size, " "))

