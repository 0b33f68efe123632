"""Time mAP@Top_N under ADC on the CIFAR-10 protocol's sizes; prints one JSON line.

    python bench/eval_speed.py [--device cpu|cuda] [--queries 10000] [--gallery 50000]

Random descriptors and a random codebook (M=8, K=16, L=16 by default). Figures:
seconds for the whole mAP computation (codes given), the same for 64 bits (M=16),
the per-query seconds of a plain per-query implementation (Python loops over books
and codewords for each query, as the authors' evaluation does) timed on a slice of
the queries, the ratio, and the share of time spent ranking with ties resolved by
whole-row masks for every row versus only for rows tied at the k-th value.
"""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spq import retrieval as R  # noqa: E402
from spq.quantization import encode  # noqa: E402


def plain_map(queries, qlabels, codes, glabels, books, top_k):
    """Per query: a table by loops over books and codewords, all distances, a full sort."""
    m_books, k_words, length = books.shape
    codes = codes.long()
    aps = []
    for q in range(queries.shape[0]):
        table = torch.zeros(m_books, k_words)
        for m in range(m_books):
            sub = queries[q, m * length:(m + 1) * length]
            for k in range(k_words):
                table[m, k] = (sub - books[m, k]).norm()
        dist = sum(table[m][codes[:, m]] for m in range(m_books))
        order = torch.sort(dist, stable=True).indices[:top_k]
        rel = (glabels[order] == qlabels[q]).float()
        prec = rel.cumsum(0) / torch.arange(1, len(rel) + 1)
        aps.append(float((prec * rel).sum() / rel.sum().clamp_min(1)))
    return sum(aps) / len(aps)


def rank_masking_every_row(dist, k):
    """The ranking before the k+1 check: whole-row masks for every row, then ordering."""
    idx = R._first_k_by_index(dist, k)
    return idx.gather(1, torch.sort(dist.gather(1, idx), dim=1, stable=True).indices)


def case(q, g, m_books, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    books = torch.randn(m_books, 16, 16, generator=gen)
    queries = torch.randn(q, m_books * 16, generator=gen)
    codes = encode(torch.randn(g, m_books * 16, generator=gen), books)
    qlabels, glabels = torch.randint(0, 10, (q,), generator=gen), torch.randint(0, 10, (g,), generator=gen)
    return [t.to(device) for t in (queries, qlabels, codes, glabels, books)]


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--queries", type=int, default=10000)
    ap.add_argument("--gallery", type=int, default=50000)
    ap.add_argument("--top_n", type=int, default=1000)
    ap.add_argument("--plain_queries", type=int, default=50, help="queries timed with the plain loops")
    a = ap.parse_args()
    device = torch.device(a.device)

    data32 = case(a.queries, a.gallery, 8, device)
    map32, sec32 = timed(lambda: R.mean_average_precision(*data32, top_k=a.top_n), device)
    data64 = case(a.queries, a.gallery, 16, device, seed=1)
    _, sec64 = timed(lambda: R.mean_average_precision(*data64, top_k=a.top_n), device)

    cpu = [t.cpu() for t in data32]
    sliced = [cpu[0][:a.plain_queries], cpu[1][:a.plain_queries], *cpu[2:]]
    plain, plain_sec = timed(lambda: plain_map(*sliced, a.top_n), torch.device("cpu"))
    fast_slice = R.mean_average_precision(*[t.to(device) for t in sliced], top_k=a.top_n)

    dist = R.adc_distances(data32[0][:1000], data32[2], data32[4])
    _, rank_sec = timed(lambda: R.ranked_top_k(dist, a.top_n), device)
    _, masks_sec = timed(lambda: rank_masking_every_row(dist, a.top_n), device)

    per_query_fast = sec32 / a.queries
    per_query_plain = plain_sec / a.plain_queries
    print(json.dumps({
        "device": str(device), "threads": torch.get_num_threads(),
        "queries": a.queries, "gallery": a.gallery, "top_n": a.top_n,
        "seconds_32bit": round(sec32, 3), "seconds_64bit": round(sec64, 3), "mAP_32bit": round(map32, 5),
        "plain_seconds_per_query": round(per_query_plain, 6), "seconds_per_query": round(per_query_fast, 7),
        "speedup_vs_plain": round(per_query_plain / per_query_fast, 1),
        "plain_agrees": abs(plain - fast_slice) < 1e-5,
        "rank_1000_queries_seconds": round(rank_sec, 3),
        "rank_masking_every_row_seconds": round(masks_sec, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
