"""Starting weights for a torchvision backbone (--pretrained): torchvision's ImageNet weights,
or a state dict of that network saved with torch.save."""
import torch

from ..errors import SPQError
from ..method.network import SPQ

TORCHVISION_WEIGHTS = {"resnet18": "ResNet18_Weights", "resnet50": "ResNet50_Weights", "vgg16": "VGG16_Weights"}


def load_pretrained(model: SPQ, backbone: str, source: str) -> None:
    """Load ImageNet weights into `model`'s torchvision backbone: `source` "imagenet" takes
    torchvision's IMAGENET1K_V1 weights through its weights API (its cache, else a
    download), any other value is the path of such a state dict. The classifier's weights
    are left out; every other weight must match (SPQError naming the source otherwise)."""
    if backbone not in TORCHVISION_WEIGHTS:
        raise SPQError(f"--pretrained needs a torchvision backbone (--backbone {', '.join(TORCHVISION_WEIGHTS)}); "
                       f"{backbone} has no ImageNet weights")
    if source == "imagenet":
        import torchvision.models as tvm
        state = getattr(tvm, TORCHVISION_WEIGHTS[backbone]).IMAGENET1K_V1.get_state_dict(progress=True)
    else:
        try:
            state = torch.load(source, map_location="cpu", weights_only=True)
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
