"""A run of main_SPQ.py from its options: which checkpoint it continues, which device and
process it is, one run per output folder, then training (`spq.fit`) or, with
--eval_only, the evaluation of a checkpoint (`spq.evaluate`)."""
import sys
from typing import Iterable

from .device import check_memory, check_precision, resolve_device
from .distributed import from_environment, init, shutdown
from .errors import SPQError
from .evaluate import evaluate_checkpoint
from .fit import fit
from .outdir import OutputLock
from .resume import absolute_paths, load_resume
from .setup import prepare


def run(args, explicit: Iterable[str] = ()) -> int:
    """Train (or, with --eval_only, evaluate) as the arguments say; returns the exit status.
    `explicit`: the options typed on the command line (the others may come from --resume).

    Under torchrun, one process of several (`spq.distributed`). Raises SPQError for
    problems the user can fix, Interrupted after a signal was honoured.
    """
    world = from_environment()
    absolute_paths(args)
    resume, ckpt = load_resume(args, explicit, print if world.main else (lambda *a, **k: None))
    if world.distributed and args.batch_size % world.size:
        raise SPQError(f"--batch_size {args.batch_size} (the global batch) does not divide among "
                       f"{world.size} processes; use a multiple of {world.size}")
    device = resolve_device(args.device, str(world.local_rank) if world.distributed else args.gpu_id,
                            quiet=not world.main)
    check_memory(args, device, training=not args.eval_only)
    if not args.eval_only:
        check_precision(device, args.precision)
    if args.precision == "fp16" and device.type == "cpu" and world.main and not args.eval_only:
        print("warning: --precision fp16 on the CPU is slow (PyTorch has no fast fp16 kernels there: "
              "about 10 times fp32 here); bf16 or fp32 are faster", file=sys.stderr)
    if args.sync_bn and world.distributed and device.type != "cuda":
        raise SPQError("--sync_bn needs CUDA devices (PyTorch's SyncBatchNorm does not run on the "
                       "CPU); drop it")
    init(world, device)
    # one run per output folder; --eval_only writes only retrieval.json (atomically) and may
    # look at a folder whose run is still training
    lock = OutputLock(args.output_dir) if world.main and not args.eval_only else None
    try:
        if lock:
            lock.acquire()
        setup = prepare(args, resume, ckpt, world, device)
        if args.eval_only:
            return evaluate_checkpoint(setup, resume, ckpt)
        return fit(setup, resume, ckpt)
    finally:
        if lock:
            lock.release()
        shutdown()
