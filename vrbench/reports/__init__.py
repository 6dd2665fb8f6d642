"""Reports: views of a results table — console summary, figures, LaTeX/Markdown tables, HTML.

Figures and tables need the ``reports`` extra (matplotlib, seaborn); import
:mod:`vrbench.reports.build` for them.
"""

from vrbench.reports.console import format_interval, summary_table

__all__ = ["format_interval", "summary_table"]
