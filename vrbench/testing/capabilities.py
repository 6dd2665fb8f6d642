"""Each capability as one record: what it promises, the members it needs, and its checks.

A problem declares capabilities (:class:`~vrbench.problems.base.Capability`); an estimator
requires them. :data:`CAPABILITIES` holds one :class:`CapabilitySpec` per capability, and
everything that speaks of a capability reads it from there: ``vrbench list capabilities``,
the documentation's capabilities page, :func:`~vrbench.testing.check_problem` (which checks the
members and runs the capability's own checks on every problem that declares it) and
:func:`~vrbench.testing.parametrize_with_checks`. The estimators a capability lets run are
not written here: :func:`estimators_using` reads them from the estimator registry.

The records live beside the conformance suite rather than beside the enum because their
checks are the suite's (problems come before ``vrbench.testing`` in the flow of data, and
never import it). Adding a capability is one record here and one member of the enum; see
``docs/adding-a-capability.md``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from vrbench import devices
from vrbench.bench.reference import Reference
from vrbench.devices import on_device
from vrbench.estimators.base import per_replicate_gradient
from vrbench.problems.base import DTYPE, Capability, Problem, gaussian_event_shape
from vrbench.testing.common import chunks, float64_cpu
from vrbench.testing.report import CheckReport

SHAPE = (100, 50)
"""Replicates and draws of the samples the exact checks compare on."""

EXACT_TOLERANCE = 1e-9
"""Relative tolerance of identities that hold exactly (enumeration, autograd, shortcuts)."""

RELAX_TEMPERATURE = 0.5
UNIFORM_EPSILON = 1e-12

Draw = Callable[[int, torch.Generator], Iterator[Tensor]]
"""``draw(count, generator)``: ``count`` draws of a sampled test, in chunks ``(size, k)``."""


@dataclass(frozen=True)
class SampledTest:
    """A sampled test: its name, its draws ``(size, k)``, the expected mean and its units."""

    name: str
    draw: Draw
    expected: Tensor
    units: Tensor | None
    unit: str
    grad: Tensor | None = None
    """∇J, when the draws are projections on its :func:`bias_directions`."""
    expected_se: Tensor | None = None
    """The standard errors of ``expected`` where it comes from a reference."""
    group: str = "protocol"
    """The capability whose record yields the test, or ``protocol`` for the tests every
    problem runs."""


@dataclass(frozen=True)
class ExactContext:
    """What a capability's exact checks see: ``samples`` of shape :data:`SHAPE` at ``theta``
    and their ``scores``, and the report they record into."""

    report: CheckReport
    problem: Problem
    theta: Tensor
    samples: Any
    scores: Tensor
    seed: int
    device: torch.device


class SampledContext:
    """What a capability's sampled tests see at one θ, and the ways to draw they share.

    Each helper returns a :data:`Draw`: the draws of the quantity whose mean the test holds
    against ``value`` (J) or ``expected_grad`` (∇J projected on the reference's directions).
    """

    def __init__(self, problem: Problem, theta: Tensor, value: Tensor, reference: Reference,
                 device: torch.device) -> None:
        self.problem, self.theta, self.value, self.device = problem, theta, value, device
        self.true_grad = reference.grad
        directions = reference.directions
        self.directions = directions.to(theta.device)
        self.norm = torch.full((directions.shape[0],), float(self.true_grad.norm()),
                               dtype=DTYPE)
        self.j_units = value.abs()
        self.expected_grad = directions @ self.true_grad
        self.zeros = torch.zeros(directions.shape[0], dtype=DTYPE)
        self.grad_test = "E[(f − J)·score] equals ∇J"
        if type(problem).direct_gradient is not Problem.direct_gradient:
            self.grad_test = "E[(f − J)·score] + E[∇θ f] equals ∇J"

    def stream(self, compute: Callable[[int, torch.Generator], Tensor]) -> Draw:
        def draw(count: int, generator: torch.Generator) -> Iterator[Tensor]:
            for size in chunks(self.problem, 1, count):
                with on_device(self.device):
                    yield float64_cpu(compute(size, generator))
        return draw

    def f_mean(self, sampler: Callable[[int, torch.Generator], Any],
               f: Callable[[Any], Tensor] | None = None) -> Draw:
        evaluate = self.problem.f if f is None else f
        return self.stream(lambda size, g: evaluate(sampler(size, g)).reshape(size, 1))

    def direct(self, size: int, g: torch.Generator) -> Tensor | float:
        # E[∇θ f] with x held fixed, for a problem whose f depends on θ (a VAE's decoder):
        # ∇J = E[(f − J) score] + E[∇θ f].
        part = self.problem.direct_gradient(self.theta, size, g)
        return 0.0 if part is None else part @ self.directions.T

    def centered_score(self, sampler: Callable[[int, torch.Generator], Any]) -> Draw:
        def compute(size: int, g: torch.Generator) -> Tensor:
            samples = sampler(size, g)
            weights = self.problem.f(samples) - self.value.to(self.theta.device)
            return self.problem.weighted_score(self.theta, samples, weights) @ (
                self.directions.T) + self.direct(size, g)
        return self.stream(compute)

    def pathwise_mean(self, draw_noise: Callable[[int, torch.Generator], Tensor],
                      to_samples: Callable[[Tensor, Tensor], Any]) -> Draw:
        # The gradient of f's sample mean through to_samples(θ, noise), with the noise held
        # fixed while each replicate's copy of θ is differentiated.
        def compute(size: int, g: torch.Generator) -> Tensor:
            noise = draw_noise(size, g)
            return per_replicate_gradient(self.theta, size, lambda copies: self.problem.f(
                to_samples(copies, noise)).mean(1)) @ self.directions.T
        return self.stream(compute)

    def sample(self, size: int, g: torch.Generator) -> Any:
        return self.problem.sample(self.theta, (size, 1), g)

    def standard_noise(self, size: int, g: torch.Generator) -> Tensor:
        return self.problem.sample_noise((size, 1), g)

    def uniforms(self, size: int, g: torch.Generator) -> Tensor:
        return torch.rand((size, 1, self.problem.noise_dim), generator=g, dtype=DTYPE).clamp(
            UNIFORM_EPSILON, 1 - UNIFORM_EPSILON)

    def mean_of_f(self, name: str, draw: Draw) -> SampledTest:
        """The test that f's mean under ``draw`` is J."""
        return SampledTest(name, draw, self.value, self.j_units, "|J|")

    def gradient(self, name: str, draw: Draw) -> SampledTest:
        """The test that the mean of ``draw`` (projected gradients) is ∇J."""
        return SampledTest(name, draw, self.expected_grad, self.norm, "‖∇J‖", self.true_grad)


ExactChecks = Callable[[ExactContext], None]
SampledChecks = Callable[[SampledContext], Iterator[SampledTest]]


@dataclass(frozen=True)
class CapabilitySpec:
    """One capability: its promise, the members it needs, and the generator of its checks.

    ``exact_checks`` records identities that hold exactly on samples of the problem (a
    Gaussian's score, one-hot categoricals); ``sampled_checks`` yields the statistical tests
    of every way the capability lets estimators draw (``transform``, ``from_uniforms``, ...),
    each sized by :func:`~vrbench.testing.check_problem` to its tolerance. Both run only on a
    problem that declares the capability, as scikit-learn's checks are gated on tags.
    """

    capability: Capability
    description: str
    """What a problem that declares it promises, and what that lets estimators do."""
    members: tuple[str, ...] = ()
    """The optional :class:`~vrbench.problems.base.Problem` members it needs; ``vrbench check``
    fails a problem that declares it without overriding them."""
    exact_checks: ExactChecks | None = None
    sampled_checks: SampledChecks | None = None
    score_gradient: bool = True
    """Whether ``∇J = E[(f − J) ∇θ log p]`` (plus ``E[∇θ f]``) holds, which the core sampled
    test checks; False where the capability's checks hold ∇J to another form instead."""


# ---------------------------------------------------------------------------------------------
# The exact and sampled checks of each capability


def mismatch(actual: Tensor, expected: Tensor, what: str) -> str | None:
    """Why ``actual`` differs from ``expected`` beyond rounding, or None."""
    actual, expected = float64_cpu(actual), float64_cpu(expected)
    if actual.shape != expected.shape:
        return f"{what}: shape {tuple(actual.shape)}, expected {tuple(expected.shape)}"
    error = float((actual - expected).abs().max()) if actual.numel() else 0.0
    scale = max(float(expected.abs().max()) if expected.numel() else 0.0, 1e-300)
    if error <= EXACT_TOLERANCE * scale or error <= 1e-14:
        return None
    return f"{what} differs by {error:.3g} ({error / scale:.3g} of its size)"


def shape_text(value: Any) -> str:
    return str(tuple(value.shape)) if isinstance(value, Tensor) else type(value).__name__


def gaussian_layout(problem: Problem, theta: Tensor) -> tuple[int, tuple[int, ...]] | None:
    """``(D, event shape)`` of a GAUSSIAN problem, or None if θ and ``sample_mean`` do not fit
    θ = (μ_1..μ_D, σ_1..σ_D) with samples ``()`` when D = 1 and ``(D,)`` otherwise."""
    size, event = problem.dim // 2, gaussian_event_shape(problem, theta)
    fits = problem.dim % 2 == 0 and (event == (size,) or (event == () and size == 1))
    return (size, event) if fits else None


def _gaussian_exact(ctx: ExactContext) -> None:
    report, problem, theta, samples = ctx.report, ctx.problem, ctx.theta, ctx.samples
    layout = gaussian_layout(problem, theta)
    ok_shape = (layout is not None and isinstance(samples, Tensor)
                and samples.shape == (*SHAPE, *layout[1]))
    report.record("Gaussian samples and θ = (μ, σ)", None if ok_shape else
                  f"expected dim 2D, and samples of shape {SHAPE} (D = 1) or {(*SHAPE, 'D')} "
                  f"matching sample_mean(θ); got dim {problem.dim} and samples of shape "
                  f"{shape_text(samples)}")
    if layout is None or not ok_shape:
        return
    size = layout[0]
    mu, sigma = theta[:size], theta[size:]
    eps = (samples.reshape(*SHAPE, size) - mu) / sigma
    gaussian = torch.cat([eps / sigma, (eps**2 - 1) / sigma], dim=-1)
    report.record("score is the Gaussian score", mismatch(ctx.scores, gaussian,
                  "score against (ε/σ, (ε² − 1)/σ)"))


def _gaussian_sampled(ctx: SampledContext) -> Iterator[SampledTest]:
    layout = gaussian_layout(ctx.problem, ctx.theta)
    if layout is None:
        return
    count, event = layout

    def gaussian(size: int, g: torch.Generator) -> Tensor:
        eps = torch.randn((size, 1, count), generator=g, dtype=DTYPE)
        return (ctx.theta[:count] + ctx.theta[count:] * eps).reshape(size, 1, *event)

    yield ctx.mean_of_f("mean of f(μ + σε) equals J", ctx.f_mean(gaussian))


def _bernoulli_exact(ctx: ExactContext) -> None:
    report, problem, samples = ctx.report, ctx.problem, ctx.samples
    ok_bits = (isinstance(samples, Tensor) and samples.shape == (*SHAPE, problem.dim)
               and bool(((samples == 0) | (samples == 1)).all()))
    report.record("Bernoulli samples are 0/1 vectors", None if ok_bits else
                  f"expected 0/1 tensors of shape {(*SHAPE, problem.dim)}")
    if not ok_bits:
        return
    report.record("score is b − sigmoid(θ)", mismatch(
        ctx.scores, samples - torch.sigmoid(ctx.theta), "score against b − sigmoid(θ)"))
    bits = samples[:2, :3, None, :].expand(2, 3, problem.dim, problem.dim)
    stacked = problem.f(bits)
    report.record("f accepts extra batch dimensions of bits",
                  None if stacked.shape == (2, 3, problem.dim)
                  else f"f of bits (2, 3, {problem.dim}, {problem.dim}) has shape "
                       f"{tuple(stacked.shape)}, expected (2, 3, {problem.dim})")


def _bernoulli_sampled(ctx: SampledContext) -> Iterator[SampledTest]:
    def bits(size: int, g: torch.Generator) -> Tensor:
        u = torch.rand((size, 1, ctx.problem.dim), generator=g, dtype=DTYPE)
        return (u < torch.sigmoid(ctx.theta)).to(DTYPE)

    yield ctx.mean_of_f("mean of f(1[u < sigmoid(θ)]) equals J", ctx.f_mean(bits))


def _categorical_exact(ctx: ExactContext) -> None:
    report, problem, theta, samples = ctx.report, ctx.problem, ctx.theta, ctx.samples
    ok = (isinstance(samples, Tensor) and samples.dim() == 4 and samples.shape[:2] == SHAPE
          and samples.shape[2] * samples.shape[3] == problem.dim
          and bool(((samples == 0) | (samples == 1)).all())
          and bool((samples.sum(-1) == 1).all()))
    report.record("categorical samples are one-hot (R, n, D, K) with D·K = dim", None if ok
                  else f"got {shape_text(samples)} for dim {problem.dim}")
    if not ok:
        return
    variables, categories = samples.shape[2:]
    probs = torch.softmax(theta.reshape(variables, categories), dim=-1)
    report.record("score is onehot(x) − softmax(θ)", mismatch(
        ctx.scores, (samples - probs).flatten(-2), "score against onehot(x) − softmax(θ)"))
    same_variable = torch.eye(variables, dtype=torch.bool)[:, None, :, None]
    category = torch.eye(categories, dtype=samples.dtype)[None, :, None, :]
    variants = torch.where(same_variable, category, samples[:2, :3, None, None])
    stacked = problem.f(variants)
    report.record("f accepts extra batch dimensions of one-hot samples",
                  None if stacked.shape == (2, 3, variables, categories) else
                  f"f of one-hot samples {tuple(variants.shape)} has shape "
                  f"{tuple(stacked.shape)}, expected {(2, 3, variables, categories)}")


def _sequential_exact(ctx: ExactContext) -> None:
    report, theta, samples = ctx.report, ctx.theta, ctx.samples
    problem: Any = ctx.problem
    rewards = problem.step_rewards(samples)
    steps = rewards.shape[-1]
    report.record("step rewards have shape (R, n, T)", None if rewards.shape == (*SHAPE, steps)
                  and 1 <= steps <= problem.horizon else
                  f"got {tuple(rewards.shape)} with horizon {problem.horizon}")
    report.record("step scores with unit weights equal the score", mismatch(
        problem.step_score(theta, samples, torch.ones_like(rewards)), ctx.scores,
        "step_score(θ, x, 1)"))
    discounted = rewards * problem.gamma ** torch.arange(steps, dtype=DTYPE)
    report.record("reward-to-go sums the discounted step rewards", mismatch(
        problem.reward_to_go(samples), discounted.flip(-1).cumsum(-1).flip(-1),
        "reward_to_go against Σ_{k≥t} γ^k r_k"))
    report.record("reward-to-go at the first step equals f", mismatch(
        problem.reward_to_go(samples)[..., 0], problem.f(samples), "reward_to_go[..., 0]"))
    values = problem.step_values(theta, samples, problem.exact_values(theta))
    report.record("exact step values have the steps' shape", None
                  if values.shape == rewards.shape else
                  f"step_values(θ, x, exact_values(θ)) has shape {tuple(values.shape)}, the "
                  f"step rewards {tuple(rewards.shape)}")


def _sequential_sampled(ctx: SampledContext) -> Iterator[SampledTest]:
    problem: Any = ctx.problem
    with on_device(ctx.device):
        exact_values = problem.exact_values(ctx.theta)
    yield ctx.mean_of_f("mean of the exact value of the first state equals J", ctx.stream(
        lambda size, g: problem.step_values(
            ctx.theta, ctx.sample(size, g), exact_values)[..., :1].reshape(size, 1)))


def _tabular_exact(ctx: ExactContext) -> None:
    report = ctx.report
    problem: Any = ctx.problem
    policy = problem.policy(ctx.theta)
    ok_policy = (policy.dim() == 2 and bool((policy >= 0).all())
                 and mismatch(policy.sum(-1), torch.ones_like(policy[:, 0]), "") is None)
    report.record("policy(θ) is a distribution over actions in each state", None if ok_policy
                  else f"policy(θ) of shape {tuple(policy.shape)} has rows that are not "
                       "distributions")
    pairs = getattr(ctx.samples, "pairs", None)
    ok_pairs = (isinstance(pairs, Tensor) and pairs.shape[:2] == SHAPE
                and bool(((pairs >= -1) & (pairs < policy.numel())).all()))
    report.record("samples hold the visited state-action pairs", None if ok_pairs else
                  "expected samples.pairs of shape (R, n, T) holding s·A + a, −1 after the end")


def _amortized_exact(ctx: ExactContext) -> None:
    report, problem, theta, samples = ctx.report, ctx.problem, ctx.theta, ctx.samples
    inputs = problem.item_inputs()
    items = problem.item_f(samples)
    count = inputs.shape[0]
    report.record("item_f has one term per item", None if inputs.dim() == 2
                  and items.shape == (*SHAPE, count) else
                  f"item_inputs() has shape {tuple(inputs.shape)} and item_f "
                  f"{tuple(items.shape)}, expected (B, P) and {(*SHAPE, 'B')}")
    if items.shape != (*SHAPE, count):
        return
    report.record("f is the mean of the item terms", mismatch(
        items.mean(-1), problem.f(samples), "mean_b item_f against f"))
    weights = torch.randn(SHAPE, generator=devices.generator(ctx.device, ctx.seed + 4),
                          dtype=DTYPE)
    report.record("item_weighted_score with equal item weights is weighted_score", mismatch(
        problem.item_weighted_score(theta, samples, weights[..., None].expand(*SHAPE, count)),
        problem.weighted_score(theta, samples, weights),
        "item_weighted_score(θ, x, w·1_B) against weighted_score(θ, x, w)"))


def _amortized_sampled(ctx: SampledContext) -> Iterator[SampledTest]:
    def per_item_gradient(size: int, g: torch.Generator) -> Tensor:
        samples = ctx.sample(size, g)
        items = ctx.problem.item_f(samples)
        weights = (items - ctx.value.to(ctx.theta.device)) / items.shape[-1]
        return ctx.problem.item_weighted_score(ctx.theta, samples, weights) @ (
            ctx.directions.T) + ctx.direct(size, g)

    yield ctx.gradient("E[(1/B) Σ_b (f_b − J) ∇θ log q(z_b|x_b)] equals ∇J",
                       ctx.stream(per_item_gradient))


def _latent_exact(ctx: ExactContext) -> None:
    """The pullback of logit gradients is the chain rule through ``latent_logits``."""
    problem = ctx.problem
    with torch.enable_grad():
        point = ctx.theta.detach().clone().requires_grad_(True)
        logits = problem.latent_logits(point)
        cotangents = torch.randn((2, *logits.shape),
                                 generator=devices.generator(ctx.device, ctx.seed + 5),
                                 dtype=DTYPE)
        expected = torch.stack([torch.autograd.grad(logits, point, c, retain_graph=True)[0]
                                for c in cotangents])
    ctx.report.record("latent_pullback is the chain rule through latent_logits", mismatch(
        problem.latent_pullback(ctx.theta, cotangents), expected,
        "latent_pullback(θ, G) against the vector-Jacobian product of latent_logits"))


def multi_sample_bound(log_weights: Tensor) -> Tensor:
    """``(1/B) Σ_b log (1/K) Σ_k w_bk`` from ``log w`` of shape ``(..., B, K)``."""
    return (torch.logsumexp(log_weights, dim=-1) - math.log(log_weights.shape[-1])).mean(-1)


def _multi_sample_exact(ctx: ExactContext) -> None:
    report, problem, theta, samples = ctx.report, ctx.problem, ctx.theta, ctx.samples
    log_weights = problem.log_weights(samples)
    ok = log_weights.dim() == 4 and log_weights.shape[:2] == SHAPE
    report.record("log_weights has shape (R, n, B, K)", None if ok
                  else f"got {tuple(log_weights.shape)}")
    if not ok:
        return
    report.record("f is the multi-sample bound of the weights", mismatch(
        multi_sample_bound(log_weights), problem.f(samples),
        "(1/B) Σ_b log (1/K) Σ_k w_bk against f"))
    weights = torch.randn(SHAPE, generator=devices.generator(ctx.device, ctx.seed + 4),
                          dtype=DTYPE)
    report.record("code_weighted_score with equal code weights is weighted_score", mismatch(
        problem.code_weighted_score(theta, samples, weights[..., None, None].expand_as(
            log_weights)), problem.weighted_score(theta, samples, weights),
        "code_weighted_score(θ, x, w·1_BK) against weighted_score(θ, x, w)"))


def _multi_sample_sampled(ctx: SampledContext) -> Iterator[SampledTest]:
    # f depends on θ through the weights, so E[(f − J)·score] is not ∇J here.
    def multi_sample_gradient(size: int, g: torch.Generator) -> Tensor:
        # ∇J = E[(1/B) Σ_b Σ_k (L_b − w̃_bk) ∇θ log q(z_bk|x_b)]; J, a constant, is
        # subtracted from L_b as a baseline.
        samples = ctx.sample(size, g)
        log_weights = ctx.problem.log_weights(samples)
        bounds = torch.logsumexp(log_weights, dim=-1, keepdim=True) - math.log(
            log_weights.shape[-1])
        signal = bounds - ctx.value.to(ctx.theta.device) - torch.softmax(log_weights, dim=-1)
        return ctx.problem.code_weighted_score(ctx.theta, samples, signal / log_weights.shape[2]
                                               ) @ ctx.directions.T + ctx.direct(size, g)

    yield ctx.gradient("E[(1/B) Σ_bk ((L_b − J) − w̃_bk) ∇θ log q(z_bk)] equals ∇J",
                       ctx.stream(multi_sample_gradient))


def implements(problem: Problem, member: str) -> bool:
    """Whether ``problem`` overrides an optional member of the protocol (or has the attribute)."""
    if member == "noise_dim":
        return isinstance(problem.noise_dim, int) and problem.noise_dim >= 1
    base = getattr(Problem, member, None)
    own = getattr(type(problem), member, None)
    if base is None:
        return own is not None
    return own is not base


def _sequences_exact(ctx: ExactContext) -> None:
    report, theta, samples, seed, device = (ctx.report, ctx.theta, ctx.samples, ctx.seed,
                                            ctx.device)
    problem: Any = ctx.problem
    rewards = problem.prompt_rewards(samples)
    mask = problem.token_mask(samples)
    log_probs = problem.token_log_probs(theta, samples)
    reference = problem.reference_token_log_probs(samples)
    prompts = rewards.shape[-1] if rewards.dim() == 3 else 0
    ok = (rewards.shape[:2] == SHAPE and rewards.dim() == 3 and mask.dim() == 4
          and mask.shape[:3] == rewards.shape and log_probs.shape == mask.shape
          and reference.shape == mask.shape)
    report.record("prompt rewards (R, n, P) and token tables (R, n, P, L)", None if ok else
                  f"prompt_rewards {tuple(rewards.shape)}, token_mask {tuple(mask.shape)}, "
                  f"token_log_probs {tuple(log_probs.shape)}, reference_token_log_probs "
                  f"{tuple(reference.shape)}")
    if not ok:
        return
    if implements(problem, "log_prob"):
        report.record("token log-probabilities add up to log_prob", mismatch(
            (log_probs * mask).sum((-1, -2)), problem.log_prob(theta, samples),
            "Σ_p Σ_t token_log_probs against log_prob"))
    penalized = rewards - problem.beta * ((log_probs - reference) * mask).sum(-1)
    report.record("f is the mean over prompts of R − β log(π/π_ref)", mismatch(
        problem.f(samples), penalized.mean(-1), "f against mean_p (R − β Σ_t ℓ_t)"))
    weights = torch.randn(SHAPE, generator=devices.generator(device, seed + 5), dtype=DTYPE)
    expanded = weights[..., None, None].expand(*SHAPE, prompts, mask.shape[-1])
    report.record("token_weighted_score with per-sample weights is n × weighted_score",
                  mismatch(problem.token_weighted_score(theta, samples, expanded) / SHAPE[1],
                           problem.weighted_score(theta, samples, weights),
                           "token_weighted_score(θ, x, w·1) / n against weighted_score"))
    values = problem.exact_token_values(theta, samples, problem.beta)
    first = values[..., 0].mean(-1) if values.shape == mask.shape else values
    report.record("exact value of the first token averages over prompts to J", mismatch(
        first, problem.value(theta).detach().expand(SHAPE),
        "mean_p exact_token_values[..., 0] against value(θ)"))
    old_theta = problem.behaviour_theta(theta)
    behaviour = problem.sample_behaviour(theta, (2, 3), devices.generator(device, seed + 6))
    report.record("behaviour samples' token log-probabilities add up to log_prob at θ_old",
                  mismatch((problem.token_log_probs(old_theta, behaviour)
                            * problem.token_mask(behaviour)).sum((-1, -2)),
                           problem.log_prob(old_theta, behaviour),
                           "Σ_p Σ_t token_log_probs(θ_old) against log_prob(θ_old)")
                  if implements(problem, "log_prob") else None)


def _sequences_sampled(ctx: SampledContext) -> Iterator[SampledTest]:
    problem: Any = ctx.problem
    with on_device(ctx.device):
        old_theta = problem.behaviour_theta(ctx.theta)
        old_value = float64_cpu(problem.value(old_theta).detach()).reshape(1)
    yield SampledTest("mean of f under sample_behaviour equals J at behaviour_theta",
                      ctx.f_mean(lambda size, g: problem.sample_behaviour(
                          ctx.theta, (size, 1), g)), old_value, old_value.abs(), "|J|")


def _pathwise(ctx: SampledContext) -> bool:
    return {Capability.REPARAMETERIZABLE, Capability.DIFFERENTIABLE} <= ctx.problem.capabilities


def _reparameterizable_sampled(ctx: SampledContext) -> Iterator[SampledTest]:
    problem, theta = ctx.problem, ctx.theta

    def transformed(size: int, g: torch.Generator) -> Any:
        return problem.transform(theta, ctx.standard_noise(size, g))

    yield ctx.mean_of_f("mean of f(transform(θ, ε)) equals J", ctx.f_mean(transformed))
    if _pathwise(ctx):
        yield ctx.gradient("pathwise mean through transform equals ∇J",
                           ctx.pathwise_mean(ctx.standard_noise, problem.transform))


def _inverse_transform_sampled(ctx: SampledContext) -> Iterator[SampledTest]:
    problem, theta = ctx.problem, ctx.theta

    def inverted(size: int, g: torch.Generator) -> Any:
        return problem.from_uniforms(theta, ctx.uniforms(size, g))

    yield ctx.mean_of_f("mean of f(from_uniforms(θ, u)) equals J", ctx.f_mean(inverted))
    yield ctx.gradient(f"{ctx.grad_test} for from_uniforms samples",
                       ctx.centered_score(inverted))
    if _pathwise(ctx):
        yield ctx.gradient("pathwise mean through from_uniforms equals ∇J",
                           ctx.pathwise_mean(ctx.uniforms, problem.from_uniforms))


def _relaxable_exact(ctx: ExactContext) -> None:
    problem, theta = ctx.problem, ctx.theta
    uniforms = torch.rand((2, 3, problem.noise_dim), generator=devices.generator(
        ctx.device, ctx.seed + 3), dtype=DTYPE).clamp(UNIFORM_EPSILON, 1 - UNIFORM_EPSILON)
    with torch.enable_grad():
        point = theta.detach().clone().requires_grad_(True)
        relaxed = problem.f_relaxed(problem.relax(point, uniforms, RELAX_TEMPERATURE))
    ctx.report.record("relaxed f is differentiable in θ", None if relaxed.requires_grad
                      and relaxed.shape == (2, 3) else
                      f"f_relaxed(relax(θ, u, τ)) has shape {tuple(relaxed.shape)} and "
                      f"requires_grad={relaxed.requires_grad}")
    hard = problem.harden(problem.relax(theta, uniforms, RELAX_TEMPERATURE))
    embedded = problem.embed(problem.sample(theta, (2, 3),
                                            devices.generator(ctx.device, ctx.seed)))
    ctx.report.record("embed(x) is in the encoding of harden(relax(θ, u, τ))", None
                      if isinstance(embedded, Tensor) and embedded.shape == hard.shape else
                      f"embed(sample) has shape {shape_text(embedded)}, harden(relax(θ, u, τ)) "
                      f"{tuple(hard.shape)}")


def _relaxable_sampled(ctx: SampledContext) -> Iterator[SampledTest]:
    problem, theta = ctx.problem, ctx.theta

    def hardened(size: int, g: torch.Generator) -> Any:
        return problem.harden(problem.relax(theta, ctx.uniforms(size, g), RELAX_TEMPERATURE))

    yield ctx.mean_of_f("mean of f_relaxed(harden(relax(θ, u, τ))) equals J",
                        ctx.f_mean(hardened, problem.f_relaxed))


# ---------------------------------------------------------------------------------------------
# The records

_LATENT_MEMBERS = ("latent_logits", "latent_samples", "latent_pullback")

CAPABILITIES: tuple[CapabilitySpec, ...] = (
    CapabilitySpec(
        Capability.DISCRETE,
        "Samples are discrete: bits, categories, arms, actions or trajectories. A problem is "
        "discrete or continuous, never both."),
    CapabilitySpec(Capability.CONTINUOUS, "Samples are real-valued tensors."),
    CapabilitySpec(
        Capability.DIFFERENTIABLE,
        "f is differentiable (almost everywhere) in x, in torch: with reparameterizable or "
        "inverse_transform, pathwise gradients through the sampler apply."),
    CapabilitySpec(
        Capability.MULTI_SAMPLE,
        "f is a multi-sample bound (1/B) Σ_b log (1/K) Σ_k w(x_b, z_bk) whose importance "
        "weights depend on θ (log_weights gives log w, code_weighted_score the per-code "
        "scores): ∇J is not E[f ∇θ log p], so only estimators that require this capability "
        "run on it.",
        ("log_weights", "code_weighted_score"), _multi_sample_exact, _multi_sample_sampled,
        score_gradient=False),
    CapabilitySpec(
        Capability.AMORTIZED,
        "A sample holds one latent per data item, drawn independently from q(z_b | x_b; θ), "
        "and f = (1/B) Σ_b f_b(z_b) (item_f gives the terms): input-dependent baselines "
        "apply.",
        ("item_inputs", "item_f", "item_weighted_score"), _amortized_exact, _amortized_sampled),
    CapabilitySpec(
        Capability.BERNOULLI_LATENTS,
        "x is made of independent Bernoulli latents whose logits are latent_logits(θ), a "
        "differentiable function of θ, and f accepts any 0/1 (and relaxed) latents: every "
        "estimator whose requirements the problem's Bernoulli logit view meets runs on that "
        "view, and its estimate is carried to θ by the chain rule (see "
        "vrbench.problems.latents).",
        _LATENT_MEMBERS, _latent_exact),
    CapabilitySpec(
        Capability.CATEGORICAL_LATENTS,
        "x is made of independent categorical latents whose logits are latent_logits(θ), a "
        "differentiable function of θ, and f accepts any one-hot (and relaxed) latents: every "
        "estimator whose requirements the problem's categorical logit view meets runs on that "
        "view, and its estimate is carried to θ by the chain rule (see "
        "vrbench.problems.latents).",
        _LATENT_MEMBERS, _latent_exact),
    CapabilitySpec(
        Capability.SEQUENCES,
        "x holds one output sequence per prompt of a prompt set, drawn from an autoregressive "
        "policy over tokens (see vrbench.problems.sequences); f is the mean over prompts of "
        "the reward minus beta times the sequence log-ratio to a reference policy. The "
        "problem gives per-prompt rewards, per-token log-probabilities under θ and the "
        "reference, token masks, token-weighted scores, a stale behaviour policy and the "
        "exact per-token values of a policy: group-baseline, clipped-ratio and KL-penalty "
        "estimators apply.",
        ("beta", "prompt_rewards", "token_mask", "token_log_probs", "reference_token_log_probs",
         "token_weighted_score", "behaviour_theta", "sample_behaviour", "exact_token_values"),
        _sequences_exact, _sequences_sampled),
    CapabilitySpec(
        Capability.SEQUENTIAL,
        "Samples are episodes of an MDP and f their discounted return Σ_t γ^t r_t; the "
        "problem gives per-step scores (step_score), rewards (step_rewards), the "
        "reward-to-go Σ_{k≥t} γ^k r_k and the exact state values V_t at the visited states "
        "(exact_values, step_values): reward-to-go, state-value baselines and GAE apply.",
        ("gamma", "horizon", "step_score", "step_rewards", "reward_to_go", "exact_values",
         "step_values"), _sequential_exact, _sequential_sampled),
    CapabilitySpec(
        Capability.TABULAR,
        "A sequential problem with finitely many states (a TabularMDP): policy(θ) is the "
        "(S, A) table of π(a|s) and samples hold the visited state-action pairs, so state "
        "values can be fitted as a table from Monte Carlo returns.",
        ("policy",), _tabular_exact),
    CapabilitySpec(
        Capability.REPARAMETERIZABLE,
        "x = transform(θ, ε) with ε = sample_noise(shape, generator) independent of θ: "
        "pathwise gradients (with differentiable) and control variates built on the "
        "sampler's path apply.",
        ("sample_noise", "transform"), None, _reparameterizable_sampled),
    CapabilitySpec(
        Capability.INVERSE_TRANSFORM,
        "x = from_uniforms(θ, u) with u uniform on (0, 1)^noise_dim: antithetic, stratified "
        "and quasi-Monte Carlo draws of u apply.",
        ("noise_dim", "from_uniforms"), None, _inverse_transform_sampled),
    CapabilitySpec(
        Capability.CATEGORICAL_LOGITS,
        "x is D independent categoricals of K categories whose logits are θ (row-major D×K), "
        "samples are one-hot (R, n, D, K) and f accepts any one-hot tensor, with extra batch "
        "dimensions: estimators that sum over each variable's categories apply.",
        ("support", "log_prob"), _categorical_exact),
    CapabilitySpec(
        Capability.RELAXABLE,
        "Discrete samples have a continuous relaxation relax(θ, u, τ) of uniforms u on "
        "(0, 1)^noise_dim, that f_relaxed accepts (by default f) and harden rounds to an "
        "exact sample: relaxed (Gumbel-softmax), straight-through and relaxation-based "
        "control-variate gradients apply.",
        ("noise_dim", "relax", "harden"), _relaxable_exact, _relaxable_sampled),
    CapabilitySpec(
        Capability.GAUSSIAN,
        "x ~ N(μ, diag σ²) in D ≥ 1 dimensions with θ = (μ_1..μ_D, σ_1..σ_D); samples have "
        "shape (R, n) plus the shape of sample_mean(θ) (() when univariate, (D,) otherwise; "
        "a problem without sample_mean is univariate) and f accepts any real tensor: "
        "measure-valued gradients apply.",
        (), _gaussian_exact, _gaussian_sampled),
    CapabilitySpec(
        Capability.BERNOULLI_LOGITS,
        "x is a 0/1 vector of independent Bernoullis whose logits are θ, and f accepts any "
        "0/1 vector, with extra batch dimensions: estimators that evaluate f at other bit "
        "vectors than the drawn ones (antithetic couplings such as ARM and DisARM, "
        "measure-valued derivatives) apply.",
        (), _bernoulli_exact, _bernoulli_sampled),
)
"""One record per capability, in the order ``vrbench check`` runs their sampled tests (a
test's seed is its position, so this order keeps the statistics of earlier releases; the
exact checks run by capability name, as the members are checked)."""

SPECS: Mapping[Capability, CapabilitySpec] = MappingProxyType(
    {spec.capability: spec for spec in CAPABILITIES})
"""The record of each capability."""


def specs_of(problem: Problem) -> list[CapabilitySpec]:
    """The records of the capabilities ``problem`` declares, in check order (unknown values,
    which the suite reports, left out)."""
    return [spec for spec in CAPABILITIES if spec.capability in problem.capabilities]


def estimators_using(capability: Capability) -> list[str]:
    """The registered estimators that require ``capability`` (read from their ``requires``),
    and, for a latents capability, those that run on the problem's logit view."""
    from vrbench import estimators
    from vrbench.problems.latents import VIEWS

    view = VIEWS.get(capability)
    through_view: frozenset[Capability] = (
        frozenset() if view is None else view.capabilities)
    return [entry.name for entry in estimators.registry.entries()
            if capability in entry.cls.requires
            or (entry.cls.requires and entry.cls.requires <= through_view)]
