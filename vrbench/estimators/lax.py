"""LAX: a learned surrogate of f as control variate, removed by its score function and added
back by its pathwise gradient."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.estimators import register
from vrbench.estimators.base import Estimator, weighted_score
from vrbench.problems.base import DTYPE, Capability, Problem

RIDGES = (1e-4, 1e-3, 1e-2, 1e-1)
"""Ridge penalties tried, on normal equations scaled to a unit diagonal. Smaller ones let the
nearly collinear random features cancel each other with huge weights, which held-out draws
do not reveal: such a surrogate fails only in the tails, and there wildly."""

MAX_INPUTS = 1_000
"""Most entries of a sample the surrogate reads: the fit solves for ``2P + hidden + 1``
weights."""


class Surrogate(NamedTuple):
    """``c(x) = weightsᵀ ψ(z)``, ``ψ(z) = (1, z, z², tanh(z V + b))``, ``z = (x − centre)/scale``
    on the flattened sample x."""

    centre: Tensor  # (P,)
    scale: Tensor  # (P,)
    projection: Tensor  # V, (P, hidden)
    offset: Tensor  # b, (hidden,)
    weights: Tensor  # (1 + 2P + hidden,)


def _tanh_(x: Tensor) -> Tensor:
    """``tanh(x) = 2 sigmoid(2x) − 1``, in place.

    The identity is exact; its rounding error is absolute, within about 2.2e-16 (torch's
    ``tanh`` is within an ulp of each value, a relative bound), which is all a surrogate's
    hidden layer needs. Half of LAX's time went to torch's float64 ``tanh``: about 6 ns per
    value on the (AVX-512) CPU measured, against 1.3 ns for its ``sigmoid``.
    """
    return x.mul_(2).sigmoid_().mul_(2).sub_(1)


def _features(surrogate: Surrogate, flat: Tensor) -> Tensor:
    """ψ(z) of flattened samples ``(..., P)``: ``(..., 1 + 2P + hidden)``."""
    z = (flat - surrogate.centre) / surrogate.scale
    hidden = _tanh_(z @ surrogate.projection + surrogate.offset)
    return torch.cat([torch.ones_like(z[..., :1]), z, z**2, hidden], dim=-1)


def _value_and_slope(surrogate: Surrogate, flat: Tensor) -> tuple[Tensor, Tensor]:
    """``c(x)`` ``(...)`` and ``∂c/∂x`` ``(..., P)`` of flattened samples ``(..., P)``."""
    inputs = flat.shape[-1]
    weights = surrogate.weights
    linear, square = weights[1 : 1 + inputs], weights[1 + inputs : 1 + 2 * inputs]
    through = weights[1 + 2 * inputs :]
    # In place where a temporary is used once: the hidden layer is the size of the draws
    # times its width, and the fewer such tensors, the more of them stay in the caches.
    z = (flat - surrogate.centre).div_(surrogate.scale)
    hidden = _tanh_((z @ surrogate.projection).add_(surrogate.offset))
    value = (z @ linear).add_(weights[0]).add_((z * z) @ square).add_(hidden @ through)
    # ((1 − h²) ⊙ w) Vᵀ = w Vᵀ − h² (w ⊙ Vᵀ): one product of the hidden layer, no 1 − h².
    through_projection = through[:, None] * surrogate.projection.T
    slope = (2 * square * z).add_(linear + through_projection.sum(0))
    slope.sub_(hidden.mul_(hidden) @ through_projection)
    return value, slope.div_(surrogate.scale)


def _sample_jacobian(problem: Problem, theta: Tensor, noise: Tensor) -> Tensor:
    """``∂x/∂θ`` of the flattened samples ``transform(θ, noise)``: ``(N, P, dim)``.

    Column j is the derivative in u of ``uᵀ(∂x/∂θ)e_j``, a vector-Jacobian product that is
    linear in u: two backward passes per entry of θ, through any differentiable transform."""
    with torch.enable_grad():
        variable = theta.detach().clone().requires_grad_(True)
        flat = problem.transform(variable, noise).reshape(noise.shape[1], -1)
        cotangent = torch.zeros_like(flat, requires_grad=True)
        (products,) = torch.autograd.grad(flat, variable, cotangent, create_graph=True)
        columns = [torch.autograd.grad(product, cotangent, retain_graph=True,
                                       allow_unused=True)[0] if product.requires_grad else None
                   for product in products]
    # An entry of θ that x does not depend on has a zero column.
    return torch.stack([torch.zeros_like(flat) if column is None else column
                        for column in columns], dim=-1)


def lax_regression(problem: Problem, theta: Tensor, surrogate: Surrogate,
                   noise: Tensor) -> tuple[Tensor, Tensor]:
    """``(G, g₀)`` with ``ĝ(φ) = g₀ − Gφ`` the single-draw LAX estimate of each draw of
    ``noise`` (``(1, N, ...)``) for surrogate weights φ: ``g₀ = f s`` and
    ``G[:, :, k] = ψ_k s − ∇θ ψ_k(T(θ, ε))``, s the score; shapes ``(N, dim, F)`` and
    ``(N, dim)``."""
    samples = problem.transform(theta, noise)
    flat = samples.reshape(noise.shape[1], -1)
    inputs = flat.shape[1]
    scores = problem.score(theta, samples)[0]
    features = _features(surrogate, flat)
    z = (flat - surrogate.centre) / surrogate.scale
    hidden = features[:, 1 + 2 * inputs :]
    # ∂ψ/∂x feature by feature is 0, 1/s, 2z/s and (1 − h²)V/s; chained with ∂x/∂θ.
    jacobian = _sample_jacobian(problem, theta, noise) / surrogate.scale[:, None]
    linear = jacobian.transpose(1, 2)  # (N, dim, P)
    through_hidden = torch.einsum("npd,ph,nh->ndh", jacobian, surrogate.projection,
                                  1 - hidden**2)
    pathwise = torch.cat([torch.zeros_like(linear[..., :1]), linear,
                          2 * z[:, None, :] * linear, through_hidden], dim=-1)
    design = scores[:, :, None] * features[:, None, :] - pathwise
    return design, problem.f(samples)[0, :, None] * scores


def _normal_equations(design: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """``(GᵀG, Gᵀg₀)`` summed over draws."""
    return (torch.einsum("ndk,ndl->kl", design, design),
            torch.einsum("ndk,nd->k", design, target))


def _least_squares(normal: Tensor, rhs: Tensor, ridge: float) -> Tensor:
    """The φ minimizing ``Σ_n ‖g₀_n − G_n φ‖² + ridge ‖Dφ‖²`` from the normal equations, with
    ``D²`` their diagonal (a ridge on the standardized features)."""
    scale = normal.diagonal().sqrt().clamp(min=torch.finfo(DTYPE).tiny)
    eye = torch.eye(normal.shape[0], dtype=DTYPE)
    solution: Tensor = torch.linalg.solve(normal / scale[:, None] / scale + ridge * eye,
                                          rhs / scale)
    return solution / scale


@register("lax")
@dataclass(frozen=True)
class LAX(Estimator):
    """LAX for continuous, reparameterizable x: a fitted surrogate c_φ of f as control variate.

    ``ĝ = (1/n) Σ_j ([f(x_j) − c_φ(x_j)] ∇θ log p(x_j; θ) + ∇θ c_φ(T(θ, ε_j)))``,
    ``x_j = T(θ, ε_j)``: the score-function estimator of f, minus that of c_φ, plus the pathwise
    estimator of c_φ (Grathwohl, Choi, Wu, Roeder & Duvenaud, "Backpropagation through the
    void", ICLR 2018, section 3, equation 5). Unbiased for any c_φ fixed independently of the
    measured draws, and f need not be differentiable; with ``c_φ = f`` it is the pathwise
    estimator. φ minimizes the estimator's second moment ``E‖ĝ‖²`` (its variance plus
    ``‖∇J‖²``, the objective of their equation 6) over ``fit_samples`` independent draws.
    Here ``c_φ(x) = φᵀψ(z)`` with ``ψ(z) = (1, z, z², tanh(zV + b))`` on the standardized
    flattened sample z and a random hidden layer V, b (a random-features network): ĝ is then
    affine in φ, so the minimizer is a ridge-regularized least-squares solution rather than
    the paper's stochastic gradient steps (the ridge, from a small grid, is the one that does
    best on a quarter of the draws held out). The constant feature makes LAX contain the
    fitted baseline. One evaluation of f per draw; at most 1,000 entries per sample.
    """

    display_name = "LAX"
    requirement_note = "a small sample"

    hidden: int = 16
    fit_samples: int = 2000

    family = "control variate"
    requires = frozenset({Capability.CONTINUOUS, Capability.REPARAMETERIZABLE})
    reference = "Grathwohl et al., 2018, equation 5"

    def __post_init__(self) -> None:
        check(self.hidden >= 0, self.name, f"hidden={self.hidden} must be >= 0")
        check(self.fit_samples >= 4, self.name, f"fit_samples={self.fit_samples} must be >= 4")

    def incompatibility(self, problem: Problem, n_samples: int) -> str | None:
        reason = super().incompatibility(problem, n_samples)
        if reason is None and problem.sample_width() > MAX_INPUTS:
            return (f"{self.name} fits a surrogate of all {problem.sample_width()} entries of a "
                    f"sample, more than {MAX_INPUTS}")
        return reason

    def fit(self, problem: Problem, theta: Tensor, generator: torch.Generator) -> Surrogate:
        noise = problem.sample_noise((1, self.fit_samples), generator)
        flat = problem.transform(theta, noise).reshape(self.fit_samples, -1)
        inputs = flat.shape[1]
        scale = flat.std(dim=0)
        surrogate = Surrogate(
            flat.mean(dim=0), torch.where(scale > 0, scale, 1.0),
            torch.randn(inputs, self.hidden, generator=generator, dtype=DTYPE)
            / math.sqrt(inputs),
            2 * torch.rand(self.hidden, generator=generator, dtype=DTYPE) - 1,
            torch.zeros(1 + 2 * inputs + self.hidden, dtype=DTYPE))
        design, target = lax_regression(problem, theta, surrogate, noise)
        # The random features can be nearly collinear: the ridge is chosen on held-out draws.
        split = 3 * self.fit_samples // 4
        train = _normal_equations(design[:split], target[:split])
        held_out = _normal_equations(design[split:], target[split:])
        squared_target = float((target[split:] ** 2).sum())

        def held_out_error(ridge: float) -> float:
            weights = _least_squares(*train, ridge)
            return squared_target - 2 * float(held_out[1] @ weights) + float(
                weights @ held_out[0] @ weights)

        ridge = min(RIDGES, key=held_out_error)
        normal, rhs = (a + b for a, b in zip(train, held_out, strict=True))
        return surrogate._replace(weights=_least_squares(normal, rhs, ridge))

    def estimate(self, problem: Problem, theta: Tensor, n_samples: int, replicates: int,
                 generator: torch.Generator, state: Surrogate | None = None) -> Tensor:
        if state is None:
            raise ValueError(f"{self.name} needs its fitted surrogate: call fit() first")
        noise = problem.sample_noise((replicates, n_samples), generator)
        with torch.enable_grad():  # one rollout per replicate's copy of θ, as in
            copies = theta.detach().expand(replicates, -1).clone().requires_grad_(True)
            samples = problem.transform(copies[:, None, :], noise)  # per_replicate_gradient
        control, slope = _value_and_slope(state, samples.detach().reshape(replicates,
                                                                          n_samples, -1))
        # ∇θ c(T(θ, ε)) = (∂x/∂θ)ᵀ ∂c/∂x: one vector-Jacobian product through the transform.
        (pathwise,) = torch.autograd.grad(samples, copies,
                                          slope.reshape(samples.shape) / n_samples)
        samples = samples.detach()
        return weighted_score(problem, theta, samples, problem.f(samples) - control) + pathwise
