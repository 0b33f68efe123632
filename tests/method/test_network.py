"""The SPQ network: architecture, initialisation, gradients, shapes."""
import math

import pytest
import torch
from torch import nn

from spq.method.loss import cqc_loss
from spq.method.network import SPQ


def test_cifar_resnet18_layout():
    model = SPQ()
    stem = model.features.stem[0]
    assert (stem.kernel_size, stem.stride, stem.out_channels) == ((3, 3), (1, 1), 64)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    blocks = list(model.features.stages)
    assert len(blocks) == 8
    assert [b.conv2.out_channels for b in blocks] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [b.conv1.stride[0] for b in blocks] == [1, 1, 2, 1, 2, 1, 2, 1]
    fc = model.features.fc[0]
    assert (fc.in_features, fc.out_features) == (512, 512)
    assert (model.head.in_features, model.head.out_features) == (512, 128)
    # 11.2 M parameters in the ResNet-18 trunk, plus the two linear layers and the codebooks
    trunk = sum(p.numel() for n, p in model.features.named_parameters() if not n.startswith("fc"))
    assert 11.1e6 < trunk < 11.2e6


def test_cnn_keeps_pytorch_default_init():
    """Every convolution as PyTorch initialises it (kaiming_uniform_ with a = sqrt(5)):
    uniform in +-1/sqrt(fan_in); the authors' network applied no init of its own."""
    torch.manual_seed(0)
    model = SPQ()
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 20                       # stem, 16 in the blocks, 3 shortcuts
    for conv in convs:
        w = conv.weight.detach()
        bound = 1 / math.sqrt(w[0].numel())       # fan_in = in_channels x kh x kw
        assert w.abs().max() <= bound and w.abs().max() > 0.95 * bound
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
        assert abs(w.mean().item()) < 0.05 * bound
    for bn in (m for m in model.features.modules() if isinstance(m, nn.BatchNorm2d)):
        assert (bn.weight == 1).all() and (bn.bias == 0).all()


def test_codebook_init_is_xavier_over_the_authors_matrix():
    torch.manual_seed(0)
    model = SPQ(8, 16, 16)
    assert model.codebooks.shape == (8, 16, 16)
    bound = math.sqrt(6 / (16 + 8 * 16))     # xavier-uniform of a (K, M*L) matrix
    c = model.codebooks.detach()
    assert c.abs().max() <= bound and c.abs().max() > 0.9 * bound
    assert c.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


@pytest.mark.parametrize("m_books,k_words,length,bits", [(8, 16, 16, 32), (4, 256, 8, 32), (16, 16, 8, 64), (2, 2, 4, 2)])
def test_shapes_and_bits(m_books, k_words, length, bits):
    torch.manual_seed(1)
    model = SPQ(m_books, k_words, length)
    x = model(torch.rand(3, 3, 32, 32))
    assert x.shape == (3, m_books * length)
    assert model.quantize(x).shape == x.shape
    assert model.bits == bits


def test_gradients_reach_backbone_head_and_codebooks():
    torch.manual_seed(2)
    model = SPQ(4, 8, 8)
    va, vb = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    xa, xb = model(va), model(vb)
    cqc_loss(xa, xb, model.quantize(xa), model.quantize(xb), 0.5).backward()
    for name, p in [("stem", model.features.stem[0].weight), ("last block", model.features.stages[-1].conv2.weight),
                    ("fc", model.features.fc[0].weight), ("head", model.head.weight),
                    ("codebooks", model.codebooks)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
