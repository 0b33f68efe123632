"""The SPQ network: a CIFAR ResNet-18 feature extractor and a product-quantization head,
and the arithmetic its forward pass runs in."""
import contextlib

import torch
from torch import nn

from .quantization import code_bits, soft_quantize

PRECISIONS = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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
    """

    def __init__(self, num_books: int = 8, num_words: int = 16, word_len: int = 16,
                 tau_q: float = 5.0):
        super().__init__()
        self.num_books, self.num_words, self.word_len, self.tau_q = num_books, num_words, word_len, tau_q
        self.features = CifarResNet18()
        self.head = nn.Linear(512, num_books * word_len)
        nn.init.xavier_uniform_(self.head.weight)
        # Xavier-uniform over the (K, M*L) matrix, as the authors' single codebook tensor,
        # then laid out as (M, K, L): codebooks[m, k] = C[k, m*L:(m+1)*L].
        c = nn.init.xavier_uniform_(torch.empty(num_words, num_books * word_len))
        self.codebooks = nn.Parameter(c.view(num_words, num_books, word_len).transpose(0, 1).contiguous())

    @property
    def bits(self) -> int:
        """Code length in bits: M * log2(K)."""
        return code_bits(self.num_books, self.num_words)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))     # (B, M*L)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        return soft_quantize(x, self.codebooks, self.tau_q)


def build_model(options) -> SPQ:
    """The SPQ network the options describe (N_books, N_words, L_word,
    soft_quantization_scale), on the CPU."""
    return SPQ(options.N_books, options.N_words, options.L_word, options.soft_quantization_scale)


def autocast(device: torch.device, precision: str):
    """The context the CNN runs in under --precision: nothing for fp32, bf16 or fp16
    autocast otherwise (soft quantization and the loss run in fp32 after it)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])
