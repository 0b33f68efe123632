"""python -m spq.prepare on small replicas of the official MIRFLICKR-25000 and NUS-WIDE layouts:
the lists it writes against hand-written expected text, and every error."""
import hashlib
import json
from pathlib import Path

import pytest

from prepare_fixture import (CLASSES_24, CLASSES_38, FLICKR_38, FLICKR_ALL, FLICKR_CONCEPTS, FLICKR_LABELLED,
                             FLICKR_STRICT, FLICKR_TAGGED, NOTE, NUS_10_BY_FREQUENCY, NUS_21, NUS_ALL,
                             NUS_CLASSES_21, NUS_CLASSES_21_BY_FREQUENCY, NUS_CONCEPTS, NUS_IMAGES, flickr_raw,
                             nus_raw)
from spq.data.lists import read_list
from spq.prepare import main

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

def test_flickr_all_is_the_default(tmp_path, capsys):
    """Every image is kept by default, as the peers' majority keeps all 25,000."""
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    printed = prepared(capsys, "flickr25k", raw, out)
    assert printed == NOTE.format(raw=raw) + (
        f"flickr25k: 10 images, 24 concepts; kept 10 (all images); wrote {out / 'all.txt'}\n")
    assert (out / "all.txt").read_text() == FLICKR_ALL
    record = json.loads((out / "prepare.json").read_text())
    assert record["choices"] == {"images": "all", "concepts": 24, "skip_missing": False}


def test_flickr_labelled(tmp_path, capsys):
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    printed = prepared(capsys, "flickr25k", raw, out, "--images", "labelled")
    assert printed == NOTE.format(raw=raw) + (
        f"flickr25k: 10 images, 24 concepts; kept 8 labelled; left out 2 without a concept; "
        f"wrote {out / 'all.txt'}\n")
    text = (out / "all.txt").read_text()
    assert text == FLICKR_LABELLED
    assert (out / "classes.txt").read_text() == CLASSES_24
    record = json.loads((out / "prepare.json").read_text())
    assert record["dataset"] == "flickr25k"
    assert record["choices"] == {"images": "labelled", "concepts": 24, "skip_missing": False}
    assert record["counts"]["listed"] == 10 and record["counts"]["kept"] == 8
    assert Path(record["raw"]).is_absolute() and Path(record["sources"]["annotations"]).is_absolute()
    assert record["counts"]["dropped"] == {"without_concept": 2, "missing_image": 0}
    per_concept = record["counts"]["images_per_concept"]
    assert per_concept["listed"]["animals"] == 3 and per_concept["listed"]["car"] == 0
    assert per_concept["kept"] == {**dict.fromkeys(FLICKR_CONCEPTS, 0),
                                   "animals": 3, "baby": 2, "bird": 3, "water": 3}
    assert record["concepts"] == CLASSES_24.split()
    assert record["command"] == f"python -m spq.prepare flickr25k {raw} {out} --images labelled"
    assert record["all_txt_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert record["sources"]["annotations"] == str((raw / "mirflickr25k_annotations_v080").resolve())


def test_flickr_list_reads_back_with_its_labels(tmp_path, capsys):
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    prepared(capsys, "flickr25k", raw, out)
    entries = read_list(out / "all.txt", raw, 24)
    assert entries.paths == [raw / line.split()[0] for line in FLICKR_ALL.splitlines()]
    assert entries.labels.tolist() == labels_of(FLICKR_ALL)


@pytest.mark.parametrize("annotations", ["annotations", "."])
def test_flickr_annotations_elsewhere(tmp_path, capsys, annotations):
    raw, out = flickr_raw(tmp_path, annotations), tmp_path / "out"
    prepared(capsys, "flickr25k", raw, out, "--images", "labelled")
    assert (out / "all.txt").read_text() == FLICKR_LABELLED


@pytest.mark.parametrize("options, expected, classes, kept", [
    (["--images", "all"], FLICKR_ALL, CLASSES_24, "kept 10 (all images)"),
    (["--images", "labelled", "--concepts", "38"], FLICKR_38, CLASSES_38,
     "kept 8 labelled; left out 2 without a concept"),
    (["--images", "tagged"], FLICKR_TAGGED, CLASSES_24,
     "kept 6 tagged; left out 2 without a concept, 2 without a common tag"),
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
    err = failed(capsys, out, "flickr25k", raw, out, "--images", "labelled")
    assert err == (f"error: 1 of the 8 images to list have no image file under {raw}: "
                   f"mirflickr/im7.jpg; complete the download, or pass --skip_missing to leave "
                   f"these images out (they are counted)\n")
    printed = prepared(capsys, "flickr25k", raw, out, "--images", "labelled", "--skip_missing")
    assert printed.splitlines()[-1] == (f"flickr25k: 10 images, 24 concepts; kept 7 labelled; left out 2 "
                                        f"without a concept, 1 missing image file; wrote "
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
    assert "kept 5 tagged; left out 2 without a concept, 1 missing tags file, 2 without a common tag, " \
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
    prepared(capsys, "flickr25k", raw, out, "--images", "labelled")


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
    err = failed(capsys, out, "flickr25k", raw, out, "--images", "labelled", "--skip_missing")
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
                       f"alphabetical; kept 10; left out 2 without a concept; wrote {out / 'all.txt'}\n")
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
    assert "10 of 23 concepts (the most frequent), columns frequency; kept 9; left out 3 without a concept" \
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
    assert "23 of 23 concepts, columns alphabetical; kept 11; left out 1 without a concept" in printed
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
    assert "kept 4; left out 2 without a concept, 6 missing image files;" in printed
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


def test_raw_given_as_mirflickr_itself_says_to_pass_its_parent(tmp_path, capsys):
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    err = failed(capsys, out, "flickr25k", raw / "mirflickr", out)
    assert f"{raw / 'mirflickr' / 'mirflickr'} does not exist" in err
    assert "RAW is the folder that holds mirflickr/" in err and f"pass its parent, {raw}" in err


def test_nus_without_its_image_folder_names_the_folder(tmp_path, capsys):
    raw, out = nus_raw(tmp_path), tmp_path / "out"
    for path in sorted((raw / "Flickr").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (raw / "Flickr").rmdir()
    err = failed(capsys, out, "nuswide", raw, out)
    assert err == (f"error: {raw / 'Flickr'} does not exist: the NUS-WIDE images go in "
                   f"RAW/Flickr/<folder>/<file>.jpg (unpack the image archive into {raw})\n")
