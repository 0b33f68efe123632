"""Safe loading of what the user points at: pickles that run code, 16-bit images, huge
images, list files with a byte-order mark or paths outside --data_dir."""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import spq.data.cifar10 as D
import spq.data.images as images
from args import parse_args
from cifar_fixture import write_cifar10
from folder_fixture import write_folder
from spq.errors import SPQError
from spq.data.folder import load_folder
from spq.store.index import Index
from spq.index import result_pixels
from spq.data.lists import read_list


class RunsCode:
    """Unpickling this calls os.system, which creates `marker`."""
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def craft_batch(root, marker, name="data_batch_2"):
    path = Path(root) / "cifar-10-batches-py" / name
    with open(path, "wb") as f:
        pickle.dump({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3],
                     "x": RunsCode(marker)}, f)
    return path


def test_a_batch_that_runs_code_is_refused_unrun(tmp_path):
    root = write_cifar10(tmp_path / "d", per_batch=4, test=4)
    path = craft_batch(root, tmp_path / "ran")
    with pytest.raises(SPQError, match=rf"{path} is refused: it is a pickle that calls posix.system"):
        D.load_cifar10(root)
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_the_official_format_loads_at_any_protocol(tmp_path, protocol):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(protocol)
    data = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    for name in D.TRAIN_FILES + [D.TEST_FILE]:
        with open(folder / name, "wb") as f:    # every field of the official batches
            pickle.dump({b"batch_label": b"training batch 1 of 5", b"labels": [1, 2, 3],
                         b"data": data, b"filenames": [b"a.png", b"b.png", b"c.png"]}, f, protocol)
    loaded = D.load_cifar10(str(tmp_path))
    assert torch.equal(loaded.query_images.reshape(3, 3072), torch.from_numpy(data))


def test_a_cifar_index_grid_reads_batches_only_where_the_user_says(tmp_path):
    root = write_cifar10(tmp_path / "d", per_batch=4, test=4)
    craft_batch(root, tmp_path / "ran", "data_batch_1")
    index = Index(torch.zeros(2, 4, 3), torch.zeros(4, 2, dtype=torch.uint8), torch.arange(4), None,
                  None, None, {"dataset": "cifar10", "split": "train", "data_dir": root, "input_size": 32})
    with pytest.raises(SPQError, match=f"needs --data_dir.*built from {root}"):
        result_pixels(index, [0], 32)
    assert not (tmp_path / "ran").exists()


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path):
    wide = np.random.default_rng(0).integers(0, 65536, (32, 32)).astype(np.uint16)
    Image.fromarray(wide).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    got = images.decode(tmp_path / "deep.png", 32)                     # (3, 32, 32)
    expected = np.floor(wide / 257 + 0.5).astype(np.uint8)             # round half up; ties are exact
    for channel in got:
        assert np.array_equal(channel, expected)


def query_images_over_the_pixel_limit_are_skipped_with_a_warning(tmp_path, monkeypatch, capsys):
    root = write_folder(tmp_path / "f", train=2, test=0, classes=2, corrupt=False)
    big = Path(root) / "train" / "class_1" / "big.png"
    Image.new("RGB", (80, 60)).save(big)
    monkeypatch.setattr(images, "MAX_PIXELS", 80 * 60 - 1)      # the others are at most 64 x 48
    data = load_folder(root, 16)
    assert len(data.train_images) == 4
    assert "skipped 1 file that could not be read as images" in capsys.readouterr().err
    monkeypatch.setattr(images, "MAX_PIXELS", 80 * 60)
    assert images.decode(big, 16) is not None


def write_list(root, lines, bom=False):
    listed = Path(root) / "list.txt"
    listed.write_bytes((b"\xef\xbb\xbf" if bom else b"") + ("\n".join(lines) + "\n").encode())
    return listed


def test_a_list_file_with_a_byte_order_mark(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"")
    entries = read_list(write_list(tmp_path, ["a.png 1 0", "b.png 0 1"], bom=True), tmp_path, 2)
    assert entries.paths == [tmp_path / "a.png", tmp_path / "b.png"]


@pytest.mark.parametrize("where", ["../outside.png", "ABSOLUTE", "sub/../../outside.png"])
def test_list_paths_outside_data_dir_need_the_option(tmp_path, where):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "outside.png").write_bytes(b"")
    (root / "in.png").write_bytes(b"")
    where = str(tmp_path / "outside.png") if where == "ABSOLUTE" else where
    listed = write_list(root, ["in.png 1", f"{where} 0"])
    with pytest.raises(SPQError, match=r"line 2: .* lies outside --data_dir .*--allow_outside_data_dir"):
        read_list(listed, root, 1)
    entries = read_list(listed, root, 1, allow_outside=True)
    assert os.path.samefile(entries.paths[1], tmp_path / "outside.png")
    assert parse_args(["--dataset", "list", "--train_list", str(listed),
                       "--allow_outside_data_dir"]).allow_outside_data_dir


def test_sub_folders_and_dots_inside_data_dir_are_fine(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.png").write_bytes(b"")
    entries = read_list(write_list(tmp_path, ["./sub/../sub/x.png 1"]), tmp_path, 1)
    assert entries.paths[0].name == "x.png"
