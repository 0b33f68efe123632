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
from pathlib import Path
from typing import Dict, List

from .fileio import atomic_write
from .errors import SPQError, exit_status

DPI = 110


def read_log(path: Path) -> List[Dict]:
    """The records of a log.jsonl; SPQError naming the file (and line) when unusable."""
    if not path.is_file():
        raise SPQError(f"{path} does not exist: pass the --output_dir of a training run")
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
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


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    plt.close(fig)
    return path


def draw(output_dir) -> List[Path]:
    """Draw every picture the run's files allow; returns the paths written."""
    out = Path(output_dir)
    records = read_log(out / "log.jsonl")
    plt = _pyplot()
    written = []

    fig, ax = plt.subplots(figsize=(6, 3.6))
    epochs = [r["epoch"] for r in records]
    ax.plot(epochs, [r["loss"] for r in records], marker="o", markersize=3, label="loss")
    ax.set(xlabel="epoch", ylabel="cross quantized contrastive loss", title="training loss")
    if all("lr" in r for r in records):
        lr = ax.twinx()
        lr.plot(epochs, [r["lr"] for r in records], color="C7", linestyle="--", label="learning rate")
        lr.set_ylabel("learning rate", color="C7")
    written.append(_save(plt, fig, out / "loss.png"))

    evals = [r for r in records if "mAP" in r]
    if evals:
        fig, ax = plt.subplots(figsize=(6, 3.6))
        ax.plot([r["epoch"] for r in evals], [r["mAP"] for r in evals], marker="o", color="C1")
        best = max(evals, key=lambda r: r["mAP"])
        ax.plot([best["epoch"]], [best["mAP"]], marker="*", markersize=14, color="C3", linestyle="",
                label=f"best {best['mAP']:.4f} (epoch {best['epoch']})")
        ax.legend(loc="lower right")
        top = evals[-1].get("top_n") or "all"
        ax.set(xlabel="epoch", ylabel=f"mAP@{top}",
               title=f"retrieval mAP ({evals[-1].get('bits', '?')} bits)")
        written.append(_save(plt, fig, out / "map.png"))

    result_path = out / "retrieval.json"
    if result_path.is_file():
        try:
            result = json.loads(result_path.read_text())
            pr, at_k = result["precision_recall"], result["precision_at_k"]
            recall, precision = pr["recall"], pr["precision"]
            ks = sorted(int(k) for k in at_k)
            values = [at_k[str(k)] for k in ks]
            title = f"{result['bits']} bits, epoch {result['epoch']}"
        except (ValueError, KeyError, TypeError):
            raise SPQError(f"{result_path} is not a retrieval.json of main_SPQ.py --eval_only") from None
        fig, ax = plt.subplots(figsize=(4.8, 4.2))
        ax.plot(recall, precision, marker="o", markersize=3, color="C2")
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02),
               title=f"precision-recall ({title})")
        written.append(_save(plt, fig, out / "precision_recall.png"))
        fig, ax = plt.subplots(figsize=(4.8, 4.2))
        ax.plot(ks, values, marker="o", color="C3")
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
