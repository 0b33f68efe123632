"""The dataset kinds of --dataset, opened in one place for training and for spq.index.

    cifar10   the official python batches in DATA_DIR/cifar-10-batches-py (spq.data)
    folder    DATA_DIR/train/ [test/ gallery/] in the ImageFolder layout (spq.folder)
    list      multi-label list files, paths relative to DATA_DIR (spq.lists)

`open_dataset` lists a dataset's splits ("train", and "test", "gallery" when present)
before any image file is decoded; training decodes them all (`load_data`), `python -m
spq.index build` streams one (`spq.data.Split.batches`).
"""
from pathlib import Path
from typing import Dict, Optional

from .cifar10 import FOLDER, cifar10_splits
from .imageset import ImageSet, Split, decode_dataset
from .errors import SPQError
from .folder import open_folder
from .lists import open_lists
from .split import read_split, split_hash
from .subset import cap_per_class

KINDS = ("cifar10", "folder", "list")


def open_dataset(args) -> Dict[str, Split]:
    """The splits of the dataset the options name (--dataset, --data_dir, --num_cls, the list
    files, --split_file, --allow_outside_data_dir, --if_download; see spq/options.py)."""
    split = read_dataset_split(args)
    if args.dataset == "cifar10":
        root = Path(args.data_dir)
        if (root / "train").is_dir() and not (root / FOLDER).is_dir() and not args.if_download:
            raise SPQError(f"--data_dir {root} holds train/ but no {FOLDER}/: for a folder of your "
                           f"own images pass --dataset folder (--dataset cifar10 is the default)")
        return cifar10_splits(args.data_dir, args.num_cls, args.if_download, split)
    if args.dataset == "folder":
        return open_folder(args.data_dir)
    if split is not None:      # the split's list files, beside its split.json
        folder = Path(args.split_file).parent
        splits = open_lists(args.data_dir, folder / "train.txt", folder / "query.txt", folder / "database.txt",
                            args.num_cls, args.allow_outside_data_dir)
        for name, key in (("train", "train"), ("test", "query"), ("gallery", "database")):
            if splits[name].ids != split[key]:
                raise SPQError(f"{folder / (key + '.txt')} does not list the {key} images of {args.split_file} "
                               f"(it was changed after python -m spq.split wrote them); draw the split again")
        return splits
    return open_lists(args.data_dir, args.train_list, args.query_list, args.gallery_list,
                      args.num_cls, args.allow_outside_data_dir)


def read_dataset_split(args) -> Optional[Dict]:
    """--split_file's split.json, checked against --dataset and --num_cls; None without it."""
    if not getattr(args, "split_file", None):
        return None
    split = read_split(args.split_file)
    if split["dataset"] != args.dataset:
        raise SPQError(f"--split_file {args.split_file} was drawn from {split['dataset']}, not --dataset {args.dataset}")
    classes = len(split["per_class"]["query"])
    if args.dataset == "list" and classes != args.num_cls:
        raise SPQError(f"--split_file {args.split_file} has {classes} label columns: pass --num_cls {classes}")
    return split


def split_record(args, data: ImageSet) -> Dict[str, object]:
    """Which split a run uses: its protocol, seed and a hash of its sets. A --split_file's own,
    when its sets are used whole; else a hash of the items the run holds (the official
    CIFAR-10 split, folders, list files, per-class subsets)."""
    split = read_dataset_split(args)
    whole = not (args.train_per_class or args.query_per_class)
    if split is not None and whole:
        return {"protocol": split["protocol"], "seed": split["seed"], "hash": split["hash"]}
    protocol = {"cifar10": "cifar10-official", "folder": "folder", "list": "lists"}[args.dataset]
    if split is not None:
        protocol = split["protocol"]
    ids = {"query": data.ids.get("test", []), "train": data.ids.get("train", []),
           "database": data.ids.get("gallery", data.ids.get("train", []))}
    subset = "" if whole else " subset"
    return {"protocol": protocol + subset, "seed": None if split is None else split["seed"],
            "hash": split_hash(ids, "")}


def gallery_split(splits: Dict[str, Split]) -> str:
    """The name of the retrieval database among `splits`: "gallery" if present, else "train"."""
    return "gallery" if "gallery" in splits else "train"


def load_data(args, say=print) -> ImageSet:
    """The images of the dataset decoded once at --input_size (folder and list images up to
    --images_in_memory_gb in memory, beyond it memory-mapped in --output_dir); with
    --train_per_class / --query_per_class, their first images of each class."""
    budget = int(args.images_in_memory_gb * 2 ** 30)
    data = decode_dataset(open_dataset(args), args.input_size, args.num_workers, budget,
                          args.output_dir, args.resize)
    train_n, query_n = args.train_per_class, args.query_per_class
    if train_n or query_n:
        data = cap_per_class(data, train_n, query_n)
        caps = [f"{n} {what}" for n, what in [(train_n, "training"), (query_n, "query")] if n]
        say(f"subset: at most {' and '.join(caps)} images per class")
    if args.dataset != "cifar10" or train_n or query_n:
        say(data.summary(f"{args.dataset} dataset"))
    data.split = split_record(args, data)
    if getattr(args, "split_file", None):
        say(f"split: {data.split['protocol']} (seed {data.split['seed']}, hash {data.split['hash'][:16]})")
    return data
