"""main_SPQ.py end to end through its command line, on a small dataset in the real format."""
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from conftest import SMALL, assert_clean_failure, assert_same_weights, read_log
from cli import spq
from spq.data.cifar10 import load_cifar10
from spq.run.encode import encode_sets
from spq.run.trained import load_model
from spq.method.quantization import encode
from reference import map_loops, ranked_lists_loops


def run_sets(data, ckpt):
    """The gallery (the run's first 5 training images of each class) and the queries (the
    whole test set) of a SMALL run, as the run's model encodes them."""
    model, ckpt, _ = load_model(ckpt, torch.device("cpu"))
    cifar = load_cifar10(data)
    per_class, gallery = ckpt["args"]["train_per_class"], []
    for i, c in enumerate(cifar.train_labels.tolist()):
        if sum(int(cifar.train_labels[j]) == c for j in gallery) < per_class:
            gallery.append(i)
    assert len(gallery) == 50
    codes, queries = encode_sets(model, cifar.train_images[gallery], cifar.query_images, ckpt["args"]["input_size"])
    return queries, cifar.query_labels, codes, cifar.train_labels[gallery], model.codebooks.detach()


def test_two_epochs_log_lines_and_files(data, two_epochs):
    out, result = two_epochs
    lines = result.stdout.splitlines()
    assert any(l.startswith("SPQ: 32 bits") for l in lines)
    assert sum(l.startswith("epoch 1/2  loss") for l in lines) == 1
    assert sum(l.startswith("epoch 2: mAP@1000 = ") and "(best " in l for l in lines) == 1
    assert "Traceback" not in result.stderr
    log = read_log(out)
    assert [r["epoch"] for r in log] == [1, 2]
    for r in log:
        assert {"epoch", "loss", "lr", "seconds", "mAP", "bits", "top_n"} <= set(r)
        assert r["bits"] == 32 and r["top_n"] == 1000 and r["lr"] == 3e-4
    assert sorted(p.name for p in Path(out).iterdir()) == ["best.pth", "last.pth", "log.jsonl"]
    # the last row's mAP is the epoch-2 model's (last.pth), by plain loops over its codes
    assert log[-1]["mAP"] == pytest.approx(map_loops(*run_sets(data, Path(out) / "last.pth"), 1000), abs=1e-6)


def test_checkpoint_contents(two_epochs):
    out, _ = two_epochs
    ckpt = torch.load(Path(out) / "last.pth", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["format"] == "spq-checkpoint"
    assert ckpt["args"]["N_books"] == 8 and ckpt["args"]["batch_size"] == 16 and ckpt["args"]["input_size"] == 16
    assert ckpt["best_map"] == max(r["mAP"] for r in read_log(out))
    assert ckpt["model"]["codebooks"].shape == (8, 16, 16)
    assert {"torch", "python", "shuffle", "cuda"} <= set(ckpt["rng"])


@pytest.mark.slow
def test_resume_continues_at_epoch_2_and_matches_an_uninterrupted_run(data, one_epoch, two_epochs, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(one_epoch, resumed)
    result = spq("--data_dir", data, "--output_dir", resumed, "--epochs", 2, "--eval_epoch", 1,
                 "--resume", resumed / "last.pth", "--device", "cpu")   # the rest comes from the checkpoint
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout and "at epoch 2" in result.stdout
    assert "resume: --epochs 2 (the checkpoint's run had 1)" in result.stdout
    log = read_log(resumed)
    assert [r["epoch"] for r in log] == [1, 2]          # appended, not truncated
    straight, _ = two_epochs
    for a, b in zip(log, read_log(straight), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
        assert a["mAP"] == pytest.approx(b["mAP"], abs=1e-6)
    assert_same_weights(resumed / "last.pth", straight / "last.pth")


def test_eval_only(data, two_epochs, tmp_path):
    out, _ = two_epochs
    result = spq("--data_dir", data, "--resume", Path(out) / "best.pth", "--eval_only", "--device", "cpu",
                 "--output_dir", tmp_path)
    assert result.returncode == 0, result.stderr
    best = max(r["mAP"] for r in read_log(out))
    assert f"mAP@1000 = {best:.4f}" in result.stdout
    written = json.loads((tmp_path / "retrieval.json").read_text())
    assert written["mAP"] == pytest.approx(best, abs=1e-6)
    # the gallery: the run's 5 training images of each class
    assert (written["bits"], written["top_n"], written["queries"], written["gallery"]) == (32, 1000, 50, 50)
    # every metric of best.pth's model, against plain loops over its codes
    sets = run_sets(data, Path(out) / "best.pth")
    assert written["mAP_all"] == pytest.approx(map_loops(*sets, None), abs=1e-6)
    lists = ranked_lists_loops(*sets)
    assert list(written["precision_at_k"]) == ["1", "10", "50"]   # 100, 500, 1000 capped at G
    for k, value in written["precision_at_k"].items():
        assert value == pytest.approx(sum(sum(r[:int(k)]) / int(k) for r in lists) / len(lists), abs=1e-6)
    curve = written["precision_recall"]
    assert curve["cutoffs"] == [1, 2, 5, 10, 20, 50]
    with_relevant = [r for r in lists if sum(r)]
    for n, precision, recall in zip(curve["cutoffs"], curve["precision"], curve["recall"]):
        assert precision == pytest.approx(sum(sum(r[:n]) / n for r in lists) / len(lists), abs=1e-6)
        assert recall == pytest.approx(sum(sum(r[:n]) / sum(r) for r in with_relevant) / len(with_relevant),
                                       abs=1e-6)
    assert "precision@k: @1 " in result.stdout and "precision-recall at rank cut-offs:" in result.stdout


def test_eval_only_with_squared_distances(data, two_epochs, tmp_path):
    out, _ = two_epochs
    result = spq("--data_dir", data, "--resume", Path(out) / "best.pth", "--eval_only", "--device", "cpu",
                 "--output_dir", tmp_path, "--adc_distance", "squared")
    assert result.returncode == 0, result.stderr
    assert "distance: ADC, per book squared" in result.stdout
    written = json.loads((tmp_path / "retrieval.json").read_text())
    assert written["adc_distance"] == "squared"
    assert written["mAP"] == pytest.approx(map_loops(*run_sets(data, Path(out) / "best.pth"), 1000, squared=True),
                                           abs=1e-6)


def sdc_map_loops(query_codes, qlabels, codes, glabels, books, top_n):
    """mAP@top_n when queries are codes too: per book the Euclidean distance between the two
    selected codewords, summed, ties by gallery index; plain loops."""
    aps = []
    for q in range(len(query_codes)):
        dist = [sum(float((books[m, int(query_codes[q, m])] - books[m, int(codes[g, m])]).double().norm())
                    for m in range(books.shape[0])) for g in range(len(codes))]
        order = sorted(range(len(codes)), key=lambda g: (torch.tensor(dist[g]).float().item(), g))[:top_n]
        hits, precisions = 0, []
        for rank, g in enumerate(order, start=1):
            if int(glabels[g]) == int(qlabels[q]):
                hits += 1
                precisions.append(hits / rank)
        aps.append(sum(precisions) / len(precisions) if precisions else 0.0)
    return sum(aps) / len(aps)


def test_eval_only_with_symmetric_distances(data, two_epochs, tmp_path):
    out, _ = two_epochs
    result = spq("--data_dir", data, "--resume", Path(out) / "best.pth", "--eval_only", "--device", "cpu",
                 "--output_dir", tmp_path, "--distance", "sdc")
    assert result.returncode == 0, result.stderr
    assert "distance: SDC, per book euclidean" in result.stdout
    written = json.loads((tmp_path / "retrieval.json").read_text())
    queries, qlabels, codes, glabels, books = run_sets(data, Path(out) / "best.pth")
    query_codes = encode(queries, books)
    assert written["distance"] == "sdc"
    assert written["mAP"] == pytest.approx(sdc_map_loops(query_codes, qlabels, codes, glabels, books, 1000), abs=1e-6)
    adc = spq("--data_dir", data, "--resume", Path(out) / "best.pth", "--eval_only", "--device", "cpu",
              "--output_dir", tmp_path / "adc")
    assert adc.returncode == 0, adc.stderr
    assert json.loads((tmp_path / "adc" / "retrieval.json").read_text())["mAP"] != written["mAP"]


def test_resume_refuses_a_different_model(data, two_epochs):
    out, _ = two_epochs
    result = spq("--data_dir", data, "--resume", Path(out) / "last.pth", "--N_books", 4,
                 "--output_dir", out, "--device", "cpu", "--epochs", 3)
    assert result.returncode == 1
    assert "--N_books 4 differs from the checkpoint's 8" in result.stderr
    assert "Traceback" not in result.stderr


def test_fresh_run_refuses_to_overwrite_a_run(data, two_epochs):
    out, _ = two_epochs
    result = spq("--data_dir", data, "--output_dir", out, "--epochs", 1, *SMALL)
    assert result.returncode == 1 and "already holds a run" in result.stderr


def test_missing_data_folder(tmp_path):
    out = tmp_path / "out"
    result = spq("--data_dir", tmp_path / "none", "--output_dir", out, "--device", "cpu")
    assert_clean_failure(result, 1, "error: CIFAR-10 not found", str(tmp_path / "none"), "--if_download")
    assert not out.exists()                  # nothing half-written


def test_n_words_not_a_power_of_two(tmp_path):
    result = spq("--N_words", 12, "--output_dir", tmp_path / "out")
    assert_clean_failure(result, 2, "--N_words must be a power of two")
    assert not (tmp_path / "out").exists()


def test_batch_size_one():
    assert_clean_failure(spq("--batch_size", 1), 2, "--batch_size must be at least 2")


def test_batch_larger_than_dataset(data, tmp_path):
    result = spq("--data_dir", data, "--output_dir", tmp_path / "o", "--device", "cpu", "--batch_size", 512)
    assert_clean_failure(result, 1, "exceeds the 200 training images")


def test_corrupt_checkpoint(data, tmp_path):
    bad = tmp_path / "last.pth"
    bad.write_bytes(b"\x00" * 100)
    result = spq("--data_dir", data, "--resume", bad, "--output_dir", tmp_path, "--device", "cpu")
    assert_clean_failure(result, 1, f"cannot read checkpoint {bad}")


def test_cuda_asked_without_cuda(data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = spq("--data_dir", data, "--output_dir", tmp_path / "o", "--device", "cuda")
    assert_clean_failure(result, 1, "--device cuda")


def test_help_lists_every_option():
    result = spq("--help")
    assert result.returncode == 0
    for option in ["--gpu_id", "--if_download", "--data_dir", "--batch_size", "--num_workers",
                   "--input_size", "--N_books", "--N_words", "--L_word", "--soft_quantization_scale",
                   "--contrastive_temperature", "--num_cls", "--eval_epoch", "--output_dir", "--Top_N",
                   "--epochs", "--lr", "--weight_decay", "--seed", "--device", "--resume", "--eval_only",
                   "--lr_schedule", "--precision", "--compile", "--dataset", "--images_in_memory_gb"]:
        assert option in result.stdout, option


def test_tensorboard_holds_each_epochs_scalars(data, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (optional)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    out, board = tmp_path / "run", tmp_path / "board"
    result = spq("--data_dir", data, "--output_dir", out, "--epochs", 2, "--eval_epoch", 2,
                 "--tensorboard", board, *SMALL)
    assert result.returncode == 0, result.stderr
    events = EventAccumulator(str(board))
    events.Reload()
    log = read_log(out)
    assert set(events.Tags()["scalars"]) == {"loss", "lr", "seconds", "mAP", "eval_seconds"}
    for name in ("loss", "lr"):
        assert [(e.step, e.value) for e in events.Scalars(name)] == \
            [(r["epoch"], pytest.approx(r[name], rel=1e-6)) for r in log]
    assert [(e.step, pytest.approx(e.value, rel=1e-6)) for e in events.Scalars("mAP")] == [(2, log[1]["mAP"])]


def test_tensorboard_without_the_package_is_one_line(data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)        # import fails
    result = spq("--data_dir", data, "--output_dir", tmp_path / "run", "--epochs", 1,
                 "--tensorboard", tmp_path / "board", *SMALL)
    assert_clean_failure(result, 1, "--tensorboard needs the tensorboard package", "pip install tensorboard")
    assert not (tmp_path / "board").exists()


def test_a_run_says_what_it_ran(data, two_epochs, tmp_path):
    """The backbone, where its weights started, the input size, the resizing rule and the
    precision: in the start line, the log's header line, retrieval.json and the results table."""
    out, result = two_epochs
    said = "cifar_resnet18 at 16 px (crop), fp32"
    assert any(line.startswith("SPQ: 32 bits (8 books x 16 words), " + said) for line in result.stdout.splitlines())
    header = json.loads((Path(out) / "log.jsonl").read_text().splitlines()[0])["run"]
    assert {k: header[k] for k in ("backbone", "pretrained", "input_size", "resize", "precision")} == {
        "backbone": "cifar_resnet18", "pretrained": None, "input_size": 16, "resize": "crop", "precision": "fp32"}
    evaluated = spq("--resume", Path(out) / "best.pth", "--eval_only", "--output_dir", tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((tmp_path / "retrieval.json").read_text())["model"] == header
    assert any(line.startswith(str(Path(out) / "best.pth")) and f"): 32 bits, {said}, " in line
               for line in evaluated.stdout.splitlines())
    from cli import results_cli
    table = results_cli(out)
    assert table.returncode == 0, table.stderr
    assert "| model |" in table.stdout and f"| {said} |" in table.stdout


@pytest.fixture
def no_decoding(monkeypatch):
    """Decoding the dataset fails the test: a refusal must come before it."""
    import spq.run.setup

    def decoded(*_, **__):
        raise AssertionError("the dataset was loaded before the refusal")
    monkeypatch.setattr(spq.run.setup, "load_data", decoded)


def test_an_occupied_output_dir_is_refused_before_the_data_is_loaded(data, two_epochs, no_decoding):
    out, _ = two_epochs
    result = spq("--data_dir", data, "--output_dir", out, "--epochs", 1, *SMALL)
    assert_clean_failure(result, 1, "already holds a run (last.pth)")


def test_a_backbone_too_deep_for_the_input_size_is_refused_before_the_data_is_loaded(data, tmp_path, no_decoding):
    result = spq("--data_dir", data, "--output_dir", tmp_path / "run", "--epochs", 1, "--backbone", "vgg16",
                 *SMALL)                                          # 16-pixel views: five poolings leave nothing
    assert_clean_failure(result, 1, "--backbone vgg16 cannot take --input_size 16", "at least --input_size 32")
    assert len(result.stderr.strip().splitlines()) == 1


def test_imagenet_weights_without_a_network_say_what_to_do(data, tmp_path, monkeypatch, no_decoding):
    """--pretrained imagenet with an empty cache and no network: one line naming the weights'
    address, the cache folder to fill and --pretrained FILE; before any image is decoded."""
    import urllib.error
    import urllib.request
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def offline(*_, **__):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    result = spq("--data_dir", data, "--output_dir", tmp_path / "run", "--epochs", 1, "--backbone", "resnet18",
                 "--pretrained", "imagenet", *SMALL)
    assert_clean_failure(result, 1, "--pretrained imagenet: could not download torchvision's ImageNet weights of "
                                    "resnet18 from https://download.pytorch.org/models/resnet18-",
                         "Name or service not known", str(tmp_path / "torch_home" / "hub" / "checkpoints"),
                         "--pretrained FILE")
    assert len(result.stderr.strip().splitlines()) == 1
