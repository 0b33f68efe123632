"""What the processor can do, for the speed benchmarks: its name and capability, and the
matrix-multiply throughput PyTorch reaches on it in fp32 and bf16 (the peak a training
step is compared with). Imported by bench/train_speed.py and bench/eval_speed.py.
"""
import time
from typing import Callable, Dict

import torch
from torch.utils.flop_counter import FlopCounterMode

from spq.run.device import auto_precision, cpu_has_bf16
from spq.run.environment import cpu_name

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}   # --precision
NATIVE = "native"      # --precision native: fp32, and bf16 where the device runs it natively


def precisions(asked, device: torch.device):
    """The precisions a bench times: `asked`, with NATIVE replaced by fp32 and, where the
    device has fast bf16 (spq.run.device.auto_precision), bf16; never an emulated bf16 unless
    asked by name."""
    out = []
    for p in asked:
        for name in (["fp32", auto_precision(device)] if p == NATIVE else [p]):
            if name not in out:
                out.append(name)
    return out


def processor(device: torch.device) -> Dict[str, object]:
    """The device's name; for the CPU also PyTorch's capability level, its bf16 and AMX
    support, and the threads PyTorch uses."""
    if device.type == "cuda":
        return {"name": torch.cuda.get_device_name(device)}
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return {"name": cpu_name(), "capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_instructions": cpu_has_bf16(), "amx": amx() if amx else None,
            "threads": torch.get_num_threads()}


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int = 2048, windows: int = 3,
                  seconds: float = 0.5) -> float:
    """GFLOP/s of repeated (n x n) @ (n x n) products in `dtype`: the best of `windows`
    windows of about `seconds` each, after three warm-up products (the best PyTorch reaches
    here; a shared machine's neighbours only lower it)."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(windows):
        done, t0 = 0, time.perf_counter()
        while True:
            a @ b
            done += 1
            if device.type == "cuda":
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                break
        best = max(best, 2 * n ** 3 * done / elapsed / 1e9)
    return round(best, 1)


def count_flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of one call of fn (matrix products and convolutions, forward
    and backward, as torch.utils.flop_counter counts them: 2 per multiply-add)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()
