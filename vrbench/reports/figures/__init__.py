"""The figures of a report, each registered (see :mod:`vrbench.reports.registry`) beside the
function that draws it from a :class:`~vrbench.reports.registry.FigureContext`.

Every figure function returns a list of pages ``(suffix, Figure)``: one page when its
panels fit in :data:`~vrbench.reports.style.PAGE_HEIGHT_IN`, else several, each complete
with its legend (``suffix`` is ``""``, ``"-1"``, ``"-2"``, ... or ``"-<problem>"`` with the
per-problem layout). The conventions follow the field's papers: variance on a log axis
against samples or as a ratio to REINFORCE (Grathwohl et al. 2018, fig. 1 and table 1;
Dong et al. 2020, figs. 2 and 5), estimators coloured by family (Mohamed et al. 2020).

Exact estimators (see :data:`~vrbench.reports.values.EXACT_RTOL`) are drawn in a shaded
strip at the bottom of a log axis, labelled "exact", never dropped.

The modules are imported in the order of the report's page: each registers its figures
as it is imported, and the page shows them in the order they were registered.
"""

# The order of the page: not sorted.
# isort: off
from vrbench.reports.figures.variance import bias_vs_variance, variance_vs_samples
from vrbench.reports.figures.work import work_normalized
from vrbench.reports.figures.heatmap import relative_variance_heatmap
from vrbench.reports.figures.temperature import bias_vs_temperature
from vrbench.reports.figures.landscape import (
    _defaults,
    parameter_grids,
    swept_parameters,
    variance_vs_parameter,
)
from vrbench.reports.figures.training import training_traces, training_variance
from vrbench.reports.figures.vae import training_gap
from vrbench.reports.figures.shared_run import shared_run_variance
# isort: on
from vrbench.reports.registry import FigureContext, NotDrawn, Pages

__all__ = [
    "FigureContext",
    "NotDrawn",
    "Pages",
    "_defaults",
    "bias_vs_temperature",
    "bias_vs_variance",
    "parameter_grids",
    "relative_variance_heatmap",
    "shared_run_variance",
    "swept_parameters",
    "training_gap",
    "training_traces",
    "training_variance",
    "variance_vs_parameter",
    "variance_vs_samples",
    "work_normalized",
]
