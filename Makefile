# The two commands of the README: `make test` and `make run`.
# Both create .venv on first use (CPU build of torch 2.13.0 + the project with its dev extras)
# and are quick once it exists: the install re-runs only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ropekit-installed
TORCH_PIN := torch==2.13.0

.PHONY: test run env lint clean-env

env: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH_PIN)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]' $(TORCH_PIN)
	@touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check .

test: $(STAMP) lint
	$(PY) -m pytest -q -n 2

run: $(STAMP)
	$(VENV)/bin/ropekit verify
	$(VENV)/bin/ropekit freqs --config src/ropekit/examples/llama3_8b_128k.json

clean-env:
	rm -rf $(VENV)
