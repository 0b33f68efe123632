"""Writes small image-folder datasets (ImageFolder layout) with Pillow."""
from pathlib import Path

import numpy as np
from PIL import Image

# (extension, Pillow format): mixed, in mixed case, as real collections are
FORMATS = [(".jpg", "JPEG"), (".PNG", "PNG"), (".jpeg", "JPEG"), (".bmp", "BMP"), (".WebP", "WEBP")]
SIZES = [(32, 32), (40, 30), (24, 36), (64, 48), (33, 47)]


def picture(rng, colour, size):
    """A colour blob plus noise, (h, w, 3) uint8, of `size` = (w, h)."""
    w, h = size
    img = rng.normal(0, 40, size=(h, w, 3)) + colour
    return np.clip(img, 0, 255).astype(np.uint8)


def write_split(folder, per_class, classes=3, seed=0, labelled=True):
    """Write `per_class` pictures of each class into folder/<class>/ (every second one one
    level deeper), cycling through formats and sizes; unlabelled: all in folder/ itself."""
    rng = np.random.default_rng(seed)
    palette = np.random.default_rng(123).integers(0, 256, size=(classes, 3))
    written = []
    for c in range(classes):
        for i in range(per_class):
            ext, fmt = FORMATS[(c + i) % len(FORMATS)]
            where = Path(folder)
            if labelled:
                where = where / f"class_{c}" / ("nested/deeper" if i % 2 else "")
            where.mkdir(parents=True, exist_ok=True)
            path = where / f"img_{c}_{i}{ext}"
            Image.fromarray(picture(rng, palette[c], SIZES[i % len(SIZES)])).save(path, fmt)
            written.append(path)
    return written


def write_folder(root, train=12, test=4, classes=3, labelled=True, corrupt=True):
    """root/train and root/test with `train` and `test` pictures per class; with `corrupt`,
    one truncated JPEG in train/ and a text file that is ignored. Returns root as a str."""
    root = Path(root)
    write_split(root / "train", train, classes, seed=0, labelled=labelled)
    if test:
        write_split(root / "test", test, classes, seed=1, labelled=labelled)
    if corrupt:
        bad = root / "train" / ("class_0" if labelled else "") / "broken.jpg"
        bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a picture")
        (root / "train" / "notes.txt").write_text("not an image, and not named like one\n")
    return str(root)
