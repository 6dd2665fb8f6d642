"""An example vrbench plugin: one estimator and one problem, registered by entry points."""

from vrbench_plugin_example.estimator import MedianBaseline
from vrbench_plugin_example.problem import PoissonCapped

__all__ = ["MedianBaseline", "PoissonCapped"]
