"""A categorical-latent variational auto-encoder on real data, with the exact ELBO gradient."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.devices import built_on_cpu, device_cached
from vrbench.problems import register
from vrbench.problems.base import DTYPE, Capability, Problem, check_size
from vrbench.problems.potts import one_hot_by_inversion
from vrbench.problems.vae import Latents, binarized_digits, decoder_offset, log_likelihood

MAX_CODES = 2**12
"""Largest number of codes K^D per image: the exact solution enumerates all of them."""


@register("categorical_vae_digits")
@dataclass(frozen=True)
class CategoricalVAEDigits(Problem):
    """ELBO of a VAE with D categorical latents of K classes on digits, w.r.t. the encoder.

    Data: the first ``batch`` binarized 8x8 digits ``x_b ∈ {0,1}^64`` of scikit-learn. Encoder
    ``q(z|x) = Π_d Categorical(z_d; softmax((W x + c)_d))`` with ``θ = (W ∈ R^{DK×64},
    c ∈ R^{DK})``; fixed decoder ``p(x|z) = Π_j Bernoulli(x_j; sigmoid(V z + d)_j)`` on the
    one-hot code ``z ∈ {0,1}^{DK}``, with ``V`` drawn N(0, 1) from ``seed`` and ``d`` the
    log-odds of the pixel means; uniform prior ``K^{−D}``. A sample draws one code per image;
    ``f = (1/B) Σ_b f_b`` with ``f_b = log p(x_b|z_b) + log p(z_b) − log q(z_b|x_b)`` (log q at
    the θ of the draw; both log-likelihoods are linear in the one-hot code, which extends f to
    relaxed codes on the simplex), so ``J = E_q[f]`` is the batch-mean ELBO and, since
    ``E_q[∇θ log q] = 0``, ``∇J = E_q[f ∇θ log q]``. The exact J and ∇J enumerate the K^D
    codes of each image.
    The categorical VAE of Jang, Gu & Poole ("Categorical reparameterization with
    Gumbel-softmax", ICLR 2017) and of the sampling-without-replacement estimators (Kool et
    al., ICLR 2020), at a size where the truth is computable.
    """

    display_name = "categorical VAE (digits)"

    batch: int = 8
    D: int = 4
    K: int = 4
    seed: int = 0
    init_scale: float = 0.1

    capabilities: ClassVar = frozenset({Capability.DISCRETE, Capability.AMORTIZED,
                                        Capability.CATEGORICAL_LATENTS})
    maximize: ClassVar = True
    reference: ClassVar = "Jang et al., 2017; Kool et al., 2020"
    # f averages the images' bounds, whose noise adds up in the score-function forms of ∇J:
    # two images keep the structure across items and reach a 1% check in seconds.
    check_params: ClassVar = MappingProxyType({"batch": 2})

    def __post_init__(self) -> None:
        check_size(self.name, "batch", self.batch, high=1797)
        check_size(self.name, "D", self.D, high=12)
        check_size(self.name, "K", self.K, low=2, high=MAX_CODES)
        check(self.K**self.D <= MAX_CODES, self.name,
              f"K^D = {self.K}^{self.D} codes per image must be at most {MAX_CODES} (the exact "
              "solution enumerates them)")
        check(0 < self.init_scale <= 10, self.name,
              f"init_scale={self.init_scale} must lie in (0, 10]")

    def parameter_groups(self) -> dict[str, slice]:
        weights = self._width * 64
        return {"encoder weights": slice(0, weights),
                "encoder biases": slice(weights, weights + self._width)}

    @property
    def _width(self) -> int:
        return self.D * self.K

    @device_cached
    def _model(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Images ``(B, 64)``, decoder ``V (64, DK)`` and ``d (64,)``, every one-hot code
        ``(K^D, DK)`` and ``log p(x_b, z)`` for every image and code ``(B, K^D)``."""
        digits = binarized_digits()
        images = digits[: self.batch]
        g = torch.Generator().manual_seed(self.seed)
        decoder = torch.randn(64, self._width, generator=g, dtype=DTYPE)
        offset = decoder_offset(digits)
        indices = torch.tensor(list(itertools.product(range(self.K), repeat=self.D)))
        codes = torch.nn.functional.one_hot(indices, self.K).to(DTYPE).flatten(-2)
        log_joint = (log_likelihood(images, codes[:, None, :], decoder, offset).T
                     - self.D * math.log(self.K))
        return images, decoder, offset, codes, log_joint

    @property
    def dim(self) -> int:
        return self._width * 65

    @built_on_cpu
    def initial_theta(self) -> Tensor:
        g = torch.Generator().manual_seed(self.seed + 1)
        weights = self.init_scale * torch.randn(self._width * 64, generator=g, dtype=DTYPE)
        return torch.cat([weights, torch.zeros(self._width, dtype=DTYPE)])

    def _encoder_logits(self, theta: Tensor) -> Tensor:
        """Logits ``(B, D, K)`` of every image's code."""
        images = self._model[0]
        weights = theta[: self._width * 64].reshape(self._width, 64)
        logits = images @ weights.T + theta[self._width * 64 :]
        return logits.reshape(self.batch, self.D, self.K)

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator) -> Latents:
        log_probs = torch.log_softmax(self._encoder_logits(theta), dim=-1)
        codes = one_hot_by_inversion(log_probs.exp(), shape, generator)
        return Latents(codes, (codes * log_probs).sum(dim=(-2, -1)))

    def f(self, samples: Latents) -> Tensor:
        return self.item_f(samples).mean(-1)

    def latent_logits(self, theta: Tensor) -> Tensor:
        return self._encoder_logits(theta)

    def latent_samples(self, theta: Tensor, codes: Tensor) -> Latents:
        log_probs = torch.log_softmax(self._encoder_logits(theta), dim=-1)
        return Latents(codes, (codes * log_probs).sum(dim=(-2, -1)))

    def latent_pullback(self, theta: Tensor, grad_logits: Tensor) -> Tensor:
        return self._per_image_to_theta(grad_logits.flatten(-2))

    def item_inputs(self) -> Tensor:
        return self._model[0]

    def item_f(self, samples: Latents) -> Tensor:
        images, decoder, offset, _, _ = self._model
        log_joint = (log_likelihood(images, samples.codes.flatten(-2), decoder, offset)
                     - self.D * math.log(self.K))
        return log_joint - samples.log_q

    def log_prob(self, theta: Tensor, samples: Latents) -> Tensor:
        """``Σ_b log q(z_b|x_b; θ)``: the draw holds one code per image, independently."""
        log_probs = torch.log_softmax(self._encoder_logits(theta), dim=-1)
        return (samples.codes * log_probs).sum(dim=(-3, -2, -1))

    def _centered(self, theta: Tensor, samples: Latents) -> Tensor:
        """``∇_logits log q`` of each draw and image, ``(R, n, B, DK)``."""
        probs = torch.softmax(self._encoder_logits(theta), dim=-1)
        return (samples.codes - probs).flatten(-2)

    def _per_image_to_theta(self, per_image: Tensor) -> Tensor:
        """``Σ_b g_b ⊗ (x_b, 1)`` for per-image logit gradients ``g (R, B, DK)``."""
        grad_weights = torch.einsum("rbl,bp->rlp", per_image, self._model[0]).flatten(-2)
        return torch.cat([grad_weights, per_image.sum(-2)], dim=-1)

    def score(self, theta: Tensor, samples: Latents) -> Tensor:
        centered = self._centered(theta, samples)
        weights = torch.einsum("rnbl,bp->rnlp", centered, self._model[0]).flatten(-2)
        return torch.cat([weights, centered.sum(-2)], dim=-1)

    def weighted_score(self, theta: Tensor, samples: Latents, weights: Tensor) -> Tensor:
        centered = self._centered(theta, samples)
        return self._per_image_to_theta(
            torch.einsum("rn,rnbl->rbl", weights, centered) / weights.shape[1])

    def item_weighted_score(self, theta: Tensor, samples: Latents, weights: Tensor) -> Tensor:
        centered = self._centered(theta, samples)
        return self._per_image_to_theta(
            torch.einsum("rnb,rnbl->rbl", weights, centered) / weights.shape[1])

    def _enumerate(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``q_b(z)`` and ``f_b(z)`` over all codes ``(B, K^D)``, and the probabilities."""
        _, _, _, codes, log_joint = self._model
        log_probs = torch.log_softmax(self._encoder_logits(theta), dim=-1)  # (B, D, K)
        log_q = log_probs.flatten(-2) @ codes.T  # (B, K^D)
        return log_q.exp(), log_joint - log_q, log_probs.exp()

    def value(self, theta: Tensor) -> Tensor:
        q, elbo_terms, _ = self._enumerate(theta)
        return (q * elbo_terms).sum() / self.batch

    def exact_grad(self, theta: Tensor) -> Tensor:
        codes = self._model[3]
        q, elbo_terms, probs = self._enumerate(theta)
        weights = q * elbo_terms  # Σ_z q f ∇log q, with ∇_logits log q = onehot(z) − π
        grad_logits = weights @ codes - weights.sum(-1, keepdim=True) * probs.flatten(-2)
        return self._per_image_to_theta(grad_logits[None])[0] / self.batch

    def sample_width(self) -> int:
        return self.batch * (self._width + 64)
