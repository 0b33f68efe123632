"""main_SPQ.py end to end through its command line, on a small dataset in the real format."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_fixture import write_cifar10

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--device", "cpu", "--batch_size", "32", "--seed", "1"]


def spq(*argv, cwd=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(ROOT / "main_SPQ.py"), *map(str, argv)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


def read_log(out):
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("cifar"), per_batch=40, test=50)


@pytest.fixture(scope="module")
def two_epochs(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = spq("--data_dir", data, "--output_dir", out, "--epochs", 2, "--eval_epoch", 1, *SMALL)
    assert result.returncode == 0, result.stderr
    return out, result


def test_two_epochs_log_lines_and_files(two_epochs):
    out, result = two_epochs
    lines = result.stdout.splitlines()
    assert any(l.startswith("SPQ: 32 bits") for l in lines)
    assert sum(l.startswith("epoch 1/2  loss") for l in lines) == 1
    assert sum(l.startswith("epoch 2: mAP@1000 = ") and "(best " in l for l in lines) == 1
    assert "Traceback" not in result.stderr
    log = read_log(out)
    assert [r["epoch"] for r in log] == [1, 2]
    for r in log:
        assert {"epoch", "loss", "lr", "seconds", "mAP", "bits", "top_n"} <= set(r)
        assert r["bits"] == 32 and r["top_n"] == 1000 and r["lr"] == 3e-4
        assert 0 <= r["mAP"] <= 1 and r["loss"] > 0
    assert sorted(p.name for p in Path(out).iterdir()) == ["best.pth", "last.pth", "log.jsonl"]


def test_checkpoint_contents(two_epochs):
    out, _ = two_epochs
    ckpt = torch.load(Path(out) / "last.pth", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["format"] == "spq-checkpoint"
    assert ckpt["args"]["N_books"] == 8 and ckpt["args"]["batch_size"] == 32
    assert ckpt["best_map"] == max(r["mAP"] for r in read_log(out))
    assert ckpt["model"]["codebooks"].shape == (8, 16, 16)
    assert {"torch", "python", "shuffle", "cuda"} <= set(ckpt["rng"])


def test_resume_continues_at_epoch_3_and_matches_an_uninterrupted_run(data, two_epochs, tmp_path):
    out, _ = two_epochs
    resumed = tmp_path / "resumed"
    shutil.copytree(out, resumed)
    result = spq("--data_dir", data, "--output_dir", resumed, "--epochs", 3, "--eval_epoch", 1,
                 "--resume", resumed / "last.pth", "--device", "cpu")   # the rest comes from the checkpoint
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout and "at epoch 3" in result.stdout
    log = read_log(resumed)
    assert [r["epoch"] for r in log] == [1, 2, 3]       # appended, not truncated

    straight = tmp_path / "straight"
    result = spq("--data_dir", data, "--output_dir", straight, "--epochs", 3, "--eval_epoch", 1, *SMALL)
    assert result.returncode == 0, result.stderr
    for a, b in zip(log, read_log(straight)):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["mAP"] == pytest.approx(b["mAP"], abs=1e-6)
    wa = torch.load(resumed / "last.pth", weights_only=True)["model"]
    wb = torch.load(straight / "last.pth", weights_only=True)["model"]
    for name in wa:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-6, rtol=0)


def test_eval_only(data, two_epochs):
    out, _ = two_epochs
    result = spq("--data_dir", data, "--resume", Path(out) / "best.pth", "--eval_only", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    best = max(r["mAP"] for r in read_log(out))
    assert f"mAP@1000 = {best:.4f}" in result.stdout


def test_resume_refuses_a_different_model(data, two_epochs):
    out, _ = two_epochs
    result = spq("--data_dir", data, "--resume", Path(out) / "last.pth", "--N_books", 4,
                 "--output_dir", out, "--device", "cpu", "--epochs", 3)
    assert result.returncode == 1
    assert "--N_books 4 differs from the checkpoint's 8" in result.stderr
    assert "Traceback" not in result.stderr


def test_fresh_run_refuses_to_overwrite_a_run(data, two_epochs):
    out, _ = two_epochs
    result = spq("--data_dir", data, "--output_dir", out, "--epochs", 1, *SMALL)
    assert result.returncode == 1 and "already holds a run" in result.stderr


def assert_clean_failure(result, code, *fragments):
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_missing_data_folder(tmp_path):
    out = tmp_path / "out"
    result = spq("--data_dir", tmp_path / "none", "--output_dir", out, "--device", "cpu")
    assert_clean_failure(result, 1, "error: CIFAR-10 not found", str(tmp_path / "none"), "--if_download")
    assert not out.exists()                  # nothing half-written


def test_n_words_not_a_power_of_two(tmp_path):
    result = spq("--N_words", 12, "--output_dir", tmp_path / "out")
    assert_clean_failure(result, 2, "--N_words must be a power of two")
    assert not (tmp_path / "out").exists()


def test_batch_size_one():
    assert_clean_failure(spq("--batch_size", 1), 2, "--batch_size must be at least 2")


def test_batch_larger_than_dataset(data, tmp_path):
    result = spq("--data_dir", data, "--output_dir", tmp_path / "o", "--device", "cpu", "--batch_size", 512)
    assert_clean_failure(result, 1, "exceeds the 200 training images")


def test_corrupt_checkpoint(data, tmp_path):
    bad = tmp_path / "last.pth"
    bad.write_bytes(b"\x00" * 100)
    result = spq("--data_dir", data, "--resume", bad, "--output_dir", tmp_path, "--device", "cpu")
    assert_clean_failure(result, 1, f"cannot read checkpoint {bad}")


def test_cuda_asked_without_cuda(data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = spq("--data_dir", data, "--output_dir", tmp_path / "o", "--device", "cuda")
    assert_clean_failure(result, 1, "--device cuda")


def test_help_lists_every_option():
    result = spq("--help")
    assert result.returncode == 0
    for option in ["--gpu_id", "--if_download", "--data_dir", "--batch_size", "--num_workers",
                   "--input_size", "--N_books", "--N_words", "--L_word", "--soft_quantization_scale",
                   "--contrastive_temperature", "--num_cls", "--eval_epoch", "--output_dir", "--Top_N",
                   "--epochs", "--lr", "--weight_decay", "--seed", "--device", "--resume", "--eval_only",
                   "--lr_schedule"]:
        assert option in result.stdout, option
