"""The official downloads of MIRFLICKR-25000 and NUS-WIDE read into labelled image lists:
which images, which concept columns, and what was left out and why (`Prepared`), for
python -m spq.prepare, whose docstring gives the layouts read and the choices.
"""
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

import numpy as np

from ..errors import SPQError, shown
from ..files.read import read_lines as gate_lines

FLICKR_CONCEPTS = ("animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food",
                   "indoor", "lake", "male", "night", "people", "plant_life", "portrait", "river",
                   "sea", "sky", "structures", "sunset", "transport", "tree", "water")
FLICKR_STRICT = tuple(f"{c}_r1" for c in ("baby", "bird", "car", "clouds", "dog", "female",
                                          "flower", "male", "night", "people", "portrait",
                                          "river", "sea", "tree"))
FLICKR_IMAGES = 25000           # in the official mirflickr25k.zip
ANNOTATION_DIRS = ("mirflickr25k_annotations_v080", "annotations", ".")
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


def read_lines(path: Path, kind: str, what: str, remedy: str = "", errors: str = "strict") -> List[str]:
    """The stripped lines of an official text file of `kind` (through the way in,
    `spq.files.read`), trailing empty lines dropped; SPQError naming the file when it is
    missing, not a regular file, too large or not UTF-8 text."""
    lines = [line.strip() for line in gate_lines(path, kind, what, remedy, errors)]
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


def read_members(path: Path, highest: int) -> List[int]:
    """The 1-based image numbers a concept file lists, one per line; SPQError naming the line
    of a number above `highest` (the images there can be: an image file's number, or the
    official 25,000)."""
    numbers = []
    lines = read_lines(path, "concepts", "the concept file", ": unpack mirflickr25k_annotations_v080.zip "
                       "again (it holds 24 concept files and 14 *_r1.txt files)")
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        if not re.fullmatch(r"[0-9]+", line) or int(line) < 1:
            raise SPQError(f"{path}, line {number}: expected an image number (1 for im1.jpg), "
                           f"got {shown(line)}")
        if int(line) > highest:
            raise SPQError(f"{path}, line {number}: image {shown(int(line))}, but the images are im1.jpg to "
                           f"im{highest}.jpg (the official {FLICKR_IMAGES}, or the highest image file there); "
                           f"unpack mirflickr25k_annotations_v080.zip again")
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
    for number, line in enumerate(read_lines(path, "tags", "the common-tag list",
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
            tags = read_lines(path, "tags", "the tags file", errors="replace")
            state[k] = any(tag in vocabulary for tag in tags)
    return state


def prepare_flickr(raw: Path, images: str, count: int, skip_missing: bool) -> Prepared:
    """MIRFLICKR-25000's kept images and labels (see python -m spq.prepare's docstring)."""
    folder = raw / "mirflickr"
    if not folder.is_dir():
        hint = (f"; RAW is the folder that holds mirflickr/, and {raw} looks like mirflickr/ itself: "
                f"pass its parent, {raw.parent}" if (raw / "im1.jpg").is_file() or raw.name == "mirflickr" else "")
        raise SPQError(f"{folder} does not exist: unpack mirflickr25k.zip into {raw}{hint}")
    annotations = find_annotations(raw)
    concepts = sorted(FLICKR_CONCEPTS + (FLICKR_STRICT if count == 38 else ()))
    present = image_numbers(folder)
    members = [read_members(annotations / f"{c}.txt", max(FLICKR_IMAGES, *present, 0)) for c in concepts]
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
                    {"annotations": str(annotations.resolve())}, notes)


# ---------------------------------------------------------------- NUS-WIDE

def read_image_list(path: Path) -> List[str]:
    """Imagelist.txt's images as paths under RAW: from the `Flickr` folder on, '/'-separated;
    SPQError naming a line that is not such a path, or that repeats one."""
    paths, first = [], {}
    for number, line in enumerate(read_lines(path, "image list", "the image list",
                                             " (NUS-WIDE's ImageList folder)"), start=1):
        parts = line.replace("/", "\\").split("\\")
        at = parts.index("Flickr") if "Flickr" in parts else -1
        rest = parts[at:]
        if (at < 0 or len(rest) < 3 or any(p in ("", ".", "..") for p in rest)
                or re.search(r"\s", line)):
            raise SPQError(f"{path}, line {number}: expected one path per line, like C:\\ImageData"
                           f"\\Flickr\\actor\\0001_2124494179.jpg, got {shown(line)}")
        name = "/".join(rest)
        if name in first:
            raise SPQError(f"{path}, line {number}: repeats the image of line {first[name]} ({shown(name)}); "
                           f"each image is listed once in the official file: unpack it again")
        first[name] = number
        paths.append(name)
    if not paths:
        raise SPQError(f"{path} lists no images")
    return paths


def read_concepts(path: Path) -> List[str]:
    """The concept names of Concepts81.txt, one per line."""
    names = []
    for number, name in enumerate(read_lines(path, "concepts", "the concept list",
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
    lines = read_lines(path, "labels", "the label file", " (NUS-WIDE's Groundtruth/AllLabels folder)")
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
    """NUS-WIDE's kept images and labels (see python -m spq.prepare's docstring)."""
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
    if len(rows) and not (raw / "Flickr").is_dir():
        raise SPQError(f"{raw / 'Flickr'} does not exist: the NUS-WIDE images go in RAW/Flickr/<folder>/<file>.jpg "
                       f"(unpack the image archive into {raw})")
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
                    {"image_list": str(image_list.resolve())})
