"""The terminal side of a report: the end-of-run summary and the progress bar's columns."""

from __future__ import annotations

import math
import re
from typing import Any, cast

import pandas as pd
from rich import box
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.progress import ProgressColumn, Task
from rich.table import Table
from rich.text import Text

from vrbench.reports.values import (
    FAMILY_ALPHA,
    NO_REFERENCE,
    REFERENCE,
    annotate,
    best,
    describe_reference,
    format_sci,
    problem_references,
    relative,
    with_references,
)

__all__ = ["FAMILY_ALPHA", "StableETA", "format_interval", "summary_table"]

SUMMARY_WIDTH = 100
SUMMARY_PROBLEMS = 100
"""Most problems the console summary lists, one line each; the rest are counted. A sweep of
a wide parameter grid has a problem per point, too many lines to read (and to lay out)."""
"""The summary fits a terminal this wide, whatever the console's width."""


def format_interval(value: float, low: float, high: float, digits: int = 2) -> str:
    """``value`` with the half-width of ``[low, high]`` in compact form, e.g. ``1.23(4)e-3``.

    The parenthesized digits are the half-width in units of the last shown digit, with one
    significant digit, or two when the first is a 1 and ``digits`` is 2 (``digits=1``: always
    one, as a table that must be narrow prints them). The mantissa is in [1, 10).
    """
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    half = (high - low) / 2 if math.isfinite(low) and math.isfinite(high) else math.nan
    exponent = math.floor(math.log10(abs(value)))
    for _ in range(2):  # once more if rounding carries the mantissa to 10
        mantissa = value / 10**exponent
        if not math.isfinite(half) or half <= 0:
            if abs(round(mantissa, 3)) >= 10:
                exponent += 1
                continue
            return f"{mantissa:.3f}e{exponent}"
        scaled = half / 10**exponent
        decimals = -math.floor(math.log10(scaled))
        if digits > 1 and math.floor(scaled * 10**decimals) == 1:
            decimals += 1  # a leading 1 keeps a second digit, as in 3.14(12)
        decimals = min(6, max(0, decimals))
        if abs(round(mantissa, decimals)) >= 10:
            exponent += 1
            continue
        break
    digit = max(1, round(scaled * 10**decimals))
    if digits == 1 and digit == 10 and decimals > 0:  # 0.099 rounds up to one digit, 0.1
        decimals, digit = decimals - 1, 1
    return f"{mantissa:.{decimals}f}({digit})e{exponent}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def summary_table(frame: pd.DataFrame, reference: str = REFERENCE) -> RenderableType:
    """A compact summary of a results table, one line per problem, within 100 columns.

    For each problem: how many estimators ran, the best unbiased estimators at its largest n
    (the lowest variance and every one whose 95% interval overlaps it), their variance
    relative to the problem's reference (``reference``, or a fallback where it did not run:
    see :func:`~vrbench.reports.values.problem_references`), and the failed cells and
    rejected claims of unbiasedness (family-wise level :data:`FAMILY_ALPHA`). Failures and
    rejections are listed below it; when nothing ran, the reasons the pairs were skipped.
    """
    if frame.empty:
        return Text("No cells in the results.")
    marked = with_references(annotate(frame), reference)
    ratios = relative(marked, reference)
    marked = marked.join(ratios)
    ran = marked[marked["status"] != "skipped"]
    counts = marked["status"].value_counts()
    parts: list[RenderableType] = []
    sizes = ", ".join(str(n) for n in sorted(ran["n_samples"].unique())) or "—"
    parts.append(Text(
        f"{counts.get('ok', 0)} cells ok, {counts.get('error', 0)} failed, "
        + (f"{counts['missing']} missing, " if counts.get("missing", 0) else "")
        + f"{counts.get('skipped', 0)} incompatible pairs skipped; n = {sizes}"))
    if ran.empty:
        parts.append(_skip_reasons(marked))
        return Group(*parts)
    problems = list(dict.fromkeys(ran["problem"]))
    ref = describe_reference(problem_references(ran, reference), reference,
                             problems[:SUMMARY_PROBLEMS])  # the exceptions among those listed
    table = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False,
                  padding=(0, 1), expand=False,
                  caption=f"var/ref: the best's variance ÷ that of {ref} at the same n; "
                          "†: unbiasedness rejected", caption_justify="left")
    table.add_column("problem", max_width=PROBLEM_WIDTH, overflow="fold")
    table.add_column("ran", justify="right", width=3)
    table.add_column("n", justify="right", width=3)
    # Failed (an error) and missing (not computed) apart, as the headline counts them.
    any_missing = bool((ran["status"] == "missing").any())
    table.add_column("best unbiased (ties)", width=28 if any_missing else 36, overflow="fold")
    table.add_column("var/ref", justify="right", width=7)
    table.add_column("failed", justify="right", width=6)
    if any_missing:
        table.add_column("missing", justify="right", width=7)
    table.add_column("†", justify="right", width=1)
    ok = ran[ran["status"] == "ok"]
    listed = ran[ran["problem"].isin(problems[:SUMMARY_PROBLEMS])]
    groups = dict(tuple(listed.groupby("problem", sort=False)))  # once, not a scan each
    for problem in problems[:SUMMARY_PROBLEMS]:
        rows = groups[problem]
        good = rows[rows["status"] == "ok"]
        n = int(good["n_samples"].max()) if not good.empty else int(rows["n_samples"].max())
        at_n = good[good["n_samples"] == n]
        marks = best(at_n)
        winners = at_n[marks]
        leader = (winners.loc[cast(Any, winners["variance"].idxmin())] if not winners.empty
                  else None)
        if leader is None:
            names, ratio = "—", ""
        else:
            names = ", ".join(sorted(winners["estimator"], key=lambda e: e != leader["estimator"]))
            ratio = ("exact" if leader["exact"] else
                     format_sci(leader["ratio"], 2) if pd.notna(leader["ratio"])
                     else NO_REFERENCE)
        failed = int((rows["status"] == "error").sum())
        missing = int((rows["status"] == "missing").sum())
        flagged = int(rows["bias_rejected"].sum())
        table.add_row(escape(_wrap_name(problem)), str(rows["estimator"].nunique()), str(n),
                      escape(names), ratio,
                      f"[red]{failed}[/red]" if failed else "·",
                      *([f"[red]{missing}[/red]" if missing else "·"] if any_missing else []),
                      f"[red]{flagged}[/red]" if flagged else "·")
    parts.append(table)
    if len(problems) > SUMMARY_PROBLEMS:
        parts.append(Text(f"… and {len(problems) - SUMMARY_PROBLEMS:,} more problems (see the "
                          "results table, or vrbench report)"))
    failures = ran[ran["status"].isin(["error", "missing"])]
    if not failures.empty:
        parts.append(Text("Failed (error) and missing cells:", style="bold red"))
        for row in failures.head(20).itertuples(index=False):
            error = str(row.error).split("\n")[0]
            where = (f"  {row.problem} · {row.estimator} · n={row.n_samples}: "
                     + ("(missing) " if row.status == "missing" else ""))
            parts.append(Text(_clip(where + error, SUMMARY_WIDTH)))
        if len(failures) > 20:
            parts.append(Text(f"  … and {len(failures) - 20} more (status 'error' or "
                              "'missing' in the results)"))
    rejected = ran[ran["bias_rejected"]]
    if not rejected.empty:
        claims = int((ok["unbiased_claim"].fillna(False).astype(bool)).sum())
        parts.append(Text(f"† Unbiasedness rejected (p < {FAMILY_ALPHA:g}/{claims}, "
                          "family-wise):", style="bold"))
        for row in rejected.head(20).itertuples(index=False):
            p = float(cast(Any, row.bias_pvalue))
            pvalue = "p < 1e-10" if p < 1e-10 else f"p = {p:.1e}"
            parts.append(Text(_clip(f"  {row.problem} · {row.estimator} · n={row.n_samples}: "
                                    f"{pvalue}", SUMMARY_WIDTH)))
    return Group(*parts)


PROBLEM_WIDTH = 25


def _wrap_name(name: str, width: int = PROBLEM_WIDTH) -> str:
    """``name`` in lines of at most ``width`` characters, broken after its ``:`` and its
    commas (and inside a piece only where one is longer than a line): problems of one
    family often differ only at the end of the name, so it is never cut short."""
    pieces = re.findall(r"[^:,]+[:,]?", name)
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return "\n".join(lines)


def _skip_reasons(frame: pd.DataFrame) -> RenderableType:
    """Why every pair was skipped, one line per reason, with how many pairs it covers."""
    skipped = frame[frame["status"] == "skipped"]
    lines: list[RenderableType] = [Text("Nothing ran. Reasons:", style="bold")]
    reasons = skipped.groupby("error", sort=False).agg(
        pairs=("problem", "size"), problems=("problem", "nunique"))
    for reason, row in reasons.sort_values("pairs", ascending=False).iterrows():
        lines.append(Text(_clip(f"  {reason} ({row['pairs']} pairs, {row['problems']} "
                                "problems)", SUMMARY_WIDTH)))
    return Group(*lines)


class StableETA(ProgressColumn):
    """Elapsed time and a remaining-time estimate that does not swing.

    Rich's own estimate extrapolates the last 30 s, which swings by an order of magnitude
    when cells of very different cost finish in bursts. This one extrapolates the average
    over the whole run (cells reused from earlier runs excluded: ``reused`` in the task's
    fields), and shows none until a few cells have finished.
    """

    MIN_DONE = 3

    def render(self, task: Task) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        text = f"{_clock(elapsed or 0.0)} elapsed"
        done = task.completed - task.fields.get("reused", 0)
        if task.total is None or task.finished:
            return Text(text, style="progress.elapsed")
        left = task.total - task.completed
        if done < self.MIN_DONE or not elapsed:
            return Text(f"{text}, ETA …", style="progress.elapsed")
        remaining = elapsed / done * left
        step = 5 if remaining < 120 else 60  # coarse enough not to flicker
        remaining = math.ceil(remaining / step) * step
        return Text(f"{text}, ETA {_clock(remaining)}", style="progress.remaining")


def _clock(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
