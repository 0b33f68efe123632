"""How well a ranking retrieves: mAP@N, precision@k and precision-recall of the ADC
rankings of `spq.retrieval.topk.search`.

An item is relevant to a query when they share a label: class indices (N,) or multi-hot
rows (N, C).
- AP@n of a query: the mean, over the relevant items among its first n results, of the
  precision at each one's rank (0 when none is there); mAP@n averages it over queries.
  n = None means the whole gallery.
- precision@k: the share of relevant items among the first k results.
- precision-recall: at each rank cut-off n, precision@n and recall@n (relevant items in
  the first n over all relevant items in the gallery), averaged over queries (recall
  over the queries that have at least one relevant item).
"""
from typing import Dict, List, Optional, Sequence

import torch

from .topk import search


def recall_cutoffs(num_items: int) -> List[int]:
    """The documented cut-offs 1, 2, 5, 10, 20, 50, ... (below num_items), then num_items."""
    out, base = [], 1
    while True:
        for step in (1, 2, 5):
            if base * step >= num_items:
                return out + [num_items]
            out.append(base * step)
        base *= 10


DEFAULT_KS = (1, 10, 50, 100, 500, 1000)
# Multi-hot relevance is computed for at most this many (query, item, label) entries at once.
RANKED_ENTRIES_PER_CHUNK = 2 ** 23


def relevant(query_labels: torch.Tensor, gallery_labels: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Whether gallery item idx[b, j] shares a label with query b.

    Class indices: query_labels (B,), gallery_labels (G,). Multi-hot: (B, C) and (G, C).
    idx: (B, k) gallery indices -> (B, k) bool.
    """
    if query_labels.ndim == 1:
        return gallery_labels[idx] == query_labels.unsqueeze(1)
    step = max(1, RANKED_ENTRIES_PER_CHUNK // max(idx.shape[1] * gallery_labels.shape[1], 1))
    parts = [(gallery_labels[i].bool() & q.bool().unsqueeze(1)).any(-1)        # (b, k)
             for q, i in zip(query_labels.split(step), idx.split(step))]
    return torch.cat(parts) if parts else idx.new_zeros(idx.shape, dtype=torch.bool)


def average_precision(rel: torch.Tensor) -> torch.Tensor:
    """AP of each ranked list: mean precision at the ranks of its relevant items (0 if none).

    rel: (B, k) bool, in rank order -> (B,) float.
    """
    rel = rel.float()
    ranks = torch.arange(1, rel.shape[1] + 1, device=rel.device, dtype=rel.dtype)
    precision = rel.cumsum(1) / ranks                                   # (B, k)
    return (precision * rel).sum(1) / rel.sum(1).clamp_min(1)


def _check(queries: torch.Tensor, query_labels: torch.Tensor, codes: torch.Tensor,
           gallery_labels: torch.Tensor):
    q, g = queries.shape[0], codes.shape[0]
    for labels, n, what in [(query_labels, q, "query"), (gallery_labels, g, "gallery")]:
        if labels.ndim not in (1, 2) or labels.shape[0] != n:
            raise ValueError(f"{what} labels must be ({n},) class indices or ({n}, C) multi-hot, "
                             f"got shape {tuple(labels.shape)}")
    if query_labels.ndim != gallery_labels.ndim:
        raise ValueError("query and gallery labels must both be class indices or both multi-hot")
    device = queries.device
    return query_labels.to(device), gallery_labels.to(device)


def _ranked_relevance(queries, query_labels, codes, gallery_labels, codebooks, k, distance):
    """Yields (first query, (B, min(k, G)) bool relevance in ADC rank order) per chunk."""
    query_labels, gallery_labels = _check(queries, query_labels, codes, gallery_labels)
    for start, idx in search(queries, codes, codebooks, k, distance):
        yield start, relevant(query_labels[start:start + len(idx)], gallery_labels, idx)


def average_precisions(queries: torch.Tensor, query_labels: torch.Tensor, codes: torch.Tensor,
                       gallery_labels: torch.Tensor, codebooks: torch.Tensor,
                       top_n: Optional[int] = 1000, distance: str = "euclidean") -> torch.Tensor:
    """AP@top_n of every query under ADC ranking (top_n None: the whole gallery).

    queries: (Q, M*L), query_labels: (Q,) or (Q, C), codes: (G, M), gallery_labels:
    (G,) or (G, C), codebooks: (M, K, L) -> (Q,) float.
    """
    k = codes.shape[0] if top_n is None else top_n
    out = [average_precision(rel) for _, rel in
           _ranked_relevance(queries, query_labels, codes, gallery_labels, codebooks, k, distance)]
    return torch.cat(out) if out else queries.new_zeros(0)


def mean_average_precision(queries: torch.Tensor, query_labels: torch.Tensor, codes: torch.Tensor,
                           gallery_labels: torch.Tensor, codebooks: torch.Tensor,
                           top_n: Optional[int] = 1000, distance: str = "euclidean") -> float:
    """mAP@top_n under ADC ranking: the mean of `average_precisions` over all queries."""
    return average_precisions(queries, query_labels, codes, gallery_labels, codebooks,
                              top_n, distance).mean().item()


def precision_at_k(queries: torch.Tensor, query_labels: torch.Tensor, codes: torch.Tensor,
                   gallery_labels: torch.Tensor, codebooks: torch.Tensor,
                   ks: Sequence[int] = DEFAULT_KS, distance: str = "euclidean") -> Dict[int, float]:
    """Mean precision@k over queries, for each k in ks (k above G counts as G)."""
    g = codes.shape[0]
    ks = sorted({min(k, g) for k in ks})
    sums = torch.zeros(len(ks), dtype=torch.float64)
    for _, rel in _ranked_relevance(queries, query_labels, codes, gallery_labels, codebooks, ks[-1],
                                    distance):
        sums += _precision_sums(rel.cumsum(1, dtype=torch.int32), ks)
    return {k: float(v) / max(queries.shape[0], 1) for k, v in zip(ks, sums)}


def _precision_sums(hits: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    """Sum over queries of precision@k for each k, from (B, >= max ks) running hit counts."""
    return torch.stack([hits[:, k - 1].double().sum().cpu() / k for k in ks])


def _curve(hits: torch.Tensor, cutoffs: Sequence[int]):
    """Precision and recall sums at the cut-offs, from (B, G) running hit counts."""
    at = hits[:, [n - 1 for n in cutoffs]].double()                     # (B, n_cut)
    total = hits[:, -1:].double()                                       # (B, 1) relevant in gallery
    has = total.squeeze(1) > 0
    precision = (at / torch.tensor(cutoffs, dtype=torch.float64, device=at.device)).sum(0)
    recall = (at[has] / total[has]).sum(0)
    return precision.cpu(), recall.cpu(), int(has.sum())


def precision_recall_curve(queries: torch.Tensor, query_labels: torch.Tensor, codes: torch.Tensor,
                           gallery_labels: torch.Tensor, codebooks: torch.Tensor,
                           cutoffs: Optional[Sequence[int]] = None,
                           distance: str = "euclidean") -> Dict[str, list]:
    """Mean precision and recall of the ADC ranking at rank cut-offs (default `recall_cutoffs`).

    Ranks the whole gallery for every query. Recall is averaged over the queries with at
    least one relevant item in the gallery; their number is returned too.
    """
    return retrieval_metrics(queries, query_labels, codes, gallery_labels, codebooks,
                             top_n=None, ks=(), cutoffs=cutoffs, distance=distance)["precision_recall"]


def retrieval_metrics(queries: torch.Tensor, query_labels: torch.Tensor, codes: torch.Tensor,
                      gallery_labels: torch.Tensor, codebooks: torch.Tensor,
                      top_n: Optional[int] = 1000, ks: Sequence[int] = DEFAULT_KS,
                      cutoffs: Optional[Sequence[int]] = None,
                      distance: str = "euclidean") -> Dict[str, object]:
    """Every metric from one pass over the whole ranking of every query.

    Returns mAP (at top_n), mAP_all (whole gallery), precision_at_k {k: value} and
    precision_recall {cutoffs, precision, recall, queries_with_relevant}, plus the
    number of queries without any relevant item in the gallery.
    """
    q, g = queries.shape[0], codes.shape[0]
    cutoffs = recall_cutoffs(g) if cutoffs is None else sorted({min(max(n, 1), g) for n in cutoffs})
    ks = sorted({min(k, g) for k in ks})
    k_map = g if top_n is None else min(top_n, g)
    ap_top = ap_all = 0.0
    p_at_k = torch.zeros(len(ks), dtype=torch.float64)
    precision = torch.zeros(len(cutoffs), dtype=torch.float64)
    recall = torch.zeros(len(cutoffs), dtype=torch.float64)
    with_relevant = 0
    # whole rows come from `search` in chunks of at most MAX_DISTANCES_PER_CHUNK entries
    for _, rel in _ranked_relevance(queries, query_labels, codes, gallery_labels, codebooks, g,
                                    distance):
        ap_top += average_precision(rel[:, :k_map]).double().sum().item()       # rel: (B, G)
        ap_all += average_precision(rel).double().sum().item()
        hits = rel.cumsum(1, dtype=torch.int32)                                  # (B, G)
        if ks:
            p_at_k += _precision_sums(hits, ks)
        p, r, n = _curve(hits, cutoffs)
        precision += p
        recall += r
        with_relevant += n
    n_q = max(q, 1)
    return {"mAP": ap_top / n_q, "mAP_all": ap_all / n_q,
            "precision_at_k": {k: float(v) / n_q for k, v in zip(ks, p_at_k)},
            "precision_recall": {"cutoffs": cutoffs, "precision": (precision / n_q).tolist(),
                                 "recall": (recall / max(with_relevant, 1)).tolist(),
                                 "queries_with_relevant": with_relevant},
            "queries_without_relevant": q - with_relevant}
