"""The shared-run figure (``vrbench train --measure``): every estimator's variance at the same
θ_t along one optimization run."""

from __future__ import annotations

import pandas as pd
from matplotlib.axes import Axes

from vrbench.reports.figures.legend import EstimatorLegend
from vrbench.reports.figures.pages import CURVE_COLUMNS, problem_figures
from vrbench.reports.figures.training import (
    draw_variance_along_steps,
    gradient_norm_handle,
    train_settings,
)
from vrbench.reports.registry import (
    NO_SHARED_RUNS,
    FigureContext,
    Needs,
    NotDrawn,
    Pages,
    figure,
)

MAX_GROUP_PANELS = 4
"""Most parameter groups drawn as panels of their own in the shared-run figure."""


def _by_group(shared: pd.DataFrame) -> pd.DataFrame:
    """The shared-run rows with one row per parameter group (``problem`` naming the panel,
    ``variance`` and ``true_grad_norm`` the group's) where a problem has 2 to
    :data:`MAX_GROUP_PANELS` groups; otherwise the rows as they are."""
    if "parameter_groups" not in shared:
        return shared
    parts = []
    for problem, rows in shared.groupby("problem", sort=False):
        names = rows["parameter_groups"].dropna()
        count = len(names.iloc[0]) if not names.empty else 0
        if not 2 <= count <= MAX_GROUP_PANELS:
            parts.append(rows)
            continue
        for index, group in enumerate(names.iloc[0]):
            parts.append(rows.assign(
                problem=f"{problem}: {group}",
                variance=rows["group_variance"].map(lambda v, i=index: v[i]),
                true_grad_norm=rows["group_true_grad_norm"].map(lambda v, i=index: v[i])))
    return pd.concat(parts, ignore_index=True)


def _biased_by_claim(rows: pd.DataFrame) -> set[str]:
    """Estimators of ``rows`` (specs) that do not claim to be unbiased, by their registry."""
    from vrbench import estimators
    from vrbench.components import parse_specs

    biased = set()
    for name in set(rows["estimator"]):
        try:
            (spec,) = parse_specs(name)
            if not estimators.make(spec.name, spec.params).unbiased:
                biased.add(name)
        except Exception:  # an estimator this installation does not know
            continue
    return biased


def _caption(context: FigureContext) -> str:
    shared = context.shared
    assert shared is not None  # drawn
    exact = "reference" not in shared or (shared["reference"].fillna("exact") == "exact").all()
    truth = ("the exact ‖∇J(θ_t)‖²" if exact else
             "‖∇J(θ_t)‖² of the reference (variances and biases vs reference, ± its "
             "standard error)")
    return ("Variance of one estimate of every estimator at the same θ_t along one "
            "optimization run (geometric mean over seeds, min–max band), per parameter group "
            f"where θ has a few; dashed: {truth}.")


@figure("shared_run_variance", Needs.SHARED_RUNS, _caption, title="Variance along a shared run")
def shared_run_variance(context: FigureContext) -> Pages:
    """Variance of one estimate of every estimator at the same θ_t along one optimization run
    (``vrbench train --measure``), geometric mean over seeds with a min–max band, beside
    ‖∇J(θ_t)‖² (dashed), a panel per problem and, where θ has a few parameter groups, per
    group: the figure of Dong et al. (2020, figure 2), Tucker et al. (2017) and Mohamed et
    al. (2020, section 8), with every estimator measured at the same θ_t."""
    styles, fig_style, labels = context.estimator_styles, context.figure_style, context.labels
    shared = context.shared
    if shared is None:
        raise NotDrawn(NO_SHARED_RUNS)
    if "variance" not in shared or shared["variance"].notna().sum() == 0:
        raise NotDrawn("the shared runs hold no measured variance")
    shared = _by_group(shared[shared["variance"].notna()])
    extras = [gradient_norm_handle(shared.get("reference"))]

    def draw(ax: Axes, problem: str) -> None:
        draw_variance_along_steps(ax, shared[shared["problem"] == problem], styles, fig_style)

    def title(panel: str) -> str:  # "problem: parameter group" where θ is drawn by group
        problem, _, group = panel.partition(": ")
        return labels.problem(problem) + (f": {group}" if group else "")

    drivers = sorted(set(shared["driver"].dropna())) if "driver" in shared else []
    driven = ([f"(run driven by {', '.join(labels.estimator(d) for d in drivers)})"]
              if drivers else [])
    return problem_figures(context,
                           EstimatorLegend(shared, styles, labels, _biased_by_claim(shared),
                                           extras=extras), draw,
                           ["optimization step", *driven, *train_settings(shared)],
                           ["variance of one estimate", "at θ_t", "(log scale)"],
                           columns=min(CURVE_COLUMNS, fig_style.columns), title=title)
