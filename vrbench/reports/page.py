"""``index.html``: provenance first, a per-problem summary, navigation, the figures, sortable
tables of every cell, failures and skipped pairs. One self-contained file, no network."""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from vrbench.reports.console import format_interval
from vrbench.reports.labels import Labels, plain
from vrbench.reports.registry import FigureContext, entries
from vrbench.reports.style import estimator_order
from vrbench.reports.tables import pivot, pvalue_cell
from vrbench.reports.values import (
    FAMILY_ALPHA,
    NO_REFERENCE,
    describe_reference,
    describe_sweep_reference,
    format_sci,
    no_reference,
    problem_order,
    problem_references,
    shown_variance,
)

if TYPE_CHECKING:
    from vrbench.reports.build import Figure
    from vrbench.reports.selection import ReportSpec

CSS = """
body{font-family:system-ui,sans-serif;max-width:1150px;margin:1.5em auto;padding:0 1em;
color:#222;line-height:1.4}
nav{position:sticky;top:0;background:#fff;border-bottom:1px solid #ddd;padding:.4em 0;
font-size:.9em;z-index:1} nav a{margin-right:1em}
h2{margin-top:1.6em;border-bottom:1px solid #eee} figure{margin:1em 0}
figure img{max-width:100%;border:1px solid #eee} figcaption{font-size:.9em;color:#444}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border-bottom:1px solid #e4e4e4;padding:2px 8px;text-align:right;white-space:nowrap}
td.wrap{white-space:normal;min-width:12em} .scroll{overflow-x:auto;max-width:100%}
td.l,th.l{text-align:left} th{cursor:pointer;background:#f6f6f6;position:sticky;top:2em}
th.sorted-asc::after{content:" ▲"} th.sorted-desc::after{content:" ▼"}
.best{font-weight:bold} .exact{color:#1a5e20} .na{color:#999} .bad{color:#b00000}
.biased{font-style:italic} dl.prov{display:grid;grid-template-columns:max-content auto;
gap:.1em 1em;font-size:.9em} dl.prov dt{font-weight:600} dl.prov dd{margin:0}
.note{font-size:.9em;color:#444}
"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('th').forEach(function(th, column){
    th.addEventListener('click', function(){
      var body = table.tBodies[0], rows = Array.from(body.rows);
      var asc = !th.classList.contains('sorted-asc');
      table.querySelectorAll('th').forEach(function(h){
        h.classList.remove('sorted-asc','sorted-desc');});
      th.classList.add(asc ? 'sorted-asc' : 'sorted-desc');
      function key(row){ var cell = row.cells[column];
        var v = cell.getAttribute('data-sort'); if (v === null) v = cell.textContent;
        var x = parseFloat(v); return isNaN(x) ? v.toLowerCase() : x; }
      rows.sort(function(a, b){ var x = key(a), y = key(b);
        if (typeof x !== typeof y) { x = String(x); y = String(y); }
        return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); });
      rows.forEach(function(r){ body.appendChild(r); });
    });
  });
});
"""


TABLE_TITLES = {
    "tables": "Tables",
    "table_relative_variance": "Relative-variance table",
}
"""How the page names the tables in headings and navigation (figures: their entry's
:attr:`~vrbench.reports.registry.FigureEntry.heading`)."""


def title(name: str) -> str:
    """A figure's (or table's) heading on the page."""
    if name in TABLE_TITLES:
        return TABLE_TITLES[name]
    by_name = {entry.name: entry for entry in entries()}
    if name in by_name:
        return by_name[name].heading
    return name.replace("_", " ").capitalize()


def readable(text: str, labels: Labels, estimators: Sequence[str],
             problems: Sequence[str]) -> str:
    """``text`` (a reason a pair was skipped, say) with each of ``estimators`` and
    ``problems`` (as the results name them) written as its display name."""
    shown = {**{p: plain(labels.problem(p)) for p in dict.fromkeys(problems)},
             **{e: plain(labels.estimator(e)) for e in dict.fromkeys(estimators)}}
    for name in sorted(shown, key=len, reverse=True):
        if shown[name] != name:
            text = re.sub(rf"(?<![\w:=]){re.escape(name)}(?![\w:=])", shown[name], text)
    return text


def _cell(text: str, sort: float | str | None = None, cls: str = "") -> str:
    attrs = f" class='{cls}'" if cls else ""
    if sort is not None:
        value = sort if isinstance(sort, str) else (repr(float(sort)) if math.isfinite(sort)
                                                    else "1e308")
        attrs += f" data-sort='{html.escape(value)}'"
    return f"<td{attrs}>{text}</td>"


def _table(header: Sequence[str], rows: list[str], left: int = 1, sortable: bool = True) -> str:
    heads = "".join(f"<th class='l'>{html.escape(h)}</th>" if i < left else
                    f"<th>{html.escape(h)}</th>" for i, h in enumerate(header))
    cls = " class='sortable'" if sortable else ""
    # In a scrolling box: a wide table never spills out of the page's column.
    return (f"<div class='scroll'><table{cls}><thead><tr>{heads}</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table></div>")


def _name(text: str, code: str) -> str:
    """A display name, with the name in the results as its tooltip."""
    return f"<span title='{html.escape(code)}'>{html.escape(plain(text))}</span>"


def _provenance(metas: list[dict[str, Any]], spec: ReportSpec | None, style: str,
                reference: str, n: int | None) -> list[str]:
    parts = ["<h2 id='provenance'>Provenance</h2>"]
    for meta in metas:
        config = meta.get("config", {}) or {}
        items = [
            ("results", meta.get("source")),
            ("created", meta.get("finished") or meta.get("created")),
            ("vrbench", f"{meta.get('vrbench_version', '?')} (git "
                        f"{str(meta.get('git_revision') or '?')[:10]})"),
            ("software", f"torch {meta.get('torch_version', '?')}, numpy "
                         f"{meta.get('numpy_version', '?')}, python "
                         f"{meta.get('python_version', '?')}"),
            ("machine", f"{meta.get('host', '?')} ({meta.get('machine', '?')}, "
                        f"{meta.get('cpu_count', '?')} cores; device "
                        f"{config.get('device', 'cpu')}; {meta.get('scheduler', '')})"),
            ("sweep", f"n = {config.get('n_samples')}, R = {config.get('replicates')}, "
                      f"seeds {config.get('seeds')}; {meta.get('cells', '?')} cells"),
        ]
        if meta.get("partial"):
            items.insert(1, ("status", "partial: the sweep has not finished (or was "
                                       "stopped); the cells stored so far"))
        parts.append("<dl class='prov'>" + "".join(
            f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in items
            if v is not None) + "</dl>")
        parts.append("<details><summary>full provenance record</summary><pre>"
                     + html.escape(json.dumps(meta, indent=2, default=str)) + "</pre></details>")
    selection = spec.selection if spec else None
    chosen = []
    if selection is not None:
        for key in ("estimators", "problems", "n"):
            if getattr(selection, key):
                chosen.append(f"{key}: {', '.join(getattr(selection, key))}")
    parts.append(f"<p class='note'>This report: style {html.escape(style)}; reference "
                 f"{html.escape(reference)}; one-n views at n = {n}; "
                 + html.escape("; ".join(chosen) if chosen else "everything in the results")
                 + ".</p>")
    return parts


def _summary(frame: pd.DataFrame, reference: str, labels: Labels,
             relative: bool = True) -> list[str]:
    ran = frame[frame["status"] != "skipped"]
    references = problem_references(ran, reference)
    counts = frame["status"].value_counts()
    parts = ["<h2 id='summary'>Summary</h2>",
             f"<p>{counts.get('ok', 0)} cells ok, {counts.get('error', 0)} failed, "
             f"{counts.get('missing', 0)} missing (not computed), "
             f"{counts.get('skipped', 0)} incompatible pairs skipped. Best: the unbiased "
             "estimator of lowest variance at the problem's largest n, and every unbiased one "
             "whose 95% interval overlaps it. †: unbiasedness rejected by the bias test "
             f"(family-wise level {FAMILY_ALPHA:g}). "
             + ("Ratios are to the reference " + html.escape(plain(describe_reference(
                 references, reference, None, labels.estimator, labels.problem))) + "."
                if relative else
                f"No reference ({html.escape(reference)} or a fallback) ran: no ratios.")
             + "</p>"]
    any_missing = bool((ran["status"] == "missing").any())
    rows = []
    ok = ran[ran["status"] == "ok"]
    for problem in problem_order(ran):
        cells = ran[ran["problem"] == problem]
        good = ok[ok["problem"] == problem]
        if good.empty:
            n = int(cells["n_samples"].max())
            winners = good
        else:
            n = int(good["n_samples"].max())
            at_n = good[good["n_samples"] == n]
            winners = at_n[at_n["best"]]
        order = estimator_order(winners["estimator"])
        names = ", ".join(_name(labels.estimator(e), e) for e in order)
        sort_names = ", ".join(plain(labels.estimator(e)) for e in order)
        lead = (winners.loc[cast(Any, winners["variance"].idxmin())] if not winners.empty
                else None)
        ref = good[(good["estimator"] == references.get(problem)) & (good["n_samples"] == n)]
        ref_var = shown_variance(ref)["variance"].iloc[0] if not ref.empty else math.nan
        if lead is None:
            ratio_cell = _cell("—", math.inf, "na")
        elif lead["exact"]:
            ratio_cell = _cell("exact", 0.0, "exact")
        elif lead["estimator"] == references.get(problem):
            ratio_cell = _cell("1 (reference)", 1.0)
        elif pd.isna(lead["ratio"]):
            ratio_cell = _cell(NO_REFERENCE, math.inf, "na")
        else:
            ratio_cell = _cell(format_sci(lead["ratio"], 2), lead["ratio"])
        # Failed (an error) and missing (not computed) apart, as the headline counts them.
        failed = int((cells["status"] == "error").sum())
        missing = int((cells["status"] == "missing").sum())
        flagged = int(cells["bias_rejected"].sum())
        rows.append("<tr>" + _cell(f"<a href='#cells'>{_name(labels.problem(problem), problem)}"
                                   "</a>", problem, "l")
                    + _cell(str(cells["estimator"].nunique()), cells["estimator"].nunique())
                    + _cell(str(n), n) + _cell(names or "—", sort_names, "l wrap")
                    + (ratio_cell + _cell(format_sci(ref_var, 3)
                                          + _named(references.get(problem), reference, labels),
                                          ref_var) if relative else "")
                    + _cell(str(failed) if failed else "·", failed, "bad" if failed else "")
                    + (_cell(str(missing) if missing else "·", missing,
                             "bad" if missing else "") if any_missing else "")
                    + _cell(str(flagged) if flagged else "·", flagged,
                            "bad" if flagged else "") + "</tr>")
    parts.append(_table(["problem", "ran", "n", "best unbiased (ties)",
                         *(["variance ÷ reference's", "reference's variance"] if relative
                           else []), "failed",
                         *(["missing"] if any_missing else []), "†"], rows))
    return parts


def _named(used: str | None, reference: str, labels: Labels) -> str:
    """After a reference variance: the estimator, where it is not ``reference``."""
    if used == reference:
        return ""
    return f" ({_name(labels.estimator(used), used) if used else NO_REFERENCE})"


def _pivot_html(frame: pd.DataFrame, n: int, reference: str, labels: Labels) -> str:
    table = pivot(frame, n, reference)
    rows = []
    for estimator in table.estimators:
        cls = "l biased" if estimator in table.italic else "l"
        cells = [_cell(_name(labels.estimator(estimator), estimator), estimator, cls)]
        for problem in table.problems:
            cell = table.cells.get((problem, estimator))
            if cell is None:
                cells.append(_cell("—", math.inf, "na"))
                continue
            text = html.escape(cell.markdown().replace("**", ""))
            key = {"exact": 0.0, "err": math.inf, "1": 1.0}.get(cell.mantissa)
            if key is None:
                try:
                    key = float(cell.mantissa.split("(")[0]) * 10.0 ** (cell.exponent or 0)
                except ValueError:
                    key = math.inf
            cls = " ".join(c for c in ("best" if cell.bold else "",
                                       "exact" if cell.mantissa == "exact" else "",
                                       "bad" if cell.mantissa == "err" else "") if c)
            cells.append(_cell(text, key, cls))
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return _table(["estimator", *(plain(labels.problem(p)) for p in table.problems)], rows)


def _cells_html(frame: pd.DataFrame, labels: Labels, reference: str,
                relative: bool = True) -> str:
    ran = frame[frame["status"] == "ok"]
    references = problem_references(frame, reference)
    rows = []
    for problem in problem_order(ran):
        cells = ran[ran["problem"] == problem]
        shown = shown_variance(cells)
        for estimator in estimator_order(cells["estimator"]):
            for index, row in cells[cells["estimator"] == estimator].sort_values(
                    "n_samples").iterrows():
                v = shown.loc[cast(Any, index)]
                if row["exact"]:
                    variance = _cell("exact", 0.0, "exact")
                    rel = _cell("exact", 0.0, "exact")
                else:
                    variance = _cell(format_interval(v["variance"], v["low"], v["high"]),
                                     v["variance"], "best" if row["best"] else "")
                    rel = (_cell("1 (reference)", 1.0)
                           if estimator == references.get(problem) else
                           _cell(format_sci(row["ratio"], 2), row["ratio"])
                           if pd.notna(row["ratio"]) else _cell(NO_REFERENCE, math.inf, "na"))
                bias = (_cell("exact", 0.0, "exact") if row["bias_exact"] else
                        _cell(format_sci(row["bias_norm"], 2)
                              + (" †" if row["bias_rejected"] else ""), row["bias_norm"],
                              "bad" if row["bias_rejected"] else ""))
                cls = "l biased" if row["unbiased_claim"] is False else "l"
                rows.append("<tr>" + _cell(_name(labels.problem(problem), problem), problem,
                                           "l")
                            + _cell(_name(labels.estimator(estimator), estimator), estimator,
                                    cls)
                            + _cell(html.escape(str(row["family"])), str(row["family"]), "l")
                            + _cell(str(row["n_samples"]), row["n_samples"]) + bias
                            + _cell(pvalue_cell(row["bias_pvalue"]).markdown(),
                                    row["bias_pvalue"])
                            + variance + (rel if relative else "")
                            + (_cell("exact", 0.0, "exact") if row["exact"] and
                               row["bias_exact"] else _cell(format_sci(row["mse"], 2),
                                                            row["mse"]))
                            + _cell(format_sci(row["time_per_estimate_s"] * 1e6, 2),
                                    row["time_per_estimate_s"]) + "</tr>")
    return _table(["problem", "estimator", "family", "n", "‖bias‖", "p(bias)",
                   "variance (95% CI)", *(["rel. variance"] if relative else []), "MSE",
                   "µs / estimate"], rows, left=3)


@dataclass(frozen=True)
class PageContents:
    """What the page shows of the report's files: the figures drawn (each linked in every
    one of ``formats``), the tables written, and the figures not drawn with why."""

    figures: Sequence[Figure] = ()
    formats: Sequence[str] = ()
    """The figures' file formats; the page shows the PNG (else the SVG) and links each."""
    tables: Sequence[str] = ()
    """The tables' file names."""
    not_drawn: Mapping[str, str] = field(default_factory=dict)
    """Figure (or ``tables``) → why it was not drawn."""


def index_html(context: FigureContext, metas: list[dict[str, Any]], contents: PageContents,
               spec: ReportSpec | None = None) -> str:
    """The report's page: the cells, sample size, reference, labels and style of
    ``context``, the provenance of ``metas``, and ``contents``."""
    frame, n, reference, labels = context.cells, context.n, context.reference, context.labels
    figures, formats, tables = contents.figures, contents.formats, contents.tables
    not_drawn = contents.not_drawn
    # No reference ran on any selected problem: no ratios anywhere on the page.
    relative = frame.empty or n is None or no_reference(frame, n, reference) is None
    image = "png" if "png" in formats else ("svg" if "svg" in formats else None)
    nav = ["<a href='#provenance'>Provenance</a>"]
    if not frame.empty:
        nav.append("<a href='#summary'>Summary</a>")
    nav += [f"<a href='#{f.name}'>{html.escape(title(f.name))}</a>" for f in figures]
    if tables:
        nav.append("<a href='#tables'>Tables</a>")
    if not frame.empty:
        nav += ["<a href='#cells'>Every cell</a>", "<a href='#failures'>Failures</a>"]
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             "<title>vrbench report</title>", f"<style>{CSS}</style></head><body>",
             "<h1>vrbench report</h1>", "<nav>" + " ".join(nav) + "</nav>"]
    described = plain(describe_sweep_reference(frame, reference, labels.estimator,
                                               labels.problem)
                      if not frame.empty else labels.estimator(reference))
    if not relative:
        described = f"{plain(labels.estimator(reference))} (it did not run: no ratios)"
    parts += _provenance(metas, spec, context.figure_style.name, described, n)
    if not frame.empty:
        parts += _summary(frame, reference, labels, relative)
    for figure in figures:
        parts.append(f"<h2 id='{figure.name}'>{html.escape(title(figure.name))}</h2>")
        for page, stem in enumerate(figure.stems, start=1):
            links = " · ".join(f"<a href='{stem}.{fmt}'>{fmt}</a>" for fmt in formats)
            which = (f"{title(figure.name)}, page {page} of {len(figure.stems)}"
                     if len(figure.stems) > 1 else title(figure.name))
            img = f"<img src='{stem}.{image}' alt='{html.escape(which)}'>" if image else ""
            pages = f" Page {page} of {len(figure.stems)}." if len(figure.stems) > 1 else ""
            parts.append(f"<figure>{img}<figcaption>{html.escape(figure.caption)}{pages} "
                         f"Files: {links}</figcaption></figure>")
    if not_drawn:
        asked = set(spec.requested) if spec is not None else set()
        items = "".join(f"<li{' class=bad' if name in asked else ''}>"
                        f"<span title='{html.escape(name)}'>{html.escape(title(name))}</span>"
                        f"{' (asked for)' if name in asked else ''}: "
                        f"{html.escape(why)}</li>" for name, why in not_drawn.items())
        parts.append(f"<p class='note'>Not drawn, and why:</p><ul class='note'>{items}</ul>")
    if tables:
        links = " · ".join(f"<a href='{t}'>{t}</a>" for t in tables)
        parts.append(f"<h2 id='tables'>Tables</h2><p>{links}</p>")
        if n is not None and relative:
            marks = pivot(frame, n, reference).marks()
            key = ["9.8(3)e-1 = (9.8 ± 0.3)·10⁻¹ (95% interval)"]
            key += [text for mark, text in (
                ("bold", "bold: best unbiased and ties"),
                ("dagger", "†: unbiasedness rejected"), ("italic", "italic: biased by design"),
                ("exact", "exact: zero variance"), ("—", "—: not applicable"),
                (NO_REFERENCE, f"{NO_REFERENCE}: no reference variance to compare with"))
                if mark in marks]
            parts.append(f"<p class='note'>Variance relative to {html.escape(described)} at "
                         f"n = {n}; " + html.escape("; ".join(key)) + ".</p>")
            parts.append(_pivot_html(frame, n, reference, labels))
    if not frame.empty:
        ok = frame[frame["status"] == "ok"]
        parts.append(f"<h2 id='cells'>Every cell</h2><details><summary>{len(ok)} cells "
                     "(click a column to sort)</summary>"
                     + _cells_html(frame, labels, reference, relative)
                     + "</details>")
        failed = frame[frame["status"].isin(["error", "missing"])]
        if failed.empty:
            parts.append("<h2 id='failures'>Failures</h2><p>No failed or missing cells.</p>")
        else:
            parts.append(f"<h2 id='failures' class='bad'>Failed and missing cells "
                         f"({len(failed)})</h2>")
            rows = ["<tr>" + _cell(html.escape(str(r.problem)), str(r.problem), "l")
                    + _cell(html.escape(str(r.estimator)), str(r.estimator), "l")
                    + _cell(str(r.n_samples), float(cast(Any, r.n_samples)))
                    + _cell(html.escape(str(r.status)), str(r.status), "l")
                    + _cell(html.escape(str(r.error)), None, "l") + "</tr>"
                    for r in failed.itertuples(index=False)]
            parts.append(_table(["problem", "estimator", "n", "status", "error"], rows,
                                left=2))
        skipped = frame[frame["status"] == "skipped"]
        if not skipped.empty:
            reasons = skipped.groupby("error", sort=False).agg(
                pairs=("problem", "size"), problems=("problem", "nunique"))
            shown = (list(skipped["estimator"].astype(str).unique()),
                     list(skipped["problem"].astype(str).unique()))
            rows = ["<tr>" + _cell(html.escape(readable(str(reason), labels, *shown)),
                                   str(reason), "l")
                    + _cell(str(r["pairs"]), r["pairs"]) + _cell(str(r["problems"]),
                                                                r["problems"]) + "</tr>"
                    for reason, r in reasons.sort_values("pairs", ascending=False).iterrows()]
            parts.append(f"<details><summary>Skipped pairs ({len(skipped)}), by reason"
                         "</summary>" + _table(["reason", "pairs", "problems"], rows)
                         + "</details>")
    parts.append(f"<script>{SORT_JS}</script></body></html>")
    return "\n".join(parts)
