"""Atomic checkpoint writes and strict loading."""
import errno
import io
import os

import pytest
import torch

import spq.files.write
from spq.store.checkpoint import FORMAT, VERSION, load_checkpoint
from spq.files.torchfile import atomic_save
from spq.errors import SPQError


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    """The new bytes reach a temporary file on the disk; the write fails halfway (a full disk);
    the old file is intact and the temporary file gone."""
    path = tmp_path / "last.pth"
    atomic_save({"format": FORMAT, "value": torch.ones(3)}, path)
    write_all, on_disk = spq.files.write.write_all, []

    def half_then_full_disk(f, data, target):
        write_all(f, memoryview(data)[:len(data) // 2], target)
        f.flush()
        on_disk.extend((p.name, p.stat().st_size) for p in tmp_path.iterdir() if p != path)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(spq.files.write, "write_all", half_then_full_disk)
    new = {"value": torch.zeros(3)}
    with pytest.raises(SPQError, match="No space left on device.*the previous last.pth, if any, is intact"):
        atomic_save(new, path)
    monkeypatch.undo()
    buffer = io.BytesIO()
    torch.save(new, buffer)
    assert on_disk == [(f".last.pth.tmp{os.getpid()}", len(buffer.getvalue()) // 2)]
    assert torch.equal(torch.load(path, weights_only=True)["value"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]   # no temporary file left


@pytest.mark.parametrize("content,message", [
    (b"", "truncated, corrupt"), (b"\x80\x04garbage", "truncated, corrupt")])
def test_corrupt_file(tmp_path, content, message):
    path = tmp_path / "c.pth"
    path.write_bytes(content)
    with pytest.raises(SPQError, match=message):
        load_checkpoint(path)


def test_truncated_real_checkpoint(tmp_path):
    path = tmp_path / "c.pth"
    torch.save({"format": FORMAT, "version": VERSION, "w": torch.randn(1000)}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(SPQError, match="truncated"):
        load_checkpoint(path)


def test_foreign_and_partial_files(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(SPQError, match="not an SPQ checkpoint"):
        load_checkpoint(tmp_path / "other.pth")
    torch.save({"format": FORMAT, "version": VERSION, "epoch": 1}, tmp_path / "partial.pth")
    with pytest.raises(SPQError, match="lacks best_map"):
        load_checkpoint(tmp_path / "partial.pth")
    with pytest.raises(SPQError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pth")
