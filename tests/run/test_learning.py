"""Training learns: on data whose classes an untrained network barely tells apart, a short
seeded run lowers the loss and lifts mAP well above the same run at learning rate 0.

The data (`cifar_fixture.write_hues`): 3 classes, each a hue; every image has its own
saturation, brightness and pattern of light and shade, which an untrained network ranks
by. The run: 100 training images (also the gallery), 100 queries, batch 25 (4 steps an
epoch), 16-pixel views, --lr 1e-3, 12 epochs, mAP over the whole gallery after epochs 4,
8 and 12. The control: the same run, same seed (so the same initial network) at --lr 0,
where only the BatchNorm statistics move, for one epoch, evaluated at its end: at --lr 0
nothing else changes, and over 12 epochs its loss and mAP stayed where they were.

Margins, measured with this test's settings on a 2-core Intel Xeon with seeds 0 to 4
(docs/testing.md), trained against control: the loss fell by 0.52 to 0.91 over the 12
epochs (a 4-epoch control's moved by 0.02 at most); the best mAP reached 0.85 to 1.00,
0.28 to 0.56 above the control's (0.42 to 0.60; chance is about 0.34). The thresholds below (a
fall of 0.3, a lift of 0.15, twice chance) sit well inside both gaps, so a run that
learns passes on any machine, and one that does not (a learning rate of 0, a broken
gradient) fails.
"""
import pytest
import torch

from cifar_fixture import write_hues
from conftest import read_log
from cli import spq
from spq.data.cifar10 import load_cifar10

pytestmark = pytest.mark.slow          # runs of about 25 s and 3 s on 2 cores

RUN = ["--device", "cpu", "--eval_epoch", 4, "--input_size", 16, "--batch_size", 25,
       "--seed", 0, "--Top_N", 0, "--num_cls", 3]
LOSS_FALL, MAP_LIFT = 0.3, 0.15


@pytest.fixture(scope="module")
def hues(tmp_path_factory):
    return write_hues(tmp_path_factory.mktemp("hues"), classes=3)


def run(data, out, lr, epochs=12):
    result = spq("--data_dir", data, "--output_dir", out, "--lr", lr, "--epochs", epochs, *RUN)
    assert result.returncode == 0, result.stderr
    return read_log(out)


@pytest.fixture(scope="module")
def control(hues, tmp_path_factory):
    return run(hues, tmp_path_factory.mktemp("control"), 0, epochs=1)


def chance(data) -> float:
    """The mean precision of a random ranking: per query, its class's share of the gallery."""
    cifar = load_cifar10(data, 3)
    share = torch.bincount(cifar.train_labels, minlength=3).double() / len(cifar.train_labels)
    return share[cifar.query_labels].mean().item()


def shortcomings(log, control_log, chance_map):
    """What the run `log` failed to show, against the control run; empty when it learned."""
    found = []
    fall = log[0]["loss"] - log[-1]["loss"]
    if fall < LOSS_FALL:
        found.append(f"the loss fell by {fall:.3f} over the run, not {LOSS_FALL}")
    best, control_best = (max(r["mAP"] for r in rows if "mAP" in r) for rows in (log, control_log))
    if best < control_best + MAP_LIFT:
        found.append(f"the best mAP {best:.3f} is not {MAP_LIFT} above the control's {control_best:.3f}")
    if best < 2 * chance_map:
        found.append(f"the best mAP {best:.3f} is not twice chance ({chance_map:.3f})")
    return found


def test_a_short_run_lowers_the_loss_and_lifts_map(hues, control, tmp_path):
    assert 0.30 < chance(hues) < 0.38
    trained = run(hues, tmp_path / "trained", 1e-3)
    assert shortcomings(trained, control, chance(hues)) == []


def test_the_check_fails_at_learning_rate_0(hues, control):
    """The control run judged as a trained run: the loss stays flat, mAP does not move."""
    found = shortcomings(control, control, chance(hues))
    assert len(found) >= 2 and "the loss fell" in found[0] and "above the control" in found[1], found
