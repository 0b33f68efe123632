"""python -m spq.results: the README's results table read from run folders.

The runs are copies of one real two-epoch run (conftest's `two_epochs`: a CIFAR-shaped
subset, so its split says `cifar10-official subset`) whose checkpoints and log are
rewritten to place them in the paper's cells (split protocol, bits, --Top_N) with known
mAPs, epochs, seeds and environments; every rewritten checkpoint is still one that
`load_checkpoint` accepts. The real run itself is also read untouched.
"""
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
import processes
from conftest import ROOT, assert_clean_failure, read_log
from cli import run_main

from spq.store.checkpoint import load_checkpoint, model_only
from spq.files.torchfile import with_checksum
from spq.method.quantization import code_bits
from spq.results import main as results_main

ENV = {"hardware": "Test GPU 80GB", "torch": "2.3.0", "commit": "0123456789ab"}
CELLS = [("CIFAR-10", "cifar10-official", 16), ("CIFAR-10", "cifar10-official", 32),
         ("CIFAR-10", "cifar10-official", 64), ("FLICKR25K", "flickr25k", 16),
         ("FLICKR25K", "flickr25k", 32), ("FLICKR25K", "flickr25k", 64),
         ("NUS-WIDE", "nuswide21", 16), ("NUS-WIDE", "nuswide21", 32), ("NUS-WIDE", "nuswide21", 64)]
HEADER = ["| dataset | protocol | bits | model | epochs | mAP last | mAP best | seed | hardware | commit | run |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
MODEL = "cifar_resnet18 at 16 px (crop), fp32"                   # what the shared SMALL run trains


def results(*argv):
    """python -m spq.results ARGV, in this process."""
    return run_main(results_main, argv)


def empty_cell(dataset, protocol, bits):
    return f"| {dataset} | {protocol} | {bits} | - | - | no run yet | no run yet | - | - | - | - |"


def write_run(base: Path, dst: Path, *, protocol="cifar10-official", maps=(0.5, 0.45), best=(0.5, 1),
              asked=2, seed=1, split_seed=None, options=None, env=ENV, old=False) -> Path:
    """A copy of the run in `base` (two epochs, both evaluated) as a run of `protocol` whose
    evaluations measured `maps` (one per epoch done: len(maps) epochs of `asked`), whose
    best is `best` (mAP, epoch), trained with --seed `seed` and `options`, on `env`. `old`:
    as written before checkpoints recorded their split, environment, best epoch and log."""
    dst.mkdir(parents=True)
    ckpt = torch.load(base / "last.pth", weights_only=True)
    args = {**ckpt["args"], "epochs": asked, "seed": seed, **(options or {})}
    bits = code_bits(args["N_books"], args["N_words"])
    header = (base / "log.jsonl").read_text().splitlines()[0]
    rows = [{**row, "mAP": m, "bits": bits, "top_n": args["Top_N"]} for row, m in zip(read_log(base), maps)]
    (dst / "log.jsonl").write_text(header + "\n" + "".join(json.dumps(row) + "\n" for row in rows))
    ckpt.update(args=args, best_map=best[0], best_epoch=best[1], environment=env,
                split={**ckpt["split"], "protocol": protocol, "seed": split_seed})
    for name, done in (("last.pth", len(rows)), ("best.pth", best[1])):
        state = {**ckpt, "epoch": done, "log": rows[:done]}
        if name == "best.pth":
            state = model_only(state)
        if old:
            for key in ("split", "environment", "best_epoch", "log", "checksum"):
                state.pop(key, None)
        torch.save(state if old else with_checksum(state), dst / name)
        load_checkpoint(dst / name)                     # still a checkpoint the program reads
    return dst


@pytest.fixture(scope="module")
def runs(two_epochs, tmp_path_factory):
    """Rewritten copies of the real run, by name: two in the CIFAR-10 32-bit cell (one whose
    last evaluation is below its best), an unfinished FLICKR25K 16-bit run, a NUS-WIDE 64-bit
    run on a seeded split, an old checkpoint, and a CIFAR-10 run measured at mAP@all."""
    base, _ = two_epochs
    root = tmp_path_factory.mktemp("runs")
    return {
        "c32-seed1": write_run(base, root / "c32-seed1", maps=(0.5, 0.45), best=(0.5, 1), seed=1),
        "c32-seed2": write_run(base, root / "c32-seed2", maps=(0.52, 0.61), best=(0.61, 2), seed=2),
        "f16-unfinished": write_run(base, root / "f16-unfinished", protocol="flickr25k", maps=(0.3,),
                                    best=(0.3, 1), asked=50, options={"N_books": 4, "Top_N": 5000},
                                    split_seed=1, env={**ENV, "commit": "fedcba987654+modified"}),
        "n64": write_run(base, root / "n64", protocol="nuswide21", maps=(0.2, 0.25), best=(0.25, 2), seed=3,
                         split_seed=0, options={"N_books": 16, "Top_N": 5000}),
        "old": write_run(base, root / "old", maps=(0.4, 0.35), best=(0.4, 1), old=True),
        "c32-all": write_run(base, root / "c32-all", maps=(0.3, 0.31), best=(0.31, 2),
                             options={"Top_N": 0}),
    }


def test_the_table_of_known_runs(runs):
    """Every cell in the paper's order whatever the order of the arguments; two runs in one
    cell; last below best; an unfinished run; a split's own seed; an old checkpoint
    (unknown protocol, hardware and commit, its best epoch found in its log) and a run at
    another mAP@N after the cells."""
    order = ["old", "n64", "c32-seed2", "f16-unfinished", "c32-all", "c32-seed1"]
    result = results(*(runs[name] for name in order))
    assert result.returncode == 0, result.stderr
    # only the old checkpoint, written before checksums, is noted
    assert result.stderr == f"note: {runs['old'] / 'last.pth'} has no checksum (written before they were " \
                            f"recorded); its contents are not verified\n"
    assert result.stdout.splitlines() == HEADER + [
        empty_cell("CIFAR-10", "cifar10-official", 16),
        f"| CIFAR-10 | cifar10-official | 32 | {MODEL} | 2 / 2 | 0.6100 (mAP@1000, epoch 2) | 0.6100 (mAP@1000, epoch 2) "
        "| 2 | Test GPU 80GB | 0123456789ab | c32-seed2 |",
        f"| CIFAR-10 | cifar10-official | 32 | {MODEL} | 2 / 2 | 0.4500 (mAP@1000, epoch 2) | 0.5000 (mAP@1000, epoch 1) "
        "| 1 | Test GPU 80GB | 0123456789ab | c32-seed1 |",
        empty_cell("CIFAR-10", "cifar10-official", 64),
        f"| FLICKR25K | flickr25k | 16 | {MODEL} | 1 / 50 | 0.3000 (mAP@5000, epoch 1) | 0.3000 (mAP@5000, epoch 1) "
        "| 1 | Test GPU 80GB | fedcba987654+modified | f16-unfinished |",
        empty_cell("FLICKR25K", "flickr25k", 32),
        empty_cell("FLICKR25K", "flickr25k", 64),
        empty_cell("NUS-WIDE", "nuswide21", 16),
        empty_cell("NUS-WIDE", "nuswide21", 32),
        f"| NUS-WIDE | nuswide21 | 64 | {MODEL} | 2 / 2 | 0.2500 (mAP@5000, epoch 2) | 0.2500 (mAP@5000, epoch 2) "
        "| 3 (split 0) | Test GPU 80GB | 0123456789ab | n64 |",
        f"| CIFAR-10 | unknown | 32 | {MODEL} | 2 / 2 | 0.3500 (mAP@1000, epoch 2) | 0.4000 (mAP@1000, epoch 1) "
        "| 1 | unknown | unknown | old |",
        f"| CIFAR-10 | cifar10-official | 32 | {MODEL} | 2 / 2 | 0.3100 (mAP@all, epoch 2) | 0.3100 (mAP@all, epoch 2) "
        "| 1 | Test GPU 80GB | 0123456789ab | c32-all |",
    ]


def test_the_paper_column_has_only_the_verified_figure(runs):
    result = results("--paper", runs["c32-seed1"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == ("| dataset | protocol | bits | model | epochs | mAP last | mAP best | paper | seed | hardware "
                        "| commit | run |")
    papers = [line.split(" | ")[7] for line in lines[2:]]
    assert papers == ["not verified", "0.793"] + ["not verified"] * 7
    assert lines[3] == (f"| CIFAR-10 | cifar10-official | 32 | {MODEL} | 2 / 2 | 0.4500 (mAP@1000, epoch 2) "
                        "| 0.5000 (mAP@1000, epoch 1) | 0.793 | 1 | Test GPU 80GB | 0123456789ab | c32-seed1 |")
    assert len(lines) == 2 + len(CELLS)


def test_a_real_run_read_as_it_was_written(two_epochs):
    """The untouched run: a subset of CIFAR-10, so not the paper's cell; its figures are
    those of its log and checkpoint."""
    out, _ = two_epochs
    result = results(out)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2 + len(CELLS)] == HEADER + [empty_cell(*cell) for cell in CELLS]
    ckpt = load_checkpoint(out / "last.pth")
    last = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()][-1]
    env = ckpt["environment"]
    assert ckpt["split"]["protocol"] == "cifar10-official subset"
    assert lines[2 + len(CELLS):] == [
        f"| CIFAR-10 | cifar10-official subset | 32 | {MODEL} | 2 / 2 | {last['mAP']:.4f} (mAP@1000, epoch 2) "
        f"| {ckpt['best_map']:.4f} (mAP@1000, epoch {ckpt['best_epoch']}) | 1 | {env['hardware']} "
        f"| {env['commit']} | {out.name} |"]


def test_a_folder_of_runs_and_folders_without_a_run(runs, tmp_path):
    """A folder holding run folders is read one level down, in name order; subfolders and
    folders without last.pth are skipped with a note; a run named twice is read once."""
    parent = tmp_path / "all"
    parent.mkdir()
    (parent / "b-run").symlink_to(runs["c32-seed1"], target_is_directory=True)
    (parent / "a-run").symlink_to(runs["n64"], target_is_directory=True)
    (parent / "plots").mkdir()
    (parent / "plots" / "log.jsonl").write_text("")
    empty = tmp_path / "empty"
    empty.mkdir()
    result = results(parent, empty, runs["n64"])
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [f"skipped {parent / 'plots'}: no last.pth",
                                          f"skipped {empty}: no last.pth in it or in its subfolders"]
    names = [line.split(" | ")[-1].rstrip(" |") for line in result.stdout.splitlines()[2:]]
    assert names == ["-", "b-run", "-", "-", "-", "-", "-", "-", "a-run"]


def test_no_run_at_all_leaves_every_cell_empty(tmp_path):
    result = results(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == HEADER + [empty_cell(*cell) for cell in CELLS]
    assert "no runs found" in result.stderr


def test_an_unreadable_checkpoint_is_one_line_and_status_1(runs, tmp_path):
    """As a process (python -m spq.results): a truncated last.pth stops the command with one
    `error:` line, no traceback, nothing on stdout."""
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(runs["c32-seed1"] / "log.jsonl", broken)
    with open(runs["c32-seed1"] / "last.pth", "rb") as f:
        (broken / "last.pth").write_bytes(f.read(4096))
    result = processes.run([sys.executable, "-m", "spq.results", str(runs["c32-seed2"]), str(broken)],
                           cwd=ROOT, timeout=120)
    assert_clean_failure(result, 1, f"error: cannot read checkpoint {broken / 'last.pth'}")
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_a_path_that_is_not_a_folder(tmp_path):
    result = results(tmp_path / "missing")
    assert_clean_failure(result, 1, f"error: {tmp_path / 'missing'} is not a folder")
    assert result.stdout == ""


def test_options_are_not_abbreviated(tmp_path):
    result = results("--pap", tmp_path)
    assert result.returncode == 2
    assert "unrecognized arguments: --pap" in result.stderr
