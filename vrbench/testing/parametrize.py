"""The conformance suites as parametrized pytest cases, one test id per group of checks.

A plugin's test file runs every check ``vrbench check`` runs, each group its own test::

    from vrbench.testing import parametrize_with_checks

    @parametrize_with_checks([MyEstimator(), MyProblem()])
    def test_vrbench_conformance(component, check):
        check(component)

An estimator's groups are ``protocol`` (metadata, requirements, the power of its bias tests
over all problems) and one ``on-<problem>`` per problem it runs on; a problem's are
``protocol`` (the checks every problem runs) and one per capability it declares that has
members or checks of its own (see :data:`~vrbench.testing.capabilities.CAPABILITIES`). The
suite runs once per component and options, at the first of its cases, with exactly the
statistics ``vrbench check`` computes; each case then passes or fails on its own group's
outcomes, so a wrong ``relax`` fails ``test_vrbench_conformance[my_problem-relaxable]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from vrbench import estimators as estimator_registry
from vrbench import problems as problem_registry
from vrbench.components import Component
from vrbench.estimators.base import Estimator
from vrbench.problems.base import Problem
from vrbench.testing.capabilities import specs_of
from vrbench.testing.common import check_instance, describe, estimator_instance
from vrbench.testing.estimator_checks import check_estimator, sample_sizes
from vrbench.testing.problem_checks import PROTOCOL, GroupedReport, check_problem
from vrbench.testing.report import CheckReport, Outcome

Kind = Literal["estimator", "problem"]


@dataclass(frozen=True, eq=False)
class Check:
    """One group of conformance checks: ``check(component)`` fails, listing the group's
    failures, if any of them failed, or if the suite stopped before they all ran."""

    kind: Kind
    group: str
    """``protocol``; a capability (problems); ``on-<problem>`` (estimators)."""
    claimed: tuple[str, ...]
    """Every group of the component that has a case of its own (``protocol`` takes the rest)."""
    options: Mapping[str, Any]

    def __call__(self, component: Estimator | Problem) -> None:
        report, groups = _run(component, self.kind, self.options)
        mine = [outcome for outcome, group in zip(report.outcomes, groups, strict=True)
                if group == self.group or (self.group == PROTOCOL
                                           and group not in self.claimed)]
        stopped = [outcome.line() for outcome in report.outcomes
                   if outcome.check == "runs" and outcome.failure is not None]
        if not mine or (stopped and self.group != PROTOCOL):
            raise AssertionError(
                f"{report.subject}: the checks of {self.group} did not all run"
                + ("; the suite stopped at:\n  " + "\n  ".join(stopped or report.failures)
                   if stopped or report.failures else ""))
        failures = [outcome.line() for outcome in mine if outcome.failure is not None]
        if failures:
            raise AssertionError(f"{report.subject} failed {len(failures)} check(s) of "
                                 f"{self.group}:\n  " + "\n  ".join(failures))

    def __repr__(self) -> str:
        return self.group


def checks_of(component: Estimator | Problem, *,
              options: Mapping[str, Any] | None = None) -> list[Check]:
    """The groups of checks of ``component`` (an instance), one :class:`Check` each.

    ``options`` are keyword arguments of :func:`~vrbench.testing.check_estimator` or
    :func:`~vrbench.testing.check_problem` (``problems`` to check an estimator on,
    ``bias_tolerance``, ``max_estimates``, ``tolerance``, ``max_draws``, ...).
    """
    settings = dict(options or {})
    if isinstance(component, Problem):
        groups = [spec.capability.value for spec in specs_of(component)
                  if spec.members or spec.exact_checks or spec.sampled_checks]
        return _checks("problem", groups, settings)
    sizes = sample_sizes(component, settings.get("n"))
    pool: Iterable[Any] | None = settings.get("problems")
    groups = []
    for problem in map(check_instance, pool if pool is not None
                       else problem_registry.registry.names()):
        if any(component.incompatibility(problem, size) is None for size in sizes):
            groups.append(_on(problem))
    return _checks("estimator", groups, settings)


def parametrize_with_checks(components: Sequence[Estimator | Problem | type | str], *,
                            estimator_options: Mapping[str, Any] | None = None,
                            problem_options: Mapping[str, Any] | None = None) -> Any:
    """A ``pytest.mark.parametrize`` over ``(component, check)``: every group of checks of
    every component (:func:`checks_of`), with ids ``<component>-<group>``.

    Components are estimators or problems: instances (checked as they are), classes or
    registered names (problems built with their ``check_params``, estimators with default
    parameters). ``estimator_options`` and ``problem_options`` go to
    :func:`~vrbench.testing.check_estimator` and :func:`~vrbench.testing.check_problem`:
    for a quick test, fewer draws and a tolerance they can reach, say
    ``problem_options={"max_draws": 20_000, "tolerance": 0.05, "time_budget": None}``.
    """
    import pytest

    cases = []
    for given in components:
        component = _instance(given)
        kind: Kind = "problem" if isinstance(component, Problem) else "estimator"
        options = problem_options if kind == "problem" else estimator_options
        name = _name(component)
        cases += [pytest.param(component, check, id=f"{name}-{check.group}")
                  for check in checks_of(component, options=options)]
    return pytest.mark.parametrize(("component", "check"), cases)


def _checks(kind: Kind, groups: list[str], options: dict[str, Any]) -> list[Check]:
    claimed = tuple(groups)
    return [Check(kind, group, claimed, options) for group in (PROTOCOL, *groups)]


def _on(problem: Problem) -> str:
    return f"on-{describe(problem)}"


def _name(component: Component) -> str:
    return component.name if component.name != "<unregistered>" else type(component).__name__


def _instance(given: Estimator | Problem | type | str) -> Estimator | Problem:
    if isinstance(given, (Estimator, Problem)):
        return given
    if isinstance(given, type) and issubclass(given, Estimator):
        return estimator_instance(given)
    if isinstance(given, type) and issubclass(given, Problem):
        return check_instance(given)
    if isinstance(given, str) and given in estimator_registry.registry.names():
        return estimator_instance(given)
    if isinstance(given, str):
        return check_instance(given)
    raise TypeError(f"expected an estimator or a problem (an instance, a class or a "
                    f"registered name), got {given!r}")


_REPORTS: dict[tuple[int, str], tuple[Any, CheckReport, list[str]]] = {}
"""Each component's report under each options, with the group of every outcome; the
component is kept so that its id stays its own."""


def _run(component: Estimator | Problem, kind: Kind,
         options: Mapping[str, Any]) -> tuple[CheckReport, list[str]]:
    key = (id(component), repr(sorted(options.items())))
    if key not in _REPORTS:
        report: CheckReport
        if kind == "problem":
            assert isinstance(component, Problem)
            report = check_problem(component, **options)
            groups = (report.groups if isinstance(report, GroupedReport)
                      else [PROTOCOL] * len(report.outcomes))
        else:
            assert isinstance(component, Estimator)
            report = check_estimator(component, **options)
            groups = [_group_of(outcome) for outcome in report.outcomes]
        _REPORTS[key] = (component, report, groups)
    _, report, groups = _REPORTS[key]
    return report, groups


def _group_of(outcome: Outcome) -> str:
    return PROTOCOL if outcome.where is None else f"on-{outcome.where}"
