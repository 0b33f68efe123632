"""Time `python -m spq.index query`'s search against a large index; prints one JSON line.

    python bench/query_speed.py [--items 1000000] [--books 8] [--top_k 10] [--repeats 20]
                                [--batch 100] [--device cpu|cuda]

A synthetic index: random codes (K=16, L=16, M from --books) with a random codebook, and
a path per item. Figures: milliseconds to answer one query (search and the distances of
its results; the median over --repeats random queries, after one warm-up), the same with
the sampled threshold forced (which `spq.retrieval.topk.search` leaves to batches of at least
MIN_QUERIES queries, ranking fewer from whole rows) and the ratio of the two, measured in
this run; milliseconds per query for a batch of --batch queries; seconds to load the
index file (which `query` does on every call); and the peak resident memory. The
network's encoding of the query image is not included.
"""
import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spq.retrieval import distances as D  # noqa: E402
from spq.retrieval import topk as A  # noqa: E402
from spq.files.torchfile import atomic_save  # noqa: E402
from spq.store.index import Index, load_index  # noqa: E402


def answer(queries, index, k):
    idx = torch.cat([i for _, i in A.search(queries, index.codes, index.codebooks, k)])
    return idx, D.result_distances(queries, index.codes, index.codebooks, idx)


def median_ms(queries, index, k, device):
    """Median milliseconds per single-query answer (the first query warms up)."""
    times = []
    for q in queries:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        answer(q.unsqueeze(0), index, k)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--books", type=int, default=8)
    p.add_argument("--top_k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = p.parse_args()
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    m, g = args.books, args.items
    books = torch.randn(m, 16, 16, generator=gen)
    codes = torch.randint(0, 16, (g, m), generator=gen).to(torch.uint8)
    paths = [f"gallery/class_{i % 10}/img_{i:07d}.jpg" for i in range(g)]
    index = Index(books, codes, torch.arange(g), paths, torch.arange(g) % 10,
                  [f"class_{c}" for c in range(10)], {"input_size": 32})
    with tempfile.TemporaryDirectory() as tmp:
        atomic_save(index.to_dict(), Path(tmp) / "index.pt")
        t0 = time.perf_counter()
        index = load_index(Path(tmp) / "index.pt")
        load_s = time.perf_counter() - t0
    index.codes, index.codebooks = index.codes.to(device), index.codebooks.to(device)
    queries = torch.randn(args.repeats + 1, m * 16, generator=gen).to(device)
    one_ms = median_ms(queries, index, args.top_k, device)
    few = A.MIN_QUERIES
    A.MIN_QUERIES = 0                               # the threshold, for any number of queries
    threshold_ms = median_ms(queries[:max(3, args.repeats // 4)], index, args.top_k, device)
    A.MIN_QUERIES = few
    batch = torch.randn(args.batch, m * 16, generator=gen).to(device)
    t0 = time.perf_counter()
    answer(batch, index, args.top_k)
    if device.type == "cuda":
        torch.cuda.synchronize()
    batch_ms = 1000 * (time.perf_counter() - t0) / args.batch
    print(json.dumps({
        "device": str(device), "threads": torch.get_num_threads(), "items": g, "books": m, "words": 16,
        "top_k": args.top_k, "one_query_ms": round(one_ms, 2),
        "one_query_threshold_ms": round(threshold_ms, 2),
        "speedup_vs_threshold": round(threshold_ms / one_ms, 2),
        f"batch_of_{args.batch}_ms_per_query": round(batch_ms, 2), "index_load_s": round(load_s, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


if __name__ == "__main__":
    main()
