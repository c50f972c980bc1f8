"""Training and caches under faults: same seed, same weights; a killed run resumes to the weights
of an uninterrupted one; half-written files are never read; concurrent runs share one cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from models.train import load_checkpoint, save_checkpoint
from tools.files import locked, save_torch, write_atomic

ROOT = Path(__file__).resolve().parents[1]

# A tiny classifier with dropout (so the global RNG matters) on a shuffled loader (so the epoch's
# order matters), trained for 3 epochs of 12 steps. `slow` sleeps in every step so that the test
# can kill it mid-epoch; sleeping changes no number.
SCRIPT = textwrap.dedent('''
    import sys, time
    import torch, torch.nn.functional as F
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset
    from models.train import seeded, train

    def run(state_path, slow=0.0, epochs=3):
        torch.set_num_threads(1)
        g = torch.Generator().manual_seed(0)
        x, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
        loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True,
                            generator=torch.Generator().manual_seed(1))
        with seeded(2):
            model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))

        def loss_fn(model, batch, gen):
            time.sleep(slow)
            noise = torch.rand(len(batch["x"]), 1, generator=gen)      # the loss's own draws
            logits = model(batch["x"] + 0.01 * noise)
            return F.cross_entropy(logits, batch["y"]), logits

        counter = [0]
        train(model, loader, epochs=epochs, lr=1e-2, seed=3, loss_fn=loss_fn, progress=False,
              state_path=state_path, save_every=1, counter=counter, log=lambda s: print(s, flush=True))
        return model

    if __name__ == "__main__":
        model = run(sys.argv[1], float(sys.argv[2]))
        torch.save(model.state_dict(), sys.argv[3])
''')


@pytest.fixture
def script(tmp_path) -> Path:
    path = tmp_path / "tiny_training.py"
    path.write_text(SCRIPT)
    return path


def run_script(script: Path, state: Path, out: Path, slow: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(script), str(state), str(slow), str(out)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def weights(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.slow
def test_same_seed_same_weights_and_a_killed_run_resumes_to_them(script, tmp_path):
    straight = [tmp_path / "a.pt", tmp_path / "b.pt"]
    for out in straight:                                # twice from scratch: identical weights
        proc = run_script(script, tmp_path / f"{out.stem}.state", out)
        assert proc.wait(timeout=120) == 0, proc.stdout.read()
    assert_same_weights(weights(straight[0]), weights(straight[1]))
    assert not (tmp_path / "a.state").exists()          # a finished run leaves no state behind

    state, out = tmp_path / "killed.state", tmp_path / "killed.pt"
    proc = run_script(script, state, out, slow=0.05)
    deadline = time.time() + 120
    while time.time() < deadline:                        # wait until it is inside epoch 2
        if state.exists():
            saved = torch.load(state, weights_only=True)
            if saved["epoch"] == 2 and saved["step"] >= 5:
                break
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("the training never reached epoch 2")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and not out.exists()
    resumed = run_script(script, state, out)
    assert resumed.wait(timeout=120) == 0
    log = resumed.stdout.read()
    assert "resuming from" in log and "epoch 2" in log.split("resuming from")[1].splitlines()[0]
    assert_same_weights(weights(out), weights(straight[0]))
    assert not state.exists()


@pytest.mark.slow
@pytest.mark.parametrize("broken", ["truncated", "another run"])
def test_an_unusable_training_state_is_ignored(broken, script, tmp_path):
    reference = tmp_path / "ref.pt"
    assert run_script(script, tmp_path / "ref.state", reference).wait(timeout=120) == 0
    state, out = tmp_path / "broken.state", tmp_path / "out.pt"
    if broken == "truncated":
        save_torch(state, {"run": {}, "model": {"w": torch.zeros(1000)}})
        state.write_bytes(state.read_bytes()[:300])
    else:
        save_torch(state, {"run": {"epochs": 99}, "epoch": 2, "step": 3})
    proc = run_script(script, state, out)
    assert proc.wait(timeout=120) == 0
    log = proc.stdout.read()
    assert "ignoring" in log and "training from the start" in log
    assert_same_weights(weights(out), weights(reference))


def test_a_write_that_fails_midway_leaves_the_old_file(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, {"accuracy": 0.5})
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        if hasattr(f, "write"):                      # serialised in memory, then written
            f.write(b"half a file")
        else:
            Path(f).write_bytes(b"half a file")      # the bytes a crash would leave behind
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, torch.nn.Linear(3, 2), {"accuracy": 0.9})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path, torch.nn.Linear(3, 2))["meta"] == {"accuracy": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]      # no temporary left

    table = tmp_path / "results.json"
    write_atomic(table, "{}\n")

    class Exploding(str):
        def encode(self, *args):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomic(table, Exploding("{\"a\": 1}"))
    assert table.read_text() == "{}\n" and len(list(tmp_path.iterdir())) == 2


CONCURRENT_README = textwrap.dedent('''
    import sys
    from pathlib import Path
    from tools.readme import replace_block
    readme, tag = Path(sys.argv[1]), sys.argv[2]
    for i in range(40):
        assert replace_block(tag, f"{tag} {i}", readme)
''')


def test_two_runs_writing_readme_blocks_at_once_lose_nothing(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# t\n<!-- a:begin -->\n<!-- a:end -->\n<!-- b:begin -->\n<!-- b:end -->\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEARNEDSHAP_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", CONCURRENT_README, str(readme), tag],
                              env=env) for tag in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    text = readme.read_text()
    assert "a 39" in text and "b 39" in text                 # neither run undid the other's block


def test_a_lock_makes_a_second_holder_wait(tmp_path):
    lock = tmp_path / "x.lock"
    code = ("import sys, time; from tools.files import locked\n"
            "with locked(sys.argv[1]):\n    print('got it', flush=True)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with locked(lock):
        proc = subprocess.Popen([sys.executable, "-c", code, str(lock)], env=env,
                                stdout=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert proc.poll() is None                       # still waiting for the lock
    assert proc.wait(timeout=60) == 0 and "got it" in proc.stdout.read()


TWO_BUILDS = textwrap.dedent('''
    import torch
    torch.set_num_threads(1)
    from models import zoo
    trained = zoo.load("vit_digits", quick=True, progress=False)
    print("accuracy", trained.meta["accuracy"], flush=True)
''')


@pytest.mark.slow
def test_two_runs_missing_the_same_model_train_it_once(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LEARNEDSHAP_CACHE": str(tmp_path / "cache"),
           "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", TWO_BUILDS], env=env, cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(2)]
    logs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert sum("training vit_digits" in log for log in logs) == 1, logs
    accuracies = {line for log in logs for line in log.splitlines() if line.startswith("accuracy")}
    assert len(accuracies) == 1                          # the waiting run read the same model
    checkpoints = list((tmp_path / "cache" / "models").glob("*.pt"))
    assert len(checkpoints) == 1
