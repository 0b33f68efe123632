"""Search a collection with a trained model: build an index of its codes, then query it.

    python -m spq.index build --checkpoint CKPT --out INDEX [--faiss FAISS_FILE]
                              [--dataset cifar10|folder|list] [--data_dir DIR] [list options]
    python -m spq.index query --index INDEX --checkpoint CKPT IMAGE [IMAGE ...]
                              [--top_k 10] [--json] [--grid PNG]

`build` encodes a collection batch by batch (decoding, the network and the codes stream;
only the codes are kept). The dataset options are main_SPQ.py's (`spq.datasets`, the
same kinds and defaults); by default it indexes the evaluation's database: a folder
dataset's gallery/ (else its train/), the gallery list (else the training list), or
CIFAR-10's training set. It writes one file, `torch.save` of tensors and plain values,
read back with `weights_only=True` (no pickled objects): the codebooks, the codes, each
item's file (relative to the data folder) or position in its split, its labels when
known, and the configuration.

`query` decodes each image by the rule of folder datasets (`spq.images`), describes it
with the checkpoint's network in eval mode, and ranks the index by ADC distance with the
evaluation's search (`spq.adc.search`; ties by index order). A query's class is the name
of the nearest folder above it that names a class of the index (so queries from the
dataset's own test/<class>/ folders are labelled); results are then marked as of the
same class or not. A multi-label (list) index shows each item's labels; its queries
have none.

Every value of an index file is checked on load (`_validate`), before any is used: types,
shapes, ranges (`config.input_size` within the training's bound `spq.schema.MAX_INPUT_SIZE`),
finite codebooks whose shape the configuration repeats, class names that are strings.
Stored paths stay inside the data folder: a relative path may not climb out with ..,
and an absolute one (a list file's path outside --data_dir) is accepted only from a build
that recorded `config.allow_outside_data_dir` (an index written before that record
existed cannot hold one: build it again). A query refuses, before decoding anything,
more query pixels than MAX_QUERY_BYTES, a --tile outside MIN_TILE..MAX_TILE and a --grid
picture over MAX_GRID_PIXELS; a checkpoint must hold finite weights and have been
trained at the index's input size.
"""
import argparse
import json
import os
import posixpath
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from .adc import DISTANCES, result_distances, search
from .checkpoint import load_checkpoint, load_state
from .cifar10 import load_cifar10
from .datasets import KINDS, gallery_split, open_dataset
from .device import resolve_device
from .errors import SPQError, exit_status, shown
from .fileio import atomic_save, read_tagged, verify_checksum, with_checksum
from .grid import QUERY, grid_size, result_colour, save_grid
from .imageset import Split
from .images import RESIZE, decode
from .lists import outside
from .model import SPQ, build_model, memory_format
from .options import HelpFormatter, add_dataset_options, check_dataset_options
from .quantization import code_bits, code_dtype, encode, reconstruct
from .retrieval import describe
from .schema import MAX_EPOCHS, MAX_INPUT_SIZE

FORMAT = "spq-index"
VERSION = 1
BATCH = 256          # CIFAR-10 images per encoding batch (image files come CHUNK at a time)

# what an index file and a query may ask for (refused with one line before any work)
SPLITS = ("train", "test", "gallery")
MIN_TILE, MAX_TILE = 8, 1024    # --tile, pixels
MAX_GRID_PIXELS = 2 ** 25       # a --grid picture: 32 Mi pixels, 96 MiB as RGB
MAX_QUERY_BYTES = 2 ** 31       # the query images' uint8 pixels plus one batch of them as float32
CONFIG_TYPES = {"dataset": str, "data_dir": str, "split": str, "checkpoint": str, "input_size": int,
                "epoch": int, "N_books": int, "N_words": int, "L_word": int}


@dataclass
class Index:
    """An encoded collection. G items, M books of K codewords of length L."""
    codebooks: torch.Tensor           # (M, K, L) float32
    codes: torch.Tensor               # (G, M), the smallest integer dtype for K
    positions: torch.Tensor           # (G,) int64, each item's place in its split
    paths: Optional[List[str]]        # folder, list: each item's file, relative to data_dir
    labels: Optional[torch.Tensor]    # (G,) int64 indices into `classes`, (G, C) uint8 multi-hot, or None
    classes: Optional[List[str]]      # the name of each class index / label column
    config: Dict                      # dataset, data_dir, split, input_size, checkpoint, epoch

    def __len__(self) -> int:
        return self.codes.shape[0]

    def name(self, i: int) -> str:
        """How item i is shown: its file, or 'cifar10 train #123'."""
        if self.paths is not None:
            return self.paths[i]
        return f"{self.config['dataset']} {self.config['split']} #{int(self.positions[i])}"

    def class_of(self, i: int) -> Optional[str]:
        """Item i's class; of a multi-label index, its labels joined by "+" ("" for none)."""
        if self.labels is None:
            return None
        if self.multi_label:
            return "+".join(self.classes[c] for c in self.labels[i].nonzero().flatten().tolist())
        return self.classes[int(self.labels[i])]

    @property
    def multi_label(self) -> bool:
        return self.labels is not None and self.labels.ndim == 2

    def to_dict(self) -> Dict:
        # paths as one string, one per line: unpickling a million separate strings under
        # weights_only=True takes seconds, one string milliseconds
        paths = None if self.paths is None else "\n".join(self.paths)
        return {"format": FORMAT, "version": VERSION, "codebooks": self.codebooks, "codes": self.codes,
                "positions": self.positions, "paths": paths, "labels": self.labels,
                "classes": self.classes, "config": self.config}


def _validate(d: Dict) -> Optional[str]:
    """What is wrong with a loaded index dict, or None: each part in turn."""
    return _codes_problem(d) or _config_problem(d) or _items_problem(d) or _labels_problem(d)


def _is_a(value, kind) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


def _codes_problem(d: Dict) -> Optional[str]:
    books, codes = d.get("codebooks"), d.get("codes")
    if not (isinstance(books, torch.Tensor) and books.ndim == 3 and books.dtype == torch.float32
            and min(books.shape) > 0):
        return "no (M, K, L) float32 codebooks"
    if not torch.isfinite(books).all():
        return "codebooks that are not finite (NaN or inf)"
    m_books, k_words, _ = books.shape
    if not (isinstance(codes, torch.Tensor) and codes.ndim == 2 and codes.shape[1] == m_books
            and codes.dtype == code_dtype(k_words)):
        return f"no (G, {m_books}) codes of dtype {code_dtype(k_words)}"
    if len(codes) and (int(codes.min()) < 0 or int(codes.max()) >= k_words):
        return f"codes outside 0..{k_words - 1}"
    return None


def _config_problem(d: Dict) -> Optional[str]:
    """The configuration's fields: types, ranges, and the codebooks' shape (M, K, L)."""
    config = d["config"] if isinstance(d.get("config"), dict) else None
    if config is None:
        return "no configuration"
    wrong = next((k for k, kind in CONFIG_TYPES.items() if not _is_a(config.get(k), kind)), None)
    if wrong:
        kind = "an integer" if CONFIG_TYPES[wrong] is int else "a string"
        return f"config.{wrong} {shown(config.get(wrong), 200)}, not {kind}"
    if not 1 <= config["input_size"] <= MAX_INPUT_SIZE:
        return (f"config.input_size {config['input_size']}, outside 1..{MAX_INPUT_SIZE} "
                f"(the bound of --input_size)")
    shape = dict(zip(("N_books", "N_words", "L_word"), d["codebooks"].shape))
    checks = [("dataset", config["dataset"] in KINDS, f"not one of {', '.join(KINDS)}"),
              ("split", config["split"] in SPLITS, f"not one of {', '.join(SPLITS)}"),
              ("epoch", 0 <= config["epoch"] <= MAX_EPOCHS, f"outside 0..{MAX_EPOCHS}"),
              *((k, config[k] == n, f"though its codebooks have {n}") for k, n in shape.items()),
              ("resize", config.get("resize", RESIZE[0]) in RESIZE, f"not one of {', '.join(RESIZE)}"),
              ("allow_outside_data_dir", _is_a(config.get("allow_outside_data_dir", False), bool),
               "not true or false")]
    return next((f"config.{k} {shown(config.get(k), 200)}, {why}" for k, ok, why in checks if not ok), None)


def _items_problem(d: Dict) -> Optional[str]:
    """Each item's position, and its file for folder and list indexes (see `_path_problem`)."""
    g, positions, paths, config = len(d["codes"]), d.get("positions"), d.get("paths"), d["config"]
    if not (isinstance(positions, torch.Tensor) and positions.shape == (g,) and positions.dtype == torch.int64):
        return f"no ({g},) int64 item positions"
    if g and int(positions.min()) < 0:
        return "negative item positions"
    if (paths is None) != (config["dataset"] == "cifar10"):
        return f"{'no ' if paths is None else ''}item paths for a {config['dataset']} index"
    if paths is None:
        return None
    if not (isinstance(paths, str) and g and paths.count("\n") == g - 1):
        return f"paths that are not {g} lines"
    allow = config.get("allow_outside_data_dir", False)
    return next(filter(None, (_path_problem(name, allow) for name in paths.split("\n"))), None)


def _path_problem(name: str, allow_absolute: bool) -> Optional[str]:
    """An item's file must lie in the data folder: relative, not climbing out with .., or
    absolute when the build allowed list paths outside --data_dir."""
    if not name:
        return "an empty item path"
    if os.path.isabs(name) or posixpath.isabs(name):
        return None if allow_absolute else (
            f"the absolute item path {shown(name, 200)}, outside its data folder, and no record that "
            f"it was built with --allow_outside_data_dir")
    parts = posixpath.normpath(name.replace("\\", "/"))
    if parts == ".." or parts.startswith("../"):
        return f"the item path {shown(name, 200)}, outside its data folder (it climbs out with ..)"
    return None


def _labels_problem(d: Dict) -> Optional[str]:
    """Class names are strings; labels are class indices or multi-hot rows, one name each."""
    g, labels, classes = len(d["codes"]), d.get("labels"), d.get("classes")
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        return "classes that are not a list of names (strings)"
    if labels is None:
        return None
    if classes is None:
        return "labels but no classes naming them"
    if not (isinstance(labels, torch.Tensor) and (
            (labels.shape == (g,) and labels.dtype == torch.int64) or
            (labels.shape == (g, len(classes)) and labels.dtype == torch.uint8))):
        return (f"labels that are not ({g},) class indices or ({g}, {len(classes)}) multi-hot rows "
                f"for its {len(classes)} classes")
    if g and (int(labels.min()) < 0 or int(labels.max()) >= (2 if labels.ndim == 2 else len(classes))):
        return "labels outside its classes"
    return None


def load_index(path) -> Index:
    """Read and check an index file; SPQError when it is missing, corrupt or foreign."""
    d = read_tagged(path, FORMAT, VERSION, "index", remedy=" (write one with python -m spq.index build)")
    problem = _validate(d)
    if problem:
        raise SPQError(f"{path} is a damaged SPQ index: it has {problem}; build it again")
    verify_checksum(d, path, "index")
    if d["paths"] is not None:
        d["paths"] = d["paths"].split("\n")
    return Index(*(d[k] for k in ("codebooks", "codes", "positions", "paths", "labels", "classes",
                                  "config")))


def load_model(checkpoint, device: torch.device, precision: Optional[str] = None) -> Tuple[SPQ, Dict]:
    """The checkpoint's network on `device` in eval mode, in the memory layout of `precision`
    (default: the checkpoint's --precision, `trained_precision`), and the checkpoint."""
    ckpt = load_checkpoint(checkpoint)
    check_finite(ckpt["model"], checkpoint)
    layout = memory_format(device, precision or trained_precision(ckpt))
    model = build_model(argparse.Namespace(**ckpt["args"])).to(device, memory_format=layout)
    load_state(model, ckpt["model"], "model", checkpoint)
    return model.eval(), ckpt


def trained_precision(ckpt: Dict) -> str:
    """The --precision a checkpoint's model was trained and evaluated with: images are
    encoded under it (fp32 for checkpoints older than the option)."""
    return ckpt["args"].get("precision", "fp32")


def check_finite(state: Dict[str, torch.Tensor], checkpoint) -> None:
    """SPQError naming the first weight of a model state that is NaN or infinite."""
    bad = next((k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()), None)
    if bad is not None:
        raise SPQError(f"{checkpoint}: its model weight {bad} is not finite (NaN or inf): the "
                       f"training diverged or the file is damaged; use another checkpoint")


def pick_split(splits: Dict[str, Split], split: str, options) -> str:
    """The split to index: "gallery" means the evaluation's database (`gallery_split`)."""
    name = gallery_split(splits) if split == "gallery" else split
    if name not in splits:    # only test can be missing: a folder without test/, no query list
        where = ("no --query_list was given" if options.dataset == "list" else
                 f"{Path(options.data_dir) / split} does not exist")
        raise SPQError(f"--split {split}: {where}")
    return name


def relative_names(files: List[Path], data_dir) -> List[str]:
    """Each file as an index stores it: relative to the data folder, or absolute when it lies
    outside (list files with --allow_outside_data_dir)."""
    names = [Path(os.path.abspath(f) if outside(f, Path(data_dir)) else os.path.relpath(f, data_dir)).as_posix()
             for f in files]
    odd = next((f for f in names if "\n" in f), None)
    if odd is not None:
        raise SPQError(f"{odd!r}: a file name with a line break cannot be indexed; rename it")
    return names


@torch.no_grad()
def build_index(model: SPQ, ckpt: Dict, checkpoint, options, split: str = "gallery",
                workers: int = 0) -> Index:
    """Encode one split of the dataset the `options` name (main_SPQ.py's dataset options,
    `spq.datasets.open_dataset`) into an Index; unreadable files of a folder are skipped with
    one warning line, in a list they are an error."""
    input_size = ckpt["args"]["input_size"]
    resize = ckpt["args"].get("resize", "crop")          # the rule the model was trained with
    precision = trained_precision(ckpt)                  # and the arithmetic it was evaluated in
    data_dir = options.data_dir
    splits = open_dataset(options)
    split = pick_split(splits, split, options)
    source = splits[split]
    paths = None if source.files is None else relative_names(source.files, data_dir)
    codes, read = [], []
    with tqdm(total=len(source), desc="encoding", unit="img", leave=False, disable=None,
              dynamic_ncols=True, file=sys.stderr) as bar:
        for images, ok in source.batches(input_size, workers, BATCH, resize):
            if len(images):
                x = describe(model, images, input_size, precision=precision)     # (b, M*L)
                codes.append(encode(x, model.codebooks).cpu())                  # (b, M)
            read.append(ok)
            bar.update(len(ok))
    read = np.concatenate(read) if read else np.zeros(0, bool)
    kept = np.flatnonzero(read)
    if not len(kept):
        raise SPQError(f"none of the {len(source)} images of {data_dir} ({split}) could be read")
    if len(kept) < len(read):
        first = paths[int(np.flatnonzero(~read)[0])]
        print(f"warning: skipped {len(read) - len(kept)} file(s) that could not be read as images "
              f"(e.g. {first})", file=sys.stderr)
    args = ckpt["args"]
    config = {"dataset": options.dataset, "data_dir": str(Path(data_dir).resolve()), "split": split,
              "input_size": input_size, "resize": resize, "checkpoint": str(Path(checkpoint).resolve()),
              "epoch": ckpt["epoch"], "N_books": args["N_books"], "N_words": args["N_words"],
              "L_word": args["L_word"],
              "allow_outside_data_dir": bool(getattr(options, "allow_outside_data_dir", False))}
    return Index(codebooks=model.codebooks.detach().float().cpu().contiguous(), codes=torch.cat(codes),
                 positions=torch.from_numpy(kept).long(),
                 paths=None if paths is None else [paths[i] for i in kept],
                 labels=None if source.labels is None else source.labels[torch.from_numpy(kept)],
                 classes=source.classes, config=config)


def check_same_model(index: Index, model: SPQ, index_path, checkpoint) -> None:
    """SPQError unless the model's codebooks are the ones the index was built with."""
    if not torch.equal(model.codebooks.detach().float().cpu(), index.codebooks):
        raise SPQError(f"{index_path} was built with another model than {checkpoint} (their "
                       f"codebooks differ); query with the checkpoint it was built from: "
                       f"{index.config.get('checkpoint')}")


def check_same_input(index: Index, ckpt: Dict, index_path, checkpoint) -> None:
    """SPQError unless the checkpoint's model takes images as the index was built: its
    --input_size and --resize."""
    built = (index.config["input_size"], index.config.get("resize", "crop"))
    takes = (ckpt["args"]["input_size"], ckpt["args"].get("resize", "crop"))
    if built != takes:
        raise SPQError(f"{index_path} was built at input_size {built[0]} ({built[1]}), but "
                       f"{checkpoint} takes input_size {takes[0]} ({takes[1]}); query with the "
                       f"checkpoint it was built from: {index.config['checkpoint']}")


def check_query_size(count: int, size: int) -> None:
    """SPQError when `count` query images at `size` pixels would take more than MAX_QUERY_BYTES:
    their uint8 pixels, plus one batch of them as float32 for the network."""
    need = (count + 4 * min(count, BATCH)) * 3 * size * size
    if need > MAX_QUERY_BYTES:
        raise SPQError(f"{count} query image(s) at input_size {size} would need {need / 2 ** 30:.1f} "
                       f"GiB for their pixels, over the {MAX_QUERY_BYTES / 2 ** 30:.0f} GiB allowed; "
                       f"query fewer images at a time")


def check_grid(rows: int, cols: int, tile: int) -> None:
    """SPQError when --grid's picture of `rows` x `cols` tiles would exceed MAX_GRID_PIXELS."""
    width, height = grid_size(rows, cols, tile)
    if width * height > MAX_GRID_PIXELS:
        raise SPQError(f"--grid of {rows} row(s) of {cols} pictures at --tile {tile} would be {width} x "
                       f"{height} pixels ({width * height * 3 / 2 ** 20:.0f} MiB), over the "
                       f"{MAX_GRID_PIXELS} pixels allowed; lower --tile or --top_k, or query fewer images")


def query_class(image: Path, index: Index) -> Optional[str]:
    """The query's class: the name of the nearest folder above it that names a class of the
    index (class/img.jpg, class/sub/img.jpg), or None."""
    if index.labels is None or index.multi_label:
        return None
    return next((f.name for f in Path(image).resolve().parents if f.name in index.classes), None)


@torch.no_grad()
def query_index(index: Index, model: SPQ, images: List[str], k: int,
                distance: str = "euclidean", sdc: bool = False, precision: str = "fp32") -> List[Dict]:
    """The top k items of each query image, as dicts of its image, class and results; with
    `sdc`, each query is coded too and compared codeword to codeword. The images are
    encoded under `precision` (the checkpoint's, as the index was built)."""
    size = index.config["input_size"]
    check_query_size(len(images), size)
    pixels = torch.empty((len(images), 3, size, size), dtype=torch.uint8)
    for i, image in enumerate(images):
        if not Path(image).is_file():
            raise SPQError(f"query image {image} does not exist")
        decoded = decode(image, size, index.config.get("resize", "crop"))
        if decoded is None:
            raise SPQError(f"query image {image} cannot be read as an image")
        pixels[i] = torch.from_numpy(decoded)
    x = describe(model, pixels, size, BATCH, precision)                        # (n, M*L)
    if sdc:
        x = reconstruct(encode(x, index.codebooks), index.codebooks)           # (n, M*L)
    idx = torch.cat([i for _, i in search(x, index.codes, index.codebooks, k, distance)]).cpu()  # (n, k)
    dist = result_distances(x, index.codes, index.codebooks, idx, distance).cpu()  # (n, k)
    out = []
    for image, items, ds in zip(images, idx.tolist(), dist.tolist()):
        cls = query_class(Path(image), index)
        results = []
        for rank, (item, d) in enumerate(zip(items, ds), start=1):
            item_class = index.class_of(item)
            results.append({"rank": rank, "item": item, "name": index.name(item),
                            "position": int(index.positions[item]), "distance": d,
                            "class": item_class,
                            "same_class": None if cls is None or item_class is None else item_class == cls})
        out.append({"image": str(image), "class": cls, "results": results})
    return out


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
    images = data.test_images if index.config["split"] == "test" else data.train_images
    far = max((int(index.positions[i]) for i in items), default=-1)
    if far >= len(images):
        raise SPQError(f"the index names image {far} of CIFAR-10's {index.config['split']} split, which "
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
    b.add_argument("--split", default="gallery", choices=["gallery", "train", "test"],
                   help="which images to index: gallery means the retrieval database of the "
                        "evaluation (a folder's gallery/, else its train/; the gallery list, "
                        "else the training list; CIFAR-10's training set); test: the queries "
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
                   help="euclidean: sum over books of the distance to the codeword (the paper's "
                        "evaluation); squared: sum of squares, FAISS's ranking")
    q.add_argument("--symmetric", action="store_true",
                   help="code the query images too and compare codewords with codewords (SDC); "
                        "default: their descriptors against the codes (ADC, the paper's)")
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
    p.build_parser = b      # its usage line goes with the errors of its dataset options
    return p


def _build(args, device) -> None:
    if args.faiss:
        from .faiss_export import require_faiss
        require_faiss()                                     # before the work, not after it
    model, ckpt = load_model(args.checkpoint, device)
    index = build_index(model, ckpt, args.checkpoint, args, args.split, args.num_workers)
    faiss_index = None
    if args.faiss:
        from .faiss_export import to_faiss
        faiss_index = to_faiss(index.codebooks, index.codes)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_save(with_checksum(index.to_dict()), args.out)
    print(f"wrote {args.out}: {len(index)} items of {index.config['split']}, "
          f"{code_bits(*index.codebooks.shape[:2])} bits each")
    if faiss_index is not None:
        from .faiss_export import write_faiss
        write_faiss(faiss_index, args.faiss)
        print(f"wrote {args.faiss}: faiss.IndexPQ of {faiss_index.ntotal} codes")


def _query(args, device) -> None:
    if args.top_k < 1:
        raise SPQError(f"--top_k must be at least 1, got {args.top_k}")
    if not MIN_TILE <= args.tile <= MAX_TILE:
        raise SPQError(f"--tile must be {MIN_TILE} to {MAX_TILE} pixels, got {args.tile}")
    index = load_index(args.index)
    check_query_size(len(args.images), index.config["input_size"])
    if args.grid:
        check_grid(len(args.images), 1 + min(args.top_k, len(index)), args.tile)
    model, ckpt = load_model(args.checkpoint, device)
    check_same_model(index, model, args.index, args.checkpoint)
    check_same_input(index, ckpt, args.index, args.checkpoint)
    found = query_index(index, model, args.images, args.top_k, args.distance, args.symmetric,
                        trained_precision(ckpt))
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
    if args.command == "build":
        check_dataset_options(parser.build_parser, args)

    def work():
        device = resolve_device(args.device, "0", quiet=args.command == "query")  # a query is quick on a CPU
        (_build if args.command == "build" else _query)(args, device)

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
