"""--if_download through torchvision's real downloader, from an HTTP server on 127.0.0.1:
fetched, checksum verified, unpacked, loaded; a failed download leaves nothing behind."""
import functools
import hashlib
import http.server
import tarfile
import threading

import pytest
import torch

import main_SPQ
import spq.data.cifar10
from args import parse
from cifar_fixture import write_cifar10
from spq.data.cifar10 import FOLDER, load_cifar10
from spq.errors import SPQError
from spq.data.datasets import load_data

ARCHIVE = "cifar-10-python.tar.gz"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A folder served over HTTP on 127.0.0.1 holding a CIFAR-shaped archive; ARCHIVE_URL and
    ARCHIVE_MD5 point at it. Yields (source folder of the batches, served folder)."""
    source = write_cifar10(tmp_path / "source", per_batch=3, test=4)
    served = tmp_path / "www"
    served.mkdir()
    with tarfile.open(served / ARCHIVE, "w:gz") as tar:
        tar.add(f"{source}/{FOLDER}", arcname=FOLDER)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(spq.data.cifar10, "ARCHIVE_URL", f"http://127.0.0.1:{httpd.server_address[1]}/{ARCHIVE}")
    monkeypatch.setattr(spq.data.cifar10, "ARCHIVE_MD5", hashlib.md5((served / ARCHIVE).read_bytes()).hexdigest())
    yield source, served
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_if_download_fetches_verifies_unpacks_and_loads(server, tmp_path):
    source, served = server
    data_dir = tmp_path / "data"
    options = parse(["--if_download", "--data_dir", str(data_dir)])[0]
    data = load_data(options.data, 0, options.output.output_dir)
    assert (data_dir / ARCHIVE).read_bytes() == (served / ARCHIVE).read_bytes()
    expected = load_cifar10(source)
    assert torch.equal(data.train_images, expected.train_images) and data.train_images.shape[0] == 15
    assert torch.equal(data.query_labels, expected.query_labels)
    # a second run finds the files and downloads nothing
    (served / ARCHIVE).unlink()
    assert torch.equal(load_cifar10(str(data_dir), download=True).train_images, expected.train_images)


@pytest.mark.parametrize("exists", [False, True])
def test_bad_checksum_leaves_no_archive_and_no_empty_folder(server, tmp_path, monkeypatch, capsys, exists):
    monkeypatch.setattr(spq.data.cifar10, "ARCHIVE_MD5", "0" * 32)
    data_dir = tmp_path / "data"
    if exists:
        data_dir.mkdir()
    code = main_SPQ.main(["--if_download", "--data_dir", str(data_dir), "--output_dir", str(tmp_path / "o"),
                          "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    last = err.splitlines()[-1]                       # after the downloader's progress bar
    assert last.startswith("error: could not download CIFAR-10 from http://127.0.0.1:")
    assert f"did not match md5 {'0' * 32} and was not kept" in last
    assert not (data_dir / ARCHIVE).exists() and not (data_dir / FOLDER).exists()
    assert data_dir.exists() == exists                # a folder the user made stays, empty
    assert not (tmp_path / "o").exists()


def test_missing_archive_on_the_server_is_a_clean_error(server, tmp_path, monkeypatch):
    monkeypatch.setattr(spq.data.cifar10, "ARCHIVE_URL", spq.data.cifar10.ARCHIVE_URL.replace(ARCHIVE, "missing.tar.gz"))
    data_dir = tmp_path / "data"
    with pytest.raises(SPQError, match="HTTP Error 404"):
        load_cifar10(str(data_dir), download=True)
    assert not data_dir.exists()
