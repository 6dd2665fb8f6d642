"""Independent categoricals scored by a Potts energy: several variables, K > 2, non-separable f."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from vrbench.devices import built_on_cpu, device_cached
from vrbench.problems import register
from vrbench.problems.base import (
    DTYPE,
    Capability,
    Problem,
    check_magnitude,
    check_size,
    gradient_of_value,
)

MAX_SUPPORT = 2**16
"""Largest K^D whose outcomes :meth:`CategoricalPotts.support` lists."""


def one_hot_by_inversion(probs: Tensor, shape: tuple[int, int], generator: torch.Generator
                         ) -> Tensor:
    """One-hot draws ``(*shape, *probs.shape)`` from categoricals with probabilities ``probs``
    (last axis), by inverting each one's CDF at a uniform."""
    uniforms = torch.rand((*shape, *probs.shape[:-1], 1), generator=generator, dtype=DTYPE)
    cdf = probs.cumsum(-1)
    index = (uniforms > cdf).sum(-1).clamp_max(probs.shape[-1] - 1)  # rounding of cdf[-1]
    return torch.nn.functional.one_hot(index, probs.shape[-1]).to(DTYPE)


class IndependentCategoricals(Problem):
    """Shared sampling, score and relaxation of independent categoricals ``x_v ~
    softmax(θ_v)``, ``v = 1..V``, each of K categories, with θ their logits row-major (V×K)
    and one-hot samples ``(R, n, V, K)``, for problems whose sample is the one-hots themselves.

    The score is ``x − π`` with ``π_v = softmax(θ_v)`` and ``log p(x; θ) = Σ_v x_v·log π_v``;
    the relaxation is Gumbel-softmax per variable. Subclasses supply :attr:`variables`,
    :attr:`categories`, f, J and ∇J.
    """

    @property
    def variables(self) -> int:
        """V, the number of categorical variables."""
        raise NotImplementedError

    @property
    def categories(self) -> int:
        """K, the number of categories of each variable."""
        raise NotImplementedError

    @property
    def dim(self) -> int:
        return self.variables * self.categories

    def _logits(self, theta: Tensor) -> Tensor:
        return theta.reshape(*theta.shape[:-1], self.variables, self.categories)

    def _probs(self, theta: Tensor) -> Tensor:
        return torch.softmax(self._logits(theta), dim=-1)

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
        return one_hot_by_inversion(self._probs(theta), shape, generator)

    def score(self, theta: Tensor, samples: Tensor) -> Tensor:
        return (samples - self._probs(theta)).flatten(-2)

    def weighted_score(self, theta: Tensor, samples: Tensor, weights: Tensor) -> Tensor:
        # Σ_j w_j (x_j − π) = Σ_j w_j x_j − (Σ_j w_j) π.
        counts = torch.einsum("rn,rndk->rdk", weights, samples).flatten(-2)
        probs = self._probs(theta).flatten()
        return (counts - weights.sum(dim=1, keepdim=True) * probs) / weights.shape[1]

    def log_prob(self, theta: Tensor, samples: Tensor) -> Tensor:
        log_probs = torch.log_softmax(self._logits(theta), dim=-1)
        return (samples * log_probs).sum(dim=(-2, -1))

    @property
    def noise_dim(self) -> int:  # type: ignore[override]
        return self.dim

    def relax(self, theta: Tensor, uniforms: Tensor, temperature: float) -> Tensor:
        """Gumbel-softmax of each variable: softmax((θ_v + g)/τ), g = −log(−log u)."""
        gumbel = -torch.log(-torch.log(self._logits(uniforms)))
        return torch.softmax((self._logits(theta) + gumbel) / temperature, dim=-1)

    def harden(self, relaxed: Tensor) -> Tensor:
        return torch.nn.functional.one_hot(relaxed.argmax(-1), self.categories).to(DTYPE)

    def conditional_uniforms(self, theta: Tensor, hard: Tensor, uniforms: Tensor) -> Tensor:
        """Gumbels given their argmax, in uniforms: with ``v`` fresh and k the argmax,
        ``u_k = v_k^{π_k}`` and ``u_i = v_i v_k^{π_i}``: the top perturbed logit is
        Gumbel(log Σ e^θ) and the others are Gumbels truncated below it (Maddison, Tarlow &
        Minka, "A* sampling", NeurIPS 2014)."""
        probs = self._probs(theta)
        v = self._logits(uniforms)
        v_top = (v * hard).sum(-1, keepdim=True)
        u = torch.where(hard > 0, v_top ** probs, v * v_top ** probs)
        return u.flatten(-2)

    def sample_mean(self, theta: Tensor) -> Tensor:
        return self._probs(theta)

    def sample_width(self) -> int:
        return self.dim


@register("categorical_potts")
@dataclass(frozen=True)
class CategoricalPotts(IndependentCategoricals):
    """D independent categoricals with logits θ (D×K) and a Potts energy as f.

    ``x_d ~ softmax(θ_d)`` independently, one-hot ``(D, K)``; ``f(x) = Σ_d h_d·x_d +
    Σ_{d<e} J_de [x_d = x_e]`` with fields ``h_d ∈ R^K`` drawn N(0, 1) and couplings ``J_de``
    drawn N(0, coupling²) from ``seed``. The couplings make f non-separable, so estimators that
    treat the variables one at a time (IndeCateR, measure-valued) still have variance, and
    estimators over the joint K^D outcomes (sampling without replacement, exact enumeration)
    have a small support. ``[x_d = x_e] = x_d·x_e`` extends f multilinearly to relaxed
    samples; since the variables are independent, ``J = Σ_d h_d·π_d + Σ_{d<e} J_de π_d·π_e``
    with ``π_d = softmax(θ_d)``, and ∇J is its gradient (tests check both against brute-force
    enumeration of the K^D outcomes). The score is ``x − π``. The Potts model (Potts, 1952) as
    a non-separable discrete objective, in the spirit of the categorical toy problems of Kool,
    van Hoof & Welling (ICLR 2020) and De Smet et al. (NeurIPS 2023).
    """

    display_name = "Potts, D = {D}, K = {K}"
    parameter_symbols: ClassVar = {"coupling": "J"}

    D: int = 5
    K: int = 4
    coupling: float = 1.0
    seed: int = 0
    init_scale: float = 0.5

    capabilities: ClassVar = frozenset({
        Capability.DISCRETE, Capability.RELAXABLE, Capability.CATEGORICAL_LOGITS})
    reference: ClassVar = "Potts, 1952; Kool et al., 2020"

    def __post_init__(self) -> None:
        check_size(self.name, "D", self.D, low=2, high=64)
        check_size(self.name, "K", self.K, low=2, high=64)
        check_magnitude(self.name, "coupling", self.coupling, limit=1e3)
        check_magnitude(self.name, "init_scale", self.init_scale, limit=10.0)

    @device_cached
    def _energy(self) -> tuple[Tensor, Tensor]:
        """Fields ``h (D, K)`` and the strictly upper-triangular couplings ``J (D, D)``."""
        g = torch.Generator().manual_seed(self.seed)
        fields = torch.randn(self.D, self.K, generator=g, dtype=DTYPE)
        couplings = self.coupling * torch.randn(self.D, self.D, generator=g, dtype=DTYPE)
        return fields, torch.triu(couplings, diagonal=1)

    @property
    def variables(self) -> int:
        return self.D

    @property
    def categories(self) -> int:
        return self.K

    @built_on_cpu
    def initial_theta(self) -> Tensor:
        g = torch.Generator().manual_seed(self.seed + 1)
        return self.init_scale * torch.randn(self.dim, generator=g, dtype=DTYPE)

    def f(self, samples: Tensor) -> Tensor:
        fields, couplings = self._energy
        unary = (samples * fields).sum(dim=(-2, -1))
        overlaps = samples @ samples.transpose(-1, -2)  # (…, D, D): x_d·x_e
        return unary + (overlaps * couplings).sum(dim=(-2, -1))

    def support(self) -> Tensor:
        if self.K**self.D > MAX_SUPPORT:
            raise NotImplementedError(
                f"{self.name}: K^D = {self.K}^{self.D} outcomes are more than {MAX_SUPPORT}")
        codes = torch.tensor(list(itertools.product(range(self.K), repeat=self.D)))
        return torch.nn.functional.one_hot(codes, self.K).to(DTYPE)[None]

    def value(self, theta: Tensor) -> Tensor:
        return self.f(self._probs(theta))

    def exact_grad(self, theta: Tensor) -> Tensor:
        return gradient_of_value(self, theta)
