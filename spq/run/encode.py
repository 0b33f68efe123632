"""Images to descriptors and codes with a model: the encoding of the evaluation, of an
index build, of an export and of the Python API (`describe`), and a run's gallery codes
and query descriptors, sharded under torchrun (`encode_sets`)."""
from typing import Tuple

import torch
import torch.nn.functional as F

from ..method.network import SPQ
from ..method.quantization import encode, reconstruct
from ..method.step import autocast
from .device import memory_format
from .distributed import World, gather_shards, shard, share_buffers


@torch.no_grad()
def encode_sets(model: SPQ, gallery_images: torch.Tensor, query_images: torch.Tensor,
                input_size: int, batch_size: int = 256, world: World = World(),
                sdc: bool = False, precision: str = "fp32") -> Tuple[torch.Tensor, torch.Tensor]:
    """Gallery codes (G, M) and query descriptors (Q, M*L), encoded in eval mode under
    `precision` (`describe`); with `sdc`, the queries' reconstructions from their own codes.

    With several processes (`world`), each describes its shard of the images with rank
    0's BatchNorm statistics, and every process receives all descriptors. The model is
    returned to the mode it was in.
    """
    def describe_all(images):
        if not world.distributed:
            return describe(model, images, input_size, batch_size, precision)
        part = describe(model, images[shard(len(images), world)], input_size, batch_size, precision)
        return gather_shards(part, len(images), world)

    if world.distributed:
        share_buffers(model, world)
    was_training = model.training
    model.eval()
    try:
        codes = encode(describe_all(gallery_images), model.codebooks)
        queries = describe_all(query_images)
        if sdc:
            queries = reconstruct(encode(queries, model.codebooks), model.codebooks.detach().float())
        return codes, queries
    finally:
        model.train(was_training)


@torch.no_grad()
def describe(model: SPQ, images: torch.Tensor, input_size: int, batch_size: int = 256,
             precision: str = "fp32") -> torch.Tensor:
    """Descriptors x of uint8 images (N, 3, H, W), without augmentation -> (N, M*L) float32.

    Images not already input_size x input_size are resized bilinearly (antialiased). The
    CNN runs under `precision` autocast (--precision, as in training) in that precision's
    memory layout (`spq.run.device.memory_format`), in the model's current mode (call it in
    eval mode), on the model's device.
    """
    device = model.codebooks.device
    layout = memory_format(device, precision)
    out = []
    for chunk in images.split(batch_size):
        x = chunk.to(device, non_blocking=True).float().div_(255)        # (b, 3, H, W) in [0, 1]
        if x.shape[-2:] != (input_size, input_size):
            x = F.interpolate(x, size=(input_size, input_size), mode="bilinear",
                              antialias=True, align_corners=False)
        with autocast(device, precision):
            out.append(model(x.contiguous(memory_format=layout)).float())    # (b, M*L)
    return torch.cat(out)
