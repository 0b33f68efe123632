"""Draw the pictures in figures/ (needs matplotlib, which the project itself does not).

    python figures/make_figures.py lr                      # figures/lr_schedules.png
    python figures/make_figures.py run OUTPUT_DIR NAME     # figures/NAME.png from OUTPUT_DIR/log.jsonl
"""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from spq.schedule import lr_per_epoch  # noqa: E402


def pyplot():
    try:
        import matplotlib
    except ImportError:
        sys.exit("error: drawing figures needs matplotlib: pip install matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def draw_lr():
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.2))
    for kind in ["authors", "cosine"]:
        ax.plot(range(1, 2001), lr_per_epoch(kind, 2000, 195, 3e-4), label=f"--lr_schedule {kind}")
    ax.set(xlabel="epoch", ylabel="learning rate",
           title="LR per epoch, 2,000 epochs at batch 256 (195 steps per epoch)")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(HERE / "lr_schedules.png", dpi=110)


def draw_run(output_dir, name):
    plt = pyplot()
    records = [json.loads(l) for l in (Path(output_dir) / "log.jsonl").read_text().splitlines()]
    evals = [r for r in records if "mAP" in r]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    a.plot([r["epoch"] for r in records], [r["loss"] for r in records], marker="o")
    a.set(xlabel="epoch", ylabel="CQC loss", title="training loss")
    b.plot([r["epoch"] for r in evals], [r["mAP"] for r in evals], marker="o", color="C1")
    b.set(xlabel="epoch", ylabel=f"mAP@{evals[0]['top_n'] if evals else ''}",
          title=f"retrieval mAP ({evals[0]['bits'] if evals else '?'} bits)")
    fig.tight_layout()
    fig.savefig(HERE / f"{name}.png", dpi=110)


if __name__ == "__main__":
    if sys.argv[1:2] == ["lr"]:
        draw_lr()
    elif sys.argv[1:2] == ["run"] and len(sys.argv) == 4:
        draw_run(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
