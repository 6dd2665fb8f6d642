"""Where tensors live: the CPU by default, a CUDA GPU on request.

Problems and estimators never name a device. The harness runs a cell inside
:func:`on_device`, which makes the device the default of torch's factory functions
(``torch.zeros``, ``torch.rand``, ...), and hands them θ and random generators on that device,
so code written and tested on the CPU runs unchanged on a GPU. Constants that a problem
derives or draws from a seed (a random MDP, a decoder's weights) are built on the CPU by
:func:`built_on_cpu` or :func:`device_cached` and then moved, so a problem is the same on
every device; only the random stream of the measurement differs between devices.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, Protocol, TypeVar

import torch

from vrbench.errors import VrbenchError

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

DEVICE_TYPES = ("cpu", "cuda")


class DeviceError(VrbenchError):
    """A device that does not exist or is not available on this machine."""


def available_devices() -> list[str]:
    """The device names this machine accepts: ``cpu``, and ``cuda``, ``cuda:0``, ... with GPUs."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return names


def resolve_device(name: str | torch.device) -> torch.device:
    """The device called ``name`` (``cpu``, ``cuda`` or ``cuda:N``), checked to be usable here."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in DEVICE_TYPES:
        raise DeviceError(f"unknown device {str(name)!r}; valid devices: "
                          f"{', '.join(DEVICE_TYPES)} (or cuda:N)")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (device.index is not None and device.index >= count):
            raise DeviceError(f"device {str(name)!r} is not available on this machine "
                              f"(torch sees {count} CUDA device(s)); "
                              f"valid devices here: {', '.join(available_devices())}")
    return device


def default_device() -> torch.device:
    """The device torch's factory functions allocate on here, as ``torch.get_default_device()``
    answers, in a quarter of its time (it walks the mode stack in Python, ~3 µs; problems look
    their cached constants up several times per chunk)."""
    return torch.empty(0).device


@contextlib.contextmanager
def on_device(name: str | torch.device) -> Iterator[torch.device]:
    """Make ``name`` the default device of torch's factory functions inside the block."""
    device = resolve_device(name)
    if device == default_device():
        # Already the default: entering torch's device mode would only add a Python call
        # to every torch operation.
        yield device
        return
    with device:
        yield device


def generator(device: torch.device, seed: int) -> torch.Generator:
    """A random generator on ``device`` seeded with ``seed``."""
    return torch.Generator(device=device).manual_seed(seed)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read afterwards includes it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def to_device(value: T, device: torch.device) -> T:
    """``value`` with every tensor in it (nested in tuples, named tuples, lists, dicts) moved."""
    if isinstance(value, torch.Tensor):
        return value.to(device)  # type: ignore[return-value]
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*(to_device(item, device) for item in value))
    if isinstance(value, tuple | list):
        return type(value)(to_device(item, device) for item in value)
    if isinstance(value, dict):
        return {key: to_device(item, device) for key, item in value.items()}  # type: ignore[return-value]
    return value


def built_on_cpu(build: Callable[..., T]) -> Callable[..., T]:
    """Run ``build`` with the CPU as default device, and return its tensors on the caller's.

    For constants drawn from a seeded CPU generator: they are the same on every device.
    """

    @functools.wraps(build)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        device = default_device()
        with torch.device("cpu"):
            value = build(*args, **kwargs)
        return to_device(value, device)

    return wrapper


class ReadOnlyProperty(Protocol[T_co]):
    """What :func:`device_cached` returns, for the type checker: reading it on an instance
    gives the built value (a ``property`` is one)."""

    def __get__(self, instance: Any, owner: type | None = None, /) -> T_co: ...


def device_cached(build: Callable[[Any], T]) -> ReadOnlyProperty[T]:
    """A read-only property built once per instance and device, by :func:`built_on_cpu`.

    Works on frozen dataclasses (the cache lives in the instance's ``__dict__``).
    """
    build_on_cpu = built_on_cpu(build)
    name = build.__name__

    def get(instance: Any) -> T:
        cache = instance.__dict__.setdefault("_device_cache", {})
        key = (name, default_device())
        if key not in cache:
            cache[key] = build_on_cpu(instance)
        value: T = cache[key]
        return value

    return property(get, doc=build.__doc__)
