"""A trained model from its checkpoint: the network its stored options describe, on a
device, in eval mode, with the checkpoint's weights (`load_model`); what python -m
spq.index, python -m spq.export and the Python API encode with."""
from typing import Dict, Optional, Tuple

import torch

from ..errors import SPQError
from ..method.network import SPQ
from ..options.values import network_of, stored_options
from ..store.checkpoint import load_checkpoint, load_state
from .device import EVAL_BATCH, check_input_size, check_memory, encoding_precision, memory_format


def load_model(checkpoint, device: torch.device, precision: Optional[str] = None,
               remedy: str = "pass --precision fp32 (or auto)") -> Tuple[SPQ, Dict, str]:
    """(the checkpoint's network on `device` in eval mode, the checkpoint, the precision it
    encodes in): `precision` as asked (auto: the device's, `spq.run.device.auto_precision`),
    or None for the checkpoint's (`trained_precision`); bf16 refused where the CPU would
    emulate it (`encoding_precision`, with `remedy`). The network is in that precision's
    memory layout. Before anything is built: the memory an encoding needs at the
    checkpoint's input size, and that the network takes images of that size."""
    ckpt = load_checkpoint(checkpoint)
    check_finite(ckpt["model"], checkpoint)
    precision = encoding_precision(precision, trained_precision(ckpt), device, remedy)
    stored = stored_options(ckpt["args"])
    check_memory(stored.method, stored.data.input_size, EVAL_BATCH, device, training=False)
    check_input_size(stored.method, stored.data.input_size)
    layout = memory_format(device, precision)
    model = network_of(stored.method).to(device, memory_format=layout)
    load_state(model, ckpt["model"], "model", checkpoint)
    return model.eval(), ckpt, precision


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
