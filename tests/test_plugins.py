"""Plugins: the example package installed by entry points is listed, run and checked."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vrbench.bench import read_results

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugin_example"


def vrbench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vrbench.cli", *args], capture_output=True,
                          text=True, timeout=600, cwd=ROOT)


@pytest.fixture(scope="module")
def example_plugin():
    """Install the example plugin into this environment for the module's tests, then remove."""
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", str(EXAMPLE)],
                   check=True, capture_output=True, timeout=300)
    yield
    subprocess.run([*pip, "uninstall", "-y", "vrbench-plugin-example"], check=True,
                   capture_output=True, timeout=300)


def test_plugin_is_listed_with_its_package(example_plugin):
    out = vrbench("list")
    assert out.returncode == 0, out.stderr
    for line_start in ("median_baseline", "poisson_capped"):
        line = next(line for line in out.stdout.splitlines() if line_start in line)
        assert "plugin (vrbench-plugin-example)" in line


def test_plugin_runs_against_built_ins(example_plugin, tmp_path):
    out = vrbench("run", "-e", "median_baseline,score_function", "-p",
                  "poisson_capped,bernoulli_toy", "-n", "2,4", "-r", "500", "-o", str(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    frame, _ = read_results(tmp_path)
    assert len(frame) == 8 and (frame.status == "ok").all()
    assert set(frame.estimator) == {"median_baseline", "score_function"}
    assert set(frame.problem) == {"poisson_capped", "bernoulli_toy"}
    report = vrbench("report", str(tmp_path), "-o", str(tmp_path / "report"), "--format", "png")
    assert report.returncode == 0, report.stderr
    summary = (tmp_path / "report" / "summary.md").read_text()
    assert "REINFORCE, median baseline" in summary and "Poisson, capped at 3" in summary


@pytest.mark.parametrize("target", ["vrbench_plugin_example:MedianBaseline",
                                    "vrbench_plugin_example:PoissonCapped", "median_baseline"])
def test_plugin_passes_the_conformance_checks(example_plugin, target):
    out = vrbench("check", target, "-p", "poisson_capped,bernoulli_toy,frozenlake",
                  "--effort", "0.3")
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 failed" in out.stdout
    assert "was detectable (power 95%)" in out.stdout


def test_check_catches_a_false_unbiasedness_claim():
    out = vrbench("check", "tests.broken_plugin:DoubledScoreFunction", "-p",
                  "gaussian_quadratic,bandit_gaussian_10", "-n", "4", "--effort", "0.3")
    assert out.returncode == 1
    text = " ".join(out.stdout.split())
    assert "FAIL unbiased on gaussian_quadratic at n=4: the mean estimate is" in text
    assert "FAIL unbiased on bandit_gaussian_10 at n=4: the mean estimate is" in text
    assert "standard errors from ∇J" in text


def test_check_takes_parameters_like_run_and_states_its_power():
    out = vrbench("check", "tests.wrong_components:ScaledScoreFunction:scale=1.05", "-p",
                  "gaussian_quadratic", "-n", "4", "--effort", "0.3")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "FAIL unbiased on gaussian_quadratic at n=4" in out.stdout
    out = vrbench("check", "score_function_ema_baseline:decay=0.5", "-p",
                  "bernoulli_toy,bandit_gaussian_10:theta=0.5", "-n", "2", "--effort", "0.3")
    assert out.returncode == 0, out.stdout + out.stderr
    text = " ".join(out.stdout.split())
    assert "PASS unbiased on bernoulli_toy:t=0.3,theta=0.6 at n=2: bias <" in text
    assert "PASS unbiased on bandit_gaussian_10:theta=0.5 at n=2: bias <" in text
    assert ("unbiased: a deviation of 1% of ‖∇J‖ was detectable (power 95%) at every n on 2 of 2"
            in text)


def test_check_help_shows_the_power_options_and_defaults():
    out = vrbench("check", "--help")
    text = " ".join(out.stdout.split())
    for option in ("--n N,N,...", "--bias-tolerance FRACTION", "--effort FACTOR",
                   "--time-budget SECONDS", "--accept-partial"):
        assert option in text
    assert "(default: 0.01)" in text and "600 for an estimator, 600 for a problem" in text


@pytest.mark.parametrize(
    ("target", "message"),
    [("no_such_module:Thing", "cannot import 'no_such_module'"),
     ("vrbench.estimators:Nope", "has no attribute 'Nope'"),
     ("rlo", "Did you mean 'rloo'?"),
     ("rloo:bogus=1", "rloo: unknown parameter 'bogus'"),
     ("=1", "parameters must follow a name"),
     ("vrbench.components:Spec", "neither an Estimator nor a Problem")],
)
def test_check_refuses_bad_targets(target, message):
    out = vrbench("check", target)
    assert out.returncode == 2 and message in " ".join(out.stderr.split())


def _documented(doc: str, name: str) -> type:
    """The class ``name`` defined by a Python block of ``docs/doc``."""
    for block in (ROOT / "docs" / doc).read_text().split("```python\n")[1:]:
        namespace: dict[str, object] = {}
        code = block.split("```")[0]
        if f"class {name}(" in code:
            exec(code, namespace)
            return namespace[name]  # type: ignore[return-value]
    raise AssertionError(f"{doc} defines no {name}")


@pytest.mark.parametrize(
    ("doc", "name", "kind"),
    [("adding-an-estimator.md", "HalfBaseline", "estimator"),
     ("adding-a-problem.md", "ExponentialThreshold", "problem"),
     ("adding-a-problem.md", "ExponentialCapped", "problem"),
     ("adding-a-problem.md", "TwoBits", "problem"),
     ("adding-a-problem.md", "TwoStates", "problem")],
)
def test_documented_examples_pass_the_conformance_checks(doc, name, kind, one_thread):
    from vrbench.testing import check_estimator, check_problem

    component = _documented(doc, name)
    report = (check_estimator(component, problems=["bernoulli_toy", "bandit_gaussian_10"],
                              effort=0.5)
              if kind == "estimator" else check_problem(component, effort=0.5))
    report.raise_if_failed()


@pytest.mark.parametrize(("name", "estimator_names"), [
    ("ExponentialCapped", ["reparameterization", "qmc_reparameterization", "delta_method",
                           "antithetic_score_function"]),
    ("TwoBits", ["disarm", "mvd_bernoulli", "rebar", "gumbel_softmax",
                 "stratified_score_function"]),
    ("TwoStates", ["reinforce_reward_to_go", "value_baseline_exact"]),
])
def test_built_in_estimators_run_on_the_documented_problems(name, estimator_names, one_thread):
    """Each capability's worked example is all those estimators need."""
    from vrbench import estimators
    from vrbench.testing import check_estimator

    problem = _documented("adding-a-problem.md", name)()
    for estimator in estimator_names:
        report = check_estimator(estimators.make(estimator), problems=[problem], n=[2],
                                 time_budget=None, max_estimates=20_000,
                                 chunking_replicates=2_048)
        assert [o.where for o in report.outcomes if o.check == "shape"], estimator
        assert not [f for f in report.failures if not f.startswith("power")], report.failures
