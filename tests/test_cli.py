"""The command line: listing, running a small grid, the results schema, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pyarrow.parquet as pq
import pytest

from vrbench import estimators, problems
from vrbench.bench import COLUMNS, read_results
from vrbench.cli import main
from vrbench.problems import Capability
from vrbench.registry import Entry

SMALL = ["-n", "1,2", "-r", "200", "-j", "1"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vrbench.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_list_shows_every_component():
    out = run_cli("list")
    assert out.returncode == 0, out.stderr
    missing = [name for name in [*estimators.registry.names(), *problems.registry.names()]
               if name not in out.stdout]
    assert not missing
    assert "builtin" in out.stdout


def test_list_one_kind():
    out = run_cli("list", "problems")
    assert "frozenlake" in out.stdout and "rloo" not in out.stdout


def test_list_explains_every_capability():
    out = run_cli("list", "capabilities")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for capability in Capability:
        assert capability.value in text
    assert "from_uniforms" in text and "antithetic" in text and "relax, harden" in text


def test_run_writes_results_with_the_schema(tmp_path):
    code = main(
        [
            "run",
            "-e",
            "score_function,rloo,reparameterization",
            "-p",
            "bernoulli_toy,gaussian_quadratic",
            *SMALL,
            "-o",
            str(tmp_path),
        ]
    )
    assert code == 0
    frame, meta = read_results(tmp_path)
    assert list(frame.columns) == list(COLUMNS)
    raw = pq.read_table(tmp_path / "results.parquet").to_pandas()
    for column in [
        "problem",
        "estimator",
        "n_samples",
        "replicates",
        "seed",
        "dim",
        "true_grad_norm",
        "bias_norm",
        "bias_pvalue",
        "variance",
        "variance_ci_low",
        "variance_ci_high",
        "mse",
        "time_per_estimate_s",
        "status",
        "error",
    ]:
        assert column in raw.columns
    ok = frame[frame.status == "ok"]
    # score_function: 2 problems × 2 n; rloo: n=2 only; reparameterization: quadratic only.
    assert len(ok) == 4 + 2 + 2
    skipped = frame[frame.status == "skipped"].set_index(["estimator", "problem", "n_samples"])
    assert "needs n_samples >= 2" in skipped.loc[("rloo", "bernoulli_toy", 1), "error"]
    assert (
        "requires a problem that is differentiable, reparameterizable"
        in skipped.loc[("reparameterization", "bernoulli_toy", 1), "error"]
    )
    assert (ok.variance_ci_low <= ok.variance).all() and (ok.variance <= ok.variance_ci_high).all()
    assert (ok.time_per_estimate_s > 0).all()
    assert meta["config"]["replicates"] == 200 and meta["vrbench_version"]


def test_same_seed_same_numbers(tmp_path):
    args = ["run", "-e", "score_function_baseline", "-p", "frozenlake:horizon=20", *SMALL]
    main([*args, "-o", str(tmp_path / "a")])
    main([*args, "-o", str(tmp_path / "b")])
    main([*args, "--seed", "1", "-o", str(tmp_path / "c")])
    a, b, c = (read_results(tmp_path / d)[0] for d in "abc")
    numbers = ["bias_norm", "variance", "mse", "variance_ci_low"]
    pd.testing.assert_frame_equal(a[numbers], b[numbers])
    assert not a[numbers].equals(c[numbers])
    assert a.problem.iloc[0] == "frozenlake:horizon=20"
    assert json.loads(a.problem_params.iloc[0]) == {"horizon": 20}  # as the problem holds it


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-e", "score_fucntion"],
            "unknown estimator 'score_fucntion'. Did you mean 'score_function'?",
        ),
        (["-p", "frozen_lake"], "Did you mean 'frozenlake'?"),
        (["-p", "bernoulli_toy:t=7"], "t=7.0 must lie in [0, 1]"),
        (["-e", "rloo:bogus=1"], "rloo: unknown parameter 'bogus'"),
    ],
)
def test_bad_input_is_a_clear_error_with_exit_code_2(args, message, tmp_path):
    out = run_cli("run", *args, "-o", str(tmp_path))
    assert out.returncode == 2
    assert message in " ".join(out.stderr.split())
    assert "Valid" in out.stderr or "must" in out.stderr or "valid parameters" in out.stderr
    assert not (tmp_path / "results.parquet").exists()


def test_bad_numbers_are_usage_errors():
    out = run_cli("run", "-n", "0,4")
    assert out.returncode == 2 and "positive integer" in out.stderr


def test_a_failing_estimator_does_not_take_the_sweep_down(tmp_path, monkeypatch):
    class Exploding(estimators.registry.get("score_function")):
        """Raises on every problem."""

        def estimate(self, *args, **kwargs):
            raise RuntimeError("boom")

    Exploding.name = "exploding"
    monkeypatch.setitem(
        estimators.registry._entries, "exploding", Entry("exploding", Exploding, "test")
    )
    code = main(
        [
            "run",
            "-e",
            "exploding,score_function",
            "-p",
            "bernoulli_toy",
            *SMALL,
            "--in-process",  # the component lives in this process
            "-o",
            str(tmp_path),
        ]
    )
    assert code == 1
    frame, _ = read_results(tmp_path)
    errors = frame[frame.estimator == "exploding"]
    assert (errors.status == "error").all() and errors.error.str.contains("boom").all()
    assert (frame[frame.estimator == "score_function"].status == "ok").all()
