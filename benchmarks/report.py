"""Turn pytest-benchmark JSON into the tables of benchmarks/README.md.

Usage: python benchmarks/report.py benchmarks/results.json > benchmarks/README.md
"""

from __future__ import annotations

import json
import platform
import sys
from collections import defaultdict
from typing import Any


def _estimator_table(benchmarks: list[dict[str, Any]]) -> None:
    rates: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for bench in benchmarks:
        info = bench["extra_info"]
        rates[bench["group"]][info["kind"]][info["replicates"]] = (
            info["replicates"] / bench["stats"]["median"])
    print("| problem | estimator | R | vrbench (estimates/s) | numpy floor (estimates/s) "
          "| naive loop (estimates/s) | vrbench / naive | vrbench / floor |")
    print("|---|---|---|---|---|---|---|---|")
    for group in sorted(rates):
        problem, estimator = group.split(" ")
        kinds = rates[group]
        naive = next(iter(kinds.get("naive loop", {}).values()), None)
        for replicates, rate in sorted(kinds.get("vrbench", {}).items()):
            floor = kinds.get("numpy floor", {}).get(replicates)
            cells = [problem, estimator, f"{replicates:,}", f"{rate:,.0f}",
                     f"{floor:,.0f}" if floor else "—",
                     f"{naive:,.0f}" if naive else "—",
                     f"{rate / naive:,.0f}×" if naive else "—",
                     f"{rate / floor:.2f}×" if floor else "—"]
            print("| " + " | ".join(cells) + " |")


SIDE_BY_SIDE = "side-by-side "
TARGETS = {"jax": 1.2, "numpy": 1.5}
"""vrbench's largest time per estimate as a multiple of JAX's and of the numpy floor's."""


def _time_cell(micros: float | None, batch: int | None) -> str:
    if micros is None:
        return "—"
    return f"{micros:.3g}" + (f" ({batch:,}/call)" if batch else "")


def _side_by_side_table(benchmarks: list[dict[str, Any]]) -> None:
    times: dict[tuple[str, int], dict[str, float]] = defaultdict(dict)
    batches: dict[tuple[str, int], dict[str, Any]] = defaultdict(dict)
    for bench in benchmarks:
        info = bench["extra_info"]
        key = (bench["group"].removeprefix(SIDE_BY_SIDE), info["replicates"])
        times[key][info["kind"]] = bench["stats"]["median"] / info["replicates"] * 1e6
        batches[key][info["kind"]] = info.get("batch")
    print("| problem | estimator | n | R | vrbench (µs/estimate) | JAX (µs/estimate) "
          "| numpy floor (µs/estimate) | vrbench ÷ JAX | vrbench ÷ floor | within targets |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (group, replicates), row in sorted(times.items()):
        problem, estimator, n = group.split(" ")
        ratios = {kind: row["vrbench"] / row[kind] for kind in TARGETS
                  if kind in row and "vrbench" in row}
        verdict = ("yes" if all(ratios[k] <= TARGETS[k] for k in ratios) else
                   "no: " + ", ".join(f"÷{k} {ratios[k]:.2f} > {TARGETS[k]}"
                                      for k in ratios if ratios[k] > TARGETS[k]))
        cells = {kind: _time_cell(row.get(kind), batches[group, replicates].get(kind))
                 for kind in ("vrbench", "jax", "numpy")}
        print(f"| {problem} | {estimator} | {n} | {replicates:,} | {cells['vrbench']} "
              f"| {cells['jax']} | {cells['numpy']} | "
              + (f"{ratios['jax']:.2f}×" if "jax" in ratios else "—") + " | "
              + (f"{ratios['numpy']:.2f}×" if "numpy" in ratios else "—")
              + f" | {verdict if ratios else '—'} |")


def _system_table(benchmarks: list[dict[str, Any]]) -> None:
    print("| measurement | result |")
    print("|---|---|")
    for bench in benchmarks:
        info, seconds = bench["extra_info"], bench["stats"]["median"]
        if info["kind"] == "default sweep":
            print(f"| `make sweep` (configs/default.toml, {info['cells']} cells, from nothing "
                  f"stored) | {seconds / 60:.1f} min ({seconds:.0f} s) |")
        elif info["kind"] == "peak memory":
            print(f"| peak memory of one cell, {info['problem']}, score_function, n = 4, "
                  f"R = {info['replicates']:,} | {info['peak_mb']:,.0f} MB RSS "
                  f"({info['before_mb']:,.0f} MB after imports; {seconds:.0f} s) |")


def _training_table(benchmarks: list[dict[str, Any]]) -> None:
    print("| problem | estimator | vrbench (steps/s) | hand-written loop (steps/s) "
          "| overhead (hand-written ÷ vrbench) |")
    print("|---|---|---|---|---|")
    for bench in sorted(benchmarks, key=lambda b: b["group"]):
        info = bench["extra_info"]
        problem, estimator = bench["group"].split(" ")[-2:]
        print(f"| {problem} | {estimator} | {info['vrbench_steps_per_s']:.1f} | "
              f"{info['handwritten_steps_per_s']:.1f} | {info['overhead']:.2f}× |")


def main(path: str) -> None:
    data = json.loads(open(path).read())
    machine = data.get("machine_info", {})
    commit = data.get("commit_info", {}).get("id", "")[:12]
    training_runs = [b for b in data["benchmarks"]
                     if b["extra_info"].get("kind") == "training"]
    side_by_side = [b for b in data["benchmarks"] if b["group"].startswith(SIDE_BY_SIDE)]
    estimator_runs = [b for b in data["benchmarks"]
                      if b["group"] != "system" and not b["group"].startswith(SIDE_BY_SIDE)
                      and b not in training_runs]
    system_runs = [b for b in data["benchmarks"] if b["group"] == "system"]
    print("# Speed of vrbench's estimators\n")
    print("Generated by `make bench` (`python benchmarks/report.py benchmarks/results.json`) "
          "from the pytest-benchmark run in `benchmarks/test_speed.py`: medians of 3 rounds at "
          "R = 10,000, one round at R = 1,000,000 and for the naive loop. Every contender "
          "runs in one process pinned to one core with one thread, as a single CLI cell with "
          "`--threads 1` runs; vrbench with its default chunks (about 8 MiB of tensors, at "
          "least 2^14 draws, within the 256 MB memory budget).\n")
    print(f"Machine: {machine.get('cpu', {}).get('brand_raw', platform.processor())}, "
          f"{machine.get('cpu', {}).get('count', '?')} cores, no GPU used; Python "
          f"{machine.get('python_version', '')}; torch {_version('torch')}, numpy "
          f"{_version('numpy')}, JAX {_version('jax')}; commit {commit or 'unknown'}; "
          f"date {data.get('datetime', '')[:10]}.\n")
    if side_by_side:
        print("## Side by side with JAX\n")
        print("The targets: vrbench within 1.2× of a jitted JAX kernel and 1.5× of the numpy "
              "floor, in time per estimate, on every workload at R = 10⁴ and 10⁶. Each "
              "contender is warmed up (JAX's compilation is not timed); JAX and numpy run at "
              "their fastest batch size per call of 1,000, 10,000 and 100,000 (shown), "
              "vrbench at its own chunk size. The JAX kernels (`benchmarks/jax_kernels.py`, "
              "float64) are the math of one replicate, `jax.vmap`-ed and `jax.jit`-ed, with "
              "`jax.grad` for pathwise terms; without JAX installed its column reads —. "
              "`benchmarks/side_by_side.py` measures the same workloads in interleaved rounds, "
              "which suits a shared machine better.\n")
        _side_by_side_table(side_by_side)
        print()
        print("## Against the naive loop and the numpy floor (n = 4)\n")
    _estimator_table(estimator_runs)
    print("\n- **vrbench**: `estimate_in_chunks`, the harness's own path (memory-bounded chunks, "
          "each checked for shape and finiteness).\n"
          "- **numpy floor**: a hand-vectorized numpy kernel of the same estimator on the same "
          "problem (`benchmarks/kernels.py`), run in chunks at R = 10⁶ so its arrays fit in "
          "memory. `vrbench / floor` above 1.00× means vrbench is faster.\n"
          "- **naive loop**: a Python loop over replicates, each building `log_prob · f` with "
          "`torch.distributions` and calling `backward()`, timed on a few replicates; the "
          "same figure serves both R.\n"
          "- `tests/test_benchmark_kernels.py` checks that the floors, the JAX kernels and the "
          "naive loops compute the same estimator: their means match the exact gradient and "
          "the floors' and JAX kernels' variances match vrbench's, within 5 standard "
          "errors.\n")
    if training_runs:
        print("## Training steps against a hand-written loop\n")
        print("`benchmarks/test_training_speed.py`: vrbench's `vrbench train` loop and the "
              "hand-written PyTorch loop of `benchmarks/handwritten_vae.py` (the same model, "
              "estimator and float64 arithmetic), 100 steps each on Fashion-MNIST minibatches "
              "of 50, alternating over 3 rounds, one thread each; medians of the steps' own "
              "time.\n")
        _training_table(training_runs)
        print()
    if system_runs:
        print("## The whole suite\n")
        _system_table(system_runs)


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "?"


if __name__ == "__main__":
    main(sys.argv[1])
