"""Product quantization of descriptors: soft (differentiable) and hard (codes).

A descriptor ``x`` of width ``M * L`` is split into ``M`` sub-vectors of length
``L``; sub-vector ``m`` is columns ``m*L .. (m+1)*L - 1``. Book ``m`` holds ``K``
codewords of length ``L``: ``codebooks[m, k]`` is codeword ``k`` of book ``m``.
"""
import torch


def split_books(x: torch.Tensor, num_books: int) -> torch.Tensor:
    """View (N, M*L) descriptors as (N, M, L) sub-vectors."""
    n, width = x.shape
    if width % num_books:
        raise ValueError(f"descriptor width {width} is not a multiple of {num_books} books")
    return x.view(n, num_books, width // num_books)


def squared_distances(x: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distance of every sub-vector to every codeword of its book.

    x: (N, M*L), codebooks: (M, K, L) -> (N, M, K).
    """
    sub = split_books(x, codebooks.shape[0]).transpose(0, 1)          # (M, N, L)
    cross = torch.bmm(sub, codebooks.transpose(1, 2))                 # (M, N, K)
    sub_sq = sub.pow(2).sum(-1, keepdim=True)                         # (M, N, 1)
    code_sq = codebooks.pow(2).sum(-1).unsqueeze(1)                   # (M, 1, K)
    d2 = (sub_sq - 2 * cross + code_sq).clamp_min_(0)                 # (M, N, K)
    return d2.transpose(0, 1)                                         # (N, M, K)


def soft_quantize(x: torch.Tensor, codebooks: torch.Tensor, tau_q: float) -> torch.Tensor:
    """Soft-quantize descriptors: per book, a softmax-weighted sum of codewords.

    The weights of book m are softmax_k(-tau_q * ||x_m - c_mk||^2); the sub-vectors
    sum_k w_mk c_mk of all books are concatenated back to width M*L.

    x: (N, M*L), codebooks: (M, K, L), tau_q: scale t_q (5.0 in SPQ) -> z: (N, M*L).
    """
    weights = torch.softmax(-tau_q * squared_distances(x, codebooks), dim=-1)   # (N, M, K)
    z = torch.einsum("nmk,mkl->nml", weights, codebooks)                        # (N, M, L)
    return z.reshape(x.shape[0], -1)                                            # (N, M*L)


def word_bits(num_words: int) -> int:
    """Bits of one codeword index: log2(K); ValueError unless K is a power of two >= 2."""
    if num_words < 2 or num_words & (num_words - 1):
        raise ValueError(f"the number of codewords must be a power of two of at least 2, got {num_words}")
    return num_words.bit_length() - 1


def code_bits(num_books: int, num_words: int) -> int:
    """Code length in bits of an item: M * log2(K)."""
    return num_books * word_bits(num_words)


def code_dtype(num_words: int) -> torch.dtype:
    """Smallest integer dtype that holds codeword indices 0..num_words-1."""
    if num_words <= 256:
        return torch.uint8
    if num_words <= 2 ** 15:
        return torch.int16
    return torch.int32


@torch.no_grad()
def exact_squared_distances(x: torch.Tensor, codebooks: torch.Tensor,
                            chunk: int = 4096) -> torch.Tensor:
    """Like `squared_distances`, but from explicit differences, without gradients.

    Slower than the matrix-product form but free of its cancellation error (a
    sub-vector equal to a codeword gets exactly 0), which matters for hard codes
    and for the square roots of the ADC tables. Works on `chunk` rows at a time.
    x: (N, M*L), codebooks: (M, K, L) -> (N, M, K), float32.
    """
    sub = split_books(x.float(), codebooks.shape[0])                    # (N, M, L)
    books = codebooks.float().unsqueeze(0)                              # (1, M, K, L)
    out = [(part.unsqueeze(2) - books).pow_(2).sum(-1)                  # (n, M, K)
           for part in sub.split(chunk)]
    return torch.cat(out) if out else sub.new_zeros(0, *codebooks.shape[:2])


def encode(x: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """Hard-quantize descriptors: per book, the index of the nearest codeword.

    Nearest is in squared Euclidean distance; on a tie the lower index wins.
    x: (N, M*L), codebooks: (M, K, L) -> codes: (N, M), smallest integer dtype for K.
    """
    codes = exact_squared_distances(x, codebooks).argmin(dim=-1)       # (N, M)
    return codes.to(code_dtype(codebooks.shape[1]))


def reconstruct(codes: torch.Tensor, codebooks: torch.Tensor) -> torch.Tensor:
    """The descriptors codes stand for: per book, the codeword the code selects.

    codes: (N, M) integer, codebooks: (M, K, L) -> (N, M*L) in the codebooks' dtype.
    """
    books = torch.arange(codebooks.shape[0], device=codebooks.device)
    return codebooks[books, codes.long().to(codebooks.device)].reshape(codes.shape[0], -1)   # (N, M*L)
