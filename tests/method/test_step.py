"""The training step: fast path against the plain one, bf16 autocast, compile fallback,
and the distributions the augmentation draws from."""
import copy

import pytest
import torch

import spq.method.step as T
from plain_step import plain_loss_on_views, plain_views
from spq.method.views import make_augmentation
from spq.method.network import SPQ
from spq.method.step import make_scaler


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


def test_views_are_two_draws_of_the_augmentation_in_the_device_layout():
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    augment = make_augmentation(32)
    torch.manual_seed(1)
    va, vb = T.make_views(augment, images)
    assert va.is_contiguous() and vb.is_contiguous() and va.shape == (6, 3, 32, 32)  # contiguous on the CPU
    assert 0 <= va.min() and vb.max() <= 1 and not va.requires_grad
    # the same two draws, written plainly: the augmentation of images / 255, twice
    torch.manual_seed(1)
    x = images.float() / 255
    expected_a, expected_b = augment(x), augment(x)
    torch.testing.assert_close(va, expected_a, atol=1e-6, rtol=0)
    torch.testing.assert_close(vb, expected_b, atol=1e-6, rtol=0)
    assert (va - vb).abs().max() > 0.1                          # two independent draws
    # without augmentation both views are the images in [0, 1], on either path
    for path in (T.make_views, plain_views):
        pa, pb = path(torch.nn.Identity(), images)
        assert torch.equal(pa, images.float() / 255) and torch.equal(pb, images.float() / 255), path


class CastCNN:
    """The model's CNN under `precision` autocast with fp32 output, holding its codebooks:
    what bench/plain_step.py's plain loss needs to see of a model."""

    def __init__(self, model, precision):
        self.model, self.precision = model, precision
        self.codebooks, self.tau_q = model.codebooks, model.tau_q

    def __call__(self, x):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            return self.model(x).float()


# (loss, gradient) agreement between the fast step and the plain one: fp32 rounding only;
# bf16 rounds the CNN's activations and gradients (8-bit mantissas)
TOLERANCE = {"fp32": dict(atol=1e-5, rtol=1e-4), "bf16": dict(atol=5e-3, rtol=2e-2)}


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=pytest.mark.slow)])   # CPU bf16 is slow
def test_training_steps_are_plain_sgd_steps_on_the_plain_loss(precision):
    """Each of two steps (bf16: one) of `training_step` with SGD moves every parameter by exactly
    -lr * its gradient of the plain loss (bench/plain_step.py: CNN under autocast,
    quantization and loss in fp32) on the views drawn plainly (the augmentation of
    images / 255, twice), from the same state; BatchNorm statistics move alike."""
    torch.manual_seed(2)
    model = SPQ(4, 16, 8)
    reference = copy.deepcopy(model)
    batch = 4 if precision == "fp32" else 2                     # CPU bf16 is slow
    images = torch.randint(0, 256, (2, batch, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(3))
    augment, lr, tol = make_augmentation(16), 0.05, TOLERANCE[precision]   # 16-pixel views
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    scaler = make_scaler(torch.device("cpu"), precision)
    for step in range(2 if precision == "fp32" else 1):        # the second step: gradients are reset
        reference.load_state_dict(model.state_dict())
        before = [p.detach().clone() for p in model.parameters()]
        torch.manual_seed(10 + step)
        loss = T.training_step(model, augment, images[step], opt, scaler, 0.5, precision)
        torch.manual_seed(10 + step)
        x = images[step].float() / 255
        view_a, view_b = augment(x), augment(x)
        expected = plain_loss_on_views(CastCNN(reference, precision), view_a, view_b, 0.5)
        grads = torch.autograd.grad(expected, list(reference.parameters()))
        assert loss.dtype == torch.float32 and not loss.requires_grad
        assert loss.item() == pytest.approx(expected.item(), abs=tol["atol"], rel=tol["rtol"])
        for (name, p), b, g in zip(model.named_parameters(), before, grads):
            torch.testing.assert_close((b - p.detach()) / lr, g, **tol, msg=f"step {step + 1}: {name}")
        for (name, want), got in zip(reference.named_buffers(), model.buffers()):   # BatchNorm statistics
            torch.testing.assert_close(got, want, **tol, msg=f"step {step + 1}: {name}")


def test_bf16_forward_differs_but_loss_stays_close():
    torch.manual_seed(3)
    model = SPQ(4, 16, 8).eval()
    va, vb = torch.rand(4, 3, 16, 16), torch.rand(4, 3, 16, 16)
    with torch.no_grad():
        l32 = T.loss_on_views(model, va, vb, 0.5, "fp32").item()
        l16 = T.loss_on_views(model, va, vb, 0.5, "bf16").item()
    assert l16 != l32                                   # the CNN did run in bf16
    assert l16 == pytest.approx(l32, rel=0.05)
