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
    assert "median_baseline" in (tmp_path / "report" / "summary.md").read_text()


@pytest.mark.parametrize("target", ["vrbench_plugin_example:MedianBaseline",
                                    "vrbench_plugin_example:PoissonCapped", "median_baseline"])
def test_plugin_passes_the_conformance_checks(example_plugin, target):
    out = vrbench("check", target, "-p", "poisson_capped,bernoulli_toy,frozenlake")
    assert out.returncode == 0, out.stdout + out.stderr
    assert " 0 failed" in out.stdout


def test_check_catches_a_false_unbiasedness_claim():
    out = vrbench("check", "tests.broken_plugin:DoubledScoreFunction", "-p",
                  "gaussian_quadratic,bandit_gaussian_10")
    assert out.returncode == 1
    text = " ".join(out.stdout.split())
    assert "FAIL unbiased on gaussian_quadratic: mean estimate is" in text
    assert "standard errors from the exact gradient" in text


@pytest.mark.parametrize(
    ("target", "message"),
    [("no_such_module:Thing", "cannot import 'no_such_module'"),
     ("vrbench.estimators:Nope", "has no attribute 'Nope'"),
     ("rlo", "Did you mean 'rloo'?"),
     ("vrbench.components:Spec", "neither an Estimator nor a Problem")],
)
def test_check_refuses_bad_targets(target, message):
    out = vrbench("check", target)
    assert out.returncode == 2 and message in " ".join(out.stderr.split())


@pytest.mark.parametrize(
    ("doc", "name", "kind"),
    [("adding-an-estimator.md", "HalfBaseline", "estimator"),
     ("adding-a-problem.md", "ExponentialThreshold", "problem")],
)
def test_documented_examples_pass_the_conformance_checks(doc, name, kind):
    from vrbench.testing import check_estimator, check_problem

    code = (ROOT / "docs" / doc).read_text().split("```python\n")[1].split("```")[0]
    namespace: dict[str, object] = {}
    exec(code, namespace)
    component = namespace[name]
    report = (check_estimator(component, problems=["bernoulli_toy", "bandit_gaussian_10"])
              if kind == "estimator" else check_problem(component))
    report.raise_if_failed()
