"""The Python API (spq.api, docs/api.md): load, encode, descriptors and search, against the
command line (python -m spq.index build, --eval_only) and plain loops."""
import contextlib
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import spq.api
import processes
from conftest import ROOT
from cli import export_cli, index_cli, spq as spq_cli
from spq.retrieval.distances import adc_distances
from spq.api import Model, load, search
from spq.data.cifar10 import load_cifar10
from spq.errors import SPQError
from spq.data.images import decode
from spq.store.index import load_index
from spq.method.quantization import encode
from spq.retrieval.metrics import mean_average_precision
from reference import adc_loops


@pytest.fixture(scope="module")
def best(two_epochs):
    return Path(two_epochs[0]) / "best.pth"


@pytest.fixture(scope="module")
def model(best):
    return load(best, "cpu")


@pytest.fixture(scope="module")
def cifar(data):
    return load_cifar10(data)


def run_gallery(cifar, per_class):
    """The gallery of a run with --train_per_class: its first `per_class` training images of
    each class, in the data's order (as tests/test_cli.py's run_sets picks them)."""
    seen, picked = {}, []
    for i, c in enumerate(cifar.train_labels.tolist()):
        if seen.get(c, 0) < per_class:
            seen[c] = seen.get(c, 0) + 1
            picked.append(i)
    return picked


def pictures(n, size, seed):
    """n random uint8 pictures (n, size, size, 3)."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def write_files(folder, arrays, fmt="PNG"):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, a in enumerate(arrays):
        paths.append(folder / f"p{i}.{fmt.lower()}")
        Image.fromarray(a).save(paths[-1], fmt)
    return paths


def test_load_gives_a_ready_model_with_its_options(model, best):
    ckpt = torch.load(best, weights_only=True)
    assert isinstance(model, Model) and not model.network.training
    assert model.options == ckpt["args"] and model.epoch == ckpt["epoch"] and model.checkpoint == best
    assert model.device == torch.device("cpu") and model.bits == 32
    assert (model.input_size, model.resize) == (16, "crop")
    assert model.codebooks.dtype == torch.float32 and model.codebooks.device.type == "cpu"
    assert torch.equal(model.codebooks, ckpt["model"]["codebooks"])
    assert "32 bits" in repr(model)


def test_codes_equal_index_build_and_map_equals_eval_only(data, best, model, cifar, tmp_path):
    built = index_cli("build", "--checkpoint", best, "--data_dir", data, "--out", tmp_path / "i.pt",
                      "--device", "cpu", "--num_workers", 0)
    assert built.returncode == 0, built.stderr
    index = load_index(tmp_path / "i.pt")
    codes = model.encode(cifar.train_images)
    assert codes.dtype == torch.uint8 and codes.shape == (200, 8)
    assert torch.equal(codes, index.codes)

    ran = spq_cli("--data_dir", data, "--resume", best, "--eval_only", "--device", "cpu",
                  "--output_dir", tmp_path / "eval")
    assert ran.returncode == 0, ran.stderr
    written = json.loads((tmp_path / "eval" / "retrieval.json").read_text())
    gallery = run_gallery(cifar, model.options["train_per_class"])
    assert written["gallery"] == len(gallery) == 50
    queries = model.descriptors(cifar.query_images)
    args = (queries, cifar.query_labels, model.encode(cifar.train_images[gallery]), cifar.train_labels[gallery],
            model.codebooks)
    assert mean_average_precision(*args, top_n=1000) == pytest.approx(written["mAP"], abs=1e-6)
    assert mean_average_precision(*args, top_n=None) == pytest.approx(written["mAP_all"], abs=1e-6)
    # the same gallery, from the training set's codes
    assert torch.equal(args[2], codes[gallery])


def test_tensors_pil_images_and_files_give_the_same_results(model, tmp_path):
    arrays = pictures(5, 16, seed=1)                     # already input_size square: no resizing
    files = write_files(tmp_path, arrays)
    tensor = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()
    pils = [Image.fromarray(a) for a in arrays]
    mixed = [files[0], pils[1], str(files[2]), pils[3], files[4]]
    x = model.descriptors(tensor)
    assert x.dtype == torch.float32 and x.shape == (5, 128) and not x.requires_grad
    for given in (files, pils, mixed, [str(f) for f in files]):
        assert torch.equal(model.descriptors(given), x)
        codes = model.encode(given)
        assert codes.dtype == torch.uint8 and torch.equal(codes, encode(x, model.codebooks))
    # another size in a tensor: resized bilinearly, as the evaluation does
    big = torch.nn.functional.interpolate(tensor.float(), size=(32, 32), mode="nearest").round().byte()
    assert not torch.equal(model.descriptors(big), x)


def test_files_and_pil_images_are_sized_by_one_rule(model, tmp_path):
    rng = np.random.default_rng(2)
    wide = rng.integers(0, 256, size=(24, 40, 3), dtype=np.uint8)
    path = tmp_path / "wide.png"
    Image.fromarray(wide).save(path)
    rotated = tmp_path / "rotated.jpg"                   # EXIF orientation 6: shown turned 90 degrees
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(wide).save(rotated, "JPEG", exif=exif, quality=95)
    grey = tmp_path / "grey.png"
    Image.fromarray(wide[..., 0], "L").save(grey)
    try:
        results = {}
        for rule in ("crop", "stretch"):
            model.resize = rule
            for f in (path, rotated, grey):
                with Image.open(f) as im:
                    from_pil = model.descriptors([im])
                expected = torch.from_numpy(decode(f, 16, rule)).unsqueeze(0)
                assert torch.equal(model.descriptors([f]), from_pil)
                assert torch.equal(from_pil, model.descriptors(expected))
                results[rule, f.name] = from_pil
    finally:
        model.resize = "crop"
    assert not torch.equal(results["crop", "wide.png"], results["stretch", "wide.png"])
    assert not torch.equal(results["crop", "rotated.jpg"], results["crop", "wide.png"])


def test_any_number_of_pictures_in_bounded_batches(model, tmp_path, monkeypatch):
    assert model.encode([]).shape == (0, 8) and model.encode([]).dtype == torch.uint8
    assert model.descriptors(torch.zeros(0, 3, 16, 16, dtype=torch.uint8)).shape == (0, 128)
    arrays = pictures(300, 16, seed=3)
    tensor = torch.from_numpy(arrays).permute(0, 3, 1, 2)
    whole = model.descriptors(tensor, batch_size=300)
    torch.testing.assert_close(model.descriptors(tensor[:1]), whole[:1], rtol=1e-5, atol=1e-5)
    events, real_describe, real_decode = [], spq.api.describe, spq.api.decode

    def counting_describe(net, images, *args):
        events.append(("describe", len(images)))
        return real_describe(net, images, *args)

    def counting_decode(*a):
        events.append(("decode", 1))
        return real_decode(*a)

    monkeypatch.setattr(spq.api, "describe", counting_describe)
    monkeypatch.setattr(spq.api, "decode", counting_decode)
    batched = model.descriptors(tensor, batch_size=64)
    assert events == [("describe", n) for n in (64, 64, 64, 64, 44)]
    torch.testing.assert_close(batched, whole, rtol=1e-5, atol=1e-5)
    events.clear()
    files = write_files(tmp_path, arrays[:70])
    assert torch.equal(model.encode(files, batch_size=32), encode(batched[:70], model.codebooks))
    # files are decoded a batch at a time, each batch described before the next is decoded
    assert events == [e for n in (32, 32, 6) for e in [("decode", 1)] * n + [("describe", n)]]


def test_bad_inputs_are_one_line_errors(model, best, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    index = tmp_path / "i.pt"
    torch.save({"format": "spq-index", "version": 1}, index)
    for path, fragment in [(text, "not a PyTorch file"), (tmp_path / "gone.pth", "does not exist"),
                           (index, "is not an SPQ checkpoint")]:
        with pytest.raises(SPQError, match=fragment) as e:
            load(path, "cpu")
        assert "\n" not in str(e.value)
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"\x89PNG but not really")
    with pytest.raises(SPQError, match="fake.png cannot be read"):
        model.encode([fake])
    with pytest.raises(SPQError, match="missing.png does not exist"):
        model.descriptors([tmp_path / "missing.png"])
    with pytest.raises(TypeError, match="uint8"):
        model.encode(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model.encode(torch.zeros(1, 1, 16, 16, dtype=torch.uint8))
    with pytest.raises(TypeError, match="list of image files"):
        model.encode(str(fake))
    with pytest.raises(TypeError, match="file path or a Pillow image"):
        model.encode([np.zeros((16, 16, 3), np.uint8)])
    with pytest.raises(SPQError, match="not a device"):
        load(best, "tpu0")
    if not torch.cuda.is_available():
        with pytest.raises(SPQError, match="no CUDA device"):
            load(best, "cuda")
    else:
        assert load(best, "cuda").device.type == "cuda"
    assert load(best).device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def ranking_loops(queries, codes, books, squared=False):
    """Every query's full ranking by (float32 loop distance, index), and the distances."""
    dist = adc_loops(queries, codes, books, squared).float()
    order = [sorted(range(codes.shape[0]), key=lambda g: (float(dist[q, g]), g)) for q in range(len(queries))]
    return torch.tensor(order), dist


def test_search_ranks_as_the_evaluation_ties_included(model, cifar):
    queries = model.descriptors(cifar.query_images[:12])
    codes = model.encode(cifar.train_images[:30])
    codes = torch.cat([codes[7:9], codes, codes[:10], codes[3:4]])      # items sharing a code
    g, rankings = len(codes), {}
    for squared, distance in [(False, "euclidean"), (True, "squared")]:
        expected, dist = ranking_loops(queries, codes, model.codebooks, squared)
        rankings[distance] = expected
        idx, d = search(queries, codes, model.codebooks, g, distance)
        assert idx.dtype == torch.int64 and d.dtype == torch.float32 and idx.shape == d.shape == (12, g)
        assert torch.equal(idx, expected)
        # the distances are those the evaluation ranks by, bit for bit
        assert torch.equal(d, adc_distances(queries, codes, model.codebooks, distance).gather(1, idx))
        torch.testing.assert_close(d, dist.gather(1, idx), rtol=1e-5, atol=1e-5)
        top, top_d = search(queries.numpy(), codes.numpy(), model.codebooks.numpy(), 5, distance)
        assert torch.equal(top, expected[:, :5]) and torch.equal(top_d, d[:, :5])
    # ties: of two items sharing a code, the earlier one ranks first for every query
    idx, _ = search(queries, codes, model.codebooks, g)
    dups = [(i, j) for i in range(g) for j in range(i + 1, g) if torch.equal(codes[i], codes[j])]
    assert len(dups) >= 13
    for row in idx.tolist():
        rank = {item: r for r, item in enumerate(row)}
        assert all(rank[i] < rank[j] for i, j in dups)
    assert search(queries, codes, model.codebooks, 1000)[0].shape == (12, g)
    assert search(queries[:0], codes, model.codebooks, 3)[0].shape == (0, 3)
    assert search(queries, codes[:0], model.codebooks, 3)[0].shape == (12, 0)
    by_model = model.search(cifar.query_images[:12], codes, 4)
    assert torch.equal(by_model[0], rankings["euclidean"][:, :4])
    assert torch.equal(by_model[1], search(queries, codes, model.codebooks, 4)[1])
    with pytest.raises(ValueError, match="0..15"):
        search(queries, codes.int() + 16, model.codebooks, 3)
    with pytest.raises(ValueError, match="k must be"):
        search(queries, codes, model.codebooks, -1)
    with pytest.raises(ValueError, match=r"\(Q, 128\)"):
        search(queries[:, :64], codes, model.codebooks, 3)
    with pytest.raises(ValueError, match="distance"):
        search(queries, codes, model.codebooks, 3, "cosine")


def python_blocks(path):
    return re.findall(r"```python\n(.*?)```", Path(path).read_text(), re.S)


def run_block(block, **variables):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, "docs/api.md", "exec"), dict(variables))
    return out.getvalue()


def test_the_documented_examples_run(model, best, cifar, export_dir, tmp_path):
    usage, numpy_ranking = python_blocks(ROOT / "docs" / "api.md")
    gallery_files = write_files(tmp_path / "g", cifar.train_images[:6].permute(0, 2, 3, 1).numpy())
    query_files = write_files(tmp_path / "q", cifar.query_images[:2].permute(0, 2, 3, 1).numpy())
    printed = run_block(usage, checkpoint=str(best), gallery_files=[str(f) for f in gallery_files],
                        query_files=[str(f) for f in query_files], export_dir=str(export_dir)).splitlines()
    assert printed[0] == repr(load(best))
    codes = model.encode(gallery_files)
    found, dist = search(model.descriptors(query_files), codes, model.codebooks, 3)
    for line, q, items, ds in zip(printed[1:3], query_files, found.tolist(), dist.tolist()):
        assert line == f"{q} -> " + ", ".join(f"{gallery_files[i]} ({d:.3f})" for i, d in zip(items, ds))
    names = (export_dir / "paths.txt").read_text().splitlines()
    found, dist = search(model.descriptors(query_files), np.load(export_dir / "codes.npy"), model.codebooks, 5)
    assert printed[3:] == [line for q, items, ds in zip(query_files, found.tolist(), dist.tolist())
                           for line in [str(q)] + [f"  {r}. {d:8.4f}  {names[i]}"
                                                  for r, (i, d) in enumerate(zip(items, ds), start=1)]]
    queries = model.descriptors(cifar.query_images)
    printed = run_block(numpy_ranking, export_dir=str(export_dir), queries=queries.numpy())
    ranking, _ = search(queries, np.load(export_dir / "codes.npy"), model.codebooks, 200)
    assert printed == f"200 items; nearest to the first query: {ranking[0, :5].numpy()}\n"


@pytest.fixture(scope="module")
def export_dir(data, best, tmp_path_factory):
    out = tmp_path_factory.mktemp("api-export") / "e"
    done = export_cli("--checkpoint", best, "--data_dir", data, "--out", out, "--device", "cpu", "--num_workers", 0)
    assert done.returncode == 0, done.stderr
    return out


def test_import_spq_is_light_and_exports_the_api():
    code = ("import sys, spq\n"
            "assert 'torch' not in sys.modules and 'spq.api' not in sys.modules\n"
            "found = (spq.load, spq.Model, spq.search)\n"
            "import spq.api\n"
            "assert found == (spq.api.load, spq.api.Model, spq.api.search)\n"
            "assert {'load', 'Model', 'search'} <= set(spq.__all__)\n"
            "print('ok')")
    done = processes.run([sys.executable, "-c", code], cwd=ROOT, timeout=300)
    assert done.stdout == "ok\n", done.stderr
