"""Reports: views of a results table (console summary now; figures and LaTeX tables to come)."""

from vrbench.reports.console import format_interval, summary_table

__all__ = ["format_interval", "summary_table"]
