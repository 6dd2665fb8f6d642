"""Problems: objectives with exact gradients, one file each, found through :data:`registry`."""

from collections.abc import Callable, Mapping
from typing import Any

from vrbench.problems.base import DTYPE, Capability, Problem
from vrbench.registry import Registry

registry: Registry[type[Problem]] = Registry("problem", "vrbench.problems")


def register(name: str) -> Callable[[type[Problem]], type[Problem]]:
    """Class decorator registering a built-in problem under ``name``."""
    return registry.register(name)


def make(name: str, params: Mapping[str, Any] | None = None) -> Problem:
    """Build the problem ``name`` with parameter overrides (strings are parsed)."""
    return registry.get(name).from_params(params)


# Importing the built-in modules registers them.
from vrbench.problems import (  # noqa: E402, F401
    bandits,
    bernoulli,
    categorical,
    categorical_vae,
    gaussian,
    ising,
    iwae,
    logistic,
    lqr,
    mdp,
    potts,
    sequences,
    vae,
)

__all__ = ["DTYPE", "Capability", "Problem", "make", "register", "registry"]
