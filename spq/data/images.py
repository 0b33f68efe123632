"""Image files decoded once with Pillow into one uint8 tensor (N, 3, S, S).

Resizing rules (`--input_size` S, `--resize`): crop (default), the shorter side is resized
to S with Pillow's bicubic filter (antialiased when shrinking), keeping the aspect ratio,
then the central S x S square is cropped; stretch, the whole image is resized to S x S
with the bicubic filter, as the authors said they prepared FLICKR25K (64 x 64, bicubic).
EXIF orientation is applied; greyscale, palette and
alpha images are converted to RGB (alpha dropped), 16-bit greyscale scaled to 8 bits.
A file of more than MAX_PIXELS pixels counts as unreadable (skipped with the others). Large JPEGs are first reduced by
the decoder itself (`Image.draft`) to no less than S on each side.

Files are decoded in worker processes (`workers`; 0 decodes in this process). The
decoded pixels live in memory, or, when they exceed a byte budget, in an unlinked
temporary file under a folder of the caller's choosing, memory-mapped: batches are
then read from disk as training draws them (streaming), and the page cache keeps what
fits.
"""
import multiprocessing
import os
import sys
import warnings
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from ..files.read import image_file
from ..files.write import scratch_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
CHUNK = 64  # files per task sent to a worker
# Files that would decode to more pixels (after a JPEG's reduced-scale decoding) are
# skipped as unreadable: 2**26 RGB pixels take 192 MiB and seconds to decode.
MAX_PIXELS = 2 ** 26


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def find_images(folder: Path) -> List[Path]:
    """Every file under `folder` (recursively) with an image extension, any case, sorted."""
    return sorted(p for p in folder.rglob("*") if is_image_name(p) and p.is_file())


def to_rgb(im):
    """A Pillow image in RGB. 16-bit greyscale (modes I;16*, and I, as 16-bit PNGs may
    open) is scaled to 8 bits (value / 257, rounded), where convert("RGB") would clip it."""
    if im.mode.startswith("I;16") or im.mode == "I":
        from PIL import Image
        wide = np.asarray(im).astype(np.float64)                       # (H, W)
        im = Image.fromarray(np.clip(np.rint(wide / 257), 0, 255).astype(np.uint8), "L")
    return im.convert("RGB")


RESIZE = ("crop", "stretch")


def decode(path, size: int, resize: str = "crop") -> Optional[np.ndarray]:
    """One file -> uint8 (3, size, size) by the resizing rule `resize` (see the module
    docstring); None if unreadable, or when more than MAX_PIXELS pixels would be decoded."""
    from PIL import Image, ImageOps
    try:
        with warnings.catch_warnings():       # Pillow's bomb warning: the limit below decides
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(image_file(path) if isinstance(path, (str, os.PathLike)) else path) as im:
                im.draft("RGB", (size, size))      # JPEG only: decode at a reduced scale >= size
                if im.size[0] * im.size[1] > MAX_PIXELS:
                    return None
                im = to_rgb(ImageOps.exif_transpose(im))
        w, h = im.size
        if resize == "stretch":
            if (w, h) != (size, size):
                im = im.resize((size, size), Image.Resampling.BICUBIC)
            return np.ascontiguousarray(np.array(im).transpose(2, 0, 1))
        scale = size / min(w, h)
        new = (max(size, round(w * scale)), max(size, round(h * scale)))
        if new != (w, h):
            im = im.resize(new, Image.Resampling.BICUBIC)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return np.ascontiguousarray(np.array(im).transpose(2, 0, 1))     # (H, W, 3) -> (3, H, W)
    except Exception:  # truncated, corrupt, not an image, a decompression bomb: all unreadable
        return None


def _decode_chunk(task: Tuple[Sequence[str], int, str]) -> List[Optional[np.ndarray]]:
    paths, size, resize = task
    return [decode(p, size, resize) for p in paths]


def _pool(workers: int):
    # fork keeps start-up cheap (no re-import of torch per worker); the workers run only
    # Pillow and numpy. Where fork does not exist, the platform's default is used.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    return ctx.Pool(workers)


def storage(count: int, size: int, spill_dir=None) -> np.ndarray:
    """An uninitialised uint8 array (count, 3, size, size): in memory, or, with
    `spill_dir`, memory-mapped on an unlinked temporary file created there."""
    shape = (count, 3, size, size)
    if spill_dir is None:
        return np.empty(shape, np.uint8)
    with scratch_file(spill_dir) as f:
        f.truncate(max(int(np.prod(shape)), 1))
        return np.memmap(f, np.uint8, "r+", shape=shape)  # the mapping outlives the file


def decode_stream(paths: Sequence[Path], size: int, workers: int,
                  resize: str = "crop") -> Iterator[List[Optional[np.ndarray]]]:
    """Decode `paths` in order, CHUNK files at a time: yields each chunk's images (uint8
    (3, size, size), None for an unreadable file), from `workers` processes (0 or 1: here)."""
    tasks = [([str(p) for p in paths[i:i + CHUNK]], size, resize) for i in range(0, len(paths), CHUNK)]
    workers = min(workers, len(tasks), os.cpu_count() or 1)
    pool = _pool(workers) if workers > 1 else None
    try:
        yield from (pool.imap(_decode_chunk, tasks) if pool else map(_decode_chunk, tasks))
    finally:
        if pool:
            pool.terminate()


def decode_all(paths: Sequence[Path], size: int, workers: int, out: np.ndarray,
               desc: str = "decoding", resize: str = "crop") -> np.ndarray:
    """Decode `paths` into `out[:n]` in order, skipping unreadable files.

    Returns the bool mask (len(paths),) of the files that were read; the readable ones
    fill `out` from the start, in the order of `paths`.
    """
    ok = np.zeros(len(paths), bool)
    filled, i = 0, 0
    with tqdm(total=len(paths), desc=desc, unit="img", leave=False, disable=None,
              dynamic_ncols=True, file=sys.stderr) as bar:
        for chunk in decode_stream(paths, size, workers, resize):
            for image in chunk:
                if image is not None:
                    out[filled] = image
                    ok[i] = True
                    filled += 1
                i += 1
            bar.update(len(chunk))
    return ok


def load_images(paths: Sequence[Path], size: int, workers: int, spill_dir=None,
                desc: str = "decoding", resize: str = "crop") -> Tuple[torch.Tensor, np.ndarray]:
    """Decode `paths` -> (uint8 tensor (n, 3, size, size) of the readable ones in order,
    bool mask (len(paths),) of those read). With `spill_dir`, the pixels are
    memory-mapped from an unlinked temporary file there (see `storage`)."""
    array = storage(len(paths), size, spill_dir)
    ok = decode_all(paths, size, workers, array, desc, resize)
    return torch.from_numpy(array[:int(ok.sum())]), ok


def decode_sets(paths: Dict[str, Sequence[Path]], size: int, workers: int, budget_bytes: int,
                  spill_dir=None, resize: str = "crop") -> Tuple[Dict[str, Tuple[torch.Tensor, np.ndarray]], bool]:
    """`load_images` of every set -> ({set: (images, mask read)}, on_disk).

    When all sets together exceed `budget_bytes` of decoded pixels (3 x size^2 bytes
    per image), every set is memory-mapped from `spill_dir` (on_disk True)."""
    on_disk = sum(map(len, paths.values())) * 3 * size * size > budget_bytes
    decoded = {name: load_images(p, size, workers, spill_dir if on_disk else None,
                                 desc=f"decoding {name}", resize=resize)
               for name, p in paths.items()}
    return decoded, on_disk
