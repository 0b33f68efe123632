"""--precision bf16 on the CPU: the layout it runs in, the refusal where the processor has no
bf16 instructions, training and an exact resume, and the evaluation encoding under it."""
import json

import pytest
import torch
import torch.nn.functional as F

import spq
from spq.errors import SPQError
from spq.method.network import SPQ
from spq.run.device import memory_format
import spq.run.device as D
from conftest import SMALL, assert_clean_failure, assert_same_weights, read_log, reseal
from cli import spq as run_spq
from spq.data.cifar10 import load_cifar10
from spq.run.trained import load_model
from spq.method.quantization import encode
from spq.run.encode import describe
from reference import map_loops

needs_bf16 = pytest.mark.skipif(D.cpu_has_bf16() is False, reason="this CPU has no bf16 instructions")
CPU = torch.device("cpu")


def test_layouts():
    assert memory_format(CPU, "fp32") == torch.contiguous_format
    assert memory_format(CPU, "fp16") == torch.contiguous_format
    assert memory_format(CPU, "bf16") == torch.channels_last
    for precision in ("fp32", "bf16", "fp16"):
        assert memory_format(torch.device("cuda"), precision) == torch.channels_last


@pytest.mark.parametrize("machine, avx512_bf16, amx, expected", [
    ("x86_64", True, False, True), ("x86_64", False, True, True), ("x86_64", True, True, True),
    ("x86_64", False, False, False), ("aarch64", False, False, None), ("arm64", True, True, None)])
def test_cpu_has_bf16_reads_the_instructions(monkeypatch, machine, avx512_bf16, amx, expected):
    monkeypatch.setattr(D.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert D.cpu_has_bf16() is expected


def test_bf16_without_bf16_instructions_is_refused_in_one_line(monkeypatch, data, tmp_path):
    monkeypatch.setattr(D, "cpu_has_bf16", lambda: False)
    out = tmp_path / "run"
    result = run_spq("--data_dir", data, "--output_dir", out, "--epochs", 1, "--precision", "bf16", *SMALL)
    assert_clean_failure(result, 1, "--precision bf16: this CPU", "no bf16 instructions", "use --precision fp32")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()
    # fp32 runs there as always, and the check stands aside where PyTorch cannot tell
    monkeypatch.setattr(D, "cpu_has_bf16", lambda: None)
    D.check_precision(CPU, "bf16")


def test_describe_runs_the_network_under_the_precision():
    torch.manual_seed(0)
    model = SPQ().eval()
    images = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    x = images.float() / 255
    with torch.no_grad():
        plain32 = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            plain16 = model(x.contiguous(memory_format=torch.channels_last)).float()
    torch.testing.assert_close(describe(model, images, 16, precision="fp32"), plain32, atol=1e-6, rtol=0)
    bf16 = describe(model, images, 16, precision="bf16")
    assert bf16.dtype == torch.float32
    torch.testing.assert_close(bf16, plain16, atol=1e-6, rtol=0)
    assert not torch.equal(bf16, plain32)


@pytest.fixture(scope="module")
def bf16_runs(data, tmp_path_factory):
    """Three bf16 epochs in one run (the first 4 training images of each class: 2 steps of
    16 an epoch), and two then one more by --resume."""
    if D.cpu_has_bf16() is False:
        pytest.skip("this CPU has no bf16 instructions")
    whole, split = tmp_path_factory.mktemp("whole"), tmp_path_factory.mktemp("split")
    common = ["--data_dir", data, "--precision", "bf16", "--eval_epoch", 1, *SMALL, "--train_per_class", 4]
    assert run_spq(*common, "--output_dir", whole, "--epochs", 3).returncode == 0
    assert run_spq(*common, "--output_dir", split, "--epochs", 2).returncode == 0
    resumed = run_spq(*common, "--output_dir", split, "--epochs", 3, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    return data, whole, split


@needs_bf16
def test_bf16_trains_and_resumes_exactly(bf16_runs):
    data, whole, split = bf16_runs
    log = read_log(whole)
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert torch.load(whole / "last.pth", weights_only=True)["args"]["precision"] == "bf16"
    assert all(torch.isfinite(torch.tensor([r["loss"], r["mAP"]])).all() for r in log)
    assert log[-1]["loss"] < log[0]["loss"]
    untimed = [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in log]
    assert [{k: v for k, v in r.items() if not k.endswith("seconds")} for r in read_log(split)] == untimed
    assert_same_weights(whole / "last.pth", split / "last.pth")


@needs_bf16
def test_bf16_evaluation_encodes_in_bf16(bf16_runs, tmp_path):
    """--eval_only of a bf16 checkpoint scores descriptors computed under bf16 autocast, as
    plain loops score them; the API encodes in the checkpoint's precision or the one asked."""
    data, whole, _ = bf16_runs
    result = run_spq("--data_dir", data, "--resume", whole / "last.pth", "--eval_only", "--device", "cpu",
                     "--output_dir", tmp_path)
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "retrieval.json").read_text())
    model, ckpt, _ = load_model(whole / "last.pth", CPU)
    cifar = load_cifar10(data)
    gallery = torch.cat([torch.nonzero(cifar.train_labels == c).flatten()[:4] for c in range(10)]).sort().values

    def plain_descriptors(images, precision):
        x = F.interpolate(images.float() / 255, size=(16, 16), mode="bilinear", antialias=True)   # --input_size 16
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            return model(x.contiguous(memory_format=memory_format(CPU, precision))).float()

    books = model.codebooks.detach()
    codes = encode(plain_descriptors(cifar.train_images[gallery], "bf16"), books)
    expected = map_loops(plain_descriptors(cifar.query_images, "bf16"), cifar.query_labels, codes,
                         cifar.train_labels[gallery], books, 1000)
    assert written["mAP"] == pytest.approx(expected, abs=1e-6)
    # the Python API encodes under the checkpoint's precision unless told otherwise
    loaded = spq.load(whole / "last.pth", device="cpu")
    assert loaded.precision == "bf16"
    torch.testing.assert_close(loaded.descriptors(cifar.query_images[:8]),
                               plain_descriptors(cifar.query_images[:8], "bf16"), atol=1e-6, rtol=0)
    as_fp32 = spq.load(whole / "last.pth", device="cpu", precision="fp32")
    fp32 = as_fp32.descriptors(cifar.query_images[:8])
    torch.testing.assert_close(fp32, plain_descriptors(cifar.query_images[:8], "fp32"), atol=1e-5, rtol=0)
    assert not torch.equal(fp32, loaded.descriptors(cifar.query_images[:8]))
    with pytest.raises(SPQError, match="precision 'fp64' is not one of fp32, bf16, fp16"):
        spq.load(whole / "last.pth", device="cpu", precision="fp64")


@pytest.mark.parametrize("has_bf16, expected", [(True, "bf16"), (False, "fp32"), (None, "fp32")])
def test_auto_takes_bf16_only_where_the_cpu_runs_it(monkeypatch, has_bf16, expected):
    """--precision auto on both kinds of CPU (simulated), and on one PyTorch cannot read."""
    monkeypatch.setattr(D, "cpu_has_bf16", lambda: has_bf16)
    assert D.auto_precision(CPU) == expected
    assert D.encoding_precision("auto", "fp32", CPU) == expected
    assert D.encoding_precision(None, "fp16", CPU) == "fp16"          # the checkpoint's, as asked


def test_auto_on_this_cpu_is_recorded_in_the_log_and_the_checkpoint(data, tmp_path):
    """A run with --precision auto records the precision it chose (bf16 on a CPU with bf16
    instructions, fp32 elsewhere) in its log's header and its checkpoint's options."""
    out = tmp_path / "run"
    result = run_spq("--data_dir", data, "--output_dir", out, "--epochs", 1, "--precision", "auto", *SMALL)
    assert result.returncode == 0, result.stderr
    chosen = D.auto_precision(CPU)
    assert f"--precision auto: {chosen}" in result.stdout
    header = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert header["run"]["precision"] == chosen
    assert torch.load(out / "last.pth", weights_only=True)["args"]["precision"] == chosen


def test_the_api_refuses_bf16_as_the_command_line_does(monkeypatch, two_epochs):
    """spq.load(precision="bf16") on a CPU without bf16 instructions is refused in one line,
    as main_SPQ.py refuses --precision bf16; "auto" takes fp32 there."""
    out, _ = two_epochs
    monkeypatch.setattr(D, "cpu_has_bf16", lambda: False)
    with pytest.raises(SPQError, match="no bf16 instructions.*precision='fp32'"):
        spq.load(out / "best.pth", device="cpu", precision="bf16")
    assert spq.load(out / "best.pth", device="cpu", precision="auto").precision == "fp32"


def test_a_bf16_checkpoint_on_a_cpu_without_bf16(monkeypatch, data, two_epochs, tmp_path):
    """--eval_only of a checkpoint trained in bf16, on a CPU without bf16 instructions: refused
    with the way out (--precision fp32), which then evaluates it in fp32; resuming its
    training there is refused: a resumed run keeps its precision."""
    out, _ = two_epochs
    ckpt = torch.load(out / "last.pth", weights_only=True)
    ckpt["args"]["precision"] = "bf16"
    reseal(ckpt, tmp_path / "bf16.pth")
    monkeypatch.setattr(D, "cpu_has_bf16", lambda: False)
    refused = run_spq("--resume", tmp_path / "bf16.pth", "--eval_only", "--device", "cpu")
    assert_clean_failure(refused, 1, "the checkpoint's --precision bf16", "pass --precision fp32 (or auto)")
    done = run_spq("--resume", tmp_path / "bf16.pth", "--eval_only", "--device", "cpu", "--precision", "fp32")
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "retrieval.json").read_text())["model"]["precision"] == "fp32"
    resumed = run_spq("--resume", tmp_path / "bf16.pth", "--device", "cpu", "--epochs", 3,
                      "--output_dir", tmp_path / "again")
    assert_clean_failure(resumed, 1, "a resumed run keeps its precision")
