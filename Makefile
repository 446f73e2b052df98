# `make train` and `make test` set up .venv on first use (and again when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: install train test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# A VAE on the bundled 8x8 digits: about a minute on a laptop CPU. Extra overrides: make train ARGS="model.beta=4"
train: $(STAMP)
	$(BIN)/vaelab-train experiment=digits $(ARGS)

# One pytest worker per core (pytest-xdist); each worker and the commands it starts use one thread.
test: $(STAMP)
	$(BIN)/pytest -n auto $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests notebooks scripts

clean:
	rm -rf $(VENV) logs .pytest_cache .ruff_cache
