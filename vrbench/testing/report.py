"""The outcome of a conformance run: every check, what the statistical ones could detect, and a
summary that says where the requested power was reached."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Outcome:
    """One check on one problem (``where``) at one sample size ``n`` (both optional)."""

    check: str
    failure: str | None = None
    detail: str = ""
    where: str | None = None
    n: int | None = None

    @property
    def name(self) -> str:
        text = self.check
        if self.where is not None:
            text += f" on {self.where}"
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
               where: str | None = None, n: int | None = None) -> None:
        self.outcomes.append(Outcome(check, failure, detail, where, n))

    def raise_if_failed(self) -> None:
        if self.failures:
            raise AssertionError(
                f"{self.subject} failed {len(self.failures)} check(s):\n  "
                + "\n  ".join(self.failures)
            )

    def power_summary(self, test: str, unit: str) -> str | None:
        """Where the statistical ``test`` reached its tolerance, problem by problem."""
        records = [r for r in self.power if r.test == test]
        if not records:
            return None
        tolerance = records[0].tolerance
        if tolerance is None:
            worst = max(records, key=lambda r: r.detectable)
            ordered = sorted(r.detectable for r in records)
            return (f"{test}: a relative difference of {percent(ordered[len(ordered) // 2])} "
                    f"(median over {len(records)} tests; at most {percent(worst.detectable)}, "
                    f"on {worst.where}{_at(worst.n)}) would have been detected")
        places = list(dict.fromkeys(r.where for r in records))
        missed: dict[str, PowerRecord] = {}
        for record in records:
            if not record.reached and (record.where not in missed
                                       or record.detectable > missed[record.where].detectable):
                missed[record.where] = record
        text = (f"{test}: a deviation of {tolerance_text(tolerance)} of {unit} was detectable "
                f"(power {_power_text()}) on {len(places) - len(missed)} of {len(places)} "
                f"problem(s)")
        if missed:
            text += "; smallest detectable elsewhere: " + ", ".join(
                f"{r.where} {percent(r.detectable)}{_at(r.n)}" for r in missed.values())
        return text

    def summary_lines(self) -> list[str]:
        """One line per statistical test: where it reached its tolerance, and what it could
        detect elsewhere."""
        tests = sorted(dict.fromkeys(r.test for r in self.power), key=lambda t: t != "unbiased")
        places = {r.where for r in self.power}
        if len(places) == 1 and all(r.n is None for r in self.power):
            with_tolerance = [r for r in self.power if r.tolerance is not None]
            if not with_tolerance:
                return []
            missed = [r for r in with_tolerance if not r.reached]
            text = (f"sampled checks: a deviation of {tolerance_text(with_tolerance[0].tolerance)} "
                    f"was detectable (power {_power_text()}) in {len(with_tolerance) - len(missed)}"
                    f" of {len(with_tolerance)}")
            if missed:
                text += "; smallest detectable elsewhere: " + ", ".join(
                    f"{r.test} {percent(r.detectable)}" for r in missed)
            return [text]
        units = {"unbiased": "‖∇J‖"}
        lines = [self.power_summary(test, units.get(test, "its unit")) for test in tests]
        return [line for line in lines if line is not None]

    def grouped_lines(self) -> Iterator[tuple[bool, str]]:
        """``(passed, line)`` pairs: failures and statistical passes one per line, other passes
        merged per problem over the sample sizes."""
        merged: dict[str | None, dict[str, list[int | None]]] = {}
        for outcome in self.outcomes:
            if outcome.failure is not None:
                yield False, outcome.line()
            elif outcome.detail:
                yield True, outcome.line()
            else:
                merged.setdefault(outcome.where, {}).setdefault(outcome.check, []).append(
                    outcome.n)
        for where, checks in merged.items():
            by_sizes: dict[tuple[int | None, ...], list[str]] = {}
            for check, sizes in checks.items():
                by_sizes.setdefault(tuple(sizes), []).append(check)
            for sizes, names in by_sizes.items():
                text = ", ".join(names)
                if where is not None:
                    text += f" on {where}"
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


def _at(n: int | None) -> str:
    return f" at n={n}" if n is not None else ""


def _power_text() -> str:
    from vrbench.testing.statistics import POWER

    return f"{POWER:.0%}"
