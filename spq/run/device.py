"""Where a run computes: the device, whether it runs bf16 natively (and so which
precision --precision auto takes), the memory layout of images and weights, and a lower
bound of the memory a run needs there."""
import os
import platform
import sys
from typing import Optional

import torch

from ..errors import SPQError
from ..options.declared import AUTO
from ..options.values import MAX_INPUT_SIZE, MethodOptions, network_of
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


def check_precision(device: torch.device, precision: str, what: str = "--precision bf16",
                    remedy: str = "use --precision fp32 (or auto)") -> None:
    """SPQError for bf16 on a CPU without bf16 instructions, where PyTorch would emulate it
    more slowly than fp32 runs: `what` asked for it, `remedy` says what to do instead."""
    if precision == "bf16" and device.type == "cpu" and cpu_has_bf16() is False:
        raise SPQError(f"{what}: this CPU ({cpu_name()}) has no bf16 instructions "
                       f"(AVX-512 BF16 or AMX), so PyTorch would emulate them, slower than "
                       f"fp32; {remedy}")


def encoding_precision(asked: Optional[str], stored: str, device: torch.device,
                       remedy: str = "pass --precision fp32 (or auto)") -> str:
    """The arithmetic a trained model encodes in: `asked` (auto: `auto_precision`), or None
    for the checkpoint's `stored` one; bf16 refused where the CPU would emulate it
    (`check_precision`), the same rule for --eval_only, spq.index, spq.export and spq.load."""
    precision = stored if asked is None else auto_precision(device) if asked == AUTO else asked
    what = f"the checkpoint's --precision {precision}" if asked is None else \
        f"--precision {asked}" + (f" (chose {precision})" if asked == AUTO else "")
    check_precision(device, precision, what, remedy + " to encode in fp32 here (its codes may differ "
                    "slightly from a bf16 encoding)" if asked is None else remedy)
    return precision


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


def check_input_size(method: MethodOptions, input_size: int) -> None:
    """SPQError when the network of `method` cannot take images of `input_size` pixels (VGG-16's
    five poolings need 32): a dry run of its forward pass on the meta device, which computes
    shapes only, saying the smallest size it takes."""
    def fits(size: int) -> bool:
        with torch.device("meta"):
            try:
                network_of(method)(torch.empty(2, 3, size, size))
            except RuntimeError:
                return False
        return True

    if fits(input_size):
        return
    low, high = input_size, MAX_INPUT_SIZE                 # low does not fit; find the smallest that does
    if not fits(high):
        raise SPQError(f"--backbone {method.backbone} cannot take images of any --input_size")
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    raise SPQError(f"--backbone {method.backbone} cannot take --input_size {input_size} images (its "
                   f"feature maps shrink to nothing); it needs at least --input_size {high}")


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
