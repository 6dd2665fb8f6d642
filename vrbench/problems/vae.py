"""A discrete variational auto-encoder on real data, with the exact ELBO gradient."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.devices import built_on_cpu, device_cached
from vrbench.problems import register
from vrbench.problems.base import DTYPE, Capability, Problem, check_size

LATENTS = 10
"""Latent bits of the default encoder."""

MAX_EXACT_LATENTS = 12
"""Most latent bits whose 2^L codes per image the exact J and ∇J enumerate; beyond, the
problem has no exact gradient and is measured against a reference."""

MAX_LATENTS = 4096


class Latents(NamedTuple):
    """Samples of an encoder: codes ``(R, n, B, …)`` and each image's log q (``(R, n, B)``)."""

    codes: Tensor
    log_q: Tensor


@functools.cache
def binarized_digits() -> Tensor:
    """scikit-learn's bundled 8x8 digits (1797 images, no download), pixels > 8 of 16 set to 1."""
    from sklearn.datasets import load_digits

    return torch.as_tensor(load_digits().data > 8, dtype=DTYPE, device="cpu")


def _log_bernoulli(bits: Tensor, logits: Tensor) -> Tensor:
    """Σ over the last axis of log Bernoulli(bits; sigmoid(logits))."""
    return (bits * logits - torch.nn.functional.softplus(logits)).sum(-1)


def log_likelihood(images: Tensor, codes: Tensor, decoder: Tensor, offset: Tensor) -> Tensor:
    """``log p(x_b | z_b)`` of the decoder ``Bernoulli(sigmoid(V z + d))`` for codes
    ``(..., B, L)`` (or broadcasting to it), with images ``(B, 64)`` and ``V (64, L)``.

    ``Σ_j x_bj · logit_j`` is taken as ``z · (Vᵀ x_b) + d · x_b``, so only the softplus term
    touches all 64 pixels of every sample.
    """
    logits = torch.nn.functional.linear(codes, decoder, offset)  # (..., B, 64)
    matched = (codes * (images @ decoder)).sum(-1) + images @ offset
    return matched - torch.nn.functional.softplus(logits).sum(-1)


def decoder_offset(digits: Tensor) -> Tensor:
    """The decoder's bias ``d``: the log-odds of the pixel means of the data."""
    mean = digits.mean(0).clamp(1e-3, 1 - 1e-3)
    return torch.log(mean) - torch.log1p(-mean)


@register("sigmoid_belief_vae_digits")
@dataclass(frozen=True)
class SigmoidBeliefVAEDigits(Problem):
    """ELBO of a binary-latent VAE on a fixed batch of digits, w.r.t. the encoder's weights.

    Data: the first ``batch`` binarized 8x8 digits ``x_b ∈ {0,1}^64`` of scikit-learn. Encoder
    ``q(z|x) = Π_i Bernoulli(z_i; sigmoid(W x + c)_i)``, ``θ = (W ∈ R^{L×64}, c ∈ R^L)``, L =
    ``latents`` (10); fixed decoder ``p(x|z) = Π_j Bernoulli(x_j; sigmoid(V z + d)_j)`` with ``V``
    drawn from ``seed`` (N(0, 1)) and ``d`` the log-odds of the data's pixel means; uniform prior. A
    sample draws one code per image; ``f = (1/B) Σ_b [log p(x_b|z_b) + log p(z_b) − log
    q(z_b|x_b)]`` (log q at the θ of the draw; both log-likelihoods are linear in the code, which
    extends f to relaxed codes in ``[0, 1]^L``), so ``J(θ) = E_q[f]`` is the batch-mean ELBO.
    Because ``E_q[∇θ log q] = 0``, ``∇J = E_q[f ∇θ log q]``: score-function estimators with this f
    are unbiased. The exact J and ∇J enumerate all 2^L codes per image, up to L = 12; with more
    latents (the papers use 200) the problem has no exact gradient and is measured against a
    reference gradient, the mean of many DisARM estimates (REINFORCE leave-one-out where DisARM is
    the estimator measured). The discrete-latent benchmark of REBAR (Tucker et al., NeurIPS 2017),
    RELAX (Grathwohl et al., ICLR 2018) and DisARM (Dong et al., NeurIPS 2020), at a size where the
    truth is computable.
    """

    display_name = "binary VAE (digits)"

    batch: int = 16
    seed: int = 0
    init_scale: float = 0.1
    latents: int = LATENTS

    capabilities: ClassVar = frozenset({Capability.DISCRETE, Capability.AMORTIZED,
                                        Capability.BERNOULLI_LATENTS})
    maximize: ClassVar = True
    reference: ClassVar = "Tucker et al., 2017; Grathwohl et al., 2018; Dong et al., 2020"
    # f is a sum over the batch's images, whose noise adds up: two images are cheaper to check.
    check_params: ClassVar = MappingProxyType({"batch": 2})
    reference_estimators: ClassVar = ("disarm", "rloo")

    def __post_init__(self) -> None:
        check(1 <= self.batch <= 1797, self.name, f"batch={self.batch} must lie in 1..1797")
        check_size(self.name, "latents", self.latents, high=MAX_LATENTS)

    @property
    def has_exact_gradient(self) -> bool:
        return self.latents <= MAX_EXACT_LATENTS

    def parameter_groups(self) -> dict[str, slice]:
        weights = self.latents * 64
        return {"encoder weights": slice(0, weights),
                "encoder biases": slice(weights, weights + self.latents)}

    @device_cached
    def _model(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Images ``(B, 64)``, decoder ``V (64, L)`` and ``d (64,)``, every code ``(2^L, L)``
        and ``log p(x_b, z)`` for every image and code ``(B, 2^L)`` (both empty without an
        exact gradient)."""
        digits = binarized_digits()
        images = digits[: self.batch]
        g = torch.Generator().manual_seed(self.seed)
        decoder = torch.randn(64, self.latents, generator=g, dtype=DTYPE)
        offset = decoder_offset(digits)
        count = 2**self.latents if self.has_exact_gradient else 0
        codes = ((torch.arange(count)[:, None] >> torch.arange(self.latents)) & 1).to(DTYPE)
        log_joint = self._log_joint(images, codes[:, None, :], decoder, offset).T
        return images, decoder, offset, codes, log_joint

    def _log_joint(self, images: Tensor, codes: Tensor, decoder: Tensor, offset: Tensor
                   ) -> Tensor:
        """``log p(x_b | z_b) + log p(z_b)`` for codes ``(..., B, L)`` (or broadcasting to it)."""
        return log_likelihood(images, codes, decoder, offset) - self.latents * math.log(2)

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
        split = self.latents * 64
        weights, bias = theta[:split].reshape(self.latents, 64), theta[split:]
        return images @ weights.T + bias  # (B, L)

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Latents:
        logits = self._encoder_logits(theta)
        uniforms = torch.rand((*shape, *logits.shape), generator=generator, dtype=DTYPE)
        codes = (uniforms < torch.sigmoid(logits)).to(DTYPE)
        return Latents(codes, _log_bernoulli(codes, logits))

    def f(self, samples: Latents) -> Tensor:
        return self.item_f(samples).mean(-1)

    def latent_logits(self, theta: Tensor) -> Tensor:
        return self._encoder_logits(theta)

    def latent_samples(self, theta: Tensor, codes: Tensor) -> Latents:
        return Latents(codes, _log_bernoulli(codes, self._encoder_logits(theta)))

    def latent_pullback(self, theta: Tensor, grad_logits: Tensor) -> Tensor:
        return self._per_image_to_theta(grad_logits)

    def item_inputs(self) -> Tensor:
        return self._model[0]

    def item_f(self, samples: Latents) -> Tensor:
        images, decoder, offset, _, _ = self._model
        return self._log_joint(images, samples.codes, decoder, offset) - samples.log_q

    def log_prob(self, theta: Tensor, samples: Latents) -> Tensor:
        return _log_bernoulli(samples.codes, self._encoder_logits(theta)).sum(-1)

    def score(self, theta: Tensor, samples: Latents) -> Tensor:
        images = self._model[0]
        centered = samples.codes - torch.sigmoid(self._encoder_logits(theta))  # (R, n, B, L)
        weights = torch.einsum("rnbl,bp->rnlp", centered, images).flatten(-2)
        return torch.cat([weights, centered.sum(-2)], dim=-1)

    def weighted_score(self, theta: Tensor, samples: Latents, weights: Tensor) -> Tensor:
        # Σ_j w_j (z_j − σ) ⊗ x = (Σ_j w_j (z_j − σ)) ⊗ x: contract the draws before the pixels.
        centered = samples.codes - torch.sigmoid(self._encoder_logits(theta))
        return self._per_image_to_theta(
            torch.einsum("rn,rnbl->rbl", weights, centered) / weights.shape[1])

    def item_weighted_score(self, theta: Tensor, samples: Latents, weights: Tensor) -> Tensor:
        centered = samples.codes - torch.sigmoid(self._encoder_logits(theta))
        return self._per_image_to_theta(
            torch.einsum("rnb,rnbl->rbl", weights, centered) / weights.shape[1])

    def _per_image_to_theta(self, per_image: Tensor) -> Tensor:
        """``Σ_b g_b ⊗ (x_b, 1)`` for per-image logit gradients ``g (R, B, L)``: the chain
        rule through the encoder's logits ``W x_b + c``."""
        grad_weights = torch.einsum("rbl,bp->rlp", per_image, self._model[0]).flatten(-2)
        return torch.cat([grad_weights, per_image.sum(-2)], dim=-1)

    def _enumerate(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``q_b(z)``, ``f_b(z) = log p(x_b, z) − log q_b(z)`` over all codes, and the logits."""
        if not self.has_exact_gradient:
            raise NotImplementedError(
                f"{self.name} with {self.latents} latents has no exact J or ∇J (2^{self.latents}"
                f" codes per image are too many to enumerate): it is measured against a "
                "reference gradient")
        _, _, _, codes, log_joint = self._model
        logits = self._encoder_logits(theta)
        log_q = codes @ logits.T - torch.nn.functional.softplus(logits).sum(-1)  # (K, B)
        return log_q.T.exp(), log_joint - log_q.T, logits

    def value(self, theta: Tensor) -> Tensor:
        q, elbo_terms, _ = self._enumerate(theta)
        return (q * elbo_terms).sum() / self.batch

    def exact_grad(self, theta: Tensor) -> Tensor:
        images, _, _, codes, _ = self._model
        q, elbo_terms, logits = self._enumerate(theta)
        weights = q * elbo_terms  # (B, K): Σ_z q f ∇log q, with ∇_logits log q = z − σ(logits)
        grad_logits = weights @ codes - weights.sum(-1, keepdim=True) * torch.sigmoid(logits)
        grad_weights = grad_logits.T @ images / self.batch
        return torch.cat([grad_weights.reshape(-1), grad_logits.sum(0) / self.batch])

    def sample_width(self) -> int:
        return self.batch * (self.latents + 64)
