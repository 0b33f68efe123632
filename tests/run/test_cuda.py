"""The CUDA tier: what only a GPU can show. Run it with `python -m pytest -m cuda`; without a
CUDA device every test here is skipped with the reason.

Runs are in-process (main_SPQ.main, spq.index.main) on small CIFAR-shaped data the fixtures
write. Where CUDA results are compared with each other or with the CPU, cuDNN is made
deterministic and TF32 is switched off for the comparison (PyTorch lets cuDNN use TF32 for
fp32 convolutions by default, which rounds inputs to 10-bit mantissas).
"""
import contextlib
import copy
import json
import os
import shutil
import warnings
from argparse import Namespace

import pytest
import torch
from PIL import Image

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")   # deterministic cuBLAS; read at its first use

import main_SPQ  # noqa: E402
import spq.retrieval.distances as D  # noqa: E402
import spq.retrieval.topk as A  # noqa: E402
from conftest import read_log  # noqa: E402
from folder_fixture import write_folder  # noqa: E402
from spq.method.views import make_augmentation  # noqa: E402
from spq.data.cifar10 import CLASSES, load_cifar10  # noqa: E402
from spq.store.index import load_index  # noqa: E402
from spq.index import main as index_main  # noqa: E402
from spq.method.network import SPQ  # noqa: E402
from spq.options.values import network_of as build_model  # noqa: E402
from spq.run.device import memory_format  # noqa: E402
from spq.run.loop import fetch_batch  # noqa: E402
from spq.method.step import make_scaler, make_views, training_step  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason="needs a CUDA device (PyTorch sees none); run on a GPU "
                                        "machine with python -m pytest -m cuda")]
CUDA = torch.device("cuda")
ARGS = ["--device", "cuda", "--batch_size", "32", "--seed", "1"]


@contextlib.contextmanager
def reproducible():
    """Deterministic cuDNN without TF32, deterministic algorithms where PyTorch has them
    (a warning names any op that has none)."""
    with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True, allow_tf32=False):
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(False)


def fixed_views(view_a, view_b):
    """An `augment` that returns these two views, in turn, for one training step."""
    views = [view_a, view_b]
    return lambda x: views.pop(0)


def cli(*argv):
    return main_SPQ.main([str(a) for a in argv])


# --- one training step -----------------------------------------------------------------

def test_a_cuda_training_step_matches_the_cpu_step():
    """fp32, same weights, same views. Tolerances: the loss to 1e-4 relative; BatchNorm
    statistics to 1e-4 of their largest value; each gradient tensor to 5% in norm
    (||g_cuda - g_cpu|| / ||g_cpu||). The gradient bound is wide because at initialisation
    BatchNorm's backward cancels large terms: two CPU kernels (contiguous against
    channels_last) already differ by up to 0.7% there, and a wrong computation differs by
    order 100%."""
    torch.manual_seed(0)
    cpu = SPQ()
    gpu = copy.deepcopy(cpu).to(CUDA, memory_format=torch.channels_last)
    va, vb = torch.rand(16, 3, 32, 32), torch.rand(16, 3, 32, 32)
    images = torch.zeros(16, 3, 32, 32, dtype=torch.uint8)
    with reproducible():
        losses = []
        for model, device in [(cpu, torch.device("cpu")), (gpu, CUDA)]:
            opt = torch.optim.Adam(model.parameters(), lr=3e-4)
            losses.append(training_step(model, fixed_views(va.to(device), vb.to(device)), images.to(device),
                                        opt, make_scaler(device, "fp32"), 0.5).item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    for (name, p), q in zip(cpu.named_parameters(), gpu.parameters()):
        err = ((q.grad.cpu() - p.grad).norm() / p.grad.norm()).item()
        assert err < 0.05, (name, err)
    for (name, b), c in zip(cpu.named_buffers(), gpu.buffers()):
        if b.dtype.is_floating_point:
            torch.testing.assert_close(c.cpu(), b, rtol=0, atol=1e-4 * b.abs().max().item(), msg=name)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_bf16_and_fp16_steps_update_the_model(precision):
    torch.manual_seed(1)
    model = SPQ().to(CUDA, memory_format=torch.channels_last)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=3e-4)
    scaler = make_scaler(CUDA, precision)
    augment = make_augmentation(32).to(CUDA)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, device=CUDA)
    for _ in range(30):          # fp16: the scaler skips steps until its scale stops overflowing
        scale = scaler.get_scale() if scaler.is_enabled() else None
        loss = training_step(model, augment, images, opt, scaler, 0.5, precision, torch.channels_last)
        if scale is None or scaler.get_scale() == scale:
            break                # a step that was not skipped
    else:
        pytest.fail(f"{precision}: every one of 30 steps was skipped (scale {scaler.get_scale()})")
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert not torch.equal(p.detach(), before[name]), f"{name} did not change"


def test_channels_last_is_used_on_cuda():
    args = Namespace(N_books=8, N_words=16, L_word=16, soft_quantization_scale=5.0)
    model = build_model(args).to(CUDA, memory_format=memory_format(CUDA))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8, device=CUDA)
    va, vb = make_views(make_augmentation(32).to(CUDA), images, memory_format(CUDA))
    assert va.is_contiguous(memory_format=torch.channels_last) and vb.is_contiguous(memory_format=torch.channels_last)


# --- the command line on CUDA ---------------------------------------------------------

@pytest.fixture(scope="module")
def cuda_runs(data, tmp_path_factory):
    """2 epochs, the same resumed for a 3rd, and 3 straight epochs, on CUDA (reproducible)."""
    root = tmp_path_factory.mktemp("cuda")
    common = ["--data_dir", data, "--eval_epoch", 1, *ARGS]
    with reproducible(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert cli("--output_dir", root / "two", "--epochs", 2, *common) == 0
        shutil.copytree(root / "two", root / "resumed")
        assert cli("--output_dir", root / "resumed", "--epochs", 3, "--resume", root / "resumed" / "last.pth",
                   *common) == 0
        assert cli("--output_dir", root / "three", "--epochs", 3, *common) == 0
    nondeterministic = sorted({str(w.message).splitlines()[0] for w in caught
                               if "deterministic" in str(w.message)})
    return {"root": root, "nondeterministic": nondeterministic}


def test_cli_two_epochs_with_evaluation_on_cuda(cuda_runs):
    log = read_log(cuda_runs["root"] / "two")
    assert [r["epoch"] for r in log] == [1, 2]
    assert all(0 <= r["mAP"] <= 1 and r["loss"] > 0 for r in log)
    ckpt = torch.load(cuda_runs["root"] / "two" / "last.pth", weights_only=True)
    assert ckpt["rng"]["cuda"], "the CUDA random state is saved"


def test_resume_on_cuda_equals_an_uninterrupted_run(cuda_runs):
    """3 epochs == 2 + 1, to 1e-5: both runs are deterministic (cuDNN deterministic, no TF32);
    a resume that lost a random stream or the optimizer state differs by far more."""
    root = cuda_runs["root"]
    resumed, straight = read_log(root / "resumed"), read_log(root / "three")
    assert [r["epoch"] for r in resumed] == [1, 2, 3]
    for a, b in zip(resumed, straight):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5), cuda_runs["nondeterministic"]
    wa = torch.load(root / "resumed" / "last.pth", weights_only=True)["model"]
    wb = torch.load(root / "three" / "last.pth", weights_only=True)["model"]
    for name in wb:
        torch.testing.assert_close(wa[name], wb[name], atol=1e-5, rtol=0,
                                   msg=f"{name}; ops without a deterministic kernel: {cuda_runs['nondeterministic']}")


def test_eval_only_on_cuda(cuda_runs, data, tmp_path, capsys):
    two = cuda_runs["root"] / "two"
    with reproducible():
        assert cli("--data_dir", data, "--resume", two / "best.pth", "--eval_only", "--device", "cuda",
                   "--output_dir", tmp_path) == 0
    best = max(r["mAP"] for r in read_log(two))
    written = json.loads((tmp_path / "retrieval.json").read_text())
    assert written["mAP"] == pytest.approx(best, abs=1e-6)
    assert f"mAP@1000 = {best:.4f}" in capsys.readouterr().out


def test_a_real_compile_run_on_cuda(data, tmp_path, capsys):
    assert cli("--data_dir", data, "--output_dir", tmp_path, "--epochs", 1, "--compile", *ARGS) == 0
    err = capsys.readouterr().err
    assert "warning: --compile" not in err, err            # compiled, not fallen back
    assert 0 < read_log(tmp_path)[0]["loss"] < float("inf")


def test_streamed_folder_data_trains_and_evaluates_on_cuda(tmp_path, capsys):
    root = write_folder(tmp_path / "data", train=12, test=4)
    assert cli("--dataset", "folder", "--data_dir", root, "--output_dir", tmp_path / "run", "--epochs", 1,
               "--images_in_memory_gb", 0, "--num_workers", 0, "--device", "cuda", "--batch_size", 16) == 0
    assert "memory-mapped from disk" in capsys.readouterr().out
    record = read_log(tmp_path / "run")[0]
    assert 0 <= record["mAP"] <= 1 and 0 < record["loss"] < float("inf")


def test_pinned_copies_of_host_batches_arrive_intact():
    gen = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (300, 3, 32, 32), dtype=torch.uint8, generator=gen)
    indices = [torch.randperm(300, generator=gen)[:64] for _ in range(40)]
    batches = [fetch_batch(images, i, CUDA) for i in indices]      # 40 copies in flight at once
    torch.cuda.synchronize()
    for i, b in zip(indices, batches):
        assert b.device.type == "cuda" and torch.equal(b.cpu(), images[i])


# --- search and the index -------------------------------------------------------------

def integer_case(seed, q, g, m_books=8, k_words=16, length=4):
    """Small integers: every squared distance is exact and every square root correctly
    rounded on both devices, so the rankings must agree bit for bit. The items share 50
    codes: ties everywhere."""
    gen = torch.Generator().manual_seed(seed)
    books = torch.randint(-2, 3, (m_books, k_words, length), generator=gen).float()
    queries = torch.randint(-2, 3, (q, m_books * length), generator=gen).float()
    distinct = torch.randint(0, k_words, (50, m_books), generator=gen).to(torch.uint8)
    codes = distinct[torch.randint(0, 50, (g,), generator=gen)]
    return queries, codes, books


@pytest.mark.parametrize("distance", D.DISTANCES)
@pytest.mark.parametrize("threshold", [True, False])
def test_search_on_cuda_returns_the_cpu_ranking(distance, threshold, monkeypatch):
    if not threshold:                 # rank whole rows instead of the sampled-threshold path
        monkeypatch.setattr(A, "MIN_QUERIES", 10 ** 6)
    queries, codes, books = integer_case(3, 40, 4000)
    assert A.plan(4000, 50, 40).threshold == threshold
    on = {}
    for name, device in (("cpu", torch.device("cpu")), ("cuda", CUDA)):
        q, c, b = queries.to(device), codes.to(device), books.to(device)
        idx = torch.cat([i for _, i in A.search(q, c, b, 50, distance)])
        on[name] = (idx.cpu(), D.result_distances(q, c, b, idx, distance).cpu())
    assert torch.equal(on["cuda"][0], on["cpu"][0])
    assert torch.equal(on["cuda"][1], on["cpu"][1])
    assert (on["cpu"][1][:, 1:] == on["cpu"][1][:, :-1]).any()      # ties were there to break


def test_index_build_and_query_on_cuda(cuda_runs, data, tmp_path, capsys):
    ckpt = cuda_runs["root"] / "two" / "last.pth"
    for device in ("cpu", "cuda"):
        assert index_main(["build", "--checkpoint", str(ckpt), "--dataset", "cifar10", "--data_dir", data,
                           "--out", str(tmp_path / f"{device}.pt"), "--device", device]) == 0
    on_cpu, on_cuda = load_index(tmp_path / "cpu.pt"), load_index(tmp_path / "cuda.pt")
    # descriptors differ in their last bits between the devices' kernels; a code differs
    # only where a sub-vector is almost equidistant from two codewords
    assert (on_cpu.codes == on_cuda.codes).float().mean() >= 0.98
    cifar = load_cifar10(data)
    label = int(cifar.train_labels[17])
    folder = tmp_path / CLASSES[label]
    folder.mkdir()
    Image.fromarray(cifar.train_images[17].permute(1, 2, 0).numpy()).save(folder / "q.png")
    capsys.readouterr()
    assert index_main(["query", "--index", str(tmp_path / "cuda.pt"), "--checkpoint", str(ckpt),
                       str(folder / "q.png"), "--top_k", "3", "--device", "cuda", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)["queries"][0]
    assert found["class"] == CLASSES[label] and len(found["results"]) == 3
    top = found["results"][0]["item"]
    assert top == 17 or torch.equal(on_cuda.codes[top], on_cuda.codes[17])
