"""Where a run computes: the device, its memory layout, and the seeding of every random stream."""
import random
import sys

import numpy as np
import torch

from .errors import SPQError


def resolve_device(choice: str, gpu_id: str, quiet: bool = False) -> torch.device:
    """--device auto|cuda|cpu (with --gpu_id) -> a torch.device; SPQError if CUDA is asked but absent.

    `quiet` silences the warning of auto falling back to the CPU."""
    if choice == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if choice == "cuda":
            raise SPQError("--device cuda was asked but PyTorch sees no CUDA device; "
                           "use --device cpu (slow) or a machine with a GPU")
        if not quiet:
            print("warning: no CUDA device found, running on the CPU (slow); "
                  "pass --device cpu to silence this", file=sys.stderr)
        return torch.device("cpu")
    index, count = int(gpu_id), torch.cuda.device_count()
    if index >= count:
        raise SPQError(f"--gpu_id {index} does not exist: PyTorch sees {count} CUDA device(s)")
    return torch.device("cuda", index)


def memory_format(device: torch.device) -> torch.memory_format:
    """The layout of images and convolution weights: channels_last on CUDA, where
    convolutions run faster in it; contiguous on the CPU, where it gained little (about
    12% per step) and its BatchNorm kernels round differently from the contiguous ones."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (CPU and every CUDA device; kornia
    draws from torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
