"""Train a small LearnedSHAP ViT with its head (co-trained), then explain it in one forward pass.

The classifier and its Harsanyi head train together: cross-entropy on the full image, plus a
consistency term that asks the model on a random coalition of patches (the others dropped) to
equal the head's terms restricted to it. With gradient clipping and a strong weight (the
co-trained recipe) the model's game becomes pairwise and the head's `phi` its exact Shapley
values. The script trains on the generated patch-game images (16 patches of 8 px), explains a few
test images and scores them against the exact Shapley values of the model's own game (all 2^16
coalitions, which only a small model allows).

    python -m examples.train_and_explain [--quick] [--epochs E]
"""

from __future__ import annotations

import argparse
import time

import torch

import data
from explainers import explain
from models.harsanyi import LearnedShapViT, learned_shap_loss
from models.train import train
from models.vit import ViTConfig, create_vit


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (the tests use it)")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 6)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    start = time.perf_counter()

    # 1. a small ViT (4 x 4 patches of 8 px) with the LearnedSHAP head on its patch tokens
    torch.manual_seed(0)
    model = LearnedShapViT(create_vit(ViTConfig(n_classes=4)))

    # 2. train it with the head: consistency 1,000 on paired Shapley-kernel coalitions, ramped in
    #    over the first epoch (from the start its trivial minimum is every term zero), gradients
    #    clipped to norm 1 (without clipping the strong weight is unstable)
    images, epochs = (256, 1) if args.quick else (5000, 6)
    epochs = args.epochs or epochs
    loader = data.get_loader("patch_game", "train", batch_size=64, n_train=images)
    loss = learned_shap_loss(1000.0, warmup_steps=len(loader), sampler="kernel_paired")
    history = train(model, loader, epochs=epochs, loss_fn=loss, clip_norm=1.0, seed=0,
                    progress=not args.quick)
    model.eval()

    # 3. explain: one (N,) row of Shapley values per image, for its predicted class, in the
    #    model's own forward pass
    test = data.get_loader("patch_game", "test", batch_size=4, n_test=4)
    x = next(iter(test))["x"]                                           # (4, 3, 32, 32)
    att = explain("learned_shap", model, x, None)                       # values (4, 16)

    # 4. how close: the exact values of the same game (a check, not a workflow)
    exact = explain("exact", model, x, att.target).values               # (4, 16)
    errors = (att.values - exact).norm(dim=1) / exact.norm(dim=1)        # (4,)
    seconds = time.perf_counter() - start
    print(f"trained {epochs} epoch(s) on {images} images (training accuracy "
          f"{history[-1]['train_acc']:.1%}); phi {tuple(att.values.shape)} from "
          f"{att.cost.evals / len(x):g} forward rows an image; rel. L2 against the exact values: "
          f"mean {float(errors.mean()):.2g} (per image "
          f"{', '.join(f'{float(e):.2g}' for e in errors)}); {seconds:.0f} s in all")
    return {"model": model, "values": att.values, "target": att.target, "x": x, "exact": exact,
            "rel_l2": float(errors.mean()), "history": history, "seconds": seconds}


if __name__ == "__main__":
    main()
