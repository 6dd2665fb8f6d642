"""Reports: every figure and table rendered from fixtures and checked as files.

Two fixtures: a small real sweep (failed cells, temperatures, traces) and a synthetic
results table shaped like the default sweep (every registered estimator, exact estimators,
biased ones, a rejected claim of unbiasedness, failed and skipped cells), which is fast to
make and exercises the page-splitting.
"""

from __future__ import annotations

import dataclasses
import html
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
from vrbench.reports import figures
from vrbench.reports.axes import MIN_PIECE, log_ticks, text_width_in, wrap_name
from vrbench.reports.build import build_report, prepare
from vrbench.reports.console import StableETA, format_interval, summary_table
from vrbench.reports.selection import ReportSpec, Selection, load_spec
from vrbench.reports.style import COLUMNWIDTH_PT, MARKERS, STYLES, apply_style, estimator_styles
from vrbench.reports.tables import (
    _header_lines,
    latex_cells,
    latex_document,
    latex_relative,
    markdown_tables,
)
from vrbench.reports.values import EXACT_RTOL, annotate, best, problem_references

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
                          TrainSettings(steps=20, eval_every=5, variance_replicates=16))
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
        pages = figures.variance_vs_samples(many, styles, fig_style)
        assert [s for s, _ in pages] == [f"-{i}" for i in range(1, len(pages) + 1)]
        assert len(pages) >= 2
        drawn = set()
        for _, fig in pages:
            width, height = fig.get_size_inches()
            assert height <= 9.0 and width <= MAX_WIDTH_IN[style]
            assert len(fig.legends) == 1
            titles = [ax.get_title().replace("\n", "") for ax in fig.axes if ax.get_visible()]
            drawn.update(titles)
            plt.close(fig)
        assert drawn == set(many.problem)


def test_heatmap_rows_keep_their_height_and_split_into_pages_when_many(prepared):
    """In the slides style (6.75 in pages, 12 pt text) the estimators of the fixture do not
    fit one page: the rows are split, each row stays 1.5 times the font tall, every
    estimator appears, and every page's colour bar has the same ticks."""
    fig_style = apply_style("slides")
    styles = estimator_styles(prepared.estimator,
                              dict(zip(prepared.estimator, prepared.family, strict=True)))
    pages = figures.relative_variance_heatmap(prepared, fig_style, 16, styles)
    shown, ticks = set(), set()
    for _, fig in pages:
        assert fig.get_size_inches()[1] <= fig_style.max_height
        fig.canvas.draw()  # the constrained layout places the axes
        cells = next(ax for ax in fig.axes if ax.get_label() != "<colorbar>")
        rows = [t.get_text() for t in cells.get_yticklabels()]
        shown.update(rows)
        height_pt = cells.get_position().height * fig.get_size_inches()[1] * 72
        assert height_pt / len(rows) >= 1.5 * fig_style.small
        bar = next(ax for ax in fig.axes if ax.get_label() == "<colorbar>")
        ticks.add(tuple(bar.get_xticks()))
        plt.close(fig)
    ran = prepared[(prepared.n_samples == 16) & (prepared.status != "skipped")]
    assert len(pages) >= 2 and shown == set(ran.estimator) and len(ticks) == 1


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
    return {
        "variance_vs_samples": figures.variance_vs_samples(prepared, styles, fig_style),
        "bias_vs_variance": figures.bias_vs_variance(prepared, styles, fig_style, 16),
        "work_normalized_fevals": figures.work_normalized(prepared, styles, fig_style,
                                                          "f_evals", 16),
        "work_normalized_time": figures.work_normalized(prepared, styles, fig_style,
                                                        "time_per_estimate_s", 16),
        "relative_variance": figures.relative_variance_heatmap(prepared, fig_style, 16,
                                                               styles),
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
    panel = next(ax for ax in fig.axes if ax.get_title() == "bernoulli_toy")
    assert "exact" in _labels(panel.yaxis)
    on_toy = prepared[(prepared.problem == "bernoulli_toy") & (prepared.status == "ok")]
    assert len(panel.lines) >= on_toy.estimator.nunique()  # one series each, none dropped
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"disarm", "mvd_bernoulli", "antithetic_score_function"} <= set(legend)
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
    (_, fig), = figures.variance_vs_samples(frame, styles, fig_style)
    legend = {t.get_text() for t in fig.legends[0].get_texts()} - {"slope −1 (∝ 1/n)",
                                                                  "† unbiasedness rejected"}
    assert legend == set(frame.estimator)
    assert {ax.get_title() for ax in fig.axes} == {"bernoulli_toy", "bernoulli_vector"}
    plt.close(fig)
    summary = (tmp_path / "summary.md").read_text()
    assert "score_function_baseline" not in summary and "chain_mdp" not in summary
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


def test_the_pivot_table_has_captions_labels_intervals_and_marks(prepared):
    latex = latex_relative(prepared, 16)
    floats = latex.count(r"\begin{table*}")
    assert floats >= 2 and latex.count(r"\caption{") == floats
    assert r"\label{tab:vrbench-relative-variance-1}" in latex
    assert "half-width of the 95\\% interval" in latex
    assert latex.count(r"$^\dagger$") == 2  # the rejected cell, and the caption's legend
    assert latex.count(r"\textbf{exact}") == 4  # exact_enumeration: exact, never bold
    enumeration = [line for line in latex.splitlines() if line.startswith(r"exact\_enumeration")]
    assert enumeration and all(" exact " in line.replace("&", " ").replace(r"\\", " ")
                               and r"\textbf" not in line for line in enumeration)
    assert not re.search(r"\de-\d", latex)  # numbers as ×10^k, never 1.2e-3
    assert r"\textit{gumbel\_softmax}" in latex
    assert not re.search(r"\$10\.\d*\(", latex)  # mantissas below 10
    for line in latex.splitlines():
        if line.startswith("score\\_function &"):
            assert set(line.split(" & ")[1:]) <= {"$1$", "---", "$1$ \\\\", "--- \\\\"}
    markdown = markdown_tables(prepared, 16)
    assert "**exact**" in markdown and markdown.count("†") >= 2


def test_the_appendix_table_lists_every_cell_that_ran(prepared):
    latex = latex_cells(prepared)
    assert r"\begin{longtable}" in latex and r"\endhead" in latex
    ran = prepared[prepared.status != "skipped"]
    rows = [line for line in latex.splitlines() if line.endswith(r"\\")
            and not line.startswith((r"\multicolumn", r"\caption", "estimator &"))]
    assert len(rows) == len(ran)
    assert "failed: RuntimeError: boom" in latex


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_the_latex_tables_compile_and_fit_a_two_column_article(prepared, tmp_path):
    (tmp_path / "relative.tex").write_text(latex_relative(prepared, 16))
    (tmp_path / "cells.tex").write_text(latex_cells(prepared))
    (tmp_path / "doc.tex").write_text(latex_document(["relative", "cells"]))
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert run.returncode == 0, log[-2000:]
    assert "Overfull \\hbox" not in log and "Float too large" not in log
    assert re.search(r"Output written on doc.pdf \((\d+) pages", log)


def _floats(latex: str) -> list[tuple[str, dict[str, dict[str, str]]]]:
    """Each float of a pivot: its caption, and its entries by estimator and problem."""
    out = []
    for body in latex.split(r"\begin{table")[1:]:
        caption = re.search(r"\\caption\{(.*)\}\n\\label", body, re.S).group(1)
        lines = body.splitlines()
        header = next(line for line in lines if line.startswith("estimator & "))
        problems_ = [re.sub(r"\\begin\{tabular\}\[b\]\{@\{\}c@\{\}\}|\\end\{tabular\}|\\\\"
                            r"|\\\\$", "", h).replace(r"\_", "_").strip(" \\")
                     for h in header.split(" & ")[1:]]
        rows = {}
        for line in lines[lines.index(header) + 2:]:
            if " & " not in line:
                continue
            name, *values = line.removesuffix(r" \\").split(" & ")
            name = re.sub(r"\\textit\{(.*)\}", r"\1", name).replace(r"\_", "_")
            rows[name] = dict(zip(problems_, values, strict=True))
        out.append((caption, rows))
    return out


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
    latex = latex_relative(prepared, 16)
    assert "?" not in latex
    floats = _floats(latex)
    assert "n/r: no reference variance to compare with" in floats[0][0]  # defined once
    seen = set()
    for caption, rows in floats:
        problems_ = set(next(iter(rows.values())))
        if FALLBACK in problems_:
            assert r"relative to \texttt{score\_function} (" in caption
            assert (r"\texttt{multi\_sample\_score\_function} on \texttt{gaussian\_abs}"
                    in caption.split(" at $n")[0])
            assert rows["multi_sample_score_function"][FALLBACK] == "$1$"
            assert rows["score_function"][FALLBACK] == "---"
            seen.add(FALLBACK)
        if UNREFERENCED in problems_:
            assert r"no reference ran on \texttt{random\_mdp}: n/r" in caption
            column = {e: v[UNREFERENCED] for e, v in rows.items() if e != "reference variance"}
            marks = {v for v in column.values() if v not in ("---", r"\textbf{exact}", "exact")}
            assert marks and all("n/r" in v for v in marks), marks
            assert rows["reference variance"][UNREFERENCED] == "---"
            seen.add(UNREFERENCED)
        if not problems_ & {FALLBACK, UNREFERENCED}:
            assert "(" not in caption.split(" at $n")[0]  # no exceptions to name here
    assert seen == {FALLBACK, UNREFERENCED}
    # Bold only where the variance is best, whatever the ratio.
    at = prepared[(prepared.n_samples == 16) & (prepared.problem == UNREFERENCED)]
    best_names = set(at.loc[at.best.astype(bool), "estimator"])
    for _, rows in floats:
        for estimator, values in rows.items():
            if "n/r" in values.get(UNREFERENCED, ""):
                assert ("textbf" in values[UNREFERENCED]) == (estimator in best_names)
    cells = latex_cells(prepared)
    assert r"\texttt{multi\_sample\_score\_function} on \texttt{gaussian\_abs}" in cells
    assert "?" not in cells and "n/r" in cells
    markdown = markdown_tables(prepared, 16)
    assert "multi_sample_score_function on gaussian_abs" in markdown.splitlines()[0]
    assert "no reference ran on random_mdp: n/r" in markdown.splitlines()[0]
    assert "n/r" in markdown and "?" not in markdown


def test_the_figures_mark_each_problems_reference(fallback):
    prepared, _ = fallback
    pages = _pages(prepared)
    found = set()
    for _, fig in pages["relative_variance"]:
        ax = fig.axes[0]
        problems_ = [t.get_text() for t in ax.get_xticklabels()]
        estimators_ = [t.get_text() for t in ax.get_yticklabels()]
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
                assert any("multi_sample_score_function on gaussian_abs" in t for t in texts)
                found.add(problem)
            if problem == UNREFERENCED:
                assert any("n/r: no reference variance to compare with" in t for t in texts)
                assert any(at.get((j, i), "").startswith("n/r")
                           for i in range(len(estimators_)))
                found.add(problem)
    assert found == {FALLBACK, UNREFERENCED}
    for name in ("work_normalized_fevals", "work_normalized_time"):
        panels = {ax.get_title(): ax for _, fig in pages[name] for ax in fig.axes}
        labels = [t.get_text() for t in panels[FALLBACK].get_yticklabels()]
        assert "multi_sample_score_function (ref.)" in labels
        assert [t.get_text() for t in panels[UNREFERENCED].texts] == ["n/r: no reference ran"]
        label = next(_flat(fig._supxlabel.get_text()) for _, fig in pages[name]
                     if FALLBACK in [ax.get_title() for ax in fig.axes])
        assert "relative to score_function (" in label
        assert "multi_sample_score_function on gaussian_abs" in label
    plt.close("all")


def test_the_summary_and_the_page_use_the_same_references(fallback):
    prepared, results = fallback
    text = _flat("\n".join(_render(summary_table(pd.read_parquet(results / RESULTS_FILE)),
                                   100)))
    for part in ("÷ that of score_function (", "multi_sample_score_function on gaussian_abs",
                 "no reference ran on random_mdp: n/r"):
        assert part in text
    from vrbench.reports.page import index_html
    page = _flat(index_html(prepared, [], [], ["png"], [], [], reference="score_function",
                            n=16))
    assert "Ratios are to the reference score_function (" in page
    assert "no reference ran on random_mdp: n/r" in page
    assert "multi_sample_score_function on gaussian_abs" in page
    row = re.search(r"<tr><td class='l' data-sort='gaussian_abs'>.*?</tr>", page).group(0)
    assert "(multi_sample_score_function)" in row  # the reference variance names it
    assert ">?<" not in page


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_column_style_tables_are_one_column_floats_that_fit(prepared, styled, tmp_path):
    style, out = styled
    written = (out / "table_relative_variance.tex").read_text()
    assert (r"\begin{table*}" in written) == (style == "paper")
    assert (r"\begin{table}[tbp]" in written) == (style == "column")
    latex = latex_relative(prepared, 16, width_pt=COLUMNWIDTH_PT, env="table")
    assert r"\begin{table*}" not in latex and r"\end{table}" in latex
    assert latex.count(r"\begin{table}") > latex_relative(prepared, 16).count(r"\begin{table*}")
    for header in re.findall(r"\\begin\{tabular\}\[b\]\{@\{\}c@\{\}\}(.*?)\\end\{tabular\}",
                             latex):
        assert all(len(piece.replace(r"\_", "")) >= MIN_PIECE for piece in header.split("\\\\"))
    (tmp_path / "relative.tex").write_text(latex)
    (tmp_path / "doc.tex").write_text(latex_document(["relative"]))
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=120)
    log = (tmp_path / "doc.log").read_text(errors="replace")
    assert run.returncode == 0, log[-2000:]
    assert "Overfull \\hbox" not in log and "Float too large" not in log


@pytest.mark.skipif(shutil.which("pdflatex") is None or shutil.which("pdftotext") is None,
                    reason="pdflatex or pdftotext is not installed")
def test_a_page_that_continues_a_problem_starts_with_its_name(prepared, tmp_path):
    (tmp_path / "cells.tex").write_text(latex_cells(prepared))
    (tmp_path / "doc.tex").write_text(latex_document(["cells"]))
    for _ in range(2):  # longtable settles its column widths on the second run
        run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                              "doc.tex"], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 0, run.stdout[-2000:]
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "doc.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    names = {p.replace("_", " "): p for p in prepared.problem.unique()}
    current, continued = None, 0
    for page in text.split("\f"):
        lines = [line.strip() for line in page.splitlines() if line.strip()]
        header = next((i for i, line in enumerate(lines) if line.startswith("estimator ")),
                      None)
        if header is None:
            continue
        first = lines[header + 1]
        if current is not None and first not in names:
            assert first == f"{current.replace('_', ' ')} (continued)", first
            continued += 1
            # An estimator's rows stay together: the page starts with a name.
            assert not lines[header + 2][0].isdigit(), lines[header + 2]
        for line in lines[header + 1:]:
            current = names.get(line, current)
    assert continued >= 2


@pytest.mark.parametrize("room", [0.0, 40.0, 80.0])
def test_headers_break_where_needed_and_leave_no_short_piece(room):
    names = [e.name for e in problems.registry.entries()]
    for name in [*names, "x_verylongname_more", "a_b_c_d", "ab_cd_ef_gh_ij_kl_mn"]:
        lines = _header_lines(name, room)
        assert "".join(lines) == name
        assert len(lines) == 1 or all(len(line.rstrip("_")) >= MIN_PIECE for line in lines), \
            lines
    assert _header_lines("bandit_bernoulli_k") == ["bandit_", "bernoulli_k"]
    assert _header_lines("iwae_digits") == ["iwae_digits"]  # short enough: not broken
    assert _header_lines("gaussian_quadratic_10d", 200.0) == ["gaussian_quadratic_10d"]


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
    assert "bandit_gaussian_10" in (tmp_path / "merged" / "summary.md").read_text()


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


def test_a_wrapped_name_never_ends_in_a_short_piece():
    width = text_width_in("bandit_bernoulli_", 7.0) * 1.05  # too narrow for the whole name
    lines = wrap_name("bandit_bernoulli_k", width, 7.0).split("\n")
    assert len(lines) >= 1 and all(len(line) >= 3 for line in lines)
    assert "".join(lines) == "bandit_bernoulli_k"
