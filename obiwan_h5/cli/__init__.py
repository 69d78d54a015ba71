"""The `obiwan-h5` command line: argparse only; the work is done by the library.

Each command family module (`derive`, `sim`, `read`, `maps`, `plot`) provides, per command,
``add_<name>_arguments(parser)`` and ``run_<name>(args) -> int``. This module wires them
together and turns the library's errors into one line on stderr (parameters shown as
their flags, `options.flag_text`) and an exit status: 2 for bad input or a missing package
(one line saying what to install) or an output that cannot be written (no space, quota, ...),
130 when interrupted.
"""

import importlib
import logging
import os
import sys

from ..errors import InputError, JobError, OutputError
from .options import HelpFormatter, Parser, add_common_arguments, flag_text

# command -> (family module, one-line help)
COMMANDS = {
    "simulate": ("sim", "write a synthetic obiwan production"),
    "derive": ("derive", "derive the joined truth/measurement table into one HDF5 file"),
    "demo": ("sim", "simulate a small production and run the whole chain on it"),
    "info": ("read", "describe a derived file: rows, bricks by status, columns"),
    "validate": ("read", "check a derived file's layout, index and masks"),
    "view": ("read", "make a small file exposing chosen columns of a derived file, without copying"),
    "subset": ("read", "copy chosen columns and bricks (or a brick sample) into a smaller file"),
    "export": ("read", "stream a derived file (or part of it) to a FITS or Parquet table"),
    "export-fits": ("read", "alias of 'export --format fits' (kept for existing scripts)"),
    "maps": ("maps", "write selection-function HEALPix maps (counts, fractions, imaging properties per pixel)"),
    "plot": ("plot", "make the standard analysis figures and an index page"),
}


def _entry(name):
    module = importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    stem = name.replace("-", "_")
    return getattr(module, f"add_{stem}_arguments"), getattr(module, f"run_{stem}")


def build_parser(argv=None, every_command=False):
    """The argument parser; only the family module of the command named in `argv` is
    imported (so `obiwan-h5 info` never loads MPI, and start-up stays fast), unless
    `every_command` (for the generated reference)."""
    argv = sys.argv[1:] if argv is None else argv
    chosen = next((arg for arg in argv if arg in COMMANDS), None)
    parser = Parser(
        prog="obiwan-h5",
        description="Post-process obiwan image-simulation productions into one parallel HDF5 file.",
    )
    add_common_arguments(parser, top_level=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    parser.commands = {}
    for name, (_, help_text) in COMMANDS.items():
        sub = parser.commands[name] = commands.add_parser(name, help=help_text, description=help_text,
                                                          formatter_class=HelpFormatter)
        add_common_arguments(sub)
        if name == chosen or every_command:
            add_arguments, run = _entry(name)
            add_arguments(sub)
            sub.set_defaults(run=run)
    return parser


# what to install when a package a command needs is missing
INSTALL_HINTS = {
    "h5py": "pip install h5py (a serial h5py reads, exports, plots and runs a 1-process derive; "
            "derive on several MPI ranks needs h5py built against parallel HDF5, see docs/install.md)",
    "mpi4py": "pip install mpi4py (only derive on several MPI ranks needs it, see docs/install.md)",
    "pyarrow": "pip install pyarrow (or pip install 'obiwan_h5[parquet]')",
    "fitsio": "pip install fitsio",
    "matplotlib": "pip install matplotlib",
    "astropy": "pip install astropy",
    "scipy": "pip install scipy",
}


def missing_package_message(err, command=None):
    """One line for a missing package: which one, and what to install."""
    name = (err.name or "").split(".")[0] or "a required package"
    hint = INSTALL_HINTS.get(name, f"pip install {name}")
    program = f"obiwan-h5 {command}" if command else "obiwan-h5"
    return f"{program}: error: the Python package {name} is not installed: {hint}"


def main(argv=None):
    """Run ``obiwan-h5`` with `argv` (default: the process's arguments); return the exit
    status: 0, 1 as the command says, 2 for an error of the package, 130 when interrupted."""
    try:
        parser = build_parser(argv)
    except ModuleNotFoundError as err:
        argv_ = sys.argv[1:] if argv is None else argv
        print(missing_package_message(err, next((arg for arg in argv_ if arg in COMMANDS), None)), file=sys.stderr)
        return 2
    args, extras = parser.parse_known_args(argv)
    if extras:  # said by the command's parser, which knows its options
        parser.commands[args.command].unknown(extras)
    logging.basicConfig(
        # --quiet: warnings and errors only, for every command
        level=logging.DEBUG if args.verbose else logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return args.run(args)
    except (InputError, JobError, OutputError) as err:
        print(f"obiwan-h5 {args.command}: error: {flag_text(str(err))}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as err:
        print(missing_package_message(err, args.command), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"obiwan-h5 {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`obiwan-h5 info ... | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
