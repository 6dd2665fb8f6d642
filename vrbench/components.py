"""Parameters shared by problems and estimators, and the ``name:key=value,...`` spec syntax.

A component (problem or estimator) is a frozen dataclass whose fields are its parameters, each
with a default. ``bernoulli_toy:t=0.49,theta=1.0`` names the component and overrides two of
them; values are parsed to the type of the field's default and then validated by the class.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

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


def parse_specs(text: str) -> list[Spec]:
    """Parse ``"a,b:x=1,y=2,c"`` into specs; ``key=value`` binds to the last named component."""
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
            entries[-1][1][key.strip()] = value.strip()
        else:
            entries.append((raw, {}))
    return [Spec(name, params) for name, params in entries]


def _convert(owner: str, key: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str) or isinstance(default, str):
        if isinstance(default, bool) != isinstance(value, bool) and default is not None:
            raise ParameterError(f"{owner}: {key}={value!r} must be a boolean")
        if isinstance(default, int | float) and isinstance(value, int | float):
            return type(default)(value)
        return value
    try:
        if isinstance(default, bool):
            lowered = value.lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                raise ValueError
            return lowered in {"true", "1", "yes"}
        if isinstance(default, int):
            return int(value)
        if isinstance(default, float):
            return float(value)
    except ValueError:
        raise ParameterError(
            f"{owner}: {key}={value!r} is not a valid {type(default).__name__}"
        ) from None
    return value


class Component:
    """Mixin for dataclass components: parameters, construction from a spec, and a description."""

    name: ClassVar[str] = "<unregistered>"

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """The component's parameters and their defaults."""
        return {f.name: f.default for f in dataclasses.fields(cls)}  # type: ignore[arg-type]

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None = None) -> Any:
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
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"{cls.name}: {exc}") from None

    @classmethod
    def summary(cls) -> str:
        """First line of the docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


def check(condition: bool, owner: str, message: str) -> None:
    """Raise a :class:`ParameterError` naming ``owner`` unless ``condition`` holds."""
    if not condition:
        raise ParameterError(f"{owner}: {message}")
