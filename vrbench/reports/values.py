"""What a report says about each cell: exact or not, bias claim rejected, best or tied,
variance relative to a reference estimator. Pure functions of a results table, shared by
the console, the figures, the tables and the HTML page so they never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pandas as pd

FAMILY_ALPHA = 0.05
"""Family-wise error rate of the bias flags: a sweep of correct estimators shows no flag
with probability at least 95%, however many cells it has (Bonferroni over every cell whose
estimator claims unbiasedness)."""

EXACT_RTOL = 1e-12
"""A variance at most ``EXACT_RTOL × ‖∇J‖²`` is rounding error: the estimator is exact.

Derivation. An exact estimator returns ∇J itself, computed in float64 (unit roundoff
u = 1.1e-16) through k operations on terms of size up to M‖∇J‖, so its replicates differ
by at most about k·u·M‖∇J‖ and their measured variance is below (k·u·M)²‖∇J‖². With
k·M = 10⁶ (a million-fold cancellation) that is 1e-20‖∇J‖²; in the default sweep the exact
cells measure 1e-26 to 1e-29 ‖∇J‖² (DisARM, antithetic and stratified score function,
measure-valued on Bernoulli problems). The smallest variance of an estimator that is not
exact is 1e-6 ‖∇J‖² (the optimal baseline on ``bernoulli_toy``), so 1e-12 separates the two
by six decades either way. The same floor applies to a bias: ``‖bias‖² ≤ EXACT_RTOL ×
‖∇J‖²``. Where ∇J = 0 the scale is the largest variance among the cells of that problem and
n, the size of the terms an estimator there cancels.
"""

REFERENCE = "score_function"
"""The estimator others are compared with, unless a report chooses another."""

REFERENCE_FALLBACKS = ("score_function", "multi_sample_score_function", "reinforce_sequence")
"""Where the requested reference has no ok cell on a problem, that problem's ratios are
relative to the first of these that has: the plain score function, then the plain score
function of multi-sample bounds (the score function does not apply to ``iwae_digits``,
whose objective is a bound over K samples, and ``multi_sample_score_function`` is its
counterpart there), then that of sequence policies (``reinforce_sequence``: the score
function of G outputs per prompt, the counterpart on the language-model problems). Every
view names these exceptions where it shows ratios; a problem on which none of them ran has
no ratios (:data:`NO_REFERENCE`)."""

NO_REFERENCE = "n/r"
"""What a view shows for a ratio of a cell whose problem (at that n) has no reference
variance to compare with: no reference ran, or its variance is zero."""

LISTED_PROBLEMS = 3
"""A caption names at most this many problems that are exceptions to the reference (a
fallback reference, or none); more are counted ("no reference ran on 15 problems")."""

MARKS = ("exact", "bias_exact", "bias_rejected", "applicable")


def _scale2(frame: pd.DataFrame) -> pd.Series:
    grad2 = frame["true_grad_norm"].astype(float) ** 2
    largest = frame.groupby(["problem", "n_samples"])["variance"].transform("max").astype(float)
    return grad2.where(grad2 > 0, largest).fillna(0.0)


def annotate(frame: pd.DataFrame, alpha: float = FAMILY_ALPHA) -> pd.DataFrame:
    """The results table with the marks every view uses, as boolean columns:

    * ``exact``: the variance is rounding error (see :data:`EXACT_RTOL`);
    * ``bias_exact``: so is the measured bias;
    * ``bias_rejected``: the estimator claims unbiasedness and the bias test rejects it at
      family-wise level ``alpha`` over every such cell of the table (Bonferroni);
    * ``applicable``: the cell ran (ok or failed), as opposed to an incompatible pair.

    Annotate the whole results before selecting from them, so that the family of the bias
    test is the sweep, and a flag does not depend on what a figure shows.
    """
    frame = frame.copy()
    ok = (frame["status"] == "ok") & frame["variance"].notna()
    scale2 = _scale2(frame)
    variance = frame["variance"].astype(float)
    frame["exact"] = ok & (variance <= EXACT_RTOL * scale2)
    frame["bias_exact"] = ok & (frame["bias_norm"].astype(float) ** 2 <= EXACT_RTOL * scale2)
    claims = ok & (frame["unbiased_claim"].fillna(False).astype(bool)) & \
        frame["bias_pvalue"].notna()
    threshold = alpha / max(1, int(claims.sum()))
    frame["bias_rejected"] = claims & (frame["bias_pvalue"].astype(float) < threshold)
    frame["applicable"] = frame["status"] != "skipped"
    return frame


def ok_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells that ran without error and measured a variance."""
    return frame[(frame["status"] == "ok") & frame["variance"].notna()]


def shown_variance(rows: pd.DataFrame) -> pd.DataFrame:
    """``variance``, ``low`` and ``high`` as reported: exactly 0 for exact cells."""
    exact = rows["exact"].to_numpy(dtype=bool)
    values = {key: np.where(exact, 0.0, rows[column].astype(float).to_numpy())
              for key, column in (("variance", "variance"), ("low", "variance_ci_low"),
                                  ("high", "variance_ci_high"))}
    return pd.DataFrame(values, index=rows.index)


UNRANKED_FAMILIES = ("exact",)
"""Families never called best: ``exact_enumeration`` sums f over the whole support, a cost
set by the problem (1,024 evaluations on ``bernoulli_ising``), not by n; it is the reference
the sampling estimators are held against, not a competitor at their cost."""


def unbiased_candidates(rows: pd.DataFrame) -> pd.Series:
    """Cells that may be called best: claimed unbiased, the claim not rejected, and not of
    an unranked family (:data:`UNRANKED_FAMILIES`)."""
    ranked = ~rows["family"].isin(UNRANKED_FAMILIES) if "family" in rows else True
    return rows["unbiased_claim"].fillna(False).astype(bool) & ~rows["bias_rejected"] & ranked


def best(frame: pd.DataFrame) -> pd.Series:
    """Per (problem, n): the unbiased estimator of lowest variance, and every unbiased one
    whose 95% interval overlaps its interval (a tie at this precision). Biased estimators,
    by claim or by test, are never best. Exact estimators have the interval [0, 0], so when
    one is best, only the other exact ones tie with it."""
    ok = ok_cells(frame)
    marks = pd.Series(False, index=frame.index)
    candidates = ok[unbiased_candidates(ok)]
    if candidates.empty:
        return marks
    shown = shown_variance(candidates)
    for _, group in shown.groupby([candidates["problem"], candidates["n_samples"]]):
        leader = cast(Any, group["variance"].idxmin())  # an index label
        ties = group.index[group["low"] <= group.loc[leader, "high"]]
        marks[ties] = True
    return marks


def ratio_interval(value: float, low: float, high: float, ref: float, ref_low: float,
                   ref_high: float) -> tuple[float, float, float]:
    """``value / ref`` with a 95% interval, the two estimates independent.

    The log of each interval's half-widths are combined in quadrature (the delta method on
    log variance, whose sampling distribution is close to symmetric): an interval of the
    ratio that reflects the uncertainty of both variances.
    """
    if not (ref > 0 and math.isfinite(ref)):
        return math.nan, math.nan, math.nan
    ratio = value / ref
    if value <= 0:
        return 0.0, 0.0, 0.0

    def log_half(v: float, lo: float, hi: float) -> tuple[float, float]:
        down = math.log(v / lo) if lo > 0 else math.inf
        up = math.log(hi / v) if hi > 0 else 0.0
        return down, up

    down, up = log_half(value, low, high)
    ref_down, ref_up = log_half(ref, ref_low, ref_high)
    lower = ratio * math.exp(-math.hypot(down, ref_up)) if math.isfinite(down) else 0.0
    upper = ratio * math.exp(math.hypot(up, ref_down)) if math.isfinite(ref_down) else math.inf
    return ratio, lower, upper


def problem_references(frame: pd.DataFrame, reference: str = REFERENCE
                       ) -> dict[str, str | None]:
    """The estimator each problem's ratios are relative to: ``reference`` where it has an
    ok cell on the problem, else the first of :data:`REFERENCE_FALLBACKS` that has, else
    None (no ratios on that problem).

    A table with a ``reference`` column (see :func:`with_references`) keeps the references
    written there: a report chooses them on the whole sweep, before selecting what it shows,
    so that a selection without the reference estimator still names it.
    """
    problems = list(dict.fromkeys(frame["problem"])) if "problem" in frame else []
    if "reference" in frame:
        named = frame.drop_duplicates("problem").set_index("problem")["reference"].to_dict()
        return {p: (named[p] if isinstance(named[p], str) else None) for p in problems}
    ran = ok_cells(frame) if "status" in frame else frame
    candidates = [reference, *(e for e in REFERENCE_FALLBACKS if e != reference)]
    # One pass over the rows: a scan per problem is quadratic in a grid of 10^5 problems.
    present: dict[str, set[str]] = {}
    for problem, estimator in zip(ran["problem"], ran["estimator"], strict=True):
        present.setdefault(problem, set()).add(estimator)
    return {problem: next((e for e in candidates if e in present.get(problem, ())), None)
            for problem in problems}


def with_references(frame: pd.DataFrame, reference: str = REFERENCE) -> pd.DataFrame:
    """``frame`` with a ``reference`` column: its problem's reference estimator (None
    where none ran), as :func:`problem_references` chooses it."""
    refs = problem_references(frame.drop(columns="reference", errors="ignore"), reference)
    return frame.assign(reference=frame["problem"].map(refs).astype(object))


def is_reference(frame: pd.DataFrame, reference: str = REFERENCE) -> pd.Series:
    """Whether each row is a cell of its problem's reference estimator."""
    refs = problem_references(frame, reference)
    return frame["estimator"] == frame["problem"].map(refs)


def reference_exceptions(references: dict[str, str | None], reference: str,
                         problems: list[str] | None = None) -> dict[str | None, list[str]]:
    """The problems (of ``problems``, default all) whose reference is not ``reference``, by
    the estimator they use instead (None: no reference ran there)."""
    out: dict[str | None, list[str]] = {}
    for problem in references if problems is None else problems:
        used = references.get(problem)
        if used != reference:
            out.setdefault(used, []).append(problem)
    return out


def describe_reference(references: dict[str, str | None], reference: str,
                       problems: list[str] | None = None,
                       code: Callable[[str], str] = str,
                       problem_code: Callable[[str], str] | None = None) -> str:
    """The reference as a caption names it, with its exceptions: ``REINFORCE
    (REINFORCE, multi-sample on IWAE bound; no reference ran on p: n/r)``; where one
    fallback stands in on every problem described, that fallback alone. ``code`` formats
    estimator names (a display name, or LaTeX's ``\\texttt``), ``problem_code`` problem
    names (default: as ``code``)."""
    problem_code = problem_code or code
    exceptions = reference_exceptions(references, reference, problems)
    if not exceptions:
        return code(reference)
    if len(exceptions) == 1:
        used, shown = next(iter(exceptions.items()))
        if used is not None and len(shown) == len(references if problems is None
                                                  else problems):
            return code(used)  # one stand-in everywhere is these problems' reference

    def listed(shown: list[str]) -> str:  # a few by name; more by their number
        return (", ".join(problem_code(p) for p in shown) if len(shown) <= LISTED_PROBLEMS
                else f"{len(shown)} problems")

    parts = [f"{code(used)} on {listed(shown)}" if used is not None
             else f"no reference ran on {listed(shown)}: {NO_REFERENCE}"
             for used, shown in exceptions.items()]
    return f"{code(reference)} ({'; '.join(parts)})"


def describe_sweep_reference(frame: pd.DataFrame, reference: str = REFERENCE,
                             code: Callable[[str], str] = str,
                             problem_code: Callable[[str], str] | None = None) -> str:
    """:func:`describe_reference` for the problems of ``frame`` that ran, each with the
    reference :func:`problem_references` chooses: how every view's caption names it."""
    ran = frame[frame["status"] != "skipped"]
    return describe_reference(problem_references(ran, reference), reference, code=code,
                              problem_code=problem_code)


def is_biased(rows: pd.DataFrame) -> pd.Series:
    """Cells of an estimator biased by design, or whose claim of unbiasedness the bias test
    rejects: ranked by their mean squared error, never by their variance alone."""
    claims = rows["unbiased_claim"]
    by_design = claims.notna() & ~claims.fillna(True).astype(bool)
    rejected = rows["bias_rejected"].fillna(False).astype(bool) if "bias_rejected" in rows \
        else False
    return by_design | rejected


def shown_mse(rows: pd.DataFrame) -> pd.DataFrame:
    """``variance``, ``low`` and ``high`` of the mean squared error ‖bias‖² + variance: the
    variance's interval shifted by the measured ‖bias‖² (whose own sampling error, of order
    variance / R, is left out); exactly 0 where both are exact."""
    shown = shown_variance(rows)
    bias2 = rows["bias_norm"].astype(float).fillna(0.0) ** 2
    bias2 = bias2.where(~rows["bias_exact"].fillna(False).astype(bool), 0.0) \
        if "bias_exact" in rows else bias2
    return shown.add(bias2, axis=0)


def relative(frame: pd.DataFrame, reference: str = REFERENCE, cost: str | None = None,
             quantity: str = "variance") -> pd.DataFrame:
    """Each ok cell's variance (or, with ``quantity="mse"``, its mean squared error) times
    ``cost`` per estimate, if given (``"f_evals"`` or ``"time_per_estimate_s"``), relative to
    the variance of its problem's reference (see :func:`problem_references`) at the same n,
    with its 95% interval: columns ``ratio``, ``ratio_low``, ``ratio_high``. Cells without a
    reference (or with an exact one) get NaN. Costs are single measurements: their
    uncertainty is not in the interval."""
    ok = ok_cells(frame)
    shown = shown_variance(ok)
    mine = shown_mse(ok) if quantity == "mse" else shown
    weight = ok[cost].astype(float) if cost else pd.Series(1.0, index=ok.index)
    ref_rows = ok[is_reference(ok, reference)] if not ok.empty else ok
    refs = {(p, n): (s["variance"] * w, s["low"] * w, s["high"] * w)
            for p, n, (_, s), w in zip(ref_rows["problem"], ref_rows["n_samples"],
                                       shown.loc[ref_rows.index].iterrows(),
                                       weight[ref_rows.index], strict=True)}
    out = []
    for index, row in ok.iterrows():
        ref = refs.get((row["problem"], row["n_samples"]))
        s, w = mine.loc[cast(Any, index)], weight[cast(Any, index)]
        if ref is None or not math.isfinite(w):
            out.append((math.nan, math.nan, math.nan))
            continue
        out.append(ratio_interval(s["variance"] * w, s["low"] * w, s["high"] * w, *ref))
    return pd.DataFrame(out, index=ok.index, columns=["ratio", "ratio_low", "ratio_high"])


def ranked_ratios(frame: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
    """The ratio each cell is ranked by, with its interval: the variance ratio
    (``<prefix>ratio``) of an unbiased estimator, the MSE ratio (``<prefix>mse_ratio``) of a
    biased one (:func:`is_biased`), so that no biased estimator ranks above an unbiased one
    of lower mean squared error. Columns ``ratio``, ``ratio_low``, ``ratio_high``."""
    biased = is_biased(frame)
    out = {}
    for suffix in ("", "_low", "_high"):
        variance = frame[f"{prefix}ratio{suffix}"].astype(float)
        mse = frame.get(f"{prefix}mse_ratio{suffix}", variance).astype(float)
        out[f"ratio{suffix}"] = mse.where(biased, variance)
    return pd.DataFrame(out, index=frame.index)


def one_n(frame: pd.DataFrame, requested: int | None = None) -> int | None:
    """The sample size of a one-n view: ``requested``, or the largest in the table."""
    ran = ok_cells(frame)
    if ran.empty:
        return None
    if requested is not None:
        return requested
    return int(ran["n_samples"].max())


def problem_groups(frame: pd.DataFrame) -> list[list[str]]:
    """Problems grouped by the families of estimators that ran on them (Bernoulli problems
    together, Gaussian ones together, MDPs together), groups and problems in the results'
    order, so that split figures and tables have pages of alike problems with short
    legends."""
    ran = ok_cells(frame) if "status" in frame else frame
    key = "family" if "family" in ran else "estimator"
    problems = list(dict.fromkeys(frame["problem"]))
    signature = {p: frozenset(ran.loc[ran["problem"] == p, key].dropna()) for p in problems}
    groups: dict[frozenset[str], list[str]] = {}
    for problem in problems:
        groups.setdefault(signature[problem], []).append(problem)
    return list(groups.values())


def problem_order(frame: pd.DataFrame) -> list[str]:
    """The problems of :func:`problem_groups`, one list."""
    return [p for group in problem_groups(frame) for p in group]


def format_sci(value: float, digits: int = 3) -> str:
    """``value`` in the reports' one number format, mantissa and exponent: ``1.23e-3``."""
    if value is None or not math.isfinite(value):
        return "—"
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    mantissa = round(value / 10**exponent, digits - 1)
    if abs(mantissa) >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:.{digits - 1}f}e{exponent}"


def ground_truth_note(frame: pd.DataFrame, name: Callable[[str], str] = str) -> str:
    """A caption's sentence naming the problems (by ``name``) measured against a reference
    gradient rather than an exact one (empty when every problem has an exact gradient)."""
    if frame.empty or "reference" not in frame:
        return ""
    ok = frame[frame["status"] == "ok"]
    referenced = ok[ok["reference"].notna() & (ok["reference"] != "exact")]
    if referenced.empty:
        return ""
    worst = referenced.groupby("problem")["reference_se"].max() / referenced.groupby(
        "problem")["true_grad_norm"].max()
    named = "; ".join(f"{name(str(problem))} (its standard error: {share:.2g} ‖∇J‖)"
                      if share >= 1e-4 else name(str(problem))
                      for problem, share in worst.items())
    return (f" No exact gradient on {named}: bias there is measured against a reference "
            "gradient, whose standard error the bias tests include (see the reference "
            "column).")


def row_order(rows: pd.DataFrame, reference: str = REFERENCE) -> list[str]:
    """The estimators of ``rows`` in the order every estimators × problems view lists them
    (the relative-variance heatmap and tables alike): ``reference`` first, then the other
    problems' references (see :func:`problem_references`), then the rest grouped by family
    (:func:`~vrbench.reports.style.estimator_order`)."""
    from vrbench.reports.style import estimator_order

    families = dict(zip(rows["estimator"], rows["family"], strict=True)) \
        if "family" in rows else None
    order = estimator_order(rows["estimator"], families)
    used = [reference, *(r for r in dict.fromkeys(problem_references(rows, reference).values())
                         if r is not None and r != reference)]
    first = [name for name in used if name in order]
    return first + [name for name in order if name not in first]


def reference_candidate(rows: pd.DataFrame) -> str | None:
    """An estimator that could serve as ``--reference``: unbiased by claim and not rejected,
    of a sampling (ranked) family, ok on the most problems; ties in
    :func:`row_order`'s order. None where no cell qualifies."""
    ok = ok_cells(rows)
    if ok.empty or "bias_rejected" not in ok:
        return None
    ok = ok[unbiased_candidates(ok).astype(bool)]
    if ok.empty:
        return None
    from vrbench.reports.style import estimator_order

    reach = ok.groupby("estimator")["problem"].nunique()
    order = estimator_order(ok["estimator"])
    return max(order, key=lambda name: (reach[name], -order.index(name)))


def no_reference(frame: pd.DataFrame, n: int, reference: str = REFERENCE) -> str | None:
    """Why no view of ratios to a reference can be shown at ``n`` (the relative-variance
    heatmap and table, the "rel. variance" column), or None where some ratio exists: no
    reference (``reference`` or a fallback, :data:`REFERENCE_FALLBACKS`) has a non-zero
    variance on any selected problem. The reason names an estimator to pass instead."""
    ran = frame[(frame["status"] != "skipped") & (frame["n_samples"] == n)]
    if "ratio" in ran and ran["ratio"].notna().any():
        return None
    fallbacks = [e for e in REFERENCE_FALLBACKS if e != reference]
    why = (f"no reference estimator ({reference}"
           + (f", or the fallback {', '.join(fallbacks)}" if fallbacks else "")
           + f") ran on the selected problems at n = {n}, so there is nothing to divide by")
    candidate = reference_candidate(frame[frame["status"] != "skipped"])
    if candidate is not None and candidate != reference:
        why += f"; choose one that ran, e.g. vrbench report --reference {candidate}"
    return why


def heatmap_key(cells: pd.DataFrame) -> list[str]:
    """The key under the relative-variance heatmap for ``cells`` (one page's rows, with
    ``exact``, ``bias_rejected``, ``best``, ``unbiased_claim``, ``ratio`` and ``reference``
    columns): only the marks that occur there, each explained once."""
    ran = cells[cells["status"] != "skipped"] if "status" in cells else cells
    ok = ran[ran["status"] == "ok"] if "status" in ran else ran
    biased_rows = ok["unbiased_claim"].notna() & ~ok["unbiased_claim"].fillna(True).astype(bool)
    rejected = ok["bias_rejected"].fillna(False).astype(bool) if "bias_rejected" in ok \
        else pd.Series(False, index=ok.index)
    parts = []
    if ok["exact"].fillna(False).astype(bool).any():
        parts.append("exact: zero variance")
    skipped = "applicable" in cells and not cells["applicable"].all()
    gaps = ran.groupby("problem")["estimator"].nunique().lt(ran["estimator"].nunique()).any()
    if skipped or gaps:
        parts.append("grey: not applicable")
    if (ran["status"] == "error").any():
        parts.append("err: failed")
    if (ran["status"] == "missing").any():
        parts.append("miss: not computed")
    if "best" in ok and ok["best"].fillna(False).astype(bool).any():
        parts.append("outline, bold: best unbiased and ties")
    if rejected.any():
        parts.append("†: unbiasedness rejected")
    if biased_rows.any():
        parts.append("italic: biased by design")
    if "reference" in ok and ok["reference"].notna().any():
        parts.append("ref: the problem's reference")
    if biased_rows.any() or rejected.any():
        parts.append(("italic rows" if biased_rows.any() else "")
                     + (" and " if biased_rows.any() and rejected.any() else "")
                     + ("† cells" if rejected.any() else "") + ": MSE, not variance")
    if "ratio" in ok and (ok["ratio"].isna() & ~ok["exact"].astype(bool)).any():
        parts.append(f"{NO_REFERENCE}: no reference variance to compare with")
    return parts


def fitted_estimators(frame: pd.DataFrame) -> list[str]:
    """The estimators of ``frame``'s ok cells that fit a state (a baseline, a control
    variate) before measuring: their own class, or a base class other than
    :class:`~vrbench.estimators.base.Estimator`, defines ``fit``."""
    from vrbench import estimators
    from vrbench.estimators.base import Estimator

    found = []
    for spec in dict.fromkeys(ok_cells(frame)["estimator"]):
        name = str(spec).split(":")[0]
        if name not in estimators.registry:
            continue
        cls = estimators.registry.get(name)
        if any("fit" in vars(c) for c in cls.__mro__ if c not in (Estimator, object)):
            found.append(spec)
    return found


def fit_note(frame: pd.DataFrame, name: Callable[[str], str] = str) -> str:
    """A caption's sentence, where estimators that fit a state appear: each cell fits it
    once, so its variance is conditional on that one fit (empty where none appear)."""
    fitted = fitted_estimators(frame) if not frame.empty and "status" in frame else []
    if not fitted:
        return ""
    named = (", ".join(name(e) for e in fitted) if len(fitted) <= 4
             else f"{len(fitted)} estimators")
    return (f" Estimators that fit a baseline or control variate before measuring ({named}) "
            "fit it once per cell, from a seed of the cell's own (so a different fit at each "
            "n): their variance is conditional on that one fit, and the fit-to-fit spread is "
            "in no interval.")
