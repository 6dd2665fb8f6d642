"""Bayesian logistic regression on scikit-learn's breast-cancer data, with a diagonal Gaussian
variational posterior: the running example of Mohamed et al. (JMLR 2020, section 8)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from vrbench.components import check
from vrbench.devices import built_on_cpu, device_cached
from vrbench.problems import register
from vrbench.problems.base import DTYPE, Capability, NumericalReference, check_scale
from vrbench.problems.gaussian import DiagonalGaussianSampling

PANELS = (16, 32, 64, 128, 256)
"""Panel counts of the composite quadrature, tried in turn until two agree."""

NODES_PER_PANEL = 16
NOISE_BOUND = 12.0
"""ε beyond ±12 has probability 4e-33, beyond every float64 sum."""

QUADRATURE_RTOL = 1e-12


@functools.cache
def breast_cancer() -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled Wisconsin diagnostic breast-cancer data (569 × 30, no download):
    features standardized by the whole data set's mean and standard deviation, with a column
    of ones for the bias (569 × 31), and the signs ``s = 2y − 1`` of the labels."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    features = (data.data - data.data.mean(axis=0)) / data.data.std(axis=0)
    features = np.concatenate([features, np.ones((features.shape[0], 1))], axis=1)
    return (torch.as_tensor(features, dtype=DTYPE, device="cpu"),
            torch.as_tensor(2.0 * data.target - 1.0, dtype=DTYPE, device="cpu"))


@built_on_cpu
def _unit_rule(panels: int) -> tuple[Tensor, Tensor]:
    """Nodes and weights of composite Gauss–Legendre for ``E[g(ε)]``, ``ε ~ N(0, 1)``, over
    ``[−12, 12]`` in ``panels`` panels of :data:`NODES_PER_PANEL` nodes."""
    edges = np.linspace(-NOISE_BOUND, NOISE_BOUND, panels + 1)
    unit, unit_weights = np.polynomial.legendre.leggauss(NODES_PER_PANEL)
    half = np.diff(edges)[:, None] / 2
    middle = (edges[:-1] + edges[1:])[:, None] / 2
    nodes = (middle + half * unit).ravel()
    weights = (half * unit_weights).ravel() * np.exp(-0.5 * nodes**2) / math.sqrt(2 * math.pi)
    return torch.as_tensor(nodes, dtype=DTYPE), torch.as_tensor(weights, dtype=DTYPE)


@register("bayesian_logistic_regression")
@dataclass(frozen=True)
class BayesianLogisticRegression(DiagonalGaussianSampling):
    """Expected log-likelihood of a logistic regression under a diagonal Gaussian posterior.

    Data: scikit-learn's breast-cancer set, the first ``batch`` of its 569 points ``x_i``
    (30 standardized features and a bias: D = 31) with labels ``y_i ∈ {0, 1}``,
    ``s_i = 2y_i − 1``. Variational posterior ``q(w) = N(μ, diag σ²)``, ``θ = (μ, σ)``;
    ``f(w) = Σ_i log σ(s_i x_i·w)``, the data term of the ELBO, so ``J(θ) = E_q[f]``; the
    ELBO is ``J − KL(q ‖ N(0, I))`` with the KL in closed form (:meth:`regularizer`), which
    optimization adds exactly, as the paper's code does. Since ``a_i = s_i x_i·w`` is
    Gaussian, ``N(m_i, v_i)`` with ``m_i = s_i x_i·μ`` and ``v_i = Σ_j x_ij² σ_j²``, J is a
    sum of one-dimensional integrals, and so is ∇J: ``∂J/∂μ_j = Σ_i s_i x_ij E[σ(−a_i)]`` and
    ``∂J/∂σ_j = −σ_j Σ_i x_ij² E[σ(a_i) σ(−a_i)]`` (Stein's lemma, ``∂E g(a)/∂v = ½ E g''``).
    They have no closed form, so the problem has no exact gradient: its reference is
    composite Gauss–Legendre quadrature of each integral (Gauss–Hermite converges slowly
    here, the integrand's width being 1/√v_i of the Gaussian's), refined until two
    resolutions agree, with their difference as the stated error (about 1e-13 relative). The
    running example of Mohamed, Rosca, Figurnov & Mnih, "Monte Carlo Gradient Estimation in
    Machine Learning", JMLR 2020, section 8 (UCI Wisconsin breast cancer, prior N(0, I),
    posterior initialized at μ = 0, σ = 1).
    """

    batch: int = 569
    mu: float = 0.0
    sigma: float = 1.0

    display_name = "Bayesian logistic regression"
    parameter_symbols: ClassVar = {"batch": "N", "mu": "initial μ", "sigma": "initial σ"}

    capabilities: ClassVar = frozenset({
        Capability.CONTINUOUS, Capability.DIFFERENTIABLE, Capability.REPARAMETERIZABLE,
        Capability.GAUSSIAN})
    reference: ClassVar = "Mohamed et al., 2020 (JMLR), section 8"
    maximize: ClassVar = True
    # Eight points: every estimate is 70 times cheaper (the measure-valued estimators evaluate
    # f 124 times per draw), and the gradient keeps the structure of the whole set.
    check_params: ClassVar = MappingProxyType({"batch": 8})
    reference_estimators: ClassVar = ("reparameterization", "score_function_baseline")

    def __post_init__(self) -> None:
        check(1 <= self.batch <= 569, self.name, f"batch={self.batch} must lie in 1..569")
        check(abs(self.mu) <= 100, self.name, f"mu={self.mu} must lie in [-100, 100]")
        check_scale(self.name, "sigma", self.sigma)

    @property
    def D(self) -> int:  # type: ignore[override]
        return 31

    @property
    def has_exact_gradient(self) -> bool:
        return False

    @device_cached
    def _data(self) -> tuple[Tensor, Tensor]:
        """The signed features ``s_i x_i`` ``(B, D)`` and their squares ``(B, D)``."""
        features, signs = breast_cancer()
        features = features[: self.batch]
        return features * signs[: self.batch, None], features**2

    def initial_theta(self) -> Tensor:
        return torch.cat([torch.full((self.D,), self.mu, dtype=DTYPE),
                          torch.full((self.D,), self.sigma, dtype=DTYPE)])

    def f(self, samples: Tensor) -> Tensor:
        signed, _ = self._data
        return torch.nn.functional.logsigmoid(samples @ signed.T).sum(-1)

    def regularizer(self, theta: Tensor) -> Tensor:
        """``−KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_j (1 + log σ_j² − μ_j² − σ_j²)``."""
        mu, sigma = theta[: self.D], theta[self.D :]
        return 0.5 * (1 + 2 * torch.log(sigma) - mu**2 - sigma**2).sum()

    def _quadrature(self, theta: Tensor, panels: int) -> tuple[Tensor, Tensor]:
        """J and ∇J by the composite rule with ``panels`` panels."""
        signed, squares = self._data
        mu, sigma = theta[: self.D], theta[self.D :]
        nodes, weights = _unit_rule(panels)
        means = signed @ mu  # (B,)
        spreads = (squares @ sigma**2).sqrt()
        a = means[:, None] + spreads[:, None] * nodes  # (B, nodes)
        value = (torch.nn.functional.logsigmoid(a) @ weights).sum()
        slope = torch.sigmoid(-a) @ weights  # E[σ(−a_i)]
        curvature = (torch.sigmoid(a) * torch.sigmoid(-a)) @ weights  # −E[g''(a_i)]
        grad = torch.cat([slope @ signed, -sigma * (curvature @ squares)])
        return value, grad

    def numerical_reference(self, theta: Tensor) -> NumericalReference:
        previous = self._quadrature(theta, PANELS[0])
        panels = PANELS[0]
        for panels in PANELS[1:]:
            value, grad = self._quadrature(theta, panels)
            value_error = (value - previous[0]).abs()
            grad_error = (grad - previous[1]).abs()
            scale = float(grad.abs().max())
            if float(grad_error.max()) <= QUADRATURE_RTOL * scale:
                break
            previous = (value, grad)
        # Float64 rounding of the sums bounds what two resolutions can show.
        floor = 1e-15 * self.batch
        return NumericalReference(value, grad, value_error + floor * (1 + value.abs()),
                                  grad_error + floor * (1 + grad.abs()),
                                  f"quadrature ({panels} × {NODES_PER_PANEL}-node "
                                  "Gauss–Legendre)")

    def value(self, theta: Tensor) -> Tensor:
        raise NotImplementedError(f"{self.name} has no closed-form J: numerical_reference "
                                  "gives it by quadrature, with its error")

    def exact_grad(self, theta: Tensor) -> Tensor:
        raise NotImplementedError(f"{self.name} has no closed-form ∇J: numerical_reference "
                                  "gives it by quadrature, with its error")

    def coordinate_names(self) -> list[str]:
        return [f"μ{j}" for j in range(self.D)] + [f"σ{j}" for j in range(self.D)]

    def sample_width(self) -> int:
        return self.D + self.batch
