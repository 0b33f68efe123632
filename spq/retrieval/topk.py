"""Exact top-k search over product-quantization codes by ADC distance (`search`).

Rankings order items by (distance, gallery index): equal distances, such as those of
items sharing a code, keep gallery order. `search` returns exactly the ranking that
stably sorting every query's full row of distances (`spq.retrieval.distances`) would give,
without sorting those rows: it keeps, for each query, the items within a threshold read
from a sample of the gallery (a little above the expected k-th distance) and ranks only
those, with one stable sort of (query, distance) keys; a query whose threshold kept fewer
than k items, or too many, is ranked from its whole row, as are all queries of a search
with few queries or a small gallery. Memory stays bounded at any gallery size: see `plan`.
"""
import math
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import torch

from .distances import adc_tables, bag_distances, book_offsets, table_weights

# Whole-row path: at most this many (query, item) distances at once (16 MiB, held with
# their transposed copy while ranked).
MAX_DISTANCES_PER_CHUNK = 2 ** 22
# Threshold path: at most QUERY_BLOCK queries per block, fewer when k is large, so
# that a block keeps at most CANDIDATES candidates (max_candidates each, 12 bytes per
# candidate); and at most DISTANCE_BLOCK distances per (gallery chunk, query block)
# block (16 MiB).
QUERY_BLOCK = 128
CANDIDATES = 2 ** 20
DISTANCE_BLOCK = 2 ** 22
# Gallery items sampled (with replacement) to set each query's threshold: at least
# SAMPLE, and enough that about SAMPLE_IN_TOP_K of them are expected in the top k, at
# most MAX_SAMPLE. The threshold is the sample's distance at the expected rank of the
# k-th item plus SPREAD binomial standard deviations, so few queries fall short of k
# candidates.
SAMPLE = 1024
SAMPLE_IN_TOP_K = 20
MAX_SAMPLE = 2 ** 16
SPREAD = 3.0
# The threshold path is used when the gallery holds at least MIN_GALLERY_PER_K times k
# items, the sample is smaller than the gallery, and there are at least MIN_QUERIES
# queries: for fewer, its fixed costs (the sample above all) outweigh ranking whole rows
# (measured at 50,000 and 1,000,000 codes, M=8, K=16, on a 2-core CPU).
MIN_GALLERY_PER_K = 8
MIN_QUERIES = 8


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

    Equal distances keep index order, exactly as a stable sort of the whole row would,
    without sorting the whole row. dist: (B, G) -> (B, min(k, G)).
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


@dataclass(frozen=True)
class Plan:
    """How `search` cuts its work; every buffer it allocates is bounded by these.

    threshold: whether items are kept by a sampled threshold (else whole rows are ranked).
    sample: gallery items sampled to set the thresholds.
    exact_rows: queries per block of whole rows, (exact_rows, G) distances.
    query_block: queries per threshold block.
    gallery_chunk: items per block of distances, (gallery_chunk, query_block).
    max_candidates: candidates kept per query; a query with more is ranked from its whole row.
    """
    threshold: bool
    sample: int
    exact_rows: int
    query_block: int
    gallery_chunk: int
    max_candidates: int


def plan(num_items: int, k: int, num_queries: Optional[int] = None) -> Plan:
    """The chunking of a search of `num_queries` (None: many) for the top k of `num_items` codes.

    Beyond its inputs and results, a search holds the codes' table positions (4 bytes
    per book per item), the sample's distances (at most MAX_SAMPLE x query_block
    floats), the kept candidates (CANDIDATES x 12 bytes) and their sort (about 32
    bytes per candidate), and one block of distances (DISTANCE_BLOCK floats) with its
    mask and its candidates (at most 24 bytes per entry, reached only when masses of
    items tie at the threshold); or, on the whole-row path, MAX_DISTANCES_PER_CHUNK
    distances with their transposed copy and their selection.
    """
    g = max(num_items, 1)
    sample = min(max(SAMPLE, math.ceil(SAMPLE_IN_TOP_K * g / max(k, 1))), MAX_SAMPLE)
    max_candidates = 4 * k + 2048
    query_block = max(1, min(QUERY_BLOCK, CANDIDATES // max_candidates))
    many = num_queries is None or num_queries >= MIN_QUERIES
    return Plan(threshold=k > 0 and num_items >= MIN_GALLERY_PER_K * k and sample < g and many,
                sample=sample, exact_rows=max(1, MAX_DISTANCES_PER_CHUNK // g), query_block=query_block,
                gallery_chunk=max(1, min(g, DISTANCE_BLOCK // query_block)),
                max_candidates=max_candidates)


def _exact_top_k(weights: torch.Tensor, offsets: torch.Tensor, k: int, rows_at_once: int) -> torch.Tensor:
    """Top k by (distance, index) from whole rows of distances. weights: (M*K, B) -> (B, k)."""
    out = [ranked_top_k(bag_distances(offsets, part.contiguous()).T.contiguous(), k)    # rows (b, G)
           for part in weights.split(rows_at_once, dim=1)]
    return torch.cat(out) if out else offsets.new_zeros(0, min(k, offsets.shape[0]), dtype=torch.long)


def _sampled_limit(weights: torch.Tensor, sample: torch.Tensor, rank: int) -> torch.Tensor:
    """Per query, the rank-th smallest distance to the sample's items, as int32 bits.

    weights: (M*K, B), sample: (S, M) offsets -> (B,). Non-negative float32 values order
    like their bit patterns, so distances are compared as int32.
    """
    dist = bag_distances(sample, weights)                                          # (S, B)
    kth = dist.topk(rank, dim=0, largest=False, sorted=False).values.amax(0)     # (B,)
    return kth.view(torch.int32)


def _column(place: torch.Tensor, width: int) -> torch.Tensor:
    """Positions in a row-major (n, width) block -> their column."""
    return place & (width - 1) if width & (width - 1) == 0 else place % width


def _pair_keys(row: torch.Tensor, dist: torch.Tensor, width: int) -> Tuple[torch.Tensor, int]:
    """Sort keys ordering (query, distance) pairs by query, then distance.

    row: (n,) query in [0, width), dist: (n,) int32 distance bits -> keys (n,) and the
    shift of the query in them. int32 keys (distance bits above the block's smallest)
    when the block's distances span few enough values, which sort about twice as fast;
    else int64 keys.
    """
    shift = 31 - max(width - 1, 1).bit_length()
    if len(dist):
        low = dist.min()
        if int(dist.max() - low) < 2 ** shift:
            return (row.int() << shift) | (dist - low), shift
    return (row << 31) | dist.long(), 31


def _threshold_top_k(weights: torch.Tensor, offsets: torch.Tensor, limit: torch.Tensor,
                     k: int, p: Plan, kept: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Exact top k of a block of queries from the items within their thresholds.

    weights: (M*K, B), offsets: (G, M), limit: (B,) int32 threshold bits, kept: room for
    B * p.max_candidates candidates (positions int64, distance bits int32) -> (B, k).
    Candidates go straight into `kept`, so the memory freed by one gallery chunk's
    distances is whole again for the next one.
    """
    b, g = weights.shape[1], offsets.shape[0]
    places, dists = kept
    filled = 0
    found = torch.zeros(b, dtype=torch.long, device=weights.device)
    for start in range(0, g, p.gallery_chunk):
        bits = bag_distances(offsets[start:start + p.gallery_chunk], weights).view(torch.int32)  # (n, B)
        flat = (bits <= limit).view(-1).nonzero().squeeze(1)        # item * B + query, ascending
        found += torch.bincount(_column(flat, b), minlength=b)
        over = found > p.max_candidates
        if over.any():                 # dropped, and ranked from whole rows below
            limit = torch.where(over, -1, limit)
            flat = flat[~over[_column(flat, b)]]
            keep = ~over[_column(places[:filled], b)]
            stay = int(keep.sum())
            places[:stay], dists[:stay] = places[:filled][keep], dists[:filled][keep]
            filled = stay
        n = len(flat)
        torch.index_select(bits.view(-1), 0, flat, out=dists[filled:filled + n])
        torch.add(flat, start * b, out=places[filled:filled + n])
        filled += n
    place = places[:filled]                                               # (n,) item * B + query
    key, _ = _pair_keys(_column(place, b), dists[:filled], b)
    key, order = torch.sort(key, stable=True)                 # by (query, distance, item)
    count = found.masked_fill(found > p.max_candidates, 0)   # pairs kept per query
    first = count.cumsum(0) - count                           # where each query's pairs start
    redo = (count < k).nonzero().squeeze(1)          # threshold too low, or dropped
    if len(redo) == b:
        return _exact_top_k(weights, offsets, k, p.exact_rows)
    ranks = (first.unsqueeze(1) + torch.arange(k, device=weights.device)).clamp_max(len(key) - 1)
    top = place.index_select(0, order.index_select(0, ranks.view(-1))).view(b, k) // b    # (B, k)
    del key, order, ranks                       # freed before any whole rows are ranked
    if len(redo):
        top[redo] = _exact_top_k(weights[:, redo], offsets, k, p.exact_rows)
    return top


def search(queries: torch.Tensor, codes: torch.Tensor, codebooks: torch.Tensor,
           k: int, distance: str = "euclidean") -> Iterator[Tuple[int, torch.Tensor]]:
    """Exact ADC top k of every query, by (distance, gallery index), block by block.

    queries: (Q, M*L), codes: (G, M), codebooks: (M, K, L), distance: one of `DISTANCES`.
    Yields (first query, indices (B, min(k, G))) for consecutive blocks of queries;
    memory as `plan` bounds it.
    """
    device = queries.device
    queries = queries.detach()
    codes = codes.to(device)
    codebooks = codebooks.detach().to(device)
    g, k_words = codes.shape[0], codebooks.shape[1]
    if not torch.isfinite(queries).all() or not torch.isfinite(codebooks).all():
        raise ValueError("queries and codebooks must be finite (no NaN or inf)")
    k = min(k, g)
    p = plan(g, k, queries.shape[0])
    offsets = book_offsets(codes, k_words)                                    # (G, M) int32
    block = p.query_block if p.threshold else p.exact_rows
    if p.threshold:
        chosen = torch.randint(g, (p.sample,), generator=torch.Generator().manual_seed(0))
        sample = offsets[chosen.sort().values.to(device)]                       # (S, M)
        expected = k / g * p.sample
        rank = min(p.sample, int(expected + SPREAD * expected ** 0.5) + 1)
        room = p.query_block * p.max_candidates
        kept = (torch.empty(room, dtype=torch.long, device=device),
                torch.empty(room, dtype=torch.int32, device=device))
    for start in range(0, queries.shape[0], block):
        tables = adc_tables(queries[start:start + block], codebooks, distance)   # (B, M, K)
        if k == 0:
            yield start, torch.zeros(len(tables), 0, dtype=torch.long, device=device)
        elif p.threshold:
            weights = table_weights(tables)                                           # (M*K, B)
            limit = _sampled_limit(weights, sample, rank)
            yield start, _threshold_top_k(weights, offsets, limit, k, p, kept)
        else:
            yield start, _exact_top_k(table_weights(tables), offsets, k, p.exact_rows)
