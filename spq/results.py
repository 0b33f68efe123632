"""The results table of training runs, in Markdown, as the README shows it:

    python -m spq.results RUN_DIR [RUN_DIR ...] [--paper]

A RUN_DIR is the --output_dir of a main_SPQ.py run, finished or not: its last.pth (read
with `spq.store.checkpoint.load_checkpoint`, which checks it) gives the options, the epochs done,
the best mAP and its epoch, the split (protocol, seed) and the environment (hardware,
commit); its log.jsonl gives the mAP of the last evaluation. A RUN_DIR may also be a
folder of run folders: those one level down that hold last.pth are read. A folder with no
last.pth is skipped, with a note on stderr; a checkpoint that cannot be read stops the
command with a one-line `error:` (exit status 1).

The table has one row for each cell of the paper's results table as this project's brief
describes it (not verified against a readable copy of the paper), always, in this order:
CIFAR-10 (split protocol cifar10-official, mAP@1000), FLICKR25K (flickr25k, mAP@5000) and
NUS-WIDE (nuswide21, mAP@5000), each at 16, 32 and 64 bits (bits = N_books x
log2(N_words)). A run fills a cell when its split's protocol, its bits and its --Top_N are
the cell's; several runs in one cell get a row each (in the order found: the
arguments' order, then name order within a folder of runs); a cell without a run says
`no run yet`. Every other run (another protocol, a subset such as `cifar10-official
subset`, folders, list files, another --Top_N) gets a row after the cells.

Columns: dataset | protocol | bits | model (the backbone and where its weights started, the
input size and resizing rule, the arithmetic) | epochs (done / asked) | mAP last (the last evaluation
in log.jsonl, with its mAP@N and epoch) | mAP best (the checkpoint's best, with its epoch) |
seed (the run's --seed; the split's seed too when it differs) | hardware | commit | run
(the folder's name). Checkpoints written before splits and environments were recorded
show `unknown` there. --paper adds the paper's figure for each cell where a source gives it
(`PAPER`: CIFAR-10 at 32 bits, 0.793, as the authors' issue #6 quotes the paper); `not
verified` elsewhere.

The table goes to stdout, notes to stderr.
"""
import argparse
import math
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import SPQError, exit_status
from .files.read import read_jsonl

LAST, BEST, LOG = "last.pth", "best.pth", "log.jsonl"
UNKNOWN = "unknown"
NO_RUN = "no run yet"

# the cells of the paper's table: (dataset, split protocol, top n of mAP@N, bits)
CELLS: Tuple[Tuple[str, str, int, int], ...] = tuple(
    (name, protocol, top_n, bits)
    for name, protocol, top_n in (("CIFAR-10", "cifar10-official", 1000),
                                  ("FLICKR25K", "flickr25k", 5000),
                                  ("NUS-WIDE", "nuswide21", 5000))
    for bits in (16, 32, 64))

# the paper's figures, only those a source gives (CIFAR-10 at 32 bits: "the 0.793 in the paper",
# the authors' issue #6; no readable copy of the paper's table was found); None: not verified,
# shown as such rather than guessed
PAPER: Dict[Tuple[str, int], Optional[float]] = {(protocol, bits): None for _, protocol, _, bits in CELLS}
PAPER[("cifar10-official", 32)] = 0.793

COLUMNS = ("dataset", "protocol", "bits", "model", "epochs", "mAP last", "mAP best", "seed", "hardware",
           "commit", "run")
DATASET_NAMES = {"cifar10": "CIFAR-10", "flickr25k": "FLICKR25K", "nuswide21": "NUS-WIDE"}


@dataclass
class Run:
    """What the table shows of one run folder."""
    folder: Path
    name: str                        # the folder's name, and a mark when its log disagrees
    dataset: str
    protocol: str                    # the split's protocol, or UNKNOWN
    bits: Optional[int]
    model: str                       # the network, its input and arithmetic, in words
    top_n: Optional[int]             # --Top_N (0: the whole gallery), or None when unknown
    epochs_done: int
    epochs_asked: Optional[int]
    last: Optional[Dict]             # the last evaluation row of the log, or None
    best_map: Optional[float]
    best_epoch: Optional[int]
    seed: str
    hardware: str
    commit: str

    def cells(self) -> Dict[str, str]:
        asked = "?" if self.epochs_asked is None else str(self.epochs_asked)
        if self.last is None:
            last = "not evaluated"
        else:
            top = self.last.get("top_n", self.top_n)
            last = f"{self.last['mAP']:.4f} ({at(top)}, epoch {self.last['epoch']})"
        if self.best_map is None:
            best = "not evaluated"
        else:
            where = "?" if self.best_epoch is None else self.best_epoch
            best = f"{self.best_map:.4f} ({at(self.top_n)}, epoch {where})"
        return {"dataset": self.dataset, "protocol": self.protocol,
                "bits": "?" if self.bits is None else str(self.bits), "model": self.model,
                "epochs": f"{self.epochs_done} / {asked}", "mAP last": last, "mAP best": best,
                "seed": self.seed, "hardware": self.hardware, "commit": self.commit,
                "run": self.name}


def at(top_n) -> str:
    """mAP@N as the run measured it: N, or all (Top_N 0), or ? when unknown."""
    if top_n is None:
        return "mAP@?"
    return f"mAP@{top_n or 'all'}"


def _int(value) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _map(value) -> Optional[float]:
    """A mAP as a float, or None when it is not a number within 0..1."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok and 0 <= value <= 1 else None


def epoch_rows(rows: List[Dict], done: int) -> List[Dict]:
    """Log rows as the table reads them: those of epochs 1..done, each epoch once (its first
    row), in epoch order."""
    found: Dict[int, Dict] = {}
    for row in rows:
        epoch = _int(row.get("epoch"))
        if epoch is not None and 1 <= epoch <= done and epoch not in found:
            found[epoch] = row
    return [found[e] for e in sorted(found)]


def read_run(folder: Path) -> Run:
    """The table's view of the run in `folder` (which holds last.pth), from its checkpoint
    (read and checked, its checksum covering every value): the log rows it carries, its best
    mAP and epoch, its options, split and environment. log.jsonl is read only for a
    checkpoint written before checkpoints carried their log rows, and compared with them
    otherwise: a run whose log.jsonl disagrees is marked. SPQError when the checkpoint
    cannot be read."""
    from .method.quantization import code_bits          # torch: only where a checkpoint is read
    from .options.values import what_ran, what_ran_text
    from .store.checkpoint import load_checkpoint
    ckpt = load_checkpoint(folder / LAST)
    args = ckpt["args"]
    done = ckpt["epoch"]
    logged = epoch_rows(read_jsonl(folder / LOG), done)
    rows = ckpt["log"] if "log" in ckpt else logged
    disagrees = "log" in ckpt and rows != logged
    evaluations = [r for r in rows if _map(r.get("mAP")) is not None]
    last = evaluations[-1] if evaluations else None

    books, words = _int(args.get("N_books")), _int(args.get("N_words"))
    bits = code_bits(books, words) if books and words else _int((last or {}).get("bits"))
    top_n = _int(args.get("Top_N"))
    if top_n is None and last is not None:
        top_n = _int(last.get("top_n"))

    split = ckpt.get("split")
    protocol = split["protocol"] if isinstance(split, dict) else UNKNOWN
    base = protocol.split()[0] if protocol != UNKNOWN else None
    kind = args.get("dataset", "cifar10")
    dataset = DATASET_NAMES.get(base) or DATASET_NAMES.get(kind) or str(kind)
    if base and base.startswith("cifar10"):
        dataset = "CIFAR-10"

    seed = str(args["seed"]) if _int(args.get("seed")) is not None else UNKNOWN
    if isinstance(split, dict) and split.get("seed") is not None and str(split["seed"]) != seed:
        seed += f" (split {split['seed']})"
    env = ckpt.get("environment") or {}

    best_map = _map(ckpt["best_map"])
    best_epoch = _int(ckpt.get("best_epoch"))
    if best_map is not None and best_epoch is None:
        best_epoch = best_epoch_of(folder, rows, best_map)
    name = folder.name + (" (its log.jsonl differs from last.pth, whose figures are shown)" if disagrees else "")
    return Run(folder, name, dataset, protocol, bits, what_ran_text(what_ran(args)), top_n, done,
               _int(args.get("epochs")), last, best_map, best_epoch, seed, env.get("hardware", UNKNOWN),
               env.get("commit", UNKNOWN))


def best_epoch_of(folder: Path, rows: List[Dict], best_map: float) -> Optional[int]:
    """The epoch of the best mAP for checkpoints older than their best_epoch: the first
    logged evaluation that measured it, else the epoch best.pth was saved after."""
    for row in rows:
        if _map(row.get("mAP")) is not None and abs(row["mAP"] - best_map) <= 1e-12:
            return row["epoch"]
    if (folder / BEST).is_file():
        from .store.checkpoint import load_checkpoint
        return load_checkpoint(folder / BEST)["epoch"]
    return None


def run_folders(paths: Sequence[str], note) -> List[Path]:
    """The run folders the arguments name: each argument holding last.pth, else its
    subfolders holding one (in name order); folders with none are noted and skipped. A
    folder named twice is read once."""
    found: List[Path] = []
    for name in paths:
        path = Path(name)
        if not path.is_dir():
            raise SPQError(f"{path} is not a folder: pass the --output_dir of a training run, "
                           f"or a folder of them")
        if (path / LAST).is_file():
            candidates = [path]
        else:
            subfolders = sorted(p for p in path.iterdir() if p.is_dir())
            candidates = [p for p in subfolders if (p / LAST).is_file()]
            if not candidates:
                note(f"skipped {path}: no {LAST} in it or in its subfolders")
            else:
                for p in subfolders:
                    if p not in candidates:
                        note(f"skipped {p}: no {LAST}")
        for p in candidates:
            if p.resolve() not in {q.resolve() for q in found}:
                found.append(p)
    return found


def cell_of(run: Run) -> Optional[Tuple[str, str, int, int]]:
    for cell in CELLS:
        if (run.protocol, run.top_n, run.bits) == (cell[1], cell[2], cell[3]):
            return cell
    return None


def table(runs: Sequence[Run], paper: bool = False) -> str:
    """The Markdown table: a row per cell of the paper's table (a row per run in it, or
    `no run yet`), then a row per other run."""
    columns = list(COLUMNS)
    if paper:
        columns.insert(columns.index("mAP best") + 1, "paper")
    rows: List[Dict[str, str]] = []
    placed = set()
    for cell in CELLS:
        name, protocol, top_n, bits = cell
        figure = PAPER[(protocol, bits)]
        paper_text = "not verified" if figure is None else f"{figure:.3f}"
        inside = [r for r in runs if cell_of(r) == cell]
        for run in inside:
            placed.add(id(run))
            rows.append({**run.cells(), "dataset": name, "paper": paper_text})
        if not inside:
            rows.append({**{c: "-" for c in COLUMNS}, "dataset": name, "protocol": protocol,
                         "bits": str(bits), "mAP last": NO_RUN, "mAP best": NO_RUN,
                         "paper": paper_text})
    for run in runs:
        if id(run) not in placed:
            rows.append({**run.cells(), "paper": "-"})
    lines = [markdown_row(columns), markdown_row(["---"] * len(columns))]
    lines += [markdown_row([row[c] for c in columns]) for row in rows]
    return "\n".join(lines)


# Characters escaped in a cell: HTML's, and Markdown's link, code and table syntax.
ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "\\\\", "|": "\\|", "[": "\\[", "]": "\\]",
           "`": "\\`"}


def cell(value) -> str:
    """A value as one Markdown table cell: every control or line-breaking character (CR, LF,
    tab, U+2028, ...) a space, and the characters of HTML, links, code and tables escaped,
    so that no text a run recorded can end the row, add a row, or become markup."""
    text = "".join(" " if (unicodedata.category(c)[0] in "CZ" and c != " ") else c for c in str(value))
    return "".join(ESCAPES.get(c, c) for c in text)


def markdown_row(values: Sequence[str]) -> str:
    return "| " + " | ".join(cell(v) for v in values) + " |"


def main(argv=None) -> int:
    p = argparse.ArgumentParser("python -m spq.results", allow_abbrev=False, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="the --output_dir of a main_SPQ.py run, or a folder of such folders")
    p.add_argument("--paper", action="store_true",
                   help="add a column with the paper's figure for each cell, where a source gives it "
                        "(the authors' issue #6 quotes 0.793 for CIFAR-10 at 32 bits)")
    args = p.parse_args(argv)

    def work():
        def note(line):
            print(line, file=sys.stderr)
        runs = [read_run(folder) for folder in run_folders(args.run_dirs, note)]
        if not runs:
            note("no runs found: every cell says no run yet")
        print(table(runs, args.paper))

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
