"""--backbone (torchvision's ResNet-18, ResNet-50, VGG-16 beside the CIFAR ResNet-18),
--pretrained FILE, --head (the three versions of the authors' head) and --resize stretch."""
import math

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from PIL import Image

from conftest import SMALL, assert_clean_failure
from cli import spq
from folder_fixture import write_folder
from spq.data.images import decode
from spq.errors import SPQError
from spq.method.network import build_network
from spq.method.step import make_scaler, training_step
from spq.method.views import make_augmentation
from spq.options.values import EvalOptions
from spq.run.evaluation import measure
from spq.run.pretrained import load_pretrained


def build_model(backbone="cifar_resnet18", head="latest"):
    return build_network(4, 16, 8, 5.0, backbone, head)


@pytest.mark.parametrize("backbone,width", [("resnet18", 512), ("resnet50", 2048), ("vgg16", 4096)])
def test_each_backbone_trains_a_step_and_evaluates(backbone, width):
    torch.manual_seed(0)
    model = build_model(backbone)
    assert model.head.in_features == width
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    before = model.head.weight.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = training_step(model, make_augmentation(32), images, optimizer, make_scaler(torch.device("cpu"), "fp32"), 0.5)
    assert torch.isfinite(loss) and not torch.equal(model.head.weight, before)
    labels = torch.tensor([0, 1, 0, 1])
    m = measure(model, (images, labels), (images, labels), 32, EvalOptions(1, 0, "adc", "euclidean"), "fp32")
    # each query's own image is in the gallery: its AP is 1 when it ranks first among ties
    assert 0.5 <= m <= 1


def test_pretrained_file_loads_every_weight_but_the_classifier(tmp_path):
    torch.manual_seed(2)
    reference = tvm.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    model = build_model("resnet18")
    assert not torch.equal(model.features[1].conv1.weight, reference.conv1.weight)
    load_pretrained(model, "resnet18", str(tmp_path / "r18.pth"))
    got = model.features[1].state_dict()
    for name, value in reference.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(got[name], value), name
    torch.save(tvm.resnet50(weights=None).state_dict(), tmp_path / "r50.pth")
    with pytest.raises(SPQError, match="does not fit torchvision's resnet18"):
        load_pretrained(model, "resnet18", str(tmp_path / "r50.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a state dict")
    with pytest.raises(SPQError, match="^cannot read --pretrained .*junk.pth: it is truncated, corrupt or not a "
                                       "PyTorch file"):
        load_pretrained(model, "resnet18", str(tmp_path / "junk.pth"))


@pytest.mark.parametrize("head, bias, kind, gain", [("latest", True, "uniform", 1.0),
                                                    ("second", False, "normal", 1.0),
                                                    ("first", False, "normal", 0.1)])
def test_each_head_starts_as_its_release_did(head, bias, kind, gain):
    """The authors' three releases: the projection's bias, and the initialisation of its weight
    (M*L, 512) and of the codebooks, laid out as their (K, M*L) matrix: Xavier-uniform (bounded
    by gain * sqrt(6 / (fan_in + fan_out))) or Xavier-normal (deviation gain * sqrt(2 / ...))."""
    torch.manual_seed(3)
    model = build_model(head=head)                      # 4 books x 16 words x 8: M*L = 32
    assert (model.head.bias is not None) == bias
    matrix = model.codebooks.detach().transpose(0, 1).reshape(16, 32)         # (K, M*L)
    for tensor, fan_in, fan_out in [(model.head.weight.detach(), 512, 32), (matrix, 32, 16)]:
        std = gain * math.sqrt(2 / (fan_in + fan_out))
        bound = gain * math.sqrt(6 / (fan_in + fan_out))
        if kind == "uniform":
            assert tensor.abs().max() <= bound and tensor.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
        else:
            assert tensor.std().item() == pytest.approx(std, rel=0.1)
            assert tensor.abs().max() > std * math.sqrt(3)          # past a uniform's bound: normal tails
            assert abs(tensor.mean().item()) < 0.1 * std


def test_stretch_is_a_plain_bicubic_resize(tmp_path):
    write_folder(tmp_path, train=3, test=0, classes=2, corrupt=False)
    files = sorted(p for p in (tmp_path / "train").rglob("*") if p.is_file())
    assert {Image.open(f).size for f in files} != {(24, 24)}              # sizes vary
    for f in files:
        plain = Image.open(f).convert("RGB").resize((24, 24), Image.Resampling.BICUBIC)
        assert np.array_equal(decode(f, 24, "stretch"), np.asarray(plain).transpose(2, 0, 1)), f
        if Image.open(f).size[0] != Image.open(f).size[1]:
            assert not np.array_equal(decode(f, 24, "stretch"), decode(f, 24, "crop")), f


def test_backbone_and_pretrained_through_the_command_line(data, tmp_path):
    torch.manual_seed(4)
    weights = tvm.resnet18(weights=None).state_dict()
    torch.save(weights, tmp_path / "r18.pth")
    out = tmp_path / "run"
    result = spq("--data_dir", data, "--output_dir", out, "--epochs", 1, "--backbone", "resnet18",
                 "--pretrained", tmp_path / "r18.pth", *SMALL)
    assert result.returncode == 0, result.stderr
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["args"]["backbone"] == "resnet18" and "features.1.layer4.1.bn2.weight" in ckpt["model"]
    result = spq("--resume", out / "last.pth", "--epochs", 2, "--backbone", "cifar_resnet18")
    assert_clean_failure(result, 1, "--backbone cifar_resnet18 differs from the checkpoint's resnet18")
    result = spq("--data_dir", data, "--output_dir", tmp_path / "other", "--pretrained", "imagenet", *SMALL)
    assert_clean_failure(result, 2, "--pretrained needs a torchvision backbone")
