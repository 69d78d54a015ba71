"""Helpers shared by the reading side (view, subset, export, info, validate, plot).

Opening an input with one-line errors, column and brick choices checked against the file,
brick samples, and outputs written under a temporary name so that a partial file is never
passed off as complete.
"""

import contextlib
import logging
import math
import os
import warnings
from datetime import datetime, timezone

import h5py
import numpy as np

from ..errors import IncompleteFileWarning, InputError
from ..fileformat import VIEW_ATTRS  # noqa: F401 (re-exported for the reading commands)
from .reader import DerivedFile, parse_columns

log = logging.getLogger("obiwan_h5")

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


def select_columns(spec, available, what="column"):
    """`reader.parse_columns` with its KeyError (close-match suggestions) as an InputError."""
    try:
        return parse_columns(spec, available, what)
    except KeyError as err:
        raise InputError(key_message(err)) from None


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


def check_fraction(fraction, option="sample"):
    """Refuse a sampling fraction outside (0, 1], naming the parameter."""
    if not (isinstance(fraction, (int, float)) and 0 < fraction <= 1):
        raise InputError(f"`{option}` {fraction!r}: the fraction must be in (0, 1]")


def sample_bricks(bricknames, fraction, seed, option="sample"):
    """A deterministic random sample of brick names, in their original order.

    Parameters
    ----------
    bricknames : list of str
    fraction : float
        In (0, 1]; ``max(1, floor(fraction * len(bricknames) + 0.5))`` bricks are kept.
    seed : int
    option : str
        The parameter named in errors.

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
        raise InputError(f"{output}: exists; use `overwrite` to replace it")
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
