# `make test` and `make demo` work on a fresh clone: they create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: test demo bench lint typecheck pytest dist wheeltest clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# A plain path entry for the editable install (no import hook to load at every start-up).
# `make bench` compiles the bytecode itself, even where PYTHONDONTWRITEBYTECODE is set: without
# it every import compiles the source, and start-up and peak memory would measure the compiler.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev,ray,demo,compat-test]' --config-settings editable_mode=compat
	touch $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check --exclude '*.md' .

typecheck: $(STAMP)
	$(VENV)/bin/mypy
	$(VENV)/bin/basedpyright
	MYPYPATH=stubs $(PY) -m mypy.stubtest cloudpickle --allowlist stubs/stubtest-allowlist.txt

# The suite against the checkout (editable install): the quick loop while working.
pytest: $(STAMP)
	$(PY) -m pytest

# What users install: the sdist, and the wheel built from it, checked against the source tree.
dist: $(STAMP)
	rm -rf dist
	mkdir -p build
	$(PY) -m build --outdir dist . > build/dist.log 2>&1 || (cat build/dist.log; exit 1)
	@echo "built: $$(cd dist && ls)"
	$(PY) tools/check_dist.py dist

# The suite against the installed wheel, in virtual environments of its own: Python 3.11
# (whole suite; conformance and fault tests again under forkserver and spawn), 3.12, 3.13,
# in two lanes side by side (tools/wheeltest.py says which legs go where, and why).
wheeltest: dist
	$(PY) tools/wheeltest.py dist

test: lint typecheck wheeltest

demo: $(STAMP)
	$(PY) -m examples.images

BENCH_ARGS ?=
IO_BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,ray,demo,compat-test,bench]' --config-settings editable_mode=compat
	$(PY) -m pip install --quiet --no-deps olympipe==2.2.0
	$(PY) -m compileall -q olympipe_typed benchmarks
	$(PY) -m benchmarks.run $(BENCH_ARGS)
	$(PY) -m benchmarks.io_stages $(IO_BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist
