"""The bias of relaxed estimators (Gumbel-softmax, Concrete) against their temperature."""

from __future__ import annotations

import json

import pandas as pd
from matplotlib.axes import Axes

from vrbench.reports.figures.common import log_axes
from vrbench.reports.figures.legend import EstimatorLegend
from vrbench.reports.figures.pages import CURVE_COLUMNS, problem_figures
from vrbench.reports.registry import FigureContext, Needs, NotDrawn, Pages, figure
from vrbench.reports.style import estimator_order
from vrbench.reports.values import ok_cells


@figure("bias_vs_temperature", Needs.CELLS, lambda context: (
    "Bias of the relaxed (biased) estimators against their temperature at "
    f"n = {context.n}."), title="Bias against temperature")
def bias_vs_temperature(context: FigureContext) -> Pages:
    """Bias of relaxed estimators against their temperature at one ``n``, one panel per
    problem.

    Drawn when the results hold an estimator at several temperatures, e.g. from
    ``-e gumbel_softmax:temperature=0.1,gumbel_softmax:temperature=1``; the bias of the
    relaxation shrinks as the temperature goes to zero.
    """
    styles, fig_style, n = context.estimator_styles, context.figure_style, context.sample_size()
    ok = ok_cells(context.cells)
    params = ok["estimator_params"].fillna("{}").map(json.loads)
    temperature = params.map(lambda p: p.get("temperature"))
    ok = ok.assign(temperature=pd.to_numeric(temperature, errors="coerce"),
                   base=ok["estimator"].str.split(":").str[0])
    ok = ok[ok["temperature"].notna() & (ok["n_samples"] == n)]
    ok = ok[ok.groupby(["problem", "base"])["temperature"].transform("nunique") > 1]
    if ok.empty:
        raise NotDrawn(f"needs one estimator at several temperatures at n = {n} (e.g. -e "
                       "'gumbel_softmax:temperature=0.1,gumbel_softmax:temperature=1')")
    base_styles = {base: styles[min(v for v in styles if v.split(":")[0] == base)]
                   for base in ok["base"].unique()}

    def draw(ax: Axes, problem: str) -> None:
        rows = ok[ok["problem"] == problem]
        for base in estimator_order(rows["base"]):
            group = rows[rows["base"] == base].sort_values("temperature")
            ax.plot(group["temperature"], group["bias_norm"], markersize=fig_style.marker,
                    **{**base_styles[base].line_kwargs(), "linestyle": "-"})
        log_axes(ax)

    return problem_figures(context,
                           EstimatorLegend(ok, base_styles, context.labels, column="base"),
                           draw, ["temperature τ", f"at n = {n}", "(log scale)"],
                           ["‖bias‖", "(log scale)"],
                           columns=min(CURVE_COLUMNS, fig_style.columns))

