"""Pictures of a run, drawn from what it wrote:

    python -m spq.plot OUTPUT_DIR

writes, next to OUTPUT_DIR/log.jsonl:
  loss.png              training loss (and learning rate) per epoch
  map.png               mAP@Top_N at each evaluation (when the log has evaluations)
and, when OUTPUT_DIR/retrieval.json exists (`main_SPQ.py --resume CKPT --eval_only`):
  precision_recall.png  precision against recall over the rank cut-offs
  precision_at_k.png    precision@k against k

Needs matplotlib, an optional dependency (pip install matplotlib).
"""
import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

from .errors import SPQError, exit_status
from .files.read import read_json, read_lines
from .files.write import atomic_write

DPI = 110


def read_log(path: Path) -> List[Dict]:
    """The epoch records of a log.jsonl (its header line, what the run trains, is skipped);
    SPQError naming the file (and line) when unusable."""
    records = []
    lines = read_lines(path, "log", "the log", remedy=": pass the --output_dir of a training run")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if number == 1 and isinstance(record, dict) and set(record) == {"run"}:
                continue
            float(record["epoch"]), float(record["loss"])
        except (ValueError, KeyError, TypeError):
            raise SPQError(f"{path}, line {number}: not a record of main_SPQ.py's log") from None
        records.append(record)
    if not records:
        raise SPQError(f"{path} holds no epochs yet: nothing to draw")
    return records


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise SPQError("python -m spq.plot needs matplotlib, an optional dependency of SPQ: "
                       "pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def whole_epochs(plt, ax) -> None:
    """Epoch ticks at whole numbers only (a 3-epoch run is not labelled 1.25, 1.5, ...)."""
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    plt.close(fig)
    return path


@dataclass
class Curve:
    """One line of a picture: its points and its label."""
    x: List[float]
    y: List[float]
    label: str


def curves(output_dir) -> Dict[str, List[Curve]]:
    """What each picture shows, read from the run's files: {file name: its curves}. loss.png:
    the loss per epoch, then the learning rate (when logged); map.png: mAP at each
    evaluation; with retrieval.json, precision_recall.png (precision against recall) and
    precision_at_k.png (precision@k against k)."""
    out = Path(output_dir)
    records = read_log(out / "log.jsonl")
    epochs = [r["epoch"] for r in records]
    found = {"loss.png": [Curve(epochs, [r["loss"] for r in records], "loss")]}
    if all("lr" in r for r in records):
        found["loss.png"].append(Curve(epochs, [r["lr"] for r in records], "learning rate"))
    evals = [r for r in records if "mAP" in r]
    if evals:
        found["map.png"] = [Curve([r["epoch"] for r in evals], [r["mAP"] for r in evals], "mAP")]
    result_path = out / "retrieval.json"
    if result_path.is_file():
        try:
            result = read_json(result_path, "json", "the evaluation")
            pr, at_k = result["precision_recall"], result["precision_at_k"]
            ks = sorted(int(k) for k in at_k)
            found["precision_recall.png"] = [Curve(pr["recall"], pr["precision"], "precision-recall")]
            found["precision_at_k.png"] = [Curve(ks, [at_k[str(k)] for k in ks], "precision@k")]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SPQError(f"{result_path} is not a retrieval.json of main_SPQ.py --eval_only") from None
    return found


def draw(output_dir) -> List[Path]:
    """Draw every picture the run's files allow (`curves`); returns the paths written."""
    out = Path(output_dir)
    found = curves(out)
    records = read_log(out / "log.jsonl")
    plt = _pyplot()
    written = []

    fig, ax = plt.subplots(figsize=(6, 3.6))
    loss = found["loss.png"][0]
    ax.plot(loss.x, loss.y, marker="o", markersize=3, label=loss.label)
    ax.set(xlabel="epoch", ylabel="cross quantized contrastive loss", title="training loss")
    whole_epochs(plt, ax)
    if len(found["loss.png"]) > 1:
        lr = found["loss.png"][1]
        twin = ax.twinx()
        twin.plot(lr.x, lr.y, color="C7", linestyle="--", label=lr.label)
        twin.set_ylabel("learning rate", color="C7")
    written.append(_save(plt, fig, out / "loss.png"))

    if "map.png" in found:
        m = found["map.png"][0]
        evals = [r for r in records if "mAP" in r]
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot(m.x, m.y, marker="o", color="C1")
        best = max(range(len(m.y)), key=lambda i: m.y[i])
        ax.plot([m.x[best]], [m.y[best]], marker="*", markersize=14, color="C3", linestyle="",
                label=f"best {m.y[best]:.4f} (epoch {m.x[best]})")
        ax.legend(loc="lower right")
        top = evals[-1].get("top_n") or "all"
        whole_epochs(plt, ax)
        ax.set(xlabel="epoch", ylabel=f"mAP@{top}",
               title=f"retrieval mAP ({evals[-1].get('bits', '?')} bits)")
        written.append(_save(plt, fig, out / "map.png"))

    if "precision_recall.png" in found:
        result = read_json(out / "retrieval.json", "json", "the evaluation")
        title = f"{result.get('bits', '?')} bits, epoch {result.get('epoch', '?')}"
        pr, at_k = found["precision_recall.png"][0], found["precision_at_k.png"][0]
        fig, ax = plt.subplots(figsize=(4.8, 4.2))
        ax.plot(pr.x, pr.y, marker="o", markersize=3, color="C2")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
               title=f"precision-recall ({title})")
        written.append(_save(plt, fig, out / "precision_recall.png"))
        fig, ax = plt.subplots(figsize=(4.8, 4.2))
        ax.plot(at_k.x, at_k.y, marker="o", color="C3")
        ax.set(xscale="log", xlabel="k (top k results)", ylabel="precision@k", ylim=(0, 1.02),
               title=f"precision@k ({title})")
        written.append(_save(plt, fig, out / "precision_at_k.png"))
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser("python -m spq.plot", description=__doc__.splitlines()[0] + " "
                                "the loss and mAP curves from log.jsonl and, when present, the "
                                "precision-recall and precision@k curves from retrieval.json, "
                                "as PNG files in the same folder.")
    p.add_argument("output_dir", help="the --output_dir of a main_SPQ.py run")
    args = p.parse_args(argv)

    def work():
        for path in draw(args.output_dir):
            print(f"wrote {path}")

    return exit_status(work)


if __name__ == "__main__":
    sys.exit(main())
