"""Paper tables: LaTeX (booktabs) and Markdown, the best value per problem in bold."""

from __future__ import annotations

import pandas as pd

from vrbench.reports.console import format_interval

COLUMNS = ("estimator", "n", "‖bias‖", "variance (95% CI)", "MSE", "µs / estimate")


def table_rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    """One row per cell that ran (errors included), at each estimator's largest n.

    ``best`` marks the lowest variance among the ok cells of each problem.
    """
    ran = frame[frame["status"] != "skipped"]
    if ran.empty:
        return []
    largest = ran.loc[ran.groupby(["problem", "estimator"])["n_samples"].idxmax()]
    rows = []
    for problem in dict.fromkeys(ran["problem"]):
        cells = largest[largest["problem"] == problem].sort_values("estimator")
        ok = cells[cells["status"] == "ok"]
        best = ok["variance"].idxmin() if not ok.empty else None
        for index, cell in cells.iterrows():
            if cell["status"] != "ok":
                values = ("—", f"error: {cell['error'][:40]}", "—", "—")
            else:
                values = (
                    f"{cell['bias_norm']:.2e}",
                    format_interval(cell["variance"], cell["variance_ci_low"],
                                    cell["variance_ci_high"]),
                    f"{cell['mse']:.2e}",
                    f"{cell['time_per_estimate_s'] * 1e6:.3g}",
                )
            rows.append({"problem": problem, "estimator": cell["estimator"],
                         "n": int(cell["n_samples"]), "values": values, "best": index == best})
    return rows


def _latex_escape(text: str) -> str:
    for char, replacement in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"),
                              ("&", r"\&"), ("#", r"\#"), ("$", r"\$")):
        text = text.replace(char, replacement)
    return text


def latex_table(frame: pd.DataFrame) -> str:
    """A booktabs table (needs ``\\usepackage{booktabs}``), one block per problem."""
    rows = table_rows(frame)
    lines = [r"\begin{tabular}{llrrlrr}", r"\toprule",
             r"problem & estimator & $n$ & $\|\mathrm{bias}\|$ & variance (95\% CI) & MSE & "
             r"$\mu$s / estimate \\", r"\midrule"]
    previous = None
    for row in rows:
        if previous is not None and row["problem"] != previous:
            lines.append(r"\midrule")
        cells = [_latex_escape(str(v)) for v in row["values"]]
        if row["best"]:
            cells[1] = rf"\textbf{{{cells[1]}}}"
        problem = _latex_escape(row["problem"]) if row["problem"] != previous else ""
        lines.append(" & ".join([problem, _latex_escape(row["estimator"]), str(row["n"]),
                                 *cells]) + r" \\")
        previous = row["problem"]
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def markdown_table(frame: pd.DataFrame) -> str:
    """The same table in Markdown, the best variance per problem in bold."""
    header = ("problem", *COLUMNS)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table_rows(frame):
        values = list(row["values"])
        if row["best"]:
            values[1] = f"**{values[1]}**"
        lines.append("| " + " | ".join([row["problem"], row["estimator"], str(row["n"]),
                                         *values]) + " |")
    return "\n".join(lines) + "\n"
