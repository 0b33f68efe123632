"""A trained model from its checkpoint: the network its stored options describe, on a
device, in eval mode, with the checkpoint's weights (`load_model`); what python -m
spq.index, python -m spq.export and the Python API encode with."""
from typing import Dict, Optional, Tuple

import torch

from ..errors import SPQError
from ..method.network import SPQ
from ..options.values import network_of, stored_options
from ..store.checkpoint import load_checkpoint, load_state
from .device import memory_format


def load_model(checkpoint, device: torch.device, precision: Optional[str] = None) -> Tuple[SPQ, Dict]:
    """The checkpoint's network on `device` in eval mode, in the memory layout of `precision`
    (default: the checkpoint's --precision, `trained_precision`), and the checkpoint."""
    ckpt = load_checkpoint(checkpoint)
    check_finite(ckpt["model"], checkpoint)
    layout = memory_format(device, precision or trained_precision(ckpt))
    model = network_of(stored_options(ckpt["args"]).method).to(device, memory_format=layout)
    load_state(model, ckpt["model"], "model", checkpoint)
    return model.eval(), ckpt


def trained_precision(ckpt: Dict) -> str:
    """The --precision a checkpoint's model was trained and evaluated with: images are
    encoded under it (fp32 for checkpoints older than the option)."""
    return ckpt["args"].get("precision", "fp32")


def check_finite(state: Dict[str, torch.Tensor], checkpoint) -> None:
    """SPQError naming the first weight of a model state that is NaN or infinite."""
    bad = next((k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if bad is not None:
        raise SPQError(f"{checkpoint}: its model weight {bad} is not finite (NaN or inf): the "
                       f"training diverged or the file is damaged; use another checkpoint")
