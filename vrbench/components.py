"""Parameters shared by problems and estimators, and the ``name:key=value,...`` spec syntax.

A component (problem or estimator) is a frozen dataclass whose fields are its parameters, each
with a default. ``bernoulli_toy:t=0.49,theta=1.0`` names the component and overrides two of
them; values are parsed to the type of the field's default and then validated by the class.

A parameter may also take a grid of values, which makes one spec per value (and per
combination, when several parameters have grids): ``gaussian_cosine:omega=0.5|1|2`` on the
command line, or in a configuration ``omega = { grid = [0.5, 1, 2] }``,
``omega = { linspace = [0.5, 8, 6] }`` (6 evenly spaced values from 0.5 to 8) or
``omega = { logspace = [0.1, 10, 5] }`` (5 values evenly spaced in log scale from 0.1 to 10).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from vrbench.errors import ParameterError


@dataclass(frozen=True)
class Spec:
    """A component name with parameter overrides, as written on the command line or in a config."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))


GRID_FORMS = ("grid", "linspace", "logspace")
MAX_GRID = 1000
"""Most values one parameter's grid may take, in any form."""
MAX_GRID_POINTS = 100_000
"""Most points the grids of one component may make together (the product of their sizes)."""


def grid_values(key: str, value: Any) -> list[Any] | None:
    """The values of a parameter's grid, or None when ``value`` is a single value.

    A grid is a string ``"a|b|c"`` or a table with one of :data:`GRID_FORMS`.
    """
    if isinstance(value, str):
        if "|" not in value:
            return None
        values = [v.strip() for v in value.split("|")]
        if len(values) > MAX_GRID:
            raise ParameterError(f"{key}: a grid of {len(values):,} values; a grid takes at "
                                 f"most {MAX_GRID:,}")
        return values
    if not isinstance(value, Mapping):
        return None
    forms = [form for form in GRID_FORMS if form in value]
    if len(forms) != 1 or len(value) != 1:
        raise ParameterError(f"{key}={dict(value)!r}: a grid is a table with exactly one of "
                             f"{', '.join(GRID_FORMS)}")
    form, spec = forms[0], value[forms[0]]
    if form == "grid":
        if not isinstance(spec, list) or not 1 <= len(spec) <= MAX_GRID:
            raise ParameterError(f"{key}: grid must be a list of 1 to {MAX_GRID} values")
        return list(spec)
    numbers = isinstance(spec, list) and len(spec) == 3 and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in spec)
    if not numbers or not isinstance(spec[2], int) or not 2 <= spec[2] <= MAX_GRID:
        raise ParameterError(f"{key}: {form} must be [start, stop, count] with 2 <= count <= "
                             f"{MAX_GRID}, got {spec!r}")
    start, stop, count = spec
    if form == "logspace":
        if start <= 0 or stop <= 0:
            raise ParameterError(f"{key}: logspace needs positive start and stop, got {spec!r}")
        start, stop = math.log(start), math.log(stop)
    points = [start + (stop - start) * i / (count - 1) for i in range(count)]
    if form == "logspace":
        points = [math.exp(v) for v in points]
    return [float(f"{v:.12g}") for v in points]  # 2.0999999999999996 -> 2.1


def expand_grids(spec: Spec) -> list[Spec]:
    """One spec per point of the parameter grids of ``spec`` (itself if it has none)."""
    grids = {key: grid_values(key, value) for key, value in spec.params.items()}
    sizes = {key: len(values) for key, values in grids.items() if values is not None}
    if math.prod(sizes.values()) > MAX_GRID_POINTS:
        product = " × ".join(f"{key}: {size:,}" for key, size in sizes.items())
        raise ParameterError(f"{spec.name}: its grids make {math.prod(sizes.values()):,} "
                             f"points ({product}); at most {MAX_GRID_POINTS:,} are allowed")
    specs = [dict(spec.params)]
    for key, values in grids.items():
        if values is not None:
            specs = [{**params, key: value} for params in specs for value in values]
    return [Spec(spec.name, params) for params in specs]


def parse_specs(text: str) -> list[Spec]:
    """Parse ``"a,b:x=1,y=2,c"`` into specs; ``key=value`` binds to the last named component,
    and ``key=a|b|c`` makes one spec per value."""
    entries: list[tuple[str, dict[str, str]]] = []
    for raw in (item.strip() for item in text.split(",")):
        if not raw:
            continue
        if ":" in raw:
            name, _, raw = raw.partition(":")
            entries.append((name.strip(), {}))
            if not raw:
                continue
        if "=" in raw:
            if not entries:
                raise ParameterError(f"parameter {raw!r} comes before any component name")
            key, _, value = raw.partition("=")
            name, params = entries[-1]
            if key.strip() in params:
                raise ParameterError(f"{name}: parameter {key.strip()!r} is given twice "
                                     f"({key.strip()}={params[key.strip()]}, "
                                     f"{key.strip()}={value.strip()})")
            params[key.strip()] = value.strip()
        else:
            entries.append((raw, {}))
    return [point for name, params in entries for point in expand_grids(Spec(name, params))]


def _type_name(default: Any) -> str:
    if isinstance(default, bool):
        return "a boolean (true or false)"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a finite number"
    return f"a {type(default).__name__}"


def _convert(owner: str, key: str, value: Any, default: Any) -> Any:
    """``value`` as the type of ``default``, exactly: no rounding, no booleans as numbers.

    Strings (from the command line) are parsed; typed values (from TOML) must already have the
    right kind: an integer parameter refuses 2.5 rather than running as 2.
    """
    if default is None or isinstance(default, str):
        return value

    def refuse(reason: str = "") -> ParameterError:
        return ParameterError(f"{owner}: {key}={value!r} must be {_type_name(default)}{reason}")

    if isinstance(value, str):
        text = value.strip()
        if isinstance(default, bool):
            lowered = text.lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                raise refuse()
            return lowered in {"true", "1", "yes"}
        try:
            value = int(text) if isinstance(default, int) else float(text)
        except ValueError:
            raise refuse() from None
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise refuse()
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise refuse()
    if not math.isfinite(value):
        raise refuse()
    if isinstance(default, int):
        if isinstance(value, float) and not value.is_integer():
            raise refuse()
        if not -(2**63) <= value < 2**63:
            raise refuse(" from -2**63 to 2**63 - 1")
        return int(value)
    return float(value)


class Component:
    """Mixin for dataclass components: parameters, construction from a spec, and a description.

    ``display_name`` is how figures, tables and captions name the component ("REINFORCE",
    "Gumbel-softmax (τ = {temperature})"): ``{parameter}`` is replaced by the parameter's
    value, and parameters set to other than their defaults and not in the template follow it,
    each written with its entry in ``parameter_symbols`` (default: the parameter's name). It
    may hold Unicode (τ, ², −) and ``$...$`` mathtext, which LaTeX reads too. Left ``None``,
    it is the registered name with spaces for underscores (see
    :mod:`vrbench.reports.labels`).
    """

    name: ClassVar[str] = "<unregistered>"
    display_name: ClassVar[str | None] = None
    parameter_symbols: ClassVar[Mapping[str, str]] = {}

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """The component's parameters and their defaults."""
        return {f.name: f.default for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None = None) -> Self:
        """Build the component, converting string values and naming any unknown parameter."""
        defaults = cls.parameters()
        converted = {}
        for key, value in (params or {}).items():
            if key not in defaults:
                valid = ", ".join(sorted(defaults)) or "(none)"
                raise ParameterError(
                    f"{cls.name}: unknown parameter {key!r}; valid parameters: {valid}"
                )
            converted[key] = _convert(cls.name, key, value, defaults[key])
        try:
            return cls(**converted)
        except ParameterError:
            raise
        except (TypeError, ValueError, ArithmeticError) as exc:
            raise ParameterError(f"{cls.name}: {exc}") from None

    @classmethod
    def summary(cls) -> str:
        """The docstring's first paragraph, on one line (a sentence may wrap in the source)."""
        doc = (cls.__doc__ or "").strip()
        paragraph = doc.split("\n\n")[0] if doc else ""
        return " ".join(line.strip() for line in paragraph.splitlines())


def check(condition: bool, owner: str, message: str) -> None:
    """Raise a :class:`ParameterError` naming ``owner`` unless ``condition`` holds."""
    if not condition:
        raise ParameterError(f"{owner}: {message}")
