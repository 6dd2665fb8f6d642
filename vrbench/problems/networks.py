"""Multi-layer perceptrons whose weights are a slice of a flat θ, with per-replicate gradients.

The encoders and decoders of the data-set VAEs are small fully connected networks. Their
weights live in θ, as every parameter in vrbench does, and estimators need gradients of
*each replicate's* estimate in one batched computation: ``R`` estimates at once, each its own
gradient in θ. :meth:`MLP.backward` does that by hand (the chain rule layer by layer, with
``einsum``-style batched products), for a whole batch of replicates in one pass and without
copying the weights per replicate; ``vrbench check`` holds it against autograd (the score
against the gradient of ``log_prob``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from vrbench.problems.base import DTYPE


@dataclass(frozen=True)
class MLP:
    """A network ``sizes[0] → sizes[1] → … → sizes[-1]`` of dense layers, LeakyReLU of
    negative slope ``slope`` after every layer but the last (linear), its weights at
    ``θ[offset : offset + numel]``: per layer ``W (out, in)`` row-major, then ``b (out,)``."""

    sizes: tuple[int, ...]
    slope: float = 0.3
    offset: int = 0

    @property
    def numel(self) -> int:
        return sum(o * i + o for i, o in itertools.pairwise(self.sizes))

    @property
    def end(self) -> int:
        return self.offset + self.numel

    def layers(self, theta: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Each layer's ``(W, b)``, views into θ."""
        out, start = [], self.offset
        for fan_in, fan_out in itertools.pairwise(self.sizes):
            weight = theta[start : start + fan_out * fan_in].view(fan_out, fan_in)
            start += fan_out * fan_in
            out.append((weight, theta[start : start + fan_out]))
            start += fan_out
        return out

    def forward(self, theta: Tensor, inputs: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The output for ``inputs (..., sizes[0])``, and what :meth:`backward` needs: each
        layer's input, and each hidden layer's pre-activation."""
        cache, hidden = [], inputs
        layers = self.layers(theta)
        for index, (weight, bias) in enumerate(layers):
            cache.append(hidden)
            pre = torch.nn.functional.linear(hidden, weight, bias)
            if index == len(layers) - 1:
                return pre, cache
            cache.append(pre)
            hidden = torch.nn.functional.leaky_relu(pre, self.slope)
        raise AssertionError("a network has at least one layer")

    def backward(self, theta: Tensor, cache: list[Tensor], grad_output: Tensor,
                 out: Tensor | None = None) -> Tensor:
        """``(R, numel)``: for each replicate r, the gradient in the weights of
        ``Σ_k ⟨grad_output[r, k], output_k⟩``, where ``grad_output`` is ``(R, K, out)`` and the
        cached layer inputs are ``(K, ·)`` (shared by the replicates: an encoder's images) or
        ``(R, K, ·)`` (each replicate's own: a decoder's codes). Written into ``out`` (a
        ``(R, numel)`` view, say the network's columns of a gradient in θ) when given."""
        layers = self.layers(theta)
        if out is None:
            out = grad_output.new_empty(grad_output.shape[0], self.numel)
        end = self.numel
        delta = grad_output
        for index in range(len(layers) - 1, -1, -1):
            weight, bias = layers[index]
            inputs = cache[2 * index]
            torch.sum(delta, -2, out=out[:, end - bias.numel() : end])
            end -= bias.numel()
            weights = out[:, end - weight.numel() : end].view(-1, *weight.shape)
            torch.matmul(delta.transpose(-1, -2), inputs, out=weights)
            end -= weight.numel()
            if index > 0:
                pre = cache[2 * index - 1]
                slope = (pre > 0).to(pre.dtype) * (1 - self.slope) + self.slope
                delta = (delta @ weight) * slope
        return out

    def initial(self, generator: torch.Generator, last_bias: Tensor | None = None) -> Tensor:
        """Glorot-uniform weights (U(−a, a), a = √(6 / (fan_in + fan_out)); Glorot & Bengio,
        AISTATS 2010, the default of Keras' dense layers) and zero biases, or ``last_bias``
        for the output layer."""
        parts = []
        pairs = list(itertools.pairwise(self.sizes))
        for index, (fan_in, fan_out) in enumerate(pairs):
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            weight = (2 * torch.rand(fan_out * fan_in, generator=generator, dtype=DTYPE) - 1)
            parts.append(bound * weight)
            last = index == len(pairs) - 1
            parts.append(last_bias.to(DTYPE) if last and last_bias is not None
                         else torch.zeros(fan_out, dtype=DTYPE))
        return torch.cat(parts)
