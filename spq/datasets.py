"""The dataset kinds of --dataset, opened in one place for training and for spq.index.

    cifar10   the official python batches in DATA_DIR/cifar-10-batches-py (spq.data)
    folder    DATA_DIR/train/ [test/ gallery/] in the ImageFolder layout (spq.folder)
    list      multi-label list files, paths relative to DATA_DIR (spq.lists)

`open_dataset` lists a dataset's splits ("train", and "test", "gallery" when present)
before any image file is decoded; training decodes them all (`load_data`), `python -m
spq.index build` streams one (`spq.data.Split.batches`).
"""
from pathlib import Path
from typing import Dict

from .cifar10 import FOLDER, cifar10_splits
from .imageset import ImageSet, Split, decode_dataset
from .errors import SPQError
from .folder import open_folder
from .lists import open_lists
from .subset import cap_per_class

KINDS = ("cifar10", "folder", "list")


def open_dataset(args) -> Dict[str, Split]:
    """The splits of the dataset the options name (--dataset, --data_dir, --num_cls, the list
    files, --allow_outside_data_dir, --if_download; see args.py)."""
    if args.dataset == "cifar10":
        root = Path(args.data_dir)
        if (root / "train").is_dir() and not (root / FOLDER).is_dir() and not args.if_download:
            raise SPQError(f"--data_dir {root} holds train/ but no {FOLDER}/: for a folder of your "
                           f"own images pass --dataset folder (--dataset cifar10 is the default)")
        return cifar10_splits(args.data_dir, args.num_cls, args.if_download)
    if args.dataset == "folder":
        return open_folder(args.data_dir)
    return open_lists(args.data_dir, args.train_list, args.query_list, args.gallery_list,
                      args.num_cls, args.allow_outside_data_dir)


def gallery_split(splits: Dict[str, Split]) -> str:
    """The name of the retrieval database among `splits`: "gallery" if present, else "train"."""
    return "gallery" if "gallery" in splits else "train"


def load_data(args, say=print) -> ImageSet:
    """The images of the dataset decoded once at --input_size (folder and list images up to
    --images_in_memory_gb in memory, beyond it memory-mapped in --output_dir); with
    --train_per_class / --query_per_class, their first images of each class."""
    budget = int(args.images_in_memory_gb * 2 ** 30)
    data = decode_dataset(open_dataset(args), args.input_size, args.num_workers, budget,
                          args.output_dir)
    train_n, query_n = args.train_per_class, args.query_per_class
    if train_n or query_n:
        data = cap_per_class(data, train_n, query_n)
        caps = [f"{n} {what}" for n, what in [(train_n, "training"), (query_n, "query")] if n]
        say(f"subset: at most {' and '.join(caps)} images per class")
    if args.dataset != "cifar10" or train_n or query_n:
        say(data.summary(f"{args.dataset} dataset"))
    return data
