"""Every option that changes the method or the optimiser reaches the training step with its
value: a run of main_SPQ.py (in-process) on one batch of 10 images, with the options changed
together, must end with exactly the weights of the reference, steps written out here with
those values (the model built from the seed, Adam, the views drawn from the seed,
`spq.method.step.training_step`, the learning rate of each epoch from its formula); and the same
reference with any one of them back at its default must give visibly other weights, so
each option's check can fail (a value that did not reach the step is named).

`spq.method.step.training_step` itself is checked against a plainly written step in
tests/method/test_step.py; here it is the fixed point, so that what is compared is the wiring
from the command line to it.
"""
import math

import pytest
import torch

from cifar_fixture import write_cifar10
from cli import spq
from spq.method.views import make_augmentation
from spq.data.cifar10 import load_cifar10
from spq.run.device import cpu_has_bf16
from spq.method.network import SPQ
from spq.method.step import make_scaler, training_step

SEED, SIZE, IMAGES = 3, 16, 10
# The precision checked: bf16 where the CPU has bf16 instructions; elsewhere fp16 (PyTorch
# would emulate bf16 there, slower than fp32, and the program refuses it), so that the
# check runs on every CPU. Neither has fast kernels on every CPU: its run is at 8 pixels.
OTHER_PRECISION = "bf16" if cpu_has_bf16() else "fp16"
PRECISION_SIZE = 8
DEFAULTS = {"N_books": 8, "N_words": 16, "L_word": 16, "soft_quantization_scale": 5.0,
            "contrastive_temperature": 0.5, "lr": 3e-4, "weight_decay": 1e-5, "augment": "authors",
            "precision": "fp32", "lr_schedule": "authors"}
# (option, value): values far enough from the defaults that one step shows them
CHANGES = [("contrastive_temperature", 0.2), ("soft_quantization_scale", 1.0), ("N_books", 4),
           ("N_words", 8), ("L_word", 8), ("lr", 1e-3), ("weight_decay", 0.5), ("augment", "simclr"),
           ("precision", OTHER_PRECISION), ("lr_schedule", "cosine")]
SHAPES = {"N_books", "N_words", "L_word"}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("wiring"), per_batch=IMAGES // 5, test=10)


def epochs_for(option):
    """The schedules differ only from the second epoch on (--epochs 2: cosine halves the LR)."""
    return 2 if option == "lr_schedule" else 1


def lr_of_epoch(values, epoch, epochs):
    """The learning rate of 1-based `epoch`, from each schedule's formula (one step an epoch)."""
    if values["lr_schedule"] == "cosine":
        return values["lr"] * (1 + math.cos(math.pi * (epoch - 1) / epochs)) / 2
    return values["lr"]           # constant, and the authors' schedule in its first 11 epochs


def reference(images, values, epochs, size):
    """The weights after `epochs` epochs of one step each, written out."""
    torch.manual_seed(SEED)
    # bf16 runs channels_last on the CPU (docs/options.md), fp32 contiguous
    layout = torch.channels_last if values["precision"] == "bf16" else torch.contiguous_format
    model = SPQ(values["N_books"], values["N_words"], values["L_word"], values["soft_quantization_scale"])
    model = model.to(memory_format=layout)
    optimizer = torch.optim.Adam(model.parameters(), lr=values["lr"], weight_decay=values["weight_decay"])
    augment = make_augmentation(size, values["augment"])
    shuffle = torch.Generator().manual_seed(SEED)
    for epoch in range(1, epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = lr_of_epoch(values, epoch, epochs)
        batch = images[torch.randperm(len(images), generator=shuffle)]
        training_step(model, augment, batch, optimizer, make_scaler(torch.device("cpu"), values["precision"]),
                      values["contrastive_temperature"], values["precision"], layout)
    return model.state_dict()


def trained(data, out, argv, epochs, size):
    result = spq("--data_dir", data, "--output_dir", out, "--device", "cpu", "--seed", SEED,
                 "--input_size", size, "--batch_size", IMAGES, "--epochs", epochs, "--eval_epoch", 100, *argv)
    assert result.returncode == 0, result.stderr
    return torch.load(out / "last.pth", weights_only=True)["model"]


def largest_difference(a, b):
    """max |a - b| over every weight and BatchNorm statistic; inf when the shapes differ."""
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        return math.inf
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


# Three runs cover every option: the method and optimiser options changed together (two
# epochs, so that the schedule shows), the code's shape (one epoch), and the precision
# (one epoch, 8-pixel views); each with its input size.
RUNS = {"method and optimiser": ([c for c in CHANGES if c[0] not in SHAPES | {"precision"}], SIZE),
        "shape": ([c for c in CHANGES if c[0] in SHAPES], SIZE),
        "precision": ([c for c in CHANGES if c[0] == "precision"], PRECISION_SIZE)}


@pytest.mark.parametrize("kind", list(RUNS))
def test_every_option_reaches_the_step(data, tmp_path, kind):
    images = load_cifar10(data).train_images
    assert len(images) == IMAGES
    changes, size = RUNS[kind]
    epochs = max(epochs_for(option) for option, _ in changes)
    argv = [a for option, value in changes for a in (f"--{option}", value)]
    weights = trained(data, tmp_path / "run", argv, epochs, size)
    values = {**DEFAULTS, **dict(changes)}
    assert largest_difference(weights, reference(images, values, epochs, size)) == 0, \
        f"one of {[o for o, _ in changes]} did not reach the step: " + ", ".join(
            f"--{o} matches its default" for o, _ in changes
            if largest_difference(weights, reference(images, {**values, o: DEFAULTS[o]}, epochs, size)) == 0)
    for option, _ in changes:        # each value, set back to its default, moves the weights
        back = reference(images, {**values, option: DEFAULTS[option]}, epochs, size)
        # Adam's first update moves each weight by about lr: a value that changes anything
        # changes some weight by that much (a shape changes the shapes: infinitely far)
        assert largest_difference(back, weights) > 0.1 * DEFAULTS["lr"], \
            f"--{option} leaves the step as its default does: this check cannot fail"
