"""Jitted JAX kernels of the side-by-side workloads: what a researcher would write instead of
using vrbench, in float64, compiled by XLA.

Each kernel is the math of one replicate (its n draws), ``jax.vmap``-ed over a batch of
replicates and ``jax.jit``-ed for that batch size; pathwise terms use ``jax.grad`` as JAX code
would. :func:`make` builds one; :func:`run` streams R estimates through it a batch at a time,
one jitted call per batch (as vrbench and the numpy floors stream theirs); :func:`best_batch`
picks the fastest batch size per call. JAX is optional (``pip install 'vrbench[jax]'``):
importing this module without it raises ``ImportError``, and the benchmarks and tests that
use it skip."""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
# XLA's own bit generator: on the CPU about four times faster than JAX's default (threefry),
# which a researcher after speed would change too.
jax.config.update("jax_default_prng_impl", "rbg")

import jax.numpy as jnp  # noqa: E402  (after float64 is enabled)

F64 = jnp.float64
Kernel = Callable[[jax.Array, jax.Array], jax.Array]
"""``kernel(key, theta) → (batch, dim)`` estimates."""


def _bernoulli_f(bits: jax.Array, t: float) -> jax.Array:
    return ((bits - t) ** 2).mean(-1)


def score_bernoulli(batch: int, n: int, size: int, t: float = 0.499) -> Kernel:
    """score_function on bernoulli_toy (size 1) and bernoulli_vector: f (b − σ(θ))."""

    def one(u, theta):
        p = jax.nn.sigmoid(theta)
        bits = (u < p).astype(F64)
        return _bernoulli_f(bits, t) @ (bits - p) / n

    def kernel(key, theta):
        u = jax.random.uniform(key, (batch, n, size), F64)
        return jax.vmap(one, (0, None))(u, theta)

    return kernel


def disarm_bernoulli(batch: int, n: int, size: int, t: float = 0.499) -> Kernel:
    """disarm on bernoulli_vector: ½ (f(b) − f(b̃)) (−1)^{b̃} 1[b ≠ b̃] σ(|θ|)."""

    def one(u, theta):
        p = jax.nn.sigmoid(theta)
        bits, antithetic = (u < p).astype(F64), (1 - u < p).astype(F64)
        weight = 0.5 * (1 - 2 * antithetic) * (bits != antithetic) * jax.nn.sigmoid(
            jnp.abs(theta))
        return (_bernoulli_f(bits, t) - _bernoulli_f(antithetic, t)) @ weight / n

    def kernel(key, theta):
        u = jax.random.uniform(key, (batch, n, size), F64)
        return jax.vmap(one, (0, None))(u, theta)

    return kernel


def rloo_bandit_bernoulli(batch: int, n: int, arms: int = 5) -> Kernel:
    """rloo on bandit_bernoulli_k: arms by inverse CDF of softmax(θ), Bernoulli rewards."""
    means = 0.05 + 0.9 * jnp.arange(arms, dtype=F64) / (arms - 1)

    def one(u, theta):
        policy = jax.nn.softmax(theta)
        pulled = jnp.minimum((u[0][:, None] > jnp.cumsum(policy)).sum(-1), arms - 1)
        rewards = (u[1] < means[pulled]).astype(F64)
        w = (rewards - rewards.mean()) * n / (n - 1)
        onehot = jax.nn.one_hot(pulled, arms, dtype=F64)
        return (w @ onehot - w.sum() * policy) / n

    def kernel(key, theta):
        u = jax.random.uniform(key, (batch, 2, n), F64)
        return jax.vmap(one, (0, None))(u, theta)

    return kernel


def pathwise_quadratic(batch: int, n: int, size: int = 10, k: float = 0.5) -> Kernel:
    """reparameterization on gaussian_quadratic_10d: ∇θ mean_j Σ_d (μ_d + σ_d ε_jd − k)²."""

    def objective(theta, eps):
        x = theta[:size] + theta[size:] * eps
        return ((x - k) ** 2).sum(-1).mean()

    def kernel(key, theta):
        eps = jax.random.normal(key, (batch, n, size), F64)
        return jax.vmap(jax.grad(objective), (None, 0))(theta, eps)

    return kernel


def lax_gaussian_step(batch: int, n: int, surrogate) -> Kernel:
    """lax on gaussian_step with vrbench's fitted surrogate c(x) = φ·(1, z, z², tanh(zV + b)):
    (f − c) ∇log p + ∇θ c(μ + σε)."""
    centre, scale, projection, offset, weights = (jnp.asarray(np.asarray(a)) for a in surrogate)

    def control(x):
        z = (x - centre[0]) / scale[0]
        hidden = jnp.tanh(z[..., None] * projection[0] + offset)
        return weights[0] + weights[1] * z + weights[2] * z**2 + hidden @ weights[3:]

    def one(eps, theta):
        x = theta[0] + theta[1] * eps
        score = jnp.stack([eps / theta[1], (eps**2 - 1) / theta[1]], -1)
        pathwise = jax.grad(lambda th: control(th[0] + th[1] * eps).mean())(theta)
        return ((x > 0) - control(x)) @ score / n + pathwise

    def kernel(key, theta):
        eps = jax.random.normal(key, (batch, n), F64)
        return jax.vmap(one, (0, None))(eps, theta)

    return kernel


def pathwise_lqr(batch: int, n: int, system) -> Kernel:
    """reparameterization on lqr_unstable: ∇θ of the mean discounted cost of n rollouts of
    ``x' = (A − K) x + σε + w`` (B = Q = R = I), through the dynamics by jax.grad."""
    a, noise, gamma, horizon = jnp.asarray(system.A), system.noise, system.gamma, system.horizon

    def objective(theta, drive, eps):
        gain, sigma = theta[:9].reshape(3, 3), jnp.exp(theta[9])
        state, cost = drive[:, 0], 0.0
        for t in range(horizon):  # unrolled: H = 20 steps
            action = sigma * eps[:, t] - state @ gain.T
            cost = cost + gamma**t * ((state**2).sum(-1) + (action**2).sum(-1))
            if t + 1 < horizon:
                state = state @ a.T + action + noise * drive[:, t + 1]
        return cost.mean()

    def kernel(key, theta):
        drive, eps = jax.random.normal(key, (2, batch, n, horizon, 3), F64)
        return jax.vmap(jax.grad(objective), (None, 0, 0))(theta, drive, eps)

    return kernel


def reward_to_go_frozenlake(batch: int, n: int, table, gamma: float = 0.99,
                            horizon: int = 100) -> Kernel:
    """reinforce_reward_to_go on frozenlake: the whole batch of episodes steps together in a
    ``lax.while_loop`` until its last episode ends, counting each episode's visits and the
    discounted reward earned before each, so ``Σ_t ∇log π(a_t|s_t) G_t`` needs one pass
    (``G_t`` is the return less what was earned before t)."""
    prob, nxt, reward, done = table
    outcome_cdf = jnp.asarray(np.cumsum(prob, axis=-1).reshape(64, 3))
    flat_next, flat_reward = jnp.asarray(nxt.ravel()), jnp.asarray(reward.ravel())
    flat_done = jnp.asarray(done.ravel())
    episodes = batch * n
    rows = jnp.arange(episodes)

    def kernel(key, theta):
        policy = jax.nn.softmax(theta.reshape(16, 4), -1)
        policy_cdf = jnp.cumsum(policy, -1)

        def step(carry):
            t, key, state, alive, earned, visits, earned_at_visit = carry
            key, draw = jax.random.split(key)
            u = jax.random.uniform(draw, (2, episodes), F64)
            action = jnp.minimum((u[0][:, None] > policy_cdf[state]).sum(-1), 3)
            pair = state * 4 + action
            flat = pair * 3 + jnp.minimum((u[1][:, None] > outcome_cdf[pair]).sum(-1), 2)
            weight = alive.astype(F64)
            visits = visits.at[rows, pair].add(weight)
            earned_at_visit = earned_at_visit.at[rows, pair].add(weight * earned)
            earned = earned + weight * gamma**t * flat_reward[flat]
            alive = alive & ~flat_done[flat]
            return t + 1, key, flat_next[flat], alive, earned, visits, earned_at_visit

        start = (0, key, jnp.zeros(episodes, flat_next.dtype), jnp.ones(episodes, bool),
                 jnp.zeros(episodes, F64), jnp.zeros((episodes, 64), F64),
                 jnp.zeros((episodes, 64), F64))
        *_, earned, visits, earned_at_visit = jax.lax.while_loop(
            lambda carry: carry[3].any() & (carry[0] < horizon), step, start)
        weighted = (earned[:, None] * visits - earned_at_visit).reshape(batch, n, 16, 4)
        scores = weighted - weighted.sum(-1, keepdims=True) * policy
        return scores.reshape(batch, n, 64).mean(1)

    return kernel


def make(estimator: str, problem: str, batch: int, n: int, **extra) -> Callable:
    """The jitted kernel of one workload for ``batch`` replicates of ``n`` draws
    (:func:`streaming` wraps it for R estimates)."""
    builders = {
        ("score_function", "bernoulli_toy"): lambda: score_bernoulli(batch, n, 1),
        ("score_function", "bernoulli_vector"): lambda: score_bernoulli(batch, n, 20),
        ("disarm", "bernoulli_vector"): lambda: disarm_bernoulli(batch, n, 20),
        ("rloo", "bandit_bernoulli_k"): lambda: rloo_bandit_bernoulli(batch, n),
        ("reparameterization", "gaussian_quadratic_10d"): lambda: pathwise_quadratic(batch, n),
        ("lax", "gaussian_step"): lambda: lax_gaussian_step(batch, n, extra["surrogate"]),
        ("reparameterization", "lqr_unstable"): lambda: pathwise_lqr(batch, n,
                                                                      extra["system"]),
        ("reinforce_reward_to_go", "frozenlake"): lambda: reward_to_go_frozenlake(
            batch, n, extra["table"]),
    }
    return jax.jit(builders[estimator, problem]())


WORKLOADS = frozenset({("score_function", "bernoulli_toy"), ("score_function", "bernoulli_vector"),
                       ("disarm", "bernoulli_vector"), ("rloo", "bandit_bernoulli_k"),
                       ("reparameterization", "gaussian_quadratic_10d"), ("lax", "gaussian_step"),
                       ("reparameterization", "lqr_unstable"),
                       ("reinforce_reward_to_go", "frozenlake")})


def streaming(kernel: Callable) -> Callable:
    """One jitted call per batch: the batch's key folded from the stream's, its estimates
    (returned, so materialized as vrbench's and the floors' are) and the running sum."""

    @jax.jit
    def step(key, index, theta, total):
        estimates = kernel(jax.random.fold_in(key, index), theta)
        return total + estimates.sum(0), estimates

    return step


def run(step: Callable, theta: jax.Array, replicates: int, batch: int,
        key: jax.Array) -> np.ndarray:
    """The sum of ``replicates`` estimates (a multiple of ``batch``), ``batch`` per call of
    ``step`` (from :func:`streaming`)."""
    if replicates % batch:
        raise ValueError(f"{replicates} replicates are not a multiple of the batch {batch}")
    total = jnp.zeros_like(theta)
    for index in range(replicates // batch):
        total, _ = step(key, index, theta, total)
    return np.asarray(jax.block_until_ready(total))


BATCHES = (1_000, 10_000, 100_000)
"""Batch sizes per call that :func:`best_batch` tries."""


def best_batch(build: Callable[[int], Callable], theta: jax.Array, replicates: int,
               rounds: int = 3) -> tuple[int, Callable]:
    """The batch size (of :data:`BATCHES` that divide ``replicates``) whose streaming step
    ran fastest per estimate over ``rounds`` calls after compiling, and that step."""
    best = None
    key = jax.random.key(0)
    for batch in [b for b in BATCHES if replicates % b == 0] or [replicates]:
        step = streaming(build(batch))
        total = jnp.zeros_like(theta)
        jax.block_until_ready(step(key, 0, theta, total))  # compile
        times = []
        for index in range(rounds):
            start = time.perf_counter()
            jax.block_until_ready(step(key, index, theta, total))
            times.append((time.perf_counter() - start) / batch)
        if best is None or min(times) < best[0]:
            best = (min(times), batch, step)
    assert best is not None
    return best[1], best[2]
