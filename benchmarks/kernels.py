"""Reference implementations for the speed comparison, written once, outside vrbench.

* ``floor_*``: hand-vectorized numpy kernels of exactly the estimator's math on one problem,
  the fastest this computation goes on this machine without compiling anything;
* ``naive_*``: the way a tutorial writes it: a Python loop over replicates, each building
  the surrogate ``log_prob · f`` with torch.distributions and calling ``backward()``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import gymnasium
import numpy as np
import torch

ARM_MEANS = np.array([0.2, -0.8, 1.5, 0.4, 1.2, -1.5, -0.1, -1.0, 0.8, -0.5])


def _weights(f: np.ndarray, estimator: str) -> np.ndarray:
    if estimator == "score_function":
        return f
    n = f.shape[1]
    return (f - f.mean(axis=1, keepdims=True)) * (n / (n - 1))


def floor_bernoulli(estimator: str, replicates: int, n: int, rng: np.random.Generator,
                    theta: float = 0.0, t: float = 0.499) -> np.ndarray:
    p = 1 / (1 + np.exp(-theta))
    b = (rng.random((replicates, n)) < p).astype(np.float64)
    return (_weights((b - t) ** 2, estimator) * (b - p)).mean(axis=1)[:, None]


def floor_bandit(estimator: str, replicates: int, n: int, rng: np.random.Generator
                 ) -> np.ndarray:
    pi = np.full(10, 0.1)
    arms = np.searchsorted(np.cumsum(pi), rng.random((replicates, n)))
    arms = np.minimum(arms, 9)
    rewards = ARM_MEANS[arms] + rng.standard_normal((replicates, n))
    w = _weights(rewards, estimator)
    counts = np.zeros((replicates, 10))
    np.add.at(counts, (np.repeat(np.arange(replicates), n), arms.ravel()), w.ravel())
    return (counts - w.sum(axis=1, keepdims=True) * pi) / n


def frozenlake_table() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    table = gymnasium.make("FrozenLake-v1", map_name="4x4", is_slippery=True).unwrapped.P
    prob = np.zeros((16, 4, 3))
    nxt = np.zeros((16, 4, 3), dtype=np.int64)
    reward = np.zeros((16, 4, 3))
    done = np.zeros((16, 4, 3), dtype=bool)
    for s in range(16):
        for a in range(4):
            for k, (p, s2, r, d) in enumerate(table[s][a]):
                prob[s, a, k], nxt[s, a, k], reward[s, a, k], done[s, a, k] = p, s2, r, d
    return prob, nxt, reward, done


def floor_frozenlake(estimator: str, replicates: int, n: int, rng: np.random.Generator,
                     table=None, gamma: float = 0.99, horizon: int = 100) -> np.ndarray:
    prob, nxt, reward, done = table if table is not None else frozenlake_table()
    outcome_cdf = np.cumsum(prob, axis=-1).reshape(64, 3)
    batch = replicates * n
    state = np.zeros(batch, dtype=np.int64)
    alive = np.ones(batch, dtype=bool)
    returns = np.zeros(batch)
    counts = np.zeros((batch, 64))
    rows = np.arange(batch)
    discount = 1.0
    for _ in range(horizon):
        action = np.minimum((rng.random(batch) * 4).astype(np.int64), 3)  # uniform policy
        pair = state * 4 + action
        k = np.minimum((rng.random(batch)[:, None] > outcome_cdf[pair]).sum(1), 2)
        flat = pair * 3 + k
        returns += discount * alive * reward.ravel()[flat]
        counts[rows, pair] += alive
        alive &= ~done.ravel()[flat]
        state = nxt.ravel()[flat]
        discount *= gamma
        if not alive.any():
            break
    counts = counts.reshape(replicates, n, 16, 4)
    scores = (counts - counts.sum(-1, keepdims=True) * 0.25).reshape(replicates, n, 64)
    w = _weights(returns.reshape(replicates, n), estimator)
    return np.einsum("rn,rnd->rd", w, scores) / n


class VAEModel(NamedTuple):
    """The digits VAE at its initial θ: images ``(B, 64)``, decoder ``V (64, L)`` and ``d``,
    encoder ``W (L, 64)`` and ``c`` (drawn like vrbench's, so the floor computes its numbers)."""

    images: np.ndarray
    decoder: np.ndarray
    offset: np.ndarray
    weights: np.ndarray
    bias: np.ndarray


def vae_model(batch: int = 16, seed: int = 0, latents: int = 10) -> VAEModel:
    from sklearn.datasets import load_digits

    digits = (load_digits().data > 8).astype(np.float64)
    mean = digits.mean(0).clip(1e-3, 1 - 1e-3)
    decoder = torch.randn(64, latents, generator=torch.Generator().manual_seed(seed),
                          dtype=torch.float64).numpy()
    weights = 0.1 * torch.randn(latents * 64, generator=torch.Generator().manual_seed(seed + 1),
                                dtype=torch.float64).numpy()
    return VAEModel(digits[:batch], decoder, np.log(mean) - np.log1p(-mean),
                    weights.reshape(latents, 64), np.zeros(latents))


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)  # the fastest stable form here


def _log_bernoulli(bits: np.ndarray, logits: np.ndarray) -> np.ndarray:
    return (bits * logits - _softplus(logits)).sum(-1)


def floor_vae(estimator: str, replicates: int, n: int, rng: np.random.Generator,
              model: VAEModel | None = None) -> np.ndarray:
    """Score-function (or RLOO) gradient of the batch-mean ELBO w.r.t. the encoder (W, c).

    RLOO leaves one out per image, as vrbench's does on amortized problems: image b's codes
    are weighted by its own term f_jb − mean_k f_kb (the other images' terms are independent
    of its score); the score function weights every image's codes by the whole f_j."""
    images, decoder, offset, weights, bias = model if model is not None else vae_model()
    batch, latents = images.shape[0], weights.shape[0]
    logits = images @ weights.T + bias  # (B, L)
    probs = 1 / (1 + np.exp(-logits))
    codes = (rng.random((replicates, n, batch, latents)) < probs).astype(np.float64)
    # Σ_j x_j (V z + d)_j = z · (Vᵀ x) + d · x: only the softplus needs every pixel.
    matched = (codes * (images @ decoder)).sum(-1) + images @ offset
    log_joint = matched - _softplus(codes @ decoder.T + offset).sum(-1) - latents * np.log(2)
    items = (log_joint - _log_bernoulli(codes, logits)) / batch  # (R, n, B)
    signal = (items.sum(-1, keepdims=True) if estimator == "score_function"
              else _weights(items, estimator))  # (R, n, 1) or per image (R, n, B)
    # Contract the weights first: Σ_j w_j (z_j − σ) ⊗ x is (Σ_j w_j (z_j − σ)) ⊗ x.
    weighted = np.einsum("rnb,rnbl->rbl", np.broadcast_to(signal, items.shape),
                         codes - probs) / n
    grad_weights = np.einsum("rbl,bp->rlp", weighted, images).reshape(replicates, -1)
    return np.concatenate([grad_weights, weighted.sum(1)], axis=1)


def floor_arms(estimator: str, replicates: int, n: int, rng: np.random.Generator,
               theta: np.ndarray | None = None, t: float = 0.499) -> np.ndarray:
    """ARMS with the Dirichlet copula on ``bernoulli_vector`` (D = 20, f = mean (b − t)²)."""
    assert estimator == "arms"
    p = 1 / (1 + np.exp(-(theta if theta is not None else np.zeros(20))))
    q = np.minimum(p, 1 - p)
    exponentials = -np.log1p(-rng.random((replicates, n, p.size)))
    u = (1 - exponentials / exponentials.sum(axis=1, keepdims=True)) ** (n - 1)
    bits = np.where(p < 0.5, u < p, 1 - u < p).astype(np.float64)
    both = np.maximum(2 * q ** (1 / (n - 1)) - 1, 0.0) ** (n - 1)
    f = ((bits - t) ** 2).mean(-1)
    centred = (f - f.mean(axis=1, keepdims=True)) * n / (n - 1)
    return (centred[..., None] * (bits - p)).mean(axis=1) * p * (1 - p) / (q - both)


class PottsModel(NamedTuple):
    """``categorical_potts`` at its initial θ: fields ``(D, K)``, couplings ``(D, D)`` (upper
    triangle) and logits ``(D, K)``, drawn like vrbench's."""

    fields: np.ndarray
    couplings: np.ndarray
    logits: np.ndarray


def potts_model(variables: int = 5, categories: int = 4, seed: int = 0) -> PottsModel:
    g = torch.Generator().manual_seed(seed)
    fields = torch.randn(variables, categories, generator=g, dtype=torch.float64).numpy()
    couplings = torch.randn(variables, variables, generator=g, dtype=torch.float64).numpy()
    logits = 0.5 * torch.randn(variables * categories,
                               generator=torch.Generator().manual_seed(seed + 1),
                               dtype=torch.float64).numpy()
    return PottsModel(fields, np.triu(couplings, 1), logits.reshape(variables, categories))


def floor_indecater(estimator: str, replicates: int, n: int, rng: np.random.Generator,
                    model: PottsModel | None = None) -> np.ndarray:
    """IndeCateR on ``categorical_potts``: f evaluated at all D·K one-variable changes of each
    draw, as the estimator does for a black-box f."""
    assert estimator == "indecater"
    fields, couplings, logits = model if model is not None else potts_model()
    variables, categories = logits.shape
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    u = rng.random((replicates, n, variables, 1))
    codes = np.minimum((u > probs.cumsum(-1)).sum(-1), categories - 1)
    x = np.eye(categories)[codes]  # (R, n, D, K)
    same = np.eye(variables, dtype=bool)[:, None, :, None]
    variants = np.where(same, np.eye(categories)[None, :, None, :], x[..., None, None, :, :])
    overlaps = variants @ variants.swapaxes(-1, -2)
    values = (variants * fields).sum((-2, -1)) + (overlaps * couplings).sum((-2, -1))
    centred = values - (values * probs).sum(-1, keepdims=True)
    return (probs * centred).mean(axis=1).reshape(replicates, -1)


class IWAEModel(NamedTuple):
    """``iwae_digits`` at its initial θ: images ``(B, 64)``, decoder ``(64, L)`` and offset,
    encoder ``W (L, 64)`` and ``c``, and the number of codes K."""

    images: np.ndarray
    decoder: np.ndarray
    offset: np.ndarray
    weights: np.ndarray
    bias: np.ndarray
    codes: int


def iwae_model(batch: int = 4, latents: int = 4, codes: int = 4, seed: int = 0) -> IWAEModel:
    base = vae_model(batch, seed, latents)
    weights = 0.3 * torch.randn(latents * 64, generator=torch.Generator().manual_seed(seed + 1),
                                dtype=torch.float64).numpy()
    return IWAEModel(base.images, base.decoder, base.offset, weights.reshape(latents, 64),
                     np.zeros(latents), codes)


def floor_vimco(estimator: str, replicates: int, n: int, rng: np.random.Generator,
                model: IWAEModel | None = None) -> np.ndarray:
    """VIMCO (or, for ``multi_sample_score_function``, the shared signal L) on ``iwae_digits``."""
    images, decoder, offset, weights, bias, count = model if model is not None else iwae_model()
    batch, latents = images.shape[0], weights.shape[0]
    logits = images @ weights.T + bias  # (B, L)
    probs = 1 / (1 + np.exp(-logits))
    codes = (rng.random((replicates, n, batch, count, latents)) < probs[:, None]).astype(
        np.float64)
    matched = (codes * (images @ decoder)[:, None]).sum(-1) + (images @ offset)[:, None]
    log_joint = matched - _softplus(codes @ decoder.T + offset).sum(-1) - latents * np.log(2)
    log_w = log_joint - _log_bernoulli(codes, logits[:, None])  # (R, n, B, K)
    top = log_w.max(-1, keepdims=True)
    bound = top + np.log(np.exp(log_w - top).mean(-1, keepdims=True))
    normalized = np.exp(log_w - top) / np.exp(log_w - top).sum(-1, keepdims=True)
    signal = bound
    if estimator == "vimco":
        others = (log_w.sum(-1, keepdims=True) - log_w) / (count - 1)
        replaced = np.where(np.eye(count, dtype=bool), others[..., None], log_w[..., None, :])
        peak = replaced.max(-1)
        loo = peak + np.log(np.exp(replaced - peak[..., None]).sum(-1)) - np.log(count)
        signal = bound - loo
    per_image = np.einsum("rnbk,rnbkl->rbl", (signal - normalized) / batch,
                          codes - probs[:, None]) / n
    grad_weights = np.einsum("rbl,bp->rlp", per_image, images).reshape(replicates, -1)
    return np.concatenate([grad_weights, per_image.sum(1)], axis=1)


ESTIMATOR_FLOOR = {("arms", "bernoulli_vector"): floor_arms,
                   ("indecater", "categorical_potts"): floor_indecater,
                   ("vimco", "iwae_digits"): floor_vimco,
                   ("multi_sample_score_function", "iwae_digits"): floor_vimco}
"""Floors of estimators beyond the score function, each on one problem it applies to."""


def streamed(kernel, estimator: str, replicates: int, n: int, rng: np.random.Generator,
             chunk: int = 100_000, **kwargs) -> np.ndarray:
    """The mean of ``replicates`` estimates of ``kernel``, computed ``chunk`` at a time and not
    kept: how any kernel must run at R = 10⁶ to fit in memory (vrbench's harness streams too)."""
    total = 0.0
    for done in range(0, replicates, chunk):
        total = total + kernel(estimator, min(chunk, replicates - done), n, rng,
                               **kwargs).sum(axis=0)
    return total / replicates


def _naive_weights(f: torch.Tensor, estimator: str) -> torch.Tensor:
    """The weights of one replicate's ``n`` draws: f itself, or RLOO's centred f."""
    if estimator == "score_function":
        return f
    n = f.shape[0]
    return (f - f.mean()) * n / (n - 1)


def _naive_loop(replicates: int, n: int, surrogate) -> np.ndarray:
    out = []
    for _ in range(replicates):
        theta = surrogate.theta.clone().requires_grad_(True)
        loss = surrogate(theta, n)
        loss.backward()
        out.append(theta.grad.numpy().copy())
    return np.stack(out)


class _NaiveBernoulli:
    theta = torch.zeros(1, dtype=torch.float64)

    def __init__(self, estimator: str) -> None:
        self.estimator = estimator

    def __call__(self, theta, n):
        dist = torch.distributions.Bernoulli(logits=theta)
        b = dist.sample((n,))
        f = (b - 0.499) ** 2
        weights = _naive_weights(f, self.estimator)
        return (dist.log_prob(b) * weights).mean()


class _NaiveBandit:
    theta = torch.zeros(10, dtype=torch.float64)

    def __init__(self, estimator: str) -> None:
        self.estimator = estimator
        self.means = torch.tensor(ARM_MEANS)

    def __call__(self, theta, n):
        dist = torch.distributions.Categorical(logits=theta)
        arms = dist.sample((n,))
        f = self.means[arms] + torch.randn(n, dtype=torch.float64)
        weights = _naive_weights(f, self.estimator)
        return (dist.log_prob(arms) * weights).mean()


class _NaiveFrozenLake:
    theta = torch.zeros(64, dtype=torch.float64)

    def __init__(self, estimator: str) -> None:
        self.estimator = estimator
        self.env = gymnasium.make("FrozenLake-v1", map_name="4x4", is_slippery=True,
                                  max_episode_steps=100)
        self.env.reset(seed=0)  # later resets continue this stream

    def __call__(self, theta, n):
        logits = theta.reshape(16, 4)
        log_probs, returns = [], []
        for _ in range(n):
            state, _ = self.env.reset()
            total, discount, episode_log_prob = 0.0, 1.0, 0.0
            for _ in range(100):
                dist = torch.distributions.Categorical(logits=logits[state])
                action = dist.sample()
                episode_log_prob = episode_log_prob + dist.log_prob(action)
                state, reward, terminated, truncated, _ = self.env.step(int(action))
                total += discount * reward
                discount *= 0.99
                if terminated or truncated:
                    break
            log_probs.append(episode_log_prob)
            returns.append(total)
        f = torch.tensor(returns, dtype=torch.float64)
        weights = _naive_weights(f, self.estimator)
        return (torch.stack(log_probs) * weights).mean()


class _NaiveVAE:
    def __init__(self, estimator: str) -> None:
        self.estimator = estimator
        model = vae_model()
        self.images, self.decoder, self.offset = (
            torch.as_tensor(a) for a in (model.images, model.decoder, model.offset))
        self.theta = torch.cat([torch.as_tensor(model.weights).reshape(-1),
                                torch.as_tensor(model.bias)])

    def __call__(self, theta, n):
        weights, bias = theta[:640].reshape(10, 64), theta[640:]
        encoder = torch.distributions.Bernoulli(logits=self.images @ weights.T + bias)
        codes = encoder.sample((n,))  # (n, B, L)
        decoder = torch.distributions.Bernoulli(logits=codes @ self.decoder.T + self.offset)
        log_q = encoder.log_prob(codes).sum(-1)  # (n, B)
        log_joint = decoder.log_prob(self.images).sum(-1) - 10 * np.log(2)
        items = (log_joint - log_q).detach() / self.images.shape[0]  # (n, B)
        if self.estimator == "score_function":
            return (log_q.sum(-1) * items.sum(-1)).mean()
        return (log_q * _naive_weights(items, self.estimator)).sum(-1).mean()  # per image


NAIVE = {"bernoulli_toy": _NaiveBernoulli, "bandit_gaussian_10": _NaiveBandit,
         "frozenlake": _NaiveFrozenLake, "sigmoid_belief_vae_digits": _NaiveVAE}


FLOOR = {"bernoulli_toy": floor_bernoulli, "bandit_gaussian_10": floor_bandit,
         "frozenlake": floor_frozenlake, "sigmoid_belief_vae_digits": floor_vae}


def naive(problem: str, estimator: str, replicates: int, n: int) -> np.ndarray:
    return _naive_loop(replicates, n, NAIVE[problem](estimator))


# Continuous estimators: one kernel per (estimator, problem), each returning (R, dim)
# estimates at the problem's default parameters.

def _maxwell(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    chi = np.sqrt((rng.standard_normal((*shape, 3)) ** 2).sum(-1))
    return np.where(rng.random(shape) < 0.5, -chi, chi)


def floor_mvd_diagonal(replicates: int, n: int, rng: np.random.Generator, size: int = 10,
                       mu: float = 1.0, sigma: float = 1.0, k: float = 0.5) -> np.ndarray:
    """mvd_gaussian on gaussian_quadratic_10d: each coordinate replaced in turn by
    μ ± σW, μ + σM and μ + σε, the others taken from one common draw."""
    shape = (replicates, n, size)
    weibull = np.sqrt(2) * np.sqrt(-np.log1p(-rng.random(shape)))
    maxwell = _maxwell(shape, rng)
    normal = rng.standard_normal(shape)
    common = mu + sigma * rng.standard_normal(shape)
    replacements = mu + sigma * np.stack([weibull, -weibull, maxwell, normal], axis=2)
    eye = np.eye(size, dtype=bool)
    perturbed = np.where(eye, replacements[..., None], common[:, :, None, None, :])
    values = ((perturbed - k) ** 2).sum(-1)  # (R, n, 4, D)
    d_mu = (values[:, :, 0] - values[:, :, 1]) / (sigma * np.sqrt(2 * np.pi))
    d_sigma = (values[:, :, 2] - values[:, :, 3]) / sigma
    return np.concatenate([d_mu, d_sigma], axis=-1).mean(axis=1)


def floor_delta_second_order(replicates: int, n: int, rng: np.random.Generator,
                             omega: float = 3.0, mu: float = 0.5, sigma: float = 0.5
                             ) -> np.ndarray:
    """delta_method_second_order on gaussian_cosine: f = cos(ωx) less its expansion at μ,
    h = f(μ) + f'(μ)(x − μ) + f''(μ)(x − μ)²/2, plus ∇θ E[h] = (f'(μ), σ f''(μ))."""
    eps = rng.standard_normal((replicates, n))
    value, slope = np.cos(omega * mu), -omega * np.sin(omega * mu)
    curvature = -(omega**2) * np.cos(omega * mu)
    shift = sigma * eps
    weights = np.cos(omega * (mu + shift)) - (value + slope * shift + 0.5 * curvature * shift**2)
    score = np.stack([eps / sigma, (eps**2 - 1) / sigma], axis=-1)
    return (weights[..., None] * score).mean(axis=1) + np.array([slope, sigma * curvature])


def floor_lax_step(replicates: int, n: int, rng: np.random.Generator, surrogate,
                   mu: float = 0.5, sigma: float = 1.0) -> np.ndarray:
    """lax on gaussian_step with a fitted surrogate c(x) = φ·(1, z, z², tanh(zV + b)),
    z = (x − centre)/scale: (f − c) s + c'(x) (1, ε)."""
    centre, scale, projection, offset, weights = (np.asarray(a) for a in surrogate)
    eps = rng.standard_normal((replicates, n))
    x = mu + sigma * eps
    z = (x - centre[0]) / scale[0]
    hidden = np.tanh(z[..., None] * projection[0] + offset)
    control = weights[0] + weights[1] * z + weights[2] * z**2 + hidden @ weights[3:]
    slope = (weights[1] + 2 * weights[2] * z
             + ((1 - hidden**2) * projection[0]) @ weights[3:]) / scale[0]
    score = np.stack([eps / sigma, (eps**2 - 1) / sigma], axis=-1)
    pathwise = np.stack([slope, slope * eps], axis=-1)
    return (((x > 0) - control)[..., None] * score + pathwise).mean(axis=1)


class LQRSystem(NamedTuple):
    """lqr_unstable at its defaults (Dean et al.'s dynamics, Q = R = I, gain 0)."""

    A: np.ndarray
    noise: float
    sigma: float
    gamma: float
    horizon: int


def lqr_system() -> LQRSystem:
    return LQRSystem(np.array([[1.01, 0.01, 0.0], [0.01, 1.01, 0.01], [0.0, 0.01, 1.01]]),
                     0.1, 0.5, 0.99, 20)


def _lqr_rollout(system: LQRSystem, replicates: int, n: int, rng: np.random.Generator):
    """States, actions and policy noise (R, n, H, 3) under K = 0 (B = I, x₀ ~ N(0, I))."""
    shape = (replicates, n, system.horizon, 3)
    drive, eps = rng.standard_normal(shape), rng.standard_normal(shape)
    actions = system.sigma * eps
    states = np.empty(shape)
    states[:, :, 0] = drive[:, :, 0]
    for t in range(1, system.horizon):
        states[:, :, t] = (states[:, :, t - 1] @ system.A.T + actions[:, :, t - 1]
                           + system.noise * drive[:, :, t])
    return states, actions, eps


def floor_lqr_score(replicates: int, n: int, rng: np.random.Generator,
                    system: LQRSystem | None = None) -> np.ndarray:
    """score_function on lqr_unstable: f Σ_t ∇log π(u_t|x_t), ∇_K = −ε xᵀ/σ, ∇_logσ = |ε|² − 3."""
    system = system or lqr_system()
    states, actions, eps = _lqr_rollout(system, replicates, n, rng)
    discounts = system.gamma ** np.arange(system.horizon)
    f = ((states**2).sum(-1) + (actions**2).sum(-1)) @ discounts
    d_gain = -np.einsum("rnti,rntj->rnij", eps, states).reshape(replicates, n, 9) / system.sigma
    d_scale = (eps**2).sum((-1, -2)) - 3 * system.horizon
    score = np.concatenate([d_gain, d_scale[..., None]], axis=-1)
    return (f[..., None] * score).mean(axis=1)


def floor_lqr_pathwise(replicates: int, n: int, rng: np.random.Generator,
                       system: LQRSystem | None = None) -> np.ndarray:
    """reparameterization on lqr_unstable by backpropagation through time (the adjoint
    recursion): with λ_t = dF/dx_t and μ_t = dF/du_t, μ_t = 2γ^t u_t + λ_{t+1},
    λ_t = 2γ^t x_t − Kᵀμ_t + Aᵀλ_{t+1} (K = 0 here); dF/dK = −Σ_t μ_t x_tᵀ and
    dF/dlog σ = Σ_t μ_t·σε_t."""
    system = system or lqr_system()
    states, actions, eps = _lqr_rollout(system, replicates, n, rng)
    adjoint = np.zeros((*states.shape[:2], 3))
    d_gain = np.zeros((*states.shape[:2], 3, 3))
    d_scale = np.zeros(states.shape[:2])
    for t in range(system.horizon - 1, -1, -1):
        discount = system.gamma**t
        action_adjoint = 2 * discount * actions[:, :, t] + adjoint
        d_gain -= action_adjoint[..., :, None] * states[:, :, t, None, :]
        d_scale += (action_adjoint * system.sigma * eps[:, :, t]).sum(-1)
        adjoint = 2 * discount * states[:, :, t] + adjoint @ system.A
    grads = np.concatenate([d_gain.reshape(*d_gain.shape[:2], 9), d_scale[..., None]], -1)
    return grads.mean(axis=1)


CONTINUOUS_FLOOR = {
    ("mvd_gaussian", "gaussian_quadratic_10d"): floor_mvd_diagonal,
    ("delta_method_second_order", "gaussian_cosine"): floor_delta_second_order,
    ("lax", "gaussian_step"): floor_lax_step,
    ("score_function", "lqr_unstable"): floor_lqr_score,
    ("reparameterization", "lqr_unstable"): floor_lqr_pathwise,
}
"""Numpy floors of estimators that need no RLOO variant: ``kernel(R, n, rng, **extra)``; lax's
takes its fitted ``surrogate`` (fitted by vrbench, outside the timing)."""


# The workloads of the side-by-side table (vrbench, numpy, JAX): floors of the estimators not
# covered above, each ``kernel(R, n, rng)`` at the problem's default parameters.

def floor_score_bernoulli_vector(replicates: int, n: int, rng: np.random.Generator,
                                 size: int = 20, t: float = 0.499) -> np.ndarray:
    """score_function on bernoulli_vector (θ = 0, so p = 1/2): f = mean_i (b_i − t)²."""
    bits = (rng.random((replicates, n, size)) < 0.5).astype(np.float64)
    f = ((bits - t) ** 2).mean(-1)
    return np.einsum("rn,rnd->rd", f, bits - 0.5) / n


def floor_disarm_bernoulli_vector(replicates: int, n: int, rng: np.random.Generator,
                                  size: int = 20, t: float = 0.499) -> np.ndarray:
    """disarm on bernoulli_vector (θ = 0): ½ (f(b) − f(b̃)) (−1)^{b̃} 1[b ≠ b̃] σ(|θ|)."""
    u = rng.random((replicates, n, size))
    bits, antithetic = u < 0.5, 1 - u < 0.5
    difference = (((bits - t) ** 2).mean(-1) - ((antithetic - t) ** 2).mean(-1))
    weight = np.where(bits != antithetic, np.where(antithetic, -0.25, 0.25), 0.0)
    return np.einsum("rn,rnd->rd", difference, weight) / n


def floor_rloo_bandit_bernoulli(replicates: int, n: int, rng: np.random.Generator,
                                arms: int = 5) -> np.ndarray:
    """rloo on bandit_bernoulli_k (θ = 0, K = 5): arm means evenly spaced in [0.05, 0.95]."""
    means = 0.05 + 0.9 * np.arange(arms) / (arms - 1)
    policy = np.full(arms, 1 / arms)  # softmax(θ) at θ = 0, drawn by inverse CDF as vrbench does
    cdf = np.cumsum(policy)
    pulled = np.minimum(np.searchsorted(cdf, rng.random((replicates, n)), side="right"),
                        arms - 1)
    rewards = (rng.random((replicates, n)) < means[pulled]).astype(np.float64)
    w = _weights(rewards, "rloo")
    rows = np.repeat(np.arange(replicates) * arms, n) + pulled.ravel()
    per_arm = np.bincount(rows, weights=w.ravel(), minlength=replicates * arms)
    return (per_arm.reshape(replicates, arms) - w.sum(1, keepdims=True) * policy) / n


def floor_pathwise_quadratic(replicates: int, n: int, rng: np.random.Generator,
                             size: int = 10, mu: float = 1.0, sigma: float = 1.0,
                             k: float = 0.5) -> np.ndarray:
    """reparameterization on gaussian_quadratic_10d: ∇μ = 2(x − k), ∇σ = 2(x − k)ε."""
    eps = rng.standard_normal((replicates, n, size))
    slope = 2 * (mu + sigma * eps - k)
    return np.concatenate([slope.mean(1), (slope * eps).mean(1)], axis=-1)


def floor_reward_to_go_frozenlake(replicates: int, n: int, rng: np.random.Generator,
                                  table=None, gamma: float = 0.99,
                                  horizon: int = 100) -> np.ndarray:
    """reinforce_reward_to_go on frozenlake (uniform policy): Σ_t ∇log π(a_t|s_t) G_t with
    G_t = Σ_{k≥t} γ^k r_k = G_0 − (discounted rewards before t), in one pass over the steps."""
    prob, nxt, reward, done = table if table is not None else frozenlake_table()
    outcome_cdf = np.cumsum(prob, axis=-1).reshape(64, 3)
    batch = replicates * n
    state = np.zeros(batch, dtype=np.int64)
    alive = np.ones(batch, dtype=bool)
    earned = np.zeros(batch)  # discounted rewards so far
    visits = np.zeros((batch, 64))
    earned_at_visit = np.zeros((batch, 64))
    rows = np.arange(batch)
    discount = 1.0
    for _ in range(horizon):
        action = np.minimum((rng.random(batch) * 4).astype(np.int64), 3)
        pair = state * 4 + action
        k = np.minimum((rng.random(batch)[:, None] > outcome_cdf[pair]).sum(1), 2)
        flat = pair * 3 + k
        visits[rows, pair] += alive
        earned_at_visit[rows, pair] += alive * earned
        earned += discount * alive * reward.ravel()[flat]
        alive &= ~done.ravel()[flat]
        state = nxt.ravel()[flat]
        discount *= gamma
        if not alive.any():
            break
    weighted = (earned[:, None] * visits - earned_at_visit).reshape(replicates, n, 16, 4)
    scores = weighted - weighted.sum(-1, keepdims=True) * 0.25
    return scores.reshape(replicates, n, 64).mean(1)


WORKLOAD_FLOOR = {
    ("score_function", "bernoulli_toy"): lambda r, n, rng: floor_bernoulli(
        "score_function", r, n, rng),
    ("score_function", "bernoulli_vector"): floor_score_bernoulli_vector,
    ("rloo", "bandit_bernoulli_k"): floor_rloo_bandit_bernoulli,
    ("reparameterization", "gaussian_quadratic_10d"): floor_pathwise_quadratic,
    ("reinforce_reward_to_go", "frozenlake"): floor_reward_to_go_frozenlake,
    ("lax", "gaussian_step"): floor_lax_step,
    ("reparameterization", "lqr_unstable"): floor_lqr_pathwise,
    ("disarm", "bernoulli_vector"): floor_disarm_bernoulli_vector,
}
"""Numpy floors of the side-by-side workloads, ``kernel(R, n, rng, **extra)`` (lax's takes its
fitted ``surrogate``)."""


# Language-model RL estimators on the sequence problems: one floor per family (group
# baselines, group normalization with per-output token means, batch whitening, a critic's
# advantages, a KL loss), each for G outputs per prompt of every prompt.

class SequenceModel(NamedTuple):
    """A sequence problem at its initial θ as numpy tables: the output tree (tokens, prefix of
    each token, mask, lengths), rewards ``(P, N)``, the policy ``(P, M, V)``, the outputs'
    cumulative probabilities ``(P, N)``, token log-ratios to π_ref ``(P, N, L)``, the exact
    critic ``(P, N, L)`` and β. Tables are read from vrbench once (outside the timing): the
    floor times the estimator's arithmetic, not the enumeration of the tree."""

    tokens: np.ndarray
    contexts: np.ndarray
    mask: np.ndarray
    lengths: np.ndarray
    rewards: np.ndarray
    policy: np.ndarray
    cdf: np.ndarray
    log_ratio: np.ndarray
    values: np.ndarray
    beta: float


@functools.cache
def sequence_model(spec: str = "lm_pass_fail") -> SequenceModel:
    from vrbench import problems
    from vrbench.components import parse_specs

    parsed = parse_specs(spec)[0]
    problem = problems.make(parsed.name, parsed.params)
    theta = problem.initial_theta()
    tree = problem.tree
    tokens = problem.token_log_prob_table(theta).detach()
    every = torch.arange(problem.n_outputs).expand(1, problem.prompts, -1).transpose(1, 2)
    values = problem.exact_token_values(theta, problem.completions(theta, every[None, 0]),
                                        problem.beta)[0].permute(1, 0, 2)
    return SequenceModel(
        tree.tokens.numpy(), tree.contexts.numpy(), tree.mask.numpy(), tree.lengths.numpy(),
        problem.rewards.numpy(), torch.softmax(problem.context_logits(theta), -1).numpy(),
        np.cumsum(tokens.sum(-1).exp().numpy(), axis=-1),
        (tokens - problem.token_log_prob_table(problem.reference_theta())).numpy(),
        values.numpy(), problem.beta)


def _sequence_draws(model: SequenceModel, replicates: int, n: int, rng: np.random.Generator):
    """Output indices ``(R, n, P)`` drawn from each prompt's cumulative probabilities."""
    prompts = model.cdf.shape[0]
    u = rng.random((prompts, replicates * n)) * model.cdf[:, -1:]
    index = np.stack([np.searchsorted(model.cdf[p], u[p]) for p in range(prompts)])
    return np.minimum(index, model.cdf.shape[1] - 1).T.reshape(replicates, n, prompts)


def _token_score(model: SequenceModel, index: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``Σ_{j,p,t} w ∇ log π(y_t|·)`` per replicate for weights ``(R, n, P, L)``, ``(R, dim)``."""
    replicates, _, prompts = index.shape
    prefixes, vocab = model.policy.shape[1:]
    rows = np.arange(prompts)[:, None] * prefixes + model.contexts[index]  # (R, n, P, L)
    flat = (np.arange(replicates)[:, None, None, None] * prompts * prefixes + rows) * vocab \
        + model.tokens[index]
    grad = np.bincount(flat.ravel(), (weights * model.mask[index]).ravel(),
                       minlength=replicates * prompts * prefixes * vocab)
    grad = grad.reshape(replicates, prompts, prefixes, vocab)
    grad -= grad.sum(-1, keepdims=True) * model.policy
    return grad.reshape(replicates, -1)


def floor_sequence(estimator: str, replicates: int, n: int, rng: np.random.Generator,
                   spec: str = "lm_pass_fail") -> np.ndarray:
    """On-policy estimates of ``rloo_group`` (optionally with the token-level k3 KL loss),
    ``grpo``, ``reinforce_pp`` or ``ppo_clip`` (ratio 1: nothing clipped)."""
    model = sequence_model(spec)
    index = _sequence_draws(model, replicates, n, rng)
    prompts = index.shape[2]
    picked = (np.arange(prompts) * model.cdf.shape[1] + index)  # rows of (P·N) tables
    rewards = model.rewards.reshape(-1)[picked]  # (R, n, P)
    mask = model.mask[index]  # (R, n, P, L)
    log_ratio = model.log_ratio.reshape(-1, model.mask.shape[1])[picked] * mask
    beta = model.beta
    if estimator.startswith("rloo_group"):
        penalized = rewards - beta * log_ratio.sum(-1) if estimator == "rloo_group" else rewards
        weights = ((penalized - penalized.mean(1, keepdims=True)) / (n - 1))[..., None] * mask
        if estimator != "rloo_group":  # token-level k3 as a loss
            weights = weights - beta * -np.expm1(-log_ratio) * mask / n
    elif estimator == "grpo":
        advantage = (rewards - rewards.mean(1, keepdims=True)) / (rewards.std(1, ddof=1,
                                                                              keepdims=True)
                                                                   + 1e-8)
        k3 = -beta * -np.expm1(-log_ratio)
        weights = (advantage[..., None] + k3) * mask / (n * model.lengths[index][..., None])
    elif estimator == "reinforce_pp":
        returns = (rewards[..., None] - beta * np.flip(np.cumsum(np.flip(log_ratio, -1), -1),
                                                       -1)) * mask
        count = mask.sum((1, 2, 3), keepdims=True)
        mean = returns.sum((1, 2, 3), keepdims=True) / count
        variance = (((returns - mean) * mask) ** 2).sum((1, 2, 3), keepdims=True) / count
        weights = (returns - mean) / np.sqrt(variance + 1e-8) * mask * prompts / count
    else:  # ppo_clip with the exact critic
        returns = rewards[..., None] - beta * np.flip(np.cumsum(np.flip(log_ratio, -1), -1), -1)
        values = model.values.reshape(-1, model.mask.shape[1])[picked]
        weights = (returns - values) * mask / n
    return _token_score(model, index, weights) / prompts


SEQUENCE_FLOOR = [("rloo_group", "lm_pass_fail:beta=0.1"),
                  ("rloo_group:kl=k3,kl_in=loss,kl_level=token", "lm_pass_fail:beta=0.1"),
                  ("grpo", "lm_pass_fail:beta=0.1"), ("reinforce_pp", "lm_pass_fail:beta=0.1"),
                  ("ppo_clip", "lm_pass_fail:beta=0.1")]
"""Sequence floors: (estimator spec, problem spec), one per family; :func:`floor_sequence`
computes each on the problem spec's tables."""
