"""One look for every figure: page sizes, fonts, and one identity per estimator.

An estimator's colour encodes its family and its marker, fill and line style encode the
member, as the survey of Mohamed et al. (2020, JMLR 21(132), figs. 3-6) colours its
comparisons by estimator family. Identities come from the registry, not from the results at
hand, so an estimator looks the same in every figure of every report. A report of a few
estimators (at most :data:`DISTINCT_COLORS`), as a paper's figure shows, gives each its own
colour instead, as the figures of the REBAR, RELAX and DisARM papers do; marker, fill and
line stay the estimator's own. In a larger report, a family with more members than
:data:`FAMILY_MEMBERS` (the ten language-model RL estimators) is split: each member takes a
colour of :data:`DISTINCT_COLORS` that no other family of the report wears, so that no two
series of a panel share colour, marker and line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import matplotlib as mpl
import matplotlib._mathtext as mathtext
import seaborn as sns

PAGE_HEIGHT_IN = 9.0
"""No figure is taller than this: a page of a paper less its margins and caption."""

TEXTWIDTH_PT = 469.0
"""``\\textwidth`` of the standard two-column article (10 pt, letter paper)."""
COLUMNWIDTH_PT = 229.5
"""Its ``\\columnwidth``: a table that fits it fits the wider columns of most journals'
two-column classes too (IEEE 252 pt, ACM 241 pt)."""


@dataclass(frozen=True)
class FigureStyle:
    """Sizes of one output style, in inches and points."""

    name: str
    width: float
    """Width of every figure: the text or column width it is designed for."""
    max_height: float
    panel: float
    """Height of one panel."""
    columns: int
    """Panels per row of a per-problem grid."""
    font: float
    small: float
    """Tick labels, legends and in-cell annotations."""
    marker: float
    table_width_pt: float
    """The LaTeX width the tables are split to fit (``\\textwidth`` or ``\\columnwidth`` of a
    standard two-column article)."""
    table_env: str

    @property
    def char_in(self) -> float:
        """Width of an average character of the small font, in inches."""
        return 0.55 * self.small / 72


STYLES: dict[str, FigureStyle] = {
    "paper": FigureStyle("paper", width=6.75, max_height=PAGE_HEIGHT_IN, panel=1.5, columns=4,
                         font=8.0, small=7.0, marker=3.5, table_width_pt=TEXTWIDTH_PT,
                         table_env="table*"),
    "column": FigureStyle("column", width=3.25, max_height=PAGE_HEIGHT_IN, panel=1.45,
                          columns=2, font=7.5, small=7.0, marker=3.2,
                          table_width_pt=COLUMNWIDTH_PT, table_env="table"),
    "slides": FigureStyle("slides", width=12.0, max_height=6.75, panel=2.6, columns=4,
                          font=14.0, small=12.0, marker=6.0, table_width_pt=TEXTWIDTH_PT,
                          table_env="table*"),
}


SUPERSCRIPT_SCALE = 0.86
"""Size of an exponent (``10⁻³`` on a log axis) relative to its tick label: 6 pt at the
7 pt of the paper and column styles, the least a printed figure can be read at. Mathtext's
own 0.7 set them at 4.9 pt."""


def apply_style(style: str) -> FigureStyle:
    """Set seaborn's theme and matplotlib's output settings; returns the style's sizes."""
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; valid styles: {', '.join(STYLES)}")
    chosen = STYLES[style]
    # Mathtext has no setting for the size of superscripts; its module constant is read
    # at every layout (matplotlib is pinned in constraints.txt).
    mathtext.SHRINK_FACTOR = SUPERSCRIPT_SCALE
    sns.set_theme(context="paper", style="ticks")
    mpl.rcParams.update({
        "font.size": chosen.font,
        "axes.titlesize": chosen.font,
        "axes.labelsize": chosen.font,
        "figure.labelsize": chosen.font,
        "xtick.labelsize": chosen.small,
        "ytick.labelsize": chosen.small,
        "legend.fontsize": chosen.small,
        "legend.title_fontsize": chosen.small,
        "lines.markersize": chosen.marker,
        "lines.linewidth": 1.0,
        "pdf.fonttype": 42,  # embed TrueType, not Type 3: editable and accepted by publishers
        "ps.fonttype": 42,
        "svg.fonttype": "path",
        "savefig.dpi": 300,
        # The figure is saved at exactly its designed size, so that \includegraphics at
        # that width prints the fonts at the sizes above.
        "savefig.bbox": None,
        "figure.constrained_layout.use": True,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlepad": 3.0,
    })
    return chosen


FAMILY_COLORS: dict[str, str] = {
    # Okabe & Ito's colour-blind-safe set, with Tol's wine, olive and indigo for the rest.
    # Families that share problems (first six: Bernoulli and Gaussian problems; score
    # function and policy gradient: MDPs) have the most distinct colours.
    "score function": "#000000",
    "pathwise": "#0072B2",
    "control variate": "#009E73",
    "discrete": "#D55E00",
    "measure-valued": "#CC79A7",
    "relaxation": "#E69F00",
    "antithetic sampling": "#56B4E9",
    "quasi-Monte Carlo": "#999933",
    "stratified sampling": "#882255",
    "policy gradient": "#332288",
    # The exact reference in neutral grey; multi-sample estimators run on their own problems.
    "exact": "#777777",
    "without replacement": "#AA4499",
    "multi-sample": "#661100",
}
OTHER_COLORS = ("#117733", "#6699CC", "#DDAA33", "#44AA99", "#88CCEE", "#DDCC77")
"""Colours of families vrbench does not ship (plugins), chosen by a hash of the name."""

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "p", "*", "<", "d", "h", ">")
"""Shapes that stay distinct at 3 pt, in an order that puts shapes of different kinds next to
each other (no pentagon next to a hexagon), since a family's members take consecutive ones."""

FILLS = ("full", "none", "left", "top")
"""The marker fill of each round of :data:`MARKERS` (matplotlib's ``fillstyle``): the first
13 estimators are filled, the next 13 hollow, then half-filled two ways; 52 estimators look
different from each other without colour or line before a look repeats."""

LINESTYLES = ("-", "--", ":", "-.")
"""Line styles of a family's members in turn, so that members of one colour differ in their
lines as well as their markers."""

FAMILY_MEMBERS = 6
"""Most members of one family drawn in the family's one colour (the largest families of the
toy problems, score function and discrete, have six); a larger family gives each member a
colour of its own: ten series of one colour with four line styles cannot be told apart."""

DISTINCT_COLORS = ("#000000", "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00",
                   "#56B4E9", "#882255", "#332288", "#999933", "#661100", "#44AA99")
"""One colour per estimator when a report shows at most this many (Okabe & Ito's set, with
Tol's wine, indigo, olive, brown and teal for the ninth to twelfth): neighbours in the
order differ in hue and in lightness, so consecutive members of a family stay apart."""


@dataclass(frozen=True)
class EstimatorStyle:
    """How one estimator is drawn everywhere: colour (family), marker and line (member)."""

    color: str
    marker: str
    linestyle: str
    fill: str
    """matplotlib's ``fillstyle`` of the marker: full, none (hollow), left or top (half)."""
    family: str

    def marker_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``Axes.plot`` for the marker alone."""
        return {"marker": self.marker, "fillstyle": self.fill, "markerfacecolor": self.color,
                "markerfacecoloralt": "white", "markeredgecolor": self.color}

    def line_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``Axes.plot`` for a line with markers."""
        return {"color": self.color, "linestyle": self.linestyle, **self.marker_kwargs()}


def _stable_index(text: str, modulo: int) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % modulo


def family_color(family: str) -> str:
    """The colour of an estimator family, the same in every run."""
    return FAMILY_COLORS.get(family) or OTHER_COLORS[_stable_index(family, len(OTHER_COLORS))]


def _registered() -> dict[str, tuple[str, str]]:
    """Registered estimator name → (family, origin)."""
    from vrbench import estimators

    return {e.name: (e.cls.family, e.origin) for e in estimators.registry.entries()}


def _known(families: dict[str, str] | None) -> dict[str, str]:
    """The base name → family pairs of ``families`` that name a family."""
    return {n.split(":")[0]: f for n, f in (families or {}).items() if isinstance(f, str)}


def family_order(families: Iterable[str]) -> list[str]:
    """Families in the order of :data:`FAMILY_COLORS`, then the others alphabetically."""
    present = set(families)
    known = [f for f in FAMILY_COLORS if f in present]
    return known + sorted(present - set(known))


def estimator_order(names: Iterable[str], families: dict[str, str] | None = None) -> list[str]:
    """Estimators grouped by family (in :func:`family_order`), by name within a family."""
    names = list(dict.fromkeys(names))
    family_of = {**{n: f for n, (f, _) in _registered().items()}, **_known(families)}
    rank = {f: i for i, f in enumerate(family_order(
        family_of.get(n.split(":")[0], "other") for n in names))}
    return sorted(names, key=lambda n: (rank[family_of.get(n.split(":")[0], "other")], n))


def _split_families(bases: list[str], family_of: dict[str, str]) -> dict[str, str]:
    """Own colours for the members of each family of ``bases`` with more members than
    :data:`FAMILY_MEMBERS`, in turn: the family's colour, then those of :data:`DISTINCT_COLORS`
    that no other family shown wears, then those worn by others (whose members have other
    markers, and rarely share a problem: the language-model estimators run on sequence
    problems alone)."""
    by_family: dict[str, list[str]] = {}
    for base in bases:
        by_family.setdefault(family_of.get(base, "other"), []).append(base)
    large = [f for f, members in by_family.items() if len(members) > FAMILY_MEMBERS]
    worn = {family_color(f).lower() for f in by_family if f not in large}
    free = [c for c in DISTINCT_COLORS if c.lower() not in worn]
    own: dict[str, str] = {}
    for family in large:
        first = family_color(family)
        palette = [first] + [c for c in [*free, *DISTINCT_COLORS]
                             if c.lower() != first.lower()]
        palette = list(dict.fromkeys(palette))
        for member, color in zip(by_family[family], palette, strict=False):
            own[member] = color
        free = [c for c in free if c not in own.values()]
    return own


def estimator_styles(names: Iterable[str], families: dict[str, str] | None = None,
                     distinct: bool = False) -> dict[str, EstimatorStyle]:
    """A fixed style for each estimator, independent of which others are drawn.

    Every registered estimator gets a slot: built-ins first, by family (in the order of
    :data:`FAMILY_COLORS`) and name, then plugins by name. Slot ``i`` has marker
    ``MARKERS[i % 13]`` and fill ``FILLS[i // 13]``, so no two of the first 52 estimators
    share shape and fill even in greyscale; the k-th member of a family has line style
    ``LINESTYLES[k % 4]``. Estimators the registry does not know (results from another
    installation) come after, by name. ``families`` (name → family, e.g. from a results
    table) completes what the registry does not say. Variants of one estimator
    (``gumbel_softmax:temperature=0.5``) share its colour and marker and differ in line
    style. ``distinct`` gives each base estimator of ``names`` its own colour from
    :data:`DISTINCT_COLORS` (at most that many), in :func:`estimator_order`; without it, a
    family of ``names`` with more members than :data:`FAMILY_MEMBERS` gives each member its own
    colour (see :func:`_split_families`).
    """
    registered = _registered()
    family_of = {n: f for n, (f, _) in registered.items()}
    family_of.update(_known(families))
    builtins = [n for n, (_, origin) in registered.items() if origin == "builtin"]
    slots = estimator_order(builtins, family_of)
    slots += sorted(set(registered) - set(slots))
    names = sorted(set(names))
    bases = estimator_order({n.split(":")[0] for n in names}, family_of)
    slots += sorted(set(bases) - set(slots))
    slot_of = {n: i for i, n in enumerate(slots)}
    member_of: dict[str, int] = {}  # the k-th estimator of its family
    members: dict[str, int] = {}
    for name in slots:
        family = family_of.get(name, "other")
        member_of[name] = members.get(family, 0)
        members[family] = member_of[name] + 1
    if distinct and len(bases) > len(DISTINCT_COLORS):
        raise ValueError(f"{len(bases)} estimators: distinct colours serve at most "
                         f"{len(DISTINCT_COLORS)}")
    own_color = (dict(zip(bases, DISTINCT_COLORS, strict=False)) if distinct
                 else _split_families(bases, family_of))
    variants: dict[str, list[str]] = {}
    for name in names:
        variants.setdefault(name.split(":")[0], []).append(name)
    styles = {}
    for name in names:
        base = name.split(":")[0]
        slot = slot_of[base]
        family = family_of.get(base, "other")
        cycle, marker = divmod(slot, len(MARKERS))
        line = member_of[base] + variants[base].index(name)
        styles[name] = EstimatorStyle(own_color.get(base) or family_color(family),
                                      MARKERS[marker], LINESTYLES[line % len(LINESTYLES)],
                                      fill=FILLS[cycle % len(FILLS)], family=family)
    return styles
