"""The `obiwan-h5` command line: one sub-command per module that does the work.

Each command module provides ``add_arguments(parser)`` and ``run(args) -> int``; this file
only wires them together and turns `InputError` into a one-line message and exit status 2.
"""

import argparse
import importlib
import logging
import os
import sys

from . import __version__
from .production import InputError

# sub-command name -> (module, one-line help)
COMMANDS = {
    "simulate": ("obiwan_h5.simulate", "write a synthetic obiwan production (SPEC §10)"),
    "derive": ("obiwan_h5.derive", "derive the joined truth/measurement table into one HDF5 file"),
    "demo": ("obiwan_h5.demo", "simulate a small production and run the whole chain on it"),
    "info": ("obiwan_h5.info", "describe a derived file: rows, bricks by status, columns"),
    "validate": ("obiwan_h5.validate", "check a derived file's layout, index and masks"),
    "view": ("obiwan_h5.view", "make a small file exposing chosen columns of a derived file, without copying"),
    "subset": ("obiwan_h5.subset", "copy chosen columns and bricks (or a brick sample) into a smaller file"),
    "export-fits": ("obiwan_h5.export", "stream a derived file (or part of it) to a FITS table"),
    "plot": ("obiwan_h5.plot", "make the standard analysis figures and an index page"),
}


def build_parser(argv=None):
    """The argument parser; only the module of the command named in `argv` is imported
    (so `obiwan-h5 info` never loads MPI, and start-up stays fast)."""
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((arg for arg in argv if arg in COMMANDS), None)
    parser = argparse.ArgumentParser(
        prog="obiwan-h5",
        description="Post-process obiwan image-simulation productions into one parallel HDF5 file.",
    )
    parser.add_argument("--version", action="version", version=f"obiwan-h5 {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    return parser


def main(argv=None):
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return args.run(args)
    except InputError as err:
        print(f"obiwan-h5 {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"obiwan-h5 {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`obiwan-h5 info ... | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
