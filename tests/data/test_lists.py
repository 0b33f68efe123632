"""--dataset list: multi-label list files, their errors, and multi-hot evaluation."""
import json
from pathlib import Path

import pytest
import torch

from conftest import assert_clean_failure, read_log
from cli import spq
from folder_fixture import write_folder
from spq.errors import SPQError
from spq.run.encode import encode_sets
from spq.data.folder import load_folder
from spq.data.images import find_images
from spq.data.lists import load_lists, read_list
from spq.method.network import SPQ
from spq.retrieval.metrics import mean_average_precision
from list_fixture import CLASSES, label_rows, write_lists
from reference import map_loops

@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    return write_lists(tmp_path_factory.mktemp("lists"))


def test_read_list_paths_labels_and_lines(lists):
    root, train, _ = lists
    entries = read_list(train, root, CLASSES)
    assert len(entries.paths) == 36 and entries.lines == list(range(1, 37))
    assert entries.paths[0] == Path(root) / "img/train/sub dir/0.jpg"     # a space in the path
    assert torch.equal(entries.labels, torch.from_numpy(label_rows(36, 0)))
    assert sorted(entries.labels.sum(1).unique().tolist()) == [0, 1, 2, 3]


def test_load_lists_multi_hot_and_unlabelled_queries(lists):
    root, train, query = lists
    data = load_lists(root, train, query, None, CLASSES, 32)
    assert data.train_images.shape == (36, 3, 32, 32) and data.query_images.shape == (12, 3, 32, 32)
    assert data.train_labels.shape == (36, CLASSES) and data.gallery_images is None
    assert data.unlabelled_queries() == 3                     # rows 0, 4 and 8 have no label
    assert "3 queries carry no label" in data.summary("list dataset")
    assert data.why_not_evaluable() is None


def rewrite(path, line, text):
    lines = Path(path).read_text().splitlines()
    lines[line - 1] = text
    Path(path).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("line,text,message", [
    (3, "img/train/a/2.jpg 0 1 1", "line 3: expected an image path then 4 label values"),
    (5, "img/train/a/4.jpg 0 1 1 0 1", "line 5: expected an image path then 4 label values"),
    (2, "img/train/a/1.png 0 2 1 0", "line 2: expected an image path then 4 label values 0 or 1"),
    (4, "img/train/a/3.png 0 x 1 0", "line 4: expected"),
    (7, "img/train/nowhere.jpg 0 1 0 0", "line 7: "),
    (6, "train.txt 1 0 0 0", "line 6: "),                  # a file that is not an image
])
def test_malformed_inputs_name_the_file_and_line(tmp_path, line, text, message):
    root, train, query = write_lists(tmp_path, train=8, query=2)
    rewrite(train, line, text)
    with pytest.raises(SPQError, match=message) as e:
        load_lists(root, train, query, None, CLASSES, 32)
    assert str(train) in str(e.value)


def test_missing_file_and_label_count_messages(tmp_path):
    root, train, _ = write_lists(tmp_path, train=4, query=1)
    rewrite(train, 2, "img/train/a/gone.jpg 1 0 0 0")
    with pytest.raises(SPQError, match=r"line 2: .*gone.jpg does not exist"):
        read_list(train, root, CLASSES)
    with pytest.raises(SPQError, match="if every line has that many, set --num_cls to it"):
        read_list(train, root, 5)
    with pytest.raises(SPQError, match="the list file .*none.txt does not exist"):
        read_list(tmp_path / "none.txt", root, CLASSES)
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(SPQError, match="lists no images"):
        read_list(tmp_path / "empty.txt", root, CLASSES)


LIST = ["--dataset", "list", "--num_cls", CLASSES, "--device", "cpu", "--batch_size", "16",
        "--seed", "3", "--epochs", "1", "--eval_epoch", "1", "--num_workers", "0", "--input_size", "16"]


@pytest.fixture(scope="module")
def trained(lists, tmp_path_factory):
    root, train, query = lists
    out = tmp_path_factory.mktemp("list_run")
    result = spq("--data_dir", root, "--train_list", train, "--query_list", query,
                 "--output_dir", out, *LIST)
    assert result.returncode == 0, result.stderr
    return out, result


def test_cli_trains_one_epoch_and_evaluates(trained):
    out, result = trained
    assert "list dataset: 36 training, 12 query images, in memory; 4 labels per image" in result.stdout
    assert "3 queries carry no label" in result.stdout
    (record,) = read_log(out)
    assert 0 < record["mAP"] <= 1 and "Traceback" not in result.stderr


def test_map_equals_a_plain_implementation_on_the_same_codes(lists, trained):
    root, train, query = lists
    out, _ = trained
    model = SPQ(8, 16, 16, 5.0)
    model.load_state_dict(torch.load(out / "best.pth", weights_only=True)["model"])
    data = load_lists(root, train, query, None, CLASSES, 16)                 # the run's --input_size
    codes, queries = encode_sets(model, data.train_images, data.query_images, 16)
    plain = map_loops(queries, data.query_labels, codes, data.train_labels, model.codebooks.detach(), 1000)
    assert read_log(out)[0]["mAP"] == pytest.approx(plain, abs=1e-6)


def test_cli_eval_only_reports_unlabelled_queries(lists, trained, tmp_path):
    root, train, query = lists
    out, _ = trained
    result = spq("--data_dir", root, "--train_list", train, "--query_list", query, "--dataset", "list",
                 "--resume", out / "best.pth", "--eval_only", "--device", "cpu", "--output_dir", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "3 queries carry no label at all" in result.stdout
    written = json.loads((tmp_path / "retrieval.json").read_text())
    assert written["queries_without_labels"] == 3 and written["queries_without_relevant"] >= 3


def test_cli_malformed_line_is_a_clean_error(tmp_path):
    root, train, query = write_lists(tmp_path / "d", train=4, query=2)
    rewrite(train, 3, "img/train/a/2.jpg 1 1")
    result = spq("--data_dir", root, "--train_list", train, "--output_dir", tmp_path / "o", *LIST)
    assert_clean_failure(result, 1, f"{train}, line 3: expected an image path then 4 label values")
    assert not (tmp_path / "o").exists()


def test_cli_list_options_need_each_other(tmp_path):
    assert_clean_failure(spq("--dataset", "list"), 2, "--dataset list needs --train_list")
    assert_clean_failure(spq("--train_list", "x.txt"), 2, "--train_list need --dataset list")


def test_a_one_hot_list_of_a_folder_gives_the_folder_dataset(tmp_path):
    root = Path(write_folder(tmp_path, train=5, test=2, corrupt=False))
    for split in ["train", "test"]:
        lines = []
        for path in find_images(root / split):          # the folder loader's order
            label = int(path.relative_to(root / split).parts[0].removeprefix("class_"))
            lines.append(f"{path.relative_to(root)} " + " ".join("1" if c == label else "0" for c in range(3)))
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    folder = load_folder(root, 32)
    listed = load_lists(root, root / "train.txt", root / "test.txt", None, 3, 32)
    assert torch.equal(folder.train_images, listed.train_images)
    assert torch.equal(folder.query_images, listed.query_images)
    assert torch.equal(listed.train_labels.argmax(1), folder.train_labels)
    assert torch.equal(listed.query_labels.argmax(1), folder.query_labels)
    torch.manual_seed(0)
    books, queries = torch.randn(2, 4, 4), torch.randn(6, 8)
    codes = torch.randint(0, 4, (15, 2), dtype=torch.uint8)
    assert mean_average_precision(queries, folder.query_labels, codes, folder.train_labels, books, 10) == \
        mean_average_precision(queries, listed.query_labels, codes, listed.train_labels, books, 10)
