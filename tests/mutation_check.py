"""Does the quick test subset catch plausible mistakes? A mutation check, as a habit.

    python tests/mutation_check.py [--only NAME ...] [--list]

Each mutant below changes one thing in a core module (the loss, quantization, ADC
search, retrieval metrics, schedules, augmentation, the step and its wiring) the way a
tired researcher might. For each, a copy of the tracked files gets the change and
`pytest -x -q -m "not slow"` runs there (the files the mutant names first, then the whole
quick subset); a mutant is caught when a test fails. Prints a line per mutant, then one
JSON line with the score and the survivors. Not part of the suite (a survivor costs a run
of the whole quick subset); docs/testing.md gives its last result.
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import processes

ROOT = Path(__file__).resolve().parents[1]

# (name, file, text, replacement, test files to run first)
MUTANTS = [
    # the loss
    ("loss: no self-mask", "spq/method/loss.py", "    logits = logits.masked_fill(self_mask, float(\"-inf\"))\n", "",
     ["tests/method/test_loss.py"]),
    ("loss: temperature multiplies", "spq/method/loss.py", "logits = v @ v.t() / temperature", "logits = v @ v.t() * temperature",
     ["tests/method/test_loss.py"]),
    ("loss: normalised over the batch", "spq/method/loss.py", "dim=1, eps=1e-8", "dim=0, eps=1e-8", ["tests/method/test_loss.py"]),
    ("loss: a view against its own quantization", "spq/method/loss.py",
     "_contrast(xa, zb, temperature) + _contrast(xb, za, temperature)",
     "_contrast(xa, za, temperature) + _contrast(xb, zb, temperature)", ["tests/method/test_loss.py"]),
    ("loss: mean over N, not 2N", "spq/method/loss.py", "temperature)) / (2 * n)", "temperature)) / n", ["tests/method/test_loss.py"]),
    # quantization
    ("soft quantization: softmax of +distance", "spq/method/quantization.py", "torch.softmax(-tau_q *", "torch.softmax(tau_q *",
     ["tests/method/test_quantization.py"]),
    ("soft quantization: softmax over books", "spq/method/quantization.py",
     "squared_distances(x, codebooks), dim=-1)", "squared_distances(x, codebooks), dim=1)", ["tests/method/test_quantization.py"]),
    ("distances: cross term once", "spq/method/quantization.py", "(sub_sq - 2 * cross + code_sq)", "(sub_sq - cross + code_sq)",
     ["tests/method/test_quantization.py"]),
    ("codes: farthest codeword", "spq/method/quantization.py", ".argmin(dim=-1)", ".argmax(dim=-1)",
     ["tests/method/test_quantization.py"]),
    ("books: interleaved sub-vectors", "spq/method/quantization.py", "return x.view(n, num_books, width // num_books)",
     "return x.view(n, width // num_books, num_books).transpose(1, 2)", ["tests/method/test_quantization.py"]),
    ("bits: M * K", "spq/method/quantization.py", "return num_books * word_bits(num_words)", "return num_books * num_words",
     ["tests/method/test_quantization.py"]),
    # ADC search
    ("ADC: squared where Euclidean", "spq/retrieval/distances.py", "return tables if distance == \"squared\" else tables.sqrt_()",
     "return tables", ["tests/retrieval/test_distances.py", "tests/retrieval/test_topk.py", "tests/retrieval/test_metrics.py"]),
    ("ADC: book offsets by M", "spq/retrieval/distances.py", "return codes.to(torch.int32) + books * num_words",
     "return codes.to(torch.int32) + books * codes.shape[1]", ["tests/retrieval/test_distances.py", "tests/retrieval/test_topk.py", "tests/retrieval/test_metrics.py"]),
    ("ADC: top k largest", "spq/retrieval/topk.py", "vals, idx = dist.topk(k + 1, dim=1, largest=False)",
     "vals, idx = dist.topk(k + 1, dim=1, largest=True)", ["tests/retrieval/test_distances.py", "tests/retrieval/test_topk.py", "tests/retrieval/test_metrics.py"]),
    ("ADC: one tie slot short", "spq/retrieval/topk.py", "(tied.cumsum(1) <= room)", "(tied.cumsum(1) < room)",
     ["tests/retrieval/test_distances.py", "tests/retrieval/test_topk.py", "tests/retrieval/test_metrics.py"]),
    # retrieval metrics
    ("AP: divided by the list length", "spq/retrieval/metrics.py", "return (precision * rel).sum(1) / rel.sum(1).clamp_min(1)",
     "return (precision * rel).sum(1) / rel.shape[1]", ["tests/retrieval/test_metrics.py"]),
    ("AP: precision before the hit", "spq/retrieval/metrics.py", "precision = rel.cumsum(1) / ranks",
     "precision = (rel.cumsum(1) - rel) / ranks", ["tests/retrieval/test_metrics.py"]),
    ("relevance: every label shared", "spq/retrieval/metrics.py", "q.bool().unsqueeze(1)).any(-1)", "q.bool().unsqueeze(1)).all(-1)",
     ["tests/retrieval/test_metrics.py", "tests/data/test_lists.py"]),
    ("mAP: top n ignored", "spq/retrieval/metrics.py", "    k = codes.shape[0] if top_n is None else top_n\n",
     "    k = codes.shape[0]\n", ["tests/retrieval/test_metrics.py"]),
    ("encoding: in train mode", "spq/run/encode.py", "    model.eval()\n    try:\n", "    try:\n",
     ["tests/run/test_main.py"]),
    # schedules
    ("schedule: 10 constant epochs", "spq/method/step.py", "AUTHORS_CONSTANT_EPOCHS = 11", "AUTHORS_CONSTANT_EPOCHS = 10",
     ["tests/method/test_schedule.py"]),
    ("schedule: cosine over steps", "spq/method/step.py", "CosineAnnealingLR(optimizer, T_max=epochs, eta_min=0)",
     "CosineAnnealingLR(optimizer, T_max=steps_per_epoch, eta_min=0)", ["tests/method/test_schedule.py"]),
    ("schedule: one epoch late", "spq/method/step.py", "epoch >= AUTHORS_CONSTANT_EPOCHS", "epoch > AUTHORS_CONSTANT_EPOCHS",
     ["tests/method/test_schedule.py"]),
    # augmentation
    ("crop: full-size crops kept", "spq/method/views.py", "(height < h_img) & (width > 0) & (width < w_img)",
     "(height <= h_img) & (width > 0) & (width <= w_img)", ["tests/method/test_views.py"]),
    ("blur: sigmas swapped", "spq/method/views.py",
     "torch.outer(gaussian_1d(kernel_size, sigma[0]), gaussian_1d(kernel_size, sigma[1]))",
     "torch.outer(gaussian_1d(kernel_size, sigma[1]), gaussian_1d(kernel_size, sigma[0]))", ["tests/method/test_views.py"]),
    ("jitter: applied at p 0.5", "spq/method/views.py", "K.ColorJiggle(0.4, 0.4, 0.4, 0.1, p=0.8)",
     "K.ColorJiggle(0.4, 0.4, 0.4, 0.1, p=0.5)", ["tests/method/test_views.py"]),
    ("simclr jitter: hue 0.2", "spq/method/views.py", "K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8)",
     "K.ColorJitter(0.4, 0.4, 0.4, 0.2, p=0.8)", ["tests/method/test_views.py"]),
    # the step and its wiring
    ("views: the same view twice", "spq/method/step.py", "view_a, view_b = augment(x), augment(x)",
     "view_a = view_b = augment(x)", ["tests/method/test_step.py"]),
    ("views: pixels in 0..255", "spq/method/step.py", "x = images.float().div_(255)", "x = images.float()",
     ["tests/method/test_step.py"]),
    ("step: gradients accumulate", "spq/method/step.py", "    optimizer.zero_grad(set_to_none=True)\n", "",
     ["tests/method/test_step.py"]),
    ("step: quantizations crossed twice", "spq/method/step.py",
     "cqc_loss(xa, xb, model.quantize(xa), model.quantize(xb), temperature)",
     "cqc_loss(xa, xb, model.quantize(xb), model.quantize(xa), temperature)", ["tests/method/test_step.py"]),
    ("wiring: t_q as the temperature", "spq/run/fit.py", "method.contrastive_temperature,",
     "method.soft_quantization_scale,", ["tests/run/test_wiring.py"]),
    ("wiring: precision dropped", "spq/run/loop.py", "temperature, runtime.precision, layout",
     "temperature, \"fp32\", layout", ["tests/run/test_wiring.py"]),
    ("wiring: weight decay dropped", "spq/run/fit.py", "lr=optim.lr, weight_decay=optim.weight_decay)",
     "lr=optim.lr)", ["tests/run/test_wiring.py"]),
    ("wiring: t_q fixed at 5", "spq/options/values.py", "method.L_word, method.soft_quantization_scale,",
     "method.L_word, 5.0,", ["tests/run/test_wiring.py"]),
    ("wiring: views from the default pipeline", "spq/run/fit.py",
     "make_augmentation(setup.input_size, method.augment)", "make_augmentation(setup.input_size)",
     ["tests/run/test_wiring.py"]),
    ("epoch: no shuffling", "spq/run/loop.py",
     "order = torch.randperm(images.shape[0], generator=shuffle)[:steps * batch_size]",
     "order = torch.arange(images.shape[0])[:steps * batch_size]", ["tests/run/test_wiring.py"]),
]


def run_quick_subset(tree: Path, first, timeout: int) -> bool:
    """Whether the quick subset fails in `tree` (the mutant is caught): the files the mutant
    names first, on their own (pytest given both a file and its folder runs the folder's
    order), then, if they pass, the whole quick subset."""
    for paths in (first, ["tests"]):
        command = [sys.executable, "-m", "pytest", "-x", "-q", "-m", "not slow", "-p", "no:cacheprovider", *paths]
        try:
            done = processes.run(command, cwd=tree, timeout=timeout)
        except subprocess.TimeoutExpired:
            return True                 # a mutant that hangs the suite is caught too
        if done.returncode != 0:
            return True
    return False


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", default=None, help="run only the mutants with these names")
    p.add_argument("--list", action="store_true", help="list the mutants and exit")
    p.add_argument("--timeout", type=int, default=1200, help="seconds per mutant")
    args = p.parse_args()
    chosen = [m for m in MUTANTS if args.only is None or m[0] in args.only]
    if args.list:
        print("\n".join(f"{m[0]}  ({m[1]})" for m in chosen))
        return 0
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    caught, survivors = 0, []
    with tempfile.TemporaryDirectory() as work:
        tree = Path(work) / "tree"
        for name in files:
            if (ROOT / name).is_file():
                (tree / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, tree / name)
        check = subprocess.run([sys.executable, "-c", "import spq; print(spq.__file__)"], cwd=tree,
                               capture_output=True, text=True)
        assert check.stdout.strip().startswith(str(tree)), f"the copy's spq is not the one imported: {check.stdout}"
        for name, path, text, replacement, first in chosen:
            original = (tree / path).read_text()
            if original.count(text) != 1:
                raise SystemExit(f"mutant {name!r}: its text occurs {original.count(text)} times in {path}")
            (tree / path).write_text(original.replace(text, replacement))
            t0 = time.time()
            killed = run_quick_subset(tree, first, args.timeout)
            (tree / path).write_text(original)
            caught += killed
            if not killed:
                survivors.append(name)
            print(f"{'caught  ' if killed else 'SURVIVED'} {name} ({path}, {time.time() - t0:.0f} s)", flush=True)
    print(json.dumps({"bench": "mutation_check", "mutants": len(chosen), "caught": caught,
                      "score": round(caught / max(len(chosen), 1), 3), "survivors": survivors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
