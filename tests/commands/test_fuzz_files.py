"""Property-based tests (Hypothesis) of the files the newer commands read: split records
(split.json), the official files python -m spq.prepare reads (concept files, label files,
image lists), and results folders (a run's log.jsonl and its checkpoint's recorded values).
Each drawn file is accepted and consistent, or refused with one line (`SPQError`): never a
traceback, never an allocation the file's numbers ask for.

Examples per target: `EXAMPLES` in every run of the suite (derandomized); `SPQ_FUZZ=long`
adds `EXAMPLES_SLOW` more per target from a fixed seed (as tests/run/test_fuzz.py).
"""
import json
import shutil
from pathlib import Path

import pytest
import torch
from hypothesis import given, seed, settings
from hypothesis import strategies as st

from fuzzing import QUICK, long_run, slow

from cli import prepare_cli, results_cli, split_cli
from list_fixture import CLASSES, write_lists
from prepare_fixture import flickr_raw, nus_raw
from spq.data.splits import SETS, content_hash, read_split, split_hash
from spq.errors import SPQError

EXAMPLES = {"split records": 80, "prepare inputs": 60, "results folders": 6}
EXAMPLES_SLOW = 500
LONG = long_run("tests/commands/test_fuzz_files.py")
SLOW = slow(EXAMPLES_SLOW)

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=10),
    st.lists(st.one_of(st.integers(-3, 10 ** 13), st.text(max_size=6)), max_size=4),
    st.dictionaries(st.text(max_size=5), st.integers(-2, 5), max_size=3))


def one_line(e: SPQError):
    assert "\n" not in str(e) and str(e)


# --- split records ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def drawn_split(tmp_path_factory):
    root = Path(tmp_path_factory.mktemp("fuzzsplit"))
    data_dir, train_list, _ = write_lists(root, train=16, query=2)
    result = split_cli("custom", root / "s", "--list", train_list, "--num_cls", CLASSES, "--data_dir", data_dir,
                       "--query", 4, "--train", 6)
    assert result.returncode == 0, result.stderr
    return root / "s"


FIELDS = st.sampled_from(["format", "version", "protocol", "seed", "dataset", "source", "source_sha256", "sizes",
                          "per_class", "hash", "files", *SETS])


def check_split(folder, tmp, field, value, rehash, repeat):
    copy = tmp / "s"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(folder, copy)
    record = json.loads((copy / "split.json").read_text())
    record[field] = value
    if repeat and isinstance(record.get("query"), list) and record["query"]:
        record["query"] = record["query"] + record["query"][:1] * repeat
    if rehash:                                               # as an attacker would: the hashes are no secret
        try:
            record["hash"] = split_hash({s: record[s] for s in SETS}, record.get("source_sha256"))
            record["content_sha256"] = content_hash(record)
        except (KeyError, TypeError, ValueError):
            pass
    (copy / "split.json").write_text(json.dumps(record))
    try:
        split = read_split(copy / "split.json")
    except SPQError as e:
        one_line(e)
        return
    for s in SETS:                                           # accepted: each set is sound
        assert isinstance(split[s], list) and len(set(split[s])) == len(split[s])
    assert set(split["query"]).isdisjoint(split["database"]) and set(split["train"]) <= set(split["database"])
    assert isinstance(split["seed"], int) and not isinstance(split["seed"], bool)


@settings(max_examples=EXAMPLES["split records"], **QUICK)
@given(FIELDS, VALUES, st.booleans(), st.integers(0, 3))
def test_split_records_are_read_or_refused_in_one_line(drawn_split, tmp_path_factory, field, value, rehash, repeat):
    check_split(drawn_split, tmp_path_factory.mktemp("f"), field, value, rehash, repeat)


@pytest.mark.slow
@LONG
@seed(36)
@settings(**SLOW)
@given(FIELDS, VALUES, st.booleans(), st.integers(0, 3))
def test_split_records_longer_run(drawn_split, tmp_path_factory, field, value, rehash, repeat):
    check_split(drawn_split, tmp_path_factory.mktemp("f"), field, value, rehash, repeat)


# --- prepare's official files -------------------------------------------------------------

LINE_TEXT = st.one_of(st.integers(-5, 10 ** 15).map(str), st.sampled_from(["", " ", "1", "0", "x", "1 2", "\u2028",
                                                                           "C:\\ImageData\\Flickr\\a\\b.jpg",
                                                                           "Flickr/../x.jpg", "\ufeff3"]),
                      st.text(max_size=8))
TARGETS = st.sampled_from(["flickr concept", "nus labels", "nus image list", "nus concepts"])


def check_prepare(tmp, target, lines):
    if target == "flickr concept":
        raw = flickr_raw(tmp)
        (raw / "mirflickr25k_annotations_v080" / "sea.txt").write_text("\n".join(lines) + "\n")
        result = prepare_cli("flickr25k", raw, tmp / "out", "--skip_missing")
    else:
        raw = nus_raw(tmp)
        path = {"nus labels": raw / "Groundtruth" / "AllLabels" / "Labels_sky.txt",
                "nus image list": raw / "ImageList" / "Imagelist.txt",
                "nus concepts": raw / "ConceptsList" / "Concepts81.txt"}[target]
        path.write_text("\n".join(lines) + "\n")
        result = prepare_cli("nuswide", raw, tmp / "out", "--skip_missing", "--concepts", 81)
    assert "Traceback" not in result.stderr
    if result.returncode:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 1 and len(errors) == 1, result.stderr
        assert not (tmp / "out" / "prepare.json").exists()
    else:
        listed = (tmp / "out" / "all.txt").read_text().splitlines()
        record = json.loads((tmp / "out" / "prepare.json").read_text())
        assert len(listed) == record["counts"]["kept"] <= record["counts"]["listed"] <= 25000


@settings(max_examples=EXAMPLES["prepare inputs"], **QUICK)
@given(TARGETS, st.lists(LINE_TEXT, max_size=14))
def test_official_files_are_read_or_refused_in_one_line(tmp_path_factory, target, lines):
    check_prepare(tmp_path_factory.mktemp("p"), target, lines)


@pytest.mark.slow
@LONG
@seed(37)
@settings(**SLOW)
@given(TARGETS, st.lists(LINE_TEXT, max_size=14))
def test_official_files_longer_run(tmp_path_factory, target, lines):
    check_prepare(tmp_path_factory.mktemp("p"), target, lines)


# --- results folders ----------------------------------------------------------------------

ROW_FIELDS = st.sampled_from(["epoch", "loss", "mAP", "top_n", "bits", "lr", "extra"])
ENV_FIELDS = st.sampled_from(["hardware", "commit", "torch"])
TEXTS = st.one_of(st.text(max_size=12), st.sampled_from(["<script>", "|", "\r\n| x |", "[a](javascript:x)",
                                                         "\u2028", "&amp;", "`x`", "\\"]))


def check_results(run, tmp, row_field, row_value, env_field, env_text, log_lines, reseal_it):
    from conftest import reseal
    copy = tmp / "run"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(run, copy)
    ckpt = torch.load(copy / "last.pth", weights_only=True)
    ckpt["log"][-1][row_field] = row_value
    ckpt["environment"][env_field] = env_text
    reseal(ckpt, copy / "last.pth") if reseal_it else torch.save(ckpt, copy / "last.pth")
    (copy / "log.jsonl").write_text("\n".join(log_lines))
    result = results_cli(copy)
    assert "Traceback" not in result.stderr
    if result.returncode:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 1 and len(errors) == 1, result.stderr
        return
    table = result.stdout.splitlines()
    assert len(table) == 2 + 9 + 1                           # header, rule, the paper's cells, the run
    columns = table[0].count("|")
    assert all(line.count("|") - line.count("\\|") == columns for line in table)
    assert "<" not in result.stdout and "\r" not in result.stdout


@pytest.fixture(scope="module")
def run_folder(two_epochs):
    return Path(two_epochs[0])


RESULT_ARGS = (ROW_FIELDS, VALUES, ENV_FIELDS, TEXTS, st.lists(st.one_of(TEXTS, st.just('{"epoch": 1, "mAP": 9}')),
                                                               max_size=4), st.booleans())


@settings(max_examples=EXAMPLES["results folders"], **QUICK)
@given(*RESULT_ARGS)
def test_results_folders_are_tabled_or_refused_in_one_line(run_folder, tmp_path_factory, row_field, row_value,
                                                          env_field, env_text, log_lines, reseal_it):
    check_results(run_folder, tmp_path_factory.mktemp("r"), row_field, row_value, env_field, env_text,
                  log_lines, reseal_it)


@pytest.mark.slow
@LONG
@seed(38)
@settings(**SLOW)
@given(*RESULT_ARGS)
def test_results_folders_longer_run(run_folder, tmp_path_factory, row_field, row_value, env_field, env_text,
                                    log_lines, reseal_it):
    check_results(run_folder, tmp_path_factory.mktemp("r"), row_field, row_value, env_field, env_text,
                  log_lines, reseal_it)
