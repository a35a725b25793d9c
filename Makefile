# Two commands do everything on a fresh machine:  `make smoke` (the whole pipeline at smoke scale)
# and `make test` (the test suite). Both create .venv and install the pinned stack first.
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --constraint requirements.lock --editable ".[dev]"
	# SNN parity tests only: spikingjelly declares torchvision/torchaudio (no CPU build here), its neurons need neither
	$(BIN)/pip install --quiet --no-deps spikingjelly==2.0.0
	# grsnn's UMLS/Nations/Kinships ship inside pykeen's wheel (read as files, never imported): none of its deps
	$(BIN)/pip install --quiet --no-deps pykeen==1.11.1
	touch $@

.PHONY: setup smoke test lint format bench mutants
setup: $(BIN)/.installed

smoke: setup
	PATH="$(abspath $(BIN)):$$PATH" dvc repro
	@echo "report: reports/index.html"

test: setup lint
	PATH="$(abspath $(BIN)):$$PATH" pytest --durations=25

# Slow (minutes per component), so not part of `make test`: each mutant of tests/mutants/<slug>.py applied to a
# scratch copy and shown killed by the component's tests. `make mutants SLUG=uba` for one component.
mutants: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m tests.mutants.harness $(if $(SLUG),--slug $(SLUG)) $(MUTANTS_ARGS)

lint: setup  # ruff's rules and format (pyproject.toml); `make format` applies both
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# One table of every launch path's overhead against its reference, measured in the same run (15-25 min on
# 2 cores); `make bench BENCH_ARGS="--only imports launch"` for some rows. Details: benchmarks/README.md.
bench: setup
	PATH="$(abspath $(BIN)):$$PATH" python benchmarks/bench.py $(BENCH_ARGS)
