"""python -m spq.index: every value of an index file, and every query option, checked where
it enters (the rows of an outside attack on the program: huge or non-positive input sizes,
class names that are not strings, stored paths that climb out of the data folder, huge
grid tiles, non-finite codebooks and checkpoints).

One small folder index is built once (a model trained for one epoch); each test damages
one field of a copy with torch.save and checks the refusal: status 1, one line on stderr
naming the file and the field, no traceback, and no work done before it (decoding and
the network are made to fail the test when reached).
"""
from pathlib import Path

import pytest
import torch
from PIL import Image

import spq.index as spq_index
import spq.run.indexing as indexing
from cli import index_cli, spq
from folder_fixture import write_folder
from spq.errors import SPQError
from spq.files.torchfile import with_checksum
from spq.index import grid_size
from spq.run.indexing import MAX_QUERY_BYTES
from spq.store.index import load_index
from spq.options.values import MAX_INPUT_SIZE


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A folder dataset (3 classes x 4 pictures), a model trained on it for one epoch at 16
    pixels, and the index of its training pictures."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("inputs")
    data = Path(write_folder(root / "data", train=4, test=1, corrupt=False))
    trained = spq("--dataset", "folder", "--data_dir", data, "--output_dir", root / "run", "--epochs", 1,
                  "--num_workers", 0, "--device", "cpu", "--batch_size", 6, "--seed", 1, "--input_size", 16)
    assert trained.returncode == 0, trained.stderr
    ckpt = root / "run" / "last.pth"
    result = index_cli("build", "--checkpoint", ckpt, "--dataset", "folder", "--data_dir", data,
                       "--out", root / "index.pt", "--device", "cpu", "--num_workers", 0)
    assert result.returncode == 0, result.stderr
    return {"root": root, "data": data, "ckpt": ckpt, "index": root / "index.pt",
            "image": data / "test" / "class_0" / "img_0_0.jpg"}


def damaged(built, tmp_path, change, name="damaged.pt") -> Path:
    """A copy of the built index with `change` applied to its dict (its checksum resealed, so
    that the change itself is what is judged)."""
    d = torch.load(built["index"], weights_only=True)
    change(d)
    torch.save(with_checksum(d), tmp_path / name)
    return tmp_path / name


def query(built, index, *extra, images=None):
    return index_cli("query", "--index", index, "--checkpoint", built["ckpt"],
                     *(images or [built["image"]]), "--device", "cpu", *extra)


def assert_refused(result, *fragments):
    """Status 1, one `error:` line on stderr holding every fragment, no traceback."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def no_work(monkeypatch):
    """Decoding images and running the network fail the test when reached."""
    def reached(*_, **__):
        raise AssertionError("the query did work before refusing")
    monkeypatch.setattr(indexing, "describe", reached)
    monkeypatch.setattr(indexing, "decode", reached)
    monkeypatch.setattr(spq_index, "decode", reached)
    monkeypatch.setattr(spq_index, "write_grid", reached)


def set_config(key, value):
    def change(d):
        d["config"][key] = value
    return change


# row 2: input_size 10**6 grew the query to 19 GB
def test_row2_a_huge_input_size_is_refused_on_load_before_any_work(built, tmp_path, no_work):
    index = damaged(built, tmp_path, set_config("input_size", 10 ** 6))
    result = query(built, index)                              # no_work: nothing decoded or run
    assert_refused(result, str(index), "input_size", str(MAX_INPUT_SIZE))


def test_row2_a_query_beyond_the_memory_bound_says_what_it_would_need(built, tmp_path, no_work):
    index = damaged(built, tmp_path, set_config("input_size", MAX_INPUT_SIZE))   # valid: the schema's bound
    count = MAX_QUERY_BYTES // (3 * MAX_INPUT_SIZE ** 2) + 1                      # (4096: 43 x 48 MiB)
    result = query(built, index, images=[built["image"]] * count)
    assert_refused(result, f"{count} query image", f"input_size {MAX_INPUT_SIZE}", "would need", "GiB")


def test_query_input_size_must_be_the_checkpoints(built, tmp_path, no_work):
    index = damaged(built, tmp_path, set_config("input_size", 24))
    assert_refused(query(built, index), str(index), "input_size 24", str(built["ckpt"]), "16")


# row 7: input_size 0 or -5 blamed the (valid) query image
@pytest.mark.parametrize("value", [0, -5, "32", True, 16.0, None])
def test_row7_an_invalid_input_size_blames_the_index(built, tmp_path, no_work, value):
    index = damaged(built, tmp_path, set_config("input_size", value))
    result = query(built, index)
    assert_refused(result, str(index), "input_size")
    assert "cannot be read as an image" not in result.stderr


def one_hot(names):
    def change(d):
        d["labels"] = torch.nn.functional.one_hot(d["labels"], 3).to(torch.uint8)
        d["classes"] = names
    return change


def set_field(key, value):
    def change(d):
        d[key] = value
    return change


# row 6: a multi-label index with int or None class names: a traceback in Index.class_of
@pytest.mark.parametrize("change", [one_hot([0, 1, 2]), one_hot(["a", None, "c"]), one_hot(None),
                                    one_hot(["a", "b"]), set_field("classes", [0, 1, 2]),
                                    set_field("classes", ["a"]), set_field("classes", "abc")])
def test_row6_class_names_must_be_strings_for_the_labels(built, tmp_path, change):
    index = damaged(built, tmp_path, change)
    assert_refused(query(built, index, "--top_k", 12), str(index), "classes")


def test_row6_an_unlabelled_index_may_name_classes_only_with_strings(built, tmp_path):
    def change(d):
        d["labels"], d["classes"] = None, [1, 2]
    with pytest.raises(SPQError, match="classes"):
        load_index(damaged(built, tmp_path, change))


def outside_picture(built) -> Path:
    picture = built["root"] / "secret.png"
    Image.new("RGB", (20, 20), (1, 2, 3)).save(picture)
    return picture


# row 8: stored paths climbing out of the data folder were read and drawn by --grid
@pytest.mark.parametrize("where", ["../secret.png", "train/../../secret.png", "absolute"])
def test_row8_stored_paths_stay_inside_the_data_folder(built, tmp_path, monkeypatch, where):
    secret = outside_picture(built)
    name = str(secret) if where == "absolute" else where
    assert (built["data"] / name).resolve() == secret.resolve()
    index = damaged(built, tmp_path, lambda d: d.update(paths="\n".join([name] + d["paths"].split("\n")[1:])))
    read, real = [], spq_index.decode
    monkeypatch.setattr(spq_index, "decode", lambda path, *a: read.append(Path(path)) or real(path, *a))
    result = query(built, index, "--top_k", 12, "--grid", tmp_path / "grid.png")
    assert secret not in [p.resolve() for p in read if p.exists()]
    assert_refused(result, str(index), "outside its data folder", name)
    assert not (tmp_path / "grid.png").exists()


def test_row8_absolute_paths_only_from_a_build_that_allowed_them(built, tmp_path):
    """A list build with --allow_outside_data_dir records it: its absolute paths are read;
    the same index without that record (an older build) is refused."""
    listed = tmp_path / "list.txt"
    listed.write_text("class_0/img_0_0.jpg 1 0 0\n../test/class_1/img_1_0.PNG 0 1 0\n")
    out = tmp_path / "list.pt"
    result = index_cli("build", "--checkpoint", built["ckpt"], "--dataset", "list", "--data_dir",
                       built["data"] / "train", "--train_list", listed, "--num_cls", 3,
                       "--allow_outside_data_dir", "--out", out, "--device", "cpu", "--num_workers", 0)
    assert result.returncode == 0, result.stderr
    index = load_index(out)
    assert index.config["allow_outside_data_dir"] is True
    outside = (built["data"] / "test" / "class_1" / "img_1_0.PNG").resolve().as_posix()
    assert index.paths == ["class_0/img_0_0.jpg", outside]
    older = tmp_path / "older.pt"
    d = torch.load(out, weights_only=True)
    del d["config"]["allow_outside_data_dir"]
    torch.save(d, older)
    with pytest.raises(SPQError, match="absolute.*--allow_outside_data_dir"):
        load_index(older)


# row 9: --tile 30000 / 100000: a MemoryError traceback, or still running after 30 s
@pytest.mark.parametrize("argv,status", [(["--tile", 30000], 1), (["--tile", 100000], 1), (["--tile", 7], 1),
                                         (["--tile", "x"], 2), (["--top_k", 0], 1), (["--top_k", "2.5"], 2)])
def test_row9_query_options_are_bounded_before_any_work(built, tmp_path, no_work, argv, status):
    result = query(built, built["index"], *argv, "--grid", tmp_path / "grid.png")   # no_work: none done
    assert result.returncode == status and "Traceback" not in result.stderr
    assert argv[0] in result.stderr
    if status == 1:
        assert_refused(result, argv[0])
    assert not (tmp_path / "grid.png").exists()


def test_row9_a_grid_too_large_in_pixels_is_refused_with_its_size(built, tmp_path, no_work):
    result = query(built, built["index"], "--tile", 1024, "--top_k", 100, "--grid", tmp_path / "grid.png",
                   images=[built["image"]] * 6)
    assert_refused(result, "--grid", "13 pictures", "MiB", "--tile")


# the other fields of an index, each checked on load
@pytest.mark.parametrize("field,change", [
    ("dataset", set_config("dataset", "imagenet")), ("dataset", set_config("dataset", 3)),
    ("split", set_config("split", "validation")), ("data_dir", set_config("data_dir", 7)),
    ("checkpoint", set_config("checkpoint", None)), ("epoch", set_config("epoch", -1)),
    ("epoch", set_config("epoch", "3")), ("N_books", set_config("N_books", 9)),
    ("N_words", set_config("N_words", 32)), ("L_word", set_config("L_word", 0)),
    ("resize", set_config("resize", "nearest")),
    ("allow_outside_data_dir", set_config("allow_outside_data_dir", "yes")),
    ("positions", lambda d: d.update(positions=d["positions"].int())),
    ("positions", lambda d: d["positions"].__setitem__(0, -1)),
    ("paths", set_field("paths", None)),
    ("codebooks", lambda d: d["codebooks"].__setitem__((0, 0, 0), float("nan"))),
    ("codebooks", lambda d: d["codebooks"].__setitem__((1, 2, 3), float("inf"))),
    ("codebooks", lambda d: d.update(codebooks=d["codebooks"].double())),
])
def test_every_field_of_an_index_is_checked_on_load(built, tmp_path, field, change):
    index = damaged(built, tmp_path, change)
    with pytest.raises(SPQError) as refused:
        load_index(index)
    message = str(refused.value)
    assert field in message and str(index) in message and "\n" not in message


def test_a_nan_codebook_is_refused_on_load_not_as_another_model(built, tmp_path, no_work):
    index = damaged(built, tmp_path, lambda d: d["codebooks"].__setitem__((0, 0, 0), float("nan")))
    result = query(built, index)
    assert_refused(result, str(index), "codebooks", "finite")
    assert "another model" not in result.stderr


# row 4: build wrote an index of all-0 codes from a checkpoint with NaN weights
def test_row4_a_checkpoint_with_non_finite_weights_is_refused(built, tmp_path):
    ckpt = torch.load(built["ckpt"], weights_only=True)
    name = next(k for k, v in ckpt["model"].items() if v.is_floating_point() and k.endswith("weight"))
    ckpt["model"][name].view(-1)[0] = float("nan")
    if "checksum" in ckpt:              # sealed again: the file is intact, its weights are not finite
        ckpt = with_checksum(ckpt)
    torch.save(ckpt, tmp_path / "nan.pth")
    out = tmp_path / "index.pt"
    result = index_cli("build", "--checkpoint", tmp_path / "nan.pth", "--dataset", "folder", "--data_dir",
                       built["data"], "--out", out, "--device", "cpu", "--num_workers", 0)
    assert_refused(result, str(tmp_path / "nan.pth"), name, "finite")
    assert not out.exists()
    asked = index_cli("query", "--index", built["index"], "--checkpoint", tmp_path / "nan.pth",
                      built["image"], "--device", "cpu")
    assert_refused(asked, str(tmp_path / "nan.pth"), name, "finite")


def test_the_built_index_still_loads_and_answers(built, tmp_path):
    """The checks refuse nothing a build writes: its grid is drawn from its own paths."""
    index = load_index(built["index"])
    assert index.config["allow_outside_data_dir"] is False and len(index) == 12
    result = query(built, built["index"], "--top_k", 3, "--grid", tmp_path / "grid.png", "--tile", 16)
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "grid.png").size == grid_size(1, 4, 16)
