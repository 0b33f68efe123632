"""What a run's figures were measured on, as its checkpoints record it: the hardware,
PyTorch's version and this code's commit."""
import platform
import subprocess
from pathlib import Path
from typing import Dict

import torch

from ..errors import SPQError
from ..files.read import read_lines


def environment(device: torch.device) -> Dict[str, str]:
    """What a run's figures were measured on: the device (the GPU's name, or the CPU's with
    its core count), PyTorch's version, and this code's git commit ("+modified" when the
    checkout has changes; "unknown" outside a git checkout)."""
    if device.type == "cuda":
        hardware = torch.cuda.get_device_name(device)
    else:
        hardware = f"{cpu_name()}, {torch.get_num_threads()} threads"
    return {"hardware": hardware, "torch": str(torch.__version__), "commit": commit()}


def cpu_name() -> str:
    """The processor's model name (Linux /proc/cpuinfo; elsewhere what platform says)."""
    try:
        for line in read_lines("/proc/cpuinfo", "system", errors="replace"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except SPQError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def commit() -> str:
    """The git commit of the checkout this package runs from, or "unknown"."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        if head.returncode:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("+modified" if dirty else "")
