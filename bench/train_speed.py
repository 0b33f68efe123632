"""Training throughput: the step main_SPQ.py uses against a plain step; one JSON line.

    python bench/train_speed.py --device cpu --steps 5 --batch_size 32
    python bench/train_speed.py --device cuda --precision bf16 --batch_size 256
    python bench/train_speed.py --device cpu --augment simclr

Random CIFAR-shaped uint8 images resident on the device; after `--warmup` steps, times
`--steps` real updates (both views, model, soft quantization, loss, backward, Adam) of
spq.step.training_step with --precision and the device's memory layout (channels_last
on CUDA), then the same for the plain
step of tests/plain_step.py (fp32, contiguous, per-image augmentation, broadcast loss).
Images per second count images, not views. `views` times the two views of a batch alone
(spq.step.make_views) with both pipelines, `authors` and `simclr`, in the same run.
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
from spq.augment import make_augmentation  # noqa: E402
from spq.model import SPQ  # noqa: E402
from spq.device import memory_format  # noqa: E402
from spq.step import make_scaler, make_views, training_step  # noqa: E402


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
            make_views(augment, batch, memory_format(device))
            sync(device)
            if repeat:                      # the first round warms up
                seconds[kind].append(time.perf_counter() - t0)
    ms = {kind: round(1000 * sorted(s)[len(s) // 2], 3) for kind, s in seconds.items()}
    return {"median_ms_per_batch": ms, "simclr_over_authors": round(ms["simclr"] / ms["authors"], 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--batch_size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--augment", default="authors", choices=["authors", "simclr"],
                    help="the views of the timed training steps (main_SPQ.py --augment)")
    a = ap.parse_args()
    device = torch.device(a.device)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (max(4 * a.batch_size, 1024), 3, 32, 32), dtype=torch.uint8, device=device)
    augment = make_augmentation(32, a.augment).to(device)

    model = SPQ().to(device, memory_format=memory_format(device))
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-5)
    scaler = make_scaler(device, a.precision)
    fast = measure(lambda b: training_step(model, augment, b, opt, scaler, 0.5, a.precision, memory_format(device)),
                   images, a.batch_size, a.steps, a.warmup, device)

    model = SPQ().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-5)
    plain = measure(lambda b: plain_training_step(model, augment, b, opt, 0.5),
                    images, a.batch_size, a.steps, a.warmup, device)

    print(json.dumps({
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "precision": a.precision, "batch_size": a.batch_size,
        "augment": a.augment, "steps": a.steps, "fast": fast, "plain": {"precision": "fp32", **plain},
        "views": time_views(images, a.batch_size, a.steps, device),
        "speedup": round(fast["images_per_second"] / plain["images_per_second"], 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))


if __name__ == "__main__":
    main()
