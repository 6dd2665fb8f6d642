"""vrbench: a benchmark suite for Monte Carlo gradient estimators and variance reduction.

Problems (:mod:`vrbench.problems`) define ``J(θ) = E_{x~p(x;θ)}[f(x)]`` with its exact
gradient; estimators (:mod:`vrbench.estimators`) produce batches of gradient estimates; the
harness (:mod:`vrbench.bench`) measures their bias, variance and time; reports
(:mod:`vrbench.reports`) render the comparison.
"""

__version__ = "0.3.0"
