"""The training step: fast path against the plain one, bf16 autocast, compile fallback,
and the distributions the augmentation draws from."""
import copy
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import spq.train as T  # noqa: E402
from plain_step import plain_loss_on_views, plain_views  # noqa: E402
from spq.augment import make_augmentation  # noqa: E402
from spq.compiling import compile_model  # noqa: E402
from spq.model import SPQ  # noqa: E402
from spq.precision import make_scaler  # noqa: E402


@pytest.mark.parametrize("batch,temperature", [(4, 0.5), (7, 0.2)])
def test_fast_and_plain_paths_give_the_same_loss_and_gradients(batch, temperature):
    torch.manual_seed(0)
    plain = SPQ(4, 16, 8)
    fast = copy.deepcopy(plain)            # the CPU fast path keeps the contiguous layout
    va, vb = torch.rand(batch, 3, 32, 32), torch.rand(batch, 3, 32, 32)
    loss_plain = plain_loss_on_views(plain, va, vb, temperature)
    loss_fast = T.loss_on_views(fast, va, vb, temperature)
    assert loss_fast.item() == pytest.approx(loss_plain.item(), abs=1e-5)
    loss_plain.backward()
    loss_fast.backward()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-5, rtol=1e-4, msg=name)


def test_views_are_in_the_device_layout_and_in_range():
    torch.manual_seed(1)
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    va, vb = T.make_views(make_augmentation(32), images)
    assert va.is_contiguous() and va.shape == (6, 3, 32, 32)     # contiguous on the CPU
    assert 0 <= va.min() and vb.max() <= 1 and not va.requires_grad
    pa, pb = plain_views(make_augmentation(32), images)
    assert pa.shape == va.shape and 0 <= pa.min() and pb.max() <= 1


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_step_runs_and_updates(precision):
    torch.manual_seed(2)
    model = SPQ(4, 16, 8)
    before = model.codebooks.detach().clone()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    loss = T.training_step(model, make_augmentation(32), images, opt,
                           make_scaler(torch.device("cpu"), precision), 0.5, precision)
    assert loss.dtype == torch.float32 and math.isfinite(loss.item())
    assert not torch.equal(before, model.codebooks.detach())


def test_bf16_forward_differs_but_loss_stays_close():
    torch.manual_seed(3)
    model = SPQ(4, 16, 8).eval()
    va, vb = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        l32 = T.loss_on_views(model, va, vb, 0.5, "fp32").item()
        l16 = T.loss_on_views(model, va, vb, 0.5, "bf16").item()
    assert l16 == pytest.approx(l32, rel=0.05)


def test_compile_falls_back_with_a_warning(monkeypatch, capsys):
    def broken(*a, **k):
        raise RuntimeError("no compiler here")
    monkeypatch.setattr(torch, "compile", broken)
    assert compile_model(SPQ(2, 4, 4)) is None
    assert "--compile is not available here (RuntimeError: no compiler here)" in capsys.readouterr().err


# The simclr augmentation's distributions, from the parameters kornia samples for a large
# batch (the authors' pipeline has its own in tests/test_augment.py).
N = 20000


@pytest.fixture(scope="module")
def params():
    torch.manual_seed(4)
    shape = torch.Size([N, 3, 32, 32])
    return [m.forward_parameters(shape) for m in make_augmentation(32, "simclr")]


def rate_ok(p, expected):
    rate = p["batch_prob"].float().mean().item()
    return abs(rate - expected) < 5 * math.sqrt(expected * (1 - expected) / N)


def test_crop_scale_and_ratio(params):
    src = params[0]["src"].float()                               # (N, 4, 2) corner points
    w = src[:, 1, 0] - src[:, 0, 0] + 1
    h = src[:, 2, 1] - src[:, 1, 1] + 1
    scale, ratio = w * h / (32 * 32), w / h
    assert scale.min() >= 0.05 and scale.max() <= 1.0           # 0.08..1, up to pixel rounding
    assert ratio.min() >= 0.6 and ratio.max() <= 1.5            # 3/4..4/3, up to pixel rounding
    assert 0.45 < scale.mean() < 0.62                           # uniform on (0.08, 1): mean 0.54
    assert abs(ratio.log().mean().item()) < 0.03                # log-uniform, symmetric around 1


def test_flip_jitter_grayscale_blur_rates(params):
    _, flip, jitter, gray, blur = params
    assert rate_ok(flip, 0.5) and rate_ok(jitter, 0.8) and rate_ok(gray, 0.2) and rate_ok(blur, 0.5)


def test_jitter_and_blur_ranges(params):
    jitter, blur = params[2], params[4]
    for key, lo, hi in [("brightness_factor", 0.6, 1.4), ("contrast_factor", 0.6, 1.4),
                        ("saturation_factor", 0.6, 1.4), ("hue_factor", -0.1, 0.1)]:
        v = jitter[key]
        assert v.min() >= lo and v.max() <= hi, key
        assert abs(v.mean().item() - (lo + hi) / 2) < 0.02, key  # uniform over the range
    sigma = blur["sigma"]
    assert sigma.min() >= 0.1 and sigma.max() <= 2.0 and abs(sigma.mean().item() - 1.05) < 0.03
