"""A digest of what a fixed set of small runs write, to show that a change of the code's
shape left its behaviour alone.

    python tests/behaviour_digest.py OUT.json      # run on one checkout
    python tests/behaviour_digest.py --compare A.json B.json

The runs go through the command lines only (`python main_SPQ.py`, `python -m spq.index`,
`spq.export`, `spq.split`, `spq.prepare`, `spq.results`), in processes of their own, so the
same script serves any version of the code: two epochs with evaluation, a resume,
--eval_only, a folder dataset, a list dataset with the non-default method options, an index
build, an export, a custom split of a list, both datasets' list files from replicas of
their official layouts, and the results table. The digest keeps every log row (without its
seconds), the SHA-256 of every tensor of every checkpoint with its non-tensor values,
retrieval.json (without seconds and paths), the index codes, the SHA-256 of every other file
written, and what the results table printed; the folder it ran in, the machine and the
commit (a checkpoint's environment record) are left out. Not a test: a tool for
refactorings (docs/testing.md).
"""
import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from cifar_fixture import write_cifar10  # noqa: E402
from folder_fixture import write_folder  # noqa: E402
from prepare_fixture import flickr_raw, nus_raw  # noqa: E402

SMALL = ["--device", "cpu", "--batch_size", "16", "--seed", "1", "--input_size", "16"]
TIMES = {"seconds", "eval_seconds"}
MACHINE = {"environment"}              # hardware, torch version, commit: not behaviour
# hashes of what holds the work folder's paths or the machine's record (a split.json's
# content hash covers its source path; export.json hashes the checkpoint file)
DERIVED = {"content_sha256", "sha256"}
WORK = "<work>"                        # the temporary folder the runs write into


def run(*argv, module=None) -> str:
    """The command's standard output; SystemExit when it fails."""
    command = [sys.executable, *(["-m", module] if module else [str(ROOT / "main_SPQ.py")]), *map(str, argv)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return done.stdout


def tensor_hash(t: torch.Tensor) -> str:
    return f"{t.dtype} {tuple(t.shape)} " + hashlib.sha256(t.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes()
                                                           if t.numel() else b"").hexdigest()[:16]


def plain(value, work: str = ""):
    """Tensors as hashes, everything else as it is, minus times, the machine's record and
    absolute paths (the work folder inside a string becomes WORK)."""
    if isinstance(value, torch.Tensor):
        return tensor_hash(value)
    if isinstance(value, dict):
        return {str(k): plain(v, work) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
                if str(k) not in TIMES | MACHINE | DERIVED}
    if isinstance(value, (list, tuple)):
        return [plain(v, work) for v in value]
    if isinstance(value, str) and value.startswith("/"):
        return "<path>"
    if isinstance(value, str) and work:
        return value.replace(work, WORK)
    return value


def digest_folder(out: Path, work: str) -> dict:
    d = {}
    for path in sorted(out.iterdir()):
        if path.suffix == ".pth" or path.suffix == ".index":
            d[path.name] = plain(torch.load(path, weights_only=True), work)
        elif path.name == "log.jsonl":
            d[path.name] = [plain(json.loads(line), work) for line in path.read_text().splitlines()]
        elif path.suffix == ".json":
            d[path.name] = plain(json.loads(path.read_text()), work)
        elif path.is_file():
            d[path.name] = hashlib.sha256(path.read_bytes().replace(work.encode(), WORK.encode())).hexdigest()[:16]
    return d


def write_list_files(root: Path, folder: Path) -> list:
    """train.txt and query.txt over the folder dataset's images, 3 labels (one-hot by class)."""
    files = []
    for split, name in [("train", "train.txt"), ("test", "query.txt")]:
        lines = []
        for image in sorted((folder / split).rglob("*")):
            if image.is_file() and image.suffix.lower() in (".jpg", ".png", ".jpeg", ".bmp", ".webp") \
                    and image.name != "broken.jpg":
                c = int(image.relative_to(folder / split).parts[0].split("_")[1])
                lines.append(f"{image.relative_to(folder).as_posix()} " + " ".join(
                    "1" if i == c else "0" for i in range(3)))
        (root / name).write_text("\n".join(lines) + "\n")
        files.append(root / name)
    return files


def collect(work: Path) -> dict:
    cifar = write_cifar10(work / "cifar", per_batch=8, test=20)
    folder = Path(write_folder(work / "folder", train=6, test=2))
    train_list, query_list = write_list_files(work, folder)
    runs = work / "runs"
    run("--data_dir", cifar, "--output_dir", runs / "two", "--epochs", 2, "--eval_epoch", 1, *SMALL)
    run("--data_dir", cifar, "--output_dir", runs / "resumed", "--epochs", 1, "--eval_epoch", 1, *SMALL)
    run("--resume", "auto", "--output_dir", runs / "resumed", "--epochs", 2)
    run("--resume", runs / "two" / "best.pth", "--eval_only", "--output_dir", runs / "eval")
    run("--dataset", "folder", "--data_dir", folder, "--output_dir", runs / "folder", "--epochs", 1,
        "--num_workers", 0, *SMALL)
    run("--dataset", "list", "--data_dir", folder, "--train_list", train_list, "--query_list", query_list,
        "--num_cls", 3, "--output_dir", runs / "list", "--epochs", 2, "--eval_epoch", 1, "--num_workers", 0,
        "--lr_schedule", "cosine", "--augment", "simclr", "--N_books", 4, "--N_words", 8, "--L_word", 8,
        "--contrastive_temperature", 0.3, "--soft_quantization_scale", 3, "--lr", 1e-3,
        "--weight_decay", 1e-4, "--freeze_bn_after_eval", *SMALL)
    (runs / "index").mkdir()
    run("build", "--checkpoint", runs / "two" / "best.pth", "--data_dir", cifar,
        "--out", runs / "index" / "cifar.index", module="spq.index")
    run("--checkpoint", runs / "list" / "last.pth", "--dataset", "list", "--data_dir", folder,
        "--train_list", train_list, "--num_cls", 3, "--descriptors", "--num_workers", 0,
        "--out", runs / "export", "--device", "cpu", module="spq.export")
    run("custom", runs / "split", "--list", train_list, "--data_dir", folder, "--num_cls", 3,
        "--query", 6, "--train", 8, "--seed", 2, module="spq.split")
    run("flickr25k", flickr_raw(work / "flickr"), runs / "flickr", module="spq.prepare")
    run("nuswide", nus_raw(work / "nus"), runs / "nuswide", module="spq.prepare")
    table = run(runs / "two", runs / "list", runs / "folder", module="spq.results")
    digest = {name.name: digest_folder(name, str(work)) for name in sorted(runs.iterdir())}
    for value in torch.load(runs / "two" / "last.pth", weights_only=True).get("environment", {}).values():
        table = table.replace(value, "<machine>")              # the hardware and commit columns
    return {**digest, "results table": table.replace(str(work), WORK).splitlines()}


def compare(a: Path, b: Path) -> int:
    da, db = json.loads(a.read_text()), json.loads(b.read_text())
    differences = []

    def walk(x, y, where):
        if isinstance(x, dict) and isinstance(y, dict):
            for k in sorted((set(x) | set(y)) - DERIVED):
                if k not in x or k not in y:
                    differences.append(f"{where}/{k}: only in {'B' if k not in x else 'A'}")
                else:
                    walk(x[k], y[k], f"{where}/{k}")
        elif isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            for i, (u, v) in enumerate(zip(x, y)):
                walk(u, v, f"{where}[{i}]")
        elif x != y:
            differences.append(f"{where}: {x!r} != {y!r}")

    walk(da, db, "")
    print("\n".join(differences) or "identical")
    return 1 if differences else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", nargs="?")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A", "B"))
    args = p.parse_args()
    if args.compare:
        return compare(*args.compare)
    with tempfile.TemporaryDirectory() as work:
        digest = collect(Path(work))
    Path(args.out).write_text(json.dumps(digest, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
