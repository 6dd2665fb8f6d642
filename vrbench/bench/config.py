"""Sweep configuration files (TOML), validated before any work starts.

Example::

    output = "results"
    n_samples = [1, 4, 16]
    replicates = 10000
    seeds = [0]
    estimators = ["score_function", "rloo", { name = "score_function_baseline", fit_samples = 100 }]
    problems = ["bernoulli_toy:t=0.49", { name = "frozenlake", horizon = 50 },
                { name = "gaussian_cosine", omega = { grid = [0.5, 1, 2, 4] } }]

A parameter grid (see :mod:`vrbench.components`) makes one problem or estimator per value,
each measured in cells of its own: stored, resumed and run in parallel like any other.
Omitted ``estimators`` or ``problems`` mean every registered one. Unknown keys, wrong types,
unknown names and bad component parameters are refused with the file, the key (and the
entry) and what was expected.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vrbench import estimators, problems
from vrbench.bench.cells import DEFAULT_MAX_MEMORY_MB
from vrbench.bench.reference import (
    DEFAULT_MAX_ESTIMATES,
    DEFAULT_PRECISION,
    PILOT_ESTIMATES,
    ReferenceSettings,
)
from vrbench.components import Spec, expand_grids, parse_specs
from vrbench.errors import VrbenchError


class ConfigError(VrbenchError):
    """A configuration file that cannot be used."""


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep runs and where its results go."""

    estimators: list[Spec] | None = None  # None: every registered estimator
    problems: list[Spec] | None = None  # None: every registered problem
    n_samples: list[int] = field(default_factory=lambda: [1, 4, 16])
    replicates: int = 10_000
    seeds: list[int] = field(default_factory=lambda: [0])
    output: str = "results"
    jobs: int | None = None  # None: every core
    cell_timeout: float | None = None  # seconds; None: no limit
    max_memory_mb: int = DEFAULT_MAX_MEMORY_MB  # working memory of one cell
    threads: int | None = None  # torch threads per worker; None: cores / jobs
    device: str = "cpu"  # where estimates are computed: cpu, cuda or cuda:N
    reference_precision: float = DEFAULT_PRECISION  # of references where no exact ∇J exists
    reference_estimates: int = DEFAULT_MAX_ESTIMATES  # their budget, in estimates

    @property
    def reference(self) -> ReferenceSettings:
        """How references are computed for problems without an exact gradient."""
        return ReferenceSettings(self.reference_precision, self.reference_estimates)

    def resolved(self) -> dict[str, Any]:
        """The configuration as plain data, for provenance."""
        return {
            "estimators": None if self.estimators is None else [str(s) for s in self.estimators],
            "problems": None if self.problems is None else [str(s) for s in self.problems],
            "n_samples": self.n_samples,
            "replicates": self.replicates,
            "seeds": self.seeds,
            "output": self.output,
            "jobs": self.jobs,
            "cell_timeout": self.cell_timeout,
            "max_memory_mb": self.max_memory_mb,
            "threads": self.threads,
            "device": self.device,
            "reference_precision": self.reference_precision,
            "reference_estimates": self.reference_estimates,
        }


_EXPECTED = {
    "estimators": "a list of names, 'name:key=value' strings or {name = ..., key = value} tables",
    "problems": "a list of names, 'name:key=value' strings or {name = ..., key = value} tables",
    "n_samples": "a non-empty list of positive integers",
    "replicates": "an integer >= 2",
    "seeds": "a non-empty list of integers",
    "output": "a directory path (string)",
    "jobs": "a positive integer",
    "cell_timeout": "a positive number of seconds",
    "max_memory_mb": "an integer number of MiB >= 16",
    "threads": "a positive integer",
    "device": "a device name: cpu, cuda or cuda:N",
    "reference_precision": "a number in (0, 1): the standard error of a reference gradient "
                           "relative to ‖∇J‖",
    "reference_estimates": f"an integer >= {PILOT_ESTIMATES}: the most estimates a reference "
                           "gradient averages",
}


def _specs(where: str, key: str, value: Any) -> list[Spec]:
    """The specs of an ``estimators`` or ``problems`` list, each built once to check it;
    ``where`` names the key's origin in errors."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: expected {_EXPECTED[key]}")
    registry = estimators if key == "estimators" else problems
    specs: list[Spec] = []
    for index, item in enumerate(value, 1):
        try:
            if isinstance(item, str):
                entry = parse_specs(item)
            elif isinstance(item, dict) and isinstance(item.get("name"), str):
                entry = expand_grids(
                    Spec(item["name"], {k: v for k, v in item.items() if k != "name"}))
            else:
                raise ConfigError(f"{where}: entry {item!r} is not a name or a table with a "
                                  "name")
            for spec in entry:
                registry.make(spec.name, spec.params)
        except ConfigError:
            raise
        except VrbenchError as exc:
            raise ConfigError(f"{where}, entry {index} ({item!r}): {exc}") from None
        specs.extend(entry)
    return specs


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


_VALID: dict[str, Callable[[Any], bool]] = {
    "n_samples": lambda v: isinstance(v, list) and bool(v)
    and all(_is_int(x) and x >= 1 for x in v),
    "seeds": lambda v: isinstance(v, list) and bool(v) and all(_is_int(x) for x in v),
    "replicates": lambda v: _is_int(v) and v >= 2,
    "output": lambda v: isinstance(v, str) and bool(v),
    "jobs": lambda v: _is_int(v) and v >= 1,
    "cell_timeout": lambda v: _is_number(v) and v > 0,
    "max_memory_mb": lambda v: _is_int(v) and v >= 16,
    "threads": lambda v: _is_int(v) and v >= 1,
    "device": lambda v: isinstance(v, str) and re.fullmatch(r"cpu|cuda(:\d+)?", v) is not None,
    "reference_precision": lambda v: _is_number(v) and 0 < v < 1,
    "reference_estimates": lambda v: _is_int(v) and v >= PILOT_ESTIMATES,
}
"""How each scalar or list key is checked; ``_EXPECTED`` says the same in words."""


def _checked(where: str, key: str, value: Any) -> Any:
    """``value`` for ``key`` once valid, else a :class:`ConfigError` naming ``where``."""
    if key in ("estimators", "problems"):
        return _specs(where, key, value)
    if not _VALID[key](value):
        raise ConfigError(f"{where} = {value!r}: expected {_EXPECTED[key]}")
    return float(value) if key in ("cell_timeout", "reference_precision") else value


def with_overrides(config: SweepConfig, values: Mapping[str, Any],
                   origins: Mapping[str, str]) -> SweepConfig:
    """``config`` with ``values`` in place of its own, each checked as in a file and named by
    ``origins[key]`` (e.g. ``"option -p/--problems"``) when refused."""
    checked = {key: _checked(origins.get(key, f"key {key!r}"), key, value)
               for key, value in values.items()}
    return dataclasses.replace(config, **checked)


def parse_config(data: dict[str, Any], source: str = "<config>") -> SweepConfig:
    """Validate a decoded TOML document into a :class:`SweepConfig`."""
    unknown = sorted(set(data) - set(_EXPECTED))
    if unknown:
        import difflib

        key = unknown[0]
        close = difflib.get_close_matches(key, list(_EXPECTED), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"{source}: unknown key {key!r}{hint}; valid keys: {', '.join(sorted(_EXPECTED))}"
        )
    return SweepConfig(**{key: _checked(f"{source}: key {key!r}", key, value)
                          for key, value in data.items()})


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a TOML sweep configuration."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, str(path))
