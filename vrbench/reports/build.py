"""``vrbench report``: figures, tables and an HTML page from one or more results sets."""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # reports are files; no display is needed or assumed

import matplotlib.pyplot as plt
import pandas as pd

from vrbench.bench.results import NoResults
from vrbench.bench.store import read_results
from vrbench.bench.train import SHARED_FILE, TRAIN_FILE
from vrbench.errors import VrbenchError
from vrbench.reports import figures, page
from vrbench.reports.axes import drop_colliding_labels
from vrbench.reports.labels import Labels, plain, resolve
from vrbench.reports.selection import LAYOUTS, ReportSpec
from vrbench.reports.style import DISTINCT_COLORS, STYLES, apply_style, estimator_styles
from vrbench.reports.tables import (
    latex_cells,
    latex_cells_floats,
    latex_document,
    latex_relative,
    markdown_tables,
)
from vrbench.reports.values import (
    REFERENCE,
    annotate,
    best,
    describe_sweep_reference,
    fit_note,
    ground_truth_note,
    no_reference,
    relative,
    with_references,
)

FORMATS = ("pdf", "png", "svg")
COSTS = ("f_evals", "time_per_estimate_s")
TIME_NOTE = ("Each time is one measurement per cell (the wall-clock time of its R estimates "
             "over R, once), whose spread is not in the interval: the intervals carry the "
             "variances' uncertainty only, so close times may differ by timing noise alone.")
"""How the time-normalized figure's (and table's) caption states what the time is."""
FEVALS_NOTE = ("f-evaluations count the evaluations of f that one estimate makes; they "
               "count neither the draws a baseline or control variate spends fitting itself "
               "before the sweep nor evaluations of ∇f (the pathwise estimator's).")
"""How the f-evaluation-normalized figure's caption states what is counted."""


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
            if trace_file.exists() or _shared_file(path).exists():
                continue
            raise
        frames.append(frame)
        metas.append({"source": str(path), **meta})
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return frame, metas, (pd.concat(traces, ignore_index=True) if traces else None)


def _shared_file(path: Path) -> Path:
    return (path if path.is_dir() else path.parent) / SHARED_FILE


def load_shared(paths: Iterable[str | os.PathLike[str]]) -> pd.DataFrame | None:
    """The traces of shared runs (``vrbench train --measure``) in the results sets, merged."""
    found = [pd.read_parquet(_shared_file(Path(path))) for path in paths
             if _shared_file(Path(path)).exists()]
    return pd.concat(found, ignore_index=True) if found else None


def prepare(frame: pd.DataFrame, spec: ReportSpec, reference: str = REFERENCE) -> pd.DataFrame:
    """The cells a report shows, with every mark: annotated on the whole table (so the bias
    test's family and each problem's reference are the sweep's: the ``reference`` column,
    see :func:`~vrbench.reports.values.problem_references`), then selected, then
    best-marked among the selected estimators. A problem on which neither the reference
    nor any of its fallbacks ran has no ratios (a reference asked for by name must be in
    the results)."""
    if frame.empty:
        return frame
    known = set(frame["estimator"].dropna())
    if spec.reference is not None and reference not in known:
        raise VrbenchError(f"reference estimator {reference!r} is not in the results; "
                           f"valid: {', '.join(sorted(known))}")
    marked = with_references(annotate(frame), reference)
    marked = marked.join(relative(marked, reference))
    marked = marked.join(relative(marked, reference, quantity="mse").add_prefix("mse_"))
    for cost in COSTS:
        for quantity, prefix in (("variance", f"{cost}_"), ("mse", f"{cost}_mse_")):
            ratios = relative(marked, reference, cost=cost, quantity=quantity)
            marked = marked.join(ratios.add_prefix(prefix))
    chosen = spec.selection.apply(marked)
    return chosen.assign(best=best(chosen))


def _select_traces(traces: pd.DataFrame | None, spec: ReportSpec) -> pd.DataFrame | None:
    """Traces of the selected estimators and problems (names and globs; families are not
    recorded in traces)."""
    if traces is None:
        return None
    keep = pd.Series(True, index=traces.index)
    for column, tokens in (("estimator", spec.selection.estimators),
                           ("problem", spec.selection.problems)):
        include = [t for t in tokens if not t.startswith("!")]
        exclude = [t[1:] for t in tokens if t.startswith("!")]
        values = traces[column].astype(str)
        if include:
            keep &= values.map(lambda v, tokens=include: any(
                fnmatch.fnmatchcase(v, t) or fnmatch.fnmatchcase(v.split(":")[0], t)
                for t in tokens))
        for token in exclude:
            keep &= ~values.map(lambda v, t=token: fnmatch.fnmatchcase(v, t))
    chosen = traces[keep]
    return chosen if not chosen.empty else None


@dataclass(frozen=True)
class Figure:
    """A written figure: its name, its files' stems (one per page) and its caption."""

    name: str
    stems: list[str]
    caption: str


@dataclass(frozen=True)
class Report:
    """What :func:`build_report` wrote, and what it did not draw and why.

    Iterating over it gives the files, as a list would."""

    files: list[Path]
    figures: list[Figure]
    not_drawn: dict[str, str]
    """Figure (or ``tables``) → why it was not drawn, for everything not drawn."""
    requested: tuple[str, ...] = ()
    """What the spec asked for by name (empty: everything that can be drawn)."""

    @property
    def missing(self) -> dict[str, str]:
        """What was asked for by name and not drawn, with the reasons: the report is
        incomplete, and ``vrbench report`` exits non-zero."""
        return {name: why for name, why in self.not_drawn.items() if name in self.requested
                or (name.startswith("table_") and "tables" in self.requested)}

    def __iter__(self) -> Iterator[Path]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def __contains__(self, path: object) -> bool:
        return path in self.files


def build_report(paths: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                 formats: Sequence[str] = ("pdf", "png"), style: str = "paper",
                 spec: ReportSpec | None = None) -> Report:
    """Write every figure (in each format, split into pages that fit), the tables and
    ``index.html``; return what was written and what could not be drawn, and why.
    ``spec`` selects what is shown (its ``style``, ``formats``, ``reference`` and ``layout``
    win over the arguments). Everything is checked before the output directory is made: a
    refused report leaves nothing behind, and a directory this call made is removed again
    if writing fails."""
    spec = spec or ReportSpec()
    formats = list(spec.formats or formats)
    style = spec.style or style
    reference = spec.reference or REFERENCE
    layout = spec.layout or "pages"
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise VrbenchError(f"unknown format {bad[0]!r}; valid formats: {', '.join(FORMATS)}")
    if style not in STYLES:
        raise VrbenchError(f"unknown style {style!r}; valid styles: {', '.join(STYLES)}")
    if layout not in LAYOUTS:
        raise VrbenchError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    raw, metas, traces = load(paths)  # before creating anything: it may refuse the input
    shared = _select_traces(load_shared(paths), spec)
    if (raw.empty or not (raw["status"] != "skipped").any()) and traces is None \
            and shared is None:
        raise VrbenchError(f"nothing to report in {', '.join(map(str, paths))}: no cell ran "
                           "and there are no optimization traces")
    frame = prepare(raw, spec, reference)  # refuses unknown names: before any file is made
    traces = _select_traces(traces, spec)
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _write(frame, metas, traces, shared, out, formats, style, reference, layout,
                      spec)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def _write(frame: pd.DataFrame, metas: list[dict[str, Any]], traces: pd.DataFrame | None,
           shared: pd.DataFrame | None, out: Path, formats: list[str], style: str,
           reference: str, layout: str, spec: ReportSpec) -> Report:
    fig_style = apply_style(style)
    families = dict(zip(frame["estimator"], frame["family"], strict=True)) if not frame.empty \
        else {}
    names = list(frame["estimator"].dropna()) if not frame.empty else []
    names += list(traces["estimator"]) if traces is not None else []
    names += list(shared["estimator"]) if shared is not None else []
    problems = list(frame["problem"].dropna()) if not frame.empty else []
    problems += list(traces["problem"]) if traces is not None else []
    problems += list(shared["problem"]) if shared is not None else []
    labels = resolve(spec.labels, names, problems)
    shown = {name.split(":")[0] for name in names}
    styles = estimator_styles(names, families, distinct=len(shown) <= len(DISTINCT_COLORS))
    n = spec.selection.one_n() or (int(frame.loc[frame["status"] == "ok", "n_samples"].max())
                                   if (not frame.empty and (frame["status"] == "ok").any())
                                   else None)
    written: list[Path] = []
    done: list[Figure] = []
    not_drawn: dict[str, str] = {}
    plans = _plans(frame, traces, styles, fig_style, n, reference, layout, labels)
    plans += _shared_plans(shared, styles, fig_style, layout, labels)
    note = ground_truth_note(frame, lambda p: plain(labels.problem(p)))
    plans = [(name, make, caption + note if name == "bias_vs_variance" else caption)
             for name, make, caption in plans]
    for name, make, caption in plans:
        if not spec.wanted(name):
            continue
        if isinstance(make, str):  # the reason it cannot be drawn
            not_drawn[name] = make
            continue
        try:
            pages = make()
        except figures.NotDrawn as reason:
            not_drawn[name] = str(reason)
            continue
        stems = []
        for suffix, fig in pages:
            drop_colliding_labels(fig)
            stem = f"{name}{suffix}"
            for fmt in formats:
                target = out / f"{stem}.{fmt}"
                fig.savefig(target, format=fmt, metadata=_metadata(fmt))
                written.append(target)
            plt.close(fig)
            stems.append(stem)
        done.append(Figure(name, stems, caption))
    tables: list[str] = []
    if spec.wanted("tables"):
        why = _no_tables(frame, n)
        if why is not None:
            not_drawn["tables"] = why
        else:
            assert n is not None
            prefix = spec.label_prefix or "tab:vrbench"
            chosen = STYLES[style]
            # No ratio to show: the relative-variance table is not written, for the reason
            # the heatmap is not drawn, and the per-cell tables drop their ratio column.
            unreferenced = no_reference(frame, n, reference)
            relative_tables = []
            if unreferenced is None:
                relative_tables = [("table_relative_variance.tex", latex_relative(
                    frame, n, reference, chosen.table_width_pt, env=chosen.table_env,
                    labels=labels, prefix=prefix))]
            else:
                not_drawn["table_relative_variance"] = unreferenced
            ratios = unreferenced is None
            for filename, text in (
                    *relative_tables,
                    ("table_cells.tex",
                     latex_cells(frame, reference, labels, prefix, relative=ratios)),
                    ("table_cells_floats.tex",
                     latex_cells_floats(frame, reference, labels, prefix, relative=ratios)),
                    ("tables_preview.tex", latex_document(
                        [*(["table_relative_variance"] if ratios else []),
                         "table_cells_floats", "table_cells"])),
                    ("summary.md", markdown_tables(frame, n, reference, labels,
                                                   relative=ratios))):
                target = out / filename
                target.write_text(text)
                written.append(target)
                tables.append(filename)
    index = out / "index.html"
    index.write_text(page.index_html(frame, metas, done, formats, tables, not_drawn,
                                     reference=reference, n=n, spec=spec, style=style,
                                     labels=labels))
    written.append(index)
    return Report(written, done, not_drawn, spec.requested)


def _no_tables(frame: pd.DataFrame, n: int | None) -> str | None:
    """Why the tables cannot be written, or None."""
    if frame.empty or not (frame["status"] != "skipped").any():
        return "no cell of the selection ran (the tables hold cells, not training traces)"
    if n is None:
        return "no cell of the selection ran without error"
    return None


def _plans(frame: pd.DataFrame, traces: pd.DataFrame | None, styles: dict, fig_style,
           n: int | None, reference: str, layout: str, labels: Labels
           ) -> list[tuple[str, Any, str]]:
    """(name, how to draw it or why it cannot be, caption) of every figure, in the order of
    the page."""
    plans: list[tuple[str, Any, str]] = []
    cells = ("variance_vs_samples", "bias_vs_variance", "work_normalized_fevals",
             "work_normalized_time", "relative_variance", "bias_vs_temperature",
             "variance_vs_parameter")
    if not frame.empty and n is not None:
        # Captions are plain text (the page shows them): names without LaTeX's "$".
        ref = describe_sweep_reference(frame, reference, lambda e: plain(labels.estimator(e)),
                                       lambda p: plain(labels.problem(p)))
        unreferenced = no_reference(frame, n, reference)
        exact = bool(frame.loc[frame["status"] == "ok", "exact"].fillna(False).any())
        plans += [
            ("variance_vs_samples",
             lambda: figures.variance_vs_samples(frame, styles, fig_style, layout, labels),
             "Variance of one estimate against samples per estimate n, with 95% intervals; "
             "the broad grey band has slope −1 (plain averaging)."
             + (" Exact estimators sit in the grey strip labelled “exact”." if exact else "")
             + fit_note(frame, lambda e: plain(labels.estimator(e)))),
            ("bias_vs_variance",
             lambda: figures.bias_vs_variance(frame, styles, fig_style, n, layout, labels),
             f"Measured bias against variance at n = {n}. Dashed: √(variance / R), the bias "
             "that sampling error alone shows; points well above it are biased. “(biased)”: "
             "biased by design; †: the claim of unbiasedness is rejected."),
            ("work_normalized_fevals", unreferenced or (
             lambda: figures.work_normalized(frame, styles, fig_style, "f_evals", n,
                                             reference, layout, labels)),
             f"Variance × f-evaluations per estimate relative to {ref} at n = {n}, "
             "with 95% intervals (from both variances); below 1 is better. Biased "
             "estimators are placed by their mean squared error instead (“MSE”). "
             + FEVALS_NOTE),
            ("work_normalized_time", unreferenced or (
             lambda: figures.work_normalized(frame, styles, fig_style, "time_per_estimate_s",
                                             n, reference, layout, labels)),
             f"Variance × seconds per estimate relative to {ref} at n = {n} (biased "
             "estimators: MSE × seconds). " + TIME_NOTE),
            ("relative_variance", unreferenced or (
             lambda: figures.relative_variance_heatmap(frame, fig_style, n, styles, reference,
                                                       layout, labels)),
             f"log10 of each estimator's variance (biased estimators: mean squared error) "
             f"relative to {ref} at n = {n}; “ref”: the reference of the problem."),
            ("bias_vs_temperature",
             lambda: figures.bias_vs_temperature(frame, styles, fig_style, n, layout, labels),
             f"Bias of the relaxed (biased) estimators against their temperature at n = {n}."),
            ("variance_vs_parameter",
             lambda: figures.variance_vs_parameter(frame, styles, fig_style, n, layout,
                                                   labels),
             f"Variance of one estimate against a swept problem parameter at n = {n}, with "
             "95% intervals, per coordinate of θ where θ has few; thin lines: the variance "
             "computed exactly (without sampling) where it can be."),
        ]
    else:
        why = ("the results hold training traces only, no sweep cells" if frame.empty else
               "no cell of the selection ran without error")
        plans += [(name, why, "") for name in cells]
    training = ("training_by_step", "training_by_time", "training_variance",
                "train_elbo_by_step", "train_elbo_by_time", "test_bound_by_step",
                "test_bound_by_time", "train_elbo_gap_by_step", "test_bound_gap_by_step")
    if traces is not None:
        plans += [
            ("training_by_step",
             lambda: figures.training_traces(traces, styles, fig_style, "step", layout,
                                             labels),
             "Exact objective during optimization, mean over seeds with min–max band."),
            ("training_by_time",
             lambda: figures.training_traces(traces, styles, fig_style, "wall_s", layout,
                                             labels),
             "The same against wall-clock time."),
            ("training_variance",
             lambda: figures.training_variance(traces, styles, fig_style, layout, labels),
             "Variance of one estimate at θ_t along optimization (geometric mean over seeds, "
             "min–max band), and the exact ‖∇J(θ_t)‖² (dashed)."),
        ]
        for column, words in (("train_elbo", "ELBO on the training images"),
                              ("test_bound", "importance-weighted bound on the test images")):
            plans += [
                (f"{column}_by_step",
                 lambda column=column: figures.training_traces(
                     traces, styles, fig_style, "step", layout, labels, column),
                 f"The model's {words} during training, mean over seeds with min–max band."),
                (f"{column}_by_time",
                 lambda column=column: figures.training_traces(
                     traces, styles, fig_style, "wall_s", layout, labels, column),
                 f"The model's {words} against the wall-clock time of the training steps, "
                 "mean over seeds with min–max band."),
                (f"{column}_gap_by_step",
                 lambda column=column: figures.training_gap(
                     traces, styles, fig_style, column, reference, layout, labels),
                 f"The model's {words} minus the reference estimator's at the same seed and "
                 "step (the same initial θ and measurement draws), mean over seeds with "
                 "min–max band."),
            ]
    else:
        plans += [(name, figures.NO_TRACES, "") for name in training]
    return plans


def _shared_plans(shared: pd.DataFrame | None, styles: dict, fig_style, layout: str,
                  labels: Labels) -> list[tuple[str, Any, str]]:
    """The shared-run figure, or why it cannot be drawn."""
    if shared is None:
        return [("shared_run_variance", "there are no shared runs (vrbench train --measure)",
                 "")]
    exact = "reference" not in shared or (shared["reference"].fillna("exact") == "exact").all()
    truth = ("the exact ‖∇J(θ_t)‖²" if exact else
             "‖∇J(θ_t)‖² of the reference (variances and biases vs reference, ± its "
             "standard error)")
    return [("shared_run_variance",
             lambda: figures.shared_run_variance(shared, styles, fig_style, layout, labels),
             "Variance of one estimate of every estimator at the same θ_t along one "
             "optimization run (geometric mean over seeds, min–max band), per parameter group "
             f"where θ has a few; dashed: {truth}.")]


def _metadata(fmt: str) -> dict[str, Any]:
    # No creation date in PDF and SVG, so the same results give byte-identical figures.
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": "vrbench"}
    if fmt == "svg":
        return {"Date": None, "Creator": "vrbench"}
    return {}
