"""Plugin components written from docs/adding-an-estimator.md and docs/adding-a-problem.md,
some correct and some deliberately wrong, to measure what `vrbench check` catches.

Each wrong one carries a size parameter, so that the check can be tried at several relative
sizes of the error: ``vrbench check tests.wrong_components:ScaledScoreFunction:scale=1.02``.
"""

import math
from dataclasses import dataclass

import torch

from vrbench.estimators import Estimator, weighted_score
from vrbench.problems import DTYPE, Capability, Problem

# Estimators.


@dataclass(frozen=True)
class ScaledScoreFunction(Estimator):
    """The score-function estimate times ``scale``: E ĝ = scale · ∇J, claimed unbiased."""

    scale: float = 1.02
    family = "score function"

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        samples = problem.sample(theta, (replicates, n_samples), generator)
        return self.scale * weighted_score(problem, theta, samples, problem.f(samples))


@dataclass(frozen=True)
class CopiedScoreFunction(Estimator):
    """A correct copy of the score-function estimator, ĝ = (1/n) Σ_j f(x_j) ∇θ log p(x_j; θ)."""

    family = "score function"

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        samples = problem.sample(theta, (replicates, n_samples), generator)
        return weighted_score(problem, theta, samples, problem.f(samples))


@dataclass(frozen=True)
class RLOOFactorTwo(Estimator):
    """RLOO with its n/(n − 1) hard-coded as 2: exact at n = 2, (2(n − 1)/n − 1) too large above."""

    family = "score function"
    min_samples = 2

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        samples = problem.sample(theta, (replicates, n_samples), generator)
        values = problem.f(samples)
        return weighted_score(problem, theta, samples, 2 * (values - values.mean(1, keepdim=True)))


@dataclass(frozen=True)
class RLOOFromOne(Estimator):
    """RLOO that claims ``min_samples = 1``: at n = 1 its n/(n − 1) is a division by zero."""

    family = "score function"

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        samples = problem.sample(theta, (replicates, n_samples), generator)
        values = problem.f(samples)
        centered = values - values.mean(1, keepdim=True)
        return weighted_score(problem, theta, samples, centered * n_samples / (n_samples - 1))


@dataclass(frozen=True)
class SelfIncludingBaseline(Estimator):
    """Score function minus the batch mean of f *including* the draw itself: E ĝ = (1 − 1/n) ∇J."""

    family = "score function"

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        samples = problem.sample(theta, (replicates, n_samples), generator)
        values = problem.f(samples)
        return weighted_score(problem, theta, samples, values - values.mean(1, keepdim=True))


@dataclass(frozen=True)
class SharedBaselinePerCall(Estimator):
    """Score function with one random baseline per ``estimate()`` call, shared by its replicates.

    Unbiased, but the replicates of a call are not independent: the harness's variance then
    depends on how it splits them into calls.
    """

    family = "score function"

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        samples = problem.sample(theta, (replicates, n_samples), generator)
        baseline = 3 * torch.randn((), generator=generator, dtype=DTYPE)
        return weighted_score(problem, theta, samples, problem.f(samples) - baseline)


# Problems: a Poisson count with a capped reward (the example plugin's problem), and a
# Gaussian with θ = (μ, log σ) and a step reward.


@dataclass(frozen=True)
class Poisson(Problem):
    """Poisson count with log-rate θ and reward f(k) = min(k, cap).

    ``J = cap + Σ_{k<cap} (k − cap) P(k)``, ``∇J = Σ_{k<cap} (k − cap) P(k) (k − λ)``; the score
    is ``k − λ``. ``value_error`` scales value and exact_grad together, ``rate_error`` makes the
    sampler draw from rate λ (1 + rate_error), ``score_sign`` multiplies the score.
    """

    cap: int = 3
    theta: float = 0.5
    value_error: float = 0.0
    rate_error: float = 0.0
    score_sign: float = 1.0

    capabilities = frozenset({Capability.DISCRETE})

    @property
    def dim(self):
        return 1

    def initial_theta(self):
        return torch.tensor([self.theta], dtype=DTYPE)

    def sample(self, theta, shape, generator):
        rate = torch.exp(theta[0]) * (1 + self.rate_error)
        return torch.poisson(rate.expand(shape), generator=generator)

    def f(self, samples):
        return samples.clamp(max=self.cap)

    def score(self, theta, samples):
        return self.score_sign * (samples - torch.exp(theta[0])).unsqueeze(-1)

    def log_prob(self, theta, samples):
        rate = torch.exp(theta[0])
        return samples * theta[0] - rate - torch.lgamma(samples + 1)

    def _probabilities(self, theta):
        rate = torch.exp(theta[0])
        k = torch.arange(self.cap, dtype=DTYPE)
        log_factorial = torch.tensor([math.lgamma(i + 1) for i in range(self.cap)], dtype=DTYPE)
        return k, torch.exp(k * theta[0] - rate - log_factorial)

    def value(self, theta):
        k, prob = self._probabilities(theta)
        return (1 + self.value_error) * (self.cap + ((k - self.cap) * prob).sum())

    def exact_grad(self, theta):
        k, prob = self._probabilities(theta)
        grad = ((k - self.cap) * prob * (k - torch.exp(theta[0]))).sum().reshape(1)
        return (1 + self.value_error) * grad


@dataclass(frozen=True)
class GaussianStepLogScale(Problem):
    """x ~ N(μ, σ²) with θ = (μ, log σ) and the step reward f(x) = 1[x > c].

    ``J = Φ((μ − c)/σ)``, ``∂J/∂μ = φ(z)/σ``, ``∂J/∂log σ = −φ(z) z`` with ``z = (μ − c)/σ``; the
    score is ``(ε/σ, ε² − 1)`` with ``ε = (x − μ)/σ``. ``value_error`` scales value and
    exact_grad, ``scale_error`` makes the sampler draw with σ (1 + scale_error),
    ``score_error`` scales the log σ coordinate of the score, and ``sigma_score`` returns
    ∂/∂σ instead of ∂/∂log σ there (a wrong score on one coordinate).
    """

    c: float = 0.3
    mu: float = 0.5
    log_sigma: float = 0.2
    value_error: float = 0.0
    scale_error: float = 0.0
    score_error: float = 0.0
    sigma_score: bool = False

    capabilities = frozenset({Capability.CONTINUOUS})

    @property
    def dim(self):
        return 2

    def initial_theta(self):
        return torch.tensor([self.mu, self.log_sigma], dtype=DTYPE)

    def sample(self, theta, shape, generator):
        sigma = torch.exp(theta[1]) * (1 + self.scale_error)
        return theta[0] + sigma * torch.randn(shape, generator=generator, dtype=DTYPE)

    def f(self, samples):
        return (samples > self.c).to(DTYPE)

    def score(self, theta, samples):
        sigma = torch.exp(theta[1])
        eps = (samples - theta[0]) / sigma
        second = (eps**2 - 1) / sigma if self.sigma_score else eps**2 - 1
        return torch.stack([eps / sigma, (1 + self.score_error) * second], dim=-1)

    def log_prob(self, theta, samples):
        eps = (samples - theta[0]) / torch.exp(theta[1])
        return -0.5 * eps**2 - theta[1] - 0.5 * math.log(2 * math.pi)

    def value(self, theta):
        z = (theta[0] - self.c) / torch.exp(theta[1])
        return (1 + self.value_error) * torch.special.ndtr(z)

    def exact_grad(self, theta):
        sigma = torch.exp(theta[1])
        z = (theta[0] - self.c) / sigma
        density = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
        return (1 + self.value_error) * torch.stack([density / sigma, -density * z])


# Wrong only away from the first θ, or in how replicates relate: each has a correct twin
# above (CopiedScoreFunction, Poisson, GaussianStepLogScale) or below.

_FIRST_THETA: dict = {}


@dataclass(frozen=True)
class FirstThetaScoreFunction(Estimator):
    """Score function whose score is evaluated at the θ of its first call on each problem, a
    cache meant to save recomputing per-θ constants: right at that θ, biased at any other."""

    family = "score function"

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        cached = _FIRST_THETA.setdefault((id(self), problem, theta.device), theta.clone())
        samples = problem.sample(theta, (replicates, n_samples), generator)
        return weighted_score(problem, cached, samples, problem.f(samples))


@dataclass(frozen=True)
class PairedReplicates(Estimator):
    """Score function that computes half the replicates and returns each twice, in a row:
    every estimate is right and the variance is that of one, but they come in identical
    pairs."""

    family = "score function"

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        half = (replicates + 1) // 2
        samples = problem.sample(theta, (half, n_samples), generator)
        estimates = weighted_score(problem, theta, samples, problem.f(samples))
        return estimates.repeat_interleave(2, dim=0)[:replicates]


@dataclass(frozen=True)
class RepeatedHalves(Estimator):
    """Score function whose second half of the replicates repeats the first half."""

    family = "score function"

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        half = (replicates + 1) // 2
        samples = problem.sample(theta, (half, n_samples), generator)
        estimates = weighted_score(problem, theta, samples, problem.f(samples))
        return torch.cat([estimates, estimates])[:replicates]


@dataclass(frozen=True)
class ReplicateAxisLeaveOneOut(Estimator):
    """Leave-one-out baseline taken over the replicate axis instead of the draw axis: each
    replicate's baseline is the mean f of the *other replicates* of the call (0 alone).

    Unbiased (a replicate's baseline is independent of its own draws), but its variance
    depends on how many replicates one call computes, and the replicates are correlated.
    """

    family = "score function"

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        samples = problem.sample(theta, (replicates, n_samples), generator)
        values = problem.f(samples)
        means = values.mean(dim=1, keepdim=True)
        others = (means.sum() - means) / max(replicates - 1, 1)
        return weighted_score(problem, theta, samples, values - others)


@dataclass(frozen=True)
class DrawAxisLeaveOneOut(Estimator):
    """RLOO done right, the twin of ReplicateAxisLeaveOneOut: each draw's baseline is the
    mean f of the other draws of its own replicate (Kool et al., 2019)."""

    family = "score function"
    min_samples = 2

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        samples = problem.sample(theta, (replicates, n_samples), generator)
        values = problem.f(samples)
        others = (values.sum(dim=1, keepdim=True) - values) / (n_samples - 1)
        return weighted_score(problem, theta, samples, values - others)


@dataclass(frozen=True)
class GaussianStepFromFields(GaussianStepLogScale):
    """GaussianStepLogScale whose exact_grad reads μ and log σ from the problem's fields
    instead of its θ argument: right at the initial θ, wrong anywhere else."""

    def exact_grad(self, theta):
        return super().exact_grad(torch.tensor([self.mu, self.log_sigma], dtype=DTYPE))


@dataclass(frozen=True)
class PoissonSamplerFromFields(Poisson):
    """Poisson whose sampler reads the log-rate from the field ``theta`` instead of its θ
    argument: right at the initial θ only, consistent value and exact_grad everywhere."""

    def sample(self, theta, shape, generator):
        return super().sample(torch.tensor([self.theta], dtype=DTYPE), shape, generator)


@dataclass(frozen=True)
class NoisyRewardPoisson(Poisson):
    """Poisson whose reward carries zero-mean noise drawn inside f from torch's global
    generator: J and ∇J are unchanged, but f is not a function of the samples."""

    def f(self, samples):
        return super().f(samples) + 0.1 * torch.randn(samples.shape, dtype=DTYPE)


@dataclass(frozen=True)
class SeededNoiseReward(Poisson):
    """Poisson whose reward noise comes from a generator seeded inside f: the same on every
    call, so f looks deterministic, but a sample's reward depends on its place in the batch."""

    def f(self, samples):
        noise = torch.randn(samples.shape, generator=torch.Generator().manual_seed(0),
                            dtype=DTYPE)
        return super().f(samples) + 0.1 * noise
