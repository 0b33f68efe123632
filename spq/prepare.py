"""List files for `--dataset list` from the official downloads of MIRFLICKR-25000 and NUS-WIDE.

    python -m spq.prepare flickr25k RAW OUT [--images labelled|all|tagged] [--concepts 24|38]
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
  flickr25k --concepts   24: the 24 concepts (the hashing papers' label set); 38: with the 14
                         stricter *_r1 concepts. Columns in alphabetical order of the names.
            --images     labelled: images carrying at least one chosen concept; all: every
                         image (rows of zeros included); tagged: labelled images whose
                         mirflickr/meta/tags/tags<N>.txt holds at least one tag listed in
                         mirflickr/doc/common_tags.txt (the cross-modal subset).
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
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .errors import SPQError, exit_status
from .fileio import atomic_save_json, atomic_write_bytes

FLICKR_CONCEPTS = ("animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food",
                   "indoor", "lake", "male", "night", "people", "plant_life", "portrait", "river",
                   "sea", "sky", "structures", "sunset", "transport", "tree", "water")
FLICKR_STRICT = tuple(f"{c}_r1" for c in ("baby", "bird", "car", "clouds", "dog", "female",
                                          "flower", "male", "night", "people", "portrait",
                                          "river", "sea", "tree"))
FLICKR_IMAGES = 25000           # in the official mirflickr25k.zip
ANNOTATION_DIRS = ("mirflickr25k_annotations_v080", "annotations", ".")
OUTPUTS = ("all.txt", "classes.txt", "prepare.json")
SHOWN = 5                       # missing files named in an error
REASONS = {"without_concept": "without a concept", "without_common_tag": "without a common tag",
           "missing_tags": "missing tags files", "missing_image": "missing image files"}


@dataclass
class Prepared:
    """The kept images of one dataset and what was counted on the way."""
    dataset: str
    paths: List[str]                 # relative to RAW, '/'-separated, in the official order
    labels: np.ndarray               # (kept images, columns) uint8, 0/1
    concepts: List[str]              # the column names
    listed: int                      # images named by the official files
    dropped: Dict[str, int]          # reason (REASONS) -> images left out
    choices: Dict[str, object]
    described: str                   # the concepts in words, for the summary
    per_concept_listed: Dict[str, int]
    sources: Dict[str, str] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)


def read_lines(path: Path, what: str, remedy: str = "", errors: str = "strict") -> List[str]:
    """The stripped lines of a text file, trailing empty lines dropped; SPQError naming the
    file when it is missing or not UTF-8 text."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors=errors)
    except FileNotFoundError:
        raise SPQError(f"{what} {path} does not exist{remedy}") from None
    except UnicodeDecodeError:
        raise SPQError(f"{path} is not UTF-8 text ({what})") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def check_missing(names: List[str], total: int, what: str, raw: Path, skip: bool) -> int:
    """How many of the `total` images to list lack their `what` (`names`: the missing paths
    under RAW), when `skip`; else SPQError counting them and naming the first few."""
    if names and not skip:
        shown = ", ".join(names[:SHOWN]) + (", ..." if len(names) > SHOWN else "")
        raise SPQError(f"{len(names)} of the {total} images to list have no {what} under {raw}: "
                       f"{shown}; complete the download, or pass --skip_missing to leave these "
                       f"images out (they are counted)")
    return len(names)


# ---------------------------------------------------------------- MIRFLICKR-25000

def find_annotations(raw: Path) -> Path:
    """The first folder of ANNOTATION_DIRS under RAW holding any concept file."""
    for name in ANNOTATION_DIRS:
        folder = raw / name
        if any((folder / f"{c}.txt").is_file() for c in FLICKR_CONCEPTS + FLICKR_STRICT):
            return folder
    places = ", ".join(str(raw / name) for name in ANNOTATION_DIRS)
    raise SPQError(f"no MIRFLICKR concept file (animals.txt, ...) in {places}: unpack "
                   f"mirflickr25k_annotations_v080.zip into {raw}")


def read_members(path: Path) -> List[int]:
    """The 1-based image numbers a concept file lists, one per line."""
    numbers = []
    lines = read_lines(path, "the concept file", ": unpack mirflickr25k_annotations_v080.zip "
                       "again (it holds 24 concept files and 14 *_r1.txt files)")
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        if not re.fullmatch(r"[0-9]+", line) or int(line) < 1:
            raise SPQError(f"{path}, line {number}: expected an image number (1 for im1.jpg), "
                           f"got {line!r}")
        numbers.append(int(line))
    return numbers


def image_numbers(folder: Path) -> set:
    """The numbers N of the files imN.jpg in `folder`."""
    found = set()
    with os.scandir(folder) as entries:
        for entry in entries:
            match = re.fullmatch(r"im([1-9][0-9]*)\.jpg", entry.name)
            if match and entry.is_file():
                found.add(int(match.group(1)))
    return found


def common_tags(path: Path) -> set:
    """The tags of doc/common_tags.txt: one `TAG COUNT` per line."""
    tags = set()
    for number, line in enumerate(read_lines(path, "the common-tag list",
                                             " (mirflickr25k.zip has it): needed by --images "
                                             "tagged"), start=1):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise SPQError(f"{path}, line {number}: expected a tag and its count, got {line!r}")
        tags.add(fields[0])
    return tags


def tag_state(folder: Path, keep: np.ndarray) -> np.ndarray:
    """(images,) int8 for the images in `keep`: 1 when tags<N>.txt holds a common tag, 0 when
    it holds none, -1 when it is missing; 0 for the others."""
    vocabulary = common_tags(folder / "doc" / "common_tags.txt")
    state = np.zeros(len(keep), np.int8)
    for k in np.flatnonzero(keep):
        path = folder / "meta" / "tags" / f"tags{k + 1}.txt"
        if not path.is_file():
            state[k] = -1
        else:
            tags = read_lines(path, "the tags file", errors="replace")
            state[k] = any(tag in vocabulary for tag in tags)
    return state


def prepare_flickr(raw: Path, images: str, count: int, skip_missing: bool) -> Prepared:
    """MIRFLICKR-25000's kept images and labels (see the module docstring)."""
    folder = raw / "mirflickr"
    if not folder.is_dir():
        raise SPQError(f"{folder} does not exist: unpack mirflickr25k.zip into {raw}")
    annotations = find_annotations(raw)
    concepts = sorted(FLICKR_CONCEPTS + (FLICKR_STRICT if count == 38 else ()))
    members = [read_members(annotations / f"{c}.txt") for c in concepts]
    present = image_numbers(folder)
    n = max([max(m, default=0) for m in members] + [max(present, default=0)])
    labels = np.zeros((n, len(concepts)), np.uint8)          # (images, concepts)
    for j, m in enumerate(members):
        labels[np.array(m, dtype=np.int64) - 1, j] = 1
    keep, dropped = np.ones(n, bool), {}
    if images != "all":
        keep = labels.any(axis=1)
        dropped["without_concept"] = int(n - keep.sum())
    if images == "tagged":
        state = tag_state(folder, keep)
        gone = [f"mirflickr/meta/tags/tags{k + 1}.txt" for k in np.flatnonzero(state < 0)]
        dropped["missing_tags"] = check_missing(gone, int(keep.sum()), "tags file", raw,
                                                 skip_missing)
        dropped["without_common_tag"] = int((keep & (state == 0)).sum())
        keep &= state > 0
    rows = np.flatnonzero(keep)
    found = np.array([k + 1 in present for k in rows], bool)
    paths = [f"mirflickr/im{k + 1}.jpg" for k in rows]
    absent = [p for p, ok in zip(paths, found) if not ok]
    dropped["missing_image"] = check_missing(absent, len(rows), "image file", raw,
                                             skip_missing)
    notes = [] if n == FLICKR_IMAGES else [
        f"the official MIRFLICKR-25000 has {FLICKR_IMAGES} images; {raw} has im1.jpg to "
        f"im{n}.jpg (the highest number among the image and concept files)"]
    return Prepared("flickr25k", [p for p, ok in zip(paths, found) if ok], labels[rows[found]],
                    concepts, n, dropped,
                    {"images": images, "concepts": count, "skip_missing": skip_missing},
                    f"{len(concepts)} concepts", dict(zip(concepts, map(len, map(set, members)))),
                    {"annotations": str(annotations)}, notes)


# ---------------------------------------------------------------- NUS-WIDE

def read_image_list(path: Path) -> List[str]:
    """Imagelist.txt's images as paths under RAW: from the `Flickr` folder on, '/'-separated."""
    paths = []
    for number, line in enumerate(read_lines(path, "the image list",
                                             " (NUS-WIDE's ImageList folder)"), start=1):
        parts = line.replace("/", "\\").split("\\")
        at = parts.index("Flickr") if "Flickr" in parts else -1
        rest = parts[at:]
        if (at < 0 or len(rest) < 3 or any(p in ("", ".", "..") for p in rest)
                or re.search(r"\s", line)):
            raise SPQError(f"{path}, line {number}: expected one path per line, like C:\\ImageData"
                           f"\\Flickr\\actor\\0001_2124494179.jpg, got {line!r}")
        paths.append("/".join(rest))
    if not paths:
        raise SPQError(f"{path} lists no images")
    return paths


def read_concepts(path: Path) -> List[str]:
    """The concept names of Concepts81.txt, one per line."""
    names = []
    for number, name in enumerate(read_lines(path, "the concept list",
                                             " (NUS-WIDE's ConceptsList folder)"), start=1):
        if not re.fullmatch(r"[\w\-]+", name) or name in names:
            reason = "a second time" if name in names else "not a concept name"
            raise SPQError(f"{path}, line {number}: {name!r} is {reason}")
        names.append(name)
    if not names:
        raise SPQError(f"{path} lists no concepts")
    return names


def read_label_file(path: Path, images: int, image_list: Path) -> np.ndarray:
    """(images,) uint8 from a Labels_<concept>.txt: one 0 or 1 per line."""
    lines = read_lines(path, "the label file", " (NUS-WIDE's Groundtruth/AllLabels folder)")
    if len(lines) > images:
        raise SPQError(f"{path}, line {images + 1}: an extra line; {image_list} lists {images} "
                       f"images, one per line of each label file")
    if len(lines) < images:
        raise SPQError(f"{path} has {len(lines)} lines, but {image_list} lists {images} images, "
                       f"one per line of each label file")
    values = np.array(lines)
    ones = values == "1"
    bad = np.flatnonzero(~(ones | (values == "0")))
    if len(bad):
        raise SPQError(f"{path}, line {bad[0] + 1}: expected 0 or 1, got {lines[bad[0]]!r}")
    return ones.astype(np.uint8)


def choose_columns(names: List[str], frequency: np.ndarray, count: int, order: str) -> List[int]:
    """The column indices of the `count` most frequent concepts (all when count is 81),
    frequency ties to the alphabetically earlier name, in the `order` asked."""
    by_frequency = sorted(range(len(names)), key=lambda j: (-frequency[j], names[j]))
    chosen = by_frequency if count == 81 else by_frequency[:count]
    return chosen if order == "frequency" else sorted(chosen, key=lambda j: names[j])


def prepare_nus(raw: Path, count: int, order: str, skip_missing: bool) -> Prepared:
    """NUS-WIDE's kept images and labels (see the module docstring)."""
    image_list = raw / "ImageList" / "Imagelist.txt"
    paths = read_image_list(image_list)
    names = read_concepts(raw / "ConceptsList" / "Concepts81.txt")
    if count != 81 and len(names) < count:
        raise SPQError(f"--concepts {count} asks for more concepts than the {len(names)} of "
                       f"{raw / 'ConceptsList' / 'Concepts81.txt'}")
    labels = np.zeros((len(paths), len(names)), np.uint8)    # (images, all concepts)
    for j, name in enumerate(names):
        path = raw / "Groundtruth" / "AllLabels" / f"Labels_{name}.txt"
        labels[:, j] = read_label_file(path, len(paths), image_list)
    frequency = labels.sum(axis=0, dtype=np.int64)           # images per concept
    columns = choose_columns(names, frequency, count, order)
    labels = labels[:, columns]
    rows = np.flatnonzero(labels.any(axis=1))
    dropped = {"without_concept": len(paths) - len(rows)}
    found = np.array([os.path.isfile(os.path.join(raw, paths[k])) for k in rows], bool)
    absent = [paths[k] for k in rows[~found]]
    dropped["missing_image"] = check_missing(absent, len(rows), "image file", raw,
                                             skip_missing)
    rows = rows[found]
    described = (f"{len(columns)} of {len(names)} concepts"
                 + ("" if count == 81 else " (the most frequent)") + f", columns {order}")
    return Prepared("nuswide", [paths[k] for k in rows], labels[rows], [names[j] for j in columns],
                    len(paths), dropped,
                    {"concepts": count, "order": order, "skip_missing": skip_missing},
                    described, {n: int(f) for n, f in zip(names, frequency)},
                    {"image_list": str(image_list)})


# ---------------------------------------------------------------- output

def refuse_prepared(out: Path, force: bool) -> None:
    """SPQError when OUT is not a folder, or already holds the files (unless `force`)."""
    if out.exists() and not out.is_dir():
        raise SPQError(f"OUT {out} is a file, not a folder")
    there = [name for name in OUTPUTS if (out / name).exists()]
    if there and not force:
        raise SPQError(f"{out} already holds {', '.join(there)}: choose another OUT, or pass "
                       f"--force to replace them")


def list_text(prep: Prepared) -> bytes:
    """all.txt: one `PATH 0 1 ...` line per kept image."""
    cells = np.where(prep.labels > 0, "1", "0").tolist()
    return "".join(f"{p} {' '.join(row)}\n" for p, row in zip(prep.paths, cells)).encode()


def write_outputs(prep: Prepared, raw: Path, out: Path, command: str) -> None:
    """all.txt, classes.txt, then prepare.json into OUT, each atomically; a failed write
    removes what this call wrote."""
    text = list_text(prep)
    kept = prep.labels.sum(axis=0, dtype=np.int64)
    record = {"dataset": prep.dataset, "raw": str(raw.resolve()), "choices": prep.choices,
              "counts": {"listed": prep.listed, "kept": len(prep.paths), "dropped": prep.dropped,
                         "images_per_concept": {
                             "listed": prep.per_concept_listed,
                             "kept": {c: int(k) for c, k in zip(prep.concepts, kept)}}},
              "concepts": prep.concepts, "sources": prep.sources, "notes": prep.notes,
              "command": command, "all_txt_sha256": hashlib.sha256(text).hexdigest()}
    out.mkdir(parents=True, exist_ok=True)
    (out / OUTPUTS[2]).unlink(missing_ok=True)      # present only with --force
    written = []
    try:
        for name, data in ((OUTPUTS[0], text),
                           (OUTPUTS[1], "".join(c + "\n" for c in prep.concepts).encode())):
            atomic_write_bytes(out / name, data)
            written.append(out / name)
        atomic_save_json(record, out / OUTPUTS[2])
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def summary(prep: Prepared, out: Path) -> str:
    """The line printed at the end: the counts and what was written."""
    kept = {"labelled": " labelled", "all": " (all images)", "tagged": " tagged"}
    word = kept.get(prep.choices.get("images"), "")
    drops = "".join(f", {n} {REASONS[r]}" for r, n in prep.dropped.items()
                    if n or not r.startswith("missing") or prep.choices["skip_missing"])
    return (f"{prep.dataset}: {prep.listed} images, {prep.described}; kept "
            f"{len(prep.paths)}{word}{drops}; wrote {out / OUTPUTS[0]}")


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
    f.add_argument("--images", choices=["labelled", "all", "tagged"], default="labelled",
                   help="labelled: images with at least one chosen concept; all: every image; "
                        "tagged: labelled images with at least one tag of doc/common_tags.txt")
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
    """Read the official files, write OUT, print the summary."""
    raw, out = Path(args.raw), Path(args.out)
    refuse_prepared(out, args.force)
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
    write_outputs(prep, raw, out, command)
    for note in prep.notes:
        print(f"note: {note}")
    print(summary(prep, out))


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = get_parser().parse_args(argv)
    return exit_status(lambda: prepare(args, "python -m spq.prepare " + shlex.join(argv)))


if __name__ == "__main__":
    sys.exit(main())
