"""Asymmetric (ADC) retrieval over product-quantization codes, and mAP.

Queries keep their real-valued descriptors; gallery items are stored as codes.
The distance between query q and item g is the authors' asymmetric distance:
sum over books m of the Euclidean (not squared) distance between q's sub-vector m
and the codeword that g's code selects in book m. Rankings break ties by gallery
index (lower first), so equal codes give a well-defined, reproducible order.
"""
from typing import Optional

import torch

from .quantization import exact_squared_distances

# Query rows handled at once: at most this many (query, gallery) distances in memory
# per chunk (2**25 floats = 128 MiB).
MAX_DISTANCES_PER_CHUNK = 2 ** 25


def adc_tables(queries: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Per query, the distance of each sub-vector to each codeword of its book.

    queries: (Q, M*L), codebooks: (M, K, L) -> (Q, M, K), Euclidean (not squared).
    """
    return exact_squared_distances(queries, codebooks).sqrt_()


def lookup_distances(tables: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """ADC distances from lookup tables: sum over books of tables[q, m, codes[g, m]].

    tables: (Q, M, K), codes: (G, M) integer -> (Q, G). Books are added in order 0..M-1.
    """
    codes = codes.long()
    dist = tables.new_zeros(tables.shape[0], codes.shape[0])            # (Q, G)
    for m in range(tables.shape[1]):
        dist += tables[:, m, codes[:, m]]                               # (Q, G)
    return dist


def adc_distances(queries: torch.Tensor, codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Asymmetric distances between real-valued queries and coded gallery items.

    queries: (Q, M*L), codes: (G, M) integer, codebooks: (M, K, L) -> (Q, G).
    """
    return lookup_distances(adc_tables(queries, codebooks), codes.to(queries.device))


def _first_k_by_index(dist: torch.Tensor, k: int) -> torch.Tensor:
    """The k smallest entries of each row, ties at the k-th value resolved by lower index.

    Scans whole rows with masks; `ranked_top_k` calls it only for rows whose k-th and
    (k+1)-th smallest values are equal. dist: (B, G) -> (B, k) indices in index order.
    """
    b = dist.shape[0]
    kth = dist.kthvalue(k, dim=1, keepdim=True).values                 # (B, 1) k-th smallest
    below = dist < kth
    tied = dist == kth
    room = k - below.sum(1, keepdim=True)                               # (B, 1) tied slots left
    keep = below | (tied & (tied.cumsum(1) <= room))                    # exactly k per row
    return keep.nonzero()[:, 1].view(b, k)


def ranked_top_k(dist: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of the k smallest entries of each row, by (distance, index).

    Equal distances keep gallery-index order, exactly as a stable sort of the whole
    row would, without sorting the whole row. dist: (B, G) -> (B, min(k, G)).
    """
    g = dist.shape[1]
    if k >= g:
        return torch.sort(dist, dim=1, stable=True).indices
    vals, idx = dist.topk(k + 1, dim=1, largest=False)                  # (B, k+1), ascending
    idx = idx[:, :k]
    tied_rows = (vals[:, k - 1] == vals[:, k]).nonzero().squeeze(1)     # which k items is ambiguous
    if len(tied_rows):
        idx[tied_rows] = _first_k_by_index(dist[tied_rows], k)
    idx = idx.sort(dim=1).values                                        # index order, then
    order = torch.sort(dist.gather(1, idx), dim=1, stable=True).indices  # stable by distance
    return idx.gather(1, order)                                         # (B, k)


def relevance(query_labels: torch.Tensor, retrieved_labels: torch.Tensor) -> torch.Tensor:
    """Whether each retrieved item shares a label with its query.

    Class indices: query_labels (B,), retrieved_labels (B, k). Multi-hot:
    query_labels (B, C), retrieved_labels (B, k, C). -> (B, k) bool.
    """
    if query_labels.ndim == 1:
        return retrieved_labels == query_labels.unsqueeze(1)
    return (retrieved_labels.bool() & query_labels.bool().unsqueeze(1)).any(-1)


def average_precision(rel: torch.Tensor) -> torch.Tensor:
    """AP of each ranked list: mean precision at the ranks of its relevant items (0 if none).

    rel: (B, k) bool, in rank order -> (B,) float.
    """
    rel = rel.float()
    ranks = torch.arange(1, rel.shape[1] + 1, device=rel.device, dtype=rel.dtype)
    precision = rel.cumsum(1) / ranks                                   # (B, k)
    return (precision * rel).sum(1) / rel.sum(1).clamp_min(1)


def _check_labels(labels: torch.Tensor, n: int, what: str) -> None:
    if labels.ndim not in (1, 2) or labels.shape[0] != n:
        raise ValueError(f"{what} labels must be ({n},) class indices or ({n}, C) multi-hot, "
                         f"got shape {tuple(labels.shape)}")


def average_precisions(queries: torch.Tensor, query_labels: torch.Tensor, codes: torch.Tensor,
                       gallery_labels: torch.Tensor, codebooks: torch.Tensor,
                       top_k: Optional[int] = 1000) -> torch.Tensor:
    """AP@top_k of every query under ADC ranking (top_k None: the whole gallery).

    queries: (Q, M*L), query_labels: (Q,) or (Q, C), codes: (G, M), gallery_labels:
    (G,) or (G, C), codebooks: (M, K, L) -> (Q,) float. Works on chunks of queries so
    that at most MAX_DISTANCES_PER_CHUNK distances are held at once.
    """
    q, g = queries.shape[0], codes.shape[0]
    _check_labels(query_labels, q, "query")
    _check_labels(gallery_labels, g, "gallery")
    if query_labels.ndim != gallery_labels.ndim:
        raise ValueError("query and gallery labels must both be class indices or both multi-hot")
    k = g if top_k is None else min(top_k, g)
    device = queries.device
    codes, gallery_labels = codes.to(device), gallery_labels.to(device)
    query_labels = query_labels.to(device)
    step = max(1, MAX_DISTANCES_PER_CHUNK // max(g, 1))
    out = []
    for s in range(0, q, step):
        dist = adc_distances(queries[s:s + step], codes, codebooks)    # (B, G)
        idx = ranked_top_k(dist, k)                                     # (B, k)
        rel = relevance(query_labels[s:s + step], gallery_labels[idx])  # (B, k)
        out.append(average_precision(rel))
    return torch.cat(out) if out else queries.new_zeros(0)


def mean_average_precision(queries: torch.Tensor, query_labels: torch.Tensor, codes: torch.Tensor,
                           gallery_labels: torch.Tensor, codebooks: torch.Tensor,
                           top_k: Optional[int] = 1000) -> float:
    """mAP@top_k under ADC ranking: the mean of `average_precisions` over all queries."""
    return average_precisions(queries, query_labels, codes, gallery_labels, codebooks,
                              top_k).mean().item()
