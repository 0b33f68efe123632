"""spq.adc.search: the filtered exact top-k equals a stable sort of every whole row."""
import pytest
import torch

import spq.adc as A
from spq.quantization import encode


@pytest.fixture(autouse=True)
def filter_even_for_few_queries(monkeypatch):
    """The small cases here must exercise the filtered path, which few queries skip."""
    monkeypatch.setattr(A, "MIN_QUERIES_PER_WORD", 0)


def reference_top_k(queries, codes, books, k):
    """Whole rows of exact distances, stably sorted: (distance, gallery index) order."""
    dist = A.lookup_distances(A.adc_tables(queries, books), codes)
    return torch.sort(dist, dim=1, stable=True).indices[:, :k]


def searched(queries, codes, books, k):
    return torch.cat([idx for _, idx in A.search(queries, codes, books, k)])


def case(seed, q, g, m_books=8, k_words=16, length=4, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    books = torch.randn(m_books, k_words, length, generator=gen) * scale
    queries = torch.randn(q, m_books * length, generator=gen) * scale
    codes = encode(torch.randn(g, m_books * length, generator=gen) * scale, books)
    return queries, codes, books


@pytest.mark.parametrize("seed,q,g,k", [(0, 20, 400, 10), (1, 7, 3000, 100), (2, 33, 5000, 50)])
def test_search_equals_stable_sort(seed, q, g, k):
    queries, codes, books = case(seed, q, g)
    assert A.plan(g, 8, 16, k, torch.device("cpu")).filtered
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


def test_search_chunk_boundaries(monkeypatch):
    queries, codes, books = case(5, 41, 2777)
    expected = reference_top_k(queries, codes, books, 30)
    monkeypatch.setattr(A, "ONE_HOT_BYTES", 8 * 16 * 2 * 1000)          # 1000-item gallery chunks
    monkeypatch.setattr(A, "DISTANCE_BLOCK_BYTES", 1000 * 2 * 3)         # 3 queries per block
    monkeypatch.setattr(A, "CANDIDATE_BYTES", (4 * 30 + 2048) * A.BYTES_PER_CANDIDATE * 8)
    monkeypatch.setattr(A, "SAMPLE", 300)                                # a sampled threshold:
    monkeypatch.setattr(A, "SAMPLE_IN_TOP_K", 5)                         # 463 of the 2777 items
    p = A.plan(2777, 8, 16, 30, torch.device("cpu"))
    if p.dtype == torch.bfloat16:
        assert (p.gallery_chunk, p.query_block, p.query_chunk) == (1000, 3, 8)
    chunks = list(A.search(queries, codes, books, 30))
    assert [start for start, _ in chunks] == list(range(0, 41, p.query_chunk))
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
    one_hot = A._one_hot
    monkeypatch.setattr(A, "_one_hot", lambda c, k, d: seen.append(len(c)) or one_hot(c, k, d))
    assert torch.equal(searched(queries, codes, books, 5), reference_top_k(queries, codes, books, 5))
    assert seen[0] == 256                                   # the sample, then the gallery
    assert seen[1] == 3000


def test_search_falls_back_to_exact_rows(monkeypatch):
    # a threshold that keeps nothing: every row must be ranked from its whole exact row
    queries, codes, books = case(7, 9, 2000)
    monkeypatch.setattr(A, "_limits", lambda tables, tau, dtype: tau * 0 - 1)
    assert torch.equal(searched(queries, codes, books, 20), reference_top_k(queries, codes, books, 20))


def test_search_mixes_filtered_and_exact_rows(monkeypatch):
    # every third query's threshold keeps nothing: those rows alone are ranked exactly
    queries, codes, books = case(9, 12, 2000)
    limits = A._limits

    def some_too_low(tables, tau, dtype):
        out = limits(tables, tau, dtype)
        out[::3] = -1
        return out

    monkeypatch.setattr(A, "_limits", some_too_low)
    assert torch.equal(searched(queries, codes, books, 20), reference_top_k(queries, codes, books, 20))


@pytest.mark.parametrize("seed,scale", [(0, 1.0), (1, 1e-3), (2, 1e3), (3, 1.0)])
def test_approximate_limit_keeps_the_exact_top_k(seed, scale):
    """The proven margin: every item of the exact top k is within the approximate limit."""
    queries, codes, books = case(seed, 30, 3000, scale=scale)
    k = 50
    tables = A.adc_tables(queries, books)
    dtype = A.approximate_dtype(torch.device("cpu"))
    shifted = (tables - tables.amin(2, keepdim=True)).flatten(1).to(dtype)
    approx = shifted @ A._one_hot(codes, 16, dtype)                             # (Q, G)
    tau = approx.float().kthvalue(k, dim=1).values
    limit = A._limits(tables, tau, dtype)
    top = reference_top_k(queries, codes, books, k)
    assert A._within(approx, limit).gather(1, top).all()
    assert (limit <= tau * 1.05 + 1e-3 * scale).all()      # and the margin stays small


def test_search_rejects_non_finite_queries():
    queries, codes, books = case(8, 3, 100)
    queries[1, 2] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        searched(queries, codes, books, 5)


@pytest.mark.parametrize("m_books,k_words", [(8, 16), (16, 16), (4, 256)])
def test_plan_bounds_memory_at_a_million_items(m_books, k_words):
    g, k = 1_000_000, 1000
    p = A.plan(g, m_books, k_words, k, torch.device("cpu"))
    size = torch.finfo(p.dtype).bits // 8
    assert p.filtered
    assert m_books * k_words * p.gallery_chunk * size <= A.ONE_HOT_BYTES
    assert p.query_block * p.gallery_chunk * size <= A.DISTANCE_BLOCK_BYTES
    assert p.query_chunk * p.max_candidates * A.BYTES_PER_CANDIDATE <= A.CANDIDATE_BYTES
    assert p.exact_rows * g <= A.MAX_DISTANCES_PER_CHUNK
    whole = A.plan(g, m_books, k_words, g, torch.device("cpu"))         # whole-gallery ranking
    assert not whole.filtered and whole.exact_rows == 8


@pytest.mark.parametrize("q", [1, 5])
def test_few_queries_skip_the_filter_with_the_same_ranking(monkeypatch, q):
    monkeypatch.setattr(A, "MIN_QUERIES_PER_WORD", 3)
    queries, codes, books = case(11, q, 3000)
    assert not A.plan(3000, 8, 16, 10, torch.device("cpu"), num_queries=q).filtered
    assert A.plan(3000, 8, 16, 10, torch.device("cpu"), num_queries=48).filtered
    assert torch.equal(searched(queries, codes, books, 10), reference_top_k(queries, codes, books, 10))


def squared_loops(queries, codes, books):
    """Plainly: sum over books of the squared distance to the selected codeword."""
    m_books, _, length = books.shape
    out = torch.zeros(len(queries), len(codes), dtype=torch.float64)
    for i, x in enumerate(queries.double()):
        for j, code in enumerate(codes):
            for m in range(m_books):
                sub = x[m * length:(m + 1) * length]
                out[i, j] += ((sub - books[m, int(code[m])].double()) ** 2).sum()
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_squared_distance_is_the_distance_to_the_reconstruction(seed):
    queries, codes, books = case(seed, 4, 30)
    dist = A.adc_distances(queries, codes, books, "squared").double()
    torch.testing.assert_close(dist, squared_loops(queries, codes, books), rtol=1e-5, atol=1e-5)
    recon = torch.stack([torch.cat([books[m, int(c[m])] for m in range(8)]) for c in codes])
    torch.testing.assert_close(dist, torch.cdist(queries.double(), recon.double()) ** 2,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed,q,g,k", [(0, 20, 400, 10), (2, 33, 5000, 50)])
def test_squared_search_equals_stable_sort(seed, q, g, k):
    queries, codes, books = case(seed, q, g, 3, 4)          # few codes: ties everywhere
    dist = A.lookup_distances(A.adc_tables(queries, books, "squared"), codes)
    expected = torch.sort(dist, dim=1, stable=True).indices[:, :k]
    out = torch.cat([idx for _, idx in A.search(queries, codes, books, k, "squared")])
    assert torch.equal(out, expected)


@pytest.mark.parametrize("distance", ["euclidean", "squared"])
def test_result_distances_are_the_ranking_distances(distance):
    queries, codes, books = case(12, 6, 700)
    idx = torch.cat([i for _, i in A.search(queries, codes, books, 25, distance)])
    full = A.lookup_distances(A.adc_tables(queries, books, distance), codes)
    got = A.result_distances(queries, codes, books, idx, distance)
    assert torch.equal(got, full.gather(1, idx))
    assert (got[:, 1:] >= got[:, :-1]).all()


def test_unknown_distance_is_refused():
    queries, codes, books = case(13, 2, 10)
    with pytest.raises(ValueError, match="euclidean, squared"):
        A.adc_distances(queries, codes, books, "cosine")
