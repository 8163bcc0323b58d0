# One-command set-up: `make demo` builds .venv from nothing and runs the main job;
# `make test` runs the suite without its `slow` tests (minutes: what a contributor runs before every
# change); `make test-all` runs all of it; `make test-edge` proves the base install (and [openvino],
# [litert-runtime]) runs without torch (CI runs test-all and test-edge: .ci/run).
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
OUT ?= demo-out
TORCH_VERSION ?= 2.13.0
EDGE_VENV ?= .venv-edge
EDGE_OUT ?= edge-out
# The torch-free tests: those marked `runtime` at module level.
EDGE_TESTS = $(shell grep -l '^pytestmark = pytest.mark.runtime' tests/test_*.py)

.PHONY: setup demo lint test test-all test-edge clean

setup: $(VENV)/.installed

# torch first, pinned, so pip takes the CPU wheel; then the project and its dev extra.
$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==$(TORCH_VERSION)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The edge install: the base package (numpy, Pillow, onnxruntime, click, tqdm) and the torch-free
# OpenVINO ([openvino]) and LiteRT ([litert-runtime]: ai-edge-litert) backends, no torch.
$(EDGE_VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(EDGE_VENV)
	$(EDGE_VENV)/bin/python -m pip install -q --upgrade pip
	$(EDGE_VENV)/bin/python -m pip install -q '.[openvino,litert-runtime]' pytest pytest-timeout
	touch $@

# The main job on the embedded synthetic data: data -> train -> evaluate -> export -> run -> the deployment
# pictures (architecture, conv1 filters, a prediction grid) -> the deployment report (every format x
# fp32/int8 exported, gated, evaluated and benchmarked side by side).
demo: setup
	rm -rf $(OUT)/images
	$(BIN)/alexnet-data synthetic --out $(OUT)/images --per-class 2 --val-per-class 2 --seed 1
	$(BIN)/alexnet-train --data synthetic --image-size 64 --epochs 4 --batch-size 64 --out $(OUT)/run
	$(BIN)/alexnet-eval $(OUT)/run/best.pth --data synthetic --json $(OUT)/eval.json --confusion $(OUT)/confusion.png
	$(BIN)/alexnet-export --format all $(OUT)/run/best.pth
	$(BIN)/alexnet-eval $(OUT)/run/best.onnx --data synthetic
	$(BIN)/alexnet-run --backend onnxruntime --model $(OUT)/run/best.onnx --topk 3 $(OUT)/images/val/circle $(OUT)/images/val/star
	$(PY) -m runtime.agree $(OUT)/run/best.pth $(OUT)/run/best.pt $(OUT)/run/best.onnx $(OUT)/run/best.xml $(OUT)/run/best.mlpackage \
		$(OUT)/run/best.pte $(OUT)/run/best.tflite --images $(OUT)/images/val
	mkdir -p $(OUT)/viz
	$(BIN)/alexnet-viz architecture $(OUT)/run/best.pth -o $(OUT)/viz/architecture.png
	$(BIN)/alexnet-viz filters $(OUT)/run/best.pth -o $(OUT)/viz/conv1.png
	$(BIN)/alexnet-viz predictions $(OUT)/run/best.onnx --data synthetic --n 24 -o $(OUT)/viz/predictions.png
	$(BIN)/alexnet-report $(OUT)/run/best.pth --precisions fp32,int8 --batch-sizes 1,8 --min-time 1 --repeats 2 --quick -o $(OUT)/report
	@echo "Pictures: $(OUT)/viz/*.png; the deployment report: $(OUT)/report/report.html (open it in a browser; also report.md, report.json)"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup
	$(PY) -m pytest -q -m "not slow"

test-all: setup
	$(PY) -m pytest -q

# The runtime's tests in the edge venv, then alexnet-run there on ONNX, OpenVINO and LiteRT files the full install exported.
test-edge: setup $(EDGE_VENV)/.installed
	$(EDGE_VENV)/bin/python -c "import importlib.util as u, sys; sys.exit('torch is in the edge install' if u.find_spec('torch') else 0)"
	cd tests && ../$(EDGE_VENV)/bin/python -m pytest -q -p no:cacheprovider -m runtime $(EDGE_TESTS:tests/%=%)
	rm -rf $(EDGE_OUT)
	$(BIN)/alexnet-train --data synthetic --synthetic-train-per-class 2 --synthetic-val-per-class 1 --epochs 1 \
		--variant cifar --image-size 32 --out $(EDGE_OUT)/run
	$(BIN)/alexnet-export --format onnx $(EDGE_OUT)/run/best.pth
	$(BIN)/alexnet-data synthetic --out $(EDGE_OUT)/images --per-class 1 --val-per-class 1 --image-size 48
	$(EDGE_VENV)/bin/alexnet-run -m $(EDGE_OUT)/run/best.onnx --topk 2 $(EDGE_OUT)/images/val
	$(BIN)/alexnet-export --format openvino $(EDGE_OUT)/run/best.pth
	$(EDGE_VENV)/bin/alexnet-run -m $(EDGE_OUT)/run/best.xml --topk 2 $(EDGE_OUT)/images/val
	$(BIN)/alexnet-export --format litert $(EDGE_OUT)/run/best.pth
	$(EDGE_VENV)/bin/alexnet-run -m $(EDGE_OUT)/run/best.tflite --topk 2 $(EDGE_OUT)/images/val
	! $(EDGE_VENV)/bin/alexnet-train --help 2> $(EDGE_OUT)/missing.txt
	grep -q "needs the \[train\] extra" $(EDGE_OUT)/missing.txt

clean:
	rm -rf $(OUT) $(EDGE_OUT) build *.egg-info
