"""Option definitions shared by the commands, and the mapping of library parameters to
the flags that set them (library errors name parameters in backquotes; the command line
shows the flag)."""

import re

from ..core.bricks import brick_names, read_text_list
from ..errors import InputError
from ..progress import DEFAULT_EVERY, ProgressStyle

__all__ = [
    "add_bricks_argument", "add_column_arguments", "add_progress_arguments", "bricks_arg", "column_spec",
    "flag_text", "progress_arg",
]

# library parameter -> command-line flag, where the names differ in more than '_' vs '-'
FLAGS = {
    "max_memory_mb": "--max-memory",
    "alignment": "--align",
    "sample_fraction": "--sample-bricks",
    "bricks": "--bricks",
    "nbricks": "--bricks",
    "output_dir": "--output-dir",
    "every": "--progress-every",
}


def flag_text(message):
    """`message` with each backquoted parameter (```match_radius```) shown as its flag."""
    return re.sub(r"`([a-z_]+)`", lambda m: FLAGS.get(m.group(1), "--" + m.group(1).replace("_", "-")), message)


def add_column_arguments(parser, default="every column"):
    """``--columns`` and ``--columns-file`` options."""
    parser.add_argument(
        "--columns", action="append", metavar="LIST",
        help="randoms columns: names or globs separated by commas or spaces, e.g. "
             f"'ra,dec,tractor_flux_*' (quote globs from the shell; repeatable; default {default})")
    parser.add_argument(
        "--columns-file", metavar="FILE",
        help="read column names (or globs) from FILE, separated by commas, spaces or new lines; "
             "'#' starts a comment; '-' reads standard input")


def column_spec(args, stdin=None):
    """The column list given by ``--columns`` / ``--columns-file``, as one string, or None."""
    parts = list(args.columns or [])
    if getattr(args, "columns_file", None):
        parts.append(read_text_list(args.columns_file, "column list", stdin))
    if not parts:
        return None
    text = ",".join(parts)
    if not text.replace(",", " ").split():
        raise InputError("the column list is empty")
    return text


def add_bricks_argument(parser, help_text=None):
    """The ``--bricks`` option: a brick-list file, a comma list or ``-``."""
    parser.add_argument(
        "--bricks", metavar="FILE|LIST|-",
        help=help_text or "only these bricks: a file of brick names (one or more per line, '#' comments), "
                          "a comma list ('0001p000,0002p000'), or '-' to read names from standard input")


def bricks_arg(args, stdin=None):
    """The names given by ``--bricks``, or None."""
    return brick_names(args.bricks, stdin) if args.bricks else None


def add_progress_arguments(parser, quiet_help=None):
    """``-q/--quiet`` and ``--progress-every``: the progress of a long command on stderr
    (a bar on a terminal, else a line at most every SECONDS; `obiwan_h5.progress`)."""
    parser.add_argument(
        "-q", "--quiet", action="store_true",
        help=quiet_help or "no progress on stderr (by default: a bar on a terminal, else a line every "
                           "--progress-every seconds)")
    parser.add_argument(
        "--progress-every", type=float, default=DEFAULT_EVERY, metavar="SECONDS",
        help="when stderr is not a terminal (a batch log), write a progress line (done/total, rows/s, ETA) "
             f"at most every SECONDS (default {DEFAULT_EVERY:g}; 0: at every step)")


def progress_arg(args):
    """The library's `progress` argument from ``--quiet`` / ``--progress-every``."""
    return False if args.quiet else ProgressStyle(every=args.progress_every)
