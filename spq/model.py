"""The SPQ network: a CIFAR ResNet-18 feature extractor and a product-quantization head,
and the arithmetic and memory layout its forward pass runs in."""
import contextlib
import functools
from typing import Optional, Tuple

import torch
from torch import nn

from .errors import SPQError
from .quantization import code_bits, soft_quantize

PRECISIONS = ("fp32", "bf16", "fp16")
BACKBONES = ("cifar_resnet18", "resnet18", "resnet50", "vgg16")
TORCHVISION_WEIGHTS = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights", "vgg16": "VGG16_Weights"}
HEADS = ("latest", "first")
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

    `features` (default: the CIFAR ResNet-18) maps images to `feature_dim` pooled
    features. `head`: how the projection and the codebooks start, as in the authors'
    released script: "latest" (its current version: a projection with bias, weights and
    codebooks Xavier-uniform) or "first" (its first release: no bias, weights and
    codebooks Xavier-normal with gain 0.1).
    """

    def __init__(self, num_books: int = 8, num_words: int = 16, word_len: int = 16,
                 tau_q: float = 5.0, features: Optional[nn.Module] = None, feature_dim: int = 512,
                 head: str = "latest"):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
        self.num_books, self.num_words, self.word_len, self.tau_q = num_books, num_words, word_len, tau_q
        self.features = CifarResNet18() if features is None else features
        first = head == "first"
        self.head = nn.Linear(feature_dim, num_books * word_len, bias=not first)
        init = functools.partial(nn.init.xavier_normal_, gain=0.1) if first else nn.init.xavier_uniform_
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


def build_model(options) -> SPQ:
    """The SPQ network the options describe (N_books, N_words, L_word,
    soft_quantization_scale, backbone, head), on the CPU, with fresh weights (no
    --pretrained: see `load_pretrained`)."""
    backbone = getattr(options, "backbone", "cifar_resnet18")
    features, dim = (None, 512) if backbone == "cifar_resnet18" else torchvision_backbone(backbone)
    return SPQ(options.N_books, options.N_words, options.L_word, options.soft_quantization_scale,
               features, dim, getattr(options, "head", "latest"))


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


def load_pretrained(model: SPQ, backbone: str, source: str) -> None:
    """Load ImageNet weights into `model`'s torchvision backbone: `source` "imagenet" takes
    torchvision's IMAGENET1K_V1 weights through its weights API (its cache, else a
    download), any other value is the path of such a state dict. The classifier's weights
    are left out; every other weight must match (SPQError naming the source otherwise)."""
    if backbone not in TORCHVISION_WEIGHTS:
        raise SPQError(f"--pretrained needs a torchvision backbone (--backbone {', '.join(TORCHVISION_WEIGHTS)}); "
                       f"{backbone} has no ImageNet weights")
    if source == "imagenet":
        import torchvision.models as tvm
        state = getattr(tvm, TORCHVISION_WEIGHTS[backbone]).IMAGENET1K_V1.get_state_dict(progress=True)
    else:
        try:
            state = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as e:
            raise SPQError(f"--pretrained {source} cannot be read as a PyTorch state dict "
                           f"({type(e).__name__})") from None
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise SPQError(f"--pretrained {source} is not a state dict (a dictionary of tensors) of torchvision's {backbone}")
    classifier = "fc." if backbone.startswith("resnet") else "classifier.6."
    net = model.features[1]
    try:
        net.load_state_dict({k: v for k, v in state.items() if not k.startswith(classifier)}, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise SPQError(f"--pretrained {source} does not fit torchvision's {backbone} ({first})") from None


def memory_format(device: torch.device, precision: str = "fp32") -> torch.memory_format:
    """The layout of images and convolution weights: channels_last on CUDA, and on the CPU
    under bf16, where oneDNN's bf16 convolutions run faster in it (bench/train_speed.py);
    contiguous for the CPU in fp32 and fp16, where it gained little (about 12% per step)
    and its BatchNorm kernels round differently from the contiguous ones."""
    if device.type == "cuda" or precision == "bf16":
        return torch.channels_last
    return torch.contiguous_format


def autocast(device: torch.device, precision: str):
    """The context the CNN runs in under --precision: nothing for fp32, bf16 or fp16
    autocast otherwise (soft quantization and the loss run in fp32 after it)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])
