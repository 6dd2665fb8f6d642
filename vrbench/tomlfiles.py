"""Reading the TOML files users write by hand (recipes, figure specs), with errors that name
the file and what is wrong in it."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vrbench.errors import VrbenchError


def read_toml(path: Path, what: str, error: type[VrbenchError]) -> dict[str, Any]:
    """The table in the TOML file at ``path``, a ``what`` (``"recipe"``, ``"figure spec"``);
    raises ``error`` when there is no such file or it is not valid TOML."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"no {what} at {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path} is not valid TOML: {exc}") from None


def refuse_unknown_keys(data: dict[str, Any], valid: Sequence[str], path: Path,
                        error: type[VrbenchError]) -> None:
    """Raise ``error`` naming the first key of ``data`` (alphabetically) not in ``valid``, so
    that a misspelt key is not silently ignored."""
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise error(f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(valid)}")
