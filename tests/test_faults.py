"""Sweeps under faults: each test reproduces a fault and checks what the user sees (the exit
code, the message, the final table against an uninterrupted run's, no process left behind)."""

from __future__ import annotations

import dataclasses
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
from vrbench.bench.results import ResultsError
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
    workers = [c for c in psutil.Process(process.pid).children()
               if "multiprocessing" in " ".join(c.cmdline())
               and "resource_tracker" not in " ".join(c.cmdline())]
    assert workers, "the sweep runs its cells in worker processes"
    workers[0].kill()
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stdout + stderr
    assert f"COMPLETE: {CELLS} cells, {CELLS} ok, 0 failed, 0 missing." in stdout
    assert_same_table(output, uninterrupted)


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
    first = run_sweep(config)
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
    outcome = run_sweep(config)
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
    outcome = run_sweep(config)
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
    assert out.returncode == 2 and "option -r/--replicates = 1: expected an integer >= 2" \
        in out.stderr


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
