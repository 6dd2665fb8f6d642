"""Conformance checks that every estimator and problem passes, built-in or plugin.

``check_estimator`` and ``check_problem`` return a :class:`CheckReport`; inside pytest, call
``report.raise_if_failed()``, or decorate a test with :func:`parametrize_with_checks` to get
each group of checks as a test of its own; ``vrbench check`` prints it. Every statistical
check states its power: it is sized to detect a relative error of ``bias_tolerance`` (default
1% of ‖∇J‖) with probability 95% within a time budget, and a passing check reports the
smallest error it could have detected, so that a weak pass is visible as such (see
:mod:`.statistics`). A correct component fails one statistical test with probability at most
:data:`~vrbench.testing.statistics.ALPHA`.

Problems named by the registry are checked with their ``check_params`` at their
``check_theta()``: settings where a 1% bias is detectable in seconds (see
:func:`check_instance`). Both suites also run the component on torch's ``meta`` device, a
stand-in for a GPU that needs none (see :class:`MetaDevice`).
"""

from vrbench.testing.common import BIAS_TOLERANCE, check_instance
from vrbench.testing.estimator_checks import check_estimator, sample_sizes
from vrbench.testing.meta import MetaDevice
from vrbench.testing.parametrize import Check, checks_of, parametrize_with_checks
from vrbench.testing.problem_checks import check_problem, finite_difference_error
from vrbench.testing.report import CheckReport, Outcome, PowerRecord

__all__ = [
    "BIAS_TOLERANCE",
    "Check",
    "CheckReport",
    "MetaDevice",
    "Outcome",
    "PowerRecord",
    "check_estimator",
    "check_instance",
    "check_problem",
    "checks_of",
    "finite_difference_error",
    "parametrize_with_checks",
    "sample_sizes",
]
