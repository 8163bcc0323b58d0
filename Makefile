# One-command set-up: `make demo` builds .venv from nothing and runs the main job;
# `make test` runs the test suite (what CI runs).
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
OUT ?= demo-out
TORCH_VERSION ?= 2.13.0

.PHONY: setup demo test test-all clean

setup: $(VENV)/.installed

# torch first, pinned, so pip takes the CPU wheel; then the project and its dev extra.
$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/alexnet-info --variant torchvision

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(OUT) build *.egg-info
