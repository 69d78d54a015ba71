"""The command-line vocabulary: options shared by the commands, defined once here, their
former spellings, and the mapping of library parameters to the flags that set them
(library errors name parameters in backquotes; the command line shows the flag).

An option sets the library parameter of its name (``--batch-rows`` sets `batch_rows`):
`options_from_args` builds an options type (`job.DeriveOptions`) from the parsed
arguments by name, and `call_with_args` calls a command's function so.

Every command says the same thing the same way: ``-o/--output`` for what it writes,
``--bricks`` for a brick list (file, comma list or ``-``), ``--n-bricks`` for a number of
bricks to simulate, ``--sample FRACTION --seed S`` for a brick sample, ``--columns`` for
names or globs, ``--batch-rows`` for the rows read at a time, and ``--version`` and
``-v/--verbose`` before or after the command. Former spellings still work for one release,
each with one line on standard error (`DeprecatedAlias`).
"""

import argparse
import dataclasses
import difflib
import inspect
import re
import sys

from .. import __version__
from ..core.bricks import DEFAULT_SEED
from ..errors import InputError
from ..listfiles import brick_names, read_text_list
from ..progress import DEFAULT_EVERY, ProgressStyle

__all__ = [
    "DeprecatedAlias", "HelpFormatter", "Parser", "add_batch_rows_argument", "add_bricks_argument",
    "add_column_arguments",
    "add_common_arguments", "add_deprecated_alias", "add_output_argument", "add_progress_arguments",
    "add_quiet_argument", "add_sample_arguments", "add_seed_argument", "add_simulated_bricks_arguments", "bricks_arg",
    "call_with_args", "column_spec", "deprecation_line", "field_defaults", "flag_text", "options_from_args",
    "progress_arg", "say", "seed_arg", "set_examples",
]

# library parameter -> command-line flag, where the names differ in more than '_' vs '-'
FLAGS = {
    "output": "-o/--output",
    "every": "--progress-every",
}


def flag_text(message):
    """`message` with each backquoted parameter (```match_radius```) shown as its flag."""
    return re.sub(r"`([a-z_]+)`", lambda m: FLAGS.get(m.group(1), "--" + m.group(1).replace("_", "-")), message)


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, but each line of a description or epilog is a paragraph of
    its own, and indented lines (the example commands of `set_examples`) are kept as they
    are: a command wrapped in the middle of a word could not be copied."""

    def _fill_text(self, text, width, indent):
        return "\n".join(indent + line if line.startswith("  ") else super(HelpFormatter, self)._fill_text(
            line, width, indent) for line in text.splitlines())


class Parser(argparse.ArgumentParser):
    """argparse's parser, but a mistake on the command line is one line, as every other
    error of the command: what is wrong (an unknown option with the closest known one, a
    missing option by name) and where to look (``--help``), not the whole usage block."""

    def error(self, message):
        """Exit with status 2 and `message` on one line, with a pointer to ``--help``."""
        found = re.fullmatch(r"one of the arguments (\S+) is required", message)
        if found:  # an option required through a group of its former spellings
            message = f"the option {found.group(1)} is required"
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")

    def unknown(self, extras):
        """Stop on the arguments `extras` this parser does not know, suggesting the
        closest options."""
        known = [option for action in self._actions for option in action.option_strings
                 if action.help != argparse.SUPPRESS]
        hints = []
        for extra in extras:
            if extra.startswith("-"):
                close = difflib.get_close_matches(extra.split("=")[0], known, n=1, cutoff=0.75)
                hints += [f"did you mean {close[0]}?"] if close else []
        self.error(f"unrecognized arguments: {' '.join(extras)}" + (f" ({'; '.join(hints)})" if hints else ""))


def field_defaults(kind):
    """``{field: default}`` of the options type `kind` (a dataclass): the defaults its
    flags take and show."""
    return {field.name: field.default for field in dataclasses.fields(kind)
            if field.default is not dataclasses.MISSING}


def options_from_args(kind, args, **given):
    """The options type `kind` (a dataclass whose fields are named as the flags) made from
    the parsed `args` by name, and `given`: no field is mapped by hand."""
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(kind)
              if field.init and hasattr(args, field.name)}
    return kind(**{**values, **given})


def call_with_args(function, args, *positional, **given):
    """Call `function` with `positional`, `given`, and each other parameter of it that is
    an option of `args` of the same name (the library's parameters are named as the
    options: ``batch_rows`` is ``--batch-rows``)."""
    parameters = list(inspect.signature(function).parameters.values())[len(positional):]
    keywords = {parameter.name: getattr(args, parameter.name) for parameter in parameters
                if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
                and hasattr(args, parameter.name)}
    return function(*positional, **{**keywords, **given})


def set_examples(parser, *commands):
    """The example command lines of a command: shown by ``--help`` and in docs/cli.md,
    where `tests/test_docs.py` runs them in order on the demo."""
    parser.examples = commands
    parser.epilog = "examples:\n" + "\n".join(f"  {command}" for command in commands)


# ------------------------------------------------------------------------ deprecations

def deprecation_line(parser, old, new):
    """Print the one line that says a former spelling is deprecated."""
    print(f"{parser.prog}: warning: {old} is deprecated; use {new}", file=sys.stderr)


class DeprecatedAlias(argparse.Action):
    """A former spelling of an option: sets what its `replacement` sets, after one line on
    standard error. Hidden from ``--help``; docs/cli.md lists it (`former_spelling`, as
    every action that keeps a former spelling working has)."""

    def __init__(self, option_strings, dest, replacement, nargs=None, const=None, **kwargs):
        super().__init__(option_strings, dest, nargs=nargs, const=const, **kwargs)
        self.replacement = replacement
        self.former_spelling = (", ".join(option_strings), replacement)

    def __call__(self, parser, namespace, values, option_string=None):
        deprecation_line(parser, option_string or self.metavar, self.replacement)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def add_deprecated_alias(container, old, new):
    """Add `old`, a former spelling of the action `new`, to `container` (a parser or a
    group): it takes the same value and sets the same destination."""
    return container.add_argument(
        old, action=DeprecatedAlias, dest=new.dest, replacement="/".join(new.option_strings),
        nargs=new.nargs, const=new.const, type=new.type, metavar=new.metavar,
        default=argparse.SUPPRESS, help=argparse.SUPPRESS)


class _DeprecatedPositional(argparse.Action):
    """The output given as a positional argument, as ``simulate DIR`` took it."""

    def __init__(self, option_strings, dest, target, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.target = target
        self.former_spelling = (f"{self.metavar} (positional)", f"-o/--output {self.metavar}")

    def __call__(self, parser, namespace, values, option_string=None):
        deprecation_line(parser, f"the positional {self.metavar}", f"-o/--output {self.metavar}")
        setattr(namespace, self.target, values)


# ---------------------------------------------------------------------- shared options

def add_common_arguments(parser, top_level=False):
    """``--version`` and ``-v/--verbose``, accepted before and after the command."""
    parser.add_argument("--version", action="version", version=f"obiwan-h5 {__version__}",
                        help="print the version and exit")
    # after the command, only a given flag may set it: a default there would undo
    # `obiwan-h5 -v COMMAND`
    parser.add_argument("-v", "--verbose", action="store_true", default=False if top_level else argparse.SUPPRESS,
                        help="log debug messages")


def add_output_argument(parser, help_text, metavar="OUT", default=None, deprecated=(), positional=False):
    """The ``-o/--output`` option, and the former spellings of it that still work.

    Parameters
    ----------
    help_text : str
    metavar : str
    default : str, optional
        Without a default, the output is required.
    deprecated : sequence of str
        Former option names (``--dir``).
    positional : bool
        Also accept the output as the positional argument it once was.
    """
    required = default is None
    # one required group for the option and its former spellings: any one of them will do,
    # and usage still shows `-o OUT` as required (argparse draws a required group of one
    # visible member without brackets: its members must be adjacent, so add the aliases
    # right after). A positional in the group is never adjacent to it in a usage that
    # wraps (argparse lays out options and positionals apart): then usage shows [-o OUT]
    # and the help says it is required.
    group = parser.add_mutually_exclusive_group(required=required)
    if not required:
        help_text += " (default %(default)s)"
    elif positional:
        help_text += " (required)"
    output = group.add_argument("-o", "--output", metavar=metavar, default=default, help=help_text)
    for old in deprecated:
        add_deprecated_alias(group, old, output)
    if positional:
        group.add_argument("former_output", nargs="?", metavar=metavar, action=_DeprecatedPositional, target="output",
                           default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    return output


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


BRICKS_HELP = ("a file of brick names (one or more per line, '#' comments), a comma list "
               "('0001p000,0002p000'), or '-' to read names from standard input")


def add_bricks_argument(parser, what="only these bricks", default=None):
    """The ``--bricks`` option: a brick-list file, a comma list or ``-``."""
    tail = f" (default {default})" if default else ""
    return parser.add_argument("--bricks", metavar="FILE|LIST|-", help=f"{what}: {BRICKS_HELP}{tail}")


def bricks_arg(args, stdin=None):
    """The names given by ``--bricks``, or None."""
    return brick_names(args.bricks, stdin) if args.bricks else None


class _BricksOrCount(argparse.Action):
    """``--bricks`` of simulate and demo: a brick list, or (the former meaning, deprecated)
    a number of bricks, which a brick list can never be."""

    former_spelling = ("--bricks N (a number)", "--n-bricks N")

    def __call__(self, parser, namespace, values, option_string=None):
        if values.isdigit():
            deprecation_line(parser, f"{option_string} N", "--n-bricks N")
            namespace.n_bricks = int(values)
        else:
            namespace.bricks = values


def add_simulated_bricks_arguments(parser, default_count, former_list_option=False):
    """``--n-bricks N`` (chosen from the seed) or ``--bricks FILE|LIST|-`` (these bricks),
    for the commands that simulate a production.

    ``--bricks N`` with a number, its former meaning, still works with a deprecation line,
    and so does ``--brick-list FILE`` where `former_list_option`.
    """
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--n-bricks", type=int, default=default_count, metavar="N",
                       help="number of bricks, drawn (from --seed) in a DECaLS-like footprint (default %(default)s)")
    bricks = which.add_argument("--bricks", action=_BricksOrCount, metavar="FILE|LIST|-",
                                help=f"simulate these bricks instead: {BRICKS_HELP}")
    if former_list_option:
        add_deprecated_alias(which, "--brick-list", bricks)


def add_sample_arguments(parser, what, sample_group=None, deprecated=()):
    """``--sample FRACTION`` (in `sample_group` if given, with its former spellings
    `deprecated`) and ``--seed S``: the brick sample of `what`.

    The seed's default is given as None, so that a command can tell a seed it was given
    from the default; `seed_arg` gives the value.
    """
    container = sample_group or parser
    sample = container.add_argument(
        "--sample", type=float, metavar="FRACTION",
        help=f"keep a random fraction (0 < FRACTION <= 1, at least one brick) of {what}, drawn with --seed")
    for old in deprecated:
        add_deprecated_alias(container, old, sample)
    add_seed_argument(parser, "seed of --sample: the same seed gives the same bricks")


def add_seed_argument(parser, what):
    """``--seed S``; its default, `core.bricks.DEFAULT_SEED`, is applied by `seed_arg`."""
    parser.add_argument("--seed", type=int, metavar="S", help=f"{what} (default {DEFAULT_SEED})")


def seed_arg(args):
    """The seed given by ``--seed``, or the default seed."""
    return DEFAULT_SEED if args.seed is None else args.seed


def add_batch_rows_argument(parser, what="rows read at a time"):
    """``--batch-rows N``, with the default of every streaming reader."""
    from ..read.reader import DEFAULT_BATCH_ROWS  # imported here: it loads h5py

    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, metavar="N",
                        help=f"{what} (bounds memory; default %(default)s)")


QUIET_HELP = "print only warnings and errors"


def add_quiet_argument(parser, quiet_help=QUIET_HELP):
    """``-q/--quiet``: warnings and errors only (no progress, no INFO lines, no report of
    what was written); `say` prints what the command reports otherwise."""
    parser.add_argument("-q", "--quiet", action="store_true", help=quiet_help)


def say(args, text):
    """Print what a command reports (``wrote x.h5: ...``), unless ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(text)


def add_progress_arguments(parser, quiet_help=None):
    """``-q/--quiet`` and ``--progress-every``: the progress of a long command on stderr
    (a bar on a terminal, else a line at most every SECONDS; `obiwan_h5.progress`)."""
    add_quiet_argument(parser, quiet_help or QUIET_HELP + " (by default, progress goes to stderr: a bar on a "
                                              "terminal, else a line every --progress-every seconds)")
    parser.add_argument(
        "--progress-every", type=float, default=DEFAULT_EVERY, metavar="SECONDS",
        help="when stderr is not a terminal (a batch log), write a progress line (done/total, rows/s, ETA) "
             f"at most every SECONDS (default {DEFAULT_EVERY:g}; 0: at every step)")


def progress_arg(args):
    """The library's `progress` argument from ``--quiet`` / ``--progress-every``."""
    return False if args.quiet else ProgressStyle(every=args.progress_every)
