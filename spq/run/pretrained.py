"""Starting weights for a torchvision backbone (--pretrained): torchvision's ImageNet weights,
or a state dict of that network saved with torch.save."""
import os
import re
from pathlib import Path
from urllib.parse import urlparse

import torch

from ..errors import SPQError
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
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise SPQError(f"--pretrained {source} cannot be read as a PyTorch state dict "
                       f"({type(e).__name__})") from None
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise SPQError(f"--pretrained {source} is not a state dict (a dictionary of tensors) of torchvision's {backbone}")
    classifier = "fc." if backbone.startswith("resnet") else "classifier.6."
    net = model.features[1]
    try:
        net.load_state_dict({k: v for k, v in state.items() if not k.startswith(classifier)}, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise SPQError(f"--pretrained {source} does not fit torchvision's {backbone} ({first})") from None


def imagenet_file(backbone: str) -> Path:
    """The file of torchvision's IMAGENET1K_V1 weights of `backbone` in its cache
    ($TORCH_HOME/hub/checkpoints), downloaded there (its hash checked) when missing; SPQError
    saying what to do when it cannot be downloaded (no network)."""
    import torchvision.models as tvm
    url = getattr(tvm, TORCHVISION_WEIGHTS[backbone]).IMAGENET1K_V1.url
    cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
    if cache.is_file():
        return cache
    digest = re.search(r"-([a-f0-9]{8,})\.", cache.name)       # torchvision's names end in a hash prefix
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cache), hash_prefix=digest.group(1) if digest else None)
    except Exception as e:
        reason = " ".join(str(getattr(e, "reason", e)).split()) or type(e).__name__
        raise SPQError(f"--pretrained imagenet: torchvision's ImageNet weights of {backbone} could not be "
                       f"downloaded from {url} ({reason}); without a network, put that file in {cache.parent} "
                       f"(torchvision's cache, under $TORCH_HOME), or pass --pretrained FILE, a state dict of "
                       f"torchvision's {backbone}") from None
    return cache
