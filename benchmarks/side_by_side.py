"""vrbench, the numpy floor and a jitted JAX kernel on the same workloads, side by side.

Every contender runs in this one process, pinned to one core with one thread (as a single CLI
cell with ``--threads 1`` runs), warmed up, with its best batch size per call; rounds
interleave the contenders in a rotating order, and the table reports medians over rounds in
µs per estimate with vrbench's ratios to JAX and to the floor (the targets: ≤ 1.2× and
≤ 1.5×). On a shared machine, compare the ratios, which are measured side by side, more than
the absolute times. Run from the repository root:

    .venv/bin/python benchmarks/side_by_side.py                 # every workload, R = 10⁴, 10⁶
    .venv/bin/python benchmarks/side_by_side.py -w lax -R 1000000 --rounds 7

Without JAX installed the JAX column reads "—".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import pinning  # pins before numpy, torch and JAX start their threads

CORE = pinning.pin()

import torch  # noqa: E402

from benchmarks.workloads import CONTENDERS, WORKLOADS, Workload  # noqa: E402


def measure(workload: Workload, replicates: int, rounds: int) -> dict:
    contenders, batches = {}, {}
    for name, build in CONTENDERS.items():
        try:
            contenders[name], batches[name] = build(workload, replicates)
        except ImportError:  # JAX is not installed
            continue
    calls = max(1, 200_000 // replicates)  # ≥ 2·10⁵ estimates per timing
    for run in contenders.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for index in range(rounds):
        order = names[index % len(names):] + names[: index % len(names)]
        for name in order:
            start = time.perf_counter()
            for _ in range(calls):
                contenders[name]()
            times[name].append((time.perf_counter() - start) / (calls * replicates))
    result = {name: statistics.median(values) * 1e6 for name, values in times.items()}
    result.update(batches=batches,
                  spread={name: (min(v) * 1e6, max(v) * 1e6) for name, v in times.items()})
    return result


def _cell(result: dict, name: str) -> str:
    if name not in result:
        return "—"
    low, high = result["spread"][name]
    return f"{result[name]:.3g} ({low:.3g}–{high:.3g})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-w", "--workload", action="append", default=[],
                        help="only workloads whose label contains this (repeatable)")
    parser.add_argument("-R", "--replicates", type=int, action="append", default=[])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    chosen = [w for w in WORKLOADS
              if not args.workload or any(part in w.label for part in args.workload)]
    sizes = args.replicates or [10_000, 1_000_000]
    print(f"core {CORE}, torch threads {torch.get_num_threads()}, {args.rounds} rounds, "
          "µs per estimate (median; min–max over rounds)\n")
    print("| workload | R | vrbench | JAX | numpy | ×JAX | ×numpy |")
    print("|---|---|---|---|---|---|---|")
    for workload in chosen:
        for replicates in sizes:
            r = measure(workload, replicates, args.rounds)
            jax_time = r.get("jax")
            print(f"| {workload.label} | {replicates:,} | {_cell(r, 'vrbench')} "
                  f"| {_cell(r, 'jax')} | {_cell(r, 'numpy')} | "
                  + (f"{r['vrbench'] / jax_time:.2f}" if jax_time else "—")
                  + f" | {r['vrbench'] / r['numpy']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
