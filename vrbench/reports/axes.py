"""Axis helpers of the figures: log axes that always label 2–5 ticks, a strip at the bottom
of a log axis where exact (zero-variance) estimators are drawn, and text measured in inches
so that titles, legends and tick labels are sized to fit rather than guessed; display names
broken into lines between words, never inside one."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.figure import Figure
from matplotlib.textpath import TextPath
from matplotlib.ticker import Formatter, Locator, LogLocator, NullFormatter
from matplotlib.transforms import Bbox

from vrbench.reports.labels import words

STRIP_COLOR = "0.92"

TIERS: tuple[tuple[float, ...], ...] = ((1.0, 3.0), (1.0, 2.0, 5.0),
                                        (1.0, 1.5, 2.0, 3.0, 5.0, 7.0),
                                        tuple(float(m) for m in range(1, 10)))
"""Mantissas of the candidate tick sets of a log axis spanning less than two decades."""


@functools.lru_cache(maxsize=4096)
def text_width_in(text: str, size_pt: float) -> float:
    """Width of ``text`` set in the figures' font at ``size_pt``, in inches."""
    if not text:
        return 0.0
    return TextPath((0, 0), text, size=size_pt).get_extents().width / 72


def log_ticks(low: float, high: float, most: int = 5, most_mixed: int | None = None
              ) -> list[float]:
    """Between 2 and ``most`` ticks in ``[low, high]`` (``0 < low < high``): decades (every
    k-th when there are many); else the coarsest of 1-3, 1-2-5, ... multiples of a decade
    whose ticks (at most ``most_mixed``, whose labels are longer) spread over at least half
    of the view (the best spread if none does); else the two ends rounded to two significant
    digits."""
    most_mixed = most if most_mixed is None else most_mixed
    a, b = math.log10(low), math.log10(high)
    eps = 1e-9
    decades = list(range(math.ceil(a - eps), math.floor(b + eps) + 1))
    if len(decades) >= 2:
        step = 1
        while len(decades[::step]) > most:
            step += 1
        start = decades[0] + (-decades[0]) % step  # keep 10^0 when it is in view
        start = start if start <= decades[-1] else decades[0]
        return [10.0**d for d in range(start, decades[-1] + 1, step)]
    candidates = []
    for tier in TIERS:
        ticks = [m * 10.0**e for e in range(math.floor(a) - 1, math.ceil(b) + 1) for m in tier
                 if low * (1 - eps) <= m * 10.0**e <= high * (1 + eps)]
        if 2 <= len(ticks) <= most_mixed:
            spread = (math.log10(ticks[-1]) - math.log10(ticks[0])) / (b - a)
            if spread >= 0.5:
                return ticks
            candidates.append((spread, ticks))
        elif len(ticks) > most_mixed:  # too many already: every k-th of them, ends kept
            thinned = ticks[::math.ceil((len(ticks) - 1) / max(1, most_mixed - 1))]
            if len(thinned) >= 2:
                spread = (math.log10(thinned[-1]) - math.log10(thinned[0])) / (b - a)
                candidates.append((spread, thinned))
            break
    if candidates:
        return max(candidates)[1]
    return [float(f"{low * 1.02:.2g}"), float(f"{high / 1.02:.2g}")]


class NiceLogLocator(Locator):
    """:func:`log_ticks` of the view above ``start`` (where an exact strip ends), and the
    ``floor`` tick of the strip."""

    def __init__(self, most: int = 5, start: float | None = None,
                 floor: float | None = None, clearance: float = 0.1,
                 most_mixed: int | None = None) -> None:
        self.most, self.start, self.floor = most, start, floor
        self.most_mixed = most_mixed
        self.clearance = clearance
        """Fraction of the axis kept free of tick labels above the "exact" label."""

    def __call__(self) -> Sequence[float]:
        assert self.axis is not None  # a locator is called once set on an axis
        low, high = sorted(self.axis.get_view_interval())
        return self.tick_values(low, high)

    def tick_values(self, vmin: float, vmax: float) -> Sequence[float]:
        low, high = sorted((vmin, vmax))
        if self.floor is not None and 0 < low < high:
            clear = self.floor * (high / low) ** self.clearance
            low = max(low, self.start or low, clear)
        ticks = log_ticks(low, high, self.most, self.most_mixed) if 0 < low < high else []
        return ticks + ([self.floor] if self.floor is not None else [])


class MinorAbove(LogLocator):
    """Unlabelled minor ticks of a log axis, only above an exact strip."""

    def __init__(self, start: float | None = None) -> None:
        super().__init__(base=10, subs="auto")
        self.start = start

    def tick_values(self, vmin: float, vmax: float) -> Sequence[float]:
        ticks = super().tick_values(vmin, vmax)
        return [t for t in ticks if self.start is None or t > self.start]


class LogLabels(Formatter):
    """``10^k`` at decades, ``m×10^k`` elsewhere (plain numbers when ``plain`` and every tick
    lies from 0.01 to 1000), and "exact" at the strip's floor."""

    def __init__(self, floor: float | None = None, plain: bool = False) -> None:
        self.floor, self.plain = floor, plain
        self.hidden: list[float] = []
        """Ticks left unlabelled because their label would overprint another's (see
        :func:`drop_colliding_labels`)."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        if self.floor is not None and math.isclose(x, self.floor, rel_tol=1e-9):
            return "exact"
        if x <= 0 or any(math.isclose(x, h, rel_tol=1e-9) for h in self.hidden):
            return ""
        ticks = self.axis.get_majorticklocs() if isinstance(self.axis, Axis) else [x]
        locs = [v for v in ticks if v > 0 and v != self.floor]
        if self.plain and all(0.01 <= v < 1000 for v in locs or [x]):  # all plain, or none
            return f"{x:g}"
        exponent = math.floor(math.log10(x) + 1e-9)
        mantissa = x / 10.0**exponent
        if math.isclose(mantissa, 1.0, rel_tol=1e-6):
            return rf"$\mathdefault{{10^{{{exponent}}}}}$"
        return rf"$\mathdefault{{{mantissa:.2g}\times10^{{{exponent}}}}}$"


def _mixed(which: str, plain: bool) -> int:
    """Most labels that are not decades: ``m×10^k`` is wide, so two side by side on x;
    plain numbers (0.5, 1, 2, 5) are narrow, so four."""
    if plain:
        return 4
    return 3 if which == "y" else 2


def log_axis(ax: Axes, which: str, most: int = 5, plain: bool = False) -> None:
    """A log scale on ``which`` ("x" or "y") with 2 to ``most`` labelled ticks."""
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_yscale if which == "y" else ax.set_xscale)("log")
    axis.set_major_locator(NiceLogLocator(most, most_mixed=_mixed(which, plain)))
    axis.set_major_formatter(LogLabels(plain=plain))
    axis.set_minor_locator(MinorAbove())
    axis.set_minor_formatter(NullFormatter())


class Strip:
    """Where exact values go on a log axis: ``count`` slots spread over a shaded strip below
    the data, the middle one labelled "exact"."""

    def __init__(self, floor: float, start: float, bottom: float, count: int) -> None:
        self.floor, self.start, self.bottom, self.count = floor, start, bottom, count

    def slot(self, index: int) -> float:
        """The position of the ``index``-th exact series (0 ≤ index < count)."""
        if self.count <= 1:
            return self.floor
        low, high = math.log10(self.bottom), math.log10(self.start)
        margin = (high - low) * 0.18
        fraction = index / (self.count - 1)
        return 10 ** (low + margin + fraction * (high - low - 2 * margin))


def exact_axis(ax: Axes, which: str, values: np.ndarray, exact_count: int,
               most: int = 5, plain: bool = False) -> Strip | None:
    """A log axis over the positive ``values``; with ``exact_count`` > 0 exact series, a shaded
    strip below them labelled "exact", with a slot for each (see :class:`Strip`)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & (values > 0)]
    log_axis(ax, which, most, plain)
    if exact_count == 0:
        return None
    if values.size == 0:
        values = np.array([1.0])
    lo, hi = float(values.min()), float(values.max())
    decades = max(math.log10(hi / lo), 1.0)
    # The strip's height grows with the data's span and with the series it holds, so its
    # markers neither overlap nor squeeze the data.
    gap = 10 ** (max(0.5, 0.16 * decades) * (1 + 0.25 * max(0, exact_count - 2)))
    start = lo / gap**0.45
    floor = lo / gap
    bottom = floor / gap**0.5
    top = hi * 10 ** (0.06 * math.log10(hi / bottom))
    axis = ax.yaxis if which == "y" else ax.xaxis
    (ax.set_ylim if which == "y" else ax.set_xlim)(bottom, top)
    (ax.axhspan if which == "y" else ax.axvspan)(bottom, start, color=STRIP_COLOR, zorder=0,
                                                 linewidth=0)
    strip = Strip(floor, start, bottom, exact_count)
    if exact_count % 2:  # an odd number of slots: the label at the middle one
        strip.floor = strip.slot((exact_count - 1) // 2)
    # "exact" is wider than it is tall: keep more of an x axis clear of other labels, and
    # label fewer ticks beside it.
    clearance = 0.33 if which == "x" else 0.1
    most = max(2, most - 1) if which == "x" else most
    axis.set_major_locator(NiceLogLocator(most, start=start, floor=strip.floor,
                                          clearance=clearance,
                                          most_mixed=_mixed(which, plain)))
    axis.set_major_formatter(LogLabels(floor=strip.floor, plain=plain))
    axis.set_minor_locator(MinorAbove(start))
    return strip


def wrap_label(text: str, width_in: float, size_pt: float) -> str:
    """A display name broken at spaces into lines that fit ``width_in``, never inside a
    word, a formula or a ``name = value`` (see :func:`~vrbench.reports.labels.words`); a
    word wider than the room keeps a line of its own."""
    if text_width_in(text, size_pt) <= width_in:
        return text
    lines: list[str] = []
    for word in words(text):
        if lines and text_width_in(f"{lines[-1]} {word}", size_pt) <= width_in:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def drop_colliding_labels(fig: Figure, pad_pt: float = 1.5) -> None:
    """Leave unlabelled the log-axis ticks whose labels would overprint a neighbour's (a
    narrow panel beside an exact strip), keeping "exact" and then the ticks in order."""
    if not any(isinstance(axis.get_major_formatter(), LogLabels)
               for ax in fig.axes for axis in (ax.xaxis, ax.yaxis)):
        return  # nothing to measure: spare the extra rendering
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg's canvas
    pad = pad_pt * fig.dpi / 72
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            formatter = axis.get_major_formatter()
            if not isinstance(formatter, LogLabels):
                continue
            labelled = [(tick.get_loc(), tick.label1.get_window_extent(renderer))
                        for tick in axis.get_major_ticks()
                        if tick.label1.get_visible() and tick.label1.get_text()]
            floor = formatter.floor
            labelled.sort(key=lambda item: (floor is None or
                                            not math.isclose(item[0], floor, rel_tol=1e-9),
                                            item[0]))
            kept: list[Bbox] = []
            for loc, box in labelled:
                if any(box.x0 < k.x1 + pad and k.x0 < box.x1 + pad
                       and box.y0 < k.y1 + pad and k.y0 < box.y1 + pad for k in kept):
                    formatter.hidden.append(loc)
                else:
                    kept.append(box)
