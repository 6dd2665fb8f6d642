"""The language-model RL problems against an independent brute force.

Plain Python walks the tree of outputs token by token, computes each output's probability as
a product of softmaxes, and sums J = mean_p Σ_o π(o)(R_p(o) − β log π(o)/π_ref(o)); its finite
differences are held against vrbench's exact gradient. The rewards are checked against their
definitions, output by output.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from vrbench import problems
from vrbench.problems.sequences import EASY, HARD

TINY = {"prompts": 2, "vocab": 3, "max_length": 3}


def prefix_layout(vocab: int, max_length: int) -> dict[tuple[int, ...], int]:
    """Prefix → row of θ's ``(P, M, V)`` logits: by length, then lexicographically."""
    prefixes = [p for k in range(max_length) for p in itertools.product(range(1, vocab), repeat=k)]
    return {p: m for m, p in enumerate(prefixes)}


def all_outputs(vocab: int, max_length: int) -> list[tuple[int, ...]]:
    """Every output, by walking the tree: stop at EOS (0) or after max_length tokens."""
    done = []

    def walk(prefix: tuple[int, ...]) -> None:
        for token in range(vocab):
            sequence = (*prefix, token)
            if token == 0 or len(sequence) == max_length:
                done.append(sequence)
            else:
                walk(sequence)

    walk(())
    return done


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def mlp_logits(problem, theta: np.ndarray, prompt: int, prefix: tuple[int, ...]) -> np.ndarray:
    """The network's logits from its documented features, in plain numpy."""
    v, length, h = problem.vocab, problem.max_length, problem.hidden
    x = np.zeros(problem.prompts + length * (v - 1) + length)
    x[prompt] = 1
    for position, token in enumerate(prefix):
        x[problem.prompts + position * (v - 1) + token - 1] = 1
    x[problem.prompts + length * (v - 1) + len(prefix)] = 1
    f = x.size
    w1 = theta[:h * f].reshape(h, f)
    b1 = theta[h * f:h * f + h]
    w2 = theta[h * f + h:h * f + h + v * h].reshape(v, h)
    b2 = theta[h * f + h + v * h:]
    return w2 @ np.tanh(w1 @ x + b1) + b2


def log_prob(problem, theta: np.ndarray, prompt: int, output: tuple[int, ...]) -> float:
    """``Σ_t log softmax(logits(prompt, y_<t))[y_t]``, one step at a time."""
    layout = prefix_layout(problem.vocab, problem.max_length)
    table = theta.reshape(problem.prompts, len(layout), problem.vocab) \
        if not hasattr(problem, "hidden") else None
    total = 0.0
    for t, token in enumerate(output):
        prefix = output[:t]
        logits = (table[prompt, layout[prefix]] if table is not None
                  else mlp_logits(problem, theta, prompt, prefix))
        total += math.log(softmax(logits)[token])
    return total


def output_index(problem) -> dict[tuple[int, ...], int]:
    """vrbench's index of each output, read from its token table."""
    tree = problem.tree
    index = {}
    for n in range(problem.n_outputs):
        length = int(tree.lengths[n])
        index[tuple(int(t) for t in tree.tokens[n, :length])] = n
    return index


def brute_force_value(problem, theta: np.ndarray) -> float:
    outputs = all_outputs(problem.vocab, problem.max_length)
    index = output_index(problem)
    reference = problem.reference_theta().numpy()
    rewards = problem.rewards.numpy()
    total = 0.0
    for p in range(problem.prompts):
        for output in outputs:
            logp = log_prob(problem, theta, p, output)
            logq = log_prob(problem, reference, p, output)
            total += math.exp(logp) * (rewards[p, index[output]] - problem.beta * (logp - logq))
    return total / problem.prompts


CASES = [("lm_exact_match", {**TINY, "beta": 0.3}),
         ("lm_partial_credit", {**TINY, "beta": 0.0}),
         ("lm_pass_fail", {**TINY, "beta": 0.2, "drift": 1.0}),
         ("lm_length_penalty", {**TINY, "beta": 0.1, "cache": 1}),
         ("lm_pass_fail_mlp", {**TINY, "beta": 0.2, "hidden": 3}),
         ("lm_pass_fail", {"prompts": 1, "vocab": 4, "max_length": 3, "beta": 0.5})]


@pytest.mark.parametrize(("name", "params"), CASES)
def test_value_and_gradient_against_brute_force(name, params):
    problem = problems.make(name, params)
    theta = problem.initial_theta()
    assert len(all_outputs(problem.vocab, problem.max_length)) == problem.n_outputs
    point = theta.numpy()
    assert problem.value(theta).item() == pytest.approx(brute_force_value(problem, point),
                                                        rel=1e-12, abs=1e-14)
    step = 1e-6
    differences = np.array([(brute_force_value(problem, point + step * e)
                             - brute_force_value(problem, point - step * e)) / (2 * step)
                            for e in np.eye(point.size)])
    exact = problem.exact_grad(theta).numpy()
    np.testing.assert_allclose(exact, differences, atol=1e-8 * max(1, np.abs(exact).max()))


def test_outputs_tokens_and_contexts_follow_the_tree():
    problem = problems.make("lm_exact_match", {"vocab": 4, "max_length": 3})
    tree = problem.tree
    layout = prefix_layout(4, 3)
    for n in range(problem.n_outputs):
        length = int(tree.lengths[n])
        output = tuple(int(t) for t in tree.tokens[n, :length])
        assert bool(tree.terminated[n]) == (output[-1] == 0)
        assert all(t != 0 for t in output[:-1]) and (output[-1] == 0 or length == 3)
        assert tree.mask[n].sum() == length and (tree.tokens[n, length:] == 0).all()
        assert [int(c) for c in tree.contexts[n, :length]] == [layout[output[:t]]
                                                              for t in range(length)]
    assert problem.n_outputs == 1 + 3 + 9 + 27 and problem.n_prefixes == 13


def test_exact_match_and_partial_credit_rewards():
    exact = problems.make("lm_exact_match", {"prompts": 3, "vocab": 3, "max_length": 4})
    partial = problems.make("lm_partial_credit", {"prompts": 3, "vocab": 3, "max_length": 4})
    tree = exact.tree
    for p in range(3):
        row = exact.rewards[p]
        assert row.sum() == 1 and set(row.tolist()) == {0.0, 1.0}
        target = int(row.argmax())
        assert bool(tree.terminated[target])  # a target ends with EOS
        padded_target = tree.tokens[target].tolist()
        for n in range(exact.n_outputs):
            matches = sum(a == b for a, b in zip(tree.tokens[n].tolist(), padded_target,
                                                 strict=True))
            assert partial.rewards[p, n].item() == pytest.approx(matches / 4)


@pytest.mark.parametrize("difficulty", ["mixed", "easy", "medium", "hard"])
def test_pass_fail_success_probabilities_under_the_reference(difficulty):
    problem = problems.make("lm_pass_fail", {"difficulty": difficulty, "prompts": 4})
    reference = problem.sequence_log_prob_table(problem.reference_theta()).exp()
    success = (reference * problem.rewards).sum(-1)
    largest = reference.max(-1).values
    targets = {"easy": [EASY] * 4, "hard": [HARD] * 4, "medium": [0.5] * 4,
               "mixed": [EASY, HARD, EASY, HARD]}
    for p, target in enumerate(targets[difficulty]):
        assert abs(success[p].item() - target) <= largest[p].item()
        assert abs(success[p].item() - target) < (0.06 if difficulty == "medium" else 0.02)
    assert set(problem.rewards.unique().tolist()) <= {0.0, 1.0}


def test_length_penalty_is_dapo_soft_overlong_punishment():
    problem = problems.make("lm_length_penalty", {"max_length": 4, "cache": 2})
    passed = problems.make("lm_pass_fail", {"max_length": 4}).rewards
    tree = problem.tree
    for n in range(problem.n_outputs):
        length = int(tree.lengths[n])
        if not bool(tree.terminated[n]):
            expected = -1.0
        else:
            expected = 0.0 if length <= 2 else (2 - length) / 2
        assert (problem.rewards[:, n] - passed[:, n]).tolist() == pytest.approx([expected] * 4)


def test_exact_values_are_conditional_expectations_of_the_shaped_return():
    """The critic: V(prefix) = Σ_{o ⊃ prefix} π(o|prefix)(R(o) − β Σ_{s≥t} ℓ_s), brute force."""
    problem = problems.make("lm_pass_fail", {**TINY, "beta": 0.3})
    theta = problem.initial_theta()
    point, reference = theta.numpy(), problem.reference_theta().numpy()
    index = output_index(problem)
    rewards = problem.rewards.numpy()
    outputs = all_outputs(problem.vocab, problem.max_length)
    samples = problem.completions(theta, torch.tensor([[[index[o], index[o]] for o in outputs]]))
    values = problem.exact_token_values(theta, samples, 0.3)[0]
    for j, output in enumerate(outputs):
        for t in range(len(output)):
            for p in range(2):
                numerator = denominator = 0.0
                for other in outputs:
                    if other[:t] != output[:t]:
                        continue
                    logp = log_prob(problem, point, p, other)
                    tail = (log_prob(problem, point, p, other)
                            - log_prob(problem, point, p, other[:t])
                            - log_prob(problem, reference, p, other)
                            + log_prob(problem, reference, p, other[:t]))
                    numerator += math.exp(logp) * (rewards[p, index[other]] - 0.3 * tail)
                    denominator += math.exp(logp)
                assert values[j, p, t].item() == pytest.approx(numerator / denominator, rel=1e-10,
                                                               abs=1e-12)


def test_behaviour_policy_is_behind_along_the_gradient():
    problem = problems.make("lm_pass_fail", {"staleness": 0.4})
    theta = problem.initial_theta()
    old = problem.behaviour_theta(theta)
    grad = problem.exact_grad(theta)
    assert (theta - old).norm().item() == pytest.approx(0.4)
    assert torch.nn.functional.cosine_similarity(theta - old, grad, dim=0).item() == \
        pytest.approx(1.0)
    fresh = problems.make("lm_pass_fail")
    assert torch.equal(fresh.behaviour_theta(theta), theta)


def test_sampling_draws_each_output_with_its_probability():
    problem = problems.make("lm_partial_credit", {**TINY, "prompts": 1})
    theta = problem.initial_theta()
    samples = problem.sample(theta, (200_000, 1), torch.Generator().manual_seed(3))
    counts = torch.bincount(samples.index.reshape(-1), minlength=problem.n_outputs).double()
    probs = problem.sequence_log_prob_table(theta).exp()[0]
    expected = 200_000 * probs
    assert ((counts - expected).abs() <= 5 * expected.sqrt() + 1).all()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < problem.n_outputs + 6 * math.sqrt(2 * problem.n_outputs)


def test_bad_parameters_are_refused_with_the_valid_choices():
    from vrbench.errors import ParameterError

    with pytest.raises(ParameterError,
                       match="difficulty='tricky' is not one of mixed, easy, medium, hard"):
        problems.make("lm_pass_fail", {"difficulty": "tricky"})
    with pytest.raises(ParameterError, match="outputs per prompt"):
        problems.make("lm_exact_match", {"vocab": 50, "max_length": 8})
    with pytest.raises(ParameterError, match="cache=9"):
        problems.make("lm_length_penalty", {"cache": 9})
