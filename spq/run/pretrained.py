"""Starting weights for a torchvision backbone (--pretrained): torchvision's ImageNet weights,
or a state dict of that network saved with torch.save."""
import hashlib
import os
import re
from pathlib import Path
from urllib.parse import urlparse

import torch

from ..errors import SPQError
from ..files.read import fetch, load_torch
from ..files.write import atomic_write_bytes, ensure_folder
from ..method.network import SPQ

TORCHVISION_WEIGHTS = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights", "vgg16": "VGG16_Weights"}


def load_pretrained(model: SPQ, backbone: str, source: str) -> None:
    """Load ImageNet weights into `model`'s torchvision backbone: `source` "imagenet" takes
    torchvision's IMAGENET1K_V1 weights (`imagenet_file`: its cache, else a download), any
    other value is the path of such a state dict. The classifier's weights are left out;
    every other weight must match (SPQError naming the source otherwise)."""
    if backbone not in TORCHVISION_WEIGHTS:
        raise SPQError(f"--pretrained needs a torchvision backbone (--backbone {', '.join(TORCHVISION_WEIGHTS)}); "
                       f"{backbone} has no ImageNet weights")
    path = imagenet_file(backbone) if source == "imagenet" else source
    state = load_torch(path, "weights", "--pretrained" if path == source else
                       f"torchvision's ImageNet weights of {backbone}")
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise SPQError(f"--pretrained {source} is not a state dict (a dictionary of tensors) of torchvision's {backbone}")
    classifier = "fc." if backbone.startswith("resnet") else "classifier.6."
    net = model.features[1]
    expected = net.state_dict()
    for name, tensor in state.items():
        if name in expected and tensor.dtype != expected[name].dtype:
            raise SPQError(f"--pretrained {source}: its weight {name} is {tensor.dtype}, not {expected[name].dtype} "
                           f"as torchvision's {backbone} holds it: not that network's weights")
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise SPQError(f"--pretrained {source}: its weight {name} is not finite (NaN or inf): the file "
                           f"is damaged or not trained weights; use another copy")
    try:
        net.load_state_dict({k: v for k, v in state.items() if not k.startswith(classifier)}, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise SPQError(f"--pretrained {source} does not fit torchvision's {backbone} ({first})") from None


def imagenet_file(backbone: str) -> Path:
    """The file of torchvision's IMAGENET1K_V1 weights of `backbone` in its cache
    ($TORCH_HOME/hub/checkpoints), downloaded there through the way in and out (its hash
    prefix checked) when missing; SPQError saying what to do when it cannot be downloaded
    (no network)."""
    import torchvision.models as tvm
    url = getattr(tvm, TORCHVISION_WEIGHTS[backbone]).IMAGENET1K_V1.url
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if cache.is_file():
        return cache
    digest = re.search(r"-([a-f0-9]{8,})\.", cache.name)       # torchvision's names end in a hash prefix
    try:
        data = fetch(url, "weights", f"torchvision's ImageNet weights of {backbone}")
    except SPQError as e:
        raise SPQError(f"--pretrained imagenet: {e}; without a network, put that file in {cache.parent} "
                       f"(torchvision's cache, under $TORCH_HOME), or pass --pretrained FILE, a state dict of "
                       f"torchvision's {backbone}") from None
    if digest and not hashlib.sha256(data).hexdigest().startswith(digest.group(1)):
        raise SPQError(f"--pretrained imagenet: the file downloaded from {url} does not match its SHA-256 "
                       f"prefix {digest.group(1)} (a broken download); try again")
    ensure_folder(cache.parent, "torchvision's cache")
    atomic_write_bytes(cache, data)
    return cache
