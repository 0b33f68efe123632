"""main_SPQ.py's run, from its options: which checkpoint it continues and the options it
takes from it, which device and process it is, one run per output folder, then training
(`spq.run.fit`) or, with --eval_only, the evaluation of a checkpoint
(`spq.run.evaluation`).

A resumed or --eval_only run takes every option the user did not type from the
checkpoint's run; typed options override it, except the model and method options
(`spq.options.values.METHOD_OPTIONS`), which must keep the checkpoint's values.
"""
import sys
from pathlib import Path
from typing import Dict, Iterable, Optional, Tuple

from ..errors import SPQError
from ..files.lock import OutputLock
from ..options.declared import AUTO
from ..options.values import Options, absolute_paths, merged, what_ran
from ..store.checkpoint import load_checkpoint
from .device import auto_precision, check_input_size, check_memory, check_precision, resolve_device
from .distributed import from_environment, init, shutdown
from .evaluation import evaluate_checkpoint
from .fit import Training, fit
from .setup import prepare, prepare_output


def run(options: Options, typed: Iterable[str] = ()) -> int:
    """Train (or, with --eval_only, evaluate) as the options say; returns the exit status.
    `typed`: the options typed on the command line (the others may come from --resume).

    Under torchrun, one process of several (`spq.run.distributed`). Raises SPQError for
    problems the user can fix, Interrupted after a signal was honoured.
    """
    world = from_environment()
    say = print if world.main else (lambda *a, **k: None)
    options, resume, ckpt = load_resume(absolute_paths(options), typed, say)
    runtime, data, method, optim, output = (options.runtime, options.data, options.method, options.optim,
                                            options.output)
    if world.distributed and optim.batch_size % world.size:
        raise SPQError(f"--batch_size {optim.batch_size} (the global batch) does not divide among "
                       f"{world.size} processes; use a multiple of {world.size}")
    device = resolve_device(runtime.device, str(world.local_rank) if world.distributed else runtime.gpu_id,
                            quiet=not world.main)
    if runtime.precision == AUTO:                          # a new run, or --eval_only asking for it
        options = options.replace(precision=auto_precision(device))
        runtime = options.runtime
        say(f"--precision auto: {runtime.precision} ({'bf16 runs natively' if runtime.precision == 'bf16' else 'no native bf16'} on {device})")
    check_run_precision(device, runtime.precision, output.eval_only, resume is not None, "precision" in typed)
    check_memory(method, data.input_size, optim.batch_size, device, training=not output.eval_only)
    check_input_size(method, data.input_size)
    if runtime.precision == "fp16" and device.type == "cpu" and world.main and not output.eval_only:
        print("warning: --precision fp16 on the CPU is slow (PyTorch has no fast fp16 kernels there: "
              "about 10 times fp32 here); bf16 or fp32 are faster", file=sys.stderr)
    if runtime.sync_bn and world.distributed and device.type != "cuda":
        raise SPQError("--sync_bn needs CUDA devices (PyTorch's SyncBatchNorm does not run on the "
                       "CPU); drop it")
    init(world, device)
    # one run per output folder; --eval_only writes only retrieval.json (atomically) and may
    # look at a folder whose run is still training
    lock = OutputLock(output.output_dir) if world.main and not output.eval_only else None
    try:
        if lock:
            lock.acquire()
        out = Path(output.output_dir)
        if world.main:                                     # refused here, before any image is decoded
            prepare_output(out, resuming=ckpt is not None)
        setup = prepare(data, method, runtime.precision, runtime.num_workers, optim.batch_size, optim.seed,
                        out, output.eval_only, resume, ckpt, world, device)
        if output.eval_only:
            return evaluate_checkpoint(setup, options.evaluation, what_ran(options.flat()), resume, ckpt)
        training = Training(method, optim, options.evaluation, runtime, output.tensorboard, options.flat())
        return fit(setup, training, resume, ckpt)
    finally:
        if lock:
            lock.release()
        shutdown()


def check_run_precision(device, precision: str, eval_only: bool, resuming: bool, typed: bool) -> None:
    """bf16 refused where the CPU would emulate it (`check_precision`), with the remedy that
    fits: a new run or an evaluation may take fp32; a resumed run keeps its precision."""
    if eval_only and not typed:
        check_precision(device, precision, "the checkpoint's --precision bf16",
                        "pass --precision fp32 (or auto) to encode in fp32 here (its codes may differ "
                        "slightly from a bf16 evaluation)")
    elif resuming and not eval_only:
        check_precision(device, precision, "the checkpoint's --precision bf16",
                        "a resumed run keeps its precision: continue it on a machine with bf16 "
                        "instructions or a GPU")
    else:
        check_precision(device, precision)


def load_resume(options: Options, typed: Iterable[str],
                say=print) -> Tuple[Options, Optional[str], Optional[Dict]]:
    """(the run's options, checkpoint path, checkpoint) of --resume, or (options, None, None)
    for a new run; the options the user did not type are taken from the checkpoint's run
    (`spq.options.values.merged`)."""
    resume = resume_path(options, say)
    if not resume:
        return options, None, None
    ckpt = load_checkpoint(resume)
    if ckpt["optimizer"] is None and not options.output.eval_only:
        raise SPQError(f"{resume} holds the model only (best.pth keeps no optimizer state): "
                       f"continue training from {Path(resume).parent / 'last.pth'} (or "
                       f"--resume auto), or evaluate it with --eval_only")
    options, notes = merged(options, ckpt["args"], typed, resume)
    for note in notes:
        say(f"resume: {note}")
    return options, resume, ckpt


def resume_path(options: Options, say=print) -> Optional[str]:
    """--resume PATH as given; --resume auto: OUTPUT_DIR/last.pth if it exists, else None."""
    output = options.output
    if output.resume != "auto":
        return output.resume
    last = Path(output.output_dir) / "last.pth"
    if last.is_file():
        return str(last)
    if output.eval_only:
        raise SPQError(f"--resume auto --eval_only: {last} does not exist")
    say(f"--resume auto: no {last} yet, starting a new run")
    return None
