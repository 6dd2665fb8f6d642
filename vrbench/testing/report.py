"""The outcome of a conformance run: every check, what the statistical ones could detect, and a
summary that says where the requested power was reached."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outcome:
    """One check on one problem (``where``) at one θ (``theta``: a label such as θ₁, None for
    the check θ) and one sample size ``n`` (all optional)."""

    check: str
    failure: str | None = None
    detail: str = ""
    where: str | None = None
    n: int | None = None
    theta: str | None = None

    @property
    def name(self) -> str:
        text = self.check
        if self.where is not None:
            text += f" on {self.where}"
        if self.theta is not None:
            text += f" at {self.theta}"
        if self.n is not None:
            text += f" at n={self.n}"
        return text

    def line(self) -> str:
        message = self.failure if self.failure is not None else self.detail
        return f"{self.name}: {message}" if message else self.name


@dataclass(frozen=True)
class PowerRecord:
    """What one statistical test could detect, and whether that met the requested tolerance."""

    test: str
    where: str
    n: int | None
    detectable: float
    tolerance: float | None
    """The relative deviation the test was sized to detect; None for tests without one."""
    theta: str | None = None

    @property
    def reached(self) -> bool:
        return self.tolerance is None or self.detectable <= self.tolerance


@dataclass
class CheckReport:
    """The outcome of a conformance run: what passed, what failed and by how much, and the
    power of the statistical tests."""

    subject: str
    outcomes: list[Outcome] = field(default_factory=list)
    power: list[PowerRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def passed(self) -> list[str]:
        return [o.line() for o in self.outcomes if o.failure is None]

    @property
    def failures(self) -> list[str]:
        return [o.line() for o in self.outcomes if o.failure is not None]

    def record(self, check: str, failure: str | None, detail: str = "",
               where: str | None = None, n: int | None = None,
               theta: str | None = None) -> None:
        self.outcomes.append(Outcome(check, failure, detail, where, n, theta))

    def raise_if_failed(self) -> None:
        if self.failures:
            raise AssertionError(
                f"{self.subject} failed {len(self.failures)} check(s):\n  "
                + "\n  ".join(self.failures)
            )

    def power_summary(self, test: str, unit: str, at_check_theta: bool = True) -> str | None:
        """Where the statistical ``test`` reached its tolerance, problem by problem, at the
        check θ (or at the other θ)."""
        records = [r for r in self.power
                   if r.test == test and (r.theta is None) == at_check_theta]
        if not records:
            return None
        name = test if at_check_theta else (
            f"{test} at {', '.join(dict.fromkeys(str(r.theta) for r in records))}")
        tolerance = records[0].tolerance
        if tolerance is None:
            worst = max(records, key=lambda r: r.detectable)
            ordered = sorted(r.detectable for r in records)
            phrase = _UNTOLERATED.get(test, "a relative difference of {}")
            return (f"{name}: {phrase.format(_size(test, ordered[len(ordered) // 2]))} "
                    f"(median over {len(records)} tests; at most "
                    f"{_size(test, worst.detectable)}, on {worst.where}{_at(worst.n)}) would "
                    "have been detected")
        places = list(dict.fromkeys(r.where for r in records))
        missed = [p for p in places if not all(r.reached for r in records if r.where == p)]
        text = (f"{name}: a deviation of {tolerance_text(tolerance)} of {unit} was detectable "
                f"(power {_power_text()}) at every n on {len(places) - len(missed)} of "
                f"{len(places)} problem(s)")
        if missed:
            text += "; elsewhere the smallest detectable deviation was " + ", ".join(
                _range_text(p, [r for r in records if r.where == p]) for p in missed)
        return text

    def summary_lines(self) -> list[str]:
        """One line per statistical test: where it reached its tolerance, and what it could
        detect elsewhere."""
        tests = sorted(dict.fromkeys(r.test for r in self.power), key=lambda t: t != "unbiased")
        places = {r.where for r in self.power}
        if len(places) == 1 and all(r.n is None for r in self.power):
            lines = []
            for theta in dict.fromkeys(r.theta for r in self.power):
                with_tolerance = [r for r in self.power
                                  if r.tolerance is not None and r.theta == theta]
                if not with_tolerance:
                    continue
                missed = [r for r in with_tolerance if not r.reached]
                at = "" if theta is None else f" at {theta}"
                tolerance = with_tolerance[0].tolerance
                assert tolerance is not None  # with_tolerance: the records with a tolerance
                text = (f"sampled checks{at}: a deviation of "
                        f"{tolerance_text(tolerance)} was detectable (power "
                        f"{_power_text()}) in {len(with_tolerance) - len(missed)} of "
                        f"{len(with_tolerance)}")
                if missed:
                    text += "; the others could detect: " + ", ".join(
                        f"{r.test} {percent(r.detectable)}" for r in missed)
                lines.append(text)
            return lines
        units = {"unbiased": "‖∇J‖"}
        summaries = [self.power_summary(test, units.get(test, "its unit"), at_check_theta)
                     for test in tests for at_check_theta in (True, False)]
        return [line for line in summaries if line is not None]

    def grouped_lines(self) -> Iterator[tuple[bool, str]]:
        """``(passed, line)`` pairs: failures and statistical passes one per line, other passes
        merged per problem over the sample sizes."""
        merged: dict[tuple[str | None, str | None], dict[str, list[int | None]]] = {}
        for outcome in self.outcomes:
            if outcome.failure is not None:
                yield False, outcome.line()
            elif outcome.detail:
                yield True, outcome.line()
            else:
                merged.setdefault((outcome.where, outcome.theta), {}).setdefault(
                    outcome.check, []).append(outcome.n)
        for (where, theta), checks in merged.items():
            by_sizes: dict[tuple[int | None, ...], list[str]] = {}
            for check, check_sizes in checks.items():
                by_sizes.setdefault(tuple(check_sizes), []).append(check)
            for sizes, names in by_sizes.items():
                text = ", ".join(names)
                if where is not None:
                    text += f" on {where}"
                if theta is not None:
                    text += f" at {theta}"
                known = [str(n) for n in sizes if n is not None]
                if known:
                    text += f" at n={','.join(known)}"
                yield True, text

    def __str__(self) -> str:
        lines = [f"{self.subject}: {len(self.passed)} passed, {len(self.failures)} failed"]
        lines += [f"  FAIL {f}" for f in self.failures]
        return "\n".join(lines)


def percent(value: float) -> str:
    """A relative size as a percentage with two significant digits."""
    if value == float("inf"):
        return "∞ (the unit is 0)"
    if value >= 1:
        return f"{100 * value:,.0f}%"
    return f"{100 * value:#.3g}%"


def tolerance_text(value: float) -> str:
    """A requested tolerance as written: 1%, 0.5%."""
    return f"{100 * value:g}%"


_UNTOLERATED = {
    "replicates independent": "a correlation of {} between consecutive replicates",
    "variance independent of the replicates per call":
        "a ratio of {} between the spreads of normal estimates from calls of different sizes",
}
"""How the summary names what a test without a tolerance could detect (default: a relative
difference)."""


def _size(test: str, value: float) -> str:
    return f"{value:.2g}" if test in _UNTOLERATED else percent(value)


def _range_text(where: str, records: list[PowerRecord]) -> str:
    """``where`` and the detectable sizes of its tests that missed the tolerance: one, or the
    smallest to the largest with their n."""
    missed = sorted((r for r in records if not r.reached), key=lambda r: r.detectable)
    low, high = missed[0], missed[-1]
    if percent(low.detectable) == percent(high.detectable):
        return f"{where} {percent(high.detectable)}{_at(high.n, high.theta)}"
    return (f"{where} {percent(low.detectable)}{_at(low.n, low.theta)} to "
            f"{percent(high.detectable)}{_at(high.n, high.theta)}")


def _at(n: int | None, theta: str | None = None) -> str:
    where = "" if theta is None else f" at {theta}"
    return where + (f" at n={n}" if n is not None else "")


def _power_text() -> str:
    from vrbench.testing.statistics import POWER

    return f"{POWER:.0%}"
