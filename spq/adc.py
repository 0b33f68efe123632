"""Asymmetric (ADC) distances over product-quantization codes, and exact top-k search.

Queries keep their real-valued descriptors; gallery items are stored as codes. The
distance between query q and item g is the sum over books m of a distance between q's
sub-vector m and the codeword that g's code selects in book m, added in float32 in book
order 0..M-1. `distance` picks it (`DISTANCES`):
- "euclidean" (default): the Euclidean (not squared) distance per book, the authors'
  evaluation and the paper's figures;
- "squared": the squared Euclidean distance per book, which sums to the squared
  distance between q and the item's reconstruction: FAISS's IndexPQ ranking.
Rankings order items by (distance, gallery index): equal distances, such as those of
items sharing a code, keep gallery order.

`search` returns exactly the ranking that sorting every query's full row of distances
would give, without sorting or even exactly computing those rows: an approximate pass
(one matrix product per block, in bfloat16 on CPUs that support it) keeps, for every
query, only the items that can be in its top k, with a proven error margin; those
candidates alone get the exact distances and the ranking. Memory stays bounded at any
gallery size: see `plan`.
"""
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import torch

from .quantization import exact_squared_distances

MiB = 2 ** 20
# Exact path: at most this many (query, item) distances in memory at once (32 MiB).
MAX_DISTANCES_PER_CHUNK = 2 ** 23
# Filter path budgets (bytes): the one-hot gallery block, one block of approximate
# distances, and the candidates of one chunk of queries.
ONE_HOT_BYTES = 32 * MiB
DISTANCE_BLOCK_BYTES = 8 * MiB
CANDIDATE_BYTES = 64 * MiB
BYTES_PER_CANDIDATE = 48      # row and item (int64), exact distance, padded copies, masks
# Gallery items sampled to set each query's approximate threshold: at least SAMPLE, and
# enough that about SAMPLE_IN_TOP_K of them are expected in the top k.
SAMPLE = 2048
SAMPLE_IN_TOP_K = 40
MAX_SAMPLE = 2 ** 16          # caps the sample's one-hot (4 MiB at M*K = 128 in bfloat16)
# The filter is used when the gallery holds at least this many times k items, and there
# are at least this many queries per codeword (K): its one-hot gallery costs about as much
# as ranking about 3 K queries exactly (measured: 1,000,000 codes, M=8, K=16, 2-core CPU).
MIN_GALLERY_PER_K = 8
MIN_QUERIES_PER_WORD = 3
DISTANCES = ("euclidean", "squared")


def adc_tables(queries: torch.Tensor, codebooks: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """Per query, the distance of each sub-vector to each codeword of its book.

    queries: (Q, M*L), codebooks: (M, K, L) -> (Q, M, K), Euclidean (not squared) or,
    with distance "squared", squared Euclidean.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {distance!r}")
    tables = exact_squared_distances(queries, codebooks)
    return tables if distance == "squared" else tables.sqrt_()


def book_offsets(codes: torch.Tensor, num_words: int) -> torch.Tensor:
    """Codes (G, M) -> (G, M) int32 positions m*K + codes[g, m] in a query's flat (M*K) table."""
    books = torch.arange(codes.shape[1], device=codes.device, dtype=torch.int32)
    return codes.int() + books * num_words


def lookup_distances(tables: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """ADC distances from lookup tables: sum over books of tables[q, m, codes[g, m]].

    tables: (Q, M, K), codes: (G, M) integer -> (Q, G). Books are added in order 0..M-1.
    """
    dist = tables.new_zeros(tables.shape[0], codes.shape[0])            # (Q, G)
    for m in range(tables.shape[1]):
        dist += tables[:, m].index_select(1, codes[:, m].long())       # (Q, G)
    return dist


def pair_distances(tables: torch.Tensor, rows: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """ADC distances of listed (query, item) pairs, bit for bit as `lookup_distances`.

    tables: (Q, M, K), rows: (n,) query indices, offsets: (n, M) the items' `book_offsets`
    -> (n,).
    """
    q, m_books, k_words = tables.shape
    flat = offsets + (rows.int() * (m_books * k_words)).unsqueeze(1)    # (n, M) int32
    terms = tables.reshape(-1).index_select(0, flat.view(-1)).view(-1, m_books)  # (n, M)
    dist = tables.new_zeros(rows.shape[0])                              # (n,)
    for m in range(m_books):
        dist += terms[:, m]
    return dist


def adc_distances(queries: torch.Tensor, codes: torch.Tensor, codebooks: torch.Tensor,
                  distance: str = "euclidean") -> torch.Tensor:
    """Asymmetric distances between real-valued queries and coded gallery items.

    queries: (Q, M*L), codes: (G, M) integer, codebooks: (M, K, L) -> (Q, G).
    """
    return lookup_distances(adc_tables(queries, codebooks, distance), codes.to(queries.device))


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

    filtered: whether the approximate filter is used (else exact rows, `exact_rows` at a time).
    gallery_chunk: items per one-hot block, (M*K, gallery_chunk) in `dtype`.
    query_block: queries per block of approximate distances, (query_block, gallery_chunk).
    query_chunk: queries whose candidates are held together.
    max_candidates: candidates kept per query; a query with more is ranked exactly.
    """
    filtered: bool
    dtype: torch.dtype
    exact_rows: int
    gallery_chunk: int
    query_block: int
    query_chunk: int
    max_candidates: int


def approximate_dtype(device: torch.device) -> torch.dtype:
    """bfloat16 for the approximate pass on CPUs with fast bfloat16 matrix products, else float32."""
    if device.type == "cpu" and torch.backends.mkldnn.is_available() \
            and torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return torch.bfloat16
    return torch.float32


def plan(num_items: int, num_books: int, num_words: int, k: int, device: torch.device,
         num_queries: Optional[int] = None) -> Plan:
    """The chunking of a search of `num_queries` (None: many) for the top k of `num_items`
    codes (M books of K words)."""
    dtype = approximate_dtype(device)
    size = torch.finfo(dtype).bits // 8
    g = max(num_items, 1)
    gallery_chunk = max(1, min(g, ONE_HOT_BYTES // (num_books * num_words * size)))
    query_block = max(1, DISTANCE_BLOCK_BYTES // (gallery_chunk * size))
    max_candidates = 4 * k + 2048
    query_chunk = max(1, CANDIDATE_BYTES // (max_candidates * BYTES_PER_CANDIDATE))
    many = num_queries is None or num_queries >= MIN_QUERIES_PER_WORD * num_words
    return Plan(filtered=num_items >= MIN_GALLERY_PER_K * k and many, dtype=dtype,
                exact_rows=max(1, MAX_DISTANCES_PER_CHUNK // g), gallery_chunk=gallery_chunk,
                query_block=query_block, query_chunk=query_chunk, max_candidates=max_candidates)


def _one_hot(codes: torch.Tensor, num_words: int, dtype: torch.dtype) -> torch.Tensor:
    """Codes (n, M) -> (M*K, n) with a 1 in row m*K + codes[i, m] of column i."""
    n, m_books = codes.shape
    rows = book_offsets(codes, num_words).long().T                                 # (M, n)
    out = torch.zeros(m_books * num_words, n, dtype=dtype, device=codes.device)
    return out.scatter_(0, rows, 1)


def _unit_roundoff(dtype: torch.dtype) -> float:
    # float32 products may run as TF32 on GPUs that allow it: 11 significant bits.
    return 2.0 ** -8 if dtype == torch.bfloat16 else 2.0 ** -11


def _limits(tables: torch.Tensor, tau: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Approximate-distance limit per query that keeps every item of its exact top k.

    With d* the exact sum of the shifted tables and x = (reference distance - shifts),
    the approximate pass gives d~ within a factor (1 +- rho) of d*, and |x - d*| <= delta
    (float32 rounding of the tables and of the reference sums). If at least k items have
    d~ <= tau, every item of the top k has d~ <= (tau + 2 delta)(1 + rho)/(1 - rho).
    tables: (B, M, K), tau: (B,) -> (B,) float32.
    """
    m_books = tables.shape[1]
    u = _unit_roundoff(dtype)
    rho = (1 + u) ** 2 - 1 + (m_books + 2) * 2.0 ** -24
    delta = 2 * (m_books + 2) * 2.0 ** -24 * tables.amax(2).sum(1)      # (B,)
    return (tau + 2 * delta) * ((1 + rho) / (1 - rho)) * (1 + 2.0 ** -20)


def _within(approx: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """approx (B, n) <= limit (B,), comparing bfloat16 as integers with the limit rounded up."""
    if approx.dtype != torch.bfloat16:
        return approx <= limit.unsqueeze(1)
    # non-negative bfloat16 values order like their bit patterns; round the limit up to one
    up = ((limit.float().view(torch.int32) + 0xFFFF) >> 16).to(torch.int16)
    return approx.view(torch.int16) <= up.unsqueeze(1)


def _exact_top_k(tables: torch.Tensor, codes: torch.Tensor, k: int, rows_at_once: int) -> torch.Tensor:
    """Top k by (distance, index) from whole rows of exact distances. tables: (B, M, K) -> (B, k)."""
    out = [ranked_top_k(lookup_distances(part, codes), k) for part in tables.split(rows_at_once)]
    return torch.cat(out) if out else codes.new_zeros(0, min(k, codes.shape[0]), dtype=torch.long)


def _candidates(shifted: torch.Tensor, limit: torch.Tensor, codes: torch.Tensor, blocks,
                p: Plan) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(row, item) pairs whose approximate distance is within each row's limit.

    shifted: (B, M*K) shifted tables in p.dtype, limit: (B,), blocks(j): the one-hot of
    gallery chunk j. A row that reaches p.max_candidates stops collecting. -> rows (n,)
    and items (n,), sorted by row then item, and the count per row (B,).
    """
    b = shifted.shape[0]
    count = torch.zeros(b, dtype=torch.long, device=shifted.device)
    found_rows, found_items = [], []
    for j, start in enumerate(range(0, codes.shape[0], p.gallery_chunk)):
        one_hot = blocks(j)                                                     # (M*K, Gc)
        for r in range(0, b, p.query_block):
            approx = shifted[r:r + p.query_block] @ one_hot                     # (b, Gc)
            pair = _within(approx, limit[r:r + p.query_block]).nonzero()        # (n, 2)
            rows, items = pair[:, 0] + r, pair[:, 1] + start
            full = count > p.max_candidates
            count += torch.bincount(rows, minlength=b)
            if full.any():
                keep = ~full[rows]
                rows, items = rows[keep], items[keep]
            found_rows.append(rows)
            found_items.append(items)
    rows, items = torch.cat(found_rows), torch.cat(found_items)
    if p.gallery_chunk < codes.shape[0]:                    # pairs came gallery chunk first
        order = torch.sort(rows, stable=True).indices
        rows, items = rows[order], items[order]
    return rows, items, count


def _ranked_by_key(rows: torch.Tensor, items: torch.Tensor, dist: torch.Tensor,
                   num_rows: int, k: int) -> torch.Tensor:
    """Per row, the k items with the smallest (distance, item), from pairs sorted by row.

    Non-negative float32 distances order like their bit patterns, so one int64 key
    (distance bits, item) per pair sorts by distance and then by gallery index.
    rows, items, dist: (n,); a row with fewer than k pairs gets meaningless entries
    past its pairs -> (num_rows, k) items.
    """
    count = torch.bincount(rows, minlength=num_rows)                            # (B,)
    key = (dist.view(torch.int32).long() << 32) | items                        # (n,)
    col = torch.arange(len(rows), device=rows.device) - (count.cumsum(0) - count)[rows]
    width = max(int(count.max()) if len(rows) else 0, k)
    padded = torch.full((num_rows, width), torch.iinfo(torch.long).max,
                        dtype=torch.long, device=rows.device)                   # (B, width)
    padded[rows, col] = key
    return padded.topk(k, dim=1, largest=False, sorted=True).values & 0xFFFFFFFF   # keys are unique


def _filtered_top_k(tables: torch.Tensor, codes: torch.Tensor, offsets: torch.Tensor, blocks,
                    sample: torch.Tensor, rank: int, k: int, p: Plan) -> torch.Tensor:
    """Exact top k of each query from the candidates of an approximate pass. -> (B, k)."""
    shifted = (tables - tables.amin(2, keepdim=True)).flatten(1).to(p.dtype)   # (B, M*K), >= 0
    tau = (shifted @ sample).float().kthvalue(rank, dim=1).values             # (B,)
    rows, items, count = _candidates(shifted, _limits(tables, tau, p.dtype), codes, blocks, p)
    exact = (count < k) | (count > p.max_candidates)          # threshold too low, or too many ties
    if exact.any():
        keep = ~exact[rows]
        rows, items = rows[keep], items[keep]
    dist = pair_distances(tables, rows, offsets.index_select(0, items))         # (n,)
    top = _ranked_by_key(rows, items, dist, tables.shape[0], k)                 # (B, k)
    redo = exact.nonzero().squeeze(1)
    if len(redo):
        top[redo] = _exact_top_k(tables[redo], codes, k, p.exact_rows)
    return top


def result_distances(queries: torch.Tensor, codes: torch.Tensor, codebooks: torch.Tensor,
                     idx: torch.Tensor, distance: str = "euclidean") -> torch.Tensor:
    """The ADC distances by which `search` ranked its results, bit for bit.

    queries: (Q, M*L), codes: (G, M), codebooks: (M, K, L), idx: (Q, k) gallery indices
    -> (Q, k) float32.
    """
    q, k = idx.shape
    tables = adc_tables(queries, codebooks.detach().to(queries.device), distance)   # (Q, M, K)
    rows = torch.arange(q, device=queries.device).repeat_interleave(k)             # (Q*k,)
    items = codes.to(queries.device)[idx.reshape(-1)]                              # (Q*k, M)
    return pair_distances(tables, rows, book_offsets(items, codebooks.shape[1])).view(q, k)


def search(queries: torch.Tensor, codes: torch.Tensor, codebooks: torch.Tensor,
           k: int, distance: str = "euclidean") -> Iterator[Tuple[int, torch.Tensor]]:
    """Exact ADC top k of every query, by (distance, gallery index), chunk by chunk.

    queries: (Q, M*L), codes: (G, M), codebooks: (M, K, L), distance: one of `DISTANCES`.
    Yields (first query, indices (B, min(k, G))) for consecutive chunks of queries;
    memory as `plan` bounds it.
    """
    device = queries.device
    codes = codes.to(device)
    codebooks = codebooks.detach().to(device)
    g, (m_books, k_words, _) = codes.shape[0], codebooks.shape
    if not torch.isfinite(queries).all() or not torch.isfinite(codebooks).all():
        raise ValueError("queries and codebooks must be finite (no NaN or inf)")
    k = min(k, g)
    p = plan(g, m_books, k_words, k, device, queries.shape[0])
    if not p.filtered or k == 0:
        for start in range(0, queries.shape[0], p.exact_rows):
            tables = adc_tables(queries[start:start + p.exact_rows], codebooks, distance)
            yield start, _exact_top_k(tables, codes, k, p.exact_rows)
        return
    size = min(max(SAMPLE, -(-SAMPLE_IN_TOP_K * g // k)), MAX_SAMPLE)
    if g <= size:                                              # the sample is the whole gallery
        sample_items, rank = torch.arange(g, device=device), k
    else:                                                      # expected rank + 2.5 sigma
        sample_items = torch.randperm(g, generator=torch.Generator().manual_seed(0))[:size].to(device)
        expected = k / g * size
        rank = min(size, int(expected + 2.5 * expected ** 0.5) + 1)
    sample = _one_hot(codes[sample_items], k_words, p.dtype)                  # (M*K, S)
    offsets = book_offsets(codes, k_words)                                    # (G, M) int32
    chunks = range(0, g, p.gallery_chunk)
    single = _one_hot(codes, k_words, p.dtype) if len(chunks) == 1 else None

    def blocks(j: int) -> torch.Tensor:
        if single is not None:
            return single
        return _one_hot(codes[chunks[j]:chunks[j] + p.gallery_chunk], k_words, p.dtype)

    for start in range(0, queries.shape[0], p.query_chunk):
        tables = adc_tables(queries[start:start + p.query_chunk], codebooks, distance)  # (B, M, K)
        yield start, _filtered_top_k(tables, codes, offsets, blocks, sample, rank, k, p)
