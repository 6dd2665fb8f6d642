"""What a report shows: estimators, problems and sample sizes chosen by name, glob or family,
from the command line or from a TOML figure spec, so a paper's figures are reproducible from
a file::

    # figures/section4.toml
    estimators = ["score_function", "rloo", "family:discrete", "mvd_*"]
    problems = ["bernoulli_*"]
    n = "largest"             # or 16, or [4, 16], or "all"
    style = "column"
    figures = ["variance_vs_samples", "relative_variance", "tables"]
    label_prefix = "tab:sec4"   # LaTeX labels tab:sec4-relative-variance, tab:sec4-cells

    [labels]                  # display names (see vrbench.reports.labels)
    score_function = "REINFORCE"
    [symbols]
    temperature = "τ"

``vrbench report results --spec figures/section4.toml``; options given on the command line
override the file's.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vrbench.errors import VrbenchError
from vrbench.reports.labels import Labels
from vrbench.tomlfiles import read_toml, refuse_unknown_keys

N_WORDS = ("all", "largest", "smallest")


def _tokens(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [t.strip() for item in items for t in str(item).split(",") if t.strip()]


def _normal(family: str) -> str:
    return family.lower().replace("_", " ").replace("-", " ")


def _is_glob(token: str) -> bool:
    return any(c in token for c in "*?[")


@dataclass(frozen=True)
class Selection:
    """Patterns choosing estimators, problems and sample sizes; empty means all.

    Estimator tokens are names (``rloo``, or with parameters
    ``gumbel_softmax:temperature=0.5``), globs (``score_function*``) or families
    (``family:discrete``, or a family's plain name when no estimator has that name:
    ``discrete``, ``"policy gradient"``). Problem tokens are names or globs. A token starting
    with ``!`` removes what it matches. ``n`` holds integers or one of ``all``, ``largest``,
    ``smallest``.
    """

    estimators: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    n: tuple[str, ...] = ()

    @classmethod
    def parse(cls, estimators: str | Sequence[str] | None = None,
              problems: str | Sequence[str] | None = None,
              n: str | int | Sequence[str | int] | None = None) -> Selection:
        n_tokens = _tokens([str(v) for v in n] if isinstance(n, (list, tuple)) else
                           (None if n is None else str(n)))
        for token in n_tokens:
            if token not in N_WORDS and not (token.isdigit() and int(token) > 0):
                raise VrbenchError(f"--n {token!r} is neither a positive integer nor one of "
                                   f"{', '.join(N_WORDS)}")
        return cls(tuple(_tokens(estimators)), tuple(_tokens(problems)), tuple(n_tokens))

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` selected. Unknown names raise an error naming the choices."""
        if frame.empty:
            return frame
        keep = _match_estimators(frame, self.estimators) & \
            _match_names(frame["problem"], self.problems, "problem")
        frame = frame[keep]
        return frame[frame["n_samples"].isin(self.sample_sizes(frame))]

    def sample_sizes(self, frame: pd.DataFrame) -> list[int]:
        """The sample sizes selected among those in ``frame``."""
        present = sorted(int(n) for n in frame["n_samples"].dropna().unique())
        if not self.n or "all" in self.n or not present:
            return present
        chosen = set()
        for token in self.n:
            if token == "largest":
                chosen.add(present[-1])
            elif token == "smallest":
                chosen.add(present[0])
            elif int(token) in present:
                chosen.add(int(token))
            else:
                raise VrbenchError(f"no results at n={token}; the results have n = "
                                   f"{', '.join(map(str, present))}")
        return sorted(chosen)

    def one_n(self) -> int | None:
        """The n a one-n figure uses when a single integer was asked for."""
        numbers = [int(t) for t in self.n if t.isdigit()]
        return max(numbers) if numbers and len(numbers) == len(self.n) else None


def _match_names(names: pd.Series, tokens: Sequence[str], kind: str) -> pd.Series:
    include = [t for t in tokens if not t.startswith("!")]
    exclude = [t[1:] for t in tokens if t.startswith("!")]
    valid = sorted(names.dropna().unique())
    keep = pd.Series(not include, index=names.index)
    for token, target in [(t, True) for t in include] + [(t, False) for t in exclude]:
        hits = names.map(lambda v, t=token: fnmatch.fnmatchcase(str(v), t))
        if not hits.any():
            _unknown(kind, token, valid)
        keep = keep | hits if target else keep & ~hits
    return keep


def _match_estimators(frame: pd.DataFrame, tokens: Sequence[str]) -> pd.Series:
    names = frame["estimator"].astype(str)
    bases = names.str.split(":").str[0]
    families = frame["family"].fillna("other").astype(str).map(_normal)
    include = [t for t in tokens if not t.startswith("!")]
    exclude = [t[1:] for t in tokens if t.startswith("!")]
    keep = pd.Series(not include, index=frame.index)
    for token, target in [(t, True) for t in include] + [(t, False) for t in exclude]:
        if token.lower().startswith("family:"):
            hits = families == _normal(token.split(":", 1)[1])
        else:
            hits = names.map(lambda v, t=token: fnmatch.fnmatchcase(v, t)) | \
                bases.map(lambda v, t=token: fnmatch.fnmatchcase(v, t))
            if not hits.any() and not _is_glob(token):
                hits = families == _normal(token)
        if not hits.any():
            valid = sorted(set(names)) + [f"family:{f}" for f in
                                          sorted(set(frame["family"].dropna()))]
            _unknown("estimator", token, valid)
        keep = keep | hits if target else keep & ~hits
    return keep


def _unknown(kind: str, token: str, valid: list[str]) -> None:
    close = difflib.get_close_matches(token, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise VrbenchError(f"no {kind} in the results matches {token!r}{hint}; valid: "
                       f"{', '.join(valid)}")


FIGURE_NAMES = ("variance_vs_samples", "bias_vs_variance", "work_normalized_fevals",
                "work_normalized_time", "relative_variance", "bias_vs_temperature",
                "variance_vs_parameter", "training_by_step", "training_by_time",
                "training_variance", "shared_run_variance", "tables")
LAYOUTS = ("pages", "per-problem")


@dataclass(frozen=True)
class ReportSpec:
    """A report's selection and settings; ``None`` fields take the command's defaults."""

    selection: Selection = field(default_factory=Selection)
    style: str | None = None
    formats: tuple[str, ...] | None = None
    figures: tuple[str, ...] | None = None
    reference: str | None = None
    layout: str | None = None
    labels: Labels = field(default_factory=Labels)
    """Display names and parameter symbols that override the components' own."""
    label_prefix: str | None = None
    """Prefix of the LaTeX ``\\label``s (default ``tab:vrbench``), so that the tables of two
    reports can sit in one document."""

    def wanted(self, name: str) -> bool:
        return self.figures is None or name in self.figures

    @property
    def requested(self) -> tuple[str, ...]:
        """The figures asked for by name (none when the report draws what it can)."""
        return self.figures or ()

    def override(self, **values: Any) -> ReportSpec:
        """This spec with every non-None value replaced (command-line options)."""
        selection = self.selection
        picks = {k: values.pop(k) for k in ("estimators", "problems", "n") if k in values}
        if any(v is not None for v in picks.values()):
            fresh = Selection.parse(**picks)
            selection = dataclasses.replace(selection, **{
                k: getattr(fresh, k) for k, v in picks.items() if v is not None})
        return dataclasses.replace(self, selection=selection,
                                   **{k: v for k, v in values.items() if v is not None})


SPEC_KEYS = ("estimators", "problems", "n", "style", "formats", "figures", "reference",
             "layout", "labels", "symbols", "label_prefix")
LABEL_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9:_.-]*$")


def load_spec(path: str | os.PathLike[str]) -> ReportSpec:
    """Read a TOML figure spec (keys: :data:`SPEC_KEYS`, all optional)."""
    path = Path(path)
    data = read_toml(path, "figure spec", VrbenchError)
    refuse_unknown_keys(data, SPEC_KEYS, path, VrbenchError)
    figures = tuple(_tokens(data.get("figures"))) or None
    for name in figures or ():
        if name not in FIGURE_NAMES:
            raise VrbenchError(f"{path}: unknown figure {name!r}; valid figures: "
                               f"{', '.join(FIGURE_NAMES)}")
    layout = data.get("layout")
    if layout is not None and layout not in LAYOUTS:
        raise VrbenchError(f"{path}: unknown layout {layout!r}; valid layouts: "
                           f"{', '.join(LAYOUTS)}")
    formats = tuple(_tokens(data.get("formats"))) or None
    try:
        labels = Labels.from_spec(data.get("labels"), data.get("symbols"), str(path))
    except TypeError as exc:
        raise VrbenchError(str(exc)) from None
    prefix = data.get("label_prefix")
    if prefix is not None and not (isinstance(prefix, str) and LABEL_PREFIX.match(prefix)):
        raise VrbenchError(f"{path}: label_prefix {prefix!r} must be a LaTeX label: a letter "
                           "followed by letters, digits and : _ . -")
    return ReportSpec(
        selection=Selection.parse(data.get("estimators"), data.get("problems"), data.get("n")),
        style=data.get("style"), formats=formats, figures=figures,
        reference=data.get("reference"), layout=layout, labels=labels, label_prefix=prefix)
