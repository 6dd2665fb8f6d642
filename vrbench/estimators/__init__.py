"""Estimators: gradient estimators, one file each, found through :data:`registry`."""

from collections.abc import Callable, Mapping
from typing import Any

from vrbench.estimators.base import Estimator, weighted_score
from vrbench.registry import Registry

registry: Registry[type[Estimator]] = Registry("estimator", "vrbench.estimators")


def register(name: str) -> Callable[[type[Estimator]], type[Estimator]]:
    """Class decorator registering a built-in estimator under ``name``."""
    return registry.register(name)


def make(name: str, params: Mapping[str, Any] | None = None) -> Estimator:
    """Build the estimator ``name`` with parameter overrides (strings are parsed)."""
    return registry.get(name).from_params(params)


# Importing the built-in modules registers them.
from vrbench.estimators import (  # noqa: E402, F401
    arm,
    arms,
    baseline,
    dapo,
    delta_control_variate,
    delta_method,
    delta_method_second_order,
    dr_grpo,
    ema_baseline,
    exact,
    grpo,
    gspo,
    gumbel_rao,
    indecater,
    lax,
    measure_valued,
    muprop,
    noise_schemes,
    nvil,
    optimal_baseline,
    ppo_clip,
    rebar,
    reinforce_pp,
    reinforce_sequence,
    relaxed,
    reparameterization,
    reward_to_go,
    rloo,
    rloo_group,
    rloo_importance_weighted,
    score_function,
    vimco,
    without_replacement,
)

__all__ = ["Estimator", "make", "register", "registry", "weighted_score"]
