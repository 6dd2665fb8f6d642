"""Sweeps under faults: each test reproduces a fault and checks what the user sees (the exit
code, the message, the final table against an uninterrupted run's, no process left behind)."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
import pytest
import torch

from vrbench import estimators, problems
from vrbench.bench import read_results, run_cell
from vrbench.bench.cells import Cell
from vrbench.bench.config import ConfigError, load_config
from vrbench.bench.pool import WORKER_NAME
from vrbench.bench.results import ResultsError, to_frame
from vrbench.bench.store import PARTS_DIR, StoreWarning, lock_state
from vrbench.bench.sweep import run_sweep
from vrbench.cli import main
from vrbench.components import Spec
from vrbench.errors import ParameterError
from vrbench.estimators.base import Estimator
from vrbench.problems.bernoulli import BernoulliToy
from vrbench.registry import Entry

ROOT = Path(__file__).resolve().parents[1]
NUMBERS = ["problem", "estimator", "n_samples", "seed", "status", "bias_norm", "bias_pvalue",
           "variance", "variance_ci_low", "variance_ci_high", "mse", "cosine", "cell_id"]

# Slow enough (about 0.3 s a cell on 2 cores) that a sweep can be hit while it runs.
SWEEP_TOML = """
jobs = {jobs}
replicates = 3000
seeds = [0, 1]
estimators = ["score_function", "rloo"]
problems = ["frozenlake:horizon=60", "chain_mdp:horizon=60"]
n_samples = [2, 4, 8]
"""
CELLS = 24


@pytest.fixture(autouse=True, scope="module")
def interruptible():
    """Sweeps started here take Ctrl-C, even when the tests run where SIGINT is ignored (in a
    background job, say): an ignored signal is inherited, and a sweep keeps it ignored."""
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def vrbench(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The command line in a process of its own (for faults that need one)."""
    return subprocess.run([sys.executable, "-m", "vrbench.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys):
    """The command line in this process: what it returns and prints, with whole lines."""
    def run(*args: str) -> Ran:
        code = main(list(args))
        out = capsys.readouterr()
        return Ran(code, out.out, " ".join(out.err.split()))
    return run


def start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "vrbench.cli", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)


def sweep_file(tmp_path: Path, name: str, jobs: int = 2) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'output = "{tmp_path / name}"\n' + SWEEP_TOML.format(jobs=jobs))
    return path


def wait_for_parts(output: Path, count: int, process: subprocess.Popen | None = None,
                   timeout: float = 180) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline:
        stored = len(list((output / PARTS_DIR).glob("*.parquet")))
        if stored >= count:
            return stored
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the sweep ended early: {process.communicate()}")
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} cells stored after {timeout} s")


def gone(pids: list[int], timeout: float = 10) -> list[int]:
    """The processes among ``pids`` still alive after ``timeout`` seconds."""
    deadline = time.time() + timeout
    alive = pids
    while time.time() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> pd.DataFrame:
    """The table of the test sweep run once without faults."""
    tmp_path = tmp_path_factory.mktemp("reference")
    out = vrbench("run", "--config", str(sweep_file(tmp_path, "whole")))
    assert out.returncode == 0, out.stdout + out.stderr
    return read_results(tmp_path / "whole")[0]


def assert_same_table(output: Path, reference: pd.DataFrame) -> None:
    frame, meta = read_results(output)
    assert not meta.get("partial")
    pd.testing.assert_frame_equal(frame[NUMBERS], reference[NUMBERS])


# 1. Lost cells are retried, never stored as errors ------------------------------------------

def test_a_killed_worker_is_replaced_and_its_cells_computed(tmp_path, uninterrupted):
    output = tmp_path / "killed_worker"
    process = start("run", "--config", str(sweep_file(tmp_path, "killed_worker")))
    wait_for_parts(output, 3, process)
    workers = [c for c in psutil.Process(process.pid).children(recursive=True)
               if c.name() == WORKER_NAME]
    assert workers, "the sweep runs its cells in worker processes"
    workers[0].kill()
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stdout + stderr
    assert f"COMPLETE: {CELLS} cells, {CELLS} ok, 0 failed, 0 missing." in stdout
    assert_same_table(output, uninterrupted)


def test_a_worker_killed_between_cells_is_replaced_and_the_next_cell_computed():
    # Killed after it sent its row: it holds no cell, so only the dispatch can notice it.
    from vrbench.bench.pool import WorkerPool

    cells = [Cell(Spec("bernoulli_toy"), Spec("score_function"), 2, 200, seed)
             for seed in (0, 1)]
    pool = WorkerPool(jobs=1, threads=1, timeout=None)
    rows = pool.run(cells)
    first, row = next(rows)
    (worker,) = pool._workers
    worker.process.kill()
    worker.process.join(timeout=10)
    rest = list(rows)
    assert row["status"] == "ok" and first.seed == 0
    assert [(cell.seed, row["status"]) for cell, row in rest] == [(1, "ok")]


def _scheduler_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_lost_dask_scheduler_leaves_cells_missing_until_the_next_run(tmp_path,
                                                                        uninterrupted):
    pytest.importorskip("dask.distributed")
    dask = str(Path(sys.executable).parent / "dask")
    port = _scheduler_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port",
                                  str(port), "--no-dashboard"], **quiet)
    worker = subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--nworkers", "1",
                               "--no-dashboard"], **quiet)
    output = tmp_path / "lost_scheduler"
    try:
        process = start("run", "--config", str(sweep_file(tmp_path, "lost_scheduler")),
                        "--scheduler", address)
        wait_for_parts(output, 3, process)
        scheduler.kill()
        stdout, stderr = process.communicate(timeout=300)
    finally:
        for child in (scheduler, worker):
            child.kill()
            child.wait()
    assert process.returncode == 3, stdout + stderr
    assert "INCOMPLETE" in stdout.splitlines()[-1]
    frame, _ = read_results(output)
    stored = len(list((output / PARTS_DIR).glob("*.parquet")))
    assert (frame["status"] == "ok").sum() == stored
    assert (frame["status"] == "missing").sum() == CELLS - stored > 0
    assert frame.loc[frame["status"] == "missing", "error"].str.contains("Dask").all()

    resumed = vrbench("run", "--config", str(output.parent / "lost_scheduler.toml"))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"This run computed {CELLS - stored} cells and reused {stored}" in resumed.stdout
    assert_same_table(output, uninterrupted)


def test_cells_lost_in_an_earlier_run_are_computed_and_the_exit_code_covers_the_table(
        tmp_path, monkeypatch):
    from vrbench.bench import sweep as sweep_module

    config = dataclasses.replace(load_config(sweep_file(tmp_path, "lossy", jobs=1)),
                                 n_samples=[2], seeds=[0])
    real = sweep_module.run_cell

    def lose_rloo(cell, timeout=None):
        if cell.estimator.name == "rloo":
            return sweep_module.lost_row(cell, "not computed: its worker process died")
        return real(cell, timeout)

    monkeypatch.setattr(sweep_module, "run_cell", lose_rloo)
    first = run_sweep(config, in_process=True)  # so that the patched run_cell runs
    assert first.counts == {"ok": 2, "error": 0, "missing": 2, "skipped": 0}
    assert first.exit_code == 3 and not first.complete
    monkeypatch.setattr(sweep_module, "run_cell", real)
    second = run_sweep(config)
    assert (second.ran, second.reused) == (2, 2)
    assert second.exit_code == 0 and second.complete


# 2. No orphans; signals stop the sweep cleanly -----------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT],
                         ids=lambda sig: sig.name)
def test_stopping_the_sweep_leaves_no_process_behind(tmp_path, sig, uninterrupted):
    name = f"stopped_{sig.name}"
    output = tmp_path / name
    process = start("run", "--config", str(sweep_file(tmp_path, name)))
    wait_for_parts(output, 3, process)
    descendants = [c.pid for c in psutil.Process(process.pid).children(recursive=True)]
    assert descendants
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=120)
    assert gone(descendants) == [], "worker processes outlived the sweep"
    if sig != signal.SIGKILL:
        assert process.returncode == 128 + sig, stdout + stderr
        assert f"Interrupted by {sig.name}" in stdout
        assert "run the same command again" in stdout
        frame, meta = read_results(output)
        assert not meta.get("partial") and (frame["status"] == "missing").any()
        assert "INCOMPLETE" in stdout.splitlines()[-1]
    if sig == signal.SIGINT:
        return  # resumes as after SIGTERM
    resumed = run_sweep(load_config(tmp_path / f"{name}.toml"))
    assert resumed.exit_code == 0
    assert_same_table(output, uninterrupted)
    assert list((output / PARTS_DIR).glob(".*.tmp")) == []


# 3. A self-healing store ---------------------------------------------------------------------

SMALL = dict(estimators=[Spec("score_function"), Spec("rloo")],
             problems=[Spec("bernoulli_toy"), Spec("bandit_gaussian_10")],
             n_samples=[2, 4], replicates=300, seeds=[0], jobs=1)


def small(tmp_path: Path, name: str, **changes):
    from vrbench.bench.config import SweepConfig

    return SweepConfig(output=str(tmp_path / name), **{**SMALL, **changes})


def test_a_corrupt_cell_is_moved_aside_and_computed_again(tmp_path):
    config = small(tmp_path, "corrupt")
    first = run_sweep(config)
    parts = sorted((tmp_path / "corrupt" / PARTS_DIR).glob("*.parquet"))
    parts[0].write_bytes(parts[0].read_bytes()[:10])
    parts[1].write_bytes(b"")
    leftover = parts[0].parent / ".tmpabc.tmp"
    leftover.write_bytes(b"")
    with pytest.warns(StoreWarning, match="not a readable Parquet file") as caught:
        second = run_sweep(config)
    assert len(caught) == 2 and "will compute the cell again" in str(caught[0].message)
    assert (second.ran, second.reused) == (2, len(parts) - 2)
    pd.testing.assert_frame_equal(first.frame[NUMBERS], second.frame[NUMBERS])
    assert len(list((parts[0].parent / "unreadable").iterdir())) == 2
    assert not leftover.exists()


def test_the_cli_reports_a_repaired_cell_and_report_reads_the_repaired_table(tmp_path, cli):
    output = tmp_path / "cli_corrupt"
    args = ["run", "-e", "score_function", "-p", "bernoulli_toy", "-n", "2,4", "-r", "300",
            "-j", "1", "-o", str(output)]
    assert cli(*args).returncode == 0
    part = next((output / PARTS_DIR).glob("*.parquet"))
    part.write_bytes(b"PAR1")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        out = cli(*args)
    assert out.returncode == 0, out.stderr
    assert "warning: stored cell" in out.stderr and "moved it to" in out.stderr
    report = cli("report", str(output), "-o", str(tmp_path / "report"), "--format", "png")
    assert report.returncode == 0, report.stderr


def test_a_stale_table_is_never_read_in_place_of_the_cells(tmp_path):
    config = small(tmp_path, "stale")
    run_sweep(config)
    output = tmp_path / "stale"
    # A later sweep into the same directory that was killed before it wrote its table: its
    # lock says it was running, its plan holds cells that the old table does not.
    process = start("run", "-e", "score_function,rloo", "-p", "bernoulli_toy,frozenlake",
                    "-n", "2,4,8,16", "-r", "3000", "-j", "1", "-o", str(output))
    wait_for_parts(output, 8 + 3, process)  # 8 from the first sweep
    process.kill()
    process.wait()
    assert lock_state(output)["state"] == "running"
    frame, meta = read_results(output)
    assert meta["partial"] and meta["state"] == "interrupted"
    assert len(frame) == 16 and (frame["status"] == "missing").any()
    assert frame.loc[frame["status"] == "missing", "error"].str.contains("interrupted").all()


# 4. Non-finite and meaningless numbers are errors --------------------------------------------

@pytest.mark.parametrize(("spec", "message"), [
    ("gaussian_quadratic:mu=1e150", "|mu| must be at most 1e+08"),
    ("gaussian_quadratic:sigma=1e-200", "sigma=1e-200 must lie in [1e-08, 1e+08]"),
    ("gaussian_quadratic:mu=1e7,sigma=1e-2", "|mu/sigma| must be at most 1e+08"),
    ("gaussian_cosine:omega=1e7", "at most 1e+06"),
])
def test_parameters_float64_cannot_represent_are_refused_up_front(tmp_path, spec, message):
    out = vrbench("run", "-e", "score_function,reparameterization", "-p", spec, "-n", "1",
                  "-r", "1000", "-o", str(tmp_path / "out"))
    assert out.returncode == 2
    assert message in " ".join(out.stderr.split())
    assert not (tmp_path / "out").exists()


@dataclass(frozen=True)
class _Overflowing(BernoulliToy):
    """Bernoulli toy whose f is so large that the estimates' squares overflow."""

    def f(self, samples):
        return 1e200 * super().f(samples)

    def value(self, theta):
        return 1e200 * super().value(theta)

    def exact_grad(self, theta):
        return 1e200 * super().exact_grad(theta)


@dataclass(frozen=True)
class _Ignorant(Estimator):
    """Returns zeros, claiming to be unbiased: what float64 cancellation looks like."""

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        return torch.zeros(replicates, problem.dim, dtype=torch.float64)


@dataclass(frozen=True)
class _SlowExact(BernoulliToy):
    """Bernoulli toy whose exact gradient takes a minute."""

    def exact_grad(self, theta):
        time.sleep(60)
        return super().exact_grad(theta)


@dataclass(frozen=True)
class _SlowChunks(Estimator):
    """Takes 0.3 s per call; with a small memory budget a cell makes many calls."""

    unbiased = False

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        time.sleep(0.3)
        return torch.zeros(replicates, problem.dim, dtype=torch.float64)


@pytest.fixture
def registered(monkeypatch):
    def register(registry, name, cls):
        cls.name = name
        monkeypatch.setitem(registry.registry._entries, name, Entry(name, cls, "test"))
    register(problems, "overflowing", _Overflowing)
    register(problems, "slow_exact", _SlowExact)
    register(estimators, "ignorant", _Ignorant)
    register(estimators, "slow_chunks", _SlowChunks)


def test_non_finite_metrics_and_cancellation_are_errors_not_numbers(tmp_path, registered):
    config = small(tmp_path, "numerics", estimators=[Spec("score_function"), Spec("ignorant")],
                   problems=[Spec("overflowing"), Spec("bernoulli_toy")], n_samples=[2])
    outcome = run_sweep(config, in_process=True)  # the components live in this process
    rows = outcome.frame.set_index(["problem", "estimator"])
    overflow = rows.loc[("overflowing", "score_function")]
    assert overflow["status"] == "error"
    assert "non-finite metrics" in overflow["error"] and "variance=inf" in overflow["error"]
    ignorant = rows.loc[("bernoulli_toy", "ignorant")]
    assert ignorant["status"] == "error" and "catastrophic cancellation" in ignorant["error"]
    assert rows.loc[("bernoulli_toy", "score_function"), "status"] == "ok"
    assert outcome.exit_code == 1
    from vrbench.reports.build import build_report

    build_report([tmp_path / "numerics"], tmp_path / "report", formats=["png"])


# 5. Limits that hold -------------------------------------------------------------------------

def test_a_huge_horizon_is_refused_up_front_with_its_limit(tmp_path):
    config = tmp_path / "huge.toml"
    config.write_text(f'output = "{tmp_path / "out"}"\ncell_timeout = 10\n'
                      'problems = [{ name = "frozenlake", horizon = 1000000000 }]\n')
    started = time.time()
    out = vrbench("run", "--config", str(config))
    assert out.returncode == 2 and time.time() - started < 60
    message = " ".join(out.stderr.split())
    assert str(config) in message and "horizon=1000000000 must lie in 1..10000" in message


def test_the_time_limit_covers_the_exact_solution(tmp_path, registered):
    config = small(tmp_path, "slow", estimators=[Spec("score_function")],
                   problems=[Spec("slow_exact")], n_samples=[2], cell_timeout=1.0)
    started = time.time()
    outcome = run_sweep(config, in_process=True)  # the components live in this process
    assert time.time() - started < 10
    assert outcome.frame["error"].iloc[0] == "CellTimeout: cell exceeded the time limit of 1 s"


def test_the_time_limit_holds_where_no_signal_can_interrupt(registered):
    """Off the main thread (a Dask worker's thread) the limit is checked between chunks."""
    cell = Cell(Spec("bernoulli_toy"), Spec("slow_chunks"), 2, 10**6, 0, max_memory_mb=16)
    assert threading.current_thread() is threading.main_thread()
    rows = []
    started = time.time()
    worker = threading.Thread(target=lambda: rows.append(run_cell(cell, timeout=1.0)))
    worker.start()
    worker.join(timeout=60)
    assert rows[0]["status"] == "error" and "time limit of 1 s" in rows[0]["error"]
    assert time.time() - started < 5


# 6. Exact types, errors that name the file, entry and key ------------------------------------

@pytest.mark.parametrize(("entry", "message"), [
    ('problems = [{ name = "frozenlake", horizon = 2.5 }]',
     "key 'problems', entry 1 ({'name': 'frozenlake', 'horizon': 2.5}): frozenlake: "
     "horizon=2.5 must be an integer"),
    ('estimators = ["rloo", { name = "score_function_baseline", fit_samples = 100.9 }]',
     "key 'estimators', entry 2 ({'name': 'score_function_baseline', 'fit_samples': 100.9}): "
     "score_function_baseline: fit_samples=100.9 must be an integer"),
    ('problems = [{ name = "frozenlake", gamma = true }]',
     "frozenlake: gamma=True must be a finite number"),
    ('problems = ["frozenlake:slippery=2"]', "slippery='2' must be a boolean (true or false)"),
])
def test_parameters_of_the_wrong_type_are_refused_naming_file_entry_and_key(tmp_path, entry,
                                                                            message):
    path = tmp_path / "typed.toml"
    path.write_text(entry + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(str(path)) and message in str(info.value)


def test_integral_floats_are_integers_and_nothing_is_rounded():
    assert problems.make("frozenlake", {"horizon": 20.0}).horizon == 20
    with pytest.raises(ParameterError, match="must be a finite number"):
        problems.make("gaussian_quadratic", {"mu": float("nan")})


def test_repeated_options_accumulate(tmp_path, cli):
    out = cli("run", "-e", "score_function", "-e", "rloo", "-p", "bernoulli_toy", "-p",
                  "bandit_gaussian_10", "-n", "2", "-r", "200", "-j", "1", "-o",
                  str(tmp_path))
    assert out.returncode == 0, out.stderr
    frame, _ = read_results(tmp_path)
    assert set(frame["estimator"]) == {"score_function", "rloo"}
    assert set(frame["problem"]) == {"bernoulli_toy", "bandit_gaussian_10"}


def test_a_bad_option_value_is_named_by_its_option(tmp_path, cli):
    out = cli("run", "-p", "frozenlake:horizon=2.5", "-o", str(tmp_path / "out"))
    assert out.returncode == 2
    assert "option -p/--problems, entry 1" in out.stderr
    out = cli("run", "-r", "1", "-o", str(tmp_path / "out"))
    assert out.returncode == 2 and "option -r/--replicates = 1: expected an integer from 2 " \
        "to 1,000,000,000" in out.stderr


# 7. Errors up front --------------------------------------------------------------------------

def test_an_unwritable_output_is_refused_before_any_work(tmp_path, cli):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    started = time.time()
    out = cli("run", "-e", "score_function", "-p", "frozenlake", "-o", str(blocker / "out"))
    assert out.returncode == 2 and time.time() - started < 30
    assert f"cannot write to the output directory {blocker / 'out'}" in out.stderr


def test_an_unreachable_scheduler_is_one_line_within_seconds(tmp_path, cli):
    pytest.importorskip("dask.distributed")
    started = time.time()
    out = cli("run", "-e", "score_function", "-p", "bernoulli_toy", "-o",
                  str(tmp_path / "out"), "--scheduler", f"tcp://127.0.0.1:{_scheduler_port()}")
    assert out.returncode == 2 and time.time() - started < 30
    assert out.stderr.startswith("error: cannot reach the Dask scheduler at 'tcp://127.0.0.1:")


def test_nothing_to_run_says_why(tmp_path, cli):
    out = cli("run", "-e", "rloo", "-p", "bernoulli_toy", "-n", "1", "-o",
                  str(tmp_path / "out"))
    assert out.returncode == 2
    assert "nothing to run" in out.stderr and "rloo needs n_samples >= 2, got 1" in out.stderr
    assert not (tmp_path / "out").exists()


def test_report_validates_its_input_and_writes_nothing_when_there_is_nothing(tmp_path, cli):
    output = tmp_path / "table"
    run_sweep(small(tmp_path, "table"))
    frame = pd.read_parquet(output / "results.parquet").drop(columns=["status"])
    broken = tmp_path / "broken.parquet"
    frame.to_parquet(broken)
    with pytest.raises(ResultsError, match="has no 'status' column"):
        read_results(broken)
    out = cli("report", str(broken), "-o", str(tmp_path / "r1"))
    assert out.returncode == 2 and "has no 'status' column" in out.stderr
    assert not (tmp_path / "r1").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    out = cli("report", str(empty), "-o", str(tmp_path / "r2"))
    assert out.returncode == 2 and f"no results at {empty}" in out.stderr
    assert not (tmp_path / "r2").exists()


def test_tables_from_a_newer_vrbench_are_refused_with_the_version(tmp_path):
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    run_sweep(small(tmp_path, "table"))
    table = pq.read_table(tmp_path / "table" / "results.parquet")
    meta = json.loads(table.schema.metadata[b"vrbench"])
    meta.update(schema_version=99, vrbench_version="9.0")
    newer = table.replace_schema_metadata({b"vrbench": json.dumps(meta).encode()})
    pq.write_table(newer, tmp_path / "newer.parquet")
    with pytest.raises(ResultsError, match=r"written by vrbench 9\.0 with table layout 99"):
        read_results(tmp_path / "newer.parquet")
    old = table.replace_schema_metadata({b"vrbench": b'{"vrbench_version": "0.1.0"}'})
    pq.write_table(pa.Table.from_pandas(old.to_pandas().drop(columns=["device"])),
                   tmp_path / "old.parquet")
    frame, _ = read_results(tmp_path / "old.parquet")
    assert "device" in frame and frame["device"].isna().all()


# 8. One sweep per output directory; Dask forgets stored cells --------------------------------

def test_a_second_sweep_on_the_same_output_is_refused(tmp_path, cli):
    output = tmp_path / "shared"
    first = start("run", "--config", str(sweep_file(tmp_path, "shared", jobs=1)))
    wait_for_parts(output, 1, first)
    second = cli("run", "--config", str(tmp_path / "shared.toml"))
    assert second.returncode == 2
    assert f"another vrbench sweep (pid {first.pid}" in second.stderr
    assert "is writing to" in second.stderr
    first.kill()
    first.wait()
    assert lock_state(output)["active"] is False


def test_dask_releases_each_cell_once_it_is_stored(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    stored: list[str] = []
    held: list[list[str]] = []
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        def on_row(row):
            time.sleep(0.3)  # let the releases of the earlier cells reach the scheduler
            held.append([key for key in stored if f"cell-{key}" in cluster.scheduler.tasks])
            stored.append(row["cell_id"])

        outcome = run_sweep(small(tmp_path, "released"), scheduler=cluster.scheduler_address,
                            on_row=on_row)
    assert outcome.complete and len(stored) == 8
    assert held == [[]] * 8, "the cluster still held cells that were already stored"


# 9. A component that kills, hangs or stops its process costs only its own cells -------------

FAULTY = {"f_exit": "Exits", "f_segfault": "Segfaults", "f_hang": "HangsBlockingSignals",
          "f_stop_once": "StopsOnce"}
"""The estimators of tests/fault_plugins.py, by the names their entry points give them."""


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """A folder that makes tests/fault_plugins.py an installed plugin package (a dist-info
    with entry points), for any process that has it and tests/ on its path."""
    root = tmp_path_factory.mktemp("fault_plugins")
    info = root / "vrbench_fault_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: vrbench-fault-plugins\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text("[vrbench.estimators]\n" + "".join(
        f"{name} = fault_plugins:{cls}\n" for name, cls in FAULTY.items()))
    return root


@pytest.fixture
def faulty(monkeypatch, tmp_path, plugin_path):
    """The faulty estimators registered here (for planning and for reference cells) and in
    every process started from here (entry points); StopsOnce's markers in a fresh folder."""
    import fault_plugins

    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setenv("VRBENCH_FAULT_MARKERS", str(markers))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_path), str(ROOT / "tests"),
                                                      str(ROOT)]))
    monkeypatch.syspath_prepend(str(plugin_path))
    for name, cls in FAULTY.items():
        monkeypatch.setitem(estimators.registry._entries, name,
                            Entry(name, getattr(fault_plugins, cls), "test"))
        monkeypatch.setattr(getattr(fault_plugins, cls), "name", name)
    return markers


def reference_rows(markers: Path, cells: list[Cell]) -> pd.DataFrame:
    """The rows of ``cells`` computed here, one by one, without faults (StopsOnce's markers
    set, so that it does not stop)."""
    for cell in cells:
        (markers / f"{cell.problem.name}-{cell.n_samples}").touch()
    return to_frame([run_cell(cell) for cell in cells])


def assert_rows_equal(frame: pd.DataFrame, reference: pd.DataFrame) -> None:
    key = ["problem", "estimator", "n_samples", "seed"]
    ours = frame.merge(reference[key], on=key)[NUMBERS].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(ours, reference[NUMBERS].sort_values(key)
                                  .reset_index(drop=True))


def test_a_component_that_kills_hangs_or_stops_its_worker_costs_only_its_cells(tmp_path,
                                                                                 faulty):
    output = tmp_path / "faulty"
    started = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "vrbench.cli", "run", "-e",
         "f_exit,f_segfault,f_hang,f_stop_once,score_function,rloo",
         "-p", "bernoulli_toy,bandit_gaussian_10", "-n", "2", "-r", "300", "-j", "2",
         "--cell-timeout", "3", "-o", str(output)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    elapsed = time.time() - started
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.splitlines()[-1] == ("COMPLETE with failures: 12 cells, 6 ok, 6 failed, "
                                           "0 missing.")
    assert "Traceback" not in out.stderr
    frame, _ = read_results(output)
    errors = frame.set_index(["estimator", "problem"])["error"]
    for problem in ("bernoulli_toy", "bandit_gaussian_10"):
        assert errors["f_exit", problem] == (
            "WorkerDied: its worker process died (exit code 3) while computing this cell, also "
            "when it ran alone")
        assert "died (signal 11, SIGSEGV)" in errors["f_segfault", problem]
        assert errors["f_hang", problem].startswith(
            "CellTimeout: cell exceeded the time limit of 3 s")
    healthy = frame[frame["estimator"].isin(["score_function", "rloo", "f_stop_once"])]
    assert (healthy["status"] == "ok").all()
    cells = [Cell(Spec(p), Spec(e), 2, 300, 0) for e in ("score_function", "rloo", "f_stop_once")
             for p in ("bernoulli_toy", "bandit_gaussian_10")]
    assert_rows_equal(healthy, reference_rows(faulty, cells))
    # Cells run again alone one at a time, and a hung worker goes at 3 + 2 s: a bound far
    # from a sweep that waits for a hung worker (for ever) but loose on a loaded machine.
    assert elapsed < 150, elapsed


def test_on_dask_a_hung_stopped_or_crashing_task_costs_only_its_cell(tmp_path, faulty):
    distributed = pytest.importorskip("dask.distributed")
    import dask

    hanging = small(tmp_path, "dask_hang", estimators=[
        Spec("f_hang"), Spec("f_stop_once"), Spec("score_function"), Spec("rloo")],
        problems=[Spec("bernoulli_toy")], n_samples=[2], cell_timeout=3.0)
    crashing = dataclasses.replace(hanging, output=str(tmp_path / "dask_crash"), estimators=[
        Spec("f_segfault"), Spec("score_function")])
    # Two deaths make a cell the cluster's loss (three by default: slower, the same logic).
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster:
        started = time.time()
        hung = run_sweep(hanging, scheduler=cluster.scheduler_address)
        crashed = run_sweep(crashing, scheduler=cluster.scheduler_address)
        elapsed = time.time() - started
    rows = hung.frame.set_index("estimator")
    assert rows.loc["f_hang", "error"] == ("CellTimeout: cell exceeded the time limit of 3 s "
                                           "(its Dask task was cancelled and its worker "
                                           "restarted)")
    assert hung.counts == {"ok": 3, "error": 1, "missing": 0, "skipped": 0}
    rows = crashed.frame.set_index("estimator")
    assert rows.loc["f_segfault", "error"].startswith("WorkerDied: ")
    assert crashed.counts == {"ok": 1, "error": 1, "missing": 0, "skipped": 0}
    cells = [Cell(Spec("bernoulli_toy"), Spec(e), 2, 300, 0)
             for e in ("score_function", "rloo", "f_stop_once")]
    ok = pd.concat([hung.frame, crashed.frame])
    assert_rows_equal(ok[ok["status"] == "ok"].drop_duplicates("cell_id"),
                      reference_rows(faulty, cells))
    assert elapsed < 240, elapsed


# 10. The store accepts only cells that fit the table -----------------------------------------

def _drop_metrics(frame):
    return frame.drop(columns=["variance", "bias_norm", "mse"])


def _text_variance(frame):
    return frame.assign(variance="abc")


def _nan_variance(frame):
    return frame.assign(variance=float("nan"))


def _another_n(frame):
    return frame.assign(n_samples=99)


@pytest.mark.parametrize(("damage", "message"), [
    (_drop_metrics, "has no 'bias_norm', 'variance', 'mse' column"),
    (_text_variance, "has 'variance' = 'abc' is not of type float64"),
    (_nan_variance, "has status 'ok' without finite 'variance'"),
    (_another_n, "holds n_samples = 99, but its cell has [24]"),
], ids=lambda value: getattr(value, "__name__", "")[1:] if callable(value) else "")
def test_a_stored_cell_that_parses_but_does_not_fit_is_moved_aside(tmp_path, cli, damage,
                                                                   message):
    config = small(tmp_path, "schema")
    first = run_sweep(config)
    part = sorted((tmp_path / "schema" / PARTS_DIR).glob("*.parquet"))[0]
    damage(pd.read_parquet(part)).to_parquet(part, index=False)
    (tmp_path / "schema" / "results.parquet").unlink()  # read as a sweep killed before it
    with pytest.warns(StoreWarning, match=message):
        partial, _ = read_results(tmp_path / "schema")
    assert (partial["status"] == "missing").sum() == 1
    with pytest.warns(StoreWarning) as caught:
        second = run_sweep(config)
    warned = [str(w.message) for w in caught]
    assert any(str(part) in w and re.search(message, w) and "moved it to" in w
               for w in warned), warned
    assert (second.ran, second.reused) == (1, 7)
    pd.testing.assert_frame_equal(first.frame[NUMBERS], second.frame[NUMBERS])
    assert [p.name.split("-")[0] for p in (part.parent / "unreadable").iterdir()] == [part.stem]
    report = cli("report", str(tmp_path / "schema"), "-o", str(tmp_path / "report"),
                 "--figures", "tables")
    assert report.returncode == 0, report.stderr


# 11. Numbers that would break a sweep or run for days are refused up front -------------------

OMEGAS = "|".join(str(0.5 + i / 100) for i in range(1000))
MUS = "|".join(str(i / 10) for i in range(11))


@pytest.mark.parametrize(("args", "message"), [
    (["--cell-timeout", "inf"], "option --cell-timeout = inf: expected a number of seconds "
                                "from 0.01 to 604800 (a week)"),
    (["--cell-timeout", "1e300"], "option --cell-timeout = 1e+300: expected a number"),
    (["--cell-timeout", "1e-300"], "option --cell-timeout = 1e-300: expected a number"),
    (["-r", "18446744073709551616"], "option -r/--replicates = 18446744073709551616: expected "
                                     "an integer from 2 to 1,000,000,000"),
    (["-r", "1000000000000"], "option -r/--replicates = 1000000000000"),
    (["--seed", "18446744073709551616"], "option --seed = [18446744073709551616]: expected a "
                                         "non-empty list of distinct integers from -2**63"),
    (["-n", "1000000"], "option -n/--n-samples = [1000000]: expected a non-empty list of "
                        "distinct integers from 1 to 100,000"),
    (["-n", "2,2"], "option -n/--n-samples = [2, 2] (a value is listed twice)"),
    (["-n", "100000", "-r", "1000000"], "option -n/--n-samples and option -r/--replicates: "
                                        "n = 100,000 samples × R = 1,000,000 replicates"),
    (["-p", "frozenlake", "-n", "100000", "-r", "10"], "n_samples = 100000: one estimate of "
                                                       "frozenlake from 100000 samples needs"),
    (["-j", "100000"], "option -j/--jobs = 100000: expected an integer from 1 to 1024"),
    (["-p", f"gaussian_cosine:omega={OMEGAS}|9"], "omega: a grid of 1,001 values; a grid "
                                                  "takes at most 1,000"),
    (["-p", f"gaussian_cosine:omega={OMEGAS},mu={OMEGAS}"], "gaussian_cosine: its grids make "
                                                            "1,000,000 points"),
    (["-p", f"gaussian_cosine:omega={OMEGAS},mu={MUS}", "-n", "1"],
     "the sweep plans 11,000 cells, more than 10,000: check the grids"),
    (["-e", "score_function,rloo", "-n", ",".join(map(str, range(1, 101))), "--seed",
      ",".join(map(str, range(10000)))], "the sweep has 2,000,000 combinations (1 problems × 2 "
                                         "estimators × 100 n × 10,000 seeds)"),
], ids=lambda value: " ".join(value)[:40] if isinstance(value, list) else "")
def test_bad_numbers_are_refused_before_any_work_naming_the_entry(tmp_path, cli, args,
                                                                    message):
    defaults = {"-e": "score_function", "-p": "bernoulli_toy", "-r": "100"}
    extra = [x for flag, value in defaults.items() if flag not in args for x in (flag, value)]
    started = time.time()
    out = cli("run", *extra, *args, "-o", str(tmp_path / "out"))
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not (tmp_path / "out").exists() and "Traceback" not in out.stderr
    assert time.time() - started < 60


def test_a_large_plan_runs_when_confirmed(tmp_path, monkeypatch, cli):
    from vrbench.bench import config as config_module
    from vrbench.bench import sweep as sweep_module

    monkeypatch.setattr(sweep_module, "CONFIRM_CELLS", 3)
    args = ["run", "-e", "score_function", "-p", "bernoulli_toy:t=0.1|0.2|0.3|0.4", "-n", "2",
            "-r", "100", "-o", str(tmp_path / "out")]
    refused = cli(*args)
    assert refused.returncode == 2 and "plans 4 cells, more than 3" in refused.stderr
    assert config_module.CONFIRM_CELLS == 10_000  # what --help says
    assert cli(*args, "--yes").returncode == 0


@pytest.mark.parametrize(("text", "message"), [
    ("cell_timeout = inf\n", "key 'cell_timeout' = inf: expected a number of seconds"),
    ("seeds = [0, 9223372036854775807]\nreplicates = 10\n", None),
    ("seeds = [-9223372036854775808]\n", None),
    ("replicates = 9223372036854775807\n", "key 'replicates' = 9223372036854775807"),
    ("n_samples = [100000]\nreplicates = 1000000\n", "key 'n_samples' and " + "{path}: key "
                                                      "'replicates': n = 100,000 samples"),
    ('problems = ["bernoulli_toy:t=0.4,t=0.6"]\n', "key 'problems', entry 1 "
                                                   "('bernoulli_toy:t=0.4,t=0.6'): "
                                                   "bernoulli_toy: parameter 't' is given "
                                                   "twice (t=0.4, t=0.6)"),
    ('problems = ["bernoulli_toy", { name = "bernoulli_toy" }]\n',
     "key 'problems', entry 2 ({'name': 'bernoulli_toy'}): bernoulli_toy is already listed, "
     "in entry 1 ('bernoulli_toy')"),
    ('problems = [{ name = "gaussian_cosine", omega = { grid = [1, 1.0] } }]\n',
     "gaussian_cosine:omega=1.0 is already listed, in the same entry"),
    ('estimators = ["", "rloo"]\n', "key 'estimators', entry 1 (''): names no estimator"),
    ('problems = [{ name = "frozenlake", horizon = 18446744073709551616 }]\n',
     "frozenlake: horizon=18446744073709551616 must be an integer from -2**63 to 2**63 - 1"),
    ('problems = [{ name = "bernoulli_ising", seed = 9223372036854775807 }]\n', None),
])
def test_config_numbers_and_entries_are_refused_naming_the_key(tmp_path, text, message):
    path = tmp_path / "numbers.toml"
    path.write_text(text)
    if message is None:
        load_config(path)
        return
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert message.replace("{path}", str(path)) in str(info.value)
    assert str(info.value).startswith(str(path))


# 12. Smaller faults: the message names the thing, the exit code says what happened ----------

@pytest.mark.parametrize(("args", "message"), [
    (["-p", "bernoulli_toy,bernoulli_toy"], "option -p/--problems, entry 1 "
                                            "('bernoulli_toy,bernoulli_toy'): bernoulli_toy is "
                                            "already listed, in the same entry"),
    (["-p", "bernoulli_toy:t=0.49", "-p", "bernoulli_toy:t=0.490"],
     "option -p/--problems, entry 2 ('bernoulli_toy:t=0.490'): bernoulli_toy:t=0.49 is "
     "already listed, in entry 1 ('bernoulli_toy:t=0.49')"),
    (["-p", "bernoulli_toy:t=0.4,t=0.6"], "bernoulli_toy: parameter 't' is given twice "
                                          "(t=0.4, t=0.6)"),
    (["-p", ","], "option -p/--problems, entry 1 (','): names no problem"),
    (["-e", ""], "option -e/--estimators, entry 1 (''): names no estimator"),
    (["--scheduler", ""], "--scheduler is empty: give the address of a Dask scheduler"),
    (["--scheduler", "not a url"], "--scheduler 'not a url' is not a Dask scheduler address"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else "")
def test_ambiguous_or_empty_entries_are_refused(tmp_path, cli, args, message):
    defaults = {"-e": "score_function", "-p": "bernoulli_toy"}
    extra = [x for flag, value in defaults.items() if flag not in args for x in (flag, value)]
    out = cli("run", *extra, *args, "-n", "2", "-r", "100", "-o", str(tmp_path / "out"))
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not (tmp_path / "out" / "cells").exists() and "Traceback" not in out.stderr


def test_a_config_path_that_is_not_a_utf8_file_is_refused(tmp_path, cli):
    latin = tmp_path / "latin.toml"
    latin.write_bytes('output = "r\xe9sultats"\n'.encode("latin-1"))
    out = cli("run", "--config", str(latin))
    assert out.returncode == 2
    assert f"{latin}: not UTF-8 text (byte 0xe9 at offset 11)" in out.stderr
    out = cli("run", "--config", str(tmp_path))
    assert out.returncode == 2 and f"{tmp_path}: is a directory" in out.stderr


def test_a_full_disk_is_named_with_its_own_exit_code(tmp_path, cli, monkeypatch):
    import errno

    from vrbench.bench import sweep as sweep_module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    args = ["run", "-e", "score_function", "-p", "bernoulli_toy", "-n", "2,4", "-r", "100",
            "-o", str(tmp_path / "out")]
    with monkeypatch.context() as patch:
        patch.setattr(sweep_module, "write_plan", full)
        out = cli(*args)
    assert out.returncode == 4, out.stderr
    assert ("could not write the plan of the sweep in " f"{tmp_path / 'out'}: No space left "
            "on device; nothing was computed; free the space and run the same command again "
            "to resume") in out.stderr
    with monkeypatch.context() as patch:
        patch.setattr(sweep_module, "write_table", full)
        out = cli(*args)
    assert out.returncode == 4
    assert (f"could not write the table {tmp_path / 'out' / 'results.parquet'}: No space left "
            "on device; the 2 finished cells are stored under") in out.stderr
    out = cli(*args)
    assert out.returncode == 0 and "This run computed 0 cells and reused 2" in out.stdout


def test_report_into_an_unwritable_place_is_a_message(tmp_path, cli, monkeypatch):
    import errno

    run_sweep(small(tmp_path, "table"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    out = cli("report", str(tmp_path / "table"), "-o", str(blocker / "report"))
    assert out.returncode == 2
    assert f"cannot write to the output directory {blocker / 'report'}" in out.stderr

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "ro" / "x.pdf"))

    monkeypatch.setattr("vrbench.reports.build.build_report", read_only)
    out = cli("report", str(tmp_path / "table"), "-o", str(tmp_path / "ro"))
    assert out.returncode == 4 and "Traceback" not in out.stderr
    assert (f"could not write the report to {tmp_path / 'ro'} {tmp_path / 'ro' / 'x.pdf'}: "
            "Read-only file system") in out.stderr


def test_leftover_temporary_files_beside_the_table_are_removed(tmp_path):
    config = small(tmp_path, "leftovers", estimators=[Spec("score_function")],
                   problems=[Spec("bernoulli_toy")], n_samples=[2])
    output = tmp_path / "leftovers"
    output.mkdir()
    leftovers = [output / ".results-abc123.tmp", output / ".plan1x2y.tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"partial")
    run_sweep(config)
    assert not any(leftover.exists() for leftover in leftovers)


@pytest.mark.parametrize("gap", [0.05, 0.3])  # the second within the sweep's end, or after it
def test_two_quick_sigints_still_write_the_table_and_release_the_lock(tmp_path, gap):
    output = tmp_path / "twice"
    process = start("run", "--config", str(sweep_file(tmp_path, "twice")))
    wait_for_parts(output, 2, process)
    process.send_signal(signal.SIGINT)
    time.sleep(gap)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout + stderr
    assert "Traceback" not in stderr and "INCOMPLETE" in stdout.splitlines()[-1]
    assert lock_state(output) == {**lock_state(output), "state": "finished", "active": False}
    _, meta = read_results(output)
    assert not meta.get("partial") and meta["interrupted"] == "SIGINT"
