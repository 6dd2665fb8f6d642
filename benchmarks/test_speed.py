"""Speed of vrbench's batched estimators against the naive loop, the numpy floor and JAX.

Run with ``make bench``; ``python benchmarks/report.py`` then turns the JSON into the tables
of ``benchmarks/README.md``. Every estimator benchmark records ``replicates`` in
``extra_info`` so times convert to estimates per second; the system benchmarks record the
sweep's cell count and a cell's peak memory. Every estimator runs pinned to one core with one
thread (``benchmarks/conftest.py``). Nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks import kernels, workloads
from benchmarks.conftest import ALL_CORES
from benchmarks.pinning import ONE_THREAD
from vrbench import estimators, problems
from vrbench.bench.runner import estimate_in_chunks

N_SAMPLES = 4
PROBLEMS = ("bernoulli_toy", "bandit_gaussian_10", "frozenlake", "sigmoid_belief_vae_digits")
CASES = [(e, p) for p in PROBLEMS for e in ("score_function", "rloo")]
SIZES = {"small": 10_000, "large": 1_000_000}
ROUNDS = {"small": 3, "large": 1}  # one round of 10⁶ estimates is long enough to be stable
WARMUP_ROUNDS = {"small": 1, "large": 0}
NAIVE_REPLICATES = {"bernoulli_toy": 200, "bandit_gaussian_10": 200, "frozenlake": 20,
                    "sigmoid_belief_vae_digits": 50}
FLOOR_CHUNK = {"bernoulli_toy": 1_000_000, "bandit_gaussian_10": 250_000, "frozenlake": 25_000,
               "sigmoid_belief_vae_digits": 2_500}
"""Replicates per numpy call, so that the floor's arrays stay within a few hundred MB."""
ESTIMATOR_FLOOR_CHUNK = {"arms": 100_000, "indecater": 10_000, "vimco": 5_000}
ESTIMATOR_CASES = [case for case in kernels.ESTIMATOR_FLOOR if case[0] in ESTIMATOR_FLOOR_CHUNK]
"""Estimators beyond the score function, each on a problem with a numpy floor (no naive loop:
the tutorial form of these estimators is no shorter than the vectorized one)."""


def _run_vrbench(estimator, problem, theta, replicates):
    generator = torch.Generator().manual_seed(0)
    for _ in estimate_in_chunks(problem, estimator, theta, N_SAMPLES, replicates, generator):
        pass


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("estimator_name", "problem_name"), CASES + ESTIMATOR_CASES)
def test_vrbench(benchmark, estimator_name, problem_name, size):
    estimator, problem = estimators.make(estimator_name), problems.make(problem_name)
    replicates = SIZES[size]
    benchmark.group = f"{problem_name} {estimator_name}"
    benchmark.extra_info.update(replicates=replicates, kind="vrbench")
    benchmark.pedantic(_run_vrbench, args=(estimator, problem, problem.initial_theta(),
                                           replicates),
                       rounds=ROUNDS[size], warmup_rounds=WARMUP_ROUNDS[size])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("estimator_name", "problem_name"), CASES)
def test_numpy_floor(benchmark, estimator_name, problem_name, size):
    replicates = SIZES[size]
    rng = np.random.default_rng(0)
    extra = {"table": kernels.frozenlake_table()} if problem_name == "frozenlake" else {}
    if problem_name == "sigmoid_belief_vae_digits":
        extra = {"model": kernels.vae_model()}
    benchmark.group = f"{problem_name} {estimator_name}"
    benchmark.extra_info.update(replicates=replicates, kind="numpy floor")
    benchmark.pedantic(kernels.streamed,
                       args=(kernels.FLOOR[problem_name], estimator_name, replicates, N_SAMPLES,
                             rng),
                       kwargs={"chunk": FLOOR_CHUNK[problem_name], **extra},
                       rounds=ROUNDS[size], warmup_rounds=WARMUP_ROUNDS[size])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("estimator_name", "problem_name"), ESTIMATOR_CASES)
def test_estimator_numpy_floor(benchmark, estimator_name, problem_name, size):
    replicates = SIZES[size]
    benchmark.group = f"{problem_name} {estimator_name}"
    benchmark.extra_info.update(replicates=replicates, kind="numpy floor")
    benchmark.pedantic(kernels.streamed,
                       args=(kernels.ESTIMATOR_FLOOR[estimator_name, problem_name],
                             estimator_name, replicates, N_SAMPLES, np.random.default_rng(0)),
                       kwargs={"chunk": ESTIMATOR_FLOOR_CHUNK[estimator_name]},
                       rounds=ROUNDS[size], warmup_rounds=WARMUP_ROUNDS[size])


@pytest.mark.parametrize(("estimator_name", "problem_name"), CASES)
def test_naive_loop(benchmark, estimator_name, problem_name):
    replicates = NAIVE_REPLICATES[problem_name]
    benchmark.group = f"{problem_name} {estimator_name}"
    benchmark.extra_info.update(replicates=replicates, kind="naive loop")
    benchmark.pedantic(kernels.naive, args=(problem_name, estimator_name, replicates,
                                            N_SAMPLES), rounds=1, warmup_rounds=0)


def test_default_sweep(benchmark, tmp_path):
    """Wall-clock of ``make sweep``: the default configuration, from nothing stored."""
    command = [sys.executable, "-m", "vrbench.cli", "run", "--config", "configs/default.toml",
               "--output", str(tmp_path / "sweep")]
    # The sweep runs as `make sweep` would: on every core, with its own thread counts.
    environment = {k: v for k, v in os.environ.items() if k not in ONE_THREAD}
    benchmark.group = "system"
    benchmark.pedantic(subprocess.run, args=(command,),
                       kwargs={"check": True, "capture_output": True, "env": environment,
                               "preexec_fn": lambda: os.sched_setaffinity(0, ALL_CORES)},
                       rounds=1)
    record = json.loads((tmp_path / "sweep" / "provenance.json").read_text())
    benchmark.extra_info.update(kind="default sweep", cells=record["cells"])


# VmHWM, the peak resident size of this process's own memory: getrusage's ru_maxrss would
# carry over the size of the (large) pytest process that started it.
PEAK_MEMORY_CELL = """
import json, sys
from vrbench.bench.cells import Cell
from vrbench.bench.runner import run_cell
from vrbench.components import Spec

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

before = peak_mb()
row = run_cell(Cell(Spec(sys.argv[1]), Spec("score_function"), 4, 10_000_000, 0))
assert row["status"] == "ok", row["error"]
print(json.dumps({"before_mb": before, "peak_mb": peak_mb()}))
"""


@pytest.mark.parametrize("problem_name", ["bernoulli_toy", "bandit_gaussian_10"])
def test_peak_memory_of_a_ten_million_replicate_cell(benchmark, problem_name):
    """Peak RSS of a process that runs one cell of R = 10⁷ estimates (n = 4), and its RSS
    after importing vrbench and torch but before the cell."""
    command = [sys.executable, "-c", PEAK_MEMORY_CELL, problem_name]
    benchmark.group = "system"
    result = benchmark.pedantic(subprocess.run, args=(command,),
                                kwargs={"check": True, "capture_output": True, "text": True},
                                rounds=1)
    benchmark.extra_info.update(kind="peak memory", problem=problem_name,
                                replicates=10_000_000, **json.loads(result.stdout))


CONTINUOUS_CASES = sorted(kernels.CONTINUOUS_FLOOR)
CONTINUOUS_CHUNK = 100_000
"""Replicates per numpy call of the continuous floors (mvd on 10 dimensions holds 4·D² numbers
per draw, the LQR rollouts 2·H·6)."""


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("estimator_name", "problem_name"), CONTINUOUS_CASES)
def test_vrbench_continuous(benchmark, estimator_name, problem_name, size):
    estimator, problem = estimators.make(estimator_name), problems.make(problem_name)
    theta = problem.initial_theta()
    state = estimator.fit(problem, theta, torch.Generator().manual_seed(1))
    replicates = SIZES[size]

    def run():
        generator = torch.Generator().manual_seed(0)
        for _ in estimate_in_chunks(problem, estimator, theta, N_SAMPLES, replicates, generator,
                                    state):
            pass

    benchmark.group = f"{problem_name} {estimator_name}"
    benchmark.extra_info.update(replicates=replicates, kind="vrbench")
    benchmark.pedantic(run, rounds=ROUNDS[size], warmup_rounds=WARMUP_ROUNDS[size])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("estimator_name", "problem_name"), CONTINUOUS_CASES)
def test_numpy_floor_continuous(benchmark, estimator_name, problem_name, size):
    replicates = SIZES[size]
    extra = {}
    if estimator_name == "lax":  # the floor evaluates the surrogate vrbench fitted
        problem = problems.make(problem_name)
        fitted = estimators.make("lax").fit(problem, problem.initial_theta(),
                                            torch.Generator().manual_seed(1))
        extra = {"surrogate": [t.numpy() for t in fitted]}
    kernel = kernels.CONTINUOUS_FLOOR[(estimator_name, problem_name)]

    def run():
        rng = np.random.default_rng(0)
        for done in range(0, replicates, CONTINUOUS_CHUNK):
            kernel(min(CONTINUOUS_CHUNK, replicates - done), N_SAMPLES, rng, **extra)

    benchmark.group = f"{problem_name} {estimator_name}"
    benchmark.extra_info.update(replicates=replicates, kind="numpy floor")
    benchmark.pedantic(run, rounds=ROUNDS[size], warmup_rounds=WARMUP_ROUNDS[size])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("workload", workloads.WORKLOADS, ids=lambda w: f"{w.estimator}-"
                         f"{w.problem}-n{w.n}")
@pytest.mark.parametrize("contender", sorted(workloads.CONTENDERS))
def test_side_by_side(benchmark, contender, workload, size):
    """The side-by-side workloads: vrbench, the numpy floor and the jitted JAX kernel (skipped
    without JAX), each warmed up, the latter two at their best batch size per call."""
    replicates = SIZES[size]
    try:
        run, batch = workloads.CONTENDERS[contender](workload, replicates)
    except ImportError:
        pytest.skip("JAX is not installed (pip install 'vrbench[jax]')")
    benchmark.group = f"side-by-side {workload.problem} {workload.estimator} {workload.n}"
    benchmark.extra_info.update(replicates=replicates, kind=contender, batch=batch,
                                n=workload.n)
    benchmark.pedantic(run, rounds=ROUNDS[size], warmup_rounds=1)


SEQUENCE_CHUNK = 25_000
"""Replicates per numpy call of the sequence floors (R·n·P·L tokens per call)."""


def _sequence_components(estimator_spec: str, problem_spec: str):
    from vrbench.components import parse_specs

    e, p = parse_specs(estimator_spec)[0], parse_specs(problem_spec)[0]
    return estimators.make(e.name, e.params), problems.make(p.name, p.params)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("estimator_spec", "problem_spec"), kernels.SEQUENCE_FLOOR)
def test_vrbench_sequence(benchmark, estimator_spec, problem_spec, size):
    estimator, problem = _sequence_components(estimator_spec, problem_spec)
    replicates = SIZES[size]
    benchmark.group = f"{problem_spec} {estimator_spec}"
    benchmark.extra_info.update(replicates=replicates, kind="vrbench")
    benchmark.pedantic(_run_vrbench, args=(estimator, problem, problem.initial_theta(),
                                           replicates),
                       rounds=ROUNDS[size], warmup_rounds=WARMUP_ROUNDS[size])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("estimator_spec", "problem_spec"), kernels.SEQUENCE_FLOOR)
def test_numpy_floor_sequence(benchmark, estimator_spec, problem_spec, size):
    replicates = SIZES[size]
    kernels.sequence_model(problem_spec)  # the tables, read once outside the timing
    benchmark.group = f"{problem_spec} {estimator_spec}"
    benchmark.extra_info.update(replicates=replicates, kind="numpy floor")
    benchmark.pedantic(kernels.streamed,
                       args=(kernels.floor_sequence, estimator_spec, replicates, N_SAMPLES,
                             np.random.default_rng(0)),
                       kwargs={"chunk": SEQUENCE_CHUNK, "spec": problem_spec},
                       rounds=ROUNDS[size], warmup_rounds=WARMUP_ROUNDS[size])
