# sr-lightning: `make install`, then `make test`; `make train` runs the default experiment.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_WORKERS ?= 2

.PHONY: install train test test-full bench bench-quick sweep format lint clean help

help:
	@echo "make install     create $(VENV) and install sr-lightning with its dev extras"
	@echo "make train       ESPCN x3 on the bundled sample images (CPU, a few minutes)"
	@echo "make test        fast tests"
	@echo "make test-full   all tests, including slow ones (DDP, sweeps, long runs)"
	@echo "make bench       benchmarks -> docs/benchmarks.md, benchmarks/results.json"
	@echo "make sweep       example multirun sweep"
	@echo "make format      ruff format + fix;   make lint: ruff check + lint-imports (the layers)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e '.[dev]'

train:
	$(BIN)/sr-train $(ARGS)

test:
	$(BIN)/python -m pytest -m "not slow" -n $(PYTEST_WORKERS) $(ARGS)

test-full:
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(ARGS)

bench:
	$(BIN)/python scripts/bench.py --json benchmarks/results.json $(ARGS)
	$(BIN)/python scripts/bench_inference.py
	$(BIN)/python scripts/bench_video.py
	$(BIN)/python scripts/bench_degradations.py --md docs/benchmarks.md

bench-quick:
	$(BIN)/python scripts/bench.py --quick --json benchmarks/results-quick.json $(ARGS)

sweep:
	$(BIN)/sr-train -m model=espcn scale=2,3 trainer.max_epochs=2 $(ARGS)

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
