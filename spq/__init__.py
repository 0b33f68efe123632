"""SPQ: Self-supervised Product Quantization for deep unsupervised image retrieval.

One idea per module, in layers (`LAYERS`, lowest first): a module imports only modules
of its own layer or of layers below it, and nothing outside the package
(tests/test_layers.py reads every import and checks both).

To follow one training step read spq/step.py, then augment.py, model.py,
quantization.py and loss.py; one evaluation: retrieval.py, then model.py,
quantization.py and adc.py (bench/reading_path.py measures these lists).
"""
__version__ = "0.1.0"

LAYERS = (
    ("foundations: user errors, file writes, safe unpickling, signals",
     ("errors", "fileio", "safe_pickle", "interrupt")),
    ("the maths, pure functions: soft and hard quantization, the CQC loss, ADC search, "
     "learning-rate schedules",
     ("quantization", "loss", "adc", "schedule")),
    ("the network and its views",
     ("model", "augment")),
    ("data: decoding files, the image sets, CIFAR-10, folders, list files, subsets, "
     "query/train/database splits, the --dataset dispatch",
     ("images", "imageset", "cifar10", "folder", "lists", "subset", "split", "datasets")),
    ("options and what a run keeps: every option, checkpoint contents and their checks, the "
     "output folder, resuming",
     ("options", "schema", "checkpoint", "outdir", "resume")),
    ("running a model: device, processes, compiling, the training step, retrieval with a "
     "model, a run's set-up",
     ("device", "distributed", "compiling", "step", "retrieval", "setup")),
    ("a run: training to --epochs, --eval_only, main_SPQ.py's run",
     ("fit", "evaluate", "run")),
    ("tools on trained models, and the crash tests' fault points",
     ("index", "grid", "faiss_export", "plot", "prepare", "results", "api", "export", "faults")),
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
