"""Discrete-latent VAEs on image data sets at the papers' scale, encoder and decoder trained.

The benchmark of the discrete-estimator papers (NVIL, MuProp, VIMCO, REBAR, RELAX, ARM,
DisARM, IndeCateR, ...): a VAE with 200 Bernoulli latents (or 20 categorical ones of 10
classes) on dynamically binarized MNIST-style images, whose every parameter, encoder,
decoder and prior, is θ. On a minibatch ``x_1..x_B``

    J(θ) = (1/B) Σ_b E_{z ~ q(·|x_b)} [log p(x_b | z) + log p(z) − log q(z | x_b)],

the minibatch ELBO. Its gradient has two parts: through the encoder's distribution,
``E_q[f ∇θ log q]`` (``f`` holds ``−log q`` at the θ of the draw, whose gradient has mean
zero), which is what the estimators compete on; and through the decoder and the prior,
``E_q[∇θ (log p(x|z) + log p(z))]``, a plain average of autograd-free gradients at sampled
codes that every estimator shares: :meth:`~vrbench.problems.base.Problem.direct_gradient`,
from ``decoder_samples`` independent draws per image (one, as in the papers' code), added by
the harness to every estimate.

With at most 12 binary latents (or 4,096 categorical codes) J and ∇J are exact, by summing
over every code of every image; beyond, the problem has no exact gradient and vrbench
measures against a reference gradient (:mod:`vrbench.bench.reference`). For training,
:meth:`training_batch` draws a fresh minibatch, dynamically binarized, each step, and
:meth:`training_metrics` records the ELBO on training images and the 100-sample
importance-weighted bound on the test images (Burda et al., ICLR 2016) that the papers plot.

Data: IDX files (:mod:`vrbench.problems.idx`), Fashion-MNIST from Debian's
``dataset-fashion-mnist`` by default; without them the problem is unavailable and skipped,
with how to install them. The training split is the first ``train_size`` training images
(50,000: the rest are the papers' validation split); the fixed minibatch at which a sweep
measures gradients is ``batch`` of them drawn by ``seed``, binarized once.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor

from vrbench.components import check
from vrbench.devices import built_on_cpu, device_cached
from vrbench.problems import idx, register
from vrbench.problems.base import DTYPE, Capability, Problem, check_size, gradient_of_value
from vrbench.problems.networks import MLP

MAX_CODES = 2**12
"""Most codes per image whose exact sum gives J and ∇J (2^12 for bits, K^D for categories)."""

EVAL_CHUNK_NUMBERS = 2**23
"""Numbers a chunk of the evaluation's decoder outputs may hold (64 MiB of float64)."""


class ImageLatents(NamedTuple):
    """Samples of an image VAE: codes ``(R, n, B, L)`` (bits) or ``(R, n, B, D, K)`` (one-hot),
    each image's ``log q(z_b | x_b)`` ``(R, n, B)``, and the θ they were drawn under (f
    evaluates the decoder and prior there)."""

    codes: Tensor
    log_q: Tensor
    theta: Tensor


@functools.cache
def _missing(directory: str, prefix: str) -> str | None:
    return idx.missing_reason(directory, prefix)


@dataclass(frozen=True)
class ImageVAE(Problem):
    """What the Bernoulli and categorical image VAEs share (see the module): the data, θ's
    layout (encoder, decoder, prior), the estimators' members and the training hooks.

    Subclasses fix the latents (:attr:`latent_shape`, how codes are drawn and scored) and the
    networks' hidden layers (:attr:`hidden_sizes`, :attr:`slope`). As in the released code of
    Dong, Mnih & Tucker (2020), run with ``--demean_input --initialize_with_bias``: the
    encoder reads ``x − x̄`` (x̄ the training images' mean intensity), the decoder ``2z − 1``,
    the decoder's output bias starts at the log-odds of x̄ (clipped to [0.001, 0.999]), the
    other weights Glorot-uniform, the biases and the prior's logits at zero.
    """

    batch: int = 50
    seed: int = 0
    data_dir: str = ""
    prefix: str = ""
    pool: int = 1
    train_size: int = 50_000
    decoder_samples: int = 1
    eval_train_images: int = 50_000
    eval_test_images: int = 10_000
    eval_samples: int = 100

    capabilities: ClassVar = frozenset({Capability.DISCRETE, Capability.AMORTIZED})
    maximize: ClassVar = True
    in_default_sweep: ClassVar = False
    reference_estimators: ClassVar = ("disarm", "rloo")
    slope: ClassVar[float] = 0.3

    def __post_init__(self) -> None:
        check_size(self.name, "batch", self.batch, high=100_000)
        check_size(self.name, "train_size", self.train_size, high=10_000_000)
        check_size(self.name, "decoder_samples", self.decoder_samples, high=1_000)
        check_size(self.name, "pool", self.pool, high=1_000)
        check_size(self.name, "eval_train_images", self.eval_train_images, low=0,
                   high=10_000_000)
        check_size(self.name, "eval_test_images", self.eval_test_images, low=0,
                   high=10_000_000)
        check_size(self.name, "eval_samples", self.eval_samples, high=100_000)
        check(self.batch <= self.train_size, self.name,
              f"batch={self.batch} must be at most train_size={self.train_size}")

    # --- The latents: subclasses ---------------------------------------------------------

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """One image's latents: ``(L,)`` bits or ``(D, K)`` one-hot categories."""
        raise NotImplementedError

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """The encoder's hidden layers (the decoder's are the same, reversed)."""
        raise NotImplementedError

    def _draw(self, logits: Tensor, shape: tuple[int, ...], generator: torch.Generator
              ) -> Tensor:
        """Codes of leading ``shape`` from the distribution with ``logits`` (B, *latent)."""
        raise NotImplementedError

    def _log_prob(self, codes: Tensor, logits: Tensor) -> Tensor:
        """Σ over one image's latents of log p(codes; logits), extended linearly to relaxed
        codes."""
        raise NotImplementedError

    def _centered(self, codes: Tensor, logits: Tensor) -> Tensor:
        """``∇_logits log p(codes; logits)``, the codes' shape."""
        raise NotImplementedError

    def _all_codes(self) -> Tensor:
        """Every code of one image, ``(C, *latent)``."""
        raise NotImplementedError

    # --- Data --------------------------------------------------------------------------------

    def unavailable(self) -> str | None:
        return _missing(str(idx.data_dir(self.data_dir)), self.prefix)

    @property
    def _images(self) -> idx.ImageSet:
        found = idx.load_images(idx.data_dir(self.data_dir), self.prefix)
        check(self.batch <= min(self.train_size, found.train.shape[0]), self.name,
              f"batch={self.batch} is more than the {min(self.train_size, found.train.shape[0])}"
              f" training images of {found.directory}")
        return found

    def _intensities(self, stored: Tensor) -> Tensor:
        """Stored images ``(N, ·)`` as intensities in [0, 1], pooled (see ``pool``)."""
        found = self._images
        return idx.pooled(stored, found.shape, found.scale, self.pool)

    @device_cached
    def _train(self) -> Tensor:
        """The training split as stored, ``(N, P)``."""
        return self._images.train[: self.train_size]

    @device_cached
    def _data_mean(self) -> Tensor:
        """The mean intensity of each pixel over the training split, ``(P,)``."""
        found = self._images
        train = found.train[: self.train_size]
        # Average pooling is linear: pool the mean rather than every image.
        mean = train.sum(0, dtype=DTYPE)[None] / train.shape[0]
        return idx.pooled(mean, found.shape, found.scale, self.pool)[0]

    @device_cached
    def _fixed_batch(self) -> Tensor:
        """The minibatch a sweep measures at: ``batch`` training images drawn by ``seed``,
        binarized once (``(B, P)``)."""
        found = self._images
        count = min(self.train_size, found.train.shape[0])
        g = torch.Generator().manual_seed(self.seed + 2)
        chosen = torch.randperm(count, generator=g)[: self.batch]
        return idx.binarize(self._intensities(found.train[chosen]), g)

    @property
    def images(self) -> Tensor:
        """The current minibatch ``(B, P)`` of 0/1 pixels."""
        drawn = self.__dict__.get("_minibatch")
        return self._fixed_batch if drawn is None else drawn

    @functools.cached_property
    def pixels(self) -> int:
        found = self._images
        if self.pool == 1:
            return int(found.pixels)
        columns = found.shape[1] if len(found.shape) > 1 else 1
        pixels = (found.shape[0] // self.pool) * (columns // self.pool)
        check(pixels > 0, self.name, f"pool={self.pool} is larger than the images of "
              f"{found.directory} ({' × '.join(map(str, found.shape))})")
        return pixels

    # --- θ -----------------------------------------------------------------------------------

    @property
    def _width(self) -> int:
        return math.prod(self.latent_shape)

    @functools.cached_property
    def encoder(self) -> MLP:
        return MLP((self.pixels, *self.hidden_sizes, self._width), self.slope)

    @functools.cached_property
    def decoder(self) -> MLP:
        return MLP((self._width, *self.hidden_sizes[::-1], self.pixels), self.slope,
                   self.encoder.end)

    @property
    def dim(self) -> int:
        return self.decoder.end + self._width

    def parameter_groups(self) -> dict[str, slice]:
        return {"encoder": slice(0, self.encoder.end),
                "decoder": slice(self.encoder.end, self.decoder.end),
                "prior": slice(self.decoder.end, self.dim)}

    @built_on_cpu
    def initial_theta(self) -> Tensor:
        g = torch.Generator().manual_seed(self.seed + 1)
        mean = self._data_mean.cpu().clamp(0.001, 0.999)
        return torch.cat([self.encoder.initial(g),
                          self.decoder.initial(g, torch.log(mean) - torch.log1p(-mean)),
                          torch.zeros(self._width, dtype=DTYPE)])

    def _prior_logits(self, theta: Tensor) -> Tensor:
        return theta[self.decoder.end :].reshape(self.latent_shape)

    # --- The model ---------------------------------------------------------------------------

    def _encode(self, theta: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The encoder's logits ``(B, *latent)`` at the minibatch and its cache, computed once
        per θ tensor (estimators ask for them several times per estimate)."""
        cached = self.__dict__.get("_encoded")
        if (cached is not None and cached[0] is theta and cached[1] == theta._version
                and not theta.requires_grad):
            encoded: tuple[Tensor, list[Tensor]] = cached[2]
            return encoded
        logits, cache = self.encoder.forward(theta, self.images - self._data_mean)
        result = (logits.reshape(self.batch, *self.latent_shape), cache)
        if not theta.requires_grad:
            self.__dict__["_encoded"] = (theta, theta._version, result)
        return result

    def _log_likelihood(self, theta: Tensor, codes: Tensor, images: Tensor) -> Tensor:
        """``log p(x_b | z) + log p(z)`` for codes ``(..., B, *latent)`` and images ``(B, P)``."""
        flat = codes.flatten(-len(self.latent_shape))
        logits, _ = self.decoder.forward(theta, 2 * flat - 1)
        # log Bernoulli(x; σ(ℓ)) = −softplus((1 − 2x) ℓ): one pass over the pixels fewer.
        observed = -torch.nn.functional.softplus(logits * (1 - 2 * images)).sum(-1)
        return observed + self._log_prob(codes, self._prior_logits(theta))

    def _item_elbo(self, samples: ImageLatents) -> Tensor:
        return self._log_likelihood(samples.theta, samples.codes, self.images) - samples.log_q

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator
               ) -> ImageLatents:
        logits, _ = self._encode(theta)
        codes = self._draw(logits, shape, generator)
        return ImageLatents(codes, self._log_prob(codes, logits), theta.detach())

    def f(self, samples: ImageLatents) -> Tensor:
        return self._item_elbo(samples).mean(-1)

    def item_inputs(self) -> Tensor:
        return self.images

    def item_f(self, samples: ImageLatents) -> Tensor:
        return self._item_elbo(samples)

    def log_prob(self, theta: Tensor, samples: ImageLatents) -> Tensor:
        logits, _ = self._encode(theta)
        return self._log_prob(samples.codes, logits).sum(-1)

    # --- Gradients ---------------------------------------------------------------------------

    def latent_logits(self, theta: Tensor) -> Tensor:
        return self._encode(theta)[0]

    def latent_samples(self, theta: Tensor, codes: Tensor) -> ImageLatents:
        logits, _ = self._encode(theta)
        return ImageLatents(codes, self._log_prob(codes, logits), theta.detach())

    def latent_pullback(self, theta: Tensor, grad_logits: Tensor) -> Tensor:
        """The chain rule through the encoder: per-image logit gradients ``(R, B, *latent)``
        to θ, zero in the decoder and prior."""
        _, cache = self._encode(theta)
        replicates = grad_logits.shape[0]
        grad = grad_logits.new_zeros(replicates, self.dim)
        self.encoder.backward(theta, cache, grad_logits.reshape(replicates, self.batch, -1),
                              grad[:, : self.encoder.end])
        return grad

    def _per_draw_centered(self, theta: Tensor, samples: ImageLatents) -> Tensor:
        return self._centered(samples.codes, self._encode(theta)[0])

    def score(self, theta: Tensor, samples: ImageLatents) -> Tensor:
        centered = self._per_draw_centered(theta, samples)
        lead = centered.shape[:2]
        return self.latent_pullback(theta, centered.flatten(0, 1)).reshape(*lead, self.dim)

    def weighted_score(self, theta: Tensor, samples: ImageLatents, weights: Tensor) -> Tensor:
        centered = self._per_draw_centered(theta, samples)
        per_image = torch.einsum("rn,rn...->r...", weights, centered) / weights.shape[1]
        return self.latent_pullback(theta, per_image)

    def item_weighted_score(self, theta: Tensor, samples: ImageLatents, weights: Tensor
                            ) -> Tensor:
        centered = self._per_draw_centered(theta, samples)
        per_image = torch.einsum("rnb,rnb...->rb...", weights, centered) / weights.shape[1]
        return self.latent_pullback(theta, per_image)

    def direct_gradient(self, theta: Tensor, replicates: int, generator: torch.Generator
                        ) -> Tensor:
        """``(1/(mB)) Σ_j Σ_b ∇θ [log p(x_b | z_jb) + log p(z_jb)]`` for ``m =
        decoder_samples`` fresh codes per image and replicate: the decoder's gradient by the
        chain rule (``∂/∂logits log p(x|z) = x − σ(logits)``), the prior's ``z −
        E_prior[z]``, zero in the encoder."""
        logits, _ = self._encode(theta)
        draws = self.decoder_samples
        codes = self._draw(logits, (replicates, draws), generator)  # (R, m, B, *latent)
        flat = codes.reshape(replicates, draws * self.batch, self._width)
        outputs, cache = self.decoder.forward(theta, 2 * flat - 1)
        images = self.images.repeat(draws, 1)
        count = draws * self.batch
        grad = outputs.new_zeros(replicates, self.dim)
        self.decoder.backward(theta, cache, (images - torch.sigmoid(outputs)) / count,
                              grad[:, self.encoder.end : self.decoder.end])
        prior = self._centered(codes, self._prior_logits(theta))
        grad[:, self.decoder.end :] = prior.reshape(replicates, count, self._width).sum(1) / count
        return grad

    # --- Exact J and ∇J for small latent spaces ----------------------------------------------

    @property
    def has_exact_gradient(self) -> bool:
        return self._code_count() <= MAX_CODES

    def _code_count(self) -> int:
        raise NotImplementedError

    def value(self, theta: Tensor) -> Tensor:
        if not self.has_exact_gradient:
            raise NotImplementedError(
                f"{self.name} has {self._code_count():.3g} codes per image, too many to sum "
                "over: it is measured against a reference gradient")
        codes = self._all_codes()  # (C, *latent)
        outputs, _ = self.decoder.forward(theta, 2 * codes.flatten(1) - 1)  # (C, P)
        log_joint = (self.images @ outputs.T - torch.nn.functional.softplus(outputs).sum(-1)
                     + self._log_prob(codes, self._prior_logits(theta)))  # (B, C)
        logits, _ = self._encode(theta)
        log_q = self._log_prob(codes[:, None], logits[None]).T  # (B, C)
        return (log_q.exp() * (log_joint - log_q)).sum() / self.batch

    def exact_grad(self, theta: Tensor) -> Tensor:
        self.value(theta)  # refuses a problem without an exact gradient
        return gradient_of_value(self, theta)

    # --- Training ----------------------------------------------------------------------------

    def training_batch(self, generator: torch.Generator) -> ImageVAE:
        """The problem on ``batch`` training images drawn uniformly (with replacement across
        steps) and binarized afresh; the data stay shared."""
        train = self._train
        chosen = torch.randint(train.shape[0], (self.batch,), generator=generator,
                               device=generator.device)
        images = idx.binarize(self._intensities(train[chosen]), generator)
        other = copy.copy(self)
        other.__dict__.pop("_encoded", None)
        object.__setattr__(other, "_minibatch", images)
        return other

    def training_metrics(self, theta: Tensor, generator: torch.Generator) -> dict[str, float]:
        """``train_elbo``: the single-sample ELBO averaged over the first
        ``eval_train_images`` training images; ``test_bound``: the ``eval_samples``-sample
        importance-weighted bound ``log (1/K) Σ_k p(x, z_k)/q(z_k|x)`` averaged over the first
        ``eval_test_images`` test images; each image binarized afresh (Dong et al.'s code
        evaluates the same way, on the whole training split and test set)."""
        found = self._images
        out = {}
        with torch.no_grad():
            for key, split, count, samples in (
                    ("train_elbo", self._train, self.eval_train_images, 1),
                    ("test_bound", found.test, self.eval_test_images, self.eval_samples)):
                if count == 0:
                    continue
                data = split[:count].to(theta.device)
                out[key] = self._bound(theta, data, samples, generator)
        return out

    def _bound(self, theta: Tensor, data: Tensor, samples: int, generator: torch.Generator
               ) -> float:
        """The mean over ``data`` of ``log (1/K) Σ_k w_k`` (the ELBO when K = 1)."""
        chunk = max(1, EVAL_CHUNK_NUMBERS // (samples * self.pixels))
        total = 0.0
        for start in range(0, data.shape[0], chunk):
            images = idx.binarize(self._intensities(data[start : start + chunk]), generator)
            log_w = self._log_weights(theta, images, samples, generator)
            bounds = torch.logsumexp(log_w, dim=0) - math.log(samples)
            total += float(bounds.sum())
        return total / data.shape[0]

    def _log_weights(self, theta: Tensor, images: Tensor, samples: int,
                     generator: torch.Generator) -> Tensor:
        """``log p(x, z_k) − log q(z_k | x)`` for ``samples`` codes drawn for each of the
        images ``(c, P)``: ``(samples, c)``."""
        logits, _ = self.encoder.forward(theta, images - self._data_mean)
        logits = logits.reshape(images.shape[0], *self.latent_shape)
        codes = self._draw(logits, (samples,), generator)  # (K, c, *latent)
        return self._log_likelihood(theta, codes, images) - self._log_prob(codes, logits)

    def sample_width(self) -> int:
        return self.batch * (self._width + self.pixels)


@dataclass(frozen=True)
class BinaryImageVAE(ImageVAE):
    """Bernoulli latents: ``q(z|x) = Π_l Bernoulli(z_l; σ(enc(x)_l))``, prior ``Π_l
    Bernoulli(σ(η_l))``, decoder ``Π_j Bernoulli(x_j; σ(dec(z)_j))``."""

    latents: int = 200

    capabilities: ClassVar = frozenset({Capability.DISCRETE, Capability.AMORTIZED,
                                        Capability.BERNOULLI_LATENTS})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_size(self.name, "latents", self.latents, high=4096)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.latents,)

    def _draw(self, logits: Tensor, shape: tuple[int, ...], generator: torch.Generator
              ) -> Tensor:
        uniforms = torch.rand((*shape, *logits.shape), generator=generator, dtype=DTYPE,
                              device=logits.device)
        return (uniforms < torch.sigmoid(logits)).to(DTYPE)

    def _log_prob(self, codes: Tensor, logits: Tensor) -> Tensor:
        return (codes * logits - torch.nn.functional.softplus(logits)).sum(-1)

    def _centered(self, codes: Tensor, logits: Tensor) -> Tensor:
        return codes - torch.sigmoid(logits)

    def _code_count(self) -> int:
        return int(2**self.latents)

    def _all_codes(self) -> Tensor:
        count = 2**self.latents
        return ((torch.arange(count)[:, None] >> torch.arange(self.latents)) & 1).to(DTYPE)


@register("binary_vae_linear")
@dataclass(frozen=True)
class BinaryVAELinear(BinaryImageVAE):
    """Minibatch ELBO of a linear VAE with 200 Bernoulli latents on Fashion-MNIST (θ: all).

    Encoder ``q(z|x) = Π_l Bernoulli(σ(W (x − x̄) + c)_l)`` (784 → 200), decoder ``p(x|z) =
    Π_j Bernoulli(σ(V (2z − 1) + d)_j)`` (200 → 784), prior ``Π_l Bernoulli(σ(η_l))``;
    θ = (W, c, V, d, η), 314,784 numbers; ``f_b = log p(x_b|z) + log p(z) − log q(z|x_b)``
    on a minibatch of ``batch`` (50) dynamically binarized images, J its mean (see the
    module for the gradient's two parts). The "linear" model of Dong, Mnih & Tucker,
    "DisARM: An antithetic gradient estimator for binary latent variables", NeurIPS 2020,
    section 5 and their released code (also Yin & Zhou's ARM, ICLR 2019): Adam at learning
    rate 1e-4 for encoder and decoder, SGD at 1e-2 for the prior, batch 50, 10⁶ steps.
    With ``latents`` ≤ 12, J and ∇J are exact.
    """

    display_name = "binary VAE, linear"
    reference: ClassVar = "Dong et al., 2020 (linear); Yin & Zhou, 2019"
    # Two images pooled to 7 × 7 and four latents: J and ∇J exact by summing 2⁴ codes, and
    # every estimate cheap (θ: 449 numbers).
    check_params: ClassVar = MappingProxyType({"batch": 2, "latents": 4, "pool": 4})

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return ()


@register("binary_vae_nonlinear")
@dataclass(frozen=True)
class BinaryVAENonlinear(BinaryImageVAE):
    """Minibatch ELBO of a non-linear VAE with 200 Bernoulli latents on Fashion-MNIST (θ: all).

    As ``binary_vae_linear``, with two deterministic hidden layers of ``hidden`` (200) units
    and LeakyReLU (slope 0.3) in encoder (784 → 200 → 200 → 200) and decoder (200 → 200 →
    200 → 784): θ holds 475,584 numbers. The "nonlinear" model of Dong, Mnih & Tucker,
    NeurIPS 2020, section 5 and their released code; the same optimizer settings.
    """

    hidden: int = 200

    display_name = "binary VAE, non-linear"
    reference: ClassVar = "Dong et al., 2020 (nonlinear)"
    check_params: ClassVar = MappingProxyType({"batch": 2, "latents": 4, "hidden": 8,
                                               "pool": 4})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_size(self.name, "hidden", self.hidden, high=100_000)

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return (self.hidden, self.hidden)


@register("categorical_vae_nonlinear")
@dataclass(frozen=True)
class CategoricalVAENonlinear(ImageVAE):
    """Minibatch ELBO of a VAE with 20 categorical latents of 10 classes on Fashion-MNIST.

    Encoder ``q(z|x) = Π_d Categorical(z_d; softmax(enc(x − x̄)_d))`` (784 → 512 → 256 →
    D·K, LeakyReLU of slope 0.2), decoder ``Π_j Bernoulli(x_j; σ(dec(2z − 1)_j))`` on the
    one-hot code (D·K → 256 → 512 → 784), prior ``Π_d Categorical(softmax(η_d))``, θ every
    weight (1,170,080 numbers at D = 20, K = 10); ``f_b`` the ELBO term of image b on a
    minibatch of ``batch`` (200) images. The categorical VAE of Dong, Mnih & Tucker,
    "Coupled gradient estimators for discrete latent variables", NeurIPS 2021, in their
    released code (20 variables of 10 classes by default, batch 200, Adam at 1e-4, the
    prior by SGD at 1e-2), and of IndeCateR (De Smet et al., NeurIPS 2023). With K^D ≤ 4,096
    codes per image, J and ∇J are exact.
    """

    batch: int = 200
    D: int = 20
    K: int = 10

    capabilities: ClassVar = frozenset({Capability.DISCRETE, Capability.AMORTIZED,
                                        Capability.CATEGORICAL_LATENTS})
    display_name = "categorical VAE, non-linear"
    reference: ClassVar = "Dong et al., 2021; De Smet et al., 2023"
    reference_estimators: ClassVar = ("rloo", "indecater")
    slope: ClassVar[float] = 0.2
    check_params: ClassVar = MappingProxyType({"batch": 2, "D": 2, "K": 3, "hidden": 8,
                                               "pool": 4})

    hidden: int = 0
    """Width of both hidden layers; 0 (default): the paper's 512 and 256."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_size(self.name, "D", self.D, high=4096)
        check_size(self.name, "K", self.K, low=2, high=4096)
        check_size(self.name, "hidden", self.hidden, low=0, high=100_000)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.D, self.K)

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return (512, 256) if self.hidden == 0 else (self.hidden, self.hidden)

    def _draw(self, logits: Tensor, shape: tuple[int, ...], generator: torch.Generator
              ) -> Tensor:
        # Gumbel-max: the largest of logits + Gumbel noise is a categorical draw.
        uniforms = torch.rand((*shape, *logits.shape), generator=generator, dtype=DTYPE,
                              device=logits.device).clamp_min(torch.finfo(DTYPE).tiny)
        winners = (logits - torch.log(-torch.log(uniforms))).argmax(-1)
        return torch.nn.functional.one_hot(winners, self.K).to(DTYPE)

    def _log_prob(self, codes: Tensor, logits: Tensor) -> Tensor:
        return (codes * torch.log_softmax(logits, dim=-1)).sum((-2, -1))

    def _centered(self, codes: Tensor, logits: Tensor) -> Tensor:
        return codes - torch.softmax(logits, dim=-1)

    def _code_count(self) -> int:
        return int(self.K**self.D)

    def _all_codes(self) -> Tensor:
        indices = torch.tensor(list(itertools.product(range(self.K), repeat=self.D)))
        return torch.nn.functional.one_hot(indices, self.K).to(DTYPE)



@register("binary_iwae")
@dataclass(frozen=True)
class BinaryIWAE(BinaryImageVAE):
    """The K-sample importance-weighted bound of the 200-latent binary VAE on Fashion-MNIST.

    The model of ``binary_vae_linear`` (``hidden`` = 0) or ``binary_vae_nonlinear`` (two
    hidden layers of ``hidden`` units). One sample holds K codes ``z_b1..z_bK ~ q(·|x_b)`` per
    image and ``f = (1/B) Σ_b log (1/K) Σ_k w_bk``, ``w_bk = p(x_b, z_bk) / q(z_bk | x_b)``:
    J is the multi-sample bound of Burda, Grosse & Salakhutdinov (ICLR 2016), the objective of
    VIMCO (Mnih & Rezende, ICML 2016) and of DisARM's multi-sample experiments (Dong, Mnih &
    Tucker, NeurIPS 2020, section 5.2, K = 2 × the pairs). f depends on θ through the weights:
    in the encoder ``∇θ log w = −∇θ log q``, which the multi-sample estimators build from
    :meth:`log_weights` and :meth:`code_weighted_score` (only those apply); in the decoder and
    prior ``Σ_k w̃_bk ∇θ log p(x_b, z_bk)`` (``w̃`` the normalized weights), the direct
    gradient from ``decoder_samples`` fresh K-tuples. With ``latents · K`` ≤ 12, J and ∇J are
    exact (a sum over every K-tuple of codes).
    """

    K: int = 2
    hidden: int = 0

    capabilities: ClassVar = frozenset({Capability.DISCRETE, Capability.MULTI_SAMPLE})
    display_name = "binary VAE, {K}-sample bound"
    reference: ClassVar = "Burda et al., 2016; Mnih & Rezende, 2016; Dong et al., 2020"
    reference_estimators: ClassVar = ("vimco", "multi_sample_score_function")
    check_params: ClassVar = MappingProxyType({"batch": 2, "latents": 3, "K": 2, "pool": 4})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_size(self.name, "K", self.K, low=2, high=1000)
        check_size(self.name, "hidden", self.hidden, low=0, high=100_000)

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return () if self.hidden == 0 else (self.hidden, self.hidden)

    def _draw_tuples(self, logits: Tensor, shape: tuple[int, ...], generator: torch.Generator
                     ) -> Tensor:
        """K codes per image: ``(*shape, B, K, L)``."""
        return self._draw(logits, (*shape, self.K), generator).transpose(-3, -2)

    def sample(self, theta: Tensor, shape: tuple[int, int], generator: torch.Generator
               ) -> ImageLatents:
        logits, _ = self._encode(theta)
        codes = self._draw_tuples(logits, shape, generator)
        return ImageLatents(codes, self._log_prob(codes, logits[:, None]), theta.detach())

    def log_weights(self, samples: ImageLatents) -> Tensor:
        return (self._log_likelihood(samples.theta, samples.codes, self.images[:, None])
                - samples.log_q)

    def f(self, samples: ImageLatents) -> Tensor:
        return (torch.logsumexp(self.log_weights(samples), -1) - math.log(self.K)).mean(-1)

    def log_prob(self, theta: Tensor, samples: ImageLatents) -> Tensor:
        logits, _ = self._encode(theta)
        return self._log_prob(samples.codes, logits[:, None]).sum((-2, -1))

    def code_weighted_score(self, theta: Tensor, samples: ImageLatents, weights: Tensor
                            ) -> Tensor:
        centered = self._centered(samples.codes, self._encode(theta)[0][:, None])
        per_image = torch.einsum("rnbk,rnbkl->rbl", weights, centered) / weights.shape[1]
        return self.latent_pullback(theta, per_image)

    def weighted_score(self, theta: Tensor, samples: ImageLatents, weights: Tensor) -> Tensor:
        return self.code_weighted_score(theta, samples, weights[..., None, None].expand(
            *weights.shape, self.batch, self.K))

    def score(self, theta: Tensor, samples: ImageLatents) -> Tensor:
        lead = samples.codes.shape[:2]
        flat = ImageLatents(samples.codes.flatten(0, 1)[:, None], samples.log_q, samples.theta)
        ones = flat.codes.new_ones(flat.codes.shape[:4])
        return self.code_weighted_score(theta, flat, ones).reshape(*lead, self.dim)

    def direct_gradient(self, theta: Tensor, replicates: int, generator: torch.Generator
                        ) -> Tensor:
        """``(1/(mB)) Σ_j Σ_b Σ_k w̃_jbk ∇θ log p(x_b, z_jbk)`` over ``m = decoder_samples``
        fresh K-tuples per image and replicate (zero in the encoder)."""
        logits, _ = self._encode(theta)
        draws = self.decoder_samples
        codes = self._draw_tuples(logits, (replicates, draws), generator)  # (R, m, B, K, L)
        flat = codes.reshape(replicates, -1, self.latents)
        outputs, cache = self.decoder.forward(theta, 2 * flat - 1)  # (R, m·B·K, P)
        images = self.images[:, None].expand(-1, self.K, -1).reshape(-1, self.pixels)
        images = images.repeat(draws, 1)
        log_p = -torch.nn.functional.softplus(outputs * (1 - 2 * images)).sum(-1)
        log_p = log_p.reshape(codes.shape[:-1]) + self._log_prob(codes, self._prior_logits(theta))
        normalized = torch.softmax(log_p - self._log_prob(codes, logits[:, None]), dim=-1)
        scale = normalized.reshape(replicates, -1, 1) / (draws * self.batch)
        grad = outputs.new_zeros(replicates, self.dim)
        self.decoder.backward(theta, cache, scale * (images - torch.sigmoid(outputs)),
                              grad[:, self.encoder.end : self.decoder.end])
        prior = scale * (flat - torch.sigmoid(self._prior_logits(theta)))
        grad[:, self.decoder.end :] = prior.sum(1)
        return grad

    def _code_count(self) -> int:
        return int(2 ** (self.latents * self.K))

    def value(self, theta: Tensor) -> Tensor:
        if not self.has_exact_gradient:
            raise NotImplementedError(
                f"{self.name} has 2^{self.latents * self.K} K-tuples of codes per image, too "
                "many to sum over: it is measured against a reference gradient")
        codes = self._all_codes()  # (C, L)
        outputs, _ = self.decoder.forward(theta, 2 * codes - 1)
        log_joint = (-torch.nn.functional.softplus(outputs[:, None] * (1 - 2 * self.images))
                     .sum(-1).T + self._log_prob(codes, self._prior_logits(theta)))  # (B, C)
        logits, _ = self._encode(theta)
        log_q = self._log_prob(codes[:, None], logits[None]).T  # (B, C)
        tuples = torch.cartesian_prod(*[torch.arange(codes.shape[0])] * self.K)  # (T, K)
        log_w = (log_joint - log_q)[:, tuples]  # (B, T, K)
        probability = log_q[:, tuples].sum(-1).exp()
        bounds = torch.logsumexp(log_w, -1) - math.log(self.K)
        return (probability * bounds).sum() / self.batch

    def sample_width(self) -> int:
        return self.batch * self.K * (self.latents + self.pixels)
