"""Time the evaluation: encoding images in each --precision, and mAP@Top_N under ADC on the
CIFAR-10 protocol's sizes; prints one JSON line.

    python bench/eval_speed.py [--device cpu|cuda] [--queries 10000] [--gallery 50000]
                               [--books 8 16] [--plain_queries 50] [--repeats 3]
                               [--encode_images 2048] [--precision native]

Encoding (`encode`): --encode_images random 32 x 32 uint8 images described by an SPQ
network in eval mode (spq.run.encode.describe, as the evaluation runs it) in each
precision, the precisions taking turns for --repeats rounds (median images per second,
the ratio to the first precision, GFLOP/s from the forward pass's counted operations
and their fraction of a 2048 x 2048 matrix product's GFLOP/s in that precision).

Random descriptors and a random codebook (K=16, L=16; M from --books: 8 is 32 bits,
16 is 64 bits). Figures: seconds for the whole mAP computation (codes given) per
configuration, the median of --repeats runs (all runs listed too); in the same run, on
--repeats consecutive slices of the queries of the first configuration, the per-query
seconds (median over the slices) of a plain per-query implementation (Python loops over
books and codewords for each query, as the authors' evaluation does) and of an earlier
implementation (whole rows of distances by one gather per book, then top-k); the ratios
of those medians; the resident memory before the first search, the peak right after
it, and the peak of the whole run.
"""
import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spq.run.encode import describe  # noqa: E402
from spq.retrieval import distances as D  # noqa: E402
from spq.retrieval import metrics as R  # noqa: E402
from spq.retrieval import topk as A  # noqa: E402
from spq.run.device import memory_format  # noqa: E402
from spq.method.network import SPQ  # noqa: E402
from spq.method.quantization import encode  # noqa: E402
from cpu_peak import DTYPES, NATIVE, count_flops, matmul_gflops, precisions, processor  # noqa: E402


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


def whole_rows_map(queries, qlabels, codes, glabels, books, top_k):
    """An earlier implementation: whole rows of distances by one gather per book, then top-k."""
    tables = D.adc_tables(queries, books)
    codes = codes.long()
    idx = []
    for part in tables.split(max(1, 2 ** 23 // codes.shape[0])):
        dist = part.new_zeros(part.shape[0], codes.shape[0])                 # (B, G)
        for m in range(part.shape[1]):
            dist += part[:, m].index_select(1, codes[:, m])
        idx.append(A.ranked_top_k(dist, top_k))
    return R.average_precision(R.relevant(qlabels, glabels, torch.cat(idx))).mean().item()


def case(q, g, m_books, device, seed=0):
    """Queries, labels, gallery codes (encoded chunk by chunk, to keep memory low), codebook."""
    gen = torch.Generator().manual_seed(seed)
    books = torch.randn(m_books, 16, 16, generator=gen)
    queries = torch.randn(q, m_books * 16, generator=gen)
    codes = torch.cat([encode(torch.randn(min(65536, g - s), m_books * 16, generator=gen), books)
                       for s in range(0, g, 65536)])
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


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def encode_speed(device, precisions, n_images, repeats, peak_seconds=0.5, batch_size=256):
    """Images per second of the evaluation's encoding in each precision, taking turns."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n_images, 3, 32, 32), dtype=torch.uint8, generator=gen).to(device)
    torch.manual_seed(0)
    models = {}
    for p in precisions:
        model = SPQ().to(device, memory_format=memory_format(device, p)).eval()
        describe(model, images[:batch_size], 32, batch_size, p)                    # warm-up
        models[p] = model
    runs = {p: [] for p in precisions}
    for _ in range(repeats):
        for p, model in models.items():
            _, sec = timed(lambda: describe(model, images, 32, batch_size, p), device)
            runs[p].append(n_images / sec)
    model = models[precisions[0]]
    flops = count_flops(lambda: describe(model, images[:batch_size], 32, batch_size)) / batch_size
    out = {"images": n_images, "batch_size": batch_size, "flops_per_image": round(flops)}
    for p in precisions:
        ips = statistics.median(runs[p])
        peak = matmul_gflops(device, DTYPES[p], seconds=peak_seconds)
        out[p] = {"images_per_second": round(ips, 1), "rounds": [round(x, 1) for x in runs[p]],
                  "gflops_per_second": round(flops * ips / 1e9, 1), "matmul_gflops": peak,
                  "fraction_of_matmul_peak": round(flops * ips / 1e9 / peak, 4)}
    for p in precisions[1:]:
        out[f"{p}_over_{precisions[0]}"] = round(out[p]["images_per_second"] / out[precisions[0]]["images_per_second"], 2)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--queries", type=int, default=10000)
    ap.add_argument("--gallery", type=int, default=50000)
    ap.add_argument("--top_n", type=int, default=1000)
    ap.add_argument("--books", type=int, nargs="+", default=[8, 16], help="M of each configuration")
    ap.add_argument("--plain_queries", type=int, default=50, help="queries timed with the plain loops")
    ap.add_argument("--rows_queries", type=int, default=500,
                    help="queries timed with the earlier whole-row implementation")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed runs of each configuration, and slices for each comparison")
    ap.add_argument("--encode_images", type=int, default=2048, help="images encoded per precision (0: skip)")
    ap.add_argument("--peak_seconds", type=float, default=0.5,
                    help="length of each of the 3 timed windows of the matrix-product peak")
    ap.add_argument("--precision", nargs="+", default=[NATIVE], choices=[NATIVE, *DTYPES],
                    help="the precisions of the encoding, side by side; native: fp32, and bf16 "
                         "where the device runs it natively")
    a = ap.parse_args()
    device = torch.device(a.device)
    a.precision = precisions(a.precision, device)
    encoding = (encode_speed(device, a.precision, a.encode_images, a.repeats, a.peak_seconds)
                if a.encode_images else None)

    data = [case(a.queries, a.gallery, m, device, seed=i) for i, m in enumerate(a.books)]
    rss_before = rss_mb()
    out = {"device": processor(device), "encode": encoding, "queries": a.queries,
           "gallery": a.gallery, "top_n": a.top_n, "repeats": a.repeats}
    for m, d in zip(a.books, data):
        runs = []
        for _ in range(a.repeats):
            value, sec = timed(lambda: R.mean_average_precision(*d, top_n=a.top_n), device)
            runs.append(sec)
            if m == a.books[0] and len(runs) == 1:
                out["peak_rss_after_first_search_mb"] = round(max_rss_mb(), 1)
        out[f"seconds_{m * 4}bit"] = round(statistics.median(runs), 3)
        out[f"seconds_{m * 4}bit_runs"] = [round(x, 3) for x in runs]
        out[f"mAP_{m * 4}bit"] = round(value, 5)
    first = data[0]
    per_query = out[f"seconds_{a.books[0] * 4}bit"] / a.queries

    def per_slice(fn, n, on):
        """Median seconds per query of fn over consecutive slices of n queries, and
        whether its mAP agrees with the fast search's on each slice."""
        secs, agree = [], []
        for i in range(a.repeats):
            part = [t.to(on) for t in (first[0][i * n:(i + 1) * n], first[1][i * n:(i + 1) * n], *first[2:])]
            value, sec = timed(lambda: fn(*part, a.top_n), on)
            fast = R.mean_average_precision(*[t.to(device) for t in part], top_n=a.top_n)
            secs.append(sec / n)
            agree.append(abs(value - fast) < 1e-5)
        return statistics.median(secs), all(agree)

    plain, plain_ok = per_slice(plain_map, a.plain_queries, torch.device("cpu"))
    rows, rows_ok = per_slice(whole_rows_map, a.rows_queries, device)
    out.update({
        "seconds_per_query": round(per_query, 7),
        "plain_seconds_per_query": round(plain, 6),
        "speedup_vs_plain": round(plain / per_query, 1),
        "plain_agrees": plain_ok,
        "whole_rows_seconds_per_query": round(rows, 7),
        "speedup_vs_whole_rows": round(rows / per_query, 2),
        "whole_rows_agree": rows_ok,
        "rss_before_search_mb": round(rss_before, 1),
        "peak_rss_mb": round(max_rss_mb(), 1),
    })
    print(json.dumps(out))


if __name__ == "__main__":
    main()
