"""--compile: a failure anywhere in the first real training step falls back to eager
execution, and the run then equals an uncompiled one bit for bit."""
import pytest
import torch

import main_SPQ
from cifar_fixture import write_cifar10
from conftest import read_log
from spq.method.network import SPQ
from spq.method.step import loss_on_views
from spq.run.compiling import compile_model


class BreakInBackward(torch.autograd.Function):
    """Identity forward; its backward fails, as a backward graph that does not compile."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("injected: the backward graph did not compile")


class FakeCompiled:
    """Stands in for torch.compile(module). It runs the real module (so BatchNorm statistics
    change, as a compiled graph's would), then fails where told: at the second forward
    call (the first step's second view), in the first backward pass, or never."""

    def __init__(self, module, where):
        self.module, self.where, self.calls = module, where, 0

    def __len__(self):      # as torch.compile's wrapper: no truth value (its len() raises)
        raise TypeError(f"{type(self.module).__name__} does not support len()")

    def __call__(self, x):
        self.calls += 1
        out = self.module(x)
        if self.where == "forward" and self.calls == 2:
            raise RuntimeError("injected: the training graph did not compile")
        return BreakInBackward.apply(out) if self.where == "backward" else out


def test_the_step_runs_a_compiled_forward_that_has_no_truth_value():
    """torch.compile's wrapper raises on bool(); the step must call it, not test it."""
    torch.manual_seed(0)
    model = SPQ()
    compiled = FakeCompiled(model, "never")
    views = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    loss = loss_on_views(model, *views, 0.5, forward=compiled)
    assert compiled.calls == 2 and torch.isfinite(loss)


def argv(data, out, *extra):
    return [str(a) for a in ("--data_dir", data, "--output_dir", out, "--epochs", 1, "--device", "cpu",
                             "--batch_size", 8, "--seed", 3, "--input_size", 16, *extra)]


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return write_cifar10(tmp_path_factory.mktemp("cifar"), per_batch=4, test=10)   # 20 images: 2 steps


@pytest.fixture(scope="module")
def eager(small, tmp_path_factory):
    out = tmp_path_factory.mktemp("eager")
    assert main_SPQ.main(argv(small, out)) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("where", ["forward", "backward", "never"])
def test_first_step_failure_falls_back_to_the_eager_run(where, small, eager, tmp_path, monkeypatch, capsys):
    made = []

    def fake_compile(module, **kwargs):
        made.append(FakeCompiled(module, where))
        return made[-1]

    monkeypatch.setattr(torch, "compile", fake_compile)
    out = tmp_path / "run"
    assert main_SPQ.main(argv(small, out, "--compile")) == 0
    err = capsys.readouterr().err
    assert len(made) == 1
    if where == "never":
        assert "--compile" not in err and made[0].calls == 2 * 2         # every step compiled
    else:
        assert "warning: --compile failed at the first training step (RuntimeError: injected: " in err
        assert "training uncompiled" in err and "Traceback" not in err
        assert made[0].calls == 2                                          # never called again
    assert read_log(out)[0]["loss"] == read_log(eager)[0]["loss"]
    got = torch.load(out / "last.pth", weights_only=True)
    want = torch.load(eager / "last.pth", weights_only=True)
    for name, tensor in want["model"].items():            # weights and BatchNorm statistics
        assert torch.equal(got["model"][name], tensor), name
    assert got["optimizer"]["state"][0]["step"] == want["optimizer"]["state"][0]["step"] == 2


def test_compile_falls_back_with_a_warning(monkeypatch, capsys):
    def broken(*a, **k):
        raise RuntimeError("no compiler here")
    monkeypatch.setattr(torch, "compile", broken)
    assert compile_model(SPQ(2, 4, 4)) is None
    assert "--compile is not available here (RuntimeError: no compiler here)" in capsys.readouterr().err
