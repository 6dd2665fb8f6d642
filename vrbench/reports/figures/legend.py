"""The legends of the figures: one entry per estimator drawn on a page, in the order shared
by every figure, laid out above the panels in as many columns as fit."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from vrbench.reports.axes import text_width_in, wrap_label
from vrbench.reports.labels import Labels, with_note
from vrbench.reports.style import EstimatorStyle, FigureStyle, estimator_order

HANDLE_EM = 3.6
"""An entry's handle and the gap to its text, in ems of the legend's font (the handle
length 2.2 of :func:`add_legend`, its padding 0.4 and a column's share of the spacing 1.0)."""
SIDE_MARGIN_IN = 0.1
"""The legend's margin within the figure's width."""
LINE_EM, ENTRY_GAP_EM = 1.2, 0.5
"""A legend line's height, and the space between entries, in ems."""
PADDING_IN = 0.15
"""Room above and below the legend."""


def legend_label(name: str, biased: AbstractSet[str], labels: Labels) -> str:
    """An estimator's name in the legend, with "(biased)" where it is."""
    shown = labels.estimator(name)
    return with_note(shown, "biased") if name in biased else shown


def legend_handle(style: EstimatorStyle, label: str, line: bool = True) -> Line2D:
    """A legend entry as the panels draw the estimator: line and marker, or the marker
    alone where the panels draw no lines."""
    kwargs = style.line_kwargs() if line else {"linestyle": "none", **style.marker_kwargs()}
    return Line2D([], [], label=label, markersize=4, **kwargs)


@dataclass(frozen=True)
class LegendLayout:
    """How a legend is set: columns, height and where its labels break."""

    columns: int
    height: float
    """Inches, with the padding around the legend."""
    wrap: float | None
    """Width (in) labels are broken to, between words, when they would force one column."""


def legend_layout(labels: list[str], fig_style: FigureStyle, width: float) -> LegendLayout:
    """Columns and height of a legend of ``labels`` across ``width``: as many columns as the
    longest label allows, and at least two when breaking long names over two lines lets
    them fit (a one-column legend of 20 estimators would be taller than the panels)."""
    if not labels:
        return LegendLayout(1, 0.0, None)
    size = fig_style.small
    handle = HANDLE_EM * size / 72
    widest = max(text_width_in(label, size) for label in labels)
    columns = max(1, min(len(labels), int((width - SIDE_MARGIN_IN) // (widest + handle))))
    columns = math.ceil(len(labels) / math.ceil(len(labels) / columns))  # even columns
    wrap = None
    if columns == 1 and len(labels) > 4:
        wrap = (width - SIDE_MARGIN_IN) / 2 - handle
        if all(text_width_in(line, size) <= wrap for label in labels
               for line in wrap_label(label, wrap, size).split("\n")):
            columns = 2
        else:
            wrap = None
    lines = [len(wrap_label(label, wrap, size).split("\n")) if wrap else 1 for label in labels]
    per_column = math.ceil(len(labels) / columns)
    tallest = max(sum(lines[i:i + per_column]) * LINE_EM
                  + ENTRY_GAP_EM * len(lines[i:i + per_column])
                  for i in range(0, len(lines), per_column))
    return LegendLayout(columns, tallest * size / 72 + PADDING_IN, wrap)


def add_legend(fig: Figure, handles: list[Line2D], layout: LegendLayout,
               size: float) -> None:
    """The legend above the panels, in room added to the figure's height for it: no panel
    gives way."""
    if layout.wrap is not None:
        for handle in handles:
            handle.set_label(wrap_label(str(handle.get_label()), layout.wrap, size))
    fig.legend(handles=handles, loc="outside upper center", ncols=layout.columns,
               frameon=False,
               handlelength=2.2, columnspacing=1.0, handletextpad=0.4, borderaxespad=0.1,
               borderpad=0.2)


@dataclass(frozen=True)
class EstimatorLegend:
    """The legend of a page of problems: one entry per estimator drawn on it, in the shared
    order, then the figure's extra entries (reference lines, notes)."""

    rows: pd.DataFrame
    styles: Mapping[str, EstimatorStyle]
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
        return ([legend_label(e, self.biased, self.labels) for e in self._names(page)]
                + [str(h.get_label()) for h in self.extras])

    def handles(self, page: list[str]) -> list[Line2D]:
        """The entries, as handles of the figure's legend."""
        return ([legend_handle(self.styles[e], legend_label(e, self.biased, self.labels),
                               self.lines)
                 for e in self._names(page)] + list(self.extras))

