"""Encoding images with a trained model and measuring retrieval mAP on them."""
from typing import Optional

import torch
import torch.nn.functional as F

from .augment import to_float
from .model import SPQ
from .quantization import encode
from .retrieval import mean_average_precision


@torch.no_grad()
def describe(model: SPQ, images: torch.Tensor, input_size: int, batch_size: int = 256) -> torch.Tensor:
    """Descriptors x of uint8 images (N, 3, H, W), without augmentation -> (N, M*L) float32.

    Images not already input_size x input_size are resized bilinearly (antialiased).
    Runs in the model's current mode (call it in eval mode), on the model's device.
    """
    device = next(model.parameters()).device
    out = []
    for chunk in images.split(batch_size):
        x = to_float(chunk.to(device, non_blocking=True))                  # (b, 3, H, W)
        if x.shape[-2:] != (input_size, input_size):
            x = F.interpolate(x, size=(input_size, input_size), mode="bilinear",
                              antialias=True, align_corners=False)
        out.append(model(x).float())                                      # (b, M*L)
    return torch.cat(out)


def evaluate(model: SPQ, gallery_images: torch.Tensor, gallery_labels: torch.Tensor,
             query_images: torch.Tensor, query_labels: torch.Tensor, input_size: int,
             top_k: Optional[int] = 1000, batch_size: int = 256) -> float:
    """mAP@top_k of the model: gallery stored as codes, queries as descriptors (ADC).

    The model is put in eval mode for the encoding and returned to the mode it was in.
    """
    was_training = model.training
    model.eval()
    try:
        codes = encode(describe(model, gallery_images, input_size, batch_size), model.codebooks)  # (G, M)
        queries = describe(model, query_images, input_size, batch_size)                          # (Q, M*L)
        return mean_average_precision(queries, query_labels, codes, gallery_labels,
                                      model.codebooks.detach(), top_k)
    finally:
        model.train(was_training)
