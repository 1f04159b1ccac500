# urbansense — the two set-up commands (see README):
#   make demo   run the main job on an embedded default: the whole pipeline on this machine
#               with a simulated city and a live view; Ctrl-C stops it. Options go in
#               DEMO_ARGS, e.g. make demo DEMO_ARGS="--speed 1440 --duration 300"
#               (python -m stream.demo --help lists them).
#   make test   install what the tests need, then lint, type-check and run the whole suite
# Both work on a fresh Debian machine as root.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo lint typecheck pytest system-packages venv clean

test: venv lint typecheck pytest

DEMO_ARGS ?=

demo: venv
	$(BIN)/python -m stream.demo $(DEMO_ARGS)

system-packages:
	sh scripts/install-system-packages.sh

venv: $(STAMP)

$(STAMP): pyproject.toml | system-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[edge,stream,dev]'
	touch $(STAMP)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: venv
	$(BIN)/mypy

pytest: venv
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
