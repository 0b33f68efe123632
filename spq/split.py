"""python -m spq.split: draw query, training and database sets from CIFAR-10 or a labelled
list file with a seed, and write them as split.json (and, for a list, the three list
files beside it). What each protocol draws: `spq.data.splits` (docs/datasets.md).
"""
import argparse
import sys
from pathlib import Path
from typing import Dict, List

from .data import splits
from .data.splits import PROTOCOLS, SETS, Request, content_hash, make_split
from .errors import SPQError, exit_status
from .files.lock import OutputLock
from .files.write import atomic_save_json, atomic_write_bytes, file_record, remove_stale_temp_files
from .run import faults

MANIFEST = "split.json"


def write_split(split: Dict, out: Path, force: bool = False) -> List[Path]:
    """OUT/split.json, and for a list the three list files before it; returns the paths
    written. One writer at a time (OUT's lock); the temporary files of a killed one are
    removed. split.json, written last (an earlier one removed first), names the list files
    with their sizes and SHA-256 and its content hash covers them: a folder without it, or
    whose files differ from it, is refused by every reader (`spq.data.splits.read_split`)."""
    lines, drawn = split.pop("_lines"), split.pop("_drawn")
    lists = [f"{s}.txt" for s in SETS] if lines is not None else []
    with OutputLock(out, what="OUT"):
        for path in remove_stale_temp_files(out, [MANIFEST, *(f"{s}.txt" for s in SETS)]):
            print(f"removed {path}, left by a run that was killed while writing", file=sys.stderr)
        existing = [n for n in [MANIFEST, *lists] if (out / n).exists()]
        if existing and not force:
            raise SPQError(f"{out} already holds {', '.join(existing)}; choose another folder or pass --force")
        (out / MANIFEST).unlink(missing_ok=True)
        for s in SETS if lines is not None else ():
            atomic_write_bytes(out / f"{s}.txt", "".join(lines[i] + "\n" for i in getattr(drawn, s)).encode())
        record = {**split, "files": {name: file_record(out / name) for name in lists}}
        atomic_save_json({**record, "content_sha256": content_hash(record)}, out / MANIFEST)
    return [out / MANIFEST] + [out / name for name in lists]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help; the description (each protocol's sizes) kept as written."""


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("python -m spq.split", allow_abbrev=False, description=splits.__doc__,
                                formatter_class=HelpFormatter)
    p.add_argument("protocol", choices=list(PROTOCOLS), help="what to draw: the sizes above (docs/datasets.md)")
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
    faults.install()        # the crash tests' fault points (SPQ_FAULTS); nothing otherwise
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

    request = Request(args.protocol, args.seed, args.data_dir, args.list, args.num_cls, args.query,
                      args.query_per_class, args.train, args.train_per_class)

    def work():
        split = make_split(request)
        sizes = split["sizes"]
        for path in write_split(split, Path(args.out), args.force):
            print(f"wrote {path}")
        print(f"{args.protocol} (seed {split['seed']}): {sizes['query']} queries, {sizes['train']} training "
              f"images, {sizes['database']} in the database; hash {split['hash'][:16]}")

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
