"""MkDocs hooks that build vrbench's documentation site from the code and the README.

Nothing here is written twice: the guide pages are the README's sections, the estimator,
problem and capability pages are read from the registries at build time (docstrings, class
attributes, parameter defaults, the capability records), and the API reference is
mkdocstrings reading the modules. So the site cannot drift from the code: a new estimator
gets its page, and a changed default shows on the next ``make docs``.

MkDocs loads this file through ``hooks:`` in ``mkdocs.yml``; mkdocstrings loads
:class:`RestRoles` through ``extensions:`` to turn the docstrings' reST markup into Markdown.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from pathlib import Path
from typing import Any

from griffe import Extension, Object
from markdown.extensions.toc import slugify
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent

GALLERY_RESULTS = ROOT / "build" / "docs" / "quick"
"""Where ``make docs`` runs ``configs/quick.toml`` before building; the gallery page shows the
report of these results (with no results there, it says how to make them)."""

ROLE = re.compile(r":(?:meth|func|class|data|mod|attr|obj|exc):`(~?)([^`]+)`")
"""A Sphinx cross-reference role, ``:meth:`Problem.transform```: shown as code."""

API_MODULES: dict[str, list[str]] = {
    "vrbench.estimators": ["vrbench.estimators", "vrbench.estimators.base"],
    "vrbench.problems": ["vrbench.problems", "vrbench.problems.base"],
    "vrbench.testing": ["vrbench.testing"],
    "vrbench.bench": ["vrbench.bench"],
    "vrbench.reports": ["vrbench.reports", "vrbench.reports.registry"],
    "vrbench.registry": ["vrbench.registry"],
    "vrbench.components": ["vrbench.components"],
    "vrbench.errors": ["vrbench.errors"],
}
"""The reference's pages and the modules each renders. A package's page shows only what it
adds to the module rendered after it (``register``, ``make``, ``registry``), so no object is
documented twice."""

PACKAGE_MEMBERS = {"vrbench.estimators": ["register", "make", "registry"],
                   "vrbench.problems": ["register", "make", "registry"]}


def markdown_from_rest(text: str) -> str:
    """A docstring's reST markup as Markdown: roles become code, ``::`` blocks fences."""
    text = ROLE.sub(lambda m: f"`{m.group(2).split('.')[-1] if m.group(1) else m.group(2)}`",
                    text)
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.rstrip().endswith("::"):
            out.append(line)
            i += 1
            continue
        head = line.rstrip()[:-2].rstrip()
        if head:
            out.append(head + ":")
        indent = len(line) - len(line.lstrip())
        i += 1
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip()
                                  or len(lines[i]) - len(lines[i].lstrip()) > indent):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            block.pop()
        body = inspect.cleandoc("\n".join(block)).splitlines()
        out += ["", "```text", *body, "```", ""]
    return "\n".join(out)


class RestRoles(Extension):
    """Griffe extension: rewrite each docstring with :func:`markdown_from_rest`."""

    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_from_rest(obj.docstring.value)


# ---------------------------------------------------------------------------------------------
# Pages generated from the README


def _readme_pages() -> dict[str, str]:
    """The README cut at its ``##`` headings: the title and quick start are the home page,
    each other section a guide page. Links are rewritten to the pages they now point to."""
    sections: list[tuple[str, list[str]]] = [("index.md", [])]
    fence = False
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fence = not fence
        if not fence and line.startswith("## ") and line != "## Quick start":
            title = line[3:].strip()
            sections.append((f"guide/{slugify(title, '-')}.md", ["# " + title]))
            continue
        sections[-1][1].append(line)
    anchors = {}
    for path, lines in sections:
        for line in lines:
            if line.startswith("#") and not line.startswith("# "):
                anchors[slugify(line.lstrip("#").strip(), "-")] = path
        anchors[slugify(lines[0].lstrip("#").strip(), "-")] = path
    return {path: _relink("\n".join(lines) + "\n", path, anchors) for path, lines in sections}


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _relink(text: str, page: str, anchors: dict[str, str]) -> str:
    """Point the README's links at the site's pages; a file outside the site becomes its
    path in the source tree."""
    depth = page.count("/")
    up = "../" * depth

    def target(match: re.Match[str]) -> str:
        link = match.group(1)
        if re.match(r"[a-z]+:", link):
            return match.group(0)
        if link.startswith("#"):
            where = anchors.get(link[1:], page)
            own = where == page
            return f"]({'' if own else up + where}{link})"
        if link.startswith("docs/") and link.endswith(".md"):
            return f"]({up}{link[len('docs/'):]})"
        return f"](__source__/{link})"

    text = LINK.sub(target, text)
    # A link into the source tree has no page on the site: say where the file is instead.
    def source(match: re.Match[str]) -> str:
        words, path = match.group(1), match.group(2)
        if words.strip("`") == path:
            return f"`{path}` (in the source tree)"
        return f"{words} (`{path}` in the source tree)"

    return re.sub(r"\[([^\]]+)\]\(__source__/([^)]+)\)", source, text)


# ---------------------------------------------------------------------------------------------
# Pages generated from the registries


def _doc(cls: type) -> str:
    """A component's own docstring as Markdown (a dataclass without one gets its signature
    as ``__doc__``, which is not documentation)."""
    doc = cls.__dict__.get("__doc__") or ""
    if not doc or doc.startswith(cls.__name__ + "("):
        return "*(no docstring)*"
    return markdown_from_rest(inspect.cleandoc(doc))


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _parameters(cls: type) -> list[str]:
    fields = [f for f in dataclasses.fields(cls) if f.init]
    if not fields:
        return ["No parameters."]
    rows = ["| parameter | default | type |", "|---|---|---|"]
    for f in fields:
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else "—")
        rows.append(f"| `{f.name}` | `{_cell(default)}` | `{_cell(f.type)}` |")
    return rows


@functools.cache
def _applies(estimator: str, problem: str) -> bool:
    """Whether ``Estimator.incompatibility`` lets the estimator (default parameters) run on
    the problem (default parameters) at one of the sample sizes ``vrbench check`` uses."""
    from vrbench import estimators, problems
    from vrbench.testing import sample_sizes

    instance = estimators.make(estimator)
    target = problems.make(problem)
    return any(instance.incompatibility(target, n) is None for n in sample_sizes(instance))


def _capability_link(capability: Any, up: str) -> str:
    return f"[{capability.value}]({up}capabilities.md#{capability.value})"


def _estimator_page(entry: Any, problem_entries: list[Any]) -> str:
    from vrbench.reports.labels import Labels, plain

    cls = entry.cls
    requires = ", ".join(_capability_link(c, "../") for c in sorted(cls.requires)) or "—"
    facts = [
        "| | |", "|---|---|",
        f"| printed as | {_cell(plain(Labels().estimator(entry.name)))} |",
        f"| family | {cls.family} |",
        f"| unbiased | {'yes (a claim `vrbench check` tests)' if cls.unbiased else 'no'} |",
        f"| requires | {requires} |",
    ]
    if cls.requirement_note:
        facts.append(f"| also requires | {_cell(cls.requirement_note)} |")
    facts += [
        f"| smallest n | {cls.min_samples} |",
        f"| evaluations of f per draw | {cls.evals_per_sample} |",
        f"| reference | {_cell(cls.reference) or '—'} |",
        f"| class | `{cls.__module__}.{cls.__qualname__}` |",
        f"| origin | {entry.origin} |",
    ]
    applies = [f"[`{p.name}`](../problems/{p.name}.md)" for p in problem_entries
               if _applies(entry.name, p.name)]
    return "\n".join([
        f"# `{entry.name}`", "", _doc(cls), "", *facts, "",
        "## Parameters", "", *_parameters(cls), "",
        *(["Set them as in `vrbench run -e " + entry.name + ":key=value`.", ""]
          if cls.parameters() else []),
        "## Problems it applies to", "",
        "With default parameters, at one of the sample sizes `vrbench check` uses: "
        + (", ".join(applies) or "none of the registered problems") + ".", "",
    ])


def _problem_page(entry: Any, estimator_entries: list[Any]) -> str:
    from vrbench.reports.labels import Labels, plain

    cls = entry.cls
    capabilities = ", ".join(_capability_link(c, "../") for c in sorted(cls.capabilities))
    facts = [
        "| | |", "|---|---|",
        f"| printed as | {_cell(plain(Labels().problem(entry.name)))} |",
        f"| capabilities | {capabilities or '—'} |",
        f"| optimization | {'ascends J' if cls.maximize else 'descends J'} |",
        f"| reference | {_cell(cls.reference) or '—'} |",
        f"| checked with | `{_cell(dict(cls.check_params)) if cls.check_params else 'defaults'}` |",
        f"| class | `{cls.__module__}.{cls.__qualname__}` |",
        f"| origin | {entry.origin} |",
    ]
    applies = [f"[`{e.name}`](../estimators/{e.name}.md)" for e in estimator_entries
               if _applies(e.name, entry.name)]
    return "\n".join([
        f"# `{entry.name}`", "", _doc(cls), "", *facts, "",
        "## Parameters", "", *_parameters(cls), "",
        *(["Set them as in `vrbench run -p " + entry.name + ":key=value`.", ""]
          if cls.parameters() else []),
        "## Estimators that apply", "",
        "With default parameters, at one of the sample sizes `vrbench check` uses: "
        + (", ".join(applies) or "none of the registered estimators") + ".", "",
    ])


def _index(kind: str, entries: list[Any], columns: list[str], row: Any) -> str:
    return "\n".join([
        f"# {kind.capitalize()}", "",
        f"Every registered {kind[:-1]}, one page each, generated from its docstring and "
        "class attributes (`vrbench list " + kind + "` shows the same registry).", "",
        "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
        *("| " + " | ".join(_cell(c) for c in row(e)) + " |" for e in entries), "",
    ])


def _capabilities_page(problem_entries: list[Any]) -> str:
    from vrbench.testing.capabilities import CAPABILITIES, estimators_using

    lines = [
        "# Capabilities", "",
        "Problems declare capabilities; estimators require them, and run only on problems "
        "that have every one they require. This page is generated from the records of "
        "`vrbench.testing.capabilities.CAPABILITIES`, as `vrbench list capabilities` is and "
        "as `vrbench check` runs their checks; [Adding a problem](adding-a-problem.md) "
        "explains each with an example, [Adding a capability](adding-a-capability.md) how to "
        "add one.", "",
    ]
    for spec in CAPABILITIES:
        capability = spec.capability
        problems = [f"[`{p.name}`](problems/{p.name}.md)" for p in problem_entries
                    if capability in p.cls.capabilities]
        estimators = [f"[`{name}`](estimators/{name}.md)" for name in estimators_using(capability)]
        members = ", ".join(f"`{m}`" for m in spec.members) or "none beyond the protocol"
        lines += [
            f"## {capability.value}", "",
            spec.description, "",
            f"- **Members it needs:** {members}",
            f"- **Problems that declare it:** {', '.join(problems) or 'none'}",
            f"- **Estimators it lets run:** {', '.join(estimators) or 'none'}", "",
        ]
    return "\n".join(lines)


def _component_pages() -> dict[str, str]:
    from vrbench import estimators, problems

    estimator_entries = estimators.registry.entries()
    problem_entries = problems.registry.entries()
    pages = {f"estimators/{e.name}.md": _estimator_page(e, problem_entries)
             for e in estimator_entries}
    pages |= {f"problems/{p.name}.md": _problem_page(p, estimator_entries)
              for p in problem_entries}
    pages["estimators/index.md"] = _index(
        "estimators", estimator_entries, ["name", "family", "unbiased", "requires", "summary"],
        lambda e: [f"[`{e.name}`]({e.name}.md)", e.cls.family,
                   "yes" if e.cls.unbiased else "no", e.cls.requirements() or "—",
                   markdown_from_rest(e.cls.summary())])
    pages["problems/index.md"] = _index(
        "problems", problem_entries, ["name", "capabilities", "summary"],
        lambda p: [f"[`{p.name}`]({p.name}.md)", ", ".join(sorted(p.cls.capabilities)),
                   markdown_from_rest(p.cls.summary())])
    pages["capabilities.md"] = _capabilities_page(problem_entries)
    return pages


def _reference_pages() -> dict[str, str]:
    pages = {}
    for page, modules in API_MODULES.items():
        blocks = []
        for module in modules:
            members = PACKAGE_MEMBERS.get(module)
            options = ("\n    options:\n      members: [" + ", ".join(members) + "]"
                       if members else "")
            blocks.append(f"::: {module}{options}")
        pages[f"reference/{page}.md"] = "\n\n".join(blocks) + "\n"
    return pages


def _gallery() -> tuple[dict[str, str], dict[str, Path]]:
    """The gallery page, and the figures it shows: the report of ``configs/quick.toml``'s
    results, drawn now from the sweep ``make docs`` has just run."""
    results = GALLERY_RESULTS / "results.parquet"
    lines = ["# Gallery", "",
             "The figures and tables of `vrbench report` for the sweep `configs/quick.toml` "
             "(`vrbench run --config configs/quick.toml`), drawn while this site was built."]
    if not results.is_file():
        lines += ["", "!!! note", "    No results: `make docs` runs the sweep before building "
                  "the site; `mkdocs build` alone does not."]
        return {"gallery.md": "\n".join(lines) + "\n"}, {}
    from vrbench.reports.build import build_report

    report = build_report([GALLERY_RESULTS], GALLERY_RESULTS / "report", formats=["svg"])
    figures: dict[str, Path] = {}
    for figure in report.figures:
        lines += ["", f"## {figure.name}", ""]
        for stem in figure.stems:
            figures[f"gallery/{stem}.svg"] = GALLERY_RESULTS / "report" / f"{stem}.svg"
            lines.append(f"![{figure.name}](gallery/{stem}.svg)")
        lines += ["", figure.caption]
    if report.not_drawn:
        lines += ["", "## Not drawn", "", "What this sweep's results cannot show, and why:", ""]
        lines += [f"- `{name}`: {why}" for name, why in report.not_drawn.items()]
    tables = (GALLERY_RESULTS / "report" / "summary.md").read_text(encoding="utf-8")
    lines += ["", "## Tables (Markdown)", "", tables.replace("\n## ", "\n### ")
              .replace("## ", "### ", 1)]
    return {"gallery.md": "\n".join(lines) + "\n"}, figures


def _generated() -> dict[str, str]:
    return _readme_pages() | _component_pages() | _reference_pages()


WRITTEN_PAGES = ("adding-an-estimator.md", "adding-a-problem.md", "adding-a-capability.md",
                 "adding-a-figure.md")
"""The pages written for the site (in docs/), in the navigation's order; any other Markdown
file there is not in the navigation, which fails the strict build."""

_PAGES: dict[str, str] = {}
_FIGURES: dict[str, Path] = {}


def _title(markdown: str) -> str:
    return next(line[2:].strip() for line in markdown.splitlines() if line.startswith("# "))


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Build the generated pages and the navigation that lists them."""
    from vrbench import estimators, problems

    _PAGES.clear()
    _PAGES.update(_generated())
    gallery, figures = _gallery()
    _PAGES.update(gallery)
    _FIGURES.clear()
    _FIGURES.update(figures)
    guides = [p for p in _PAGES if p.startswith("guide/")]
    titles = {p: _title(_PAGES[p]) for p in guides}
    config.nav = [
        {"Home": "index.md"},
        {"Guide": [{titles[p]: p} for p in guides]},
        *({_title((ROOT / "docs" / page).read_text(encoding="utf-8")): page}
          for page in WRITTEN_PAGES),
        {"Estimators": ["estimators/index.md",
                        *(f"estimators/{n}.md" for n in estimators.registry.names())]},
        {"Problems": ["problems/index.md",
                      *(f"problems/{n}.md" for n in problems.registry.names())]},
        {"Capabilities": "capabilities.md"},
        {"Gallery": "gallery.md"},
        {"API reference": [{m: f"reference/{m}.md"} for m in API_MODULES]},
    ]
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated pages to the site."""
    for path, content in _PAGES.items():
        files.append(File.generated(config, path, content=content))
    for path, source in _FIGURES.items():
        files.append(File.generated(config, path, abs_src_path=str(source)))
    return files
