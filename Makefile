# Developer and CI entry points. `make test` is what CI runs (.ci/run).

PYTHON ?= python3
export PYTHON
## pytest-xdist workers for `make pytest` and `make test-fast`: one per core, at most 4 (each
## test starts brokers and clients of its own, so more workers than cores only adds
## contention); PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
## Without pytest-xdist (an install older than the [test] extras) the suite runs in one process.
XDIST = $(shell $(PYTHON) -c 'import xdist' 2>/dev/null && echo "-n $(PYTEST_WORKERS)")

.PHONY: test test-fast setup lint typecheck pytest config-docs wheel zipapp

## Install test dependencies, then lint, type-check and run the whole suite
## (including the compatibility matrix and librdkafka's own test suite).
test: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy
	@LIBRDKAFKA_SUITE=1 $(MAKE) --no-print-directory pytest

## The inner loop: unit tests only (no broker, no real client; tests/conftest.py marks the rest
## `integration`). Needs only `pip install -e '.[test]'`.
test-fast:
	@$(PYTHON) -m pytest -q $(XDIST) -m "not integration" $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

setup:
	bash tools/setup-test-env.sh
	bash tools/setup-compat-env.sh --librdkafka

lint:
	$(PYTHON) -m ruff check .

typecheck:
	$(PYTHON) -m mypy

## pytest exits 5 when it collected no tests: that is a failure here too.
## worksteal: an idle worker takes queued tests from a busy one (librdkafka's suite is one
## test of many minutes). Tests share no state: ephemeral ports, data in tmp_path. The slowest
## tests are listed at the end, where the run's time budget is watched.
pytest:
	@$(PYTHON) -m pytest -q $(XDIST) $(if $(XDIST),--dist worksteal) --durations=25 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

## Regenerate the configuration tables in README.md from kbroker/config.
config-docs:
	$(PYTHON) -m kbroker.config.docs README.md

## dist/kbroker-<version>-py3-none-any.whl: pure Python, the same wheel for Linux and macOS. pip
## fetches the build requirements (setuptools, wheel) into an isolated environment; offline, with
## them installed: make wheel WHEEL_FLAGS=--no-build-isolation
wheel:
	$(PYTHON) -m pip wheel --no-deps $(WHEEL_FLAGS) -w dist .

## dist/kbroker.pyz: one file with kbroker and its pure-Python dependencies, copied from this
## interpreter's installation; run it with `python3 kbroker.pyz serve`. The dependencies with
## compiled code (crc32c, lz4, zstandard, cramjam, regex, cryptography) must be installed in the
## Python that runs it (the build prints the pip command; the archive names any that is missing).
zipapp:
	$(PYTHON) tools/build_pyz.py --output dist/kbroker.pyz
