"""Values checked where they enter: the rows of an attack on the program (issue 27) that
concern options, checkpoints and the output folder, each refused with one line (the index's
rows are in test_index_inputs.py)."""
import os
import shutil
from pathlib import Path

import pytest
import torch

from conftest import SMALL, assert_clean_failure
from cli import spq
from spq.files.torchfile import with_checksum


def one_line(result):
    assert result.stderr.count("\n") == 1, result.stderr


def rewrite(path, change, checksum=True):
    """Load a checkpoint, change it, save it (with a checksum matching the change)."""
    ckpt = torch.load(path, weights_only=True)
    change(ckpt)
    torch.save(with_checksum(ckpt) if checksum else ckpt, path)


@pytest.fixture
def best(two_epochs, tmp_path):
    copy = tmp_path / "best.pth"
    shutil.copy(Path(two_epochs[0]) / "best.pth", copy)
    return copy


def evaluate(data, checkpoint, tmp_path):
    return spq("--data_dir", data, "--resume", checkpoint, "--eval_only", "--device", "cpu",
               "--output_dir", tmp_path / "eval")


def test_row_1_a_planted_lock_link_is_not_written_through(data, tmp_path):
    out, victim = tmp_path / "run", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("precious\n")
    os.symlink(victim, out / ".spq.lock")
    result = spq("--data_dir", data, "--output_dir", out, "--epochs", 1, *SMALL)
    assert_clean_failure(result, 1, ".spq.lock is a symbolic link or not a regular file")
    assert victim.read_text() == "precious\n"


def test_a_planted_log_link_is_not_written_through(data, one_epoch, tmp_path):
    run, victim = tmp_path / "run", tmp_path / "victim.txt"
    shutil.copytree(one_epoch, run)
    victim.write_text("precious\n")
    rows = (run / "log.jsonl").read_text()
    (run / "log.jsonl").unlink()
    victim.write_text(rows)
    os.symlink(victim, run / "log.jsonl")
    result = spq("--data_dir", data, "--output_dir", run, "--resume", "auto", "--epochs", 2, "--device", "cpu")
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr
    assert victim.read_text() == rows                              # replaced or refused, never appended to


def test_row_3_a_stored_input_size_the_machine_cannot_hold(data, best, tmp_path):
    rewrite(best, lambda c: c["args"].update(input_size=4096))
    result = evaluate(data, best, tmp_path)
    assert_clean_failure(result, 1, "need at least", "GiB of memory on cpu", "lower --input_size")
    one_line(result)


def test_row_4_non_finite_weights(data, best, tmp_path):
    rewrite(best, lambda c: c["model"]["head.weight"].view(-1).__setitem__(3, float("nan")))
    result = evaluate(data, best, tmp_path)
    assert_clean_failure(result, 1, "holds non-finite values (NaN or infinity) in its model (head.weight)")
    one_line(result)


def test_row_5_flipped_bytes_inside_the_tensors(data, best, tmp_path):
    raw = bytearray(best.read_bytes())
    middle = len(raw) // 2
    raw[middle:middle + 4096] = bytes(b ^ 0xFF for b in raw[middle:middle + 4096])
    best.write_bytes(bytes(raw))
    result = evaluate(data, best, tmp_path)
    assert_clean_failure(result, 1, "is damaged or was edited: its contents do not match the checksum written with them")
    one_line(result)


def test_a_checkpoint_from_before_checksums_loads_with_a_note(data, best, tmp_path):
    rewrite(best, lambda c: c.pop("checksum"), checksum=False)
    result = evaluate(data, best, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "has no checksum (written before they were recorded)" in result.stderr


@pytest.mark.parametrize("option,value,message", [
    ("--images_in_memory_gb", "nan", "must be a finite number"),           # row 10
    ("--images_in_memory_gb", "inf", "must be a finite number"),
    ("--seed", "-1", "--seed must be zero or positive"),                   # row 11
    ("--seed", str(2 ** 40), "--seed must be zero or positive"),
    ("--lr", "nan", "--lr must be a finite number"),                       # row 12
    ("--weight_decay", "nan", "--weight_decay must be a finite number"),
    ("--N_books", "1000000000", "--N_books must be positive"),             # row 13
    ("--contrastive_temperature", "inf", "--contrastive_temperature must be a finite number"),   # row 14
])
def test_rows_10_to_14_absurd_options_exit_2_in_one_line(option, value, message, tmp_path):
    result = spq(option, value, "--output_dir", tmp_path / "out")
    assert_clean_failure(result, 2, message)
    assert not (tmp_path / "out").exists()


def test_row_13_a_model_the_machine_cannot_hold(data, tmp_path):
    result = spq("--data_dir", data, "--output_dir", tmp_path / "out", "--N_books", 4096, "--L_word", 4096, *SMALL)
    assert_clean_failure(result, 1, "need at least", "lower --input_size, --batch_size or the code size")
    one_line(result)


def test_row_15_a_folder_with_only_a_log_gives_advice_that_works(data, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "log.jsonl").write_text('{"epoch": 1, "loss": 9.0}\n')
    for extra in ([], ["--resume", "auto"]):
        result = spq("--data_dir", data, "--output_dir", out, "--epochs", 1, *SMALL, *extra)
        assert_clean_failure(result, 1, "holds a log.jsonl but no last.pth", f"remove {out / 'log.jsonl'}")
        assert "continue it with --resume auto" not in result.stderr
    (out / "log.jsonl").unlink()                                   # the advice, followed, works
    assert spq("--data_dir", data, "--output_dir", out, "--epochs", 1, *SMALL).returncode == 0


def test_row_16_a_resume_with_every_option_typed_says_so(data, one_epoch, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(one_epoch, run)
    result = spq("--data_dir", data, "--output_dir", run, "--epochs", 1, "--eval_epoch", 1, *SMALL,
                 "--resume", "auto")
    assert result.returncode == 0, result.stderr
    assert "all equal to the defaults" not in result.stdout
    assert "options from the checkpoint's run: none needed" in result.stdout
