"""The language-model RL estimators, each against its own exact expectation.

On a tiny instance (2 prompts, 3 tokens with EOS, at most 2 tokens: 7 outputs per prompt)
every group of G = 2 outputs per prompt is enumerated (49² = 2,401 draws). For each draw, a
plain-Python implementation of the estimator's published formula (advantages, ratios, clipping,
normalizations and KL terms written out token by token, the score of a token being
``e_y − softmax(logits)`` at its prefix's row of θ) must equal vrbench's estimate of that
draw; the probability-weighted sum is then the estimator's exact expectation. vrbench's
sampled mean must match it (5 standard errors), the unbiased estimators' must equal ∇J, and
a biased one must be biased by exactly what its formula implies: Dr. GRPO's ``(1 − 1/G) ∇J``,
a k1 loss's missing KL gradient, a k3 sequence loss's forward-KL gradient.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from vrbench import estimators, problems

TINY = {"prompts": 2, "vocab": 3, "max_length": 2, "beta": 0.2, "drift": 1.0}
EPS_STD = 1e-8
EPS_WHITEN = 1e-8


@dataclass
class Tables:
    """Everything the reference needs, computed here in numpy from θ's documented layout."""

    prompts: int
    vocab: int
    layout: dict[tuple[int, ...], int]
    outputs: list[tuple[int, ...]]
    index: dict[tuple[int, ...], int]
    rewards: np.ndarray  # (P, N), vrbench's reward table (checked in test_sequence_problems)
    theta: np.ndarray  # (P, M, V)
    old: np.ndarray
    ref: np.ndarray
    beta: float


def make_tables(problem, theta: torch.Tensor) -> Tables:
    vocab, length = problem.vocab, problem.max_length
    prefixes = [p for k in range(length) for p in itertools.product(range(1, vocab), repeat=k)]
    layout = {p: m for m, p in enumerate(prefixes)}
    tree = problem.tree
    outputs, index = [], {}
    for n in range(problem.n_outputs):
        output = tuple(int(t) for t in tree.tokens[n, :int(tree.lengths[n])])
        outputs.append(output)
        index[output] = n
    shape = (problem.prompts, len(layout), vocab)
    return Tables(problem.prompts, vocab, layout, outputs, index, problem.rewards.numpy(),
                  theta.numpy().reshape(shape),
                  problem.behaviour_theta(theta).numpy().reshape(shape),
                  problem.reference_theta().numpy().reshape(shape), problem.beta)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max())
    return e / e.sum()


def token_log_prob(table: np.ndarray, p: int, layout, output, t: int) -> float:
    return math.log(softmax(table[p, layout[output[:t]]])[output[t]])


def token_score(tables: Tables, p: int, output, t: int) -> np.ndarray:
    """∇θ log π(y_t | p, y_<t) as a (P, M, V) array."""
    grad = np.zeros_like(tables.theta)
    row = tables.layout[output[:t]]
    grad[p, row] = -softmax(tables.theta[p, row])
    grad[p, row, output[t]] += 1
    return grad


def k(which: str, x: float) -> float:
    return {"k1": x, "k2": x * x / 2, "k3": math.exp(-x) - 1 + x}[which]


def k_slope(which: str, x: float) -> float:
    return {"k1": 1.0, "k2": x, "k3": 1 - math.exp(-x)}[which]


def clip_slope(ratio: float, advantage: float, low: float, high: float) -> float:
    """d/dlogπ of min(ρA, clip(ρ)A), by cases."""
    clipped = min(max(ratio, 1 - low), 1 + high)
    if ratio * advantage <= clipped * advantage:
        return ratio * advantage
    return 0.0


def reference_estimate(name: str, params: dict[str, Any], tables: Tables,
                       groups: list[list[tuple[int, ...]]]) -> np.ndarray:
    """One estimate from ``groups[p][i]``, the i-th output of prompt p, written out."""
    P, G, beta = tables.prompts, len(groups[0]), tables.beta
    defaults = {"reinforce_sequence": ("k1", "reward", "sequence"),
                "rloo_group": ("k1", "reward", "sequence"),
                "rloo_importance_weighted": ("k1", "reward", "sequence"),
                "grpo": ("k3", "loss", "token"), "dr_grpo": ("k3", "loss", "token"),
                "dapo": ("none", "reward", "sequence"), "gspo": ("none", "reward", "sequence"),
                "reinforce_pp": ("k1", "reward", "token"),
                "reinforce_pp_baseline": ("k1", "reward", "token"),
                "ppo_clip": ("k1", "reward", "token")}[name]
    kl = params.get("kl", defaults[0])
    kl_in = params.get("kl_in", defaults[1])
    level = params.get("kl_level", defaults[2])
    layout = tables.layout

    def logp(table, p, o, t):
        return token_log_prob(table, p, layout, o, t)

    def ell(table, p, o, t):  # token log-ratio to the reference
        return logp(table, p, o, t) - logp(tables.ref, p, o, t)

    def penalized(p, o, table):
        """R − β k when the KL is a reward penalty."""
        reward = tables.rewards[p, tables.index[o]]
        if kl == "none" or kl_in != "reward":
            return reward
        if level == "sequence":
            return reward - beta * k(kl, sum(ell(table, p, o, t) for t in range(len(o))))
        return reward - beta * sum(k(kl, ell(table, p, o, t)) for t in range(len(o)))

    def kl_loss(p, o, token_factor, output_factor):
        """The gradient of −β k as a loss (ℓ at θ)."""
        grad = np.zeros_like(tables.theta)
        if kl == "none" or kl_in != "loss":
            return grad
        if level == "token":
            for t in range(len(o)):
                grad -= beta * k_slope(kl, ell(tables.theta, p, o, t)) * token_factor \
                    * token_score(tables, p, o, t)
        else:
            total = sum(ell(tables.theta, p, o, t) for t in range(len(o)))
            for t in range(len(o)):
                grad -= beta * k_slope(kl, total) * output_factor * token_score(tables, p, o, t)
        return grad

    def ratio(p, o, t):
        return math.exp(logp(tables.theta, p, o, t) - logp(tables.old, p, o, t))

    grad = np.zeros_like(tables.theta)
    if name in ("reinforce_pp", "reinforce_pp_baseline"):
        returns = {}
        for p in range(P):
            rewards = [tables.rewards[p, tables.index[o]] for o in groups[p]]
            for i, o in enumerate(groups[p]):
                base = rewards[i] - (np.mean(rewards) if name == "reinforce_pp_baseline" else 0)
                for t in range(len(o)):
                    tail = sum(k(kl, ell(tables.old, p, o, s)) for s in range(t, len(o)))
                    returns[p, i, t] = base - beta * tail
        values = np.array(list(returns.values()))
        mean, variance = values.mean(), values.var()
        for (p, i, t), value in returns.items():
            advantage = (value - mean) / math.sqrt(variance + EPS_WHITEN)
            o = groups[p][i]
            grad += clip_slope(ratio(p, o, t), advantage, 0.2, 0.2) * P / len(values) \
                * token_score(tables, p, o, t)
        return grad.reshape(-1) / P
    total_tokens = sum(len(o) for group in groups for o in group)
    for p in range(P):
        group = groups[p]
        behaviour = tables.theta if name in ("reinforce_sequence", "rloo_group") else tables.old
        at = tables.theta if name == "rloo_importance_weighted" else behaviour
        r = [penalized(p, o, at) for o in group]
        mean = np.mean(r)
        std = np.std(r, ddof=1) if G > 1 else 0.0
        for i, o in enumerate(group):
            others = (sum(r) - r[i]) / (G - 1) if G > 1 else 0.0
            score = sum(token_score(tables, p, o, t) for t in range(len(o)))
            if name == "reinforce_sequence":
                grad += r[i] / G * score + kl_loss(p, o, 1 / G, 1 / G)
            elif name == "rloo_group":
                grad += (r[i] - others) / G * score + kl_loss(p, o, 1 / G, 1 / G)
            elif name == "rloo_importance_weighted":
                w = math.exp(sum(logp(tables.theta, p, o, t) - logp(tables.old, p, o, t)
                                 for t in range(len(o))))
                grad += w * ((r[i] - others) / G * score + kl_loss(p, o, 1 / G, 1 / G))
            elif name in ("grpo", "dr_grpo", "dapo"):
                if name == "dr_grpo":
                    advantage, factor = r[i] - mean, 1 / G
                else:
                    advantage = (r[i] - mean) / (std + EPS_STD) \
                        if params.get("std_normalize", True) else r[i] - mean
                    factor = (1 / (G * len(o)) if params.get("length_normalize", True)
                              else 1 / G) if name == "grpo" else 1 / sum(len(x) for x in group)
                    if name == "dapo" and params.get("normalize") == "batch":
                        factor = P / total_tokens
                low, high = (0.2, 0.28) if name == "dapo" else (0.2, 0.2)
                for t in range(len(o)):
                    grad += clip_slope(ratio(p, o, t), advantage, low, high) * factor \
                        * token_score(tables, p, o, t)
                grad += kl_loss(p, o, factor, 1 / G)
            elif name == "gspo":
                advantage = (r[i] - mean) / (std + EPS_STD)
                s = math.exp(sum(logp(tables.theta, p, o, t) - logp(tables.old, p, o, t)
                                 for t in range(len(o))) / len(o))
                grad += clip_slope(s, advantage, 3e-4, 4e-4) / (G * len(o)) * score
                grad += kl_loss(p, o, 1 / (G * len(o)), 1 / G)
            elif name == "ppo_clip":
                reward = tables.rewards[p, tables.index[o]]
                for t in range(len(o)):
                    tail = sum(ell(tables.old, p, o, s) for s in range(t, len(o)))
                    advantage = reward - beta * tail - critic(tables, p, o[:t])
                    grad += clip_slope(ratio(p, o, t), advantage, 0.2, 0.2) / G \
                        * token_score(tables, p, o, t)
    return grad.reshape(-1) / P


def critic(tables: Tables, p: int, prefix: tuple[int, ...]) -> float:
    """V_old(prefix): the behaviour policy's expected shaped return from the prefix."""
    numerator = denominator = 0.0
    t = len(prefix)
    for o in tables.outputs:
        if o[:t] != prefix:
            continue
        logp = sum(token_log_prob(tables.old, p, tables.layout, o, s) for s in range(t, len(o)))
        tail = sum(token_log_prob(tables.old, p, tables.layout, o, s)
                   - token_log_prob(tables.ref, p, tables.layout, o, s) for s in range(t, len(o)))
        numerator += math.exp(logp) * (tables.rewards[p, tables.index[o]] - tables.beta * tail)
        denominator += math.exp(logp)
    return numerator / denominator


class FixedDraws:
    """The problem, except that its samples are the given ones."""

    def __init__(self, problem, samples) -> None:
        self._problem, self._samples = problem, samples

    def __getattr__(self, name: str) -> Any:
        return getattr(self._problem, name)

    def sample(self, theta, shape, generator):
        return self._samples

    def sample_behaviour(self, theta, shape, generator):
        return self._samples


def enumerate_draws(problem, theta: torch.Tensor, G: int, behaviour: bool):
    """Every draw of G outputs per prompt, as samples (K, G, P), and its probability."""
    draw_theta = problem.behaviour_theta(theta) if behaviour else theta
    N, P = problem.n_outputs, problem.prompts
    index = torch.tensor(list(itertools.product(range(N), repeat=G * P))).reshape(-1, G, P)
    log_probs = problem.sequence_log_prob_table(draw_theta).detach()
    probability = log_probs[torch.arange(P), index].sum((1, 2)).exp()
    return problem.completions(draw_theta, index), index, probability


def exact_expectation(name: str, params: dict[str, Any], problem, G: int,
                      check_draws: int = 60) -> torch.Tensor:
    """The estimator's exact mean, after checking ``check_draws`` of its draws (spread over
    the enumeration) against the reference formula, and every draw when ``check_draws`` is
    None."""
    estimator = estimators.make(name, params)
    theta = problem.initial_theta()
    behaviour = name not in ("reinforce_sequence", "rloo_group")
    samples, index, probability = enumerate_draws(problem, theta, G, behaviour)
    estimates = estimator.estimate(FixedDraws(problem, samples), theta, G, index.shape[0],
                                   torch.Generator().manual_seed(0))
    tables = make_tables(problem, theta)
    picks = range(index.shape[0]) if check_draws is None else np.linspace(
        0, index.shape[0] - 1, check_draws).astype(int)
    for row in picks:
        groups = [[tables.outputs[int(index[row, i, p])] for i in range(G)]
                  for p in range(problem.prompts)]
        expected = reference_estimate(name, params, tables, groups)
        np.testing.assert_allclose(estimates[row].numpy(), expected, rtol=1e-9, atol=1e-12,
                                   err_msg=f"{name} {params} on draw {row}")
    assert probability.sum().item() == pytest.approx(1.0, rel=1e-12)
    return probability @ estimates


DEFAULTS = ["reinforce_sequence", "rloo_group", "rloo_importance_weighted", "grpo", "dr_grpo",
            "dapo", "gspo", "reinforce_pp", "reinforce_pp_baseline", "ppo_clip"]
SETTINGS = [("lm_partial_credit", {}), ("lm_length_penalty", {"staleness": 0.5, "cache": 1})]


@pytest.mark.parametrize(("problem_name", "setting"), SETTINGS)
@pytest.mark.parametrize("name", DEFAULTS)
def test_every_draw_matches_the_formula_and_the_sampled_mean_the_exact_one(
        name, problem_name, setting):
    problem = problems.make(problem_name, {**TINY, **setting})
    exact = exact_expectation(name, {}, problem, 2)
    theta = problem.initial_theta()
    replicates = 40_000
    sampled = estimators.make(name).estimate(problem, theta, 2, replicates,
                                             torch.Generator().manual_seed(5))
    mean, se = sampled.mean(0), sampled.std(0) / math.sqrt(replicates)
    varying = se > 1e-14
    z = ((mean - exact) / se)[varying]
    assert z.abs().max() < 5.0, (name, float(z.abs().max()))
    torch.testing.assert_close(mean[~varying], exact[~varying], rtol=0, atol=1e-12)
    grad = problem.exact_grad(theta)
    if estimators.make(name).unbiased:
        torch.testing.assert_close(exact, grad, rtol=1e-9, atol=1e-12)
    elif name == "ppo_clip" and problem.staleness == 0:
        torch.testing.assert_close(exact, grad, rtol=1e-9, atol=1e-12)  # unbiased on-policy
    else:
        assert (exact - grad).norm() > 1e-3 * grad.norm(), name


KL_CONFIGURATIONS = [(e, i, lv) for e in ("k1", "k2", "k3") for i in ("reward", "loss")
                     for lv in ("sequence", "token")]


@pytest.mark.parametrize(("kl", "kl_in", "kl_level"), KL_CONFIGURATIONS)
def test_kl_configurations_of_rloo_against_their_formulas(kl, kl_in, kl_level):
    """RLOO with each of the 12 KL configurations: every draw against the formula; and the
    KL term's exact expectation against what Tang & Munos (2025) derive for it."""
    problem = problems.make("lm_pass_fail", TINY)
    params = {"kl": kl, "kl_in": kl_in, "kl_level": kl_level}
    exact = exact_expectation("rloo_group", params, problem, 2, check_draws=400)
    theta = problem.initial_theta()
    grad = problem.exact_grad(theta)
    # The reward part alone is unbiased: what is left is the KL term's expectation.
    reward_grad = problems.make("lm_pass_fail", {**TINY, "beta": 0.0}).exact_grad(theta)
    kl_term = (exact - reward_grad) / -problem.beta
    reverse = (reward_grad - grad) / problem.beta  # ∇ KL(π_θ ‖ π_ref)
    if (kl, kl_in) == ("k1", "reward") or (kl, kl_in, kl_level) == ("k2", "loss", "sequence"):
        torch.testing.assert_close(kl_term, reverse, rtol=1e-8, atol=1e-12)
        assert estimators.make("rloo_group", params).unbiased
    else:
        assert not estimators.make("rloo_group", params).unbiased
        assert (kl_term - reverse).norm() > 1e-3 * reverse.norm()
    if (kl, kl_in) == ("k1", "loss"):  # ∇ log π has mean zero: no KL gradient at all
        torch.testing.assert_close(kl_term, torch.zeros_like(kl_term), rtol=0, atol=1e-12)
    if (kl, kl_in, kl_level) == ("k3", "loss", "sequence"):  # the forward KL's gradient
        torch.testing.assert_close(kl_term, forward_kl_gradient(problem, theta), rtol=1e-8,
                                   atol=1e-12)
    if (kl, kl_in, kl_level) == ("k2", "loss", "token"):  # the partial gradient
        torch.testing.assert_close(kl_term, partial_kl_gradient(problem, theta), rtol=1e-8,
                                   atol=1e-12)


def forward_kl_gradient(problem, theta: torch.Tensor) -> torch.Tensor:
    """∇θ KL(π_ref ‖ π_θ) = −Σ_o π_ref(o) ∇ log π_θ(o), averaged over prompts, by autograd."""
    point = theta.clone().requires_grad_(True)
    log_probs = problem.sequence_log_prob_table(point)
    reference = problem.sequence_log_prob_table(problem.reference_theta()).exp()
    (grad,) = torch.autograd.grad(-(reference * log_probs).sum(-1).mean(), point)
    return grad


def partial_kl_gradient(problem, theta: torch.Tensor) -> torch.Tensor:
    """Σ_t E[ℓ_t ∇ log π(y_t|·)]: each token's KL gradient with its prefix held fixed."""
    point = theta.clone().requires_grad_(True)
    tokens = problem.token_log_prob_table(point)
    ratio = tokens.detach() - problem.token_log_prob_table(problem.reference_theta()).detach()
    probs = tokens.sum(-1).exp().detach()
    (grad,) = torch.autograd.grad((probs[..., None] * ratio * tokens).sum((-1, -2)).mean(),
                                  point)
    return grad


def test_dr_grpo_is_the_gradient_scaled_by_one_minus_one_over_g():
    """On-policy, without KL, Dr. GRPO's mean is exactly (1 − 1/G) ∇J (G = 3, one prompt)."""
    problem = problems.make("lm_pass_fail", {**TINY, "prompts": 1, "beta": 0.0})
    exact = exact_expectation("dr_grpo", {}, problem, 3)
    torch.testing.assert_close(exact, (1 - 1 / 3) * problem.exact_grad(problem.initial_theta()),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("name", "params"), [
    ("dapo", {"normalize": "batch"}), ("grpo", {"std_normalize": False}),
    ("grpo", {"length_normalize": False}),
    ("grpo", {"kl": "k2", "kl_in": "reward", "kl_level": "token"}),
    ("dr_grpo", {"kl": "k1", "kl_in": "loss", "kl_level": "sequence"})])
def test_variants_against_their_formulas(name, params):
    """DAPO's batch-level token mean, GRPO without one of its normalizations, and the KL
    configurations on the off-policy estimators, draw by draw (staleness 0.5)."""
    problem = problems.make("lm_length_penalty", {**TINY, "cache": 1, "staleness": 0.5})
    exact_expectation(name, params, problem, 2)


def test_configuration_decides_the_claim():
    assert estimators.make("rloo_group").unbiased
    assert not estimators.make("rloo_group", {"kl": "k3", "kl_in": "loss"}).unbiased
    assert estimators.registry.get("rloo_group").unbiased
    assert not estimators.registry.get("grpo").unbiased
    from vrbench.errors import ParameterError

    with pytest.raises(ParameterError, match="kl='k4' is not one of none, k1, k2, k3"):
        estimators.make("grpo", {"kl": "k4"})
    with pytest.raises(ParameterError, match="the critic's return"):
        estimators.make("ppo_clip", {"kl": "k3"})
