"""Real video through the same code: r3d_18 on a UCF101-layout folder, every video explainer timed.

    python -m studies.real_video --data-root <folder>          # root/<class>/*.avi (UCF101)
    python -m studies.real_video --demo-folder /tmp/ucf --random-weights   # no data, no weights

torchvision's r3d_18 with its Kinetics-400 weights, read from the torch hub cache only (this
project never downloads at run time): when the file is missing the error names the path to copy it
to, and random weights are used only when asked for (`--random-weights`, for timing and for
checking the pipeline). One test clip per class of the folder (`frames` frames of `size` px, read
by `data.folders`), cut into tubelets (default 2 x 2 x 2), and every video explainer explains the
model's predicted class through `explain()`: seconds and model evaluations per explanation
(`learned_shap` wraps r3d_18 in an untrained LearnedSHAP head: its cost, not its values),
written to `real_video.json` in `--out`. `--demo-folder` writes a small UCF101-layout folder of
synthetic clips (a square moving left or right) and uses it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from data.folders import build_video_folder
from evaluation.records import write_json
from explainers import explain
from models.harsanyi import LearnedShapR3D
from models.resnet_3d import create_r3d

# every explainer that runs on a 3D-ResNet, with options for a clip of a large model on a CPU
METHODS: dict[str, dict] = {
    "exact": {},                                        # 2^8 = 256 clip evaluations
    "permutation": {"budget": 64},                      # 4 antithetic pairs at 8 tubelets
    "kernel": {"budget": 64},
    "gradient_shap": {"n_samples": 16},
    "captum_gradient_shap": {"n_samples": 16},
    "integrated_gradients": {"n_steps": 16},
    "deeplift_shap": {},
    "gradcam_pp": {},
    "learned_shap": {},     # r3d_18 wrapped in an untrained LearnedSHAP head: its cost only
}


def kinetics_weights_path() -> Path:
    """Where torchvision looks for r3d_18's Kinetics-400 weights (the torch hub cache)."""
    from torchvision.models.video import R3D_18_Weights

    url = R3D_18_Weights.KINETICS400_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_r3d18(random_weights: bool) -> nn.Module:
    """r3d_18 with Kinetics-400 weights from the local cache, or random weights when asked."""
    if not random_weights:
        path = kinetics_weights_path()
        if not path.exists():
            raise FileNotFoundError(
                f"r3d_18's Kinetics-400 weights are not at {path}; copy r3d_18-b3b3357e.pth "
                "there (this project never downloads), or pass --random-weights to time the "
                "pipeline with an untrained r3d_18")
    return create_r3d("r3d_18", pretrained=not random_weights, n_classes=400).eval()


def write_demo_folder(root: Path, frames: int = 16, size: int = 128, per_class: int = 3,
                      seed: int = 0) -> Path:
    """A UCF101-layout folder root/<class>/*.avi: a square moving left or right on noise."""
    rng = np.random.default_rng(seed)
    for c, step in {"move_left": -1, "move_right": 1}.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            path = root / c / f"v_{c}_g{k:02d}.avi"
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size, size))
            if not writer.isOpened():
                raise RuntimeError(f"OpenCV cannot write {path}; check its video codecs")
            side, row = size // 4, int(rng.integers(0, size - size // 4))
            start = size // 2 - side // 2 - step * size // 4
            for t in range(frames):
                frame = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
                col = int(np.clip(start + step * t * size // (2 * frames), 0, size - side))
                frame[row:row + side, col:col + side] = (40, 200, 230)
                writer.write(frame)
            writer.release()
    return root


def run(root: Path, *, frames: int, size: int, tubelets: tuple[int, int, int],
        random_weights: bool, methods: list[str], progress: bool = True) -> dict:
    model = load_r3d18(random_weights)
    test = build_video_folder("test", root=root, frames=frames, image_size=size)
    labels = [y for _, y in test.samples]
    picks = [labels.index(c) for c in sorted(set(labels))]           # one clip of each class
    x = torch.stack([test[i]["x"] for i in picks])                    # (B, 3, T, H, W)
    rows = []
    grid = (frames // 8, size // 16, size // 16)                     # r3d_18's feature grid
    for method in tqdm(methods, desc="real video", disable=not progress):
        explained = model
        if method == "learned_shap":    # its values need a head trained on the data: cost only
            if any(g % t for g, t in zip(grid, tubelets)):
                rows.append({"method": method, "skipped": f"r3d_18's feature grid {grid} cannot "
                             f"be pooled to tubelets {tubelets}: use a size divisible by "
                             f"{16 * tubelets[1]} px"})
                continue
            explained = LearnedShapR3D(model, tubelets=tubelets).eval()
        start = time.perf_counter()
        a = explain(method, explained, x, tubelets=tubelets, **METHODS[method])
        seconds = (time.perf_counter() - start) / len(x)
        rows.append({"method": method, "options": METHODS[method],
                     "seconds_per_clip": seconds,
                     "evals_per_clip": a.cost.evals / len(x) if a.cost.evals else None,
                     "values_shape": list(a.values.shape[1:]),
                     "finite": bool(torch.isfinite(a.values).all())})
    return {"model": "r3d_18", "weights": "random" if random_weights else "Kinetics-400",
            "frames": frames, "size": size, "tubelets": list(tubelets), "clips": len(x),
            "classes": test.classes, "threads": torch.get_num_threads(), "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--data-root", type=Path, help="UCF101-layout folder: root/<class>/*.avi")
    where.add_argument("--demo-folder", type=Path, help="write a small synthetic folder there")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--tubelets", type=int, nargs=3, default=(2, 2, 2))
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--random-weights", action="store_true",
                        help="an untrained r3d_18 (timing, pipeline checks): no weights needed")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for real_video.json (default: none written)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.data_root or write_demo_folder(args.demo_folder, frames=args.frames,
                                               size=max(args.size, 32))
    results = run(root, frames=args.frames, size=args.size, tubelets=tuple(args.tubelets),
                  random_weights=args.random_weights, methods=args.methods,
                  progress=not args.no_progress)
    if args.out:
        write_json(args.out / "real_video.json", results)
    print(f"r3d_18 ({results['weights']} weights), {args.frames} frames of {args.size} px, "
          f"{results['threads']} threads; seconds per clip:")
    for r in results["rows"]:
        if "skipped" in r:
            print(f"  {r['method']:>22}: skipped: {r['skipped']}")
            continue
        evals = f", {r['evals_per_clip']:.0f} evaluations" if r["evals_per_clip"] else ""
        print(f"  {r['method']:>22}: {r['seconds_per_clip']:.2f} s{evals}")
    return results


if __name__ == "__main__":
    main()
