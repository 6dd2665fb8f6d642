"""What the figures share: marks (daggers, intervals, carets), log-axis limits and the
test of which estimators are biased."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from vrbench.reports.axes import Strip, log_axis, text_width_in
from vrbench.reports.labels import plain
from vrbench.reports.registry import FigureContext
from vrbench.reports.style import estimator_order
from vrbench.reports.values import describe_sweep_reference

REFERENCE_COLOR = "0.45"
"""Grey of the reference lines (ratio 1, sampling error, the base of a gap)."""
DAGGER = "\u2020"
"""Marks an estimator whose claim of unbiasedness the bias test rejects."""


def log_axes(ax: Axes, x: bool = True, y: bool = True) -> None:
    """Log scales with 2 to 5 labelled ticks on the chosen axes."""
    for use, which in ((x, "x"), (y, "y")):
        if use:
            log_axis(ax, which)


def text_handle(label: str) -> Line2D:
    return Line2D([], [], linestyle="none", marker="none", label=label)


def biased_estimators(rows: pd.DataFrame) -> set[str]:
    """The estimators of ``rows`` that do not claim to be unbiased."""
    claims = rows["unbiased_claim"]
    return set(rows.loc[claims.notna() & ~claims.fillna(True).astype(bool), "estimator"])


def dagger(ax: Axes, x: float, y: float, color: str) -> None:
    ax.annotate(DAGGER, (x, y), xytext=(3, 2), textcoords="offset points", fontsize="small",
                color=color, fontweight="bold", annotation_clip=False)


def exact_slots(rows: pd.DataFrame, column: str) -> dict[str, int]:
    """Estimators with an exact value in ``column`` → their slot in the exact strip."""
    names = rows.loc[rows[column].fillna(False).astype(bool), "estimator"]
    return {name: i for i, name in enumerate(estimator_order(names))}


def at_slot(strip: Strip | None, slots: dict[str, int], name: str, value: float,
            exact: bool) -> float:
    """Where ``value`` is drawn: its slot in the exact strip when it is exact."""
    return strip.slot(slots[name]) if exact and strip is not None else value


CLIPPED = "clipped"
"""The gid of the caret that ends an interval reaching below the axis, which marks it apart
from the points in the SVG."""


def reaches_zero(rows: pd.DataFrame) -> bool:
    """Whether some measured (not exact) variance's interval reaches down to 0."""
    low = rows["variance_ci_low"].astype(float)
    return bool(((low <= 0) & ~rows["exact"].fillna(False).astype(bool)).any())


def caret_handle(label: str, marker: str) -> Line2D:
    return Line2D([], [], linestyle="none", marker=marker, color="0.3", markersize=3.5,
                  label=label)


def draw_interval(ax: Axes, at: float, low: float, high: float, floor: float, color: str,
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


def set_log_limits(ax: Axes, which: str, values: np.ndarray) -> None:
    """Log-axis limits around the positive ``values`` with a margin of 6% of the span."""
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return
    lo, hi = float(values.min()), float(values.max())
    margin = 10 ** (0.06 * max(math.log10(hi / lo), 0.3))
    (ax.set_ylim if which == "y" else ax.set_xlim)(lo / margin, hi * margin)


def join_lines(parts: list[str], width_in: float, size: float, joint: str = " · ") -> str:
    """``parts`` joined by ``joint`` into lines no wider than ``width_in``."""
    lines = [parts[0]]
    for part in parts[1:]:
        if text_width_in(f"{lines[-1]}{joint}{part}", size) <= width_in:
            lines[-1] = f"{lines[-1]}{joint}{part}"
        else:
            lines.append(part)
    return "\n".join(lines)


def size_in(ax: Axes) -> tuple[float, float]:
    """The width and height (in) of the figure ``ax`` is on."""
    fig = ax.get_figure()
    assert isinstance(fig, Figure)  # the figures draw on figures, not on subfigures
    width, height = fig.get_size_inches()
    return float(width), float(height)


def base_name(problem: str) -> str:
    """The registered problem of a results name (``gaussian_cosine:omega=2``)."""
    return problem.split(":")[0]



def reference_words(context: FigureContext) -> str:
    """The reference of the sweep's ratios as a caption names it (plain text: no LaTeX)."""
    labels = context.labels
    return describe_sweep_reference(context.cells, context.reference,
                                    lambda e: plain(labels.estimator(e)),
                                    lambda p: plain(labels.problem(p)))
