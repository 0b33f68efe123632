"""ADC distances, exact top-k search with ties, and the metrics, against plain loop versions."""
import pytest
import torch

import spq.retrieval.distances as D
import spq.retrieval.metrics as R
import spq.retrieval.topk as A
from reference import map_loops, random_case, ranked_lists_loops
from spq.method.quantization import encode


@pytest.mark.parametrize("top_n", [1, 5, 40, None])
@pytest.mark.parametrize("multi_hot", [False, True])
@pytest.mark.parametrize("seed", [0, 7])
def test_map_matches_loops_random(top_n, multi_hot, seed):
    case = random_case(seed, multi_hot=multi_hot)
    assert R.mean_average_precision(*case, top_n=top_n) == pytest.approx(
        map_loops(*case, top_n), abs=1e-5)


@pytest.mark.parametrize("top_n", [1, 5, None])
@pytest.mark.parametrize("multi_hot", [False, True])
def test_map_with_squared_distances_matches_loops(top_n, multi_hot):
    case = random_case(4, multi_hot=multi_hot)
    got = R.mean_average_precision(*case, top_n=top_n, distance="squared")
    assert got == pytest.approx(map_loops(*case, top_n, squared=True), abs=1e-5)
    heavy = random_case(5, q=15, g=60, m_books=1, k_words=2, length=3, classes=3)
    assert R.mean_average_precision(*heavy, top_n=top_n, distance="squared") == pytest.approx(
        map_loops(*heavy, top_n, squared=True), abs=1e-5)


@pytest.mark.parametrize("top_n", [1, 3, 10, 100, None])
def test_map_matches_loops_heavy_ties(top_n):
    # K=2 and one book: only two distinct distances per query, ties everywhere
    case = random_case(3, q=15, g=60, m_books=1, k_words=2, length=3, classes=3)
    assert R.mean_average_precision(*case, top_n=top_n) == pytest.approx(
        map_loops(*case, top_n), abs=1e-5)


def test_map_hand_computed_example():
    books = torch.tensor([[[0.0], [1.0]]])                       # M=1, K=2, L=1
    codes = torch.tensor([[0], [1], [0], [1]], dtype=torch.uint8)
    glabels = torch.tensor([0, 0, 1, 1])
    queries = torch.tensor([[0.2], [0.9]])
    qlabels = torch.tensor([0, 1])
    # query 0 ranks items 0, 2 (tie, index order), 1, 3 -> relevant [1, 0, 1, 0]: AP = (1 + 2/3) / 2
    # query 1 ranks items 1, 3, 0, 2 -> relevant [0, 1, 0, 1]: AP = (1/2 + 2/4) / 2
    aps = R.average_precisions(queries, qlabels, codes, glabels, books, top_n=None)
    torch.testing.assert_close(aps, torch.tensor([5 / 6, 0.5]))
    assert R.mean_average_precision(queries, qlabels, codes, glabels, books, None) == pytest.approx(2 / 3)
    # top 2: query 0 keeps [1, 0] -> 1.0, query 1 keeps [0, 1] -> 0.5
    assert R.mean_average_precision(queries, qlabels, codes, glabels, books, 2) == pytest.approx(0.75)


def test_query_without_relevant_items_scores_zero():
    books = torch.tensor([[[0.0], [1.0]]])
    codes = torch.tensor([[0], [1]], dtype=torch.uint8)
    aps = R.average_precisions(torch.tensor([[0.0]]), torch.tensor([2]), codes,
                               torch.tensor([0, 1]), books, top_n=None)
    assert aps.tolist() == [0.0]


def test_map_over_query_chunks(monkeypatch):
    case = random_case(11, q=23, g=50)
    whole = R.mean_average_precision(*case, top_n=10)
    monkeypatch.setattr(A, "MAX_DISTANCES_PER_CHUNK", 50 * 4)    # 4 queries per chunk
    assert R.mean_average_precision(*case, top_n=10) == pytest.approx(whole, abs=1e-7)


def test_codes_from_encode_rank_their_own_descriptor_first():
    gen = torch.Generator().manual_seed(2)
    books = torch.randn(4, 16, 4, generator=gen)
    x = torch.randn(30, 16, generator=gen)
    codes = encode(x, books)
    dist = D.adc_distances(x, codes, books)
    # an item's own code is at least as close as any other, since each book picks the nearest word
    assert (dist.diagonal().unsqueeze(1) <= dist + 1e-6).all()


def test_label_shape_errors():
    queries, qlabels, codes, glabels, books = random_case(0)
    with pytest.raises(ValueError, match="gallery labels"):
        R.mean_average_precision(queries, qlabels, codes, glabels[:-1], books)


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
    m = R.retrieval_metrics(*case, top_n=20, ks=[1, 5, 20])
    assert m["mAP"] == pytest.approx(R.mean_average_precision(*case, top_n=20), abs=1e-6)
    assert m["mAP_all"] == pytest.approx(R.mean_average_precision(*case, top_n=None), abs=1e-6)
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
    m = R.retrieval_metrics(queries, qlabels, codes, glabels, books, top_n=10)
    assert m["queries_without_relevant"] == 2
    assert m["precision_recall"]["queries_with_relevant"] == 4
    assert m["precision_recall"]["recall"][-1] == pytest.approx(1.0)
