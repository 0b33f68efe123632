"""Query, training and database sets drawn from a labelled collection with a seed, and
recorded (split.json): what python -m spq.split draws and what --split_file reads.

    python -m spq.split PROTOCOL OUT [--seed 0] [--data_dir DIR] [--list FILE --num_cls C]

The collection is CIFAR-10's 60,000 images pooled (--data_dir holding
cifar-10-batches-py/: the official training images are items 0..49,999, the test images
50,000..59,999), or the lines of a list file (--list, paths relative to --data_dir, such as
the all.txt of python -m spq.prepare). Every protocol draws the queries first, then the
database is every other item and the training images are drawn from the database:

    cifar10-official  the official split, as the authors' code uses it: the 10,000 test
                      images are the queries, the 50,000 training images train and are the
                      database (no draw; the seed is not used)
    cifar10-1000      1,000 queries (100 per class) from the pooled 60,000; the other 59,000
                      are the database; 5,000 training images (500 per class) from it
    cifar10-10000     10,000 queries (1,000 per class) from the pooled 60,000; the other
                      50,000 train and are the database
    flickr25k         2,000 queries at random; the rest is the database; 5,000 training
                      images at random from it
    nuswide21         2,100 queries (100 per concept); the rest is the database; 10,500
                      training images (500 per concept) from it
    custom            --query N or --query_per_class N, --train N or --train_per_class N
                      (--train 0: the whole database trains)

A per-class draw walks the items in a seeded random order and takes an item for the first
of its classes (label columns, in order) whose quota is not yet full. OUT gets split.json
(protocol, seed, sizes, items per class, a SHA-256 of the three sets, and the sets as item
numbers or list paths); for a list, also query.txt, train.txt and database.txt, list files
of the chosen lines. Train with --split_file OUT/split.json (docs/datasets.md).
"""
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import SPQError, shown
from ..files.read import read_bytes, read_json, read_lines, verified

FORMAT = "spq-split"
VERSION = 2             # 2: the record names its list files with their sizes and SHA-256
CIFAR_TRAIN, CIFAR_ITEMS = 50000, 60000
# protocol: (queries, per class?, training images, per class?, dataset kind); 0 training
# images: the whole database trains
PROTOCOLS = {
    "cifar10-official": None,
    "cifar10-1000": (100, True, 500, True, "cifar10"),
    "cifar10-10000": (1000, True, 0, False, "cifar10"),
    "flickr25k": (2000, False, 5000, False, "list"),
    "nuswide21": (100, True, 500, True, "list"),
    "custom": None,
}
SETS = ("query", "train", "database")


@dataclass
class Drawn:
    """A split of N items: the item numbers of each set, ascending."""
    query: np.ndarray
    train: np.ndarray
    database: np.ndarray


def draw(labels: np.ndarray, queries: int, queries_per_class: bool, train: int,
         train_per_class: bool, seed: int, classes: Optional[Sequence[str]] = None,
         preset: Optional[str] = None) -> Drawn:
    """Queries, then the database (every other item), then training images from the database.

    labels: (N, C) bool, one row per item (one-hot for single-label data). `queries` and
    `train` are totals, or per class when the flag says so; train 0: the whole database.
    `classes` names the label columns and `preset` the protocol, for the errors (`pick`).
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    query = pick(labels, order, queries, queries_per_class, "queries", classes, preset)
    taken = np.zeros(len(labels), bool)
    taken[query] = True
    database = np.flatnonzero(~taken)
    if train:
        train_items = pick(labels, database[rng.permutation(len(database))], train, train_per_class,
                           "training images", classes, preset)
    else:
        train_items = database
    return Drawn(np.sort(query), np.sort(train_items), database)


def pick(labels: np.ndarray, order: np.ndarray, n: int, per_class: bool, what: str,
         classes: Optional[Sequence[str]] = None, preset: Optional[str] = None) -> np.ndarray:
    """The first `n` items of `order`, or with `per_class` for each class the first `n` items
    of `order` that carry it (an item counts for the first of its classes with room).
    SPQError when there are too few, naming the class (`classes`: the column names) and,
    for a `preset` protocol, which sizes it draws and how to draw fewer."""
    if not per_class:
        if n > len(order):
            raise SPQError(short_of(f"{n} {what}", f"only {len(order)} items are there to draw from",
                                    preset, f"--{'query' if what == 'queries' else 'train'} {len(order)}"))
        return order[:n]
    room = np.full(labels.shape[1], n)
    chosen = []
    for item in order:
        free = np.flatnonzero(labels[item] & (room > 0))
        if len(free):
            room[free[0]] -= 1
            chosen.append(item)
            if not room.any():
                break
    if room.any():
        short = int(np.flatnonzero(room)[0])
        name = repr(classes[short]) if classes is not None else str(short)
        have = n - int(room[short])
        option = "--query_per_class" if what == "queries" else "--train_per_class"
        raise SPQError(short_of(f"{n} {what} per class", f"class {name} has only {have} images left",
                                preset, f"{option} {have}"))
    return np.array(chosen, dtype=np.int64)


def short_of(asked: str, found: str, preset: Optional[str], fewer: str) -> str:
    """The error of a draw that cannot be made: what was asked, what there is, and the remedy
    (a preset's sizes are fixed: a custom split draws fewer)."""
    if preset is None:
        return f"{asked} were asked, but {found}; ask for fewer ({fewer} at most)"
    return (f"the {preset} protocol draws {asked}, but {found}: this collection is smaller than the "
            f"one {preset} was made for; draw a custom split instead (python -m spq.split custom "
            f"... {fewer}, and the other sizes you want)")


def official_cifar10() -> Drawn:
    train = np.arange(CIFAR_TRAIN)
    return Drawn(np.arange(CIFAR_TRAIN, CIFAR_ITEMS), train, train)


def split_hash(ids: Dict[str, list], source: str) -> str:
    """The SHA-256 of the three sets (item numbers or paths) and of their source."""
    blob = json.dumps({"source": source, **{s: ids[s] for s in SETS}}, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def content_hash(split: Dict) -> str:
    """The SHA-256 of everything split.json records but this hash itself (its sets, their
    source, protocol, seed, sizes and counts): an edit anywhere shows."""
    blob = json.dumps({k: v for k, v in split.items() if k != "content_sha256"}, sort_keys=True,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def sizes_and_counts(drawn: Drawn, labels: np.ndarray, classes: Sequence[str]) -> Tuple[Dict, Dict]:
    sizes = {s: int(len(getattr(drawn, s))) for s in SETS}
    counts = {s: dict(zip(classes, labels[getattr(drawn, s)].sum(0).astype(int).tolist())) for s in SETS}
    return sizes, counts


def collection(data_dir, list_file: Optional[str], num_cls: Optional[int]
               ) -> Tuple[np.ndarray, List[str], Optional[List[str]], str, str]:
    """(labels (N, C) bool, class names, list lines or None, source description, source
    hash) of CIFAR-10's pooled images in `data_dir`, or of `list_file`'s lines."""
    from .cifar10 import CLASSES, load_cifar10           # torch: imported only when a split is drawn
    from .lists import read_list
    if list_file:
        entries = read_list(list_file, data_dir, num_cls, allow_outside=False)
        text = read_bytes(list_file, "list", "the list file")
        lines = [line for line in text.decode("utf-8-sig").splitlines() if line.strip()]
        seen: Dict[str, int] = {}
        for number, line in zip(entries.lines, lines):
            first = seen.setdefault(item_path(line.strip(), num_cls), number)
            if first != number:
                raise SPQError(f"{list_file}, line {number}: repeats the image of line {first}; a split "
                               f"needs each image once (remove the repeated lines)")
        return (entries.labels.numpy().astype(bool), column_names(Path(list_file), num_cls),
                [line.strip() for line in lines], str(Path(list_file).resolve()), hashlib.sha256(text).hexdigest())
    data = load_cifar10(data_dir)
    labels = np.concatenate([data.train_labels.numpy(), data.query_labels.numpy()])
    one_hot = np.eye(10, dtype=bool)[labels]
    digest = hashlib.sha256(labels.astype(np.int64).tobytes()).hexdigest()
    return one_hot, list(CLASSES), None, "cifar10 (official train then test images)", digest


def column_names(list_file: Path, num_cls: int) -> List[str]:
    """The names of a list file's label columns: the lines of the classes.txt beside it (as
    python -m spq.prepare writes it) when it names exactly `num_cls`, else their numbers."""
    names = list_file.parent / "classes.txt"
    found = [line.strip() for line in read_lines(names, "classes") if line.strip()] \
        if os.path.lexists(names) else []
    return found if len(found) == num_cls else [str(c) for c in range(num_cls)]


@dataclass(frozen=True)
class Request:
    """What python -m spq.split asks for: a protocol, its seed, the collection (CIFAR-10 in
    `data_dir`, or `list_file` with `num_cls` label columns) and, for custom, the sizes."""
    protocol: str
    seed: int
    data_dir: str
    list_file: Optional[str] = None
    num_cls: Optional[int] = None
    query: Optional[int] = None
    query_per_class: Optional[int] = None
    train: Optional[int] = None
    train_per_class: Optional[int] = None


def make_split(r: Request) -> Dict:
    """Draw the split `r` asks for; the contents of split.json (with "_lines" and "_drawn",
    what the list files beside it are written from)."""
    spec = PROTOCOLS[r.protocol]
    kind = "list" if r.list_file else "cifar10"
    if r.protocol.startswith("cifar10") and r.list_file:
        raise SPQError(f"{r.protocol} draws from CIFAR-10: drop --list, give --data_dir")
    if spec is not None and spec[4] == "list" and not r.list_file:
        raise SPQError(f"{r.protocol} draws from a list file: give --list FILE (and --num_cls)")
    labels, classes, lines, source, digest = collection(r.data_dir, r.list_file, r.num_cls)
    if kind == "cifar10" and len(labels) != CIFAR_ITEMS:
        raise SPQError(f"a split of CIFAR-10 is drawn from all of it ({CIFAR_ITEMS} images), and "
                       f"{r.data_dir} holds {len(labels)}: training would refuse the split; give "
                       f"--data_dir the full CIFAR-10")
    if r.protocol == "cifar10-official":
        drawn = official_cifar10()
    elif r.protocol == "custom":
        if (r.query is None) == (r.query_per_class is None):
            raise SPQError("custom needs one of --query N or --query_per_class N")
        drawn = draw(labels, r.query if r.query is not None else r.query_per_class,
                     r.query is None, r.train_per_class if r.train_per_class else (r.train or 0),
                     bool(r.train_per_class), r.seed, classes)
    else:
        drawn = draw(labels, *spec[:4], r.seed, classes, r.protocol)
    ids = {s: (getattr(drawn, s).tolist() if lines is None else [item_path(lines[i], r.num_cls) for i in getattr(drawn, s)])
           for s in SETS}
    sizes, counts = sizes_and_counts(drawn, labels, classes)
    seeded = r.protocol != "cifar10-official"
    return {"format": FORMAT, "version": VERSION, "protocol": r.protocol, "seed": r.seed if seeded else None,
            "dataset": kind, "source": source, "source_sha256": digest, "sizes": sizes, "per_class": counts,
            "hash": split_hash(ids, digest), **ids, "_lines": lines, "_drawn": drawn}


def item_path(line: str, num_cls: int) -> str:
    """The id of a list line: its path (everything before its last `num_cls` fields),
    normalised with forward slashes, as `spq.data.imageset.relative_ids` makes it."""
    return Path(os.path.normpath(line.rsplit(None, num_cls)[0])).as_posix()


def read_split(path) -> Dict:
    """A split.json written by this module, checked before any of it is used: its sets (item
    numbers within CIFAR-10's 60,000, or paths; none twice), their hash and the hash of the
    whole record, the protocol against the kind of data it was drawn from, the seed, the
    sizes and counts, and for a list the three list files beside it (their sizes and
    SHA-256: their labels as well as their paths). SPQError naming the file otherwise."""
    path = Path(path)
    split = read_json(path, "split", "the split", remedy="; write one with python -m spq.split")
    if not isinstance(split, dict) or split.get("format") != FORMAT:
        raise SPQError(f"{path} is not a split of python -m spq.split")
    if split.get("version") != VERSION:
        raise SPQError(f"{path} was written by another version of python -m spq.split (this one reads "
                       f"version {VERSION}, which also checks its list files); draw it again")
    kind = split.get("dataset")
    problem = _sets_problem(split, kind) or _record_problem(split, kind)
    if problem:
        raise SPQError(f"{path}: {problem}; draw the split again with python -m spq.split")
    if split.get("content_sha256") != content_hash(split) or \
            split.get("hash") != split_hash({s: split[s] for s in SETS}, split.get("source_sha256")):
        raise SPQError(f"{path} was changed after python -m spq.split wrote it (its hashes do not match "
                       f"its contents); draw it again")
    if kind == "list":
        verified(path.parent, path.name, "the split", remedy="; draw the split again")
    elif split["files"]:
        raise SPQError(f"{path}: a CIFAR-10 split lists no files; draw it again")
    return split


def _sets_problem(split: Dict, kind) -> Optional[str]:
    """What is wrong with the three sets of a split record, or None."""
    if kind not in ("cifar10", "list"):
        return f"its dataset {shown(kind)} is not cifar10 or list"
    for s in SETS:
        items = split.get(s)
        ok = isinstance(items, list) and all(
            (isinstance(i, int) and not isinstance(i, bool) and 0 <= i < CIFAR_ITEMS) if kind == "cifar10"
            else (isinstance(i, str) and i and "\n" not in i) for i in items)
        if not ok:
            return f"its {s} set is not a list of {'item numbers' if kind == 'cifar10' else 'paths'}"
        if len(set(items)) != len(items):
            twice = next(i for i in items if items.count(i) > 1) if len(items) < 10 ** 4 else \
                next(i for i, n in Counter(items).items() if n > 1)
            return f"its {s} set names {shown(twice)} more than once"
    if set(split["query"]) & set(split["database"]) or not set(split["train"]) <= set(split["database"]):
        return "its queries meet its database, or its training images lie outside it"
    if not split["query"]:
        return "it has no queries"
    return None


def _record_problem(split: Dict, kind: str) -> Optional[str]:
    """What is wrong with the rest of a split record (protocol, seed, sizes, counts, files)."""
    protocol = split.get("protocol")
    if protocol not in PROTOCOLS:
        return f"its protocol {shown(protocol)} is none of {', '.join(PROTOCOLS)}"
    if protocol_kind(protocol) not in (None, kind):
        return f"its protocol {protocol} draws from {protocol_kind(protocol)}, but its dataset is {kind}"
    seed = split.get("seed")
    if protocol == "cifar10-official" and seed is not None:
        return "it is the official split, which has no seed"
    if protocol != "cifar10-official" and not (isinstance(seed, int) and not isinstance(seed, bool)
                                               and 0 <= seed < 2 ** 63):
        return f"its seed {shown(seed)} is not a non-negative integer"
    if split.get("sizes") != {s: len(split[s]) for s in SETS}:
        return "its recorded sizes are not those of its sets"
    counts = split.get("per_class")
    if not (isinstance(counts, dict) and set(counts) == set(SETS)
            and all(isinstance(c, dict) and c and all(isinstance(k, str) for k in c)
                    and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in c.values())
                    for c in counts.values())
            and len({tuple(c) for c in counts.values()}) == 1):
        return "it lacks its counts per class"
    if not isinstance(split.get("files"), dict):
        return "it lists no files"
    return None


def protocol_kind(protocol: str) -> Optional[str]:
    """The kind of data a protocol draws from ("cifar10", "list"), or None for custom."""
    if protocol == "custom":
        return None
    return "cifar10" if protocol == "cifar10-official" else PROTOCOLS[protocol][4]
