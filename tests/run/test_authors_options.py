"""Options that reproduce the authors' run: --freeze_bn_after_eval and --augment, as method
options kept by checkpoints, through the command line in-process."""
import shutil

import pytest
import torch

import main_SPQ
from conftest import SMALL, assert_same_weights, read_log, reseal


# 20 training images: one step of 16 an epoch
FIDELITY = [*SMALL, "--train_per_class", 2]


def cli(*argv):
    return main_SPQ.main([str(a) for a in argv])


def bn_stats(path):
    model = torch.load(path, weights_only=True)["model"]
    return {k: v for k, v in model.items() if "running" in k}


@pytest.fixture(scope="module")
def frozen_one(data, tmp_path_factory):
    """One epoch with --freeze_bn_after_eval, evaluated: a run whose BatchNorm is now frozen."""
    out = tmp_path_factory.mktemp("frozen") / "run"
    assert cli("--data_dir", data, "--eval_epoch", 1, *FIDELITY, "--freeze_bn_after_eval",
               "--output_dir", out, "--epochs", 1) == 0
    return out


def copy_run(run, to):
    shutil.copytree(run, to)
    return to


@pytest.mark.slow
def test_freeze_bn_after_eval_trains_in_eval_mode_after_the_first_evaluation(data, frozen_one, tmp_path, capsys):
    common = ["--data_dir", data, "--eval_epoch", 1, *FIDELITY, "--freeze_bn_after_eval"]
    straight = tmp_path / "straight"
    assert cli(*common, "--output_dir", straight, "--epochs", 2) == 0
    assert "training continues in eval mode" in capsys.readouterr().out
    # epoch 1 trained in train mode, identically; epoch 2 in eval mode: the BatchNorm
    # running statistics stay those of epoch 1 while the weights move on
    after_one, after_two = bn_stats(frozen_one / "last.pth"), bn_stats(straight / "last.pth")
    for name in after_one:
        torch.testing.assert_close(after_two[name], after_one[name], atol=0, rtol=0, msg=name)
    w1 = torch.load(frozen_one / "last.pth", weights_only=True)["model"]["head.weight"]
    w2 = torch.load(straight / "last.pth", weights_only=True)["model"]["head.weight"]
    assert not torch.equal(w1, w2)

    # a resumed run is in the same mode as the uninterrupted one
    resumed = copy_run(frozen_one, tmp_path / "resumed")
    assert cli(*common, "--output_dir", resumed, "--epochs", 2, "--resume", "auto") == 0
    assert "(frozen already)" in capsys.readouterr().out
    assert_same_weights(resumed / "last.pth", straight / "last.pth")
    assert [r["loss"] for r in read_log(resumed)] == [r["loss"] for r in read_log(straight)]


def test_method_options_are_refused_when_changed_on_resume(data, frozen_one, capsys):
    ckpt = torch.load(frozen_one / "last.pth", weights_only=True)
    assert ckpt["args"]["augment"] == "authors" and ckpt["args"]["freeze_bn_after_eval"] is True
    for option in [["--freeze_bn_after_eval", "false"], ["--augment", "simclr"]]:
        code = cli("--data_dir", data, *FIDELITY, "--output_dir", frozen_one, "--epochs", 2,
                   "--resume", "auto", *option)
        err = capsys.readouterr().err
        assert code == 1 and f"{option[0]} " in err and "differs from the checkpoint's" in err, err
    assert [r["epoch"] for r in read_log(frozen_one)] == [1]


@pytest.mark.slow
def test_checkpoints_from_before_the_options_resume_with_what_they_trained(data, frozen_one, tmp_path, capsys):
    """A checkpoint written before --augment existed was trained with today's kornia
    pipeline (now `simclr`) and batch statistics: its resumed run keeps both, so its
    BatchNorm statistics move on."""
    out = copy_run(frozen_one, tmp_path / "legacy")
    ckpt = torch.load(out / "last.pth", weights_only=True)
    del ckpt["args"]["augment"], ckpt["args"]["freeze_bn_after_eval"]
    reseal(ckpt, out / "last.pth")
    capsys.readouterr()
    assert cli("--data_dir", data, *FIDELITY, "--output_dir", out, "--epochs", 2, "--resume", "auto") == 0
    assert "simclr views" in capsys.readouterr().out
    resumed = torch.load(out / "last.pth", weights_only=True)
    assert resumed["args"]["augment"] == "simclr" and resumed["args"]["freeze_bn_after_eval"] is False
    first, second = bn_stats(frozen_one / "last.pth"), bn_stats(out / "last.pth")
    assert any(not torch.equal(first[k], second[k]) for k in first if k.endswith("running_mean"))
