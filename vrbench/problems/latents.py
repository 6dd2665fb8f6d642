"""Logit views: the latents of an amortized problem seen as a problem whose θ is their logits.

An amortized model (a VAE's encoder, say) draws each data item's latents from
``q(z_b | x_b; θ)``, whose logits ``φ(θ)`` (one row per item) are a differentiable function of
θ. Estimators written for Bernoulli or categorical logits (ARM, REBAR, RELAX, Gumbel-softmax,
MuProp, IndeCateR, ...) estimate ``∇_φ J``; the chain rule carries that estimate to θ,
``ĝ_θ = (∂φ/∂θ)ᵀ ĝ_φ``, unbiased wherever ĝ_φ is (the Jacobian is fixed: it does not depend
on the draws). This is how the released code of DisARM (Dong, Mnih & Tucker, NeurIPS 2020)
trains encoders, and how vrbench runs every logit-level estimator on every amortized problem.

A view is built at a θ of its source: its parameters are the logits ``φ(θ)``, flattened, its
samples are the latents of every item (bits ``(R, n, B·L)``, or one-hots ``(R, n, B·D, K)``),
and its f is the source's f of the samples made of those latents at that θ. Since
``E_q[∇θ log q] = 0``, the gradient of an ELBO whose f holds ``−log q`` at the θ of the draw is
the gradient of ``E_{z~q_φ}[f(z)]`` with f held fixed, which is what the view's estimators
estimate. The view has no value or gradient of its own: estimates made on it are compared,
after the chain rule, with the source's ∇J.

A source problem declares ``bernoulli_latents`` or ``categorical_latents`` and implements
``latent_logits(θ)`` (logits of shape ``(B, L)``, or ``(B, D, K)``), ``latent_samples(θ, codes)``
(samples made of latents ``(..., B, L)`` or ``(..., B, D, K)``, any leading batch shape; codes
may be relaxed, in ``[0, 1]`` or on the simplex, where f extends to them) and
``latent_pullback(θ, grad)`` (``(R, dim)`` gradients in θ from ``(R, *logit shape)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from vrbench.problems.base import Capability, Problem
from vrbench.problems.bernoulli import IndependentBernoullis
from vrbench.problems.potts import IndependentCategoricals


class _LogitView:
    """What both views share: the source, the θ they are taken at, and f through the source."""

    source: Problem
    at: Tensor
    # Declared for the type checker only (no value here: the views' dataclass fields and
    # class attributes are their own): the logits φ(θ) at ``at``, set in ``__post_init__``.
    logits: Tensor
    capabilities: ClassVar[frozenset[Capability]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "logits", self.source.latent_logits(self.at).detach())

    @property
    def name(self) -> str:
        return f"{self.source.name} (logits)"

    def initial_theta(self) -> Tensor:
        return self.logits.reshape(-1)

    def _latents(self, flat: Tensor) -> Any:
        """The source's samples made of the view's latents ``(..., dim)`` or ``(..., V, K)``."""
        raise NotImplementedError

    def f(self, samples: Tensor) -> Tensor:
        return self.source.f(self._latents(samples))

    def value(self, theta: Tensor) -> Tensor:
        raise NotImplementedError(f"{self.name} has no value of its own: estimates on it are "
                                  "carried to the source's θ and compared there")

    def exact_grad(self, theta: Tensor) -> Tensor:
        raise NotImplementedError(f"{self.name} has no gradient of its own: estimates on it "
                                  "are carried to the source's θ and compared there")

    def sample_width(self) -> int:
        return self.source.sample_width()

    def local_f(self, samples: Tensor) -> Tensor | None:
        """Where the source's f is the mean of per-item terms (``amortized``): each latent's
        own item's term over B, for every latent (the latents of item b come b-th)."""
        if Capability.AMORTIZED not in self.source.capabilities:
            return None
        items = self.logits.shape[0]
        terms = self.source.item_f(self._latents(samples)) / items  # (..., B)
        # Bits (B, L) have L latents per item; categoricals (B, D, K) have D.
        per_item = self.logits[0].numel() if self.logits.dim() == 2 else self.logits.shape[1]
        return terms.repeat_interleave(per_item, dim=-1)

    def pullback(self, grad: Tensor) -> Tensor:
        """``(R, source dim)`` gradients in the source's θ from ``(R, dim)`` in the logits."""
        return self.source.latent_pullback(self.at, grad.reshape(grad.shape[0],
                                                                 *self.logits.shape))


# A view's name is its source's, a property, where Component declares a class attribute.
@dataclass(frozen=True, eq=False)
class BernoulliLogitView(_LogitView, IndependentBernoullis):  # type: ignore[override]
    """The Bernoulli latents of an amortized problem, as bits whose logits are θ (see the
    module). Samples are ``(R, n, B·L)`` bits; f is the source's f of them."""

    source: Problem
    at: Tensor

    capabilities: ClassVar = IndependentBernoullis.capabilities

    @property
    def dim(self) -> int:
        return self.logits.numel()

    def _latents(self, flat: Tensor) -> Any:
        return self.source.latent_samples(self.at,
                                          flat.unflatten(-1, tuple(self.logits.shape)))


@dataclass(frozen=True, eq=False)
class CategoricalLogitView(_LogitView, IndependentCategoricals):  # type: ignore[override]
    """The categorical latents of an amortized problem, as B·D categoricals of K categories
    whose logits are θ (see the module). Samples are one-hot ``(R, n, B·D, K)``; f is the
    source's f of them."""

    source: Problem
    at: Tensor

    capabilities: ClassVar = frozenset({Capability.DISCRETE, Capability.CATEGORICAL_LOGITS,
                                        Capability.RELAXABLE})

    @property
    def variables(self) -> int:
        return self.logits[..., 0].numel()

    @property
    def categories(self) -> int:
        return self.logits.shape[-1]

    def _latents(self, flat: Tensor) -> Any:
        return self.source.latent_samples(self.at,
                                          flat.unflatten(-2, tuple(self.logits.shape[:-1])))


VIEWS: dict[Capability, type[_LogitView]] = {
    Capability.BERNOULLI_LATENTS: BernoulliLogitView,
    Capability.CATEGORICAL_LATENTS: CategoricalLogitView,
}
"""The view of each latents capability."""


def logit_view(problem: Problem, theta: Tensor) -> Problem | None:
    """The problem's latents at ``theta`` as a problem whose θ is their logits, or ``None``
    for a problem without ``bernoulli_latents`` or ``categorical_latents``."""
    for capability, view in VIEWS.items():
        if capability in problem.capabilities:
            return view(problem, theta)  # type: ignore[call-arg, return-value]
    return None


def view_capabilities(problem: Problem) -> frozenset[Capability] | None:
    """The capabilities of the problem's logit view, without building it (None: no view)."""
    for capability, view in VIEWS.items():
        if capability in problem.capabilities:
            return view.capabilities
    return None


def is_view(problem: Any) -> bool:
    """Whether ``problem`` is a logit view (estimates on it are in the logits)."""
    return isinstance(problem, _LogitView)
