"""A sigmoid belief network of several stochastic layers on image data, every weight trained."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import torch
from torch import Tensor

from vrbench.devices import built_on_cpu
from vrbench.problems import register
from vrbench.problems.base import DTYPE, check_size
from vrbench.problems.image_vae import ImageLatents, ImageVAE
from vrbench.problems.networks import MLP


def _log_bernoulli(bits: Tensor, logits: Tensor) -> Tensor:
    return (bits * logits - torch.nn.functional.softplus(logits)).sum(-1)


@register("sigmoid_belief_net")
@dataclass(frozen=True)
class SigmoidBeliefNet(ImageVAE):
    """Minibatch ELBO of a linear sigmoid belief network with ``layers`` stochastic layers of
    200 bits on Fashion-MNIST, every weight of generative model and recognition network in θ.

    Generative model ``p(z_K) Π_k p(z_{k−1} | z_k) p(x | z_1)``: ``z_K ~ Π Bernoulli(σ(η))``,
    ``z_{k−1} | z_k ~ Π Bernoulli(σ(V_k z_k + d_k))``, ``x | z_1 ~ Π Bernoulli(σ(V_1 (2z_1 −
    1) + d_1))``; recognition network ``q(z_1 | x) q(z_2 | z_1) … q(z_K | z_{K−1})`` with
    ``z_1 | x ~ Π Bernoulli(σ(W_1 (x − x̄) + c_1))`` and ``z_k | z_{k−1} ~ Π Bernoulli(σ(W_k
    z_{k−1} + c_k))``. ``f_b`` is image b's ``log p(x_b, z) − log q(z | x_b)`` (log q at the θ
    of the draw), J its mean over a minibatch of ``batch`` (50) dynamically binarized images;
    ``∇J = E_q[f ∇θ log q] + E_q[∇θ log p(x, z)]`` as for the single-layer VAEs (the second
    part the direct gradient from ``decoder_samples`` draws). The two-layer linear model
    (200-200) of Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein, "REBAR: Low-variance,
    unbiased gradient estimates for discrete latent variable models", NeurIPS 2017, section
    6.1 (after Gu et al.'s MuProp); the layout (inputs demeaned at the image ends, the output
    bias at the data's log-odds) and the optimizers (Adam at 1e-4, the prior by SGD at 1e-2,
    batch 50) of Dong, Mnih & Tucker's multi-layer code (NeurIPS 2020), which stacks four.

    The latents of a layer depend on the layer below, so they are not independent with
    logits fixed by θ: the estimators for Bernoulli logits (ARM, DisARM, REBAR, ...), which
    need that, do not apply, and the score-function family (REINFORCE with its baselines,
    RLOO, NVIL, ...) does. With ``layers · latents`` ≤ 12, J and ∇J are exact (a sum over
    every code of every layer).
    """

    latents: int = 200
    layers: int = 2

    display_name = "sigmoid belief net, {layers} layers"
    reference: ClassVar = "Tucker et al., 2017; Dong et al., 2020 (multi-layer)"
    reference_estimators: ClassVar = ("rloo", "score_function_baseline")
    check_params: ClassVar = MappingProxyType({"batch": 2, "latents": 3, "pool": 4})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_size(self.name, "latents", self.latents, high=4096)
        check_size(self.name, "layers", self.layers, low=2, high=8)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.layers, self.latents)

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return ()

    # --- θ: one linear layer per stochastic layer, each way ---------------------------------

    @functools.cached_property
    def recognition(self) -> list[MLP]:
        """``q(z_1 | x)``, then ``q(z_k | z_{k−1})``."""
        layers, offset = [], 0
        for fan_in in (self.pixels, *[self.latents] * (self.layers - 1)):
            layers.append(MLP((fan_in, self.latents), offset=offset))
            offset = layers[-1].end
        return layers

    @functools.cached_property
    def generative(self) -> list[MLP]:
        """``p(x | z_1)``, then ``p(z_{k−1} | z_k)``."""
        layers, offset = [], self.recognition[-1].end
        for fan_out in (self.pixels, *[self.latents] * (self.layers - 1)):
            layers.append(MLP((self.latents, fan_out), offset=offset))
            offset = layers[-1].end
        return layers

    @property
    def dim(self) -> int:
        return self.generative[-1].end + self.latents

    def parameter_groups(self) -> dict[str, slice]:
        split = self.recognition[-1].end
        prior = self.generative[-1].end
        return {"encoder": slice(0, split), "decoder": slice(split, prior),
                "prior": slice(prior, self.dim)}

    @built_on_cpu
    def initial_theta(self) -> Tensor:
        g = torch.Generator().manual_seed(self.seed + 1)
        mean = self._data_mean.cpu().clamp(0.001, 0.999)
        parts = [layer.initial(g) for layer in self.recognition]
        parts.append(self.generative[0].initial(g, torch.log(mean) - torch.log1p(-mean)))
        parts += [layer.initial(g) for layer in self.generative[1:]]
        parts.append(torch.zeros(self.latents, dtype=DTYPE))
        return torch.cat(parts)

    def _prior_logits(self, theta: Tensor) -> Tensor:
        return theta[self.generative[-1].end :]

    # --- The model ---------------------------------------------------------------------------

    def _inputs(self, theta: Tensor, codes: Tensor, images: Tensor) -> list[Tensor]:
        """Each recognition layer's input: ``x − x̄`` ``(B, P)``, then the codes below."""
        return [images - self._data_mean] + [codes[..., k, :] for k in range(self.layers - 1)]

    def _recognition_logits(self, theta: Tensor, codes: Tensor, images: Tensor) -> list[Tensor]:
        return [layer.forward(theta, inputs)[0] for layer, inputs in
                zip(self.recognition, self._inputs(theta, codes, images), strict=True)]

    def _draw_chain(self, theta: Tensor, images: Tensor, shape: tuple[int, ...],
                    generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Codes ``(*shape, c, K, L)`` drawn layer by layer for images ``(c, P)``, and their
        ``log q``."""
        codes: list[Tensor]
        log_q: Tensor | float  # a tensor once the first layer's term is added
        inputs, codes, log_q = images - self._data_mean, [], 0.0
        for layer in self.recognition:
            logits, _ = layer.forward(theta, inputs)
            size = (*shape, *logits.shape) if not codes else logits.shape
            uniforms = torch.rand(size, generator=generator, dtype=DTYPE, device=logits.device)
            bits = (uniforms < torch.sigmoid(logits)).to(DTYPE)
            log_q = log_q + _log_bernoulli(bits, logits)
            codes.append(bits)
            inputs = bits
        return torch.stack(codes, dim=-2), log_q  # type: ignore[return-value]

    def _log_joint(self, theta: Tensor, codes: Tensor, images: Tensor) -> Tensor:
        """``log p(x_b, z)`` for codes ``(..., B, K, L)`` and images ``(B, P)``."""
        outputs, _ = self.generative[0].forward(theta, 2 * codes[..., 0, :] - 1)
        total = -torch.nn.functional.softplus(outputs * (1 - 2 * images)).sum(-1)
        for k in range(1, self.layers):
            logits, _ = self.generative[k].forward(theta, codes[..., k, :])
            total = total + _log_bernoulli(codes[..., k - 1, :], logits)
        return total + _log_bernoulli(codes[..., -1, :], self._prior_logits(theta))

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator
               ) -> ImageLatents:
        codes, log_q = self._draw_chain(theta, self.images, shape, generator)
        return ImageLatents(codes, log_q, theta.detach())

    def _item_elbo(self, samples: ImageLatents) -> Tensor:
        return self._log_joint(samples.theta, samples.codes, self.images) - samples.log_q

    def log_prob(self, theta: Tensor, samples: ImageLatents) -> Tensor:
        logits = self._recognition_logits(theta, samples.codes, self.images)
        # A sum over the layers (at least one) is a tensor, not sum()'s start value 0.
        return sum(_log_bernoulli(samples.codes[..., k, :], logit)  # type: ignore[union-attr]
                   for k, logit in enumerate(logits)).sum(-1)

    # --- Gradients ---------------------------------------------------------------------------

    def _weighted(self, theta: Tensor, codes: Tensor, weights: Tensor) -> Tensor:
        """``(1/n) Σ_j Σ_b w_jb ∇θ log q(z_jb | x_b)`` for codes ``(R, n, B, K, L)`` and
        weights ``(R, n, B)``: each recognition layer's chain rule with its own inputs."""
        replicates, draws = weights.shape[:2]
        inputs = self._inputs(theta, codes, self.images)
        logits = self._recognition_logits(theta, codes, self.images)
        parts = []
        for k, layer in enumerate(self.recognition):
            signal = weights[..., None] * (codes[..., k, :] - torch.sigmoid(logits[k])) / draws
            if k == 0:  # the images, shared by the draws: sum the draws first
                parts.append(layer.backward(theta, [inputs[0]], signal.sum(1)))
            else:
                flat = (replicates, -1, self.latents)
                parts.append(layer.backward(theta, [inputs[k].reshape(flat)],
                                            signal.reshape(flat)))
        encoder = torch.cat(parts, dim=-1)
        return torch.cat([encoder, encoder.new_zeros(replicates, self.dim - encoder.shape[1])],
                         dim=-1)

    def score(self, theta: Tensor, samples: ImageLatents) -> Tensor:
        lead = samples.codes.shape[:2]
        codes = samples.codes.flatten(0, 1)[:, None]
        ones = codes.new_ones(codes.shape[:3])
        return self._weighted(theta, codes, ones).reshape(*lead, self.dim)

    def weighted_score(self, theta: Tensor, samples: ImageLatents, weights: Tensor) -> Tensor:
        return self._weighted(theta, samples.codes,
                              weights[..., None].expand(*weights.shape, self.batch))

    def item_weighted_score(self, theta: Tensor, samples: ImageLatents, weights: Tensor
                            ) -> Tensor:
        return self._weighted(theta, samples.codes, weights)

    def direct_gradient(self, theta: Tensor, replicates: int, generator: torch.Generator
                        ) -> Tensor:
        """``(1/(mB)) Σ ∇θ log p(x_b, z_jb)`` over ``m = decoder_samples`` fresh codes per
        image and replicate: each generative layer's chain rule, the prior's ``z_K − σ(η)``,
        zero in the recognition network."""
        draws = self.decoder_samples
        codes, _ = self._draw_chain(theta, self.images, (replicates, draws), generator)
        count = draws * self.batch
        flat = codes.reshape(replicates, count, self.layers, self.latents)
        targets = [self.images.repeat(draws, 1)] + [flat[..., k - 1, :]
                                                   for k in range(1, self.layers)]
        parts = []
        for k, layer in enumerate(self.generative):
            inputs = 2 * flat[..., 0, :] - 1 if k == 0 else flat[..., k, :]
            outputs, _ = layer.forward(theta, inputs)
            parts.append(layer.backward(theta, [inputs],
                                        (targets[k] - torch.sigmoid(outputs)) / count))
        prior = (flat[..., -1, :] - torch.sigmoid(self._prior_logits(theta))).sum(1) / count
        decoder = torch.cat(parts, dim=-1)
        return torch.cat([decoder.new_zeros(replicates, self.recognition[-1].end), decoder,
                          prior], dim=-1)

    # --- Exact J for small networks, evaluation ----------------------------------------------

    def _code_count(self) -> int:
        return int(2 ** (self.layers * self.latents))

    def _all_codes(self) -> Tensor:
        bits = self.layers * self.latents
        count = 2**bits
        flat = ((torch.arange(count)[:, None] >> torch.arange(bits)) & 1).to(DTYPE)
        return flat.reshape(count, self.layers, self.latents)

    def value(self, theta: Tensor) -> Tensor:
        if not self.has_exact_gradient:
            raise NotImplementedError(
                f"{self.name} has 2^{self.layers * self.latents} codes per image, too many to "
                "sum over: it is measured against a reference gradient")
        codes = self._all_codes()[:, None]  # (C, 1, K, L)
        log_joint = self._log_joint(theta, codes, self.images)  # (C, B)
        logits = self._recognition_logits(theta, codes, self.images)
        log_q = sum(_log_bernoulli(codes[..., k, :], logit) for k, logit in enumerate(logits))
        return (log_q.exp() * (log_joint - log_q)).sum() / self.batch  # type: ignore[union-attr]

    def _log_weights(self, theta: Tensor, images: Tensor, samples: int,
                     generator: torch.Generator) -> Tensor:
        codes, log_q = self._draw_chain(theta, images, (samples,), generator)
        return self._log_joint(theta, codes, images) - log_q

    def sample_width(self) -> int:
        return self.batch * (self.layers * self.latents + self.pixels)
