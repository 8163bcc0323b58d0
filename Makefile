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

# The main job on the embedded synthetic data: data -> train -> evaluate -> export -> run -> benchmark.
demo: setup
	rm -rf $(OUT)/images
	$(BIN)/alexnet-data synthetic --out $(OUT)/images --per-class 2 --val-per-class 2 --seed 1
	$(BIN)/alexnet-train --data synthetic --image-size 64 --epochs 4 --batch-size 64 --out $(OUT)/run
	$(BIN)/alexnet-eval $(OUT)/run/best.pth --data synthetic --json $(OUT)/eval.json --confusion $(OUT)/confusion.png
	$(BIN)/alexnet-export --format all $(OUT)/run/best.pth
	$(BIN)/alexnet-eval $(OUT)/run/best.onnx --data synthetic
	$(BIN)/alexnet-run --backend onnxruntime --model $(OUT)/run/best.onnx --topk 3 $(OUT)/images/val/circle $(OUT)/images/val/star
	$(PY) -m runtime.agree $(OUT)/run/best.pth $(OUT)/run/best.pt $(OUT)/run/best.onnx $(OUT)/run/best.mlpackage --images $(OUT)/images/val
	$(BIN)/alexnet-bench $(OUT)/run/best.pth --backends pytorch,torchscript,onnxruntime --batch-sizes 1,8 --min-time 1 --repeats 2 --image-size 224 --quiet

test: setup
	$(PY) -m pytest -q

clean:
	rm -rf $(OUT) build *.egg-info
