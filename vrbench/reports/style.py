"""One look for every figure: sizes for papers and slides, fonts, and estimator styles."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

import matplotlib as mpl
import seaborn as sns

ONE_COLUMN_IN = 3.25
TWO_COLUMN_IN = 6.75
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*", "h", "p")

STYLES = {
    "paper": {"context": "paper", "font_scale": 0.9, "width": TWO_COLUMN_IN, "panel": 1.55,
              "columns": 4, "chars_per_inch": 15},
    "column": {"context": "paper", "font_scale": 0.8, "width": ONE_COLUMN_IN, "panel": 1.45,
               "columns": 2, "chars_per_inch": 16},
    "slides": {"context": "talk", "font_scale": 0.8, "width": 12.0, "panel": 3.0,
               "columns": 4, "chars_per_inch": 8},
}


def apply_style(style: str) -> dict[str, float]:
    """Set seaborn's theme and matplotlib's output settings; returns the style's sizes."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid styles: {', '.join(STYLES)}")
    settings = STYLES[style]
    sns.set_theme(context=settings["context"], style="ticks", palette="colorblind",
                  font_scale=settings["font_scale"])
    mpl.rcParams.update({
        "pdf.fonttype": 42,  # embed TrueType, not Type 3: editable and accepted by publishers
        "ps.fonttype": 42,
        "svg.fonttype": "path",
        "savefig.dpi": 300,
        "savefig.bbox": "tight",
        "figure.constrained_layout.use": True,
        "axes.spines.top": False,
        "axes.spines.right": False,
    })
    return settings


@dataclass(frozen=True)
class EstimatorStyle:
    color: tuple[float, float, float]
    marker: str


def estimator_styles(names: Iterable[str]) -> dict[str, EstimatorStyle]:
    """A fixed color and marker per estimator, the same in every figure of a report.

    Colors come from seaborn's colorblind palette; beyond ten estimators the marker changes
    too, so no two estimators look alike.
    """
    palette = sns.color_palette("colorblind", 10)
    combos = itertools.product(range(len(MARKERS)), range(len(palette)))
    styles = {}
    for name, (marker_index, color_index) in zip(sorted(set(names)), combos, strict=False):
        marker = MARKERS[(marker_index + color_index) % len(MARKERS)]
        styles[name] = EstimatorStyle(palette[color_index], marker)
    return styles
