"""A multi-sample (importance-weighted) bound on digits, exact by enumerating K-tuples of codes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.devices import built_on_cpu, device_cached
from vrbench.problems import register
from vrbench.problems.base import DTYPE, Capability, Problem, check_size, gradient_of_value
from vrbench.problems.vae import Latents, binarized_digits, decoder_offset, log_likelihood

MAX_TUPLES = 2**18
"""Largest number of K-tuples of codes per image, (2^L)^K, that the exact solution sums."""


@register("iwae_digits")
@dataclass(frozen=True)
class IWAEDigits(Problem):
    """The K-sample importance-weighted bound of a binary-latent VAE on digits (θ: encoder).

    Encoder ``q(z|x) = Π_l Bernoulli(z_l; sigmoid(W x + c)_l)`` with ``L = latents`` bits,
    ``θ = (W ∈ R^{L×64}, c ∈ R^L)``; fixed decoder ``Bernoulli(sigmoid(V z + d))`` (V drawn
    N(0, 1) from ``seed``, d the log-odds of the pixel means) and uniform prior, on the first
    ``batch`` binarized digits. One sample holds K codes ``z_b1..z_bK ~ q(·|x_b)`` for every
    image and ``f = (1/B) Σ_b log (1/K) Σ_k w_bk`` with ``w_bk = p(x_b, z_bk) / q(z_bk|x_b)``:
    ``J = E[f]`` is the multi-sample bound of Burda, Grosse & Salakhutdinov ("Importance
    weighted autoencoders", ICLR 2016), the objective of VIMCO (Mnih & Rezende, ICML 2016).

    Unlike the single-sample ELBO, f depends on θ through the weights, and not only through a
    term of mean zero: ``∇J = E[(1/B) Σ_b Σ_k (L_b − w̃_bk) ∇θ log q(z_bk|x_b)]`` with
    ``L_b = log (1/K) Σ_k w_bk`` and ``w̃_bk = w_bk / Σ_i w_bi``, because ``∇θ log w =
    −∇θ log q`` (Mnih & Rezende, 2016, section 2). Estimators therefore see the
    K codes and their weights (:meth:`log_weights`, :meth:`code_weighted_score`), and only
    those that require ``multi_sample`` run here; f-evaluations count draws of K codes. The
    exact J and ∇J sum over all (2^L)^K tuples of codes of each image (autograd through the
    sum gives ∇J).
    """

    display_name = "IWAE bound (digits)"

    batch: int = 4
    latents: int = 4
    K: int = 4
    seed: int = 0
    init_scale: float = 0.3

    capabilities: ClassVar = frozenset({Capability.DISCRETE, Capability.MULTI_SAMPLE})
    maximize: ClassVar = True
    reference: ClassVar = "Burda et al., 2016; Mnih & Rezende, 2016"
    # f averages the images' bounds, whose noise adds up in the score-function forms of ∇J:
    # two images keep the structure across items and reach a 1% check in seconds.
    check_params: ClassVar = MappingProxyType({"batch": 2})

    def __post_init__(self) -> None:
        check_size(self.name, "batch", self.batch, high=1797)
        check_size(self.name, "latents", self.latents, high=16)
        check_size(self.name, "K", self.K, low=2, high=64)
        check(2 ** (self.latents * self.K) <= MAX_TUPLES, self.name,
              f"(2^latents)^K = 2^{self.latents * self.K} tuples of codes per image must be "
              f"at most {MAX_TUPLES} (the exact solution sums over them)")
        check(0 < self.init_scale <= 10, self.name,
              f"init_scale={self.init_scale} must lie in (0, 10]")

    @device_cached
    def _model(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Images ``(B, 64)``, decoder ``V (64, L)`` and ``d``, every code ``(2^L, L)``,
        ``log p(x_b, z)`` for every image and code ``(B, 2^L)`` and every K-tuple of code
        indices ``((2^L)^K, K)``."""
        digits = binarized_digits()
        images = digits[: self.batch]
        g = torch.Generator().manual_seed(self.seed)
        decoder = torch.randn(64, self.latents, generator=g, dtype=DTYPE)
        offset = decoder_offset(digits)
        count = 2**self.latents
        codes = ((torch.arange(count)[:, None] >> torch.arange(self.latents)) & 1).to(DTYPE)
        log_joint = (log_likelihood(images, codes[:, None, :], decoder, offset).T
                     - self.latents * math.log(2))
        tuples = torch.cartesian_prod(*[torch.arange(count)] * self.K).reshape(-1, self.K)
        return images, decoder, offset, codes, log_joint, tuples

    @property
    def dim(self) -> int:
        return self.latents * 65

    @built_on_cpu
    def initial_theta(self) -> Tensor:
        g = torch.Generator().manual_seed(self.seed + 1)
        weights = self.init_scale * torch.randn(self.latents * 64, generator=g, dtype=DTYPE)
        return torch.cat([weights, torch.zeros(self.latents, dtype=DTYPE)])

    def _encoder_logits(self, theta: Tensor) -> Tensor:
        images = self._model[0]
        weights = theta[: self.latents * 64].reshape(self.latents, 64)
        return images @ weights.T + theta[self.latents * 64 :]  # (B, L)

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Latents:
        logits = self._encoder_logits(theta)[:, None, :]  # (B, 1, L): K codes per image
        uniforms = torch.rand((*shape, self.batch, self.K, self.latents), generator=generator,
                              dtype=DTYPE)
        codes = (uniforms < torch.sigmoid(logits)).to(DTYPE)
        log_q = (codes * logits - torch.nn.functional.softplus(logits)).sum(-1)
        return Latents(codes, log_q)  # codes (R, n, B, K, L), log q (R, n, B, K)

    def log_prob(self, theta: Tensor, samples: Latents) -> Tensor:
        """``Σ_b Σ_k log q(z_bk|x_b; θ)``: the draw holds K independent codes per image."""
        logits = self._encoder_logits(theta)[:, None, :]
        return (samples.codes * logits - torch.nn.functional.softplus(logits)).sum(
            dim=(-3, -2, -1))

    def log_weights(self, samples: Latents) -> Tensor:
        images, decoder, offset, _, _, _ = self._model
        log_joint = log_likelihood(images[:, None, :], samples.codes, decoder, offset)
        return log_joint - self.latents * math.log(2) - samples.log_q

    def f(self, samples: Latents) -> Tensor:
        bounds = torch.logsumexp(self.log_weights(samples), dim=-1) - math.log(self.K)
        return bounds.mean(-1)

    def _centered(self, theta: Tensor, samples: Latents) -> Tensor:
        return samples.codes - torch.sigmoid(self._encoder_logits(theta))[:, None, :]

    def _per_image_to_theta(self, per_image: Tensor) -> Tensor:
        """``Σ_b g_b ⊗ (x_b, 1)`` for per-image logit gradients ``g (R, B, L)``."""
        grad_weights = torch.einsum("rbl,bp->rlp", per_image, self._model[0]).flatten(-2)
        return torch.cat([grad_weights, per_image.sum(-2)], dim=-1)

    def score(self, theta: Tensor, samples: Latents) -> Tensor:
        centered = self._centered(theta, samples).sum(-2)  # Σ_k over the K codes: (R, n, B, L)
        weights = torch.einsum("rnbl,bp->rnlp", centered, self._model[0]).flatten(-2)
        return torch.cat([weights, centered.sum(-2)], dim=-1)

    def code_weighted_score(self, theta: Tensor, samples: Latents, weights: Tensor) -> Tensor:
        centered = self._centered(theta, samples)
        return self._per_image_to_theta(
            torch.einsum("rnbk,rnbkl->rbl", weights, centered) / weights.shape[1])

    def weighted_score(self, theta: Tensor, samples: Latents, weights: Tensor) -> Tensor:
        centered = self._centered(theta, samples)
        return self._per_image_to_theta(
            torch.einsum("rn,rnbkl->rbl", weights, centered) / weights.shape[1])

    def value(self, theta: Tensor) -> Tensor:
        _, _, _, codes, log_joint, tuples = self._model
        logits = self._encoder_logits(theta)
        log_q = codes @ logits.T - torch.nn.functional.softplus(logits).sum(-1)  # (2^L, B)
        log_w = log_joint - log_q.T  # (B, 2^L)
        tuple_log_q = log_q.T[:, tuples].sum(-1)  # (B, tuples)
        bounds = torch.logsumexp(log_w[:, tuples], dim=-1) - math.log(self.K)
        return (tuple_log_q.exp() * bounds).sum() / self.batch

    def exact_grad(self, theta: Tensor) -> Tensor:
        return gradient_of_value(self, theta)

    def sample_width(self) -> int:
        return self.batch * self.K * (self.latents + 64)
