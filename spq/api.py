"""The Python API: load a trained model, encode pictures, search codes.

    import spq
    model = spq.load("runs/cifar/best.pth")              # eval mode, on CUDA when there is one
    codes = model.encode(["a.jpg", "b.png"])            # (2, M) uint8 codes
    x = model.descriptors(images)                       # (B, M*L) float32
    indices, distances = spq.search(x, codes, model.codebooks, k=10)

`Model` wraps the checkpoint's network (an `spq.method.network.SPQ`, its `network`); it is not an
nn.Module itself. Pictures may be a uint8 tensor (B, 3, H, W), resized bilinearly to the
input size when they have another size, as the evaluation does (`spq.run.encode.describe`);
or a list of image files (str or Path) and Pillow images, mixed as one likes, each decoded
as training decoded files: the checkpoint's --input_size and --resize rule
(`spq.data.images.decode`; a Pillow image goes through that same function). They are encoded
`batch_size` at a time (decoding included), without gradients; results are CPU tensors.

`search` ranks coded items by ADC distance exactly as the evaluation does
(`spq.retrieval.topk.search`: by (distance, item index), so equal distances keep item order) and
gives each result's distance (`spq.retrieval.distances.result_distances`, bit for bit those it was ranked
by). See docs/api.md.
"""
import io
import os
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from .data.images import decode, to_rgb
from .errors import SPQError
from .method.quantization import code_bits, code_dtype, encode
from .method.step import PRECISIONS
from .run.encode import describe
from .options.declared import AUTO
from .run.trained import load_model
from .retrieval.distances import DISTANCES, result_distances
from .retrieval.topk import search as adc_search

__all__ = ["load", "Model", "search"]

BATCH = 256      # pictures decoded and described at a time, by default


def _device(device) -> torch.device:
    """"auto" (CUDA when PyTorch sees it, else the CPU), "cpu", "cuda", "cuda:N" or a torch.device."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise SPQError(f"device {device!r} is not a device: pass 'auto', 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SPQError(f"device {device!r} was asked but PyTorch sees no CUDA device; pass 'cpu' or 'auto'")
    return dev


def load(path, device="auto", precision: Optional[str] = None) -> "Model":
    """A checkpoint of this project (a run's best.pth or last.pth) as a ready `Model` in
    eval mode on `device` ("auto": CUDA when available, else the CPU; "cpu"; "cuda"),
    encoding under `precision` ("fp32", "bf16", "fp16", or "auto": bf16 where the device
    runs it natively, else fp32; default: the checkpoint's --precision, as its evaluation
    did). The rule of the command line: bf16 on a CPU without bf16 instructions is refused.
    SPQError (one line) for a file that is missing or not such a checkpoint, or a precision
    that is unknown or refused."""
    dev = _device(device)
    if precision is not None and precision not in (*PRECISIONS, AUTO):
        raise SPQError(f"precision {precision!r} is not one of {', '.join((*PRECISIONS, AUTO))}")
    network, ckpt, chosen = load_model(path, dev, precision, remedy="pass precision='fp32' (or 'auto')")
    return Model(network, ckpt, path, precision=chosen)


class Model:
    """A trained SPQ model: its network in eval mode, its codebooks and options.

    Attributes: `network` (the spq.method.network.SPQ module), `device`, `options` (a dict of the
    checkpoint's run options), `checkpoint` (its path), `epoch`, `codebooks` ((M, K, L)
    float32 on the CPU), `bits` (M log2 K), `input_size` and `resize` (how files and
    Pillow images are sized: the checkpoint's), `batch_size` (the default of the methods),
    `precision` (the arithmetic the network encodes in).
    """

    def __init__(self, network, ckpt, path, batch_size: int = BATCH, precision: str = "fp32"):
        self.network = network.eval()
        self.device = network.codebooks.device
        self.options = dict(ckpt["args"])
        self.checkpoint = Path(path)
        self.epoch = ckpt["epoch"]
        self.codebooks = network.codebooks.detach().float().cpu().contiguous()
        self.bits = code_bits(*self.codebooks.shape[:2])
        self.input_size = self.options["input_size"]
        self.resize = self.options.get("resize", "crop")
        self.batch_size = batch_size
        self.precision = precision

    def __repr__(self) -> str:
        m, k, length = self.codebooks.shape
        return (f"spq.Model({str(self.checkpoint)!r}, epoch {self.epoch}: {m} books x {k} words x "
                f"{length}, {self.bits} bits, input {self.input_size} {self.resize}, on {self.device})")

    @property
    def width(self) -> int:
        """Length of a descriptor: M * L."""
        return self.codebooks.shape[0] * self.codebooks.shape[2]

    @torch.no_grad()
    def descriptors(self, images, batch_size: Optional[int] = None) -> torch.Tensor:
        """Real-valued descriptors of pictures -> (B, M*L) float32 on the CPU."""
        self.network.eval()
        out = [describe(self.network, batch, self.input_size, len(batch), self.precision).cpu()
               for batch in self._batches(images, batch_size or self.batch_size)]
        return torch.cat(out) if out else torch.zeros(0, self.width)

    @torch.no_grad()
    def encode(self, images, batch_size: Optional[int] = None) -> torch.Tensor:
        """Codes of pictures -> (B, M), the smallest integer dtype for K words (uint8 up to 256)."""
        self.network.eval()
        books = self.network.codebooks
        out = [encode(describe(self.network, batch, self.input_size, len(batch), self.precision), books).cpu()
               for batch in self._batches(images, batch_size or self.batch_size)]
        return torch.cat(out) if out else torch.zeros(0, books.shape[0], dtype=code_dtype(books.shape[1]))

    def search(self, images, codes, k: int,
               distance: str = "euclidean") -> Tuple[torch.Tensor, torch.Tensor]:
        """The k nearest of `codes` (this model's codes) to each picture: `search` of the
        pictures' descriptors with this model's codebooks."""
        return search(self.descriptors(images), codes, self.codebooks, k, distance)

    def _batches(self, images, size: int):
        """uint8 (b, 3, H, W) tensors of at most `size` pictures, decoded as they are needed;
        contiguous, as the evaluation's are (the CPU's convolutions round channels-last
        strides, such as np.stack of decoded pictures gives, differently)."""
        if size < 1:
            raise ValueError(f"batch_size must be at least 1, got {size}")
        if isinstance(images, torch.Tensor):
            if images.dtype != torch.uint8:
                raise TypeError(f"image tensors must be uint8 (0..255), got {images.dtype}")
            if images.ndim != 4 or images.shape[1] != 3 or min(images.shape[2:], default=0) < 1:
                raise ValueError(f"an image tensor must be (B, 3, H, W) with H and W at least 1, got "
                                 f"{tuple(images.shape)}")
            yield from (b.contiguous() for b in images.split(size) if len(b))
            return
        if isinstance(images, (str, os.PathLike)) or not isinstance(images, Sequence):
            raise TypeError("images must be a uint8 tensor (B, 3, H, W) or a list of image files and "
                            f"Pillow images, got {type(images).__name__}")
        for start in range(0, len(images), size):
            pixels = [self._picture(image) for image in images[start:start + size]]
            yield torch.from_numpy(np.stack(pixels)).contiguous()

    def _picture(self, image) -> np.ndarray:
        """One image file or Pillow image -> uint8 (3, S, S) by the checkpoint's rule."""
        if isinstance(image, (str, os.PathLike)):
            if Path(image).is_dir():
                raise SPQError(f"image {image} is a folder, not an image file: list the files in it")
            if not Path(image).exists():
                raise SPQError(f"image {image} does not exist")
            source = image
        elif _is_pil(image):
            source = pil_file(image)
        else:
            raise TypeError(f"an image must be a file path or a Pillow image, got {type(image).__name__}")
        pixels = decode(source, self.input_size, self.resize)
        if pixels is None:
            raise SPQError(f"image {image if source is image else '(a Pillow image)'} cannot be read "
                           f"as an image")
        return pixels


def _is_pil(image) -> bool:
    try:
        from PIL import Image
    except ImportError:
        return False
    return isinstance(image, Image.Image)


def pil_file(image) -> io.BytesIO:
    """A Pillow image as a lossless in-memory file for `spq.data.images.decode`, so that it is
    sized by the very code that sizes files: EXIF orientation applied and RGB conversion
    done here (decode does them again, to no effect), the pixels kept exactly (BMP)."""
    from PIL import ImageOps
    buffer = io.BytesIO()
    to_rgb(ImageOps.exif_transpose(image)).save(buffer, format="BMP")
    buffer.seek(0)
    return buffer


def search(queries, codes, codebooks, k: int,
           distance: str = "euclidean") -> Tuple[torch.Tensor, torch.Tensor]:
    """The k nearest coded items of each query by ADC distance, as the evaluation ranks them.

    queries: (Q, M*L) descriptors; codes: (G, M) integers in 0..K-1; codebooks: (M, K, L);
    tensors or numpy arrays (exported ones too). distance: "euclidean" (per book, summed:
    the authors' evaluation) or "squared" (FAISS's IndexPQ ranking). Returns indices (Q,
    min(k, G)) int64 into `codes`, nearest first, equal distances in item order, and their
    distances (Q, min(k, G)) float32; CPU tensors. Runs where `queries` lie.
    """
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {', '.join(DISTANCES)}, got {distance!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    queries, codes, codebooks = (torch.as_tensor(a) for a in (queries, codes, codebooks))
    if codebooks.ndim != 3 or not codebooks.is_floating_point():
        raise ValueError(f"codebooks must be (M, K, L) floats, got {tuple(codebooks.shape)} {codebooks.dtype}")
    m_books, k_words, length = codebooks.shape
    if queries.ndim != 2 or queries.shape[1] != m_books * length or not queries.is_floating_point():
        raise ValueError(f"queries must be (Q, {m_books * length}) float descriptors, got "
                         f"{tuple(queries.shape)} {queries.dtype}")
    if codes.ndim != 2 or codes.shape[1] != m_books or codes.is_floating_point() or codes.dtype == torch.bool:
        raise ValueError(f"codes must be (G, {m_books}) integers, got {tuple(codes.shape)} {codes.dtype}")
    if len(codes) and (int(codes.min()) < 0 or int(codes.max()) >= k_words):
        raise ValueError(f"codes must lie in 0..{k_words - 1}: they are not codes of these codebooks")
    queries, codebooks = queries.float(), codebooks.float()
    found = [idx for _, idx in adc_search(queries, codes, codebooks, int(k), distance)]
    idx = torch.cat(found) if found else torch.zeros(0, min(int(k), len(codes)), dtype=torch.long)
    idx = idx.to(queries.device)
    dist = result_distances(queries, codes, codebooks, idx, distance)
    return idx.cpu(), dist.cpu()
