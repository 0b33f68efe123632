"""Loading CIFAR-10 python batches, and the errors for bad folders."""
import pickle

import numpy as np
import pytest
import torch

import spq.data.cifar10 as D
from cifar_fixture import write_cifar10
from spq.errors import SPQError


def test_loads_batches(tmp_path):
    root = write_cifar10(tmp_path, per_batch=7, test=5)
    data = D.load_cifar10(root)
    assert data.train_images.shape == (35, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.query_images.shape == (5, 3, 32, 32)
    assert data.train_labels.dtype == torch.int64 and data.train_labels.shape == (35,)
    # channel planes in R, G, B order, row-major, as the official files
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        raw = pickle.load(f)["data"][0]
    assert torch.equal(data.train_images[0, 1, 2], torch.as_tensor(raw[1024 + 2 * 32:1024 + 3 * 32]))


def test_bytes_keys_as_in_python2_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in D.TRAIN_FILES + [D.TEST_FILE]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}, f)
    assert D.load_cifar10(str(tmp_path)).train_images.shape == (10, 3, 32, 32)


def test_missing_folder_names_path_and_download_flag(tmp_path):
    with pytest.raises(SPQError, match=r"cifar-10-batches-py.*--if_download"):
        D.load_cifar10(str(tmp_path / "nowhere"))


def test_malformed_batch(tmp_path):
    root = write_cifar10(tmp_path, per_batch=3, test=3)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({"data": np.zeros((3, 100), np.uint8), "labels": [0, 1, 2]}, f)
    with pytest.raises(SPQError, match=r"data_batch_3.*\(n, 3072\)"):
        D.load_cifar10(root)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(SPQError, match="not a CIFAR-10 python batch"):
        D.load_cifar10(root)


def query_labels_out_of_range(tmp_path):
    root = write_cifar10(tmp_path, per_batch=20, test=5, classes=10)
    with pytest.raises(SPQError, match="--num_cls 5"):
        D.load_cifar10(root, num_classes=5)


def test_download_is_only_asked_when_files_are_missing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(D, "download_cifar10", lambda d: calls.append(d) or write_cifar10(d, 2, 2))
    D.load_cifar10(str(tmp_path), download=True)
    D.load_cifar10(str(tmp_path), download=True)
    assert calls == [str(tmp_path)]
