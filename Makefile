# Developer and CI entry points. `make test` is what CI runs (.ci/run).

PYTHON ?= python3
export PYTHON

.PHONY: test setup lint typecheck pytest config-docs

## Install test dependencies, then lint, type-check and run the whole suite
## (including the compatibility matrix and librdkafka's own test suite).
test: setup
	$(PYTHON) -m ruff check .
	$(PYTHON) -m mypy
	@LIBRDKAFKA_SUITE=1 $(MAKE) --no-print-directory pytest

setup:
	bash tools/setup-test-env.sh
	bash tools/setup-compat-env.sh --librdkafka

lint:
	$(PYTHON) -m ruff check .

typecheck:
	$(PYTHON) -m mypy

## pytest exits 5 when it collected no tests: that is a failure here too.
pytest:
	@$(PYTHON) -m pytest -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make: pytest collected no tests" >&2; exit 1; fi; \
	exit $$rc

## Regenerate the configuration tables in README.md from kbroker/config.
config-docs:
	$(PYTHON) -m kbroker.config.docs README.md
