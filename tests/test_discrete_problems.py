"""The categorical, categorical-VAE and multi-sample problems against independent numpy
enumerations, and the optional members that discrete estimators rely on."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from vrbench import problems
from vrbench.errors import ParameterError
from vrbench.problems.base import DTYPE


def _digits(batch: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``batch`` binarized digits and the log-odds of all pixels' means."""
    digits = (load_digits().data > 8).astype(np.float64)
    mean = digits.mean(0).clip(1e-3, 1 - 1e-3)
    return digits[:batch], np.log(mean) - np.log1p(-mean)


def _log_bernoulli_decoder(images: np.ndarray, codes: np.ndarray, decoder: np.ndarray,
                           offset: np.ndarray) -> np.ndarray:
    """log p(x_b | z) for every image b and code z: ``(B, codes)``, pixel by pixel."""
    logits = codes @ decoder.T + offset  # (codes, 64)
    log_p1, log_p0 = -np.logaddexp(0, -logits), -np.logaddexp(0, logits)
    return images @ log_p1.T + (1 - images) @ log_p0.T


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _random_theta(problem, seed: int, scale: float = 0.4) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return problem.initial_theta() + scale * torch.randn(problem.dim, generator=g, dtype=DTYPE)


def _potts_reference(theta: np.ndarray, fields: np.ndarray, couplings: np.ndarray
                     ) -> tuple[float, np.ndarray]:
    """J and ∇J by summing over all K^D outcomes, with ∇J = Σ_x p(x) f(x) (onehot(x) − π)."""
    d, k = fields.shape
    pi = _softmax(theta.reshape(d, k))
    value, grad = 0.0, np.zeros((d, k))
    for x in itertools.product(range(k), repeat=d):
        p = math.prod(pi[i, x[i]] for i in range(d))
        f = sum(fields[i, x[i]] for i in range(d)) + sum(
            couplings[i, j] for i in range(d) for j in range(i + 1, d) if x[i] == x[j])
        value += p * f
        grad += p * f * (np.eye(k)[list(x)] - pi)
    return value, grad.reshape(-1)


def test_potts_value_and_gradient_by_enumeration():
    problem = problems.make("categorical_potts", {"D": "4", "K": "3", "coupling": "1.5"})
    fields, couplings = (t.numpy() for t in problem._energy)
    theta = _random_theta(problem, seed=1)
    value, grad = _potts_reference(theta.numpy(), fields, couplings)
    assert problem.value(theta).item() == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(problem.exact_grad(theta).numpy(), grad, rtol=1e-10, atol=1e-12)


def test_ising_value_and_gradient_by_enumeration():
    problem = problems.make("bernoulli_ising", {"D": "6", "coupling": "0.8"})
    fields, couplings = (t.numpy() for t in problem._energy)
    theta = _random_theta(problem, seed=7)
    p = 1 / (1 + np.exp(-theta.numpy()))
    value, grad = 0.0, np.zeros(6)
    for bits in itertools.product([0, 1], repeat=6):
        b = np.array(bits, dtype=np.float64)
        probability = np.prod(np.where(b > 0, p, 1 - p))
        s = 2 * b - 1
        f = fields @ s + sum(couplings[i, j] * s[i] * s[j]
                             for i in range(6) for j in range(i + 1, 6))
        value += probability * f
        grad += probability * f * (b - p)
    assert problem.value(theta).item() == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(problem.exact_grad(theta).numpy(), grad, rtol=1e-10, atol=1e-12)


def test_potts_energy_is_non_separable():
    """With couplings the gradient of one variable depends on the others' logits."""
    problem = problems.make("categorical_potts", {"D": "3", "K": "3"})
    theta = problem.initial_theta()
    moved = theta.clone()
    moved[3:6] += torch.tensor([1.0, -1.0, 0.5], dtype=DTYPE)  # the second variable only
    assert not torch.allclose(problem.exact_grad(theta)[:3], problem.exact_grad(moved)[:3])


def _categorical_vae_reference(problem, theta: np.ndarray) -> tuple[float, np.ndarray]:
    """The batch-mean ELBO and its gradient by enumerating every code of every image."""
    images, offset = _digits(problem.batch)
    d, k = problem.D, problem.K
    decoder = torch.randn(64, d * k, generator=torch.Generator().manual_seed(problem.seed),
                          dtype=DTYPE).numpy()
    codes = np.array([np.eye(k)[list(z)].reshape(-1)
                      for z in itertools.product(range(k), repeat=d)])  # (K^D, DK)
    weights, bias = theta[: d * k * 64].reshape(d * k, 64), theta[d * k * 64 :]
    pi = _softmax((images @ weights.T + bias).reshape(-1, d, k)).reshape(-1, d * k)
    log_q = codes @ np.log(pi).T  # (K^D, B)
    elbo = _log_bernoulli_decoder(images, codes, decoder, offset).T - d * math.log(k) - log_q
    q = np.exp(log_q)
    value = (q * elbo).sum() / problem.batch
    # ∇ w.r.t. the logits of image b: Σ_z q f (onehot(z) − π_b); then the chain rule.
    grad_logits = np.stack([(q[:, b, None] * elbo[:, b, None] * (codes - pi[b])).sum(0)
                            for b in range(problem.batch)])
    grad = np.concatenate([(grad_logits.T @ images).reshape(-1), grad_logits.sum(0)])
    return value, grad / problem.batch


def test_categorical_vae_value_and_gradient_by_enumeration():
    problem = problems.make("categorical_vae_digits", {"batch": "3", "D": "2", "K": "3"})
    theta = _random_theta(problem, seed=2)
    value, grad = _categorical_vae_reference(problem, theta.numpy())
    assert problem.value(theta).item() == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(problem.exact_grad(theta).numpy(), grad, rtol=1e-9, atol=1e-11)


def _iwae_reference(problem, theta: np.ndarray) -> float:
    """The K-sample bound summed over every K-tuple of codes of every image."""
    images, offset = _digits(problem.batch)
    bits = problem.latents
    decoder = torch.randn(64, bits, generator=torch.Generator().manual_seed(problem.seed),
                          dtype=DTYPE).numpy()
    codes = np.array(list(itertools.product([0.0, 1.0], repeat=bits)))
    weights, bias = theta[: bits * 64].reshape(bits, 64), theta[bits * 64 :]
    logits = images @ weights.T + bias  # (B, L)
    log_q = codes @ logits.T - np.logaddexp(0, logits).sum(-1)  # (codes, B)
    log_w = _log_bernoulli_decoder(images, codes, decoder, offset).T - bits * math.log(2) - log_q
    total = 0.0
    for tuple_ in itertools.product(range(len(codes)), repeat=problem.K):
        index = list(tuple_)
        probability = np.exp(log_q[index].sum(0))  # (B,)
        bound = np.logaddexp.reduce(log_w[index], axis=0) - math.log(problem.K)
        total += (probability * bound).sum()
    return total / problem.batch


def test_iwae_value_and_gradient_by_enumeration_and_finite_differences():
    problem = problems.make("iwae_digits", {"batch": "2", "latents": "2", "K": "3"})
    theta = _random_theta(problem, seed=3)
    assert problem.value(theta).item() == pytest.approx(_iwae_reference(problem, theta.numpy()),
                                                        rel=1e-12)
    g = np.random.default_rng(4)
    exact = problem.exact_grad(theta).numpy()
    h = 1e-5
    for direction in g.standard_normal((3, problem.dim)):
        fd = (_iwae_reference(problem, theta.numpy() + h * direction)
              - _iwae_reference(problem, theta.numpy() - h * direction)) / (2 * h)
        assert exact @ direction == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_iwae_gradient_is_not_the_score_function_gradient():
    """E[f ∇ log p] misses the weights' own dependence on θ: the reason multi-sample problems
    run only with estimators that require the capability."""
    problem = problems.make("iwae_digits", {"batch": "2", "latents": "2", "K": "3"})
    theta = problem.initial_theta()
    _, _, _, codes, log_joint, tuples = problem._model
    logits = problem._encoder_logits(theta)
    log_q = codes @ logits.T - torch.nn.functional.softplus(logits).sum(-1)
    probability = log_q.T[:, tuples].sum(-1).exp()  # (B, tuples)
    bounds = torch.logsumexp((log_joint - log_q.T)[:, tuples], dim=-1) - math.log(problem.K)
    centred = codes[tuples] - torch.sigmoid(logits)[:, None, None, :]  # (B, tuples, K, L)
    per_image = torch.einsum("bt,btkl->bl", probability * bounds, centred) / problem.batch
    score_only = torch.cat([(per_image.T @ problem._model[0]).reshape(-1), per_image.sum(0)])
    gap = (score_only - problem.exact_grad(theta)).norm()
    assert gap > 0.05 * problem.exact_grad(theta).norm()


@pytest.mark.parametrize("name", ["bernoulli_toy", "bernoulli_ising", "categorical_target",
                                  "categorical_potts"])
def test_support_lists_every_outcome_with_its_probability(name):
    problem = problems.make(name)
    theta = _random_theta(problem, seed=5)
    support = problem.support()
    probs = problem.log_prob(theta, support).exp()
    assert probs.sum().item() == pytest.approx(1.0, rel=1e-13)
    assert (probs @ problem.f(support)[0]).item() == pytest.approx(problem.value(theta).item(),
                                                                  rel=1e-12)
    with torch.enable_grad():
        point = theta.clone().requires_grad_(True)
        (autograd,) = torch.autograd.grad(problem.log_prob(point, support)[0, :3].sum(), point)
    torch.testing.assert_close(problem.score(theta, support)[0, :3].sum(0), autograd)


@pytest.mark.parametrize("name", ["bernoulli_ising", "categorical_target", "categorical_potts"])
def test_conditional_uniforms_keep_the_sample_and_the_uniform_law(name, generator):
    """u drawn given harden(relax(θ, u)) = b, with b itself drawn, is again uniform (mean 1/2,
    variance 1/12 per coordinate, 5 SE) and relaxes to b."""
    problem = problems.make(name)
    theta = _random_theta(problem, seed=6, scale=1.0)
    first = torch.rand((20_000, 1, problem.noise_dim), generator=generator, dtype=DTYPE)
    hard = problem.harden(problem.relax(theta, first, 0.5))
    fresh = torch.rand(first.shape, generator=generator, dtype=DTYPE)
    given = problem.conditional_uniforms(theta, hard, fresh)
    assert torch.equal(problem.harden(problem.relax(theta, given, 0.5)), hard)
    flat = given.reshape(-1, problem.noise_dim)
    se = math.sqrt(1 / 12 / flat.shape[0])
    assert float((flat.mean(0) - 0.5).abs().max()) < 5 * se
    assert float((flat.var(0) - 1 / 12).abs().max()) < 5 * math.sqrt(1 / 180 / flat.shape[0])


def test_sample_mean_and_embedding_of_relaxable_problems(generator):
    for name in ("bernoulli_ising", "categorical_target", "categorical_potts"):
        problem = problems.make(name)
        theta = problem.initial_theta()
        samples = problem.sample(theta, (4000, 5), generator)
        embedded = problem.embed(samples)
        torch.testing.assert_close(problem.f_relaxed(embedded), problem.f(samples))
        se = embedded.std(dim=(0, 1)) / math.sqrt(20_000)
        assert bool(((embedded.mean(dim=(0, 1)) - problem.sample_mean(theta)).abs()
                     <= 5 * se + 1e-12).all())


@pytest.mark.parametrize(("name", "params", "message"), [
    ("bernoulli_ising", {"D": "1"}, "D=1 must lie in 2..1000"),
    ("categorical_potts", {"K": "1"}, "K=1 must lie in 2..64"),
    ("categorical_potts", {"D": "100"}, "D=100 must lie in 2..64"),
    ("categorical_vae_digits", {"D": "7", "K": "4"}, r"K\^D = 4\^7 codes per image must be"),
    ("categorical_vae_digits", {"batch": "2000"}, "batch=2000 must lie in 1..1797"),
    ("iwae_digits", {"latents": "5", "K": "4"}, r"\(2\^latents\)\^K = 2\^20 tuples"),
    ("iwae_digits", {"K": "1"}, "K=1 must lie in 2..64"),
])
def test_bad_parameters_are_refused_with_the_limit(name, params, message):
    with pytest.raises(ParameterError, match=message):
        problems.make(name, params)


def test_support_refuses_what_it_cannot_list():
    with pytest.raises(NotImplementedError, match="more than 65536"):
        problems.make("categorical_potts", {"D": "9", "K": "4"}).support()
