"""The cross quantized contrastive loss: plain reference, known answers, parameter sweep."""
import math

import pytest
import torch

from spq.method.loss import cqc_loss


def nt_xent_sum_loops(u, v, temperature):
    """Sum over the 2N rows of cat(u, v) of -log softmax(positive) with cosine similarities."""
    rows = [r.double() for r in torch.cat([u, v])]
    n2 = len(rows)
    total = 0.0
    for i in range(n2):
        sims = []
        for j in range(n2):
            if j != i:
                cos = float(rows[i] @ rows[j] / (rows[i].norm() * rows[j].norm()))
                sims.append((j, cos / temperature))
        partner = (i + n2 // 2) % n2
        pos = [s for j, s in sims if j == partner][0]
        total += -pos + math.log(sum(math.exp(s) for _, s in sims))
    return total


def cqc_loss_loops(xa, xb, za, zb, temperature):
    n = xa.shape[0]
    return (nt_xent_sum_loops(xa, zb, temperature) + nt_xent_sum_loops(xb, za, temperature)) / (2 * n)


@pytest.mark.parametrize("batch", [2, 3, 8, 17])
@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0])
def test_matches_plain_reference(batch, temperature):
    g = torch.Generator().manual_seed(batch * 10 + int(temperature * 10))
    xa, xb, za, zb = (torch.randn(batch, 12, generator=g) for _ in range(4))
    got = cqc_loss(xa, xb, za, zb, temperature).item()
    assert got == pytest.approx(cqc_loss_loops(xa, xb, za, zb, temperature), rel=1e-5, abs=1e-5)


@pytest.mark.parametrize("batch", [2, 5, 64])
@pytest.mark.parametrize("temperature", [0.2, 0.5])
def test_identical_embeddings(batch, temperature):
    # every similarity is 1: each row's cross-entropy is log(2N - 1)
    e = torch.ones(batch, 7) * 3.0
    got = cqc_loss(e, e, e, e, temperature).item()
    assert got == pytest.approx(2 * math.log(2 * batch - 1), rel=1e-6)


@pytest.mark.parametrize("batch", [2, 4, 9])
@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_orthogonal_pairs(batch, temperature):
    # x_i = z_i = e_i: positives have similarity 1, all 2N-2 negatives 0
    e = torch.eye(batch, 16)[:batch]
    got = cqc_loss(e, e, e, e, temperature).item()
    per_row = math.log(1 + (2 * batch - 2) * math.exp(-1 / temperature))
    assert got == pytest.approx(2 * per_row, rel=1e-6)


def test_scale_invariant_and_symmetric():
    g = torch.Generator().manual_seed(3)
    xa, xb, za, zb = (torch.randn(6, 10, generator=g) for _ in range(4))
    base = cqc_loss(xa, xb, za, zb, 0.5)
    torch.testing.assert_close(cqc_loss(3 * xa, xb, za, 0.1 * zb, 0.5), base)
    torch.testing.assert_close(cqc_loss(xb, xa, zb, za, 0.5), base)


def test_gradients_flow_to_all_inputs():
    g = torch.Generator().manual_seed(4)
    xs = [torch.randn(5, 8, generator=g, requires_grad=True) for _ in range(4)]
    cqc_loss(*xs, 0.5).backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in xs)


def test_needs_two_images():
    x = torch.randn(1, 4)
    with pytest.raises(ValueError, match="at least 2"):
        cqc_loss(x, x, x, x, 0.5)
