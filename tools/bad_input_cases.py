"""The bad inputs of the README's table: each case does one thing a user might do wrong, on tiny
models built here, and says what must happen (`tools.bad_inputs.Case`). `tests/test_bad_inputs.py`
runs every case; `python -m tools.bad_inputs` quotes what each raises in the README."""

from __future__ import annotations

import copy
import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import Tensor, nn

import data
from explainers import explain
from models.resnet_3d import ResNet3DConfig, create_r3d
from models.train import CheckpointError, load_checkpoint, save_checkpoint, seeded
from models.vit import ViT, ViTConfig, create_vit
from shapley.game import tubelet_feature_mask
from tools.bad_inputs import Case, Ctx

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["gradient_shap/gradient_shap.ipynb", "learned_shap/learned_shap.ipynb",
             "analysis/comparison.ipynb"]

# --- tiny models and inputs --------------------------------------------------------------------
def tiny_vit(image_size: int = 16, patch_size: int = 8) -> ViT:
    with seeded(0):
        return create_vit(ViTConfig(image_size=image_size, patch_size=patch_size, dim=16,
                                    depth=2, heads=2)).eval()


@functools.cache
def vit() -> ViT:
    """4 patches of 8 px on 16x16 images, 4 classes; shared (explain leaves no trace)."""
    return tiny_vit()


@functools.cache
def r3d() -> nn.Module:
    with seeded(0):
        return create_r3d(ResNet3DConfig(widths=(4, 8), blocks=(1, 1),
                                         strides=((1, 2, 2), (2, 2, 2)))).eval()


def dropout_vit() -> ViT:
    """The tiny ViT with dropout 0.5 after the embeddings and in every block."""
    config = ViTConfig(image_size=16, patch_size=8, dim=16, depth=2, heads=2)
    with seeded(0):
        return ViT(config, VisionTransformer(img_size=16, patch_size=8, num_classes=4,
                                             embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0,
                                             drop_rate=0.5, proj_drop_rate=0.5))


def images(b: int = 2, size: int = 16) -> Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(1))


def clips(b: int = 2, frames: int = 4) -> Tensor:
    return torch.rand(b, 3, frames, 16, 16, generator=torch.Generator().manual_seed(2))


class TupleOut(nn.Module):
    """A model whose forward returns (logits, features), as many research models do."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor):
        return self.inner(x), x.flatten(1)


class DictOut(TupleOut):
    """A model whose forward returns a dict, as Hugging Face models do."""

    def forward(self, x: Tensor):
        return {"logits": self.inner(x)}


GRID = torch.arange(4).view(2, 2).repeat_interleave(8, 0).repeat_interleave(8, 1)  # (16, 16)


# --- handled inputs: the action and its check --------------------------------------------------
def batch_of_one(ctx: Ctx):
    return explain("attention", vit(), images()[:1], 0), explain("attention", vit(), images(), 0)


def check_batch_of_one(result) -> None:
    one, two = result
    assert one.values.shape == (1, 4) and one.pixel_map.shape == (1, 16, 16)
    torch.testing.assert_close(one.values[0], two.values[0])


def check_one_image(result) -> None:
    assert result.values.shape == (1, 4) and result.target.tolist() == [0]


def numpy_target(ctx: Ctx):
    return (explain("attention", vit(), images(), np.int64(2)),
            explain("attention", vit(), images(), 2))


def check_same_values(result) -> None:
    got, want = result
    assert got.target.tolist() == want.target.tolist()
    torch.testing.assert_close(got.values, want.values, rtol=0, atol=0)


def training_mode(ctx: Ctx):
    model, x = dropout_vit().train(), images()
    with torch.no_grad():
        noisy = not torch.equal(model(x), model(x))        # dropout is really on
    got = explain("integrated_gradients", model, x, 0, n_steps=4)
    still_training = all(m.training for m in model.modules())
    want = explain("integrated_gradients", model.eval(), x, 0, n_steps=4)
    return noisy, still_training, got.values, want.values


def check_training_mode(result) -> None:
    noisy, still_training, got, want = result
    assert noisy and still_training
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def cuda_model_cpu_input(ctx: Ctx):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA; the table's sentence states what the code does")
    model = copy.deepcopy(vit()).cuda()
    return (explain("integrated_gradients", model, images(), 0, n_steps=4),
            explain("integrated_gradients", vit(), images(), 0, n_steps=4))


def check_cuda(result) -> None:
    gpu, cpu = result
    assert gpu.values.device.type == gpu.pixel_map.device.type == gpu.target.device.type == "cpu"
    torch.testing.assert_close(gpu.values, cpu.values, rtol=1e-3, atol=1e-3)


def short_video(ctx: Ctx):
    write_avi(ctx.tmp / "clips" / "jump" / "a.avi", frames=3)
    ds = data.get_dataset("video_folder", root=ctx.tmp / "clips", frames=8, image_size=16)
    return ds[0]["x"]


def check_short_video(x: Tensor) -> None:
    assert x.shape == (3, 8, 16, 16)
    assert len(torch.unique(x.mean((0, 2, 3)))) == 3           # 3 frames, some repeated


def notebook_from_its_folder(ctx: Ctx) -> list[tuple[str, int, str]]:
    """Each notebook's first (setup) cell, run from the notebook's folder without PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = ("\nimport importlib.util\nspec = importlib.util.find_spec('explainers')\n"
             "assert spec and Path(spec.origin).parents[1] == ROOT, spec\n")
    runs = []
    for name in NOTEBOOKS:
        cells = json.loads((ROOT / name).read_text())["cells"]
        setup = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
        proc = subprocess.run([sys.executable, "-c", setup + probe], cwd=(ROOT / name).parent,
                              env=env, capture_output=True, text=True, timeout=60)
        runs.append((name, proc.returncode, proc.stderr[-500:]))
    return runs


def check_notebooks(runs) -> None:
    for name, code, err in runs:
        assert code == 0, (name, err)


# --- post-hoc explainers -------------------------------------------------------------------------
def explainer_of_other_weights(ctx: Ctx):
    """A post-hoc explainer fitted to the ViT, asked to explain a copy trained one step further."""
    from models.posthoc import PostHocShap

    with seeded(0):
        explainer = PostHocShap(vit(), rank=2).eval()
    tuned = copy.deepcopy(vit())
    with torch.no_grad():
        tuned.backbone.head.bias.add_(0.01)
    return explain("learned_shap_posthoc", tuned, images(), 0, explainer=explainer)


def unwrapped_timm_vit(ctx: Ctx):
    with seeded(0):
        model = VisionTransformer(img_size=16, patch_size=8, num_classes=4, embed_dim=16,
                                  depth=1, num_heads=2)
    return explain("exact", model, images(), 0)


# --- checkpoints and data on disk --------------------------------------------------------------
def saved_vit(ctx: Ctx) -> Path:
    """A real checkpoint of the tiny ViT (4 patches)."""
    path = ctx.tmp / "vit.pt"
    save_checkpoint(path, vit(), {"name": "tiny"})
    return path


def write_file(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def corrupt(ctx: Ctx):
    junk = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    return load_checkpoint(write_file(ctx.tmp / "random.pt", junk))


def truncated(ctx: Ctx):
    whole = saved_vit(ctx).read_bytes()
    return load_checkpoint(write_file(ctx.tmp / "half.pt", whole[:len(whole) // 2]))


def foreign(ctx: Ctx):
    torch.save({"weights": torch.zeros(3)}, ctx.tmp / "other.pt")
    return load_checkpoint(ctx.tmp / "other.pt")


def write_avi(path: Path, frames: int, size: int = 24) -> None:
    """A short MJPG clip whose brightness rises frame by frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (size, size))
    for t in range(frames):
        writer.write(np.full((size, size, 3), 60 + 60 * t, np.uint8))
    writer.release()


def image_folder(ctx: Ctx, files: dict[str, bytes]):
    for name, content in files.items():
        write_file(ctx.tmp / "images" / "train" / name, content)
    (ctx.tmp / "images" / "train" / "cat").mkdir(parents=True, exist_ok=True)
    ds = data.get_dataset("image_folder", root=ctx.tmp / "images", image_size=16, patch_size=8)
    return ds[0]


def unreadable_video(ctx: Ctx):
    write_file(ctx.tmp / "clips" / "jump" / "broken.avi", b"not a video")
    return data.get_dataset("video_folder", root=ctx.tmp / "clips", frames=4, image_size=16)[0]


# --- the cases ---------------------------------------------------------------------------------
def vit_call(method: str, x, target=0, model: Callable[[], nn.Module] = vit, **kw):
    """A user action: explain `x` with `method` on the tiny ViT (or `model()`), passes counted."""
    return lambda c: explain(method, c.count(model()), x, target, **kw)


def r3d_call(method: str, x, target=0, **kw):
    return lambda c: explain(method, c.count(r3d()), x, target, **kw)


NAN = images().index_fill(2, torch.tensor([3]), float("nan"))
INF = images().index_fill(3, torch.tensor([0]), float("inf"))
CASES = [
    # the input
    Case("wrong rank: a (3, 16) tensor for an image model",
         vit_call("attention", torch.rand(3, 16)), ValueError, r"expects images \(B, 3, H, W\)"),
    Case("wrong channel count: a 1-channel image for an RGB model",
         vit_call("attention", torch.rand(1, 1, 16, 16)),
         ValueError, r"expects images \(B, 3, H, W\)"),
    Case("an image (4-D) for a video model", r3d_call("gradcam_pp", images()),
         ValueError, r"expects clips \(B, 3, T, H, W\)"),
    Case("NaN in the input", vit_call("attention", NAN), ValueError, "NaN or infinite.*nan_to_num"),
    Case("Inf in the input", vit_call("attention", INF), ValueError, "NaN or infinite"),
    Case("8-bit image: a uint8 tensor", vit_call("attention", (images() * 255).byte()),
         TypeError, r"float tensor.*x.float\(\) / 255"),
    Case("values in 0..255 (a float tensor)", vit_call("attention", images() * 255),
         ValueError, r"in \[0, 1\].*x / 255"),
    Case("a normalised input (ImageNet mean and std: negative values)",
         vit_call("attention", (images() - 0.45) / 0.225),
         ValueError, r"in \[0, 1\].*unnormalised"),
    Case("a numpy array instead of a tensor", vit_call("attention", images().numpy()),
         TypeError, "torch.as_tensor"),
    Case("12x12 image for patches of 8 px", vit_call("attention", images(size=12)),
         ValueError, "patch size 8 needs a multiple of 8"),
    Case("24x24 image for a ViT built for 16x16", vit_call("attention", images(size=24)),
         ValueError, "expects 16x16.*image_size=24"),
    Case("clip of 1 frame for tubelets of 2 frames",
         r3d_call("gradcam_pp", clips(frames=1), tubelets=(2, 2, 2)), ValueError, "tubelet grid"),
    Case("empty batch (0, 3, 16, 16)", vit_call("attention", images()[:0]),
         ValueError, "empty batch"),
    Case("batch of one (1, 3, 16, 16)", batch_of_one, check=check_batch_of_one,
         handled="values (1, N) and a pixel map (1, H, W), equal to that image's row in a batch"),
    Case("one image without the batch dimension (3, 16, 16)",
         lambda c: explain("attention", vit(), images()[0], 0), check=check_one_image,
         handled="explained as a batch of one: values (1, N)"),
    # the target
    Case("target out of range (4 for 4 classes)", vit_call("attention", images(), 4),
         ValueError, "target 4 is out of range.*4 classes"),
    Case("negative target (-1)", vit_call("attention", images(), -1), ValueError, "out of range"),
    Case("targets of the wrong length (3 for a batch of 2)",
         vit_call("attention", images(), [0, 1, 2]), ValueError, "one class per input"),
    Case("float targets", vit_call("attention", images(), torch.tensor([0.0, 1.0])),
         TypeError, r"integer class indices.*target.long\(\)"),
    Case("target as a numpy integer (labels[i] of an int64 array)", numpy_target,
         handled="taken as that int: the same values as `target=2`", check=check_same_values),
    # the model
    Case("model whose forward returns a tuple (logits, features)",
         vit_call("integrated_gradients", images(), model=lambda: TupleOut(vit()),
                  feature_mask=GRID),
         TypeError, r"returned a tuple.*logits tensor \(B, K\).*out\[0\]", max_passes=1),
    Case("model whose forward returns a dict (Hugging Face style)",
         vit_call("integrated_gradients", images(), None, model=lambda: DictOut(vit()),
                  feature_mask=GRID),
         TypeError, r"returned a dict.*out\['logits'\]", max_passes=1),
    Case("model on the meta device (built without weights)",
         vit_call("attention", images(), model=lambda: copy.deepcopy(vit()).to("meta")),
         ValueError, "meta device.*to_empty"),
    Case("input on the meta device", vit_call("attention", images().to("meta")),
         ValueError, "meta device and holds no values"),
    Case("model on CUDA, input on the CPU", cuda_model_cpu_input, check=check_cuda,
         handled="x is copied to the model's device and the results come back on x's device "
                 "(checked where CUDA is present)"),
    Case("model in training mode, with dropout", training_mode, check=check_training_mode,
         handled="explained in eval mode (no dropout), with the eval-mode model's values; the "
                 "model is in training mode again afterwards"),
    # the method and its options
    Case("unknown method name ('shapley')", vit_call("shapley", images()),
         ValueError, "unknown method"),
    Case("misspelt option (`n_sample=` for integrated_gradients)",
         vit_call("integrated_gradients", images(), n_sample=8), TypeError, "unknown option"),
    Case("`tubelets=` for images (would be ignored)",
         vit_call("attention", images(), tubelets=(2, 2, 2)),
         ValueError, "would be ignored.*2-D"),
    Case("`tubelets=` beside a feature_mask (would be ignored)",
         r3d_call("integrated_gradients", clips(), n_steps=2, tubelets=(2, 2, 2),
                  feature_mask=tubelet_feature_mask(4, 16, 16, (1, 2, 2))),
         ValueError, "would be ignored: a feature_mask already names"),
    Case("`baseline=` where the ViT drops its patches (exact, removal='auto')",
         vit_call("exact", images(), baseline="zeros"),
         ValueError, "baseline='zeros' would be ignored.*removal='baseline'"),
    Case("`n_samples=0` (gradient_shap)", vit_call("gradient_shap", images(), n_samples=0),
         ValueError, "n_samples must be an integer >= 1"),
    Case("permutation `budget=1`, below one pair of permutations",
         vit_call("permutation", images(), budget=1), ValueError, "below the minimum 8"),
    Case("kernel `budget=1`", vit_call("kernel", images(), budget=1),
         ValueError, "below the minimum"),
    Case("shap_permutation `max_evals=10`, below one permutation of the pixels",
         vit_call("shap_permutation", images(), max_evals=10), ValueError, "raise max_evals"),
    Case("exact Shapley values of 25 players",
         vit_call("exact", images(1, 40), model=lambda: tiny_vit(40)),
         ValueError, "at most 20 players"),
    Case("a method that cannot explain the model (attention on a 3D-ResNet)",
         r3d_call("attention", clips()), ValueError, "attention cannot explain ResNet3D"),
    # post-hoc explainers
    Case("a post-hoc explainer asked to explain a model it was not fitted to (other weights)",
         explainer_of_other_weights, ValueError, "fitted to other weights.*fit_posthoc"),
    Case("a timm VisionTransformer passed as it is (it cannot drop patches)", unwrapped_timm_vit,
         ValueError, "as_vit"),
    # checkpoints
    Case("missing checkpoint", lambda c: load_checkpoint(c.tmp / "missing.pt"),
         FileNotFoundError, r"<tmp>/missing.pt; run `make build`"),
    Case("corrupt checkpoint (random bytes)", corrupt,
         CheckpointError, r"<tmp>/random.pt cannot be read: it is truncated or corrupt.*delete"),
    Case("truncated checkpoint (the first half of a real one)", truncated,
         CheckpointError, r"<tmp>/half.pt cannot be read: it is truncated or corrupt.*make build"),
    Case("foreign torch file (not a checkpoint dict of this project)", foreign,
         CheckpointError, "not a checkpoint of this project"),
    Case("checkpoint of another architecture (a ViT's, loaded into a 3D-ResNet)",
         lambda c: load_checkpoint(saved_vit(c), r3d()),
         CheckpointError, "saved from another model than this ResNet3D"),
    Case("checkpoint for another player count (4 patches, loaded into a 16-patch ViT)",
         lambda c: load_checkpoint(saved_vit(c), tiny_vit(16, 4)),
         CheckpointError, "another shape, e.g. backbone.pos_embed"),
    # data on disk
    Case("image folder without images", lambda c: image_folder(c, {"cat/notes.txt": b"x"}),
         FileNotFoundError, "no readable files"),
    Case("unreadable image (a .jpg that is not one)",
         lambda c: image_folder(c, {"cat/broken.jpg": b"not a jpeg"}),
         RuntimeError, "cannot decode image <tmp>/.*broken.jpg.*replace or remove"),
    Case("unreadable video", unreadable_video, RuntimeError, "cannot decode video.*broken.avi"),
    Case("video shorter than the frames asked (3 frames, `frames=8`)", short_video,
         handled="8 frames spread over the 3 the clip has, some repeated", check=check_short_video),
    Case("video folder read with `frames=0`",
         lambda c: data.get_dataset("video_folder", root=c.tmp, frames=0),
         ValueError, "frames must be an integer >= 1"),
    # notebooks
    Case("a notebook run from its own folder, not the repository root", notebook_from_its_folder,
         handled="its first cell finds the repository above the working folder and puts it on "
                 "sys.path (checked for every notebook)", check=check_notebooks),
]
