"""The figure registry: a figure is one :class:`FigureEntry`, registered beside its drawing
code with :func:`figure` (or :func:`register`), and everything else reads the registry —
the names ``vrbench report --figures`` accepts, the order and captions of the report's
page, and the reasons a figure is not drawn.

A drawing function takes one :class:`FigureContext` (the report's data and settings) and
returns its pages; it raises :class:`NotDrawn` when the data it was given cannot show it.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd

from vrbench.errors import VrbenchError
from vrbench.reports.labels import Labels
from vrbench.reports.values import REFERENCE, no_reference

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from vrbench.reports.style import EstimatorStyle, FigureStyle

Pages = list[tuple[str, "Figure"]]
"""A figure's pages: ``(suffix, Figure)``, the suffix ``""`` for a single page, else
``"-1"``, ``"-2"``, ... or ``"-<problem>"`` with the per-problem layout."""


class NotDrawn(Exception):
    """A figure that the selected results cannot show; the message says why."""


NO_TRACES = ("needs optimization traces (vrbench train, or a recipe's training runs: "
             "train.parquet in a results directory)")
NO_SHARED_RUNS = "there are no shared runs (vrbench train --measure)"


@dataclass(frozen=True, eq=False)
class FigureContext:
    """What every figure is drawn from: the report's data (selected) and its settings."""

    figure_style: FigureStyle
    """The design of the figures (:data:`~vrbench.reports.style.STYLES`): widths, fonts."""
    estimator_styles: Mapping[str, EstimatorStyle]
    """Estimator → its colour, marker and line style, the same in every figure."""
    cells: pd.DataFrame = field(default_factory=pd.DataFrame)
    """The sweep's cells, annotated (see :func:`vrbench.reports.build.prepare`)."""
    traces: pd.DataFrame | None = None
    """Optimization traces (``train.parquet``), or None."""
    shared: pd.DataFrame | None = None
    """Traces of shared runs (``shared_run.parquet``, ``vrbench train --measure``), or None."""
    labels: Labels = field(default_factory=Labels)
    """Display names of estimators and problems, and parameter symbols."""
    n: int | None = None
    """The sample size of the figures of one n (None: no cell ran without error)."""
    reference: str = REFERENCE
    """The estimator that ratios are relative to."""
    layout: str = "pages"
    """``pages`` (figures of many problems split into pages) or ``per-problem``."""

    def sample_size(self) -> int:
        """:attr:`n`, for a figure of one n; refuses when no cell ran."""
        if self.n is None:
            raise NotDrawn("no cell of the selection ran without error")
        return self.n


class Needs(enum.Enum):
    """The data a figure is drawn from; each says why a report without it cannot draw it."""

    CELLS = "cells"
    """Sweep cells (``vrbench run``) of which at least one ran without error."""
    TRACES = "traces"
    """Optimization traces (``vrbench train``)."""
    SHARED_RUNS = "shared runs"
    """Shared runs (``vrbench train --measure``)."""

    def missing(self, context: FigureContext) -> str | None:
        """Why ``context`` lacks this data, or None when it has it."""
        if self is Needs.CELLS:
            if context.cells.empty:
                return "the results hold training traces only, no sweep cells"
            return "no cell of the selection ran without error" if context.n is None else None
        if self is Needs.TRACES:
            return NO_TRACES if context.traces is None else None
        return NO_SHARED_RUNS if context.shared is None else None


@dataclass(frozen=True)
class FigureEntry:
    """One figure of the report: its name, the data it needs, how it is drawn and its
    caption."""

    name: str
    """The name ``--figures`` takes, and the stem of the figure's files."""
    needs: Needs
    draw: Callable[[FigureContext], Pages]
    caption: Callable[[FigureContext], str]
    """The caption (plain text: the page shows it) of the figure drawn from the context."""
    title: str = ""
    """The heading on the report's page (default: the name in words)."""
    needs_reference: bool = False
    """Whether the figure shows ratios to the reference, and so cannot be drawn where
    neither the reference nor a fallback ran (see :func:`vrbench.reports.values.no_reference`)."""

    @property
    def heading(self) -> str:
        """The figure's heading on the page: its title, or its name in words."""
        return self.title or self.name.replace("_", " ").capitalize()

    def why_not(self, context: FigureContext) -> str | None:
        """Why ``context`` cannot show this figure, as far as its data says (the drawing
        function may still find it cannot, and raise :class:`NotDrawn`); None if it can."""
        missing = self.needs.missing(context)
        if missing is None and self.needs_reference:
            assert context.n is not None  # the cells are there
            return no_reference(context.cells, context.n, context.reference)
        return missing


_ENTRIES: dict[str, FigureEntry] = {}

Draw = TypeVar("Draw", bound=Callable[..., Any])


def register(entry: FigureEntry) -> FigureEntry:
    """Add ``entry`` to the report, after the figures registered before it (the page's
    order); a name registered twice is an error."""
    if entry.name in _ENTRIES or entry.name == TABLES:
        raise VrbenchError(f"figure {entry.name!r} is already registered")
    _ENTRIES[entry.name] = entry
    return entry


def figure(name: str, needs: Needs, caption: str | Callable[[FigureContext], str], *,
           title: str = "", needs_reference: bool = False,
           **options: Any) -> Callable[[Draw], Draw]:
    """Register the decorated function as the figure ``name``: it is called with the
    report's :class:`FigureContext` and ``options`` as keyword arguments. ``caption`` is
    the caption's text, or a function of the context that writes it."""
    def decorate(draw: Draw) -> Draw:
        register(FigureEntry(
            name, needs, functools.partial(draw, **options) if options else draw,
            caption if callable(caption) else _fixed(caption), title, needs_reference))
        return draw
    return decorate


def _fixed(text: str) -> Callable[[FigureContext], str]:
    return lambda _context: text


TABLES = "tables"
"""What ``--figures`` names the LaTeX and Markdown tables by (they are not a figure)."""


def entries() -> list[FigureEntry]:
    """Every registered figure, in the order of the report's page."""
    import vrbench.reports.figures  # noqa: F401  (its modules register the figures)

    return list(_ENTRIES.values())


def figure_names() -> tuple[str, ...]:
    """What ``--figures`` and a spec's ``figures`` accept: every figure, and ``tables``."""
    return (*(entry.name for entry in entries()), TABLES)


def check_figure_names(names: tuple[str, ...], where: str = "") -> None:
    """Refuse a name that is neither a figure nor ``tables``, naming the valid ones."""
    valid = figure_names()
    for name in names:
        if name not in valid:
            raise VrbenchError(f"{where}unknown figure {name!r}; valid figures: "
                               f"{', '.join(valid)}")
