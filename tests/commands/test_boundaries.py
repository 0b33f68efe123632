"""Issue 36's attack on the program's boundaries, a test per row: each failed on the code
before the gates (spq/files/read.py, the way in; spq/files/write.py, the way out) and
passes through them. The rows' own words head each test."""
import json
import os
import re
import shutil
import threading
import zipfile
from pathlib import Path

import pytest
import torch

import spq
from cli import export_cli, index_cli, prepare_cli, results_cli, spq as spq_cli, split_cli
from conftest import SMALL, reseal
from list_fixture import CLASSES, write_lists
from prepare_fixture import flickr_raw, nus_raw


def one_line(result, *fragments):
    """Status 1 and one `error:` line holding every fragment; no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def finishes(work, seconds=120):
    """work() run in a thread; fails the test (rather than hanging it) when it is still
    running after `seconds`: a FIFO read would block forever."""
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", work()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "still running: it is blocked on the file"
    return box["result"]


@pytest.fixture(scope="module")
def best(two_epochs):
    return Path(two_epochs[0]) / "best.pth"


def edited(best, tmp_path, name="edited.pth", seal=True, **changes):
    """A copy of the checkpoint with its options changed (and, `seal`, its checksum redone)."""
    ckpt = torch.load(best, weights_only=True)
    ckpt["args"] = {**ckpt["args"], **changes}
    path = tmp_path / name
    reseal(ckpt, path) if seal else torch.save(ckpt, path)
    return path


# ---------------------------------------------------------------- row 1

def test_row1_a_link_planted_at_the_faiss_files_temporary_name_is_not_followed(data, best, tmp_path):
    """`spq.index build --faiss OUT` followed a link planted at its temporary file
    (.OUT.tmpPID) and overwrote the link's target; OUT ended as a link to it."""
    pytest.importorskip("faiss")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    faiss_file = tmp_path / "out.faiss"
    for pid in range(os.getpid() - 5, os.getpid() + 6):       # this process, and its neighbours
        os.symlink(victim, tmp_path / f".out.faiss.tmp{pid}")
    result = index_cli("build", "--checkpoint", best, "--data_dir", data, "--out", tmp_path / "i.index",
                       "--faiss", faiss_file, "--device", "cpu", "--num_workers", 0)
    assert result.returncode == 0, result.stderr
    assert victim.read_text() == "keep me\n"
    assert faiss_file.is_file() and not faiss_file.is_symlink()
    faiss = pytest.importorskip("faiss")
    from spq.store.index import load_index
    assert faiss.read_index(str(faiss_file)).ntotal == len(load_index(tmp_path / "i.index")) > 0


# ---------------------------------------------------------------- row 2

def test_row2_compressed_checkpoints_are_refused_unread(best, tmp_path):
    """A deflate-compressed .pth was inflated in full before any check (a 17 MB file holding
    4 GB: 4.45 GB resident)."""
    packed = tmp_path / "packed.pth"
    with zipfile.ZipFile(best) as source, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            target.writestr(member.filename, source.read(member), compress_type=zipfile.ZIP_DEFLATED)
    result = spq_cli("--resume", packed, "--eval_only", "--device", "cpu")
    one_line(result, str(packed), "holds compressed members", "refused unread")


def test_row2_a_checkpoint_whose_options_are_empty_is_refused(best, tmp_path):
    """`args={}` passed the schema as all defaults."""
    ckpt = torch.load(best, weights_only=True)
    ckpt["args"] = {}
    reseal(ckpt, tmp_path / "empty.pth")
    one_line(spq_cli("--resume", tmp_path / "empty.pth", "--eval_only", "--device", "cpu"),
             "damaged or foreign checkpoint", "no stored option --gpu_id")


# ---------------------------------------------------------------- row 3

@pytest.mark.parametrize("command", ["index build", "index query", "export", "api"])
def test_row3_encoders_check_memory_before_allocating(data, best, tmp_path, command):
    """A checkpoint whose stored input size is 4096: --eval_only refused it, but index build,
    index query, export and spq.load(...).encode tried to allocate 40 GB."""
    huge = edited(best, tmp_path, input_size=4096)
    if command == "api":
        with pytest.raises(spq.errors.SPQError, match="GiB of memory"):
            spq.load(huge, device="cpu").encode(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
        return
    if command == "index build":
        result = index_cli("build", "--checkpoint", huge, "--data_dir", data, "--out", tmp_path / "x.index",
                           "--device", "cpu", "--num_workers", 0)
    elif command == "index query":
        built = tmp_path / "ok.index"
        assert index_cli("build", "--checkpoint", best, "--data_dir", data, "--out", built,
                         "--device", "cpu", "--num_workers", 0).returncode == 0
        result = index_cli("query", "--index", built, "--checkpoint", huge, "--device", "cpu",
                           str(Path(data) / "anything.png"))
    else:
        result = export_cli("--checkpoint", huge, "--data_dir", data, "--out", tmp_path / "x",
                            "--device", "cpu", "--num_workers", 0)
    one_line(result, "these options need at least", "GiB of memory")


# ---------------------------------------------------------------- rows 4, 6, 11: splits

@pytest.fixture(scope="module")
def listed(tmp_path_factory):
    """A labelled list of pictures, and a custom split of it (as python -m spq.split draws)."""
    root = Path(tmp_path_factory.mktemp("listed"))
    data_dir, train_list, _ = write_lists(root, train=24, query=4)
    out = root / "split"
    result = split_cli("custom", out, "--list", train_list, "--num_cls", CLASSES, "--data_dir", data_dir,
                       "--query", 6, "--train", 8, "--seed", 3)
    assert result.returncode == 0, result.stderr
    return data_dir, out


def forged(split_dir, tmp_path, change):
    """A copy of a split folder whose split.json is changed by `change` and re-hashed (the
    hash is no secret), as an attacker would."""
    from spq.data.splits import SETS, content_hash, split_hash
    copy = tmp_path / "forged"
    shutil.copytree(split_dir, copy)
    record = json.loads((copy / "split.json").read_text())
    change(record)
    record["hash"] = split_hash({s: record[s] for s in SETS}, record["source_sha256"])
    record["content_sha256"] = content_hash(record)
    (copy / "split.json").write_text(json.dumps(record))
    return copy / "split.json"


def train_on(split_json, data_dir, tmp_path):
    return spq_cli("--dataset", "list", "--data_dir", data_dir, "--num_cls", CLASSES, "--split_file", split_json,
                   "--output_dir", tmp_path / "run", "--epochs", 1, *SMALL[:-2])


def test_row4_a_query_set_that_repeats_an_item_is_refused(listed, tmp_path):
    """A split whose query set repeated one item 5,000,000 times (re-hashed) allocated 15 GB."""
    data_dir, split_dir = listed
    split_json = forged(split_dir, tmp_path, lambda r: r.update(query=[r["query"][0]] * 3 + r["query"][1:]))
    one_line(train_on(split_json, data_dir, tmp_path), "its query set names", "more than once")


def test_row6_labels_edited_in_a_splits_list_files_are_refused(listed, tmp_path):
    """Labels edited in a split's list files passed (only paths were compared)."""
    data_dir, split_dir = listed
    copy = tmp_path / "split"
    shutil.copytree(split_dir, copy)
    lines = (copy / "train.txt").read_text().splitlines()
    path, *labels = lines[0].rsplit(None, CLASSES)
    lines[0] = path + " " + " ".join("0" if v == "1" else "1" for v in labels)
    (copy / "train.txt").write_text("\n".join(lines) + "\n")
    one_line(train_on(copy / "split.json", data_dir, tmp_path), "train.txt is not the file", "lists")


@pytest.mark.parametrize("change, message", [
    (lambda r: r.update(seed="7"), "its seed '7' is not a non-negative integer"),
    (lambda r: r.update(protocol="cifar10-official", seed=None), "its protocol cifar10-official draws from "
                                                                 "cifar10, but its dataset is list"),
])
def test_row11_a_splits_seed_and_protocol_are_checked(listed, tmp_path, change, message):
    """A split whose seed was a string trained and wrote checkpoints that --eval_only and
    spq.results then refused; a list split labelled cifar10-official landed in the CIFAR-10
    cell of the results table."""
    data_dir, split_dir = listed
    one_line(train_on(forged(split_dir, tmp_path, change), data_dir, tmp_path), message)
    assert not (tmp_path / "run" / "last.pth").exists()


def test_row11_a_cifar10_split_is_drawn_from_the_whole_cifar10_only(data, tmp_path):
    """`spq.split custom` drew a split from a partial CIFAR-10 folder that training then refused."""
    one_line(split_cli("custom", tmp_path / "s", "--data_dir", data, "--query", 5),
             "a split of CIFAR-10 is drawn from all of it (60000 images)", "holds 250")
    assert not (tmp_path / "s" / "split.json").exists()


# ---------------------------------------------------------------- row 5: exports

def test_row5_a_second_export_into_a_busy_folder_is_refused(data, best, tmp_path):
    """Two exports into one folder mixed: export.json of one beside the codes of the other."""
    from spq.files.lock import OutputLock
    out = tmp_path / "export"
    with OutputLock(out, what="--out"):                     # another export writing there
        result = export_cli("--checkpoint", best, "--data_dir", data, "--out", out, "--device", "cpu",
                            "--num_workers", 0)
    one_line(result, f"--out {out} is in use by another run")
    assert not (out / "export.json").exists()


def test_row5_a_forced_export_keeps_no_file_of_the_one_before(data, best, tmp_path):
    """Without a kill, a folder kept the other run's descriptors.npy, which its export.json did
    not list; each export.json now names every file beside it, with its size and SHA-256."""
    from spq.files.read import verified
    out = tmp_path / "export"
    common = ["--checkpoint", best, "--data_dir", data, "--out", out, "--device", "cpu", "--num_workers", 0]
    assert export_cli(*common, "--descriptors").returncode == 0
    assert export_cli(*common, "--force").returncode == 0
    record = verified(out, "export.json", "the export")
    assert sorted(p.name for p in out.iterdir()) == sorted([*record["files"], "export.json"])
    assert "descriptors.npy" not in record["files"]


# ---------------------------------------------------------------- rows 7, 8: the results table

def test_row7_the_table_takes_its_figures_from_the_checkpoint(two_epochs, tmp_path):
    """spq.results believed a hand-edited log.jsonl over the checkpoint's own log (0.9999 shown
    where the checkpoint said 0.1231); mAP -7.5 and 1e308 were printed; a duplicated epoch row
    became "last"."""
    run = tmp_path / "run"
    shutil.copytree(two_epochs[0], run)
    truth = torch.load(run / "last.pth", weights_only=True)["log"][-1]["mAP"]
    lines = (run / "log.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines[1:]]
    rows[-1]["mAP"] = 0.9999
    rows.append({**rows[-1], "mAP": -7.5})                  # a duplicated last epoch
    rows.append({**rows[0], "epoch": 2, "mAP": 1e308})
    (run / "log.jsonl").write_text(lines[0] + "\n" + "".join(json.dumps(r) + "\n" for r in rows))
    result = results_cli(run)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.endswith("| run (its log.jsonl differs from "
                                                                            "last.pth, whose figures are shown) |"))
    assert f"{truth:.4f} (mAP@1000, epoch 2)" in row
    for wrong in ("0.9999", "-7.5", "1e+308", "inf"):
        assert wrong not in result.stdout


def test_row8_nothing_a_run_recorded_becomes_markup_or_a_row(two_epochs, tmp_path):
    """<script>, a raw CR and `| fake | row` in a logged field; <img onerror=...> and
    [click](javascript:...) in a checkpoint's hardware or commit (the checksum covered tensors
    only, so these edits passed)."""
    run = tmp_path / "run"
    shutil.copytree(two_epochs[0], run)
    ckpt = torch.load(run / "last.pth", weights_only=True)
    ckpt["environment"] = {**ckpt["environment"], "hardware": "<img src=x onerror=alert(1)>",
                           "commit": "[click](javascript:alert(1))"}
    ckpt["log"][-1]["top_n"] = "<script>alert(1)</script>\r| fake | row |"
    torch.save(ckpt, run / "last.pth")                      # edited, its checksum left as it was
    one_line(results_cli(run), "is damaged or was edited")
    reseal(ckpt, run / "last.pth")                          # edited, and its checksum redone
    result = results_cli(run)
    assert result.returncode == 0, result.stderr
    table = result.stdout.splitlines()
    assert len(table) == 2 + 9 + 1                          # header, rule, the paper's 9 cells, this run
    columns = table[0].count("|")                           # the header's separators
    assert all(line.count("|") - line.count("\\|") == columns for line in table)
    for raw in ("<script", "<img", "\r"):
        assert raw not in result.stdout
    assert not re.search(r"(?<!\\)\]\(", result.stdout)           # no link: its ] escaped
    assert "&lt;img src=x onerror=alert(1)&gt;" in result.stdout and "\\[click\\]" in result.stdout


# ---------------------------------------------------------------- row 9: prepare

def test_row9_a_prepare_killed_midway_leaves_a_folder_no_reader_takes(tmp_path, monkeypatch):
    """A prepare --force killed mid-way left all.txt with 21 columns beside a stale
    classes.txt of 81 names and no prepare.json; spq.split accepted the folder. A write
    that fails now removes all three files (a killed run leaves its lock: test_kills.py)."""
    raw, out = nus_raw(tmp_path), tmp_path / "out"
    assert prepare_cli("nuswide", raw, out, "--concepts", "81").returncode == 0
    monkeypatch.setenv("SPQ_FAULTS", "write:classes.txt=enospc")        # dies after all.txt
    assert prepare_cli("nuswide", raw, out, "--force").returncode == 1
    monkeypatch.delenv("SPQ_FAULTS")
    assert not any((out / name).exists() for name in ("all.txt", "classes.txt", "prepare.json"))
    one_line(split_cli("custom", tmp_path / "s", "--list", out / "all.txt", "--num_cls", 21, "--data_dir", raw,
                       "--query", 2), "all.txt", "does not exist")


def test_row9_temporary_files_of_killed_runs_are_removed_and_a_second_prepare_is_refused(tmp_path):
    """Temp files of killed prepare/split/export runs stayed forever; two concurrent
    prepares into one folder both succeeded without --force."""
    from spq.files.lock import OutputLock
    raw, out = flickr_raw(tmp_path), tmp_path / "out"
    out.mkdir()
    dead = 2 ** 22 + 12345                                   # beyond any live pid here
    for name in ("all.txt", "classes.txt", "prepare.json"):
        (out / f".{name}.tmp{dead}").write_text("half")
    with OutputLock(out, what="OUT"):
        one_line(prepare_cli("flickr25k", raw, out), f"OUT {out} is in use by another run")
    result = prepare_cli("flickr25k", raw, out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["all.txt", "classes.txt", "prepare.json"]


# ---------------------------------------------------------------- row 10: FIFOs and devices

@pytest.mark.parametrize("special", ["fifo", "/dev/zero"])
@pytest.mark.parametrize("where", ["--split_file", "a label file", "log.jsonl", "--pretrained"])
def test_row10_a_fifo_or_a_device_is_refused_not_read(data, two_epochs, tmp_path, special, where):
    """A FIFO given as --split_file, a label file, a log.jsonl or --pretrained hung forever;
    /dev/zero there ended in a MemoryError traceback."""
    def planted(path):
        if special == "fifo":
            os.mkfifo(path)
        else:
            os.symlink("/dev/zero", path)
        return path

    if where == "--split_file":
        result = finishes(lambda: spq_cli("--data_dir", data, "--split_file", planted(tmp_path / "s.json"),
                                          "--output_dir", tmp_path / "run", *SMALL))
        message = "is not a regular file"
    elif where == "a label file":
        raw = nus_raw(tmp_path)
        label = raw / "Groundtruth" / "AllLabels" / "Labels_sky.txt"
        label.unlink()
        planted(label)
        result = finishes(lambda: prepare_cli("nuswide", raw, tmp_path / "out"))
        message = "is not a regular file"
    elif where == "log.jsonl":
        run = tmp_path / "run"
        shutil.copytree(two_epochs[0], run)
        (run / "log.jsonl").unlink()
        planted(run / "log.jsonl")
        result = finishes(lambda: results_cli(run))
        message = "is not a regular file"
    else:
        result = finishes(lambda: spq_cli("--data_dir", data, "--backbone", "resnet18", "--input_size", 32,
                                          "--pretrained", planted(tmp_path / "w.pth"), "--output_dir",
                                          tmp_path / "run", "--device", "cpu", "--epochs", 1))
        message = "is not a regular file"
    one_line(result, message)


# ---------------------------------------------------------------- row 12: prepare's inputs

def test_row12_an_image_number_beyond_the_images_is_refused(tmp_path):
    """A concept file with image number 10^12 made prepare try to allocate 21.8 TiB."""
    raw = flickr_raw(tmp_path)
    (raw / "mirflickr25k_annotations_v080" / "sea.txt").write_text("3\n1000000000000\n")
    one_line(prepare_cli("flickr25k", raw, tmp_path / "out"), "sea.txt, line 2: image 1000000000000",
             "im1.jpg to im25000.jpg")


def test_row12_a_repeated_image_list_line_is_refused(tmp_path):
    """A duplicated Imagelist.txt line was kept, and only spq.split noticed."""
    raw = nus_raw(tmp_path)
    image_list = raw / "ImageList" / "Imagelist.txt"
    lines = image_list.read_text().splitlines()
    image_list.write_text("\r\n".join(lines[:3] + [lines[1]] + lines[3:]) + "\r\n")
    one_line(prepare_cli("nuswide", raw, tmp_path / "out"), "Imagelist.txt, line 4: repeats the image of line 2")


# ---------------------------------------------------------------- row 13: models and weights

@pytest.mark.parametrize("size", [8, 31])
def test_row13_a_backbone_too_deep_for_the_input_is_refused_before_the_first_step(data, tmp_path, size):
    """--backbone vgg16 --input_size 8..31 passed every check and crashed in the first step."""
    one_line(spq_cli("--data_dir", data, "--backbone", "vgg16", "--input_size", size, "--output_dir",
                     tmp_path / "run", "--device", "cpu", "--epochs", 1, "--batch_size", 16),
             f"--backbone vgg16 cannot take --input_size {size}", "at least --input_size 32")


@pytest.mark.parametrize("spoil, message", [
    (lambda s: s["conv1.weight"].fill_(float("nan")), "its weight conv1.weight is not finite"),
    (lambda s: s.update({"conv1.weight": s["conv1.weight"].long()}), "its weight conv1.weight is torch.int64"),
])
def test_row13_pretrained_weights_are_checked_like_checkpoints(data, tmp_path, spoil, message):
    """--pretrained weights that were NaN gave "lower --lr" advice; weights cast to int64 were
    accepted silently."""
    import torchvision.models as tvm
    state = tvm.resnet18(weights=None).state_dict()
    spoil(state)
    torch.save(state, tmp_path / "w.pth")
    one_line(spq_cli("--data_dir", data, "--backbone", "resnet18", "--input_size", 32, "--pretrained",
                     tmp_path / "w.pth", "--output_dir", tmp_path / "run", "--device", "cpu", "--epochs", 1),
             message)


# ---------------------------------------------------------------- row 14: messages

def test_row14_a_line_separator_inside_a_path_keeps_the_line_numbers(tmp_path):
    """A U+2028 in a path was reported as line 62 of a 61-line file."""
    data_dir, train_list, _ = write_lists(tmp_path, train=6, query=2)
    lines = Path(train_list).read_text().split("\n")
    first = Path(data_dir) / lines[0].rsplit(None, CLASSES)[0]
    odd = first.with_name("odd\u2028name" + first.suffix)            # an image whose name holds U+2028
    shutil.copy(first, odd)
    lines[2] = f"{odd.relative_to(data_dir)} " + " ".join(["0"] * CLASSES)
    lines[4] = lines[4].rsplit(" ", 1)[0] + " 2"                       # line 5: a label that is not 0 or 1
    Path(train_list).write_text("\n".join(lines))
    result = spq_cli("--dataset", "list", "--data_dir", data_dir, "--train_list", train_list, "--num_cls", CLASSES,
                     "--output_dir", tmp_path / "run", *SMALL[:-2])
    one_line(result, f"{train_list}, line 5:")


def test_row14_the_api_says_what_is_wrong_with_a_picture(two_epochs, tmp_path):
    """`encode` of a (1, 3, 0, 0) batch raised RuntimeError where docs/api.md promises
    ValueError; `encode([a folder])` said "does not exist"."""
    model = spq.load(Path(two_epochs[0]) / "best.pth", device="cpu")
    with pytest.raises(ValueError, match="H and W at least 1"):
        model.encode(torch.zeros(1, 3, 0, 0, dtype=torch.uint8))
    with pytest.raises(spq.errors.SPQError, match="is a folder, not an image file"):
        model.encode([tmp_path])
