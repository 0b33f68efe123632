"""ADC distances, exact top-k search with ties, and the metrics, against plain loop versions."""
import math

import pytest
import torch

import spq.adc as A
import spq.retrieval as R
from spq.quantization import encode


def adc_loops(queries, codes, books, squared=False):
    m_books, _, length = books.shape
    out = torch.zeros(queries.shape[0], codes.shape[0], dtype=torch.float64)
    for q in range(queries.shape[0]):
        for g in range(codes.shape[0]):
            total = 0.0
            for m in range(m_books):
                sub = queries[q, m * length:(m + 1) * length].double()
                word = books[m, int(codes[g, m])].double()
                d2 = float(((sub - word) ** 2).sum())
                total += d2 if squared else math.sqrt(d2)
            out[q, g] = total
    return out


def map_loops(queries, qlabels, codes, glabels, books, top_k, squared=False):
    dist = adc_loops(queries, codes, books, squared).float()   # float32, as the program ranks
    aps = []
    for q in range(queries.shape[0]):
        order = sorted(range(codes.shape[0]), key=lambda g: (float(dist[q, g]), g))
        if top_k is not None:
            order = order[:top_k]
        hits, precisions = 0, []
        for rank, g in enumerate(order, start=1):
            if qlabels.ndim == 1:
                relevant = int(glabels[g]) == int(qlabels[q])
            else:
                relevant = bool((glabels[g].bool() & qlabels[q].bool()).any())
            if relevant:
                hits += 1
                precisions.append(hits / rank)
        aps.append(sum(precisions) / len(precisions) if precisions else 0.0)
    return sum(aps) / len(aps)


def random_case(seed, q=12, g=90, m_books=4, k_words=8, length=4, classes=5, multi_hot=False):
    gen = torch.Generator().manual_seed(seed)
    books = torch.randn(m_books, k_words, length, generator=gen)
    queries = torch.randn(q, m_books * length, generator=gen)
    codes = torch.randint(0, k_words, (g, m_books), generator=gen).to(torch.uint8)
    if multi_hot:
        qlabels = (torch.rand(q, classes, generator=gen) < 0.3).long()
        glabels = (torch.rand(g, classes, generator=gen) < 0.3).long()
    else:
        qlabels = torch.randint(0, classes, (q,), generator=gen)
        glabels = torch.randint(0, classes, (g,), generator=gen)
    return queries, qlabels, codes, glabels, books


@pytest.mark.parametrize("seed", [0, 1])
def test_adc_distances_match_loops(seed):
    queries, _, codes, _, books = random_case(seed)
    torch.testing.assert_close(A.adc_distances(queries, codes, books).double(),
                               adc_loops(queries, codes, books), atol=1e-5, rtol=1e-5)


def test_adc_distance_to_own_codeword_is_exactly_zero():
    gen = torch.Generator().manual_seed(5)
    books = torch.randn(3, 4, 5, generator=gen) * 10
    codes = torch.tensor([[1, 3, 0]], dtype=torch.uint8)
    query = torch.cat([books[m, int(codes[0, m])] for m in range(3)]).unsqueeze(0)
    assert A.adc_distances(query, codes, books).item() == 0.0


@pytest.mark.parametrize("top_k", [1, 5, 40, None])
@pytest.mark.parametrize("multi_hot", [False, True])
@pytest.mark.parametrize("seed", [0, 7])
def test_map_matches_loops_random(top_k, multi_hot, seed):
    case = random_case(seed, multi_hot=multi_hot)
    assert R.mean_average_precision(*case, top_k=top_k) == pytest.approx(
        map_loops(*case, top_k), abs=1e-5)


@pytest.mark.parametrize("top_k", [1, 5, None])
@pytest.mark.parametrize("multi_hot", [False, True])
def test_map_with_squared_distances_matches_loops(top_k, multi_hot):
    case = random_case(4, multi_hot=multi_hot)
    got = R.mean_average_precision(*case, top_k=top_k, distance="squared")
    assert got == pytest.approx(map_loops(*case, top_k, squared=True), abs=1e-5)
    heavy = random_case(5, q=15, g=60, m_books=1, k_words=2, length=3, classes=3)
    assert R.mean_average_precision(*heavy, top_k=top_k, distance="squared") == pytest.approx(
        map_loops(*heavy, top_k, squared=True), abs=1e-5)


@pytest.mark.parametrize("top_k", [1, 3, 10, 100, None])
def test_map_matches_loops_heavy_ties(top_k):
    # K=2 and one book: only two distinct distances per query, ties everywhere
    case = random_case(3, q=15, g=60, m_books=1, k_words=2, length=3, classes=3)
    assert R.mean_average_precision(*case, top_k=top_k) == pytest.approx(
        map_loops(*case, top_k), abs=1e-5)


def test_map_hand_computed_example():
    books = torch.tensor([[[0.0], [1.0]]])                       # M=1, K=2, L=1
    codes = torch.tensor([[0], [1], [0], [1]], dtype=torch.uint8)
    glabels = torch.tensor([0, 0, 1, 1])
    queries = torch.tensor([[0.2], [0.9]])
    qlabels = torch.tensor([0, 1])
    # query 0 ranks items 0, 2 (tie, index order), 1, 3 -> relevant [1, 0, 1, 0]: AP = (1 + 2/3) / 2
    # query 1 ranks items 1, 3, 0, 2 -> relevant [0, 1, 0, 1]: AP = (1/2 + 2/4) / 2
    aps = R.average_precisions(queries, qlabels, codes, glabels, books, top_k=None)
    torch.testing.assert_close(aps, torch.tensor([5 / 6, 0.5]))
    assert R.mean_average_precision(queries, qlabels, codes, glabels, books, None) == pytest.approx(2 / 3)
    # top 2: query 0 keeps [1, 0] -> 1.0, query 1 keeps [0, 1] -> 0.5
    assert R.mean_average_precision(queries, qlabels, codes, glabels, books, 2) == pytest.approx(0.75)


def test_query_without_relevant_items_scores_zero():
    books = torch.tensor([[[0.0], [1.0]]])
    codes = torch.tensor([[0], [1]], dtype=torch.uint8)
    aps = R.average_precisions(torch.tensor([[0.0]]), torch.tensor([2]), codes,
                               torch.tensor([0, 1]), books, top_k=None)
    assert aps.tolist() == [0.0]


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


def test_map_over_query_chunks(monkeypatch):
    case = random_case(11, q=23, g=50)
    whole = R.mean_average_precision(*case, top_k=10)
    monkeypatch.setattr(A, "MAX_DISTANCES_PER_CHUNK", 50 * 4)    # 4 queries per chunk
    assert R.mean_average_precision(*case, top_k=10) == pytest.approx(whole, abs=1e-7)


def test_codes_from_encode_rank_their_own_descriptor_first():
    gen = torch.Generator().manual_seed(2)
    books = torch.randn(4, 16, 4, generator=gen)
    x = torch.randn(30, 16, generator=gen)
    codes = encode(x, books)
    dist = A.adc_distances(x, codes, books)
    # an item's own code is at least as close as any other, since each book picks the nearest word
    assert (dist.diagonal().unsqueeze(1) <= dist + 1e-6).all()


def test_label_shape_errors():
    queries, qlabels, codes, glabels, books = random_case(0)
    with pytest.raises(ValueError, match="gallery labels"):
        R.mean_average_precision(queries, qlabels, codes, glabels[:-1], books)


def ranked_lists_loops(queries, qlabels, codes, glabels, books):
    """Per query: the whole gallery's relevance (0/1) in (distance, index) order."""
    dist = adc_loops(queries, codes, books).float()
    out = []
    for q in range(queries.shape[0]):
        order = sorted(range(codes.shape[0]), key=lambda g: (float(dist[q, g]), g))
        if qlabels.ndim == 1:
            out.append([int(int(glabels[g]) == int(qlabels[q])) for g in order])
        else:
            out.append([int(bool((glabels[g].bool() & qlabels[q].bool()).any())) for g in order])
    return out


@pytest.mark.parametrize("multi_hot", [False, True])
def test_precision_at_k_matches_loops(multi_hot):
    case = random_case(21, q=10, g=70, multi_hot=multi_hot)
    lists = ranked_lists_loops(*case)
    got = R.precision_at_k(*case, ks=[1, 3, 10, 70, 500])
    assert list(got) == [1, 3, 10, 70]                                  # 500 is capped at G
    for k, value in got.items():
        assert value == pytest.approx(sum(sum(r[:k]) / k for r in lists) / len(lists), abs=1e-9)


@pytest.mark.parametrize("multi_hot", [False, True])
def test_precision_recall_curve_matches_loops(multi_hot):
    case = random_case(22, q=9, g=60, classes=6, multi_hot=multi_hot)
    lists = ranked_lists_loops(*case)
    curve = R.precision_recall_curve(*case)
    assert curve["cutoffs"] == [1, 2, 5, 10, 20, 50, 60]
    with_relevant = [r for r in lists if sum(r)]
    assert curve["queries_with_relevant"] == len(with_relevant)
    for i, n in enumerate(curve["cutoffs"]):
        assert curve["precision"][i] == pytest.approx(sum(sum(r[:n]) / n for r in lists) / len(lists))
        assert curve["recall"][i] == pytest.approx(
            sum(sum(r[:n]) / sum(r) for r in with_relevant) / len(with_relevant))


def test_precision_recall_on_heavy_ties():
    case = random_case(23, q=8, g=40, m_books=1, k_words=2, length=2, classes=3)
    lists = ranked_lists_loops(*case)
    curve = R.precision_recall_curve(*case, cutoffs=[3, 17, 40])
    for i, n in enumerate([3, 17, 40]):
        assert curve["precision"][i] == pytest.approx(sum(sum(r[:n]) / n for r in lists) / len(lists))


def test_recall_cutoffs():
    assert R.recall_cutoffs(1) == [1]
    assert R.recall_cutoffs(10) == [1, 2, 5, 10]
    assert R.recall_cutoffs(50000) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000,
                                       10000, 20000, 50000]


@pytest.mark.parametrize("multi_hot", [False, True])
def test_retrieval_metrics_agree_with_each_metric_and_with_loops(multi_hot):
    case = random_case(24, q=30, g=200, multi_hot=multi_hot)
    m = R.retrieval_metrics(*case, top_k=20, ks=[1, 5, 20])
    assert m["mAP"] == pytest.approx(R.mean_average_precision(*case, top_k=20), abs=1e-6)
    assert m["mAP_all"] == pytest.approx(R.mean_average_precision(*case, top_k=None), abs=1e-6)
    assert m["precision_at_k"] == pytest.approx(R.precision_at_k(*case, ks=[1, 5, 20]))
    # precision_recall_curve is retrieval_metrics underneath: both against the plain loops
    lists = ranked_lists_loops(*case)
    with_relevant = [r for r in lists if sum(r)]
    # multi-hot: some queries have no relevant item at all, and recall averages over the others
    assert (0 < len(with_relevant) < 30) if multi_hot else len(with_relevant) == 30

    def ap(r, k):                                   # AP@k of one ranked relevance list
        found, precisions = 0, []
        for rank, rel in enumerate(r[:k], start=1):
            if rel:
                found += 1
                precisions.append(found / rank)
        return sum(precisions) / len(precisions) if precisions else 0.0
    assert m["mAP"] == pytest.approx(sum(ap(r, 20) for r in lists) / 30, abs=1e-6)
    assert m["mAP_all"] == pytest.approx(sum(ap(r, 200) for r in lists) / 30, abs=1e-6)
    for k in [1, 5, 20]:
        assert m["precision_at_k"][k] == pytest.approx(sum(sum(r[:k]) / k for r in lists) / 30, abs=1e-9)
    cutoffs = [1, 2, 5, 10, 20, 50, 100, 200]
    expected = {"cutoffs": cutoffs,
                "precision": [sum(sum(r[:n]) / n for r in lists) / 30 for n in cutoffs],
                "recall": [sum(sum(r[:n]) / sum(r) for r in with_relevant) / len(with_relevant)
                           for n in cutoffs],
                "queries_with_relevant": len(with_relevant)}
    for curve in (m["precision_recall"], R.precision_recall_curve(*case)):
        assert curve["cutoffs"] == expected["cutoffs"]
        assert curve["precision"] == pytest.approx(expected["precision"], abs=1e-9)
        assert curve["recall"] == pytest.approx(expected["recall"], abs=1e-9)
        assert curve["queries_with_relevant"] == expected["queries_with_relevant"]
    assert m["queries_without_relevant"] == 30 - len(with_relevant)


def test_queries_without_relevant_items_are_counted():
    queries, qlabels, codes, glabels, books = random_case(25, q=6, g=50, classes=3)
    qlabels[[1, 4]] = 7                                                 # a class no gallery item has
    m = R.retrieval_metrics(queries, qlabels, codes, glabels, books, top_k=10)
    assert m["queries_without_relevant"] == 2
    assert m["precision_recall"]["queries_with_relevant"] == 4
    assert m["precision_recall"]["recall"][-1] == pytest.approx(1.0)
