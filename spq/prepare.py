"""List files for `--dataset list` from the official downloads of MIRFLICKR-25000 and NUS-WIDE.

    python -m spq.prepare flickr25k RAW OUT [--images all|labelled|tagged] [--concepts 24|38]
    python -m spq.prepare nuswide RAW OUT [--concepts 21|10|81] [--order alphabetical|frequency]

both with [--skip_missing] [--force]. RAW is the folder the official archives were unpacked
into; the list's paths are relative to it, so training takes `--data_dir RAW`.

Layouts read:
  flickr25k  RAW/mirflickr/im1.jpg ... im25000.jpg (mirflickr25k.zip), and the annotation
             files of mirflickr25k_annotations_v080.zip (animals.txt ... water.txt, the
             *_r1.txt files: one 1-based image number per line) in the first of
             RAW/mirflickr25k_annotations_v080/, RAW/annotations/, RAW itself that holds any.
             The images are im1.jpg to imN.jpg, N the highest number among the image files
             and the concept files read (25000 in the official data; another N is printed).
  nuswide    RAW/ImageList/Imagelist.txt (one Windows path per image, C:\\ImageData\\Flickr\\
             actor\\0001_2124494179.jpg read as Flickr/actor/0001_2124494179.jpg),
             RAW/ConceptsList/Concepts81.txt (one concept per line),
             RAW/Groundtruth/AllLabels/Labels_<concept>.txt (one 0 or 1 per line, line by line
             with Imagelist.txt), and the images in RAW/Flickr/<folder>/<file>.jpg.

Choices (defaults first):
  flickr25k --concepts   24: the 24 concepts (the label set of the peers' code: DeepHash-pytorch,
                         TreezzZ/DSDH_PyTorch, MeCoQ); 38: with the 14 stricter *_r1
                         concepts. Columns in alphabetical order of the names.
            --images     all: every image, rows of zeros included (the peers' majority:
                         DeepHash-pytorch and MeCoQ keep all 25,000; docs/prepare.md);
                         labelled: images carrying at least one chosen concept (24,581 in
                         the official data); tagged: labelled images whose
                         mirflickr/meta/tags/tags<N>.txt holds at least one tag listed in
                         mirflickr/doc/common_tags.txt (the cross-modal subset). A query
                         with no concept has no relevant item: its AP is 0, kept in the mean.
  nuswide   --concepts   21: the 21 concepts most frequent over all listed images, 10: the 10
                         most frequent, 81: every concept of Concepts81.txt. Frequency ties go
                         to the name earlier in alphabetical order. Images carrying none of
                         the chosen concepts are left out.
            --order      alphabetical: columns in alphabetical order of the names; frequency:
                         most frequent first (ties alphabetical).
  --skip_missing         leave out the listed images whose file (or, for tagged, tags file) is
                         missing, and count them; without it they are an error.
  --force                replace the files of an OUT prepared before.

Written into OUT (created): all.txt (one image per line, in the official order: its path,
then one 0/1 per column), classes.txt (the concept names, one per line, in column order) and
prepare.json (the choices, the counts, the concept order, the command line, the SHA-256 of
all.txt), each atomically, prepare.json last. Nothing is dropped silently: every image left
out is counted by reason; a missing or malformed official file is an error naming it (and
the line), and nothing is written then.
"""
import argparse
import hashlib
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import numpy as np

from .data.official import REASONS, Prepared, prepare_flickr, prepare_nus
from .errors import SPQError, exit_status
from .files.lock import OutputLock
from .files.write import atomic_write_bytes, remove_stale_temp_files, write_manifest
from .run import faults

OUTPUTS = ("all.txt", "classes.txt", "prepare.json")
MANIFEST = OUTPUTS[2]           # written last, naming the others with their sizes and SHA-256


# ---------------------------------------------------------------- output

def refuse_prepared(out: Path, force: bool) -> None:
    """SPQError when OUT already holds the files (unless `force`)."""
    there = [name for name in OUTPUTS if (out / name).exists()]
    if there and not force:
        raise SPQError(f"{out} already holds {', '.join(there)}: choose another OUT, or pass "
                       f"--force to replace them")


def list_text(prep: Prepared) -> bytes:
    """all.txt: one `PATH 0 1 ...` line per kept image."""
    cells = np.where(prep.labels > 0, "1", "0").tolist()
    return "".join(f"{p} {' '.join(row)}\n" for p, row in zip(prep.paths, cells)).encode()


def write_outputs(prep: Prepared, raw: Path, out: Path, command: str) -> None:
    """prepare.json removed first (a folder without it is incomplete), then all.txt and
    classes.txt, each atomically, then prepare.json, the manifest, last: it names both with
    their sizes and SHA-256, which readers of the list check (`spq.files.read.verified`).
    A write that fails removes all three; a killed run leaves its lock, which readers
    refuse (`spq.data.lists.check_written`)."""
    text = list_text(prep)
    kept = prep.labels.sum(axis=0, dtype=np.int64)
    record = {"dataset": prep.dataset, "raw": str(raw.resolve()), "choices": prep.choices,
              "counts": {"listed": prep.listed, "kept": len(prep.paths), "dropped": prep.dropped,
                         "images_per_concept": {
                             "listed": prep.per_concept_listed,
                             "kept": {c: int(k) for c, k in zip(prep.concepts, kept)}}},
              "concepts": prep.concepts, "sources": prep.sources, "notes": prep.notes,
              "command": command, "all_txt_sha256": hashlib.sha256(text).hexdigest()}
    (out / MANIFEST).unlink(missing_ok=True)        # present only with --force
    try:
        atomic_write_bytes(out / OUTPUTS[0], text)
        atomic_write_bytes(out / OUTPUTS[1], "".join(c + "\n" for c in prep.concepts).encode())
        write_manifest(out, MANIFEST, record, OUTPUTS[:2])
    except BaseException:
        for name in OUTPUTS:                        # a failed write leaves no half of a folder
            (out / name).unlink(missing_ok=True)
        raise


def summary(prep: Prepared, out: Path) -> str:
    """The line printed at the end: the counts and what was written."""
    kept = {"labelled": " labelled", "all": " (all images)", "tagged": " tagged"}
    word = kept.get(prep.choices.get("images"), "")
    drops = ", ".join(counted(n, REASONS[r]) for r, n in prep.dropped.items()
                      if n or not r.startswith("missing") or prep.choices["skip_missing"])
    left_out = f"; left out {drops}" if drops else ""
    return (f"{prep.dataset}: {prep.listed} images, {prep.described}; kept "
            f"{len(prep.paths)}{word}{left_out}; wrote {out / OUTPUTS[0]}")


def counted(n: int, reason: str) -> str:
    """"1 missing image file", "2 missing image files": `reason` written in the plural."""
    return f"{n} {reason}" if n != 1 else f"{n} {reason.replace(' files', ' file')}"


# ---------------------------------------------------------------- command line

class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown after each option's help; descriptions kept as written."""


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser("python -m spq.prepare", allow_abbrev=False,
                                formatter_class=HelpFormatter, description=__doc__)
    sub = p.add_subparsers(dest="dataset", required=True, metavar="{flickr25k,nuswide}")
    f = sub.add_parser("flickr25k", allow_abbrev=False, formatter_class=HelpFormatter,
                       help="MIRFLICKR-25000 (mirflickr25k.zip and its annotations)",
                       description="List MIRFLICKR-25000 for --dataset list.")
    f.add_argument("--images", choices=["all", "labelled", "tagged"], default="all",
                   help="all: every image (the peers' majority, docs/prepare.md); labelled: images "
                        "with at least one chosen concept; tagged: labelled images with at least one "
                        "tag of doc/common_tags.txt")
    f.add_argument("--concepts", type=int, choices=[24, 38], default=24,
                   help="label columns: the 24 concepts, or 38 with the 14 *_r1 ones "
                        "(alphabetical either way)")
    n = sub.add_parser("nuswide", allow_abbrev=False, formatter_class=HelpFormatter,
                       help="NUS-WIDE (Imagelist.txt, Concepts81.txt, Groundtruth/AllLabels)",
                       description="List NUS-WIDE for --dataset list.")
    n.add_argument("--concepts", type=int, choices=[21, 10, 81], default=21,
                   help="label columns: the 21 or 10 concepts most frequent over all listed "
                        "images, or all 81; images with none of them are left out")
    n.add_argument("--order", choices=["alphabetical", "frequency"], default="alphabetical",
                   help="column order: alphabetical by name, or most frequent first")
    for s in (f, n):
        s.add_argument("raw", metavar="RAW", help="the folder the official archives were "
                       "unpacked into; list paths are relative to it (--data_dir RAW)")
        s.add_argument("out", metavar="OUT", help="the folder to write all.txt, classes.txt "
                       "and prepare.json into (created)")
        s.add_argument("--skip_missing", action="store_true",
                       help="leave out (and count) images whose file is missing, instead of "
                            "stopping with an error")
        s.add_argument("--force", action="store_true",
                       help="replace the files of an OUT prepared before")
    return p


def prepare(args, command: str) -> None:
    """Read the official files, write OUT (one writer at a time: its lock), print the summary."""
    raw, out = Path(args.raw), Path(args.out)
    if out.exists() and not out.is_dir():
        raise SPQError(f"OUT {out} is a file, not a folder")
    with OutputLock(out, what="OUT"):
        for path in remove_stale_temp_files(out, OUTPUTS):
            print(f"removed {path}, left by a run that was killed while writing", file=sys.stderr)
        refuse_prepared(out, args.force)
        prep = read_official(args, raw)
        write_outputs(prep, raw, out, command)
    for note in prep.notes:
        print(f"note: {note}")
    print(summary(prep, out))


def read_official(args, raw: Path) -> Prepared:
    """The kept images and labels of RAW's official files, as the options choose them."""
    if not raw.is_dir():
        raise SPQError(f"RAW {raw} is not a folder: pass the folder the official archives "
                       f"were unpacked into")
    if args.dataset == "flickr25k":
        prep = prepare_flickr(raw, args.images, args.concepts, args.skip_missing)
    else:
        prep = prepare_nus(raw, args.concepts, args.order, args.skip_missing)
    if not prep.paths:
        reasons = ", ".join(f"{n} {REASONS[r]}" for r, n in prep.dropped.items() if n)
        raise SPQError(f"no image of {raw} is left to list ({prep.listed} named by the official "
                       f"files{'; ' + reasons if reasons else ''})")
    return prep


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = get_parser().parse_args(argv)
    faults.install()        # the crash tests' fault points (SPQ_FAULTS); nothing otherwise
    return exit_status(lambda: prepare(args, "python -m spq.prepare " + shlex.join(argv)))


if __name__ == "__main__":
    sys.exit(main())
