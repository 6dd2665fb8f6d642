"""The ``vrbench`` command line: ``vrbench list`` and ``vrbench run``."""

from __future__ import annotations

import argparse
import difflib
import importlib
import itertools
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from vrbench import estimators, problems
from vrbench.bench.config import CONFIRM_CELLS, SweepConfig, load_config, with_overrides
from vrbench.bench.reference import ReferenceSettings
from vrbench.bench.train import (
    DEFAULT_SEEDS,
    OPTIMIZERS,
    SHARED_FILE,
    TRAIN_FILE,
    Run,
    TrainPlan,
    TrainSettings,
)
from vrbench.components import Spec, parse_specs
from vrbench.errors import UnknownNameError, VrbenchError
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Problem
from vrbench.testing import BIAS_TOLERANCE, check_estimator, check_instance, check_problem
from vrbench.testing.capabilities import CAPABILITIES, estimators_using
from vrbench.testing.estimator_checks import TIME_BUDGET as ESTIMATOR_TIME_BUDGET
from vrbench.testing.problem_checks import TIME_BUDGET as PROBLEM_TIME_BUDGET

if TYPE_CHECKING:
    from vrbench.bench.sweep import SweepOutcome

# pandas and pyarrow (the tables, the reports) are imported where they are used: worker
# processes import this module as their main module, and need neither (0.1 GB each).


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
    "estimators": ("estimators", "-e/--estimators"), "problems": ("problems", "-p/--problems"),
    "n_samples": ("n_samples", "-n/--n-samples"), "replicates": ("replicates", "-r/--replicates"),
    "seed": ("seeds", "--seed"), "output": ("output", "-o/--output"), "jobs": ("jobs", "-j/--jobs"),
    "cell_timeout": ("cell_timeout", "--cell-timeout"),
    "max_memory_mb": ("max_memory_mb", "--max-memory"), "threads": ("threads", "--threads"),
    "device": ("device", "--device"),
    "reference_precision": ("reference_precision", "--reference-precision"),
    "reference_estimates": ("reference_estimates", "--reference-estimates"),
}
"""``vrbench run`` options that override the configuration file: option → (config key, the
option as the user writes it)."""


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


def _count(text: str) -> int:
    """A non-negative integer (0: none)."""
    return 0 if text.strip() == "0" else _positive_int(text)


def _group(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME:optimizer=sgd,lr=0.01``: a parameter group's own optimizer settings."""
    name, _, rest = text.partition(":")
    options: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, equals, value = item.partition("=")
        if not equals or key not in ("optimizer", "lr"):
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected NAME:optimizer=NAME,lr=NUMBER (keys optimizer and lr)")
        try:
            options[key] = float(value) if key == "lr" else value
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: lr={value!r} is not a number") from None
    if not name.strip() or not options:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME:optimizer=NAME,lr=NUMBER (keys optimizer and lr)")
    return name.strip(), options


DEVICE_HELP = ("where estimates are computed: cpu, cuda or cuda:N (default cpu; cuda needs a "
               "CUDA build of torch and a GPU)")


class _FiguresHelp(argparse.Action):
    """``--figures``, whose help lists the registered figures only when it is shown: the
    figures' modules import matplotlib, which no other command needs."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        setattr(namespace, self.dest, values)

    @property
    def help(self) -> str:
        try:
            from vrbench.reports.registry import figure_names

            names = ", ".join(figure_names())
        except ImportError:  # no reports extra
            names = "the figures of vrbench[reports]"
        return ("comma-separated figures (and 'tables') to write, of: " + names
                + " (default: every one that applies)")

    @help.setter
    def help(self, _text: str | None) -> None:
        pass  # the help is written when it is shown


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vrbench", description="Benchmark Monte Carlo gradient estimators."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    listing = commands.add_parser(
        "list", help="list registered estimators, problems and the capabilities that pair them")
    listing.add_argument("kind", nargs="?", choices=["estimators", "problems", "capabilities"])

    run = commands.add_parser(
        "run", help="run estimators on problems and write results",
        description="Run every compatible (estimator, problem, n_samples) cell. Values given "
                    "on the command line override those of --config.")
    run.add_argument("--config", metavar="FILE", help="TOML sweep configuration")
    run.add_argument("-e", "--estimators", metavar="NAMES", action="append",
                     help="comma-separated estimators, optionally name:key=value; repeat the "
                          "option to add more (default: all)")
    run.add_argument("-p", "--problems", metavar="NAMES", action="append",
                     help="comma-separated problems, optionally name:key=value; repeat the "
                          "option to add more (default: all)")
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
    run.add_argument("--reference-precision", type=_positive_float, metavar="FRACTION",
                     help="for problems without an exact gradient: the standard error of the "
                          "reference gradient the cells are measured against, relative to "
                          "‖∇J‖ (default 0.01)")
    run.add_argument("--reference-estimates", type=_positive_int, metavar="N",
                     help="the most estimates such a reference averages (default 1000000)")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="run on a Dask cluster, e.g. tcp://host:8786")
    run.add_argument("--yes", action="store_true",
                     help=f"run a sweep that plans more than {CONFIRM_CELLS:,} cells")
    run.add_argument("--dry-run", action="store_true",
                     help="check and plan the sweep, say how many cells it would compute and "
                          "reuse, and stop: nothing runs and nothing is written")
    run.add_argument("--in-process", action="store_true",
                     help="run the cells one by one in this process instead of worker "
                          "processes, for debuggers and profilers (a component that crashes "
                          "or hangs then stops the sweep)")
    run.add_argument("--force", action="store_true",
                     help="recompute every cell, even those stored in the output directory")
    run.add_argument("--retry-errors", action="store_true",
                     help="recompute stored cells whose computation failed (status error); "
                          "cells lost to a dead worker, a lost scheduler or an interruption "
                          "are always recomputed")
    check = commands.add_parser(
        "check", help="run the conformance checks on an estimator or a problem",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Run the checks every built-in passes. An estimator: shapes, dtype, "
                    "finite values, determinism, θ untouched, a variance independent of the "
                    "replicates per call, independent replicates and, if it claims so, "
                    "unbiasedness, on every compatible problem at every n. A problem: f "
                    "deterministic, exact gradient against finite differences, score "
                    "against log_prob, enumeration where the support is small, and sampled "
                    "means of f, the score and f·score (under every sampler its capabilities "
                    "offer) against value and exact_grad. Both at the problems' check_theta() "
                    "and two perturbations of it. Each statistical check is sized to "
                    "detect a relative error of --bias-tolerance with counts that depend on "
                    "the seed alone, and reports what it could detect, so the same command "
                    "gives the same verdict on any machine. Problems named by the registry "
                    "are checked with their check_params. Exits 1 if any check fails.")
    check.add_argument("target", help="a registered name or module:Class, optionally "
                                      "followed by :key=value,... (as in vrbench run)")
    check.add_argument("-p", "--problems", metavar="NAMES",
                       help="problems to check an estimator on, name[:key=value,...] "
                            "(default: all compatible ones)")
    check.add_argument("-n", "--n", type=_positive_ints, metavar="N,N,...",
                       help="sample sizes to check an estimator at (default: min_samples, "
                            "2, 5 and 16)")
    check.add_argument("--bias-tolerance", type=_positive_float, default=BIAS_TOLERANCE,
                       metavar="FRACTION",
                       help="relative error the statistical checks are sized to detect, as a "
                            "fraction of ‖∇J‖ (of |J| for sampled objectives)")
    check.add_argument("--effort", type=_positive_float, default=1.0, metavar="FACTOR",
                       help="scales the most estimates (draws) a statistical test may use "
                            "where the tolerance needs more; the power grows as its square "
                            "root, and so does the time")
    check.add_argument("--time-budget", type=_positive_float, metavar="SECONDS",
                       help="seconds per problem after which the statistical checks stop, "
                            "failing (default: "
                            f"{ESTIMATOR_TIME_BUDGET:g} for an estimator, "
                            f"{PROBLEM_TIME_BUDGET:g} for a problem); the tests' sizes are "
                            "counts that do not depend on it, so the verdict is the same on "
                            "any machine unless it stops them")
    check.add_argument("--accept-partial", action="store_true",
                       help="judge a test the time budget stopped on what it drew and pass "
                            "with that weaker stated power, instead of failing")
    check.add_argument("--threads", type=_positive_int, default=1,
                       help="torch threads; the checks' small tensor operations run fastest "
                            "on one")
    check.add_argument("--seed", type=int, default=0, help="random seed")
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
    report.add_argument("--figures", metavar="NAMES", action=_FiguresHelp)

    reproduce = commands.add_parser(
        "reproduce", help="re-run a published comparison: its figure and a note on its claims",
        description="Run a shipped recipe (configs/papers/NAME.toml: a sweep and/or training "
                    "runs, a figure spec and the paper's claims) and write the figures and "
                    "NOTE.md, which sets vrbench's measured numbers beside each published "
                    "claim. The sweep's cells resume like any sweep's.")
    reproduce.add_argument("recipe", nargs="?", metavar="NAME",
                           help="a recipe name (see --list) or a recipe file")
    reproduce.add_argument("--list", action="store_true", help="list the shipped recipes")
    reproduce.add_argument("--quick", action="store_true",
                           help="a small version (fewer replicates, grid points and steps) "
                                "that runs in a minute or two (disarm2020_fashion: the "
                                "CPU's half hour): a smoke test, not a reproduction "
                                "(default: the full recipe)")
    reproduce.add_argument("-o", "--output", metavar="DIR",
                           help="output directory (default: results/papers/NAME, or "
                                "results/papers/NAME-quick with --quick)")
    reproduce.add_argument("-j", "--jobs", type=_positive_int,
                           help="worker processes of the sweep (default: one per core)")
    reproduce.add_argument("--device", default="cpu", help=DEVICE_HELP)

    defaults = TrainSettings()
    train = commands.add_parser(
        "train", help="optimize with each estimator and record the exact objective",
        description="Run SGD or Adam with each estimator's gradients on each problem and "
                    "record J(θ_t) (exact) and the estimator's variance along the way, into "
                    f"OUTPUT/{TRAIN_FILE}; `vrbench report OUTPUT` plots the traces.")
    train.add_argument("-e", "--estimators", required=True, metavar="NAMES",
                       help="comma-separated estimators, optionally name:key=value (required)")
    train.add_argument("-p", "--problems", required=True, metavar="NAMES",
                       help="comma-separated problems, optionally name:key=value (required)")
    train.add_argument("--steps", type=_positive_int, default=defaults.steps,
                       help=f"optimization steps per run (default {defaults.steps})")
    train.add_argument("-n", "--n-samples", type=_positive_int, default=defaults.n_samples,
                       help=f"samples per gradient estimate (default {defaults.n_samples})")
    train.add_argument("--lr", type=float, default=defaults.lr,
                       help=f"learning rate (default {defaults.lr:g})")
    train.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=defaults.optimizer,
                       help=f"optimizer (default {defaults.optimizer})")
    train.add_argument("--seed", type=_ints, default=list(DEFAULT_SEEDS), metavar="S[,S...]",
                       help="one run per seed (default "
                            f"{','.join(map(str, DEFAULT_SEEDS))})")
    train.add_argument("--eval-every", type=_positive_int, default=defaults.eval_every,
                       metavar="STEPS",
                       help="record J(θ) and the estimator's variance every this many steps "
                            f"(default {defaults.eval_every})")
    train.add_argument("--eval-replicates", type=_count, default=defaults.eval_replicates,
                       metavar="R",
                       help="independent estimates behind each measurement of the estimator's "
                            "bias and variance along the run (default "
                            f"{defaults.eval_replicates}; 0: no measurement, only J where "
                            "exact and a problem's training metrics)")
    train.add_argument("--group", type=_group, action="append", default=[],
                       metavar="NAME:optimizer=O,lr=X",
                       help="a parameter group's own optimizer and/or learning rate, e.g. "
                            "prior:optimizer=sgd,lr=0.01 (repeatable; groups as in the "
                            "results' parameter_groups column; default: every group follows "
                            "--optimizer and --lr)")
    train.add_argument("--eval-samples", type=_positive_int, default=defaults.eval_samples,
                       metavar="N",
                       help="samples per estimate of those measurements (default: -n, the "
                            "samples of an optimization step)")
    train.add_argument("--max-memory", type=_positive_int, default=defaults.max_memory_mb,
                       metavar="MB", dest="max_memory_mb",
                       help="working memory of one measurement (default "
                            f"{defaults.max_memory_mb})")
    train.add_argument("--device", default=defaults.device, help=DEVICE_HELP)
    train.add_argument("--measure", metavar="NAMES",
                       help="shared-run mode: measure these estimators (comma-separated, or "
                            "'all': every registered one that applies) at the same θ_t along "
                            "each run, which the estimators of -e drive; writes "
                            f"OUTPUT/{SHARED_FILE} instead of {TRAIN_FILE} (default: "
                            "none, each estimator measured along its own run)")
    train.add_argument("--reference-precision", type=_positive_float,
                       default=defaults.reference.precision, metavar="FRACTION",
                       help="for problems without an exact gradient: the standard error of "
                            "the reference gradient at each θ_t, relative to ‖∇J‖ "
                            f"(default {defaults.reference.precision:g})")
    train.add_argument("--reference-estimates", type=_positive_int,
                       default=defaults.reference.max_estimates, metavar="N",
                       help="the most estimates such a reference averages (default "
                            f"{defaults.reference.max_estimates})")
    train.add_argument("-o", "--output", default="results/train", metavar="DIR",
                       help=f"directory of {TRAIN_FILE} (default results/train); references "
                            "go to DIR/references")
    return parser


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return value


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
                escape(cls.requirements()) or "—",
                "yes" if cls.unbiased else "no",
                entry.origin,
                escape(cls.summary()),
            )
        console.print(table)
    if kind in (None, "problems"):
        table = Table(title="problems", header_style="bold")
        for column in ("name", "capabilities", "parameters", "origin", "description"):
            table.add_column(column)
        for problem_entry in problems.registry.entries():
            problem_cls = problem_entry.cls
            params = ", ".join(f"{k}={v}" for k, v in problem_cls.parameters().items())
            table.add_row(
                problem_entry.name,
                ", ".join(sorted(problem_cls.capabilities)),
                params,
                problem_entry.origin,
                escape(problem_cls.summary()),
            )
        console.print(table)
    if kind in (None, "capabilities"):
        table = Table(title="capabilities", header_style="bold")
        for column in ("capability", "meaning", "members it needs", "used by"):
            table.add_column(column)
        for spec in CAPABILITIES:
            table.add_row(spec.capability.value, escape(spec.description),
                          ", ".join(spec.members) or "—",
                          ", ".join(estimators_using(spec.capability)) or "—")
        console.print(table)
        console.print("Estimators require capabilities; problems declare them. "
                      "docs/adding-a-problem.md explains each one with an example.")
    _warn_broken_plugins(console)


def _config(args: argparse.Namespace) -> SweepConfig:
    config = load_config(args.config) if args.config else SweepConfig()
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for flag, (key, option) in RUN_FLAGS.items():
        if getattr(args, flag) is not None:
            values[key] = getattr(args, flag)
            origins[key] = f"option {option}"
    return with_overrides(config, values, origins)


def _run(console: Console, args: argparse.Namespace) -> int:
    from vrbench.bench.sweep import SweepInterrupted, run_sweep
    from vrbench.reports import summary_table
    from vrbench.reports.console import StableETA

    config = _config(args)
    if args.dry_run:
        return _dry_run(console, config, args.scheduler)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed"), StableETA(),
        console=console, transient=True,
    )
    task = progress.add_task("cells", total=None, failed=0, reused=0)
    failures = 0
    started = False
    outcome: SweepOutcome | None = None

    def on_start(total: int, reused: int) -> None:
        nonlocal started
        started = True
        progress.update(task, total=total, completed=reused, reused=reused,
                        description=f"cells ({reused} reused)" if reused else "cells")

    def on_row(row: dict[str, Any]) -> None:
        nonlocal failures
        failures += row["status"] != "ok"
        progress.update(task, advance=1, failed=failures)

    def stop_before_the_sweep(signum: int, frame: Any) -> None:
        # Once the sweep has started it handles its own signals; one arriving after it ended
        # (a second Ctrl-C) must not cut off the summary whose last line is the table's status.
        if not started:
            raise KeyboardInterrupt

    # A signal the sweep was started to ignore (nohup, a background job) stays ignored.
    previous = {sig: signal.signal(sig, stop_before_the_sweep)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        try:
            with progress:
                outcome = run_sweep(config, scheduler=args.scheduler, force=args.force,
                                    retry_errors=args.retry_errors, confirmed=args.yes,
                                    in_process=args.in_process, on_start=on_start,
                                    on_row=on_row)
        except SweepInterrupted as stop:
            outcome = stop.outcome
        console.print(summary_table(outcome.frame))
        for line in _closing_lines(outcome):
            console.print(line, highlight=False)
    finally:
        for sig, handler in previous.items():
            # A sweep stopped by a signal leaves the process only to exit: a second Ctrl-C
            # must not turn its exit status (130) into a death by signal.
            stopped = outcome is not None and outcome.interrupted is not None
            signal.signal(sig, signal.SIG_IGN if stopped else handler)
    assert outcome is not None
    return outcome.exit_code


def _dry_run(console: Console, config: SweepConfig, scheduler: str | None) -> int:
    from vrbench.bench.sweep import summarize_plan

    plan = summarize_plan(config, scheduler)
    console.print(f"{plan.cells:,} cells planned ({plan.skipped:,} incompatible combinations "
                  f"skipped): {plan.stored:,} stored in {escape(config.output)} would be "
                  f"reused, {plan.cells - plan.stored:,} computed.", highlight=False)
    if plan.cells > CONFIRM_CELLS:
        console.print(f"More than {CONFIRM_CELLS:,} cells: the sweep runs only with --yes.",
                      highlight=False)
    return 0


def _closing_lines(outcome: SweepOutcome) -> list[str]:
    """What the table holds, then what to do about what it lacks; the last line is the
    sweep's status, true of every cell in the table."""
    counts = outcome.counts
    cells = counts["ok"] + counts["error"] + counts["missing"]
    lines = []
    if outcome.skipped:
        lines.append(f"{outcome.skipped} incompatible combinations skipped (status 'skipped' "
                     "in the results, with the reason).")
    lines.append(f"This run computed {outcome.ran} cells and reused {outcome.reused} stored "
                 f"ones; results in {outcome.path}.")
    if outcome.interrupted is not None:
        name = signal.Signals(outcome.interrupted).name
        lines.append(f"Interrupted by {name}: every finished cell is stored; run the same "
                     "command again to compute the rest.")
    elif counts["missing"]:
        lines.append(f"{counts['missing']} cells were not computed (their worker or the "
                     "scheduler was lost; see the 'error' column): run the same command again "
                     "to compute them.")
    if counts["error"]:
        lines.append(f"{counts['error']} cells failed (see the 'error' column); they are kept "
                     "and reused: add --retry-errors to compute them again.")
    status = ("INCOMPLETE" if counts["missing"] else
              "COMPLETE with failures" if counts["error"] else "COMPLETE")
    lines.append(f"{status}: {cells} cells, {counts['ok']} ok, {counts['error']} failed, "
                 f"{counts['missing']} missing.")
    return lines


def _resolve(target: str) -> tuple[type, dict[str, str]]:
    """The class a ``check`` target names and its parameter overrides.

    ``name``, ``name:key=value,...``, ``module:Class`` and ``module:Class:key=value,...``.
    """
    params: dict[str, str] = {}
    if "=" in target:
        head, _, overrides = target[: target.index("=")].rpartition(":")
        if not head:
            raise VrbenchError(f"{target!r}: parameters must follow a name, as in "
                               "name:key=value,... or module:Class:key=value,...")
        overrides = target[len(head) + 1:]
        (spec,) = parse_specs(f"{head.replace(':', '.')}:{overrides}")
        params, target = dict(spec.params), head
    if ":" in target:
        module_name, _, attribute = target.partition(":")
        if str(Path.cwd()) not in sys.path and "" not in sys.path:
            sys.path.insert(0, str(Path.cwd()))  # modules next to the user, as python -m finds
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise VrbenchError(f"cannot import {module_name!r}: {exc}") from None
        try:
            return getattr(module, attribute), params
        except AttributeError:
            raise VrbenchError(f"module {module_name!r} has no attribute {attribute!r}") from None
    for registry in (estimators.registry, problems.registry):
        if target in registry:
            return registry.get(target), params
    valid = estimators.registry.names() + problems.registry.names()
    close = difflib.get_close_matches(target, valid, n=1)
    raise UnknownNameError("estimator or problem", target, valid, close[0] if close else None)


def _check(console: Console, args: argparse.Namespace) -> int:
    import torch

    target, params = _resolve(args.target)
    torch.set_num_threads(args.threads)
    statistics = {"bias_tolerance": args.bias_tolerance, "seed": args.seed,
                  "device": args.device, "effort": args.effort,
                  "accept_partial": args.accept_partial}
    if isinstance(target, type) and issubclass(target, Estimator):
        pool = None if args.problems is None else [
            check_instance(problems.registry.get(s.name), s.params)
            for s in parse_specs(args.problems)]
        report = check_estimator(
            target.from_params(params), problems=pool, n=args.n,
            time_budget=args.time_budget or ESTIMATOR_TIME_BUDGET, **statistics)
    elif isinstance(target, type) and issubclass(target, Problem):
        report = check_problem(
            check_instance(target, params), tolerance=statistics.pop("bias_tolerance"),
            time_budget=args.time_budget or PROBLEM_TIME_BUDGET, **statistics)
    else:
        raise VrbenchError(f"{args.target!r} is neither an Estimator nor a Problem subclass")
    # One line per result, never wrapped, so that two runs compare line by line.
    for passed, line in report.grouped_lines():
        console.print(f"[green]PASS[/green] {escape(line)}" if passed
                      else f"[red]FAIL[/red] {escape(line)}", soft_wrap=True)
    for note in report.notes:
        console.print(f"note: {escape(note)}", soft_wrap=True)
    for line in report.summary_lines():
        console.print(escape(line), soft_wrap=True)
    console.print(f"{report.subject}: {len(report.passed)} passed, {len(report.failures)} failed")
    return 0 if report.ok else 1


def _report(console: Console, args: argparse.Namespace) -> int:
    from vrbench.bench.store import StoreError
    from vrbench.reports.build import build_report
    from vrbench.reports.registry import check_figure_names
    from vrbench.reports.selection import ReportSpec, load_spec

    spec = load_spec(args.spec) if args.spec else ReportSpec()
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip()) if args.format \
        else None
    figures = None
    if args.figures:
        figures = tuple(f.strip() for f in args.figures.split(",") if f.strip())
        check_figure_names(figures)
    spec = spec.override(estimators=args.estimators, problems=args.problems, n=args.n,
                         reference=args.reference, formats=formats, style=args.style,
                         layout=args.layout, figures=figures)
    output = args.output or str(Path(args.results[0]) / "report")
    _writable(Path(output))
    try:
        report = build_report(args.results, output, spec=spec)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        raise StoreError(f"could not write the report to {output}{where}: "
                         f"{exc.strerror or exc}") from None
    console.print(f"{len(report)} files written to {output}; open {Path(output) / 'index.html'}")
    for name, why in report.not_drawn.items():
        if name not in report.missing:
            console.print(f"not drawn: {name}: {escape(why)}")
    if report.missing:
        errors = Console(stderr=True, soft_wrap=True)
        for name, why in report.missing.items():
            errors.print(f"[red]error:[/red] {name} was asked for and not drawn: "
                         f"{escape(why)}", highlight=False)
        return 1
    return 0


def _writable(directory: Path) -> None:
    """Refuse, before any work, a directory that cannot be created or written to; creates
    nothing (a probe file in the nearest existing folder is removed at once)."""
    import tempfile

    from vrbench.bench.store import OutputError

    existing = directory.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        raise OutputError(f"cannot write to the output directory {directory}: "
                          f"{exc.strerror or exc}") from None


def _reproduce(console: Console, args: argparse.Namespace) -> int:
    from vrbench.reproduce import available, load_recipe, reproduce

    if args.list or not args.recipe:
        table = Table(title="recipes (vrbench reproduce NAME)", header_style="bold")
        for column in ("name", "title", "paper"):
            table.add_column(column)
        for recipe in available():
            table.add_row(recipe.name, escape(recipe.title), escape(recipe.paper))
        console.print(table)
        return 0 if args.list else 2
    recipe = load_recipe(args.recipe)
    output = args.output or f"results/papers/{recipe.name}{'-quick' if args.quick else ''}"
    with console.status("") as status:
        note = reproduce(recipe, output, quick=args.quick, jobs=args.jobs, device=args.device,
                         on_status=lambda message: status.update(escape(message)))
    console.print(f"{recipe.title}: figures and note in {output}; read {note}")
    return 0


def _train_plan(args: argparse.Namespace) -> TrainPlan:
    """The runs ``vrbench train`` was asked for (refuses unknown estimators of --measure
    before any work)."""
    try:
        reference = ReferenceSettings(args.reference_precision, args.reference_estimates)
    except VrbenchError as exc:
        raise VrbenchError(f"option --reference-precision/--reference-estimates: {exc}"
                           ) from None
    settings = TrainSettings(steps=args.steps, n_samples=args.n_samples, lr=args.lr,
                             optimizer=args.optimizer, eval_every=args.eval_every,
                             eval_replicates=args.eval_replicates,
                             max_memory_mb=args.max_memory_mb, device=args.device,
                             reference=reference, eval_samples=args.eval_samples,
                             groups=dict(args.group))
    measured = None
    if args.measure is not None:
        measured = ([Spec(name) for name in estimators.registry.names()]
                    if args.measure.strip() == "all" else parse_specs(args.measure))
        for spec in measured:
            estimators.make(spec.name, spec.params)  # refuse unknown names before any work
    return TrainPlan(tuple(parse_specs(args.problems)), tuple(parse_specs(args.estimators)),
                     settings, tuple(args.seed),
                     measured=None if measured is None else tuple(measured))


def _train(console: Console, args: argparse.Namespace) -> int:
    from vrbench.bench.runs import RUNS_DIR, run_all
    from vrbench.reports.console import StableETA

    plan = _train_plan(args)
    runs, skipped = plan.runs()
    for skip in skipped:
        console.print(f"skipping {skip.estimator} on {skip.problem}: {escape(skip.reason)}")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  StableETA(), console=console, transient=True) as progress:
        task = progress.add_task("training runs", total=len(runs))
        started = itertools.count()

        def show(run: Run) -> None:
            progress.update(task, description=escape(run.describe()), completed=next(started))

        frame = run_all(runs, args.output, show)
        progress.update(task, completed=len(runs))
    Path(args.output).mkdir(parents=True, exist_ok=True)
    target = Path(args.output) / (TRAIN_FILE if plan.measured is None else SHARED_FILE)
    frame.to_parquet(target, index=False)
    console.print(f"{len(runs)} runs, traces in {target} (each run stored in "
                  f"{Path(args.output) / RUNS_DIR}: rerunning the command reuses them, and "
                  "resumes an interrupted run from its last checkpoint)")
    return 0


def _warn_broken_plugins(console: Console) -> None:
    for registry in (estimators.registry, problems.registry):
        registry.names()
        for name, error in registry.plugin_errors.items():
            console.print(f"[red]{registry.kind} plugin {name!r} failed to load:[/red] "
                          f"{escape(error)}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vrbench`` console script."""
    from vrbench.bench.store import StoreError

    args = _parser().parse_args(argv)
    # Off a terminal (pipes, CI logs) rich would wrap tables at 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    errors = Console(stderr=True, soft_wrap=True)  # messages are read and grepped whole

    def show_warning(message: Warning | str, category: type[Warning], *rest: Any,
                     **kwargs: Any) -> None:
        errors.print(f"[yellow]warning:[/yellow] {escape(str(message))}", highlight=False)

    warnings.showwarning = show_warning
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
        if args.command == "reproduce":
            return _reproduce(console, args)
        return _run(console, args)
    except StoreError as exc:
        errors.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 4
    except VrbenchError as exc:
        errors.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return 2
    except KeyboardInterrupt:  # before a sweep started, or while its summary printed
        errors.print("interrupted", highlight=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())
