"""Brick lists as users give them: a file, ``-`` for standard input, or a comma list.

The one parser of brick lists for every command (derive, subset, export, plot): each
name is checked against the brick-name pattern before it can reach a path, and errors
name the file and line.
"""

import os
import stat
import sys

from ..errors import InputError
from ..fileformat import check_brickname

__all__ = ["brick_names", "parse_brick_names", "read_brick_list", "read_text_list"]

# a brick list is text of a few hundred KB at most; refuse to slurp anything absurd
MAX_LIST_BYTES = 64 << 20


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
    names = []
    for number, line in enumerate(lines, 1):
        for token in line.replace(",", " ").split():
            try:
                check_brickname(token)
            except InputError as err:
                where = f"{source}:{number}: " if source else "`bricks`: "
                raise InputError(f"{where}{err}") from None
            if token not in names:
                names.append(token)
    if not names:
        raise InputError(f"{source or '`bricks`'}: the brick list is empty")
    return names


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
    if os.sep in spec or spec.endswith((".txt", ".lst", ".list", ".dat")):
        raise InputError(f"{spec}: no such brick list file")
    return parse_brick_names([spec])
