# LearnedSHAP: `make run` reproduces every figure and table, `make test` runs the tests.
PYTHON    ?= python3
VENV      := .venv
PY        := $(VENV)/bin/python
CACHE     := .cache
SOURCES   := $(wildcard data/*.py models/*.py) shapley/game.py
NOTEBOOKS := gradient_shap/gradient_shap.ipynb learned_shap/learned_shap.ipynb analysis/comparison.ipynb

.PHONY: build run results test bench lint clean

build: $(CACHE)/build.stamp      ## venv, datasets and trained models (cached: a second run does nothing)

run: build                       ## results + every notebook: figures and tables in shap_overlays/
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory results && \
	$(PY) -m tools.run_notebooks $(NOTEBOOKS) && \
	echo "make run: $$(( $$(date +%s) - start )) s after the build"

results: build                   ## LearnedSHAP report + every explainer on the same models (tables)
	$(PY) -m evaluation.learned_report
	$(PY) -m evaluation.benchmark

test: $(VENV)/.installed         ## the test suite (tiny models in quick mode, no network)
	$(PY) -m pytest

bench: build                     ## speed: exact values of the ViT, sampler convergence
	$(PY) benchmarks/bench_vit_game.py --images 2 --threads 2
	$(PY) benchmarks/bench_shapley_core.py

lint: $(VENV)/.installed         ## ruff over the code and notebooks
	$(PY) -m ruff check .

clean:                           ## remove caches, checkpoints and the venv
	rm -rf $(CACHE) $(VENV) .pytest_cache .ruff_cache .hypothesis

$(VENV)/.installed: requirements.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt 2>&1 \
		| grep -v "is ignored: it is neither" || true
	$(PY) -c "import torch, torchvision, timm, shap, captum, pytorch_grad_cam, shapiq, nbclient"
	touch $@

$(CACHE)/build.stamp: $(VENV)/.installed $(SOURCES)
	$(PY) -m models.zoo build
	mkdir -p $(CACHE) && touch $@
