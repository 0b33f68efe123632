"""The package stands alone: its layer map (spq.LAYERS) is true of every import, nothing in
spq/ imports a top-level module, and once installed its commands run from any folder."""
import ast
import importlib.metadata
import os
import sys
from pathlib import Path

import pytest

import spq
import processes
from conftest import ROOT

PACKAGE = ROOT / "spq"
# what lives beside the package: importing any of it would tie spq/ to this checkout
TOP_LEVEL = {p.stem for p in ROOT.iterdir() if p.suffix == ".py" or (p.is_dir() and not p.name.startswith("."))} \
    | {p.stem for folder in ("tests", "bench") for p in (ROOT / folder).glob("*.py")}
TOP_LEVEL -= {"spq"}


def imports(path: Path):
    """(line, spq module or None, absolute top-level name or None) of every import in the file,
    those inside functions included."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1:
                names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
                for name in names:
                    yield node.lineno, name, None
            elif node.level == 0 and node.module.split(".")[0] == "spq":
                parts = node.module.split(".")
                for name in ([parts[1]] if len(parts) > 1 else [a.name for a in node.names]):
                    yield node.lineno, name, None
            elif node.level == 0:
                yield node.lineno, None, node.module.split(".")[0]
            else:
                pytest.fail(f"{path.name}:{node.lineno}: an import from outside the package ({'.' * node.level})")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                yield (node.lineno, parts[1], None) if parts[0] == "spq" and len(parts) > 1 else \
                      (node.lineno, None, parts[0])


def layer_of():
    return {module: i for i, (_, modules) in enumerate(spq.LAYERS) for module in modules}


def test_every_module_is_in_exactly_one_layer():
    listed = [m for _, modules in spq.LAYERS for m in modules]
    files = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert sorted(listed) == files
    assert len(listed) == len(set(listed))


def test_every_import_goes_to_the_same_layer_or_below():
    layer = layer_of()
    wrong = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem == "__init__":
            continue
        for line, module, _ in imports(path):
            if module is not None and layer[module] > layer[path.stem]:
                wrong.append(f"spq/{path.name}:{line} imports {module} "
                             f"(layer {layer[module]} above its own {layer[path.stem]})")
    assert not wrong, "\n".join(wrong)


def test_nothing_in_the_package_imports_a_top_level_module():
    assert {"args", "main_SPQ", "conftest"} <= TOP_LEVEL         # the check knows what to look for
    wrong = [f"spq/{path.name}:{line} imports {name}"
             for path in sorted(PACKAGE.glob("*.py")) for line, _, name in imports(path) if name in TOP_LEVEL]
    assert not wrong, "\n".join(wrong)


def test_the_checks_see_a_planted_import(tmp_path):
    """The two checks above on a module written to break them."""
    planted = tmp_path / "planted.py"
    planted.write_text("import os\n\ndef f():\n    from .fit import fit\n    import args\n")
    found = list(imports(planted))
    assert (4, "fit", None) in found and (5, None, "args") in found


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
