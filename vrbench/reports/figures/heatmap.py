"""The relative-variance heatmap: log10 of each estimator's variance relative to the
reference at one n, estimators × problems."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import NamedTuple, cast

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib import patheffects
from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.colors import TwoSlopeNorm
from matplotlib.patches import Rectangle
from matplotlib.ticker import FuncFormatter

from vrbench.reports.axes import text_width_in, wrap_label
from vrbench.reports.figures.common import (
    DAGGER,
    biased_estimators,
    join_lines,
    reference_words,
)
from vrbench.reports.figures.pages import alike_groups, figure_width, page_suffixes
from vrbench.reports.labels import Labels, words
from vrbench.reports.paging import paginate
from vrbench.reports.registry import FigureContext, Needs, NotDrawn, Pages, figure
from vrbench.reports.values import (
    NO_REFERENCE,
    describe_reference,
    heatmap_key,
    problem_references,
    ranked_ratios,
    row_order,
)

HEAT_LIMIT = 12.0
"""The colour scale of the heatmap spans the data up to this many decades either way (the
ratio of an exact estimator's rounding error, :data:`~vrbench.reports.values.EXACT_RTOL`):
it never saturates on a measured ratio, so no value looks like another, or like "exact"."""
EXACT_HATCH = "#8fb3d9"
"""The hatching of an exact estimator's cell: unlike any colour of the scale."""

CELL_TEXT_SCALE = 0.92
"""A cell's text, relative to the small font."""
CELL_PAD_IN, MIN_CELL_IN = 0.12, 0.42
"""A cell holds its widest text ("exact†") with this padding, and is at least this wide."""
NAME_PAD_IN = 0.25
"""Between the estimators' names and the cells (the family's marker sits there)."""
PAGE_MARGIN_IN = 0.15
"""Room at the page's edges beside the names and the cells."""
WRAP_MARGIN_IN = 0.4
"""Room beside the cells when long names break to let every problem fit."""
ROW_PAD_EM, ROW_LINE_EM = 0.35, 1.2
"""A row's height in ems: its padding, and each line of its (possibly broken) name."""
BAR_TICK_IN = 0.33
"""The colour bar's labels are at least this far apart."""
HEADER_SLANT = 0.66
"""The height of a problem's name written at 40° (its column header), per inch of width."""
HEADER_PAD_IN = 0.1
"""Beneath the slanted headers."""
NOTE_MARGIN_IN, LABEL_MARGIN_IN = 0.1, 0.2
"""The key beneath the cells and the scale's title above them are this much narrower than
the page."""
NOTE_SCALE = 0.95
"""The key's text, relative to the small font."""
BAR_ROOM_IN = 0.8
"""Room for the colour bar and its ticks."""
TEXT_LINE_EM = 1.4
"""A line of the key or of the scale's title, in ems."""
CONTENT_PAD_IN = 0.2
"""Beside the names and cells of a page, within the style's width."""
MIN_SIDE_IN = 0.01
"""The blank columns that centre a page's content are never quite empty (a grid needs a
positive width)."""
BAR_GAP_IN, MIN_BAR_ROWS_IN = 0.1, 0.5
"""Between the colour bar's ticks and the first row, as a fraction of the rows' height
(which is at least the second), so the gap is the same however many rows."""
BAR_FRACTION, BAR_ASPECT = 0.04, 35
"""The colour bar's height as a fraction of the axes, and its length over its height."""
TEXT_ON_DARK = 0.32
"""A cell's shade further than this from the scale's middle is dark: its text is white."""


class HeatScale(NamedTuple):
    """The heatmap's colour scale, the colour bar's ticks and how the bar ends (``neither``,
    ``min``, ``max``, ``both``: arrows for values beyond the scale)."""

    norm: TwoSlopeNorm
    ticks: np.ndarray
    extend: str


@dataclass(frozen=True)
class _Sheet:
    """A page of the heatmap: its problems (columns) and estimators (rows), its key and the
    colour scale's title as set, and its height (in)."""

    problems: list[str]
    estimators: list[str]
    note: str
    label: str
    height: float


@dataclass(frozen=True)
class _Cells:
    """The sizes every page of a heatmap shares (in) and the estimators' names as set."""

    cell: float
    names_width: float
    row: float
    names: dict[str, str]


def _heat_norm(logs: np.ndarray, most: int = 9) -> HeatScale:
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
    return HeatScale(TwoSlopeNorm(vmin=-reach, vcenter=0.0, vmax=reach), ticks, extend)


def _signed(value: float, digits: int = 1) -> str:
    """``value`` with its sign written either way (``−0.3``, ``+0.1``, ``0``): the sign,
    not only the shade, says better or worse, in greyscale too."""
    text = f"{round(value, digits) + 0.0:+.{digits}f}".replace("-", "−")
    return text[1:] if float(text.replace("−", "-")) == 0 else text


def _caption(context: FigureContext) -> str:
    return (f"log10 of each estimator's variance (biased estimators: mean squared error) "
            f"relative to {reference_words(context)} at n = {context.n}; “ref”: the "
            "reference of the problem.")


@figure("relative_variance", Needs.CELLS, _caption, title="Relative variance (heatmap)",
        needs_reference=True)
def relative_variance_heatmap(context: FigureContext) -> Pages:
    """log10(variance / variance of the reference) at one ``n``, estimators × problems.

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
    figure_style, labels, layout = context.figure_style, context.labels, context.layout
    n, reference, frame = context.sample_size(), context.reference, context.cells
    ran = frame[(frame["n_samples"] == n) & (frame["status"] != "skipped")]
    if ran.empty:
        raise NotDrawn(f"no cell of the selection ran at n = {n}")
    if ran["ratio"].notna().sum() == 0:
        raise NotDrawn(f"no reference estimator ({reference}, or a fallback) ran on the "
                       f"selected problems at n = {n}")
    ran = ran.join(ranked_ratios(ran).add_prefix("_rank_"))
    refs = problem_references(ran, reference)
    size = figure_style.small
    width = figure_width(figure_style, layout)
    sizes = _cell_sizes(ran, width, size, labels, layout)
    room = width - sizes.names_width - PAGE_MARGIN_IN
    columns = 1 if layout == "per-problem" else max(1, int(room // sizes.cell))
    page_problems = ([[p] for group in alike_groups(ran) for p in group]
                     if layout == "per-problem" else
                     paginate(alike_groups(ran), len, float(columns)))
    logs = np.log10(ran["_rank_ratio"].astype(float).where(ran["_rank_ratio"] > 0).to_numpy())
    # As many colour-bar labels as the narrowest bar (the cells of a page) holds, a third
    # of an inch apart, and the same on every page.
    bar_in = min(len(page) for page in page_problems) * sizes.cell
    scale = _heat_norm(logs, most=max(3, int(bar_in / BAR_TICK_IN)))
    cmap = plt.get_cmap("RdBu_r")
    sheets = [sheet for problems in page_problems
              for sheet in _sheets(ran, problems, refs, context, width, sizes.row)]
    split_rows = len(sheets) > len(page_problems)
    if layout == "per-problem" and not split_rows:
        suffixes = page_suffixes(page_problems, layout)
    else:
        suffixes = page_suffixes([sheet.estimators for sheet in sheets], "pages")
    pages: Pages = []
    for suffix, sheet in zip(suffixes, sheets, strict=True):
        cells = ran[ran["problem"].isin(sheet.problems)
                    & ran["estimator"].isin(sheet.estimators)]
        fig = plt.figure(figsize=(width, sheet.height), layout="constrained")
        # The cells keep their size, centred in the style's width: every figure of a style
        # is as wide as the others, so that all of them print at one scale.
        content = min(width, sizes.names_width + len(sheet.problems) * sizes.cell
                      + CONTENT_PAD_IN)
        side = max((width - content) / 2, MIN_SIDE_IN)
        grid = fig.add_gridspec(1, 3, width_ratios=[side, content, side])
        ax = fig.add_subplot(grid[0, 1])
        shading = ScalarMappable(norm=scale.norm, cmap=cmap)
        _heatmap(ax, cells, sheet, shading, context, refs, sizes.names)
        # A tenth of an inch between the bar's ticks and the first row, however many rows.
        bar = fig.colorbar(shading, ax=ax,
                           location="top", fraction=BAR_FRACTION,
                           pad=BAR_GAP_IN / max(len(sheet.estimators) * sizes.row,
                                                MIN_BAR_ROWS_IN),
                           aspect=BAR_ASPECT, ticks=scale.ticks, extend=scale.extend)
        bar.ax.xaxis.set_major_formatter(FuncFormatter(
            lambda x, _: _signed(x, 0 if float(x).is_integer() else 1)))
        bar.ax.tick_params(labelsize=size)
        assert bar.solids is not None  # drawn by the constructor
        bar.solids.set_rasterized(False)  # the whole figure vector, colour bar included
        bar.solids.set_edgecolor("face")  # no hairline gaps between the bar's patches
        bar.outline.set_linewidth(0.5)
        # The scale's title across the whole width, so that no word of it is cut off.
        fig.suptitle(sheet.label, fontsize=size)
        fig.supxlabel(sheet.note, fontsize=size * NOTE_SCALE)
        pages.append((suffix, fig))
    return pages


def _cell_sizes(ran: pd.DataFrame, width: float, size: float, labels: Labels,
                layout: str) -> _Cells:
    """The cells' and rows' sizes and the estimators' names, broken between words where the
    problems would not fit across the page beside them."""
    cell_in = max(text_width_in("exact†", size * CELL_TEXT_SCALE) + CELL_PAD_IN, MIN_CELL_IN)
    names = {e: labels.estimator(e) for e in ran["estimator"]}
    label_in = max(text_width_in(name, size) for name in names.values()) + NAME_PAD_IN
    count = ran["problem"].nunique()
    if layout != "per-problem" and label_in + count * cell_in > width - PAGE_MARGIN_IN:
        # Long names break between words, so that the problems fit across the page.
        room = max(width - WRAP_MARGIN_IN - count * cell_in, max(
            text_width_in(word, size) for name in names.values() for word in words(name)))
        names = {e: wrap_label(name, room, size) for e, name in names.items()}
        label_in = max(text_width_in(line, size) for name in names.values()
                       for line in name.split("\n")) + NAME_PAD_IN
    lines = max(name.count("\n") + 1 for name in names.values())
    return _Cells(cell_in, label_in, size * (ROW_PAD_EM + ROW_LINE_EM * lines) / 72, names)


def _sheets(ran: pd.DataFrame, problems: list[str], refs: dict[str, str | None],
            context: FigureContext, width: float, row_in: float) -> list[_Sheet]:
    """The pages of the heatmap of ``problems``: one, or where its estimators are too many
    for the page height, several, split between families where possible."""
    labels, size = context.labels, context.figure_style.small
    cells = ran[ran["problem"].isin(problems)]
    header_in = (max(text_width_in(labels.problem(p), size) for p in problems) * HEADER_SLANT
                 + HEADER_PAD_IN)
    note = join_lines(heatmap_key(cells), width - NOTE_MARGIN_IN, size * NOTE_SCALE)
    label_parts = ["log₁₀ variance ratio",
                   "to " + describe_reference(refs, context.reference, problems,
                                              labels.estimator, labels.problem),
                   f"at n = {context.n}", "(< 0: better)"]
    label = join_lines(label_parts, width - LABEL_MARGIN_IN, size, joint=" ")
    fixed = (header_in + BAR_ROOM_IN + (note.count("\n") + 1) * size * TEXT_LINE_EM / 72
             + (label.count("\n") + 1) * size * TEXT_LINE_EM / 72)
    family_of = dict(zip(cells["estimator"], cells["family"], strict=True))
    families = [list(group) for _, group in itertools.groupby(
        row_order(cells, context.reference), key=family_of.get)]
    return [_Sheet(problems, rows, note, label, fixed + len(rows) * row_in)
            for rows in paginate(families, lambda part: fixed + len(part) * row_in,
                                 context.figure_style.max_height)]


def _heatmap(ax: Axes, cells: pd.DataFrame, sheet: _Sheet, shading: ScalarMappable,
             context: FigureContext, refs: dict[str, str | None],
             names: dict[str, str]) -> None:
    """The ``cells`` of ``sheet``, shaded by ``shading``, with each problem's reference
    (``refs``) marked and the estimators' ``names`` as set beside their markers."""
    estimators, problems = sheet.estimators, sheet.problems
    figure_style, estimator_styles = context.figure_style, context.estimator_styles
    labels = context.labels
    text_size = figure_style.small * CELL_TEXT_SCALE
    index = {(r["problem"], r["estimator"]): r for _, r in cells.iterrows()}
    for i, estimator in enumerate(estimators):
        if estimator in estimator_styles:  # the estimator's identity marker
            style = estimator_styles[estimator]
            ax.plot([-0.28], [i + 0.5], linestyle="none", markersize=figure_style.marker,
                    clip_on=False, **style.marker_kwargs())
        for j, problem in enumerate(problems):
            _heat_cell(ax, index.get((problem, estimator)), i, j, shading, text_size,
                       estimator == refs.get(problem))
    ax.set_xlim(-0.5, len(problems))
    ax.set_ylim(len(estimators), 0)
    ax.set_xticks(np.arange(len(problems)) + 0.5, [labels.problem(p) for p in problems],
                  rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(np.arange(len(estimators)) + 0.5, [names[e] for e in estimators])
    biased = biased_estimators(cells)
    for tick, name in zip(ax.get_yticklabels(), estimators, strict=True):
        if name in biased:
            tick.set_fontstyle("italic")
    ax.tick_params(length=0, pad=1)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _heat_cell(ax: Axes, row: pd.Series | None, i: int, j: int, shading: ScalarMappable,
               text_size: float, is_reference: bool) -> None:
    """The cell of ``row`` (None: a pair that does not apply) in row ``i`` and column ``j``:
    its shade under ``shading``, and its text at ``text_size`` points."""
    norm, cmap = cast(TwoSlopeNorm, shading.norm), shading.cmap  # as the heatmap made it
    face: str | tuple[float, float, float, float] = "0.87"  # grey: not applicable
    text, color, hatch = "", "black", False
    if row is not None and row["status"] != "ok":
        face, text, color = "white", "err" if row["status"] == "error" else "miss", "#B00000"
    elif row is not None and row["exact"] and row["_rank_ratio"] == 0:
        face, text, hatch = "white", "exact", True
    elif row is not None and pd.notna(row["_rank_ratio"]) and row["_rank_ratio"] > 0:
        value = math.log10(row["_rank_ratio"])
        shade = float(norm(float(np.clip(value, norm.vmin, norm.vmax))))
        face = cmap(shade)
        text = "ref" if is_reference else _signed(value)
        color = "white" if abs(shade - 0.5) > TEXT_ON_DARK else "black"
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
                fontsize=text_size, fontweight="bold" if best else "normal",
                path_effects=halo)
