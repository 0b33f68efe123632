"""Crash safety: kill -9 at fixed points of the writes, a full disk, two runs on one folder,
stale temporary files, model-only best.pth, and malformed checkpoints."""
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import main_SPQ
from cifar_fixture import write_cifar10
from conftest import SMALL, assert_same_weights, read_log, reseal
from cli import spq, spq_process
from spq.store.checkpoint import load_checkpoint
from spq.files.torchfile import atomic_save
from spq.errors import SPQError
from spq.files.lock import LOCK, OutputLock
from spq.store.record import clean

# 40 training images in batches of 16, cropped to 16 pixels: 2 short steps an epoch, to keep
# the kill test (5 processes) short
TINY = ["--device", "cpu", "--batch_size", 16, "--input_size", 16, "--seed", 1]
ARGV = ["--epochs", 3, "--eval_epoch", 1, *TINY]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("tiny"), per_batch=8, test=10)


def cli(data, out, *extra):
    """A run in this process."""
    return spq("--data_dir", data, "--output_dir", out, *ARGV, *extra)


def killed_run(data, out, *extra, faults):
    """A run in a process of its own, which SPQ_FAULTS kills."""
    return spq_process("--data_dir", data, "--output_dir", out, *ARGV, *extra, env={"SPQ_FAULTS": faults})


def killed(result):
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr)


def epoch_of(path):
    return torch.load(path, weights_only=True)["epoch"]


def temp_files(out):
    return sorted(p.name for p in Path(out).glob(".*.tmp*"))


@pytest.mark.slow
def test_kill_at_each_write_then_resume_matches_an_uninterrupted_run(tiny, tmp_path):
    data, out, straight = tiny, tmp_path / "run", tmp_path / "straight"
    result = cli(data, straight)
    assert result.returncode == 0, result.stderr
    # epoch 1 is the best so far: killed inside best.pth's write, after last.pth, before the log line
    killed(killed_run(data, out, faults="write:best.pth#1=kill"))
    assert epoch_of(out / "last.pth") == 1 and not (out / "best.pth").exists()
    assert not (out / "log.jsonl").exists()
    # the resume removes best.pth's temporary file, writes best.pth and the log row of epoch 1,
    # then dies inside last.pth of epoch 2
    result = killed_run(data, out, "--resume", "auto", faults="write:last.pth#1=kill")
    killed(result)
    assert "removed" in result.stderr and ".best.pth.tmp" in result.stderr
    assert [r["epoch"] for r in read_log(out)] == [1] and epoch_of(out / "best.pth") == 1
    assert epoch_of(out / "last.pth") == 1 and len(temp_files(out)) == 1
    # the next removes that temporary file, then dies inside the log line of epoch 2
    result = killed_run(data, out, "--resume", "auto", faults="write:log.jsonl#1=kill")
    killed(result)
    assert "removed" in result.stderr and temp_files(out) == []
    assert epoch_of(out / "last.pth") == 2
    last_line = (out / "log.jsonl").read_text().split("\n")[-1]
    assert last_line.startswith('{"epoch": 2') and not last_line.endswith("}")   # torn
    # the last resume repairs the log and finishes
    result = cli(data, out, "--resume", "auto")
    assert result.returncode == 0, result.stderr
    log, reference = read_log(out), read_log(straight)
    assert [r["epoch"] for r in log] == [1, 2, 3]
    for a, b in zip(log, reference):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["mAP"] == pytest.approx(b["mAP"], abs=1e-6)
    assert_same_weights(out / "last.pth", straight / "last.pth")
    assert_same_weights(out / "best.pth", straight / "best.pth")
    assert temp_files(out) == [] and not (out / LOCK).exists()


def test_full_disk_is_one_line_and_resume_restores_the_record(tiny, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = [str(a) for a in ["--data_dir", tiny, "--output_dir", out, "--epochs", 1, *TINY]]
    monkeypatch.setenv("SPQ_FAULTS", "write:best.pth#1=enospc")
    assert main_SPQ.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: cannot write {out / 'best.pth'} (No space left on device): "
                          f"{out} has ") and " MiB free and this file needs " in err
    assert "the previous best.pth, if any, is intact; then continue the run with --resume auto" in err
    assert epoch_of(out / "last.pth") == 1 and not (out / "best.pth").exists()
    assert temp_files(out) == [] and not (out / "log.jsonl").exists()
    monkeypatch.delenv("SPQ_FAULTS")
    assert main_SPQ.main(argv + ["--resume", "auto"]) == 0
    assert epoch_of(out / "best.pth") == 1 and [r["epoch"] for r in read_log(out)] == [1]
    assert read_log(out)[0] == torch.load(out / "last.pth", weights_only=True)["log"][0]


@pytest.fixture
def file_size_limit():
    """Writes past 50 MB fail in this process (EFBIG), as a full disk fails them."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50 * 2 ** 20, hard))
    yield
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    signal.signal(signal.SIGXFSZ, previous)


def test_a_real_write_failure_is_one_line_not_a_traceback(tiny, tmp_path, file_size_limit, capsys):
    out = tmp_path / "run"
    argv = ["--data_dir", tiny, "--output_dir", out, "--epochs", 1, *TINY]
    assert main_SPQ.main([str(a) for a in argv]) == 1           # last.pth is over 100 MB
    err = capsys.readouterr().err
    assert err == (f"error: cannot write {out / 'last.pth'} (File too large); the previous last.pth, "
                   f"if any, is intact; then continue the run with --resume auto\n")
    assert not out.exists()             # no temporary file, no lock: the folder it made is removed


def test_the_space_a_failed_checkpoint_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("SPQ_FAULTS", "write:c.pth=enospc")
    from spq.run import faults
    faults.install()
    obj = {"w": torch.zeros(3 * 2 ** 18)}                     # 3 MiB of float32
    with pytest.raises(SPQError, match=r"this file needs 3\.0 MiB"):
        atomic_save(obj, tmp_path / "c.pth")
    monkeypatch.delenv("SPQ_FAULTS")
    faults.arm()
    assert list(tmp_path.iterdir()) == []


def test_a_second_run_on_the_folder_is_refused_at_once(tiny, tmp_path, capsys):
    out = tmp_path / "busy"
    with OutputLock(out):                                     # a run holds the folder
        code = main_SPQ.main([str(a) for a in ["--data_dir", tiny, "--output_dir", out, "--epochs", 1,
                                               *TINY]])
        assert code == 1
        err = capsys.readouterr().err
        assert f"error: --output_dir {out} is in use by another run (process {os.getpid()} on " in err
        assert list(out.iterdir()) == [out / LOCK]            # the refused run wrote nothing
    assert not out.exists()                                   # the holder created it, and cleans up


def test_a_lock_left_by_a_dead_run_does_not_block(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / LOCK).write_text("process 999999 on nowhere: killed\n")   # no flock is held on it
    with OutputLock(out):
        assert f"process {os.getpid()}" in (out / LOCK).read_text()
    assert not (out / LOCK).exists()


def test_only_temporary_files_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    names = [f".last.pth.tmp{dead}", f".best.pth.tmp{dead}", f".log.jsonl.tmp{dead}",
             f".last.pth.tmp{os.getppid()}", f".mine.pth.tmp{dead}", "last.pth"]
    for name in names:
        (tmp_path / name).write_bytes(b"half")
    assert sorted(p.name for p in clean(tmp_path)) == sorted(names[:3])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[3:])


def test_best_pth_holds_the_model_only_and_resuming_training_from_it_is_refused(two_epochs, data, tmp_path, capsys):
    out, _ = two_epochs
    best, last = load_checkpoint(out / "best.pth"), load_checkpoint(out / "last.pth")
    assert best["optimizer"] is None and best["rng"] is None and last["optimizer"] is not None
    assert (out / "best.pth").stat().st_size < (out / "last.pth").stat().st_size / 2
    code = main_SPQ.main([str(a) for a in ["--data_dir", data, "--output_dir", tmp_path / "o",
                                           "--resume", out / "best.pth", "--epochs", 3, *SMALL]])
    assert code == 1
    assert (f"error: {out / 'best.pth'} holds the model only (best.pth keeps no optimizer state): "
            f"continue training from {out / 'last.pth'}") in capsys.readouterr().err


def edit(ckpt, change):
    """A copy of `ckpt` with `change(copy)` applied (nested dicts copied where changed)."""
    copy = {**ckpt, "args": dict(ckpt["args"]), "rng": dict(ckpt["rng"])}
    change(copy)
    return copy


def set_arg(name, value):
    return lambda c: c["args"].__setitem__(name, value)


MALFORMED = {
    "rng without cuda": (lambda c: c["rng"].pop("cuda"), "no random states"),
    "python rng short": (lambda c: c["rng"].__setitem__("python", (3, (1, 2), None)), "Python random state"),
    "numpy rng keys": (lambda c: c["rng"].__setitem__("numpy", {"keys": torch.zeros(3)}), "numpy random state"),
    "mid_epoch bad": (lambda c: c.__setitem__("mid_epoch", {"epoch": 3, "step": "x"}), "mid-epoch record"),
    "mid_epoch step": (lambda c: c.__setitem__("mid_epoch", {
        "epoch": 3, "shuffle_state": torch.get_rng_state(), "step": -1, "loss_sum": torch.tensor(1.0),
        "seconds": 0.0}), "mid-epoch step -1"),
    "N_books huge": (set_arg("N_books", 10 ** 6), "--N_books must be positive, from 1 to 4096, got 1000000"),
    "books too many for the file": (lambda c: c["args"].update(N_books=4096, L_word=4096),
                                    "options N_books 4096, N_words 16, L_word 4096 that describe more "
                                    "parameters than its"),
    "N_words not 2^k": (set_arg("N_words", 12), "--N_words must be a power of two"),
    "lr a string": (set_arg("lr", "fast"), "option --lr: 'fast' is not a value"),
    "bool an int": (set_arg("compile", 2), "option --compile: 2 is not a value"),
    "choice": (set_arg("lr_schedule", "weird"), "'weird' is not one of authors, cosine, constant"),
    "batch 1": (set_arg("batch_size", 1), "--batch_size must be at least 2"),
    "input_size huge": (set_arg("input_size", 10 ** 5), "--input_size must be at least 8 and at most 4096, got 100000"),
    "unknown tensor": (set_arg("smuggled", torch.zeros(2)), "unknown option 'smuggled' holds a Tensor"),
    "epoch": (lambda c: c.__setitem__("epoch", -1), "it has epoch -1"),
    "best map": (lambda c: c.__setitem__("best_map", 7.0), "best mAP of 7.0"),
    "log rows": (lambda c: c.__setitem__("log", [{"epoch": 1}]), "a log that is not a list of 2 rows"),
    "model": (lambda c: c.__setitem__("model", {"w": 3}), "a model that is not a dictionary of tensors"),
}


@pytest.fixture(scope="module")
def last_ckpt(two_epochs):
    """two_epochs' last.pth, loaded once; `edit` changes copies of it."""
    return torch.load(Path(two_epochs[0]) / "last.pth", weights_only=True)


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_checkpoints_are_refused_in_one_line(last_ckpt, tmp_path, case):
    change, message = MALFORMED[case]
    reseal(edit(last_ckpt, change), tmp_path / "bad.pth")      # sealed: the schema, not the checksum, refuses it
    with pytest.raises(SPQError, match=f"bad.pth is a damaged or foreign checkpoint: .*{message}"):
        load_checkpoint(tmp_path / "bad.pth")


def test_options_a_checkpoint_lacks_or_does_not_know_are_accepted(last_ckpt, tmp_path):
    def older(c):                      # written before --precision and --adc_distance existed,
        del c["args"]["precision"]     # by a version with an option this one lacks
        del c["args"]["adc_distance"]
        c["args"]["retired_option"] = "x"
    reseal(edit(last_ckpt, older), tmp_path / "older.pth")
    assert load_checkpoint(tmp_path / "older.pth")["epoch"] == 2


def test_the_lock_removes_only_the_empty_folders_it_made(tmp_path):
    with OutputLock(tmp_path / "a" / "b" / "c"):
        assert (tmp_path / "a" / "b" / "c" / LOCK).is_file()
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a").mkdir()
    with OutputLock(tmp_path / "a" / "b"):
        (tmp_path / "a" / "kept.txt").write_text("")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["kept.txt"]


def test_options_added_to_the_parser_are_checked_too(monkeypatch):
    from spq.options import declared, values
    from spq.store import schema
    from spq.store.schema import check_options
    real = declared.get_args_parser

    def extended():
        p = real()
        p.add_argument("--future_views", choices=["authors", "simclr"], default="authors")
        p.add_argument("--caps", type=int, nargs="+", default=None)
        return p
    for module in (values, schema):                   # each reads the parser it imported
        monkeypatch.setattr(module, "get_args_parser", extended)
    stored = vars(values.parse_args([]))
    assert check_options({**stored, "future_views": "simclr", "caps": [3, 4]}) is None
    assert "'bogus' is not one of authors, simclr" in check_options({**stored, "future_views": "bogus"})
    assert "'bogus' is not one of authors, simclr" in check_options({**stored, "augment": "bogus"})
    assert "3 is not a list" in check_options({**stored, "caps": 3})
    assert "'x' is not a value" in check_options({**stored, "caps": [1, "x"]})
