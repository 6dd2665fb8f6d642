"""Paper tables: a compact pivot of relative variances (LaTeX floats that fit a two-column
article's ``\\textwidth`` in the paper style, ``table`` floats that fit its
``\\columnwidth`` in the column style), the per-cell appendix table (``longtable``), and
both in Markdown.

Every number has one format: a value and the half-width of its 95% interval in units of the
last digit, ``9.8(3)×10⁻¹`` for (9.8 ± 0.3)·10⁻¹ (``9.8(3)e-1`` in Markdown). Bold marks
the lowest-variance unbiased estimator of a problem and every unbiased one whose interval
overlaps it; a dagger, an estimator whose claim of unbiasedness the bias test rejects;
italics, an estimator biased by design. The LaTeX needs ``booktabs`` (and ``longtable`` for
the appendix table).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from vrbench.reports.axes import break_at_underscores
from vrbench.reports.console import format_interval
from vrbench.reports.paging import paginate
from vrbench.reports.style import TEXTWIDTH_PT, estimator_order
from vrbench.reports.values import (
    EXACT_RTOL,
    FAMILY_ALPHA,
    NO_REFERENCE,
    REFERENCE,
    describe_reference,
    describe_sweep_reference,
    format_sci,
    problem_groups,
    problem_order,
    problem_references,
    shown_variance,
)

TABCOLSEP_PT = 4.0
HEADER_CHARS = 10
"""A header is broken only where it is wider than its column's entries and than this many
characters."""
MARGIN_PT = 5.0
"""Room left when splitting a table, for what the width estimates below miss: a 4-problem,
6-estimator pivot was estimated at 352.6 pt and typeset by pdflatex at 353.8 pt."""

_NARROW = {".": 2.4, ",": 2.4, "(": 3.3, ")": 3.3, "-": 2.9, " ": 2.8, "i": 2.4, "l": 2.4,
           "j": 2.6, "t": 3.3, "f": 2.6, "r": 3.3, "m": 7.1, "w": 6.2, "_": 3.1}
"""Widths (pt) of characters of Computer Modern at 8 pt (``\\footnotesize``) that differ
from :data:`_DEFAULT_PT`, measured with pdflatex; digits are 4.25 pt."""
_DEFAULT_PT = 4.3
_EXPONENT_PT = 26.0
"""Width of ``\\times10^{-k}`` at 8 pt, one digit of k; 3 pt more per further digit."""


def text_pt(text: str, bold: bool = False) -> float:
    """Width of ``text`` in the tables' font, a little generous: the split of wide tables is
    checked by compiling them (see the test suite)."""
    width = sum(_NARROW.get(c, _DEFAULT_PT) for c in text)
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
        if self.bold:  # \boldmath: bold numbers without a package
            text = rf"{{\boldmath{text}}}" if self.numeric else rf"\textbf{{{text}}}"
        return text + (r"$^\dagger$" if self.dagger else "")

    def markdown(self) -> str:
        text = self.mantissa + (f"e{self.exponent}" if self.exponent else "")
        text = f"**{text}**" if self.bold else text
        return text + ("†" if self.dagger else "")

    def width_pt(self) -> float:
        exponent = (_EXPONENT_PT + 3.0 * (len(str(abs(self.exponent))) - 1)
                    if self.exponent else 0.0)
        return (text_pt(self.mantissa, self.bold) + exponent * (1.2 if self.bold else 1.0)
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


def relative_cell(row: pd.Series, reference: str | None) -> Cell:
    """The pivot's entry for one cell: its variance relative to ``reference``, the
    reference of its problem (None: no reference ran there). Bold marks the best variance,
    whatever the ratio."""
    marks = {"bold": bool(row.get("best", False)), "dagger": bool(row["bias_rejected"])}
    if row["status"] != "ok":
        return Cell("err" if row["status"] == "error" else "miss", numeric=False, dagger=False)
    if row["exact"]:
        return Cell("exact", numeric=False, **marks)
    if row["estimator"] == reference:
        return Cell("1", **marks)
    if pd.isna(row["ratio"]):
        return Cell(NO_REFERENCE, numeric=False, **marks)
    return _interval_cell(row["ratio"], row["ratio_low"], row["ratio_high"], digits=1, **marks)


def _escape(text: str) -> str:
    for char, replacement in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"),
                              ("&", r"\&"), ("#", r"\#"), ("$", r"\$"), ("{", r"\{"),
                              ("}", r"\}")):
        text = text.replace(char, replacement)
    return text


def _header_lines(problem: str, room_pt: float = 0.0) -> list[str]:
    """A problem name broken after underscores where it is wider than ``room_pt`` and than
    :data:`HEADER_CHARS` characters, into as few lines as that allows (see
    :func:`~vrbench.reports.axes.break_at_underscores`)."""
    room = max(room_pt, _DEFAULT_PT * HEADER_CHARS)
    return break_at_underscores(problem, lambda line: text_pt(line) <= room)


def _latex_header(problem: str, room_pt: float = 0.0) -> str:
    lines = [_escape(line) for line in _header_lines(problem, room_pt)]
    if len(lines) == 1:
        return lines[0]
    return r"\begin{tabular}[b]{@{}c@{}}" + r"\\".join(lines) + r"\end{tabular}"


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

    def describe(self, reference: str, problems: list[str] | None = None,
                 code: Callable[[str], str] = str) -> str:
        """``reference`` with the exceptions among ``problems`` (default: all)."""
        return describe_reference(self.references, reference,
                                  self.problems if problems is None else problems, code)

    @property
    def unreferenced(self) -> bool:
        """Whether some entry reads :data:`~vrbench.reports.values.NO_REFERENCE`."""
        return any(c.mantissa == NO_REFERENCE for c in self.cells.values())


def pivot(frame: pd.DataFrame, n: int, reference: str = REFERENCE) -> Pivot:
    """The relative-variance pivot of an annotated table (with ``ratio`` and ``best``)."""
    ran = frame[(frame["status"] != "skipped") & (frame["n_samples"] == n)]
    problems = [p for p in problem_order(ran) if p in set(ran["problem"])]
    references = {p: r for p, r in problem_references(frame, reference).items()
                  if p in problems}
    estimators = estimator_order(ran["estimator"],
                                 dict(zip(ran["estimator"], ran["family"], strict=True)))
    used = [reference, *(r for r in dict.fromkeys(references.values())
                         if r is not None and r != reference)]
    for name in reversed(used):  # the references first: every ratio is to one of them
        if name in estimators:
            estimators.remove(name)
            estimators.insert(0, name)
    cells = {(r["problem"], r["estimator"]): relative_cell(r, references.get(r["problem"]))
             for _, r in ran.iterrows()}
    claims = ran.drop_duplicates("estimator").set_index("estimator")["unbiased_claim"]
    italic = {e for e, c in claims.items() if pd.notna(c) and not c}
    refs = ran[(ran["estimator"] == ran["problem"].map(references)) & (ran["status"] == "ok")]
    shown = shown_variance(refs)
    reference_variance = {
        r["problem"]: _interval_cell(shown.loc[i, "variance"], shown.loc[i, "low"],
                                     shown.loc[i, "high"], digits=1)
        if shown.loc[i, "variance"] > 0
        else Cell("exact", numeric=False) for i, r in refs.iterrows()}
    replicates = int(ran["replicates"].median()) if not ran.empty else 0
    return Pivot(n, replicates, problems, estimators, cells, italic, reference_variance,
                 problem_groups(ran), references)


def _name_width(names: list[str]) -> float:
    return max(text_pt(name) for name in names) + 2 * TABCOLSEP_PT


def _entries_width(table: Pivot, problem: str) -> float:
    widths = [c.width_pt() for (p, _), c in table.cells.items() if p == problem]
    widths += [c.width_pt() for p, c in table.reference_variance.items() if p == problem]
    return max(widths, default=0.0)


def _column_width(table: Pivot, problem: str) -> float:
    entries = _entries_width(table, problem)
    header = max(text_pt(line) for line in _header_lines(problem, entries))
    return max(entries, header) + 2 * TABCOLSEP_PT


def _rows(table: Pivot, problems: list[str]) -> list[str]:
    """The estimators with an entry in some of ``problems``, in the table's order."""
    return [e for e in table.estimators if any((p, e) in table.cells for p in problems)]


def _part_width(table: Pivot, problems: list[str]) -> float:
    return (_name_width([*_rows(table, problems), "reference variance"])
            + sum(_column_width(table, p) for p in problems))


def split_columns(table: Pivot, width_pt: float = TEXTWIDTH_PT) -> list[list[str]]:
    """Problems in as few tables as fit ``width_pt`` (the estimator names included: a table
    has the rows of its problems only), keeping alike problems together (see
    :func:`~vrbench.reports.paging.paginate`)."""
    groups = [[p for p in group if p in table.problems] for group in table.groups]
    return paginate([g for g in groups if g], lambda part: _part_width(table, part),
                    width_pt - MARGIN_PT)


def _texttt(name: str) -> str:
    return rf"\texttt{{{_escape(name)}}}"


def _caption(table: Pivot, reference: str, part: str, first_label: str | None,
             problems: list[str]) -> str:
    ref = table.describe(reference, problems, _texttt)
    what = (rf"Variance of one gradient estimate relative to {ref} at $n = {table.n}$ samples "
            rf"per estimate, $R = {table.replicates}$ estimates per cell; lower is better{part}.")
    if first_label is not None:  # a later part: the notation is that of the first
        return what + rf" Notation as in Table~\ref{{{first_label}}}."
    unreferenced = (rf" {NO_REFERENCE}: no reference variance to compare with (none of "
                    r"the reference estimators ran on the problem, or its variance is zero)."
                    if table.unreferenced else "")
    return what + unreferenced + (
        r" $9.8(3)\times10^{-1}$ reads $(9.8 \pm 0.3)\times10^{-1}$, the parenthesised "
        r"digits being the half-width of the 95\% interval in units of the last digit. exact: "
        rf"zero variance up to rounding (below $10^{{{round(math.log10(EXACT_RTOL))}}}\,"
        r"\|\nabla J\|^2$); ---: not applicable; err: the cell failed. \textbf{Bold}: the "
        r"unbiased estimator of lowest variance and every unbiased one whose interval "
        r"overlaps it; $^\dagger$: the bias test rejects the claim of unbiasedness "
        rf"(family-wise level {FAMILY_ALPHA * 100:g}\%); \textit{{italic}}: biased by design. "
        r"The last row is the variance of each problem's reference itself.")


def latex_relative(frame: pd.DataFrame, n: int, reference: str = REFERENCE,
                   width_pt: float = TEXTWIDTH_PT, label: str = "tab:vrbench-relative-variance",
                   env: str = "table*") -> str:
    """The pivot as one or more ``env`` floats (``table*``: across a two-column page;
    ``table``: in one column), each with ``\\caption`` and ``\\label``, split by problems so
    that every one fits ``width_pt`` at 8 pt."""
    table = pivot(frame, n, reference)
    groups = split_columns(table, width_pt)
    floats = []
    first = f"{label}{'' if len(groups) == 1 else '-1'}"
    for index, group in enumerate(groups, start=1):
        part = "" if len(groups) == 1 else f" (part {index} of {len(groups)})"
        rows = _rows(table, group)
        caption = _caption(table, reference, part, first if index > 1 else None, group)
        headers = [_latex_header(p, _entries_width(table, p)) for p in group]
        lines = [rf"\begin{{{env}}}[tbp]", r"\centering", r"\footnotesize",
                 rf"\setlength{{\tabcolsep}}{{{TABCOLSEP_PT:g}pt}}",
                 rf"\caption{{{caption}}}",
                 rf"\label{{{label}{'' if len(groups) == 1 else f'-{index}'}}}",
                 r"\begin{tabular}{l" + "r" * len(group) + "}", r"\toprule",
                 "estimator & " + " & ".join(headers) + r" \\",
                 r"\midrule"]
        family = None
        for estimator in rows:
            fam = frame.loc[frame["estimator"] == estimator, "family"].iloc[0]
            if family is not None and fam != family:
                lines.append(r"\addlinespace")
            family = fam
            name = _escape(estimator)
            name = rf"\textit{{{name}}}" if estimator in table.italic else name
            values = [table.cells.get((p, estimator), Cell("—", numeric=False)).latex()
                      for p in group]
            lines.append(" & ".join([name, *values]) + r" \\")
        lines.append(r"\midrule")
        refs = [table.reference_variance.get(p, Cell("—", numeric=False)).latex()
                for p in group]
        lines.append(" & ".join([r"\textit{reference variance}", *refs]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}", rf"\end{{{env}}}"]
        floats.append("\n".join(lines))
    header = (f"% vrbench: variance relative to {table.describe(reference)} at n = {n}. Needs "
              "\\usepackage{booktabs}.\n")
    return header + "\n\n".join(floats) + "\n"


CELL_COLUMNS = ("n", "‖bias‖", "p(bias)", "variance (95% CI)", "rel. variance", "MSE",
                "µs / estimate")
"""The per-cell table's columns after the estimator (and the problem, in Markdown)."""
LATEX_CELL_HEADERS = {"n": "$n$", "‖bias‖": r"$\|\mathrm{bias}\|$", "p(bias)": "$p$(bias)",
                      "variance (95% CI)": r"variance\\(95\% CI)",
                      "rel. variance": r"variance\\rel.\ to ref.",
                      "µs / estimate": r"$\mu$s per\\estimate"}
"""The LaTeX per-cell table's columns (MSE = ‖bias‖² + variance is left out to fit)."""


def cell_rows(frame: pd.DataFrame, reference: str = REFERENCE
              ) -> list[tuple[str, str, dict[str, Cell]]]:
    """(problem, estimator, cells) for every cell that ran, by problem, family and n."""
    ran = frame[frame["status"] != "skipped"]
    references = problem_references(frame, reference)
    out = []
    for problem in [p for p in problem_order(ran) if p in set(ran["problem"])]:
        rows = ran[ran["problem"] == problem]
        for estimator in estimator_order(rows["estimator"]):
            for _, row in rows[rows["estimator"] == estimator].sort_values(
                    "n_samples").iterrows():
                out.append((problem, estimator, _cell_values(row, references.get(problem))))
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
    pvalue = _sci_cell(row["bias_pvalue"], 2)
    marks = {"bold": bool(row.get("best", False))}
    if row["exact"]:
        variance = Cell("exact", numeric=False, **marks)
        mse = Cell("exact", numeric=False) if row["bias_exact"] else _sci_cell(row["mse"], 2)
    else:
        variance = _interval_cell(row["variance"], row["variance_ci_low"],
                                  row["variance_ci_high"], **marks)
        mse = _sci_cell(row["mse"], 2)
    rel = relative_cell(row, reference)
    rel = Cell(rel.mantissa, rel.exponent, numeric=rel.numeric)  # marks once, on variance
    time = _sci_cell(row["time_per_estimate_s"] * 1e6, 2)
    return dict(zip(CELL_COLUMNS, (n, bias, pvalue, variance, rel, mse, time), strict=True))


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
  \textbf{\vrbench@problem} (continued)}\nobreak}
\def\vrbenchproblem#1{\marks\vrbench@marks{#1}}
\fi
\makeatother"""
"""LaTeX that repeats the problem's name, "(continued)", at the top of a page of the
per-cell ``longtable`` that starts in the middle of a problem (``\\endhead`` can hold only
fixed text)."""


def latex_cells(frame: pd.DataFrame, reference: str = REFERENCE,
                label: str = "tab:vrbench-cells") -> str:
    """Every cell that ran, as an appendix ``longtable`` (one-column pages, flush left),
    grouped by problem, with the pivot's marks; a page that continues a problem starts with
    its name and "(continued)" (see :data:`CONTINUED`)."""
    keys = list(LATEX_CELL_HEADERS)
    columns = len(keys) + 1
    header = " & ".join(["estimator", *(r"\begin{tabular}[b]{@{}r@{}}" + LATEX_CELL_HEADERS[k]
                                        + r"\end{tabular}" for k in keys)]) + r" \\"
    ref = describe_sweep_reference(frame, reference, _texttt)
    caption = (r"Every cell of the benchmark. Variance: of one estimate, with the half-width "
               r"of its 95\% interval in parentheses; rel.\ variance: relative to "
               rf"{ref} at the same $n$; $p$(bias): the bias test's $p$-value. Marks as in "
               "the summary table.")
    lines = [r"% vrbench: every cell. Needs \usepackage{booktabs,longtable}.", CONTINUED,
             r"\begingroup\footnotesize", rf"\setlength{{\tabcolsep}}{{{TABCOLSEP_PT:g}pt}}",
             r"\setlength{\LTleft}{0pt}",
             r"\begin{longtable}{l" + "r" * (columns - 1) + "}",
             rf"\caption{{{caption}}}\label{{{label}}}\\", r"\toprule", header, r"\midrule",
             r"\endfirsthead", r"\toprule", header, r"\midrule", r"\endhead",
             r"\bottomrule", r"\endfoot"]
    previous, last = None, None
    italic = _biased_names(frame)
    for problem, estimator, cells in cell_rows(frame, reference):
        if problem != previous:
            # The mark ends the previous problem before the space (a break there continues
            # nothing) and names this one after it, where no break is allowed.
            if previous is not None:
                lines += [r"\noalign{\vrbenchproblem{}}", r"\addlinespace"]
            lines.append(rf"\noalign{{\vrbenchproblem{{{_escape(problem)}}}\penalty10000}}")
            lines.append(rf"\multicolumn{{{columns}}}{{l}}{{\textbf{{{_escape(problem)}}}}}"
                         r" \\* \nopagebreak")
            previous, last = problem, None
        name = _escape(estimator)
        name = rf"\textit{{{name}}}" if estimator in italic else name
        # An estimator's rows (one per n) stay on one page, so that a page starts with a name.
        name, last = (r"\nopagebreak" if estimator == last else name), estimator
        if "error" in cells:  # a failed cell: the error across the numbers' columns
            values = [cells["n"].latex(), rf"\multicolumn{{{columns - 2}}}{{l}}"
                      rf"{{{_escape(cells['error'].mantissa)}}}"]
        else:
            values = [cells[k].latex() for k in keys]
        lines.append(" & ".join([name, *values]) + r" \\")
    lines += [r"\noalign{\vrbenchproblem{}}", r"\end{longtable}", r"\endgroup"]
    return "\n".join(lines) + "\n"


def _biased_names(frame: pd.DataFrame) -> set[str]:
    claims = frame.dropna(subset=["unbiased_claim"]).drop_duplicates("estimator")
    return set(claims.loc[~claims["unbiased_claim"].astype(bool), "estimator"])


def latex_document(inputs: list[str], twocolumn: bool = True) -> str:
    """A document that typesets ``inputs`` (file names): the pivot floats in a two-column
    article, the appendix table after ``\\onecolumn``."""
    body = []
    for name in inputs:
        if "cells" in name:
            body.append(r"\onecolumn")
        body.append(rf"\input{{{name}}}")
    option = "[twocolumn]" if twocolumn else ""
    return "\n".join([
        rf"\documentclass{option}{{article}}",
        r"\usepackage{booktabs,longtable}",
        r"\begin{document}", *body, r"\end{document}"]) + "\n"


def markdown_tables(frame: pd.DataFrame, n: int, reference: str = REFERENCE) -> str:
    """The pivot and the per-cell table in Markdown, with the same marks."""
    table = pivot(frame, n, reference)
    unreferenced = (f" {NO_REFERENCE}: no reference variance to compare with."
                    if table.unreferenced else "")
    lines = [f"## Variance relative to {table.describe(reference)} at n = {n}", "",
             "9.8(3)e-1 = (9.8 ± 0.3)·10⁻¹, the 95% interval's half-width in the last digit; "
             "**bold**: best unbiased and ties; †: unbiasedness rejected; *italic*: biased "
             "by design; exact: zero variance; —: not applicable." + unreferenced, "",
             "| estimator | " + " | ".join(table.problems) + " |",
             "|---|" + "---:|" * len(table.problems)]
    for estimator in table.estimators:
        name = f"*{estimator}*" if estimator in table.italic else estimator
        values = [table.cells.get((p, estimator), Cell("—", numeric=False)).markdown()
                  for p in table.problems]
        lines.append("| " + " | ".join([name, *values]) + " |")
    refs = [table.reference_variance.get(p, Cell("—", numeric=False)).markdown()
            for p in table.problems]
    lines.append("| *reference variance* | " + " | ".join(refs) + " |")
    header = ("problem", "estimator", *CELL_COLUMNS)
    lines += ["", "## Every cell", "", "| " + " | ".join(header) + " |",
              "|---|---|" + "---:|" * (len(header) - 2)]
    for problem, estimator, cells in cell_rows(frame, reference):
        values = [c.markdown() for c in cells.values()]
        lines.append("| " + " | ".join([problem, estimator, *values]) + " |")
    return "\n".join(lines) + "\n"
