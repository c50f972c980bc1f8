"""GPU performance: training throughput, explanations per second, exact 16-player Shapley values,
and what a LearnedSHAP explanation of a ViT-S/16 at 224 px costs against its plain forward.

    python benchmarks/bench_gpu.py                        # on CUDA: writes benchmarks/results_gpu.json
    python benchmarks/bench_gpu.py --device cpu --quick --out /tmp/gpu.json   # the code path, on the CPU

Without CUDA (and without --device cpu) it prints why it is skipped and writes nothing. Measured
(medians of repeated runs after a warm-up, CUDA synchronised; untrained weights: speed does not
depend on them):

1. training images per second of the default LearnedSHAP ViT (16 patches, its consistency loss)
   at batch 256, in fp32, under bf16 autocast, compiled (`torch.compile`), and both;
2. explanations per second of every method on that ViT (a batch of images, one call);
3. exact Shapley values of the default ViT's 16-player game: seconds per image (all 65,536
   coalitions, every class); goal <= 0.05 s on one H100-class GPU;
4. LearnedSHAP on timm's ViT-S/16 at 224 px (196 patches, 10 classes as on Imagenette): one
   explanation pass (phi for every class) against the plain ViT's forward at batch 256, fp32 and
   bf16; goal <= 1.2x.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))     # run as a script from anywhere

from explainers import explain  # noqa: E402
from models import zoo  # noqa: E402
from models.harsanyi import LearnedShapViT  # noqa: E402
from models.posthoc import PostHocShap  # noqa: E402
from models.train import train  # noqa: E402
from models.vit import create_vit  # noqa: E402
from shapley.exact import exact_shapley  # noqa: E402
from shapley.game import MaskingGame  # noqa: E402

OUT = Path(__file__).resolve().parent / "results_gpu.json"
GOALS = {"exact16_seconds_per_image": 0.05, "learned_vit_s16_ratio": 1.2}
METHODS = {  # method: options (samplers at 2n = 32 evaluations)
    "learned_shap": {}, "vit_shapley": {}, "permutation": {"budget": 32}, "kernel": {"budget": 32},
    "gradient_shap": {"n_samples": 50}, "captum_gradient_shap": {"n_samples": 50},
    "integrated_gradients": {"n_steps": 50}, "gradcam_pp": {}, "attention": {},
    "attention_rollout": {},
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of fn() over `repeats` runs after one warm-up run."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training(device: torch.device, batch: int, steps: int, compile: bool = True) -> list[dict]:
    """Images per second of the LearnedSHAP ViT's training, per precision and compilation."""
    spec = zoo.SPECS["learned_vit_patches"]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch * steps, 3, 32, 32, generator=gen)
    y = torch.randint(0, 4, (batch * steps,), generator=gen)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch, shuffle=False)
    rows = []
    variants = [(None, False), ("bf16", False)] + ([(None, True), ("bf16", True)] if compile else [])
    for amp, compiled in variants:
        model = zoo.build_model(spec)
        try:      # two epochs: the first compiles and warms up, the second is timed
            history = train(model, loader, epochs=2, seed=0, device=device, progress=False,
                            loss_fn=zoo.loss_for(spec, len(loader)), amp=amp, compile=compiled,
                            log=lambda _: None)
            seconds = history[-1]["seconds"]
            rows.append({"amp": amp or "fp32", "compile": compiled, "batch": batch,
                         "images_per_second": batch * steps / seconds})
        except Exception as err:        # e.g. no compiler toolchain: say so, keep measuring
            rows.append({"amp": amp or "fp32", "compile": compiled, "batch": batch,
                         "error": f"{type(err).__name__}: {str(err)[:200]}"})
    return rows


def explanations(device: torch.device, batch: int, repeats: int) -> list[dict]:
    """Explanations per second of every method on the default LearnedSHAP ViT."""
    model = zoo.build_model(zoo.SPECS["learned_vit_patches"]).to(device).eval()
    plain = model.backbone
    explainer = PostHocShap(plain, head="vit_shapley").to(device).eval()
    x = torch.rand(batch, 3, 32, 32, generator=torch.Generator().manual_seed(1)).to(device)
    rows = []
    for method, options in METHODS.items():
        target_model = plain if method == "vit_shapley" else model
        extra = {"explainer": explainer} if method == "vit_shapley" else {}
        try:
            call = functools.partial(explain, method, target_model, x, 0, **options, **extra)
            seconds = timed(call, device, repeats)
            rows.append({"method": method, "options": options, "batch": batch,
                         "explanations_per_second": batch / seconds})
        except Exception as err:
            rows.append({"method": method, "error": f"{type(err).__name__}: {str(err)[:200]}"})
    return rows


def exact16(device: torch.device, images: int) -> dict:
    """Seconds per image of exact Shapley values (all classes) of the default ViT's game."""
    model = zoo.build_model(zoo.SPECS["vit_patches"]).to(device).eval()
    gen = torch.Generator().manual_seed(2)
    seconds = []
    for _ in range(images + 1):                          # the first one warms up
        game = MaskingGame(model, torch.rand(3, 32, 32, generator=gen).to(device))
        sync(device)
        start = time.perf_counter()
        exact_shapley(game, 16, batch_size=65536 if device.type == "cuda" else 4096,
                      interactions=False)
        sync(device)
        seconds.append(time.perf_counter() - start)
    per_image = statistics.median(seconds[1:])
    return {"players": 16, "coalitions": 2 ** 16, "seconds_per_image": per_image,
            "images_per_second": 1 / per_image,
            "goal_met": per_image <= GOALS["exact16_seconds_per_image"]}


def learned_vit_s16(device: torch.device, batch: int, repeats: int) -> list[dict]:
    """LearnedSHAP's one-pass explanation of ViT-S/16 at 224 px against the plain forward."""
    # 10 classes (Imagenette): the pair terms are (B, N, N, K), 0.4 GB at batch 256 and K = 10
    vit = create_vit("vit_small_patch16_224", pretrained=False, n_classes=10)
    model = LearnedShapViT(vit).to(device).eval()
    x = torch.rand(batch, 3, 224, 224, generator=torch.Generator().manual_seed(3)).to(device)
    def under(amp: torch.dtype | None, fn):
        def run():
            ctx = torch.autocast(device.type, dtype=amp) if amp else contextlib.nullcontext()
            with torch.no_grad(), ctx:
                fn(x)
        return run

    rows = []
    for amp in (None, torch.bfloat16):
        p = timed(under(amp, model.backbone), device, repeats)
        q = timed(under(amp, model.shapley_values), device, repeats)
        rows.append({"amp": "bf16" if amp else "fp32", "batch": batch, "players": vit.n_players,
                     "plain_seconds": p, "learned_seconds": q, "ratio": q / p,
                     "goal_met": q / p <= GOALS["learned_vit_s16_ratio"]})
    return rows


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda (default when present) or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the code path")
    parser.add_argument("--out", type=Path, default=None, help=f"results file (default {OUT})")
    args = parser.parse_args(argv)
    if args.device is None and not torch.cuda.is_available():
        print("bench_gpu: skipped, no CUDA device is visible (--device cpu runs the same code "
              "on the CPU as a check, not a measurement)")
        return None
    device = torch.device(args.device or "cuda")
    if device.type == "cpu" and args.out is None:
        parser.error("on the CPU give --out: benchmarks/results_gpu.json holds GPU numbers only")
    q = args.quick
    results = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "quick": q, "goals": GOALS,
        # quick: no compiled variants (compiling takes minutes on a CPU)
        "training": training(device, 8 if q else 256, 2 if q else 20, compile=not q),
        "explanations": explanations(device, 2 if q else 256, 1 if q else 5),
        "exact16": exact16(device, 1 if q else 8),
        "learned_vit_s16": learned_vit_s16(device, 2 if q else 256, 1 if q else 10),
    }
    out = args.out or OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
