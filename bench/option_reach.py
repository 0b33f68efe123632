"""How far the parsed command line travels: the files whose functions receive it, measured.

    python bench/option_reach.py [--root CHECKOUT]

Runs main_SPQ.main (in this process, CPU, a small CIFAR-shaped dataset it writes) three
times, as a user would: a new run of two epochs with an evaluation, its resume with
--resume auto for a third epoch, and --eval_only of its checkpoint; then python -m
spq.index build of that checkpoint. A profiler watches every call into a file of the
checkout (spq/, main_SPQ.py, args.py) and looks at the values of the called function's
parameters, and of their attributes (an object that carries the options, such as a run's
set-up, counts as the options): a parameter holding the whole parsed option set (an
argparse.Namespace, or an instance of `spq.options.values.Options`) counts the file as
"whole"; one holding a part of it (an instance of the type of any of its fields, such as
`DataOptions`) counts it as "part". Prints one JSON line: the files of each kind and their counts. --root measures
another checkout (its code is imported instead of this one's).
"""
import argparse
import dataclasses
import inspect
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
PROJECT = ("spq", "main_SPQ.py", "args.py")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=HERE, help="the checkout to measure")
    a = p.parse_args()
    root = a.root.resolve()
    sys.path[:0] = [str(root), str(HERE / "tests")]
    from cifar_fixture import write_cifar10
    import main_SPQ
    from spq import index as index_command
    try:                               # the typed options, where the code has them
        from spq.options.values import Options
        whole_types = (Options,)
        part_types = tuple(f.type if inspect.isclass(f.type) else eval(f.type, vars(sys.modules[Options.__module__]))
                           for f in dataclasses.fields(Options))
    except ImportError:
        whole_types, part_types = (), ()
    whole_types += (argparse.Namespace,)
    whole, part = set(), set()

    def profile(frame, event, arg):
        if event != "call":
            return
        path = Path(frame.f_code.co_filename)
        if not path.is_relative_to(root) or path.relative_to(root).parts[0] not in PROJECT:
            return
        code = frame.f_code
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        values = [frame.f_locals.get(n) for n in names]
        values += [w for v in values for w in held(v)]
        name = path.relative_to(root).as_posix()
        if any(isinstance(v, whole_types) for v in values):
            whole.add(name)
        elif part_types and any(isinstance(v, part_types) for v in values):
            part.add(name)

    def held(value):
        """What an object passed in carries (its attributes: a Setup holding the options)."""
        if isinstance(value, (*whole_types, *part_types)):
            return []
        try:
            return list(vars(value).values())
        except TypeError:
            return []

    with tempfile.TemporaryDirectory() as work:
        data = write_cifar10(work, per_batch=8, test=10)
        common = ["--data_dir", data, "--device", "cpu", "--batch_size", "16", "--input_size", "16",
                  "--eval_epoch", "1"]
        runs = [[*common, "--output_dir", f"{work}/run", "--epochs", "2"],
                ["--output_dir", f"{work}/run", "--resume", "auto", "--epochs", "3"],
                ["--resume", f"{work}/run/last.pth", "--eval_only"]]
        sys.setprofile(profile)
        try:
            codes = [main_SPQ.main(argv) for argv in runs]
            codes.append(index_command.main(["build", "--checkpoint", f"{work}/run/best.pth", "--data_dir", data,
                                             "--out", f"{work}/cifar.index", "--device", "cpu"]))
        finally:
            sys.setprofile(None)
    if any(codes):
        print(f"a run failed: exit statuses {codes}", file=sys.stderr)
        return 1
    reached = whole | part
    print(json.dumps({"bench": "option_reach", "root": str(root), "files_reached": len(reached),
                      "files_taking_the_whole_set": len(whole), "whole": sorted(whole),
                      "part_only": sorted(part - whole)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
