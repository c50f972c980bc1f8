# LearnedSHAP: `make run` reproduces every figure and table, `make test` runs the fast tests,
# `make test-all` the whole suite (what CI runs).
SHELL     := bash
.SHELLFLAGS := -eo pipefail -c
PYTHON    ?= python3
VENV      := .venv
PY        := $(VENV)/bin/python
CACHE     := .cache
SOURCES   := $(wildcard data/*.py models/*.py) shapley/game.py
NOTEBOOKS := gradient_shap/gradient_shap.ipynb learned_shap/learned_shap.ipynb analysis/comparison.ipynb

.PHONY: build run results test test-all bench bench-gpu experiment sweep posthoc posthoc-budget scale video video-pairs parity patch-local shap-blur layers lint clean

build: $(CACHE)/build.stamp      ## venv, datasets and trained models (cached: a second run does nothing)

run: build                       ## results + every notebook executed in place: figures and tables
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory results; \
	$(PY) -m tools.run_notebooks --inplace $(NOTEBOOKS); \
	seconds=$$(( $$(date +%s) - start )); \
	$(PY) -m studies.benchmark --record-make-run $$seconds; \
	echo "make run: $$seconds s after the build (recorded in shap_overlays/results_timing.json)"

results: build                   ## LearnedSHAP report + every explainer on the same models (tables)
	$(PY) -m studies.learned_report --threads 2 --no-progress
	$(PY) -m studies.benchmark

test: $(VENV)/.installed         ## the fast suite: every test not marked slow (an edit-test loop, minutes)
	$(PY) -m pytest -m "not slow"

test-all: $(VENV)/.installed     ## the whole suite (CI): also the fresh-copy make run, faults, torchrun, study runs
	$(PY) -m pytest

bench: build                     ## speed: exact values of the ViT, sampler convergence
	$(PY) benchmarks/bench_vit_game.py --images 2 --threads 2
	$(PY) benchmarks/bench_shapley_core.py

bench-gpu: $(VENV)/.installed    ## GPU throughput and goals (skipped without CUDA): benchmarks/results_gpu.json
	$(PY) benchmarks/bench_gpu.py

CONFIG ?= configs/default.toml
experiment: $(VENV)/.installed   ## one experiment from its config (CONFIG=..., ARGS="--data-root ..."); torchrun: see README
	$(PY) -m experiments.run --config $(CONFIG) $(ARGS)

sweep: build                     ## the accuracy-faithfulness trade-off on the co-trained recipe (about 70 min): shap_overlays/sweep*
	$(PY) -m studies.sweep --threads 2

posthoc: build                   ## post-hoc LearnedSHAP on the frozen plain ViTs: shap_overlays/posthoc*
	$(PY) -m studies.posthoc --threads 2

posthoc-budget: build            ## post-hoc objectives and architectures, then error against training budget at 16, 64, 196 patches (hours): shap_overlays/posthoc_budget*
	$(PY) -m studies.posthoc_budget --threads 2 $(if $(STAGE),--stage $(STAGE),) $(if $(SIZES),--sizes $(SIZES),)

scale: build                     ## 16, 64, 196 players, co-trained and frozen, every sampler (the first run trains about 6 h of models on 2 cores)
	$(PY) -m studies.scale --threads 2

video: build                     ## LearnedSHAP 3D-ResNets at 8 and 32 tubelets, every sampler (under 1 h the first time): shap_overlays/video*
	$(PY) -m studies.video --threads 2

video-pairs: build               ## what video pair terms see: clips with local flicker (about 8 min): shap_overlays/video_pairs*
	$(PY) -m studies.video_pairs --threads 2

parity: build                    ## what exactness costs: the parity of three objects, plain vs co-trained ViTs: shap_overlays/parity*
	$(PY) -m studies.parity --threads 2

patch-local: build               ## the pairwise class built directly: patch-local vs co-trained ViTs at 16 and 64 patches (SIZES="16 64 196" adds 196): shap_overlays/patch_local*
	$(PY) -m studies.patch_local --threads 2 --sizes $(or $(SIZES),16 64)

shap-blur: build                 ## shap's blur-masked workflow vs exact Shapley and Owen values of its game (about 25 min): shap_overlays/blur_game*
	$(PY) -m studies.blur_game --threads 2

layers: build                    ## Shap-CAM, layer DeepLiftShap and GradCAM++ at every ResNet block: shap_overlays/layers*, shap_cam_layers.png
	$(PY) -m studies.layers --threads 2

lint: $(VENV)/.installed         ## ruff over the code and notebooks
	$(PY) -m ruff check .

clean:                           ## remove caches, checkpoints and the venv
	rm -rf $(CACHE) $(VENV) .pytest_cache .ruff_cache .hypothesis

# A failed install stops here with pip's own message (bash with pipefail runs every recipe).
$(VENV)/.installed: requirements.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -c "import torch, torchvision, timm, shap, captum, pytorch_grad_cam, shapiq, nbclient"
	touch $@

$(CACHE)/build.stamp: $(VENV)/.installed $(SOURCES)
	$(PY) -m models.zoo build
	mkdir -p $(CACHE) && touch $@
