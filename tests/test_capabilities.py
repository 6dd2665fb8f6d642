"""Capabilities are one record each: `vrbench list capabilities`, the docs page and the checks
read the same records; the checks reach plugin authors as parametrized pytest cases."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import wrong_components as wrong

from vrbench import estimators, problems
from vrbench.problems.base import Capability
from vrbench.problems.bernoulli import BernoulliToy
from vrbench.testing import check_instance, checks_of, parametrize_with_checks
from vrbench.testing.capabilities import CAPABILITIES, SPECS, estimators_using

ROOT = Path(__file__).resolve().parents[1]

QUICK_PROBLEM = {"max_draws": 10_000, "tolerance": 0.05, "time_budget": None}
"""Few draws, and a tolerance they reach: the problem suite in about a second."""

QUICK_ESTIMATOR = {"problems": ["bernoulli_toy"], "max_estimates": 4_000, "bias_tolerance": 0.05,
                   "time_budget": None, "chunking_replicates": 1_024,
                   "small_call_estimates": 64}


@parametrize_with_checks(["score_function", "bernoulli_toy"],
                         estimator_options=QUICK_ESTIMATOR, problem_options=QUICK_PROBLEM)
def test_built_ins_pass_every_group_of_checks(component, check):
    check(component)


class _HardensAtTheWrongThreshold(BernoulliToy):
    """bernoulli_toy whose ``harden`` rounds relaxed bits at 0.3 instead of 0.5: relaxed
    estimators would see another distribution than ``sample`` draws."""

    def harden(self, relaxed):
        return (relaxed > 0.3).to(relaxed.dtype)


def _cases(mark) -> dict[str, tuple]:
    return {case.id: case.values for case in mark.args[1]}


def test_a_wrong_capability_member_fails_that_capability_case_alone():
    cases = _cases(parametrize_with_checks([_HardensAtTheWrongThreshold(t=0.3, theta=0.6)],
                                           problem_options=QUICK_PROBLEM))
    # (the subclass keeps the registered name it inherits)
    assert set(cases) == {f"bernoulli_toy-{group}" for group in
                          ("protocol", "inverse_transform", "relaxable", "bernoulli_logits")}
    failed = {}
    for case_id, (component, check) in cases.items():
        try:
            check(component)
        except AssertionError as error:
            failed[case_id] = str(error)
    assert list(failed) == ["bernoulli_toy-relaxable"]
    assert "mean of f_relaxed(harden(relax(θ, u, τ))) equals J" in failed[
        "bernoulli_toy-relaxable"]


def test_a_biased_estimator_fails_its_problem_case_not_the_protocol():
    cases = _cases(parametrize_with_checks([wrong.ScaledScoreFunction(scale=1.1)],
                                           estimator_options=QUICK_ESTIMATOR))
    protocol, on_problem = (cases[f"ScaledScoreFunction-{group}"] for group in
                            ("protocol", "on-bernoulli_toy:t=0.3,theta=0.6"))
    protocol[1](protocol[0])
    with pytest.raises(AssertionError, match="unbiased"):
        on_problem[1](on_problem[0])


def test_a_case_whose_checks_never_ran_fails():
    """A problem that cannot even give its θ stops the suite early: its capability cases fail
    (their checks did not run) instead of passing on the members check alone."""

    class _NoTheta(BernoulliToy):
        """bernoulli_toy whose check θ raises."""

        def check_theta(self):
            raise RuntimeError("no θ")

    problem = _NoTheta(t=0.3, theta=0.6)
    relaxable = next(c for c in checks_of(problem, options=QUICK_PROBLEM)
                     if c.group == "relaxable")
    with pytest.raises(AssertionError, match=r"the checks of relaxable did not all run(.|\n)*no θ"):
        relaxable(problem)


def test_every_capability_has_one_record_with_its_checks():
    assert [spec.capability for spec in CAPABILITIES].count(Capability.RELAXABLE) == 1
    assert sorted(SPECS) == sorted(Capability)
    declared = {c for entry in problems.registry.entries() for c in entry.cls.capabilities}
    assert declared <= set(SPECS)
    # A capability that asks for members is checked beyond their presence.
    for spec in CAPABILITIES:
        if spec.members and spec.capability is not Capability.CATEGORICAL_LOGITS:
            assert spec.exact_checks or spec.sampled_checks, spec.capability
    assert SPECS[Capability.CATEGORICAL_LOGITS].exact_checks is not None


def test_used_by_lists_come_from_the_estimators_requires():
    for spec in CAPABILITIES:
        for name in estimators_using(spec.capability):
            requires = estimators.registry.get(name).requires
            assert spec.capability in requires or spec.capability in (
                Capability.BERNOULLI_LATENTS, Capability.CATEGORICAL_LATENTS), (name, spec)
    assert {"arm", "disarm", "rebar", "relax", "mvd_bernoulli"} <= set(
        estimators_using(Capability.BERNOULLI_LOGITS))
    assert "rebar" in estimators_using(Capability.RELAXABLE)


def _cli_cells() -> dict[str, list[str]]:
    """The table of `vrbench list capabilities`: each capability's cells, their wrapped lines
    joined."""
    out = subprocess.run([sys.executable, "-m", "vrbench.cli", "list", "capabilities"],
                         capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "COLUMNS": "200"}).stdout
    rows: dict[str, list[list[str]]] = {}
    current = None
    for line in out.splitlines():
        if not line.startswith("│"):
            continue
        cells = [cell.strip() for cell in line.strip("│").split("│")]
        if cells[0]:
            current = cells[0]
            rows[current] = [[] for _ in cells]
        for column, cell in enumerate(cells):
            if cell:
                rows[current][column].append(cell)
    return {name: [" ".join(parts) for parts in columns] for name, columns in rows.items()}


def test_cli_lists_every_record_as_written():
    cells = _cli_cells()
    assert list(cells) == [spec.capability.value for spec in CAPABILITIES]
    for spec in CAPABILITIES:
        _, meaning, members, used_by = cells[spec.capability.value]
        assert meaning == spec.description
        assert members == (", ".join(spec.members) or "—")
        assert used_by == (", ".join(estimators_using(spec.capability)) or "—")


def test_docs_page_shows_every_record():
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("vrbench_docs_hooks", ROOT / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = hooks._capabilities_page(problems.registry.entries())
    for record in CAPABILITIES:
        assert f"## {record.capability.value}\n\n{record.description}\n" in page


def test_members_check_reads_the_record():
    """A problem that declares a capability without its members fails `members of`."""

    class _ClaimsRelaxable(wrong.Poisson):
        """Poisson that claims to be relaxable."""

        capabilities = wrong.Poisson.capabilities | {Capability.RELAXABLE}

    problem = check_instance(_ClaimsRelaxable())
    relaxable = next(c for c in checks_of(problem, options=QUICK_PROBLEM)
                     if c.group == "relaxable")
    with pytest.raises(AssertionError, match="members of relaxable: does not implement "
                                             + ", ".join(SPECS[Capability.RELAXABLE].members)):
        relaxable(problem)
