"""Autoregressive sequence policies with verifiable rewards: language-model RL, exactly.

A prompt set of P prompts; for each, a policy emits tokens from a vocabulary of V (token 0 is
the end-of-sequence token, EOS) until it emits EOS or has emitted L tokens. The outputs of a
prompt form a tree: ``M = Σ_{k<L} (V − 1)^k`` prefixes (contexts a token is drawn from), each
with its own next-token distribution, and ``N = M + (V − 1)^L`` outputs (every prefix followed
by EOS, and the truncated sequences of L non-EOS tokens). Every output of every prompt is
listed, so the objective, its gradient, the KL to the reference policy, and every estimator's
expectation are finite sums.

A sample ``x = (o_1, ..., o_P)`` holds one output per prompt, drawn independently from
``π_θ(·|p)``, and ``f(x) = (1/P) Σ_p [R_p(o_p) − β log(π_θ(o_p|p)/π_ref(o_p|p))]``, whose mean
is the KL-regularized objective of RL from verifiable rewards,

    J(θ) = (1/P) Σ_p E_{o~π_θ(·|p)}[R_p(o)] − β KL(π_θ(·|p) ‖ π_ref(·|p)),

(Ouyang et al., "Training language models to follow instructions with human feedback",
NeurIPS 2022, eq. 2; Shao et al., "DeepSeekMath", 2024, section 4.1). The log-ratio term is
computed at the θ of the draw; its θ-derivative has mean zero (``E[∇ log π] = 0``), so
``∇J = E[f ∇θ log p(x)]`` holds and every score-function estimator applies. ``n`` samples are
G = n outputs for every prompt: the groups of the group-baseline estimators.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor

from vrbench.components import check
from vrbench.devices import device_cached
from vrbench.problems import register
from vrbench.problems.base import DTYPE, Capability, Problem, check_size, gradient_of_value

MAX_OUTPUTS = 2**17
"""Most outputs per prompt: exact sums run over ``P × N × L`` tables."""

MAX_TABLE = 2**25
"""Most entries of a ``(P, N, L)`` table (prompts × outputs × positions), 256 MiB in float64."""

MAX_SUPPORT = 2**16
"""Largest joint support (``N^P`` samples) that :meth:`SequencePolicy.support` lists."""

EASY, MEDIUM, HARD = 0.95, 0.5, 0.02
"""Success probabilities under the reference policy of the easy, medium and hard pass/fail
prompts."""

DIFFICULTIES = ("mixed", "easy", "medium", "hard")


class Completions(NamedTuple):
    """Samples: the index of the output drawn for each prompt, ``(R, n, P)``, and its
    sequence log-ratio ``log π(o|p) − log π_ref(o|p)`` under the θ that drew it."""

    index: Tensor  # type: ignore[assignment]  # the field's name shadows tuple.index
    log_ratio: Tensor


class OutputTree(NamedTuple):
    """Every output of one prompt, position by position (L positions)."""

    tokens: Tensor  # (N, L) int64, EOS (0) after the end
    mask: Tensor  # (N, L) float64: 1 where a token was emitted
    contexts: Tensor  # (N, L) int64: the prefix each token was drawn from (0 after the end)
    lengths: Tensor  # (N,) float64: tokens emitted, EOS included
    terminated: Tensor  # (N,) bool: ended with EOS (else truncated at L tokens)
    prefix_tokens: Tensor  # (M, L) int64: each prefix's tokens, EOS-padded
    prefix_lengths: Tensor  # (M,) int64


def output_tree(vocab: int, max_length: int) -> OutputTree:
    """The outputs of a vocabulary of ``vocab`` tokens (0 = EOS) and at most ``max_length``
    tokens: output ``m < M`` is prefix ``m`` followed by EOS; the rest are truncated. Prefixes
    are numbered by length, then lexicographically."""
    words = vocab - 1
    prefixes = [np.array(seq, dtype=np.int64).reshape(-1)
                for k in range(max_length)
                for seq in itertools.product(range(1, vocab), repeat=k)]
    offsets = np.cumsum([0] + [words**k for k in range(max_length)])

    def prefix_ids(seq: np.ndarray) -> list[int]:
        code, ids = 0, [0]
        for j, token in enumerate(seq[:-1] if len(seq) == max_length else seq, start=1):
            code = code * words + int(token) - 1
            ids.append(int(offsets[j]) + code)
        return ids

    sequences = [np.append(p, 0) for p in prefixes] + [
        np.array(seq, dtype=np.int64) for seq in itertools.product(range(1, vocab),
                                                                    repeat=max_length)]
    count = len(sequences)
    tokens = np.zeros((count, max_length), dtype=np.int64)
    contexts = np.zeros((count, max_length), dtype=np.int64)
    mask = np.zeros((count, max_length))
    for n, seq in enumerate(sequences):
        tokens[n, :len(seq)] = seq
        mask[n, :len(seq)] = 1.0
        ids = prefix_ids(seq[:-1]) if seq[-1] == 0 else prefix_ids(seq)
        contexts[n, :len(ids)] = ids
    prefix_tokens = np.zeros((len(prefixes), max_length), dtype=np.int64)
    for m, p in enumerate(prefixes):
        prefix_tokens[m, :len(p)] = p
    terminated = np.arange(count) < len(prefixes)
    return OutputTree(torch.as_tensor(tokens), torch.as_tensor(mask, dtype=DTYPE),
                      torch.as_tensor(contexts), torch.as_tensor(mask.sum(1), dtype=DTYPE),
                      torch.as_tensor(terminated),
                      torch.as_tensor(prefix_tokens),
                      torch.as_tensor(np.array([len(p) for p in prefixes], dtype=np.int64)))


def tree_sizes(vocab: int, max_length: int) -> tuple[int, int]:
    """``(M, N)``: prefixes and outputs of one prompt."""
    prefixes = sum((vocab - 1) ** k for k in range(max_length))
    return prefixes, prefixes + (vocab - 1) ** max_length


@dataclass(frozen=True)
class SequencePolicy(Problem):
    """An autoregressive policy over a prompt set with verifiable rewards (see the module).

    Subclasses give the rewards (:meth:`reward_table`) and the policy's logits per context
    (tabular by default: θ holds the logits of every prefix of every prompt). The reference
    policy π_ref is the policy at θ_ref, drawn from ``seed``; the benchmark's θ is
    ``θ_ref + drift · d`` with a fixed direction d drawn from ``seed`` too (a policy some RL
    steps away from its reference, so that the KL and its gradient are not zero). The behaviour
    policy of the off-policy estimators is π_old = π at ``θ − staleness · ∇J(θ)/‖∇J(θ)‖``: the
    policy one update of length ``staleness`` (in parameter space) behind, as after a few
    minibatch steps on one batch of rollouts.
    """

    parameter_symbols: ClassVar = {"beta": "β", "staleness": "staleness", "vocab": "V",
                                   "max_length": "L", "prompts": "P"}

    prompts: int = 4
    vocab: int = 3
    max_length: int = 4
    beta: float = 0.0
    staleness: float = 0.0
    drift: float = 0.5
    reward_scale: float = 1.0
    seed: int = 0

    capabilities: ClassVar = frozenset({Capability.DISCRETE, Capability.SEQUENCES})
    maximize: ClassVar = True
    reference: ClassVar = "Shao et al., 2024; Liu et al., 2025"
    # Two prompts and three tokens keep the checks' estimates small; β > 0 checks the KL term
    # (drift 1 makes its gradient large enough to see), and a stale behaviour policy the
    # off-policy sampler and the importance weights. A 1% bias of RLOO is then visible in
    # 1.5·10⁵ to 9·10⁵ estimates.
    check_params: ClassVar = MappingProxyType({"prompts": 2, "max_length": 3, "beta": 0.3,
                                               "drift": 1.0, "staleness": 0.3})

    def __post_init__(self) -> None:
        check_size(self.name, "prompts", self.prompts, high=1_000)
        check_size(self.name, "vocab", self.vocab, low=2, high=1_000)
        check_size(self.name, "max_length", self.max_length, high=64)
        outputs = tree_sizes(self.vocab, self.max_length)[1]  # Python integers: no overflow
        check(outputs <= MAX_OUTPUTS, self.name,
              f"vocab={self.vocab} and max_length={self.max_length} give {outputs} outputs per "
              f"prompt; at most {MAX_OUTPUTS} keep the exact sums within memory and time")
        entries = self.prompts * outputs * self.max_length
        check(entries <= MAX_TABLE, self.name,
              f"prompts={self.prompts} × {outputs} outputs × max_length={self.max_length} = "
              f"{entries} table entries; at most {MAX_TABLE} keep the exact sums in memory")
        check(0.0 <= self.beta <= 1e3, self.name, f"beta={self.beta} must lie in [0, 1000]")
        check(0.0 <= self.staleness <= 1e3, self.name,
              f"staleness={self.staleness} must lie in [0, 1000]")
        check(abs(self.drift) <= 1e3, self.name, f"drift={self.drift} must lie in [-1000, 1000]")
        check(abs(self.reward_scale) <= 1e6, self.name,
              f"reward_scale={self.reward_scale} must lie in [-1e6, 1e6]")

    # --- the tree and the rewards --------------------------------------------------------

    @device_cached
    def tree(self) -> OutputTree:
        return output_tree(self.vocab, self.max_length)

    @property
    def n_prefixes(self) -> int:
        return tree_sizes(self.vocab, self.max_length)[0]

    @property
    def n_outputs(self) -> int:
        return tree_sizes(self.vocab, self.max_length)[1]

    def reward_table(self) -> Tensor:
        """``R_p(o)`` for every prompt and output, ``(P, N)`` (built on the CPU)."""
        raise NotImplementedError

    @device_cached
    def rewards(self) -> Tensor:
        """``R_p(o)`` times ``reward_scale``, ``(P, N)``."""
        return self.reward_scale * self.reward_table()

    def correct_table(self) -> Tensor:
        """``1[o counts as correct for p]``, ``(P, N)``, for training statistics: a reward
        above the midpoint of the prompt's range."""
        rewards = self.reward_table()
        low, high = rewards.min(-1, keepdim=True).values, rewards.max(-1, keepdim=True).values
        return (rewards > (low + high) / 2).to(DTYPE)

    # --- the policy ----------------------------------------------------------------------

    @property
    def dim(self) -> int:
        return self.prompts * self.n_prefixes * self.vocab

    def context_logits(self, theta: Tensor) -> Tensor:
        """The next-token logits of every prefix of every prompt, ``(P, M, V)``."""
        return theta.reshape(self.prompts, self.n_prefixes, self.vocab)

    def logits_pullback(self, theta: Tensor, grad_logits: Tensor) -> Tensor:
        """``(R, dim)`` gradients in θ from gradients in the logits ``(R, P, M, V)``."""
        return grad_logits.reshape(grad_logits.shape[0], -1)

    def parameter_scale(self) -> float:
        """The standard deviation of θ_ref's entries and of the drift direction's."""
        return 1.0

    @device_cached
    def _anchors(self) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(self.seed)
        scale = self.parameter_scale()
        reference = scale * torch.randn(self.dim, generator=g, dtype=DTYPE)
        direction = scale * torch.randn(self.dim, generator=g, dtype=DTYPE)
        return reference, direction

    def reference_theta(self) -> Tensor:
        """θ_ref, the parameters of the reference policy π_ref."""
        return self._anchors[0]

    def initial_theta(self) -> Tensor:
        reference, direction = self._anchors
        return reference + self.drift * direction

    def token_log_prob_table(self, theta: Tensor) -> Tensor:
        """``log π(y_t | p, y_<t)`` of every token of every output, ``(P, N, L)``, 0 after the
        end; differentiable in θ."""
        tree = self.tree
        log_policy = torch.log_softmax(self.context_logits(theta), dim=-1)
        flat = (tree.contexts * self.vocab + tree.tokens).reshape(-1)
        picked = log_policy.reshape(self.prompts, -1).index_select(1, flat)
        return picked.reshape(self.prompts, *tree.tokens.shape) * tree.mask

    def sequence_log_prob_table(self, theta: Tensor) -> Tensor:
        """``log π(o|p)`` of every output, ``(P, N)``."""
        return self.token_log_prob_table(theta).sum(-1)

    @device_cached
    def _reference_tables(self) -> tuple[Tensor, Tensor]:
        tokens = self.token_log_prob_table(self.reference_theta()).detach()
        return tokens, tokens.sum(-1)

    # --- sampling ------------------------------------------------------------------------

    def _draw(self, theta: Tensor, shape: tuple[int, int],
              generator: torch.Generator) -> Completions:
        log_probs = self.sequence_log_prob_table(theta).detach()
        cdf = torch.cumsum(log_probs.exp(), dim=-1)
        count = shape[0] * shape[1]
        uniforms = torch.rand((self.prompts, count), generator=generator, dtype=DTYPE)
        index = torch.searchsorted(cdf, uniforms * cdf[:, -1:]).clamp_(max=self.n_outputs - 1)
        ratio = log_probs - self._reference_tables[1]
        log_ratio = ratio.gather(1, index)
        return Completions(index.T.reshape(*shape, self.prompts),
                           log_ratio.T.reshape(*shape, self.prompts))

    def sample(self, theta: Tensor, shape: tuple[int, int],
               generator: torch.Generator) -> Completions:
        return self._draw(theta, shape, generator)

    def behaviour_theta(self, theta: Tensor) -> Tensor:
        """θ_old: θ moved back by ``staleness`` along the exact gradient's direction."""
        if self.staleness == 0:
            return theta
        grad = self.exact_grad(theta)
        moved: Tensor = theta - self.staleness * grad / grad.norm().clamp(min=1e-300)
        return moved

    def sample_behaviour(self, theta: Tensor, shape: tuple[int, int],
                         generator: torch.Generator) -> Completions:
        """Samples from the behaviour policy π_old (see :meth:`behaviour_theta`)."""
        return self._draw(self.behaviour_theta(theta), shape, generator)

    def completions(self, theta: Tensor, index: Tensor) -> Completions:
        """The samples made of given outputs ``index`` (``(R, n, P)``) drawn at θ."""
        ratio = self.sequence_log_prob_table(theta).detach() - self._reference_tables[1]
        prompt = torch.arange(self.prompts).expand_as(index)
        return Completions(index, ratio[prompt, index])

    # --- per-sample views -----------------------------------------------------------------

    def _gather(self, table: Tensor, samples: Completions) -> Tensor:
        """``table[p, index]`` of a ``(P, N, ...)`` table for each sample: ``(R, n, P, ...)``."""
        flat = (torch.arange(self.prompts) * self.n_outputs + samples.index).reshape(-1)
        picked = table.reshape(self.prompts * self.n_outputs, -1).index_select(0, flat)
        return picked.reshape(*samples.index.shape, *table.shape[2:])

    def _per_output(self, table: Tensor, samples: Completions) -> Tensor:
        """``table[index]`` of an ``(N, ...)`` table shared by the prompts: ``(R, n, P, ...)``."""
        return table.index_select(0, samples.index.reshape(-1)).reshape(
            *samples.index.shape, *table.shape[1:])

    def prompt_rewards(self, samples: Completions) -> Tensor:
        """``R_p(o_p)`` of each sample and prompt, ``(R, n, P)``."""
        return self._gather(self.rewards, samples)

    def token_mask(self, samples: Completions) -> Tensor:
        """1 where a token was emitted, ``(R, n, P, L)``."""
        return self._per_output(self.tree.mask, samples)

    def token_log_probs(self, theta: Tensor, samples: Completions) -> Tensor:
        """``log π_θ(y_t | p, y_<t)`` of each token, ``(R, n, P, L)`` (0 after the end)."""
        return self._gather(self.token_log_prob_table(theta).detach(), samples)

    def reference_token_log_probs(self, samples: Completions) -> Tensor:
        """``log π_ref(y_t | p, y_<t)`` of each token, ``(R, n, P, L)``."""
        return self._gather(self._reference_tables[0], samples)

    @device_cached
    def _token_slots(self) -> Tensor:
        """``(p·M + c)·V + y`` for token ``y`` drawn from prefix ``c`` at each position of each
        output of each prompt, ``(P·N, L)``; −1 after an output's end."""
        tree = self.tree
        rows = torch.arange(self.prompts)[:, None, None] * self.n_prefixes + tree.contexts
        slots = rows * self.vocab + tree.tokens
        return torch.where(tree.mask > 0, slots, -1).reshape(-1, self.max_length)

    def token_weighted_score(self, theta: Tensor, samples: Completions,
                             weights: Tensor) -> Tensor:
        """``Σ_j Σ_p Σ_t w_jpt ∇θ log π_θ(y_jpt | p, y_jp<t)`` per replicate, ``(R, dim)``,
        for weights ``(R, n, P, L)`` (no average; entries after an output's end ignored).

        ``∇ log softmax(ℓ_c)[y] = e_y − softmax(ℓ_c)``: the weights are added up per
        (context, token) and per context, then pulled back to θ (:meth:`logits_pullback`).
        """
        replicates = weights.shape[0]
        size = self.prompts * self.n_prefixes * self.vocab
        outputs = (torch.arange(self.prompts) * self.n_outputs + samples.index).reshape(-1)
        slots = self._token_slots.index_select(0, outputs).reshape(replicates, -1)
        # Positions after the end go to one extra slot, dropped below.
        slots = torch.where(slots >= 0, slots + torch.arange(replicates)[:, None] * size,
                            replicates * size)
        grad = torch.zeros(replicates * size + 1, dtype=DTYPE)
        grad.index_add_(0, slots.reshape(-1), weights.reshape(-1))
        grad = grad[:-1].reshape(replicates, self.prompts, self.n_prefixes, self.vocab)
        policy = torch.softmax(self.context_logits(theta).detach(), dim=-1)
        return self.logits_pullback(theta, grad - grad.sum(-1, keepdim=True) * policy)

    def weighted_score(self, theta: Tensor, samples: Completions, weights: Tensor) -> Tensor:
        expanded = weights[..., None, None].expand(*weights.shape, self.prompts,
                                                   self.max_length)
        return self.token_weighted_score(theta, samples, expanded) / weights.shape[1]

    def score(self, theta: Tensor, samples: Completions) -> Tensor:
        replicates, n = samples.index.shape[:2]
        flat = Completions(samples.index.reshape(replicates * n, 1, self.prompts),
                           samples.log_ratio.reshape(replicates * n, 1, self.prompts))
        ones = torch.ones(replicates * n, 1, self.prompts, self.max_length, dtype=DTYPE)
        return self.token_weighted_score(theta, flat, ones).reshape(replicates, n, self.dim)

    def log_prob(self, theta: Tensor, samples: Completions) -> Tensor:
        table = self.sequence_log_prob_table(theta)
        prompt = torch.arange(self.prompts).expand_as(samples.index)
        return table[prompt, samples.index].sum(-1)

    def f(self, samples: Completions) -> Tensor:
        return (self.prompt_rewards(samples) - self.beta * samples.log_ratio).mean(-1)

    def support(self) -> Completions:
        # Only without the KL term: f would need the θ of the draw, which support() lacks.
        size = self.n_outputs ** self.prompts
        if self.beta != 0 or size > MAX_SUPPORT:
            raise NotImplementedError(f"{self.name} lists its support only with beta=0 and "
                                      f"at most {MAX_SUPPORT} joint outputs (has {size})")
        grids = torch.meshgrid(*[torch.arange(self.n_outputs)] * self.prompts, indexing="ij")
        index = torch.stack([g.reshape(-1) for g in grids], dim=-1)[None]
        return Completions(index, torch.zeros(index.shape, dtype=DTYPE))

    def sample_width(self) -> int:
        return 8 * self.prompts * self.max_length

    # --- exact values ---------------------------------------------------------------------

    def prompt_values(self, theta: Tensor) -> Tensor:
        """``J_p = E[R_p] − β KL_p`` of each prompt, ``(P,)``."""
        log_probs = self.sequence_log_prob_table(theta)
        probs = log_probs.exp()
        kl = (probs * (log_probs - self._reference_tables[1])).sum(-1)
        return (probs * self.rewards).sum(-1) - self.beta * kl

    def value(self, theta: Tensor) -> Tensor:
        return self.prompt_values(theta).mean()

    def exact_grad(self, theta: Tensor) -> Tensor:
        return gradient_of_value(self, theta)

    def kl(self, theta: Tensor) -> Tensor:
        """The mean over prompts of ``KL(π_θ(·|p) ‖ π_ref(·|p))``."""
        log_probs = self.sequence_log_prob_table(theta)
        return (log_probs.exp() * (log_probs - self._reference_tables[1])).sum(-1).mean()

    def exact_token_values(self, theta: Tensor, samples: Completions, beta: float) -> Tensor:
        """The exact critic: ``V_t = E_θ[R − β Σ_{s≥t} log(π_θ/π_ref)(y_s) | p, y_<t]`` at each
        token's prefix, under the policy at ``theta``, ``(R, n, P, L)`` (0 after the end).

        Sums over the outputs through each prefix: ``V(c) = Σ_{o ∋ c} π(o) G_o(c) / Σ_{o ∋ c}
        π(o)``, with ``G_o(c)`` the shaped return of ``o`` from the position where it leaves c.
        """
        tree = self.tree
        token_log_probs = self.token_log_prob_table(theta).detach()
        log_ratio = token_log_probs - self._reference_tables[0]
        returns = self.rewards[..., None] - beta * log_ratio.flip(-1).cumsum(-1).flip(-1)
        probs = token_log_probs.sum(-1).exp()[..., None] * tree.mask  # (P, N, L)
        row = (torch.arange(self.prompts)[:, None, None] * self.n_prefixes
               + tree.contexts).reshape(-1)
        size = self.prompts * self.n_prefixes
        mass = torch.zeros(size, dtype=DTYPE).index_add_(0, row, probs.reshape(-1))
        total = torch.zeros(size, dtype=DTYPE).index_add_(0, row, (probs * returns).reshape(-1))
        values = (total / mass.clamp(min=1e-300)).index_select(0, row).reshape(probs.shape)
        return self._gather(values * tree.mask, samples)

    def statistics(self, theta: Tensor) -> dict[str, float]:
        """Exact properties of the policy at θ, for training traces: the success rate
        (reward above the prompt's midpoint), expected length overall and of correct and
        incorrect outputs, and the KL to π_ref."""
        with torch.no_grad():
            probs = self.sequence_log_prob_table(theta).exp()
            correct = self.correct_table()
            lengths = self.tree.lengths
            success = (probs * correct).sum(-1)
            failure = 1 - success
            return {
                "success": float(success.mean()),
                "length": float((probs * lengths).sum(-1).mean()),
                "length_correct": float(((probs * correct * lengths).sum(-1)
                                         / success.clamp(min=1e-300)).mean()),
                "length_incorrect": float(((probs * (1 - correct) * lengths).sum(-1)
                                           / failure.clamp(min=1e-300)).mean()),
                "kl": float(self.kl(theta)),
            }


def _targets(problem: SequencePolicy) -> Tensor:
    """A target output per prompt, fixed by ``seed``: one that ends with EOS."""
    g = torch.Generator().manual_seed(problem.seed + 1)
    return torch.randint(1, problem.n_prefixes, (problem.prompts,), generator=g) if \
        problem.n_prefixes > 1 else torch.zeros(problem.prompts, dtype=torch.int64)


@register("lm_exact_match")
@dataclass(frozen=True)
class ExactMatch(SequencePolicy):
    """Exact match: reward 1 for the prompt's target output (fixed by ``seed``), else 0.

    A tabular autoregressive policy (θ = the logits of every prefix of every prompt) over
    V = ``vocab`` tokens (token 0 is EOS) and at most L = ``max_length`` tokens; P =
    ``prompts`` prompts, each with a target that ends with EOS. ``J = (1/P) Σ_p π(target_p|p) −
    β KL(π‖π_ref)``, exact by enumerating the ``N = Σ_{k≤L}`` outputs of each prompt; samples
    hold one output per prompt (see :mod:`vrbench.problems.sequences`). The sparse reward of
    RL from verifiable rewards (Lambert et al., "Tülu 3", 2024, section 6; Shao et al.,
    "DeepSeekMath", 2024).
    """

    display_name = "LM, exact match"

    reference: ClassVar = "Lambert et al., 2024; Shao et al., 2024"

    def reward_table(self) -> Tensor:
        targets = _targets(self)
        return (torch.arange(self.n_outputs)[None, :] == targets[:, None]).to(DTYPE)


@register("lm_partial_credit")
@dataclass(frozen=True)
class PartialCredit(SequencePolicy):
    """Partial credit: the fraction of the L positions that match the prompt's target.

    As ``lm_exact_match``, with ``R_p(o) = (1/L) Σ_t 1[o_t = target_t]``, both sequences padded
    with EOS after their end: a dense reward whose credit grows with each matching token (the
    graded rewards of process and partial-credit verifiers; Lightman et al., "Let's verify step
    by step", 2023).
    """

    display_name = "LM, partial credit"

    reference: ClassVar = "Lightman et al., 2023"

    def reward_table(self) -> Tensor:
        tokens = self.tree.tokens
        target_tokens = tokens[_targets(self)]  # (P, L)
        return (tokens[None] == target_tokens[:, None]).to(DTYPE).mean(-1)


class _PassFailRewards:
    """Pass/fail verifiers whose success probability under π_ref is set per prompt."""

    difficulty: str
    prompts: int
    seed: int

    def success_targets(self) -> list[float]:
        """The success probability under π_ref of each prompt: easy 0.95, medium 0.5, hard
        0.02, and easy and hard alternating in the mixed set (easy first)."""
        single = {"easy": EASY, "medium": MEDIUM, "hard": HARD}
        if self.difficulty in single:
            return [single[self.difficulty]] * self.prompts
        return [EASY if p % 2 == 0 else HARD for p in range(self.prompts)]

    def correct_sets(self: Any) -> Tensor:
        """``1[o is correct for p]``, ``(P, N)``: outputs taken in an order fixed by ``seed``,
        each kept while the π_ref-mass of the kept ones stays within the target, the correct
        outputs for a target below 1/2 and the incorrect ones above (so the success
        probability is at most one output's mass off the target either way)."""
        probs = self._reference_tables[1].exp()
        g = torch.Generator().manual_seed(self.seed + 2)
        correct = torch.zeros(self.prompts, self.n_outputs, dtype=DTYPE)
        for p, target in enumerate(self.success_targets()):
            order = torch.randperm(self.n_outputs, generator=g)
            budget = target if target <= 0.5 else 1 - target
            kept = torch.zeros(self.n_outputs, dtype=DTYPE)
            mass = 0.0
            for n in order.tolist():
                if mass + float(probs[p, n]) <= budget:
                    kept[n] = 1.0
                    mass += float(probs[p, n])
            correct[p] = kept if target <= 0.5 else 1 - kept
        return correct

    def correct_table(self: Any) -> Tensor:
        correct: Tensor = self.correct_sets()
        return correct

    def reward_table(self: Any) -> Tensor:
        correct: Tensor = self.correct_sets()
        return correct


def _check_difficulty(problem: Any) -> None:
    check(problem.difficulty in DIFFICULTIES, problem.name,
          f"difficulty={problem.difficulty!r} is not one of {', '.join(DIFFICULTIES)}")


@register("lm_pass_fail")
@dataclass(frozen=True)
class PassFail(_PassFailRewards, SequencePolicy):
    """Pass/fail: reward 1 for a correct output, on easy (p ≈ 0.95) and hard (p ≈ 0.02) prompts.

    As ``lm_exact_match``, with each prompt's verifier accepting a fixed set of outputs (drawn
    from ``seed``) whose probability under π_ref is 0.95 (easy) or 0.02 (hard), within one
    output's probability; ``difficulty`` is ``mixed`` (easy and hard prompts alternate),
    ``easy``, ``medium`` (0.5) or ``hard``. Correct outputs have every length, so a length
    bias has room to act. The setting of GRPO's standard-deviation normalization, which weighs
    prompts whose groups are nearly all right or all wrong most (Liu et al., "Understanding
    R1-Zero-like training", 2025, section 3.1).
    """

    display_name = "LM, pass/fail ({difficulty})"

    difficulty: str = "mixed"

    reference: ClassVar = "Liu et al., 2025"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_difficulty(self)


@register("lm_length_penalty")
@dataclass(frozen=True)
class LengthPenalty(_PassFailRewards, SequencePolicy):
    """Pass/fail plus DAPO's soft overlong punishment: a reward that depends on the length.

    ``R = 1[correct] + R_length(|o|)`` with ``R_length = 0`` for ``|o| ≤ L − cache``,
    ``((L − cache) − |o|)/cache`` up to L tokens, and −1 for a truncated output (no EOS within
    L tokens); correct sets as in ``lm_pass_fail``. Yu et al., "DAPO", 2025, eq. 13.
    """

    display_name = "LM, overlong penalty ({difficulty})"

    difficulty: str = "mixed"
    cache: int = 2

    reference: ClassVar = "Yu et al., 2025"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_difficulty(self)
        check(1 <= self.cache <= self.max_length, self.name,
              f"cache={self.cache} must lie in 1..max_length={self.max_length}")

    def reward_table(self) -> Tensor:
        tree = self.tree
        free = self.max_length - self.cache
        penalty = torch.clamp((free - tree.lengths) / self.cache, max=0.0)
        penalty = torch.where(tree.terminated, penalty, torch.full_like(penalty, -1.0))
        return self.correct_sets() + penalty[None, :]


@register("lm_pass_fail_mlp")
@dataclass(frozen=True)
class PassFailMLP(_PassFailRewards, SequencePolicy):
    """Pass/fail (as ``lm_pass_fail``) under a tiny network instead of a table of logits.

    The logits of prefix ``y_<t`` of prompt p are ``W₂ tanh(W₁ x + b₁) + b₂`` with ``x`` the
    one-hot prompt, the one-hot token at each position of the prefix and the one-hot prefix
    length (``F = P + L(V − 1) + L`` features) and ``hidden`` units: θ = (W₁, b₁, W₂, b₂), shared
    by every prompt and prefix, so an update at one prefix moves them all, as in a language
    model. θ_ref's entries are N(0, 1/F) (Glorot-like); defaults V = 3, L = 5 (63 outputs
    per prompt), 8 hidden units (187 parameters).
    """

    display_name = "LM (MLP), pass/fail ({difficulty})"

    vocab: int = 3
    max_length: int = 5
    hidden: int = 8
    difficulty: str = "mixed"

    reference: ClassVar = "Liu et al., 2025"
    check_params: ClassVar = MappingProxyType({"prompts": 2, "max_length": 3, "beta": 0.3,
                                               "drift": 1.0, "staleness": 0.3, "vocab": 3,
                                               "hidden": 8})

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_difficulty(self)
        check_size(self.name, "hidden", self.hidden, high=1_000)

    @property
    def features(self) -> int:
        return self.prompts + self.max_length * (self.vocab - 1) + self.max_length

    @property
    def dim(self) -> int:
        h, f, v = self.hidden, self.features, self.vocab
        return h * f + h + v * h + v

    def parameter_scale(self) -> float:
        return 1.0 / math.sqrt(self.features)

    @device_cached
    def context_features(self) -> Tensor:
        """``x`` of every prefix of every prompt, ``(P, M, F)``."""
        tree = self.tree
        words = self.vocab - 1
        prompt = torch.eye(self.prompts, dtype=DTYPE)[:, None, :].expand(
            -1, self.n_prefixes, -1)
        positions = torch.arange(self.max_length)[None, :] < tree.prefix_lengths[:, None]
        tokens = torch.nn.functional.one_hot((tree.prefix_tokens - 1).clamp(min=0), words)
        tokens = (tokens * positions[..., None]).reshape(self.n_prefixes, -1).to(DTYPE)
        length = torch.nn.functional.one_hot(tree.prefix_lengths, self.max_length).to(DTYPE)
        shared = torch.cat([tokens, length], dim=-1)[None].expand(self.prompts, -1, -1)
        return torch.cat([prompt, shared], dim=-1)

    def _weights(self, theta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        h, f, v = self.hidden, self.features, self.vocab
        w1, b1, w2, b2 = torch.split(theta, [h * f, h, v * h, v])
        return w1.reshape(h, f), b1, w2.reshape(v, h), b2

    def context_logits(self, theta: Tensor) -> Tensor:
        w1, b1, w2, b2 = self._weights(theta)
        hidden = torch.tanh(self.context_features @ w1.T + b1)
        return hidden @ w2.T + b2

    def logits_pullback(self, theta: Tensor, grad_logits: Tensor) -> Tensor:
        # Backpropagation through the network for every replicate at once.
        w1, b1, w2, _ = self._weights(theta.detach())
        x = self.context_features.reshape(-1, self.features)
        hidden = torch.tanh(x @ w1.T + b1)  # (C, H)
        grad = grad_logits.reshape(grad_logits.shape[0], -1, self.vocab)  # (R, C, V)
        grad_w2 = torch.einsum("rcv,ch->rvh", grad, hidden)
        grad_hidden = (grad @ w2) * (1 - hidden**2)  # (R, C, H)
        grad_w1 = torch.einsum("rch,cf->rhf", grad_hidden, x)
        return torch.cat([grad_w1.flatten(1), grad_hidden.sum(1), grad_w2.flatten(1),
                          grad.sum(1)], dim=1)
