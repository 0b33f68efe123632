#!/usr/bin/env python3
"""Train SPQ on CIFAR-10 or a folder of images and evaluate retrieval mAP. Options: python main_SPQ.py --help"""
import shlex
import sys

from spq.errors import SPQError, os_error_message
from spq.options.values import parse
from spq.run import faults
from spq.run.distributed import from_environment
from spq.run.interrupt import Interrupted
from spq.run.start import run


def resume_command(argv, checkpoint: str) -> str:
    """The command line that continues a stopped run: the same options, --resume CHECKPOINT."""
    kept, skip = [], False
    for token in argv:
        if skip:
            skip = False
        elif token == "--resume":
            skip = True
        elif not token.startswith("--resume="):
            kept.append(token)
    return shlex.join(["python", "main_SPQ.py", *kept, "--resume", checkpoint])


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    options, typed = parse(argv)
    faults.install()        # the crash tests' fault points (SPQ_FAULTS); nothing otherwise
    try:
        return run(options, typed)
    except Interrupted as e:
        if from_environment().main:
            print(f"{e}\nresume with: {resume_command(argv, e.checkpoint)}", file=sys.stderr)
        return e.exit_code
    except SPQError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # e.g. a full disk while writing a checkpoint (the old one stays intact)
        print(os_error_message(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("aborted; the last complete checkpoint is intact (resume with --resume auto)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
