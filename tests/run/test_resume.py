"""Runs that survive: --resume auto, signals with exact mid-epoch resume, and the guards."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_fixture import write_cifar10
from cli import spq as run_cli, spq_process
from conftest import SMALL, assert_clean_failure, assert_same_weights, read_log

import main_SPQ
import spq.method.step
from spq.run import faults
from spq.files.torchfile import with_checksum


@pytest.mark.slow
def test_sigterm_in_second_epoch_then_exact_resume(data, two_epochs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = ["--data_dir", data, "--output_dir", out, "--epochs", 2, "--eval_epoch", 1, *SMALL]
    monkeypatch.setenv("SPQ_FAULTS", "step#5=sigterm")        # 3 steps per epoch: epoch 2, step 2
    assert main_SPQ.main([str(a) for a in argv]) == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM in epoch 2 after step 2;" in err
    assert f"resume with: python main_SPQ.py --data_dir {data}" in err and f"--resume {out / 'last.pth'}" in err
    assert "Traceback" not in err
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["mid_epoch"]["epoch"] == 2 and ckpt["mid_epoch"]["step"] == 2
    assert [r["epoch"] for r in read_log(out)] == [1]

    monkeypatch.delenv("SPQ_FAULTS")
    faults.arm()                                              # disarmed for what runs next here
    result = run_cli("--data_dir", data, "--output_dir", out, "--epochs", 2, "--eval_epoch", 1,
                     "--resume", "auto", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    assert "at step 2 of epoch 2" in result.stdout
    log = read_log(out)
    assert [r["epoch"] for r in log] == [1, 2]
    straight, _ = two_epochs                                  # the same run, uninterrupted
    for a, b in zip(log, read_log(straight), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
    assert_same_weights(out / "last.pth", straight / "last.pth")


@pytest.mark.slow
def test_sigint_exits_130_with_a_checkpoint(data, tmp_path):
    """Through the real interpreter: `python main_SPQ.py` end to end, and the status a shell sees."""
    out = tmp_path / "run"
    result = spq_process("--data_dir", data, "--output_dir", out, "--epochs", 1, *SMALL,
                         env={"SPQ_FAULTS": "step#2=sigint"})          # of 3 steps
    assert result.returncode == 130
    assert "stopped by SIGINT in epoch 1 after step 2;" in result.stderr and "Traceback" not in result.stderr
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["epoch"] == 0 and ckpt["mid_epoch"]["epoch"] == 1 and ckpt["mid_epoch"]["step"] == 2


@pytest.mark.slow
def test_resume_auto_starts_fresh_then_continues(data, tmp_path):
    out = tmp_path / "auto"
    argv = ["--data_dir", data, "--output_dir", out, "--eval_epoch", 5, "--resume", "auto", *SMALL,
            "--train_per_class", 2]                                 # 20 images: one step an epoch
    first = run_cli(*argv, "--epochs", 1)
    assert first.returncode == 0, first.stderr
    assert "no " in first.stdout and "starting a new run" in first.stdout
    second = run_cli(*argv, "--epochs", 2)
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stdout and "at epoch 2" in second.stdout
    assert [r["epoch"] for r in read_log(out)] == [1, 2]


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch, capsys):
    real_loss, calls = spq.method.step.cqc_loss, []

    def loss_that_breaks(*a):
        calls.append(1)
        value = real_loss(*a)
        return value * float("nan") if len(calls) == 3 + 2 else value   # epoch 2, step 2

    monkeypatch.setattr(spq.method.step, "cqc_loss", loss_that_breaks)
    out = tmp_path / "run"
    argv = ["--data_dir", data, "--output_dir", out, "--epochs", 2, "--eval_epoch", 5, *SMALL]
    code = main_SPQ.main([str(a) for a in argv])
    assert code == 1
    assert "loss became non-finite in epoch 2 at step 2 of 3" in capsys.readouterr().err
    assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 1
    assert [r["epoch"] for r in read_log(out)] == [1]


def test_output_dir_that_cannot_be_written(data, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = run_cli("--data_dir", data, "--output_dir", blocker / "out", *SMALL)
    assert_clean_failure(result, 1, "cannot be made (Not a directory); choose a folder you can write to")


def query_labels_out_of_range(data, tmp_path):
    result = run_cli("--data_dir", data, "--output_dir", tmp_path / "o", "--num_cls", 5, *SMALL)
    assert_clean_failure(result, 1, "outside 0..4 (--num_cls 5)")
    assert not (tmp_path / "o").exists()


def test_wrong_image_shapes(tmp_path):
    root = write_cifar10(tmp_path / "d", per_batch=4, test=4)
    with open(Path(root) / "cifar-10-batches-py" / "data_batch_2", "wb") as f:
        pickle.dump({"data": np.zeros((4, 1024), np.uint8), "labels": [0, 1, 2, 3]}, f)
    result = run_cli("--data_dir", root, "--output_dir", tmp_path / "o", *SMALL)
    assert_clean_failure(result, 1, "data_batch_2", "(n, 3072)")


def test_foreign_checkpoint(data, tmp_path):
    torch.save({"state_dict": {"w": torch.zeros(2)}}, tmp_path / "other.pth")
    result = run_cli("--data_dir", data, "--resume", tmp_path / "other.pth", "--output_dir", tmp_path, *SMALL)
    assert_clean_failure(result, 1, "is not an SPQ checkpoint")


def test_checkpoint_of_another_configuration(data, two_epochs, tmp_path):
    out, _ = two_epochs
    ckpt = torch.load(Path(out) / "last.pth", weights_only=True)
    ckpt["model"]["codebooks"] = torch.zeros(4, 16, 16)        # a model of another shape
    torch.save(with_checksum(ckpt), tmp_path / "edited.pth")
    result = run_cli("--data_dir", data, "--resume", tmp_path / "edited.pth", "--output_dir", tmp_path, *SMALL)
    assert_clean_failure(result, 1, "the saved model does not match this configuration")
