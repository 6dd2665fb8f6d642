"""Training steps per second: vrbench's training loop against the hand-written PyTorch loop.

The hand-written loop (``benchmarks/handwritten_vae.py``) is what a researcher would write for
the same model, estimator and arithmetic (float64, like vrbench): ``torch.nn`` modules, the
estimator's per-example signals as the encoder logits' gradient, autograd for the rest. Both
run the same number of steps on the same Fashion-MNIST minibatches' sizes, timed over the
steps alone (set-up excluded), alternating round by round so that a loaded machine slows
both alike, on one thread each (two threads on a shared 2-core machine measure the other
work more than either loop). ``extra_info`` records each one's median steps per second and
their ratio (vrbench's overhead: the hand-written rate over vrbench's); nothing here asserts
a time.
Skipped without the data (``apt-get install dataset-fashion-mnist``).
"""

from __future__ import annotations

import statistics

import pytest
import torch

from benchmarks import handwritten_vae
from vrbench import problems
from vrbench.bench.train import TrainSettings, train
from vrbench.components import Spec
from vrbench.problems import idx

STEPS = 100
ROUNDS = 3
CASES = [(model, estimator) for model in ("linear", "nonlinear")
         for estimator in ("disarm", "rloo")]
HIDDEN = {"linear": [], "nonlinear": [200, 200]}


def _vrbench_seconds(model: str, estimator: str, seed: int) -> float:
    settings = TrainSettings(steps=STEPS, n_samples=2 if estimator == "rloo" else 1, lr=1e-4,
                             eval_every=STEPS, eval_replicates=0,
                             groups={"prior": {"optimizer": "sgd", "lr": 1e-2}})
    spec = Spec(f"binary_vae_{model}", {"eval_train_images": 0, "eval_test_images": 0})
    rows = train(spec, Spec(estimator), seed, settings)
    return float(rows[-1]["wall_s"])  # the steps' time: measurements and set-up excluded


@pytest.mark.parametrize(("model", "estimator"), CASES)
def test_training_steps_against_handwritten(benchmark, model, estimator):
    reason = problems.make(f"binary_vae_{model}").unavailable()
    if reason is not None:
        pytest.skip(reason)
    images = idx.load_images(idx.data_dir()).train[:50_000]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # both on one thread: a busy second core slows both alike
    rates: dict[str, list[float]] = {"vrbench": [], "handwritten": []}

    def interleaved() -> None:
        for round_ in range(ROUNDS):
            order = ("vrbench", "handwritten") if round_ % 2 == 0 else ("handwritten",
                                                                          "vrbench")
            for kind in order:
                if kind == "vrbench":
                    seconds = _vrbench_seconds(model, estimator, round_)
                else:
                    _, seconds = handwritten_vae.train(images, STEPS, estimator,
                                                       HIDDEN[model], seed=round_)
                rates[kind].append(STEPS / seconds)

    benchmark.group = f"training steps binary_vae_{model} {estimator}"
    try:
        benchmark.pedantic(interleaved, rounds=1, warmup_rounds=0)
    finally:
        torch.set_num_threads(threads)
    vrbench_rate = statistics.median(rates["vrbench"])
    handwritten_rate = statistics.median(rates["handwritten"])
    benchmark.extra_info.update(
        kind="training", steps=STEPS, rounds=ROUNDS, threads=1,
        vrbench_steps_per_s=vrbench_rate, handwritten_steps_per_s=handwritten_rate,
        overhead=handwritten_rate / vrbench_rate)
