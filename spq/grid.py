"""A picture of search results: one row per query, the query then its results.

Each picture is drawn as a `tile` x `tile` square inside a FRAME-pixel frame: the query's
dark, a result's green when it shares the query's class, red when it does not, grey
when labels cannot tell. Cells are GAP pixels apart, with SEPARATOR more pixels between
the query and its results. With `cols` cells per row (1 + k) and `rows` queries, the
picture is `grid_size(rows, cols, tile)` pixels.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np

from .fileio import atomic_write

FRAME = 3
GAP = 4
SEPARATOR = 12
QUERY = (40, 40, 40)
SAME = (0, 170, 0)
OTHER = (210, 0, 0)
UNKNOWN = (160, 160, 160)
BACKGROUND = (255, 255, 255)
MISSING = (200, 200, 200)   # fill of a picture that could not be read

Cell = Tuple[Optional[np.ndarray], Tuple[int, int, int]]   # (uint8 (3, h, w) or None, frame colour)


def result_colour(same_class: Optional[bool]) -> Tuple[int, int, int]:
    return UNKNOWN if same_class is None else SAME if same_class else OTHER


def grid_size(rows: int, cols: int, tile: int) -> Tuple[int, int]:
    """(width, height) in pixels of a grid of `rows` rows of `cols` cells (query first)."""
    cell = tile + 2 * FRAME
    return GAP + cols * (cell + GAP) + SEPARATOR, GAP + rows * (cell + GAP)


def _picture(pixels: Optional[np.ndarray], tile: int):
    from PIL import Image
    if pixels is None:
        return Image.new("RGB", (tile, tile), MISSING)
    image = Image.fromarray(np.ascontiguousarray(pixels.transpose(1, 2, 0)))   # (3, h, w) -> (h, w, 3)
    if image.size != (tile, tile):
        image = image.resize((tile, tile), Image.Resampling.BICUBIC)
    return image


def draw_grid(rows: Sequence[Sequence[Cell]], tile: int):
    """The grid as a PIL image; every row's first cell is its query."""
    from PIL import Image, ImageDraw
    cols = max((len(r) for r in rows), default=1)
    canvas = Image.new("RGB", grid_size(len(rows), cols, tile), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    cell = tile + 2 * FRAME
    for i, row in enumerate(rows):
        top = GAP + i * (cell + GAP)
        for j, (pixels, colour) in enumerate(row):
            left = GAP + j * (cell + GAP) + (SEPARATOR if j else 0)
            draw.rectangle([left, top, left + cell - 1, top + cell - 1], fill=colour)
            canvas.paste(_picture(pixels, tile), (left + FRAME, top + FRAME))
    return canvas


def save_grid(rows: List[List[Cell]], tile: int, path) -> None:
    """Draw the grid and write it as a PNG, atomically."""
    image = draw_grid(rows, tile)
    atomic_write(path, lambda f: image.save(f, format="PNG"))
