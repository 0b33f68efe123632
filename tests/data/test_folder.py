"""--dataset folder: finding, decoding and labelling the user's images; training on them."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

import spq.data.images as I
from conftest import assert_clean_failure, read_log
from cli import spq
from folder_fixture import write_folder, write_split
from spq.errors import SPQError
from spq.data.folder import load_folder, scan

CLASSES = ["class_0", "class_1", "class_2"]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """3 classes, 12 training and 4 test pictures each, nested, mixed formats and sizes,
    one corrupt JPEG and one text file in train/."""
    return write_folder(tmp_path_factory.mktemp("folder"))


def test_scan_finds_images_by_extension_recursively(tree):
    found = scan(tree)
    assert set(found) == {"train", "query"}
    paths, names = found["train"]
    assert len(paths) == 3 * 12 + 1                      # the corrupt .jpg is found; notes.txt is not
    assert {p.suffix for p in paths} == {".jpg", ".PNG", ".jpeg", ".bmp", ".WebP"}
    assert any("nested" in p.parts for p in paths)
    for path, name in zip(paths, names):                 # the class is the first folder level
        assert path.relative_to(tree, "train").parts[0] == name
    assert paths == sorted(paths)


def test_load_labels_and_one_warning_for_unreadable_files(tree, capsys):
    data = load_folder(tree, 32)
    assert data.train_images.shape == (36, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.query_images.shape == (12, 3, 32, 32)
    assert torch.equal(data.train_labels.bincount(), torch.tensor([12, 12, 12]))
    assert torch.equal(data.query_labels, torch.arange(3).repeat_interleave(4))
    assert data.gallery_images is None and data.why_not_evaluable() is None
    assert not data.on_disk
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: skipped 1 file that could not be read")
    assert "broken.jpg" in err[0]


def query_images_equal_their_files_decoded_one_by_one(tree):
    data = load_folder(tree, 32)
    paths = [p for p in scan(tree)["train"][0] if p.name != "broken.jpg"]
    for i in [0, 7, 35]:
        assert torch.equal(data.train_images[i], torch.from_numpy(I.decode(paths[i], 32)))


def reference_resize(pixels, size):
    """The resizing rule written out plainly: bicubic to shorter side `size`, centre crop."""
    h, w = pixels.shape[:2]
    if w <= h:
        new_w, new_h = size, max(size, round(h * size / w))
    else:
        new_w, new_h = max(size, round(w * size / h)), size
    img = Image.fromarray(pixels)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), Image.BICUBIC)
    arr = np.asarray(img)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return arr[top:top + size, left:left + size].transpose(2, 0, 1)


@pytest.mark.parametrize("w,h,size", [(48, 24, 24), (64, 32, 16), (30, 90, 20), (17, 17, 32), (40, 41, 40)])
def test_decode_resizes_the_shorter_side_then_crops_the_centre(tmp_path, w, h, size):
    pixels = np.random.default_rng(w * h).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    got = I.decode(tmp_path / "x.png", size)
    assert got.shape == (3, size, size) and got.dtype == np.uint8
    assert np.array_equal(got, reference_resize(pixels, size))


def test_decode_known_crop_without_resizing(tmp_path):
    # 48 x 24: the shorter side is already 24, so the result is columns 12..35 unchanged
    pixels = np.zeros((24, 48, 3), np.uint8)
    pixels[:, :, 0] = np.arange(48)[None, :]
    Image.fromarray(pixels).save(tmp_path / "x.bmp")
    got = I.decode(tmp_path / "x.bmp", 24)
    assert np.array_equal(got[0], np.tile(np.arange(12, 36), (24, 1)))


def test_decode_converts_grey_and_alpha_and_rejects_non_images(tmp_path):
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "grey.png")
    Image.fromarray(np.full((8, 8, 4), 50, np.uint8)).save(tmp_path / "alpha.png")
    assert np.array_equal(I.decode(tmp_path / "grey.png", 8), np.full((3, 8, 8), 200))
    assert np.array_equal(I.decode(tmp_path / "alpha.png", 8), np.full((3, 8, 8), 50))
    (tmp_path / "fake.jpg").write_text("hello")
    (tmp_path / "cut.png").write_bytes((tmp_path / "grey.png").read_bytes()[:40])
    assert I.decode(tmp_path / "fake.jpg", 8) is None and I.decode(tmp_path / "cut.png", 8) is None


def test_worker_processes_give_the_same_images(tree, monkeypatch):
    one = load_folder(tree, 32, workers=0)
    monkeypatch.setattr(I, "CHUNK", 5)                   # several tasks, so the pool really works
    if (os.cpu_count() or 1) < 2:
        pytest.skip("one CPU: the decoder runs no worker pool")
    many = load_folder(tree, 32, workers=2)
    assert torch.equal(one.train_images, many.train_images)
    assert torch.equal(one.train_labels, many.train_labels)
    assert torch.equal(one.query_images, many.query_images)


def test_over_the_memory_budget_images_are_memory_mapped(tree, tmp_path):
    in_memory = load_folder(tree, 32)
    streamed = load_folder(tree, 32, budget_bytes=1000, spill_dir=tmp_path / "spill")
    assert streamed.on_disk and not in_memory.on_disk
    assert torch.equal(streamed.train_images, in_memory.train_images)
    assert torch.equal(streamed.query_images, in_memory.query_images)
    assert list((tmp_path / "spill").iterdir()) == []   # the backing files are unlinked at once
    assert torch.equal(streamed.train_images[torch.tensor([5, 0, 30])], in_memory.train_images[[5, 0, 30]])


def test_gallery_folder_is_the_database(tmp_path):
    write_folder(tmp_path, train=4, test=2, corrupt=False)
    write_split(tmp_path / "gallery", 3, seed=5)
    data = load_folder(tmp_path, 16)
    images, labels = data.gallery()
    assert images.shape == (9, 3, 16, 16) and torch.equal(labels, torch.arange(3).repeat_interleave(3))
    assert data.train_images.shape[0] == 12


def test_classes_are_numbered_over_all_splits(tmp_path):
    write_split(tmp_path / "train" / "b", 2, classes=1)      # train has only the middle class
    for name in ["a", "b", "c"]:
        write_split(tmp_path / "test" / name, 1, classes=1)
    data = load_folder(tmp_path, 8)
    assert torch.equal(data.train_labels, torch.tensor([1, 1]))
    assert torch.equal(data.query_labels, torch.tensor([0, 1, 2]))


def test_unlabelled_folder_trains_but_cannot_be_evaluated(tmp_path):
    write_folder(tmp_path, labelled=False, corrupt=False)
    data = load_folder(tmp_path, 32)
    assert data.train_labels is None and data.query_labels is None
    assert "mAP needs labels" in data.why_not_evaluable()
    write_folder(tmp_path / "no_test", test=0, corrupt=False)
    assert "no query images" in load_folder(tmp_path / "no_test", 32).why_not_evaluable()


@pytest.mark.parametrize("make,message", [
    (lambda root: None, "train does not exist"),
    (lambda root: (root / "train").mkdir(), "holds no image files"),
    (lambda root: (root / "train" / "a").mkdir(parents=True) or (root / "train" / "a" / "x.txt").write_text("x"),
     "holds no image files"),
    (lambda root: (root / "train").mkdir() or (root / "train" / "x.png").write_bytes(b"no"), "none of its 1"),
])
def test_empty_or_missing_folders_are_clear_errors(tmp_path, make, message):
    make(tmp_path)
    with pytest.raises(SPQError, match=message):
        load_folder(tmp_path, 32)


def test_empty_test_folder_is_an_error(tmp_path):
    write_folder(tmp_path, test=0, corrupt=False)
    (tmp_path / "test" / "cat").mkdir(parents=True)
    with pytest.raises(SPQError, match=r"test holds no image files"):
        load_folder(tmp_path, 32)


SMALL_FOLDER = ["--dataset", "folder", "--device", "cpu", "--batch_size", "16", "--seed", "1",
                "--epochs", "1", "--eval_epoch", "1", "--input_size", "16"]


def test_cli_trains_one_epoch_streaming_with_workers_and_evaluates(tree, tmp_path):
    out = tmp_path / "run"
    result = spq("--data_dir", tree, "--output_dir", out, "--num_workers", 2,
                 "--images_in_memory_gb", 0, *SMALL_FOLDER)
    assert result.returncode == 0, result.stderr
    assert "folder dataset: 36 training, 12 query images, memory-mapped from disk" in result.stdout
    assert "epoch 1: mAP@1000 = " in result.stdout
    assert result.stderr.count("warning: skipped 1 file") == 1 and "Traceback" not in result.stderr
    (record,) = read_log(out)
    assert 0 < record["mAP"] <= 1 and record["loss"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["best.pth", "last.pth", "log.jsonl"]


def test_cli_unlabelled_folder_trains_and_skips_evaluation(tmp_path):
    root = write_folder(tmp_path / "data", labelled=False)
    out = tmp_path / "run"
    result = spq("--data_dir", root, "--output_dir", out, "--num_workers", 0, *SMALL_FOLDER)
    assert result.returncode == 0, result.stderr
    assert "evaluation skipped: mAP needs labels" in result.stdout
    (record,) = read_log(out)
    assert "mAP" not in record and record["loss"] > 0
    assert sorted(p.name for p in out.iterdir()) == ["last.pth", "log.jsonl"]
    again = spq("--data_dir", root, "--output_dir", out, "--resume", out / "last.pth", "--eval_only",
                "--dataset", "folder", "--device", "cpu")
    assert_clean_failure(again, 1, "cannot evaluate", "mAP needs labels")
    assert not (out / "retrieval.json").exists()


def test_cli_empty_folder_is_a_clean_error(tmp_path):
    (tmp_path / "data" / "train" / "cats").mkdir(parents=True)
    out = tmp_path / "run"
    result = spq("--data_dir", tmp_path / "data", "--output_dir", out, *SMALL_FOLDER)
    assert_clean_failure(result, 1, "error: ", "train holds no image files")
    assert not out.exists()
