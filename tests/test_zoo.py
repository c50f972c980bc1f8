"""The default models: fingerprints, quick mode, and a cache that never retrains for nothing."""

from dataclasses import replace

import pytest
import torch

from models import zoo
from models.kinds import register_kind
from tools.code_key import graph, ref
from tools.readme import replace_block


def test_fingerprint_follows_the_spec_and_quick_mode_saves_apart():
    spec = zoo.SPECS["vit_patches"]
    assert zoo.fingerprint(spec) == zoo.fingerprint(replace(spec))
    assert zoo.fingerprint(spec) != zoo.fingerprint(replace(spec, epochs=spec.epochs + 1))
    quick = zoo.resolve("vit_patches", quick=True)
    assert quick.name == "vit_patches-quick" and quick.epochs < spec.epochs
    assert zoo.checkpoint_path(quick) != zoo.checkpoint_path(spec)


def test_every_kind_is_registered_by_the_module_of_its_model():
    """The zoo holds no builder: each kind comes from the module that defines its model, and
    every model the zoo knows (defaults and the studies') names a registered kind."""
    home = {"learned_vit": "models.co_trained", "learned_r3d": "models.co_trained",
            "learned_patch_vit": "models.co_trained", "learned_tubelet_r3d": "models.co_trained",
            "posthoc_vit": "models.posthoc", "posthoc_vit_readout": "models.posthoc",
            "posthoc_vit_phi_first": "models.posthoc", "posthoc_vit_plus_pairs": "models.posthoc",
            "posthoc_r3d": "models.posthoc_video",
            "surrogate_vit": "models.surrogate", "vit": "models.kinds", "r3d": "models.kinds",
            "resnet": "models.kinds"}
    assert {name: kind.build.__module__ for name, kind in zoo.KINDS.items()} == home
    assert {spec.kind for spec in zoo.all_specs().values()} <= set(zoo.KINDS)
    with pytest.raises(ValueError, match="registered twice"):
        register_kind("learned_vit", replace(zoo.KINDS["learned_vit"], clip_norm=None))


def test_studies_define_their_own_models():
    """A study's models come from its own module (found by the zoo on first use), with names of
    their own; the patch-local ViTs follow the co-trained ViTs they are trained like."""
    from studies import parity, patch_local, scale

    specs = zoo.all_specs()
    assert set(scale.SPECS) <= set(specs) and set(parity.SPECS) <= set(specs)
    assert not set(scale.SPECS) & set(zoo.SPECS)
    for task, (base, _) in patch_local.BASES.items():
        local, co = specs[f"learned_patch_vit_{task}"], specs[base]
        assert (local.dataset, local.epochs, local.data_options, local.init_from) == (
            co.dataset, co.epochs, co.data_options, co.init_from)


def test_a_kind_keys_its_own_code_only():
    """The plain ViT's key reaches no LearnedSHAP code; the co-trained one reaches its loss and
    head; an unknown kind is named with the valid ones."""
    def reached(spec):
        kind = zoo.kind_of(spec)
        return set(graph().definitions(
            [ref(f) for f in (zoo.ModelSpec, zoo.train_spec, zoo.loaders, kind.build, kind.loss)],
            ["models.kinds:KINDS", "models.zoo:load"]))

    plain, learned = reached(zoo.SPECS["vit_patches"]), reached(zoo.SPECS["learned_vit_patches"])
    assert "models.train:train" in plain and "models.vit:ViT" in plain
    assert not any(d.startswith("models.harsanyi") for d in plain)
    assert {"models.harsanyi:learned_shap_loss", "models.harsanyi:LearnedShapViT"} <= learned
    # how checkpoints and training states are written is outside every key
    assert not {"models.train:save_checkpoint", "models.train:write_state",
                "tools.files:save_torch"} & (plain | learned)
    with pytest.raises(ValueError, match="unknown model kind 'mlp'.*learned_vit"):
        zoo.build_model(replace(zoo.SPECS["vit_patches"], kind="mlp"))


def test_co_trained_heads_clip_by_the_recipe_and_the_key_follows_the_clip():
    assert zoo.clip_norm_of(zoo.SPECS["learned_vit_patches"]) == zoo.RECIPE_CLIP_NORM
    assert zoo.clip_norm_of(zoo.SPECS["learned_r3d_tubelets"]) == zoo.RECIPE_CLIP_NORM
    # the plain models and the post-hoc explainers train as before
    assert zoo.clip_norm_of(zoo.SPECS["vit_patches"]) is None
    assert zoo.clip_norm_of(zoo.all_specs()["posthoc_vit_patches"]) is None
    spec = zoo.SPECS["learned_vit_patches"]
    unclipped = replace(spec, head={**spec.head, "clip_norm": None})
    assert zoo.clip_norm_of(unclipped) is None
    assert zoo.fingerprint(unclipped) != zoo.fingerprint(spec)
    # a kind's default is in the key although the KINDS registry is cut from the code key
    kind, before = zoo.KINDS["learned_vit"], zoo.fingerprint(spec)
    try:
        zoo.KINDS["learned_vit"] = replace(kind, clip_norm=0.5)
        assert zoo.fingerprint(spec) != before
    finally:
        zoo.KINDS["learned_vit"] = kind


def test_unknown_model_lists_the_valid_ones():
    with pytest.raises(KeyError, match="vit_patches"):
        zoo.resolve("vit_patchez")


def test_load_trains_once_then_reads_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("LEARNEDSHAP_CACHE", str(tmp_path))
    first = zoo.load("vit_digits", quick=True, progress=False)
    assert first.path.exists() and 0 <= first.meta["accuracy"] <= 1

    def no_training(*args, **kwargs):
        raise AssertionError("a cached model was trained again")

    monkeypatch.setattr(zoo, "fit", no_training)
    second = zoo.load("vit_digits", quick=True, progress=False)
    assert second.meta == first.meta
    with pytest.raises(FileNotFoundError, match="make build"):
        zoo.load("r3d_video", quick=True, train_missing=False)


def test_readme_blocks_are_replaced_between_their_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- t:begin -->\nold\n<!-- t:end -->\noutro\n")
    assert replace_block("t", "| a |\n", readme)
    assert readme.read_text() == "intro\n<!-- t:begin -->\n| a |\n<!-- t:end -->\noutro\n"
    assert not replace_block("missing", "x", readme)


@pytest.mark.parametrize("name", ["vit_digits", "learned_vit_digits"])
def test_training_twice_with_the_same_seed_gives_identical_weights(name, monkeypatch, tmp_path):
    """Same spec, two empty caches: the same weights bit for bit (on the CPU), with the state
    file of the resumable loop removed at the end."""
    weights = []
    for run in ("a", "b"):
        monkeypatch.setenv("LEARNEDSHAP_CACHE", str(tmp_path / run))
        trained = zoo.fit(zoo.resolve(name, quick=True), device="cpu", progress=False)
        weights.append(trained.model.state_dict())
        assert not list((tmp_path / run / "models").glob("*.state.pt"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_curriculum_starts_from_the_trained_vit_and_keys_on_it(monkeypatch, tmp_path):
    """`init_from`: every weight of the source ViT but its classifier is copied before training,
    into a plain ViT or a LearnedSHAP ViT's backbone; the source's fingerprint is in the key; a
    source that does not fit is named with the fix."""
    monkeypatch.setenv("LEARNEDSHAP_CACHE", str(tmp_path))
    source = zoo.load("vit_patches", quick=True, progress=False).model.state_dict()
    for name in ("vit_parity", "learned_vit_parity_w10"):
        spec = zoo.resolve(name, quick=True)
        model = zoo.build_model(spec)
        zoo.start_from(model, spec)
        copied = (model if isinstance(model, zoo.ViT) else model.backbone).state_dict()
        assert all(torch.equal(copied[k], v) for k, v in source.items()
                   if not k.startswith("backbone.head."))
        assert copied["backbone.head.weight"].shape[0] == 2          # its own classifier
    spec = zoo.all_specs()["vit_parity"]
    assert zoo.fingerprint(spec) != zoo.fingerprint(replace(spec, init_from="vit_digits"))
    wide = replace(zoo.resolve("vit_parity", quick=True), config={"n_classes": 2, "dim": 36})
    with pytest.raises(ValueError, match="do not fit its ViT"):
        zoo.start_from(zoo.build_model(wide), wide)
    video = replace(zoo.resolve("learned_r3d_video", quick=True), init_from="vit_patches")
    with pytest.raises(ValueError, match="needs a ViT"):
        zoo.start_from(zoo.build_model(video), video)
