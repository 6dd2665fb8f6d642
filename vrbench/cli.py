"""The ``vrbench`` command line: ``vrbench list`` and ``vrbench run``."""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from vrbench import estimators, problems
from vrbench.bench.config import SweepConfig, load_config
from vrbench.bench.sweep import run_sweep
from vrbench.bench.train import OPTIMIZERS, TrainSettings, train
from vrbench.components import parse_specs
from vrbench.errors import UnknownNameError, VrbenchError
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Problem
from vrbench.reports import summary_table
from vrbench.reports.console import StableETA
from vrbench.testing import check_estimator, check_problem


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


RUN_FLAGS = {
    "estimators": "estimators", "problems": "problems", "n_samples": "n_samples",
    "replicates": "replicates", "seed": "seeds", "output": "output", "jobs": "jobs",
    "cell_timeout": "cell_timeout", "max_memory_mb": "max_memory_mb", "threads": "threads",
    "device": "device",
}
"""``vrbench run`` options that override the configuration file: option → config key."""


def _ints(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None


def _positive_int(text: str) -> int:
    values = _positive_ints(text)
    if len(values) != 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a single positive integer")
    return values[0]


DEVICE_HELP = ("where estimates are computed: cpu, cuda or cuda:N (default cpu; cuda needs a "
               "CUDA build of torch and a GPU)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vrbench", description="Benchmark Monte Carlo gradient estimators."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="list registered estimators and problems")
    listing.add_argument("kind", nargs="?", choices=["estimators", "problems"])

    run = commands.add_parser(
        "run", help="run estimators on problems and write results",
        description="Run every compatible (estimator, problem, n_samples) cell. Values given "
                    "on the command line override those of --config.")
    run.add_argument("--config", metavar="FILE", help="TOML sweep configuration")
    run.add_argument("-e", "--estimators", metavar="NAMES",
                     help="comma-separated estimators, optionally name:key=value (default: all)")
    run.add_argument("-p", "--problems", metavar="NAMES",
                     help="comma-separated problems, optionally name:key=value (default: all)")
    run.add_argument("-n", "--n-samples", type=_positive_ints, metavar="N,N,...",
                     help="samples per estimate (default 1,4,16)")
    run.add_argument("-r", "--replicates", type=_positive_int,
                     help="independent estimates per cell (default 10000)")
    run.add_argument("--seed", type=_ints, metavar="S[,S...]", help="random seed(s) (default 0)")
    run.add_argument("-o", "--output", metavar="DIR", help="output directory (default results/)")
    run.add_argument("-j", "--jobs", type=_positive_int,
                     help="worker processes (default: one per core)")
    run.add_argument("--cell-timeout", type=float, metavar="SECONDS",
                     help="record a cell that runs longer as an error")
    run.add_argument("--max-memory", type=_positive_int, metavar="MB", dest="max_memory_mb",
                     help="working memory of one cell; R is split into chunks that fit "
                          "(default 256; part of a cell's definition)")
    run.add_argument("--threads", type=_positive_int,
                     help="torch threads per worker (default: cores / jobs)")
    run.add_argument("--device", help=DEVICE_HELP + "; part of a cell's definition")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="run on a Dask cluster, e.g. tcp://host:8786")
    run.add_argument("--force", action="store_true",
                     help="recompute cells already stored in the output directory")
    check = commands.add_parser(
        "check", help="run the conformance checks on an estimator or a problem",
        description="Run the checks every built-in passes: metadata, shapes, determinism, "
                    "θ untouched and, for estimators claiming it, unbiasedness on every "
                    "compatible problem; for problems, the exact gradient against finite "
                    "differences. Exits 1 if any check fails.")
    check.add_argument("target", help="module:Class, or the name of a registered component")
    check.add_argument("-p", "--problems", metavar="NAMES",
                       help="problems to check an estimator on (default: all compatible)")
    check.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    check.add_argument("--device", default="cpu", help=DEVICE_HELP)

    report = commands.add_parser(
        "report", help="figures, LaTeX/Markdown tables and index.html from results",
        description="Read one or more results directories (merged), including partial ones "
                    "and optimization traces, and write page-sized figures, LaTeX and "
                    "Markdown tables and index.html. Estimator, problem and n selections take "
                    "comma-separated names, globs (score_function*) or families "
                    "(family:discrete); a leading ! removes what a pattern matches. Options "
                    "given here override those of --spec.")
    report.add_argument("results", nargs="*", default=["results"], metavar="RESULTS_DIR",
                        help="results directories or .parquet files (default: results)")
    report.add_argument("-o", "--output", metavar="OUT_DIR",
                        help="report directory (default: RESULTS_DIR/report)")
    report.add_argument("--spec", metavar="FILE",
                        help="TOML figure spec with the selection and settings below (keys "
                             "estimators, problems, n, style, formats, figures, reference, "
                             "layout), so a paper's figures are reproducible from a file "
                             "(default: none)")
    report.add_argument("-e", "--estimators", metavar="PATTERNS",
                        help="estimators to show: names, globs or family:NAME "
                             "(default: all in the results)")
    report.add_argument("-p", "--problems", metavar="PATTERNS",
                        help="problems to show: names or globs (default: all in the results)")
    report.add_argument("-n", "--n", metavar="N[,N...]",
                        help="sample sizes to show: integers, all, largest or smallest; "
                             "figures and tables of one n use the largest chosen (default: "
                             "all; one-n views at the largest)")
    report.add_argument("--reference", metavar="ESTIMATOR",
                        help="estimator that ratios are relative to (default: score_function)")
    report.add_argument("--format", metavar="pdf,png,svg",
                        help="figure formats (default: pdf,png)")
    report.add_argument("--style", choices=["paper", "column", "slides"],
                        help="figure design: a two-column paper's full width (6.75 in), one "
                             "column (3.25 in) or slides (12 in); every figure at most 9 in "
                             "tall, split into pages when needed (default: paper)")
    report.add_argument("--layout", choices=["pages", "per-problem"],
                        help="split figures with many problems into numbered pages, or draw "
                             "one figure per problem (default: pages)")

    train = commands.add_parser(
        "train", help="optimize with each estimator and record the exact objective",
        description="Run SGD or Adam with each estimator's gradients on each problem and "
                    "record J(θ_t) (exact) and the estimator's variance along the way, into "
                    "OUTPUT/train.parquet; `vrbench report OUTPUT` plots the traces.")
    train.add_argument("-e", "--estimators", required=True, metavar="NAMES",
                       help="comma-separated estimators, optionally name:key=value (required)")
    train.add_argument("-p", "--problems", required=True, metavar="NAMES",
                       help="comma-separated problems, optionally name:key=value (required)")
    train.add_argument("--steps", type=_positive_int, default=200,
                       help="optimization steps per run (default 200)")
    train.add_argument("-n", "--n-samples", type=_positive_int, default=4,
                       help="samples per gradient estimate (default 4)")
    train.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="adam",
                       help="optimizer (default adam)")
    train.add_argument("--seed", type=_ints, default=[0, 1, 2], metavar="S[,S...]",
                       help="one run per seed (default 0,1,2)")
    train.add_argument("--eval-every", type=_positive_int, default=10, metavar="STEPS",
                       help="record J(θ) and the estimator's variance every this many steps "
                            "(default 10)")
    train.add_argument("--device", default="cpu", help=DEVICE_HELP)
    train.add_argument("-o", "--output", default="results/train", metavar="DIR",
                       help="directory of train.parquet (default results/train)")
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
    _warn_broken_plugins(console)


def _config(args: argparse.Namespace) -> SweepConfig:
    config = load_config(args.config) if args.config else SweepConfig()
    overrides: dict[str, Any] = {
        key: getattr(args, flag) for flag, key in RUN_FLAGS.items()
        if getattr(args, flag) is not None
    }
    for key in ("estimators", "problems"):
        if key in overrides:
            overrides[key] = parse_specs(overrides[key])
    return dataclasses.replace(config, **overrides)


def _run(console: Console, args: argparse.Namespace) -> int:
    config = _config(args)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"), StableETA(),
        console=console, transient=True,
    )
    task = progress.add_task("cells", total=None, failed=0, reused=0)
    failures = 0

    def on_start(total: int, reused: int) -> None:
        progress.update(task, total=total, completed=reused, reused=reused,
                        description=f"cells ({reused} reused)" if reused else "cells")

    def on_row(row: dict[str, Any]) -> None:
        nonlocal failures
        failures += row["status"] == "error"
        progress.update(task, advance=1, failed=failures)

    with progress:
        outcome = run_sweep(config, scheduler=args.scheduler, force=args.force,
                            on_start=on_start, on_row=on_row)
    console.print(summary_table(outcome.frame))
    if outcome.skipped:
        console.print(f"{outcome.skipped} incompatible combinations skipped (status 'skipped' "
                      "in the results, with the reason).")
    console.print(f"{outcome.ran} cells run, {outcome.reused} reused from earlier runs, "
                  f"{outcome.failed} failed; results in {outcome.path}")
    return 1 if outcome.failed else 0


def _resolve(target: str) -> type:
    if ":" in target:
        module_name, _, attribute = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise VrbenchError(f"cannot import {module_name!r}: {exc}") from None
        try:
            return getattr(module, attribute)
        except AttributeError:
            raise VrbenchError(f"module {module_name!r} has no attribute {attribute!r}") from None
    for registry in (estimators.registry, problems.registry):
        if target in registry:
            return registry.get(target)
    valid = estimators.registry.names() + problems.registry.names()
    close = difflib.get_close_matches(target, valid, n=1)
    raise UnknownNameError("estimator or problem", target, valid, close[0] if close else None)


def _check(console: Console, args: argparse.Namespace) -> int:
    target = _resolve(args.target)
    if isinstance(target, type) and issubclass(target, Estimator):
        specs = parse_specs(args.problems) if args.problems else None
        pool = None if specs is None else [problems.make(s.name, s.params) for s in specs]
        report = check_estimator(target, problems=pool, seed=args.seed, device=args.device)
    elif isinstance(target, type) and issubclass(target, Problem):
        report = check_problem(target, seed=args.seed, device=args.device)
    else:
        raise VrbenchError(f"{args.target!r} is neither an Estimator nor a Problem subclass")
    for passed in report.passed:
        console.print(f"[green]PASS[/green] {escape(passed)}")
    for failure in report.failures:
        console.print(f"[red]FAIL[/red] {escape(failure)}")
    console.print(f"{report.subject}: {len(report.passed)} passed, {len(report.failures)} failed")
    return 0 if report.ok else 1


def _report(console: Console, args: argparse.Namespace) -> int:
    from vrbench.reports.build import build_report
    from vrbench.reports.selection import ReportSpec, load_spec

    spec = load_spec(args.spec) if args.spec else ReportSpec()
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip()) if args.format \
        else None
    spec = spec.override(estimators=args.estimators, problems=args.problems, n=args.n,
                         reference=args.reference, formats=formats, style=args.style,
                         layout=args.layout)
    output = args.output or str(Path(args.results[0]) / "report")
    written = build_report(args.results, output, spec=spec)
    console.print(f"{len(written)} files written to {output}; open {Path(output) / 'index.html'}")
    return 0


def _train(console: Console, args: argparse.Namespace) -> int:
    settings = TrainSettings(steps=args.steps, n_samples=args.n_samples, lr=args.lr,
                             optimizer=args.optimizer, eval_every=args.eval_every,
                             device=args.device)
    problem_specs, estimator_specs = parse_specs(args.problems), parse_specs(args.estimators)
    runs = []
    for p_spec in problem_specs:
        problem = problems.make(p_spec.name, p_spec.params)
        for e_spec in estimator_specs:
            reason = estimators.make(e_spec.name, e_spec.params).incompatibility(
                problem, settings.n_samples)
            if reason is not None:
                console.print(f"skipping {e_spec} on {p_spec}: {escape(reason)}")
                continue
            runs.extend((p_spec, e_spec, seed) for seed in args.seed)
    rows: list[dict[str, Any]] = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  StableETA(), console=console, transient=True) as progress:
        task = progress.add_task("training runs", total=len(runs))
        for p_spec, e_spec, seed in runs:
            rows.extend(train(p_spec, e_spec, seed, settings))
            progress.advance(task)
    Path(args.output).mkdir(parents=True, exist_ok=True)
    target = Path(args.output) / "train.parquet"
    pd.DataFrame(rows).to_parquet(target, index=False)
    console.print(f"{len(runs)} runs, traces in {target}")
    return 0


def _warn_broken_plugins(console: Console) -> None:
    for registry in (estimators.registry, problems.registry):
        registry.names()
        for name, error in registry.plugin_errors.items():
            console.print(f"[red]{registry.kind} plugin {name!r} failed to load:[/red] "
                          f"{escape(error)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vrbench`` console script."""
    args = _parser().parse_args(argv)
    # Off a terminal (pipes, CI logs) rich would wrap tables at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    try:
        if args.command == "list":
            _list(console, args.kind)
            return 0
        _warn_broken_plugins(console)
        if args.command == "check":
            return _check(console, args)
        if args.command == "report":
            return _report(console, args)
        if args.command == "train":
            return _train(console, args)
        return _run(console, args)
    except VrbenchError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
