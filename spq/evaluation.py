"""Encoding images with a trained model and measuring retrieval mAP on them."""
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from .augment import to_float
from .distributed import World, gather_shards, on_main, shard
from .model import SPQ
from .quantization import encode
from .retrieval import mean_average_precision, retrieval_metrics


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


@torch.no_grad()
def encode_sets(model: SPQ, gallery_images: torch.Tensor, query_images: torch.Tensor,
                input_size: int, batch_size: int = 256,
                world: World = World()) -> Tuple[torch.Tensor, torch.Tensor]:
    """Gallery codes (G, M) and query descriptors (Q, M*L), encoded in eval mode.

    With several processes (`world`), each describes its shard of the images and every
    process receives all descriptors. The model is returned to the mode it was in.
    """
    def describe_all(images):
        if not world.distributed:
            return describe(model, images, input_size, batch_size)
        part = describe(model, images[shard(len(images), world)], input_size, batch_size)
        return gather_shards(part, len(images), world)

    was_training = model.training
    model.eval()
    try:
        codes = encode(describe_all(gallery_images), model.codebooks)
        return codes, describe_all(query_images)
    finally:
        model.train(was_training)


def evaluate(model: SPQ, gallery_images: torch.Tensor, gallery_labels: torch.Tensor,
             query_images: torch.Tensor, query_labels: torch.Tensor, input_size: int,
             top_k: Optional[int] = 1000, batch_size: int = 256,
             distance: str = "euclidean", world: World = World()) -> float:
    """mAP@top_k of the model: gallery stored as codes, queries as descriptors (ADC).

    With several processes, every one encodes its shard, rank 0 alone ranks, and every
    process receives the mAP."""
    codes, queries = encode_sets(model, gallery_images, query_images, input_size, batch_size, world)
    return on_main(world, lambda: mean_average_precision(
        queries, query_labels, codes, gallery_labels, model.codebooks.detach(), top_k, distance))


def evaluate_all(model: SPQ, gallery_images: torch.Tensor, gallery_labels: torch.Tensor,
                 query_images: torch.Tensor, query_labels: torch.Tensor, input_size: int,
                 top_k: Optional[int] = 1000, batch_size: int = 256,
                 distance: str = "euclidean", world: World = World()) -> Dict[str, object]:
    """Every metric of `spq.retrieval.retrieval_metrics` for the model (sharded as `evaluate`)."""
    codes, queries = encode_sets(model, gallery_images, query_images, input_size, batch_size, world)
    return on_main(world, lambda: retrieval_metrics(
        queries, query_labels, codes, gallery_labels, model.codebooks.detach(), top_k, distance=distance))


def format_metrics(result: Dict[str, object]) -> str:
    """The human-readable report of an `--eval_only` result (see `evaluate_all`)."""
    top = result["top_n"] or "all"
    pr = result["precision_recall"]
    lines = [f"{result['checkpoint']} (epoch {result['epoch']}): {result['bits']} bits, "
             f"{result['queries']} queries, {result['gallery']} gallery codes, {result['seconds']:.1f}s",
             f"ADC distance: {result['adc_distance']}",
             f"mAP@{top} = {result['mAP']:.4f}   mAP over the whole gallery = {result['mAP_all']:.4f}",
             "precision@k: " + "  ".join(f"@{k} {v:.4f}" for k, v in result["precision_at_k"].items()),
             "precision-recall at rank cut-offs:"]
    lines += [f"  {n:>8}  precision {p:.4f}  recall {r:.4f}"
              for n, p, r in zip(pr["cutoffs"], pr["precision"], pr["recall"])]
    if result.get("queries_without_labels"):
        lines.append(f"{result['queries_without_labels']} queries carry no label at all "
                     f"(AP 0, kept in every mean)")
    if result["queries_without_relevant"]:
        lines.append(f"{result['queries_without_relevant']} queries have no relevant gallery item "
                     f"(AP 0; left out of the recall average)")
    return "\n".join(lines)
