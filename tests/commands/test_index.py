"""python -m spq.index: building an index with a trained model, querying it, FAISS export."""
import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import processes
from conftest import ROOT, SMALL, assert_clean_failure
from cli import index_cli, spq
from folder_fixture import write_folder
from PIL import Image

import spq.retrieval.distances as D
import spq.retrieval.topk as A
from spq.data.cifar10 import CLASSES, load_cifar10
from spq.errors import SPQError
from spq.store.index import pack_codes, to_faiss
from spq.files.torchfile import with_checksum
from spq.data.folder import load_folder
from spq.index import FRAME, GAP, OTHER, SAME, SEPARATOR, grid_size
from spq.data.images import decode
from spq.store.index import load_index
from spq.run.trained import load_model
from spq.index import main as index_main
from spq.method.quantization import encode
from spq.run.encode import describe


def index_process(*argv):
    """python -m spq.index ARGV in a process of its own."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return processes.run([sys.executable, "-m", "spq.index", *map(str, argv)], cwd=ROOT, env=env,
                         timeout=600)


def has_faiss():
    return importlib.util.find_spec("faiss") is not None


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A folder dataset (3 classes x 12 training pictures, one corrupt file), a model trained
    on it for one epoch, and its index (with the FAISS export when faiss is installed)."""
    root = tmp_path_factory.mktemp("index")
    data = write_folder(root / "data", train=12, test=2)
    run = root / "run"
    trained = spq("--dataset", "folder", "--data_dir", data, "--output_dir", run, "--epochs", 1,
                  "--num_workers", 0, *SMALL[:2], "--batch_size", 16)
    assert trained.returncode == 0, trained.stderr
    extra = ["--faiss", root / "faiss.index"] if has_faiss() else []
    result = index_cli("build", "--checkpoint", run / "last.pth", "--dataset", "folder", "--data_dir", data, "--out",
                       root / "index.pt", "--device", "cpu", "--num_workers", 2, *extra)
    assert result.returncode == 0, result.stderr
    return {"root": root, "data": Path(data), "ckpt": run / "last.pth", "index": root / "index.pt",
            "faiss": root / "faiss.index", "stdout": result.stdout, "stderr": result.stderr}


def query(built, *images, k=5, extra=()):
    result = index_cli("query", "--index", built["index"], "--checkpoint", built["ckpt"], *images,
                       "--top_k", k, "--device", "cpu", "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_build_writes_a_checked_index_of_the_readable_images(built):
    index = load_index(built["index"])
    assert len(index) == 36 and index.codes.dtype == torch.uint8 and index.codes.shape == (36, 8)
    assert "wrote" in built["stdout"] and "36 items of train, 32 bits" in built["stdout"]
    assert "skipped 1 file(s)" in built["stderr"] and "broken.jpg" in built["stderr"]
    assert index.paths == sorted(index.paths) and all(p.startswith("train/class_") for p in index.paths)
    assert [index.classes[i] for i in index.labels] == [p.split("/")[1] for p in index.paths]
    assert index.config["input_size"] == 32 and index.config["split"] == "train"
    raw = torch.load(built["index"], weights_only=True)                 # plain types only
    assert raw["format"] == "spq-index" and raw["version"] == 1
    model, _, _ = load_model(built["ckpt"], torch.device("cpu"))
    assert torch.equal(index.codebooks, model.codebooks.detach())


def test_streamed_codes_equal_the_evaluation_encoding(built):
    # build decodes and encodes in chunks; evaluation decodes everything, then encodes
    model, _, _ = load_model(built["ckpt"], torch.device("cpu"))
    images = load_folder(built["data"], 32).train_images
    expected = encode(describe(model, images, 32), model.codebooks)
    assert torch.equal(load_index(built["index"]).codes, expected)


def reference_ranking(model, index, image, k, distance="euclidean"):
    """A whole row of ADC distances, stably sorted: (distance, index) order."""
    x = describe(model, torch.from_numpy(decode(image, 32)).unsqueeze(0), 32)
    row = D.adc_distances(x, index.codes, index.codebooks, distance)[0]
    order = torch.sort(row, stable=True).indices[:k]
    return order.tolist(), row[order].tolist()


def test_gallery_images_queried_against_themselves_come_first(built):
    index = load_index(built["index"])
    picks = [0, 7, 20, 35]
    found = query(built, *[built["data"] / index.paths[i] for i in picks], k=3)
    assert found["top_k"] == 3 and found["distance"] == "euclidean"
    for i, q in zip(picks, found["queries"]):
        top = q["results"][0]
        # itself, or an earlier item with the same code (equal distances keep index order)
        assert top["item"] == i or (top["item"] < i and torch.equal(index.codes[top["item"]],
                                                                    index.codes[i]))
        assert q["class"] == index.class_of(i)


@pytest.mark.parametrize("distance", ["euclidean", "squared"])
def test_query_results_equal_a_plain_ranking(built, distance):
    index = load_index(built["index"])
    model, _, _ = load_model(built["ckpt"], torch.device("cpu"))
    images = sorted((built["data"] / "test").rglob("img_*"))
    found = query(built, *images, k=7, extra=("--distance", distance))
    assert [q["image"] for q in found["queries"]] == [str(p) for p in images]
    for image, q in zip(images, found["queries"]):
        items, dists = reference_ranking(model, index, image, 7, distance)
        assert [r["item"] for r in q["results"]] == items
        assert [r["distance"] for r in q["results"]] == pytest.approx(dists, rel=1e-6)
        assert [r["rank"] for r in q["results"]] == list(range(1, 8))
        for r in q["results"]:
            assert r["name"] == index.paths[r["item"]] and r["class"] == index.class_of(r["item"])
            assert r["same_class"] == (r["class"] == q["class"])


@pytest.mark.slow
def test_text_output_lists_each_query_and_its_results(built):
    """Through the real interpreter: `python -m spq.index query` end to end."""
    image = built["data"] / "test" / "class_1" / "img_1_0.PNG"
    result = index_process("query", "--index", built["index"], "--checkpoint", built["ckpt"], image,
                       "--top_k", 4, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"{image}  (class class_1)"
    assert [line.split(".")[0].strip() for line in lines[1:5]] == ["1", "2", "3", "4"]
    assert all("train/class_" in line for line in lines[1:5])
    assert lines[5].startswith("(ADC distance: euclidean")


def test_grid_has_the_documented_size_and_frames(built):
    images = sorted((built["data"] / "test").rglob("img_*"))[:3]
    grid = built["root"] / "grid.png"
    found = query(built, *images, k=4, extra=("--grid", grid, "--tile", 40))
    picture = Image.open(grid)
    assert picture.format == "PNG" and picture.size == grid_size(3, 5, 40)
    pixels = np.asarray(picture.convert("RGB"))
    cell = 40 + 2 * FRAME
    for row, q in enumerate(found["queries"]):
        for col, r in enumerate(q["results"], start=1):
            top, left = GAP + row * (cell + GAP), GAP + col * (cell + GAP) + SEPARATOR
            assert tuple(pixels[top + 1, left + 1]) == (SAME if r["same_class"] else OTHER)


@pytest.mark.skipif(not has_faiss(), reason="faiss-cpu is not installed (optional)")
def test_faiss_index_returns_the_squared_distance_top_k(built):
    import faiss
    assert "faiss.IndexPQ of 36 codes" in built["stdout"]
    served = faiss.read_index(str(built["faiss"]))
    index = load_index(built["index"])
    model, _, _ = load_model(built["ckpt"], torch.device("cpu"))
    images = sorted((built["data"] / "test").rglob("img_*"))
    x = describe(model, torch.stack([torch.from_numpy(decode(p, 32)) for p in images]), 32)
    got_d, got_i = served.search(x.numpy(), 5)
    ours = torch.cat([i for _, i in A.search(x, index.codes, index.codebooks, 5, "squared")])
    ours_d = D.result_distances(x, index.codes, index.codebooks, ours, "squared")
    full = D.adc_distances(x, index.codes, index.codebooks, "squared")
    np.testing.assert_allclose(got_d, ours_d.numpy(), rtol=1e-4, atol=1e-5)
    for q in range(len(images)):
        # equal distances may come in another order: items must match up to such ties
        kth = float(ours_d[q, -1])
        np.testing.assert_allclose(full[q, got_i[q]].numpy(), got_d[q], rtol=1e-4, atol=1e-5)
        strictly_inside = set(ours[q][ours_d[q] < kth - 1e-4].tolist())
        assert strictly_inside <= set(got_i[q].tolist())


@pytest.mark.skipif(not has_faiss(), reason="faiss-cpu is not installed (optional)")
@pytest.mark.parametrize("m_books,k_words", [(8, 16), (4, 256), (3, 8), (5, 2)])
def test_faiss_export_holds_the_codes_and_ranks_like_squared_adc(m_books, k_words):
    gen = torch.Generator().manual_seed(m_books * k_words)
    books = torch.randn(m_books, k_words, 6, generator=gen)
    codes = torch.randint(0, k_words, (300, m_books), generator=gen).to(torch.uint8)
    served = to_faiss(books, codes)
    recon = torch.from_numpy(served.reconstruct_n(0, 300))               # (G, M*L)
    expected = torch.stack([torch.cat([books[m, int(c[m])] for m in range(m_books)]) for c in codes])
    assert torch.equal(recon, expected)
    queries = torch.randn(20, m_books * 6, generator=gen)
    _, got = served.search(queries.numpy(), 10)
    ours = torch.cat([i for _, i in A.search(queries, codes, books, 10, "squared")])
    dist = D.adc_distances(queries, codes, books, "squared")
    untied = 0
    for q in range(20):
        d = dist[q, ours[q]]
        # rank by rank, FAISS's items are as near as ours, whatever order it gives ties
        torch.testing.assert_close(dist[q, got[q]], d, rtol=1e-5, atol=1e-5)
        if torch.all(d[1:] - d[:-1] > 1e-4) and dist[q].sort().values[10] - d[-1] > 1e-4:
            assert got[q].tolist() == ours[q].tolist()     # no near ties: the very same items
            untied += 1
    if k_words >= 16:                                      # few duplicate codes: no ties at all
        assert untied == 20


@pytest.mark.parametrize("nbits", [1, 3, 4, 8, 10])
def test_pack_codes_matches_a_bit_by_bit_loop(nbits):
    gen = torch.Generator().manual_seed(nbits)
    codes = torch.randint(0, 2 ** nbits, (7, 5), generator=gen).to(torch.int16)
    width = -(-5 * nbits // 8)
    expected = np.zeros((7, width), np.uint8)
    for i in range(7):
        for m in range(5):
            for b in range(nbits):
                if int(codes[i, m]) >> b & 1:
                    position = m * nbits + b                   # least significant bit first
                    expected[i, position // 8] |= 1 << (position % 8)
    assert np.array_equal(pack_codes(codes, nbits), expected)


def test_faiss_missing_is_a_clear_error_before_any_work(built, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "faiss", None)                     # import faiss fails
    out = tmp_path / "index.pt"
    code = index_main(["build", "--checkpoint", str(built["ckpt"]), "--dataset", "folder", "--data_dir", str(built["data"]),
                       "--out", str(out), "--faiss", str(tmp_path / "f.index"), "--device", "cpu"])
    assert code == 1 and "pip install faiss-cpu" in capsys.readouterr().err
    assert not out.exists()


def test_corrupt_or_foreign_index_files_are_clear_errors(built, tmp_path):
    good = built["index"].read_bytes()
    cases = {"truncated.pt": good[:len(good) // 2], "noise.pt": os.urandom(2000)}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    damaged = torch.load(built["index"], weights_only=True)
    damaged["codes"] = damaged["codes"][:, :5]
    torch.save(damaged, tmp_path / "damaged.pt")
    damaged = torch.load(built["index"], weights_only=True)
    damaged["paths"] = "train/a.jpg\ntrain/b.jpg"                       # 2 paths for 36 codes
    torch.save(damaged, tmp_path / "paths.pt")
    expect = {"truncated.pt": "truncated, corrupt or not a PyTorch file",
              "noise.pt": "truncated, corrupt or not a PyTorch file",
              "foreign.pt": "is not an SPQ index", "damaged.pt": "damaged SPQ index.*codes",
              "paths.pt": "damaged SPQ index.*36 lines",
              "missing.pt": "does not exist", str(built["ckpt"]): "is not an SPQ index"}
    for name, fragment in expect.items():
        with pytest.raises(SPQError, match=fragment):
            load_index(tmp_path / name)
    result = index_cli("query", "--index", tmp_path / "noise.pt", "--checkpoint", built["ckpt"],
                       built["data"] / "test" / "class_0" / "img_0_0.jpg", "--device", "cpu")
    assert_clean_failure(result, 1, "error:", "noise.pt", "truncated, corrupt")


def test_query_errors_name_the_problem(built, tmp_path):
    image = built["data"] / "test" / "class_0" / "img_0_0.jpg"
    base = ["query", "--index", built["index"], "--device", "cpu"]
    missing = index_cli(*base, "--checkpoint", built["ckpt"], tmp_path / "nope.jpg")
    assert_clean_failure(missing, 1, "nope.jpg does not exist")
    (tmp_path / "text.jpg").write_text("not a picture")
    unreadable = index_cli(*base, "--checkpoint", built["ckpt"], tmp_path / "text.jpg")
    assert_clean_failure(unreadable, 1, "cannot be read as an image")
    zero = index_cli(*base, "--checkpoint", built["ckpt"], image, "--top_k", 0)
    assert_clean_failure(zero, 1, "--top_k must be at least 1")
    other = torch.load(built["ckpt"], weights_only=True)                 # another model
    other["model"]["codebooks"] = other["model"]["codebooks"] + 1
    torch.save(with_checksum(other), tmp_path / "other.pth")
    wrong = index_cli(*base, "--checkpoint", tmp_path / "other.pth", image)
    assert_clean_failure(wrong, 1, "was built with another model", "codebooks differ")


def test_cifar10_index_by_position_with_labels_and_grid(data, two_epochs, tmp_path):
    out, _ = two_epochs
    result = index_cli("build", "--checkpoint", out / "last.pth", "--dataset", "cifar10",
                       "--data_dir", data, "--out", tmp_path / "cifar.pt", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    index = load_index(tmp_path / "cifar.pt")
    cifar = load_cifar10(data)
    assert len(index) == 200 and index.paths is None and index.classes == list(CLASSES)
    assert torch.equal(index.positions, torch.arange(200))
    assert torch.equal(index.labels, cifar.train_labels)
    label = int(cifar.train_labels[17])
    folder = tmp_path / CLASSES[label]
    folder.mkdir()
    Image.fromarray(cifar.train_images[17].permute(1, 2, 0).numpy()).save(folder / "q.png")
    found = query({"index": tmp_path / "cifar.pt", "ckpt": out / "last.pth"}, folder / "q.png",
                  k=3, extra=("--grid", tmp_path / "g.png", "--tile", 32, "--data_dir", data))
    q = found["queries"][0]
    assert q["class"] == CLASSES[label]
    top = q["results"][0]
    assert top["item"] == 17 or torch.equal(index.codes[top["item"]], index.codes[17])
    assert top["name"] == f"cifar10 train #{top['position']}"
    assert Image.open(tmp_path / "g.png").size == grid_size(1, 4, 32)
