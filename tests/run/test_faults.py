"""The test-only fault injector: parsing, counting, each action, and its two wrapped points."""
import errno
import signal

import pytest
import torch

import spq.files.write
import spq.method.step
import spq.run.loop
from spq.run import faults
from spq.method.network import SPQ


def test_parse():
    assert faults.parse("step#8=sigterm; save=kill;") == {("step", 8): "sigterm", ("save", 1): "kill"}
    assert faults.parse("") == {}
    for bad in ["step#0=kill", "step=explode", "#2=kill", "step#x=kill", "step"]:
        with pytest.raises(ValueError, match="SPQ_FAULTS entry"):
            faults.parse(bad)


def test_counts_per_point_and_enospc(monkeypatch):
    monkeypatch.setenv("SPQ_FAULTS", "write#3=enospc")
    faults.arm()
    faults.hit("write")
    faults.hit("other")
    faults.hit("write")
    with pytest.raises(OSError) as e:
        faults.hit("write")
    assert e.value.errno == errno.ENOSPC
    faults.hit("write")                      # only the 3rd arrival fails
    monkeypatch.delenv("SPQ_FAULTS")
    faults.arm()
    faults.hit("write")


def test_signal_action(monkeypatch):
    got = []
    previous = signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
    try:
        monkeypatch.setenv("SPQ_FAULTS", "step#2=sigterm")
        faults.arm()
        faults.hit("step")
        assert got == []
        faults.hit("step")
        assert got == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
        monkeypatch.delenv("SPQ_FAULTS")
        faults.arm()


def test_install_wraps_the_writes_and_the_step_only_when_asked(monkeypatch, tmp_path):
    monkeypatch.delenv("SPQ_FAULTS", raising=False)
    faults.install()
    if not faults._installed:                    # nothing asked: nothing wrapped
        assert not hasattr(spq.files.write.write_all, "__wrapped__")
        assert not hasattr(spq.run.loop.training_step, "__wrapped__")
    monkeypatch.setenv("SPQ_FAULTS", "write:x.bin#2=enospc")
    faults.install()
    target = tmp_path / "x.bin"
    spq.files.write.atomic_write_bytes(target, b"0123456789")          # the first write passes
    assert target.read_bytes() == b"0123456789"
    with open(tmp_path / "seen", "wb") as f:                      # the second fails halfway
        with pytest.raises(OSError) as e:
            spq.files.write.write_all(f, b"abcdefgh", target)
    assert e.value.errno == errno.ENOSPC and (tmp_path / "seen").read_bytes() == b"abcd"
    monkeypatch.setenv("SPQ_FAULTS", "step#1=enospc")
    faults.install()
    torch.manual_seed(0)
    model = SPQ(2, 4, 4)
    before = model.head.weight.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    with pytest.raises(OSError):                                  # after the step's own work
        spq.run.loop.training_step(model, torch.nn.Identity(), images, optimizer,
                                   spq.method.step.make_scaler(torch.device("cpu"), "fp32"), 0.5)
    assert not torch.equal(model.head.weight, before)
    monkeypatch.delenv("SPQ_FAULTS")
    faults.install()
    spq.files.write.atomic_write_bytes(target, b"after")               # disarmed: writes pass
    assert target.read_bytes() == b"after"
