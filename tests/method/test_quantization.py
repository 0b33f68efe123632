"""soft_quantize and encode against plain loop versions."""
import math

import pytest
import torch

from spq.method.quantization import code_dtype, encode, reconstruct, soft_quantize


def soft_quantize_loops(x, codebooks, tau_q):
    m_books, k_words, length = codebooks.shape
    z = torch.zeros_like(x, dtype=torch.float64)
    for n in range(x.shape[0]):
        for m in range(m_books):
            sub = x[n, m * length:(m + 1) * length].double()
            d = [float(((sub - codebooks[m, k].double()) ** 2).sum()) for k in range(k_words)]
            e = [math.exp(-tau_q * (di - min(d))) for di in d]
            w = [ei / sum(e) for ei in e]
            for k in range(k_words):
                z[n, m * length:(m + 1) * length] += w[k] * codebooks[m, k].double()
    return z


def encode_loops(x, codebooks):
    m_books, k_words, length = codebooks.shape
    codes = torch.zeros(x.shape[0], m_books, dtype=torch.long)
    for n in range(x.shape[0]):
        for m in range(m_books):
            sub = x[n, m * length:(m + 1) * length].double()
            d = [float(((sub - codebooks[m, k].double()) ** 2).sum()) for k in range(k_words)]
            codes[n, m] = d.index(min(d))   # first minimum on ties
    return codes


@pytest.mark.parametrize("m_books,k_words,length", [(8, 16, 16), (4, 4, 8), (1, 2, 3), (3, 256, 2)])
@pytest.mark.parametrize("tau_q", [0.5, 5.0])
def test_soft_quantize_matches_loops(m_books, k_words, length, tau_q):
    g = torch.Generator().manual_seed(m_books * 100 + k_words)
    x = torch.randn(6, m_books * length, generator=g)
    books = torch.randn(m_books, k_words, length, generator=g) * 0.5
    z = soft_quantize(x, books, tau_q)
    assert z.shape == x.shape
    torch.testing.assert_close(z.double(), soft_quantize_loops(x, books, tau_q), atol=1e-5, rtol=1e-5)


def test_soft_quantize_large_scale_approaches_hard_codes():
    g = torch.Generator().manual_seed(1)
    x, books = torch.randn(10, 32, generator=g), torch.randn(4, 8, 8, generator=g)
    hard = torch.stack([books[m, encode(x, books)[:, m].long()] for m in range(4)], 1).reshape(10, 32)
    torch.testing.assert_close(soft_quantize(x, books, 1e4), hard)


@pytest.mark.parametrize("m_books,k_words,length", [(8, 16, 16), (2, 2, 1), (5, 512, 4)])
def test_encode_matches_loops(m_books, k_words, length):
    g = torch.Generator().manual_seed(k_words)
    x = torch.randn(40, m_books * length, generator=g)
    books = torch.randn(m_books, k_words, length, generator=g)
    codes = encode(x, books)
    assert codes.shape == (40, m_books) and codes.dtype == code_dtype(k_words)
    assert torch.equal(codes.long(), encode_loops(x, books))


def test_encode_ties_take_lowest_index_and_exact_codewords():
    books = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])    # words 0 and 1 equal
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])           # last is equidistant to all
    assert encode(x, books).squeeze(1).tolist() == [0, 2, 0]


def test_code_dtype_is_smallest_that_fits():
    assert code_dtype(2) == code_dtype(256) == torch.uint8
    assert code_dtype(512) == torch.int16
    assert code_dtype(2 ** 16) == torch.int32


def test_reconstruct_takes_each_books_codeword():
    gen = torch.Generator().manual_seed(5)
    books = torch.randn(3, 4, 2, generator=gen)
    codes = torch.randint(0, 4, (6, 3), generator=gen).to(torch.uint8)
    out = reconstruct(codes, books)
    for n in range(6):
        expected = torch.cat([books[m, int(codes[n, m])] for m in range(3)])
        assert torch.equal(out[n], expected)
    assert torch.equal(encode(out, books), codes)           # a reconstruction codes to its own code
