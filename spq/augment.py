"""The two-view augmentation of SPQ, applied batch-wise on the device with kornia."""
import kornia.augmentation as K
import torch
from torch import nn


def blur_kernel_size(input_size: int) -> int:
    """Gaussian-blur kernel: int(0.1 * input_size) made odd, at least 3 (3 at 32 px)."""
    k = int(0.1 * input_size)
    k += 1 - k % 2
    return max(k, 3)


def make_augmentation(input_size: int) -> nn.Module:
    """SimCLR-style view generator: (B, 3, H, W) floats in [0, 1] -> (B, 3, S, S), S = input_size.

    RandomResizedCrop(S, scale (0.08, 1), ratio (3/4, 4/3)), horizontal flip (p 0.5),
    colour jitter (0.4, 0.4, 0.4, 0.1; p 0.8), grayscale (p 0.2), Gaussian blur
    (kernel `blur_kernel_size(S)`, sigma in (0.1, 2.0); p 0.5). Every image of the
    batch draws its own parameters; no mean/std normalisation.
    """
    k = blur_kernel_size(input_size)
    return nn.Sequential(
        K.RandomResizedCrop((input_size, input_size)),
        K.RandomHorizontalFlip(p=0.5),
        K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8),
        K.RandomGrayscale(p=0.2),
        K.RandomGaussianBlur((k, k), (0.1, 2.0), p=0.5),
    )


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float32 in [0, 1]."""
    return images.float().div_(255)
