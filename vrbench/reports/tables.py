"""Paper tables: a pivot of relative variances (LaTeX floats that fit a two-column article's
``\\textwidth`` in the paper style, its ``\\columnwidth`` in the column style), the per-cell
appendix table (as a ``longtable`` for one-column pages and as page-sized floats for
two-column ones), and both in Markdown. Estimators and problems go by their display names
(:mod:`vrbench.reports.labels`).

Numbers have one of two forms. With room, a value and the half-width of its 95% interval in
units of the last digit, ``9.8(3)×10⁻¹`` for (9.8 ± 0.3)·10⁻¹ (``9.8(3)e-1`` in Markdown).
Where that form would need more than one float, the compact form: log₁₀ of the ratio with
one decimal (``−1.3`` is 20 times lower), the form of the heatmap figure, so that six
estimators on four problems fit one column of a two-column article at 8 pt. Bold marks the
lowest-variance unbiased estimator of a problem and every unbiased one whose interval
overlaps it; a dagger, an estimator whose claim of unbiasedness the bias test rejects;
italics, an estimator biased by design. A biased estimator (either way) shows its mean
squared error relative to the reference's variance, never its variance alone, so that no
number in a row of it reads better than its error is. The notation is stated once, in a
paragraph under the first float, and each caption is a sentence or two.

The LaTeX needs ``booktabs`` (and ``longtable`` for the one-column appendix table).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import pandas as pd

from vrbench.reports.console import format_interval
from vrbench.reports.labels import SUPERSCRIPTS, Labels, latex, plain, words
from vrbench.reports.paging import paginate
from vrbench.reports.style import STYLES, TEXTWIDTH_PT, FigureStyle
from vrbench.reports.values import (
    EXACT_RTOL,
    FAMILY_ALPHA,
    NO_REFERENCE,
    REFERENCE,
    describe_reference,
    describe_sweep_reference,
    format_sci,
    ground_truth_note,
    is_biased,
    problem_groups,
    problem_order,
    problem_references,
    row_order,
    shown_variance,
)

TABCOLSEP_PT = 3.0
MARGIN_PT = 5.0
"""Room left when fitting a table, for what the width estimates below miss: a 4-problem,
6-estimator pivot was estimated at 352.6 pt and typeset by pdflatex at 353.8 pt."""
NUMBER_FORMATS = ("auto", "interval", "compact")
"""``interval``: ``9.8(3)×10⁻¹``; ``compact``: log₁₀ of the ratio, ``−1.3``; ``auto``: the
interval form where the whole table fits one float with it, else the compact one."""
PVALUE_FLOOR = 1e-10
"""Smaller p-values read "< 10⁻¹⁰": beyond it the t-test's tail is below its own
numerical accuracy, and the verdict is the same."""

_NARROW = {".": 2.4, ",": 2.4, "(": 3.3, ")": 3.3, "-": 2.9, " ": 2.8, "i": 2.4, "l": 2.4,
           "j": 2.6, "t": 3.3, "f": 2.6, "r": 3.3, "m": 7.1, "w": 6.2, "_": 3.1, "−": 6.6,
           "=": 6.6, "×": 6.6, "M": 7.8, "W": 8.7, "I": 3.0, "R": 6.2, "N": 6.3, "A": 6.3,
           "E": 5.8, "F": 5.5, "C": 6.1, "O": 6.6, "D": 6.5, "G": 6.6, "S": 4.7, "B": 5.9,
           "P": 5.8, "L": 5.3, "X": 6.3, "K": 6.6, "V": 6.3, "Y": 6.3, "T": 6.1, "H": 6.3,
           "U": 6.3, "Q": 6.6, "Z": 5.2, "J": 4.4, "|": 2.4, "[": 2.4, "]": 2.4, "/": 4.3}
"""Widths (pt) of characters of Computer Modern at 8 pt (``\\footnotesize``) that differ
from :data:`_DEFAULT_PT`, measured with pdflatex; digits are 4.25 pt."""
_NARROW.update(dict.fromkeys("⁰¹²³⁴⁵⁶⁷⁸⁹⁻₀₁₂₃₄₅₆₇₈₉", 3.0))  # script size: 6 pt digits
_DEFAULT_PT = 4.3
_EXPONENT_PT = 26.0
"""Width of ``\\times10^{-k}`` at 8 pt, one digit of k; 3 pt more per further digit."""


def text_pt(text: str, bold: bool = False) -> float:
    """Width of ``text`` (plain, as a reader sees it) in the tables' font, a little generous:
    the fit of the tables is checked by compiling them (see the test suite)."""
    width = sum(_NARROW.get(c, _DEFAULT_PT) for c in plain(text))
    return width * (1.2 if bold else 1.0)


@dataclass(frozen=True)
class Cell:
    """One table entry: its text (``mantissa``, with ``exponent`` when scientific) and marks."""

    mantissa: str
    exponent: int | None = None
    bold: bool = False
    dagger: bool = False
    numeric: bool = True

    def latex(self) -> str:
        if not self.numeric:
            text = {"—": "---"}.get(self.mantissa, self.mantissa)
        else:
            power = "" if not self.exponent else rf"\times10^{{{self.exponent}}}"
            text = f"${self.mantissa}{power}$"
        if self.bold and self.numeric:  # \boldmath: bold numbers without a package
            text = rf"{{\boldmath{text}}}"
        return text + (r"$^\dagger$" if self.dagger else "")

    def markdown(self) -> str:
        if self.mantissa.startswith("<10^{"):  # a p-value below the floor: "< 10⁻¹⁰"
            text = "< 10" + self.mantissa[5:-1].translate(SUPERSCRIPTS)
        else:
            text = self.mantissa + (f"e{self.exponent}" if self.exponent else "")
        text = f"**{text}**" if self.bold and self.numeric else text
        return text + ("†" if self.dagger else "")

    def width_pt(self) -> float:
        exponent = (_EXPONENT_PT + 3.0 * (len(str(abs(self.exponent))) - 1)
                    if self.exponent else 0.0)
        mantissa = self.mantissa.replace("-", "−") if self.numeric else self.mantissa
        bold = self.bold and self.numeric
        return (text_pt(mantissa, bold) + exponent * (1.2 if bold else 1.0)
                + (3.5 if self.dagger else 0.0))


def _interval_cell(value: float, low: float, high: float, digits: int = 2,
                   **marks: bool) -> Cell:
    text = format_interval(value, low, high, digits)
    mantissa, _, exponent = text.partition("e")
    return Cell(mantissa, int(exponent) if exponent else None, **marks)


def _sci_cell(value: float, digits: int = 3) -> Cell:
    text = format_sci(value, digits)
    mantissa, _, exponent = text.partition("e")
    return Cell(mantissa, int(exponent) if exponent else None, numeric=text != "—")


def _log_cell(value: float, **marks: bool) -> Cell:
    """log₁₀ of a positive ``value`` with one decimal: the compact form."""
    text = f"{round(math.log10(value), 1) + 0.0:.1f}"
    return Cell(text, **marks)


def pvalue_cell(value: float) -> Cell:
    """A p-value with two digits, or "< 10⁻¹⁰" below :data:`PVALUE_FLOOR` (0 included)."""
    if value is None or not math.isfinite(value):
        return Cell("—", numeric=False)
    if value < PVALUE_FLOOR:
        exponent = round(math.log10(PVALUE_FLOOR))
        return Cell(rf"<10^{{{exponent}}}")
    return _sci_cell(value, 2)


def relative_cell(row: pd.Series, reference: str | None, compact: bool = False) -> Cell:
    """The pivot's entry for one cell: its variance relative to ``reference``, the
    reference of its problem (None: no reference ran there); for a biased cell (see
    :func:`~vrbench.reports.values.is_biased`) its mean squared error relative to the
    reference's variance. Bold marks the best variance, whatever the ratio."""
    marks = {"bold": bool(row.get("best", False)), "dagger": bool(row["bias_rejected"])}
    if row["status"] != "ok":
        return Cell("err" if row["status"] == "error" else "miss", numeric=False, dagger=False)
    biased = bool(is_biased(row.to_frame().T).iloc[0])
    prefix = "mse_" if biased and "mse_ratio" in row else ""
    if row["exact"] and (not biased or row.get("bias_exact", False)):
        return Cell("exact", numeric=False, **marks)
    if row["estimator"] == reference:
        return Cell("0" if compact else "1", **marks)
    if pd.isna(row[f"{prefix}ratio"]):
        return Cell(NO_REFERENCE, numeric=False, **marks)
    if compact:
        return _log_cell(row[f"{prefix}ratio"], **marks) if row[f"{prefix}ratio"] > 0 else \
            Cell("exact", numeric=False, **marks)
    return _interval_cell(row[f"{prefix}ratio"], row[f"{prefix}ratio_low"],
                          row[f"{prefix}ratio_high"], digits=1, **marks)


def _escape(text: str) -> str:
    for char, replacement in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"),
                              ("&", r"\&"), ("#", r"\#"), ("$", r"\$"), ("{", r"\{"),
                              ("}", r"\}")):
        text = text.replace(char, replacement)
    return text


def wrap_words(text: str, room_pt: float) -> list[str]:
    """``text`` broken between words (never inside one, nor inside ``name = value``) into
    lines no wider than ``room_pt`` where its words allow."""
    lines: list[str] = []
    for word in words(text):
        if lines and text_pt(f"{lines[-1]} {word}") <= room_pt:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines or [text]


def _stacked(lines: list[str], align: str = "c") -> str:
    """Lines of a header or a name, as LaTeX: one line as it is, several stacked."""
    parts = [latex(line) for line in lines]
    if len(parts) == 1:
        return parts[0]
    # \relax: a line starting with "[" is not taken for the break's optional argument.
    return (rf"\begin{{tabular}}[b]{{@{{}}{align}@{{}}}}" + r"\\\relax ".join(parts)
            + r"\end{tabular}")


@dataclass(frozen=True)
class Pivot:
    """Estimators × problems at one n: the cells, the row order and the marks of rows."""

    n: int
    replicates: int
    problems: list[str]
    estimators: list[str]
    cells: dict[tuple[str, str], Cell]
    italic: set[str]
    reference_variance: dict[str, Cell]
    groups: list[list[str]]
    references: dict[str, str | None]
    """Each problem's reference (see :func:`~vrbench.reports.values.problem_references`)."""
    families: dict[str, str] = field(default_factory=dict)
    compact: bool = False

    def describe(self, reference: str, problems: list[str] | None = None,
                 code: Callable[[str], str] = str,
                 problem_code: Callable[[str], str] | None = None) -> str:
        """``reference`` with the exceptions among ``problems`` (default: all)."""
        return describe_reference(self.references, reference,
                                  self.problems if problems is None else problems, code,
                                  problem_code)

    def marks(self) -> set[str]:
        """The marks and special entries that appear: what the notation must explain."""
        found = set()
        for cell in [*self.cells.values(), *self.reference_variance.values()]:
            found.add(cell.mantissa if not cell.numeric else "number")
            if cell.bold:
                found.add("bold")
            if cell.dagger:
                found.add("dagger")
        if self.italic:
            found.add("italic")
        return found

    @property
    def unreferenced(self) -> bool:
        """Whether some entry reads :data:`~vrbench.reports.values.NO_REFERENCE`."""
        return any(c.mantissa == NO_REFERENCE for c in self.cells.values())


def pivot(frame: pd.DataFrame, n: int, reference: str = REFERENCE,
          compact: bool = False) -> Pivot:
    """The relative-variance pivot of an annotated table (with ``ratio``, ``mse_ratio`` and
    ``best``), its numbers in the interval or the compact form."""
    ran = frame[(frame["status"] != "skipped") & (frame["n_samples"] == n)]
    problems = [p for p in problem_order(ran) if p in set(ran["problem"])]
    references = {p: r for p, r in problem_references(frame, reference).items()
                  if p in problems}
    families = dict(zip(ran["estimator"], ran["family"], strict=True))
    estimators = row_order(ran, reference)  # the heatmap's order: the references first
    cells = {(r["problem"], r["estimator"]):
             relative_cell(r, references.get(r["problem"]), compact)
             for _, r in ran.iterrows()}
    claims = ran.drop_duplicates("estimator").set_index("estimator")["unbiased_claim"]
    italic = {str(e) for e, c in claims.items() if pd.notna(c) and not c}
    refs = ran[(ran["estimator"] == ran["problem"].map(references)) & (ran["status"] == "ok")]
    shown = shown_variance(refs)
    reference_variance = {}
    for index, r in refs.iterrows():
        i = cast(Any, index)  # an index label
        value = shown.loc[i, "variance"]
        if not value > 0:
            reference_variance[r["problem"]] = Cell("exact", numeric=False)
        elif compact:
            reference_variance[r["problem"]] = _log_cell(value)
        else:
            reference_variance[r["problem"]] = _interval_cell(
                value, shown.loc[i, "low"], shown.loc[i, "high"], digits=1)
    replicates = int(ran["replicates"].median()) if not ran.empty else 0
    return Pivot(n, replicates, problems, estimators, cells, italic, reference_variance,
                 problem_groups(ran), references, families, compact)


@dataclass(frozen=True)
class Layout:
    """How one float of the pivot is set: its problems, its rows, and where the estimator
    names and the problems' headers break into lines (only where the float needs it)."""

    problems: list[str]
    rows: list[str]
    name_room: float
    header_room: dict[str, float]
    last_row: str = "reference variance"

    def names(self, labels: Labels) -> dict[str, list[str]]:
        """Each row's name in lines, the last row's (the reference variance) under ``""``."""
        names = {e: wrap_words(labels.estimator(e), self.name_room) for e in self.rows}
        return {**names, "": wrap_words(self.last_row, self.name_room)}

    def headers(self, labels: Labels) -> dict[str, list[str]]:
        return {p: wrap_words(labels.problem(p), self.header_room[p]) for p in self.problems}


def _rows(table: Pivot, problems: list[str]) -> list[str]:
    """The estimators with an entry in some of ``problems``, in the table's order."""
    return [e for e in table.estimators if any((p, e) in table.cells for p in problems)]


def _entries_width(table: Pivot, problem: str) -> float:
    widths = [c.width_pt() for (p, _), c in table.cells.items() if p == problem]
    widths += [c.width_pt() for p, c in table.reference_variance.items() if p == problem]
    return max(widths, default=0.0)


def _reference_row(table: Pivot) -> str:
    return "log₁₀ reference variance" if table.compact else "reference variance"


def _layout_width(table: Pivot, layout: Layout, labels: Labels) -> float:
    names = layout.names(labels)
    name_col = max(text_pt(line) for lines in names.values() for line in lines) \
        + 2 * TABCOLSEP_PT
    headers = layout.headers(labels)
    columns = sum(max(_entries_width(table, p), *(text_pt(line) for line in headers[p]))
                  + 2 * TABCOLSEP_PT for p in layout.problems)
    return name_col + columns


def fit(table: Pivot, problems: list[str], labels: Labels, width_pt: float) -> Layout:
    """The layout of ``problems`` in one float: headers and names on one line, broken
    between words, one at a time and the widest saving first, only while the float is
    wider than ``width_pt`` (less :data:`MARGIN_PT`). The result may still be too wide."""
    budget = width_pt - MARGIN_PT
    rows = _rows(table, problems)
    layout = Layout(problems, rows, math.inf, dict.fromkeys(problems, math.inf),
                    _reference_row(table))
    width = _layout_width(table, layout, labels)
    while width > budget:
        options = []
        for problem in problems:
            current = max(text_pt(line) for line in layout.headers(labels)[problem])
            entries = _entries_width(table, problem)
            if current > entries:
                room = dict(layout.header_room)
                room[problem] = current - 0.5
                options.append(replace(layout, header_room=room))
        names = layout.names(labels)
        current = max(text_pt(line) for lines in names.values() for line in lines)
        options.append(replace(layout, name_room=current - 0.5))
        best = None
        for option in options:
            narrower = _layout_width(table, option, labels)
            if narrower < width - 0.01 and (best is None or narrower < best[0]):
                best = (narrower, option)
        if best is None:
            break
        width, layout = best
    return layout


def split(table: Pivot, labels: Labels, width_pt: float = TEXTWIDTH_PT) -> list[Layout]:
    """Problems in as few floats as fit ``width_pt`` (each float's rows the estimators of
    its problems), keeping alike problems together (see
    :func:`~vrbench.reports.paging.paginate`), each laid out by :func:`fit`."""
    groups = [[p for p in group if p in table.problems] for group in table.groups]
    parts = paginate([g for g in groups if g],
                     lambda part: _layout_width(table, fit(table, part, labels, width_pt),
                                                labels),
                     width_pt - MARGIN_PT)
    layouts = [fit(table, part, labels, width_pt) for part in parts]
    # Every float breaks the estimators' names alike: a name reads the same in each part.
    room = min(layout.name_room for layout in layouts) if layouts else math.inf
    return [replace(layout, name_room=room) for layout in layouts]


def choose(frame: pd.DataFrame, n: int, reference: str, labels: Labels, width_pt: float,
           numbers: str = "auto") -> tuple[Pivot, list[Layout]]:
    """The pivot in the number form asked for (see :data:`NUMBER_FORMATS`) and its floats."""
    if numbers not in NUMBER_FORMATS:
        raise ValueError(f"unknown number format {numbers!r}; valid: "
                         f"{', '.join(NUMBER_FORMATS)}")
    full = pivot(frame, n, reference)
    if numbers == "interval":
        return full, split(full, labels, width_pt)
    compact = pivot(frame, n, reference, compact=True)
    if numbers == "compact":
        return compact, split(compact, labels, width_pt)
    parts = split(full, labels, width_pt)
    if len(parts) == 1:
        return full, parts
    return compact, split(compact, labels, width_pt)


def _texttt(name: str) -> str:
    return rf"\texttt{{{_escape(name)}}}"


NOTE_STYLE = r"\scriptsize\leftskip=0pt\rightskip=0pt\parfillskip=0pt plus 1fil "
"""The notation under a float: small and justified (the float itself is centred)."""


def notation(table: Pivot) -> str:
    """The notation of the pivot, once: what the numbers and marks mean (only the marks
    that appear), as the paragraph under the first float."""
    marks = table.marks()
    parts = []
    if table.compact:
        parts.append(r"Entries are $\log_{10}$ of the ratio: $-1.0$ is ten times lower, "
                     r"$0$ the reference itself; the intervals are in the per-cell table.")
    else:
        parts.append(r"$9.8(3)\times10^{-1}$ reads $(9.8 \pm 0.3)\times10^{-1}$, the "
                     r"parenthesised digit the half-width of the 95\% interval.")
    if "bold" in marks:
        parts.append(r"\textbf{Bold}: the unbiased estimator of lowest variance and every "
                     r"unbiased one whose interval overlaps it.")
    if "italic" in marks or "dagger" in marks:
        which = []
        if "italic" in marks:
            which.append(r"\textit{Italic}: biased by design")
        if "dagger" in marks:
            which.append(r"$^\dagger$: the bias test rejects the estimator's claim of unbiasedness "
                         rf"(family-wise level {FAMILY_ALPHA * 100:g}\%)")
        parts.append("; ".join(which) + r"; these show the mean squared error "
                     r"$\|\mathrm{bias}\|^2 + \mathrm{variance}$ relative to the reference's "
                     r"variance.")
    special = []
    if "exact" in marks:
        special.append(rf"Exact: zero variance up to rounding (below "
                       rf"$10^{{{round(math.log10(EXACT_RTOL))}}}\,\|\nabla J\|^2$)")
    if "—" in marks:
        special.append("---: not applicable")
    if "err" in marks or "miss" in marks:
        special.append("err, miss: the cell failed, or was not computed")
    if NO_REFERENCE in marks:
        special.append(rf"{NO_REFERENCE}: no reference variance to compare with")
    if special:
        parts.append("; ".join(special) + ".")
    parts.append(rf"The last row is the variance of each problem's reference itself"
                 rf"{' (its log$_{10}$)' if table.compact else ''}.")
    return " ".join(parts)


def _caption(table: Pivot, reference: str, part: str, labels: Labels,
             problems: list[str]) -> str:
    ref = table.describe(reference, problems, lambda e: latex(labels.estimator(e)),
                         lambda p: latex(labels.problem(p)))
    what = "$\\log_{10}$ of the variance" if table.compact else "Variance"
    return (rf"{what} of one gradient estimate relative to {ref}; $n = {table.n}$ samples "
            rf"per estimate, $R = {_count(table.replicates)}$ estimates per cell{part}.")


def _count(value: int) -> str:
    """A count as LaTeX math: ``10^{4}``, or ``20{,}000``."""
    if value >= 1000 and math.log10(value).is_integer():
        return f"10^{{{round(math.log10(value))}}}"
    return f"{value:,}".replace(",", "{,}")


CAPTION_SPACING = (r"\setlength{\abovecaptionskip}{0pt}\setlength{\belowcaptionskip}{5pt}")
"""A caption above its table: standard classes put their caption skip above the caption
and none below it, so the caption would touch the table's top rule."""


def latex_relative(frame: pd.DataFrame, n: int, reference: str = REFERENCE,
                   figure_style: FigureStyle = STYLES["paper"], prefix: str = "tab:vrbench",
                   labels: Labels | None = None, numbers: str = "auto") -> str:
    """The pivot as one or more floats of the style's ``table_env`` (``table*``: across a
    two-column page; ``table``: in one column) that fit its ``table_width_pt``, each with a
    short ``\\caption`` and a ``\\label`` (``<prefix>-relative-variance``, numbered when
    split), the notation once under the first; split by problems only where one float
    cannot hold them in the compact form."""
    labels = labels or Labels()
    env = figure_style.table_env
    table, layouts = choose(frame, n, reference, labels, figure_style.table_width_pt, numbers)
    label = f"{prefix}-relative-variance"
    floats = []
    first = label  # the same in every style, split or not; the parts after it -2, -3, ...
    for index, layout in enumerate(layouts, start=1):
        part = "" if len(layouts) == 1 else f" (part {index} of {len(layouts)})"
        group = layout.problems
        caption = _caption(table, reference, part, labels, group)
        headers = layout.headers(labels)
        names = layout.names(labels)
        lines = [rf"\begin{{{env}}}[tbp]", r"\centering", r"\footnotesize",
                 rf"\setlength{{\tabcolsep}}{{{TABCOLSEP_PT:g}pt}}", CAPTION_SPACING,
                 rf"\caption{{{caption}}}",
                 _part_labels(label, index, len(layouts)),
                 r"\begin{tabular}{l" + "r" * len(group) + "}", r"\toprule",
                 "estimator & " + " & ".join(_stacked(headers[p]) for p in group) + r" \\",
                 r"\midrule"]
        family = None
        for estimator in layout.rows:
            fam = table.families.get(estimator)
            if family is not None and fam != family:
                lines.append(r"\addlinespace")
            family = fam
            name = _stacked(names[estimator], "l").replace("[b]", "[t]")
            name = rf"\textit{{{name}}}" if estimator in table.italic else name
            values = [table.cells.get((p, estimator), Cell("—", numeric=False)).latex()
                      for p in group]
            lines.append(" & ".join([name, *values]) + r" \\")
        lines.append(r"\midrule")
        refs = [table.reference_variance.get(p, Cell("—", numeric=False)).latex()
                for p in group]
        last = _stacked(names[""], "l").replace("[b]", "[t]")
        lines.append(" & ".join([rf"\textit{{{last}}}", *refs]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        text = notation(table) if index == 1 else rf"Notation as in Table~\ref{{{first}}}."
        lines += [r"\par\smallskip", rf"{{{NOTE_STYLE}{text}\par}}"]
        lines.append(rf"\end{{{env}}}")
        floats.append("\n".join(lines))
    described = plain(table.describe(reference, None, labels.estimator, labels.problem))
    header = (f"% vrbench: variance relative to {described} at n = {n}. Needs "
              f"\\usepackage{{booktabs}}. Labels: {first}"
              f"{'' if len(layouts) == 1 else f' (also {first}-1), then {first}-2 on'}.\n")
    return header + "\n\n".join(floats) + "\n"


def _part_labels(label: str, index: int, parts: int) -> str:
    """The ``\\label`` of part ``index`` of ``parts``: the first is ``label`` (and, when
    split, also ``label-1``), so that a paper's reference to it holds whatever the style."""
    if index > 1:
        return rf"\label{{{label}-{index}}}"
    return rf"\label{{{label}}}" + (rf"\label{{{label}-1}}" if parts > 1 else "")


CELL_COLUMNS = ("n", "‖bias‖", "p(bias)", "variance (95% CI)", "rel. variance", "MSE",
                "µs / estimate")
"""The per-cell table's columns after the estimator (and the problem, in Markdown)."""
LATEX_CELL_HEADERS = {"n": "$n$", "‖bias‖": r"$\|\mathrm{bias}\|$", "p(bias)": "$p$(bias)",
                      "variance (95% CI)": r"variance\\(95\% CI)",
                      "rel. variance": r"variance\\rel.\ to ref.",
                      "µs / estimate": r"$\mu$s per\\estimate"}
"""The LaTeX per-cell table's columns (MSE = ‖bias‖² + variance is left out to fit)."""


def cell_rows(frame: pd.DataFrame, reference: str = REFERENCE, relative: bool = True
              ) -> list[tuple[str, str, dict[str, Cell]]]:
    """(problem, estimator, cells) for every cell that ran, by problem, then estimators in
    :func:`~vrbench.reports.values.row_order` and n; without the "rel. variance" entry
    unless ``relative`` (a selection in which no reference ran has no ratios at all)."""
    ran = frame[frame["status"] != "skipped"]
    references = problem_references(frame, reference)
    out = []
    for problem in [p for p in problem_order(ran) if p in set(ran["problem"])]:
        rows = ran[ran["problem"] == problem]
        for estimator in row_order(rows, reference):
            for _, row in rows[rows["estimator"] == estimator].sort_values(
                    "n_samples").iterrows():
                values = _cell_values(row, references.get(problem))
                if not relative:
                    values.pop("rel. variance", None)
                out.append((problem, estimator, values))
    return out


def _cell_values(row: pd.Series, reference: str | None) -> dict[str, Cell]:
    """The entries of one cell's row, by column; a failed cell has ``n`` and ``error``."""
    n = Cell(str(int(row["n_samples"])))
    if row["status"] != "ok":
        error = str(row["error"]).split("\n")[0][:60]
        label = "failed" if row["status"] == "error" else "missing"
        return {"n": n, "error": Cell(f"{label}: {error}", numeric=False)}
    bias = Cell("exact", numeric=False) if row["bias_exact"] else _sci_cell(row["bias_norm"], 2)
    bias = Cell(bias.mantissa, bias.exponent, dagger=bool(row["bias_rejected"]),
                numeric=bias.numeric)
    pvalue = pvalue_cell(row["bias_pvalue"])
    marks = {"bold": bool(row.get("best", False))}
    if row["exact"]:
        variance = Cell("exact", numeric=False, **marks)
        mse = Cell("exact", numeric=False) if row["bias_exact"] else _sci_cell(row["mse"], 2)
    else:
        variance = _interval_cell(row["variance"], row["variance_ci_low"],
                                  row["variance_ci_high"], **marks)
        mse = _sci_cell(row["mse"], 2)
    rel = _variance_ratio_cell(row, reference)
    time = _sci_cell(row["time_per_estimate_s"] * 1e6, 2)
    return dict(zip(CELL_COLUMNS, (n, bias, pvalue, variance, rel, mse, time), strict=True))


def _variance_ratio_cell(row: pd.Series, reference: str | None) -> Cell:
    """The appendix's "variance rel. to ref." entry: the variance ratio, biased or not (its
    MSE has a column of its own), without marks (they are on the variance)."""
    if row["exact"]:
        return Cell("exact", numeric=False)
    if row["estimator"] == reference:
        return Cell("1")
    if pd.isna(row["ratio"]):
        return Cell(NO_REFERENCE, numeric=False)
    return _interval_cell(row["ratio"], row["ratio_low"], row["ratio_high"], digits=1)


CONTINUED = r"""\makeatletter
\ifdefined\vrbench@continued\else
% A page that continues a problem repeats its name under the column headers: each problem's
% heading sets a mark (a class of its own, so running heads are untouched), and longtable's
% output routine, after the page, writes the mark of its last problem on the next one.
\ifdefined\newmarks\newmarks\vrbench@marks\else\chardef\vrbench@marks=251 \fi
\let\vrbench@LT@output\LT@output
\def\LT@output{\vrbench@LT@output
  \ifnum\outputpenalty<-\@Mi\else
    \expandafter\def\expandafter\vrbench@problem\expandafter{\botmarks\vrbench@marks}%
    \ifx\vrbench@problem\@empty\else\vrbench@continued\fi
  \fi}
\def\vrbench@continued{\hbox{\footnotesize\strut\hskip\tabcolsep
  \textbf{\boldmath\vrbench@problem} (continued)}\nobreak}
\def\vrbenchproblem#1{\marks\vrbench@marks{#1}}
\fi
\makeatother"""
"""LaTeX that repeats the problem's name, "(continued)", at the top of a page of the
per-cell ``longtable`` that starts in the middle of a problem (``\\endhead`` can hold only
fixed text)."""

TWO_COLUMN_NOTE = (
    "% longtable cannot be used in two-column mode (LaTeX stops with \"longtable not in "
    "1-column mode\").\n% In a two-column document, \\input this file after \\onecolumn "
    "(e.g. in an appendix), or\n% \\input table_cells_floats.tex instead: the same rows as "
    "page-sized table* floats.")


def _cells_caption(frame: pd.DataFrame, labels: Labels) -> str:
    """The per-cell table's caption: one sentence (the notation is :func:`_cells_notation`)."""
    ran = frame[frame["status"] != "skipped"]
    return (rf"Every cell of the benchmark: {ran['problem'].nunique()} problems, "
            rf"{ran['estimator'].nunique()} estimators, $n = "
            + ", ".join(str(int(v)) for v in sorted(ran["n_samples"].unique())) + "$.")


def _cells_notation(frame: pd.DataFrame, reference: str, labels: Labels,
                    relative: bool = True) -> str:
    """What the per-cell table's columns and marks mean: only the marks that occur."""
    ran = frame[frame["status"] != "skipped"]
    ok = ran[ran["status"] == "ok"]
    parts = [r"Variance: of one estimate, the half-width of its 95\% interval in "
             r"parentheses"]
    if relative:
        ref = describe_sweep_reference(frame, reference, lambda e: latex(labels.estimator(e)),
                                       lambda p: latex(labels.problem(p)))
        parts.append(rf"variance rel.\ to ref.: relative to {ref} at the same $n$")
    parts.append(r"$p$(bias): the bias test's $p$-value")
    if "best" in ok and ok["best"].fillna(False).astype(bool).any():
        parts.append(r"\textbf{Bold}: the lowest-variance unbiased estimator and its ties")
    if _biased_names(ran):
        parts.append(r"\textit{Italic}: biased by design")
    if ok["bias_rejected"].fillna(False).astype(bool).any():
        parts.append(rf"$^\dagger$: unbiasedness rejected (family-wise level "
                     rf"{FAMILY_ALPHA * 100:g}\%)")
    if ok["exact"].fillna(False).astype(bool).any():
        parts.append("exact: zero up to rounding")
    if relative and (ok["ratio"].isna() & ~ok["exact"].astype(bool)).any():
        parts.append(rf"{NO_REFERENCE}: no reference variance to compare with")
    text = "; ".join(parts) + "."
    return text + latex(ground_truth_note(frame, labels.problem))


def _cell_keys(relative: bool = True) -> list[str]:
    return [k for k in LATEX_CELL_HEADERS if relative or k != "rel. variance"]


def _cell_header(relative: bool = True) -> str:
    return " & ".join(["estimator", *(r"\begin{tabular}[b]{@{}r@{}}" + LATEX_CELL_HEADERS[k]
                                      + r"\end{tabular}" for k in _cell_keys(relative))]) \
        + r" \\"


def _cell_line(estimator: str, cells: dict[str, Cell], name: str, columns: int) -> str:
    if "error" in cells:  # a failed cell: the error across the numbers' columns
        values = [cells["n"].latex(), rf"\multicolumn{{{columns - 2}}}{{l}}"
                  rf"{{{_escape(cells['error'].mantissa)}}}"]
    else:
        values = [cells[k].latex() for k in LATEX_CELL_HEADERS if k in cells]
    return " & ".join([name, *values]) + r" \\"


def latex_cells(frame: pd.DataFrame, reference: str = REFERENCE,
                labels: Labels | None = None, prefix: str = "tab:vrbench",
                relative: bool = True) -> str:
    """Every cell that ran, as an appendix ``longtable`` (one-column pages, flush left),
    grouped by problem, with the pivot's marks; a page that continues a problem starts with
    its name and "(continued)" (see :data:`CONTINUED`). In a two-column document it must
    follow ``\\onecolumn`` (the file says so); :func:`latex_cells_floats` is the form that
    works there."""
    labels = labels or Labels()
    columns = len(_cell_keys(relative)) + 1
    header = _cell_header(relative)
    note = _cells_notation(frame, reference, labels, relative)
    lines = [r"% vrbench: every cell. Needs \usepackage{booktabs,longtable}.", TWO_COLUMN_NOTE,
             CONTINUED, r"\begingroup\footnotesize",
             rf"\setlength{{\tabcolsep}}{{{TABCOLSEP_PT:g}pt}}", r"\setlength{\LTleft}{0pt}",
             r"\begin{longtable}{l" + "r" * (columns - 1) + "}",
             rf"\caption{{{_cells_caption(frame, labels)}}}"
             rf"\label{{{prefix}-cells}}\\", r"\toprule", header, r"\midrule",
             r"\endfirsthead", r"\toprule", header, r"\midrule", r"\endhead",
             r"\bottomrule", r"\endfoot"]
    previous, last = None, None
    italic = _biased_names(frame)
    for problem, estimator, cells in cell_rows(frame, reference, relative):
        if problem != previous:
            shown = latex(labels.problem(problem))
            # The mark ends the previous problem before the space (a break there continues
            # nothing) and names this one after it, where no break is allowed.
            if previous is not None:
                lines += [r"\noalign{\vrbenchproblem{}}", r"\addlinespace"]
            lines.append(rf"\noalign{{\vrbenchproblem{{{shown}}}\penalty10000}}")
            lines.append(rf"\multicolumn{{{columns}}}{{l}}{{\textbf{{\boldmath {shown}}}}}"
                         r" \\* \nopagebreak")
            previous, last = problem, None
        name = latex(labels.estimator(estimator))
        name = rf"\textit{{{name}}}" if estimator in italic else name
        # An estimator's rows (one per n) stay on one page, so that a page starts with a name.
        name, last = (r"\nopagebreak" if estimator == last else name), estimator
        lines.append(_cell_line(estimator, cells, name, columns))
    # The notation after the table (a row as wide as the caption would widen its columns).
    lines += [r"\noalign{\vrbenchproblem{}}", r"\end{longtable}",
              rf"{{{NOTE_STYLE}Notation of Table~\ref{{{prefix}-cells}}: {note}\par}}",
              r"\endgroup"]
    return "\n".join(lines) + "\n"


FLOAT_ROWS = 48
"""Rows of the per-cell table per float (a problem's heading counting as two): a page of a
two-column article at 8 pt (``\\textheight`` 592 pt, 9.5 pt a row) less a continuation's
caption and the header; the first float, whose caption is longer, holds four fewer."""


def latex_cells_floats(frame: pd.DataFrame, reference: str = REFERENCE,
                       labels: Labels | None = None, prefix: str = "tab:vrbench",
                       env: str = "table*", rows_per_float: int = FLOAT_ROWS,
                       relative: bool = True) -> str:
    """Every cell that ran, as page-sized ``env`` floats (``table*``: across both columns)
    of at most ``rows_per_float`` rows: the per-cell table in a form a two-column document
    can hold (``longtable`` cannot be used there). An estimator's rows stay in one float; a
    float that continues a problem starts with its name and "(continued)". Labelled
    ``<prefix>-cells-floats``, the later floats ``-2``, ``-3``, ..."""
    labels = labels or Labels()
    columns = len(_cell_keys(relative)) + 1
    italic = _biased_names(frame)
    blocks: list[tuple[str, str, list[str]]] = []  # (problem, estimator, its rows)
    for problem, estimator, cells in cell_rows(frame, reference, relative):
        if blocks and blocks[-1][:2] == (problem, estimator):
            blocks[-1][2].append(_cell_line(estimator, cells, "", columns))
            continue
        name = latex(labels.estimator(estimator))
        name = rf"\textit{{{name}}}" if estimator in italic else name
        blocks.append((problem, estimator, [_cell_line(estimator, cells, name, columns)]))
    problem_rows: dict[str, int] = {}
    for problem, _, rows in blocks:
        problem_rows[problem] = problem_rows.get(problem, 0) + len(rows)
    pages: list[list[tuple[str, str, list[str]]]] = [[]]
    used = 0
    for block in blocks:
        room = rows_per_float - (4 if len(pages) == 1 else 0) - used
        heading = not pages[-1] or pages[-1][-1][0] != block[0]
        cost = len(block[2]) + (2 if heading else 0)
        # A problem starts a new float where it would not fit the rest of this one but fits
        # a float of its own: floats break between problems wherever they can.
        whole = problem_rows[block[0]] + 2
        if pages[-1] and (cost > room or (heading and whole > room
                                          and whole <= rows_per_float)):
            pages.append([])
            used = 0
            cost = len(block[2]) + (2 if heading else 1)
        pages[-1].append(block)
        used += cost
    label = f"{prefix}-cells-floats"
    floats = []
    for index, blocks_ in enumerate(pages, start=1):
        if not blocks_:
            continue
        caption = (_cells_caption(frame, labels) if index == 1 else
                   rf"Every cell of the benchmark, continued (part {index} of {len(pages)}); "
                   rf"notation as in Table~\ref{{{label}}}.")
        lines = [rf"\begin{{{env}}}[p]", r"\centering", r"\footnotesize",
                 rf"\setlength{{\tabcolsep}}{{{TABCOLSEP_PT:g}pt}}", CAPTION_SPACING,
                 rf"\caption{{{caption}}}",
                 rf"\label{{{label}{'' if index == 1 else f'-{index}'}}}",
                 r"\begin{tabular}{l" + "r" * (columns - 1) + "}", r"\toprule",
                 _cell_header(relative), r"\midrule"]
        previous = None
        for problem, _, rows in blocks_:
            if problem != previous:
                shown = latex(labels.problem(problem))
                continued = previous is None and index > 1 and \
                    pages[index - 2][-1][0] == problem
                if previous is not None:
                    lines.append(r"\addlinespace")
                lines.append(rf"\multicolumn{{{columns}}}{{l}}{{\textbf{{\boldmath {shown}}}"
                             rf"{' (continued)' if continued else ''}}} \\")
                previous = problem
            lines += rows
        lines += [r"\bottomrule", r"\end{tabular}"]
        if index == 1:
            lines += [r"\par\smallskip",
                      rf"{{{NOTE_STYLE}{_cells_notation(frame, reference, labels, relative)}"
                      r"\par}"]
        lines.append(rf"\end{{{env}}}")
        floats.append("\n".join(lines))
    return (r"% vrbench: every cell, as page-sized floats for two-column documents. Needs "
            r"\usepackage{booktabs}." + "\n" + "\n\n".join(floats) + "\n")


def _biased_names(frame: pd.DataFrame) -> set[str]:
    claims = frame.dropna(subset=["unbiased_claim"]).drop_duplicates("estimator")
    return set(claims.loc[~claims["unbiased_claim"].astype(bool), "estimator"])


def latex_document(inputs: list[str], twocolumn: bool = True) -> str:
    """A two-column article that typesets ``inputs`` (file names): the floats where they
    fall, the ``longtable`` appendix (a name with "cells" and not "floats") after
    ``\\onecolumn``, as a two-column paper includes it."""
    body = []
    for name in inputs:
        if "cells" in name and "floats" not in name:
            body.append(r"\onecolumn")
        body.append(rf"\input{{{name}}}")
    option = "[twocolumn]" if twocolumn else ""
    return "\n".join([
        rf"\documentclass{option}{{article}}",
        r"\usepackage{booktabs,longtable}",
        r"\begin{document}", *body, r"\end{document}"]) + "\n"


def markdown_tables(frame: pd.DataFrame, n: int, reference: str = REFERENCE,
                    labels: Labels | None = None, relative: bool = True) -> str:
    """The pivot and the per-cell table in Markdown, with the same marks and names; without
    the pivot and the "rel. variance" column unless ``relative``."""
    labels = labels or Labels()
    lines = _markdown_pivot(frame, n, reference, labels) if relative else []
    header = ("problem", "estimator", *(c for c in CELL_COLUMNS
                                        if relative or c != "rel. variance"))
    note = plain(ground_truth_note(frame, labels.problem)).strip()
    lines += ["## Every cell", *(["", note] if note else []), "",
              "| " + " | ".join(header) + " |",
              "|---|---|" + "---:|" * (len(header) - 2)]
    for problem, estimator, cells in cell_rows(frame, reference, relative):
        values = [c.markdown() for c in cells.values()]
        lines.append("| " + " | ".join([plain(labels.problem(problem)),
                                         plain(labels.estimator(estimator)), *values]) + " |")
    return "\n".join(lines) + "\n"


def _markdown_pivot(frame: pd.DataFrame, n: int, reference: str, labels: Labels
                    ) -> list[str]:
    table = pivot(frame, n, reference)
    unreferenced = (f" {NO_REFERENCE}: no reference variance to compare with."
                    if table.unreferenced else "")
    described = plain(table.describe(reference, None, labels.estimator, labels.problem))
    marks = table.marks()
    key = ["9.8(3)e-1 = (9.8 ± 0.3)·10⁻¹, the 95% interval's half-width in the last digit"]
    key += [text for mark, text in (
        ("bold", "**bold**: best unbiased and ties"), ("dagger", "†: unbiasedness rejected"),
        ("italic", "*italic*: biased by design"), ("exact", "exact: zero variance"),
        ("—", "—: not applicable")) if mark in marks]
    if "italic" in marks or "dagger" in marks:
        key.append("biased entries: mean squared error relative to the reference variance")
    lines = [f"## Variance relative to {described} at n = {n}", "",
             "; ".join(key) + "." + unreferenced,
             "", "| estimator | " + " | ".join(plain(labels.problem(p))
                                                 for p in table.problems) + " |",
             "|---|" + "---:|" * len(table.problems)]
    for estimator in table.estimators:
        shown = plain(labels.estimator(estimator))
        name = f"*{shown}*" if estimator in table.italic else shown
        values = [table.cells.get((p, estimator), Cell("—", numeric=False)).markdown()
                  for p in table.problems]
        lines.append("| " + " | ".join([name, *values]) + " |")
    refs = [table.reference_variance.get(p, Cell("—", numeric=False)).markdown()
            for p in table.problems]
    lines.append("| *reference variance* | " + " | ".join(refs) + " |")
    return [*lines, ""]
