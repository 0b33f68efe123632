"""Draw figures/lr_schedules.png (needs matplotlib, which the project itself does not).

    python figures/make_figures.py lr

Pictures of a training run come from `python -m spq.plot OUTPUT_DIR`.
"""
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from spq.method.step import lr_per_epoch  # noqa: E402


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


if __name__ == "__main__":
    if sys.argv[1:2] == ["lr"]:
        draw_lr()
    else:
        sys.exit(__doc__)
