"""Independent bits scored by an Ising energy: the binary problem whose f is not separable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from vrbench.devices import built_on_cpu, device_cached
from vrbench.problems import register
from vrbench.problems.base import DTYPE, check_magnitude, check_size, gradient_of_value
from vrbench.problems.bernoulli import IndependentBernoullis


@register("bernoulli_ising")
@dataclass(frozen=True)
class BernoulliIsing(IndependentBernoullis):
    """D independent Bernoullis with logits θ, scored by an Ising energy of their spins.

    ``b_i ~ Bernoulli(σ(θ_i))``, spins ``s = 2b − 1``, ``f(b) = Σ_i h_i s_i + Σ_{i<j} J_ij s_i s_j``
    with fields ``h_i`` drawn N(0, 1) and couplings ``J_ij`` drawn N(0, coupling²) from
    ``seed``. The Bernoulli toys score each bit on its own, which makes coordinate-wise
    estimators (measure-valued, DisARM at p = 1/2) exact; the couplings here do not. f is
    multilinear in b, so it extends to relaxed bits unchanged, and with independent bits
    ``J = Σ_i h_i m_i + Σ_{i<j} J_ij m_i m_j``, ``m = 2σ(θ) − 1``; ∇J is its gradient (tests
    check both against enumeration of the 2^D outcomes). The score is ``b − σ(θ)``. The
    Ising model (Ising, 1925) as a non-separable binary objective, in the spirit of the
    binary toy problems of Yin & Zhou (ICLR 2019) and Dimitriev & Zhou (ICML 2021).
    """

    display_name = "Ising, D = {D}"
    parameter_symbols: ClassVar = {"coupling": "J"}

    D: int = 10
    coupling: float = 0.5
    seed: int = 0
    init_scale: float = 0.5

    reference: ClassVar = "Ising, 1925; Dimitriev & Zhou, 2021"

    def __post_init__(self) -> None:
        check_size(self.name, "D", self.D, low=2, high=1000)
        check_magnitude(self.name, "coupling", self.coupling, limit=1e3)
        check_magnitude(self.name, "init_scale", self.init_scale, limit=10.0)

    @device_cached
    def _energy(self) -> tuple[Tensor, Tensor]:
        """Fields ``h (D,)`` and the strictly upper-triangular couplings ``J (D, D)``."""
        g = torch.Generator().manual_seed(self.seed)
        fields = torch.randn(self.D, generator=g, dtype=DTYPE)
        couplings = self.coupling * torch.randn(self.D, self.D, generator=g, dtype=DTYPE)
        return fields, torch.triu(couplings, diagonal=1)

    @property
    def dim(self) -> int:
        return self.D

    @built_on_cpu
    def initial_theta(self) -> Tensor:
        g = torch.Generator().manual_seed(self.seed + 1)
        return self.init_scale * torch.randn(self.D, generator=g, dtype=DTYPE)

    def f(self, samples: Tensor) -> Tensor:
        fields, couplings = self._energy
        spins = 2 * samples - 1
        return spins @ fields + ((spins @ couplings) * spins).sum(-1)

    def value(self, theta: Tensor) -> Tensor:
        return self.f(torch.sigmoid(theta))  # multilinear: f(E[b]) = E[f(b)]

    def exact_grad(self, theta: Tensor) -> Tensor:
        return gradient_of_value(self, theta)
