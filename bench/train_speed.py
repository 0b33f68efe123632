"""Training throughput: the step main_SPQ.py uses, in each --precision side by side, against a
plain step; one JSON line.

    python bench/train_speed.py --device cpu --batch_size 64            # fp32 (and native bf16)
    python bench/train_speed.py --device cuda --precision bf16 --batch_size 256
    python bench/train_speed.py --device cpu --augment simclr --precision fp32

Random CIFAR-shaped uint8 images resident on the device. For each precision (default fp32
and bf16), after `--warmup` steps, times `--steps` real updates (both views, model, soft
quantization, loss, backward, Adam) of spq.method.step.training_step with that precision and its
memory layout (spq.run.device.memory_format: channels_last on CUDA and for bf16); the
precisions take turns for `--rounds` rounds and each reports its median round
(`--compile` adds each precision compiled with torch.compile, as main_SPQ.py --compile;
`--other_layout` each precision in the layout it does not use).
Then the plain step of tests/plain_step.py (fp32, contiguous, per-image augmentation,
broadcast loss). Images per second count images, not views. `flops_per_image`: the
step's floating-point operations per image (torch.utils.flop_counter: convolutions and
matrix products, forward and backward); `matmul_gflops`: what a 2048 x 2048 matrix
product reaches here in fp32 and bf16; `fraction_of_matmul_peak`: the step's GFLOP/s over
that of its precision. `views` times the two views of a batch alone (spq.method.step.make_views)
with both pipelines, `authors` and `simclr`, in the same run.
"""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))    # the plain reference step of the tests
from plain_step import plain_training_step  # noqa: E402
from spq.method.views import make_augmentation  # noqa: E402
from spq.method.network import SPQ  # noqa: E402
from spq.run.device import memory_format  # noqa: E402
from cpu_peak import DTYPES, NATIVE, count_flops, matmul_gflops, precisions, processor  # noqa: E402
from spq.method.step import make_scaler, make_views, training_step  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(step, images, batch_size, steps, warmup, device):
    """Images per second over `steps` steps after `warmup` steps, and peak CUDA memory."""
    gen = torch.Generator().manual_seed(0)
    batches = [images[torch.randint(0, len(images), (batch_size,), generator=gen).to(device)]
               for _ in range(warmup + steps)]
    for b in batches[:warmup]:
        step(b)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for b in batches[warmup:]:
        loss = step(b)
    loss.item()
    sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None
    return {"images_per_second": round(steps * batch_size / seconds, 2),
            "seconds_per_step": round(seconds / steps, 4), "peak_cuda_memory_mb": peak}


def time_views(images, batch_size, steps, device):
    """Milliseconds per batch to make both views, for each pipeline, alternating."""
    pipelines = {kind: make_augmentation(32, kind).to(device) for kind in ("authors", "simclr")}
    batch = images[:batch_size]
    seconds = {kind: [] for kind in pipelines}
    for repeat in range(steps + 1):
        for kind, augment in pipelines.items():
            sync(device)
            t0 = time.perf_counter()
            make_views(augment, batch)
            sync(device)
            if repeat:                      # the first round warms up
                seconds[kind].append(time.perf_counter() - t0)
    ms = {kind: round(1000 * sorted(s)[len(s) // 2], 3) for kind, s in seconds.items()}
    return {"median_ms_per_batch": ms, "simclr_over_authors": round(ms["simclr"] / ms["authors"], 3)}


def make_fast_step(device, precision, augment, compiled=False, layout=None):
    """training_step with a fresh model and optimizer, as main_SPQ.py builds them (`layout`:
    another memory layout than the precision's)."""
    layout = layout or memory_format(device, precision)
    model = SPQ().to(device, memory_format=layout)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-5)
    scaler = make_scaler(device, precision)
    forward = torch.compile(model) if compiled else None
    return lambda b: training_step(model, augment, b, opt, scaler, 0.5, precision, layout, forward)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    choices=["cpu", "cuda"])
    ap.add_argument("--precision", nargs="+", default=[NATIVE], choices=[NATIVE, *DTYPES],
                    help="the precisions timed side by side; native: fp32, and bf16 where the "
                         "device runs it natively (an emulated bf16 only when asked by name)")
    ap.add_argument("--batch_size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=1, help="rounds; each precision reports its median")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also time each precision with torch.compile")
    ap.add_argument("--peak_seconds", type=float, default=0.5,
                    help="length of each of the 3 timed windows of the matrix-product peak")
    ap.add_argument("--other_layout", action="store_true",
                    help="also time each precision in the memory layout it does not use")
    ap.add_argument("--augment", default="authors", choices=["authors", "simclr"],
                    help="the views of the timed training steps (main_SPQ.py --augment)")
    a = ap.parse_args()
    device = torch.device(a.device)
    a.precision = precisions(a.precision, device)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (max(4 * a.batch_size, 1024), 3, 32, 32), dtype=torch.uint8, device=device)
    augment = make_augmentation(32, a.augment).to(device)

    configs = {p: (p, False, None) for p in a.precision}
    if a.compile:
        configs.update({f"{p}+compile": (p, True, None) for p in a.precision})
    if a.other_layout:
        for p in a.precision:
            other = (torch.contiguous_format if memory_format(device, p) == torch.channels_last
                     else torch.channels_last)
            configs[f"{p}+{str(other).split('.')[-1]}"] = (p, False, other)
    steps = {name: make_fast_step(device, p, augment, c, l) for name, (p, c, l) in configs.items()}
    rounds = {name: [] for name in configs}
    for r in range(a.rounds):
        for name, step in steps.items():
            rounds[name].append(measure(step, images, a.batch_size, a.steps, a.warmup if r == 0 else 1, device))
    fast = {}
    for name, runs in rounds.items():
        best = sorted(runs, key=lambda m: m["images_per_second"])[len(runs) // 2]
        fast[name] = {**best, "rounds_images_per_second": [m["images_per_second"] for m in runs]}

    flops = count_flops(lambda: make_fast_step(device, "fp32", augment)(images[:a.batch_size])) / a.batch_size
    peak = {p: matmul_gflops(device, DTYPES[p], seconds=a.peak_seconds) for p in sorted(set(a.precision))}
    for name, (p, _, _) in configs.items():
        fast[name]["gflops_per_second"] = round(flops * fast[name]["images_per_second"] / 1e9, 1)
        fast[name]["fraction_of_matmul_peak"] = round(fast[name]["gflops_per_second"] / peak[p], 4)

    model = SPQ().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-5)
    plain = measure(lambda b: plain_training_step(model, augment, b, opt, 0.5),
                    images, a.batch_size, a.steps, a.warmup, device)
    first = a.precision[0]
    out = {"device": processor(device), "batch_size": a.batch_size, "augment": a.augment,
           "steps": a.steps, "rounds": a.rounds, "fast": fast,
           "plain": {"precision": "fp32", **plain},
           "flops_per_image": round(flops), "matmul_gflops": peak,
           "views": time_views(images, a.batch_size, a.steps, device),
           "speedup_vs_plain": {name: round(m["images_per_second"] / plain["images_per_second"], 2)
                                for name, m in fast.items()}}
    if len(fast) > 1:
        out[f"over_{first}"] = {name: round(m["images_per_second"] / fast[first]["images_per_second"], 2)
                                for name, m in fast.items() if name != first}
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
