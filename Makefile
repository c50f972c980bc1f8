# LearnedSHAP: `make run` reproduces every figure and table, `make test` runs the tests.
PYTHON  ?= python3
VENV    := .venv
PY      := $(VENV)/bin/python
CACHE   := .cache
SOURCES := $(wildcard data/*.py models/*.py)
NOTEBOOKS := gradient_shap/gradient_shap.ipynb learned_shap/learned_shap.ipynb

.PHONY: build run test bench lint clean

build: $(CACHE)/build.stamp                        ## venv, datasets and trained default models (cached)

run: build                                         ## execute the notebooks, then the benchmark: figures + tables in shap_overlays/
	$(PY) -m tools.run_notebooks $(NOTEBOOKS)

test: $(VENV)/.installed                           ## the test suite (trains tiny models in quick mode)
	$(PY) -m pytest

bench: build                                       ## speed benchmarks (print their figures)
	$(PY) benchmarks/bench_shapley_core.py

lint: $(VENV)/.installed                           ## ruff over the code and notebooks
	$(PY) -m ruff check .

clean:                                             ## remove caches, checkpoints and the venv
	rm -rf $(CACHE) $(VENV) .pytest_cache .ruff_cache .hypothesis

$(VENV)/.installed: requirements.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "is ignored: it is neither" || true
	$(PY) -c "import torch, torchvision, timm, shap, captum, pytorch_grad_cam, shapiq, nbclient"
	touch $@

$(CACHE)/build.stamp: $(VENV)/.installed $(SOURCES)
	$(PY) -m models.zoo build
	mkdir -p $(CACHE) && touch $@
