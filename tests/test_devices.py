"""Devices: choosing one, refusing bad ones, and running off the CPU.

No GPU is needed: every built-in is run on torch's meta device by the conformance suites
(``runs off the CPU`` in test_estimators/test_problems); here the meta check itself is shown
to catch the device bugs it exists for. The tests marked ``cuda`` run where a GPU is present.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from vrbench import devices, estimators, problems, testing
from vrbench.bench.cells import Cell
from vrbench.bench.config import ConfigError, parse_config
from vrbench.bench.runner import run_cell
from vrbench.bench.train import TrainSettings, train
from vrbench.cli import main
from vrbench.components import Spec
from vrbench.devices import DeviceError, built_on_cpu, device_cached, resolve_device
from vrbench.estimators.base import Estimator, weighted_score
from vrbench.problems.bernoulli import BernoulliVector
from vrbench.testing import check_estimator, check_problem

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")


def test_cpu_resolves_and_unknown_devices_are_refused_with_the_choices():
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("tpu", "gpu", "cuda:x", "meta"):
        with pytest.raises(DeviceError, match=r"valid devices: cpu, cuda") as info:
            resolve_device(bad)
        assert repr(bad) in str(info.value)


@no_cuda
def test_cuda_without_a_gpu_is_refused_naming_what_is_available():
    with pytest.raises(DeviceError, match=r"'cuda' is not available.*valid devices here: cpu$"):
        resolve_device("cuda")


@no_cuda
def test_cli_refuses_an_unavailable_device_before_any_work(tmp_path, capsys):
    code = main(["run", "-e", "score_function", "-p", "bernoulli_toy", "-n", "1", "-r", "10",
                 "-o", str(tmp_path), "--device", "cuda"])
    assert code == 2
    assert "not available" in capsys.readouterr().err
    assert not (tmp_path / "cells").exists()


def test_config_device_key_is_validated():
    assert parse_config({"device": "cuda:1"}).device == "cuda:1"
    with pytest.raises(ConfigError, match=r"'device' = 'gpu': expected a device name"):
        parse_config({"device": "gpu"})


def test_cpu_cells_keep_their_definition_and_other_devices_change_it():
    cpu = Cell(Spec("bernoulli_toy"), Spec("score_function"), 1, 100, 0)
    gpu = Cell(Spec("bernoulli_toy"), Spec("score_function"), 1, 100, 0, device="cuda")
    assert "device" not in cpu.definition()
    assert gpu.definition()["device"] == "cuda"
    assert cpu.key() != gpu.key()


def test_run_cell_records_the_device():
    row = run_cell(Cell(Spec("bernoulli_toy"), Spec("score_function"), 1, 100, 0))
    assert row["status"] == "ok" and row["device"] == "cpu"


def test_built_on_cpu_draws_constants_on_the_cpu_and_returns_them_on_the_callers_device():
    @built_on_cpu
    def draw() -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(3)
        return torch.randn(4, generator=g), torch.arange(3)

    on_cpu = draw()
    with torch.device("meta"):
        on_meta = draw()
    assert all(t.is_meta for t in on_meta)
    assert torch.equal(on_cpu[0], torch.randn(4, generator=torch.Generator().manual_seed(3)))


def test_device_cached_keeps_one_copy_per_device():
    @dataclass(frozen=True)
    class Holder:
        seed: int = 0

        @device_cached
        def weights(self) -> torch.Tensor:
            return torch.randn(3, generator=torch.Generator().manual_seed(self.seed))

    holder = Holder()
    with torch.device("meta"):
        assert holder.weights.is_meta
    assert holder.weights.device.type == "cpu"
    assert holder.weights is holder.weights
    assert torch.equal(holder.weights, Holder().weights)


# The meta check finds the device bugs that would otherwise only show on a GPU.

@dataclass(frozen=True)
class _NumpyRoundTrip(Estimator):
    """Score function whose weights go through NumPy (so they land on the CPU)."""

    name = "numpy_round_trip_for_test"

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        samples = problem.sample(theta, (replicates, n_samples), generator)
        weights = torch.as_tensor(problem.f(samples).detach().cpu().numpy(), device="cpu")
        return weighted_score(problem, theta, samples, weights)


@dataclass(frozen=True)
class _PrivateGenerator(Estimator):
    """Score function that draws its samples from its own CPU generator."""

    name = "private_generator_for_test"

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        mine = torch.Generator().manual_seed(0)
        samples = problem.sample(theta, (replicates, n_samples), mine)
        return weighted_score(problem, theta, samples, problem.f(samples))


@pytest.mark.parametrize("estimator", [_NumpyRoundTrip(), _PrivateGenerator()])
def test_meta_check_catches_estimators_that_would_fail_on_a_gpu(estimator):
    report = check_estimator(estimator, problems=["bernoulli_vector"], n=[2], time_budget=None,
                             max_estimates=1000, chunking_replicates=256)
    failures = [f for f in report.failures if f.startswith("runs off the CPU")]
    assert len(failures) == 1, report.failures
    if isinstance(estimator, _PrivateGenerator):
        # Advice that fits an estimator: draw from the generator handed in (the helper for a
        # problem's seeded constants would be wrong here).
        assert "generator argument of estimate()" in failures[0]
        assert "built_on_cpu" not in failures[0]


@dataclass(frozen=True)
class _ConstantsOnTheCpu(BernoulliVector):
    """bernoulli_vector with targets drawn from a CPU generator outside ``built_on_cpu``."""

    name = "constants_on_the_cpu_for_test"

    def f(self, samples):
        targets = torch.rand(self.dim, generator=torch.Generator().manual_seed(1),
                             dtype=samples.dtype)
        return ((samples - targets) ** 2).sum(-1)


def test_meta_check_catches_problem_constants_outside_built_on_cpu():
    report = check_problem(_ConstantsOnTheCpu(), time_budget=None, max_draws=1000)
    failures = [f for f in report.failures if f.startswith("runs off the CPU")]
    assert failures and "built_on_cpu" in failures[0], report.failures


def test_meta_check_stops_loops_that_wait_on_sampled_values(monkeypatch):
    monkeypatch.setattr(testing.meta, "META_VALUE_READS", 300)  # the built-ins need at most 200

    @dataclass(frozen=True)
    class _Rejection(Estimator):
        """Redraws while a sample exceeds 1: never on the CPU, forever if values are faked."""

        name = "rejection_for_test"

        def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
            samples = problem.sample(theta, (replicates, n_samples), generator)
            while bool((samples > 1).any()):
                samples = problem.sample(theta, (replicates, n_samples), generator)
            return weighted_score(problem, theta, samples, problem.f(samples))

    report = check_estimator(_Rejection(), problems=["bernoulli_toy"], n=[2], time_budget=None,
                             max_estimates=1000, chunking_replicates=256)
    failures = [f for f in report.failures if f.startswith("runs off the CPU")]
    assert failures and "does a loop wait on a sampled value" in failures[0]


# On a GPU.

@needs_cuda
@pytest.mark.parametrize("name", problems.registry.names())
def test_problem_conformance_on_cuda(name):
    report = check_problem(name, device="cuda", time_budget=None, max_draws=100_000)
    assert not [f for f in report.failures if not f.startswith("power")], report.failures


@needs_cuda
@pytest.mark.parametrize("name", ["score_function", "rloo", "reparameterization", "disarm",
                                  "qmc_score_function", "relax", "gae_exact"])
def test_estimator_conformance_on_cuda(name):
    report = check_estimator(estimators.make(name), device="cuda", time_budget=None,
                             max_estimates=10_000, chunking_replicates=2_048)
    assert not [f for f in report.failures if not f.startswith("power")], report.failures


@needs_cuda
@pytest.mark.parametrize(("problem", "estimator"), [("bernoulli_toy", "score_function"),
                                                    ("frozenlake", "rloo"),
                                                    ("sigmoid_belief_vae_digits", "disarm")])
def test_cuda_cells_agree_with_cpu_cells(problem, estimator):
    rows = [run_cell(Cell(Spec(problem), Spec(estimator), 4, 4000, 0, device=device))
            for device in ("cpu", "cuda")]
    assert [row["status"] for row in rows] == ["ok", "ok"], [row.get("error") for row in rows]
    cpu, gpu = rows
    assert gpu["device"] == "cuda" and gpu["true_grad_norm"] == pytest.approx(
        cpu["true_grad_norm"], rel=1e-9)
    # Independent draws: the variances agree within their confidence intervals' reach.
    assert gpu["variance_ci_low"] <= cpu["variance_ci_high"]
    assert cpu["variance_ci_low"] <= gpu["variance_ci_high"]


@needs_cuda
def test_training_on_cuda():
    rows = train(Spec("gaussian_quadratic"), Spec("reparameterization"), 0,
                 TrainSettings(steps=20, eval_every=10, device="cuda"))
    assert rows[-1]["device"].startswith("cuda") and rows[-1]["value"] < rows[0]["value"]


def test_training_refuses_an_unknown_device():
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        TrainSettings(device="tpu")


def test_generators_live_on_the_requested_device():
    assert devices.generator(torch.device("cpu"), 5).device.type == "cpu"
