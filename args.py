"""The options of main_SPQ.py, for a reader: run

    python args.py

to print every option, grouped, with its default, its unit and where its default comes
from (the same text as python main_SPQ.py --help). They are declared once, in
spq/options/declared.py, and parsed into typed values by spq/options/values.py, which this
module re-exports, so the package needs nothing from the top level. A table of them:
docs/options.md.
"""
from spq.options.declared import get_args_parser  # noqa: F401
from spq.options.values import Options, explicit_options, parse, parse_args  # noqa: F401

if __name__ == "__main__":
    get_args_parser().print_help()
