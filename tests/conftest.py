"""Shared helpers: the registered components and their compatible pairs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from vrbench import estimators, problems
from vrbench.testing import check_instance, sample_sizes


def compatible_pairs(unbiased_only: bool = False) -> list[tuple[str, str]]:
    """(estimator, problem) for every pair the conformance suite checks at some sample size."""
    pairs = []
    for e_name in estimators.registry.names():
        estimator = estimators.make(e_name)
        if unbiased_only and not estimator.unbiased:
            continue
        for p_name in problems.registry.names():
            problem = check_instance(p_name)
            if any(estimator.incompatibility(problem, n) is None
                   for n in sample_sizes(estimator)):
                pairs.append((e_name, p_name))
    return pairs


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(20261129)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run torch on one thread, as ``vrbench check`` does: the conformance suite's many small
    tensor operations are slower on more threads when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# The slow tier: ``make test`` (CI) runs every test, ``make test-fast`` (``pytest -m "not
# slow"``) all but these. Listed here, by file or by test function (every parametrization), so
# the tier is one list in one place; tests/test_tiers.py checks that each entry still names a
# test. Chosen by measurement (``pytest --durations=0``): a test is slow when it costs several
# seconds on 2 cores (processes killed or timed out, Dask clusters, pdflatex, whole sweeps,
# recipes run end to end, plugin packages installed) or when its file is dominated by such
# tests.
SLOW: tuple[str, ...] = (
    # The conformance suite over every (estimator, problem) pair and every problem.
    "tests/test_estimators.py::test_estimator_conformance_and_unbiasedness",
    "tests/test_estimators.py::test_problem_conformance",
    # Deliberately wrong components caught by full-power bias tests.
    "tests/test_check_power.py::test_a_two_percent_bias_is_caught_at_every_n_and_a_correct_copy_passes",
    "tests/test_check_power.py::test_a_baseline_that_includes_the_draw_is_caught_at_every_n",
    "tests/test_check_power.py::test_qmc_replicates_are_independent_of_chunking",
    "tests/test_check_power.py::test_rloo_with_a_hard_coded_factor_is_exact_at_two_samples_and_caught_above",
    "tests/test_discrete_estimators.py::test_conformance_catches_wrong_discrete_estimators",
    # Installs the example plugin package, or runs `vrbench check` in subprocesses.
    "tests/test_plugins.py",
    # Every speed kernel of benchmarks/ against its estimator.
    "tests/test_benchmark_kernels.py",
    # Calibration and coverage simulations, and variance comparisons at high precision.
    "tests/test_metrics.py::test_bias_pvalue_is_calibrated_and_powerful",
    "tests/test_metrics.py::test_variance_interval_covers_the_exact_variance_about_95_percent",
    "tests/test_exact_variance.py::test_the_measured_variance_covers_the_exact_one_on_every_cell_where_it_is_defined",
    "tests/test_sequence_estimators.py::test_every_draw_matches_the_formula_and_the_sampled_mean_the_exact_one",
    "tests/test_discrete_estimators.py::test_vimco_and_nvil_beat_the_score_function_at_equal_cost",
    # Sampled means of every problem, MDPs included.
    "tests/test_problems.py::test_sampled_objective_has_the_exact_mean",
    # Processes killed, hung, stopped or interrupted; Dask clusters; sweeps run to compare.
    "tests/test_faults.py::test_a_killed_worker_is_replaced_and_its_cells_computed",
    "tests/test_faults.py::test_a_lost_dask_scheduler_leaves_cells_missing_until_the_next_run",
    "tests/test_faults.py::test_stopping_the_sweep_leaves_no_process_behind",
    "tests/test_faults.py::test_a_component_that_kills_hangs_or_stops_its_worker_costs_only_its_cells",
    "tests/test_faults.py::test_on_dask_a_hung_stopped_or_crashing_task_costs_only_its_cell",
    "tests/test_faults.py::test_dask_releases_each_cell_once_it_is_stored",
    "tests/test_faults.py::test_two_quick_sigints_still_write_the_table_and_release_the_lock",
    "tests/test_faults.py::test_a_second_sweep_on_the_same_output_is_refused",
    "tests/test_sweep.py::test_sigkill_midway_then_resume_gives_the_uninterrupted_table",
    "tests/test_sweep.py::test_dask_local_cluster_gives_the_local_results",
    "tests/test_sweep.py::test_resume_reuses_every_stored_cell",
    # Recipes run end to end.
    "tests/test_reproduce.py::test_a_training_recipe_reproduces_quickly",
    "tests/test_reproduce.py::test_a_sweep_recipe_reproduces_quickly_and_resumes",
    # Whole reports in every format and style, pdflatex, the CLI in subprocesses.
    "tests/test_reports.py::test_every_figure_fits_a_page_of_its_style",
    "tests/test_reports.py::test_column_style_tables_are_one_column_floats_that_fit",
    "tests/test_reports.py::test_index_leads_with_provenance_and_a_summary",
    "tests/test_reports.py::test_pdfs_are_vector_with_embedded_truetype_fonts",
    "tests/test_reports.py::test_every_figure_is_written_in_every_format",
    "tests/test_reports.py::test_pngs_are_300_dpi",
    "tests/test_reports.py::test_index_shows_figures_failures_and_provenance",
    "tests/test_reports.py::test_the_latex_tables_compile_and_fit_a_two_column_article",
    "tests/test_reports.py::test_report_command",
    "tests/test_reports.py::test_train_command_writes_traces",
    "tests/test_cli.py::test_bad_input_is_a_clear_error_with_exit_code_2",
    "tests/test_cli.py::test_bad_numbers_are_usage_errors",
    "tests/test_cli.py::test_list_shows_every_component",
    "tests/test_reports.py::test_a_figure_asked_for_and_not_drawn_fails_the_report_with_the_reason",
)


def _slow(nodeid: str) -> bool:
    function = nodeid.split("[")[0]
    path = nodeid.split("::")[0]
    return any(entry in (function, path) for entry in SLOW)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _slow(item.nodeid):
            item.add_marker(pytest.mark.slow)
