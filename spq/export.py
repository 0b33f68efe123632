"""Export a collection's codes as plain numpy files, for use without this program.

    python -m spq.export --checkpoint CKPT [dataset options] [--split gallery|train|query]
                         --out DIR [--descriptors] [--force]
    python -m spq.export --index INDEX --out DIR [--force]

From a checkpoint and a dataset (the options of `python -m spq.index build`, the same
encoding: `spq.run.indexing.build_index`), or from an index file that build wrote (then no image
is read), it writes into DIR:
    codes.npy        (G, M) codes, the smallest integer dtype for K words (uint8 up to 256)
    codebooks.npy    (M, K, L) float32
    labels.npy       int64 (G,) class indices or uint8 (G, C) multi-hot rows; only when the
                     data has labels
    paths.txt        one line per item: its file relative to the data folder, or for
                     CIFAR-10 "cifar10 <split> #<position>"
    descriptors.npy  (G, M*L) float32, the real-valued descriptors the codes quantize; only
                     with --descriptors (from a dataset)
    export.json      what the files hold: shapes, dtypes, bits, the ADC distance, the
                     checkpoint's path and SHA-256, input size, resize rule, counts
Each file is written atomically; export.json last, so a folder without it is incomplete.
See docs/api.md for loading them and ranking with numpy.
"""
import argparse
import sys
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from .errors import SPQError, exit_status
from .files.read import file_digest
from .files.lock import LOCK, OutputLock
from .files.write import atomic_save_json, atomic_write, atomic_write_bytes, file_record, remove_stale_temp_files
from .run import faults
from .method.quantization import code_bits
from .options.declared import HelpFormatter, add_dataset_options, add_precision_option
from .options.values import check_dataset_options, data_options
from .run.device import resolve_device
from .run.indexing import build_index
from .run.trained import load_model
from .retrieval.distances import DISTANCES
from .store.checkpoint import load_checkpoint
from .store.index import Index, load_index

FORMAT = "spq-export"
VERSION = 1
MANIFEST = "export.json"        # written last, naming every other file with its size and SHA-256
FILES = (MANIFEST, "codes.npy", "codebooks.npy", "labels.npy", "paths.txt", "descriptors.npy")
RULES = {"euclidean": "ADC: per book m, the Euclidean distance between the query's sub-vector m "
                      "(columns m*L..(m+1)*L-1) and codebooks[m, codes[g, m]]; summed over books "
                      "(float32, book order); smaller is nearer, ties by item order (the authors' "
                      "evaluation)",
         "squared": "ADC: per book, the squared Euclidean distance, summed: the squared distance "
                    "to the item's reconstruction (FAISS IndexPQ's ranking)"}


def sha256(path, kind: str) -> str:
    """The SHA-256 of a checkpoint's or an index's file, read through the way in."""
    return file_digest(path, kind)["sha256"]


def encode_dataset(model, ckpt, args, precision: str):
    """(Index, descriptors (G, M*L) float32 or None) of the checkpoint's model on the split.

    The descriptors are the very ones `build_index` quantizes: a forward hook on the
    network keeps each batch's output (build_index calls it once per batch of read images)."""
    kept = []
    hook = model.register_forward_hook(lambda m, i, out: kept.append(out.detach().float().cpu())) \
        if args.descriptors else None
    try:
        index = build_index(model, ckpt, args.checkpoint, data_options(args, ckpt["args"]), args.split,
                            args.num_workers, precision)
    finally:
        if hook is not None:
            hook.remove()
    descriptors = torch.cat(kept) if args.descriptors else None
    if descriptors is not None and len(descriptors) != len(index):
        raise RuntimeError(f"kept {len(descriptors)} descriptors of {len(index)} items")
    return index, descriptors


def checkpoint_of_index(index: Index) -> Dict:
    """The checkpoint an index names, when that file is still the one it was built with:
    its path and SHA-256 (None when it is gone or now holds another model)."""
    path = index.config.get("checkpoint")
    record = {"path": path, "sha256": None, "epoch": index.config.get("epoch")}
    try:
        ckpt = load_checkpoint(path) if path else None
        same = ckpt is not None and torch.equal(ckpt["model"]["codebooks"].float(), index.codebooks)
    except SPQError:
        same = False
    if same:
        record["sha256"] = sha256(path, "checkpoint")
    else:
        print(f"warning: {path}, the index's checkpoint, is gone or holds another model now: "
              f"export.json records no SHA-256", file=sys.stderr)
    return record


def describe_array(array: np.ndarray) -> Dict:
    return {"shape": list(array.shape), "dtype": str(array.dtype)}


def prepare_out(out: Path, force: bool) -> None:
    """Refuse a non-empty folder (its lock aside) unless `force`; with it, remove this
    program's files there, export.json first (so that none of a previous export outlives
    this one, and the folder reads as incomplete until this one's export.json), leaving any
    other file alone. The caller holds OUT's lock."""
    if any(p.name != LOCK for p in out.iterdir()):
        if not force:
            raise SPQError(f"--out {out} is not empty: pass --force to replace an export there, "
                           f"or choose an empty folder")
        for name in FILES:                               # export.json first: incomplete from here
            (out / name).unlink(missing_ok=True)


def write_export(index: Index, descriptors: Optional[torch.Tensor], out: Path, source: Dict,
                 checkpoint: Dict) -> Dict:
    """Write the files into `out`; returns export.json's contents."""
    arrays = {"codes.npy": index.codes.numpy(), "codebooks.npy": index.codebooks.float().numpy()}
    if index.labels is not None:
        arrays["labels.npy"] = index.labels.numpy()
    if descriptors is not None:
        arrays["descriptors.npy"] = descriptors.float().numpy()
    for name, array in arrays.items():
        atomic_write(out / name, lambda f, a=array: np.save(f, a, allow_pickle=False))
    names = [index.name(i) for i in range(len(index))]
    atomic_write_bytes(out / "paths.txt", "".join(n + "\n" for n in names).encode())
    m_books, k_words, length = index.codebooks.shape
    config = index.config
    record = {
        "format": FORMAT, "version": VERSION, "source": source, "checkpoint": checkpoint,
        "dataset": config.get("dataset"), "data_dir": config.get("data_dir"), "split": config.get("split"),
        "input_size": config["input_size"], "resize": config.get("resize", "crop"),
        "count": len(index), "books": m_books, "words": k_words, "word_length": length,
        "descriptor_length": m_books * length, "bits": code_bits(m_books, k_words),
        "distance": "euclidean", "distances": {d: RULES[d] for d in DISTANCES},
        "classes": index.classes,
        "labels": (None if index.labels is None else
                   "multi-hot rows, one column per class" if index.multi_label else "class indices into classes"),
        "paths": ("files relative to data_dir (absolute when outside it)" if index.paths is not None
                  else f"{config.get('dataset')} {config.get('split')} #<position in the split>"),
    }
    shapes = {**{name: describe_array(a) for name, a in arrays.items()}, "paths.txt": {"lines": len(names)}}
    record["files"] = {name: {**shape, **file_record(out / name)} for name, shape in shapes.items()}
    atomic_save_json(record, out / MANIFEST)
    return record


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("python -m spq.export", allow_abbrev=False, formatter_class=HelpFormatter,
                                description="Write a collection's codes, codebooks, labels and names as "
                                            "numpy files (see docs/api.md).")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", default=None,
                      help="a main_SPQ.py checkpoint (best.pth, last.pth): encode the dataset the "
                           "data options name with its model")
    what.add_argument("--index", default=None, metavar="FILE",
                      help="an index file of python -m spq.index build: export its codes (no image "
                           "is read; no data option applies)")
    data = p.add_argument_group("data (with --checkpoint; as for python -m spq.index build)")
    add_dataset_options(data)
    data.add_argument("--split", default="gallery", choices=["gallery", "train", "query"],
                      help="which images to encode: gallery means the retrieval database of the "
                           "evaluation (a folder's gallery/, else its train/; the gallery list, else "
                           "the training list; CIFAR-10's training set); query: the queries")
    data.add_argument("--descriptors", action="store_true",
                      help="also write descriptors.npy, the real-valued descriptors (needs a dataset)")
    run = p.add_argument_group("encoding (with --checkpoint)")
    run.add_argument("--num_workers", default=4, type=int,
                     help="processes decoding image files (0: in this process)")
    run.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"],
                     help="where the network runs: auto takes CUDA when available")
    add_precision_option(run, "the checkpoint's")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write the files into")
    p.add_argument("--force", action="store_true",
                   help="write into a folder that is not empty (this program's files there are replaced)")
    p.data_group = data
    return p


def main(argv=None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    faults.install()        # the crash tests' fault points (SPQ_FAULTS); nothing otherwise
    if args.index is not None:
        given = [a.option_strings[0] for a in parser.data_group._group_actions
                 if getattr(args, a.dest) != a.default]
        if args.descriptors:
            parser.error("--descriptors needs a dataset (--checkpoint with the data options): an "
                         "index holds only codes")
        if given:
            parser.error(f"{', '.join(given)}: --index reads no dataset (its items are in the "
                         f"index); drop them, or export from --checkpoint")
    else:
        check_dataset_options(parser, args)

    def work():
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise SPQError(f"--out {out} is a file, not a folder")
        if args.index is not None:
            index, descriptors = load_index(args.index), None
            source = {"index": str(Path(args.index).resolve())}
            checkpoint = checkpoint_of_index(index)
        else:
            model, ckpt, precision = load_model(args.checkpoint, resolve_device(args.device, "0"), args.precision)
        with OutputLock(out, what="--out"):                 # one export at a time into OUT
            for path in remove_stale_temp_files(out, FILES):
                print(f"removed {path}, left by a run that was killed while writing", file=sys.stderr)
            prepare_out(out, args.force)                    # after the checks, before the encoding
            if args.index is None:
                index, descriptors = encode_dataset(model, ckpt, args, precision)
                source = {"index": None}
                checkpoint = {"path": str(Path(args.checkpoint).resolve()),
                              "sha256": sha256(args.checkpoint, "checkpoint"), "epoch": ckpt["epoch"]}
            write_export(index, descriptors, out, source, checkpoint)
        print(f"wrote {out}: {len(index)} codes of {code_bits(*index.codebooks.shape[:2])} bits"
              + (" and their descriptors" if descriptors is not None else ""))

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
