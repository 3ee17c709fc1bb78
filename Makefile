# The same targets are used by people, CI (.ci/run) and the README.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SRC := src tests benchmarks

.PHONY: install install-runtime demo test lint typecheck unit clean ops-check model-validation lock

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

## Dependencies come from the hash-pinned lock (requirements-dev.lock, made from
## pyproject.toml by `make lock`); the project itself is installed on top without them.
## The runtime (what the demo and a deployment need), then the development tools on top
## (what lint, types and tests need). scripts/install.sh prints one line per package.
$(VENV)/.runtime: pyproject.toml requirements.lock | $(BIN)/activate
	bash scripts/install.sh $(VENV) requirements.lock
	touch $@

$(VENV)/.installed: pyproject.toml requirements-dev.lock $(VENV)/.runtime
	bash scripts/install.sh $(VENV) requirements-dev.lock
	touch $@

install-runtime: $(VENV)/.runtime
install: $(VENV)/.installed

## Set everything up and run the demo on the embedded defaults (SQLite MLflow under .creditops).
demo: install-runtime
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

## Lint: ruff (style, size and complexity of functions) and the import contracts (layers).
lint: install
	$(BIN)/ruff check $(SRC)
	$(BIN)/ruff format --check $(SRC)
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

## Operations checks: promtool rules and rule tests, actionlint, compose config, bandit,
## pip-audit (installs promtool/prometheus from Debian when missing).
ops-check: install
	bash scripts/check_ops.sh

## The pipeline's model validation stage: the demo model must pass its gate.
model-validation: install
	bash scripts/validate_demo_model.sh

## The whole test suite: lint, types, ops checks, the model validation stage, tests with an
## 80% coverage gate. CI runs exactly this.
## "No tests collected" (pytest's exit code 5) is a failure: a suite that ran nothing proves
## nothing.
test: lint typecheck ops-check model-validation browser
	$(BIN)/pytest -n 2 --dist loadfile --cov --cov-report=term --cov-report=xml --cov-fail-under=80; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; fi; exit $$rc

## The browser of the /docs test: Debian's chromium (installed with apt-get when missing).
.PHONY: browser
browser:
	bash scripts/ensure_browser.sh

## The fast tests only (code, data and model checks need no servers).
unit: install
	$(BIN)/pytest -m "unit or data" -q

## Re-resolve the locks after changing dependencies in pyproject.toml (needs PyPI).
lock:
	$(PYTHON) -m venv .tools && .tools/bin/pip install --quiet 'uv>=0.9,<1'
	for extra in "" "--extra dev"; do \
	  out=requirements$${extra:+-dev}.lock; \
	  .tools/bin/uv pip compile pyproject.toml $$extra --generate-hashes --python-version 3.11 \
	    --python-platform x86_64-unknown-linux-gnu --quiet -o $$out; \
	done

clean:
	rm -rf .creditops .pytest_cache .mypy_cache .ruff_cache coverage.xml .coverage
