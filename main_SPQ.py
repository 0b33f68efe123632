#!/usr/bin/env python3
"""Train SPQ on CIFAR-10 and evaluate retrieval mAP. Options: python main_SPQ.py --help"""
import sys

from args import explicit_options, parse_args
from spq.errors import SPQError
from spq.train import run


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        return run(args, explicit_options(argv))
    except SPQError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # e.g. a full disk while writing a checkpoint (the old one stays intact)
        print(f"error: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
