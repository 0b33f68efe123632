"""SPQ: Self-supervised Product Quantization for deep unsupervised image retrieval.

Folders by role, in layers (`LAYERS`, lowest first): a module imports only from its own
folder, its own layer or layers below it, and nothing outside the package
(tests/test_layers.py reads every import and checks both). The paper is spq/method/
(five files, read top to bottom); the commands are the modules at the top
(python -m spq.index, spq.export, spq.prepare, spq.split, spq.results, spq.plot; the
Python API is spq/api.py); main_SPQ.py, beside the package, trains and evaluates.
"""
__version__ = "0.1.0"

LAYERS = (
    ("foundations: the errors a user can fix", ("errors",)),
    ("the method, pure torch (network, soft quantization, loss, views, step); the way in and "
     "out of every file", ("method", "files")),
    ("retrieval over codes: distances, top-k search, metrics; data: images, datasets, splits",
     ("retrieval", "data")),
    ("options: declared, parsed into typed values, merged on resume", ("options",)),
    ("what is kept on disk: checkpoints and their checks, a run's record, index files", ("store",)),
    ("running the method: device, processes, loop, encoding, set-up, fit, evaluation, indexing",
     ("run",)),
    ("the commands and the Python API",
     ("api", "index", "export", "prepare", "split", "results", "plot")),
)

__all__ = ["load", "Model", "search"]      # the Python API, spq/api.py (docs/api.md)


def __getattr__(name):
    """spq.load, spq.Model and spq.search, imported from spq.api on first use: `import spq`
    alone stays light (no torch)."""
    if name in __all__:
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
