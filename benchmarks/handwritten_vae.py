"""The training loop a researcher would write by hand, for the speed comparison with vrbench.

A binary VAE as ``torch.nn`` modules (linear, or two LeakyReLU hidden layers of 200 units,
as in ``binary_vae_linear`` / ``binary_vae_nonlinear``), trained on random minibatches of
dynamically binarized images with DisARM or two-sample REINFORCE leave-one-out for the encoder
(per-example learning signals, the encoder's logits given the estimate as their gradient), a
separate one-sample ELBO gradient for the decoder and the prior, Adam at 1e-4 for encoder and
decoder and SGD at 1e-2 for the prior's logits: the same model, estimator and arithmetic as
vrbench's training step, with nothing but the step.
"""

from __future__ import annotations

import itertools
import math
import time

import torch
from torch import Tensor, nn


def _network(sizes: list[int], slope: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes)):
        layer = nn.Linear(fan_in, fan_out)
        bound = math.sqrt(6.0 / (fan_in + fan_out))  # Glorot uniform, zero bias (Keras)
        nn.init.uniform_(layer.weight, -bound, bound)
        nn.init.zeros_(layer.bias)
        layers.append(layer)
        if index < len(sizes) - 2:
            layers.append(nn.LeakyReLU(slope))
    return nn.Sequential(*layers)


class BinaryVAE(nn.Module):
    def __init__(self, pixels: int, latents: int, hidden: list[int], mean: Tensor) -> None:
        super().__init__()
        self.encoder = _network([pixels, *hidden, latents], 0.3)
        self.decoder = _network([latents, *hidden[::-1], pixels], 0.3)
        self.prior = nn.Parameter(torch.zeros(latents))
        clipped = mean.clamp(0.001, 0.999)
        with torch.no_grad():
            self.decoder[-1].bias.copy_(torch.log(clipped) - torch.log1p(-clipped))
        self.register_buffer("mean", mean)

    def log_joint(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) + log p(z) per example."""
        logits = self.decoder(2 * z - 1)
        log_px = -nn.functional.softplus(logits * (1 - 2 * x)).sum(-1)
        log_pz = (z * self.prior - nn.functional.softplus(self.prior)).sum(-1)
        return log_px + log_pz


def _log_q(z: Tensor, logits: Tensor) -> Tensor:
    return (z * logits - nn.functional.softplus(logits)).sum(-1)


def encoder_signal(model: BinaryVAE, x: Tensor, logits: Tensor, estimator: str) -> Tensor:
    """The estimator's gradient of the per-example ELBOs in the encoder's logits (B, L)."""
    probs = torch.sigmoid(logits)
    with torch.no_grad():
        if estimator == "disarm":
            u = torch.rand_like(logits)
            b1, b2 = (u > 1 - probs).to(x.dtype), (u < probs).to(x.dtype)
            f1 = model.log_joint(x, b1) - _log_q(b1, logits)
            f2 = model.log_joint(x, b2) - _log_q(b2, logits)
            factor = (b1 - b2) * torch.sigmoid(logits.abs())  # (−1)^{b2} 1[b1 ≠ b2] σ(|φ|)
            return 0.5 * (f1 - f2)[:, None] * factor
        b1 = (torch.rand_like(logits) < probs).to(x.dtype)
        b2 = (torch.rand_like(logits) < probs).to(x.dtype)
        f1 = model.log_joint(x, b1) - _log_q(b1, logits)
        f2 = model.log_joint(x, b2) - _log_q(b2, logits)
        return 0.5 * ((f1 - f2)[:, None] * (b1 - probs) + (f2 - f1)[:, None] * (b2 - probs))


def train(images: Tensor, steps: int, estimator: str, hidden: list[int], batch: int = 50,
          latents: int = 200, dtype: torch.dtype = torch.float64, seed: int = 0
          ) -> tuple[BinaryVAE, float]:
    """``steps`` training steps on random minibatches of ``images`` (uint8, (N, pixels)): the
    model, and the seconds the steps took (the set-up before them excluded)."""
    torch.manual_seed(seed)
    mean = images.to(dtype).mean(0) / 255
    model = BinaryVAE(images.shape[1], latents, hidden, mean).to(dtype)
    main = torch.optim.Adam([*model.encoder.parameters(), *model.decoder.parameters()],
                            lr=1e-4)
    prior = torch.optim.SGD([model.prior], lr=1e-2)
    started = time.perf_counter()
    for _ in range(steps):
        chosen = torch.randint(images.shape[0], (batch,))
        x = (torch.rand(batch, images.shape[1], dtype=dtype)
             < images[chosen].to(dtype) / 255).to(dtype)
        logits = model.encoder(x - model.mean)
        signal = encoder_signal(model, x, logits, estimator)
        z = (torch.rand_like(logits) < torch.sigmoid(logits)).to(dtype)
        # Maximize the ELBO: the decoder's and prior's gradient from one sample, the encoder's
        # from the estimator's per-example signals (mean over the batch).
        loss = -(model.log_joint(x, z).mean() + (logits * signal).sum() / batch)
        main.zero_grad()
        prior.zero_grad()
        loss.backward()
        main.step()
        prior.step()
    return model, time.perf_counter() - started
