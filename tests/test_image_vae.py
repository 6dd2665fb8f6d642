"""The image VAEs on a tiny IDX data set the tests write: loading, binarization, shapes, the
ELBO against a direct computation, estimators against exact and reference gradients,
training (minibatches, metrics, groups, resuming) and the meta device."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch

from vrbench import estimators, problems
from vrbench.bench.cells import plan
from vrbench.bench.reference import ReferenceSettings, compute_reference
from vrbench.bench.runs import Run, RunStore
from vrbench.bench.train import TrainSettings, train
from vrbench.components import Spec
from vrbench.errors import ParameterError
from vrbench.problems import idx
from vrbench.problems.base import DTYPE
from vrbench.testing.meta import MetaDevice

ROWS, COLUMNS = 4, 6
TRAIN, TEST = 24, 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    """A directory with 24 training and 8 test images of 4 × 6 bytes, the training file
    gzipped and the test file not (both forms are read)."""
    directory = tmp_path_factory.mktemp("tiny_idx")
    rng = np.random.default_rng(7)
    idx.write_idx(directory / "train-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (TRAIN, ROWS, COLUMNS), dtype=np.uint8), compress=True)
    idx.write_idx(directory / "t10k-images-idx3-ubyte",
                  rng.integers(0, 256, (TEST, ROWS, COLUMNS), dtype=np.uint8))
    return str(directory)


def make(name: str, tiny: str, **params) -> problems.Problem:
    defaults = {"data_dir": tiny, "batch": 3, "train_size": 20, "eval_train_images": 20,
                "eval_test_images": 8, "eval_samples": 10}
    if name != "categorical_vae_nonlinear":
        defaults["latents"] = 3
    if name == "binary_vae_linear":
        params.pop("hidden", None)
    return problems.make(name, {**defaults, **params})


# --- IDX files ---------------------------------------------------------------------------------

def test_idx_round_trip_gzipped_or_not(tmp_path):
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    for name, compress in (("a", False), ("b.gz", True)):
        idx.write_idx(tmp_path / name, array, compress)
        read = idx.read_idx(tmp_path / name)
        assert read.dtype == np.uint8 and read.shape == (2, 3, 5)
        np.testing.assert_array_equal(read, array)
    assert (tmp_path / "b.gz").read_bytes()[:2] == b"\x1f\x8b"
    # The header, byte by byte, as the MNIST page describes it.
    assert (tmp_path / "a").read_bytes()[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3,
                                                        0, 0, 0, 5])
    wide = np.linspace(-1, 1, 6).astype(">f8").reshape(2, 3)
    idx.write_idx(tmp_path / "f", wide)
    np.testing.assert_array_equal(idx.read_idx(tmp_path / "f"), wide)


def test_bad_idx_files_are_refused(tmp_path):
    (tmp_path / "text").write_bytes(b"not an idx file at all")
    with pytest.raises(idx.DataError, match="not an IDX file"):
        idx.read_idx(tmp_path / "text")
    idx.write_idx(tmp_path / "short", np.zeros((4, 4), dtype=np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(idx.DataError, match="header"):
        idx.read_idx(tmp_path / "short")


def test_images_load_with_their_shape_and_pool(tiny):
    found = idx.load_images(idx.data_dir(tiny))
    assert found.train.shape == (TRAIN, ROWS * COLUMNS) and found.test.shape == (TEST, 24)
    assert found.shape == (ROWS, COLUMNS) and found.scale == 255.0
    pooled = idx.pooled(found.train, found.shape, found.scale, 2)
    grid = found.train.to(DTYPE).reshape(TRAIN, ROWS, COLUMNS) / 255
    expected = grid.reshape(TRAIN, 2, 2, 3, 2).mean((2, 4)).flatten(1)
    torch.testing.assert_close(pooled, expected)


def test_data_directory_from_parameter_environment_or_default(tiny, monkeypatch, tmp_path):
    monkeypatch.delenv(idx.ENVIRONMENT, raising=False)
    assert str(idx.data_dir()) == idx.DEFAULT_DIR
    monkeypatch.setenv(idx.ENVIRONMENT, tiny)
    assert str(idx.data_dir()) == tiny
    assert problems.make("binary_vae_linear", {"latents": 3}).unavailable() is None
    assert str(idx.data_dir(str(tmp_path))) == str(tmp_path)


def test_missing_data_skips_with_how_to_install(tmp_path):
    problem = problems.make("binary_vae_linear", {"data_dir": str(tmp_path)})
    reason = problem.unavailable()
    assert reason is not None and "apt-get install dataset-fashion-mnist" in reason
    assert str(tmp_path) in reason and "train-images-idx3-ubyte" in reason
    disarm = estimators.make("disarm")
    assert "not available here" in disarm.incompatibility(problem, 2)
    cells, skipped = plan([Spec("binary_vae_linear", {"data_dir": str(tmp_path)})],
                          [Spec("disarm"), Spec("rloo")], [2], 10, 0)
    assert not cells and {s.reason for s in skipped} == {
        f"binary_vae_linear is not available here: {reason}"}
    with pytest.raises(ParameterError, match="dataset-fashion-mnist"):
        train(Spec("binary_vae_linear", {"data_dir": str(tmp_path)}), Spec("disarm"), 0,
              TrainSettings(steps=1, n_samples=1))


# --- Binarization and shapes -------------------------------------------------------------------

def test_dynamic_binarization_draws_each_pixel_with_its_intensity():
    intensities = torch.tensor([[0.0, 0.1, 0.5, 0.9, 1.0]], dtype=DTYPE).expand(40_000, 5)
    bits = idx.binarize(intensities, torch.Generator().manual_seed(0))
    assert set(bits.unique().tolist()) <= {0.0, 1.0}
    mean, se = bits.mean(0), (intensities[0] * (1 - intensities[0]) / 40_000).sqrt()
    assert bool(((mean - intensities[0]).abs() <= 5 * se + 1e-12).all()), mean
    again = idx.binarize(intensities[:100], torch.Generator().manual_seed(1))
    assert not torch.equal(again, bits[:100])  # afresh each time


@pytest.mark.parametrize("name", ["binary_vae_linear", "binary_vae_nonlinear",
                                  "categorical_vae_nonlinear"])
def test_shapes_and_layout(name, tiny):
    problem = make(name, tiny, hidden=5)
    theta = problem.initial_theta()
    groups = problem.parameter_groups()
    assert list(groups) == ["encoder", "decoder", "prior"]
    assert groups["prior"].stop == problem.dim == theta.shape[0] and theta.dtype == DTYPE
    latent = problem.latent_shape
    samples = problem.sample(theta, (4, 2), torch.Generator().manual_seed(0))
    assert samples.codes.shape == (4, 2, 3, *latent)
    assert problem.f(samples).shape == (4, 2) and problem.item_f(samples).shape == (4, 2, 3)
    assert problem.score(theta, samples).shape == (4, 2, problem.dim)
    assert problem.images.shape == (3, ROWS * COLUMNS)
    assert set(problem.images.unique().tolist()) <= {0.0, 1.0}
    pooled = make(name, tiny, hidden=5, pool=2)
    assert pooled.images.shape == (3, 6) and pooled.dim < problem.dim


def test_the_papers_sizes(monkeypatch, tiny):
    """θ's size at the papers' settings on 28 × 28 images (Dong et al. 2020, 2021)."""
    sizes = {"binary_vae_linear": 784 * 200 + 200 + 200 * 784 + 784 + 200,
             "binary_vae_nonlinear": (784 * 200 + 200 + 2 * (200 * 200 + 200))
             + (2 * (200 * 200 + 200) + 200 * 784 + 784) + 200,
             "categorical_vae_nonlinear": (784 * 512 + 512 + 512 * 256 + 256 + 256 * 200 + 200)
             + (200 * 256 + 256 + 256 * 512 + 512 + 512 * 784 + 784) + 200}
    for name, size in sizes.items():
        problem = problems.make(name)
        monkeypatch.setattr(type(problem), "pixels", 784)
        assert problem.dim == size, name


# --- The ELBO against a direct computation -----------------------------------------------------

def _direct_terms(problem, theta, codes, images):
    """``(log p(x|z), log p(z), log q(z|x))`` per image, written out with
    ``torch.nn.functional`` and ``torch.distributions``."""
    def network(start, sizes, inputs):
        hidden = inputs
        for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
            weight = theta[start : start + fan_in * fan_out].reshape(fan_out, fan_in)
            start += fan_in * fan_out
            hidden = hidden @ weight.T + theta[start : start + fan_out]
            start += fan_out
            if index < len(sizes) - 2:
                hidden = torch.nn.functional.leaky_relu(hidden, problem.slope)
        return hidden, start

    width = math.prod(problem.latent_shape)
    hidden = list(problem.hidden_sizes)
    pixels = images.shape[-1]
    encoded, end = network(0, [pixels, *hidden, width], images - problem._data_mean)
    decoded, end = network(end, [width, *hidden[::-1], pixels],
                           2 * codes.flatten(-len(problem.latent_shape)) - 1)
    prior = theta[end:]
    if len(problem.latent_shape) == 1:
        log_q = torch.distributions.Bernoulli(logits=encoded).log_prob(codes).sum(-1)
        log_prior = torch.distributions.Bernoulli(logits=prior).log_prob(codes).sum(-1)
    else:
        shape = (*encoded.shape[:-1], *problem.latent_shape)
        log_q = (codes * torch.log_softmax(encoded.reshape(shape), -1)).sum((-2, -1))
        log_prior = (codes * torch.log_softmax(prior.reshape(problem.latent_shape), -1)).sum(
            (-2, -1))
    log_px = torch.distributions.Bernoulli(logits=decoded).log_prob(images).sum(-1)
    return log_px, log_prior, log_q


@pytest.mark.parametrize("name", ["binary_vae_linear", "binary_vae_nonlinear",
                                  "categorical_vae_nonlinear"])
def test_elbo_against_a_direct_computation(name, tiny):
    params = {"D": 2, "K": 3} if name == "categorical_vae_nonlinear" else {}
    problem = make(name, tiny, hidden=5, **params)
    theta = problem.initial_theta() + 0.3 * torch.randn(
        problem.dim, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    samples = problem.sample(theta, (5, 2), torch.Generator().manual_seed(0))
    log_px, log_prior, log_q = _direct_terms(problem, theta, samples.codes, problem.images)
    torch.testing.assert_close(samples.log_q, log_q, rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(problem.item_f(samples), log_px + log_prior - log_q,
                               rtol=1e-12, atol=1e-10)
    # J by brute force over every code of every image, and its autograd gradient.
    if len(problem.latent_shape) == 1:
        codes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)), dtype=DTYPE)
    else:
        codes = torch.nn.functional.one_hot(torch.tensor(list(itertools.product(
            range(3), repeat=2))), 3).to(DTYPE)
    images = problem.images[:, None, :].expand(-1, codes.shape[0], -1)

    point = theta.clone().requires_grad_(True)
    log_px, log_prior, log_q = _direct_terms(problem, point, codes, images)  # (B, codes)
    expected = (log_q.exp() * (log_px + log_prior - log_q)).sum() / problem.batch
    (gradient,) = torch.autograd.grad(expected, point)
    torch.testing.assert_close(problem.value(theta), expected.detach(), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(problem.exact_grad(theta), gradient, rtol=1e-9, atol=1e-10)


# --- Gradients: the direct part, local signals, the reference ----------------------------------

def test_the_direct_gradient_is_the_decoder_and_prior_part(tiny):
    """The mean of the direct part equals the exact gradient in the decoder and prior (where
    the encoder's score contributes nothing), and is zero in the encoder."""
    problem = make("binary_vae_nonlinear", tiny, hidden=5)
    theta = problem.initial_theta()
    exact = problem.exact_grad(theta)
    draws = problem.direct_gradient(theta, 20_000, torch.Generator().manual_seed(1))
    encoder = problem.parameter_groups()["encoder"]
    assert bool((draws[:, encoder] == 0).all())
    rest = slice(encoder.stop, problem.dim)
    mean, se = draws[:, rest].mean(0), draws[:, rest].std(0) / math.sqrt(20_000)
    z = ((mean - exact[rest]) / se.clamp_min(1e-12))[se > 0]
    assert float(z.abs().max()) < 5.0, float(z.abs().max())
    assert float(exact[rest].norm()) > 10 * float(se.norm())  # the test could fail


def test_local_signals_keep_the_estimators_unbiased_and_cut_their_variance(tiny):
    """RLOO, ARM and DisARM on an amortized problem use each image's own ELBO: held against
    the exact gradient (5 standard errors along ∇J and each encoder coordinate), and each
    below the variance of the same estimator with one signal for the whole batch."""
    problem = make("binary_vae_linear", tiny, batch=6)
    theta = problem.initial_theta()
    exact = problem.exact_grad(theta)
    encoder = problem.parameter_groups()["encoder"]
    for name, n in (("rloo", 2), ("arm", 1), ("disarm", 1)):
        estimator = estimators.make(name)
        local = estimator.estimate(problem, theta, n, 10_000, torch.Generator().manual_seed(4))
        mean, se = local.mean(0), local.std(0) / math.sqrt(10_000)
        z = ((mean - exact) / se.clamp_min(1e-300))[se > 0]
        assert float(z.abs().max()) < 5.5, (name, float(z.abs().max()))
        # The same estimator with the whole batch's f as every latent's signal.
        batch_signal = _without_items(problem, estimator, theta, n)
        assert float(local[:, encoder].var(0).sum()) < 0.8 * float(
            batch_signal[:, encoder].var(0).sum()), name


def _without_items(problem, estimator, theta, n):
    from vrbench.problems import latents

    original_local, original_caps = latents._LogitView.local_f, type(problem).capabilities
    latents._LogitView.local_f = lambda self, samples: None
    try:
        if estimator.name == "rloo":  # RLOO reads the items of an amortized problem
            from vrbench.problems.base import Capability

            type(problem).capabilities = original_caps - {Capability.AMORTIZED}
        return estimator.estimate(problem, theta, n, 10_000, torch.Generator().manual_seed(4))
    finally:
        latents._LogitView.local_f = original_local
        type(problem).capabilities = original_caps


@pytest.mark.parametrize("name", ["binary_vae_linear", "categorical_vae_nonlinear"])
def test_estimators_against_the_reference_gradient(name, tiny):
    """With 2¹⁶ codes per image (9⁴ for the categoricals) there is no exact gradient: the
    reference is the mean of DisARM estimates (RLOO's where DisARM is measured; IndeCateR's
    for the categoricals); each estimator is compared with it, along ∇J and 16 random
    directions, within 5 standard errors of the two combined, and a deliberately wrong
    estimate (the decoder's and prior's part dropped) is caught."""
    params = {"D": 4, "K": 9, "hidden": 4} if name == "categorical_vae_nonlinear" else {
        "latents": 16}
    problem = make(name, tiny, batch=2, pool=2, **params)
    assert not problem.has_exact_gradient
    theta = problem.initial_theta()
    measured = ["rloo", "disarm", "arm"] if name == "binary_vae_linear" else ["rloo"]
    settings = ReferenceSettings(precision=0.03, max_estimates=200_000)
    references = {}
    for estimator_name in measured:
        key = estimator_name if estimator_name in problem.reference_estimators else None
        if key not in references:
            references[key] = compute_reference(problem, theta, settings, exclude=key, seed=1)
        reference = references[key]
        assert reference.estimator != estimator_name and not reference.exact
        n = 2 if estimator_name == "rloo" else 1
        estimates = estimators.make(estimator_name).estimate(
            problem, theta, n, 20_000, torch.Generator().manual_seed(5))
        projected = estimates @ reference.directions.T
        se = (projected.var(0) / projected.shape[0] + reference.direction_se**2).sqrt()
        z = (projected.mean(0) - reference.expected()) / se
        assert float(z.abs().max()) < 5.0, (estimator_name, float(z.abs().max()))
    decoder = problem.parameter_groups()["decoder"]
    wrong = estimates.clone()
    wrong[:, decoder.start :] = 0.0  # an estimator that forgets the decoder and prior
    z = ((wrong @ reference.directions.T).mean(0) - reference.expected()) / se
    assert float(z.abs().max()) > 5.0


# --- Training ----------------------------------------------------------------------------------

def test_training_draws_a_fresh_minibatch_each_step(tiny):
    problem = make("binary_vae_linear", tiny)
    generator = torch.Generator().manual_seed(0)
    first, second = problem.training_batch(generator), problem.training_batch(generator)
    assert first.images.shape == second.images.shape == (3, ROWS * COLUMNS)
    assert not torch.equal(first.images, second.images)
    assert torch.equal(problem.images, problem._fixed_batch)  # the source keeps its batch
    theta = problem.initial_theta()
    assert not torch.equal(first.latent_logits(theta), second.latent_logits(theta))


def test_training_metrics_hold_the_elbo_and_the_test_bound(tiny):
    """The K-sample bound is at least the ELBO in expectation (Burda et al., 2016): on the
    same test images, the 10-sample bound beats the 1-sample one."""
    problem = make("binary_vae_linear", tiny, eval_samples=1)
    theta = problem.initial_theta()
    one = [problem.training_metrics(theta, torch.Generator().manual_seed(s))["test_bound"]
           for s in range(20)]
    ten = [make("binary_vae_linear", tiny).training_metrics(
        theta, torch.Generator().manual_seed(s))["test_bound"] for s in range(20)]
    assert np.mean(ten) > np.mean(one)
    metrics = problem.training_metrics(theta, torch.Generator().manual_seed(0))
    assert set(metrics) == {"train_elbo", "test_bound"}
    assert all(math.isfinite(v) and v < 0 for v in metrics.values())


def test_train_follows_the_papers_optimizers_and_records_metrics(tiny):
    spec = Spec("binary_vae_linear", {"data_dir": tiny, "batch": 3, "train_size": 20,
                                      "latents": 3, "eval_train_images": 20,
                                      "eval_test_images": 8, "eval_samples": 10})
    settings = TrainSettings(steps=6, n_samples=1, lr=1e-3, eval_every=3,
                             eval_replicates=0,
                             groups={"prior": {"optimizer": "sgd", "lr": 0.01}})
    rows = train(spec, Spec("disarm"), 0, settings)
    frame = pd.DataFrame(rows)
    assert list(frame["step"]) == [0, 3, 6]
    assert frame[["train_elbo", "test_bound"]].notna().all().all()
    assert frame["wall_s"].is_monotonic_increasing and frame["wall_s"].iloc[0] == 0
    assert frame["value"].notna().all()  # 3 latents: J is exact
    with pytest.raises(ParameterError, match="no parameter group 'decoder_prior'"):
        train(spec, Spec("disarm"), 0, TrainSettings(
            steps=1, n_samples=1, eval_replicates=0,
            groups={"decoder_prior": {"lr": 0.1}}))


def test_an_interrupted_run_resumes_with_the_same_numbers(tiny, tmp_path, monkeypatch):
    spec = Spec("binary_vae_linear", {"data_dir": tiny, "batch": 3, "train_size": 20,
                                      "latents": 3, "eval_train_images": 10,
                                      "eval_test_images": 4, "eval_samples": 5})
    settings = TrainSettings(steps=12, n_samples=2, lr=1e-2, eval_every=4,
                             eval_replicates=0)
    run = Run(spec, Spec("rloo"), 3, settings)
    whole = pd.DataFrame(RunStore(tmp_path / "whole", checkpoint_seconds=0).run(run))

    from vrbench.bench import train as train_module

    calls = {"count": 0}
    original = train_module._Optimizers.step

    def dies_at_step_9(self, grad, project):
        calls["count"] += 1
        if calls["count"] == 10:
            raise KeyboardInterrupt
        original(self, grad, project)

    monkeypatch.setattr(train_module._Optimizers, "step", dies_at_step_9)
    store = RunStore(tmp_path / "cut", checkpoint_seconds=0)
    with pytest.raises(KeyboardInterrupt):
        store.run(run)
    assert list((tmp_path / "cut" / "runs").glob("*.ckpt"))
    monkeypatch.setattr(train_module._Optimizers, "step", original)
    resumed = pd.DataFrame(store.run(run))
    assert not list((tmp_path / "cut" / "runs").glob("*.ckpt"))
    columns = ["step", "value", "train_elbo", "test_bound"]
    pd.testing.assert_frame_equal(resumed[columns], whole[columns])
    again = pd.DataFrame(store.run(run))  # stored: read back, not computed
    pd.testing.assert_frame_equal(again, resumed)


def test_a_training_step_runs_off_the_cpu(tiny):
    """The step and the metrics on torch's meta device, the stand-in for a GPU (see
    vrbench.testing.meta): no tensor left on the CPU, every draw from the generator handed
    in."""
    problem = make("binary_vae_nonlinear", tiny, hidden=5)
    generator = torch.Generator()
    with torch.device("meta"), MetaDevice([generator]):
        theta = problem.initial_theta()
        batch = problem.training_batch(generator)
        for name, n in (("disarm", 1), ("rloo", 2)):
            estimate = estimators.make(name).estimate(batch, theta, n, 1, generator)
            assert estimate.is_meta and estimate.shape == (1, problem.dim)
        assert problem.direct_gradient(theta, 2, generator).is_meta
        metrics = problem.training_metrics(theta, generator)  # reads values: MetaDevice's 1.0
        assert set(metrics) == {"train_elbo", "test_bound"}


# --- The sigmoid belief network ----------------------------------------------------------------

def test_sigmoid_belief_net_against_a_direct_computation(tiny):
    """f per image and the exact J (a sum over every code of both layers) against
    torch.distributions, layer by layer; its estimators are the score-function family."""
    problem = problems.make("sigmoid_belief_net", {
        "data_dir": tiny, "batch": 3, "train_size": 20, "latents": 2, "layers": 3})
    theta = problem.initial_theta() + 0.3 * torch.randn(
        problem.dim, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    bern = torch.distributions.Bernoulli

    def terms(point, codes, images):
        chunks = list(torch.split(point, [2 * 24 + 2, 2 * 2 + 2, 2 * 2 + 2, 24 * 2 + 24,
                                          2 * 2 + 2, 2 * 2 + 2, 2]))

        def dense(chunk, fan_in, fan_out, inputs):
            return inputs @ chunk[: fan_in * fan_out].reshape(fan_out, fan_in).T + chunk[
                fan_in * fan_out :]

        log_q = bern(logits=dense(chunks[0], 24, 2, images - problem._data_mean)).log_prob(
            codes[..., 0, :]).sum(-1)
        for k in (1, 2):
            log_q = log_q + bern(logits=dense(chunks[k], 2, 2, codes[..., k - 1, :])).log_prob(
                codes[..., k, :]).sum(-1)
        log_p = bern(logits=dense(chunks[3], 2, 24, 2 * codes[..., 0, :] - 1)).log_prob(
            images).sum(-1)
        for k in (1, 2):
            log_p = log_p + bern(logits=dense(chunks[3 + k], 2, 2, codes[..., k, :])).log_prob(
                codes[..., k - 1, :]).sum(-1)
        return log_p + bern(logits=chunks[6]).log_prob(codes[..., 2, :]).sum(-1), log_q

    samples = problem.sample(theta, (4, 2), torch.Generator().manual_seed(0))
    assert samples.codes.shape == (4, 2, 3, 3, 2)
    log_p, log_q = terms(theta, samples.codes, problem.images)
    torch.testing.assert_close(problem.item_f(samples), log_p - log_q, rtol=1e-12, atol=1e-10)
    codes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=6)), dtype=DTYPE)
    codes = codes.reshape(-1, 1, 3, 2)
    point = theta.clone().requires_grad_(True)
    log_p, log_q = terms(point, codes, problem.images)
    expected = (log_q.exp() * (log_p - log_q)).sum() / problem.batch
    (gradient,) = torch.autograd.grad(expected, point)
    torch.testing.assert_close(problem.value(theta), expected.detach(), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(problem.exact_grad(theta), gradient, rtol=1e-9, atol=1e-10)
    assert estimators.make("disarm").incompatibility(problem, 2) is not None
    assert estimators.make("rloo").incompatibility(problem, 2) is None


# --- The recipe --------------------------------------------------------------------------------

def test_final_metric_claims_pair_the_seeds():
    """A seed fixes the initial θ and the measurements' draws, so runs of two estimators with
    the same seed are compared pair by pair: a small, consistent lead is reproduced, a
    reversed one not, a noisy one inconclusive."""
    from vrbench.reproduce import CLAIM_KINDS

    def traces(lead: list[float]) -> pd.DataFrame:
        base = [-300.0, -310.0, -305.0]  # seeds differ more than the estimators do
        rows = [{"problem": "binary_vae_linear", "estimator": name, "seed": seed,
                 "step": 100, "train_elbo": value + (lead[seed] if name == "disarm" else 0)}
                for name in ("disarm", "arm") for seed, value in enumerate(base)]
        return pd.DataFrame(rows)

    claim = {"text": "DisARM beats ARM", "kind": "final_metric",
             "problem": "binary_vae_linear", "column": "train_elbo", "better": ["disarm"],
             "worse": "arm"}
    check = CLAIM_KINDS["final_metric"]
    assert check(claim, pd.DataFrame(), traces([0.5, 0.6, 0.55])).outcome == "reproduced"
    assert check(claim, pd.DataFrame(), traces([-0.5, -0.6, -0.55])).outcome == \
        "not reproduced"
    assert check(claim, pd.DataFrame(), traces([2.0, -1.5, 0.3])).outcome == "inconclusive"
    verdict = check(claim, pd.DataFrame(), traces([0.5, 0.6, 0.55]))
    assert "paired by seed" in " ".join(verdict.lines)


def test_the_fashion_recipe_runs_on_the_tiny_data(tiny, tmp_path, monkeypatch):
    """disarm2020_fashion's machinery end to end (runs, figures, claims, note) on the tiny
    data set, a few steps: the recipe itself is the CPU's quarter of an hour (--quick)."""
    import dataclasses

    from vrbench.reproduce import load_recipe, reproduce

    monkeypatch.setenv(idx.ENVIRONMENT, tiny)
    recipe = load_recipe("disarm2020_fashion")
    small = ",".join(["batch=3", "train_size=20", "latents=3", "eval_train_images=20",
                      "eval_test_images=8", "eval_samples=5", "pool=2"])
    quick = {"train": {**recipe.quick["train"], "steps": 4, "eval_every": 2, "seeds": [0, 1],
                       "problems": [f"binary_vae_linear:{small}",
                                    f"binary_vae_nonlinear:{small},hidden=4"]}}
    note = reproduce(dataclasses.replace(recipe, quick=quick), tmp_path, quick=True)
    text = note.read_text()
    assert text.count("train_elbo at step 4") == 4 and "test_bound at step 4" in text
    assert (tmp_path / "figures" / "train_elbo_by_step.png").exists()
    assert len(list((tmp_path / "runs").glob("*.parquet"))) == 12


def test_a_shared_run_measures_every_estimator_at_the_same_theta(tiny):
    """The shared-run mode on a 16-latent VAE (no exact gradient): each measured estimator's
    variance at θ_t, against a reference at θ_t, per parameter group; training on
    minibatches while measuring at the fixed one."""
    from vrbench.bench.train import shared_run

    spec = Spec("binary_vae_linear", {"data_dir": tiny, "batch": 2, "train_size": 20,
                                      "latents": 16, "pool": 2, "eval_train_images": 0,
                                      "eval_test_images": 0})
    settings = TrainSettings(steps=2, n_samples=2, lr=1e-2, eval_every=2,
                             eval_replicates=64,
                             reference=ReferenceSettings(precision=0.2, max_estimates=2_000))
    frame = pd.DataFrame(shared_run(spec, Spec("disarm"), [Spec("rloo"), Spec("disarm")], 0,
                                    settings))
    assert set(frame["estimator"]) == {"rloo", "disarm"} and set(frame["step"]) == {0, 2}
    assert frame["error"].eq("").all() and frame["variance"].gt(0).all()
    assert frame["reference"].str.contains("mean of").all()
    assert all(list(groups) == ["encoder", "decoder", "prior"]
               for groups in frame["parameter_groups"])
