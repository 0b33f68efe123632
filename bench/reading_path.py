"""How many of the project's files a reader opens to follow one epoch of training steps,
and one evaluation, measured rather than guessed: the files holding Python code that runs.

    python bench/reading_path.py [--epoch MODULE:FUNCTION] [--evaluation MODULE:FUNCTION]

A short run of main_SPQ.py (in this process, CPU, a small CIFAR-shaped dataset it writes,
one epoch then an evaluation, default options otherwise) runs with a profiler switched
on while the named functions run: the pass over the training images (every step: batches,
views, forward, quantization, loss, update, progress) and the evaluation an epoch ends
with (encoding, codes, ADC search, mAP). Every file of this repository in which a Python
function was entered then counts, the named function's own file included; torch, kornia
and the standard library do not (nor the tests' fixture writer). Prints one JSON line. The defaults name today's
functions; --epoch spq.train:train_one_epoch --evaluation spq.train:Setup.evaluate measured
the code before the split of spq/train.py.
"""
import argparse
import functools
import importlib
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("spq", "main_SPQ.py", "args.py")          # what counts as the project's code
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def traced(function, seen: set):
    """`function` that records the repository files whose Python functions run inside it."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        def profile(frame, event, arg):
            if event == "call":
                path = Path(frame.f_code.co_filename)
                if path.is_relative_to(ROOT) and path.relative_to(ROOT).parts[0] in PROJECT:
                    seen.add(path.relative_to(ROOT).as_posix())
        seen.add(Path(function.__code__.co_filename).relative_to(ROOT).as_posix())
        previous = sys.getprofile()
        sys.setprofile(profile)
        try:
            return function(*args, **kwargs)
        finally:
            sys.setprofile(previous)
    return wrapper


def patch(target: str, seen: set) -> None:
    """Replace MODULE:NAME (or MODULE:CLASS.NAME) by its traced version, there and in every
    module that imported it by name."""
    module_name, _, qualname = target.partition(":")
    owner = importlib.import_module(module_name)
    *outer, name = qualname.split(".")
    for part in outer:
        owner = getattr(owner, part)
    original = getattr(owner, name)
    wrapper = traced(original, seen)
    setattr(owner, name, wrapper)
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("spq.") and getattr(module, name, None) is original:
            setattr(module, name, wrapper)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epoch", default="spq.run.loop:epoch_steps",
                   help="MODULE:FUNCTION that runs one pass over the training images")
    p.add_argument("--evaluation", default="spq.run.evaluation:measure",
                   help="MODULE:FUNCTION that evaluates the model at an epoch's end")
    args = p.parse_args()
    from cifar_fixture import write_cifar10
    import main_SPQ                              # imports every module of a run
    step_files, evaluation_files = set(), set()
    patch(args.epoch, step_files)
    patch(args.evaluation, evaluation_files)
    with tempfile.TemporaryDirectory() as work:
        data = write_cifar10(work, per_batch=8, test=10)
        code = main_SPQ.main(["--data_dir", data, "--output_dir", f"{work}/run", "--epochs", "1",
                              "--device", "cpu", "--batch_size", "16", "--input_size", "16"])
    if code:
        return code
    print(json.dumps({"bench": "reading_path", "epoch": args.epoch, "evaluation": args.evaluation,
                      "training_step_files": len(step_files), "evaluation_files": len(evaluation_files),
                      "training_step": sorted(step_files), "evaluation_list": sorted(evaluation_files)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
