"""What a run works on, made ready from the options: its images and labels on the device,
the model, and the output folder (`prepare` -> `Setup`)."""
import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from .datasets import load_data
from .device import environment, seed_everything
from .distributed import World
from .errors import SPQError
from .imageset import ImageSet
from .model import SPQ, build_model, load_pretrained, memory_format
from .outdir import clean


@dataclass
class Setup:
    """A run's data and model on its device, and where its output goes."""
    args: argparse.Namespace
    world: World
    device: torch.device
    layout: torch.memory_format                                # of images and weights
    data: ImageSet
    model: SPQ
    train_images: torch.Tensor                                  # uint8 (N, 3, H, W)
    gallery: Tuple[torch.Tensor, Optional[torch.Tensor]]       # images, labels
    queries: Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]
    out: Path
    unevaluable: Optional[str]                                 # why mAP cannot be measured
    split: Dict[str, object]                                   # protocol, seed, hash, train_ids
    environment: Dict[str, str]                                # hardware, torch, commit

    def say(self, *message) -> None:
        """Print on the main process only."""
        if self.world.main:
            print(*message)


def prepare(args, resume: Optional[str], ckpt, world: World, device: torch.device) -> Setup:
    """Load the data, build the model (seeded by --seed) and make the output folder ready;
    SPQError when the data cannot serve the run."""
    data = load_data(args, print if world.main else (lambda *a, **k: None))
    if data.train_images.shape[0] < args.batch_size and not args.eval_only:
        raise SPQError(f"--batch_size {args.batch_size} exceeds the {data.train_images.shape[0]} "
                       f"training images: no full batch to train on")
    unevaluable = data.why_not_evaluable()
    if unevaluable and args.eval_only:
        raise SPQError(f"cannot evaluate {resume}: {unevaluable}")
    split = {**data.split, "train_ids": stored_ids(data.ids.get("train"))}
    trained_on = (ckpt.get("split") or split) if ckpt is not None else split
    refuse_leak(data.ids.get("test"), trained_on, resume)
    seed_everything(args.seed + world.rank)     # rank 0 draws what a single process draws
    layout = memory_format(device, args.precision)
    model = build_model(args)
    if args.pretrained and ckpt is None:
        load_pretrained(model, args.backbone, args.pretrained)
    model = model.to(device, memory_format=layout)

    def place(tensor, images=False):
        # streamed (memory-mapped) images stay on the host; their batches move when used
        return tensor if tensor is None or (images and data.on_disk) else tensor.to(device)

    train_images = place(data.train_images, images=True)
    gallery_images, gallery_labels = data.gallery()
    gallery = (train_images if gallery_images is data.train_images else place(gallery_images, True),
               place(gallery_labels))
    queries = (place(data.test_images, True), place(data.test_labels))
    out = Path(args.output_dir)
    if world.main:
        prepare_output(out, resuming=ckpt is not None)
    return Setup(args, world, device, layout, data, model, train_images, gallery, queries, out,
                 unevaluable, split, environment(device))


def stored_ids(ids: Optional[list]):
    """Ids as a checkpoint stores them: item numbers as an int64 tensor, paths as one string."""
    if ids is None:
        return None
    if ids and isinstance(ids[0], str):
        return "\n".join(ids)
    return torch.tensor(ids, dtype=torch.int64)


def refuse_leak(queries: Optional[list], trained_on: Dict, resume: Optional[str]) -> None:
    """SPQError when a query is one of the images the model trains or trained on (their ids:
    `spq.imageset.ImageSet.ids`; a checkpoint's in its "split")."""
    stored = trained_on.get("train_ids")
    if not queries or stored is None:
        return
    train = set(stored.split("\n")) if isinstance(stored, str) else set(stored.tolist())
    leaked = [q for q in queries if q in train]
    if leaked:
        whose = f"the model of {resume}" if resume else "this run"
        raise SPQError(f"{len(leaked)} of the {len(queries)} queries (e.g. {leaked[0]}) are training images "
                       f"of {whose} (split {trained_on.get('protocol')}): evaluate on queries it never "
                       f"saw (the split it was trained with, or one drawn apart from its training images)")


def prepare_output(out: Path, resuming: bool) -> None:
    """Make `out` exist and check it can be written; remove what a killed writer left; a new
    run refuses a folder that already holds one (SPQError)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise SPQError(f"--output_dir {out} cannot be written ({e.strerror}); "
                       f"choose a folder you can write to") from None
    for path in clean(out):
        print(f"removed {path}, left by a run that was killed while writing", file=sys.stderr)
    if not resuming:
        if (out / "last.pth").exists():
            raise SPQError(f"--output_dir {out} already holds a run (last.pth); continue it with "
                           f"--resume auto (or --resume {out / 'last.pth'}) or choose another --output_dir")
        if (out / "log.jsonl").exists():
            raise SPQError(f"--output_dir {out} holds a log.jsonl but no last.pth: a run that never "
                           f"saved a checkpoint, which cannot be continued; remove {out / 'log.jsonl'} "
                           f"or choose another --output_dir")
