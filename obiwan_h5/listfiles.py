"""Lists users give in a file or on standard input: brick lists and column lists.

The one reader of list files for every command and function that takes `bricks` (derive,
simulate, subset, export, maps, plot) or a column-list file: it refuses what cannot be a
list before opening it, and `brick_names` reads a `bricks` argument whichever form it
takes (a file, ``-`` for standard input, a comma list, a sequence of names). The names
themselves are parsed and checked by `core.bricks.parse_brick_names` (pure, no file), so
each is checked against the brick-name pattern before it can reach a path, and errors
name the file and line.
"""

import os
import stat
import sys

from .core.bricks import parse_brick_names
from .errors import InputError

__all__ = ["LIST_SUFFIXES", "MAX_LIST_BYTES", "brick_names", "is_brick_list_file", "read_brick_list",
           "read_text_list"]

# a brick list is text of a few hundred KB at most; refuse to slurp anything absurd
MAX_LIST_BYTES = 64 << 20
# suffixes that make a `bricks` string a file name even when no such file exists (so a
# mistyped path is reported as a missing file, not as a malformed brick name)
LIST_SUFFIXES = (".txt", ".lst", ".list", ".dat")


def read_text_list(path, what, stdin=None):
    """Text of a list file (``-``: standard input) without ``#`` comments.

    Refuses, with one line naming the file, what cannot be a list: a missing file, a
    directory, a FIFO or device (never opened, so nothing blocks), text that is not UTF-8.

    Parameters
    ----------
    path : str
        The file, or ``-`` for `stdin`.
    what : str
        What the list is, as errors name it (``"brick list"``, ``"column list"``).
    stdin : file, optional
        Read instead of `sys.stdin` for ``-`` (text or bytes).
    """
    if path == "-":
        text = (stdin or sys.stdin).read()
        if isinstance(text, bytes):
            text = _decode(text, "<stdin>", what)
    else:
        try:
            mode = os.stat(path).st_mode
        except OSError as err:
            raise InputError(f"{path}: cannot read {what} ({err.strerror})") from None
        if not stat.S_ISREG(mode):
            raise InputError(f"{path}: {what} is not a regular file")
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_LIST_BYTES + 1)
        except OSError as err:
            raise InputError(f"{path}: cannot read {what} ({err.strerror})") from None
        if len(data) > MAX_LIST_BYTES:
            raise InputError(f"{path}: {what} is larger than {MAX_LIST_BYTES >> 20} MiB")
        text = _decode(data, path, what)
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def _decode(data, path, what):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: {what} is not UTF-8 text (byte {err.start})") from None


def read_brick_list(path, stdin=None):
    """The sorted unique names of a brick-list file (``-``: standard input)."""
    source = "<stdin>" if path == "-" else path
    return sorted(parse_brick_names(read_text_list(path, "brick list", stdin).splitlines(), source))


def brick_names(spec, stdin=None):
    """Brick names from a `bricks` argument, unique, in the order given.

    Parameters
    ----------
    spec : str or sequence of str
        A brick-list file, ``-`` (standard input), a comma/space separated list, or a
        sequence of names.
    stdin : file, optional
        Read instead of `sys.stdin` for ``-``.
    """
    if not isinstance(spec, str):
        return parse_brick_names([" ".join(str(item) for item in spec)])
    if spec == "-" or os.path.lexists(spec):
        source = "<stdin>" if spec == "-" else spec
        return parse_brick_names(read_text_list(spec, "brick list", stdin).splitlines(), source)
    if is_brick_list_file(spec):
        raise InputError(f"{spec}: no such brick list file")
    return parse_brick_names([spec])


def is_brick_list_file(spec):
    """Whether a `bricks` string names a brick-list file (or ``-``, standard input) rather
    than giving the names themselves.

    A file is: ``-``, an existing path, or a string with a directory separator or a list
    suffix (``.txt``, ``.lst``, ``.list``, ``.dat``); anything else is a comma list.
    """
    return spec == "-" or os.path.lexists(spec) or os.sep in spec or spec.endswith(LIST_SUFFIXES)
