"""python -m spq.export: the files it writes, read back with numpy alone, from a dataset and
from an index file; its refusals."""
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_clean_failure
from cli import export_cli, index_cli
from folder_fixture import write_folder
from spq.retrieval.topk import search
from spq.api import load
from spq.data.cifar10 import load_cifar10
from spq.method.quantization import encode


def load_export(folder):
    """Every file of an export, by numpy alone: {name: array}, paths, export.json."""
    folder = Path(folder)
    arrays = {p.stem: np.load(p, allow_pickle=False) for p in sorted(folder.glob("*.npy"))}
    return arrays, (folder / "paths.txt").read_text().splitlines(), json.loads((folder / "export.json").read_text())


def numpy_ranking(queries, codes, codebooks):
    """Full ADC rankings from exported arrays, a plain loop over books: Euclidean distance
    per book in float64, summed, as float32; stable sort (ties by item order)."""
    m_books, _, length = codebooks.shape
    dist = np.zeros((len(queries), len(codes)))
    for m in range(m_books):
        sub = queries[:, m * length:(m + 1) * length].astype(np.float64)           # (Q, L)
        words = codebooks[m, codes[:, m].astype(np.int64)].astype(np.float64)        # (G, L)
        dist += np.sqrt(((sub[:, None, :] - words[None]) ** 2).sum(-1))
    return np.argsort(dist.astype(np.float32), axis=1, kind="stable")


@pytest.fixture(scope="module")
def exports(data, two_epochs, tmp_path_factory):
    """From best.pth: CIFAR-10's gallery (its training set) and test set with descriptors,
    and an export of the gallery's index file."""
    root = tmp_path_factory.mktemp("export")
    best = Path(two_epochs[0]) / "best.pth"
    common = ["--checkpoint", best, "--data_dir", data, "--device", "cpu", "--num_workers", 0, "--descriptors"]
    runs = {"gallery": export_cli(*common, "--out", root / "gallery"),
            "query": export_cli(*common, "--split", "query", "--out", root / "query")}
    built = index_cli("build", "--checkpoint", best, "--data_dir", data, "--out", root / "gallery.index",
                      "--device", "cpu", "--num_workers", 0)
    assert built.returncode == 0, built.stderr
    runs["index"] = export_cli("--index", root / "gallery.index", "--out", root / "index")
    for name, done in runs.items():
        assert done.returncode == 0, (name, done.stderr)
    return {"root": root, "best": best, "runs": runs, "cifar": load_cifar10(data), "model": load(best, "cpu")}


def test_a_dataset_export_read_back_with_numpy(exports):
    arrays, paths, info = load_export(exports["root"] / "gallery")
    cifar, model, best = exports["cifar"], exports["model"], exports["best"]
    assert sorted(arrays) == ["codebooks", "codes", "descriptors", "labels"]
    codes, books, labels, x = (arrays[k] for k in ("codes", "codebooks", "labels", "descriptors"))
    assert (codes.shape, codes.dtype) == ((200, 8), np.uint8)
    assert (books.shape, books.dtype) == ((8, 16, 16), np.float32)
    assert (labels.shape, labels.dtype) == ((200,), np.int64) and np.array_equal(labels, cifar.train_labels.numpy())
    assert (x.shape, x.dtype) == ((200, 128), np.float32)
    assert np.array_equal(books, model.codebooks.numpy())
    assert np.array_equal(codes, model.encode(cifar.train_images).numpy())
    assert np.array_equal(encode(torch.from_numpy(x), torch.from_numpy(books)).numpy(), codes)
    assert np.array_equal(x, model.descriptors(cifar.train_images).numpy())
    assert paths == [f"cifar10 train #{i}" for i in range(200)]
    assert info["checkpoint"] == {"path": str(best.resolve()), "epoch": torch.load(best, weights_only=True)["epoch"],
                                  "sha256": hashlib.sha256(best.read_bytes()).hexdigest()}
    described = {"codes.npy": {"shape": [200, 8], "dtype": "uint8"},
                 "codebooks.npy": {"shape": [8, 16, 16], "dtype": "float32"},
                 "labels.npy": {"shape": [200], "dtype": "int64"},
                 "descriptors.npy": {"shape": [200, 128], "dtype": "float32"},
                 "paths.txt": {"lines": 200}}
    folder = exports["root"] / "gallery"
    assert info["files"] == {name: {**fields, "bytes": (folder / name).stat().st_size,   # each file's size and hash
                                    "sha256": hashlib.sha256((folder / name).read_bytes()).hexdigest()}
                             for name, fields in described.items()}
    assert (info["count"], info["bits"], info["books"], info["words"], info["word_length"]) == (200, 32, 8, 16, 16)
    assert (info["input_size"], info["resize"], info["split"], info["dataset"]) == (16, "crop", "train", "cifar10")
    assert info["distance"] == "euclidean" and "Euclidean" in info["distances"]["euclidean"]
    assert info["classes"][:2] == ["airplane", "automobile"] and info["source"] == {"index": None}
    assert "wrote" in exports["runs"]["gallery"].stdout
    test_arrays, test_paths, _ = load_export(exports["root"] / "query")
    assert np.array_equal(test_arrays["descriptors"], model.descriptors(cifar.query_images).numpy())
    assert test_paths == [f"cifar10 query #{i}" for i in range(50)]


def test_a_ranking_from_the_exported_arrays_is_the_evaluations(exports):
    gallery, _, _ = load_export(exports["root"] / "gallery")
    queries = load_export(exports["root"] / "query")[0]["descriptors"]
    codes = np.concatenate([gallery["codes"][5:9], gallery["codes"], gallery["codes"][:40]])  # shared codes
    ranking = numpy_ranking(queries, codes, gallery["codebooks"])
    found = torch.cat([idx for _, idx in search(torch.from_numpy(queries), torch.from_numpy(codes),
                                                torch.from_numpy(gallery["codebooks"]), len(codes))])
    assert np.array_equal(ranking, found.numpy())
    # the ties were there to be broken: items sharing a code rank in item order
    # (gallery item 5 is at 0, 9 and 209; item 0 at 4 and 204)
    for row in ranking.tolist():
        assert row.index(0) < row.index(9) < row.index(209) and row.index(4) < row.index(204)


def test_an_index_export_equals_the_dataset_export(exports):
    from_data, paths, info = load_export(exports["root"] / "gallery")
    from_index, index_paths, index_info = load_export(exports["root"] / "index")
    assert sorted(from_index) == ["codebooks", "codes", "labels"]                  # no descriptors
    for name, array in from_index.items():
        assert array.dtype == from_data[name].dtype and np.array_equal(array, from_data[name])
    assert index_paths == paths
    assert index_info["source"] == {"index": str((exports["root"] / "gallery.index").resolve())}
    assert index_info["checkpoint"] == info["checkpoint"]
    assert "descriptors.npy" not in index_info["files"]
    for key in ("count", "bits", "input_size", "resize", "split", "classes", "distances"):
        assert index_info[key] == info[key]


def test_a_folder_export_names_its_files(exports, tmp_path):
    data = Path(write_folder(tmp_path / "folder", train=2, test=1))
    done = export_cli("--checkpoint", exports["best"], "--dataset", "folder", "--data_dir", data,
                      "--out", tmp_path / "out", "--device", "cpu", "--num_workers", 0)
    assert done.returncode == 0, done.stderr
    assert "skipped 1 file" in done.stderr and "broken.jpg" in done.stderr
    arrays, paths, info = load_export(tmp_path / "out")
    readable = sorted(p.relative_to(data).as_posix() for p in (data / "train").rglob("img_*"))
    assert paths == readable and len(paths) == 6
    assert [info["classes"][c] for c in arrays["labels"]] == [p.split("/")[1] for p in paths]
    model = exports["model"]
    assert np.array_equal(arrays["codes"], model.encode([data / p for p in paths]).numpy())


def test_refusals(exports, tmp_path):
    root, best = exports["root"], exports["best"]
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    fresh = tmp_path / "fresh"
    assert_clean_failure(export_cli("--checkpoint", text, "--out", fresh), 1, "not a PyTorch file")
    assert_clean_failure(export_cli("--index", best, "--out", fresh), 1, "is not an SPQ index")
    assert not fresh.exists()
    done = export_cli("--index", root / "gallery.index", "--descriptors", "--out", fresh)
    assert_clean_failure(done, 2, "--descriptors needs a dataset")
    assert_clean_failure(export_cli("--index", root / "gallery.index", "--data_dir", "x", "--out", fresh), 2,
                         "--data_dir: --index reads no dataset")
    assert_clean_failure(export_cli("--out", fresh), 2, "one of the arguments --checkpoint --index is required")
    assert_clean_failure(export_cli("--index", root / "gallery.index", "--checkpoint", best, "--out", fresh), 2,
                         "not allowed with")
    assert_clean_failure(export_cli("--index", root / "gallery.index", "--out", text), 1, "is a file")
    # a folder that holds files: refused, then replaced with --force (another's files kept)
    again = tmp_path / "again"
    again.mkdir()
    (again / "descriptors.npy").write_bytes(b"stale")
    (again / "mine.txt").write_text("kept\n")
    assert_clean_failure(export_cli("--index", root / "gallery.index", "--out", again), 1, "--force")
    assert (again / "descriptors.npy").read_bytes() == b"stale"
    assert export_cli("--index", root / "gallery.index", "--out", again, "--force").returncode == 0
    assert sorted(os.listdir(again)) == ["codebooks.npy", "codes.npy", "export.json", "labels.npy",
                                         "mine.txt", "paths.txt"]
