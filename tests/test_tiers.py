"""The slow tier's list (tests/conftest.py) names tests that exist, so it cannot rot."""

import ast
from pathlib import Path

import pytest

from tests.conftest import SLOW

ROOT = Path(__file__).resolve().parent.parent


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.name for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.name.startswith("test")}


@pytest.mark.parametrize("entry", SLOW)
def test_every_slow_entry_names_a_test_file_or_function(entry: str) -> None:
    path, _, function = entry.partition("::")
    assert (ROOT / path).is_file(), f"SLOW lists {entry!r}, but {path} does not exist"
    if function:
        assert function in _test_functions(ROOT / path), \
            f"SLOW lists {entry!r}, but {path} has no test function {function!r}"


def test_the_slow_list_has_no_duplicates() -> None:
    assert len(SLOW) == len(set(SLOW))
