"""Plain, loop-by-loop versions of the retrieval formulas (ADC distances, mAP, ranked
relevance), written independently of spq/ for the tests to check it against, and random
cases to check them on."""
import math

import torch

from spq.method.quantization import encode


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


def map_loops(queries, qlabels, codes, glabels, books, top_n, squared=False):
    dist = adc_loops(queries, codes, books, squared).float()   # float32, as the program ranks
    aps = []
    for q in range(queries.shape[0]):
        order = sorted(range(codes.shape[0]), key=lambda g: (float(dist[q, g]), g))
        if top_n is not None:
            order = order[:top_n]
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


def coded_case(seed, q, g, m_books=8, k_words=16, length=4, scale=1.0):
    """Random queries, codebooks and the codes of random descriptors: (queries, codes, books)."""
    gen = torch.Generator().manual_seed(seed)
    books = torch.randn(m_books, k_words, length, generator=gen) * scale
    queries = torch.randn(q, m_books * length, generator=gen) * scale
    codes = encode(torch.randn(g, m_books * length, generator=gen) * scale, books)
    return queries, codes, books


def loop_distances(tables, codes):
    """Plainly: for each pair, add the M table entries in book order, in float32."""
    out = torch.zeros(tables.shape[0], codes.shape[0])
    for i in range(tables.shape[0]):
        for j in range(codes.shape[0]):
            total = torch.zeros((), dtype=torch.float32)
            for m in range(tables.shape[1]):
                total = total + tables[i, m, int(codes[j, m])]
            out[i, j] = total
    return out
