"""The discrete estimators' own identities, their published orderings, and wrong versions of them
that the conformance suite must catch."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import pytest
import torch

from vrbench import estimators, problems
from vrbench.estimators.base import Estimator, weighted_score
from vrbench.estimators.vimco import leave_one_out_bounds
from vrbench.estimators.without_replacement import leave_out_ratios
from vrbench.problems.base import DTYPE
from vrbench.testing import check_estimator


def _estimates(name: str, problem, n: int, replicates: int, seed: int = 0, **params):
    estimator = estimators.make(name, params)
    theta = problem.initial_theta()
    state = estimator.fit(problem, theta, torch.Generator().manual_seed(seed + 1))
    return estimator.estimate(problem, theta, n, replicates, torch.Generator().manual_seed(seed),
                              state)


def _variance_and_se(estimates: torch.Tensor) -> tuple[float, float]:
    """Total variance and its standard error, from the spread of ‖ĝ − ḡ‖²."""
    squared = ((estimates - estimates.mean(0)) ** 2).sum(1)
    return float(squared.mean()), float(squared.std() / math.sqrt(squared.numel()))


def _plackett_luce_set_probability(p: list[float], subset: list[int],
                                   excluded: tuple[int, ...] = ()) -> float:
    """P(the first |subset| draws without replacement are ``subset``), over every order, from
    the distribution ``p`` with ``excluded`` removed and renormalized."""
    total = 1.0 - sum(p[i] for i in excluded)
    probability = 0.0
    for order in itertools.permutations(subset):
        remaining, term = total, 1.0
        for s in order:
            term *= p[s] / remaining
            remaining -= p[s]
        probability += term
    return probability


def test_leave_out_ratios_against_every_ordering():
    p = torch.softmax(1.5 * torch.randn(9, generator=torch.Generator().manual_seed(0),
                                        dtype=DTYPE), 0).tolist()
    chosen = [0, 3, 5, 7]
    first, second = leave_out_ratios(torch.tensor([[p[s] for s in chosen]], dtype=DTYPE),
                                      torch.tensor([1 - sum(p[s] for s in chosen)], dtype=DTYPE))
    whole = _plackett_luce_set_probability(p, chosen)
    for a, i in enumerate(chosen):
        rest = [s for s in chosen if s != i]
        without_i = _plackett_luce_set_probability(p, rest, (i,))
        assert float(first[0, a]) == pytest.approx(without_i / whole, rel=1e-12)
        for b, j in enumerate(chosen):
            expected = 1.0 if i == j else _plackett_luce_set_probability(
                p, [s for s in rest if s != j], (i, j)) / without_i
            assert float(second[0, a, b]) == pytest.approx(expected, rel=1e-12)


def test_vimco_leave_one_out_bound_by_its_definition():
    log_w = torch.randn(3, 5, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    fast = leave_one_out_bounds(log_w)
    for r in range(3):
        for k in range(5):
            others = torch.cat([log_w[r, :k], log_w[r, k + 1 :]])
            replaced = torch.cat([others, others.mean().reshape(1)])
            expected = torch.logsumexp(replaced, 0) - math.log(5)
            assert float(fast[r, k]) == pytest.approx(float(expected), rel=1e-14)


@pytest.mark.parametrize(("name", "n"), [("sum_and_sample", 10), ("unordered_set", 10),
                                         ("unordered_set", 2)])
def test_without_replacement_is_exact_on_the_whole_support(name, n):
    problem = problems.make("categorical_target", {"K": str(n), "target": "1"})
    estimates = _estimates(name, problem, n, 5)
    exact = problem.exact_grad(problem.initial_theta())
    torch.testing.assert_close(estimates, exact.expand(5, -1), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["indecater", "muprop"])
def test_exact_for_separable_potts(name):
    """Without couplings f is a sum over variables and linear in the one-hot codes: IndeCateR
    sums every variable out and MuProp's Taylor control variate is f itself."""
    problem = problems.make("categorical_potts", {"coupling": "0"})
    estimates = _estimates(name, problem, 2, 50)
    exact = problem.exact_grad(problem.initial_theta())
    torch.testing.assert_close(estimates, exact.expand(50, -1), rtol=1e-10, atol=1e-12)


def test_arms_with_two_samples_is_disarm():
    """ARMS with n = 2 antithetic draws has DisARM's distribution (Dimitriev & Zhou, 2021):
    equal variances within 5 standard errors."""
    problem = problems.make("bernoulli_vector", {"D": "4", "theta": "0.7", "t": "0.3"})
    arms, se_arms = _variance_and_se(_estimates("arms", problem, 2, 100_000))
    disarm, se_disarm = _variance_and_se(_estimates("disarm", problem, 1, 100_000))
    assert abs(arms - disarm) < 5 * math.hypot(se_arms, se_disarm)


def test_u2g_is_disarm():
    """U2G (Yin, Ho, Yan, Qian & Zhou, 2020) as written in its authors' code,
    ½ (f(b₁) − f(b₂)) (b₁ − b₂) max(p, 1 − p) with b₁ = 1[u > σ(−θ)] and b₂ = 1[u < σ(θ)], is
    DisARM on the same uniforms, so vrbench lists it once, as ``disarm``."""
    problem = problems.make("bernoulli_vector", {"D": "6", "theta": "0.4", "t": "0.3"})
    theta = torch.linspace(-1.0, 1.5, 6, dtype=DTYPE)
    disarm = estimators.make("disarm").estimate(problem, theta, 3, 50,
                                                torch.Generator().manual_seed(2))
    u = torch.rand((50, 3, 6), generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    p = torch.sigmoid(theta)
    upper, lower = (u > torch.sigmoid(-theta)).to(DTYPE), (u < p).to(DTYPE)
    u2g = (0.5 * (problem.f(upper) - problem.f(lower))[..., None] * (upper - lower)
           * torch.maximum(p, 1 - p)).mean(1)
    torch.testing.assert_close(disarm, u2g)


def test_gumbel_rao_has_the_mean_of_straight_through_and_less_variance():
    """Rao-Blackwellization keeps ST-Gumbel's expectation (bias included) and cuts its
    variance (Paulus et al., ICLR 2021, section 3)."""
    problem = problems.make("categorical_potts", {"D": "3", "K": "3"})
    rao = _estimates("gumbel_rao", problem, 1, 40_000, mc_samples=20)
    st = _estimates("straight_through", problem, 1, 40_000, seed=5)
    se = torch.sqrt(rao.var(0) / 40_000 + st.var(0) / 40_000)
    assert bool(((rao.mean(0) - st.mean(0)).abs() <= 5 * se).all())
    assert _variance_and_se(rao)[0] < 0.7 * _variance_and_se(st)[0]
    exact = problem.exact_grad(problem.initial_theta())
    assert float((st.mean(0) - exact).norm()) > 10 * float(se.norm())  # ST is biased here


def test_vimco_and_nvil_beat_the_score_function_at_equal_cost():
    """The orderings the papers report, by margins far beyond sampling error (each variance
    from 4000 estimates has a relative error of a few per cent)."""
    iwae = problems.make("iwae_digits")
    vimco, _ = _variance_and_se(_estimates("vimco", iwae, 2, 4000))
    naive, _ = _variance_and_se(_estimates("multi_sample_score_function", iwae, 2, 4000))
    assert vimco < 0.1 * naive
    vae = problems.make("categorical_vae_digits")
    nvil, _ = _variance_and_se(_estimates("nvil", vae, 2, 4000))
    baseline, _ = _variance_and_se(_estimates("score_function_baseline", vae, 2, 4000))
    assert nvil < 0.5 * baseline


@dataclass(frozen=True)
class _VIMCOWithoutTheWeightTerm(Estimator):
    """VIMCO's signals alone, missing the −w̃_k term of ∇ log w: biased."""

    name = "vimco_without_weight_term"

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        samples = problem.sample(theta, (replicates, n_samples), generator)
        log_w = problem.log_weights(samples)
        bound = torch.logsumexp(log_w, -1, keepdim=True) - math.log(log_w.shape[-1])
        weights = (bound - leave_one_out_bounds(log_w)) / log_w.shape[2]
        return problem.code_weighted_score(theta, samples, weights)


@dataclass(frozen=True)
class _UnorderedSetWithoutRatios(Estimator):
    """Distinct outcomes weighted by p(s) alone, as if drawn with replacement: biased."""

    name = "unordered_set_without_ratios"

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        support = problem.support()
        probs = problem.log_prob(theta, support)[0].exp()
        u = torch.rand((replicates, probs.shape[0]), generator=generator, dtype=DTYPE)
        index = (probs.log() - torch.log(-torch.log(u))).topk(n_samples, dim=1).indices
        samples = support[0][index]
        return weighted_score(problem, theta, samples, problem.f(samples))


@pytest.mark.parametrize(("wrong", "name", "params"), [
    (_VIMCOWithoutTheWeightTerm, "iwae_digits", {}),
    # Sampling without replacement only departs from independent draws where probability is
    # concentrated: nine outcomes, the likeliest with p ≈ 0.43.
    (_UnorderedSetWithoutRatios, "categorical_potts", {"D": "2", "K": "3", "init_scale": "2"}),
])
def test_conformance_catches_wrong_discrete_estimators(wrong, name, params):
    problem = problems.make(name, params)
    wrong.requires = frozenset(problem.capabilities)
    report = check_estimator(wrong(), problems=[problem], effort=0.1)
    assert any("unbiased on" in failure for failure in report.failures), str(report)
