"""ADC distances (`spq.retrieval.distances`): against plain loops, exact at a codeword, summed
in float32 in book order, squared as FAISS ranks, and those a search ranks by."""
import pytest
import torch

import spq.retrieval.distances as D
import spq.retrieval.topk as A
from reference import adc_loops, coded_case as case, loop_distances, random_case


@pytest.mark.parametrize("seed", [0, 1])
def test_adc_distances_match_loops(seed):
    queries, _, codes, _, books = random_case(seed)
    torch.testing.assert_close(D.adc_distances(queries, codes, books).double(),
                               adc_loops(queries, codes, books), atol=1e-5, rtol=1e-5)


def test_adc_distance_to_own_codeword_is_exactly_zero():
    gen = torch.Generator().manual_seed(5)
    books = torch.randn(3, 4, 5, generator=gen) * 10
    codes = torch.tensor([[1, 3, 0]], dtype=torch.uint8)
    query = torch.cat([books[m, int(codes[0, m])] for m in range(3)]).unsqueeze(0)
    assert D.adc_distances(query, codes, books).item() == 0.0


@pytest.mark.parametrize("m_books,k_words,q", [(8, 16, 5), (16, 16, 3), (3, 256, 130), (1, 2, 1)])
def test_distances_are_float32_sums_in_book_order(m_books, k_words, q):
    """Bit for bit: the embedding_bag sums, the listed pairs' sums and plain loops."""
    queries, codes, books = case(15, q, 40, m_books, k_words)
    tables = D.adc_tables(queries, books)
    dist = D.lookup_distances(tables, codes)
    assert torch.equal(dist, loop_distances(tables, codes))
    rows = torch.arange(q).repeat_interleave(40)
    pairs = D.pair_distances(tables, rows, D.book_offsets(codes, k_words).repeat(q, 1))
    assert torch.equal(pairs.view(q, 40), dist)


@pytest.mark.parametrize("seed", [0, 1])
def test_squared_distance_is_the_distance_to_the_reconstruction(seed):
    queries, codes, books = case(seed, 4, 30)
    dist = D.adc_distances(queries, codes, books, "squared").double()
    torch.testing.assert_close(dist, adc_loops(queries, codes, books, squared=True), rtol=1e-5, atol=1e-5)
    recon = torch.stack([torch.cat([books[m, int(c[m])] for m in range(8)]) for c in codes])
    torch.testing.assert_close(dist, torch.cdist(queries.double(), recon.double()) ** 2,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("distance", ["euclidean", "squared"])
def test_result_distances_are_the_ranking_distances(distance):
    queries, codes, books = case(12, 6, 700)
    idx = torch.cat([i for _, i in A.search(queries, codes, books, 25, distance)])
    full = D.lookup_distances(D.adc_tables(queries, books, distance), codes)
    got = D.result_distances(queries, codes, books, idx, distance)
    assert torch.equal(got, full.gather(1, idx))
    assert (got[:, 1:] >= got[:, :-1]).all()


def test_unknown_distance_is_refused():
    queries, codes, books = case(13, 2, 10)
    with pytest.raises(ValueError, match="euclidean, squared"):
        D.adc_distances(queries, codes, books, "cosine")
