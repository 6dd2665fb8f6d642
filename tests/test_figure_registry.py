"""The figure registry and the selection rules of reports: a figure registered in one place
is accepted by ``--figures``, listed by ``vrbench report --help``, drawn from stored results
onto the report's page; estimators, problems and traces are chosen by one set of rules."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from vrbench import estimators
from vrbench.bench.results import to_frame, write_results
from vrbench.cli import _parser, main
from vrbench.errors import VrbenchError
from vrbench.reports import registry
from vrbench.reports.build import build_report, report_choices
from vrbench.reports.registry import FigureContext, Needs, Pages, figure, figure_names
from vrbench.reports.selection import ReportSpec, Selection, load_spec

ESTIMATORS = ("score_function", "score_function_baseline", "rloo", "reparameterization")
PROBLEMS = ("bernoulli_toy", "gaussian_quadratic")


def _cells() -> pd.DataFrame:
    """A small sweep's cells: every estimator on every problem at n = 4 and 16."""
    rows = []
    for problem in PROBLEMS:
        for estimator in ESTIMATORS:
            cls = estimators.registry.get(estimator)
            for n in (4, 16):
                variance = 1.0 / n
                rows.append({
                    "problem": problem, "estimator": estimator, "n_samples": n,
                    "replicates": 1000, "seed": 0, "family": cls.family,
                    "unbiased_claim": cls.unbiased, "estimator_params": "{}",
                    "problem_params": "{}", "dim": 2, "true_grad_norm": 1.0, "status": "ok",
                    "error": "", "variance": variance, "variance_ci_low": 0.9 * variance,
                    "variance_ci_high": 1.1 * variance, "bias_norm": 1e-3,
                    "bias_pvalue": 0.5, "mse": variance, "time_per_estimate_s": 1e-6,
                    "f_evals": n})
    return to_frame(rows)


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stored")
    write_results(_cells(), out, {"vrbench_version": "test", "config": {
        "n_samples": [4, 16], "replicates": 1000, "seeds": [0]}})
    return out


@pytest.fixture
def scratch_registry(monkeypatch):
    """The registry as it is, restored after the test (whatever the test registers)."""
    registry.entries()  # the built-in figures, registered before the copy is taken
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))


def _register_cell_count() -> None:
    def caption(context: FigureContext) -> str:
        return f"Cells per problem at n = {context.n}."

    @figure("cell_count", Needs.CELLS, caption, title="Cells per problem")
    def cell_count(context: FigureContext) -> Pages:
        counts = context.cells.groupby("problem").size()
        fig = plt.figure(figsize=(context.figure_style.width, 2.0))
        fig.add_subplot().bar(range(len(counts)), counts.to_numpy())
        return [("", fig)]


def test_a_figure_registered_in_one_place_is_accepted_drawn_and_on_the_page(
        stored, tmp_path, scratch_registry, capsys):
    assert "cell_count" not in figure_names()
    assert main(["report", str(stored), "-o", str(tmp_path / "no"),
                 "--figures", "cell_count"]) == 2
    error = " ".join(capsys.readouterr().err.split())
    assert "unknown figure 'cell_count'; valid figures: variance_vs_samples," in error
    _register_cell_count()
    assert figure_names()[-2:] == ("cell_count", "tables")  # after the built-in ones
    help_text = io.StringIO()
    with contextlib.redirect_stdout(help_text), pytest.raises(SystemExit):
        _parser().parse_args(["report", "--help"])
    assert "cell_count" in " ".join(help_text.getvalue().split())
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text('figures = ["cell_count", "tables"]\n')
    assert load_spec(spec_file).figures == ("cell_count", "tables")

    out = tmp_path / "report"
    assert main(["report", str(stored), "-o", str(out), "--figures", "cell_count",
                 "--format", "png"]) == 0
    assert (out / "cell_count.png").is_file()
    assert not (out / "variance_vs_samples.png").exists()  # only what was asked for
    page = (out / "index.html").read_text()
    assert "Cells per problem" in page and "Cells per problem at n = 16." in page

    # A need the results lack is the reason it is not drawn, as for a built-in figure.
    @figure("trace_count", Needs.TRACES, "Trace rows.")
    def trace_count(context: FigureContext) -> Pages:
        raise AssertionError("not drawn without traces")

    report = build_report([stored], tmp_path / "traces", formats=["png"],
                          spec=ReportSpec(figures=("trace_count",)))
    assert report.missing == {"trace_count": registry.NO_TRACES}


def test_a_name_is_registered_once(scratch_registry):
    with pytest.raises(VrbenchError, match="'relative_variance' is already registered"):
        figure("relative_variance", Needs.CELLS, "again")(lambda context: [])
    with pytest.raises(VrbenchError, match="'tables' is already registered"):
        figure("tables", Needs.CELLS, "a figure named as the tables")(lambda context: [])


def _traces() -> pd.DataFrame:
    """Optimization traces of the same estimators and problems, as ``train.parquet`` holds
    them: no family column."""
    return pd.DataFrame([{"problem": p, "estimator": e, "seed": 0, "step": s, "value": 0.0}
                         for p in PROBLEMS for e in ESTIMATORS for s in (0, 10)])


ALL_ESTIMATORS = set(ESTIMATORS) | {"rloo:k=4"}
ALL_PROBLEMS = set(PROBLEMS) | {"gaussian_quadratic:dim=3"}
SELECTIONS = [
    # (column, tokens, chosen)
    ("estimator", "rloo", {"rloo", "rloo:k=4"}),  # a name chooses its variants
    ("estimator", "rloo:k=4", {"rloo:k=4"}),
    ("estimator", "score_function*", {"score_function", "score_function_baseline"}),
    ("estimator", "!rloo*", ALL_ESTIMATORS - {"rloo", "rloo:k=4"}),
    ("estimator", "family:pathwise", {"reparameterization"}),
    ("estimator", "pathwise", {"reparameterization"}),  # a family's plain name
    ("estimator", "family:score_function,!rloo", {"score_function", "score_function_baseline"}),
    ("problem", "gaussian_quadratic", {"gaussian_quadratic", "gaussian_quadratic:dim=3"}),
    ("problem", "bernoulli_*", {"bernoulli_toy"}),
    ("problem", "!bernoulli_toy", ALL_PROBLEMS - {"bernoulli_toy"}),
]
REFUSALS = [
    ("estimator", "rlo", "no estimator in the results matches 'rlo' (did you mean 'rloo'?); "
     "valid: reparameterization, rloo, rloo:k=4, score_function, score_function_baseline, "
     "family:pathwise, family:score function"),
    ("estimator", "!nope", "no estimator in the results matches 'nope'"),
    ("problem", "taxi", "no problem in the results matches 'taxi'; valid: bernoulli_toy, "
     "gaussian_quadratic, gaussian_quadratic:dim=3"),
    ("problem", "family:discrete", "no problem in the results matches 'family:discrete'"),
]


def _tables() -> dict[str, pd.DataFrame]:
    """The cells and the traces of a report, holding the same names (a variant each)."""
    cells = _cells()
    variant = cells[cells["estimator"] == "rloo"].assign(estimator="rloo:k=4")
    cells = pd.concat([cells, variant, cells[cells["problem"] == "gaussian_quadratic"].assign(
        problem="gaussian_quadratic:dim=3")], ignore_index=True)
    traces = _traces()
    traces = pd.concat([traces, traces[traces["estimator"] == "rloo"].assign(
        estimator="rloo:k=4"), traces[traces["problem"] == "gaussian_quadratic"].assign(
        problem="gaussian_quadratic:dim=3")], ignore_index=True)
    return {"cells": cells, "traces": traces}


@pytest.mark.parametrize("table", ["cells", "traces"])
@pytest.mark.parametrize(("column", "tokens", "chosen"), SELECTIONS)
def test_estimators_problems_and_traces_are_chosen_by_one_rule(table, column, tokens, chosen):
    tables = _tables()
    choices = report_choices(tables["cells"], tables["traces"], None)
    selection = Selection.parse(**{f"{column}s": tokens})
    picked = selection.by_name(tables[table], *choices)
    assert set(picked[column]) == chosen
    # The table alone (no report around it) chooses the same.
    assert set(selection.by_name(tables[table])[column]) == chosen


@pytest.mark.parametrize("table", ["cells", "traces"])
@pytest.mark.parametrize(("column", "tokens", "message"), REFUSALS)
def test_a_name_none_of_the_tables_holds_is_refused_naming_the_choices(table, column, tokens,
                                                                         message):
    tables = _tables()
    choices = report_choices(tables["cells"], tables["traces"], None)
    selection = Selection.parse(**{f"{column}s": tokens})
    with pytest.raises(VrbenchError, match=re.escape(message)):
        selection.by_name(tables[table], *choices)


def test_a_name_one_table_holds_is_not_refused_in_another():
    """A report's cells and traces are chosen from together: an estimator that only trained
    selects no cell, and is no error."""
    tables = _tables()
    traces = pd.concat([tables["traces"], tables["traces"].assign(estimator="disarm")])
    choices = report_choices(tables["cells"], traces, None)
    selection = Selection.parse(estimators="disarm")
    assert selection.by_name(tables["cells"], *choices).empty
    assert set(selection.by_name(traces, *choices)["estimator"]) == {"disarm"}
