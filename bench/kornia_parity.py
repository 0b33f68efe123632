"""`--augment authors` against kornia 0.5.10 itself: the largest difference per op; one JSON line.

    pip install --no-deps --target .kornia-0.5.10 kornia==0.5.10
    python bench/kornia_parity.py --kornia_0510 .kornia-0.5.10

kornia 0.5.10 (the version of the authors' run) is imported in a child process from the
folder given (it runs on a current torch); the installed kornia stays in this one. The
child runs each op of the authors' pipeline, as their script configured it, on the same
seeded images and records its sampled parameters and outputs; this process replays
those parameters through spq.method.views's `authors` pipeline and reports the largest
absolute difference per op (images in [0, 1]). It also draws --draws crop sizes from
both sides (not paired) and from the installed kornia's RandomResizedCrop, and reports
how often a crop spans a full side and the mean crop area. Without kornia 0.5.10 in the
folder it prints {"skipped": reason} and exits 0.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

SIZE = 32
OPS = ("crop", "flip", "jitter", "grayscale", "blur")


def images(batch: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def crop_stats(height: torch.Tensor, width: torch.Tensor) -> dict:
    full = ((height == SIZE) | (width == SIZE)).float().mean().item()
    return {"full_side_fraction": round(full, 5),
            "mean_area_fraction": round((height * width).float().mean().item() / SIZE ** 2, 4)}


def reference(out: str, batch: int, seed: int, draws: int) -> None:
    """Child process: kornia 0.5.10's ops, their parameters and outputs, saved to `out`."""
    import kornia
    import kornia.augmentation as K
    assert kornia.__version__ == "0.5.10", kornia.__version__
    k = int(0.1 * SIZE)                     # the authors' kernel: (int(0.1 * sz),) * 2
    ops = {"crop": K.RandomResizedCrop((SIZE, SIZE)), "flip": K.RandomHorizontalFlip(p=0.5),
           "jitter": K.ColorJitter(0.4, 0.4, 0.4, 0.1, p=0.8), "grayscale": K.RandomGrayscale(p=0.2),
           "blur": K.RandomGaussianBlur((k, k), (0.1, 2.0), p=0.5)}
    x = images(batch, seed)
    record = {"version": kornia.__version__}
    for i, (name, op) in enumerate(ops.items()):
        torch.manual_seed(seed + i)
        y = op(x)
        record[name] = {"output": y, "params": dict(op._params)}
    torch.manual_seed(seed)
    size = K.RandomResizedCrop((SIZE, SIZE)).generate_parameters(torch.Size([draws, 3, SIZE, SIZE]))
    src = size["src"]
    record["crop_sizes"] = (src[:, 3, 1] - src[:, 0, 1] + 1, src[:, 1, 0] - src[:, 0, 0] + 1)
    torch.save(record, out)


def replay(record: dict, x: torch.Tensor) -> dict:
    """This process: the same parameters through spq.method.views's authors pipeline."""
    from spq.method.views import make_augmentation
    crop, flip, jitter, gray, blur = make_augmentation(SIZE, "authors")
    b = x.shape[0]
    shape = torch.tensor(x.shape)
    ours = {}
    src = record["crop"]["params"]["src"].long()                       # (B, 4, 2) x, y corners
    ours["crop"] = crop.apply(x, {"top": src[:, 0, 1], "left": src[:, 0, 0],
                                  "height": src[:, 3, 1] - src[:, 0, 1] + 1,
                                  "width": src[:, 1, 0] - src[:, 0, 0] + 1})
    p = record["flip"]["params"]
    ours["flip"] = flip(x, params={"batch_prob": p["batch_prob"], "forward_input_shape": shape})
    p = record["jitter"]["params"]
    chosen = p["batch_prob"].bool()
    full = {"batch_prob": p["batch_prob"], "order": p["order"], "forward_input_shape": shape}
    for key, neutral in [("brightness_factor", 1.0), ("contrast_factor", 1.0),
                         ("saturation_factor", 1.0), ("hue_factor", 0.0)]:
        v = torch.full((b,), neutral)
        v[chosen] = p[key]                  # 0.5.10 keeps factors for the chosen images only
        full[key] = v
    try:
        ours["jitter"] = jitter(x, params=full)
    except RuntimeError:                    # kornia 0.7 also replays factors of the chosen images only
        ours["jitter"] = jitter(x, params={**full, **{k: p[k] for k in full if k.endswith("_factor")}})
    p = record["grayscale"]["params"]
    ours["grayscale"] = gray(x, params={"batch_prob": p["batch_prob"], "forward_input_shape": shape})
    ours["blur"] = blur.apply(x, {"batch_prob": record["blur"]["params"]["batch_prob"].bool()})
    return ours


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kornia_0510", default=os.environ.get("SPQ_KORNIA_0510", ".kornia-0.5.10"),
                    help="folder holding kornia 0.5.10 (pip install --no-deps --target FOLDER kornia==0.5.10)")
    ap.add_argument("--batch", type=int, default=512, help="images per op")
    ap.add_argument("--draws", type=int, default=200000, help="crop sizes drawn for the statistics")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", metavar="FILE", help=argparse.SUPPRESS)   # the child's mode
    a = ap.parse_args()
    if a.reference:
        reference(a.reference, a.batch, a.seed, a.draws)
        return 0
    folder = Path(a.kornia_0510)
    meta = list(folder.glob("kornia-0.5.10.dist-info"))
    if not (folder / "kornia" / "__init__.py").is_file() or not meta:
        print(json.dumps({"skipped": f"kornia 0.5.10 is not in {folder}; install it with "
                                     f"pip install --no-deps --target {folder} kornia==0.5.10"}))
        return 0
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root))
    import kornia
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "reference.pt"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder.resolve()), os.environ.get("PYTHONPATH", "")])}
        subprocess.run([sys.executable, __file__, "--reference", str(out), "--batch", str(a.batch),
                        "--draws", str(a.draws), "--seed", str(a.seed)], check=True, env=env,
                       stderr=subprocess.DEVNULL)
        record = torch.load(out, weights_only=False)
    x = images(a.batch, a.seed)
    ours = replay(record, x)
    diffs = {name: float((ours[name] - record[name]["output"]).abs().max()) for name in OPS}

    from spq.method.views import StrictResizedCrop
    torch.manual_seed(a.seed)
    p = StrictResizedCrop(SIZE).forward_parameters(torch.Size([a.draws, 3, SIZE, SIZE]))
    torch.manual_seed(a.seed)
    import kornia.augmentation as K
    modern = K.RandomResizedCrop((SIZE, SIZE)).forward_parameters(torch.Size([a.draws, 3, SIZE, SIZE]))
    msrc = modern["src"]
    print(json.dumps({
        "kornia_reference": record["version"], "kornia_installed": kornia.__version__,
        "torch": torch.__version__, "batch": a.batch, "max_abs_difference": diffs,
        "crop_sizes": {"kornia_0.5.10": crop_stats(*record["crop_sizes"]),
                       "spq_authors": crop_stats(p["height"], p["width"]),
                       f"kornia_{kornia.__version__}": crop_stats(msrc[:, 3, 1] - msrc[:, 0, 1] + 1,
                                                                  msrc[:, 1, 0] - msrc[:, 0, 0] + 1)},
        "draws": a.draws}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
