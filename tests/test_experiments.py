"""Experiment configurations, real data by one switch, torchrun with gloo, sharded references."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from experiments import config as cfg
from experiments import run as experiment
from models import zoo
from models.train import load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
# a tiny run of the offline default: 128 training images, one epoch, one example per class
TINY = ["train.epochs=1", "explainer.epochs=1", "run.per_class=1", "run.threads=1",
        "train.batch_size=32", "data.options={'n_train': 128, 'n_test': 32}"]


def test_every_shipped_configuration_loads_and_names_its_models(tmp_path):
    exp = cfg.load("default.toml")
    assert exp.name == "patch_game_vit" and exp.model.kind == "vit"
    assert sorted(cfg.specs(exp)) == ["patch_game_vit", "patch_game_vit_learned",
                                      "patch_game_vit_vit_shapley"]
    for name, kind in (("imagenette_vit_s16.toml", "image_folder"),
                       ("ucf101_r3d18.toml", "video_folder")):
        with pytest.raises(ValueError, match="give data.root"):
            cfg.load(name)                         # data on disk needs its folder
        exp = cfg.load(name, [f"data.root={tmp_path}"])
        assert exp.data.dataset == kind and exp.model.pretrained and exp.run.amp == "bf16"


def test_overrides_are_typed_and_bad_settings_name_the_fix(tmp_path):
    exp = cfg.load(None, ["train.epochs=3", "train.lr=0.001", "model.name=vit_tiny_patch16_224",
                          "run.compile=true", "run.budgets=[1, 2]"])
    assert (exp.train.epochs, exp.train.lr, exp.model.name) == (3, 0.001, "vit_tiny_patch16_224")
    assert exp.run.compile is True and exp.run.budgets == [1, 2]
    with pytest.raises(ValueError, match=r"unknown setting.*train.epoch'.*valid settings"):
        cfg.load(None, ["train.epoch=3"])
    with pytest.raises(ValueError, match="key=value"):
        cfg.load(None, ["train.epochs"])
    with pytest.raises(ValueError, match="use r3d for clips"):
        cfg.load(None, ["data.dataset=video"])
    with pytest.raises(FileNotFoundError, match="not a folder"):
        cfg.load(None, [f"data.root={tmp_path / 'missing'}"])
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        cfg.load(bad)


def test_an_experiment_cannot_take_a_default_models_name():
    with pytest.raises(ValueError, match="default model's name"):
        cfg.specs(cfg.load(None, ["name=vit_patches"]))


def test_image_folder_with_a_timm_vit_created_without_weights(image_tree, tmp_path, monkeypatch):
    """The switch to data on disk and a timm model: classifier, LearnedSHAP and the report."""
    monkeypatch.setenv("LEARNEDSHAP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    results = experiment.main([
        "--data-root", str(image_tree), "--model", "vit_tiny_patch16_224", "--no-progress",
        "--set", "data.dataset=image_folder", "--set", "name=folder_vit",
        "--set", "data.options={'image_size': 32, 'patch_size': 16}",
        "--set", "model.config={'image_size': 32}", "--set", "train.epochs=1",
        "--set", "train.batch_size=2", "--set", "run.per_class=1", "--set", "run.threads=1",
        "--set", f"run.out={out}", "--stage", "classifier", "learned", "report"])
    model = zoo.load("folder_vit", quick=False, progress=False).model
    assert model.n_players == 4 and model.n_classes == 2         # 2 x 2 patches of 16 px
    assert type(model.backbone).__module__.startswith("timm")
    report = json.loads((out / "report.json").read_text())
    assert report == json.loads(json.dumps(results["report"]))
    assert report["reference"] == "exact" and report["examples"] == 2
    assert report["agreement"]["efficiency_gap"]["max"] < 1e-4
    assert json.loads((out / "config.json").read_text())["data"]["root"] == str(image_tree)


@pytest.mark.slow
def test_video_folder_with_r3d_18_created_without_weights(tmp_path, monkeypatch):
    """A UCF101-layout folder the test writes, torchvision's r3d_18 with random weights."""
    from studies.real_video import write_demo_folder

    root = write_demo_folder(tmp_path / "ucf", frames=16, size=32, per_class=5)
    monkeypatch.setenv("LEARNEDSHAP_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    results = experiment.main([
        "--config", "ucf101_r3d18.toml", "--data-root", str(root), "--no-progress",
        "--set", "model.pretrained=false", "--set", "name=folder_r3d",
        "--set", "data.options={'frames': 16, 'image_size': 32}", "--set", "train.epochs=1",
        "--set", "train.batch_size=4", "--set", "run.per_class=1", "--set", "run.threads=1",
        "--set", "run.amp='none'", "--set", "run.methods=['learned_shap', 'permutation']",
        "--set", "run.budgets=[1]", "--set", "run.remainder_coalitions=0",
        "--set", f"run.out={out}", "--stage", "classifier", "learned", "report", "benchmark"])
    assert results["classifier"]["model"] == "folder_r3d"
    report = json.loads((out / "report.json").read_text())
    assert report["n_players"] == 8 and report["reference"] == "exact"
    assert report["agreement"]["efficiency_gap"]["max"] < 1e-4   # v(empty) by one more forward
    methods = [r["method"] for r in json.loads((out / "benchmark.json").read_text())["rows"]]
    assert methods == ["learned_shap", "permutation"]


def test_pretrained_weights_are_read_from_the_cache_only():
    exp = cfg.load(None, ["model.name=vit_tiny_patch16_224", "model.pretrained=true",
                          "name=offline_check"])
    with pytest.raises(RuntimeError, match="never downloads"):
        zoo.build_model(cfg.specs(exp)["offline_check"])


def torchrun(procs: int, cache: Path, out: Path, stages: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "LEARNEDSHAP_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={procs}", "-m", "experiments.run", "--config", "default.toml",
           "--no-progress", "--set", f"run.out={out}", "--set", "train.drop_prob=0.0",
           "--set", "run.methods=['learned_shap', 'permutation']", "--set", "run.budgets=[2]",
           *[a for item in TINY for a in ("--set", item)], "--stage", *stages]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def checkpoint(cache: Path, name: str) -> dict:
    [path] = (cache / "models").glob(f"{name}-*.pt")
    return load_checkpoint(path)


@pytest.mark.slow
def test_two_gloo_processes_train_and_shard_like_one(tmp_path):
    # Training: no random masks (drop_prob 0), so two ranks' averaged gradients are one
    # process's gradient over the same global batch, up to the order of float sums.
    one, two = tmp_path / "one", tmp_path / "two"
    torchrun(1, one / "cache", one / "out", ["classifier", "learned"])
    torchrun(2, two / "cache", two / "out", ["classifier"])
    a, b = checkpoint(one / "cache", "patch_game_vit"), checkpoint(two / "cache", "patch_game_vit")
    assert b["meta"]["processes"] == 2 and a["meta"]["processes"] == 1
    flat = lambda ckpt: torch.cat([v.flatten().double() for v in ckpt["state_dict"].values()])  # noqa: E731
    wa, wb = flat(a), flat(b)
    assert (wa - wb).norm() / wa.norm() < 1e-5
    # per weight within 1e-4: AdamW turns the rounding noise of a gradient that is zero in exact
    # arithmetic (the attention's key bias: softmax ignores it) into steps of order lr
    assert (wa - wb).abs().max() < 1e-4
    assert abs(a["meta"]["history"][0]["loss"] - b["meta"]["history"][0]["loss"]) < 1e-5
    # References and explanations: the same trained models in a fresh cache, the examples split
    # over two ranks, merged by rank 0 into the file one process writes.
    shutil.rmtree(two / "cache")
    shutil.copytree(one / "cache" / "models", two / "cache" / "models")
    torchrun(1, one / "cache", one / "out", ["report", "benchmark"])
    torchrun(2, two / "cache", two / "out", ["report", "benchmark"])
    for name in ("report.json", "benchmark.json"):
        assert (one / "out" / name).read_text() == (two / "out" / name).read_text(), name
    assert json.loads((two / "out" / "timings.json").read_text())["processes"] == 2


def load_bench_gpu():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_gpu_benchmark_is_skipped_without_cuda_and_runs_its_code_on_the_cpu(tmp_path, capsys):
    bench = load_bench_gpu()
    if not torch.cuda.is_available():
        assert bench.main([]) is None and "skipped" in capsys.readouterr().out
    out = tmp_path / "gpu.json"
    results = bench.main(["--device", "cpu", "--quick", "--out", str(out)])
    assert json.loads(out.read_text()) == results and results["device"] == "cpu"
    assert {r["method"] for r in results["explanations"]} == set(bench.METHODS)
    assert all("explanations_per_second" in r for r in results["explanations"]), \
        [r for r in results["explanations"] if "error" in r]
    assert [r["amp"] for r in results["training"]] == ["fp32", "bf16"]
    assert all(r["images_per_second"] > 0 for r in results["training"])
    assert results["exact16"]["coalitions"] == 2 ** 16
    assert {r["amp"] for r in results["learned_vit_s16"]} == {"fp32", "bf16"}
    assert all(r["players"] == 196 for r in results["learned_vit_s16"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mixed_precision_and_compiled_training_on_cuda():
    spec = zoo.resolve("vit_patches", quick=True)
    for amp, compiled in (("bf16", False), (None, True)):
        model = zoo.build_model(spec)
        history = zoo.train(model, zoo.loaders(spec)[0], epochs=1, device="cuda",
                            progress=False, amp=amp, compile=compiled)
        assert history[0]["loss"] == history[0]["loss"]          # finite, not nan
