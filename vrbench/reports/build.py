"""``vrbench report``: figures, tables and an HTML page from one or more results sets."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are files; no display is needed or assumed

import matplotlib.pyplot as plt
import pandas as pd

from vrbench.bench.results import NoResults
from vrbench.bench.store import read_results
from vrbench.errors import VrbenchError
from vrbench.reports import figures
from vrbench.reports.style import apply_style, estimator_styles
from vrbench.reports.tables import latex_table, markdown_table

FORMATS = ("pdf", "png", "svg")
TRAIN_FILE = "train.parquet"


def load(paths: Iterable[str | os.PathLike[str]]
         ) -> tuple[pd.DataFrame, list[dict[str, Any]], pd.DataFrame | None]:
    """Merge results sets: the cells, each set's provenance, and any optimization traces.

    Each table's layout is checked (:class:`~vrbench.bench.results.ResultsError` names the
    file and what is wrong); a path with neither results nor traces is an error.
    """
    frames, metas, traces = [], [], []
    for path in paths:
        path = Path(path)
        trace_file = (path if path.is_dir() else path.parent) / TRAIN_FILE
        if trace_file.exists():
            traces.append(pd.read_parquet(trace_file))
        try:
            frame, meta = read_results(path)
        except NoResults:
            if trace_file.exists():
                continue
            raise
        frames.append(frame)
        metas.append({"source": str(path), **meta})
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame, metas, (pd.concat(traces, ignore_index=True) if traces else None)


def build_report(paths: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                 formats: Sequence[str] = ("pdf", "png"), style: str = "paper") -> list[Path]:
    """Write every figure (in each format), the tables and ``index.html``; return the files."""
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise VrbenchError(f"unknown format {bad[0]!r}; valid formats: {', '.join(FORMATS)}")
    frame, metas, traces = load(paths)  # before creating anything: it may refuse the input
    if (frame.empty or not (frame["status"] != "skipped").any()) and traces is None:
        raise VrbenchError(f"nothing to report in {', '.join(map(str, paths))}: no cell ran "
                           "and there are no optimization traces")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings = apply_style(style)
    names = list(frame["estimator"].dropna()) if not frame.empty else []
    names += list(traces["estimator"]) if traces is not None else []
    styles = estimator_styles(names)
    written: list[Path] = []
    figure_files: list[tuple[str, str]] = []
    plots = []
    if not frame.empty:
        plots = [
            ("variance_vs_samples", figures.variance_vs_samples(frame, styles, settings),
             "Variance of one estimate against samples per estimate, with 95% intervals; "
             "dashed: slope −1."),
            ("bias_vs_variance", figures.bias_vs_variance(frame, styles, settings),
             "Measured bias against variance; hollow: claims unbiasedness; dashed: the bias "
             "expected from sampling error alone."),
            ("work_normalized_fevals", figures.work_normalized(frame, styles, settings,
                                                                "f_evals"),
             "Variance × f-evaluations per estimate, at each estimator's largest n (lower is "
             "better)."),
            ("work_normalized_time", figures.work_normalized(frame, styles, settings,
                                                              "time_per_estimate_s"),
             "Variance × seconds per estimate (lower is better)."),
            ("relative_variance", figures.relative_variance_heatmap(frame, settings),
             "log10 of each estimator's variance relative to score_function at the same n."),
            ("bias_vs_temperature", figures.bias_vs_temperature(frame, styles, settings),
             "Bias of the relaxed (biased) estimators against their temperature."),
        ]
    if traces is not None:
        plots += [
            ("training_by_step", figures.training_traces(traces, styles, settings, "step"),
             "Exact objective during optimization, mean over seeds with min–max band."),
            ("training_by_time", figures.training_traces(traces, styles, settings, "wall_s"),
             "The same against wall-clock time."),
        ]
    for name, fig, caption in plots:
        if fig is None:
            continue
        for fmt in formats:
            target = out / f"{name}.{fmt}"
            fig.savefig(target, format=fmt, metadata=_metadata(fmt))
            written.append(target)
        plt.close(fig)
        figure_files.append((name, caption))
    if not frame.empty:
        for suffix, text in (("tex", latex_table(frame)), ("md", markdown_table(frame))):
            target = out / f"summary.{suffix}"
            target.write_text(text)
            written.append(target)
    index = out / "index.html"
    index.write_text(_html(frame, metas, figure_files, formats))
    written.append(index)
    return written


def _metadata(fmt: str) -> dict[str, Any]:
    # No creation date in PDF and SVG, so the same results give byte-identical figures.
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": "vrbench"}
    if fmt == "svg":
        return {"Date": None, "Creator": "vrbench"}
    return {}


def _html(frame: pd.DataFrame, metas: list[dict[str, Any]],
          figure_files: list[tuple[str, str]], formats: Sequence[str]) -> str:
    image = "png" if "png" in formats else ("svg" if "svg" in formats else None)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>vrbench report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
             "img{max-width:100%;} table{border-collapse:collapse;font-size:0.85em;}"
             "td,th{border-bottom:1px solid #ddd;padding:2px 8px;text-align:right;}"
             "td:first-child,td:nth-child(2){text-align:left;} .error{color:#b00;}</style>",
             "</head><body><h1>vrbench report</h1>"]
    if not frame.empty:
        counts = frame["status"].value_counts()
        parts.append(f"<p>{len(frame)} cells: {counts.get('ok', 0)} ok, "
                     f"{counts.get('error', 0)} failed, {counts.get('skipped', 0)} skipped "
                     "(incompatible).</p>")
    for name, caption in figure_files:
        links = " ".join(f"<a href='{name}.{fmt}'>{fmt}</a>" for fmt in formats)
        img = f"<img src='{name}.{image}' alt='{name}'>" if image else ""
        parts.append(f"<h2>{name.replace('_', ' ')}</h2>{img}<p>{html.escape(caption)} "
                     f"{links}</p>")
    if not frame.empty:
        parts.append("<h2>Summary</h2><p><a href='summary.tex'>LaTeX</a> · "
                     "<a href='summary.md'>Markdown</a></p>")
        columns = ["problem", "estimator", "n_samples", "bias_norm", "bias_pvalue", "variance",
                   "variance_ci_low", "variance_ci_high", "mse", "time_per_estimate_s"]
        ok = frame[frame["status"] == "ok"][columns]
        parts.append(ok.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0))
        failed = frame[frame["status"] == "error"]
        parts.append(f"<h2 class='error'>Failed cells ({len(failed)})</h2>")
        if not failed.empty:
            parts.append(failed[["problem", "estimator", "n_samples", "error"]]
                         .to_html(index=False, border=0))
        skipped = frame[frame["status"] == "skipped"]
        parts.append(f"<details><summary>Skipped combinations ({len(skipped)})</summary>"
                     + skipped[["problem", "estimator", "n_samples", "error"]]
                     .to_html(index=False, border=0) + "</details>")
    parts.append("<h2>Provenance</h2>")
    for meta in metas:
        parts.append("<pre>" + html.escape(json.dumps(meta, indent=2, default=str)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
