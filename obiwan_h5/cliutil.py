"""Helpers shared by the reading-side commands (view, subset, export-fits, info, validate).

Opening an input with one-line errors, column and brick lists the way astronomers type
them (comma or space separated, globs, files, ``-`` for stdin), and outputs written under
a temporary name so that a partial file is never passed off as complete.
"""

import contextlib
import logging
import math
import os
import sys
import warnings
from datetime import datetime, timezone

import h5py
import numpy as np

from .production import InputError, check_brickname
from .reader import DerivedFile, IncompleteFileWarning, parse_columns

log = logging.getLogger("obiwan_h5")

# attributes that describe a view; a physical copy (subset) of a view drops them
VIEW_ATTRS = ("view_of", "view_columns", "view_creation_time", "view_software_version")
# an external link to an external link is followed this many times at most (HDF5's own
# limit on nested link traversal is 16)
MAX_LINK_DEPTH = 16


def open_derived(path):
    """Open a derived file (or a view of one) for reading, with one-line errors.

    Parameters
    ----------
    path : str

    Returns
    -------
    reader.DerivedFile

    Raises
    ------
    InputError
        When `path` is missing, is not HDF5, is not an obiwan_h5 file, or lacks a group
        (e.g. a view whose input has gone).

    Notes
    -----
    A file whose job has not finished is opened all the same; the reader's warning is
    logged as one line rather than printed with a Python traceback location.
    """
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, not a derived file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", IncompleteFileWarning)
        try:
            derived = DerivedFile(path)
        except (OSError, ValueError) as err:
            raise InputError(str(err)) from None
    for warning in caught:
        if issubclass(warning.category, IncompleteFileWarning):
            log.warning("%s", warning.message)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return derived


def key_message(err):
    """The text of a KeyError (str() of a KeyError adds quotes)."""
    return str(err.args[0]) if err.args else str(err)


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
    """The column list given by ``--columns`` / ``--columns-file``, as one string, or None.

    Parameters
    ----------
    args : argparse.Namespace
    stdin : file, optional
        Read for ``--columns-file -`` (default `sys.stdin`).
    """
    parts = list(args.columns or [])
    if getattr(args, "columns_file", None):
        parts.append(_read_list_file(args.columns_file, "column list", stdin))
    if not parts:
        return None
    text = ",".join(parts)
    if not text.replace(",", " ").split():
        raise InputError("the column list is empty")
    return text


def _read_list_file(path, what, stdin=None):
    """Contents of a list file (or stdin for '-') without '#' comments."""
    if path == "-":
        text = (stdin or sys.stdin).read()
    else:
        try:
            with open(path) as handle:
                text = handle.read()
        except OSError as err:
            raise InputError(f"{path}: cannot read {what} ({err.strerror})") from None
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def select_columns(spec, available, what="column"):
    """`reader.parse_columns` with its KeyError (close-match suggestions) as an InputError."""
    try:
        return parse_columns(spec, available, what)
    except KeyError as err:
        raise InputError(key_message(err)) from None


def add_bricks_argument(parser):
    """The ``--bricks`` option."""
    parser.add_argument(
        "--bricks", metavar="FILE|LIST|-",
        help="only these bricks: a file of brick names (one or more per line, '#' comments), "
             "a comma list ('0001p000,0002p000'), or '-' to read names from standard input")


def read_brick_spec(spec, stdin=None):
    """Brick names from a ``--bricks`` value: a file, ``-`` (stdin) or a comma/space list.

    Every name is checked against the brick-name pattern before it is used anywhere.

    Parameters
    ----------
    spec : str
    stdin : file, optional
        Read for ``-`` (default `sys.stdin`).

    Returns
    -------
    list of str
        Unique names in the order given.

    Raises
    ------
    InputError
        Unreadable file, empty list, or a token that is not a brick name (naming the file
        and line when the names come from a file).
    """
    if spec == "-" or os.path.isfile(spec):
        source = "<stdin>" if spec == "-" else spec
        lines = _read_list_file(spec, "brick list", stdin).splitlines()
    elif os.sep in spec or spec.endswith((".txt", ".lst", ".list", ".dat")):
        raise InputError(f"{spec}: no such brick list file")
    else:
        source, lines = None, [spec]
    names = []
    for number, line in enumerate(lines, 1):
        for token in line.replace(",", " ").split():
            try:
                check_brickname(token)
            except InputError as err:
                where = f"{source}:{number}: " if source else "--bricks: "
                raise InputError(f"{where}{err}") from None
            if token not in names:
                names.append(token)
    if not names:
        raise InputError(f"{source or '--bricks'}: the brick list is empty")
    return names


def select_bricks(derived, names):
    """Check that every brick of `names` is in `derived`; return them in file order.

    Raises
    ------
    InputError
        ``unknown brick 'x' (did you mean ...?)`` from the reader.
    """
    try:
        derived.brick_ranges(names, done_only=False)
    except KeyError as err:
        raise InputError(key_message(err)) from None
    wanted = set(names)
    return [name for name in derived.bricknames if name in wanted]


def check_fraction(fraction, option):
    """Refuse a sampling fraction outside (0, 1], naming the option."""
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise InputError(f"{option} {fraction!r}: the fraction must be in (0, 1]")


def sample_bricks(bricknames, fraction, seed, option="--sample-bricks"):
    """A deterministic random sample of brick names, in their original order.

    Parameters
    ----------
    bricknames : list of str
    fraction : float
        In (0, 1]; ``max(1, floor(fraction * len(bricknames) + 0.5))`` bricks are kept.
    seed : int
    option : str
        The command-line option named in errors.

    Raises
    ------
    InputError
        On a fraction outside (0, 1] or an empty brick list.
    """
    check_fraction(fraction, option)
    if not bricknames:
        raise InputError("the file has no bricks to sample")
    # half-up rounding: Python's round() would send 0.5 -> 0 and 2.5 -> 2
    size = max(1, min(len(bricknames), math.floor(fraction * len(bricknames) + 0.5)))
    chosen = np.random.default_rng(seed).choice(len(bricknames), size=size, replace=False)
    return [bricknames[i] for i in np.sort(chosen)]


def check_output(output, overwrite, inputs=()):
    """Refuse an output that exists (without `overwrite`), that is an input, or that
    cannot be written."""
    real = os.path.realpath(output)
    for path in inputs:
        if path and os.path.exists(path) and os.path.realpath(path) == real:
            raise InputError(f"{output}: is an input of this command; choose another output name")
    if os.path.isdir(output):
        raise InputError(f"{output}: is a directory")
    if os.path.exists(output) and not overwrite:
        raise InputError(f"{output}: exists; use --overwrite to replace it")
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise InputError(f"{directory}: output directory does not exist")
    if not os.access(directory, os.W_OK):
        raise InputError(f"{directory}: output directory is not writable")


def linked_files(path):
    """The files that external links of `path` point to (a view's data), one entry each.

    Returns
    -------
    list of (str, str)
        The file name as stored in the link, and that name resolved against the directory
        of `path` (the place HDF5 looks first when no prefix is set).
    """
    found = {}
    with h5py.File(path, "r") as handle:
        places = [("/", name) for name in ("randoms", "summary", "bricks")]
        if isinstance(handle.get("randoms", getlink=True), h5py.HardLink):
            places += [("/randoms", name) for name in handle["randoms"]]
        for parent, name in places:
            link = handle[parent].get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink) and link.filename not in found:
                resolved = link.filename
                if not os.path.isabs(resolved):
                    resolved = os.path.join(os.path.dirname(os.path.abspath(path)), resolved)
                found[link.filename] = os.path.normpath(resolved)
    return list(found.items())


def input_files(path):
    """`path` and the files holding the data its links point to: what an output must not
    replace (writing over a view's data file while reading through the view would
    destroy the data being copied)."""
    return [path] + [resolved for _, resolved in linked_files(path)]


@contextlib.contextmanager
def partial_output(output):
    """Write under ``output + ".partial"``; rename to `output` only when the block succeeds.

    A failed or interrupted command thus never leaves a file under the final name that
    looks complete; its partial file is removed. Close the file inside the block.
    """
    partial = output + ".partial"
    if os.path.exists(partial):
        os.remove(partial)  # left by a killed run: never resumed, so start afresh
    try:
        yield partial
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise
    os.replace(partial, output)


def utc_now():
    """Creation time in the format of the derive job's ``creation_time``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
