"""--freeze_bn_after_eval, the authors' released script's run: BatchNorm trains until the first
evaluation, then stays frozen; without it, it always trains; and a resumed run, stopped
anywhere (a signal in mid-epoch included), keeps the frozen state as the run left alone."""
import pytest
import torch

from cli import spq
from conftest import SMALL, assert_same_weights, read_log

# 40 training images: 2 steps of 16 an epoch; an evaluation after every epoch
RUN = [*SMALL, "--train_per_class", 4, "--eval_epoch", 1]


def bn_stats(path):
    model = torch.load(path, weights_only=True)["model"]
    return {k: v for k, v in model.items() if k.endswith(("running_mean", "running_var"))}


def moved(a, b):
    return any(not torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    """For each setting, the checkpoints after 1 epoch and after 2 (separate runs, same seed)."""
    root = tmp_path_factory.mktemp("freeze")
    found = {}
    for name, extra in [("frozen", ["--freeze_bn_after_eval"]), ("plain", [])]:
        for epochs in (1, 2):
            out = root / f"{name}{epochs}"
            result = spq("--data_dir", data, "--output_dir", out, "--epochs", epochs, *RUN, *extra)
            assert result.returncode == 0, result.stderr
            found[name, epochs] = out
    return found


def test_before_the_first_evaluation_batchnorm_trains(runs):
    """Epoch 1 (before any evaluation) is the same with and without the freeze: BatchNorm's
    running statistics move from their initial values."""
    fresh = {k: torch.zeros_like(v) if k.endswith("mean") else torch.ones_like(v)
             for k, v in bn_stats(runs["frozen", 1] / "last.pth").items()}
    assert moved(bn_stats(runs["frozen", 1] / "last.pth"), fresh)
    assert_same_weights(runs["frozen", 1] / "last.pth", runs["plain", 1] / "last.pth")


def test_after_the_first_evaluation_batchnorm_is_frozen_only_with_the_option(runs):
    """Epoch 2, after the evaluation of epoch 1: with the freeze the running statistics stay
    where epoch 1 left them while the weights move on; without it both move."""
    one, two = bn_stats(runs["frozen", 1] / "last.pth"), bn_stats(runs["frozen", 2] / "last.pth")
    assert not moved(one, two)
    w1 = torch.load(runs["frozen", 1] / "last.pth", weights_only=True)["model"]["head.weight"]
    w2 = torch.load(runs["frozen", 2] / "last.pth", weights_only=True)["model"]["head.weight"]
    assert not torch.equal(w1, w2)
    assert moved(bn_stats(runs["plain", 1] / "last.pth"), bn_stats(runs["plain", 2] / "last.pth"))
    assert [r["loss"] for r in read_log(runs["frozen", 2])][0] == read_log(runs["plain", 2])[0]["loss"]
    assert read_log(runs["frozen", 2])[1]["loss"] != read_log(runs["plain", 2])[1]["loss"]


def test_a_signal_after_the_first_evaluation_then_resume_trains_frozen_as_left_alone(
        data, runs, tmp_path, monkeypatch):
    """SIGTERM after the first step of epoch 2 (the evaluation of epoch 1 froze BatchNorm), so
    the checkpoint holds a half-done epoch; then --resume auto: the same weights, statistics
    and log as the run left alone (the resume after a whole epoch: test_authors_options.py)."""
    out = tmp_path / "stopped"
    common = ["--data_dir", data, "--output_dir", out, "--epochs", 2, *RUN, "--freeze_bn_after_eval"]
    monkeypatch.setenv("SPQ_FAULTS", "step#3=sigterm")
    stopped = spq(*common)
    assert stopped.returncode == 143, stopped.stderr
    monkeypatch.delenv("SPQ_FAULTS")
    resumed = spq(*common, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    assert "(frozen already)" in resumed.stdout
    assert_same_weights(out / "last.pth", runs["frozen", 2] / "last.pth")
    assert bn_stats(out / "last.pth").keys() == bn_stats(runs["frozen", 2] / "last.pth").keys()
    assert not moved(bn_stats(out / "last.pth"), bn_stats(runs["frozen", 2] / "last.pth"))
    untimed = [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in read_log(out)]
    assert untimed == [{k: v for k, v in r.items() if not k.endswith("seconds")}
                       for r in read_log(runs["frozen", 2])]
