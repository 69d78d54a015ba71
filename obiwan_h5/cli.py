"""The `obiwan-h5` command line: one sub-command per module that does the work.

Each command module provides ``add_arguments(parser)`` and ``run(args) -> int``; this file
only wires them together and turns `InputError` into a one-line message and exit status 2.
"""

import argparse
import importlib
import logging
import sys

from . import __version__
from .production import InputError

# sub-command name -> (module, one-line help)
COMMANDS = {
    "simulate": ("obiwan_h5.simulate", "write a synthetic obiwan production (SPEC §10)"),
    "derive": ("obiwan_h5.derive", "derive the joined truth/measurement table into one HDF5 file"),
    "demo": ("obiwan_h5.demo", "simulate a small production and run the whole chain on it"),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="obiwan-h5",
        description="Post-process obiwan image-simulation productions into one parallel HDF5 file.",
    )
    parser.add_argument("--version", action="version", version=f"obiwan-h5 {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sub = commands.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv=None):
    parser = build_parser()
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


if __name__ == "__main__":
    sys.exit(main())
