"""The package stands alone: its layer map (spq.LAYERS) is true of every import, nothing in
spq/ imports a top-level module, the method's folder is the method alone, the method's
tests need no command line, and once installed the commands run from any folder."""
import ast
import importlib.metadata
import os
import sys
from pathlib import Path

import pytest

import processes
import spq
from conftest import ROOT

PACKAGE = ROOT / "spq"
# what lives beside the package: importing any of it would tie spq/ to this checkout
TOP_LEVEL = {p.stem for p in ROOT.iterdir() if p.suffix == ".py" or (p.is_dir() and not p.name.startswith("."))} \
    | {p.stem for folder in ("tests", "bench") for p in (ROOT / folder).rglob("*.py")}
TOP_LEVEL -= {"spq"}


def unit_of(path: Path) -> str:
    """The layer map's name for a file of the package (a path relative to spq/, or inside
    it): its folder, or the module at the top."""
    parts = path.relative_to(PACKAGE).parts if path.is_absolute() else path.parts
    return parts[0] if len(parts) > 1 else path.stem


def imports(path: Path, where: Path = None):
    """(line, unit of the package it imports or None, absolute top-level name or None) of
    every import in the file, those inside functions included, read as if it were at
    `where` in the package (default: where it is). Units are folders of the package or its
    top-level modules (`unit_of`)."""
    where = where or path.relative_to(PACKAGE)
    depth = len(where.parts) - 1                              # 0 at the top, 1 in a folder
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            up = node.level - 1                                   # how many folders it climbs
            if up > depth:
                pytest.fail(f"{path}:{node.lineno}: an import from outside the package")
            if depth - up == 1:                                   # within its own folder
                yield node.lineno, where.parts[0], None
            else:
                names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                for name in names:
                    yield node.lineno, name, None
        elif isinstance(node, ast.ImportFrom):
            parts = node.module.split(".")
            if parts[0] == "spq":
                for name in ([parts[1]] if len(parts) > 1 else [a.name for a in node.names]):
                    yield node.lineno, name, None
            else:
                yield node.lineno, None, parts[0]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                yield (node.lineno, parts[1], None) if parts[0] == "spq" and len(parts) > 1 else \
                      (node.lineno, None, parts[0])


def files():
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def layer_of():
    return {unit: i for i, (_, units) in enumerate(spq.LAYERS) for unit in units}


def test_every_folder_and_module_is_in_exactly_one_layer():
    listed = [u for _, units in spq.LAYERS for u in units]
    present = sorted({unit_of(p) for p in files()})
    assert sorted(listed) == present
    assert len(listed) == len(set(listed))


def test_every_import_goes_to_the_same_layer_or_below():
    layer = layer_of()
    wrong = []
    for path in files():
        own = unit_of(path)
        for line, unit, _ in imports(path):
            if unit is not None and layer[unit] > layer[own]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {unit} "
                             f"(layer {layer[unit]} above its own {layer[own]})")
    assert not wrong, "\n".join(wrong)


def test_nothing_in_the_package_imports_a_top_level_module():
    assert {"args", "main_SPQ", "conftest"} <= TOP_LEVEL         # the check knows what to look for
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for path in files() for line, _, name in imports(path) if name in TOP_LEVEL]
    assert not wrong, "\n".join(wrong)


def test_the_checks_see_a_planted_import(tmp_path):
    """The checks above on a module written to break them, read as if it were in spq/method/."""
    planted = tmp_path / "planted.py"
    planted.write_text("import os\n\ndef f():\n    from ..run.fit import fit\n    from .loss import cqc_loss\n"
                       "    import args\n    from spq.data import images\n")
    found = list(imports(planted, Path("method") / "planted.py"))
    assert (4, "run", None) in found and (5, "method", None) in found
    assert (6, None, "args") in found and (7, "data", None) in found
    assert layer_of()["run"] > layer_of()["method"]


def test_the_method_folder_holds_the_method_alone():
    """No option parsing, file I/O, progress bars or process groups in spq/method/, and at
    most five files a reader opens."""
    method = sorted((PACKAGE / "method").glob("*.py"))
    assert len([p for p in method if p.name != "__init__.py"]) <= 5
    banned = {"argparse", "tqdm", "subprocess", "multiprocessing", "os", "pathlib", "shutil", "pickle",
              "json", "io", "tempfile", "signal", "torch.distributed", "sys"}
    for path in method:
        for line, unit, name in imports(path):
            assert unit in (None, "method"), f"{path.name}:{line} imports spq.{unit}"
            assert name not in banned, f"{path.name}:{line} imports {name}"
        text = path.read_text()
        for call in ("open(", "torch.save(", "torch.load(", "print("):
            assert call not in text, f"{path.name} calls {call}"


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in files() + [ROOT / "main_SPQ.py", ROOT / "args.py"]
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long


def test_the_methods_tests_import_no_command_line():
    """tests/method/ runs without the program: nothing it or conftest.py imports at module
    level reaches main_SPQ, the commands or spq.run."""
    commands = {"main_SPQ", "args", "cli"} | {u for _, units in spq.LAYERS[-1:] for u in units}
    for path in sorted((ROOT / "tests" / "method").glob("*.py")) + [ROOT / "tests" / "conftest.py"]:
        tree = ast.parse(path.read_text())
        for node in tree.body:                                  # module level only
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    parts = name.split(".")
                    assert parts[0] not in commands, f"{path.name}:{node.lineno} imports {name}"
                    assert not (parts[0] == "spq" and len(parts) > 1 and parts[1] in commands | {"run"}), \
                        f"{path.name}:{node.lineno} imports {name}"


def installed() -> bool:
    try:
        return Path(importlib.metadata.distribution("spq").locate_file("")).exists()
    except importlib.metadata.PackageNotFoundError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not installed(), reason="spq is not installed in this environment: pip install -e . "
                                            "(requirements-dev.txt does)")
def test_the_commands_run_from_another_folder_once_installed(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for module in ("spq.index", "main_SPQ"):
        done = processes.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, env=env, timeout=300)
        assert done.returncode == 0, (module, done.stderr)
        assert "usage:" in done.stdout, module
