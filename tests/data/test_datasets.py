"""spq.data.datasets: one dispatch of --dataset for training and spq.index; the code length."""
import math
from pathlib import Path

import pytest
import torch

from args import get_args_parser, parse
from cifar_fixture import write_cifar10
from folder_fixture import write_folder
from spq.files.torchfile import atomic_save
from spq.data.cifar10 import load_cifar10
from spq.data.datasets import KINDS, load_data, open_dataset
from spq.run.encode import describe
from spq.data.images import CHUNK
from spq.data.folder import load_folder
from spq.index import get_args_parser as index_parser, main as index_main
from spq.store.index import load_index
from spq.data.lists import load_lists
from spq.method.quantization import code_bits, encode, word_bits
from spq.method.step import make_scheduler
from spq.run.fit import TrainingState
from spq.options.values import network_of
from list_fixture import CLASSES as LIST_CLASSES, write_lists


def options(*argv):
    return parse(["--device", "cpu", "--num_workers", "0", *map(str, argv)])[0]


def loaded(*argv):
    """The images `load_data` gives for these options."""
    o = options(*argv)
    return load_data(o.data, o.runtime.num_workers, o.output.output_dir)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("sets")
    lists_dir, train_list, query_list = write_lists(root / "lists", train=10, query=4)
    return {"cifar10": write_cifar10(root / "cifar", per_batch=6, test=5),
            "folder": write_folder(root / "folder", train=4, test=2),
            "list": (lists_dir, train_list, query_list)}


def list_args(sets, *extra):
    lists_dir, train_list, query_list = sets["list"]
    return ["--dataset", "list", "--data_dir", lists_dir, "--train_list", train_list,
            "--query_list", query_list, "--num_cls", str(LIST_CLASSES), *extra]


def assert_same_images(a, b):
    for name in ("train_images", "train_labels", "query_images", "query_labels", "gallery_images",
                 "gallery_labels"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        assert x is None or torch.equal(x, y), name


def test_every_kind_loads_as_its_own_loader_does(sets, capsys):
    cifar = loaded("--data_dir", sets["cifar10"])
    assert_same_images(cifar, load_cifar10(sets["cifar10"]))
    folder = loaded("--dataset", "folder", "--data_dir", sets["folder"])
    assert_same_images(folder, load_folder(sets["folder"], 32))
    assert "skipped 1 file" in capsys.readouterr().err      # the fixture's broken JPEG, once each
    lists_dir, train_list, query_list = sets["list"]
    listed = loaded(*list_args(sets))
    assert_same_images(listed, load_lists(lists_dir, train_list, query_list, None, LIST_CLASSES, 32))
    assert listed.train_labels.shape == (10, LIST_CLASSES) and listed.gallery_images is None


def test_splits_before_decoding(sets):
    folder = open_dataset(options("--dataset", "folder", "--data_dir", sets["folder"]).data)
    assert set(folder) == {"train", "query"}
    assert folder["train"].classes == ["class_0", "class_1", "class_2"]
    assert len(folder["train"]) == len(folder["train"].files) == 13          # 12 pictures + broken.jpg
    assert folder["train"].labels.tolist() == [int(f.relative_to(sets["folder"] + "/train").parts[0][-1])
                                               for f in folder["train"].files]
    listed = open_dataset(options(*list_args(sets)).data)
    assert set(listed) == {"train", "query"} and listed["query"].where[0].endswith("query.txt, line 1")
    cifar = open_dataset(options("--data_dir", sets["cifar10"]).data)
    assert cifar["train"].files is None and len(cifar["train"]) == 30 and len(cifar["query"]) == 5


def test_index_build_offers_every_kind_with_training_defaults():
    build = index_parser().build_parser
    assert next(a for a in build._actions if a.dest == "dataset").choices == list(KINDS)
    text = build.format_help()
    assert all(kind in text for kind in KINDS)
    train = get_args_parser()
    for action in build._actions:
        if action.dest in ("dataset", "data_dir", "num_cls", "train_list", "allow_outside_data_dir"):
            assert action.default == train.get_default(action.dest), action.dest


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint of an untrained model (seeded), written as training writes them."""
    args = options("--output_dir", tmp_path_factory.mktemp("ckpt"))
    torch.manual_seed(0)
    model = network_of(args.method)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.optim.lr)
    state = TrainingState(optimizer, make_scheduler(optimizer, args.optim.lr_schedule, 1, args.optim.epochs),
                          torch.amp.GradScaler("cpu", enabled=False), torch.Generator().manual_seed(0),
                          rows=[{"epoch": 1, "loss": 9.0, "lr": args.optim.lr, "seconds": 0.0}])
    path = f"{args.output.output_dir}/last.pth"
    split = {"protocol": "lists", "seed": None, "hash": "0" * 64, "train_ids": None}
    atomic_save(state.checkpoint(args.flat(), model, 1, split, {"hardware": "test", "torch": "-", "commit": "-"}), path)
    return path, model.eval()


@pytest.mark.parametrize("split", ["gallery", "query"])
def test_index_of_a_list_dataset(sets, checkpoint, tmp_path, split):
    path, model = checkpoint
    out = tmp_path / "list.index"
    assert index_main(["build", "--checkpoint", path, *list_args(sets), "--split", split, "--out", str(out),
                       "--device", "cpu", "--num_workers", "0"]) == 0
    index = load_index(out)
    lists_dir, train_list, query_list = sets["list"]
    data = load_lists(lists_dir, train_list, query_list, None, LIST_CLASSES, 32)
    images, labels = (data.train_images, data.train_labels) if split == "gallery" else \
        (data.query_images, data.query_labels)
    assert torch.equal(index.codes, encode(describe(model, images, 32), model.codebooks))
    assert torch.equal(index.labels, labels) and index.multi_label
    first = open(train_list if split == "gallery" else query_list).readline().rsplit(None, LIST_CLASSES)
    assert index.paths[0] == first[0] == "img/" + ("train" if split == "gallery" else "query") + "/sub dir/0.jpg"
    for i in range(len(index)):                        # labels named by their column, joined by +
        assert index.class_of(i) == "+".join(str(c) for c in range(LIST_CLASSES) if labels[i, c])


@pytest.mark.parametrize("line", [2, CHUNK + 3])      # in the first decoded chunk, and a later one
def test_index_of_a_list_refuses_an_unreadable_file(sets, checkpoint, tmp_path, capsys, line):
    lists_dir, train_list, _ = sets["list"]
    (tmp_path / "broken.jpg").write_bytes(b"not a picture")
    good = open(train_list).read().splitlines()[0]
    rows = [good] * (line - 1) + [f"{tmp_path / 'broken.jpg'}" + " 0" * LIST_CLASSES, good]
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(rows) + "\n")
    code = index_main(["build", "--checkpoint", checkpoint[0], "--dataset", "list", "--data_dir",
                       lists_dir, "--train_list", str(bad), "--num_cls", str(LIST_CLASSES),
                       "--allow_outside_data_dir", "--out", str(tmp_path / "x.index"),
                       "--device", "cpu", "--num_workers", "0"])
    err = capsys.readouterr().err
    assert code == 1 and f"{bad}, line {line}: " in err and "broken.jpg cannot be read" in err
    assert not (tmp_path / "x.index").exists()


def test_index_stores_list_paths_outside_data_dir_as_absolute(sets, checkpoint, tmp_path):
    lists_dir, train_list, _ = sets["list"]
    first = open(train_list).readline()
    outside = tmp_path / "elsewhere" / "picture.png"
    outside.parent.mkdir()
    outside.write_bytes((Path(lists_dir) / first.rsplit(None, LIST_CLASSES)[0]).read_bytes())
    listed = tmp_path / "list.txt"
    listed.write_text(first + f"{outside} " + " ".join(["1"] * LIST_CLASSES) + "\n")
    out = tmp_path / "x.index"
    assert index_main(["build", "--checkpoint", checkpoint[0], "--dataset", "list", "--data_dir",
                       lists_dir, "--train_list", str(listed), "--num_cls", str(LIST_CLASSES),
                       "--allow_outside_data_dir", "--out", str(out), "--device", "cpu",
                       "--num_workers", "0"]) == 0
    index = load_index(out)
    assert index.paths == [first.rsplit(None, LIST_CLASSES)[0], outside.as_posix()]
    assert index.codes[0].tolist() == index.codes[1].tolist()         # the same picture


def test_index_split_query_of_a_list_needs_the_query_list(sets, checkpoint, tmp_path, capsys):
    lists_dir, train_list, _ = sets["list"]
    code = index_main(["build", "--checkpoint", checkpoint[0], "--dataset", "list", "--data_dir",
                       lists_dir, "--train_list", train_list, "--num_cls", str(LIST_CLASSES),
                       "--split", "query", "--out", str(tmp_path / "x.index"), "--device", "cpu"])
    assert code == 1 and "--split query: no --query_list was given" in capsys.readouterr().err


def test_index_build_refuses_a_non_positive_num_cls(checkpoint, capsys):
    with pytest.raises(SystemExit) as e:
        index_main(["build", "--checkpoint", checkpoint[0], "--num_cls", "0", "--out", "x"])
    assert e.value.code == 2 and "--num_cls must be positive, got 0" in capsys.readouterr().err


def test_index_default_dataset_is_cifar10_and_its_error_says_so(sets, checkpoint, tmp_path, capsys):
    code = index_main(["build", "--checkpoint", checkpoint[0], "--data_dir", sets["folder"],
                       "--out", str(tmp_path / "x.index"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and "holds train/ but no cifar-10-batches-py/" in err
    assert "--dataset folder (--dataset cifar10 is the default)" in err


def test_list_options_of_index_build_are_checked_as_training_checks_them(checkpoint, capsys):
    with pytest.raises(SystemExit) as e:
        index_main(["build", "--checkpoint", checkpoint[0], "--dataset", "list", "--out", "x"])
    assert e.value.code == 2 and "--dataset list needs --train_list" in capsys.readouterr().err


@pytest.mark.parametrize("books", [1, 4, 8])
@pytest.mark.parametrize("words", [2, 16, 256, 1024])
def test_code_length(books, words):
    assert word_bits(words) == round(math.log2(words))
    assert code_bits(books, words) == books * round(math.log2(words))


@pytest.mark.parametrize("words", [0, 1, 3, 12, 100])
def test_code_length_needs_a_power_of_two(words):
    with pytest.raises(ValueError, match="power of two"):
        word_bits(words)
