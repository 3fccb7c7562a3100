# The two commands of the README: `make test` and `make run`.
# Both create .venv on first use (CPU build of torch 2.13.0 + the project with its dev extras)
# and are quick once it exists: the install re-runs only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ropekit-installed
TORCH_PIN := torch==2.13.0

.PHONY: test run env lint bench clean-env

env: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check $(TORCH_PIN)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]' $(TORCH_PIN)
	@touch $(STAMP)

# ruff over every source folder, then mypy (strict on the core; see [tool.mypy] in pyproject.toml)
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

test: $(STAMP) lint
	$(PY) -m pytest -q -n 2

# The main job: check the installation, then the report on the bundled data (report/index.html).
# Results already computed are reused when nothing they depend on changed.
run: $(STAMP)
	$(VENV)/bin/ropekit verify
	$(VENV)/bin/ropekit report --preset quick --out report

# The kernel benchmark with its peers (rotary-embedding-torch, torchtune: the `bench` extra), then RoPE's share of
# one attention block (ropekit, table-free, transformers eager and compiled, no RoPE).
bench: $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[bench]' $(TORCH_PIN)
	$(PY) benchmarks/apply_rotary.py --markdown
	$(PY) benchmarks/attention_block.py --markdown

clean-env:
	rm -rf $(VENV)
