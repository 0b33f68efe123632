"""Export codebooks and codes to a FAISS `IndexPQ`, to serve them with FAISS.

FAISS stores product-quantization codes packed as bits: code m of an item takes bits
m*nbits .. (m+1)*nbits - 1 of its code bytes, least significant bit first, with nbits =
log2(K). Its centroids are laid out (M, K, L), as SPQ's codebooks. FAISS ranks by the
squared distance to the reconstruction: `distance="squared"` in `spq.adc`.

FAISS is an optional dependency: pip install faiss-cpu.
"""
import os
from pathlib import Path

import numpy as np
import torch

from .errors import SPQError
from .quantization import word_bits

ITEMS_PER_PACK = 65536  # items whose bits are unpacked at once (M*nbits int32 each)


def require_faiss():
    """The faiss module, or an SPQError saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise SPQError("--faiss needs FAISS, an optional dependency of SPQ: pip install faiss-cpu") from None
    return faiss


def pack_codes(codes: torch.Tensor, nbits: int) -> np.ndarray:
    """Codes (G, M), each below 2**nbits -> FAISS's packed codes (G, ceil(M*nbits/8)) uint8."""
    shifts = torch.arange(nbits, dtype=torch.int32)
    parts = []
    for part in codes.split(ITEMS_PER_PACK):
        bits = (part.int().unsqueeze(2) >> shifts) & 1                     # (n, M, nbits)
        flat = bits.reshape(len(part), -1).to(torch.uint8).numpy()        # (n, M*nbits) LSB first
        parts.append(np.packbits(flat, axis=1, bitorder="little"))         # (n, bytes)
    if not parts:
        return np.zeros((0, -(-codes.shape[1] * nbits // 8)), np.uint8)
    return np.concatenate(parts)


def to_faiss(codebooks: torch.Tensor, codes: torch.Tensor):
    """A faiss.IndexPQ (L2) holding these codebooks (M, K, L) and codes (G, M)."""
    faiss = require_faiss()
    m_books, k_words, length = codebooks.shape
    try:
        nbits = word_bits(k_words)
    except ValueError:
        raise SPQError(f"FAISS needs a power-of-two number of codewords, the index has {k_words}") from None
    index = faiss.IndexPQ(m_books * length, m_books, nbits)
    faiss.copy_array_to_vector(codebooks.detach().float().contiguous().numpy().ravel(), index.pq.centroids)
    index.is_trained = True
    if not hasattr(index, "add_sa_codes"):
        raise SPQError(f"faiss {faiss.__version__} cannot take codes directly (add_sa_codes); "
                       f"pip install 'faiss-cpu>=1.8'")
    index.add_sa_codes(pack_codes(codes, nbits))
    return index


def write_faiss(index, path) -> None:
    """faiss.write_index to `path` through a temporary file renamed over it (atomic)."""
    faiss = require_faiss()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        faiss.write_index(index, str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
