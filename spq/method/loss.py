"""Cross quantized contrastive (CQC) loss of SPQ."""
import torch
import torch.nn.functional as F


def _contrast(anchors: torch.Tensor, partners: torch.Tensor, temperature: float) -> torch.Tensor:
    """Summed NT-Xent over the 2N rows of cat(anchors, partners).

    Row i's positive is row (i + N) mod 2N, its negatives the other 2N - 2 rows;
    similarities are cosine similarities divided by `temperature`.
    anchors, partners: (N, D) -> scalar (sum over the 2N rows, not the mean).
    """
    n = anchors.shape[0]
    v = F.normalize(torch.cat([anchors, partners]).float(), dim=1, eps=1e-8)   # (2N, D)
    logits = v @ v.t() / temperature                                           # (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=v.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    target = torch.arange(2 * n, device=v.device).roll(n)                      # i <-> i+N
    return F.cross_entropy(logits, target, reduction="sum")


def cqc_loss(xa: torch.Tensor, xb: torch.Tensor, za: torch.Tensor, zb: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """Cross quantized contrastive loss.

    Each view's descriptor is contrasted with the *other* view's soft-quantized
    descriptor: NT-Xent over cat(xa, zb) plus NT-Xent over cat(xb, za), both summed
    over their 2N rows, divided by 2N (the scale of the authors' code).

    xa, xb: (N, D) descriptors of views a and b; za, zb: (N, D) their soft
    quantizations; temperature: t_cqc (0.5 in SPQ) -> scalar tensor.
    """
    n = xa.shape[0]
    if n < 2:
        raise ValueError("the CQC loss needs at least 2 images per batch (it has no negatives otherwise)")
    return (_contrast(xa, zb, temperature) + _contrast(xb, za, temperature)) / (2 * n)
