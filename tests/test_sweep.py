"""Sweeps: configuration files, durable resumable cells, parallel and Dask runs, failures."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch

from vrbench import estimators
from vrbench.bench import read_results
from vrbench.bench.config import ConfigError, SweepConfig, load_config
from vrbench.bench.sweep import PARTS_DIR, run_sweep
from vrbench.components import Spec
from vrbench.estimators.base import Estimator
from vrbench.registry import Entry

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = ["problem", "estimator", "n_samples", "seed", "status", "bias_norm", "bias_pvalue",
           "variance", "variance_ci_low", "variance_ci_high", "mse", "cosine", "cell_id"]

SMALL = SweepConfig(
    estimators=[Spec("score_function"), Spec("rloo")],
    problems=[Spec("bernoulli_toy"), Spec("bandit_gaussian_10"), Spec("frozenlake",
                                                                      {"horizon": 20})],
    n_samples=[2, 4], replicates=300, seeds=[0, 1], jobs=1,
)


def small(tmp_path: Path, name: str, **changes) -> SweepConfig:
    return dataclasses.replace(SMALL, output=str(tmp_path / name), **changes)


def test_config_file_round_trip(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(
        'output = "out"\nn_samples = [2, 8]\nreplicates = 50\nseeds = [3]\njobs = 2\n'
        'estimators = ["rloo", { name = "score_function_baseline", fit_samples = 10 }]\n'
        'problems = ["bernoulli_toy:t=0.49,theta=1.0"]\n'
    )
    config = load_config(path)
    assert config.n_samples == [2, 8] and config.replicates == 50 and config.seeds == [3]
    assert config.estimators == [Spec("rloo"), Spec("score_function_baseline",
                                                    {"fit_samples": 10})]
    assert config.problems == [Spec("bernoulli_toy", {"t": "0.49", "theta": "1.0"})]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("replicate = 10\n", "unknown key 'replicate' (did you mean 'replicates'?)"),
        ("n_samples = [0]\n", "key 'n_samples' = [0]: expected a non-empty list of distinct "
                               "integers from 1 to 100,000"),
        ("replicates = \"many\"\n", "key 'replicates' = 'many': expected an integer from 2"),
        ("problems = [3]\n", "entry 3 is not a name or a table with a name"),
        ("seeds = [\n", "not valid TOML"),
    ],
)
def test_bad_configs_are_refused_with_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and message in str(info.value)


def test_cli_refuses_a_typo_before_any_work(tmp_path):
    path = tmp_path / "typo.toml"
    path.write_text(f'output = "{tmp_path / "out"}"\nestimators = ["score_fuction"]\n')
    out = subprocess.run([sys.executable, "-m", "vrbench.cli", "run", "--config", str(path)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "Did you mean 'score_function'?" in " ".join(out.stderr.split())
    assert not (tmp_path / "out").exists()


def test_shipped_configs_are_valid():
    for path in (ROOT / "configs").glob("*.toml"):
        load_config(path)


def test_resume_reuses_every_stored_cell(tmp_path):
    config = small(tmp_path, "resume")
    first = run_sweep(config)
    parts = sorted((tmp_path / "resume" / PARTS_DIR).glob("*.parquet"))
    assert first.ran == len(parts) == 24 and first.reused == 0
    stamps = [p.stat().st_mtime_ns for p in parts]
    second = run_sweep(config)
    assert second.ran == 0 and second.reused == 24
    assert [p.stat().st_mtime_ns for p in parts] == stamps
    pd.testing.assert_frame_equal(first.frame, second.frame)
    third = run_sweep(config, force=True)
    assert third.ran == 24
    pd.testing.assert_frame_equal(first.frame[NUMBERS], third.frame[NUMBERS])


def test_results_do_not_depend_on_workers_or_order(tmp_path):
    serial = run_sweep(small(tmp_path, "serial"))
    parallel = run_sweep(small(tmp_path, "parallel", jobs=2))
    reordered = run_sweep(small(tmp_path, "reordered", seeds=[1, 0],
                                problems=list(reversed(SMALL.problems))))
    key = ["problem", "estimator", "n_samples", "seed"]
    pd.testing.assert_frame_equal(serial.frame[NUMBERS], parallel.frame[NUMBERS])
    pd.testing.assert_frame_equal(
        serial.frame[NUMBERS].sort_values(key).reset_index(drop=True),
        reordered.frame[NUMBERS].sort_values(key).reset_index(drop=True))


def test_sigkill_midway_then_resume_gives_the_uninterrupted_table(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text(
        f'output = "{tmp_path / "killed"}"\njobs = 1\nreplicates = 2000\nseeds = [0, 1, 2]\n'
        'estimators = ["score_function", "score_function_baseline", "rloo"]\n'
        'problems = ["frozenlake", "chain_mdp:horizon=50", "bandit_gaussian_10"]\n'
        'n_samples = [2, 4]\n'
    )
    command = [sys.executable, "-m", "vrbench.cli", "run", "--config", str(config)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    parts = tmp_path / "killed" / PARTS_DIR
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("*.parquet"))) < 4:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.parquet")}
    assert 4 <= len(finished) < 54, "the sweep must be killed midway"

    resumed = run_sweep(load_config(config))
    assert resumed.reused == len(finished) and resumed.ran == 54 - len(finished)
    assert {p.name: p.stat().st_mtime_ns for p in parts.glob("*.parquet")
            if p.name in finished} == finished
    uninterrupted = run_sweep(dataclasses.replace(load_config(config),
                                                  output=str(tmp_path / "whole")))
    pd.testing.assert_frame_equal(resumed.frame[NUMBERS], uninterrupted.frame[NUMBERS])
    on_disk, meta = read_results(tmp_path / "killed")
    pd.testing.assert_frame_equal(on_disk[NUMBERS], uninterrupted.frame[NUMBERS])
    assert meta["reused"] == len(finished) and meta["config"]["seeds"] == [0, 1, 2]


def test_dask_local_cluster_gives_the_local_results(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    local = run_sweep(small(tmp_path, "local"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        remote = run_sweep(small(tmp_path, "dask"), scheduler=cluster.scheduler_address)
    assert remote.ran == 24 and remote.failed == 0
    pd.testing.assert_frame_equal(local.frame[NUMBERS], remote.frame[NUMBERS])
    _, meta = read_results(tmp_path / "dask")
    assert meta["scheduler"].startswith("tcp://")


@dataclass(frozen=True)
class _Sleepy(Estimator):
    """Sleeps, then returns zeros."""

    seconds: float = 5.0
    unbiased = False

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        time.sleep(self.seconds)
        return torch.zeros(replicates, problem.dim, dtype=torch.float64)


@dataclass(frozen=True)
class _NotANumber(Estimator):
    """Returns NaN."""

    unbiased = False

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        return torch.full((replicates, problem.dim), float("nan"), dtype=torch.float64)


def test_timeouts_and_nan_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    for name, cls in (("sleepy", _Sleepy), ("not_a_number", _NotANumber)):
        cls.name = name
        monkeypatch.setitem(estimators.registry._entries, name, Entry(name, cls, "test"))
    config = small(tmp_path, "failing", estimators=[Spec("sleepy"), Spec("not_a_number"),
                                                    Spec("score_function")],
                   problems=[Spec("bernoulli_toy")], n_samples=[2], seeds=[0],
                   cell_timeout=2.0)
    import scipy.stats  # noqa: F401  (imported by the first cell in this process: not timed here)

    started = time.time()
    outcome = run_sweep(config, in_process=True)  # the components live in this process
    assert time.time() - started < 4.5, "the sleeping cell must be interrupted"
    rows = outcome.frame.set_index("estimator")
    assert rows.loc["sleepy", "status"] == "error"
    assert "time limit of 2 s" in rows.loc["sleepy", "error"]
    assert rows.loc["not_a_number", "status"] == "error"
    assert "non-finite" in rows.loc["not_a_number", "error"]
    assert rows.loc["score_function", "status"] == "ok", rows.loc["score_function", "error"]
    assert outcome.failed == 2


def test_memory_budget_bounds_the_chunks_and_is_part_of_the_definition():
    from vrbench import problems
    from vrbench.bench.cells import Cell
    from vrbench.bench.runner import WORKING_COPIES, chunk_size

    problem = problems.make("frozenlake")
    for budget in (16, 64, 256):
        chunk = chunk_size(problem, 16, 10**7, budget)
        per_replicate = 16 * (2 * problem.dim + problem.sample_width())
        assert chunk * per_replicate * 8 * WORKING_COPIES <= budget * 2**20
        assert chunk >= 1
    small = Cell(Spec("frozenlake"), Spec("rloo"), 4, 100, 0, max_memory_mb=16)
    large = dataclasses.replace(small, max_memory_mb=256)
    assert small.key() != large.key()


def test_threads_and_memory_keys_in_configs(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text("threads = 1\nmax_memory_mb = 64\n")
    config = load_config(path)
    assert (config.threads, config.max_memory_mb) == (1, 64)
    path.write_text("max_memory_mb = 1\n")
    with pytest.raises(ConfigError, match="expected an integer number of MiB from 16"):
        load_config(path)


def test_a_parameter_grid_is_cells_that_resume_like_any_other(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(
        f'output = "{tmp_path / "grid"}"\nn_samples = [2]\nreplicates = 300\njobs = 1\n'
        'estimators = ["score_function", "reparameterization"]\n'
        'problems = [{ name = "gaussian_cosine", omega = { grid = [0.5, 1, 2] } },\n'
        '            { name = "gaussian_step", mu = { linspace = [0, 1, 3] } }]\n')
    config = load_config(path)
    assert [str(p) for p in config.problems] == [
        "gaussian_cosine:omega=0.5", "gaussian_cosine:omega=1", "gaussian_cosine:omega=2",
        "gaussian_step:mu=0.0", "gaussian_step:mu=0.5", "gaussian_step:mu=1.0"]
    first = run_sweep(config)
    assert first.ran == 9 and first.skipped == 3  # no pathwise gradient through a step
    again = run_sweep(config)
    assert (again.ran, again.reused) == (0, 9)
    pd.testing.assert_frame_equal(first.frame, again.frame)
    # The same points written on the command line are the same cells.
    from vrbench.components import parse_specs

    cli = dataclasses.replace(config, problems=parse_specs("gaussian_cosine:omega=0.5|1|2"))
    outcome = run_sweep(cli)
    assert (outcome.ran, outcome.reused) == (0, 6)
    assert "gaussian_cosine:omega=1.0" in set(outcome.frame["problem"])


def test_the_training_trace_at_step_zero_is_the_cell_at_the_initial_theta():
    from vrbench.bench.cells import Cell
    from vrbench.bench.runner import run_cell
    from vrbench.bench.train import TRACE_METRICS, TrainSettings, train

    settings = TrainSettings(steps=6, n_samples=3, eval_every=3, eval_replicates=2000)
    trace = train(Spec("bernoulli_toy", {"t": "0.45"}), Spec("rloo"), 5, settings)
    assert [row["step"] for row in trace] == [0, 3, 6]
    cell = run_cell(Cell(Spec("bernoulli_toy", {"t": 0.45}), Spec("rloo"), 3, 2000, 5))
    for key in TRACE_METRICS:
        assert trace[0][key] == cell[key], key
    assert trace[0]["value"] == cell["value"] and trace[0]["error"] == ""
    assert trace[1]["variance"] != trace[0]["variance"]  # θ moved, fresh streams
