"""--precision fp16 on the CPU: steps the loss scaler skips are counted and logged, the run
stops only when the loss stays non-finite or the scale collapses, and a resume restores
the scaler."""
import pytest
import torch

import main_SPQ
import spq.method.step as S
import spq.run.loop as T
from cifar_fixture import write_cifar10
from conftest import read_log
from spq.errors import SPQError
from spq.run.interrupt import StopRequest


class InfGrad(torch.autograd.Function):
    """Identity forward; infinite gradients backward (a finite loss whose gradients overflow)."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * float("inf")


def scripted_steps(plan, precision="fp16"):
    """A tiny fp16-autocast model and a step that follows `plan`, one entry per step:
    "ok", "inf_loss" (the loss is infinite) or "inf_grad" (finite loss, infinite gradients).
    Returns (step, scaler, losses returned)."""
    torch.manual_seed(0)
    model = torch.nn.Linear(12, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=precision == "fp16")
    losses = []

    def step(batch):
        with torch.autocast("cpu", dtype=torch.float16, enabled=precision == "fp16"):
            out = model(batch.float().flatten(1) / 255)
        action = plan[len(losses)]
        out = InfGrad.apply(out) if action == "inf_grad" else out
        loss = out.float().pow(2).mean() * (float("inf") if action == "inf_loss" else 1.0)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        losses.append(loss.item())
        return loss.detach()

    return step, scaler, losses


def epoch(step, steps, scaler):
    images = torch.randint(0, 256, (2 * steps, 3, 2, 2), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    shuffle = torch.Generator().manual_seed(0)
    progress = T.EpochProgress(1, shuffle.get_state())
    finished = T.epoch_steps(step, images, 2, shuffle, progress, 1, StopRequest(), scaler=scaler)
    return finished, progress


def test_skipped_steps_are_counted_and_the_loss_averages_the_finite_ones():
    plan = ["ok", "inf_grad", "ok", "inf_loss", "ok", "ok"]
    step, scaler, losses = scripted_steps(plan)
    finished, progress = epoch(step, len(plan), scaler)
    assert finished and progress.step == 6
    assert (progress.skipped, progress.non_finite) == (2, 1)
    assert scaler.get_scale() == 2.0 ** 16 / 4                  # halved at each skip
    finite = [l for l in losses if l != float("inf")]
    assert progress.mean_loss() == pytest.approx(sum(finite) / len(finite), rel=1e-6)


def test_a_loss_non_finite_for_many_steps_in_a_row_stops_the_run(monkeypatch):
    monkeypatch.setattr(T, "MAX_NON_FINITE_STEPS", 3)
    step, scaler, _ = scripted_steps(["ok", "inf_loss", "ok", "inf_loss", "inf_loss", "inf_loss", "ok"])
    with pytest.raises(SPQError, match=r"stayed non-finite for 3 steps in a row under --precision "
                                       r"fp16 \(epoch 1, steps 4\.\.6 of 7\)"):
        epoch(step, 7, scaler)


def test_a_collapsed_loss_scale_stops_the_run(monkeypatch):
    monkeypatch.setattr(T, "MIN_LOSS_SCALE", 2.0 ** 13)
    step, scaler, losses = scripted_steps(["inf_grad"] * 6)
    with pytest.raises(SPQError, match=r"loss scale collapsed to 4\.1e\+03 in epoch 1 at step 4 of 6"):
        epoch(step, 6, scaler)
    assert all(l != float("inf") for l in losses)               # the loss itself stayed finite


def test_without_fp16_the_first_non_finite_loss_stops_the_run():
    step, scaler, _ = scripted_steps(["ok", "ok", "inf_loss", "ok"], precision="fp32")
    with pytest.raises(SPQError, match="loss became non-finite in epoch 1 at step 3 of 4"):
        epoch(step, 4, scaler)


@pytest.mark.slow
def test_fp16_run_logs_skipped_steps_and_a_resume_restores_the_scaler(tmp_path, monkeypatch, capsys):
    data = write_cifar10(tmp_path / "cifar", per_batch=1, test=6)      # 5 images: 2 steps of 2 (fp16 is slow on a CPU)
    real_loss, calls = S.cqc_loss, []

    def overflowing_once(*a):
        calls.append(1)
        return real_loss(*a) * (float("inf") if len(calls) == 1 else 1.0)   # first step only

    monkeypatch.setattr(S, "cqc_loss", overflowing_once)
    out = tmp_path / "run"
    argv = [str(a) for a in ("--data_dir", data, "--output_dir", out, "--device", "cpu", "--precision",
                             "fp16", "--batch_size", 2, "--input_size", 8, "--seed", 2, "--eval_epoch", 5)]
    assert main_SPQ.main(argv + ["--epochs", "1"]) == 0
    first = read_log(out)[0]
    assert first["skipped_steps"] >= 1            # the injected overflow, and any real ones
    assert f"epoch 1: fp16 loss scaling skipped {first['skipped_steps']} of 2 steps" in capsys.readouterr().out
    # every skip halves the scale (it grows only after 2000 good steps in a row)
    assert torch.load(out / "last.pth", weights_only=True)["scaler"]["scale"] == 2.0 ** (16 - first["skipped_steps"])
    assert main_SPQ.main(argv + ["--epochs", "2", "--resume", "auto"]) == 0
    log = read_log(out)
    assert [r["epoch"] for r in log] == [1, 2]
    assert all(0 < r["loss"] < float("inf") for r in log)
    # the resumed run went on from the saved scale: a fresh scaler would have started at 2**16
    skipped = sum(r["skipped_steps"] for r in log)
    assert torch.load(out / "last.pth", weights_only=True)["scaler"]["scale"] == 2.0 ** (16 - skipped)
