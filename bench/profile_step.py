"""Where a training step's time goes on this device, in one precision; one JSON line.

    python bench/profile_step.py --device cpu --precision bf16 --batch_size 64

Random CIFAR-shaped images; after --warmup steps, --steps steps of the step main_SPQ.py
runs, timed by phase (the two views, the CNN forward with quantization and loss, the
backward pass, Adam), then the same steps under torch.profiler: each operator's share of
the time, and for convolutions the milliseconds per call of the forward and backward
pass by input shape (N, C, H, W), slowest first. The precision's memory layout is
spq.run.device.memory_format's unless --layout says otherwise.
"""
import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spq.method.views import make_augmentation  # noqa: E402
from spq.run.device import memory_format  # noqa: E402
from spq.method.network import SPQ  # noqa: E402
from spq.method.step import loss_on_views, make_views  # noqa: E402
from cpu_peak import processor  # noqa: E402

LAYOUTS = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--layout", default=None, choices=list(LAYOUTS))
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    device = torch.device(a.device)
    layout = LAYOUTS[a.layout] if a.layout else memory_format(device, a.precision)
    torch.manual_seed(0)
    images = torch.randint(0, 256, (a.batch_size, 3, 32, 32), dtype=torch.uint8, device=device)
    augment = make_augmentation(32, "authors").to(device)
    model = SPQ().to(device, memory_format=layout)
    opt = torch.optim.Adam(model.parameters(), lr=3e-4, weight_decay=1e-5)
    phases = defaultdict(float)

    def step(timed):
        marks = [time.perf_counter()]

        def mark():
            sync(device)
            marks.append(time.perf_counter())
        view_a, view_b = make_views(augment, images, layout)
        mark()
        loss = loss_on_views(model, view_a, view_b, 0.5, a.precision)
        mark()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        mark()
        opt.step()
        mark()
        if timed:
            for name, t0, t1 in zip(("views", "forward_and_loss", "backward", "adam"), marks, marks[1:]):
                phases[name] += (t1 - t0) / a.steps

    for _ in range(a.warmup):
        step(False)
    for _ in range(a.steps):
        step(True)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, record_shapes=True) as prof:
        for _ in range(a.steps):
            step(False)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1
    shares = sorted(((e.key, e.self_cpu_time_total / total) for e in events), key=lambda kv: -kv[1])
    convs = []
    for e in prof.key_averages(group_by_input_shape=True):
        if e.key in ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::cudnn_convolution",
                     "aten::_convolution") and e.input_shapes:
            shape = e.input_shapes[0] if e.key != "aten::convolution_backward" else e.input_shapes[1]
            convs.append({"op": e.key.split("::")[1], "input": shape, "calls": e.count,
                          "ms_per_call": round(e.self_cpu_time_total / e.count / 1000, 2),
                          "share": round(e.self_cpu_time_total / total, 4)})
    convs.sort(key=lambda c: -c["share"])
    print(json.dumps({"bench": "profile_step", "device": processor(device), "precision": a.precision,
                      "layout": str(layout).split(".")[-1], "batch_size": a.batch_size, "steps": a.steps,
                      "seconds_per_step": {k: round(v, 4) for k, v in phases.items()},
                      "operator_share": {k: round(v, 4) for k, v in shares[:12]},
                      "convolutions": convs[:12]}))


if __name__ == "__main__":
    main()
