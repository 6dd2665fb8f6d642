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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vrbench.errors import VrbenchError
from vrbench.reports.labels import Labels
from vrbench.reports.registry import check_figure_names
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


FAMILY_PREFIX = "family:"
UNKNOWN_FAMILY = "other"
"""The family of an estimator whose results name none (and that this installation does
not know)."""


@dataclass(frozen=True)
class Choices:
    """Every name a selection may choose, of one kind (``estimator`` or ``problem``), with
    each name's family where the kind has families (estimators do; problems do not).

    One set of rules serves estimators, problems and the traces of either: a token is

    - a name or glob, matched against the whole name (``rloo:k=4``) and against its
      registered part (``rloo``), so ``rloo`` chooses every variant of it;
    - ``family:NAME`` (where the kind has families), or a family's plain name when no name
      matches it and it is no glob (``discrete``, ``"policy gradient"``; ``_``, ``-`` and
      space are alike, case is ignored);
    - any of these after ``!``: removes what it matches.

    With no token but exclusions, everything is chosen first. A token that matches none of
    the choices is an error naming the valid ones (and the closest, when one is close).
    """

    kind: str
    names: tuple[str, ...]
    families: Mapping[str, str] | None = None
    """Name → family, for a kind with families (a name missing here is ``other``)."""

    @classmethod
    def of(cls, kind: str, *columns: pd.Series | None,
           families: Mapping[str, str] | None = None) -> Choices:
        """The choices among the names in ``columns`` (None: absent)."""
        names = {str(v) for column in columns if column is not None
                 for v in column.dropna().unique()}
        return cls(kind, tuple(sorted(names)), families)

    def chosen(self, values: pd.Series, tokens: Sequence[str]) -> pd.Series:
        """Which of ``values`` (names of this kind) ``tokens`` choose, as a boolean mask."""
        include = [t for t in tokens if not t.startswith("!")]
        exclude = [t[1:] for t in tokens if t.startswith("!")]
        keep = pd.Series(not include, index=values.index)
        texts = values.astype(str)
        for token, target in [(t, True) for t in include] + [(t, False) for t in exclude]:
            hits = texts.map(self._rule(token)).astype(bool)
            keep = keep | hits if target else keep & ~hits
        return keep

    def check(self, tokens: Sequence[str]) -> None:
        """Refuse a token that matches none of the choices, naming the valid ones."""
        for token in tokens:
            self._rule(token.removeprefix("!"))

    def _rule(self, token: str) -> Callable[[str], bool]:
        """What ``token`` matches, decided on all the choices, so that a token means the
        same in every table it selects from."""
        if self.families is not None and token.lower().startswith(FAMILY_PREFIX):
            return self._in_family(token[len(FAMILY_PREFIX):])
        rule = self._by_name(token)
        if any(map(rule, self.names)):
            return rule
        if self.families is not None and not _is_glob(token):
            in_family = self._in_family(token)
            if any(map(in_family, self.names)):
                return in_family
        self._unknown(token)
        raise AssertionError("unreachable")  # _unknown raises

    def _by_name(self, token: str) -> Callable[[str], bool]:
        return lambda name: (fnmatch.fnmatchcase(name, token)
                             or fnmatch.fnmatchcase(name.split(":")[0], token))

    def _in_family(self, family: str) -> Callable[[str], bool]:
        families = self.families or {}
        wanted = _normal(family)
        return lambda name: _normal(families.get(name, UNKNOWN_FAMILY)) == wanted

    def _unknown(self, token: str) -> None:
        valid = list(self.names)
        if self.families is not None:
            valid += [f"{FAMILY_PREFIX}{f}" for f in
                      sorted({self.families[name] for name in self.names
                              if name in self.families})]
        close = difflib.get_close_matches(token, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise VrbenchError(f"no {self.kind} in the results matches {token!r}{hint}; valid: "
                           f"{', '.join(valid)}")


def estimator_families(cells: pd.DataFrame | None, *others: pd.Series | None
                       ) -> dict[str, str]:
    """Each estimator's family: as the cells record it, else (for traces, which record
    none) as the estimator's registry entry says, where this installation knows it."""
    from vrbench import estimators

    families: dict[str, str] = {}
    recorded: set[str] = set()  # a cell's family, even none (``other``), is the results' word
    if cells is not None and not cells.empty and "family" in cells:
        for name, family in zip(cells["estimator"], cells["family"], strict=True):
            recorded.add(str(name))
            if pd.notna(family):
                families[str(name)] = str(family)
    for column in others:
        for name in ([] if column is None else column.dropna().unique()):
            base = str(name).split(":")[0]
            if str(name) not in recorded and base in estimators.registry:
                families[str(name)] = estimators.registry.get(base).family
    return families


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

    def apply(self, frame: pd.DataFrame, estimators: Choices | None = None,
              problems: Choices | None = None) -> pd.DataFrame:
        """The cells of ``frame`` selected by name (see :meth:`by_name`) and sample size. A
        sample size not in ``frame`` is an error naming those that are."""
        if frame.empty:
            return frame
        frame = self.by_name(frame, estimators, problems)
        return frame[frame["n_samples"].isin(self.sample_sizes(frame))]

    def by_name(self, frame: pd.DataFrame, estimators: Choices | None = None,
                problems: Choices | None = None) -> pd.DataFrame:
        """The rows of ``frame`` (cells, or the traces of training or shared runs) whose
        estimator and problem the tokens choose, each token read against the
        ``estimators`` and ``problems`` choices (default: the names in ``frame``; a report
        passes every name of its data, so that a token means the same in each table and
        is unknown only when no table has it). A token that matches no choice is an error
        naming them (see :class:`Choices`)."""
        if frame.empty:
            return frame
        estimators = estimators or Choices.of(
            "estimator", frame["estimator"],
            families=estimator_families(frame, frame["estimator"]))
        problems = problems or Choices.of("problem", frame["problem"])
        return frame[estimators.chosen(frame["estimator"], self.estimators)
                     & problems.chosen(frame["problem"], self.problems)]

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
    check_figure_names(figures or (), where=f"{path}: ")
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
