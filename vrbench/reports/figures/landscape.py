"""Variance landscapes: the variance of one estimate against a swept problem parameter
(Mohamed et al. 2020, figures 2 and 3), and the grids of one-parameter sweeps they are
drawn from."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from vrbench.reports.axes import exact_axis, text_width_in
from vrbench.reports.figures.common import (
    at_slot,
    base_name,
    biased_estimators,
    caret_handle,
    draw_interval,
    reaches_zero,
    set_log_limits,
    size_in,
)
from vrbench.reports.figures.legend import EstimatorLegend
from vrbench.reports.figures.pages import problem_figures
from vrbench.reports.labels import Labels
from vrbench.reports.registry import FigureContext, Needs, NotDrawn, Pages, figure
from vrbench.reports.style import EstimatorStyle, FigureStyle, estimator_order
from vrbench.reports.values import ok_cells

MAX_COORDINATE_PANELS = 3
"""Up to this many coordinates of θ, a swept problem gets a panel per coordinate."""


def _defaults(name: str) -> dict[str, Any]:
    """The registered problem's default parameters (none where this installation does not
    know it)."""
    from vrbench import problems  # only to name defaults and coordinates

    return problems.registry.get(name).parameters() if name in problems.registry else {}


def _coordinate_names(name: str, dim: int) -> list[str]:
    from vrbench import problems

    if name in problems.registry:
        names = problems.make(name).coordinate_names()
        if len(names) == dim:
            return names
    return [f"θ{i}" for i in range(dim)]


def swept_parameters(frame: pd.DataFrame) -> dict[str, str]:
    """Problems measured at several values of exactly one of their parameters: name →
    parameter (a sweep's grid, see :mod:`vrbench.components`)."""
    ok = ok_cells(frame)
    swept = {}
    for name, rows in ok.groupby(ok["problem"].map(base_name), sort=False):
        params = rows["problem_params"].fillna("{}").map(json.loads)
        defaults = _defaults(name)
        keys = sorted(set().union(*params))
        varying = [key for key in keys
                   if len({json.dumps(p.get(key, defaults.get(key))) for p in params}) > 1]
        if len(varying) == 1:
            swept[name] = varying[0]
    return swept


MIN_GRID = 3
"""Fewest values of a parameter that make a landscape; two are a comparison, which the
other figures show."""


@dataclass(frozen=True)
class ParameterGrid:
    """Problems that differ in one parameter alone: a landscape's x axis."""

    name: str
    """The registered problem."""
    parameter: str
    fixed: dict[str, Any]
    """The other parameters, the same for every problem of the grid (defaults included)."""
    values: dict[str, float]
    """Problem (results name) → its value of ``parameter``."""
    given: frozenset[str] = frozenset()
    """The parameters of ``fixed`` that some problem of the results names (the others are
    defaults everywhere, and the grid's name leaves them out)."""

    @property
    def spec(self) -> str:
        """The problem the grid is a landscape of, as a results name, ``parameter`` and the
        defaults left out (``gaussian_cosine:mu=1.0,sigma=1.0``)."""
        shown = {k: v for k, v in self.fixed.items() if k in self.given}
        if not shown:
            return self.name
        return self.name + ":" + ",".join(f"{k}={v}" for k, v in sorted(shown.items()))


def parameter_grids(frame: pd.DataFrame) -> tuple[list[ParameterGrid], list[str]]:
    """Every one-parameter grid of the ok cells: for each problem and parameter, the problems
    that share every other parameter (defaults filled in) and hold at least
    :data:`MIN_GRID` numeric values of it. Also, so that a refusal can say what was found,
    a line per parameter that varies without making a grid."""
    ok = ok_cells(frame)
    grids: list[ParameterGrid] = []
    found: list[str] = []
    for name, rows in ok.groupby(ok["problem"].map(base_name), sort=False):
        defaults = _defaults(name)
        given = {problem: json.loads(p or "{}") for problem, p in
                 zip(rows["problem"], rows["problem_params"].fillna("{}"), strict=True)}
        named = frozenset().union(*given.values())
        params = {problem: {**defaults, **values} for problem, values in given.items()}
        for key in sorted(set().union(*params.values())):
            subgroups: dict[str, dict[str, object]] = {}
            for problem, values in params.items():
                others = json.dumps({k: v for k, v in values.items() if k != key},
                                    sort_keys=True, default=str)
                subgroups.setdefault(others, {})[problem] = values.get(key)
            counts = []
            for others, group in subgroups.items():
                numeric = {p: float(v) for p, v in group.items()
                           if isinstance(v, int | float) and not isinstance(v, bool)}
                distinct = sorted(set(numeric.values()))
                if len(numeric) == len(group) and len(distinct) >= MIN_GRID:
                    grids.append(ParameterGrid(name, key, json.loads(others), numeric,
                                               named - {key}))
                elif len({json.dumps(v, default=str) for v in group.values()}) < 2:
                    continue  # does not vary here
                elif len(numeric) < len(group):
                    counts.append("values that are not numbers")
                else:
                    counts.append(f"{len(distinct)} values "
                                  f"({', '.join(f'{v:g}' for v in distinct)})")
            if counts:
                shown = sorted(set(counts))
                found.append(f"{name}: {key} at {' or '.join(shown[:3])}"
                             f"{' …' if len(shown) > 3 else ''} with the others fixed")
    return grids, found


def _landscape_rows(frame: pd.DataFrame, n: int, labels: Labels
                    ) -> tuple[pd.DataFrame, list[str]]:
    """One row per panel point: the grids' ok cells at ``n``, with ``x`` (the parameter's
    value), the panel (grid and coordinate, the total variance, or the bias, in the
    ``problem`` column), ``coordinate`` (-1: total variance), ``quantity`` ("variance" or
    "bias") and the panel's ``title``; and what was found where there is no grid."""
    ok = ok_cells(frame)
    ok = ok[ok["n_samples"] == n]
    grids, found = parameter_grids(ok)
    pieces = []
    for grid in grids:
        rows = ok[ok["problem"].isin(list(grid.values))]
        rows = rows.assign(x=rows["problem"].map(grid.values), parameter=grid.parameter)
        shown = labels.problem(grid.spec)
        panel = f"{grid.spec} [{grid.parameter}]"
        dim = int(rows["dim"].iloc[0])
        if dim <= MAX_COORDINATE_PANELS:
            for k, coordinate in enumerate(_coordinate_names(grid.name, dim)):
                pieces.append(rows.assign(problem=f"{panel}: ∂J/∂{coordinate}", coordinate=k,
                                          quantity="variance",
                                          title=f"{shown}: ∂J/∂{coordinate}"))
        else:
            pieces.append(rows.assign(problem=f"{panel}: total variance", coordinate=-1,
                                      quantity="variance", title=f"{shown}: total variance"))
        if biased_estimators(rows) or rows["bias_rejected"].fillna(False).astype(bool).any():
            pieces.append(rows.assign(problem=f"{panel}: bias", coordinate=-1,
                                      quantity="bias", title=f"{shown}: ‖bias‖"))
    return (pd.concat(pieces) if pieces else pd.DataFrame()), found


def _coordinate(rows: pd.DataFrame, column: str, k: int) -> np.ndarray:
    """``column`` (a trace) or its per-coordinate list's entry ``k`` (k ≥ 0)."""
    if k < 0:
        return np.asarray(rows[column].astype(float).to_numpy(), dtype=float)
    lists = {"variance": "coordinate_variance", "variance_ci_low": "coordinate_variance_ci_low",
             "variance_ci_high": "coordinate_variance_ci_high",
             "exact_variance": "exact_coordinate_variance"}[column]
    return np.array([v[k] if isinstance(v, list | np.ndarray) and len(v) > k else math.nan
                     for v in rows[lists]], dtype=float)


@figure("variance_vs_parameter", Needs.CELLS, lambda context: (
    f"Variance of one estimate against a swept problem parameter at n = {context.n}, with "
    "95% intervals, per coordinate of θ where θ has few; thin lines: the variance "
    "computed exactly (without sampling) where it can be."),
    title="Variance against a problem parameter")
def variance_vs_parameter(context: FigureContext) -> Pages:
    """Variance of one estimate against a swept problem parameter at one ``n``, one line per
    estimator, with 95% intervals: the variance landscapes of Mohamed et al. (JMLR 2020,
    figures 2 and 3). A landscape is drawn for every grid of one parameter among problems
    that share all their others (see :func:`parameter_grids`): the staleness sweep of the
    mixed prompts beside the on/off-policy pairs of the others. Problems whose θ has at
    most :data:`MAX_COORDINATE_PANELS` coordinates get a panel per coordinate, side by
    side, one row per grid (the variance of ∂J/∂μ beside that of ∂J/∂σ for each cost, as
    the paper draws them); others, the total variance (the trace of the covariance). Where
    an estimator of the grid is biased (by design or by the bias test), a panel of the
    measured ‖bias‖ follows. Each panel's x axis is the swept parameter, written with its
    symbol (see :mod:`vrbench.reports.labels`), a tick at every value: logarithmic over a
    positive grid spanning a decade, symmetric-logarithmic (linear below the smallest
    positive value) over one that starts at 0 and spans one, else linear. Where the
    variance was computed without sampling (``exact_variance``), a thin line of the
    estimator's colour traces it under the points.
    """
    styles, fig_style, labels = context.estimator_styles, context.figure_style, context.labels
    n = context.sample_size()
    rows, found = _landscape_rows(context.cells, n, labels)
    if rows.empty:
        seen = ("; found " + "; ".join(found)) if found else \
            "; no problem was run at several values of one of its parameters"
        raise NotDrawn(f"needs a problem run over a grid of at least {MIN_GRID} values of one "
                       f"parameter with its others fixed, at n = {n} (e.g. -p "
                       f"'gaussian_cosine:omega=0.5|1|2|4'){seen}")
    biased = biased_estimators(rows)
    has_exact = rows["exact_variance"].notna().any()
    extras = ([Line2D([], [], color="0.3", linewidth=0.8, label="computed exactly")]
              if has_exact else [])
    if reaches_zero(rows[rows["quantity"] == "variance"]):
        extras.append(caret_handle("interval reaches 0", "v"))
    # Every grid's panels side by side, a row per grid, as the paper draws them.
    per_grid = {len(set(group)) for _, group in rows.groupby(
        rows["problem"].map(lambda p: p.partition("]")[0]))["problem"]}
    columns = next(iter(per_grid)) if len(per_grid) == 1 and \
        2 <= next(iter(per_grid)) <= MAX_COORDINATE_PANELS + 1 else None
    if columns == 2 and (rows["coordinate"] < 0).all() and fig_style.columns < columns + 1:
        # A one-column page stacks the total variance above the bias: a panel of the full
        # width labels every value of the grid, and the legend is no more than a quarter
        # of the figure.
        columns = 1
    titles = dict(zip(rows["problem"], rows["title"], strict=False))
    ylabel = (["variance of one estimate", "(log scale)"]
              if (rows["quantity"] == "variance").all() else
              ["variance of one estimate", "or ‖bias‖ as titled", "(log scale)"])
    return problem_figures(
        context, EstimatorLegend(rows, styles, labels, biased, extras),
        lambda ax, panel: _parameter_panel(ax, rows[rows["problem"] == panel], styles,
                                           fig_style, labels),
        [f"n = {n} sample{'s' if n > 1 else ''} per estimate"], ylabel, columns=columns,
        title=titles.__getitem__)


def _parameter_panel(ax: Axes, rows: pd.DataFrame, styles: Mapping[str, EstimatorStyle],
                     fig_style: FigureStyle, labels: Labels) -> None:
    if rows["quantity"].iloc[0] == "bias":
        bias = rows["bias_norm"].astype(float).to_numpy()
        nothing = np.full(len(rows), math.nan)
        rows = rows.assign(_variance=bias, _low=nothing, _high=nothing, _exact=nothing,
                           _zero=rows["bias_exact"].fillna(False).to_numpy(dtype=bool))
    else:
        k = int(rows["coordinate"].iloc[0])
        variance = _coordinate(rows, "variance", k)
        exact_values = _coordinate(rows, "exact_variance", k)
        scale = np.nanmax(np.concatenate([variance, [0.0]]))
        zero = variance <= 1e-12 * max(float(rows["true_grad_norm"].max()) ** 2, scale)
        rows = rows.assign(_variance=variance, _low=_coordinate(rows, "variance_ci_low", k),
                           _high=_coordinate(rows, "variance_ci_high", k),
                           _exact=exact_values, _zero=zero)
    values = rows["_variance"].to_numpy(dtype=float)
    exact_values = rows["_exact"].to_numpy(dtype=float)
    zero = rows["_zero"].to_numpy(dtype=bool)
    slots = {name: i for i, name in enumerate(estimator_order(rows.loc[rows["_zero"],
                                                                       "estimator"]))}
    span = np.concatenate([values[~zero], exact_values[np.isfinite(exact_values)
                                                       & (exact_values > 0)]])
    ends = np.concatenate([rows["_low"].to_numpy()[~zero], rows["_high"].to_numpy()[~zero]])
    strip = exact_axis(ax, "y", np.concatenate([span, ends]), len(slots))
    if strip is None:
        set_log_limits(ax, "y", np.concatenate([span, ends]))
    floor = strip.start if strip is not None else ax.get_ylim()[0]
    for estimator in estimator_order(rows["estimator"]):
        group = rows[rows["estimator"] == estimator].sort_values("x")
        style = styles[estimator]
        is_zero = group["_zero"].to_numpy(dtype=bool)
        y = np.array([at_slot(strip, slots, estimator, v, z)
                      for v, z in zip(group["_variance"], is_zero, strict=True)])
        for xi, z, lo, hi in zip(group["x"], is_zero, group["_low"], group["_high"],
                                 strict=True):
            if not z:
                draw_interval(ax, xi, lo, hi, floor, style.color)
        ax.plot(group["x"], y, linestyle="none", markersize=fig_style.marker, zorder=2,
                **style.marker_kwargs())
        known = group["_exact"].notna() & (group["_exact"] > 0)
        if known.any():
            ax.plot(group.loc[known, "x"], group.loc[known, "_exact"], color=style.color,
                    linewidth=0.9, zorder=0.8)
        if not known.all():  # no exact curve: join the measured points instead
            ax.plot(group["x"], y, color=style.color, linewidth=0.6, alpha=0.6,
                    linestyle=style.line_kwargs().get("linestyle", "-"), zorder=0.7)
    _parameter_axis(ax, np.array(sorted(set(rows["x"].astype(float)))), fig_style)
    ax.set_xlabel(labels.symbol(str(rows["parameter"].iloc[0]),
                                base_name(str(rows["problem"].iloc[0]))), labelpad=1)


def _parameter_axis(ax: Axes, values: np.ndarray, fig_style: FigureStyle) -> None:
    """The x axis of a landscape: a tick at every value of the grid, labelled where the
    label does not overprint a neighbour's (the ends first); a log scale over a positive
    grid spanning a decade, a symmetric-log one (linear up to the smallest positive value)
    over a grid from 0 spanning one, else linear."""
    positive = values[values > 0]
    spans_decade = positive.size >= 2 and positive.max() / positive.min() >= 8
    if spans_decade and (values > 0).all():
        ax.set_xscale("log")
        ax.set_xlim(values[0] / 1.25, values[-1] * 1.25)
    elif spans_decade and (values >= 0).all():
        ax.set_xscale("symlog", linthresh=float(positive.min()), linscale=0.6)
        ax.set_xlim(-0.25 * float(positive.min()), values[-1] * 1.25)
    ax.xaxis.set_major_locator(FixedLocator(values.tolist()))
    ax.xaxis.set_minor_locator(NullLocator())
    transform = ax.xaxis.get_transform()
    low, high = transform.transform(np.array(ax.get_xlim()))
    # The panel's width as the grid lays it out now, less its share of the y labels.
    width_in = ax.get_position().width * size_in(ax)[0] - 0.2
    at = (transform.transform(values) - low) / (high - low) * width_in
    texts = [f"{v:g}" for v in values]
    room = [text_width_in(t, fig_style.small) for t in texts]
    shown: list[int] = []
    for i in [0, len(values) - 1, *range(1, len(values) - 1)]:
        if i in shown:
            continue
        if all(abs(at[i] - at[j]) >= (room[i] + room[j]) / 2 + 0.04 for j in shown):
            shown.append(i)
    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda x, _: next((texts[i] for i in shown if math.isclose(x, values[i],
                                                                   abs_tol=1e-12)), "")))

