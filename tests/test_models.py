"""Models: token dropping, feature grids, the training loop and checkpoints."""

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from models.resnet_3d import ResNet3DConfig, create_r3d
from models.train import (
    CheckpointError,
    evaluate,
    load_checkpoint,
    random_keep,
    save_checkpoint,
    seeded,
    train,
)
from models.vit import ViTConfig, create_vit


@pytest.fixture
def vit():
    with seeded(0):
        return create_vit(ViTConfig(dim=24, depth=2, heads=2)).eval()


def test_vit_shapes_and_grid(vit):
    x = torch.rand(3, 3, 32, 32)
    assert vit.n_players == 16 and vit.grid == (4, 4) and vit.patch_size == 8
    assert vit(x).shape == (3, 4)
    assert vit.forward_features(x).shape == (3, 17, 24)   # class token + 16 patches


def test_keeping_every_patch_changes_nothing(vit):
    x = torch.rand(4, 3, 32, 32)
    keep = torch.ones(4, 16, dtype=torch.bool)
    torch.testing.assert_close(vit(x, keep), vit(x), rtol=0, atol=1e-6)


def timm_vit():
    """A timm ViT created by name (no weights): 64 px images, 16 patches of 16 px."""
    with seeded(0):
        return create_vit("vit_tiny_patch16_224", n_classes=3, image_size=64).eval()


@pytest.mark.parametrize("which", ["ours", "timm"])
def test_dropping_equals_running_on_the_kept_tokens_alone(which, vit):
    model = vit if which == "ours" else timm_vit()
    size = model.image_size[0]
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(6, 3, size, size, generator=gen)
    keep = torch.rand(6, 16, generator=gen) < 0.5
    keep[0] = False                                          # no patch at all: class token only
    keep[1, :3] = True                                       # rows of different sizes
    with torch.no_grad():
        out = model(x, keep)
        for b in range(6):
            seq = model.embed(x[b:b + 1])
            idx = torch.cat([torch.tensor([0]), keep[b].nonzero().squeeze(1) + 1])
            ref = model.forward_head(model.backbone.norm(model.backbone.blocks(seq[:, idx])))
            torch.testing.assert_close(out[b:b + 1], ref, rtol=1e-4, atol=1e-4)
            alone = model(x[b:b + 1], keep[b:b + 1])          # one size: the gathered path
            torch.testing.assert_close(alone, ref, rtol=1e-4, atol=1e-4)


def test_dropped_patches_have_no_influence(vit):
    gen = torch.Generator().manual_seed(2)
    x = torch.rand(1, 3, 32, 32, generator=gen)
    keep = torch.zeros(1, 16, dtype=torch.bool)
    keep[0, :5] = True
    y = x.clone()
    y[..., 16:, :] = torch.rand(1, 3, 16, 32, generator=gen)   # rows 2-3 of patches: all dropped
    torch.testing.assert_close(vit(x, keep), vit(y, keep))
    assert not torch.allclose(vit(x), vit(y))


def test_vit_gradient_flows_through_dropping(vit):
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    keep = torch.tensor([[True] * 8 + [False] * 8, [False] * 8 + [True] * 8])
    vit(x, keep).sum().backward()
    grad = x.grad.abs().sum(1)                               # (2, 32, 32)
    assert grad[0, :16].sum() > 0 and grad[0, 16:].sum() == 0
    assert grad[1, 16:].sum() > 0 and grad[1, :16].sum() == 0


def test_vit_bad_inputs_name_the_problem(vit):
    with pytest.raises(ValueError, match="30x30.*multiple of 8"):
        vit(torch.rand(1, 3, 30, 30))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        vit(torch.rand(3, 32, 32))
    with pytest.raises(ValueError, match="one flag per patch"):
        vit(torch.rand(2, 3, 32, 32), torch.ones(2, 15, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        vit(torch.rand(2, 3, 32, 32), torch.ones(2, 16))
    with pytest.raises(ValueError, match="multiple of patch size"):
        create_vit(ViTConfig(image_size=30))


def test_timm_model_by_name_drops_tokens():
    vit = timm_vit()
    assert vit.n_players == 16 and vit.patch_size == 16
    x = torch.rand(2, 3, 64, 64)
    keep = torch.ones(2, 16, dtype=torch.bool)
    torch.testing.assert_close(vit(x, keep), vit(x), rtol=1e-4, atol=1e-4)
    keep[:, 8:] = False                                      # the bottom half dropped
    y = x.clone()
    y[..., 32:, :] = torch.rand(2, 3, 32, 64)
    with torch.no_grad():
        torch.testing.assert_close(vit(x, keep), vit(y, keep), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(vit(x), vit(y), atol=1e-4)


def test_missing_pretrained_weights_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(RuntimeError, match="never downloads"):
        create_vit("vit_tiny_patch16_224", pretrained=True)


def test_resnet3d_exposes_its_feature_grid():
    with seeded(0):
        net = create_r3d(ResNet3DConfig(n_classes=5, widths=(4, 8, 8))).eval()
    x = torch.rand(2, 3, 8, 32, 32)
    feats = net.forward_features(x)
    assert feats.shape == (2, 8, 4, 4, 4)
    torch.testing.assert_close(net.forward_head(feats), net(x))
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        net(torch.rand(3, 8, 32, 32))


def test_torchvision_r3d18_has_the_same_interface():
    with seeded(0):
        net = create_r3d("r3d_18", n_classes=7).eval()
    x = torch.rand(1, 3, 8, 32, 32)
    feats = net.forward_features(x)
    assert feats.shape == (1, 512, 1, 2, 2)
    assert net(x).shape == (1, 7)


def test_random_keep_is_seeded_and_respects_drop_prob():
    a = random_keep(64, 16, 0.5, torch.Generator().manual_seed(0))
    b = random_keep(64, 16, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert random_keep(8, 16, 0.0, torch.Generator()).all()
    full_rows = random_keep(400, 16, 0.5, torch.Generator().manual_seed(1)).all(1).float().mean()
    assert 0.4 < full_rows < 0.65


def _toy_loaders(seed=0):
    """An easy 2-class image problem: is the image reddish or greenish."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(256, 3, 32, 32, generator=gen) * 0.5
    y = torch.randint(0, 2, (256,), generator=gen)
    x[y == 1, 0] += 0.3
    x[y == 0, 1] += 0.3

    class Dicts(TensorDataset):
        def __getitem__(self, i):
            xi, yi = super().__getitem__(i)
            return {"x": xi, "y": yi}

    return (DataLoader(Dicts(x[:192], y[:192]), batch_size=32, shuffle=True,
                       generator=torch.Generator().manual_seed(seed)),
            DataLoader(Dicts(x[192:], y[192:]), batch_size=64))


def test_training_improves_accuracy_and_is_seeded():
    results = []
    for _ in range(2):
        train_loader, test_loader = _toy_loaders()
        with seeded(0):
            model = create_vit(ViTConfig(dim=24, depth=1, heads=2, n_classes=2))
        before = evaluate(model, test_loader)
        hist = train(model, train_loader, epochs=3, lr=3e-3, seed=0, progress=False,
                     log=lambda s: None, test_loader=test_loader)
        results.append((before, hist[-1]["test_acc"], hist[-1]["loss"]))
        assert not model.training
    (before, after, loss), (_, after2, loss2) = results
    assert after > max(before, 0.8)
    assert (after, loss) == (after2, loss2)                  # same seed, same numbers


def test_training_takes_tuple_batches_of_a_plain_tensor_dataset():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 3, 32, 32, generator=gen), torch.randint(0, 2, (64,), generator=gen)
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    with seeded(0):
        model = create_vit(ViTConfig(dim=16, depth=1, heads=2, n_classes=2))
    hist = train(model, loader, epochs=1, progress=False, log=lambda s: None, test_loader=loader)
    assert len(hist) == 1 and 0 <= hist[0]["test_acc"] <= 1
    assert 0 <= evaluate(model, loader) <= 1


def test_clipping_bounds_the_gradient_the_optimizer_steps_with():
    """The optimizer sees gradients of norm at most clip_norm; history reports the norms before
    clipping; a clip no gradient reaches changes no weight; without it no norm is recorded."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    def run(clip_norm):
        loader, _ = _toy_loaders()
        with seeded(0):
            model = create_vit(ViTConfig(dim=16, depth=1, heads=2, n_classes=2))
        stepped = []

        def record(opt, args, kwargs):
            grads = [p.grad for group in opt.param_groups for p in group["params"]
                     if p.grad is not None]
            stepped.append(float(torch.linalg.vector_norm(torch.stack(
                [torch.linalg.vector_norm(g) for g in grads]))))

        handle = register_optimizer_step_pre_hook(record)
        try:
            hist = train(model, loader, epochs=2, seed=0, progress=False, log=lambda s: None,
                         clip_norm=clip_norm)
        finally:
            handle.remove()
        return model.state_dict(), hist, stepped

    free, free_hist, free_norms = run(None)
    assert "grad_norm_max" not in free_hist[0]
    tight, tight_hist, tight_norms = run(0.05)
    assert max(tight_norms) <= 0.05 * (1 + 1e-5)
    assert all(h["clipped"] == 1.0 and h["grad_norm_median"] > 0.05 for h in tight_hist)
    assert any(not torch.equal(free[k], tight[k]) for k in free)
    loose, loose_hist, loose_norms = run(1e9)
    assert all(torch.equal(free[k], loose[k]) for k in free)
    assert loose_norms == free_norms and all(h["clipped"] == 0.0 for h in loose_hist)
    assert max(h["grad_norm_max"] for h in loose_hist) == pytest.approx(max(free_norms))
    with pytest.raises(ValueError, match="clip_norm must be a positive number or None"):
        train(create_vit(ViTConfig(dim=16, depth=1, heads=2, n_classes=2)), loader_of_one(),
              epochs=1, progress=False, log=lambda s: None, clip_norm=0.0)


def loader_of_one() -> DataLoader:
    return DataLoader(TensorDataset(torch.rand(2, 3, 32, 32), torch.zeros(2).long()), batch_size=2)


@pytest.mark.parametrize("epochs", [0, -1, 1.5])
def test_training_needs_a_positive_number_of_epochs(epochs, vit):
    loader, _ = _toy_loaders()
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        train(vit, loader, epochs=epochs, progress=False, log=lambda s: None)


def test_empty_loaders_and_bad_batches_are_refused(vit):
    empty = DataLoader(TensorDataset(torch.rand(0, 3, 32, 32), torch.zeros(0).long()),
                       batch_size=4)
    with pytest.raises(ValueError, match="yields no batch"):
        train(vit, empty, epochs=1, progress=False, log=lambda s: None)
    with pytest.raises(ValueError, match="yields no example"):
        evaluate(vit, empty)
    triples = DataLoader(TensorDataset(torch.rand(4, 3, 32, 32), torch.zeros(4).long(),
                                       torch.zeros(4)), batch_size=4)
    with pytest.raises(TypeError, match=r"dict with 'x' and 'y' or an \(x, y\) pair"):
        train(vit, triples, epochs=1, progress=False, log=lambda s: None)


def test_checkpoint_round_trip(tmp_path, vit):
    path = tmp_path / "m.pt"
    save_checkpoint(path, vit, {"accuracy": 0.5})
    with seeded(1):
        other = create_vit(ViTConfig(dim=24, depth=2, heads=2)).eval()
    x = torch.rand(2, 3, 32, 32)
    assert not torch.allclose(other(x), vit(x))
    meta = load_checkpoint(path, other)["meta"]
    assert meta == {"accuracy": 0.5}
    torch.testing.assert_close(other(x), vit(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]   # no temp file left behind


def test_corrupt_or_mismatched_checkpoints_name_the_file_and_the_fix(tmp_path, vit):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"(?s)bad\.pt cannot be read.*delete"):
        load_checkpoint(bad, vit)
    good = tmp_path / "small.pt"
    save_checkpoint(good, vit, {})
    with seeded(0):
        bigger = create_vit(ViTConfig(dim=32, depth=2, heads=2))
    with pytest.raises(CheckpointError, match=r"(?s)small\.pt was saved from another model.*retrain"):
        load_checkpoint(good, bigger)
    with pytest.raises(FileNotFoundError, match="make build"):
        load_checkpoint(tmp_path / "missing.pt", vit)
