"""A readable terminal summary of a results table."""

from __future__ import annotations

import math

import pandas as pd
from rich.markup import escape
from rich.table import Table

FAMILY_ALPHA = 0.05
"""Family-wise error rate of the bias flags: a sweep of correct estimators shows no red
p-value with probability at least 95%, however many cells it has (Bonferroni)."""


def format_interval(value: float, low: float, high: float) -> str:
    """``value`` with the half-width of ``[low, high]`` in compact form, e.g. ``1.23(4)e-3``.

    The parenthesized digits are the half-width in units of the last shown digit, with one
    significant digit, or two when the first is a 1.
    """
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    half = (high - low) / 2 if math.isfinite(low) and math.isfinite(high) else math.nan
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10**exponent
    if not math.isfinite(half) or half <= 0:
        return f"{mantissa:.3f}e{exponent}"
    scaled = half / 10**exponent
    decimals = -math.floor(math.log10(scaled))
    if math.floor(scaled * 10**decimals) == 1:
        decimals += 1  # a leading 1 keeps a second digit, as in 3.14(12)
    decimals = min(6, max(0, decimals))
    digit = round(scaled * 10**decimals)
    return f"{mantissa:.{decimals}f}({digit})e{exponent}"


def _short(value: float) -> str:
    return "—" if value is None or pd.isna(value) else f"{value:.3g}"


def summary_table(frame: pd.DataFrame) -> Table:
    """One line per cell that ran: bias and its test, variance with its 95% interval, time.

    A p-value is red when an estimator that claims to be unbiased is rejected at
    family-wise level :data:`FAMILY_ALPHA` over all such cells of the table.
    """
    table = Table(title="vrbench results", header_style="bold")
    for name in (
        "problem",
        "estimator",
        "n",
        "bias",
        "p(bias)",
        "variance (95% CI)",
        "mse",
        "µs/estimate",
        "status",
    ):
        table.add_column(name, justify="left" if name in {"problem", "estimator"} else "right")
    ran = frame[frame["status"] != "skipped"]
    claims = int(((ran["status"] == "ok") & (ran["unbiased_claim"] == True)).sum())  # noqa: E712
    threshold = FAMILY_ALPHA / max(1, claims)
    for row in ran.itertuples(index=False):
        if row.status != "ok":
            table.add_row(
                row.problem,
                row.estimator,
                str(row.n_samples),
                "",
                "",
                "",
                "",
                "",
                f"[red]{row.status}[/red]: {escape(row.error[:60])}",
            )
            continue
        pvalue = _short(row.bias_pvalue)
        if row.unbiased_claim and row.bias_pvalue < threshold:
            pvalue = f"[red]{pvalue}[/red]"
        table.add_row(
            row.problem,
            row.estimator,
            str(row.n_samples),
            _short(row.bias_norm),
            pvalue,
            format_interval(row.variance, row.variance_ci_low, row.variance_ci_high),
            _short(row.mse),
            _short(row.time_per_estimate_s * 1e6),
            "ok",
        )
    return table
