"""Display names: how figures, tables and captions name estimators, problems and parameters.

Every component declares its name for readers once, as the class attribute
``display_name`` (see :class:`vrbench.components.Component`): "REINFORCE", "DisARM",
"Gumbel-softmax (τ = {temperature})", "Bernoulli, t = {t}". A ``{parameter}`` in it is the
parameter's value; the parameters a results row sets to other than their defaults, and that
the template does not show, follow it: ``(τ = 0.1)`` after an estimator, ``, D = 20`` after
a problem, each named by the component's ``parameter_symbols`` (default: the parameter's
name). A component without a ``display_name`` (a plugin, say) is called by its registered
name with spaces for underscores, so every estimator has a readable name without doing
anything.

A report overrides any of them from its figure spec::

    [labels]                 # by registered name, or by a results row's full name
    score_function = "REINFORCE"
    "gumbel_softmax:temperature=0.1" = "GS (τ = 0.1)"
    bernoulli_toy = "toy, t = {t}"
    [symbols]                # how parameters are written
    omega = "k"

Names are text with Unicode symbols (τ, ², −, ‖) and optional ``$...$`` mathtext: figures
draw them as they are, :func:`latex` turns them into LaTeX for the tables, :func:`plain`
into plain Unicode for HTML and Markdown.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vrbench.components import parse_specs

PLACEHOLDER = re.compile(r"\{(\w+)\}")

_LATEX_SYMBOLS = {
    "α": r"\alpha", "β": r"\beta", "γ": r"\gamma", "δ": r"\delta", "ε": r"\varepsilon",
    "η": r"\eta", "θ": r"\theta", "κ": r"\kappa", "λ": r"\lambda", "μ": r"\mu", "ν": r"\nu",
    "π": r"\pi", "ρ": r"\rho", "σ": r"\sigma", "τ": r"\tau", "φ": r"\phi", "ω": r"\omega",
    "Σ": r"\Sigma", "Φ": r"\Phi", "Ω": r"\Omega", "Δ": r"\Delta", "Γ": r"\Gamma",
    "−": "-", "×": r"\times", "·": r"\cdot", "²": "^2", "³": "^3", "√": r"\surd",
    "‖": r"\|", "∇": r"\nabla", "≥": r"\geq", "≤": r"\leq", "∂": r"\partial", "≈": r"\approx",
    "⁻": "^-", "¹": "^1", "⁰": "^0", "∞": r"\infty", "†": r"\dagger",
    "|": "|", "<": "<", ">": ">",  # text fonts of LaTeX's default encoding lack these
}
"""Unicode symbols of display names, as LaTeX math."""
_TEXT_ESCAPES = (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"),
                 ("#", r"\#"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"),
                 ("^", r"\textasciicircum{}"))
_PLAIN_COMMANDS = {latex.strip("\\"): symbol for symbol, latex in _LATEX_SYMBOLS.items()
                   if latex.startswith("\\") and latex[1:].isalpha()}
_PLAIN_COMMANDS.update({"sqrt": "√", "mathbb": "", "epsilon": "ε"})
SUPERSCRIPTS = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")
_SUPERSCRIPT_DIGITS = "⁰¹²³⁴⁵⁶⁷⁸⁹⁻"
_SUBSCRIPT_DIGITS = "₀₁₂₃₄₅₆₇₈₉"
_FROM_SUPERSCRIPT = str.maketrans(_SUPERSCRIPT_DIGITS, "0123456789-")
_FROM_SUBSCRIPT = str.maketrans(_SUBSCRIPT_DIGITS, "0123456789")


def format_value(value: Any) -> str:
    """A parameter's value as a reader writes it: ``0.499``, ``−3``, ``0.631``, ``10⁻⁴``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        text = value
        try:
            value = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:
            return text
    if isinstance(value, int):
        return str(value).replace("-", "−")
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and not 1e-3 <= abs(value) < 1e5:
            exponent = math.floor(math.log10(abs(value)))
            mantissa = value / 10**exponent
            power = f"10{str(exponent).translate(SUPERSCRIPTS)}"
            text = power if math.isclose(abs(mantissa), 1.0) else f"{abs(mantissa):.3g}×{power}"
            return ("−" if value < 0 else "") + text
        return f"{value:.3g}".replace("-", "−")
    return str(value)


def _split(spec: str) -> tuple[str, dict[str, Any]]:
    """A results row's name (``gumbel_softmax:temperature=0.5``) as name and parameters."""
    if ":" not in spec:
        return spec, {}
    try:
        parsed = parse_specs(spec)
    except Exception:  # not a spec the parser reads: shown as it is
        return spec, {}
    if len(parsed) != 1:
        return spec, {}
    return parsed[0].name, dict(parsed[0].params)


def _same(a: Any, b: Any) -> bool:
    """Whether a parameter's value (as text from a results row) equals its default."""
    try:
        return math.isclose(float(a), float(b)) if not isinstance(b, bool) else \
            str(a).lower() in {str(b).lower(), str(int(b))}
    except (TypeError, ValueError):
        return str(a) == str(b)


def _registry(kind: str) -> Any:
    from vrbench import estimators, problems

    return estimators.registry if kind == "estimator" else problems.registry


@dataclass(frozen=True)
class Labels:
    """A report's display names: each component's own, with the spec's overrides.

    ``names`` maps a registered name (or a results row's full name, parameters included) to
    a display name; ``symbols`` maps a parameter to how it is written.
    """

    names: Mapping[str, str] = field(default_factory=dict)
    symbols: Mapping[str, str] = field(default_factory=dict)

    def estimator(self, spec: str) -> str:
        """An estimator's display name: ``Gumbel-softmax (τ = 0.1)``."""
        return self._display("estimator", spec)

    def problem(self, spec: str) -> str:
        """A problem's display name: ``Bernoulli, t = 0.45``."""
        return self._display("problem", spec)

    def symbol(self, parameter: str, component: str | None = None) -> str:
        """How ``parameter`` (of ``component``, a registered name) is written: ``τ``."""
        if parameter in self.symbols:
            return self.symbols[parameter]
        for kind in ("problem", "estimator"):
            registry = _registry(kind)
            if component is not None and component in registry:
                own = registry.get(component).parameter_symbols
                if parameter in own:
                    return str(own[parameter])
        return parameter

    def _display(self, kind: str, spec: str) -> str:
        spec = str(spec)
        if spec in self.names:
            return self.names[spec]
        name, given = _split(spec)
        registry = _registry(kind)
        cls = registry.get(name) if name in registry else None
        defaults = cls.parameters() if cls is not None else {}
        template = self.names.get(name) or (cls.display_name if cls is not None else None) \
            or name.replace("_", " ")
        values = {**defaults, **given}
        shown = {key for key in PLACEHOLDER.findall(template) if key in values}
        # A parameter naming another component (delta_cv's base) is written as its name.
        components = getattr(cls, "component_parameters", {}) if cls is not None else {}

        def written(key: str) -> str:
            value = values[key]
            if key in components and isinstance(value, str):
                return self._display(components[key], value)
            return format_value(value)

        text = PLACEHOLDER.sub(lambda m: written(m.group(1)) if m.group(1) in shown
                               else m.group(0), template)
        rest = [f"{self.symbol(key, name)} = {written(key)}"
                for key, value in given.items()
                if key not in shown and not (key in defaults and _same(value, defaults[key]))]
        if not rest:
            return text
        return f"{text} ({', '.join(rest)})" if kind == "estimator" else \
            ", ".join([text, *rest])

    @classmethod
    def from_spec(cls, labels: Mapping[str, Any] | None, symbols: Mapping[str, Any] | None,
                  where: str = "figure spec") -> Labels:
        """Overrides read from a spec's ``labels`` and ``symbols`` tables (text values)."""
        for table, key in ((labels, "labels"), (symbols, "symbols")):
            if table is None:
                continue
            if not isinstance(table, Mapping):
                raise TypeError(f"{where}: {key} must be a table of names to text, got "
                                f"{json.dumps(table, default=str)}")
            for name, value in table.items():
                if not isinstance(value, str):
                    raise TypeError(f"{where}: {key}.{name} must be text, got {value!r}")
        return cls(dict(labels or {}), dict(symbols or {}))


def _math_spans(text: str) -> list[tuple[bool, str]]:
    """``text`` cut into (is math, piece) at unescaped ``$`` signs."""
    pieces = re.split(r"(?<!\\)\$", text)
    if len(pieces) % 2 == 0:  # an unmatched $: all text
        return [(False, text)]
    return [(i % 2 == 1, piece) for i, piece in enumerate(pieces) if piece]


_ASSIGNMENT = re.compile(
    r"(?<![\w.])([A-Za-z]|[α-ωΑ-Ω])( = )([−-]?\d[\d.]*(?:×10[⁻⁰-⁹¹²³]+|10[⁻⁰-⁹¹²³]+)?)"
    r"(?![\w.])")
"""A parameter set to a number, ``t = 0.499``, ``β = 0.1``, ``D = 20``: typeset as a
formula, as a paper writes it (a multi-letter name, ``staleness = 0.5``, stays text)."""


def _math_assignments(text: str) -> str:
    """``text`` with each :data:`_ASSIGNMENT` outside ``$...$`` made a formula, its symbols
    as LaTeX (``β = 0.1`` → ``$\\beta = 0.1$``)."""
    out = []
    for is_math, piece in _math_spans(text):
        if is_math:
            out.append(f"${piece}$")
            continue
        out.append(_ASSIGNMENT.sub(lambda m: "$" + _symbols_as_math(m.group(0)) + "$", piece))
    return "".join(out)


def _symbols_as_math(text: str) -> str:
    run = ""
    for char in re.findall(f"[{_SUPERSCRIPT_DIGITS}]+|.", text, re.S):
        if char[0] in _SUPERSCRIPT_DIGITS:
            run += "^{" + char.translate(_FROM_SUPERSCRIPT) + "}"
        else:
            run += _LATEX_SYMBOLS.get(char, char)
    return run


def with_note(text: str, note: str) -> str:
    """A display name with a note in parentheses, joined to a parenthesis that ends it:
    ``PPO (clip ε = 0.3)`` + ``biased`` → ``PPO (clip ε = 0.3, biased)``, never two."""
    if text.endswith(")") and not text.endswith("$)"):
        return f"{text[:-1]}, {note})"
    return f"{text} ({note})"


def latex(text: str) -> str:
    """A display name as LaTeX text: specials escaped, Unicode symbols as math, ``$...$``
    kept as it is, a parameter set to a number as one formula
    (``Gumbel-softmax (τ = 0.5)`` → ``Gumbel-softmax ($\\tau = 0.5$)``)."""
    out = []
    for is_math, piece in _math_spans(_math_assignments(text)):
        if is_math:
            out.append(f"${piece}$")
            continue
        run = ""  # consecutive symbols, set as one formula
        for char in re.findall(f"[{_SUBSCRIPT_DIGITS}]+|[{_SUPERSCRIPT_DIGITS}]+|.", piece,
                               re.S):
            if char[0] in _SUBSCRIPT_DIGITS:  # log₁₀: a subscript, its digits together
                run += "_{" + char.translate(_FROM_SUBSCRIPT) + "}"
                continue
            if char[0] in _SUPERSCRIPT_DIGITS and len(char) > 1:
                run += "^{" + char.translate(_FROM_SUPERSCRIPT) + "}"
                continue
            if char in _LATEX_SYMBOLS:
                run += _LATEX_SYMBOLS[char]
                continue
            if run:
                out.append(f"${run}$")
                run = ""
            out.append(dict(_TEXT_ESCAPES).get(char, char))
        if run:
            out.append(f"${run}$")
    return "".join(out)


def plain(text: str) -> str:
    """A display name as plain Unicode text (HTML, Markdown, the console): mathtext's ``$``
    dropped and its commands written as symbols (``$\\tau^{2}$`` → ``τ²``)."""
    out = []
    for is_math, piece in _math_spans(text):
        if not is_math:
            out.append(piece)
            continue
        piece = piece.replace("\\|", "‖").replace("-", "−")
        piece = re.sub(r"\\([A-Za-z]+)\s?",
                       lambda m: _PLAIN_COMMANDS.get(m.group(1), m.group(1)), piece)
        piece = re.sub(r"\^\{?(-?\d+)\}?", lambda m: m.group(1).translate(SUPERSCRIPTS),
                       piece)
        out.append(piece.replace("{", "").replace("}", "").replace("\\", ""))
    return "".join(out)


def words(text: str) -> list[str]:
    """``text`` cut at the spaces outside ``$...$``: the pieces between which a line may
    break (a display name never breaks inside a word or a formula)."""
    pieces, current, in_math = [], "", False
    for char in text:
        if char == "$" and not current.endswith("\\"):
            in_math = not in_math
        if char == " " and not in_math:
            if current:
                pieces.append(current)
            current = ""
        else:
            current += char
    if current:
        pieces.append(current)
    joined: list[str] = []  # "t = 0.5", "x > 0" are one piece: no line ends at an operator
    for piece in pieces:
        if joined and (piece[0] in _OPERATORS or joined[-1][-1] in _OPERATORS):
            joined[-1] += " " + piece
        else:
            joined.append(piece)
    return joined


_OPERATORS = "=<>≤≥×+−·"


def resolve(labels: Labels, estimators: Iterable[str], problems: Iterable[str]) -> Labels:
    """``labels`` with the display name of every shown estimator and problem written out,
    and names that two of them would share told apart by their results names
    (``measure-valued [mvd_bernoulli]``): a legend never lists one name twice."""
    names = dict(labels.names)
    for kind, specs in (("estimator", estimators), ("problem", problems)):
        shown = {spec: labels._display(kind, spec) for spec in dict.fromkeys(map(str, specs))}
        counts = Counter(shown.values())
        for spec, text in shown.items():
            names[spec] = text if counts[text] == 1 else f"{text} [{spec}]"
    return Labels(names, labels.symbols)
