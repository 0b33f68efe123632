"""python -m spq.plot: PNG files from the log and retrieval.json of a real short run."""
import shutil
import struct
import sys
from pathlib import Path

import pytest

from conftest import assert_clean_failure, plot_cli as plot, spq

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


def test_draws_every_curve_as_png(run_dir):
    pytest.importorskip("matplotlib")
    result = plot(run_dir)
    assert result.returncode == 0, result.stderr
    for name in ALL:
        assert f"wrote {run_dir / name}" in result.stdout
        width, height = png_size(run_dir / name)
        assert width > 300 and height > 300
        assert (run_dir / name).stat().st_size > 5000        # a drawn picture, not an empty canvas


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
