"""spq.retrieval.topk.search: the thresholded exact top-k equals a stable sort of every whole row."""
import pytest
import torch

import spq.retrieval.distances as D
import spq.retrieval.topk as A
from reference import coded_case as case


@pytest.fixture(autouse=True)
def threshold_even_for_small_cases(monkeypatch):
    """The small cases here must exercise the threshold path, which a sample as large as
    the gallery, or fewer than MIN_QUERIES queries, would skip."""
    monkeypatch.setattr(A, "SAMPLE", 100)
    monkeypatch.setattr(A, "SAMPLE_IN_TOP_K", 5)
    monkeypatch.setattr(A, "MIN_QUERIES", 0)


def reference_top_k(queries, codes, books, k):
    """Whole rows of exact distances, stably sorted: (distance, gallery index) order."""
    dist = D.lookup_distances(D.adc_tables(queries, books), codes)
    return torch.sort(dist, dim=1, stable=True).indices[:, :k]


def searched(queries, codes, books, k):
    return torch.cat([idx for _, idx in A.search(queries, codes, books, k)])


@pytest.mark.parametrize("seed,q,g,k", [(0, 20, 400, 10), (1, 7, 3000, 100), (2, 33, 5000, 50)])
def test_search_equals_stable_sort(seed, q, g, k):
    queries, codes, books = case(seed, q, g)
    assert A.plan(g, k, q).threshold
    assert torch.equal(searched(queries, codes, books, k), reference_top_k(queries, codes, books, k))


@pytest.mark.parametrize("m_books,k_words", [(1, 2), (2, 2), (3, 4)])
def test_search_heavy_ties(m_books, k_words):
    # few distinct codes: hundreds of items share each one, so exact ties everywhere
    queries, codes, books = case(3, 25, 4000, m_books, k_words)
    for k in [1, 7, 100, 400]:
        assert torch.equal(searched(queries, codes, books, k), reference_top_k(queries, codes, books, k))


def test_search_collided_codes_of_a_trained_like_gallery():
    # a gallery of copies: every item's code appears 50 times, interleaved
    queries, codes, books = case(4, 16, 100)
    codes = codes.repeat(50, 1)
    for k in [1, 49, 50, 51, 500]:
        assert torch.equal(searched(queries, codes, books, k), reference_top_k(queries, codes, books, k))


@pytest.mark.parametrize("block", [3, 4])       # % and the power-of-two bit masks
def test_search_chunk_boundaries(monkeypatch, block):
    queries, codes, books = case(5, 41, 2777)
    expected = reference_top_k(queries, codes, books, 30)
    monkeypatch.setattr(A, "QUERY_BLOCK", block)
    monkeypatch.setattr(A, "DISTANCE_BLOCK", 1000 * block)              # 1000-item gallery chunks
    monkeypatch.setattr(A, "SAMPLE", 300)                                # a sampled threshold:
    monkeypatch.setattr(A, "SAMPLE_IN_TOP_K", 5)                         # 463 of the 2777 items
    p = A.plan(2777, 30)
    assert (p.threshold, p.query_block, p.gallery_chunk) == (True, block, 1000)
    chunks = list(A.search(queries, codes, books, 30))
    assert [start for start, _ in chunks] == list(range(0, 41, block))
    assert torch.equal(torch.cat([idx for _, idx in chunks]), expected)


@pytest.mark.parametrize("q,g,k", [(1, 500, 5), (6, 1, 1), (6, 1, 1000), (1, 1, 3)])
def test_search_one_query_or_one_item(q, g, k):
    queries, codes, books = case(6, q, g)
    out = searched(queries, codes, books, k)
    assert out.shape == (q, min(k, g))
    assert torch.equal(out, reference_top_k(queries, codes, books, k))


def test_search_sample_is_capped(monkeypatch):
    # a small k in a large gallery would ask for a sample of most of it: capped instead
    queries, codes, books = case(10, 10, 3000)
    monkeypatch.setattr(A, "MAX_SAMPLE", 256)
    monkeypatch.setattr(A, "SAMPLE", 100)
    seen = []
    distances = A.bag_distances
    monkeypatch.setattr(A, "bag_distances", lambda o, w: seen.append(len(o)) or distances(o, w))
    assert torch.equal(searched(queries, codes, books, 5), reference_top_k(queries, codes, books, 5))
    assert seen[:2] == [256, 3000]                          # the sample, then the gallery


def test_search_falls_back_to_exact_rows(monkeypatch):
    # a threshold that keeps nothing: every row must be ranked from its whole exact row
    queries, codes, books = case(7, 9, 2000)
    monkeypatch.setattr(A, "_sampled_limit", lambda w, s, r: torch.full((w.shape[1],), -1, dtype=torch.int32))
    assert torch.equal(searched(queries, codes, books, 20), reference_top_k(queries, codes, books, 20))


def test_search_mixes_thresholded_and_exact_rows(monkeypatch):
    # every third query's threshold keeps nothing: those rows alone are ranked exactly
    queries, codes, books = case(9, 12, 2000)
    limits = A._sampled_limit

    def some_too_low(weights, sample, rank):
        out = limits(weights, sample, rank)
        out[::3] = -1
        return out

    monkeypatch.setattr(A, "_sampled_limit", some_too_low)
    assert torch.equal(searched(queries, codes, books, 20), reference_top_k(queries, codes, books, 20))


@pytest.mark.parametrize("chunk", [500, 6000])
def test_search_ranks_masses_of_ties_from_whole_rows(monkeypatch, chunk):
    # two codes: about 3000 items tie at each query's smallest distance, more than
    # max_candidates (2052 at k=1), so those queries are dropped (after the chunk that
    # overflowed them, with several chunks) and ranked from whole rows
    queries, codes, books = case(14, 5, 6000, m_books=1, k_words=2)
    monkeypatch.setattr(A, "DISTANCE_BLOCK", chunk * A.QUERY_BLOCK)
    monkeypatch.setattr(A, "SAMPLE_IN_TOP_K", 0.1)                      # a 600-item sample
    assert A.plan(6000, 1, 5).threshold
    redone = []
    exact = A._exact_top_k
    monkeypatch.setattr(A, "_exact_top_k", lambda w, o, k, r: redone.append(w.shape[1]) or exact(w, o, k, r))
    assert torch.equal(searched(queries, codes, books, 1), reference_top_k(queries, codes, books, 1))
    assert redone == [5]


@pytest.mark.parametrize("seed,span", [(0, 2 ** 10), (1, 2 ** 30)])
def test_pair_keys_order_by_query_then_distance(seed, span):
    # a narrow span of distance bits gives int32 keys, a wide one int64 keys
    gen = torch.Generator().manual_seed(seed)
    rows = torch.randint(0, 100, (5000,), generator=gen)
    dists = (torch.randint(0, span, (5000,), generator=gen) + 2 ** 29).int()
    key, shift = A._pair_keys(rows, dists, 100)
    assert key.dtype == (torch.int32 if span < 2 ** 24 else torch.int64)
    order = torch.sort(key, stable=True).indices
    expected = sorted(range(5000), key=lambda i: (int(rows[i]), int(dists[i]), i))
    assert order.tolist() == expected
    assert torch.equal(key[order] >> shift, rows[order].to(key.dtype))


def test_search_with_exact_matches_spans_many_binades():
    # queries that are reconstructions of gallery items: distances from 0 to large,
    # too wide a span for int32 keys
    queries, codes, books = case(16, 10, 3000)
    recon = torch.cat([books[m, codes[:10, m].long()] for m in range(8)], dim=1)   # (10, 32)
    queries = torch.cat([recon, queries])
    out = searched(queries, codes, books, 20)
    assert torch.equal(out, reference_top_k(queries, codes, books, 20))
    assert torch.equal(out[:10, 0], torch.arange(10))


def test_search_rejects_non_finite_queries():
    queries, codes, books = case(8, 3, 100)
    queries[1, 2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        searched(queries, codes, books, 5)


def test_whole_rows_for_few_queries_or_a_sample_as_large_as_the_gallery(monkeypatch):
    monkeypatch.setattr(A, "MIN_QUERIES", 8)
    queries, codes, books = case(17, 8, 3000)
    assert A.plan(3000, 10, 8).threshold and not A.plan(3000, 10, 7).threshold
    assert not A.plan(3000, 1, 8).threshold                  # a sample of 15,000 > 3,000 items
    for q in (1, 7, 8):
        assert torch.equal(searched(queries[:q], codes, books, 10), reference_top_k(queries[:q], codes, books, 10))


@pytest.mark.parametrize("k", [1, 1000, 10_000, 125_000])
def test_plan_bounds_memory_at_a_million_items(k):
    g = 1_000_000
    p = A.plan(g, k)
    assert p.threshold
    assert p.query_block * p.gallery_chunk <= A.DISTANCE_BLOCK
    assert p.query_block * p.max_candidates <= A.CANDIDATES or p.query_block == 1
    assert p.exact_rows * g <= A.MAX_DISTANCES_PER_CHUNK
    whole = A.plan(g, g)                                     # whole-gallery ranking
    assert not whole.threshold and whole.exact_rows == 4


@pytest.mark.parametrize("seed,q,g,k", [(0, 20, 400, 10), (2, 33, 5000, 50)])
def test_squared_search_equals_stable_sort(seed, q, g, k):
    queries, codes, books = case(seed, q, g, 3, 4)          # few codes: ties everywhere
    dist = D.lookup_distances(D.adc_tables(queries, books, "squared"), codes)
    expected = torch.sort(dist, dim=1, stable=True).indices[:, :k]
    out = torch.cat([idx for _, idx in A.search(queries, codes, books, k, "squared")])
    assert torch.equal(out, expected)


@pytest.mark.parametrize("q", [4, 128])
def test_no_query_is_ranked_from_whole_rows_needlessly(monkeypatch, q):
    # a generous threshold keeps at least k items for every query: none is redone,
    # the block's last query included (its run of pairs ends the sorted keys)
    monkeypatch.setattr(A, "SPREAD", 8.0)
    queries, codes, books = case(18, q, 3000)
    redone = []
    exact = A._exact_top_k
    monkeypatch.setattr(A, "_exact_top_k", lambda w, o, k, r: redone.append(w.shape[1]) or exact(w, o, k, r))
    assert torch.equal(searched(queries, codes, books, 20), reference_top_k(queries, codes, books, 20))
    assert redone == []


@pytest.mark.parametrize("k", [1, 2, 7, 20, 25])
def test_ranked_top_k_equals_stable_sort(k):
    gen = torch.Generator().manual_seed(k)
    dist = torch.randint(0, 4, (9, 20), generator=gen).float()   # many exact ties
    expected = torch.sort(dist, dim=1, stable=True).indices[:, :k]
    assert torch.equal(A.ranked_top_k(dist, k), expected)


def test_ranked_top_k_mixed_tied_and_untied_rows():
    gen = torch.Generator().manual_seed(4)
    dist = torch.rand(12, 40, generator=gen)
    dist[::3] = torch.randint(0, 3, (4, 40), generator=gen).float()     # every third row heavily tied
    for k in [1, 5, 39]:
        assert torch.equal(A.ranked_top_k(dist, k), torch.sort(dist, dim=1, stable=True).indices[:, :k])
