"""--resume: which checkpoint a run continues (or evaluates), and the options it takes from it.

A resumed or --eval_only run takes every option the user did not type from the
checkpoint's run; typed options override it, except the model and method options
(`spq.options.METHOD_OPTIONS`), which must keep the checkpoint's values.
"""
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from .checkpoint import load_checkpoint
from .errors import SPQError
from .options import LEGACY_METHOD, METHOD_OPTIONS, PATH_OPTIONS, RUN_ONLY_OPTIONS


def load_resume(args, explicit: Iterable[str], say=print) -> Tuple[Optional[str], Optional[Dict]]:
    """(checkpoint path, checkpoint) of --resume, or (None, None) for a new run; the
    options the user did not type are taken from the checkpoint's run (`merge_args`)."""
    resume = resume_path(args, say)
    if not resume:
        return None, None
    ckpt = load_checkpoint(resume)
    if ckpt["optimizer"] is None and not args.eval_only:
        raise SPQError(f"{resume} holds the model only (best.pth keeps no optimizer state): "
                       f"continue training from {Path(resume).parent / 'last.pth'} (or "
                       f"--resume auto), or evaluate it with --eval_only")
    for note in merge_args(args, ckpt["args"], explicit, resume):
        say(f"resume: {note}")
    return resume, ckpt


def resume_path(args, say=print) -> Optional[str]:
    """--resume PATH as given; --resume auto: OUTPUT_DIR/last.pth if it exists, else None."""
    if args.resume != "auto":
        return args.resume
    last = Path(args.output_dir) / "last.pth"
    if last.is_file():
        return str(last)
    if args.eval_only:
        raise SPQError(f"--resume auto --eval_only: {last} does not exist")
    say(f"--resume auto: no {last} yet, starting a new run")
    return None


def absolute_paths(args) -> None:
    """Make the path options of `args` absolute (relative to the working directory), so that
    a checkpoint's run can be resumed or evaluated from any working directory."""
    for name in PATH_OPTIONS:
        if getattr(args, name, None):
            setattr(args, name, os.path.abspath(getattr(args, name)))


def merge_args(args, saved: Dict, explicit: Iterable[str], path) -> List[str]:
    """Reconcile the command line with the checkpoint's arguments `saved`; returns the
    lines to print.

    An option the user did not type takes the checkpoint's value (data, epochs,
    evaluation period, device, ...), except --output_dir, which becomes the folder
    holding the checkpoint (where its run wrote it); the first line lists what was taken
    where it differs from the default. A typed option overrides the checkpoint's value
    (one line per change), except those of METHOD_OPTIONS, which must keep it (SPQError
    naming the option).
    """
    explicit = set(explicit)
    saved = {**LEGACY_METHOD, **saved}
    typed_lists = explicit & {"train_list", "query_list", "gallery_list"}
    if typed_lists and "split_file" not in explicit:       # typed images replace the run's split
        saved["split_file"] = None
    if "split_file" in explicit:                           # and a typed split the run's lists
        saved.update(train_list=None, query_list=None, gallery_list=None)
    for name in METHOD_OPTIONS:
        if name in saved and name in explicit and getattr(args, name) != saved[name]:
            raise SPQError(f"--{name} {getattr(args, name)} differs from the checkpoint's "
                           f"{saved[name]} ({path}); a resumed run keeps the model and method: "
                           f"drop --{name} or start a new run")
    taken, changed = [], []
    for name, value in sorted(vars(args).items()):
        if name in RUN_ONLY_OPTIONS or (name not in saved and name != "output_dir"):
            continue
        if name in explicit:
            if saved.get(name, value) != value:
                changed.append(f"--{name} {value} (the checkpoint's run had {saved[name]})")
            continue
        new = os.path.dirname(os.path.abspath(path)) if name == "output_dir" else saved[name]
        setattr(args, name, new)
        if new != value:
            taken.append(f"--{name} {new}")
    line = (f"options from the checkpoint's run: {' '.join(taken)} (type an option to override it)"
            if taken else "options from the checkpoint's run: none needed (each option not typed has "
                          "the same value there)")
    return [line] + changed
