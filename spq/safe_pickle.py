"""Reading pickles without running code: only what a CIFAR-10 python batch holds.

A pickle names the functions that rebuild its objects, and `pickle.load` calls them: a
crafted file can name `os.system`. `load` admits only numpy arrays and dtypes (and
numpy scalars) besides the containers and values pickle builds itself (dicts, lists,
tuples, bytes, strings, numbers, None, booleans); anything else is refused with an
SPQError naming the file, before it is called.
"""
import pickle
from pathlib import Path

from .errors import SPQError

# (module, name) of every callable the official batches (Python 2 and 3 pickles, NumPy 1
# and 2) name: array and dtype reconstruction, and bytes written by Python 3 at protocol 2.
ALLOWED = {
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class Refused(pickle.UnpicklingError):
    """The pickle names a callable outside ALLOWED."""


class _Restricted(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in ALLOWED:
            raise Refused(f"{module}.{name}")
        return super().find_class(module, name)


def load(path, encoding: str = "latin1"):
    """Unpickle `path` admitting only ALLOWED callables; SPQError naming the file when it
    names anything else. Other failures (a truncated file) propagate as they are."""
    with open(path, "rb") as f:
        try:
            return _Restricted(f, encoding=encoding).load()
        except Refused as e:
            raise SPQError(f"{Path(path)} is refused: it is a pickle that calls {e}, which a "
                           f"data file never needs (a CIFAR-10 batch holds only arrays, lists and "
                           f"strings); replace it with the official file") from None
