"""The two-view augmentation of SPQ, applied batch-wise on the device.

Two pipelines, both per image with independently drawn parameters and no mean/std
normalisation (`make_augmentation`):

- `authors` (default): what the authors' released script does on kornia 0.5.10, the
  version it pins. kornia 0.5.10's RandomResizedCrop kept a sampled crop only when its
  height and width were strictly smaller than the image side (`StrictResizedCrop`); its
  ColorJitter is today's `kornia.augmentation.ColorJiggle` (additive brightness, plain
  multiplicative contrast, HSV saturation, hue shift); its RandomGaussianBlur took the
  sigma pair (0.1, 2.0) as fixed (vertical, horizontal) sigmas, a horizontal-only blur
  (`FixedAnisotropicBlur`).
- `simclr`: what the authors meant (SimCLR's pipeline) as kornia >= 0.7 does it today:
  RandomResizedCrop, ColorJitter with torchvision's formulas, and a Gaussian blur whose
  sigma is drawn per image from [0.1, 2.0] for both axes.
"""
import math
from typing import Dict, Tuple

import kornia.augmentation as K
import torch
import torch.nn.functional as F
from kornia.filters import filter2d
from torch import nn

AUGMENTATIONS = ("authors", "simclr")


def blur_kernel_size(input_size: int) -> int:
    """Gaussian-blur kernel: int(0.1 * input_size) made odd, at least 3 (3 at 32 px)."""
    k = int(0.1 * input_size)
    k += 1 - k % 2
    return max(k, 3)


def gaussian_1d(size: int, sigma: float) -> torch.Tensor:
    """Normalised Gaussian weights at offsets -(size // 2)..size // 2, in float32 as
    kornia 0.5.10 computes them: (size,)."""
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-x.pow(2.0) / (2 * sigma ** 2))
    return g / g.sum()


class StrictResizedCrop(nn.Module):
    """kornia 0.5.10's RandomResizedCrop(size): (B, C, H, W) -> (B, C, S, S).

    Per image, up to 10 (area, aspect ratio) draws, area uniform in scale x H x W and the
    log of the ratio uniform; a draw gives a crop of height round(sqrt(area x ratio)) and
    width round(sqrt(area / ratio)), kept only when both are strictly smaller than the
    image side (and positive). The first kept draw wins; when none is kept, a crop of the
    full width and round(W x 3/4) rows. Its corner is uniform over the valid positions.
    The crop is resized to S x S by bilinear interpolation with aligned corners, as
    kornia 0.5.10 resized each crop (here as two batched matrix products).
    """

    def __init__(self, size: int, scale: Tuple[float, float] = (0.08, 1.0),
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3), trials: int = 10):
        super().__init__()
        self.size, self.scale, self.ratio, self.trials = size, scale, ratio, trials

    def forward_parameters(self, shape: torch.Size) -> Dict[str, torch.Tensor]:
        """Crop boxes for a batch of `shape` (B, C, H, W), drawn from torch's CPU generator:
        top, left, height, width, each (B,) int64."""
        b, (h_img, w_img) = shape[0], shape[-2:]
        area = torch.empty(b, self.trials).uniform_(self.scale[0] * h_img * w_img,
                                                    self.scale[1] * h_img * w_img)
        log_r = torch.empty(b, self.trials).uniform_(math.log(self.ratio[0]), math.log(self.ratio[1]))
        r = torch.exp(log_r)
        height = torch.sqrt(area * r).round()                          # (B, trials)
        width = torch.sqrt(area / r).round()
        ok = (height > 0) & (height < h_img) & (width > 0) & (width < w_img)
        first = (ok.int().cumsum(1) == 1) & ok                         # the first kept draw
        found, pick = first.max(1)                                     # (B,)
        height = height.gather(1, pick[:, None])[:, 0]
        width = width.gather(1, pick[:, None])[:, 0]
        fallback = self._fallback(h_img, w_img)
        height = torch.where(found, height, torch.tensor(float(fallback[0])))
        width = torch.where(found, width, torch.tensor(float(fallback[1])))
        top = (torch.rand(b) * (h_img - height + 1)).floor()
        left = (torch.rand(b) * (w_img - width + 1)).floor()
        return {"top": top.long(), "left": left.long(), "height": height.long(), "width": width.long()}

    def _fallback(self, h_img: int, w_img: int) -> Tuple[int, int]:
        """The crop kornia 0.5.10 took when no draw was kept: (height, width)."""
        in_ratio, low = h_img / w_img, min(self.ratio)
        if in_ratio < low:
            return h_img, int(round(h_img / low))
        if in_ratio > low:
            return int(round(w_img * low)), w_img
        return h_img, w_img

    def _weights(self, start: torch.Tensor, length: torch.Tensor, side: int) -> torch.Tensor:
        """Bilinear, aligned-corner resampling of rows start..start+length-1 to `self.size`
        rows, as a matrix: (B, S, side)."""
        s = self.size
        step = (length - 1).float() / (s - 1) if s > 1 else torch.zeros_like(length, dtype=torch.float32)
        src = step[:, None] * torch.arange(s, dtype=torch.float32, device=step.device)  # (B, S)
        i0 = src.floor().long()
        frac = src - i0
        i1 = torch.minimum(i0 + 1, (length - 1)[:, None])
        w = F.one_hot(start[:, None] + i0, side) * (1 - frac)[..., None]
        return w + F.one_hot(start[:, None] + i1, side) * frac[..., None]

    def apply(self, images: torch.Tensor, params: Dict[str, torch.Tensor]) -> torch.Tensor:
        p = {k: v.to(images.device) for k, v in params.items()}
        rows = self._weights(p["top"], p["height"], images.shape[-2]).to(images.dtype)   # (B, S, H)
        cols = self._weights(p["left"], p["width"], images.shape[-1]).to(images.dtype)   # (B, S, W)
        out = torch.matmul(rows[:, None], images)                                        # (B, C, S, W)
        return torch.matmul(out, cols.transpose(1, 2)[:, None])                          # (B, C, S, S)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._params = self.forward_parameters(images.shape)
        return self.apply(images, self._params)


class FixedAnisotropicBlur(nn.Module):
    """kornia 0.5.10's RandomGaussianBlur((k, k), (0.1, 2.0), p): each image, with
    probability p, is filtered with the fixed kernel outer(g(k, 0.1), g(k, 2.0)) (rows
    by the first sigma, columns by the second), reflect border: (B, C, H, W) -> same.

    At k = 3 the vertical weights are (2e-22, 1, 2e-22), no blur, and the horizontal
    ones about (0.319, 0.362, 0.319)."""

    def __init__(self, kernel_size: int, sigma: Tuple[float, float] = (0.1, 2.0), p: float = 0.5):
        super().__init__()
        self.p = p
        kernel = torch.outer(gaussian_1d(kernel_size, sigma[0]), gaussian_1d(kernel_size, sigma[1]))
        self.register_buffer("kernel", kernel[None], persistent=False)     # (1, k, k)

    def forward_parameters(self, shape: torch.Size) -> Dict[str, torch.Tensor]:
        """Which images are blurred, drawn from torch's CPU generator: batch_prob (B,) bool."""
        return {"batch_prob": torch.rand(shape[0]) < self.p}

    def apply(self, images: torch.Tensor, params: Dict[str, torch.Tensor]) -> torch.Tensor:
        chosen = params["batch_prob"].to(images.device)                  # (B,) bool
        out = images.clone()
        out[chosen] = filter2d(images[chosen], self.kernel.to(images.dtype), border_type="reflect")
        return out

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self._params = self.forward_parameters(images.shape)
        return self.apply(images, self._params)


def make_augmentation(input_size: int, kind: str = "authors") -> nn.Module:
    """View generator: (B, 3, H, W) floats in [0, 1] -> (B, 3, S, S), S = input_size.

    Both pipelines: resized crop to S (scale 0.08..1, ratio 3/4..4/3), horizontal flip
    (p 0.5), colour jitter (0.4, 0.4, 0.4, 0.1; p 0.8), grayscale (p 0.2), Gaussian blur
    (kernel `blur_kernel_size(S)`, p 0.5); see the module docstring for how `authors`
    and `simclr` differ."""
    k = blur_kernel_size(input_size)
    if kind == "authors":
        return nn.Sequential(
            StrictResizedCrop(input_size),
            K.RandomHorizontalFlip(p=0.5),
            K.ColorJiggle(0.4, 0.4, 0.4, 0.1, p=0.8),
            K.RandomGrayscale(p=0.2),
            FixedAnisotropicBlur(k, (0.1, 2.0), p=0.5),
        )
    if kind == "simclr":
        return nn.Sequential(
            K.RandomResizedCrop((input_size, input_size)),
            K.RandomHorizontalFlip(p=0.5),
            K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
            K.RandomGrayscale(p=0.2),
            K.RandomGaussianBlur((k, k), (0.1, 2.0), p=0.5),
        )
    raise ValueError(f"unknown augmentation {kind!r}; choose one of {', '.join(AUGMENTATIONS)}")


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 in [0, 1]."""
    return images.float().div_(255)
