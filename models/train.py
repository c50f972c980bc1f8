"""One training loop for every model here, and checkpoints that fail loudly and clearly.

`train` runs epochs with tqdm progress, prints per-epoch loss and accuracy, is fully determined by
its seed (model init is the caller's: see `seeded`), and picks CUDA when present. A loss other than
cross-entropy (LearnedSHAP's consistency loss) plugs in through `loss_fn`. Batches are dicts with
`x` and `y` (this project's datasets) or `(x, y)` pairs (e.g. a plain `TensorDataset`).

Under torchrun (`models.distributed`) each step runs inside DistributedDataParallel on this rank's
shard of the global batch; on one process nothing changes. `amp="bf16"` runs the steps under
bfloat16 autocast and `compile=True` compiles the step with `torch.compile` (both off by default;
`benchmarks/bench_gpu.py` measures what they gain).
"""

from __future__ import annotations

import contextlib
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from models import distributed
from tools.code_key import outside_key
from tools.files import save_torch

# loss_fn(model, batch, generator) -> (loss, logits): one step's loss and the logits scored for accuracy
LossFn = Callable[[nn.Module, dict[str, Tensor], torch.Generator], tuple[Tensor, Tensor]]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block (e.g. building a model) under a fixed seed, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def random_keep(batch: int, n_players: int, drop_prob: float, generator: torch.Generator,
                device: torch.device | str = "cpu") -> Tensor:
    """Masks (B, N) for masked training: a `drop_prob` share of rows lose a uniform random subset.

    As ViT-Shapley fine-tunes with random masking, this makes the model's outputs on partial
    inputs meaningful, which is what the masking game (and so every Shapley value) evaluates.
    """
    keep = torch.ones(batch, n_players, dtype=torch.bool)
    masked = torch.rand(batch, generator=generator) < drop_prob              # (B,)
    share = torch.rand(batch, 1, generator=generator)                         # (B, 1)
    random = torch.rand(batch, n_players, generator=generator) < share       # (B, N)
    keep[masked] = random[masked]
    return keep.to(device)


def cross_entropy_loss(drop_prob: float = 0.0) -> LossFn:
    """Cross-entropy; with `drop_prob` > 0, ViT inputs are also trained with random patches dropped."""

    def loss_fn(model: nn.Module, batch: dict[str, Tensor], gen: torch.Generator):
        x, y = batch["x"], batch["y"]
        if drop_prob > 0 and hasattr(model, "n_players"):
            logits = model(x, random_keep(len(x), model.n_players, drop_prob, gen, x.device))
        else:
            logits = model(x)
        return F.cross_entropy(logits, y), logits

    return loss_fn


def as_batch_dict(batch, device: torch.device) -> dict[str, Tensor]:
    """A loader's batch as {"x", "y", ...} on `device`: dicts as they are, (x, y) pairs named."""
    if isinstance(batch, dict):
        if "x" not in batch or "y" not in batch:
            raise ValueError(f"a batch dict needs keys 'x' and 'y', got {sorted(batch)}")
    elif isinstance(batch, (tuple, list)) and len(batch) == 2:
        batch = {"x": batch[0], "y": batch[1]}
    else:
        size = len(batch) if hasattr(batch, "__len__") else "?"
        raise TypeError(f"a batch must be a dict with 'x' and 'y' or an (x, y) pair, got "
                        f"{type(batch).__name__} of length {size}; wrap the dataset so that "
                        "it returns (input, label)")
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in batch.items()}


class Step(nn.Module):
    """One training step's loss as a module: DistributedDataParallel and torch.compile wrap a
    module's forward, and a LearnedSHAP loss calls several of the model's methods, not forward."""

    def __init__(self, model: nn.Module, loss_fn: LossFn):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: dict[str, Tensor], gen: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.loss_fn(self.model, batch, gen)


AMP = {None: None, "none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def train(model: nn.Module, train_loader: DataLoader, *, epochs: int, lr: float = 3e-3,
          weight_decay: float = 0.05, seed: int = 0, loss_fn: LossFn | None = None,
          test_loader: DataLoader | None = None, device: torch.device | str | None = None,
          progress: bool = True, log: Callable[[str], None] = print, amp: str | None = None,
          compile: bool = False, state_path: str | Path | None = None, save_every: int = 50,
          counter: list[int] | None = None, clip_norm: float | None = None) -> list[dict]:
    """Train with AdamW and a cosine schedule; returns one dict per epoch (loss, accuracies, time).

    With `clip_norm`, each step's gradient is rescaled to that total L2 norm when it is larger
    (`torch.nn.utils.clip_grad_norm_`), and each epoch's row also holds the steps' median and
    largest gradient norm before clipping and the share of steps clipped. Without it the
    gradients are used as they are.

    Under torchrun every rank trains its shard of each global batch and the history holds the
    global loss and accuracy (summed over the ranks). Training randomness (masks, coalitions) is
    drawn per rank from seed + rank, so a run whose loss draws none equals the one-process run up
    to the order of float sums.

    With `state_path`, training survives being killed: every `save_every` steps and at every epoch
    end the whole training state (weights, optimizer, schedule, the loss's generator, the global
    RNG, the position in the epoch's shuffled order, the running sums, `counter`) is written there
    atomically, and a later call with the same arguments resumes from it and ends with the same
    weights as an uninterrupted run. The file is removed when training ends. (One process only:
    under torchrun the ranks would each need their own state.)
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if amp not in AMP:
        raise ValueError(f"amp must be one of {sorted(k for k in AMP if k)} or None, got {amp!r}")
    if clip_norm is not None and not clip_norm > 0:
        raise ValueError(f"clip_norm must be a positive number or None (no clipping), got "
                         f"{clip_norm!r}")
    if len(train_loader) == 0:
        raise ValueError("the training loader yields no batch (an empty dataset, or fewer "
                         "examples than batch_size with drop_last=True); give it data")
    device = torch.device(device) if device is not None else default_device()
    loss_fn = loss_fn or cross_entropy_loss()
    sharded = distributed.active()
    gen = torch.Generator().manual_seed(seed + distributed.rank())   # masks and other randomness
    model.to(device)
    step: nn.Module = Step(model, loss_fn)
    if sharded:
        train_loader = distributed.sharded_loader(train_loader, seed)
        # every parameter of the model need not take part in each step's loss (a frozen part)
        step = DistributedDataParallel(step, device_ids=[device] if device.type == "cuda" else None,
                                       find_unused_parameters=True)
    if compile:
        step = torch.compile(step)
    autocast = (torch.autocast(device.type, dtype=AMP[amp]) if AMP[amp] is not None
                else contextlib.nullcontext())
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * len(train_loader)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    resumable = state_path is not None and not sharded
    run_id = {"epochs": epochs, "steps_per_epoch": len(train_loader), "lr": lr, "seed": seed,
              "weight_decay": weight_decay, "clip_norm": clip_norm}
    state = read_state(Path(state_path), run_id, log) if resumable else None
    loader_gen = getattr(train_loader, "generator", None)      # the shuffle order's generator
    history, first_epoch, done = [], 1, 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["schedule"])
        gen.set_state(state["generator"])
        history, first_epoch, done = state["history"], state["epoch"], state["step"]
        if counter is not None:
            counter[0] = state["counter"]
        log(f"resuming from {state_path}: epoch {first_epoch}, step {done}/{len(train_loader)}")
    # dropout and anything else that draws from the global RNG draw from `seed` too (torch seeds
    # a new process at random), and the caller's RNG is left as it was
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed + distributed.rank())
        for epoch in range(first_epoch, epochs + 1):
            model.train()
            if sharded:
                train_loader.sampler.set_epoch(epoch)
            if state is not None and loader_gen is not None:
                loader_gen.set_state(state["loader"])
            epoch_order = loader_gen.get_state() if loader_gen is not None else None
            batches = iter(train_loader)
            for _ in range(done):                                    # the batches already trained on
                next(batches)
            start, total, correct, loss_sum = time.perf_counter(), 0, 0, 0.0
            norms: list[float] = []                 # gradient norms before clipping
            if state is not None:
                torch.set_rng_state(state["rng"])
                if state["cuda_rng"]:
                    torch.cuda.set_rng_state_all(state["cuda_rng"])
                total, correct, loss_sum, norms = state["sums"]
                start -= state["seconds"]
                state = None
            bar = tqdm(batches, total=len(train_loader), initial=done, desc=f"epoch {epoch}/{epochs}",
                       leave=False, disable=None if progress and distributed.is_main() else True)
            for i, batch in enumerate(bar, start=done + 1):
                batch = as_batch_dict(batch, device)
                with autocast:
                    loss, logits = step(batch, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if clip_norm is not None:
                    norms.append(float(nn.utils.clip_grad_norm_(model.parameters(), clip_norm)))
                opt.step()
                sched.step()
                n = len(batch["y"])
                total += n
                loss_sum += loss.item() * n
                correct += (logits.argmax(1) == batch["y"]).sum().item()
                bar.set_postfix(loss=f"{loss_sum / total:.3f}")
                if resumable and i % save_every == 0 and i < len(train_loader):
                    write_state(Path(state_path), run_id, model, opt, sched, gen, epoch, i,
                                epoch_order, history, (total, correct, loss_sum, norms),
                                time.perf_counter() - start, counter)
            done = 0
            loss_sum, correct, total = distributed.all_sum([loss_sum, correct, total], device)
            row = {"epoch": epoch, "loss": loss_sum / total, "train_acc": correct / total,
                   "seconds": time.perf_counter() - start}
            if clip_norm is not None and norms:
                row.update(grad_norm_median=float(np.median(norms)), grad_norm_max=max(norms),
                           clipped=float(np.mean([g > clip_norm for g in norms])))
            if test_loader is not None:
                row["test_acc"] = evaluate(model, test_loader, device)
            history.append(row)
            if distributed.is_main():
                log(f"epoch {epoch}/{epochs}  loss {row['loss']:.4f}  train acc "
                    f"{row['train_acc']:.3f}" + (f"  test acc {row['test_acc']:.3f}" if "test_acc"
                                                  in row else "") + f"  ({row['seconds']:.1f} s)")
            if resumable and epoch < epochs:
                write_state(Path(state_path), run_id, model, opt, sched, gen, epoch + 1, 0,
                            loader_gen.get_state() if loader_gen is not None else None, history,
                            (0, 0, 0.0, []), 0.0, counter)
    if resumable:
        Path(state_path).unlink(missing_ok=True)
    model.eval()
    return history


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device | str | None = None) -> float:
    """Accuracy of `model` on `loader` (model put in eval mode, its mode restored after)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = total = 0
    try:
        for batch in loader:
            batch = as_batch_dict(batch, device)
            logits = model(batch["x"])
            correct += (logits.argmax(1) == batch["y"]).sum().item()
            total += len(batch["y"])
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("the evaluation loader yields no example; give it test data")
    return correct / total


# --- checkpoints ------------------------------------------------------------------------------
@outside_key
def write_state(path: Path, run_id: dict, model: nn.Module, opt, sched, gen: torch.Generator,
                epoch: int, step: int, loader_order: Tensor | None, history: list[dict],
                sums: tuple, seconds: float, counter: list[int] | None) -> None:
    """Everything `train` needs to go on from (epoch, step), written atomically."""
    state = {"run": run_id, "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": opt.state_dict(), "schedule": sched.state_dict(),
             "generator": gen.get_state(), "rng": torch.get_rng_state(), "loader": loader_order,
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
             "epoch": epoch, "step": step, "history": history, "sums": list(sums),
             "seconds": seconds, "counter": counter[0] if counter is not None else 0}
    save_torch(path, state)


@outside_key
def read_state(path: Path, run_id: dict, log: Callable[[str], None]) -> dict | None:
    """The saved training state of this very run, or None (absent, unreadable or another run's:
    then training starts from the beginning, and says why)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        log(f"ignoring the unreadable training state {path} ({type(err).__name__}); "
            "training from the start")
        return None
    if not isinstance(state, dict) or state.get("run") != run_id:
        log(f"ignoring the training state {path}: it belongs to another run; training from the "
            "start")
        return None
    return state


@outside_key
def save_checkpoint(path: str | Path, model: nn.Module, meta: dict) -> None:
    """Write {state_dict, meta} atomically: a crash never leaves a half-written file at `path`."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch(path, {"state_dict": state, "meta": meta})


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


def load_checkpoint(path: str | Path, model: nn.Module | None = None) -> dict:
    """Read a checkpoint with weights_only=True; load it into `model` if given; return it."""
    path = Path(path)
    fix = (f"if it is one of this project's trained models, delete {path} and run `make build` "
           "to retrain it; a checkpoint of your own must be torch.save({'state_dict': "
           "model.state_dict(), 'meta': {...}}, path)")
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}; run `make build` to train the models")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        why = ("it is truncated or corrupt, or not a torch.save file at all" if not
               zipfile.is_zipfile(path) else "it holds Python objects beyond tensors and plain "
               "containers, which are never unpickled here (unsafe)" if "weights only" in
               str(err).lower() else f"it is corrupt ({type(err).__name__}: {str(err)[:80]})")
        raise CheckpointError(f"checkpoint {path} cannot be read: {why}; {fix}") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "meta" not in ckpt:
        raise CheckpointError(f"{path} is a torch file but not a checkpoint of this project (a "
                              f"dict with 'state_dict' and 'meta'); {fix}")
    if model is not None:
        mismatch = state_mismatch(model.state_dict(), ckpt["state_dict"])
        if mismatch:
            raise CheckpointError(f"checkpoint {path} was saved from another model than this "
                                  f"{type(model).__name__} (another architecture, size or "
                                  f"player count): {mismatch}; {fix}")
        model.load_state_dict(ckpt["state_dict"])
    return ckpt


def state_mismatch(expected: dict, found: dict) -> str:
    """How a checkpoint's tensors differ from a model's, in a few words ('' when they match)."""
    missing = [k for k in expected if k not in found]
    extra = [k for k in found if k not in expected]
    shapes = [k for k in expected if k in found and tuple(expected[k].shape) !=
              tuple(getattr(found[k], "shape", ()))]
    parts = []
    if shapes:
        k = shapes[0]
        parts.append(f"{len(shapes)} tensors of another shape, e.g. {k} "
                     f"{tuple(found[k].shape)} in the file vs {tuple(expected[k].shape)}")
    if missing:
        parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} unexpected, e.g. {extra[0]}")
    return "; ".join(parts)
