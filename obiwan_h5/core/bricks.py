"""Brick lists as users give them: a file, ``-`` for standard input, or a comma list.

The one parser of brick lists for every command and function that takes `bricks`
(derive, simulate, subset, export, plot): each name is checked against the brick-name
pattern before it can reach a path, and errors name the file and line.
"""

import os
import stat
import sys

from ..errors import InputError
from ..fileformat import brickname_problem

__all__ = [
    "DEFAULT_SEED", "brick_names", "is_brick_list_file", "parse_brick_names", "read_brick_list", "read_text_list",
]

# a brick list is text of a few hundred KB at most; refuse to slurp anything absurd
MAX_LIST_BYTES = 64 << 20
# suffixes that make a `bricks` string a file name even when no such file exists (so a
# mistyped path is reported as a missing file, not as a malformed brick name)
LIST_SUFFIXES = (".txt", ".lst", ".list", ".dat")
# the seed of brick samples (subset, plot) and of simulated productions when none is
# given: the same command then picks the same bricks and writes the same files
DEFAULT_SEED = 1


def read_text_list(path, what, stdin=None):
    """Text of a list file (``-``: standard input) without ``#`` comments.

    Refuses, with one line naming the file, what cannot be a list: a missing file, a
    directory, a FIFO or device (never opened, so nothing blocks), text that is not UTF-8.
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


def parse_brick_names(lines, source=None):
    """Brick names from text lines (comma or space separated), unique, in the order given.

    Parameters
    ----------
    lines : list of str
    source : str, optional
        File the lines come from, named in errors with the line number.
    """
    names = {}  # a dict keeps the order given and finds a repeat in constant time
    for number, line in enumerate(lines, 1):
        for token in line.replace(",", " ").split():
            if token in names:
                continue
            problem = brickname_problem(token)
            if problem:
                raise InputError(f"{source}:{number}: {problem}" if source else f"`bricks`: {problem}")
            names[token] = None
    if not names:
        raise InputError(f"{source or '`bricks`'}: the brick list is empty")
    return list(names)


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
