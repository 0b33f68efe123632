"""Query, training and database sets drawn from a labelled collection with a seed, and
recorded: python -m spq.split.

    python -m spq.split PROTOCOL OUT [--seed 0] [--data_dir DIR] [--list FILE --num_cls C]

The collection is CIFAR-10's 60,000 images pooled (--data_dir holding
cifar-10-batches-py/: the official training images are items 0..49,999, the test images
50,000..59,999), or the lines of a list file (--list, paths relative to --data_dir, such as
the all.txt of python -m spq.prepare). Every protocol draws the queries first, then the
database is every other item and the training images are drawn from the database:

    cifar10-official  the official split, as the paper and the authors' code: the 10,000 test
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
import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .cifar10 import CLASSES, load_cifar10
from .errors import SPQError, exit_status
from .fileio import atomic_save_json, atomic_write_bytes
from .lists import read_list

FORMAT = "spq-split"
VERSION = 1
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
         train_per_class: bool, seed: int) -> Drawn:
    """Queries, then the database (every other item), then training images from the database.

    labels: (N, C) bool, one row per item (one-hot for single-label data). `queries` and
    `train` are totals, or per class when the flag says so; train 0: the whole database.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(labels))
    query = pick(labels, order, queries, queries_per_class, "queries")
    taken = np.zeros(len(labels), bool)
    taken[query] = True
    database = np.flatnonzero(~taken)
    if train:
        train_items = pick(labels, database[rng.permutation(len(database))], train, train_per_class,
                           "training images")
    else:
        train_items = database
    return Drawn(np.sort(query), np.sort(train_items), database)


def pick(labels: np.ndarray, order: np.ndarray, n: int, per_class: bool, what: str) -> np.ndarray:
    """The first `n` items of `order`, or with `per_class` for each class the first `n` items
    of `order` that carry it (an item counts for the first of its classes with room)."""
    if not per_class:
        if n > len(order):
            raise SPQError(f"{n} {what} were asked but only {len(order)} items are there to draw from")
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
        raise SPQError(f"class {short} has only {n - int(room[short])} items left for {n} {what} per "
                       f"class; ask for fewer")
    return np.array(chosen, dtype=np.int64)


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


def collection(args) -> Tuple[np.ndarray, List[str], Optional[List[str]], str, str]:
    """(labels (N, C) bool, class names, list lines or None, source description, source hash)."""
    if args.list:
        entries = read_list(args.list, args.data_dir, args.num_cls, allow_outside=False)
        text = Path(args.list).read_bytes()
        lines = [line for line in text.decode("utf-8-sig").splitlines() if line.strip()]
        seen: Dict[str, int] = {}
        for number, line in zip(entries.lines, lines):
            first = seen.setdefault(item_path(line.strip(), args), number)
            if first != number:
                raise SPQError(f"{args.list}, line {number}: repeats the image of line {first}; a split "
                               f"needs each image once (remove the repeated lines)")
        return (entries.labels.numpy().astype(bool), [str(c) for c in range(args.num_cls)],
                [line.strip() for line in lines], str(Path(args.list).resolve()), hashlib.sha256(text).hexdigest())
    data = load_cifar10(args.data_dir)
    labels = np.concatenate([data.train_labels.numpy(), data.test_labels.numpy()])
    one_hot = np.eye(10, dtype=bool)[labels]
    digest = hashlib.sha256(labels.astype(np.int64).tobytes()).hexdigest()
    return one_hot, list(CLASSES), None, "cifar10 (official train then test images)", digest


def make_split(args) -> Dict:
    """Draw the split the options describe; the contents of split.json."""
    spec = PROTOCOLS[args.protocol]
    kind = "list" if args.list else "cifar10"
    if args.protocol.startswith("cifar10") and args.list:
        raise SPQError(f"{args.protocol} draws from CIFAR-10: drop --list, give --data_dir")
    if spec is not None and spec[4] == "list" and not args.list:
        raise SPQError(f"{args.protocol} draws from a list file: give --list FILE (and --num_cls)")
    labels, classes, lines, source, digest = collection(args)
    if args.protocol == "cifar10-official":
        if len(labels) != CIFAR_ITEMS:
            raise SPQError(f"cifar10-official needs the full CIFAR-10 ({CIFAR_ITEMS} images), found {len(labels)}")
        drawn = official_cifar10()
    elif args.protocol == "custom":
        if (args.query is None) == (args.query_per_class is None):
            raise SPQError("custom needs one of --query N or --query_per_class N")
        drawn = draw(labels, args.query if args.query is not None else args.query_per_class,
                     args.query is None, args.train_per_class if args.train_per_class else (args.train or 0),
                     bool(args.train_per_class), args.seed)
    else:
        drawn = draw(labels, *spec[:4], args.seed)
    ids = {s: (getattr(drawn, s).tolist() if lines is None else [item_path(lines[i], args) for i in getattr(drawn, s)])
           for s in SETS}
    sizes, counts = sizes_and_counts(drawn, labels, classes)
    seeded = args.protocol != "cifar10-official"
    return {"format": FORMAT, "version": VERSION, "protocol": args.protocol, "seed": args.seed if seeded else None,
            "dataset": kind, "source": source, "source_sha256": digest, "sizes": sizes, "per_class": counts,
            "hash": split_hash(ids, digest), **ids, "_lines": lines, "_drawn": drawn}


def item_path(line: str, args) -> str:
    """The id of a list line: its path (everything before its last --num_cls fields),
    normalised with forward slashes, as `spq.imageset.relative_ids` makes it."""
    return Path(os.path.normpath(line.rsplit(None, args.num_cls)[0])).as_posix()


def write_split(split: Dict, out: Path, force: bool = False) -> List[Path]:
    """OUT/split.json, and for a list the three list files; returns the paths written."""
    lines, drawn = split.pop("_lines"), split.pop("_drawn")
    names = ["split.json"] + ([f"{s}.txt" for s in SETS] if lines is not None else [])
    existing = [n for n in names if (out / n).exists()]
    if existing and not force:
        raise SPQError(f"{out} already holds {', '.join(existing)}; choose another folder or pass --force")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if lines is not None:
        for s in SETS:
            atomic_write_bytes(out / f"{s}.txt", "".join(lines[i] + "\n" for i in getattr(drawn, s)).encode())
            written.append(out / f"{s}.txt")
    atomic_save_json({**split, "content_sha256": content_hash(split)}, out / "split.json")
    return [out / "split.json"] + written


def read_split(path) -> Dict:
    """A split.json written by this module, checked: its sets and their hash; SPQError
    naming the file when it is not one, or was edited."""
    path = Path(path)
    try:
        split = json.loads(path.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise SPQError(f"cannot read the split {path} ({type(e).__name__}); write one with "
                       f"python -m spq.split") from None
    if not isinstance(split, dict) or split.get("format") != FORMAT or split.get("version") != VERSION:
        raise SPQError(f"{path} is not a split of python -m spq.split (version {VERSION})")
    kind = split.get("dataset")
    for s in SETS:
        items = split.get(s)
        ok = isinstance(items, list) and all(
            (isinstance(i, int) and not isinstance(i, bool) and 0 <= i < CIFAR_ITEMS) if kind == "cifar10"
            else isinstance(i, str) for i in items)
        if not ok:
            raise SPQError(f"{path}: its {s} set is not a list of {'item numbers' if kind == 'cifar10' else 'paths'}")
    if "content_sha256" not in split:
        raise SPQError(f"{path} was written by an earlier version of python -m spq.split; draw it again")
    if split.get("content_sha256") != content_hash(split) or \
            split.get("hash") != split_hash({s: split[s] for s in SETS}, split.get("source_sha256")):
        raise SPQError(f"{path} was changed after python -m spq.split wrote it (its hashes do not match "
                       f"its contents); draw it again")
    counts = split.get("per_class")
    if not (split.get("protocol") in PROTOCOLS and kind in ("cifar10", "list")
            and isinstance(counts, dict) and set(counts) == set(SETS)
            and all(isinstance(c, dict) and c for c in counts.values())):
        raise SPQError(f"{path} lacks its protocol, dataset or counts per class; draw it again")
    if set(split["query"]) & set(split["database"]) or not set(split["train"]) <= set(split["database"]):
        raise SPQError(f"{path}: its queries meet its database, or its training images lie outside it")
    return split


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("python -m spq.split", allow_abbrev=False,
                                description="Draw query, training and database sets from CIFAR-10 or a "
                                            "labelled list file, with a seed, and record them.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("protocol", choices=list(PROTOCOLS), help="see the module docstring (docs/datasets.md)")
    p.add_argument("out", help="folder for split.json (and the three list files of a list)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random draws")
    p.add_argument("--data_dir", default="./data",
                   help="CIFAR-10: the folder holding cifar-10-batches-py/; a list: the folder its paths "
                        "are relative to")
    p.add_argument("--list", default=None, metavar="FILE", help="a labelled list file to draw from")
    p.add_argument("--num_cls", type=int, default=None, help="--list: its number of label columns")
    p.add_argument("--query", type=int, default=None, help="custom: queries in all")
    p.add_argument("--query_per_class", type=int, default=None, help="custom: queries per class")
    p.add_argument("--train", type=int, default=None, help="custom: training images in all (0: the database)")
    p.add_argument("--train_per_class", type=int, default=None, help="custom: training images per class")
    p.add_argument("--force", action="store_true", help="overwrite the files of an earlier split in OUT")
    return p


def main(argv=None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.list and not args.num_cls:
        parser.error("--list needs --num_cls, its number of label columns")
    for name in ("query", "query_per_class", "train", "train_per_class", "seed"):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name} must be zero or positive, got {value}")
    if args.protocol != "custom" and any(getattr(args, n) is not None for n in
                                         ("query", "query_per_class", "train", "train_per_class")):
        parser.error("--query, --query_per_class, --train and --train_per_class go with the custom protocol")
    if args.train is not None and args.train_per_class is not None:
        parser.error("give one of --train N and --train_per_class N, not both")
    if 0 in (args.query, args.query_per_class):
        parser.error("a split needs queries: --query and --query_per_class must be at least 1")

    def work():
        split = make_split(args)
        sizes = split["sizes"]
        for path in write_split(split, Path(args.out), args.force):
            print(f"wrote {path}")
        print(f"{args.protocol} (seed {split['seed']}): {sizes['query']} queries, {sizes['train']} training "
              f"images, {sizes['database']} in the database; hash {split['hash'][:16]}")

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
