"""Helpers shared by the reading side (view, subset, export, info, validate, plot).

Opening an input with one-line errors, brick choices checked against the file, brick
samples, and new HDF5 outputs that survive a full disk (`new_hdf5`; every output is
checked by `outputs.check_output` and written under a partial name by `outputs.writing`).
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
from ..listfiles import brick_names
from ..outputs import (
    PARTIAL_HDF5_LOCKING,
    check_output,  # noqa: F401 (re-exported: every command's output check)
    check_regular_file,
    reserve_space,
)
from .reader import DerivedFile, external_links

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
        When `path` is missing, is not HDF5 (`UnreadableFileError`), is not an obiwan_h5
        file, or lacks a group (`FormatError`: e.g. a view whose input has gone).

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
        derived = DerivedFile(path)
    for warning in caught:
        if issubclass(warning.category, IncompleteFileWarning):
            log.warning("%s", warning.message)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return derived


def key_message(err):
    """The text of a KeyError of h5py (str() of a KeyError adds quotes)."""
    return str(err.args[0]) if err.args else str(err)


def select_bricks(derived, bricks):
    """The bricks a `bricks` argument names, each checked to be in `derived`, in file order.

    Parameters
    ----------
    derived : reader.DerivedFile
    bricks : str or sequence of str
        Names, a comma list or a brick-list file (`listfiles.brick_names`).

    Raises
    ------
    InputError
        A bad brick name or list file.
    UnknownNameError
        ``unknown brick 'x' (did you mean ...?)``, from the reader.
    """
    names = brick_names(bricks)
    derived.brick_ranges(names, done_only=False)
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


def linked_files(path):
    """The files that external links of `path` point to (a view's data), one entry each.

    Returns
    -------
    list of (str, str)
        The file name as stored in the link, and that name resolved against the directory
        of `path` (the place HDF5 looks first when no prefix is set).
    """
    check_regular_file(path)
    with h5py.File(path, "r") as handle:
        return external_links(handle, path)


def input_files(path):
    """`path` and the files holding the data its links point to: what an output must not
    replace (writing over a view's data file while reading through the view would
    destroy the data being copied)."""
    return [path] + [resolved for _, resolved in linked_files(path)]


# room held for HDF5's metadata until the final flush (`new_hdf5`): a base (root
# attributes), per dataset (about 2.6 KiB each in a derived file: object header,
# attributes) and per chunk (the chunk index: about 2 KiB per 32 chunks)
METADATA_RESERVE_BYTES = 64 << 10
METADATA_RESERVE_PER_DATASET = 4 << 10
METADATA_RESERVE_PER_CHUNK = 64


@contextlib.contextmanager
def new_hdf5(partial, datasets=0, chunks=0):
    """A new HDF5 file at ``partial.path`` (an `outputs.Partial`), open for the block.

    HDF5 1.10 cannot close a file after a failed write of its metadata (it crashes then,
    or at exit), so that write must never fail, and a failed write of data must be seen
    when it happens. Hence: the file has no raw-data caches (no chunk cache, no sieve
    buffer), so each data write reaches the disk in the call that makes it and a full disk
    fails there; room for the metadata of `datasets` datasets of `chunks` chunks in all is
    held aside until the final flush (`outputs.reserve_space`: refused at once when there
    is not that much); and after a failure the partial gives its space back before HDF5
    closes the file. Write chunked datasets a whole chunk at a time: without a chunk cache
    a compressed chunk written in pieces is decompressed and compressed again for each.
    """
    reserve = reserve_space(partial.output, METADATA_RESERVE_BYTES + datasets * METADATA_RESERVE_PER_DATASET
                            + chunks * METADATA_RESERVE_PER_CHUNK)
    handle = None
    try:
        access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
        _, slots, _, preemption = access.get_cache()
        access.set_cache(0, slots, 0, preemption)
        access.set_sieve_buf_size(0)
        access.set_file_locking(PARTIAL_HDF5_LOCKING, True)
        handle = h5py.File(h5py.h5f.create(os.fsencode(partial.path), h5py.h5f.ACC_TRUNC, fapl=access))
        yield handle
        reserve.discard()
        handle.flush()
    except BaseException:
        reserve.discard()
        partial.release_space()
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.close()
        raise
    handle.close()


def utc_now():
    """Creation time in the format of the derive job's ``creation_time``."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
