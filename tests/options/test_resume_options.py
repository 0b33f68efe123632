"""Resume that remembers: options not typed come from the checkpoint's run; per-class
subsets for trying the program on a CPU; the --help text."""
import json
import shutil

import pytest
import torch

import main_SPQ
from args import get_args_parser, parse, parse_args
from conftest import SMALL, read_log
from spq.options.values import merged
from spq.data.cifar10 import load_cifar10
from spq.data.imageset import ImageSet, cap_per_class, first_per_class
from spq.errors import SPQError


def merge(argv, saved_argv, path):
    """(the flat options of `argv` resuming a run of `saved_argv`, the lines printed)."""
    options, typed = parse(argv)
    saved = vars(parse_args(saved_argv))
    resumed, lines = merged(options, saved, typed, path)
    return resumed.flat(), lines


def test_untyped_options_come_from_the_checkpoint_and_typed_ones_override(tmp_path):
    ckpt = tmp_path / "run" / "best.pth"
    saved = ["--data_dir", "/d", "--epochs", "3", "--eval_epoch", "1", "--device", "cpu",
             "--N_books", "4", "--Top_N", "500", "--output_dir", "/elsewhere", "--train_per_class", "7"]
    args, lines = merge(["--resume", str(ckpt), "--eval_only", "--Top_N", "0"], saved, ckpt)
    assert [args[k] for k in ("data_dir", "epochs", "eval_epoch", "device", "N_books")] == ["/d", 3, 1, "cpu", 4]
    assert args["train_per_class"] == 7
    assert args["Top_N"] == 0                               # typed: overrides the checkpoint's 500
    assert args["output_dir"] == str(tmp_path / "run")      # the checkpoint's folder
    assert (args["resume"], args["eval_only"]) == (str(ckpt), True)
    assert lines[0] == (f"options from the checkpoint's run: --N_books 4 --data_dir /d --device cpu "
                        f"--epochs 3 --eval_epoch 1 --output_dir {tmp_path / 'run'} --train_per_class 7 "
                        f"(type an option to override it)")
    assert lines[1:] == ["--Top_N 0 (the checkpoint's run had 500)"]


def test_a_typed_method_option_must_match(tmp_path):
    ckpt = tmp_path / "last.pth"
    with pytest.raises(SPQError, match="--N_books 4 differs from the checkpoint's 8"):
        merge(["--resume", str(ckpt), "--N_books", "4"], ["--N_books", "8"], ckpt)
    args, lines = merge(["--resume", str(ckpt), "--N_books", "8"], ["--N_books", "8"], ckpt)
    assert args["N_books"] == 8 and lines[1:] == []


def test_options_newer_than_the_checkpoint_keep_their_defaults(tmp_path):
    ckpt = tmp_path / "last.pth"
    options, typed = parse(["--resume", str(ckpt)])
    saved = vars(parse_args(["--epochs", "5"]))
    del saved["train_per_class"], saved["query_per_class"]   # a checkpoint from before them
    resumed = merged(options, saved, typed, ckpt)[0].data
    assert (resumed.train_per_class, resumed.query_per_class) == (0, 0)
    assert merged(options, saved, typed, ckpt)[0].optim.epochs == 5


@pytest.mark.slow
def test_eval_only_and_resume_auto_remember_the_run(data, tmp_path, monkeypatch, capsys):
    """The issue's acceptance: a run with relative paths, stopped in epoch 2; from another
    folder, `--resume R/best.pth --eval_only` alone evaluates on its data and writes into R,
    and `--resume auto --output_dir R` finishes epoch 2 (not 2000) and stops."""
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(data, a / "data")
    b.mkdir()
    monkeypatch.chdir(a)
    # 5 training images per class of the fixture's 200 -> 3 steps of 16: step 4 is in epoch 2
    monkeypatch.setenv("SPQ_FAULTS", "step#4=sigterm")
    code = main_SPQ.main(["--data_dir", "data", "--output_dir", "R", "--epochs", "2", "--eval_epoch", "1",
                          *SMALL, "--train_per_class", "5", "--query_per_class", "3"])
    assert code == 143
    run = a / "R"
    ckpt = torch.load(run / "last.pth", weights_only=True)
    assert ckpt["epoch"] == 1 and ckpt["mid_epoch"]["epoch"] == 2
    assert ckpt["args"]["data_dir"] == str(a / "data") and ckpt["args"]["output_dir"] == str(run)
    monkeypatch.delenv("SPQ_FAULTS")
    monkeypatch.chdir(b)
    capsys.readouterr()

    assert main_SPQ.main(["--resume", str(run / "best.pth"), "--eval_only"]) == 0
    out = capsys.readouterr().out
    taken = next(line for line in out.splitlines() if line.startswith("resume: options from"))
    for option in [f"--data_dir {a / 'data'}", "--device cpu", "--epochs 2", "--eval_epoch 1",
                   f"--output_dir {run}", "--train_per_class 5", "--query_per_class 3"]:
        assert option in taken, option
    written = json.loads((run / "retrieval.json").read_text())
    query_labels = load_cifar10(a / "data").query_labels
    assert written["queries"] == sum(min(3, int((query_labels == c).sum())) for c in range(10))
    assert written["gallery"] == 50
    assert written["mAP"] == pytest.approx(read_log(run)[0]["mAP"], abs=1e-6)   # best.pth: epoch 1
    assert list(b.iterdir()) == []                          # nothing written where it was called

    # a typed option overrides the checkpoint's: all 50 queries, written where asked
    assert main_SPQ.main(["--resume", str(run / "best.pth"), "--eval_only", "--query_per_class", "0",
                          "--output_dir", str(b / "all")]) == 0
    assert json.loads((b / "all" / "retrieval.json").read_text())["queries"] == 50

    capsys.readouterr()
    assert main_SPQ.main(["--resume", "auto", "--output_dir", str(run)]) == 0
    out = capsys.readouterr().out
    assert "at step 1 of epoch 2" in out and "epochs 2..2" in out
    assert [r["epoch"] for r in read_log(run)] == [1, 2]
    assert main_SPQ.main(["--resume", "auto", "--output_dir", str(run)]) == 0
    assert "nothing to train: the checkpoint finished epoch 2 of --epochs 2" in capsys.readouterr().out


def test_first_per_class_matches_a_plain_loop():
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 7, (500,), generator=g)
    for n in (1, 4, 60, 1000):
        seen, expected = {}, []
        for i, c in enumerate(labels.tolist()):
            seen[c] = seen.get(c, 0) + 1
            if seen[c] <= n:
                expected.append(i)
        assert first_per_class(labels, n).tolist() == expected


def test_cap_per_class_keeps_a_separate_gallery_and_refuses_unusable_labels():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 3, 4, 4), dtype=torch.uint8, generator=g)
    labels = torch.arange(40) % 4
    data = ImageSet(images, labels, images[:20], labels[:20], images[:30], labels[:30])
    capped = cap_per_class(data, 3, 2)
    assert torch.equal(capped.train_images, images[:12]) and torch.equal(capped.train_labels, labels[:12])
    assert torch.equal(capped.query_images, images[:8])
    assert capped.gallery_images.shape[0] == 30
    same = ImageSet(images, labels, images[:20], labels[:20])
    assert cap_per_class(same, 3, 0).gallery()[0].shape[0] == 12   # the gallery is the training set
    with pytest.raises(SPQError, match="needs class labels"):
        cap_per_class(ImageSet(images, None, None, None), 3, 0)
    multi_hot = torch.zeros(40, 5, dtype=torch.uint8)
    with pytest.raises(SPQError, match="one class per image"):
        cap_per_class(ImageSet(images, multi_hot, images, multi_hot), 0, 2)


def test_help_has_no_empty_defaults_and_says_what_eval_only_writes():
    text = " ".join(get_args_parser().format_help().split())
    assert "(default: None)" not in text
    assert "default: the training list (default" not in text
    assert "OUTPUT_DIR/retrieval.json" in text
    assert "--train_per_class N" in text and "0: all, as the authors' code trains" in text
