"""What a run works on, made ready from its options: its images and labels on the device,
the model, and the output folder (`prepare` -> `Setup`)."""
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from ..data.datasets import DataOptions, load_data
from ..data.imageset import ImageSet
from ..errors import SPQError
from ..method.network import SPQ
from ..options.values import MethodOptions, network_of
from ..files.write import check_writable, ensure_folder
from ..store.record import clean
from .device import memory_format
from .distributed import World
from .environment import environment
from .pretrained import load_pretrained


@dataclass
class Setup:
    """A run's data and model on its device, and where its output goes."""
    world: World
    device: torch.device
    layout: torch.memory_format                                # of images and weights
    precision: str                                             # the CNN's arithmetic (--precision)
    input_size: int                                            # the side of the images it sees
    data: ImageSet
    model: SPQ
    train_images: torch.Tensor                                  # uint8 (N, 3, H, W)
    gallery: Tuple[torch.Tensor, Optional[torch.Tensor]]       # images, labels
    queries: Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]
    out: Path
    unevaluable: Optional[str]                                 # why mAP cannot be measured
    split_record: Dict[str, object]                            # protocol, seed, hash, train_ids
    environment: Dict[str, str]                                # hardware, torch, commit

    def say(self, *message) -> None:
        """Print on the main process only."""
        if self.world.main:
            print(*message)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators (CPU and every CUDA device; kornia
    draws from torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare(data: DataOptions, method: MethodOptions, precision: str, workers: int, batch_size: int,
            seed: int, out: Path, eval_only: bool, resume: Optional[str], ckpt, world: World,
            device: torch.device) -> Setup:
    """Build the model (seeded by `seed`; --pretrained weights first, before any image is
    decoded), then load the data (`workers` decoding processes); SPQError when the data
    cannot serve the run (a training run needs at least `batch_size` images). The output
    folder `out` is ready already (`prepare_output`)."""
    seed_everything(seed + world.rank)          # rank 0 draws what a single process draws
    model = network_of(method)
    if method.pretrained and ckpt is None:
        load_pretrained(model, method.backbone, method.pretrained)
    images = load_data(data, workers, out, print if world.main else (lambda *a, **k: None))
    if images.train_images.shape[0] < batch_size and not eval_only:
        raise SPQError(f"--batch_size {batch_size} exceeds the {images.train_images.shape[0]} "
                       f"training images: no full batch to train on")
    unevaluable = images.why_not_evaluable()
    if unevaluable and eval_only:
        raise SPQError(f"cannot evaluate {resume}: {unevaluable}")
    split = {**images.split_record, "train_ids": stored_ids(images.ids.get("train"))}
    trained_on = (ckpt.get("split") or split) if ckpt is not None else split
    refuse_leak(images.ids.get("query"), trained_on, resume)
    layout = memory_format(device, precision)
    model = model.to(device, memory_format=layout)

    def place(tensor, is_images=False):
        # streamed (memory-mapped) images stay on the host; their batches move when used
        return tensor if tensor is None or (is_images and images.on_disk) else tensor.to(device)

    train_images = place(images.train_images, is_images=True)
    gallery_images, gallery_labels = images.gallery()
    gallery = (train_images if gallery_images is images.train_images else place(gallery_images, True),
               place(gallery_labels))
    queries = (place(images.query_images, True), place(images.query_labels))
    return Setup(world, device, layout, precision, data.input_size, images, model, train_images, gallery,
                 queries, out, unevaluable, split, environment(device))


def stored_ids(ids: Optional[list]):
    """Ids as a checkpoint stores them: item numbers as an int64 tensor, paths as one string."""
    if ids is None:
        return None
    if ids and isinstance(ids[0], str):
        return "\n".join(ids)
    return torch.tensor(ids, dtype=torch.int64)


def refuse_leak(queries: Optional[list], trained_on: Dict, resume: Optional[str]) -> None:
    """SPQError when a query is one of the images the model trains or trained on (their ids:
    `spq.data.imageset.ImageSet.ids`; a checkpoint's in its "split")."""
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
    ensure_folder(out, "--output_dir")
    try:
        check_writable(out)
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
