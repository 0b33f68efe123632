"""LR schedules: the authors' periodic cosine (timed as their loop), the one-shot cosine, constant."""
import math

import pytest
from spq.method.step import lr_per_epoch


def lrs(kind, epochs):
    return lr_per_epoch(kind, epochs, steps_per_epoch=195, lr=3e-4)


def authors_loop(epochs, steps_per_epoch, base):
    """The authors' loop, plainly: epochs counted from 0, the LR of each epoch read before
    it trains, a cosine step (T_max = steps per epoch, eta_min 0) after every epoch >= 10."""
    out, steps = [], 0
    for epoch in range(epochs):
        out.append(base * (1 + math.cos(math.pi * steps / steps_per_epoch)) / 2)
        if epoch >= 10:
            steps += 1
    return out


@pytest.mark.parametrize("steps_per_epoch", [195, 7])
def test_authors_schedule_equals_their_loop(steps_per_epoch):
    ours = lr_per_epoch("authors", 800, steps_per_epoch, 3e-4)
    theirs = authors_loop(800, steps_per_epoch, 3e-4)
    assert ours == pytest.approx(theirs, abs=1e-9)


def test_authors_schedule_landmarks():
    lr = lrs("authors", 620)
    base = 3e-4
    assert lr[:11] == [base] * 11                  # epochs 1..11 constant
    assert lr[11] < base                           # epoch 12 at the cosine's first step
    assert lr[12 - 1] == pytest.approx(base * (1 + math.cos(math.pi / 195)) / 2, abs=1e-12)
    assert lr[206 - 1] == pytest.approx(0, abs=1e-12)    # zero at epoch 206 ...
    assert lr[205 - 1] > 0
    assert lr[401 - 1] == pytest.approx(base, rel=1e-6)  # ... and back up a period later


def test_cosine_schedule_decays_once():
    lr = lrs("cosine", 100)
    assert lr[0] == 3e-4
    assert all(a >= b for a, b in zip(lr, lr[1:]))
    assert lr[-1] < 1e-6


def test_constant_schedule():
    assert lrs("constant", 30) == [3e-4] * 30
