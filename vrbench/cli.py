"""The ``vrbench`` command line: ``vrbench list`` and ``vrbench run``."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from vrbench import estimators, problems
from vrbench.bench import plan, run_cell, skipped_row, to_frame, write_results
from vrbench.bench.provenance import provenance
from vrbench.components import Spec, parse_specs
from vrbench.errors import VrbenchError
from vrbench.reports import summary_table

DEFAULT_N_SAMPLES = "1,4,16"
DEFAULT_REPLICATES = 10_000


def _positive_ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: every value must be a positive integer")
    return values


def _positive_int(text: str) -> int:
    values = _positive_ints(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a single positive integer")
    return values[0]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vrbench", description="Benchmark Monte Carlo gradient estimators."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="list registered estimators and problems")
    listing.add_argument("kind", nargs="?", choices=["estimators", "problems"])

    run = commands.add_parser("run", help="run estimators on problems and write results")
    run.add_argument(
        "-e",
        "--estimators",
        default="",
        metavar="NAMES",
        help="comma-separated estimators, optionally name:key=value (default: all)",
    )
    run.add_argument(
        "-p",
        "--problems",
        default="",
        metavar="NAMES",
        help="comma-separated problems, optionally name:key=value (default: all)",
    )
    run.add_argument(
        "-n",
        "--n-samples",
        type=_positive_ints,
        default=DEFAULT_N_SAMPLES,
        metavar="N,N,...",
        help=f"samples per estimate (default {DEFAULT_N_SAMPLES})",
    )
    run.add_argument(
        "-r",
        "--replicates",
        type=_positive_int,
        default=DEFAULT_REPLICATES,
        help=f"independent estimates per cell (default {DEFAULT_REPLICATES})",
    )
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument(
        "-o",
        "--output",
        default="results",
        metavar="DIR",
        help="directory for results.parquet (default results/)",
    )
    return parser


def _list(console: Console, kind: str | None) -> None:
    if kind in (None, "estimators"):
        table = Table(title="estimators", header_style="bold")
        for column in ("name", "family", "requires", "unbiased", "origin", "description"):
            table.add_column(column)
        for entry in estimators.registry.entries():
            cls = entry.cls
            table.add_row(
                entry.name,
                cls.family,
                ", ".join(sorted(cls.requires)) or "—",
                "yes" if cls.unbiased else "no",
                entry.origin,
                escape(cls.summary()),
            )
        console.print(table)
    if kind in (None, "problems"):
        table = Table(title="problems", header_style="bold")
        for column in ("name", "capabilities", "parameters", "origin", "description"):
            table.add_column(column)
        for entry in problems.registry.entries():
            cls = entry.cls
            params = ", ".join(f"{k}={v}" for k, v in cls.parameters().items())
            table.add_row(
                entry.name,
                ", ".join(sorted(cls.capabilities)),
                params,
                entry.origin,
                escape(cls.summary()),
            )
        console.print(table)
    for registry in (estimators.registry, problems.registry):
        for name, error in registry.plugin_errors.items():
            console.print(f"[red]{registry.kind} plugin {name!r} failed to load:[/red] {error}")


def _specs(text: str, names: list[str]) -> list[Spec]:
    return parse_specs(text) if text.strip() else [Spec(name) for name in names]


def _run(console: Console, args: argparse.Namespace) -> int:
    problem_specs = _specs(args.problems, problems.registry.names())
    estimator_specs = _specs(args.estimators, estimators.registry.names())
    cells, skipped = plan(
        problem_specs, estimator_specs, args.n_samples, args.replicates, args.seed
    )
    config = {
        "problems": [str(s) for s in problem_specs],
        "estimators": [str(s) for s in estimator_specs],
        "n_samples": args.n_samples,
        "replicates": args.replicates,
        "seed": args.seed,
    }
    rows = [skipped_row(s, args.replicates, args.seed) for s in skipped]
    failures = 0
    started = time.time()
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("cells", total=len(cells))
        for cell in cells:
            progress.update(
                task, description=f"{cell.problem} × {cell.estimator} n={cell.n_samples}"
            )
            row = run_cell(cell)
            rows.append(row)
            failures += row["status"] == "error"
            progress.advance(task)
    frame = to_frame(rows)
    config["elapsed_s"] = round(time.time() - started, 3)
    path = write_results(frame, args.output, provenance(config))
    console.print(summary_table(frame))
    if skipped:
        console.print(
            f"{len(skipped)} incompatible combinations skipped (status 'skipped' in the "
            "results, with the reason)."
        )
    console.print(f"{len(cells)} cells run, {failures} failed; results in {path}")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vrbench`` console script."""
    args = _parser().parse_args(argv)
    # Off a terminal (pipes, CI logs) rich would wrap tables at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    try:
        if args.command == "list":
            _list(console, args.kind)
            return 0
        return _run(console, args)
    except VrbenchError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
