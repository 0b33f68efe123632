"""Search a collection with a trained model: build an index of its codes, then query it.

    python -m spq.index build --checkpoint CKPT --out INDEX [--faiss FAISS_FILE]
                              [--dataset cifar10|folder|list] [--data_dir DIR] [list options]
    python -m spq.index query --index INDEX --checkpoint CKPT IMAGE [IMAGE ...]
                              [--top_k 10] [--json] [--grid PNG]

`build` encodes a set of a dataset into an index file (`spq.run.indexing.build_index`;
the file: `spq.store.index`). The dataset options are main_SPQ.py's (the same kinds and
defaults); by default it indexes the evaluation's database: a folder dataset's gallery/
(else its train/), the gallery list (else the training list), or CIFAR-10's training set.
`query` prints the nearest items of each query image (`spq.run.indexing.query_index`) and
with --grid draws them: one row per query, the query then its results, each picture a
`tile` x `tile` square inside a FRAME-pixel frame, the query's dark, a result's green when
it shares the query's class, red when it does not, grey when labels cannot tell; cells
GAP pixels apart, SEPARATOR more between the query and its results. A query refuses,
before decoding anything, a --tile outside MIN_TILE..MAX_TILE and a --grid picture over
MAX_GRID_PIXELS; a checkpoint must hold finite weights and have been trained at the
index's input size.
"""
import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .data.cifar10 import load_cifar10
from .data.images import decode
from .errors import SPQError, exit_status
from .files.torchfile import atomic_save, with_checksum
from .files.lock import OutputLock
from .files.write import atomic_write, atomic_write_bytes, file_record, remove_stale_temp_files
from .run import faults
from .method.quantization import code_bits
from .options.declared import HelpFormatter, add_dataset_options, add_precision_option
from .options.values import check_dataset_options, data_options
from .run.device import resolve_device
from .run.indexing import build_index, check_query_size, check_same_input, check_same_model, query_index
from .run.trained import load_model
from .retrieval.distances import DISTANCES
from .store.index import Index, faiss_bytes, load_index, require_faiss, to_faiss

MIN_TILE, MAX_TILE = 8, 1024    # --tile, pixels
MAX_GRID_PIXELS = 2 ** 25       # a --grid picture: 32 Mi pixels, 96 MiB as RGB
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


def check_grid(rows: int, cols: int, tile: int) -> None:
    """SPQError when --grid's picture of `rows` x `cols` tiles would exceed MAX_GRID_PIXELS."""
    width, height = grid_size(rows, cols, tile)
    if width * height > MAX_GRID_PIXELS:
        raise SPQError(f"--grid of {rows} row(s) of {cols} pictures at --tile {tile} would be {width} x "
                       f"{height} pixels ({width * height * 3 / 2 ** 20:.0f} MiB), over the "
                       f"{MAX_GRID_PIXELS} pixels allowed; lower --tile or --top_k, or query fewer images")


def format_results(found: List[Dict], distance: str) -> str:
    """The human-readable listing of `query_index`'s results."""
    lines = []
    for q in found:
        lines.append(f"{q['image']}" + (f"  (class {q['class']})" if q["class"] else ""))
        for r in q["results"]:
            mark = "" if r["same_class"] is None else ", same class" if r["same_class"] else ", other class"
            cls = f"  ({r['class']}{mark})" if r["class"] else ""
            lines.append(f"  {r['rank']:>3}. {r['distance']:10.4f}  {r['name']}{cls}")
    lines.append(f"(ADC distance: {distance}; smaller is nearer)")
    return "\n".join(lines)


def result_pixels(index: Index, items: List[int], tile: int, data_dir=None) -> List[Optional[np.ndarray]]:
    """uint8 pictures (3, h, w) of index items for the grid, None where one cannot be read."""
    if index.paths is not None:
        root = Path(data_dir or index.config["data_dir"])
        return [decode(root / index.paths[i], tile) for i in items]
    if data_dir is None:   # the stored folder is only shown: batches are read where the user says
        raise SPQError(f"--grid of a CIFAR-10 index needs --data_dir, the folder holding "
                       f"cifar-10-batches-py/ (the index was built from {index.config['data_dir']})")
    data = load_cifar10(data_dir, 10 if index.classes is None else len(index.classes))
    images = data.query_images if index.config["split"] == "query" else data.train_images
    far = max((int(index.positions[i]) for i in items), default=-1)
    if far >= len(images):
        raise SPQError(f"the index names image {far} of CIFAR-10's {index.config['split']} set, which "
                       f"has {len(images)} in {data_dir}; give the --data_dir it was built from")
    return [images[int(index.positions[i])].numpy() for i in items]


def write_grid(found: List[Dict], index: Index, tile: int, path, data_dir=None) -> None:
    """One row per query: the query, then its results framed by whether they share its class."""
    check_grid(len(found), 1 + max((len(q["results"]) for q in found), default=0), tile)
    pixels = result_pixels(index, [r["item"] for q in found for r in q["results"]], tile, data_dir)
    rows, at = [], 0
    for q in found:
        row = [(decode(q["image"], tile), QUERY)]
        for r in q["results"]:
            row.append((pixels[at], result_colour(r["same_class"])))
            at += 1
        rows.append(row)
    save_grid(rows, tile, path)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("python -m spq.index", allow_abbrev=False,
                                description="Index a collection with a trained SPQ model, and query it.",
                                formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{build,query}")
    b = sub.add_parser("build", allow_abbrev=False, formatter_class=HelpFormatter,
                       help="encode a collection into an index file",
                       description="Encode a collection with the checkpoint's model into an index file.")
    b.add_argument("--checkpoint", required=True, help="a main_SPQ.py checkpoint (last.pth, best.pth)")
    add_dataset_options(b.add_argument_group("data (as for main_SPQ.py)"))
    b.add_argument("--split", default="gallery", choices=["gallery", "train", "query"],
                   help="which images to index: gallery means the retrieval database of the "
                        "evaluation (a folder's gallery/, else its train/; the gallery list, "
                        "else the training list; CIFAR-10's training set); query: the queries "
                        "(a folder's test/, the query list, CIFAR-10's test set)")
    b.add_argument("--out", required=True, help="the index file to write")
    b.add_argument("--faiss", default=None, metavar="FILE",
                   help="also write a faiss.IndexPQ with the learned codebooks and the codes "
                        "(needs pip install faiss-cpu); it ranks by squared distance")
    b.add_argument("--num_workers", default=4, type=int,
                   help="processes decoding image files (0: in this process)")
    q = sub.add_parser("query", allow_abbrev=False, formatter_class=HelpFormatter,
                       help="print the nearest items of query images",
                       description="Print the nearest index items of each query image.")
    q.add_argument("images", nargs="+", metavar="IMAGE", help="query image files")
    q.add_argument("--index", required=True, help="an index file written by build")
    q.add_argument("--checkpoint", required=True, help="the checkpoint the index was built with")
    q.add_argument("--top_k", default=10, type=int, help="results per query")
    q.add_argument("--distance", default="euclidean", choices=list(DISTANCES),
                   help="euclidean: sum over books of the distance to the codeword (the authors' "
                        "evaluation); squared: sum of squares, FAISS's ranking")
    q.add_argument("--symmetric", action="store_true",
                   help="code the query images too and compare codewords with codewords (SDC); "
                        "default: their descriptors against the codes (ADC, the authors' evaluation)")
    q.add_argument("--json", action="store_true", help="print the results as one JSON document")
    q.add_argument("--grid", default=None, metavar="PNG",
                   help="also draw the results: one row per query, the query then its results, "
                        "framed green (same class) or red (another class)")
    q.add_argument("--tile", default=64, type=int,
                   help=f"--grid: side of each picture in pixels ({MIN_TILE} to {MAX_TILE}; the "
                        f"whole picture at most {MAX_GRID_PIXELS} pixels)")
    q.add_argument("--data_dir", default=None,
                   help="--grid: where the collection's images are now (default for a folder "
                        "index: where it was built from; a CIFAR-10 index needs it, so that "
                        "no batch file is read from a folder the index names)")
    for s in (b, q):
        s.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                       help="where the network runs: auto takes CUDA when available")
        add_precision_option(s, "the checkpoint's" if s is b else "the one the index was built in, else the checkpoint's")
    p.build_parser = b      # its usage line goes with the errors of its dataset options
    return p


def _build(args, device) -> None:
    """Encode the collection, then write the FAISS file (with --faiss) and the index file,
    last, whose configuration records the FAISS file's size and SHA-256; one build at a time
    per output file (a lock beside it), the temporary files of a killed one removed."""
    if args.faiss:
        require_faiss()                                     # before the work, not after it
    out = Path(args.out)
    targets = [out] + ([Path(args.faiss)] if args.faiss else [])
    model, ckpt, precision = load_model(args.checkpoint, device, args.precision)
    with contextlib.ExitStack() as locks:
        for target in targets:
            locks.enter_context(OutputLock(target.parent, f".{target.name}.lock", what=f"the folder of {target.name}"))
            for path in remove_stale_temp_files(target.parent, [target.name]):
                print(f"removed {path}, left by a run that was killed while writing", file=sys.stderr)
        index = build_index(model, ckpt, args.checkpoint, data_options(args, ckpt["args"]), args.split,
                            args.num_workers, precision)
        if args.faiss:
            faiss_index = to_faiss(index.codebooks, index.codes)
            atomic_write_bytes(args.faiss, faiss_bytes(faiss_index))
            index.config["faiss"] = {"file": str(Path(args.faiss).resolve()), **file_record(args.faiss)}
            print(f"wrote {args.faiss}: faiss.IndexPQ of {faiss_index.ntotal} codes")
        atomic_save(with_checksum(index.to_dict()), out)
    print(f"wrote {out}: {len(index)} items of {index.config['split']}, "
          f"{code_bits(*index.codebooks.shape[:2])} bits each")


def _query(args, device) -> None:
    if args.top_k < 1:
        raise SPQError(f"--top_k must be at least 1, got {args.top_k}")
    if not MIN_TILE <= args.tile <= MAX_TILE:
        raise SPQError(f"--tile must be {MIN_TILE} to {MAX_TILE} pixels, got {args.tile}")
    index = load_index(args.index)
    check_query_size(len(args.images), index.config["input_size"])
    if args.grid:
        check_grid(len(args.images), 1 + min(args.top_k, len(index)), args.tile)
    model, ckpt, precision = load_model(args.checkpoint, device, args.precision or index.config.get("precision"))
    check_same_model(index, model, args.index, args.checkpoint)
    check_same_input(index, ckpt, args.index, args.checkpoint)
    found = query_index(index, model, args.images, args.top_k, args.distance, args.symmetric, precision)
    if args.grid:
        write_grid(found, index, args.tile, args.grid, args.data_dir)
    if args.json:
        print(json.dumps({"index": str(args.index), "distance": args.distance, "top_k": args.top_k,
                          "queries": found}, indent=2))
    else:
        print(format_results(found, args.distance))
    if args.grid:
        print(f"wrote {args.grid}", file=sys.stderr if args.json else sys.stdout)


def main(argv=None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    faults.install()        # the crash tests' fault points (SPQ_FAULTS); nothing otherwise
    if args.command == "build":
        check_dataset_options(parser.build_parser, args)

    def work():
        device = resolve_device(args.device, "0", quiet=args.command == "query")  # a query is quick on a CPU
        (_build if args.command == "build" else _query)(args, device)

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
