"""Property-based tests (Hypothesis): option values, list-file lines, checkpoint and index
dictionaries drawn at random (types, shapes, ranges, NaN, huge and negative values, wrong
keys). Each must be accepted and usable, or refused with one line (`SPQError`, or argparse's
exit 2): never a traceback, never a size beyond the memory bound.

Examples per target: `EXAMPLES` in every run of the suite (derandomized: the same examples
every time). The longer run, `EXAMPLES_SLOW` examples per target from a fixed seed (about 75
s on 2 cores), is left out of the suite's time budget: `SPQ_FUZZ=long python -m pytest
tests/run/test_fuzz.py` runs it.
"""
import contextlib
import io
import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from fuzzing import QUICK, long_run, slow

from cli import index_cli
from folder_fixture import write_split
from spq.options import values as spq_options
from spq.store.checkpoint import validate_checkpoint
from spq.run.device import check_memory
from spq.errors import SPQError
from spq.files.torchfile import with_checksum
from spq.store.index import load_index
from spq.data.lists import read_list
from spq.store.schema import check_options

EXAMPLES = {"options": 150, "stored options": 150, "list lines": 80, "checkpoints": 60, "indexes": 80}
EXAMPLES_SLOW = 1000
LONG = long_run("tests/run/test_fuzz.py")
SLOW = slow(EXAMPLES_SLOW)

NUMBERS = st.one_of(
    st.integers(min_value=-2 ** 64, max_value=2 ** 64),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, -1, 2, 3, 7, 8, 255, 4096, 4097, 2 ** 31, 2 ** 32, 0.5, 1e-300, 1e300]))
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), NUMBERS, st.text(max_size=12), st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.builds(lambda shape, dtype: torch.zeros(shape, dtype=dtype),
              st.lists(st.integers(0, 3), max_size=3), st.sampled_from([torch.float32, torch.int64, torch.uint8])),
    st.just(torch.tensor([float("nan")])))


# --- options: the command line and a checkpoint's stored options accept the same values ----

def parse(argv):
    """(args or None, stderr): the parser's verdict, argparse's exit captured."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            return spq_options.Options.from_flat(vars(spq_options.parse_args(argv))), err.getvalue()
        except SystemExit as e:
            assert e.code == 2, (argv, err.getvalue())
    return None, err.getvalue()


def check_option(name, value):
    args, err = parse([f"--{name}", str(value)])
    stored = check_options({**vars(spq_options.parse_args([])), name: value})
    if args is None:
        assert [line for line in err.splitlines() if "error:" in line] == [err.splitlines()[-1]], err
        assert "Traceback" not in err
        return
    assert stored is None, (name, value, stored)          # what the command line takes, a checkpoint takes
    try:
        check_memory(args.method, args.data.input_size, args.optim.batch_size, torch.device("cpu"), training=True)
    except SPQError as e:
        assert "GiB" in str(e)


def stored_option(name, value):
    """The reverse: a value a checkpoint may store is one the command line takes."""
    if check_options({**vars(spq_options.parse_args([])), name: value}) is None:
        args, err = parse([f"--{name}", repr(value) if isinstance(value, float) else str(value)])
        assert args is not None, (name, value, err)
        parsed = args.flat()[name]
        assert parsed == value or (isinstance(value, float) and math.isclose(parsed, value))


RANGED = sorted(spq_options.RANGES)


@settings(max_examples=EXAMPLES["options"], **QUICK)
@given(st.sampled_from(RANGED), st.one_of(NUMBERS, st.text(max_size=8)))
def test_options_are_taken_or_refused_in_one_line(name, value):
    check_option(name, value)


@settings(max_examples=EXAMPLES["stored options"], **QUICK)
@given(st.sampled_from(RANGED), NUMBERS)
def test_a_stored_option_the_schema_accepts_the_command_line_accepts(name, value):
    stored_option(name, value)


@pytest.mark.slow
@LONG
@seed(27)
@settings(**SLOW)
@given(st.sampled_from(RANGED), st.one_of(NUMBERS, st.text(max_size=8)))
def test_options_longer_run(name, value):
    check_option(name, value)
    if not isinstance(value, str):
        stored_option(name, value)


# --- list files ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def list_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzzlist")
    write_split(root / "img", per_class=1, classes=2)
    return root


PATHS = st.sampled_from(["img/class_0/img_0_0.jpg", "img/class_1/img_1_0.PNG", "missing.jpg", "../outside.jpg",
                         "/etc/passwd", "img", "", "img/class_0/img_0_0.jpg extra"])
FIELDS = st.lists(st.sampled_from(["0", "1", "2", "-1", "x", "1.0", "nan", "\u00e9"]), max_size=5)
LINES = st.lists(st.tuples(PATHS, FIELDS, st.sampled_from([" ", "\t", "  "])), max_size=6)


def check_list(root, lines, num_classes, name):
    path = root / name
    path.write_text("\n".join(p + sep + sep.join(f) for p, f, sep in lines) + "\n", encoding="utf-8")
    try:
        entries = read_list(path, root, num_classes)
    except SPQError as e:
        assert "\n" not in str(e)
        return
    assert entries.labels.shape == (len(entries.paths), num_classes)
    assert all(p.is_file() and Path(p).resolve().is_relative_to(root.resolve()) for p in entries.paths)


@settings(max_examples=EXAMPLES["list lines"], **QUICK)
@given(LINES, st.integers(1, 4))
def test_list_files_are_read_or_refused_in_one_line(list_root, lines, num_classes):
    check_list(list_root, lines, num_classes, "quick.txt")


# --- checkpoints ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stored_checkpoint(two_epochs):
    return torch.load(Path(two_epochs[0]) / "last.pth", weights_only=True)


CHECKPOINT_PLACES = ["epoch", "best_map", "best_epoch", "args", "model", "optimizer", "scheduler", "scaler",
                     "rng", "mid_epoch", "log", "split", "environment", "checksum", "format",
                     "args.N_books", "args.input_size", "args.batch_size", "args.lr", "args.backbone",
                     "args.augment", "args.seed", "args.epochs", "args.unknown_option", "model.codebooks",
                     "model.head.weight", "rng.torch", "rng.python", "split.train_ids", "split.hash"]


def changed(d, place, value):
    """A shallow copy of `d` with `place` ("key" or "key.sub") set to `value`."""
    key, _, sub = place.partition(".")
    out = dict(d)
    if sub:
        inner = dict(out[key]) if isinstance(out.get(key), dict) else {}
        inner[sub] = value
        out[key] = inner
    else:
        out[key] = value
    return out


def check_checkpoint(ckpt, place, value, reseal):
    mutated = changed(ckpt, place, value)
    if reseal:
        mutated = with_checksum(mutated)
    try:
        validate_checkpoint(mutated, "fuzz.pth")
    except SPQError as e:
        assert "\n" not in str(e)
        return
    args = spq_options.Options.from_flat({**vars(spq_options.parse_args([])), **mutated["args"]})
    try:
        check_memory(args.method, args.data.input_size, args.optim.batch_size, torch.device("cpu"), training=True)
    except SPQError as e:
        assert "GiB" in str(e)


@settings(max_examples=EXAMPLES["checkpoints"], **QUICK)
@given(st.sampled_from(CHECKPOINT_PLACES), ANY_VALUE, st.booleans())
def test_checkpoint_dicts_are_accepted_or_refused_in_one_line(stored_checkpoint, place, value, reseal):
    check_checkpoint(stored_checkpoint, place, value, reseal)


@pytest.mark.slow
@LONG
@seed(27)
@settings(**SLOW)
@given(st.sampled_from(CHECKPOINT_PLACES), ANY_VALUE, st.booleans())
def test_checkpoints_longer_run(stored_checkpoint, place, value, reseal):
    check_checkpoint(stored_checkpoint, place, value, reseal)


# --- indexes -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stored_index(data, two_epochs, tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzzindex") / "cifar.index"
    result = index_cli("build", "--checkpoint", Path(two_epochs[0]) / "best.pth", "--data_dir", data,
                       "--out", out, "--device", "cpu")
    assert result.returncode == 0, result.stderr
    return out


INDEX_PLACES = ["codebooks", "codes", "positions", "paths", "labels", "classes", "config", "format", "version",
                "checksum", "config.input_size", "config.dataset", "config.split", "config.N_books",
                "config.data_dir", "config.resize", "config.epoch", "config.allow_outside_data_dir"]


def check_index(path, place, value, reseal, work):
    d = torch.load(path, weights_only=True)
    mutated = changed(d, place, value)
    target = work / "fuzz.index"
    torch.save(with_checksum(mutated) if reseal else mutated, target)
    try:
        index = load_index(target)
    except SPQError as e:
        assert "\n" not in str(e)
        return
    assert index.codes.shape[0] == index.positions.shape[0]
    assert 1 <= index.config["input_size"] <= spq_options.MAX_INPUT_SIZE


@settings(max_examples=EXAMPLES["indexes"], **QUICK)
@given(st.sampled_from(INDEX_PLACES), ANY_VALUE, st.booleans())
def test_index_dicts_are_accepted_or_refused_in_one_line(stored_index, tmp_path_factory, place, value, reseal):
    check_index(stored_index, place, value, reseal, tmp_path_factory.getbasetemp())


@pytest.mark.slow
@LONG
@seed(27)
@settings(**SLOW)
@given(st.sampled_from(INDEX_PLACES), ANY_VALUE, st.booleans())
def test_indexes_longer_run(stored_index, tmp_path_factory, place, value, reseal):
    check_index(stored_index, place, value, reseal, tmp_path_factory.getbasetemp())
