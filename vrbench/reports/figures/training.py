"""The figures of optimization traces (``vrbench train``): the objective along the run, by
step or by time, and the variance of the estimator at θ_t."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D

from vrbench.reports.axes import log_axis
from vrbench.reports.figures.legend import EstimatorLegend
from vrbench.reports.figures.pages import CURVE_COLUMNS, problem_figures
from vrbench.reports.registry import (
    NO_TRACES,
    FigureContext,
    FigureEntry,
    Needs,
    NotDrawn,
    Pages,
    figure,
    register,
)
from vrbench.reports.style import EstimatorStyle, FigureStyle, estimator_order

BAND_ALPHA = 0.15
"""Opacity of the min–max band over seeds, beneath its estimator's line."""
MARKS_PER_CURVE = 5
"""A curve of many steps carries about this many markers (enough to tell it apart)."""


TRAINING_METRICS = {"train_elbo": "training ELBO", "test_bound": "100-sample test bound"}
"""Columns of the training metrics of models of data sets, and their axis labels."""


def training_traces(context: FigureContext, x: str, column: str = "value") -> Pages:
    """Exact objective along optimization, mean over seeds with a min–max band; ``x`` is
    ``"step"`` or ``"wall_s"``. The comparison of the REBAR, RELAX and DisARM papers, with
    J(θ) exact instead of a Monte Carlo bound. ``column`` one of :data:`TRAINING_METRICS`
    draws a model's training ELBO or its test bound instead (the papers' own figures: Dong et
    al. 2020, figures 2 and 5). Panels are the problems whose traces hold the column."""
    styles, fig_style, traces = context.estimator_styles, context.figure_style, context.traces
    if traces is None or traces.empty:
        raise NotDrawn(NO_TRACES)
    if column not in traces or pd.to_numeric(traces[column], errors="coerce").notna().sum() == 0:
        raise NotDrawn(no_column(column))
    traces = traces[pd.to_numeric(traces[column], errors="coerce").notna()]
    if column != "value":
        traces = traces.assign(value=traces[column].astype(float))

    def draw(ax: Axes, problem: str) -> None:
        rows = traces[traces["problem"] == problem]
        for estimator in estimator_order(rows["estimator"]):
            group = rows[rows["estimator"] == estimator]
            by_step = group.groupby("step").agg(x=(x, "mean"), mean=("value", "mean"),
                                                low=("value", "min"), high=("value", "max"))
            if x == "wall_s":  # log time: the start, at t = 0, is in the by-step figure
                by_step = by_step[by_step["x"] > 0]
            style = styles[estimator]
            ax.plot(by_step["x"], by_step["mean"],
                    markevery=max(1, len(by_step) // MARKS_PER_CURVE),
                    markersize=fig_style.marker, **style.line_kwargs())
            ax.fill_between(by_step["x"], by_step["low"], by_step["high"],
                            color=style.color, alpha=BAND_ALPHA, linewidth=0)
        if x == "wall_s":
            log_axis(ax, "x", most=4)

    xlabel = {"step": ["optimization step"],
              "wall_s": ["wall-clock time of the steps", "(s, log scale)"]}[x]
    ylabel = [TRAINING_METRICS[column]] if column in TRAINING_METRICS else \
        ["exact objective J(θ)"]
    return problem_figures(context, EstimatorLegend(traces, styles, context.labels), draw,
                           xlabel + train_settings(traces), ylabel,
                           columns=min(CURVE_COLUMNS, fig_style.columns))


register(FigureEntry("training_by_step", Needs.TRACES, lambda context: training_traces(
    context, "step"), lambda _: ("Exact objective during optimization, mean over seeds with "
                                 "min–max band."), title="Objective during training, by step"))
register(FigureEntry("training_by_time", Needs.TRACES, lambda context: training_traces(
    context, "wall_s"), lambda _: "The same against wall-clock time.",
    title="Objective during training, by time"))


def no_column(column: str) -> str:
    """Why traces without ``column`` cannot draw it."""
    if column == "value":
        return ("no problem of the traces has an exact or numerical objective J(θ) (models of "
                "data sets record their training ELBO and test bound instead: "
                "train_elbo_by_step, test_bound_by_step)")
    return (f"the traces hold no {TRAINING_METRICS[column]}: only models of data sets "
            "(binary_vae_linear, binary_vae_nonlinear, binary_iwae, sigmoid_belief_net, "
            "categorical_vae_nonlinear) record it")


def train_settings(traces: pd.DataFrame) -> list[str]:
    """The settings the traces share, as phrases of the axis label: "(n = 4,", "Adam,",
    "lr = 0.05)"."""
    parts = []
    for column, text in (("n_samples", "n = {}"), ("optimizer", "{}"), ("lr", "lr = {:g}")):
        if column in traces and traces[column].nunique() == 1:
            value = traces[column].iloc[0]
            parts.append(text.format({"adam": "Adam", "sgd": "SGD"}.get(value, value)))
    if not parts:
        return []
    phrases = [f"{part}," for part in parts[:-1]] + [parts[-1]]
    if "groups" in traces and traces["groups"].notna().all() and \
            traces["groups"].nunique() == 1:
        # Parameter groups with their own optimizer, after the rest's: "(Adam, lr = 0.0001;
        # prior: SGD, lr = 0.01)".
        phrases[-1] += ";"
        phrases.append(str(traces["groups"].iloc[0]))
    phrases[0], phrases[-1] = f"({phrases[0]}", f"{phrases[-1]})"
    return phrases


def gradient_norm_handle(reference: pd.Series | None) -> Line2D:
    """The legend entry of the dashed ‖∇J(θ_t)‖² line, saying whether ∇J is exact or a
    reference (``reference``: the rows' reference column, absent or "exact" where exact)."""
    exact = reference is None or (reference.fillna("exact") == "exact").all()
    return Line2D([], [], color="black", linestyle="--", linewidth=0.8,
                  label="‖∇J(θ_t)‖² " + ("(exact)" if exact else "(reference)"))


def draw_variance_along_steps(ax: Axes, rows: pd.DataFrame,
                              styles: Mapping[str, EstimatorStyle],
                              fig_style: FigureStyle) -> None:
    """Each estimator's variance against the step (geometric mean over seeds, the band
    from the least to the largest) and ‖∇J(θ_t)‖² dashed, on a log y axis where any of them
    is positive."""
    for estimator in estimator_order(rows["estimator"]):
        group = rows[rows["estimator"] == estimator]
        by_step = group.groupby("step")["variance"].agg(
            mean=lambda v: float(np.exp(np.log(v.clip(lower=1e-300)).mean())),
            low="min", high="max")
        style = styles[estimator]
        ax.plot(by_step.index, by_step["mean"], markevery=max(1, len(by_step) // MARKS_PER_CURVE),
                markersize=fig_style.marker, **style.line_kwargs())
        ax.fill_between(by_step.index, by_step["low"], by_step["high"],
                        color=style.color, alpha=BAND_ALPHA, linewidth=0)
    grad = rows.groupby("step")["true_grad_norm"].apply(lambda g: float((g**2).mean()))
    ax.plot(grad.index, grad.to_numpy(), color="black", linestyle="--", linewidth=0.8)
    if (rows["variance"] > 0).any() or (grad > 0).any():
        log_axis(ax, "y")


@figure("training_variance", Needs.TRACES,
        "Variance of one estimate at θ_t along optimization (geometric mean over seeds, "
        "min–max band), and the exact ‖∇J(θ_t)‖² (dashed).", title="Variance during training")
def training_variance(context: FigureContext) -> Pages:
    """Variance of the estimator at θ_t against the optimization step (log scale), mean over
    seeds with a min–max band, beside the exact ‖∇J(θ_t)‖² (dashed): the variance figures of
    REBAR (Tucker et al. 2017), RELAX (Grathwohl et al. 2018) and DisARM (Dong et al. 2020),
    with the gradient's own size exact. A variance below the dashed line is an SNR above 1.
    """
    styles, fig_style, traces = context.estimator_styles, context.figure_style, context.traces
    if traces is None:
        raise NotDrawn(NO_TRACES)
    if "variance" not in traces or traces["variance"].notna().sum() == 0:
        raise NotDrawn("the optimization traces hold no measured variance")
    traces = traces[traces["variance"].notna()]
    extras = [gradient_norm_handle(traces.get("reference"))]

    def draw(ax: Axes, problem: str) -> None:
        draw_variance_along_steps(ax, traces[traces["problem"] == problem], styles, fig_style)

    return problem_figures(context,
                           EstimatorLegend(traces, styles, context.labels, extras=extras), draw,
                           ["optimization step", *train_settings(traces)],
                           ["variance of one estimate", "(log scale)"],
                           columns=min(CURVE_COLUMNS, fig_style.columns))

