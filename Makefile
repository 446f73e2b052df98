# `make train` and `make test` set up .venv on first use (and again when pyproject.toml changes).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: install train test floors lint docs docs-serve clean

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

# The oldest releases vaelab supports, pinned in .ci/floors.txt, in an environment of their own
# (torch 2.5 comes from PyPI as a CUDA build: 6.4 GB in all, ~2 min here), running a subset.
FLOORS := .venv-floors
FLOORS_TESTS := tests/test_cli.py tests/test_configs.py tests/test_model_family.py \
	tests/test_resume.py tests/test_mlflow.py tests/test_wandb.py tests/test_extras.py \
	tests/test_where_it_runs.py tests/test_compat.py tests/test_embed_sample.py \
	tests/test_counts.py tests/test_table_files.py tests/test_sparse_tables.py \
	tests/test_steps_per_call.py tests/test_multi_node.py tests/test_last_checkpoint.py \
	tests/test_structure.py tests/test_batched.py tests/test_search.py

$(FLOORS)/.installed: pyproject.toml .ci/floors.txt
	$(PYTHON) -m venv $(FLOORS)
	$(FLOORS)/bin/python -m pip install --quiet --upgrade pip
	$(FLOORS)/bin/python -m pip install --quiet -c .ci/floors.txt -e ".[dev]"
	touch $@

floors: $(FLOORS)/.installed
	$(FLOORS)/bin/python -c "import torch, lightning, numpy, hydra; print('floors: torch', \
	  torch.__version__, 'lightning', lightning.__version__, 'numpy', numpy.__version__, \
	  'hydra', hydra.__version__)"
	$(FLOORS)/bin/pytest -n auto -p no:cacheprovider $(FLOORS_TESTS) $(ARGS)

# The documentation site, from docs/ (mkdocs.yml), into site/: broken links fail the build.
$(VENV)/.installed-docs: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,docs]"
	touch $@

docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check src tests notebooks scripts

clean:
	rm -rf $(VENV) $(FLOORS) logs site .cache .pytest_cache .ruff_cache
