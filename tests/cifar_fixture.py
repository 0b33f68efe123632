"""Writes small datasets in the official CIFAR-10 python-batch format."""
import pickle
from pathlib import Path

import numpy as np


def write_cifar10(root, per_batch=40, test=50, classes=10, seed=0):
    """Write root/cifar-10-batches-py with 5 training batches of `per_batch` images and a
    test batch of `test` images; images are class-dependent colour blobs plus noise, so a
    model can learn something. Returns root as a str."""
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    palette = rng.integers(0, 256, size=(classes, 3))

    def batch(n):
        labels = rng.integers(0, classes, size=n)
        img = rng.normal(0, 40, size=(n, 3, 32, 32)) + palette[labels][:, :, None, None]
        data = np.clip(img, 0, 255).astype(np.uint8).reshape(n, 3072)
        return {"data": data, "labels": [int(l) for l in labels]}

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(per_batch), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(test), f)
    return str(root)
