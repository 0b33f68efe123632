"""python -m spq.prepare on small replicas of the official MIRFLICKR-25000 and NUS-WIDE layouts:
the lists it writes against hand-written expected text, and every error."""
import hashlib
import json
from pathlib import Path

import pytest

from spq.lists import read_list
from spq.prepare import main

# ---------------------------------------------------------------- MIRFLICKR replica
# 10 images; 4 of the 24 concepts carry images (columns 0, 1, 2 and 23 alphabetically),
# im6 and im8 carry none
FLICKR_CONCEPTS = ["animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food",
                   "indoor", "lake", "male", "night", "people", "plant_life", "portrait", "river",
                   "sea", "sky", "structures", "sunset", "transport", "tree", "water"]
FLICKR_STRICT = ["baby_r1", "bird_r1", "car_r1", "clouds_r1", "dog_r1", "female_r1", "flower_r1",
                 "male_r1", "night_r1", "people_r1", "portrait_r1", "river_r1", "sea_r1", "tree_r1"]
MEMBERS = {"animals": [1, 4, 7], "baby": [2, 4], "baby_r1": [2], "bird": [3, 9, 10],
           "bird_r1": [9], "water": [1, 5, 10]}
COMMON_TAGS = "sea 120\nsunset 95\ncat 40\n"
TAGS = {1: "sea\nmyphoto\n", 2: "", 3: "holiday\n", 4: "cat\n", 5: "sunset\n", 6: "sea\n",
        7: "cat\n", 8: "sea\n", 9: "sea\n", 10: "nikon\nsunset\n"}

FLICKR_LABELLED = """\
mirflickr/im1.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im2.jpg 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im3.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im4.jpg 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im5.jpg 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im7.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im9.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im10.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
"""
FLICKR_ALL = """\
mirflickr/im1.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im2.jpg 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im3.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im4.jpg 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im5.jpg 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im6.jpg 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im7.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im8.jpg 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im9.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im10.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
"""
# im2 and im3 have tags, but none of common_tags.txt
FLICKR_TAGGED = """\
mirflickr/im1.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im4.jpg 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im5.jpg 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im7.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im9.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im10.jpg 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
"""
# columns: animals, baby, baby_r1, bird, bird_r1, ..., water
FLICKR_38 = """\
mirflickr/im1.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im2.jpg 0 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im3.jpg 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im4.jpg 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im5.jpg 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
mirflickr/im7.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im9.jpg 0 0 0 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
mirflickr/im10.jpg 0 0 0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
"""
CLASSES_24 = """\
animals
baby
bird
car
clouds
dog
female
flower
food
indoor
lake
male
night
people
plant_life
portrait
river
sea
sky
structures
sunset
transport
tree
water
"""
CLASSES_38 = """\
animals
baby
baby_r1
bird
bird_r1
car
car_r1
clouds
clouds_r1
dog
dog_r1
female
female_r1
flower
flower_r1
food
indoor
lake
male
male_r1
night
night_r1
people
people_r1
plant_life
portrait
portrait_r1
river
river_r1
sea
sea_r1
sky
structures
sunset
transport
tree
tree_r1
water
"""
NOTE = ("note: the official MIRFLICKR-25000 has 25000 images; {raw} has im1.jpg to im10.jpg "
        "(the highest number among the image and concept files)\n")


def flickr_raw(root: Path, annotations: str = "mirflickr25k_annotations_v080") -> Path:
    """The layout of mirflickr25k.zip and mirflickr25k_annotations_v080.zip unpacked into
    root/raw (images as empty files: only their existence is checked)."""
    raw = root / "raw"
    images = raw / "mirflickr"
    (images / "meta" / "tags").mkdir(parents=True)
    (images / "doc").mkdir()
    for k in range(1, 11):
        (images / f"im{k}.jpg").write_bytes(b"")
        (images / "meta" / "tags" / f"tags{k}.txt").write_text(TAGS[k])
    (images / "doc" / "common_tags.txt").write_text(COMMON_TAGS)
    folder = raw / annotations
    folder.mkdir(exist_ok=True)
    for concept in FLICKR_CONCEPTS + FLICKR_STRICT:
        newline = "\r\n" if concept == "bird" else "\n"        # either line ending reads
        (folder / f"{concept}.txt").write_text("".join(f"{k}{newline}" for k in MEMBERS.get(concept, [])),
                                              newline="")
    (folder / "README.txt").write_text("MIRFLICKR-25000 annotations\n")
    return raw


# ---------------------------------------------------------------- NUS-WIDE replica
# 12 images, 23 concepts; frequencies: sky 7, person 6, water 6, clouds 5, tree 5, animal 4,
# beach 4, buildings 4, ocean 3, road 3, snow 3, ten others 2, zebra 1, earthquake 0.
# Top 10: sky ... road (road beats snow, also 3, by name); top 21: all but zebra and
# earthquake. Image 9 carries only concepts outside the top 10, image 10 only zebra,
# image 11 nothing.
NUS_IMAGES = [
    ("C:\\ImageData\\Flickr\\actor\\0001_2124494179.jpg",
     "sky person water clouds tree animal beach ocean flowers rocks"),
    ("C:\\ImageData\\Flickr\\actor\\0002_174174086.jpg",
     "sky person water clouds tree beach buildings road grass vehicle"),
    ("C:\\ImageData\\Flickr\\administrative_assistant\\0001_1001.jpg",
     "sky person water clouds tree buildings snow lake window"),
    ("C:\\ImageData\\Flickr\\airport\\0001_1002.jpg",
     "sky person water clouds animal buildings mountain rocks"),
    ("C:\\ImageData\\Flickr\\airport\\0002_1003.jpg", "sky person water beach ocean mountain sunset"),
    ("C:\\ImageData\\Flickr\\beach\\0001_1004.jpg", "sky person tree ocean snow plants window"),
    ("C:\\ImageData\\Flickr\\cat\\0001_1005.jpg", "sky clouds animal road plants sunset"),
    ("C:\\ImageData\\Flickr\\cat\\0002_1006.jpg", "water tree road reflection vehicle"),
    ("C:\\ImageData\\Flickr\\dog\\0001_1007.jpg", "animal beach buildings snow reflection"),
    ("C:\\ImageData\\Flickr\\garden\\0001_1008.jpg", "flowers grass lake"),
    ("C:\\ImageData\\Flickr\\zoo\\0001_1009.jpg", "zebra"),
    ("C:\\ImageData\\Flickr\\zoo\\0002_1010.jpg", ""),
]
NUS_CONCEPTS = sorted("animal beach buildings clouds earthquake flowers grass lake mountain ocean "
                      "person plants reflection road rocks sky snow sunset tree vehicle water "
                      "window zebra".split())

# columns: animal beach buildings clouds flowers grass lake mountain ocean person plants
# reflection road rocks sky snow sunset tree vehicle water window
NUS_21 = """\
Flickr/actor/0001_2124494179.jpg 1 1 0 1 1 0 0 0 1 1 0 0 0 1 1 0 0 1 0 1 0
Flickr/actor/0002_174174086.jpg 0 1 1 1 0 1 0 0 0 1 0 0 1 0 1 0 0 1 1 1 0
Flickr/administrative_assistant/0001_1001.jpg 0 0 1 1 0 0 1 0 0 1 0 0 0 0 1 1 0 1 0 1 1
Flickr/airport/0001_1002.jpg 1 0 1 1 0 0 0 1 0 1 0 0 0 1 1 0 0 0 0 1 0
Flickr/airport/0002_1003.jpg 0 1 0 0 0 0 0 1 1 1 0 0 0 0 1 0 1 0 0 1 0
Flickr/beach/0001_1004.jpg 0 0 0 0 0 0 0 0 1 1 1 0 0 0 1 1 0 1 0 0 1
Flickr/cat/0001_1005.jpg 1 0 0 1 0 0 0 0 0 0 1 0 1 0 1 0 1 0 0 0 0
Flickr/cat/0002_1006.jpg 0 0 0 0 0 0 0 0 0 0 0 1 1 0 0 0 0 1 1 1 0
Flickr/dog/0001_1007.jpg 1 1 1 0 0 0 0 0 0 0 0 1 0 0 0 1 0 0 0 0 0
Flickr/garden/0001_1008.jpg 0 0 0 0 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0
"""
NUS_CLASSES_21 = """\
animal
beach
buildings
clouds
flowers
grass
lake
mountain
ocean
person
plants
reflection
road
rocks
sky
snow
sunset
tree
vehicle
water
window
"""
NUS_CLASSES_21_BY_FREQUENCY = """\
sky
person
water
clouds
tree
animal
beach
buildings
ocean
road
snow
flowers
grass
lake
mountain
plants
reflection
rocks
sunset
vehicle
window
"""
# columns: sky person water clouds tree animal beach buildings ocean road
NUS_10_BY_FREQUENCY = """\
Flickr/actor/0001_2124494179.jpg 1 1 1 1 1 1 1 0 1 0
Flickr/actor/0002_174174086.jpg 1 1 1 1 1 0 1 1 0 1
Flickr/administrative_assistant/0001_1001.jpg 1 1 1 1 1 0 0 1 0 0
Flickr/airport/0001_1002.jpg 1 1 1 1 0 1 0 1 0 0
Flickr/airport/0002_1003.jpg 1 1 1 0 0 0 1 0 1 0
Flickr/beach/0001_1004.jpg 1 1 0 0 1 0 0 0 1 0
Flickr/cat/0001_1005.jpg 1 0 0 1 0 1 0 0 0 1
Flickr/cat/0002_1006.jpg 0 0 1 0 1 0 0 0 0 1
Flickr/dog/0001_1007.jpg 0 0 0 0 0 1 1 1 0 0
"""
# all 23 concepts, alphabetical: earthquake is the 5th column, zebra the last
NUS_ALL = """\
Flickr/actor/0001_2124494179.jpg 1 1 0 1 0 1 0 0 0 1 1 0 0 0 1 1 0 0 1 0 1 0 0
Flickr/actor/0002_174174086.jpg 0 1 1 1 0 0 1 0 0 0 1 0 0 1 0 1 0 0 1 1 1 0 0
Flickr/administrative_assistant/0001_1001.jpg 0 0 1 1 0 0 0 1 0 0 1 0 0 0 0 1 1 0 1 0 1 1 0
Flickr/airport/0001_1002.jpg 1 0 1 1 0 0 0 0 1 0 1 0 0 0 1 1 0 0 0 0 1 0 0
Flickr/airport/0002_1003.jpg 0 1 0 0 0 0 0 0 1 1 1 0 0 0 0 1 0 1 0 0 1 0 0
Flickr/beach/0001_1004.jpg 0 0 0 0 0 0 0 0 0 1 1 1 0 0 0 1 1 0 1 0 0 1 0
Flickr/cat/0001_1005.jpg 1 0 0 1 0 0 0 0 0 0 0 1 0 1 0 1 0 1 0 0 0 0 0
Flickr/cat/0002_1006.jpg 0 0 0 0 0 0 0 0 0 0 0 0 1 1 0 0 0 0 1 1 1 0 0
Flickr/dog/0001_1007.jpg 1 1 1 0 0 0 0 0 0 0 0 0 1 0 0 0 1 0 0 0 0 0 0
Flickr/garden/0001_1008.jpg 0 0 0 0 0 1 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
Flickr/zoo/0001_1009.jpg 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 1
"""


def nus_raw(root: Path) -> Path:
    """The NUS-WIDE layout in root/raw: ImageList, ConceptsList, Groundtruth/AllLabels and the
    images under Flickr/ (empty files)."""
    raw = root / "raw"
    for folder in ("ImageList", "ConceptsList", "Groundtruth/AllLabels"):
        (raw / folder).mkdir(parents=True)
    (raw / "ImageList" / "Imagelist.txt").write_text(
        "".join(f"{path}\r\n" for path, _ in NUS_IMAGES), newline="")
    (raw / "ConceptsList" / "Concepts81.txt").write_text("".join(f"{c}\n" for c in NUS_CONCEPTS))
    for concept in NUS_CONCEPTS:
        values = [str(int(concept in tags.split())) for _, tags in NUS_IMAGES]
        (raw / "Groundtruth" / "AllLabels" / f"Labels_{concept}.txt").write_text(
            "".join(v + "\n" for v in values))
    for path, _ in NUS_IMAGES:
        image = raw / path[len("C:\\ImageData\\"):].replace("\\", "/")
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(b"")
    return raw


# ---------------------------------------------------------------- helpers

def run(capsys, *argv):
    """(exit status, stdout, stderr) of python -m spq.prepare ARGV, in this process."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def prepared(capsys, *argv):
    """stdout of a run that must succeed."""
    code, out, err = run(capsys, *argv)
    assert code == 0, err
    assert err == ""
    return out


def failed(capsys, out_dir: Path, *argv) -> str:
    """The one `error:` line of a run that must fail, having written nothing."""
    code, out, err = run(capsys, *argv)
    assert code == 1 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not out_dir.exists() or not any(out_dir.iterdir())
    return err


def labels_of(text: str):
    return [[int(v) for v in line.split()[1:]] for line in text.splitlines()]


# ---------------------------------------------------------------- MIRFLICKR-25000

def test_flickr_labelled_is_the_default(tmp_path, capsys):
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    printed = prepared(capsys, "flickr25k", raw, out)
    assert printed == NOTE.format(raw=raw) + (
        f"flickr25k: 10 images, 24 concepts; kept 8 labelled, 2 without a concept; "
        f"wrote {out / 'all.txt'}\n")
    text = (out / "all.txt").read_text()
    assert text == FLICKR_LABELLED
    assert (out / "classes.txt").read_text() == CLASSES_24
    record = json.loads((out / "prepare.json").read_text())
    assert record["dataset"] == "flickr25k"
    assert record["choices"] == {"images": "labelled", "concepts": 24, "skip_missing": False}
    assert record["counts"]["listed"] == 10 and record["counts"]["kept"] == 8
    assert record["counts"]["dropped"] == {"without_concept": 2, "missing_image": 0}
    per_concept = record["counts"]["images_per_concept"]
    assert per_concept["listed"]["animals"] == 3 and per_concept["listed"]["car"] == 0
    assert per_concept["kept"] == {**dict.fromkeys(FLICKR_CONCEPTS, 0),
                                   "animals": 3, "baby": 2, "bird": 3, "water": 3}
    assert record["concepts"] == CLASSES_24.split()
    assert record["command"] == f"python -m spq.prepare flickr25k {raw} {out}"
    assert record["all_txt_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert record["sources"]["annotations"] == str(raw / "mirflickr25k_annotations_v080")


def test_flickr_list_reads_back_with_its_labels(tmp_path, capsys):
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    prepared(capsys, "flickr25k", raw, out)
    entries = read_list(out / "all.txt", raw, 24)
    assert entries.paths == [raw / line.split()[0] for line in FLICKR_LABELLED.splitlines()]
    assert entries.labels.tolist() == labels_of(FLICKR_LABELLED)


@pytest.mark.parametrize("annotations", ["annotations", "."])
def test_flickr_annotations_elsewhere(tmp_path, capsys, annotations):
    raw, out = flickr_raw(tmp_path, annotations), tmp_path / "out"
    prepared(capsys, "flickr25k", raw, out)
    assert (out / "all.txt").read_text() == FLICKR_LABELLED


@pytest.mark.parametrize("options, expected, classes, kept", [
    (["--images", "all"], FLICKR_ALL, CLASSES_24, "kept 10 (all images)"),
    (["--concepts", "38"], FLICKR_38, CLASSES_38, "kept 8 labelled, 2 without a concept"),
    (["--images", "tagged"], FLICKR_TAGGED, CLASSES_24,
     "kept 6 tagged, 2 without a concept, 2 without a common tag"),
])
def test_flickr_choices(tmp_path, capsys, options, expected, classes, kept):
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    printed = prepared(capsys, "flickr25k", raw, out, *options)
    assert printed.splitlines()[-1] == (f"flickr25k: 10 images, {len(classes.split())} concepts; "
                                        f"{kept}; wrote {out / 'all.txt'}")
    assert (out / "all.txt").read_text() == expected
    assert (out / "classes.txt").read_text() == classes
    entries = read_list(out / "all.txt", raw, len(classes.split()))
    assert entries.labels.tolist() == labels_of(expected)


def test_flickr_missing_image(tmp_path, capsys):
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    (raw / "mirflickr" / "im7.jpg").unlink()
    (raw / "mirflickr" / "im8.jpg").unlink()           # has no concept: not listed anyway
    err = failed(capsys, out, "flickr25k", raw, out)
    assert err == (f"error: 1 of the 8 images to list have no image file under {raw}: "
                   f"mirflickr/im7.jpg; complete the download, or pass --skip_missing to leave "
                   f"these images out (they are counted)\n")
    printed = prepared(capsys, "flickr25k", raw, out, "--skip_missing")
    assert printed.splitlines()[-1] == (f"flickr25k: 10 images, 24 concepts; kept 7 labelled, 2 "
                                        f"without a concept, 1 missing image files; wrote "
                                        f"{out / 'all.txt'}")
    assert (out / "all.txt").read_text() == FLICKR_LABELLED.replace(
        "mirflickr/im7.jpg 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n", "")
    record = json.loads((out / "prepare.json").read_text())
    assert record["counts"]["dropped"] == {"without_concept": 2, "missing_image": 1}


def test_flickr_missing_tags_file(tmp_path, capsys):
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    (raw / "mirflickr" / "meta" / "tags" / "tags9.txt").unlink()
    err = failed(capsys, out, "flickr25k", raw, out, "--images", "tagged")
    assert "1 of the 8 images to list have no tags file" in err
    assert "mirflickr/meta/tags/tags9.txt" in err
    printed = prepared(capsys, "flickr25k", raw, out, "--images", "tagged", "--skip_missing")
    assert "kept 5 tagged, 2 without a concept, 1 missing tags files, 2 without a common tag, " \
           "0 missing image files;" in printed
    assert "im9.jpg" not in (out / "all.txt").read_text()


def test_flickr_last_image_counts_the_images(tmp_path, capsys):
    """An image with no concept beyond the last one any concept names is still listed."""
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    (raw / "mirflickr" / "im11.jpg").write_bytes(b"")
    printed = prepared(capsys, "flickr25k", raw, out, "--images", "all")
    assert "11 images" in printed and "im1.jpg to im11.jpg" in printed
    assert (out / "all.txt").read_text().splitlines()[-1] == "mirflickr/im11.jpg" + " 0" * 24


@pytest.mark.parametrize("edit, fragment", [
    (lambda a: (a / "food.txt").unlink(),
     "the concept file {a}/food.txt does not exist: unpack mirflickr25k_annotations_v080.zip again"),
    (lambda a: (a / "bird.txt").write_text("3\nabc\n9\n"),
     "{a}/bird.txt, line 2: expected an image number (1 for im1.jpg), got 'abc'"),
    (lambda a: (a / "water.txt").write_text("1\n0\n"),
     "{a}/water.txt, line 2: expected an image number (1 for im1.jpg), got '0'"),
])
def test_flickr_bad_annotations(tmp_path, capsys, edit, fragment):
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    annotations = raw / "mirflickr25k_annotations_v080"
    edit(annotations)
    assert fragment.format(a=annotations) in failed(capsys, out, "flickr25k", raw, out)


def test_flickr_strict_concept_file_needed_only_for_38(tmp_path, capsys):
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    (raw / "mirflickr25k_annotations_v080" / "tree_r1.txt").unlink()
    assert "tree_r1.txt does not exist" in failed(capsys, out, "flickr25k", raw, out,
                                                  "--concepts", "38")
    prepared(capsys, "flickr25k", raw, out)


def test_flickr_missing_folders(tmp_path, capsys):
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    for name in FLICKR_CONCEPTS + FLICKR_STRICT:
        (raw / "mirflickr25k_annotations_v080" / f"{name}.txt").unlink()
    assert "no MIRFLICKR concept file (animals.txt, ...)" in failed(capsys, out, "flickr25k", raw, out)
    (raw / "mirflickr" / "doc" / "common_tags.txt").unlink()
    for k in range(1, 11):
        (raw / "mirflickr" / f"im{k}.jpg").unlink()
    for path in sorted((raw / "mirflickr").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (raw / "mirflickr").rmdir()
    assert f"{raw / 'mirflickr'} does not exist: unpack mirflickr25k.zip" in failed(
        capsys, out, "flickr25k", raw, out)


def test_nothing_left_to_list(tmp_path, capsys):
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    for k in range(1, 11):
        (raw / "mirflickr" / f"im{k}.jpg").unlink()
    err = failed(capsys, out, "flickr25k", raw, out, "--skip_missing")
    assert err == (f"error: no image of {raw} is left to list (10 named by the official files; "
                   f"2 without a concept, 8 missing image files)\n")


def test_flickr_bad_common_tags(tmp_path, capsys):
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    common = raw / "mirflickr" / "doc" / "common_tags.txt"
    common.write_text("sea 120\nsunset\n")
    assert f"{common}, line 2: expected a tag and its count, got 'sunset'" in failed(
        capsys, out, "flickr25k", raw, out, "--images", "tagged")
    common.unlink()
    assert f"the common-tag list {common} does not exist" in failed(
        capsys, out, "flickr25k", raw, out, "--images", "tagged")


# ---------------------------------------------------------------- NUS-WIDE

def test_nus_21_alphabetical_is_the_default(tmp_path, capsys):
    raw, out = nus_raw(tmp_path), tmp_path / "out"
    printed = prepared(capsys, "nuswide", raw, out)
    assert printed == (f"nuswide: 12 images, 21 of 23 concepts (the most frequent), columns "
                       f"alphabetical; kept 10, 2 without a concept; wrote {out / 'all.txt'}\n")
    text = (out / "all.txt").read_text()
    assert text == NUS_21
    assert (out / "classes.txt").read_text() == NUS_CLASSES_21
    entries = read_list(out / "all.txt", raw, 21)
    assert entries.paths == [raw / line.split()[0] for line in NUS_21.splitlines()]
    assert entries.labels.tolist() == labels_of(NUS_21)
    record = json.loads((out / "prepare.json").read_text())
    assert record["choices"] == {"concepts": 21, "order": "alphabetical", "skip_missing": False}
    assert record["counts"]["listed"] == 12 and record["counts"]["kept"] == 10
    assert record["counts"]["dropped"] == {"without_concept": 2, "missing_image": 0}
    listed = record["counts"]["images_per_concept"]["listed"]
    assert (listed["sky"], listed["snow"], listed["zebra"], listed["earthquake"]) == (7, 3, 1, 0)
    assert record["counts"]["images_per_concept"]["kept"]["flowers"] == 2
    assert record["all_txt_sha256"] == hashlib.sha256(text.encode()).hexdigest()


def test_nus_10_by_frequency(tmp_path, capsys):
    raw, out = nus_raw(tmp_path), tmp_path / "out"
    printed = prepared(capsys, "nuswide", raw, out, "--concepts", "10", "--order", "frequency")
    assert "10 of 23 concepts (the most frequent), columns frequency; kept 9, 3 without a concept" \
        in printed
    assert (out / "all.txt").read_text() == NUS_10_BY_FREQUENCY
    assert (out / "classes.txt").read_text() == \
        "sky\nperson\nwater\nclouds\ntree\nanimal\nbeach\nbuildings\nocean\nroad\n"
    assert read_list(out / "all.txt", raw, 10).labels.tolist() == labels_of(NUS_10_BY_FREQUENCY)


def test_nus_21_by_frequency(tmp_path, capsys):
    raw, out = nus_raw(tmp_path), tmp_path / "out"
    prepared(capsys, "nuswide", raw, out, "--order", "frequency")
    assert (out / "classes.txt").read_text() == NUS_CLASSES_21_BY_FREQUENCY
    first = (out / "all.txt").read_text().splitlines()[0]
    # sky person water clouds tree animal beach buildings ocean road snow flowers grass lake
    # mountain plants reflection rocks sunset vehicle window
    assert first == "Flickr/actor/0001_2124494179.jpg 1 1 1 1 1 1 1 0 1 0 0 1 0 0 0 0 0 1 0 0 0"


def test_nus_all_concepts(tmp_path, capsys):
    raw, out = nus_raw(tmp_path), tmp_path / "out"
    printed = prepared(capsys, "nuswide", raw, out, "--concepts", "81")
    assert "23 of 23 concepts, columns alphabetical; kept 11, 1 without a concept" in printed
    assert (out / "all.txt").read_text() == NUS_ALL
    assert (out / "classes.txt").read_text().split() == NUS_CONCEPTS


def test_nus_missing_images(tmp_path, capsys):
    raw, out = nus_raw(tmp_path), tmp_path / "out"
    gone = [path for path, _ in NUS_IMAGES[:6]] + [NUS_IMAGES[11][0]]   # the last is not listed
    for path in gone:
        (raw / path[len("C:\\ImageData\\"):].replace("\\", "/")).unlink()
    err = failed(capsys, out, "nuswide", raw, out)
    assert err.startswith(f"error: 6 of the 10 images to list have no image file under {raw}: "
                          f"Flickr/actor/0001_2124494179.jpg, Flickr/actor/0002_174174086.jpg, "
                          f"Flickr/administrative_assistant/0001_1001.jpg, "
                          f"Flickr/airport/0001_1002.jpg, Flickr/airport/0002_1003.jpg, ...; ")
    printed = prepared(capsys, "nuswide", raw, out, "--skip_missing")
    assert "kept 4, 2 without a concept, 6 missing image files;" in printed
    assert (out / "all.txt").read_text() == "".join(NUS_21.splitlines(keepends=True)[6:])


@pytest.mark.parametrize("edit, fragment", [
    (lambda r: (r / "Groundtruth/AllLabels/Labels_zebra.txt").unlink(),
     "the label file {r}/Groundtruth/AllLabels/Labels_zebra.txt does not exist"),
    (lambda r: (r / "Groundtruth/AllLabels/Labels_sky.txt").write_text("1\n" * 11),
     "{r}/Groundtruth/AllLabels/Labels_sky.txt has 11 lines, but {r}/ImageList/Imagelist.txt "
     "lists 12 images"),
    (lambda r: (r / "Groundtruth/AllLabels/Labels_sky.txt").write_text("1\n" * 12 + "0\n\n"),
     "{r}/Groundtruth/AllLabels/Labels_sky.txt, line 13: an extra line"),
    (lambda r: (r / "Groundtruth/AllLabels/Labels_road.txt").write_text("0\n" * 4 + "2\n" + "0\n" * 7),
     "{r}/Groundtruth/AllLabels/Labels_road.txt, line 5: expected 0 or 1, got '2'"),
    (lambda r: (r / "ImageList/Imagelist.txt").write_text("C:\\ImageData\\Flickr\\a\\1.jpg\n\nx\n"),
     "{r}/ImageList/Imagelist.txt, line 2: expected one path per line, like C:\\ImageData"),
    (lambda r: (r / "ImageList/Imagelist.txt").write_text("C:\\ImageData\\Flickr\\a\\1.jpg 1 http://x\n"),
     "{r}/ImageList/Imagelist.txt, line 1: expected one path per line"),
    (lambda r: (r / "ImageList/Imagelist.txt").unlink(),
     "the image list {r}/ImageList/Imagelist.txt does not exist"),
    (lambda r: (r / "ConceptsList/Concepts81.txt").write_text("sky\nsky\n"),
     "{r}/ConceptsList/Concepts81.txt, line 2: 'sky' is a second time"),
    (lambda r: (r / "ConceptsList/Concepts81.txt").write_text("sky\n../x\n"),
     "{r}/ConceptsList/Concepts81.txt, line 2: '../x' is not a concept name"),
    (lambda r: (r / "ConceptsList/Concepts81.txt").write_text("sky\nsnow\n"),
     "--concepts 21 asks for more concepts than the 2 of {r}/ConceptsList/Concepts81.txt"),
])
def test_nus_bad_official_files(tmp_path, capsys, edit, fragment):
    raw, out = nus_raw(tmp_path), tmp_path / "out"
    edit(raw)
    assert fragment.format(r=raw) in failed(capsys, out, "nuswide", raw, out)


# ---------------------------------------------------------------- OUT and the command line

def test_out_already_prepared(tmp_path, capsys):
    raw, out = nus_raw(tmp_path), tmp_path / "out"
    prepared(capsys, "nuswide", raw, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, err = run(capsys, "nuswide", raw, out, "--concepts", "10")
    assert code == 1 and err == (f"error: {out} already holds all.txt, classes.txt, prepare.json: "
                                 f"choose another OUT, or pass --force to replace them\n")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    prepared(capsys, "nuswide", raw, out, "--concepts", "10", "--order", "frequency", "--force")
    assert (out / "all.txt").read_text() == NUS_10_BY_FREQUENCY
    assert sorted(p.name for p in out.iterdir()) == ["all.txt", "classes.txt", "prepare.json"]


def test_out_and_raw_must_be_folders(tmp_path, capsys):
    raw = nus_raw(tmp_path)
    (tmp_path / "file").write_text("")
    code, _, err = run(capsys, "nuswide", raw, tmp_path / "file")
    assert code == 1 and err == f"error: OUT {tmp_path / 'file'} is a file, not a folder\n"
    assert "is not a folder" in failed(capsys, tmp_path / "out", "nuswide", tmp_path / "nothing",
                                       tmp_path / "out")


def test_options_are_not_abbreviated(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["nuswide", str(tmp_path), str(tmp_path / "out"), "--skip"])
    assert e.value.code == 2
    assert "unrecognized arguments: --skip" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["flickr25k", str(tmp_path), str(tmp_path / "out"), "--concepts", "21"])
    assert "invalid choice: 21" in capsys.readouterr().err
