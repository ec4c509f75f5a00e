# Two entry points that work on a fresh machine: `make demo` and `make test`.
# Everything is installed into .venv in the repo root.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist
DEMO_OUT ?= runs/demo

.PHONY: setup data browser demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Fashion-MNIST from Debian where apt exists and the files are missing. Elsewhere the
# CLI falls back to torchvision's downloader (--download) or --data-dir.
data:
	@if [ ! -f $(FMNIST)/t10k-labels-idx1-ubyte.gz ] && command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q dataset-fashion-mnist \
		|| echo "warning: could not apt-get install dataset-fashion-mnist; see README 'Data'"; \
	fi

# Debian's headless Chromium and its driver for the serving page's browser test (skipped without them).
browser:
	@if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver >/dev/null \
		|| echo "warning: could not apt-get install chromium chromium-driver; the browser test will be skipped"; \
	fi

# The main job: train the default model on Fashion-MNIST and write a report. A second
# `make demo` resumes (or, if finished, just re-reports) the run instead of overwriting it.
demo: setup data
	$(BIN)/squeezenet train --config demo --out $(DEMO_OUT) \
		$$( [ -f $(DEMO_OUT)/last.pt ] && echo --resume )
	@echo "report: $(DEMO_OUT)/report.md"

test: setup data browser
	$(BIN)/python -m pytest -q

# The speed figures of docs/BENCHMARKS.md (each prints its same-run baseline).
bench: setup data
	mkdir -p runs/bench
	$(BIN)/python benchmarks/train_throughput.py --json runs/bench/train_throughput.json
	$(BIN)/squeezenet bench squeezenet1_1 --backends eager,channels_last,ort,ort-tuned,ort-int8,ort-fp16 \
		--batch-sizes 1,8,32 --threads 2 --repeats 45 --out runs/bench
	$(BIN)/squeezenet compare --threads 2 --out runs/compare

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
