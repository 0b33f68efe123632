"""python -m spq.prepare, spq.split and spq.export killed at each of their writes (SIGKILL
halfway through the bytes of a file, `SPQ_FAULTS=write:NAME=kill`), over an earlier
complete output: what is left is never taken as complete (its manifest is missing, or
matches exactly what is there), the next run removes what the killed one left and writes
the whole output again; and two runs into one folder: the second is refused while the
first writes, never mixed in."""
import os
import sys
from pathlib import Path

import pytest

import processes
from conftest import ROOT
from list_fixture import CLASSES, write_lists
from prepare_fixture import nus_raw
from spq.errors import SPQError
from spq.files.read import verified


def command(module, *argv, fault=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("SPQ_FAULTS", None)
    if fault:
        env["SPQ_FAULTS"] = fault
    return processes.run([sys.executable, "-m", module, *map(str, argv)], cwd=ROOT, env=env, timeout=600)


def left_over(folder: Path):
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def complete_or_refused(folder: Path, manifest: str, what: str) -> bool:
    """Whether the folder reads as complete; asserts that a manifest there matches it."""
    try:
        verified(folder, manifest, what)
    except SPQError:
        return False
    return True


def killed_at_each_write(module, argv, out, manifest, names):
    """Over a complete earlier output, kill the command at its write of each of `names` in
    turn (with --force): each kill leaves a temporary file and a folder that does not read
    as complete, and the next run removes what the killed one left; then a run to the end
    writes the whole output again. One chain, so each run after the first both cleans up
    after a kill and is killed itself."""
    for number, name in enumerate(names):
        killed = command(module, *argv, "--force", fault=f"write:{name}=kill")
        assert killed.returncode == -9, (name, killed.returncode, killed.stderr)
        if number:
            assert "removed" in killed.stderr, (name, killed.stderr)   # the previous kill's leftovers
        assert left_over(out), f"the kill at {name} left no temporary file: it did not land inside a write"
        assert not complete_or_refused(out, manifest, module), \
            f"a run killed writing {name} left a folder that reads as complete"
    again = command(module, *argv, "--force")
    assert again.returncode == 0, again.stderr
    assert "removed" in again.stderr and left_over(out) == []
    record = verified(out, manifest, module)
    assert sorted(p.name for p in out.iterdir()) == sorted([*record["files"], manifest])


def test_prepare_killed_at_each_write(tmp_path):
    raw, out = nus_raw(tmp_path), tmp_path / "out"
    assert command("spq.prepare", "nuswide", raw, out, "--concepts", 81).returncode == 0
    killed_at_each_write("spq.prepare", ["nuswide", raw, out], out, "prepare.json",
                         ["all.txt", "classes.txt", "prepare.json"])


def test_split_killed_at_each_write(tmp_path):
    data_dir, train_list, _ = write_lists(tmp_path / "lists", train=20, query=2)
    out = tmp_path / "split"
    argv = ["custom", out, "--list", train_list, "--num_cls", CLASSES, "--data_dir", data_dir, "--query", 4]
    assert command("spq.split", *argv, "--seed", 9).returncode == 0
    killed_at_each_write("spq.split", argv, out, "split.json", ["query.txt", "train.txt", "database.txt", "split.json"])


@pytest.mark.slow
def test_export_killed_at_each_write(data, two_epochs, tmp_path):
    out = tmp_path / "export"
    argv = ["--checkpoint", Path(two_epochs[0]) / "best.pth", "--data_dir", data, "--out", out,
            "--device", "cpu", "--num_workers", 0, "--descriptors"]
    assert command("spq.export", *argv, "--split", "query").returncode == 0
    killed_at_each_write("spq.export", argv, out, "export.json",
                         ["codes.npy", "codebooks.npy", "labels.npy", "paths.txt", "descriptors.npy", "export.json"])


def test_a_second_split_into_a_busy_folder_is_refused(tmp_path):
    """While one run holds OUT's lock, another is refused whole, before it writes."""
    from cli import split_cli
    from spq.files.lock import OutputLock
    data_dir, train_list, _ = write_lists(tmp_path / "lists", train=20, query=2)
    out = tmp_path / "split"
    with OutputLock(out, what="OUT"):
        refused = split_cli("custom", out, "--list", train_list, "--num_cls", CLASSES, "--data_dir", data_dir,
                            "--query", 4)
    assert refused.returncode == 1 and "is in use by another run" in refused.stderr
    assert not (out / "split.json").exists()
