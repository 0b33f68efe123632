"""Decoding an image folder once (--dataset folder): seconds per worker count; one JSON line.

    python bench/decode_speed.py DATA_DIR [--input_size 32] [--workers 0 2]

DATA_DIR is a folder dataset (train/ [test/ gallery/]), e.g. the CIFAR-10 JPEGs of
../shared/data/cifar10-jpg.tar.gz unpacked. Each worker count loads the whole folder
with spq.data.folder.load_folder, in memory, after one untimed pass that warms the file
cache; the images must come out equal for every worker count.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from spq.data.folder import load_folder  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data_dir")
    p.add_argument("--input_size", type=int, default=32)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    a = p.parse_args()
    first = load_folder(a.data_dir, a.input_size, max(a.workers))      # warms the file cache
    images = len(first.train_images) + sum(len(t) for t in (first.query_images, first.gallery_images)
                                           if t is not None)
    result = {"data_dir": a.data_dir, "images": images, "input_size": a.input_size}
    for workers in a.workers:
        t0 = time.perf_counter()
        data = load_folder(a.data_dir, a.input_size, workers)
        seconds = time.perf_counter() - t0
        assert torch.equal(data.train_images, first.train_images)
        result[f"seconds_{workers}_workers"] = round(seconds, 2)
        result[f"images_per_second_{workers}_workers"] = round(images / seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
