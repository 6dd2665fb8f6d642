"""Estimator plugins that take their process down, installed by entry points for the fault
tests (tests/test_faults.py): each computes the score-function estimate, or fails on purpose.

``VRBENCH_FAULT_MARKERS`` names a directory where ``StopsOnce`` notes the cells it has
stopped in, so that it stops its process the first time only.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from vrbench.estimators.score_function import ScoreFunction


@dataclass(frozen=True)
class Exits(ScoreFunction):
    """Ends its process with ``os._exit(3)``: no exception, no clean-up."""

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        os._exit(3)


@dataclass(frozen=True)
class Segfaults(ScoreFunction):
    """Reads address 0: SIGSEGV."""

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        ctypes.string_at(0)


@dataclass(frozen=True)
class HangsBlockingSignals(ScoreFunction):
    """Blocks every signal it can (SIGALRM included), then sleeps for good."""

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while True:
            time.sleep(3600)


@dataclass(frozen=True)
class StopsOnce(ScoreFunction):
    """Stops its own process (SIGSTOP) the first time it estimates on a problem at an n, then
    computes the score-function estimate like the others."""

    def estimate(self, problem, theta, n_samples, replicates, generator, state=None):
        marker = Path(os.environ["VRBENCH_FAULT_MARKERS"]) / f"{problem.name}-{n_samples}"
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGSTOP)
        return super().estimate(problem, theta, n_samples, replicates, generator, state)
