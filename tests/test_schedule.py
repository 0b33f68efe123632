"""LR schedules: the authors' periodic cosine, the one-shot cosine, constant."""
import math

import pytest
from spq.schedule import lr_per_epoch


def lrs(kind, epochs):
    return lr_per_epoch(kind, epochs, steps_per_epoch=195, lr=3e-4)


def test_authors_schedule():
    lr = lrs("authors", 620)
    base = 3e-4
    assert lr[:10] == [base] * 10                  # epochs 1..10 constant
    for epoch in [11, 50, 100, 205, 300, 400, 600]:
        s = epoch - 10                             # scheduler steps taken before this epoch
        expected = base * (1 + math.cos(math.pi * s / 195)) / 2
        assert lr[epoch - 1] == pytest.approx(expected, abs=1e-9), epoch
    assert lr[205 - 1] == pytest.approx(0, abs=1e-12)   # zero at epoch 205 ...
    assert lr[400 - 1] == pytest.approx(base, rel=1e-6)  # ... and back up a period later


def test_cosine_schedule_decays_once():
    lr = lrs("cosine", 100)
    assert lr[0] == 3e-4
    assert all(a >= b for a, b in zip(lr, lr[1:]))
    assert lr[-1] < 1e-6


def test_constant_schedule():
    assert lrs("constant", 30) == [3e-4] * 30
