"""Device checks without a GPU: run a component on torch's ``meta`` device as if it were one.

Meta tensors carry shapes but no data, so a tensor left on the CPU (a constant built without
:mod:`vrbench.devices`, a NumPy round trip) makes torch raise "not on the expected device",
exactly as it would on CUDA. See :class:`MetaDevice`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from vrbench.estimators.base import Estimator
from vrbench.problems.base import Problem

META_BATCH = 8
META_VALUE_READS = 10_000

ESTIMATOR_ADVICE = ("draw every random number from the generator argument of estimate() or "
                    "fit()")
PROBLEM_ADVICE = ("draw samples from the generator argument of sample(); build seeded "
                  "constants with vrbench.devices.built_on_cpu or device_cached")


class MetaDevice(TorchFunctionMode):
    """Run code on torch's meta device as if it were a GPU, to find device bugs on a CPU.

    Use as ``with torch.device("meta"), MetaDevice(generators): ...``. Meta tensors have no
    values, so reading one (``bool``, ``int``, ``float``, ``item``) gets a fixed answer
    (true, 1) instead of an error; after :data:`META_VALUE_READS` such reads the run stops, in
    case a loop waits on a sampled value. Random draws must come from ``generators`` (those
    handed to the component): on a GPU any other generator would live on the CPU and fail.
    Seeded constants belong in :func:`vrbench.devices.built_on_cpu`, which this allows.
    """

    _READS: ClassVar[dict[Any, Any]] = {
        Tensor.__bool__: True, Tensor.__int__: 1, Tensor.__index__: 1,
        Tensor.__float__: 1.0, Tensor.item: 1,
    }

    def __init__(self, generators: Iterable[torch.Generator],
                 advice: str = PROBLEM_ADVICE) -> None:
        super().__init__()
        self.generators = list(generators)
        self.advice = advice
        self.reads = 0

    def __torch_function__(self, func: Any, types: Any, args: tuple[Any, ...] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        kwargs = kwargs or {}
        if func in self._READS and args and isinstance(args[0], Tensor) and args[0].is_meta:
            self.reads += 1
            if self.reads > META_VALUE_READS:
                raise RuntimeError(f"read {META_VALUE_READS} tensor values on the meta device; "
                                   "does a loop wait on a sampled value?")
            return self._READS[func]
        drawn_from = kwargs.get("generator")
        if (drawn_from is not None and all(drawn_from is not g for g in self.generators)
                and _draw_device(args, kwargs).type == "meta"):
            raise RuntimeError(
                f"{getattr(func, '__name__', func)} draws from a generator that was not handed "
                f"in; off the CPU it would not match the device ({self.advice})")
        return func(*args, **kwargs)


def _draw_device(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.device:
    """Where a random function draws: its ``device`` argument, else its input's device."""
    if kwargs.get("device") is not None:
        return torch.device(kwargs["device"])
    tensors = [a for a in args if isinstance(a, Tensor)]
    return tensors[0].device if tensors else torch.get_default_device()


def meta_estimates_failure(estimator: Estimator, problem: Problem, n: int) -> str | None:
    """Why ``estimator`` cannot run on ``problem`` off the CPU, or None (see MetaDevice)."""
    fit_generator, generator = torch.Generator(), torch.Generator()
    try:
        with torch.device("meta"), MetaDevice([fit_generator, generator], ESTIMATOR_ADVICE):
            theta = problem.check_theta()
            state = estimator.fit(problem, theta, fit_generator)
            estimates = estimator.estimate(problem, theta, n, META_BATCH, generator, state)
    except Exception as exc:
        return f"raised {type(exc).__name__}: {exc}"
    if not isinstance(estimates, Tensor) or not estimates.is_meta:
        return "estimates were not on the device of θ"
    return None


def meta_problem_failure(problem: Problem) -> str | None:
    """Why ``problem`` cannot run off the CPU, or None (see MetaDevice)."""
    generator = torch.Generator()
    try:
        with torch.device("meta"), MetaDevice([generator]):
            theta = problem.check_theta()
            samples = problem.sample(theta, (4, 2), generator)
            outputs = {"initial θ": problem.initial_theta(), "check θ": theta,
                       "f": problem.f(samples), "score": problem.score(theta, samples)}
            if problem.has_exact_gradient:
                outputs.update(J=problem.value(theta), **{"∇J": problem.exact_grad(theta)})
            elif type(problem).numerical_reference is not Problem.numerical_reference:
                numerical = problem.numerical_reference(theta)
                outputs.update(J=numerical.value, **{"∇J": numerical.grad})
    except Exception as exc:
        return f"raised {type(exc).__name__}: {exc}"
    stray = [name for name, tensor in outputs.items() if not tensor.is_meta]
    return f"{', '.join(stray)} not on the device of θ" if stray else None
