"""Asymmetric (ADC) distances over product-quantization codes.

Queries keep their real-valued descriptors; gallery items are stored as codes. The
distance between query q and item g is the sum over books m of a distance between q's
sub-vector m and the codeword that g's code selects in book m, added in float32 in book
order 0..M-1. `distance` picks it (`DISTANCES`):
- "euclidean" (default): the Euclidean (not squared) distance per book, the authors'
  evaluation;
- "squared": the squared Euclidean distance per book, which sums to the squared
  distance between q and the item's reconstruction: FAISS's IndexPQ ranking.
A query coded too (symmetric distances, SDC) is its reconstruction from its own code
(`spq.method.quantization.reconstruct`), so each book compares two codewords.

Every distance comes from a sum-mode `embedding_bag`: the lookup tables of a block of
queries, transposed to (M*K, B), are its embedding table and an item's bag is its M
table positions, so one call gives a whole (items, B) block of exact distances, summed
in book order (the tests check them bit for bit against plain loops).
"""
import torch
import torch.nn.functional as F

from ..method.quantization import exact_squared_distances

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
    return codes.to(torch.int32) + books * num_words


def table_weights(tables: torch.Tensor) -> torch.Tensor:
    """Lookup tables (B, M, K) -> (M*K, B) float32, the embedding table of `bag_distances`.

    Written into a fresh row-major tensor: a transposed view of one query would count as
    contiguous while its columns are not adjacent, which sends embedding_bag down a path
    about 30 times slower.
    """
    out = torch.empty(tables[0].numel(), tables.shape[0], dtype=torch.float32, device=tables.device)
    return out.copy_(tables.detach().flatten(1).T)


def bag_distances(offsets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """ADC distances of items to a block of queries: offsets (n, M) from `book_offsets`,
    weights (M*K, B) -> (n, B), each the float32 sum of its M table entries in book order."""
    return F.embedding_bag(offsets, weights, mode="sum")


def lookup_distances(tables: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """ADC distances from lookup tables: sum over books of tables[q, m, codes[g, m]].

    tables: (Q, M, K), codes: (G, M) integer -> (Q, G) float32. Books are added in order 0..M-1.
    """
    return bag_distances(book_offsets(codes, tables.shape[2]), table_weights(tables)).T.contiguous()


def pair_distances(tables: torch.Tensor, rows: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """ADC distances of listed (query, item) pairs, bit for bit as `lookup_distances`.

    tables: (Q, M, K), rows: (n,) query indices, offsets: (n, M) the items' `book_offsets`
    -> (n,).
    """
    flat = offsets.long() + rows.long().unsqueeze(1) * (tables.shape[1] * tables.shape[2])   # (n, M)
    return bag_distances(flat, tables.detach().reshape(-1, 1).float()).squeeze(1)


def adc_distances(queries: torch.Tensor, codes: torch.Tensor, codebooks: torch.Tensor,
                  distance: str = "euclidean") -> torch.Tensor:
    """Asymmetric distances between real-valued queries and coded gallery items.

    queries: (Q, M*L), codes: (G, M) integer, codebooks: (M, K, L) -> (Q, G).
    """
    return lookup_distances(adc_tables(queries, codebooks, distance), codes.to(queries.device))


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
