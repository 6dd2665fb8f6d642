"""Reports: every figure and table rendered from a small fixture, and checked as files."""

from __future__ import annotations

import dataclasses
import html
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from vrbench import estimators
from vrbench.bench.config import SweepConfig
from vrbench.bench.results import RESULTS_FILE
from vrbench.bench.sweep import run_sweep
from vrbench.bench.train import TrainSettings, train
from vrbench.components import Spec
from vrbench.estimators.base import Estimator
from vrbench.reports.build import build_report
from vrbench.reports.style import estimator_styles
from vrbench.reports.tables import latex_table, markdown_table

FIGURES = ["variance_vs_samples", "bias_vs_variance", "work_normalized_fevals",
           "work_normalized_time", "relative_variance", "bias_vs_temperature",
           "training_by_step", "training_by_time"]


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
        outcome = run_sweep(config)
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


@pytest.mark.parametrize("name", FIGURES)
def test_every_figure_is_written_in_every_format(report, name):
    for fmt in ("pdf", "png", "svg"):
        assert (report / f"{name}.{fmt}").stat().st_size > 1000


@pytest.mark.parametrize("name", FIGURES)
def test_pdfs_are_vector_with_embedded_truetype_fonts_and_fit_the_page(report, name):
    data = (report / f"{name}.pdf").read_bytes()
    assert b"/FontFile2" in data  # embedded TrueType (pdf.fonttype 42)
    assert b"/Type3" not in data
    assert b"/Subtype /Image" not in data  # no raster content: the figure is vector
    width = float(re.search(rb"/MediaBox \[\s*0 0 ([\d.]+)", data).group(1)) / 72
    assert width <= 6.75 + 0.25  # two-column width, allowing for the tight bounding box


def test_one_column_style_fits_a_column(results, tmp_path):
    build_report([results], tmp_path, formats=["pdf"], style="column")
    data = (tmp_path / "variance_vs_samples.pdf").read_bytes()
    width = float(re.search(rb"/MediaBox \[\s*0 0 ([\d.]+)", data).group(1)) / 72
    assert width <= 3.25 + 0.25


def test_pngs_are_300_dpi(report):
    dpi = Image.open(report / "variance_vs_samples.png").info["dpi"]
    assert round(dpi[0]) == 300


def test_estimators_keep_one_style_across_figures():
    styles = estimator_styles(["rloo", "score_function", "rloo", "a", "b"])
    assert list(styles) == ["a", "b", "rloo", "score_function"]
    many = estimator_styles([f"e{i:02d}" for i in range(25)])
    assert len({(s.color, s.marker) for s in many.values()}) == 25


def test_tables_have_one_row_per_cell_and_the_best_in_bold(results):
    frame = pd.read_parquet(results / RESULTS_FILE)
    latex = latex_table(frame)
    assert latex.startswith(r"\begin{tabular}") and r"\toprule" in latex
    assert r"\bottomrule" in latex
    body = [line for line in latex.splitlines() if line.endswith(r"\\")][1:]
    # 2 problems × (score_function, rloo, exploding) + reparameterization on one + disarm and
    # two temperatures of gumbel_softmax on the other.
    assert len(body) == 10
    assert latex.count(r"\textbf{") == 2
    ok = frame[(frame.status == "ok") & (frame.n_samples == 8)]
    best = ok.loc[ok.groupby("problem")["variance"].idxmin()]
    markdown = markdown_table(frame)
    for row in best.itertuples():
        line = next(line for line in markdown.splitlines()
                    if line.startswith(f"| {row.problem} | {row.estimator} |"))
        assert "**" in line
    assert "error: RuntimeError: exploded on purpose" in markdown
    assert "exploding" in latex


def test_index_shows_figures_failures_and_provenance(report):
    page = (report / "index.html").read_text()
    for name in FIGURES:
        assert f"src='{name}.png'" in page
    assert "Failed cells (4)" in page and "exploded on purpose" in page
    assert "torch_version" in page and "git_revision" in page


def test_partial_and_merged_results(results, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "cells").symlink_to(results / "cells")
    out = build_report([partial], tmp_path / "out", formats=["png"])
    assert (tmp_path / "out" / "variance_vs_samples.png") in out
    assert '"partial": true' in html.unescape((tmp_path / "out" / "index.html").read_text())
    other = run_sweep(SweepConfig(estimators=[Spec("score_function")],
                                  problems=[Spec("bandit_gaussian_10")], n_samples=[2],
                                  replicates=100, jobs=1, output=str(tmp_path / "other")))
    assert other.failed == 0
    build_report([results, tmp_path / "other"], tmp_path / "merged", formats=["png"])
    assert "bandit_gaussian_10" in (tmp_path / "merged" / "summary.md").read_text()


def test_report_command(results, tmp_path):
    run = [sys.executable, "-m", "vrbench.cli", "report", str(results), "-o", str(tmp_path)]
    out = subprocess.run([*run, "--format", "svg", "--style", "slides"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "bias_vs_variance.svg").exists()
    bad = subprocess.run([*run, "--format", "jpg"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert "unknown format 'jpg'; valid formats: pdf, png, svg" in bad.stderr


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


@pytest.mark.parametrize(("low", "high", "labels"), [
    (2e-3, 7e-3, 2),      # no decade in view: labelled at 2 and 5 × 10⁻³
    (2.1e-3, 4.6e-3, 2),  # neither 2 nor 5 in view: every minor tick in view
    (1e-3, 1e2, 3),       # decades in view: those only
])
def test_log_axes_always_show_some_tick_labels(low, high, labels):
    import matplotlib.pyplot as plt

    from vrbench.reports.figures import _log_axes

    fig, ax = plt.subplots(figsize=(2.0, 1.5))
    ax.barh([0, 1], [low, high])
    _log_axes(ax, y=False)
    fig.canvas.draw()
    view_low, view_high = ax.get_xlim()
    shown = [t for minor in (False, True) for t in ax.get_xticklabels(minor=minor)
             if t.get_text() and view_low <= t.get_position()[0] <= view_high]
    plt.close(fig)
    assert len(shown) >= labels
    assert len(shown) <= 4  # never crowded
