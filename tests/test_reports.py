"""Reports: every figure and table rendered from fixtures and checked as files.

Two fixtures: a small real sweep (failed cells, temperatures, traces) and a synthetic
results table shaped like the default sweep (every registered estimator, exact estimators,
biased ones, a rejected claim of unbiasedness, failed and skipped cells), which is fast to
make and exercises the page-splitting.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from rich.console import Console
from rich.progress import Progress

from vrbench import estimators, problems
from vrbench.bench.config import SweepConfig
from vrbench.bench.results import RESULTS_FILE, to_frame, write_results
from vrbench.bench.sweep import run_sweep
from vrbench.bench.train import TrainSettings, train
from vrbench.cli import _parser, main
from vrbench.components import Spec
from vrbench.errors import VrbenchError
from vrbench.estimators.base import Estimator
from vrbench.reports import figures, registry
from vrbench.reports.axes import log_ticks, text_width_in, wrap_label
from vrbench.reports.build import build_report, prepare
from vrbench.reports.console import StableETA, format_interval, summary_table
from vrbench.reports.figures import FigureContext, heatmap
from vrbench.reports.figures.pages import alike_groups
from vrbench.reports.labels import Labels, plain, words
from vrbench.reports.labels import latex as latex_name
from vrbench.reports.page import PageContents, index_html
from vrbench.reports.paging import paginate
from vrbench.reports.selection import ReportSpec, Selection, load_spec
from vrbench.reports.style import (
    COLUMNWIDTH_PT,
    FAMILY_MEMBERS,
    MARKERS,
    STYLES,
    apply_style,
    estimator_styles,
)
from vrbench.reports.tables import (
    cell_rows,
    latex_cells,
    latex_cells_floats,
    latex_document,
    latex_relative,
    markdown_tables,
    wrap_words,
)
from vrbench.reports.values import EXACT_RTOL, annotate, best, problem_references

LABELS = Labels()
"""The components' own display names, as a report without overrides shows them."""

FIGURES = ["variance_vs_samples", "bias_vs_variance", "work_normalized_fevals",
           "work_normalized_time", "relative_variance", "bias_vs_temperature",
           "training_by_step", "training_by_time"]
SYNTHETIC_FIGURES = FIGURES[:5]
MAX_WIDTH_IN = {"paper": 7.0, "column": 3.5}


def pdf_size_in(path: Path) -> tuple[float, float]:
    data = path.read_bytes()
    match = re.search(rb"/MediaBox \[\s*0 0 ([\d.]+) ([\d.]+)", data)
    return float(match.group(1)) / 72, float(match.group(2)) / 72


# ----------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class _Exploding(Estimator):
    """Fails on every problem."""

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        raise RuntimeError("exploded on purpose")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A small sweep with failing cells, plus optimization traces in the same directory."""
    out = tmp_path_factory.mktemp("results")
    estimators.registry.add("exploding", _Exploding, origin="test")
    config = SweepConfig(
        estimators=[Spec("score_function"), Spec("rloo"), Spec("reparameterization"),
                    Spec("exploding"), Spec("disarm"),  # exact, zero variance at θ = 0
                    Spec("gumbel_softmax", {"temperature": 0.2}),
                    Spec("gumbel_softmax", {"temperature": 1.0})],
        problems=[Spec("gaussian_quadratic"), Spec("bernoulli_toy")],
        n_samples=[2, 8], replicates=400, seeds=[0], jobs=1, output=str(out))
    try:
        outcome = run_sweep(config, in_process=True)  # "exploding" is registered here only
    finally:
        del estimators.registry._entries["exploding"]
    assert outcome.failed == 4
    rows = []
    for estimator in ("score_function", "reparameterization"):
        for seed in (0, 1):
            rows += train(Spec("gaussian_quadratic"), Spec(estimator), seed,
                          TrainSettings(steps=20, eval_every=5, eval_replicates=16))
    pd.DataFrame(rows).to_parquet(out / "train.parquet")
    return out


@pytest.fixture(scope="module")
def report(results, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    build_report([results], out, formats=["pdf", "png", "svg"])
    return out


PROBLEMS = {  # problem → (‖∇J‖, variance of score_function at n = 1)
    "bandit_gaussian_10": (0.29, 1.6),
    "bernoulli_toy": (5e-4, 1.6e-2),
    "bernoulli_vector": (1.1e-4, 0.3),
    "chain_mdp": (18.0, 3.6e5),
    "random_mdp": (1.9, 8e4),
    "gaussian_quadratic": (3.6, 200.0),
    "gaussian_abs": (0.8, 14.0),
}
EXACT = {("bernoulli_toy", "disarm"): 0.0, ("bernoulli_toy", "mvd_bernoulli"): 0.0,
         ("bernoulli_toy", "antithetic_score_function"): 3e-36,
         ("bernoulli_vector", "mvd_bernoulli"): 4.9e-35}
"""Cells whose variance is rounding error, as the default sweep measures them."""
REJECTED = ("bernoulli_vector", "rebar", 16)
"""A cell whose claim of unbiasedness the bias test rejects."""
FAILED = ("bernoulli_vector", "relax", 4)


def synthetic_frame() -> pd.DataFrame:
    """Every registered built-in estimator on the problems of :data:`PROBLEMS`, n = 1, 4, 16,
    skipped where the sweep would skip it; the exact enumeration has zero variance."""
    entries = [e for e in estimators.registry.entries() if e.origin == "builtin"]
    rng = np.random.default_rng(0)
    rows = []
    for problem, (grad, sf_variance) in PROBLEMS.items():
        instance = problems.make(problem)
        for index, entry in enumerate(entries):
            cls = entry.cls
            for n in (1, 4, 16):
                base = {"problem": problem, "estimator": entry.name, "n_samples": n,
                        "replicates": 10_000, "seed": 0, "family": cls.family,
                        "unbiased_claim": cls.unbiased, "estimator_params": "{}",
                        "problem_params": "{}", "dim": 4, "true_grad_norm": grad}
                reason = cls.from_params().incompatibility(instance, n)
                if reason is not None:
                    rows.append({**base, "status": "skipped", "error": reason})
                    continue
                if (problem, entry.name, n) == FAILED:
                    rows.append({**base, "status": "error", "error": "RuntimeError: boom"})
                    continue
                factor = 1.0 if entry.name == "score_function" else 10 ** -rng.uniform(0, 3)
                variance = 0.0 if cls.family == "exact" else EXACT.get(
                    (problem, entry.name), sf_variance * factor / n)
                half = 0.02 * variance
                bias = math.sqrt(variance / 10_000) * rng.uniform(0.2, 1.5) or 7e-18
                if not cls.unbiased:
                    bias = 10 * math.sqrt(sf_variance / 10_000)
                pvalue = 1e-9 if (problem, entry.name, n) == REJECTED else rng.uniform(0.05, 1)
                rows.append({**base, "status": "ok", "error": "", "variance": variance,
                             "variance_ci_low": variance - half,
                             "variance_ci_high": variance + half, "bias_norm": bias,
                             "bias_pvalue": pvalue, "mse": bias**2 + variance,
                             "time_per_estimate_s": 1e-7 * n * (1 + index % 5),
                             "f_evals": n * (2 if cls.family == "discrete" else 1)})
    return to_frame(rows)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    write_results(synthetic_frame(), out, {"vrbench_version": "test", "config": {
        "n_samples": [1, 4, 16], "replicates": 10_000, "seeds": [0]}})
    return out


@pytest.fixture(scope="module", params=["paper", "column"])
def styled(request, synthetic, tmp_path_factory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp(f"synthetic-{request.param}")
    build_report([synthetic], out, formats=["pdf"], style=request.param)
    return request.param, out


@pytest.fixture(scope="module")
def prepared(synthetic) -> pd.DataFrame:
    frame = pd.read_parquet(synthetic / RESULTS_FILE)
    return prepare(frame, ReportSpec())


FALLBACK = "gaussian_abs"
"""A problem of :func:`fallback_frame` where only the fallback reference ran, as on
iwae_digits: ``multi_sample_score_function`` in place of ``score_function``."""
UNREFERENCED = "random_mdp"
"""One where no reference ran at all."""


def fallback_frame() -> pd.DataFrame:
    """The synthetic table, with the score function's cells on :data:`FALLBACK` moved to
    ``multi_sample_score_function`` and those on :data:`UNREFERENCED` skipped."""
    frame = synthetic_frame()
    sf = frame.estimator == "score_function"
    msf = frame.estimator == "multi_sample_score_function"
    frame = frame[~(msf & (frame.problem == FALLBACK))].copy()
    moved = sf & (frame.problem == FALLBACK)
    frame.loc[moved, "estimator"] = "multi_sample_score_function"
    gone = sf & (frame.problem == UNREFERENCED)
    frame.loc[gone, "status"] = "skipped"
    frame.loc[gone, ["variance", "variance_ci_low", "variance_ci_high"]] = math.nan
    return frame.reset_index(drop=True)


@pytest.fixture(scope="module")
def fallback(tmp_path_factory) -> tuple[pd.DataFrame, Path]:
    out = tmp_path_factory.mktemp("fallback")
    frame = fallback_frame()
    write_results(frame, out, {"vrbench_version": "test", "config": {
        "n_samples": [1, 4, 16], "replicates": 10_000, "seeds": [0]}})
    return prepare(frame, ReportSpec()), out


# ----------------------------------------------------------------------------- sizes


def test_the_synthetic_fixture_is_like_the_default_sweep(prepared):
    ok = prepared[prepared.status == "ok"]
    assert ok.estimator.nunique() >= 20
    assert ok.exact.sum() >= 9 and (~ok.unbiased_claim).any()
    assert ok.bias_rejected.sum() == 1 and (prepared.status == "error").sum() == 1


@pytest.mark.parametrize("name", SYNTHETIC_FIGURES)
def test_every_figure_fits_a_page_of_its_style(styled, name):
    style, out = styled
    pages = sorted(out.glob(f"{name}*.pdf"))
    assert pages, f"{name} was not drawn"
    for page in pages:
        width, height = pdf_size_in(page)
        assert height <= 9.0, f"{page.name} is {height:.2f} in tall"
        assert width <= MAX_WIDTH_IN[style], f"{page.name} is {width:.2f} in wide"


def test_many_problems_are_split_into_numbered_pages_each_with_its_legend(prepared):
    """21 problems: more than a page of the paper style holds (the column style splits the
    synthetic fixture's 7 already)."""
    many = pd.concat([prepared.assign(problem=prepared.problem + f"_{i}") for i in range(3)],
                     ignore_index=True)
    for style in ("paper",):
        fig_style = apply_style(style)
        styles = estimator_styles(many.estimator,
                                  dict(zip(many.estimator, many.family, strict=True)))
        pages = figures.variance_vs_samples(FigureContext(fig_style, styles, many))
        assert [s for s, _ in pages] == [f"-{i}" for i in range(1, len(pages) + 1)]
        assert len(pages) >= 2
        drawn = set()
        for _, fig in pages:
            width, height = fig.get_size_inches()
            assert height <= 9.0 and width <= MAX_WIDTH_IN[style]
            assert len(fig.legends) == 1
            titles = [ax.get_title().replace("\n", " ") for ax in fig.axes if ax.get_visible()]
            drawn.update(titles)
            plt.close(fig)
        assert drawn == {LABELS.problem(p) for p in many.problem}


def test_heatmap_rows_keep_their_height_and_split_into_pages_when_many(prepared):
    """In the slides style (6.75 in pages, 12 pt text) the estimators of the fixture do not
    fit one page: the rows are split, each row stays 1.5 times the font tall, every
    estimator appears, and every page's colour bar has the same ticks."""
    fig_style = apply_style("slides")
    styles = estimator_styles(prepared.estimator,
                              dict(zip(prepared.estimator, prepared.family, strict=True)))
    pages = figures.relative_variance_heatmap(FigureContext(fig_style, styles, prepared, n=16))
    shown, ticks = set(), set()
    for _, fig in pages:
        assert fig.get_size_inches()[1] <= fig_style.max_height
        fig.canvas.draw()  # the constrained layout places the axes
        cells = next(ax for ax in fig.axes if ax.get_label() != "<colorbar>")
        rows = [t.get_text().replace("\n", " ") for t in cells.get_yticklabels()]
        shown.update(rows)
        height_pt = cells.get_position().height * fig.get_size_inches()[1] * 72
        assert height_pt / len(rows) >= 1.5 * fig_style.small
        bar = next(ax for ax in fig.axes if ax.get_label() == "<colorbar>")
        ticks.add(tuple(bar.get_xticks()))
        plt.close(fig)
    ran = prepared[(prepared.n_samples == 16) & (prepared.status != "skipped")]
    assert len(pages) >= 2 and len(ticks) == 1
    assert shown == {LABELS.estimator(e) for e in ran.estimator}


def test_the_per_problem_layout_draws_one_column_wide_figure_per_problem(synthetic, tmp_path):
    spec = ReportSpec(figures=("variance_vs_samples", "relative_variance"),
                      layout="per-problem").override(problems="bernoulli_*")
    build_report([synthetic], tmp_path, formats=["pdf"], spec=spec)
    for name in ("variance_vs_samples", "relative_variance"):
        pages = sorted(p.name for p in tmp_path.glob(f"{name}*.pdf"))
        assert pages == [f"{name}-bernoulli_toy.pdf", f"{name}-bernoulli_vector.pdf"]
        for page in pages:
            width, height = pdf_size_in(tmp_path / page)
            assert width <= 3.5 and height <= 9.0


def test_pdfs_are_vector_with_embedded_truetype_fonts(report):
    for name in FIGURES:
        data = (report / f"{name}.pdf").read_bytes()
        assert b"/FontFile2" in data  # embedded TrueType (pdf.fonttype 42)
        assert b"/Type3" not in data
        assert b"/Subtype /Image" not in data  # no raster content: the figure is vector


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_is_written_in_every_format(report, name):
    for fmt in ("pdf", "png", "svg"):
        assert (report / f"{name}.{fmt}").stat().st_size > 1000


def test_pngs_are_300_dpi(report):
    with Image.open(report / "variance_vs_samples.png") as image:
        dpi = image.info["dpi"]
    assert round(dpi[0]) == 300


# ----------------------------------------------------------------------------- what is drawn


def _pages(prepared: pd.DataFrame, style: str = "paper") -> dict[str, list]:
    fig_style = apply_style(style)
    styles = estimator_styles(prepared.estimator,
                              dict(zip(prepared.estimator, prepared.family, strict=True)))
    context = FigureContext(fig_style, styles, prepared, n=16)
    return {
        "variance_vs_samples": figures.variance_vs_samples(context),
        "bias_vs_variance": figures.bias_vs_variance(context),
        "work_normalized_fevals": figures.work_normalized(context, "f_evals"),
        "work_normalized_time": figures.work_normalized(context, "time_per_estimate_s"),
        "relative_variance": figures.relative_variance_heatmap(context),
    }


def _labels(axis) -> list[str]:
    low, high = sorted(axis.get_view_interval())
    return [t.get_text() for t in axis.get_ticklabels()
            if t.get_text() and low <= t.get_position()[axis is axis.axes.yaxis] <= high]


def test_every_log_axis_labels_at_least_two_ticks(prepared):
    alike = ("bandit_gaussian_10", "bernoulli_toy", "chain_mdp", "gaussian_abs")
    for name, pages in _pages(prepared[prepared.problem.isin(alike)]).items():
        for _, fig in pages:
            fig.canvas.draw()
            for ax in fig.axes:
                if not ax.get_visible() or ax.get_label() == "<colorbar>":
                    continue
                for axis in (ax.xaxis, ax.yaxis):
                    if axis.get_scale() == "log":
                        assert len(_labels(axis)) >= 2, (name, ax.get_title(), _labels(axis))
            plt.close(fig)


def test_exact_estimators_are_drawn_and_labelled(prepared):
    pages = _pages(prepared)
    _, fig = pages["variance_vs_samples"][0]
    fig.canvas.draw()
    panel = next(ax for ax in fig.axes if ax.get_title() == LABELS.problem("bernoulli_toy"))
    assert "exact" in _labels(panel.yaxis)
    on_toy = prepared[(prepared.problem == "bernoulli_toy") & (prepared.status == "ok")]
    assert len(panel.lines) >= on_toy.estimator.nunique()  # one series each, none dropped
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {LABELS.estimator(e) for e in ("disarm", "mvd_bernoulli",
                                           "antithetic_score_function")} <= set(legend)
    ticks = dict(zip(_labels(panel.yaxis), panel.get_yticks(), strict=False))
    lowest = min(y for label, y in ticks.items() if label != "exact")
    bottom = panel.get_ylim()[0]
    strip = [line for line in panel.lines if len(line.get_ydata()) == 3
             and line.get_marker() not in (None, "None", "")
             and bottom < min(line.get_ydata()) and max(line.get_ydata()) < lowest]
    assert len(strip) == 3  # the three exact estimators, each at its own height
    assert len({line.get_ydata()[0] for line in strip}) == 3
    plt.close("all")
    heatmap = pages["relative_variance"][0][1]
    texts = [t.get_text() for ax in heatmap.axes for t in ax.texts]
    assert texts.count("exact") >= 3 and not any(re.search(r"−[12]\d\.\d", t) for t in texts)


def test_heatmap_marks_the_rejected_claim_and_the_best(prepared):
    heatmap = _pages(prepared)["relative_variance"]
    texts = [t for _, fig in heatmap for ax in fig.axes for t in ax.texts]
    assert sum("†" in t.get_text() for t in texts) == 1
    bold = [t.get_text() for t in texts if t.get_fontweight() == "bold"]
    # Tied at zero: three on bernoulli_toy, one on _vector; the exact enumeration on
    # bernoulli_toy is exact too but, the reference of the others, never bold.
    assert bold.count("exact") == 4
    plt.close("all")


def test_selection_filters_what_is_drawn(synthetic, tmp_path):
    spec = ReportSpec().override(estimators="rloo,family:discrete,mvd_*",
                                 problems="bernoulli_*")
    build_report([synthetic], tmp_path, formats=["pdf"], spec=dataclasses.replace(
        spec, figures=("variance_vs_samples", "tables")))
    frame = prepare(pd.read_parquet(synthetic / RESULTS_FILE), spec)
    frame = frame[frame.status != "skipped"]
    assert set(frame.estimator) == {"rloo", "arm", "arms", "disarm", "rebar", "relax",
                                    "mvd_bernoulli"}
    assert set(frame.problem) == {"bernoulli_toy", "bernoulli_vector"}
    fig_style = apply_style("paper")
    styles = estimator_styles(frame.estimator)
    (_, fig), = figures.variance_vs_samples(FigureContext(fig_style, styles, frame))
    legend = {t.get_text() for t in fig.legends[0].get_texts()} - {"slope −1 (∝ 1/n)",
                                                                  "† unbiasedness rejected"}
    assert legend == {LABELS.estimator(e) for e in frame.estimator}
    assert {ax.get_title().replace("\n", " ") for ax in fig.axes if ax.get_visible()} == {
        LABELS.problem("bernoulli_toy"), LABELS.problem("bernoulli_vector")}
    plt.close(fig)
    summary = (tmp_path / "summary.md").read_text()
    assert LABELS.estimator("score_function_baseline") not in summary
    assert LABELS.problem("chain_mdp") not in summary
    assert (tmp_path / "variance_vs_samples.pdf").exists()


def test_a_figure_spec_gives_the_same_selection_as_the_options(synthetic, tmp_path):
    spec_file = tmp_path / "figure.toml"
    spec_file.write_text('estimators = ["rloo", "family:discrete"]\nproblems = "bernoulli_*"\n'
                         'n = 4\nstyle = "column"\nfigures = ["bias_vs_variance", "tables"]\n')
    spec = load_spec(spec_file)
    assert spec.selection == Selection.parse("rloo,family:discrete", "bernoulli_*", "4")
    written = build_report([synthetic], tmp_path / "out", formats=["pdf"], spec=spec)
    names = {p.name for p in written}
    assert "bias_vs_variance.pdf" in names and "variance_vs_samples.pdf" not in names
    assert pdf_size_in(tmp_path / "out" / "bias_vs_variance.pdf")[0] <= 3.5
    assert "n = 4" in (tmp_path / "out" / "table_relative_variance.tex").read_text()
    overridden = spec.override(n="16", style="paper")
    assert overridden.selection.n == ("16",) and overridden.style == "paper"
    assert overridden.selection.estimators == spec.selection.estimators


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"estimators": "rlo"}, "no estimator in the results matches 'rlo' (did you mean 'rloo'?)"),
    ({"problems": "taxi"}, "no problem in the results matches 'taxi'; valid: bandit_gaussian"),
    ({"n": "7"}, "no results at n=7; the results have n = 1, 4, 16"),
])
def test_a_selection_of_nothing_is_a_clear_error(synthetic, kwargs, message):
    frame = pd.read_parquet(synthetic / RESULTS_FILE)
    with pytest.raises(VrbenchError, match=re.escape(message)):
        Selection.parse(**kwargs).apply(frame)


def test_selection_by_name_glob_family_and_exclusion(prepared):
    def chosen(**kwargs) -> set[str]:
        return set(Selection.parse(**kwargs).apply(prepared).estimator)

    assert chosen(estimators="score_function") == {"score_function"}
    assert chosen(estimators="score_function*") == {
        "score_function", "score_function_baseline", "score_function_ema_baseline",
        "score_function_optimal_baseline"}
    assert chosen(estimators="policy gradient") == chosen(estimators="family:policy_gradient")
    assert chosen(estimators="family:score function,!rloo") == chosen(
        estimators="score_function*,nvil")
    assert set(Selection.parse(n="largest,1").apply(prepared).n_samples) == {1, 16}
    with pytest.raises(VrbenchError, match="neither a positive integer nor one of"):
        Selection.parse(n="max")


def test_bad_spec_files_are_clear_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('estimator = ["rloo"]\n')
    with pytest.raises(VrbenchError, match="unknown key 'estimator'; valid keys: estimators"):
        load_spec(bad)
    bad.write_text('figures = ["heatmap"]\n')
    with pytest.raises(VrbenchError, match="unknown figure 'heatmap'; valid figures"):
        load_spec(bad)


# ----------------------------------------------------------------------------- identity


def test_each_estimator_keeps_one_style_whatever_else_is_drawn():
    names = [e.name for e in estimators.registry.entries()]
    everything = estimator_styles(names)
    few = estimator_styles(["disarm", "rloo"])
    assert few["disarm"] == everything["disarm"] and few["rloo"] == everything["rloo"]
    assert estimator_styles(names) == everything  # and the same in the next run


def test_colour_is_the_family_and_every_estimator_looks_different_in_greyscale():
    styles = estimator_styles(e.name for e in estimators.registry.entries())
    by_family: dict[str, set] = {}
    for name, style in styles.items():
        cls = estimators.registry.get(name)
        by_family.setdefault(cls.family, set()).add(style.color)
    large = {f for f, c in by_family.items()
             if sum(s.family == f for s in styles.values()) > FAMILY_MEMBERS}
    assert large == {"language-model RL"}  # ten members: a colour each (see below)
    by_family = {f: c for f, c in by_family.items() if f not in large}
    assert all(len(colors) == 1 for colors in by_family.values())
    assert len({next(iter(c)) for c in by_family.values()}) == len(by_family)
    shapes = [(s.marker, s.fill) for s in styles.values()]
    assert len(set(shapes)) == len(shapes)  # distinct without colour, even without lines
    assert all(s.marker in MARKERS for s in styles.values())
    for family in by_family:  # one colour: the first four members differ in line style too
        members = [s for s in styles.values() if s.family == family]
        assert len({s.linestyle for s in members}) == min(4, len(members))


def test_a_few_estimators_get_a_colour_each_and_keep_marker_and_fill():
    chosen = ["score_function", "rloo", "arm", "disarm", "rebar", "relax"]
    distinct = estimator_styles(chosen, distinct=True)
    assert len({s.color for s in distinct.values()}) == len(chosen)
    by_family = estimator_styles(chosen)
    assert all((distinct[e].marker, distinct[e].fill, distinct[e].linestyle)
               == (by_family[e].marker, by_family[e].fill, by_family[e].linestyle)
               for e in chosen)
    with pytest.raises(ValueError, match="at most"):
        estimator_styles([e.name for e in estimators.registry.entries()], distinct=True)


# ----------------------------------------------------------------------------- marks


def test_exact_means_rounding_error_relative_to_the_gradient():
    rows = [{"problem": "p", "estimator": e, "n_samples": 4, "status": "ok", "error": "",
             "replicates": 10_000, "seed": 0,
             "true_grad_norm": 5e-4, "variance": v, "variance_ci_low": v, "variance_ci_high": v,
             "bias_norm": 1e-17, "bias_pvalue": 1.0, "unbiased_claim": True}
            for e, v in (("zero", 0.0), ("rounding", 3e-36), ("small", 2.5e-13),
                         ("edge", EXACT_RTOL * 0.99 * 5e-4**2))]
    marked = annotate(to_frame(rows)).set_index("estimator")
    assert marked.exact.to_dict() == {"zero": True, "rounding": True, "small": False,
                                      "edge": True}


def test_best_is_unbiased_with_its_ties_and_biased_estimators_never_are():
    def row(name, variance, half, claim=True, pvalue=0.5):
        return {"problem": "p", "estimator": name, "n_samples": 4, "status": "ok",
                "error": "", "replicates": 10_000, "seed": 0, "true_grad_norm": 1.0,
                "variance": variance,
                "variance_ci_low": variance - half, "variance_ci_high": variance + half,
                "bias_norm": 0.01, "bias_pvalue": pvalue, "unbiased_claim": claim}

    rows = [row("biased", 0.1, 0.01, claim=False), row("flagged", 0.2, 0.01, pvalue=1e-12),
            row("leader", 1.0, 0.05), row("tied", 1.08, 0.04), row("behind", 1.2, 0.05)]
    marked = annotate(to_frame(rows))
    assert marked.set_index("estimator").bias_rejected.to_dict()["flagged"]
    marks = best(marked)
    assert set(marked.estimator[marks]) == {"leader", "tied"}


def test_exact_enumeration_is_the_reference_and_never_best():
    """Its cost is the support's size, not n: an exact estimator of another family at the
    sampling estimators' cost is still best."""
    def row(name, family, variance):
        return {"problem": "p", "estimator": name, "family": family, "n_samples": 4,
                "status": "ok", "error": "", "replicates": 10_000, "seed": 0,
                "true_grad_norm": 1.0, "variance": variance, "variance_ci_low": variance,
                "variance_ci_high": variance * 1.01, "bias_norm": 0.01, "bias_pvalue": 0.5,
                "unbiased_claim": True}

    frame = to_frame([row("exact_enumeration", "exact", 0.0), row("rloo", "score function", 1.0)])
    assert list(frame.estimator[best(annotate(frame))]) == ["rloo"]
    frame = to_frame([row("exact_enumeration", "exact", 0.0), row("disarm", "discrete", 0.0),
                      row("rloo", "score function", 1.0)])
    assert list(frame.estimator[best(annotate(frame))]) == ["disarm"]


# ----------------------------------------------------------------------------- tables


def _latex_names(frame: pd.DataFrame) -> dict[str, str]:
    """LaTeX of every estimator's and problem's display name → its name in the results."""
    names = {latex_name(LABELS.estimator(e)): e for e in frame.estimator.unique()}
    names.update({latex_name(LABELS.problem(p)): p for p in frame.problem.unique()})
    return names


LINE_BREAK = re.compile(r"\\\\(?:\\relax )?")
"""A line break in a stacked header or name."""


def _unstack(cell: str) -> str:
    """A header or name cell of a pivot as one line: stacked lines joined by spaces."""
    cell = re.sub(r"\\begin\{tabular\}\[[bt]\]\{@\{\}[lc]@\{\}\}|\\end\{tabular\}", "", cell)
    cell = re.sub(r"^\\textit\{(.*)\}$", r"\1", cell.strip())
    return " ".join(part.strip() for part in LINE_BREAK.split(cell)).strip()


def _floats(latex: str, frame: pd.DataFrame) -> list[tuple[str, str, dict[str, dict]]]:
    """Each float of a pivot: its caption, the notation under it, and its entries by
    estimator and problem (their names in the results; the last row ``reference
    variance``)."""
    names = _latex_names(frame)
    out = []
    for body in latex.split(r"\begin{table")[1:]:
        caption = re.search(r"\\caption\{(.*)\}\n\\label", body, re.S).group(1)
        note = re.search(r"\\par\\smallskip\n\{\\scriptsize.*?fil (.*)\\par\}", body,
                         re.S).group(1)
        lines = body.splitlines()
        header = next(line for line in lines if line.startswith("estimator & "))
        problems_ = [names[_unstack(h)] for h in header.removesuffix(r" \\").split(" & ")[1:]]
        rows = {}
        for line in lines[lines.index(header) + 2:]:
            if " & " not in line:
                continue
            name, *values = line.removesuffix(r" \\").split(" & ")
            key = names.get(_unstack(name), "reference variance")
            rows[key] = dict(zip(problems_, values, strict=True))
        out.append((caption, note, rows))
    return out


def test_the_pivot_table_has_captions_labels_intervals_and_marks(prepared):
    latex = latex_relative(prepared, 16, numbers="interval")
    floats = _floats(latex, prepared)
    assert len(floats) >= 2 and latex.count(r"\caption{") == len(floats)
    assert r"\label{tab:vrbench-relative-variance-1}" in latex
    notes = [note for _, note, _ in floats]
    assert "half-width of the 95\\% interval" in notes[0]  # the notation once, under the first
    assert all(note == r"Notation as in Table~\ref{tab:vrbench-relative-variance}."
               for note in notes[1:])
    assert all(len(caption) < 260 for caption, _, _ in floats)  # a sentence, not a legend
    assert latex.count(r"$^\dagger$") == 2  # the rejected cell, and the notation's legend
    # Bold marks numbers only: an exact entry (the best variance there is) is never bold.
    assert r"\textbf{exact}" not in latex and " exact " in latex
    entries = [(name, value) for _, _, rows in floats for name, values in rows.items()
               for value in values.values()]
    enumeration = [value for name, value in entries if name == "exact_enumeration"]
    assert enumeration and set(enumeration) <= {"exact", "---"}
    assert not re.search(r"\de-\d", latex)  # numbers as ×10^k, never 1.2e-3
    assert re.search(r"\\textit\{Gumbel-softmax", latex)  # biased by design: italic
    assert not re.search(r"\$10\.\d*\(", latex)  # mantissas below 10
    reference = {value for name, value in entries if name == "score_function"}
    assert reference <= {"$1$", "---"}
    for code in ("score_function", "gumbel_softmax", "bernoulli_toy"):  # display names only
        assert code.replace("_", r"\_") not in latex
    markdown = markdown_tables(prepared, 16)
    assert "**exact**" not in markdown and "exact" in markdown and markdown.count("†") >= 2


def test_the_compact_form_holds_log_ratios_with_the_same_marks(prepared):
    compact = _floats(latex_relative(prepared, 16, numbers="compact"), prepared)
    full = _floats(latex_relative(prepared, 16, numbers="interval"), prepared)
    assert len(compact) <= len(full)
    assert "$\\log_{10}$ of the ratio" in compact[0][1]
    at = prepared[(prepared.n_samples == 16) & (prepared.status == "ok")].set_index(
        ["problem", "estimator"])
    checked = 0
    for _, _, rows in compact:
        for estimator, values in rows.items():
            for problem, value in values.items():
                number = re.fullmatch(r"(?:\{\\boldmath)?\$(-?\d+\.\d)\$\}?", value)
                if estimator == "reference variance" or number is None:
                    continue
                row = at.loc[(problem, estimator)]
                ratio = row.mse_ratio if not row.unbiased_claim else row.ratio
                assert float(number.group(1)) == pytest.approx(math.log10(ratio), abs=0.051)
                assert ("boldmath" in value) == bool(row.best)
                checked += 1
    assert checked > 50


def test_the_appendix_table_lists_every_cell_that_ran(prepared):
    latex = latex_cells(prepared)
    assert r"\begin{longtable}" in latex and r"\endhead" in latex
    assert "longtable not in 1-column mode" in latex and "table_cells_floats.tex" in latex
    ran = prepared[prepared.status != "skipped"]
    rows = [line for line in latex.splitlines() if line.endswith(r"\\")
            and not line.startswith((r"\multicolumn", r"\caption", "estimator &"))]
    assert len(rows) == len(ran)
    assert "failed: RuntimeError: boom" in latex
    floats = latex_cells_floats(prepared)
    assert r"\begin{longtable}" not in floats and floats.count(r"\begin{table*}") >= 2
    rows = [line for line in floats.splitlines() if line.endswith(r"\\")
            and not line.startswith((r"\multicolumn", "estimator &"))]
    assert len(rows) == len(ran)
    assert "(continued)" in floats and r"\label{tab:vrbench-cells-floats-2}" in floats


def test_tiny_p_values_read_below_a_floor():
    from vrbench.reports.tables import pvalue_cell

    assert pvalue_cell(6.0e-255).latex() == "$<10^{-10}$"
    assert pvalue_cell(0.0).markdown() == "< 10⁻¹⁰"
    assert pvalue_cell(0.0123).latex() == r"$1.2\times10^{-2}$"


def _compile(tmp_path: Path, inputs: list[str], runs: int = 2) -> str:
    (tmp_path / "doc.tex").write_text(latex_document(inputs))
    for _ in range(runs):  # the second run settles cross-references and longtable widths
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                              "doc.tex"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
        log = (tmp_path / "doc.log").read_text(errors="replace")
        assert run.returncode == 0, log[-2000:]
    return log


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_the_latex_tables_compile_and_fit_a_two_column_article(prepared, tmp_path):
    (tmp_path / "relative.tex").write_text(latex_relative(prepared, 16))
    (tmp_path / "cells.tex").write_text(latex_cells(prepared))
    (tmp_path / "cells_floats.tex").write_text(latex_cells_floats(prepared))
    log = _compile(tmp_path, ["relative", "cells_floats", "cells"])
    assert "Overfull \\hbox" not in log and "Float too large" not in log
    assert "undefined" not in log
    assert re.search(r"Output written on doc.pdf \((\d+) pages", log)


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_a_problem_without_the_reference_is_relative_to_its_fallback(fallback):
    prepared, _ = fallback
    refs = problem_references(prepared)
    assert refs[FALLBACK] == "multi_sample_score_function" and refs[UNREFERENCED] is None
    assert refs["chain_mdp"] == "score_function"
    ok = prepared[(prepared.status == "ok") & (prepared.n_samples == 16)]
    on = ok[ok.problem == FALLBACK].set_index("estimator")
    assert on.loc["multi_sample_score_function", "ratio"] == 1.0
    others = on[~on.exact].drop(index="multi_sample_score_function")
    ref_variance = on.loc["multi_sample_score_function", "variance"]
    assert np.allclose(others.ratio, others.variance / ref_variance)
    assert ok.loc[(ok.problem == UNREFERENCED) & ~ok.exact, "ratio"].isna().all()


def test_the_pivot_names_the_fallback_and_marks_what_has_no_reference(fallback):
    prepared, _ = fallback
    latex = latex_relative(prepared, 16, numbers="interval")
    assert "?" not in latex
    floats = _floats(latex, prepared)
    assert "n/r: no reference variance to compare with" in floats[0][1]  # defined once
    sf, msf = (latex_name(LABELS.estimator(e)) for e in ("score_function",
                                                          "multi_sample_score_function"))
    fallback_name, unreferenced = (latex_name(LABELS.problem(p))
                                   for p in (FALLBACK, UNREFERENCED))
    seen = set()
    for caption, _, rows in floats:
        problems_ = set(next(iter(rows.values())))
        if FALLBACK in problems_:
            assert f"relative to {sf} (" in caption
            assert f"{msf} on {fallback_name}" in caption.split("; $n")[0]
            assert rows["multi_sample_score_function"][FALLBACK] == "$1$"
            assert rows["score_function"][FALLBACK] == "---"
            seen.add(FALLBACK)
        if UNREFERENCED in problems_:
            assert f"no reference ran on {unreferenced}: n/r" in caption
            column = {e: v[UNREFERENCED] for e, v in rows.items() if e != "reference variance"}
            marks = {v for v in column.values() if v not in ("---", r"\textbf{exact}", "exact")}
            assert marks and all("n/r" in v for v in marks), marks
            assert rows["reference variance"][UNREFERENCED] == "---"
            seen.add(UNREFERENCED)
        if not problems_ & {FALLBACK, UNREFERENCED}:
            assert "(" not in caption.split("; $n")[0]  # no exceptions to name here
    assert seen == {FALLBACK, UNREFERENCED}
    # Never a bold "n/r": bold marks a number (the best variance), and n/r is none.
    for _, _, rows in floats:
        for _estimator, values in rows.items():
            if "n/r" in values.get(UNREFERENCED, ""):
                assert "textbf" not in values[UNREFERENCED] and "boldmath" not in \
                    values[UNREFERENCED]
    cells = latex_cells(prepared)
    assert f"{msf} on {fallback_name}" in cells
    assert "?" not in cells and "n/r" in cells
    markdown = markdown_tables(prepared, 16)
    first = markdown.splitlines()[0]
    assert (f"{LABELS.estimator('multi_sample_score_function')} on "
            f"{plain(LABELS.problem(FALLBACK))}") in first
    assert f"no reference ran on {LABELS.problem(UNREFERENCED)}: n/r" in first
    assert "n/r" in markdown and "?" not in markdown


def test_the_figures_mark_each_problems_reference(fallback):
    prepared, _ = fallback
    pages = _pages(prepared)
    problem_of = {LABELS.problem(p): p for p in prepared.problem.unique()}
    estimator_of = {LABELS.estimator(e): e for e in prepared.estimator.unique()}
    msf = f"{LABELS.estimator('multi_sample_score_function')} on {LABELS.problem(FALLBACK)}"
    found = set()
    for _, fig in pages["relative_variance"]:
        ax = fig.axes[0]
        problems_ = [problem_of[t.get_text()] for t in ax.get_xticklabels()]
        estimators_ = [estimator_of[t.get_text().replace("\n", " ")]
                       for t in ax.get_yticklabels()]
        at = {(round(t.get_position()[0] - 0.5), round(t.get_position()[1] - 0.53)):
              t.get_text() for t in ax.texts}
        texts = [_flat(t.get_text()) for t in fig.findobj(plt.Text)]
        assert "?" not in at.values()
        for j, problem in enumerate(problems_):
            ref = problem_references(prepared)[problem]
            for i, estimator in enumerate(estimators_):
                if estimator == ref:
                    assert at[(j, i)].startswith("ref"), (problem, estimator, at[(j, i)])
            if problem == FALLBACK:
                assert any(msf in t for t in texts)
                found.add(problem)
            if problem == UNREFERENCED:
                assert any("n/r: no reference variance to compare with" in t for t in texts)
                assert any(at.get((j, i), "").startswith("n/r")
                           for i in range(len(estimators_)))
                found.add(problem)
    assert found == {FALLBACK, UNREFERENCED}
    for name in ("work_normalized_fevals", "work_normalized_time"):
        panels = {ax.get_title(loc="right").replace("\n", " "): ax
                  for _, fig in pages[name] for ax in fig.axes}
        labels = [t.get_text() for t in panels[LABELS.problem(FALLBACK)].get_yticklabels()]
        assert f"{LABELS.estimator('multi_sample_score_function')} (ref.)" in labels
        assert [t.get_text() for t in panels[LABELS.problem(UNREFERENCED)].texts] == \
            ["n/r: no reference ran"]
        label = next(_flat(fig._supxlabel.get_text()) for _, fig in pages[name]
                     if LABELS.problem(FALLBACK) in [ax.get_title(loc="right").replace("\n", " ")
                                                     for ax in fig.axes])
        assert f"relative to {LABELS.estimator('score_function')} (" in label
        assert msf in label
    plt.close("all")


def test_the_summary_and_the_page_use_the_same_references(fallback):
    prepared, results = fallback
    text = _flat("\n".join(_render(summary_table(pd.read_parquet(results / RESULTS_FILE)),
                                   100)))
    for part in ("÷ that of score_function (", "multi_sample_score_function on gaussian_abs",
                 "no reference ran on random_mdp: n/r"):
        assert part in text
    page = _flat(html.unescape(_index_html(prepared)))
    sf, msf = LABELS.estimator("score_function"), LABELS.estimator("multi_sample_score_function")
    assert f"Ratios are to the reference {sf} (" in page
    assert f"no reference ran on {LABELS.problem(UNREFERENCED)}: n/r" in page
    assert f"{msf} on {plain(LABELS.problem(FALLBACK))}" in page
    row = re.search(r"<tr><td class='l' data-sort='gaussian_abs'>.*?</tr>", page).group(0)
    assert "title='multi_sample_score_function'" in row  # the reference variance names it
    assert ">?<" not in page


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_column_style_tables_are_one_column_floats_that_fit(prepared, styled, tmp_path):
    style, out = styled
    written = (out / "table_relative_variance.tex").read_text()
    assert (r"\begin{table*}" in written) == (style == "paper")
    assert (r"\begin{table}[tbp]" in written) == (style == "column")
    latex = latex_relative(prepared, 16, figure_style=STYLES["column"])
    assert r"\begin{table*}" not in latex and r"\end{table}" in latex
    assert latex.count(r"\begin{table}") >= latex_relative(prepared, 16).count(r"\begin{table*}")
    names = {*_latex_names(prepared), latex_name("log₁₀ reference variance"),
             "reference variance"}
    for stacked in re.findall(r"\\begin\{tabular\}\[[bt]\]\{@\{\}[lc]@\{\}\}(.*?)\\end\{tabular\}",
                              latex):
        # A header or a name breaks between its words only, never inside one.
        assert " ".join(LINE_BREAK.split(stacked)) in names, stacked
    (tmp_path / "relative.tex").write_text(latex)
    log = _compile(tmp_path, ["relative"], runs=1)
    assert "Overfull \\hbox" not in log and "Float too large" not in log


PAPER_SELECTION = ("score_function,rloo,disarm,rebar,relax,gumbel_softmax",
                   "bernoulli_toy,bernoulli_vector,chain_mdp,gaussian_quadratic")
"""Six estimators on four problems, as a paper's table shows them."""


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_four_problems_in_the_column_style_are_one_float(prepared, tmp_path):
    """Six estimators (one with a long biased name) on four problems: one column float, its
    headers on one line where they fit, its caption a sentence, and it compiles without an
    overfull line in the column of a two-column article."""
    frame = ReportSpec().override(estimators=PAPER_SELECTION[0],
                                  problems=PAPER_SELECTION[1]).selection.apply(prepared)
    latex = latex_relative(frame, 16, figure_style=STYLES["column"])
    assert latex.count(r"\begin{table}") == 1, latex
    floats = _floats(latex, frame)
    assert set(next(iter(floats[0][2].values()))) == set(PAPER_SELECTION[1].split(","))
    assert len(floats[0][0]) < 260
    (tmp_path / "relative.tex").write_text(latex)
    log = _compile(tmp_path, ["relative"], runs=1)
    assert "Overfull \\hbox" not in log and "Float too large" not in log
    wide = latex_relative(frame, 16)  # across the page: room for the intervals, no breaks
    assert wide.count(r"\begin{table*}") == 1 and "half-width" in wide
    assert r"\begin{tabular}[b]" not in wide  # no header broken where it has room


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_two_reports_tables_coexist_in_one_document(synthetic, tmp_path):
    """Two reports with their own label prefixes: one document holds both sets of tables,
    every label defined once and every reference resolved."""
    inputs = []
    for prefix, problems_ in (("tab:sec4", "bernoulli_*"), ("tab:sec5", "gaussian_*")):
        out = tmp_path / prefix.split(":")[1]
        spec = dataclasses.replace(ReportSpec(figures=("tables",), label_prefix=prefix),
                                   style="column").override(problems=problems_)
        build_report([synthetic], out, formats=["pdf"], spec=spec)
        for name in ("table_relative_variance", "table_cells_floats"):
            target = f"{prefix.split(':')[1]}_{name}"
            (tmp_path / f"{target}.tex").write_text((out / f"{name}.tex").read_text())
            inputs.append(target)
        assert rf"\label{{{prefix}-relative-variance" in (out / "table_relative_variance.tex"
                                                           ).read_text()
    log = _compile(tmp_path, inputs)
    assert "multiply defined" not in log and "undefined" not in log


@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftotext") is None,
                    reason="pdflatex or pdftotext is not installed")
def test_a_page_that_continues_a_problem_starts_with_its_name(prepared, tmp_path):
    (tmp_path / "cells.tex").write_text(latex_cells(prepared))
    _compile(tmp_path, ["cells"])
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "doc.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout

    def key(line: str) -> str:  # as pdftotext writes a display name: no spaces, ² as 2
        return re.sub(r"\s+", "", line).replace("²", "2").replace("−", "-")

    names = {key(plain(LABELS.problem(p))): p for p in prepared.problem.unique()}
    current, continued = None, 0
    for page in text.split("\f"):
        lines = [line.strip() for line in page.splitlines() if line.strip()]
        header = next((i for i, line in enumerate(lines) if line.startswith("estimator ")),
                      None)
        if header is None:
            continue
        first = lines[header + 1]
        if current is not None and key(first) not in names:
            assert key(first) == key(f"{plain(LABELS.problem(current))}(continued)"), first
            continued += 1
            # An estimator's rows stay together: the page starts with a name.
            assert not lines[header + 2][0].isdigit(), lines[header + 2]
        for line in lines[header + 1:]:
            current = names.get(key(line), current)
    assert continued >= 2


@pytest.mark.parametrize("room", [0.0, 40.0, 80.0])
def test_headers_and_names_break_between_words_only(room):
    every = [LABELS.problem(e.name) for e in problems.registry.entries()]
    every += [LABELS.estimator(e.name) for e in estimators.registry.entries()]
    for name in [*every, "Gumbel-softmax (τ = 0.1)", "a b c d e f"]:
        lines = wrap_words(name, room)
        assert " ".join(lines) == name
        assert all(line in name for line in lines)
        for line in lines:  # "t = 0.5" is never cut at its "="
            assert not line.startswith("=") and not line.endswith("=")
    assert wrap_words("Bernoulli, t = 0.45", 1000.0) == ["Bernoulli, t = 0.45"]  # room: whole
    assert wrap_words("Bernoulli, t = 0.45", 10.0) == ["Bernoulli,", "t = 0.45"]


# ----------------------------------------------------------------------------- console, HTML


def _render(renderable, width: int) -> list[str]:
    console = Console(width=width, record=True, color_system=None)
    console.print(renderable)
    return console.export_text().splitlines()


def test_the_run_summary_is_compact_and_fits_100_columns(synthetic):
    frame = pd.read_parquet(synthetic / RESULTS_FILE)
    for width in (100, 200):
        lines = _render(summary_table(frame), width)
        assert max(len(line) for line in lines) <= 100
    text = "\n".join(_render(summary_table(frame), 100))
    assert len(lines) < 30  # one line per problem, not one per cell
    toy = next(line for line in lines if line.startswith("bernoulli_toy"))
    assert "disarm" in toy and "exact" in toy
    assert "bernoulli_vector · relax · n=4: RuntimeError: boom" in text
    assert "bernoulli_vector · rebar · n=16" in text  # the rejected claim


def test_when_nothing_ran_the_summary_says_why(synthetic):
    frame = pd.read_parquet(synthetic / RESULTS_FILE)
    skipped = frame[frame.status == "skipped"]
    text = "\n".join(_render(summary_table(skipped), 100))
    assert "Nothing ran" in text and "mvd_gaussian requires a problem that is gaussian" in text


def test_the_eta_extrapolates_the_whole_run_and_excludes_reused_cells():
    now = [0.0]
    progress = Progress(StableETA(), get_time=lambda: now[0])
    task_id = progress.add_task("cells", total=110, reused=10, completed=10)
    progress.start_task(task_id)
    task = progress.tasks[0]
    assert "ETA …" in StableETA().render(task).plain
    now[0] = 20.0
    progress.update(task_id, advance=20)  # 20 new cells in 20 s: 80 left, 80 s
    assert StableETA().render(task).plain == "0:00:20 elapsed, ETA 0:01:20"


def test_index_leads_with_provenance_and_a_summary(styled):
    page = (styled[1] / "index.html").read_text()
    assert page.index("id='provenance'") < page.index("id='summary'") < page.index("<figure>")
    assert "<nav>" in page and "class='sortable'" in page
    assert "Failed and missing cells (1)" in page and "class='bad'" in page
    assert not re.search(r"\de-(1[89]|[23]\d)", page)  # rounding noise shown as "exact"
    assert page.count(">exact<") >= 3


def test_index_without_failures_says_so_quietly(results, tmp_path):
    build_report([results], tmp_path, formats=["png"],
                 spec=ReportSpec().override(estimators="score_function,rloo"))
    page = (tmp_path / "index.html").read_text()
    assert "Failed and missing" not in page and "No failed or missing cells." in page


def test_index_shows_figures_failures_and_provenance(report):
    page = (report / "index.html").read_text()
    for name in FIGURES:
        assert f"src='{name}.png'" in page
    assert "Failed and missing cells (4)" in page and "exploded on purpose" in page
    assert "torch_version" in page and "git_revision" in page


# ----------------------------------------------------------------------------- commands


def test_partial_and_merged_results(results, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "cells").symlink_to(results / "cells")
    spec = ReportSpec(figures=("bias_vs_variance", "tables"))
    out = build_report([partial], tmp_path / "out", formats=["png"], spec=spec)
    assert (tmp_path / "out" / "bias_vs_variance.png") in out
    assert '"partial": true' in html.unescape((tmp_path / "out" / "index.html").read_text())
    other = run_sweep(SweepConfig(estimators=[Spec("score_function")],
                                  problems=[Spec("bandit_gaussian_10")], n_samples=[2],
                                  replicates=100, jobs=1, output=str(tmp_path / "other")))
    assert other.failed == 0
    build_report([results, tmp_path / "other"], tmp_path / "merged", formats=["png"],
                 spec=ReportSpec(figures=("tables",)))
    assert LABELS.problem("bandit_gaussian_10") in (tmp_path / "merged" / "summary.md").read_text()


def test_report_command(results, tmp_path):
    run = [sys.executable, "-m", "vrbench.cli", "report", str(results), "-o", str(tmp_path)]
    out = subprocess.run([*run, "--format", "svg", "--style", "slides", "-p", "bernoulli_toy",
                          "-n", "8"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "bias_vs_variance.svg").exists()
    assert not (tmp_path / "variance_vs_samples.svg").exists()  # one n: nothing to draw



@pytest.mark.parametrize(("args", "message"), [
    (["--format", "jpg"], "unknown format 'jpg'; valid formats: pdf, png, svg"),
    (["-e", "rlo"], "did you mean 'rloo'?"),
    (["--reference", "nope"], "reference estimator 'nope' is not in the results; valid:"),
])
def test_bad_report_options_are_clear_errors(results, tmp_path, capsys, args, message):
    assert main(["report", str(results), "-o", str(tmp_path), *args]) == 2
    assert message in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("command", ["report", "train"])
def test_every_option_has_help_with_its_default(command):
    subparsers = next(a for a in _parser()._actions if a.dest == "command")
    parser = subparsers.choices[command]
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{command} {action.option_strings} has no help"
        assert "default" in action.help or "required" in action.help, (command, action.dest)


def test_train_command_writes_traces(tmp_path):
    out = subprocess.run([sys.executable, "-m", "vrbench.cli", "train", "-e", "score_function",
                          "-p", "bandit_gaussian_10", "--steps", "30", "--seed", "0,1",
                          "--eval-every", "10", "-o", str(tmp_path)], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    traces = pd.read_parquet(tmp_path / "train.parquet")
    assert sorted(traces.step.unique()) == [0, 10, 20, 30] and set(traces.seed) == {0, 1}
    start = traces[traces.step == 0].value.tolist()
    assert start == pytest.approx([0.02, 0.02])  # J at θ = 0: the mean of the arm means
    assert traces[traces.step == 30].value.mean() > 0.02  # ascent on a reward
    assert dataclasses.is_dataclass(TrainSettings)


# ----------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(("low", "high", "expected"), [
    (2e-3, 7e-3, [2e-3, 5e-3]),
    (8.8e-4, 1.9e-3, [1e-3, 1.5e-3]),  # not 9e-4 next to 1e-3
    (1e-3, 1e2, [1e-2, 1.0, 1e2]),
    (1e-30, 1.0, [1e-28, 1e-21, 1e-14, 1e-7, 1.0]),
])
def test_log_axes_label_two_to_five_spread_ticks(low, high, expected):
    assert log_ticks(low, high) == pytest.approx(expected)


@pytest.mark.parametrize(("value", "low", "high", "digits", "text"), [
    (0.99996, 0.9981, 1.0019, 2, "1.0000(19)e0"),  # never 10.00(19)e-1
    (0.142, 0.1321, 0.1519, 1, "1.4(1)e-1"),       # never 1.42(10)e-1
    (0.516, 0.504, 0.528, 1, "5.2(1)e-1"),
])
def test_intervals_keep_the_mantissa_below_ten(value, low, high, digits, text):
    assert format_interval(value, low, high, digits) == text


def test_styles_are_page_sized():
    assert STYLES["paper"].width <= 7.0 and STYLES["column"].width <= 3.5
    assert all(style.max_height <= 9.0 for style in STYLES.values())


def test_metadata_of_figures_is_reproducible(results, tmp_path):
    spec = ReportSpec(figures=("bias_vs_variance", "relative_variance")).override(
        problems="bernoulli_toy")
    build_report([results], tmp_path / "a", formats=["pdf"], spec=spec)
    build_report([results], tmp_path / "b", formats=["pdf"], spec=spec)
    for name in ("bias_vs_variance.pdf", "relative_variance.pdf"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_a_wrapped_display_name_never_breaks_inside_a_word():
    name = "REINFORCE, optimal baseline (τ = 0.5)"
    width = text_width_in("REINFORCE,", 7.0) * 1.05  # narrower than two words
    lines = wrap_label(name, width, 7.0).split("\n")
    assert len(lines) >= 3 and " ".join(lines) == name
    assert all(line in words(name) or " " in line for line in lines)
    assert "(τ = 0.5)" in lines  # "name = value" stays whole
    assert wrap_label("a_very_long_identifier", 0.1, 7.0) == "a_very_long_identifier"


# ----------------------------------------------------------------------------- display names

CUSTOM = {"score_function": "SF-custom", "rloo": "LOO-custom",
          "reparameterization": "PW-custom", "exploding": "EXP-custom",
          "disarm": "DIS-custom", "gumbel_softmax": "GS-custom",
          "gaussian_quadratic": "Quad-custom", "bernoulli_toy": "Toy-custom"}
CODE_NAMES = ("score_function", "reparameterization", "gaussian_quadratic", "bernoulli_toy",
              "gumbel_softmax", "exploding")


def test_display_names_reach_every_figure_table_and_caption(results, tmp_path, monkeypatch):
    """A spec's labels (and a parameter's symbol) name every estimator and problem in every
    figure (titles, legends, tick labels, axis labels), every table and every caption; no
    results name is left in them."""
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text("[labels]\n" + "".join(f'{k} = "{v}"\n' for k, v in CUSTOM.items())
                         + '[symbols]\ntemperature = "T"\n')
    spec = load_spec(spec_file)
    assert spec.labels.estimator("gumbel_softmax:temperature=0.2") == "GS-custom (T = 0.2)"
    texts: dict[str, list[str]] = {}
    save = plt.Figure.savefig

    def record(fig, target, **kwargs):  # every text of a figure as it is written
        texts[Path(target).stem] = [t.get_text() for t in fig.findobj(plt.Text)]
        return save(fig, target, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", record)
    out = tmp_path / "out"
    report = build_report([results], out, formats=["pdf"], spec=spec)
    assert {f.name for f in report.figures} == set(FIGURES) | {"training_variance"}
    for stem, found in texts.items():
        joined = " ".join(found)
        assert any(label in joined for label in CUSTOM.values()), stem
        assert not any(code in joined for code in CODE_NAMES), (stem, joined)
    # the legend joins "biased" into the name's parenthesis
    assert "GS-custom (T = 0.2, biased)" in " ".join(texts["bias_vs_variance"])
    for name in ("table_relative_variance.tex", "table_cells.tex", "table_cells_floats.tex",
                 "summary.md"):
        text = (out / name).read_text()
        assert "SF-custom" in text and "Quad-custom" in text and "LOO-custom" in text, name
        assert not any(code in text or code.replace("_", r"\_") in text
                       for code in CODE_NAMES), name
    assert "relative to SF-custom" in (out / "table_relative_variance.tex").read_text()
    page = html.unescape((out / "index.html").read_text())
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page, re.S)
    assert captions and all("custom" in c for c in captions if "relative to" in c)
    assert "Toy-custom" in page and "DIS-custom" in page


def test_a_plugin_without_a_display_name_gets_a_readable_one():
    @dataclasses.dataclass(frozen=True)
    class MyPlugin(Estimator):
        temperature: float = 1.0
        parameter_symbols = {"temperature": "τ"}  # noqa: RUF012 (a class attribute)

        def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
            raise NotImplementedError

    estimators.registry.add("my_plugin_estimator", MyPlugin, origin="test")
    try:
        assert LABELS.estimator("my_plugin_estimator") == "my plugin estimator"
        assert LABELS.estimator("my_plugin_estimator:temperature=0.1") == \
            "my plugin estimator (τ = 0.1)"
        assert LABELS.estimator("my_plugin_estimator:temperature=1.0") == \
            "my plugin estimator"  # the default is not repeated
    finally:
        del estimators.registry._entries["my_plugin_estimator"]
    assert LABELS.estimator("not_registered_anywhere") == "not registered anywhere"
    assert LABELS.problem("bernoulli_toy:t=0.45") == "Bernoulli, t = 0.45"
    assert LABELS.estimator("gumbel_softmax") == "Gumbel-softmax (τ = 0.5)"
    assert latex_name("Gumbel-softmax (τ = 0.5)") == r"Gumbel-softmax ($\tau = 0.5$)"
    assert latex_name("|x − c| & 1[x > 0]") == r"$|$x $-$ c$|$ \& 1[x $>$ 0]"


def test_spec_labels_symbols_and_label_prefix_are_read_and_checked(tmp_path):
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text('label_prefix = "tab:sec4"\n[labels]\nrloo = "RLOO (n = 4)"\n'
                         '[symbols]\nomega = "k"\n')
    spec = load_spec(spec_file)
    assert spec.label_prefix == "tab:sec4" and spec.labels.estimator("rloo") == "RLOO (n = 4)"
    assert plain(spec.labels.problem("gaussian_cosine:omega=2.0")) == "cos(ωx), k = 2"
    for text, message in (('label_prefix = "4 tables"\n', "must be a LaTeX label"),
                          ('[labels]\nrloo = 4\n', "labels.rloo must be text")):
        spec_file.write_text(text)
        with pytest.raises(VrbenchError, match=message):
            load_spec(spec_file)


# ----------------------------------------------------------------------------- what is not drawn


def test_a_figure_asked_for_and_not_drawn_fails_the_report_with_the_reason(results, tmp_path,
                                                                          capsys):
    """The README's spec with n = "largest" cannot draw variance against samples: the
    report says so on the console and exits 1, and still writes what it can."""
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text('n = "largest"\nfigures = ["variance_vs_samples", "bias_vs_variance"]\n')
    out = tmp_path / "out"
    assert main(["report", str(results), "-o", str(out), "--spec", str(spec_file)]) == 1
    captured = capsys.readouterr()
    error = " ".join(captured.err.split())
    assert ("variance_vs_samples was asked for and not drawn: needs two or more sample sizes "
            "n; the selection has only n = 8") in error
    assert (out / "bias_vs_variance.pdf").exists()
    assert "variance_vs_samples" in (out / "index.html").read_text()
    # Not asked for by name: said on the console, and not an error.
    assert main(["report", str(results), "-o", str(tmp_path / "all"), "-n", "8"]) == 0
    assert "not drawn: variance_vs_samples: needs two or more" in \
        " ".join(capsys.readouterr().out.split())


def test_a_refused_report_leaves_no_directory_behind(results, tmp_path, monkeypatch):
    fresh = tmp_path / "fresh"
    assert main(["report", str(results), "-o", str(fresh), "-e", "rlo"]) == 2
    assert not fresh.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    assert main(["report", str(results), "-o", str(kept), "-p", "nope"]) == 2
    assert kept.exists()  # a directory that was there stays

    def broken(context):
        raise RuntimeError("drawing failed")

    entry = registry.entries()[0]
    monkeypatch.setitem(registry._ENTRIES, entry.name, dataclasses.replace(entry, draw=broken))
    with pytest.raises(RuntimeError, match="drawing failed"):
        build_report([results], tmp_path / "half", formats=["pdf"])
    assert not (tmp_path / "half").exists()  # nothing half-written left behind


# ----------------------------------------------------------------------------- fair rankings


def _ranking_frame(rng: np.random.Generator | None = None) -> pd.DataFrame:
    """One problem: the reference, two unbiased estimators and two biased ones; a biased one
    has the lowest variance of all but a larger mean squared error than an unbiased one."""
    specs = [("score_function", "score function", True, 1.0, 0.0),
             ("rloo", "score function", True, 0.5, 0.0),
             ("disarm", "discrete", True, 0.8, 0.0),
             ("gumbel_softmax", "relaxation", False, 0.01, 0.8),   # MSE 0.65 > rloo's 0.5
             ("straight_through", "relaxation", False, 0.05, 0.3)]  # MSE 0.14: the best MSE
    if rng is not None:
        specs = [(n, f, c, v * 10 ** rng.uniform(-1, 1), b * rng.uniform(0, 2))
                 for n, f, c, v, b in specs]
    rows = []
    for name, family, claim, variance, bias in specs:
        rows.append({"problem": "bernoulli_toy", "estimator": name, "n_samples": 4,
                     "replicates": 10_000, "seed": 0, "family": family,
                     "unbiased_claim": claim, "estimator_params": "{}", "problem_params": "{}",
                     "dim": 1, "true_grad_norm": 1.0, "status": "ok", "error": "",
                     "variance": variance, "variance_ci_low": variance * 0.98,
                     "variance_ci_high": variance * 1.02,
                     "bias_norm": bias if not claim else math.sqrt(variance / 10_000),
                     "bias_pvalue": 0.5, "mse": bias**2 + variance,
                     "time_per_estimate_s": 1e-6, "f_evals": 4})
    return prepare(to_frame(rows), ReportSpec())


def test_a_biased_estimator_never_ranks_above_an_unbiased_one_of_lower_mse():
    frame = _ranking_frame()
    mse = frame.set_index("estimator")["mse"]
    fig_style = apply_style("paper")
    styles = estimator_styles(frame.estimator)
    # The work-normalized figure: the best at the top, biased ones placed by MSE.
    (_, fig), = figures.work_normalized(FigureContext(fig_style, styles, frame, n=4), "f_evals")
    ax = fig.axes[0]
    order = [t.get_text().split(" (")[0] for t in ax.get_yticklabels()][::-1]  # top first
    names = {LABELS.estimator(e).split(" (")[0]: e for e in frame.estimator}
    ranked = [names[label] for label in order]
    assert ranked.index("rloo") < ranked.index("gumbel_softmax")
    assert ranked[0] == "straight_through"  # lowest MSE of all: first, biased or not
    assert any("(biased: MSE)" in t.get_text() for t in ax.get_yticklabels())
    plt.close(fig)
    # The heatmap colours and writes the MSE ratio of a biased estimator.
    (_, fig), = figures.relative_variance_heatmap(FigureContext(fig_style, styles, frame, n=4))
    cells = {(round(t.get_position()[1] - 0.53)): t.get_text() for t in fig.axes[0].texts}
    rows = [names[t.get_text().split(" (")[0]] for t in fig.axes[0].get_yticklabels()]
    for i, estimator in enumerate(rows):
        if estimator != "score_function":
            assert float(cells[i].replace("−", "-")) == pytest.approx(
                math.log10(mse[estimator] if estimator in ("gumbel_softmax",
                                                           "straight_through")
                           else frame.set_index("estimator").variance[estimator]), abs=0.051)
    plt.close(fig)
    # The tables: biased rows hold the MSE ratio, and bold only ever marks unbiased ones.
    table = _floats(latex_relative(frame, 4, numbers="compact"), frame)[0][2]
    assert table["gumbel_softmax"]["bernoulli_toy"] == f"${math.log10(0.65):.1f}$"
    assert "boldmath" in table["rloo"]["bernoulli_toy"]
    assert not any("bold" in table[e]["bernoulli_toy"] for e in ("gumbel_softmax",
                                                                  "straight_through"))


def test_no_random_case_ranks_a_biased_estimator_above_an_unbiased_one_of_lower_mse():
    from vrbench.reports.values import is_biased, ranked_ratios

    rng = np.random.default_rng(0)
    for _ in range(30):
        frame = _ranking_frame(rng)
        ranked = frame.join(ranked_ratios(frame).add_prefix("rank_"))
        biased, unbiased = ranked[is_biased(ranked)], ranked[~is_biased(ranked)]
        for _, b in biased.iterrows():
            for _, u in unbiased.iterrows():
                if u["mse"] < b["mse"] * 0.99:  # clearly lower error: ranked above
                    assert u["rank_ratio"] < b["rank_ratio"], (u["estimator"], b["estimator"])


# ----------------------------------------------------------------------------- small things


def test_the_summaries_count_failed_and_missing_cells_apart(synthetic):
    frame = pd.read_parquet(synthetic / RESULTS_FILE)
    gone = (frame.problem == "chain_mdp") & (frame.estimator == "rloo")
    frame.loc[gone, "status"] = "missing"
    text = "\n".join(_render(summary_table(frame), 100))
    header = next(line for line in text.splitlines() if "failed" in line and "problem" in line)
    assert "missing" in header
    chain = next(line for line in text.splitlines() if line.startswith("chain_mdp"))
    assert chain.split()[-3:] == ["·", str(int(gone.sum())), "·"]  # failed, missing, †
    page = _index_html(prepare(frame, ReportSpec()))
    assert "<th>missing</th>" in page and "<div class='scroll'>" in page


def test_list_estimators_shows_every_requirement(capsys):
    assert main(["list", "estimators"]) == 0
    out = capsys.readouterr().out
    for name, needs in (("arm", "bernoulli_logits or bernoulli_latents"), ("rloo", "n ≥ 2"),
                        ("unordered_set", "a listed support")):
        line = next(line for line in out.splitlines() if line.startswith(f"│ {name} "))
        assert needs in line, line
    assert estimators.registry.get("disarm").requirements() == \
        "bernoulli_logits or bernoulli_latents"
    summary = problems.registry.get("gaussian_quadratic").summary()
    assert summary.endswith("shines.")  # a description is a whole sentence


def test_an_interval_reaching_zero_is_clipped_and_marked_on_the_log_axis():
    rows = []
    for n in (1, 4):
        for name, variance, low in (("score_function", 1.0 / n, 0.8 / n),
                                    ("rloo", 0.5 / n, -0.1)):  # reaches (past) zero
            rows.append({"problem": "bernoulli_toy", "estimator": name, "n_samples": n,
                         "replicates": 10_000, "seed": 0, "family": "score function",
                         "unbiased_claim": True, "estimator_params": "{}",
                         "problem_params": "{}", "dim": 1, "true_grad_norm": 1.0,
                         "status": "ok", "error": "", "variance": variance,
                         "variance_ci_low": low, "variance_ci_high": variance * 1.2,
                         "bias_norm": 1e-3, "bias_pvalue": 0.5, "mse": variance,
                         "time_per_estimate_s": 1e-6, "f_evals": n})
    frame = prepare(to_frame(rows), ReportSpec())
    fig_style = apply_style("column")
    (_, fig), = figures.variance_vs_samples(
        FigureContext(fig_style, estimator_styles(frame.estimator), frame))
    ax = next(ax for ax in fig.axes if ax.get_visible())
    carets = [line for line in ax.lines if line.get_gid() == "clipped"]
    assert len(carets) == 2  # one per interval that reaches 0, at the axis' bottom
    bottom = ax.get_ylim()[0]
    assert all(line.get_ydata()[0] == pytest.approx(bottom) for line in carets)
    intervals = [line for line in ax.lines if len(line.get_xdata()) == 2
                 and line.get_xdata()[0] == line.get_xdata()[1]]
    assert intervals and all(min(line.get_ydata()) >= bottom * 0.999 for line in intervals)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "interval reaches 0" in legend
    plt.close(fig)


# ----------------------------------------------------------------------------- training metrics


def _metric_traces(exact: bool) -> pd.DataFrame:
    """Traces as `vrbench train` writes them for a model of a data set (no exact J: value
    None; train_elbo and test_bound measured), with the papers' prior optimizer, and where
    ``exact`` those of a problem with an exact J beside them."""
    rows = []
    for name, n, lead in (("rloo", 2, 0.0), ("arm", 1, -8.0), ("disarm", 1, 2.0)):
        for seed in (0, 1, 2):
            for step in (0, 1000, 2000):
                rows.append({
                    "problem": "binary_vae_linear:eval_test_images=500,eval_train_images=5000",
                    "estimator": name, "seed": seed, "device": "cpu", "n_samples": n,
                    "step_samples": n, "replicates": 0, "optimizer": "adam", "lr": 1e-4,
                    "groups": "prior: SGD, lr = 0.01", "step": step,
                    "wall_s": step * 0.02 * n + 0.1 * seed, "value": None,
                    "train_elbo": -420 + 0.05 * step + lead * step / 2000 + seed,
                    "test_bound": -400 + 0.05 * step + lead * step / 2000 + seed,
                    "error": ""})
    if exact:
        rows += [{"problem": "bernoulli_toy", "estimator": "disarm", "seed": 0,
                  "device": "cpu", "n_samples": 1, "step_samples": 1, "replicates": 0,
                  "optimizer": "adam", "lr": 1e-4, "groups": "prior: SGD, lr = 0.01",
                  "step": step, "wall_s": step * 0.01, "value": 0.2 + step * 1e-5,
                  "error": ""} for step in (0, 1000, 2000)]
    return pd.DataFrame(rows)


def test_training_metrics_are_drawn_by_step_and_time_with_display_names(tmp_path):
    """A model's training ELBO and test bound by step and by wall-clock time: one panel per
    problem that has them, titled and labelled as a paper prints them, the prior's own
    optimizer in the axis label; the exact-objective figures say why they are not drawn."""
    results = tmp_path / "results"
    results.mkdir()
    _metric_traces(exact=False).to_parquet(results / "train.parquet", index=False)
    report = build_report([results], tmp_path / "out", formats=["svg"], style="paper")
    names = {f.name for f in report.figures}
    assert {"train_elbo_by_step", "train_elbo_by_time", "test_bound_by_step",
            "test_bound_by_time", "train_elbo_gap_by_step", "test_bound_gap_by_step"} <= names
    assert "needs optimization traces" not in " ".join(report.not_drawn.values())
    assert "no problem of the traces has an exact" in report.not_drawn["training_by_step"]
    assert "no measured variance" in report.not_drawn["training_variance"]
    svg = (tmp_path / "out" / "train_elbo_by_step.svg").read_text()
    for text in ("training ELBO", "binary VAE, linear", "RLOO", "DisARM",
                 "prior: SGD, lr = 0.01", "optimization step"):
        assert text in html.unescape(svg).replace("\u2011", "-"), text
    assert "eval_test_images" in html.unescape(svg)  # the measurement's size is not hidden
    bound = html.unescape((tmp_path / "out" / "test_bound_by_time.svg").read_text())
    assert "100-sample test bound" in bound and "wall-clock time" in bound


def test_training_metric_figures_keep_to_the_problems_that_have_them(tmp_path):
    traces = _metric_traces(exact=True)
    styles = estimator_styles(list(traces["estimator"]), {}, distinct=True)
    fig_style = STYLES["paper"]
    pages = figures.training_traces(FigureContext(fig_style, styles, traces=traces), "step",
                                    column="train_elbo")
    titles = {" ".join(ax.get_title().split()) for _, fig in pages for ax in fig.axes
              if ax.get_visible()}
    assert titles == {"binary VAE, linear, eval_test_images = 500, eval_train_images = 5000"}
    pages = figures.training_traces(FigureContext(fig_style, styles, traces=traces), "step")
    titles = {" ".join(ax.get_title().split()) for _, fig in pages for ax in fig.axes
              if ax.get_visible()}
    assert titles == {Labels().problem("bernoulli_toy")}
    for _, fig in pages:
        plt.close(fig)
    exact_only = traces[traces["problem"] == "bernoulli_toy"].drop(
        columns=["train_elbo", "test_bound"])
    with pytest.raises(figures.NotDrawn, match="only models of data sets"):
        figures.training_traces(FigureContext(fig_style, styles, traces=exact_only), "wall_s",
                                column="test_bound")


def test_the_training_metric_gap_pairs_each_seed_with_the_reference_estimator():
    """The gap figure draws each estimator's metric minus the reference's at the same seed
    and step: in the synthetic traces DisARM leads REINFORCE-LOO by exactly 1 nat per 1,000
    steps on every seed, ARM trails by 4."""
    traces = _metric_traces(exact=True)
    styles = estimator_styles(list(traces["estimator"]), {}, distinct=True)
    pages = figures.training_gap(
        FigureContext(STYLES["paper"], styles, traces=traces, reference="rloo"), "train_elbo")
    drawn = [line for _, fig in pages for ax in fig.axes for line in ax.get_lines()
             if len(line.get_xdata()) == 3]
    assert len(drawn) == 2  # ARM and DisARM; the reference is the zero line
    ends = sorted(float(line.get_ydata()[-1]) for line in drawn)
    assert ends == pytest.approx([-8.0, 2.0])
    with pytest.raises(figures.NotDrawn, match="two or more estimators"):
        figures.training_gap(FigureContext(STYLES["paper"], styles,
                                           traces=traces[traces["estimator"] == "arm"],
                                           reference="rloo"), "train_elbo")


# ----------------------------------------------------------------------------- print size

LM_ESTIMATORS = sorted(e.name for e in estimators.registry.entries()
                       if e.cls.family == "language-model RL")
LM_GRID = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)


def lm_frame(mixed: bool = True, sizes: tuple[int, ...] = (16,)) -> pd.DataFrame:
    """The ten language-model estimators on lm_pass_fail as configs/llm_rl.toml sweeps it:
    easy prompts at β = 0 | 0.1 and staleness 0 | 0.5, and (``mixed``) the mixed prompts over
    the staleness grid :data:`LM_GRID`. REINFORCE++ and its baseline variant coincide, as
    they do in the real sweep; variances fall as 1/√n, slower than 1/n."""
    specs = [{"difficulty": "easy", "beta": b, "staleness": s} for b in (0.0, 0.1)
             for s in (0.0, 0.5)]
    specs += [{"difficulty": "mixed", "staleness": s} for s in LM_GRID] if mixed else []
    rows = []
    for params in specs:
        name = "lm_pass_fail:" + ",".join(f"{k}={v}" for k, v in sorted(params.items()))
        for n in sizes:
            for index, estimator in enumerate(LM_ESTIMATORS):
                cls = estimators.registry.get(estimator)
                twin = "reinforce_pp" if estimator == "reinforce_pp_baseline" else estimator
                k = LM_ESTIMATORS.index(twin)
                variance = 1e-3 * (1 + k) * (1 + params["staleness"]) / math.sqrt(n)
                bias = (3e-3 * (1 + k) if not cls.unbiased else math.sqrt(variance / 2000))
                rows.append({
                    "problem": name, "estimator": estimator, "n_samples": n,
                    "replicates": 2000, "seed": 0, "family": cls.family,
                    "unbiased_claim": cls.unbiased, "estimator_params": "{}",
                    "problem_params": json.dumps(params), "dim": 180,
                    "true_grad_norm": 0.1, "status": "ok", "error": "",
                    "variance": variance, "variance_ci_low": 0.9 * variance,
                    "variance_ci_high": 1.1 * variance, "bias_norm": bias,
                    "bias_pvalue": 0.5, "mse": bias**2 + variance,
                    "time_per_estimate_s": 1e-4 * (1 + index), "f_evals": n})
    return prepare(to_frame(rows), ReportSpec())


def _markers(ax: plt.Axes) -> list[tuple[float, float, str]]:
    """(x, y, colour) of every marker-only point of a panel."""
    return [(x, y, line.get_markeredgecolor()) for line in ax.lines
            if line.get_linestyle() in ("None", "none") and line.get_marker() not in
            ("None", "none", None, "v", "<") for x, y in line.get_xydata()]


def test_ten_members_of_one_family_get_ten_colours_and_keep_their_shapes():
    lm = estimator_styles(LM_ESTIMATORS, distinct=True)  # a report of these ten
    assert len({s.color for s in lm.values()}) == len(LM_ESTIMATORS) == 10
    everything = estimator_styles(e.name for e in estimators.registry.entries())
    assert len({everything[e].color for e in LM_ESTIMATORS}) == 10  # in a larger report too
    assert all((lm[e].marker, lm[e].fill) == (everything[e].marker, everything[e].fill)
               for e in LM_ESTIMATORS)
    assert len({(s.marker, s.fill) for s in lm.values()}) == 10  # and apart in greyscale


def test_coincident_points_are_spread_and_the_guide_spans_the_axis():
    fig_style = apply_style("paper")
    frame = lm_frame(mixed=False)
    styles = estimator_styles(LM_ESTIMATORS, distinct=True)
    pages = figures.bias_vs_variance(FigureContext(fig_style, styles, frame, labels=LABELS,
                                                   n=16))
    fig = pages[0][1]
    fig.canvas.draw()
    twins = {styles["reinforce_pp"].color, styles["reinforce_pp_baseline"].color}
    for ax in [a for a in fig.axes if a.get_title()]:
        points = [(x, y) for x, y, c in _markers(ax) if c in twins]
        assert len(points) == 2 and math.isclose(points[0][1], points[1][1])
        apart = ax.transData.transform(points)
        assert abs(apart[0, 0] - apart[1, 0]) >= 0.8 * fig_style.marker * fig.dpi / 72
        (guide,) = [line for line in ax.lines if line.get_linestyle() == "--"]
        x, y = guide.get_xdata(), guide.get_ydata()
        low, high = ax.get_xlim()
        assert x.min() <= low * 1.01 and x.max() >= high / 1.01  # the whole axis
        bottom, top = ax.get_ylim()
        assert bottom <= y.min() and y.max() <= top  # inside the view
    handles = fig.legends[0].legend_handles
    marked = [h for h in handles if h.get_label().startswith("DAPO")]
    assert marked and marked[0].get_linestyle() in ("None", "none")  # markers, as drawn
    plt.close("all")


def test_a_landscape_is_found_among_problems_sharing_their_other_parameters():
    fig_style = apply_style("paper")
    styles = estimator_styles(LM_ESTIMATORS, distinct=True)
    grids, _ = figures.parameter_grids(lm_frame())
    assert [(g.name, g.parameter, sorted(g.values.values())) for g in grids] == [
        ("lm_pass_fail", "staleness", sorted(LM_GRID))]
    (_, fig), = figures.variance_vs_parameter(
        FigureContext(fig_style, styles, lm_frame(), labels=LABELS, n=16))
    panels = [ax for ax in fig.axes if ax.get_title()]
    titles = [ax.get_title().replace("\n", " ") for ax in panels]
    assert len(panels) == 2 and "total variance" in titles[0] and "‖bias‖" in titles[1]
    assert not any("trace" in t for t in titles)
    for ax in panels:
        assert ax.get_xscale() == "symlog"
        assert list(ax.xaxis.get_major_locator()()) == list(LM_GRID)  # a tick per value
    legend = fig.legends[0].get_window_extent(fig.canvas.get_renderer())
    assert legend.height / fig.bbox.height < 0.3
    with pytest.raises(figures.NotDrawn, match=r"staleness at 2 values \(0, 0\.5\).*|beta"):
        figures.variance_vs_parameter(FigureContext(fig_style, styles, lm_frame(mixed=False),
                                                    n=16))
    plt.close("all")


def _pdf_font_sizes(path: Path) -> set[float]:
    import zlib

    sizes = set()
    for stream in re.findall(rb"stream\r?\n(.*?)endstream", path.read_bytes(), re.S):
        try:
            stream = zlib.decompress(stream)
        except zlib.error:
            pass
        sizes |= {float(s) for s in re.findall(rb"/\w+ ([\d.]+) Tf", stream)}
    return sizes


def test_every_text_prints_at_six_points_or_more(styled):
    """Tick exponents (10⁻³) and heatmap numbers included, in paper and column style."""
    _, out = styled
    for pdf in out.glob("*.pdf"):
        sizes = _pdf_font_sizes(pdf)
        assert sizes and min(sizes) >= 6.0, (pdf.name, sorted(sizes))


def test_the_heatmap_scale_is_symmetric_signed_and_apart_from_the_cells():
    norm, ticks, extend = heatmap._heat_norm(np.array([-8.0, -0.3, 0.1]), most=7)
    assert norm.vmin == -norm.vmax and norm.vmax >= 8.0 and extend == "neither"
    assert list(ticks) == [-t for t in reversed(ticks)] and ticks.max() >= 8.0
    assert heatmap._signed(0.1) == "+0.1" and heatmap._signed(-5.7) == "−5.7"
    assert heatmap._signed(-0.01) == "0.0"


def test_the_heatmap_bar_keeps_a_tenth_of_an_inch_from_the_first_row(prepared):
    fig_style = apply_style("column")
    (_, fig), *_ = figures.relative_variance_heatmap(
        FigureContext(fig_style, {}, prepared, labels=LABELS, n=16))
    fig.canvas.draw()
    heat, bar = fig.axes[0], fig.axes[1]
    renderer = fig.canvas.get_renderer()
    cells_top = heat.get_window_extent(renderer).y1
    bar_bottom = bar.get_tightbbox(renderer).y0  # its tick labels and marks included
    assert (bar_bottom - cells_top) / fig.dpi >= 0.05
    plt.close("all")


def test_pages_are_full_before_the_next_begins_and_alike_problems_stay_together():
    items = [f"p{i:02d}" for i in range(15)]
    pages = paginate([items], len, 8.0, waste=lambda page: -len(page) % 2)
    assert [len(p) for p in pages] == [8, 7]  # not 7 + 8, an empty slot on page 1
    frame = lm_frame()
    groups = alike_groups(frame)
    assert [len(g) for g in groups] == [4, 7]  # easy prompts, then mixed ones


def test_rows_spread_panels_evenly_and_centre_the_last(prepared):
    fig_style = apply_style("paper")
    five = prepared[prepared.problem.isin(list(PROBLEMS)[:5])]
    (_, fig), = figures.variance_vs_samples(
        FigureContext(fig_style, estimator_styles(five.estimator), five, labels=LABELS))
    spans = sorted((ax.get_subplotspec().rowspan.start, ax.get_subplotspec().colspan.start)
                   for ax in fig.axes if ax.get_title())
    assert [row for row, _ in spans] == [0, 0, 0, 1, 1]  # 3 + 2, not 4 + 1
    assert [col for row, col in spans if row == 1] == [1, 3]  # centred
    plt.close("all")


def test_the_slope_guide_clears_every_point_at_every_n():
    fig_style = apply_style("paper")
    frame = lm_frame(mixed=False, sizes=(2, 8, 32))  # variances fall as 1/√n
    pages = figures.variance_vs_samples(FigureContext(
        fig_style, estimator_styles(LM_ESTIMATORS, distinct=True), frame, labels=LABELS))
    for _, fig in pages:
        for ax in [a for a in fig.axes if a.get_title()]:
            (guide,) = [line for line in ax.lines if line.get_linewidth() >= 4]
            gx, gy = guide.get_xdata(), guide.get_ydata()
            for x, y, _ in _markers(ax):
                above = np.interp(math.log(x), np.log(gx), np.log(gy))
                assert above - math.log(y) >= 0.4 * math.log(10), (ax.get_title(), x, y)
    plt.close("all")

# ----------------------------------------------------------------------------- review 23b


def _without_references(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as a selection without the reference or its fallback (as a report of
    configs/llm_rl.toml, whose estimators do not include the score function)."""
    gone = frame.estimator.isin(["score_function", "multi_sample_score_function"])
    return frame[~gone].reset_index(drop=True)


def test_without_any_reference_the_relative_table_is_not_written_and_says_why(
        synthetic, tmp_path):
    frame = pd.read_parquet(synthetic / RESULTS_FILE)
    write_results(_without_references(frame), tmp_path / "results", {
        "vrbench_version": "test", "config": {"n_samples": [1, 4, 16], "replicates": 10_000,
                                              "seeds": [0]}})
    out = tmp_path / "report"
    built = build_report([tmp_path / "results"], out, formats=["pdf"],
                         spec=ReportSpec(figures=("tables",)))
    assert not (out / "table_relative_variance.tex").exists()
    why = built.not_drawn["table_relative_variance"]
    suggested = re.search(r"--reference (\S+)", why).group(1)
    assert suggested in set(frame.estimator) and suggested != "score_function"
    assert "table_relative_variance" in built.missing  # the tables were asked for by name
    cells = (out / "table_cells.tex").read_text() + (out / "table_cells_floats.tex").read_text()
    assert "n/r" not in cells and r"rel.\ to ref." not in cells  # no ratio column at all
    assert "table_relative_variance" not in (out / "tables_preview.tex").read_text()
    summary = (out / "summary.md").read_text()
    assert "Variance relative" not in summary and "rel. variance" not in summary
    page = (out / "index.html").read_text()
    assert "Relative-variance table" in page and "rel. variance" not in page
    # Asked for nothing by name: the report is complete, and the reason is still given.
    from vrbench.reports.build import Report
    assert not Report([], [], {"table_relative_variance": why}).missing


def test_a_caption_counts_many_problems_without_a_reference():
    from vrbench.reports.values import describe_reference
    refs = {f"lm_pass_fail:staleness={k}": None for k in range(15)}
    text = describe_reference(refs, "score_function", code=LABELS.estimator,
                              problem_code=LABELS.problem)
    assert text == "REINFORCE (no reference ran on 15 problems: n/r)"
    few = describe_reference(dict(list(refs.items())[:2]), "score_function")
    assert "lm_pass_fail:staleness=1" in few  # a few are still named


def test_one_fallback_standing_in_everywhere_is_named_as_the_reference():
    from vrbench.reports.values import describe_reference
    refs = {f"lm_pass_fail:staleness={k}": "reinforce_sequence" for k in range(3)}
    assert describe_reference(refs, "score_function", code=LABELS.estimator) == \
        "REINFORCE (sequence)"
    mixed = {**refs, "bernoulli_toy": "score_function"}
    assert describe_reference(mixed, "score_function", code=LABELS.estimator).startswith(
        "REINFORCE (REINFORCE (sequence) on ")


def test_bold_marks_numbers_only():
    from vrbench.reports.tables import Cell
    for text in ("n/r", "exact", "err", "—"):
        cell = Cell(text, numeric=False, bold=True)
        assert "textbf" not in cell.latex() and "boldmath" not in cell.latex()
        assert "**" not in cell.markdown()
    assert r"\boldmath" in Cell("1.2", -3, bold=True).latex()


def test_the_heatmap_and_the_tables_share_one_row_order(fallback):
    from vrbench.reports.tables import pivot
    from vrbench.reports.values import row_order
    prepared_, _ = fallback
    at = prepared_[(prepared_.n_samples == 16) & (prepared_.status != "skipped")]
    order = row_order(at, "score_function")
    assert order[:2] == ["score_function", "multi_sample_score_function"]  # references first
    assert pivot(prepared_, 16).estimators == order
    ran = prepared_[prepared_.status != "skipped"]
    rows = cell_rows(prepared_)
    for problem in ran.problem.unique():  # the per-cell table lists a problem's rows alike
        shown = [e for p, e, _ in rows if p == problem]
        assert list(dict.fromkeys(shown)) == row_order(ran[ran.problem == problem],
                                                       "score_function")


def test_keys_and_notes_list_only_the_marks_that_occur(prepared):
    from vrbench.reports.values import heatmap_key
    at = prepared[prepared.n_samples == 16]
    full = " · ".join(heatmap_key(at[at.status != "skipped"]))
    for mark in ("exact:", "italic:", "†:", "MSE"):
        assert mark in full
    plain_rows = at[(at.status == "ok") & ~at.exact.astype(bool) & at.unbiased_claim.astype(bool)
                    & ~at.bias_rejected.astype(bool)]
    key = " · ".join(heatmap_key(plain_rows))
    for mark in ("exact:", "italic", "†", "err:", "MSE"):
        assert mark not in key
    # The per-cell tables: a one-sentence caption, the notation apart and only what occurs.
    text = latex_cells(plain_rows) + latex_cells_floats(plain_rows)
    captions = re.findall(r"\\caption\{(.*)\}", text)
    assert captions and all(c.count(". ") == 0 and len(c) < 120 for c in captions)
    assert "Italic" not in text and r"$^\dagger$:" not in text and "exact:" not in text
    assert "Notation of Table" in latex_cells(plain_rows)
    everything = latex_cells(prepared)
    assert "Italic" in everything and r"$^\dagger$:" in everything


def test_the_variance_caption_mentions_the_exact_strip_only_when_one_is_exact(prepared):
    def captions_of(cells: pd.DataFrame) -> dict[str, str]:
        context = FigureContext(STYLES["paper"], {}, cells, labels=LABELS, n=16)
        return {entry.name: entry.caption(context) for entry in registry.entries()
                if entry.needs is registry.Needs.CELLS}

    captions = captions_of(prepared)
    assert "grey strip" in captions["variance_vs_samples"]
    inexact = prepared[~prepared.exact.astype(bool)]
    captions = captions_of(inexact)
    assert "grey strip" not in captions["variance_vs_samples"]
    # Timing and counting stated plainly; a fitted baseline's variance is conditional on it.
    assert "one measurement per cell" in captions["work_normalized_time"]
    assert "spread is not in the interval" in captions["work_normalized_time"]
    assert "neither the draws a baseline" in captions["work_normalized_fevals"]
    assert "∇f" in captions["work_normalized_fevals"]
    assert "conditional on that one fit" in captions["variance_vs_samples"]


def test_the_first_relative_table_has_one_label_in_every_style(prepared):
    for style in ("paper", "column"):
        text = latex_relative(prepared, 16, figure_style=STYLES[style])
        assert text.count(r"\label{tab:vrbench-relative-variance}") == 1
        assert r"Table~\ref{tab:vrbench-relative-variance-1}" not in text


def test_every_float_breaks_the_names_alike(prepared):
    from vrbench.reports.tables import choose
    table, layouts = choose(prepared, 16, "score_function", LABELS, COLUMNWIDTH_PT)
    assert len(layouts) > 1
    assert len({layout.name_room for layout in layouts}) == 1
    names = [layout.names(LABELS) for layout in layouts]
    for estimator in table.estimators:
        assert len({tuple(n[estimator]) for n in names if estimator in n}) <= 1


def test_formulas_are_set_as_math_and_never_broken():
    assert latex_name(LABELS.problem("gaussian_step")) == "$1[x > 0]$"
    assert latex_name(LABELS.problem("gaussian_quadratic")) == "$(x - k)^2$"
    assert plain(LABELS.problem("gaussian_quadratic")) == "(x − k)²"
    assert latex_name("Bernoulli, t = 0.499") == "Bernoulli, $t = 0.499$"
    assert latex_name("LM, β = 0.1, staleness = 0.5") == r"LM, $\beta = 0.1$, staleness = 0.5"
    assert words("1[x > 0] of y") == ["1[x > 0]", "of", "y"]  # no line ends at an operator
    for room in (5.0, 20.0):
        assert all(">" not in line or "x > 0" in line
                   for line in wrap_words("mean of 1[x > 0] here", room))


def test_a_note_joins_the_name_s_parenthesis_and_defaults_are_not_shown():
    from vrbench.reports.labels import with_note
    assert LABELS.estimator("ppo_clip") == "PPO"  # the default clip is not repeated
    shown = LABELS.estimator("ppo_clip:clip=0.3")
    assert shown == "PPO (clip ε = 0.3)"
    assert with_note(shown, "biased") == "PPO (clip ε = 0.3, biased)"
    assert with_note("PPO", "biased") == "PPO (biased)"


def _index_html(frame: pd.DataFrame, contents: PageContents | None = None) -> str:
    """The report's page of ``frame`` at n = 16, relative to the score function."""
    context = FigureContext(STYLES["paper"], {}, frame, n=16, reference="score_function")
    return index_html(context, [], contents or PageContents(formats=["png"]))


def test_the_page_names_figures_and_estimators_for_readers(prepared):
    from vrbench.reports.build import Figure
    figures_ = [Figure("variance_vs_samples", ["variance_vs_samples-1", "variance_vs_samples-2"],
                       "A caption.")]
    page = _index_html(prepared, PageContents(
        figures_, ["png"], ["table_cells.tex"],
        {"bias_vs_temperature": "needs one estimator at several temperatures"}))
    assert "<b>variance_vs_samples" not in page and ">variance vs samples<" not in page
    assert "Variance against samples per estimate" in page
    assert "alt='Variance against samples per estimate, page 2 of 2'" in page
    assert "Bias against temperature" in page and "<b>bias_vs_temperature" not in page
    assert not re.search(r"data-sort='[^']*<", page)  # sort keys without markup
    assert "1 (reference)" in page  # the reference's own ratio, not "1.0e0"
    skipped = prepared[prepared.status == "skipped"]
    if not skipped.empty and "score_function" in " ".join(skipped.error.astype(str)):
        assert ">score_function<" not in page


def test_cell_floats_break_between_problems_where_a_problem_fits_a_float(prepared):
    rows = cell_rows(prepared)
    sizes = pd.Series([p for p, _, _ in rows]).value_counts()
    room = int(sizes.max()) + 2 + 4 + 5  # the largest problem, its heading, the first's caption
    text = latex_cells_floats(prepared, rows_per_float=room)
    assert "(continued)" not in text  # every problem fits a float: none is split
    assert text.count(r"\begin{table*}") < len(sizes)  # yet floats hold several problems


def test_the_page_shows_no_ratio_where_no_reference_ran():
    frame = prepare(_without_references(synthetic_frame()), ReportSpec())
    page = _index_html(frame)
    assert "n/r" not in page and "variance ÷ reference" not in page
    assert "rel. variance" not in page and "No reference" in page


def test_the_console_summary_never_cuts_a_problem_name_short():
    from vrbench.reports.console import _wrap_name
    name = "lm_pass_fail:beta=0.0,difficulty=easy,staleness=0.5"
    lines = _wrap_name(name).split("\n")
    assert "".join(lines) == name and all(len(line) <= 25 for line in lines)
    assert lines[-1] == "staleness=0.5"  # what tells the problems apart stays whole
    assert _wrap_name("bernoulli_toy") == "bernoulli_toy"
