"""One way in and one way out: no module of spq/ outside spq/files/ opens, loads, saves or
downloads a file by itself, now or in code written later. Every call that could (`open`,
`torch.load`, `np.save`, `Path.read_text`, `faiss.write_index`, `urlopen`, ...) is found by
reading the code; each one outside the gate must be in ALLOWED, with the reason it does not
touch a file on its own (it works on a file object or bytes the gate gave)."""
import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "spq"
GATE = PACKAGE / "files"
# calls that may read or write a file, by the last name of what is called (x.save, np.load, ...)
ATTRIBUTES = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "load", "save", "savefig",
              "memmap", "fromfile", "tofile", "fdopen", "urlopen", "urlretrieve", "download_url_to_file",
              "load_state_dict_from_url", "write_index", "read_index", "TemporaryFile", "NamedTemporaryFile",
              "mkstemp", "mkdtemp", "copyfile", "copy", "copy2", "copytree", "move", "ZipFile", "Unpickler",
              "SummaryWriter", "touch", "download_and_extract_archive", "extractall", "extract", "rename",
              "symlink_to", "hardlink_to", "link_to", "mkfifo"}
# bare names: the built-in open and what a module may import by name
NAMES = {"open", "urlopen", "urlretrieve", "download_url_to_file", "load_state_dict_from_url", "SummaryWriter",
         "TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp", "copyfile", "copy2", "copytree",
         "download_and_extract_archive"}
ALLOWED = {
    ("spq/api.py", "to_rgb(ImageOps.exif_transpose(image)).save"):
        "a Pillow image saved into an in-memory buffer (BytesIO), for decode",
    ("spq/data/cifar10.py", "_Restricted(f, encoding=encoding).load"):
        "unpickles the file object open_file gave (regular, size-bounded)",
    ("spq/data/cifar10.py", "tarfile.open"): "reads the in-memory archive fetch gave (md5 checked)",
    ("spq/data/images.py", "np.memmap"): "maps the scratch file the way out made (exclusive, unlinked)",
    ("spq/data/images.py", "Image.open"): "decodes the in-memory copy image_file read, or an in-memory picture",
    ("spq/export.py", "np.save"): "writes into the in-memory buffer atomic_write hands it",
    ("spq/index.py", "image.save"): "writes into the in-memory buffer atomic_write hands it",
    ("spq/plot.py", "fig.savefig"): "writes into the in-memory buffer atomic_write hands it",
    ("spq/run/fit.py", "SummaryWriter"):
        "TensorBoard writes its own event files; it gets --tensorboard's folder only (optional, "
        "documented in docs/crash-safety.md)",
}


def risky_calls(path: Path, where: str):
    """(line, callee) of every call in the file that could touch a file, but for the names
    it imports from the gate (spq.files)."""
    tree = ast.parse(path.read_text())
    from_gate = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and (node.module or "").split(".")[-2:-1] == ["files"] for alias in node.names}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = ast.unparse(node.func)
        if isinstance(node.func, ast.Name):
            if name in NAMES and name not in from_gate:
                yield node.lineno, name
        elif isinstance(node.func, ast.Attribute) and node.func.attr in ATTRIBUTES:
            yield node.lineno, name


def outside_the_gate():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if GATE in path.parents:
            continue
        where = path.relative_to(ROOT).as_posix()
        found += [(where, line, name) for line, name in risky_calls(path, where)]
    return found


def test_no_module_touches_a_file_but_through_the_gate():
    wrong = [f"{where}:{line}: {name}(...)" for where, line, name in outside_the_gate()
             if (where, name) not in ALLOWED]
    assert not wrong, ("these calls read or write files without spq/files/ (route them through it, or "
                       "add them to ALLOWED with the reason they touch no file):\n" + "\n".join(wrong))


def test_every_allowed_call_is_still_there():
    """An exception that no longer matches code is removed, so the list stays the truth."""
    present = {(where, name) for where, _, name in outside_the_gate()}
    assert set(ALLOWED) <= present, set(ALLOWED) - present


def test_the_scan_sees_a_planted_file_access(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("import torch, numpy as np, json\nfrom pathlib import Path\n"
                       "def f(p):\n"
                       "    open(p).read()\n"
                       "    torch.load(p)\n"
                       "    np.save(p, 1)\n"
                       "    Path(p).write_text('x')\n"
                       "    json.load(open(p))\n"
                       "    from spq.files.read import read_bytes\n"
                       "    read_bytes(p, 'log')\n")
    found = {name for _, name in risky_calls(planted, "planted.py")}
    assert found == {"open", "torch.load", "np.save", "Path(p).write_text", "json.load"}


# ---------------------------------------------------------------- the gate's own refusals

def test_the_way_in_refuses_a_folder_a_file_over_its_kinds_size_and_an_overlong_line(tmp_path, monkeypatch):
    import pytest

    from spq.errors import SPQError
    from spq.files import read
    with pytest.raises(SPQError, match=r"^the split file .* is a folder, not a file$"):
        read.read_bytes(tmp_path, "split")
    big = tmp_path / "big.json"
    big.write_bytes(b"x" * 101)
    monkeypatch.setitem(read.LIMITS, "split", 100)
    with pytest.raises(SPQError, match=r"is 101 bytes, more than a split file may be \(100 bytes\)"):
        read.read_bytes(big, "split")
    big.write_bytes(b"x" * 100)
    assert len(read.read_bytes(big, "split")) == 100                        # the limit itself is allowed
    monkeypatch.setattr(read, "MAX_LINE", 10)
    (tmp_path / "l.txt").write_text("short\n" + "y" * 11 + "\n")
    with pytest.raises(SPQError, match=r"l\.txt, line 2: longer than 10 characters"):
        read.read_lines(tmp_path / "l.txt", "list")


def test_an_archive_declaring_more_than_its_kind_may_hold_is_refused_unread(tmp_path, monkeypatch):
    """A small file whose zip directory declares a huge member: refused before torch.load."""
    import struct
    import zipfile

    import pytest
    import torch

    from spq.errors import SPQError
    from spq.files import read
    path = tmp_path / "c.pth"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        z.writestr("c/data.pkl", b"0123456789")
    data = bytearray(path.read_bytes())
    at = data.index(b"PK\x01\x02") + 24                       # the central directory's uncompressed size
    data[at:at + 4] = struct.pack("<I", 10 ** 9)
    path.write_bytes(bytes(data))
    assert path.stat().st_size < 1000
    monkeypatch.setitem(read.LIMITS, "checkpoint", 10 ** 6)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load ran on a refused archive"))
    with pytest.raises(SPQError, match=r"declares 953\.7 MiB of contents, more than a checkpoint file may hold "
                                       r"\(1000000 bytes\)|declares .* more than a checkpoint file may hold"):
        read.load_torch(path, "checkpoint")
