"""``vrbench report``: figures, tables and an HTML page from one or more results sets."""

from __future__ import annotations

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
from vrbench.reports import page
from vrbench.reports.axes import drop_colliding_labels
from vrbench.reports.labels import resolve
from vrbench.reports.registry import TABLES, FigureContext, NotDrawn, entries
from vrbench.reports.selection import LAYOUTS, Choices, ReportSpec, estimator_families
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
    no_reference,
    relative,
    with_references,
)

FORMATS = ("pdf", "png", "svg")
COSTS = ("f_evals", "time_per_estimate_s")
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


def prepare(frame: pd.DataFrame, spec: ReportSpec, reference: str = REFERENCE,
            estimators: Choices | None = None, problems: Choices | None = None
            ) -> pd.DataFrame:
    """The cells a report shows, with every mark: annotated on the whole table (so the bias
    test's family and each problem's reference are the sweep's: the ``reference`` column,
    see :func:`~vrbench.reports.values.problem_references`), then selected, then
    best-marked among the selected estimators. A problem on which neither the reference
    nor any of its fallbacks ran has no ratios (a reference asked for by name must be in
    the results). ``estimators`` and ``problems`` are what the selection's tokens are read
    against (default: the names in ``frame``; see :class:`~vrbench.reports.selection.Choices`)."""
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
    chosen = spec.selection.apply(marked, estimators, problems)
    return chosen.assign(best=best(chosen))


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
    ``style`` names one of :data:`~vrbench.reports.style.STYLES` (the figures' design, a
    :class:`~vrbench.reports.style.FigureStyle`; each estimator's look is its
    :class:`~vrbench.reports.style.EstimatorStyle`). ``spec`` selects what is shown (its
    ``style``, ``formats``, ``reference`` and ``layout`` win over the arguments). Everything
    is checked before the output directory is made: a refused report leaves nothing behind,
    and a directory this call made is removed again if writing fails."""
    spec = spec or ReportSpec()
    formats = list(spec.formats or formats)
    style_name = spec.style or style
    reference = spec.reference or REFERENCE
    layout = spec.layout or "pages"
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise VrbenchError(f"unknown format {bad[0]!r}; valid formats: {', '.join(FORMATS)}")
    if style_name not in STYLES:
        raise VrbenchError(f"unknown style {style_name!r}; valid styles: "
                           f"{', '.join(STYLES)}")
    if layout not in LAYOUTS:
        raise VrbenchError(f"unknown layout {layout!r}; valid layouts: {', '.join(LAYOUTS)}")
    raw, metas, traces = load(paths)  # before creating anything: it may refuse the input
    # Unknown names are refused before any file is made; a name is unknown when none of
    # the cells, traces and shared runs has it.
    every_shared = load_shared(paths)
    estimators, problems = report_choices(raw, traces, every_shared)
    shared = _selected(every_shared, spec, estimators, problems)
    if (raw.empty or not (raw["status"] != "skipped").any()) and traces is None \
            and shared is None:
        raise VrbenchError(f"nothing to report in {', '.join(map(str, paths))}: no cell ran "
                           "and there are no optimization traces")
    frame = prepare(raw, spec, reference, estimators, problems)
    traces = _selected(traces, spec, estimators, problems)
    out = Path(out_dir)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _write(_context(frame, traces, shared, spec, style_name, reference, layout),
                      metas, out, formats, spec)
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise


def report_choices(cells: pd.DataFrame, traces: pd.DataFrame | None,
                   shared: pd.DataFrame | None) -> tuple[Choices, Choices]:
    """The estimators and problems a report's selection chooses among: every name in its
    cells, traces and shared runs, estimators with their families."""
    tables = [t for t in (cells, traces, shared) if t is not None and not t.empty]
    estimators = [t["estimator"] for t in tables]
    families = estimator_families(cells, *estimators)
    return (Choices.of("estimator", *estimators, families=families),
            Choices.of("problem", *(t["problem"] for t in tables)))


def _selected(traces: pd.DataFrame | None, spec: ReportSpec, estimators: Choices,
              problems: Choices) -> pd.DataFrame | None:
    """The traces of the selected estimators and problems (None: none)."""
    if traces is None:
        return None
    chosen = spec.selection.by_name(traces, estimators, problems)
    return chosen if not chosen.empty else None


def _context(frame: pd.DataFrame, traces: pd.DataFrame | None, shared: pd.DataFrame | None,
             spec: ReportSpec, style_name: str, reference: str, layout: str) -> FigureContext:
    """What the figures are drawn from; applies the style's matplotlib settings."""
    figure_style = apply_style(style_name)
    families = dict(zip(frame["estimator"], frame["family"], strict=True)) if not frame.empty \
        else {}
    names = list(frame["estimator"].dropna()) if not frame.empty else []
    names += list(traces["estimator"]) if traces is not None else []
    names += list(shared["estimator"]) if shared is not None else []
    problems = list(frame["problem"].dropna()) if not frame.empty else []
    problems += list(traces["problem"]) if traces is not None else []
    problems += list(shared["problem"]) if shared is not None else []
    shown = {name.split(":")[0] for name in names}
    n = spec.selection.one_n() or (int(frame.loc[frame["status"] == "ok", "n_samples"].max())
                                   if (not frame.empty and (frame["status"] == "ok").any())
                                   else None)
    return FigureContext(
        figure_style=figure_style,
        estimator_styles=estimator_styles(names, families,
                                          distinct=len(shown) <= len(DISTINCT_COLORS)),
        cells=frame, traces=traces, shared=shared,
        labels=resolve(spec.labels, names, problems), n=n, reference=reference, layout=layout)


def _write(context: FigureContext, metas: list[dict[str, Any]], out: Path,
           formats: list[str], spec: ReportSpec) -> Report:
    written: list[Path] = []
    done: list[Figure] = []
    not_drawn: dict[str, str] = {}
    for entry in entries():
        if not spec.wanted(entry.name):
            continue
        why = entry.why_not(context)
        if why is not None:
            not_drawn[entry.name] = why
            continue
        try:
            pages = entry.draw(context)
        except NotDrawn as reason:
            not_drawn[entry.name] = str(reason)
            continue
        stems = []
        for suffix, fig in pages:
            drop_colliding_labels(fig)
            stem = f"{entry.name}{suffix}"
            for fmt in formats:
                target = out / f"{stem}.{fmt}"
                fig.savefig(target, format=fmt, metadata=_metadata(fmt))
                written.append(target)
            plt.close(fig)
            stems.append(stem)
        done.append(Figure(entry.name, stems, entry.caption(context)))
    frame, n, reference, labels = context.cells, context.n, context.reference, context.labels
    tables: list[str] = []
    if spec.wanted(TABLES):
        why = _no_tables(frame, n)
        if why is not None:
            not_drawn[TABLES] = why
        else:
            assert n is not None
            prefix = spec.label_prefix or "tab:vrbench"
            # No ratio to show: the relative-variance table is not written, for the reason
            # the heatmap is not drawn, and the per-cell tables drop their ratio column.
            unreferenced = no_reference(frame, n, reference)
            relative_tables = []
            if unreferenced is None:
                relative_tables = [("table_relative_variance.tex", latex_relative(
                    frame, n, reference, context.figure_style, labels=labels,
                    prefix=prefix))]
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
    index.write_text(page.index_html(context, metas,
                                     page.PageContents(done, formats, tables, not_drawn), spec))
    written.append(index)
    return Report(written, done, not_drawn, spec.requested)


def _no_tables(frame: pd.DataFrame, n: int | None) -> str | None:
    """Why the tables cannot be written, or None."""
    if frame.empty or not (frame["status"] != "skipped").any():
        return "no cell of the selection ran (the tables hold cells, not training traces)"
    if n is None:
        return "no cell of the selection ran without error"
    return None


def _metadata(fmt: str) -> dict[str, Any]:
    # No creation date in PDF and SVG, so the same results give byte-identical figures.
    if fmt == "pdf":
        return {"CreationDate": None, "Creator": "vrbench"}
    if fmt == "svg":
        return {"Date": None, "Creator": "vrbench"}
    return {}
