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
from vrbench.bench.cells import DEFAULT_MAX_MEMORY_MB, resolve_spec
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


CONFIRM_CELLS = 10_000
"""A sweep that plans more cells than this runs only when confirmed (``--yes``)."""
MAX_N_SAMPLES = 100_000
MAX_REPLICATES = 10**9
MAX_SAMPLES_PER_CELL = 10**10
"""Most samples one cell may draw (n × R): a bound on its time, whatever the problem."""
MAX_TIMEOUT_S = 7 * 24 * 3600.0
MAX_JOBS = 1024
MAX_MEMORY_MB = 2**20
INT64 = (-(2**63), 2**63 - 1)

_EXPECTED = {
    "estimators": "a list of names, 'name:key=value' strings or {name = ..., key = value} tables",
    "problems": "a list of names, 'name:key=value' strings or {name = ..., key = value} tables",
    "n_samples": f"a non-empty list of distinct integers from 1 to {MAX_N_SAMPLES:,}",
    "replicates": f"an integer from 2 to {MAX_REPLICATES:,}",
    "seeds": "a non-empty list of distinct integers from -2**63 to 2**63 - 1",
    "output": "a directory path (string)",
    "jobs": f"an integer from 1 to {MAX_JOBS}",
    "cell_timeout": f"a number of seconds from 0.01 to {MAX_TIMEOUT_S:.0f} (a week)",
    "max_memory_mb": f"an integer number of MiB from 16 to {MAX_MEMORY_MB} (1 TiB)",
    "threads": f"an integer from 1 to {MAX_JOBS}",
    "device": "a device name: cpu, cuda or cuda:N",
    "reference_precision": "a number in (0, 1): the standard error of a reference gradient "
                           "relative to ‖∇J‖",
    "reference_estimates": f"an integer from {PILOT_ESTIMATES} to {MAX_REPLICATES:,}: the most "
                           "estimates a reference gradient averages",
}


def _specs(where: str, key: str, value: Any) -> list[Spec]:
    """The specs of an ``estimators`` or ``problems`` list, each built once to check it and
    written as the component holds its values; ``where`` names the key's origin in errors.
    An entry that names nothing, or a component listed twice, is refused."""
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where}: expected {_EXPECTED[key]}")
    registry = estimators if key == "estimators" else problems
    kind = key[:-1]
    specs: list[Spec] = []
    seen: dict[str, tuple[int, Any]] = {}
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
            if not entry:
                raise ConfigError(f"{where}, entry {index} ({_shown(item)}): names no {kind}")
            for spec in entry:
                canonical, _ = resolve_spec(registry, spec)
                if str(canonical) in seen:
                    first, first_item = seen[str(canonical)]
                    where_first = ("the same entry" if first == index
                                   else f"entry {first} ({_shown(first_item)})")
                    raise ConfigError(f"{where}, entry {index} ({_shown(item)}): {canonical} is "
                                      f"already listed, in {where_first}; list each {kind} "
                                      "once")
                seen[str(canonical)] = (index, item)
        except ConfigError:
            raise
        except VrbenchError as exc:
            raise ConfigError(f"{where}, entry {index} ({_shown(item)}): {exc}") from None
        specs.extend(entry)
    return specs


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int_list(value: Any, low: int, high: int) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(_is_int(x) and low <= x <= high for x in value)
            and len(set(value)) == len(value))


def _repeats(value: Any) -> bool:
    return (isinstance(value, list) and all(_is_int(x) for x in value)
            and len(set(value)) < len(value))


_VALID: dict[str, Callable[[Any], bool]] = {
    "n_samples": lambda v: _int_list(v, 1, MAX_N_SAMPLES),
    "seeds": lambda v: _int_list(v, *INT64),
    "replicates": lambda v: _is_int(v) and 2 <= v <= MAX_REPLICATES,
    "output": lambda v: isinstance(v, str) and bool(v.strip()) and "\0" not in v,
    "jobs": lambda v: _is_int(v) and 1 <= v <= MAX_JOBS,
    "cell_timeout": lambda v: _is_number(v) and 0.01 <= v <= MAX_TIMEOUT_S,
    "max_memory_mb": lambda v: _is_int(v) and 16 <= v <= MAX_MEMORY_MB,
    "threads": lambda v: _is_int(v) and 1 <= v <= MAX_JOBS,
    "device": lambda v: isinstance(v, str) and re.fullmatch(r"cpu|cuda(:\d{1,4})?", v) is not None,
    "reference_precision": lambda v: _is_number(v) and 0 < v < 1,
    "reference_estimates": lambda v: _is_int(v) and PILOT_ESTIMATES <= v <= MAX_REPLICATES,
}
"""How each scalar or list key is checked; ``_EXPECTED`` says the same in words."""


def _checked(where: str, key: str, value: Any) -> Any:
    """``value`` for ``key`` once valid, else a :class:`ConfigError` naming ``where``."""
    if key in ("estimators", "problems"):
        return _specs(where, key, value)
    if not _VALID[key](value):
        hint = " (a value is listed twice)" if _repeats(value) else ""
        raise ConfigError(f"{where} = {_shown(value)}{hint}: expected {_EXPECTED[key]}")
    return float(value) if key in ("cell_timeout", "reference_precision") else value


def _shown(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text):,} characters)"


def _check_samples(config: SweepConfig, origins: Mapping[str, str]) -> SweepConfig:
    """Refuse cells that would draw more than :data:`MAX_SAMPLES_PER_CELL` samples."""
    largest = max(config.n_samples)
    if largest * config.replicates > MAX_SAMPLES_PER_CELL:
        raise ConfigError(
            f"{origins['n_samples']} and {origins['replicates']}: n = {largest:,} samples × "
            f"R = {config.replicates:,} replicates is {largest * config.replicates:,} "
            f"samples in one cell, more than {MAX_SAMPLES_PER_CELL:,}: hours or days of "
            "work for one number; use fewer replicates or samples")
    return config


def with_overrides(config: SweepConfig, values: Mapping[str, Any],
                   origins: Mapping[str, str]) -> SweepConfig:
    """``config`` with ``values`` in place of its own, each checked as in a file and named by
    ``origins[key]`` (e.g. ``"option -p/--problems"``) when refused."""
    checked = {key: _checked(origins.get(key, f"key {key!r}"), key, value)
               for key, value in values.items()}
    names = {key: origins.get(key, f"key {key!r}") for key in ("n_samples", "replicates")}
    return _check_samples(dataclasses.replace(config, **checked), names)


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
    config = SweepConfig(**{key: _checked(f"{source}: key {key!r}", key, value)
                            for key, value in data.items()})
    names = {key: f"{source}: key {key!r}" if key in data else f"the default {key}"
             for key in ("n_samples", "replicates")}
    return _check_samples(config, names)


def load_config(path: str | Path) -> SweepConfig:
    """Read and validate a TOML sweep configuration."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
                          f"{exc.start}); TOML files are UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse_config(data, str(path))
