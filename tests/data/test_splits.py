"""python -m spq.split (seeded query/train/database splits, split.json, read_split) and
main_SPQ.py --split_file: the split recorded in checkpoints and retrieval.json, and
evaluations whose queries are training images of the model refused.

The CIFAR-10 protocols need the pooled 60,000 images: their draws are checked on a
synthetic label matrix (`spq.data.splits.draw`), and the command line and main_SPQ on a pooled
CIFAR-10 of 60,000 flat images put in place of the batch reader (`fake_cifar`), with runs
that never encode its database. List splits run end to end on a 40-image list.
"""
import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import spq.data.cifar10
import spq.data.splits
import spq.split
from conftest import assert_clean_failure
from cli import spq as spq_main
from cifar_fixture import write_cifar10
from spq.data.datasets import load_data
from spq.errors import SPQError
from spq.data.imageset import ImageSet
from spq.options.values import parse
from spq.data.splits import VERSION, content_hash, draw, pick, read_split, split_hash

NUM_CLS = 4
TINY = ["--device", "cpu", "--batch_size", 8, "--input_size", 16, "--epochs", 1, "--eval_epoch", 1,
        "--seed", 1]


def split_cli(*argv):
    """python -m spq.split ARGV in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = spq.split.main([str(a) for a in argv])
        except SystemExit as e:
            code = e.code
    return code, out.getvalue(), err.getvalue()


def one_line_error(stderr):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def load(path):
    return json.loads(Path(path).read_text())


def ckpt_split(out):
    return torch.load(Path(out) / "last.pth", weights_only=False, map_location="cpu")["split"]


# ---------------------------------------------------------------- the draws (synthetic labels)

def balanced_labels(n=60000, classes=10, seed=0):
    """(class of each item, one-hot (n, classes) bool): n / classes items of each class, shuffled."""
    cls = np.random.default_rng(seed).permutation(np.arange(n) % classes)
    return cls, np.eye(classes, dtype=bool)[cls]


@pytest.fixture(scope="module")
def cifar_labels():
    return balanced_labels()


def check_partition(drawn, n):
    for name in ("query", "train", "database"):
        ids = getattr(drawn, name)
        assert ids.dtype.kind == "i" and np.all(np.diff(ids) > 0), f"{name}: not ascending and unique"
    assert not np.intersect1d(drawn.query, drawn.database).size
    assert np.array_equal(np.union1d(drawn.query, drawn.database), np.arange(n))
    assert np.isin(drawn.train, drawn.database).all()


def test_cifar10_1000_draw(cifar_labels):
    cls, labels = cifar_labels
    drawn = draw(labels, 100, True, 500, True, seed=0)
    assert (len(drawn.query), len(drawn.train), len(drawn.database)) == (1000, 5000, 59000)
    check_partition(drawn, 60000)
    assert np.bincount(cls[drawn.query], minlength=10).tolist() == [100] * 10
    assert np.bincount(cls[drawn.train], minlength=10).tolist() == [500] * 10
    assert np.bincount(cls[drawn.database], minlength=10).tolist() == [5900] * 10
    again = draw(labels, 100, True, 500, True, seed=0)
    assert all(np.array_equal(getattr(drawn, s), getattr(again, s)) for s in ("query", "train", "database"))
    other = draw(labels, 100, True, 500, True, seed=1)
    assert not np.array_equal(drawn.query, other.query)
    assert not np.array_equal(drawn.train, other.train)


def test_cifar10_10000_draw(cifar_labels):
    cls, labels = cifar_labels
    drawn = draw(labels, 1000, True, 0, False, seed=7)
    assert (len(drawn.query), len(drawn.train), len(drawn.database)) == (10000, 50000, 50000)
    check_partition(drawn, 60000)
    assert np.array_equal(drawn.train, drawn.database)          # train 0: the whole database trains
    assert np.bincount(cls[drawn.query], minlength=10).tolist() == [1000] * 10
    assert np.bincount(cls[drawn.database], minlength=10).tolist() == [5000] * 10
    assert not np.array_equal(drawn.query, draw(labels, 1000, True, 0, False, seed=8).query)


def test_draw_of_totals_is_seeded():
    _, labels = balanced_labels(500, 5, seed=3)
    drawn = draw(labels, 40, False, 100, False, seed=2)
    assert (len(drawn.query), len(drawn.train), len(drawn.database)) == (40, 100, 460)
    check_partition(drawn, 500)
    assert np.array_equal(drawn.train, draw(labels, 40, False, 100, False, seed=2).train)
    assert not np.array_equal(drawn.query, draw(labels, 40, False, 100, False, seed=3).query)


# items over 3 classes (multi-hot); item 5 carries no label
MULTI = np.array([[1, 1, 0],
                  [1, 0, 0],
                  [0, 1, 1],
                  [1, 0, 1],
                  [0, 0, 1],
                  [0, 0, 0]], dtype=bool)


@pytest.mark.parametrize("order, n, expected", [
    # 0 counts for class 0 (its first); 1 finds class 0 full; 2 counts for class 1; 3 finds
    # class 0 full and counts for class 2: every quota is full, the walk stops
    ([0, 1, 2, 3, 4, 5], 1, [0, 2, 3]),
    # 3 for class 0, 4 for class 2, 0 (class 0 full) for class 1
    ([3, 4, 0, 2, 1, 5], 1, [3, 4, 0]),
    # the unlabelled item is never taken; 2 counts for class 1 (its first with room)
    ([5, 2, 1, 4, 0, 3], 1, [2, 1, 4]),
    ([0, 1, 2, 3, 4, 5], 0, []),
])
def test_per_class_pick_counts_an_item_for_its_first_class_with_room(order, n, expected):
    assert pick(MULTI, np.array(order), n, True, "queries").tolist() == expected


def test_per_class_pick_too_few_items():
    # n 2: 0 and 1 fill class 0, 2 counts for class 1, 3 and 4 fill class 2; class 1 has 1
    with pytest.raises(SPQError, match=r"^2 queries per class were asked, but class 1 has only 1 images left; "
                                       r"ask for fewer \(--query_per_class 1 at most\)"):
        pick(MULTI, np.arange(6), 2, True, "queries")
    with pytest.raises(SPQError, match="7 training images were asked, but only 6 items are there"):
        pick(MULTI, np.arange(6), 7, False, "training images")
    with pytest.raises(SPQError, match="class 'sky' has only 1 images left"):        # named, when names are known
        pick(MULTI, np.arange(6), 2, True, "queries", ["sea", "sky", "tree"])


def test_a_preset_short_of_images_names_the_concept_and_the_way_out():
    """A preset's sizes are fixed: its error names the concept that falls short and points to
    a custom split, instead of asking for fewer."""
    with pytest.raises(SPQError) as e:
        draw(MULTI, 2, True, 0, False, 0, ["sea", "sky", "tree"], "nuswide21")
    message = str(e.value)
    assert message.startswith("the nuswide21 protocol draws 2 queries per class, but class 'sky' has only 1 "
                              "images left")
    assert "python -m spq.split custom" in message and "--query_per_class 1" in message
    assert "ask for fewer" not in message


# ---------------------------------------------------------------- read_split

def cifar_split_dict(query, train, database, source="abc"):
    """A split.json's contents written by hand, with both of its hashes right."""
    ids = {"query": query, "train": train, "database": database}
    split = {"format": "spq-split", "version": VERSION, "protocol": "custom", "seed": 0, "dataset": "cifar10",
             "source_sha256": source, "sizes": {s: len(v) for s, v in ids.items()},
             "per_class": {s: {"airplane": len(v)} for s, v in ids.items()}, "files": {},
             "hash": split_hash(ids, source), **ids}
    return {**split, "content_sha256": content_hash(split)}


def test_read_split_accepts_a_consistent_split(tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps(cifar_split_dict([5, 7], [1, 2], [0, 1, 2, 3])))
    assert read_split(path)["query"] == [5, 7]


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(format="other"), "is not a split of python -m spq.split"),
    (lambda s: s.update(version=1), "was written by another version of python -m spq.split"),
    (lambda s: s.update(seed=-1), "its seed -1 is not a non-negative integer"),
    (lambda s: s.update(protocol="cifar10-official"), "it is the official split, which has no seed"),
    (lambda s: s.update(protocol="flickr25k"), "its protocol flickr25k draws from list, but its dataset is cifar10"),
    (lambda s: s["sizes"].update(query=3), "its recorded sizes are not those of its sets"),
    (lambda s: s.update(per_class={}), "it lacks its counts per class"),
    (lambda s: s["query"].append(5), "its query set names 5 more than once"),
    (lambda s: s["query"].__setitem__(0, "5"), "its query set is not a list of item numbers"),
    (lambda s: s["train"].__setitem__(0, True), "its train set is not a list of item numbers"),
    (lambda s: s["database"].append(60000), "its database set is not a list of item numbers"),
    (lambda s: s["database"].append(-1), "its database set is not a list of item numbers"),
    (lambda s: s.update(query=None), "its query set is not a list of item numbers"),
    (lambda s: s.update(dataset="list"), "its query set is not a list of paths"),
    (lambda s: s["query"].__setitem__(0, 4), "was changed after python -m spq.split wrote it"),
    (lambda s: s.update(source_sha256="abd"), "was changed after python -m spq.split wrote it"),
])
def test_read_split_refusals(tmp_path, change, message):
    split = cifar_split_dict([5, 7], [1, 2], [0, 1, 2, 3])
    change(split)
    path = tmp_path / "split.json"
    path.write_text(json.dumps(split))
    with pytest.raises(SPQError, match="^" + str(path).replace(".", r"\.") + ".*" + message):
        read_split(path)


def test_read_split_refuses_files_beside_a_cifar_split_even_resealed(tmp_path):
    split = cifar_split_dict([5, 7], [1, 2], [0, 1, 2, 3])
    split["files"] = {"query.txt": {"bytes": 1, "sha256": "0" * 64}}
    split["content_sha256"] = content_hash(split)
    path = tmp_path / "split.json"
    path.write_text(json.dumps(split))
    with pytest.raises(SPQError, match="a CIFAR-10 split lists no files"):
        read_split(path)


@pytest.mark.parametrize("sets", [([1, 5], [2], [0, 1, 2]),      # query 1 in the database
                                  ([5], [4], [0, 1, 2])])         # training image 4 outside it
def test_read_split_refuses_leaking_sets_even_with_their_hash(tmp_path, sets):
    path = tmp_path / "split.json"
    path.write_text(json.dumps(cifar_split_dict(*sets)))
    with pytest.raises(SPQError, match="its queries meet its database, or its training images lie outside it"):
        read_split(path)


def test_read_split_of_a_file_that_is_not_json(tmp_path):
    path = tmp_path / "split.json"
    path.write_bytes(b"\xff\xfe not json")
    with pytest.raises(SPQError, match="the split .* is not UTF-8 text; write one with python -m spq.split"):
        read_split(path)
    with pytest.raises(SPQError, match="the split .*missing.json does not exist"):
        read_split(tmp_path / "missing.json")


# ---------------------------------------------------------------- a list dataset

def write_pool(root, n=40):
    """n pictures under root/img/ (some in a folder whose name holds a space), listed with
    NUM_CLS label columns in root/all.txt: item i carries class i % 4, and every third item
    also class (i + 1) % 4. Returns root/all.txt."""
    root = Path(root)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(n):
        row = np.zeros(NUM_CLS, int)
        row[i % NUM_CLS] = 1
        if i % 3 == 0:
            row[(i + 1) % NUM_CLS] = 1
        rel = f"img/{'sub dir' if i % 5 == 0 else 'a'}/{i}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        colour = 60 * np.argmax(row) + 20
        Image.fromarray(np.clip(rng.normal(colour, 30, (32, 32, 3)), 0, 255).astype(np.uint8)).save(root / rel)
        lines.append(rel + " " + " ".join(map(str, row)))
    (root / "all.txt").write_text("\n".join(lines) + "\n\n")
    return root / "all.txt"


def path_of(line):
    return line.rsplit(None, NUM_CLS)[0]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    return root, write_pool(root)


def list_args(pool):
    root, all_txt = pool
    return ["--list", all_txt, "--num_cls", NUM_CLS, "--data_dir", root]


@pytest.fixture(scope="module")
def list_split(pool, tmp_path_factory):
    out = tmp_path_factory.mktemp("list_split") / "s"
    code, stdout, stderr = split_cli("custom", out, *list_args(pool), "--query_per_class", 2,
                                     "--train_per_class", 3, "--seed", 3)
    assert code == 0, stderr
    assert "custom (seed 3): 8 queries, 12 training images, 32 in the database" in stdout
    return out


def test_list_split_sets_and_list_files(pool, list_split):
    root, all_txt = pool
    lines = [line for line in all_txt.read_text().splitlines() if line.strip()]
    line_of = {path_of(line): line for line in lines}
    split = read_split(list_split / "split.json")
    assert (split["protocol"], split["seed"], split["dataset"]) == ("custom", 3, "list")
    assert split["sizes"] == {"query": 8, "train": 12, "database": 32}
    query, train, database = (set(split[s]) for s in ("query", "train", "database"))
    assert len(query) == 8 and len(train) == 12 and len(database) == 32
    assert not query & database and query | database == set(line_of) and train <= database
    assert "img/sub dir/0.png" in query | database                      # a path with a space
    for s in ("query", "train", "database"):
        # the list file holds exactly the chosen lines, in the order of the pool
        assert (list_split / f"{s}.txt").read_text().splitlines() == [line_of[p] for p in split[s]]
        assert split[s] == [path_of(line) for line in lines if path_of(line) in set(split[s])]
        rows = np.array([[int(v) for v in line_of[p].split()[-NUM_CLS:]] for p in split[s]])
        assert split["per_class"][s] == {str(c): int(rows[:, c].sum()) for c in range(NUM_CLS)}
    # every class counted twice among the queries and three times among the training
    # images: each label column is carried at least that often
    assert all(v >= 2 for v in split["per_class"]["query"].values())
    assert all(v >= 3 for v in split["per_class"]["train"].values())


def test_same_seed_same_bytes_other_seed_other_split(pool, list_split, tmp_path):
    assert split_cli("custom", tmp_path / "a", *list_args(pool), "--query_per_class", 2,
                     "--train_per_class", 3, "--seed", 3)[0] == 0
    assert split_cli("custom", tmp_path / "b", *list_args(pool), "--query_per_class", 2,
                     "--train_per_class", 3, "--seed", 4)[0] == 0
    for name in ("split.json", "query.txt", "train.txt", "database.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (list_split / name).read_bytes()
    a, b = load(tmp_path / "a" / "split.json"), load(tmp_path / "b" / "split.json")
    assert a["hash"] != b["hash"] and a["query"] != b["query"]
    assert (tmp_path / "a" / "split.json").read_bytes() != (tmp_path / "b" / "split.json").read_bytes()


def test_out_holding_a_split_is_refused_without_force(pool, tmp_path):
    out = tmp_path / "s"
    assert split_cli("custom", out, *list_args(pool), "--query", 5, "--seed", 0)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, _, stderr = split_cli("custom", out, *list_args(pool), "--query", 5, "--seed", 1)
    assert code == 1
    assert "already holds split.json, query.txt, train.txt, database.txt" in one_line_error(stderr)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    code, _, stderr = split_cli("custom", out, *list_args(pool), "--query", 5, "--seed", 1, "--force")
    assert code == 0, stderr
    after = load(out / "split.json")
    assert after["seed"] == 1 and after["hash"] != json.loads(before["split.json"])["hash"]
    assert (out / "query.txt").read_text().count("\n") == 5


@pytest.mark.parametrize("argv, message", [
    (["--query_per_class", 11], "11 queries per class were asked, but class "),
    (["--query_per_class", 2, "--train_per_class", 9], "9 training images per class were asked, but class "),
    (["--query", 41], "41 queries were asked, but only 40 items are there to draw from; ask for fewer "
                      "(--query 40 at most)"),
    (["--query", 30, "--train", 11], "11 training images were asked, but only 10 items"),
])
def test_more_than_there_is_is_a_one_line_error(pool, tmp_path, argv, message):
    code, stdout, stderr = split_cli("custom", tmp_path / "s", *list_args(pool), *argv)
    assert code == 1 and message in one_line_error(stderr)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("protocol, argv, code, message", [
    ("cifar10-1000", "list", 1, "cifar10-1000 draws from CIFAR-10: drop --list"),
    ("flickr25k", [], 1, "flickr25k draws from a list file: give --list FILE"),
    ("custom", "list", 1, "custom needs one of --query N or --query_per_class N"),
    ("custom", "both", 1, "custom needs one of --query N or --query_per_class N"),
    ("cifar10-1000", ["--query", 5], 2, "go with the custom protocol"),
    ("custom", ["--query", -1], 2, "--query must be zero or positive"),
    ("custom", ["--list", "x.txt"], 2, "--list needs --num_cls"),
])
def test_cli_refusals(pool, tmp_path, protocol, argv, code, message):
    if argv == "list":
        argv = list_args(pool)
    elif argv == "both":
        argv = [*list_args(pool), "--query", 1, "--query_per_class", 1]
    got, _, stderr = split_cli(protocol, tmp_path / "s", *argv)
    assert got == code and message in stderr, stderr
    assert "Traceback" not in stderr and not (tmp_path / "s").exists()


# -------------------------------------------------- --split_file of a list: train, record, evaluate

@pytest.fixture(scope="module")
def list_model(pool, list_split, tmp_path_factory):
    out = tmp_path_factory.mktemp("list_model")
    result = spq_main("--dataset", "list", "--data_dir", pool[0], "--num_cls", NUM_CLS,
                      "--split_file", list_split / "split.json", "--output_dir", out, *TINY)
    assert result.returncode == 0, result.stderr
    assert "12 training, 8 query, 32 gallery images" in result.stdout
    return out, result


def test_checkpoint_records_the_list_split(list_split, list_model):
    out, result = list_model
    split = load(list_split / "split.json")
    record = ckpt_split(out)
    assert {k: record[k] for k in ("protocol", "seed", "hash")} == \
        {"protocol": "custom", "seed": 3, "hash": split["hash"]}
    assert record["train_ids"].split("\n") == split["train"]
    assert f"split: custom (seed 3, hash {split['hash'][:16]})" in result.stdout


def test_eval_only_records_the_split_in_retrieval_json(list_split, list_model, tmp_path):
    out, _ = list_model
    result = spq_main("--resume", out / "last.pth", "--eval_only", "--output_dir", tmp_path)
    assert result.returncode == 0, result.stderr
    retrieval = load(tmp_path / "retrieval.json")
    assert retrieval["split"] == {"protocol": "custom", "seed": 3, "hash": load(list_split / "split.json")["hash"]}
    assert (retrieval["queries"], retrieval["gallery"]) == (8, 32)


def test_eval_on_a_split_whose_queries_it_trained_on_is_refused(pool, list_split, list_model, tmp_path):
    out, _ = list_model
    # 30 queries of the 40 images: at least 2 of the model's 12 training images among them
    assert split_cli("custom", tmp_path / "leak", *list_args(pool), "--query", 30, "--seed", 0)[0] == 0
    leaked = set(load(tmp_path / "leak" / "split.json")["query"]) & set(load(list_split / "split.json")["train"])
    assert len(leaked) >= 2
    result = spq_main("--resume", out / "last.pth", "--eval_only", "--split_file", tmp_path / "leak" / "split.json",
                      "--output_dir", tmp_path / "eval")
    assert_clean_failure(result, 1, f"{len(leaked)} of the 30 queries (e.g. ",
                         f"are training images of the model of {out / 'last.pth'} (split custom)")
    one_line_error(result.stderr)
    assert not (tmp_path / "eval" / "retrieval.json").exists()


def test_eval_on_a_split_of_unseen_queries_is_accepted(pool, list_split, list_model, tmp_path):
    out, _ = list_model
    root = pool[0]
    trained = set((list_split / "train.txt").read_text().splitlines())
    unseen = [line for line in (list_split / "database.txt").read_text().splitlines() if line not in trained]
    assert len(unseen) == 20
    (root / "unseen.txt").write_text("\n".join(unseen) + "\n")
    code, _, stderr = split_cli("custom", tmp_path / "unseen", "--list", root / "unseen.txt", "--num_cls", NUM_CLS,
                                "--data_dir", root, "--query_per_class", 1, "--train", 0, "--seed", 0)
    assert code == 0, stderr
    other = load(tmp_path / "unseen" / "split.json")
    assert not set(other["query"]) & set(load(list_split / "split.json")["train"])
    result = spq_main("--resume", out / "last.pth", "--eval_only", "--split_file", tmp_path / "unseen" / "split.json",
                      "--output_dir", tmp_path / "eval")
    assert result.returncode == 0, result.stderr
    retrieval = load(tmp_path / "eval" / "retrieval.json")
    assert retrieval["split"] == {"protocol": "custom", "seed": 0, "hash": other["hash"]}
    assert (retrieval["queries"], retrieval["gallery"]) == (4, 16)


def test_a_split_edited_by_hand_is_refused(pool, list_split, tmp_path):
    shutil.copytree(list_split, tmp_path / "s")
    split = load(tmp_path / "s" / "split.json")
    outsider = next(p for p in split["database"] if p not in split["train"])
    split["train"][0] = outsider                                # one id changed
    (tmp_path / "s" / "split.json").write_text(json.dumps(split))
    result = spq_main("--dataset", "list", "--data_dir", pool[0], "--num_cls", NUM_CLS,
                      "--split_file", tmp_path / "s" / "split.json", "--output_dir", tmp_path / "run", *TINY)
    assert_clean_failure(result, 1, "was changed after python -m spq.split wrote it")
    one_line_error(result.stderr)
    assert not (tmp_path / "run" / "last.pth").exists()


def test_list_split_needs_its_number_of_label_columns(pool, list_split, tmp_path):
    result = spq_main("--dataset", "list", "--data_dir", pool[0], "--num_cls", 5,
                      "--split_file", list_split / "split.json", "--output_dir", tmp_path, *TINY)
    assert_clean_failure(result, 1, "has 4 label columns: pass --num_cls 4")


@pytest.mark.parametrize("extra, message", [
    (["--dataset", "list", "--train_list", "t.txt"], "--split_file replaces --train_list: drop one of them"),
    (["--dataset", "list", "--query_list", "q.txt"], "--split_file replaces --query_list: drop one of them"),
    (["--dataset", "folder"], "--split_file replaces the folders of --dataset folder"),
])
def test_split_file_with_list_files_is_a_parser_error(list_split, tmp_path, extra, message):
    result = spq_main(*extra, "--num_cls", NUM_CLS, "--split_file", list_split / "split.json",
                      "--output_dir", tmp_path, *TINY)
    assert_clean_failure(result, 2, message)


# ---------------------------------------------------------------- CIFAR-10 splits

@pytest.fixture(scope="module")
def small_cifar(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("cifar"), per_batch=10, test=20, seed=0)


def test_cifar_split_drawn_for_list_is_refused(small_cifar, pool, list_split, tmp_path):
    code, _, stderr = split_cli("custom", tmp_path / "c", "--data_dir", small_cifar, "--query_per_class", 1,
                                "--seed", 0)
    assert code == 1 and not (tmp_path / "c" / "split.json").exists()
    assert "a split of CIFAR-10 is drawn from all of it (60000 images)" in one_line_error(stderr)
    (tmp_path / "c").mkdir(exist_ok=True)
    (tmp_path / "c" / "split.json").write_text(json.dumps(cifar_split_dict([5, 7], [1, 2], [0, 1, 2, 3])))
    result = spq_main("--dataset", "list", "--data_dir", pool[0], "--num_cls", NUM_CLS,
                      "--split_file", tmp_path / "c" / "split.json", "--output_dir", tmp_path / "r1", *TINY)
    assert_clean_failure(result, 1, "was drawn from cifar10, not --dataset list")
    one_line_error(result.stderr)
    result = spq_main("--data_dir", small_cifar, "--split_file", list_split / "split.json",
                      "--output_dir", tmp_path / "r2", *TINY)
    assert_clean_failure(result, 1, "was drawn from list, not --dataset cifar10")
    # a CIFAR-shaped set smaller than CIFAR-10: a run refuses a split of the pooled 60,000
    result = spq_main("--data_dir", small_cifar, "--split_file", tmp_path / "c" / "split.json",
                      "--output_dir", tmp_path / "r3", *TINY)
    assert_clean_failure(result, 1, "holds 70 images: a split of the pooled CIFAR-10 needs all 60,000")
    one_line_error(result.stderr)


class PooledCifar:
    """A CIFAR-10 of 60,000 flat images (item i has the grey level i % 251), balanced classes,
    served in place of the batch reader."""

    def __init__(self):
        self.cls, _ = balanced_labels(seed=5)
        self.labels = torch.from_numpy(self.cls)
        self.images = (torch.arange(60000) % 251).to(torch.uint8)[:, None, None, None] \
            .expand(60000, 3, 32, 32).contiguous()

    def __call__(self, data_dir, num_classes=10, download=False):
        return ImageSet(self.images[:50000], self.labels[:50000], self.images[50000:], self.labels[50000:])


@pytest.fixture(scope="module")
def pooled():
    return PooledCifar()


@pytest.fixture
def fake_cifar(pooled, monkeypatch):
    monkeypatch.setattr(spq.data.cifar10, "load_cifar10", pooled)
    return pooled


def test_cifar10_official_and_1000_through_the_command(fake_cifar, small_cifar, tmp_path):
    code, stdout, stderr = split_cli("cifar10-official", tmp_path / "o", "--data_dir", small_cifar, "--seed", 4)
    assert code == 0, stderr
    official = read_split(tmp_path / "o" / "split.json")
    assert official["seed"] is None and official["protocol"] == "cifar10-official"
    assert official["query"] == list(range(50000, 60000))
    assert official["train"] == official["database"] == list(range(50000))
    assert official["per_class"]["query"] == dict(zip(spq.data.cifar10.CLASSES,
                                                     np.bincount(fake_cifar.cls[50000:]).tolist()))
    code, stdout, stderr = split_cli("cifar10-1000", tmp_path / "t", "--data_dir", small_cifar, "--seed", 4)
    assert code == 0, stderr
    split = read_split(tmp_path / "t" / "split.json")
    assert split["sizes"] == {"query": 1000, "train": 5000, "database": 59000}
    assert set(split["per_class"]["query"].values()) == {100}
    assert set(split["per_class"]["train"].values()) == {500}
    assert np.bincount(fake_cifar.cls[split["query"]]).tolist() == [100] * 10
    assert "cifar10-1000 (seed 4): 1000 queries, 5000 training images, 59000 in the database" in stdout


@pytest.fixture(scope="module")
def cifar_model(pooled, small_cifar, tmp_path_factory):
    """A model trained one epoch on the 10 training images of a custom split of the pooled
    60,000 (evaluation switched off: it would encode the whole database)."""
    root = tmp_path_factory.mktemp("cifar_model")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(spq.data.cifar10, "load_cifar10", pooled)
        code, _, stderr = split_cli("custom", root / "s", "--data_dir", small_cifar, "--query_per_class", 1,
                                    "--train_per_class", 1, "--seed", 6)
        assert code == 0, stderr
        mp.setattr(ImageSet, "why_not_evaluable", lambda self: "evaluation off in this test")
        result = spq_main("--data_dir", small_cifar, "--split_file", root / "s" / "split.json",
                          "--output_dir", root / "run", *TINY)
    assert result.returncode == 0, result.stderr
    return root / "s", root / "run"


def test_checkpoint_records_the_cifar_split(cifar_model):
    split_dir, out = cifar_model
    split = load(split_dir / "split.json")
    record = ckpt_split(out)
    assert {k: record[k] for k in ("protocol", "seed", "hash")} == \
        {"protocol": "custom", "seed": 6, "hash": split["hash"]}
    assert record["train_ids"].dtype == torch.int64 and record["train_ids"].tolist() == split["train"]
    assert len(split["train"]) == 10


def test_cifar_eval_on_its_training_images_is_refused(fake_cifar, cifar_model, tmp_path):
    split_dir, out = cifar_model
    trained = load(split_dir / "split.json")["train"]
    query = sorted(trained[:3] + [trained[3] + 1 if trained[3] + 1 not in trained else trained[3] - 1])
    database = [i for i in range(60000) if i not in set(query)]
    split = cifar_split_dict(query, database, database, load(split_dir / "split.json")["source_sha256"])
    (tmp_path / "split.json").write_text(json.dumps(split))
    result = spq_main("--resume", out / "last.pth", "--eval_only", "--split_file", tmp_path / "split.json",
                      "--output_dir", tmp_path / "eval")
    assert_clean_failure(result, 1, f"3 of the 4 queries (e.g. {query[0] if query[0] in trained else query[1]})",
                         "are training images of the model of", "(split custom)")
    one_line_error(result.stderr)
    assert not (tmp_path / "eval" / "retrieval.json").exists()


def test_a_run_refuses_a_leaking_split_before_it_starts(small_cifar, tmp_path):
    """A hand-made split (its hash right) whose training images lie outside its database."""
    split = cifar_split_dict([3, 4], [3, 5], [0, 1, 2, 5])
    (tmp_path / "split.json").write_text(json.dumps(split))
    result = spq_main("--data_dir", small_cifar, "--split_file", tmp_path / "split.json",
                      "--output_dir", tmp_path / "run", *TINY)
    assert_clean_failure(result, 1, "its queries meet its database, or its training images lie outside it")


# ---------------------------------------------------------------- known problems

def test_split_without_per_class_is_a_clean_error(pool, list_split, tmp_path):
    shutil.copytree(list_split, tmp_path / "s")
    split = load(tmp_path / "s" / "split.json")
    del split["per_class"]
    (tmp_path / "s" / "split.json").write_text(json.dumps(split))
    result = spq_main("--dataset", "list", "--data_dir", pool[0], "--num_cls", NUM_CLS,
                      "--split_file", tmp_path / "s" / "split.json", "--output_dir", tmp_path / "run", *TINY)
    assert_clean_failure(result, 1, "split.json")


def test_list_files_edited_beside_split_json(pool, list_split, tmp_path):
    shutil.copytree(list_split, tmp_path / "s")
    train = (tmp_path / "s" / "train.txt").read_text().splitlines()
    database = (tmp_path / "s" / "database.txt").read_text().splitlines()
    extra = [line for line in database if line not in train][:4]
    (tmp_path / "s" / "train.txt").write_text("\n".join(train + extra) + "\n")
    args = parse(["--dataset", "list", "--data_dir", str(pool[0]), "--num_cls", str(NUM_CLS),
                  "--split_file", str(tmp_path / "s" / "split.json"), "--output_dir", str(tmp_path / "run"),
                  "--input_size", "16"])[0]
    try:
        data = load_data(args.data, 0, args.output.output_dir, say=lambda *a: None)
    except SPQError:
        return                                                  # refused: fine
    assert len(data.ids["train"]) == 16
    assert data.split_record["hash"] != load(list_split / "split.json")["hash"]


def test_a_list_repeating_a_line(pool, tmp_path):
    root, all_txt = pool
    lines = all_txt.read_text().splitlines()
    (root / "repeat.txt").write_text("\n".join(lines + [lines[0]]) + "\n")
    for seed in range(8):
        out = tmp_path / str(seed)
        code, _, stderr = split_cli("custom", out, "--list", root / "repeat.txt", "--num_cls", NUM_CLS,
                                    "--data_dir", root, "--query", 20, "--seed", seed)
        if code == 0:
            split = read_split(out / "split.json")
            assert not set(split["query"]) & set(split["database"])
        else:
            assert code == 1 and "Traceback" not in stderr


def test_train_and_train_per_class_together_are_refused(pool, tmp_path):
    code, _, stderr = split_cli("custom", tmp_path / "s", *list_args(pool), "--query", 5, "--train", 7,
                                "--train_per_class", 2)
    assert code in (1, 2) and "--train" in stderr


def test_a_split_without_queries_is_refused_or_usable(pool, tmp_path):
    code, _, _ = split_cli("custom", tmp_path / "s", *list_args(pool), "--query", 0, "--train", 8)
    if code == 0:
        result = spq_main("--dataset", "list", "--data_dir", pool[0], "--num_cls", NUM_CLS,
                          "--split_file", tmp_path / "s" / "split.json", "--output_dir", tmp_path / "run", *TINY)
        assert result.returncode == 0, result.stderr


def test_an_empty_query_set_is_not_evaluable():
    images = torch.zeros(4, 3, 8, 8, dtype=torch.uint8)
    data = ImageSet(images, torch.arange(4), images[:0], torch.arange(4)[:0])
    assert data.why_not_evaluable() is not None




def test_eval_with_typed_list_files_of_a_model_trained_on_a_split(pool, list_split, list_model, tmp_path):
    """--train_list and --query_list typed for --eval_only of a model trained with
    --split_file: the typed lists are evaluated (or the clash refused), not the split that
    the checkpoint's options name."""
    out, _ = list_model
    root, all_txt = pool
    lines = [line for line in all_txt.read_text().splitlines() if line.strip()]
    trained = set((list_split / "train.txt").read_text().splitlines())
    query = [line for line in lines if line not in trained][:5]
    (tmp_path / "q.txt").write_text("\n".join(query) + "\n")
    (tmp_path / "t.txt").write_text("\n".join(line for line in lines if line not in query) + "\n")
    result = spq_main("--resume", out / "last.pth", "--eval_only", "--dataset", "list", "--train_list",
                      tmp_path / "t.txt", "--query_list", tmp_path / "q.txt", "--output_dir", tmp_path / "eval")
    if result.returncode == 0:
        retrieval = load(tmp_path / "eval" / "retrieval.json")
        assert (retrieval["queries"], retrieval["gallery"]) == (5, 35)
        assert retrieval["split"]["protocol"] == "lists"
    else:
        assert result.returncode in (1, 2)
        assert_clean_failure(result, result.returncode, "--split_file")


def test_help_shows_every_protocols_sizes():
    """--help carries the protocols' sizes, which used to be only in the docs."""
    code, stdout, _ = split_cli("--help")
    text = " ".join(stdout.split())
    assert code == 0 and "module docstring" not in text
    for line in ("cifar10-1000 1,000 queries (100 per class)", "flickr25k 2,000 queries at random",
                 "nuswide21 2,100 queries (100 per concept)"):
        assert line in text, line


def test_a_list_prepared_with_its_concepts_names_them(pool, tmp_path):
    """A list file with the classes.txt python -m spq.prepare writes beside it: the split's
    counts and errors use the concept names."""
    root, all_txt = pool
    names = ["sea", "sky", "tree", "car"][:NUM_CLS]
    listed = tmp_path / "all.txt"
    listed.write_text(Path(all_txt).read_text())
    (tmp_path / "classes.txt").write_text("".join(n + "\n" for n in names))
    code, _, stderr = split_cli("custom", tmp_path / "s", "--list", listed, "--num_cls", NUM_CLS, "--data_dir", root,
                                "--query_per_class", 10 ** 6)
    assert code == 1 and "class 'sea' has only" in one_line_error(stderr)
    code, _, stderr = split_cli("custom", tmp_path / "s", "--list", listed, "--num_cls", NUM_CLS, "--data_dir", root,
                                "--query_per_class", 1)
    assert code == 0, stderr
    assert sorted(load(tmp_path / "s" / "split.json")["per_class"]["query"]) == sorted(names)
