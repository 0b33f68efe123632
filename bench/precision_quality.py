"""Does bf16 train the same model as fp32? Short real-data runs in both, side by side; one JSON line.

    python bench/precision_quality.py --data_dir CIFAR [--seeds 0 1 2] [--epochs 4]
        [--train_per_class 200] [--query_per_class 100] [--precision fp32 bf16] [--device cpu]

For each seed and precision, `main_SPQ.py` trains from scratch on the first
--train_per_class training images of each CIFAR-10 class (the gallery) and is evaluated
every epoch on the first --query_per_class test images of each class (mAP@1000, ADC),
the authors' options otherwise. Reports per epoch the mean and standard deviation over
seeds of the loss and mAP of each precision, and the differences (bf16 - fp32) with the
seed-to-seed deviation they are to be read against. Then the fp32 model of the first seed
is encoded again in each precision (the Python API's `precision`): mAP of one model
encoded in each precision. The runs are kept under --out; a complete one found there is
read, not trained again.
"""
import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import main_SPQ  # noqa: E402
from spq.data.cifar10 import load_cifar10  # noqa: E402
from spq.run.environment import environment  # noqa: E402
from spq.options.values import EvalOptions  # noqa: E402
from spq.run.evaluation import measure  # noqa: E402
from spq.data.imageset import first_per_class  # noqa: E402
import spq  # noqa: E402
import torch  # noqa: E402


def train(data_dir, out, seed, precision, a):
    log = Path(out) / "log.jsonl"
    if log.is_file():                      # a complete run of an earlier call: read, not trained again
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        if len(rows) == a.epochs:
            return rows
    argv = ["--data_dir", data_dir, "--output_dir", out, "--epochs", a.epochs, "--eval_epoch", 1,
            "--seed", seed, "--precision", precision, "--device", a.device,
            "--train_per_class", a.train_per_class, "--query_per_class", a.query_per_class]
    code = main_SPQ.main([str(x) for x in argv])
    if code:
        raise SystemExit(f"the {precision} run of seed {seed} failed (exit {code})")
    return [json.loads(line) for line in (Path(out) / "log.jsonl").read_text().splitlines()]


def summary(values):
    return {"mean": round(statistics.mean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data_dir", required=True, help="a folder holding cifar-10-batches-py")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--train_per_class", type=int, default=200)
    ap.add_argument("--query_per_class", type=int, default=100)
    ap.add_argument("--precision", nargs=2, default=["fp32", "bf16"], metavar=("BASE", "OTHER"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=None, help="where the runs are kept (default: a temporary folder)")
    a = ap.parse_args()
    root = Path(a.out or tempfile.mkdtemp(prefix="spq-precision-"))
    logs = {p: [] for p in a.precision}
    for seed in a.seeds:
        for p in a.precision:
            logs[p].append(train(a.data_dir, root / f"{p}-seed{seed}", seed, p, a))
    epochs = []
    base, other = a.precision
    for e in range(a.epochs):
        row = {"epoch": e + 1}
        for key in ("loss", "mAP"):
            for p in a.precision:
                row[f"{key}_{p}"] = summary([log[e][key] for log in logs[p]])
            diffs = [o[e][key] - b[e][key] for b, o in zip(logs[base], logs[other])]
            row[f"{key}_{other}_minus_{base}"] = summary(diffs)
        epochs.append(row)

    # one model, encoded in each precision
    model_path = root / f"{base}-seed{a.seeds[0]}" / "last.pth"
    cifar = load_cifar10(a.data_dir)
    gallery = first_per_class(cifar.train_labels, a.train_per_class)
    queries = first_per_class(cifar.query_labels, a.query_per_class)
    encoded = {}
    for p in a.precision:
        model = spq.load(model_path, device=a.device, precision=p)
        encoded[p] = round(measure(model.network, (cifar.train_images[gallery], cifar.train_labels[gallery]),
                                   (cifar.query_images[queries], cifar.query_labels[queries]), model.input_size,
                                   EvalOptions(1, 1000, "adc", "euclidean"), p), 4)
    print(json.dumps({"bench": "precision_quality", "environment": environment(torch.device(a.device)),
                      "seeds": a.seeds, "epochs": epochs,
                      "one_model_encoded": {"checkpoint": str(model_path), **encoded},
                      "runs": str(root)}))


if __name__ == "__main__":
    main()
