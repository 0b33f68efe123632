"""Indexing a collection with a trained model and querying the index: the work of python
-m spq.index (and of python -m spq.export, which encodes as a build does).

A build encodes one set of a dataset batch by batch (decoding, the network and the codes
stream; only the codes are kept). A query decodes each image by the rule the model was
trained with (`spq.data.images.decode`: the checkpoint's --input_size and --resize),
describes it with the checkpoint's network in eval mode, and ranks the index by ADC
distance with the evaluation's search (`spq.retrieval.topk.search`; ties by index order).
A query's class is the name of the nearest folder above it that names a class of the
index (so queries from the dataset's own test/<class>/ folders are labelled); results are
then marked as of the same class or not. A multi-label (list) index shows each item's
labels; its queries have none. A query refuses, before decoding anything, more query
pixels than MAX_QUERY_BYTES.
"""
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from tqdm import tqdm

from ..data.datasets import DataOptions, gallery_set, open_dataset
from ..data.images import decode
from ..data.imageset import ImageSource
from ..data.lists import outside
from ..errors import SPQError
from ..method.network import SPQ
from ..method.quantization import encode, reconstruct
from ..retrieval.distances import result_distances
from ..retrieval.topk import search
from ..store.index import Index
from .encode import describe
from .trained import trained_precision

BATCH = 256                     # CIFAR-10 images per encoding batch (image files come CHUNK at a time)
MAX_QUERY_BYTES = 2 ** 31       # the query images' uint8 pixels plus one batch of them as float32


def pick_set(sources: Dict[str, ImageSource], name: str, data: DataOptions) -> str:
    """The set to index: "gallery" means the evaluation's database (`gallery_set`)."""
    chosen = gallery_set(sources) if name == "gallery" else name
    if chosen not in sources:    # only the queries can be missing: a folder without test/, no query list
        where = ("no --query_list was given" if data.dataset == "list" else
                 f"{Path(data.data_dir) / 'test'} does not exist")
        raise SPQError(f"--split {name}: {where}")
    return chosen


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
def build_index(model: SPQ, ckpt: Dict, checkpoint, data: DataOptions, name: str = "gallery",
                workers: int = 0, precision: Optional[str] = None) -> Index:
    """Encode one set (`name`: train, query, or gallery, the evaluation's database) of the
    dataset `data` names (`spq.data.datasets.open_dataset`; its input size and resizing rule
    the checkpoint's, `data_options`) into an Index, in `precision` (default: the one the
    checkpoint's model was evaluated in); unreadable files of a folder are skipped with one
    warning line, in a list they are an error."""
    input_size, resize = data.input_size, data.resize
    precision = precision or trained_precision(ckpt)
    data_dir = data.data_dir
    sources = open_dataset(data)
    split = pick_set(sources, name, data)
    source = sources[split]
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
    config = {"dataset": data.dataset, "data_dir": str(Path(data_dir).resolve()), "split": split,
              "input_size": input_size, "resize": resize, "precision": precision,
              "checkpoint": str(Path(checkpoint).resolve()),
              "epoch": ckpt["epoch"], "N_books": args["N_books"], "N_words": args["N_words"],
              "L_word": args["L_word"],
              "allow_outside_data_dir": data.allow_outside_data_dir}
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
