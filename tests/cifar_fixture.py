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


def write_hues(root, n_train=100, n_test=100, classes=5, seed=0, size=32):
    """A CIFAR-shaped dataset whose class is a hue (`classes` hues evenly spaced, a little
    jitter), where each image also has its own saturation, brightness and smooth random
    pattern of light and shade. An untrained network ranks mostly by brightness and pattern;
    a network that learns to ignore what the colour jitter changes ranks by hue. Returns
    root as a str."""
    import colorsys
    rng = np.random.default_rng(seed)
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    coarse = np.linspace(0, 1, 4)
    fine = np.linspace(0, 1, size)

    def pattern():
        """A smooth random field in [0, 1]: 4 x 4 random values, interpolated bilinearly."""
        grid = rng.random((4, 4))
        rows = np.stack([np.interp(fine, coarse, grid[:, j]) for j in range(4)], axis=1)   # (size, 4)
        return np.stack([np.interp(fine, coarse, r) for r in rows])                          # (size, size)

    def batch(n):
        labels = rng.integers(0, classes, size=n)
        images = []
        for label in labels:
            hue = (label / classes + rng.normal(0, 0.02)) % 1
            rgb = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.4, 1.0), 1.0))
            depth = rng.uniform(0, 0.8)
            shade = rng.uniform(0.2, 1.0) * (1 - depth + depth * pattern())                   # (size, size)
            img = 255 * rgb[:, None, None] * shade[None] + rng.normal(0, 6, (3, size, size))
            images.append(np.clip(img, 0, 255).astype(np.uint8).reshape(-1))
        return {"data": np.stack(images), "labels": [int(l) for l in labels]}

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(n_train // 5), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(n_test), f)
    return str(root)
