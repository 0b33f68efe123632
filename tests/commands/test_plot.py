"""python -m spq.plot: PNG files from the log and retrieval.json of a real short run."""
import json
import shutil
import struct
import sys
from pathlib import Path

import pytest

from conftest import assert_clean_failure, read_log
from cli import plot_cli as plot, spq
from spq.plot import curves

ALL = ["loss.png", "map.png", "precision_recall.png", "precision_at_k.png"]


def png_size(path):
    """(width, height) from a PNG's header; fails unless the file is a PNG."""
    head = Path(path).read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def run_dir(data, two_epochs, tmp_path_factory):
    """The 2-epoch run's log plus the retrieval.json of --eval_only on its best checkpoint."""
    out, _ = two_epochs
    folder = tmp_path_factory.mktemp("plot")
    shutil.copy(Path(out) / "log.jsonl", folder)
    result = spq("--data_dir", data, "--resume", Path(out) / "best.pth", "--eval_only",
                 "--device", "cpu", "--output_dir", folder)
    assert result.returncode == 0, result.stderr
    return folder


def test_each_picture_shows_the_runs_numbers(run_dir):
    log = read_log(run_dir)
    result = json.loads((run_dir / "retrieval.json").read_text())
    found = curves(run_dir)
    assert sorted(found) == sorted(ALL)
    (loss, lr), (m,) = found["loss.png"], found["map.png"]
    assert (loss.x, loss.y) == ([r["epoch"] for r in log], [r["loss"] for r in log])
    assert (lr.x, lr.y) == ([r["epoch"] for r in log], [r["lr"] for r in log])
    assert (m.x, m.y) == ([r["epoch"] for r in log if "mAP" in r], [r["mAP"] for r in log if "mAP" in r])
    (pr,), (at_k,) = found["precision_recall.png"], found["precision_at_k.png"]
    assert (pr.x, pr.y) == (result["precision_recall"]["recall"], result["precision_recall"]["precision"])
    assert at_k.x == [1, 10, 50] and at_k.y == [result["precision_at_k"][str(k)] for k in at_k.x]


def test_draws_every_curve_as_png_from_the_numbers(run_dir, tmp_path):
    pytest.importorskip("matplotlib")
    result = plot(run_dir)
    assert result.returncode == 0, result.stderr
    for name in ALL:
        assert f"wrote {run_dir / name}" in result.stdout
        width, height = png_size(run_dir / name)
        assert width > 300 and height > 300
    # the same numbers draw the same pictures; other losses another loss.png, the rest unchanged
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    assert plot(other).returncode == 0
    assert all((other / n).read_bytes() == (run_dir / n).read_bytes() for n in ALL)
    lines = (other / "log.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines[1:]]                  # below the header line
    rows[0]["loss"] *= 0.5
    (other / "log.jsonl").write_text(lines[0] + "\n" + "".join(json.dumps(r) + "\n" for r in rows))
    assert plot(other).returncode == 0
    assert (other / "loss.png").read_bytes() != (run_dir / "loss.png").read_bytes()
    assert (other / "map.png").read_bytes() == (run_dir / "map.png").read_bytes()


def test_without_retrieval_json_only_the_training_curves(two_epochs, tmp_path):
    pytest.importorskip("matplotlib")
    shutil.copy(Path(two_epochs[0]) / "log.jsonl", tmp_path)
    result = plot(tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["loss.png", "map.png"]


def test_without_matplotlib_a_clear_message(run_dir, tmp_path, monkeypatch):
    shutil.copy(run_dir / "log.jsonl", tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)                  # import fails
    result = plot(tmp_path)
    assert_clean_failure(result, 1, "needs matplotlib", "pip install matplotlib")
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize("content,message", [(None, "log.jsonl does not exist"),
                                             ("", "holds no epochs"),
                                             ('{"epoch": 1, "loss": 9.1}\nnot json\n', "line 2")])
def test_bad_logs_are_clear_errors(tmp_path, content, message):
    if content is not None:
        (tmp_path / "log.jsonl").write_text(content)
    assert_clean_failure(plot(tmp_path), 1, message)


def test_epoch_ticks_are_whole_numbers():
    """A 3-epoch run's curves are labelled 1, 2, 3, not 1.25, 1.5, ..."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from spq.plot import whole_epochs
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [9.6, 9.4, 9.3])
    fig.canvas.draw()
    assert any(tick != int(tick) for tick in ax.get_xticks())          # matplotlib's own choice
    whole_epochs(plt, ax)
    fig.canvas.draw()
    assert all(tick == int(tick) for tick in ax.get_xticks())
    plt.close(fig)
