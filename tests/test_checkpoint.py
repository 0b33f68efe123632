"""Atomic checkpoint writes and strict loading."""
import pytest
import torch

from spq.checkpoint import FORMAT, VERSION, load_checkpoint
from spq.fileio import atomic_save
from spq.errors import SPQError


def test_interrupted_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    atomic_save({"format": FORMAT, "value": torch.ones(3)}, path)

    def failing_save(obj, f):
        f.write(b"half a checkpoint")
        raise RuntimeError("disk full")
    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(RuntimeError):
        atomic_save({"value": torch.zeros(3)}, path)
    monkeypatch.undo()
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
