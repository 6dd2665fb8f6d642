# Two commands: `make sweep` runs the default benchmark, `make test` runs the test suite.
# Both create and fill .venv first if needed, with the tested versions from constraints.txt.
# `make test-fast` skips the tests marked slow; `make typecheck` (which both run) is mypy
# --strict on vrbench/; `make docs` builds the documentation site.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JAX_STAMP := $(VENV)/.jax-installed
DOCS_STAMP := $(VENV)/.installed-docs

.PHONY: sweep test test-fast lint typecheck docs bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,reports]'
	touch $(STAMP)

sweep: $(STAMP)
	$(BIN)/vrbench run --config configs/default.toml

lint: $(STAMP)
	$(BIN)/ruff check vrbench tests benchmarks examples

# mypy in strict mode on vrbench/ (its settings are [tool.mypy] in pyproject.toml).
typecheck: $(STAMP)
	$(BIN)/mypy

# The tests run in one process per core (pytest-xdist), each test file whole in one of
# them: files share module fixtures (the plugin package is installed once per module).
PARALLEL := -n auto --dist loadfile

# pytest exits 5 when it collects no test: that is a failure here, not a pass.
# The docs extra too: a test checks the generated capability page against the records.
test: lint typecheck $(DOCS_STAMP)
	$(BIN)/python -m pytest $(PARALLEL); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

# The speed comparison's JAX column needs the optional JAX extra; nothing else does.
$(JAX_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[jax]'
	touch $(JAX_STAMP)

bench: $(JAX_STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-only --benchmark-json=benchmarks/results.json
	$(BIN)/python benchmarks/report.py benchmarks/results.json > benchmarks/README.md

clean:
	rm -rf $(VENV) results site .pytest_cache .benchmarks .mypy_cache

# The tests not marked slow (tests/conftest.py lists them): for day-to-day work.
test-fast: lint typecheck $(DOCS_STAMP)
	$(BIN)/python -m pytest $(PARALLEL) -m "not slow"; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$status

$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,reports,docs]'
	touch $(DOCS_STAMP)

# The documentation site (mkdocs.yml, docs/), into site/; any warning fails the build. The
# gallery shows the report of configs/quick.toml, run afresh into build/docs/quick (the
# directory docs/hooks.py reads).
docs: $(DOCS_STAMP)
	rm -rf build/docs/quick
	$(BIN)/vrbench run --config configs/quick.toml --output build/docs/quick
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
