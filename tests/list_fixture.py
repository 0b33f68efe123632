"""Multi-label list files of small pictures (`write_lists`), for --dataset list."""
from pathlib import Path

import numpy as np
from PIL import Image

from folder_fixture import picture

CLASSES = 4


def label_rows(n, seed):
    """n multi-hot rows over CLASSES labels, cycling through 0, 1, 2 and 3 labels."""
    rng = np.random.default_rng(seed)
    rows = np.zeros((n, CLASSES), np.uint8)
    for i in range(n):
        rows[i, rng.choice(CLASSES, size=i % 4, replace=False)] = 1
    return rows


def write_lists(root, train=36, query=12, seed=0):
    """Pictures under root/img/ (the colour mixes the image's labels), and train.txt and
    query.txt listing them; one file name holds a space. Returns (root, train, query)."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    palette = np.random.default_rng(7).integers(0, 256, size=(CLASSES, 3))
    files = {}
    for name, n, s in [("train", train, seed), ("query", query, seed + 1)]:
        lines = []
        for i, row in enumerate(label_rows(n, s)):
            colour = palette[row.astype(bool)].mean(0) if row.any() else np.full(3, 128)
            rel = f"img/{name}/{'sub dir' if i % 5 == 0 else 'a'}/{i}.{'png' if i % 2 else 'jpg'}"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(picture(rng, colour, (32 + i % 3 * 8, 32))).save(root / rel)
            lines.append(rel + " " + " ".join(map(str, row)))
        files[name] = root / f"{name}.txt"
        files[name].write_text("\n".join(lines) + "\n\n")
    return str(root), str(files["train"]), str(files["query"])
