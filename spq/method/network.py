"""The SPQ network: a feature extractor (the CIFAR ResNet-18 of the authors' code, or one of
torchvision's ImageNet networks) and the product-quantization head: a linear projection
to the descriptor and the M codebooks."""
import functools
from typing import Optional, Tuple

import torch
from torch import nn

from .quantization import code_bits, soft_quantize

BACKBONES = ("cifar_resnet18", "resnet18", "resnet50", "vgg16")
# How the projection and the codebooks start, in the authors' three releases of their script:
# (the projection has a bias, the initialisation of its weight and of the codebooks).
HEADS = {
    "latest": (True, nn.init.xavier_uniform_),                                # 2021-12-12, a0c7414
    "second": (False, functools.partial(nn.init.xavier_normal_, gain=1.0)),   # 2021-12-06, a3fd439
    "first": (False, functools.partial(nn.init.xavier_normal_, gain=0.1)),    # 2021-09-22, 4e487f1
}


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual shortcut (1x1 projection when the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarResNet18(nn.Module):
    """ResNet-18 for small images: 3x3 stride-1 stem, no max-pool, 512-d output, PyTorch's
    default initialisation (convolution weights uniform in +-1/sqrt(fan_in)).

    images: (B, 3, H, W) floats in [0, 1] -> features: (B, 512) after a 512->512
    linear layer and ReLU.
    """

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(64), nn.ReLU(inplace=True))
        stages, in_ch = [], 64
        for out_ch, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            stages += [BasicBlock(in_ch, out_ch, stride), BasicBlock(out_ch, out_ch, 1)]
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(inplace=True))
        # every layer keeps PyTorch's default initialisation, as the authors' network did

    def forward(self, images):
        h = self.stages(self.stem(images))          # (B, 512, H/8, W/8)
        h = torch.flatten(h.mean(dim=(2, 3)), 1)    # (B, 512)
        return self.fc(h)                           # (B, 512)


class SPQ(nn.Module):
    """Feature extractor, linear projection to M*L, and M codebooks of K codewords.

    `forward(images)` gives the real-valued descriptor x: (B, M*L);
    `quantize(x)` its soft quantization z: (B, M*L).

    `tau_q` (the authors' name) is the scale of the squared distances in the soft
    quantization's softmax: 5.0 by default. The authors' README says the paper's 0.2 should
    be read as a divisor: 1 / 0.2 = 5.0.

    `features` (default: the CIFAR ResNet-18) maps images to `feature_dim` pooled
    features. `head`: how the projection and the codebooks start, as in the authors'
    released script (HEADS): "latest" (its current version: a projection with bias, weights
    and codebooks Xavier-uniform), "second" (no bias, Xavier-normal with gain 1) or "first"
    (its first release: no bias, Xavier-normal with gain 0.1).
    """

    def __init__(self, num_books: int = 8, num_words: int = 16, word_len: int = 16,
                 tau_q: float = 5.0, features: Optional[nn.Module] = None, feature_dim: int = 512,
                 head: str = "latest"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
        self.num_books, self.num_words, self.word_len, self.tau_q = num_books, num_words, word_len, tau_q
        self.features = CifarResNet18() if features is None else features
        bias, init = HEADS[head]
        self.head = nn.Linear(feature_dim, num_books * word_len, bias=bias)
        init(self.head.weight)
        # initialised over the (K, M*L) matrix, as the authors' single codebook tensor,
        # then laid out as (M, K, L): codebooks[m, k] = C[k, m*L:(m+1)*L].
        c = init(torch.empty(num_words, num_books * word_len))
        self.codebooks = nn.Parameter(c.view(num_words, num_books, word_len).transpose(0, 1).contiguous())

    @property
    def bits(self) -> int:
        """Code length in bits: M * log2(K)."""
        return code_bits(self.num_books, self.num_words)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))     # (B, M*L)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        return soft_quantize(x, self.codebooks, self.tau_q)


class Normalize(nn.Module):
    """Images in [0, 1] standardised by ImageNet's channel means and deviations, as
    torchvision's ImageNet weights expect."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)

    def forward(self, images):
        return (images - self.mean) / self.std


def torchvision_backbone(name: str) -> Tuple[nn.Module, int]:
    """(features, their width) of one of torchvision's ImageNet networks without its
    classifier: ResNet-18 and -50 up to their global average pooling (512, 2048), VGG-16 up
    to fc7 (4096), each behind `Normalize`; torchvision's own initialisation."""
    import torchvision.models as tvm
    if name in ("resnet18", "resnet50"):
        net = getattr(tvm, name)(weights=None)
        dim, net.fc = net.fc.in_features, nn.Identity()
    elif name == "vgg16":
        net = tvm.vgg16(weights=None)
        dim, net.classifier = net.classifier[-1].in_features, net.classifier[:-1]
    else:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return nn.Sequential(Normalize(), net), dim


def build_network(num_books: int, num_words: int, word_len: int, tau_q: float,
                  backbone: str = "cifar_resnet18", head: str = "latest") -> SPQ:
    """The SPQ network with fresh weights, on the CPU: `backbone` one of BACKBONES (the
    CIFAR ResNet-18, or a torchvision network from its own initialisation), `head` one of
    HEADS."""
    features, dim = (None, 512) if backbone == "cifar_resnet18" else torchvision_backbone(backbone)
    return SPQ(num_books, num_words, word_len, tau_q, features, dim, head)
