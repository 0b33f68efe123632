"""The commands that read no model start without torch: their --help answers at once."""
import sys

import pytest

import processes
from conftest import ROOT


@pytest.mark.parametrize("command", ["spq.prepare", "spq.split", "spq.results"])
def test_help_imports_no_torch(command):
    """python -m spq.prepare, spq.split and spq.results --help import neither torch nor the
    modules that need it (torch takes seconds to import; they print their help without it)."""
    code = (f"import runpy, sys\n"
            f"sys.argv = ['{command}', '--help']\n"
            f"try:\n    runpy.run_module('{command}', run_name='__main__')\n"
            f"except SystemExit as e:\n    assert e.code == 0, e.code\n"
            f"print('torch' in sys.modules, file=sys.stderr)\n")
    done = processes.run([sys.executable, "-c", code], cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage: python -m " + command in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "False", done.stderr
