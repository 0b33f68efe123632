"""Where a run computes: the device, whether it runs bf16 natively (and so which
precision --precision auto takes), the memory layout of images and weights, and a lower
bound of the memory a run needs there."""
import os
import platform
import sys
from typing import Optional

import torch

from ..errors import SPQError
from ..options.values import MethodOptions, network_of
from .environment import cpu_name


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


def cpu_has_bf16() -> Optional[bool]:
    """Whether this CPU has bf16 instructions (AVX-512 BF16 or AMX) that PyTorch's bf16
    kernels use; None where PyTorch cannot tell (processors other than x86-64)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if not any(checks):
        return None
    return any(check() for check in checks if check is not None)


def fast_bf16(device: torch.device) -> bool:
    """Whether `device` runs bf16 natively, faster than fp32: a CUDA GPU of compute
    capability 8.0 or later (Ampere on), or a CPU with bf16 instructions (`cpu_has_bf16`;
    False where PyTorch cannot tell)."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device)[0] >= 8
    return cpu_has_bf16() is True


def auto_precision(device: torch.device) -> str:
    """What --precision auto runs: bf16 where the device has fast bf16 (`fast_bf16`), else fp32."""
    return "bf16" if fast_bf16(device) else "fp32"


def check_precision(device: torch.device, precision: str) -> None:
    """SPQError for --precision bf16 on a CPU without bf16 instructions, where PyTorch would
    emulate it more slowly than fp32 runs."""
    if precision == "bf16" and device.type == "cpu" and cpu_has_bf16() is False:
        raise SPQError(f"--precision bf16: this CPU ({cpu_name()}) has no bf16 instructions "
                       f"(AVX-512 BF16 or AMX), so PyTorch would emulate them, slower than "
                       f"fp32; use --precision fp32")


def memory_format(device: torch.device, precision: str = "fp32") -> torch.memory_format:
    """The layout of images and convolution weights: channels_last on CUDA, and on the CPU
    under bf16, where oneDNN's bf16 convolutions run faster in it (bench/train_speed.py);
    contiguous for the CPU in fp32 and fp16, where it gained little (about 12% per step)
    and its BatchNorm kernels round differently from the contiguous ones."""
    if device.type == "cuda" or precision == "bf16":
        return torch.channels_last
    return torch.contiguous_format


EVAL_BATCH = 256      # images encoded at once (spq.run.encode.describe)


def memory_needed(method: MethodOptions, input_size: int, batch_size: int, training: bool) -> int:
    """A lower bound, in bytes, of what a run holds at once with the network of `method`:
    the parameters (with their gradients and Adam's two moments when training), plus one
    batch's input and the output of the first convolution layer (with both views and
    BatchNorm's and ReLU's copies kept for the backward pass when training). Sizes under it
    cannot run; the real need is larger."""
    with torch.device("meta"):
        params = sum(p.numel() for p in network_of(method).parameters())
    side = input_size
    stem = side if method.backbone == "cifar_resnet18" else side // 2
    if training:
        images = 2 * batch_size
        per_image = 3 * side * side + 3 * 64 * stem * stem
        return 4 * (4 * params + images * per_image)
    return 4 * (params + EVAL_BATCH * (3 * side * side + 64 * stem * stem))


def memory_of(device: torch.device) -> int:
    """Bytes of memory of the device: the GPU's, or the machine's."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2 ** 62                                   # unknown: no refusal


def check_memory(method: MethodOptions, input_size: int, batch_size: int, device: torch.device,
                 training: bool) -> None:
    """SPQError, saying how much is needed, when a run needs more memory than the device has
    (`memory_needed`)."""
    need, have = memory_needed(method, input_size, batch_size, training), memory_of(device)
    if need > have:
        raise SPQError(f"these options need at least {need / 2 ** 30:.1f} GiB of memory on {device} "
                       f"(the model{' and its training state' if training else ''}, and one batch of "
                       f"{2 * batch_size if training else EVAL_BATCH} images of {input_size} px), "
                       f"and it has {have / 2 ** 30:.1f} GiB: lower --input_size, --batch_size or the "
                       f"code size (--N_books, --L_word)")
