"""The test-only fault injector: parsing, counting, and each action."""
import errno
import os
import signal

import pytest

from spq import faults


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
