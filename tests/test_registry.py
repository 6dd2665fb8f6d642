"""Registries, entry-point plugins and the ``name:key=value`` spec syntax."""

from __future__ import annotations

import pytest

from vrbench import estimators, problems
from vrbench.components import Spec, parse_specs
from vrbench.errors import ParameterError, UnknownNameError
from vrbench.registry import Registry


def test_unknown_name_lists_valid_names_and_suggests_the_closest():
    with pytest.raises(UnknownNameError) as info:
        estimators.registry.get("rlo")
    message = str(info.value)
    assert "Did you mean 'rloo'?" in message
    for name in estimators.registry.names():
        assert name in message


def test_seed_components_are_registered_by_exact_name():
    assert {"score_function", "score_function_baseline", "rloo", "reparameterization"} <= set(
        estimators.registry.names()
    )
    assert {
        "bernoulli_toy",
        "gaussian_quadratic",
        "gaussian_step",
        "bandit_gaussian_10",
        "frozenlake",
    } <= set(problems.registry.names())


class _FakeEntryPoint:
    def __init__(self, name, target):
        self.name, self.value, self.dist = name, f"fake_pkg:{name}", None
        self._target = target

    def load(self):
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


def test_entry_point_plugins_load_and_broken_ones_are_reported(monkeypatch):
    class Plugin:
        pass

    points = [_FakeEntryPoint("good", Plugin), _FakeEntryPoint("bad", ImportError("no module"))]
    monkeypatch.setattr("vrbench.registry.entry_points", lambda group: points)
    registry = Registry("estimator", "vrbench.estimators")
    assert registry.names() == ["good"]
    assert registry.entry("good").origin == "plugin (fake_pkg)"
    assert Plugin.name == "good"
    assert "ImportError: no module" in registry.plugin_errors["bad"]


def test_plugin_cannot_shadow_a_builtin(monkeypatch):
    registry = Registry("estimator", "vrbench.estimators")

    @registry.register("mine")
    class Builtin:
        pass

    monkeypatch.setattr(
        "vrbench.registry.entry_points", lambda group: [_FakeEntryPoint("mine", object)]
    )
    assert registry.get("mine") is Builtin
    assert "already taken" in registry.plugin_errors["mine"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a,b", [Spec("a"), Spec("b")]),
        ("bernoulli_toy:t=0.49,theta=1.0", [Spec("bernoulli_toy", {"t": "0.49", "theta": "1.0"})]),
        ("a:x=1,b,c:y=2,z=3", [Spec("a", {"x": "1"}), Spec("b"), Spec("c", {"y": "2", "z": "3"})]),
        (" a , ", [Spec("a")]),
    ],
)
def test_parse_specs(text, expected):
    assert parse_specs(text) == expected


def test_parameter_before_any_name_is_an_error():
    with pytest.raises(ParameterError, match="comes before any component name"):
        parse_specs("x=1,a")


def test_parameters_are_converted_to_the_default_type():
    problem = problems.make("frozenlake", {"horizon": "7", "slippery": "false", "gamma": "0.5"})
    assert (problem.horizon, problem.slippery, problem.gamma) == (7, False, 0.5)
    with pytest.raises(ParameterError, match=r"horizon='7\.5' must be an integer"):
        problems.make("frozenlake", {"horizon": "7.5"})


def test_readme_estimator_example_registers_and_passes_conformance(monkeypatch):
    from pathlib import Path

    from vrbench.testing import check_estimator

    readme = Path(__file__).resolve().parents[1] / "README.md"
    code = readme.read_text().split("```python\n")[1].split("```")[0]
    monkeypatch.setattr(estimators.registry, "_entries", dict(estimators.registry._entries))
    namespace: dict[str, object] = {}
    exec(code, namespace)
    assert "my_estimator" in estimators.registry.names()
    check_estimator(namespace["MyEstimator"], problems=["bernoulli_toy"]).raise_if_failed()
