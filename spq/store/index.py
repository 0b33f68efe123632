"""An index file (`Index`): an encoded collection as python -m spq.index build writes it,
reading one back (`load_index`), and the same codes as a FAISS `IndexPQ` (`to_faiss`).

It is one file, `torch.save` of tensors and plain values, read back with
`weights_only=True` (no pickled objects): the codebooks, the codes, each item's file
(relative to the data folder) or position in its set, its labels when known, and the
configuration. Every value of an index file is checked on load (`_validate`), before any
is used: types, shapes, ranges (`config.input_size` within the training's bound
`spq.options.values.MAX_INPUT_SIZE`), finite codebooks whose shape the configuration
repeats, class names that are strings. Stored paths stay inside the data folder: a
relative path may not climb out with .., and an absolute one (a list file's path outside
--data_dir) is accepted only from a build that recorded `config.allow_outside_data_dir`
(an index written before that record existed cannot hold one: build it again).

FAISS stores product-quantization codes packed as bits: code m of an item takes bits
m*nbits .. (m+1)*nbits - 1 of its code bytes, least significant bit first, with nbits =
log2(K). Its centroids are laid out (M, K, L), as SPQ's codebooks. FAISS ranks by the
squared distance to the reconstruction: `distance="squared"` in `spq.retrieval.distances`.
FAISS is an optional dependency: pip install faiss-cpu.
"""
import os
import posixpath
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch

from ..data.datasets import KINDS
from ..data.images import RESIZE
from ..errors import SPQError, shown
from ..files.torchfile import read_tagged, verify_checksum
from ..method.quantization import code_dtype, word_bits
from ..method.step import PRECISIONS
from ..options.values import MAX_INPUT_SIZE
from .schema import MAX_EPOCHS

FORMAT = "spq-index"
VERSION = 1
SETS = ("train", "query", "gallery")    # what an index holds: which set of its dataset
CONFIG_TYPES = {"dataset": str, "data_dir": str, "split": str, "checkpoint": str, "input_size": int,
                "epoch": int, "N_books": int, "N_words": int, "L_word": int}


@dataclass
class Index:
    """An encoded collection. G items, M books of K codewords of length L."""
    codebooks: torch.Tensor           # (M, K, L) float32
    codes: torch.Tensor               # (G, M), the smallest integer dtype for K
    positions: torch.Tensor           # (G,) int64, each item's place in its set
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
              ("split", config["split"] in SETS, f"not one of {', '.join(SETS)}"),
              ("epoch", 0 <= config["epoch"] <= MAX_EPOCHS, f"outside 0..{MAX_EPOCHS}"),
              *((k, config[k] == n, f"though its codebooks have {n}") for k, n in shape.items()),
              ("resize", config.get("resize", RESIZE[0]) in RESIZE, f"not one of {', '.join(RESIZE)}"),
              ("precision", config.get("precision", PRECISIONS[0]) in PRECISIONS,
               f"not one of {', '.join(PRECISIONS)}"),
              ("faiss", "faiss" not in config or (
                  isinstance(config["faiss"], dict) and set(config["faiss"]) == {"file", "bytes", "sha256"}
                  and _is_a(config["faiss"]["file"], str) and _is_a(config["faiss"]["bytes"], int)
                  and _is_a(config["faiss"]["sha256"], str)), "not a record of its FAISS file"),
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
    """Read and check an index file; SPQError when it is missing, corrupt or foreign. An
    index written before the query set was named so says "test" for it: read as "query"."""
    d = read_tagged(path, FORMAT, VERSION, "index", "index", remedy=" (write one with python -m spq.index build)")
    if isinstance(d.get("config"), dict) and d["config"].get("split") == "test":
        d["config"] = {**d["config"], "split": "query"}
    problem = _validate(d)
    if problem:
        raise SPQError(f"{path} is a damaged SPQ index: it has {problem}; build it again")
    verify_checksum(d, path, "index")
    if d["paths"] is not None:
        d["paths"] = d["paths"].split("\n")
    return Index(*(d[k] for k in ("codebooks", "codes", "positions", "paths", "labels", "classes",
                                  "config")))


# ---------------------------------------------------------------- as a FAISS index

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


def faiss_bytes(index) -> bytes:
    """A faiss index as the bytes of faiss.write_index's file (faiss.serialize_index), so that
    the way out writes them (`spq.files.write.atomic_write_bytes`); faiss is never handed a path."""
    faiss = require_faiss()
    return faiss.serialize_index(index).tobytes()
