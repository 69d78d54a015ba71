"""The output file's life: built under a unique partial name, renamed into place when
complete, found again by `resume`; space checked before anything is written; a resumed
file checked against the new plan.

A fresh job writes ``.<name>.<random>.partial`` beside the output (created exclusively by
``mkstemp``, so it never follows a symlink nor collides with another job) and renames it
to the output only once every brick is written and the file closed: until that moment an
existing output (``overwrite``) is untouched. A job that dies leaves its partial file;
``resume`` finds the newest one and completes it.
"""

import contextlib
import fcntl
import json
import os
import re
import tempfile

import numpy as np

from ..fileformat import DONE, FORMAT_NAME, SUMMARY_COLUMNS

__all__ = [
    "ATTR_CREATED", "changed_bricks", "changed_input", "check_free_space", "find_partials", "locked",
    "new_partial", "new_side_file", "remove_files", "remove_partials", "resume_problem", "side_files",
]

# set once every dataset of a new file exists; a partial file without it is discarded
ATTR_CREATED = "layout_created"
# HDF5 metadata, attributes and the index, beyond the rows themselves (generous)
OVERHEAD_BYTES = 8 << 20
# recorded inputs that files written before the option existed lack: their implied value
RECORDED_DEFAULTS = {"compression": "none"}


def changed_input(attrs, options, action, skip=()):
    """What differs between the inputs a file records and `options`, as the start of a
    refusal to `action` it (``"resume"``, ``"update it"``), or None.

    Returns ``(text, is_compression)``: a changed compression already says how to proceed
    (give the same `compression`); the caller says it for any other input.
    """
    stored = json.loads(attrs.get("inputs", "{}"))
    for key, value in options.recorded_inputs().items():
        old = stored.get(key, RECORDED_DEFAULTS.get(key))
        if key in skip or old == value:
            continue
        if key == "compression":
            return (f"written with compression {old}, now {value}; give the same `compression` to {action}, "
                    "or derive afresh with `overwrite`"), True
        return f"made with {key}={old!r}, now {value!r}", False
    return None


@contextlib.contextmanager
def locked(path):
    """Hold an exclusive ``flock`` on the file `path` (created if needed, never through a
    symlink) for the block, and remove the file when the block ends.

    Raises `BlockingIOError` at once if another process holds it. Removing a lock file
    is safe only because every holder checks, once it holds the lock, that `path` still
    names the file it locked: a job that opened the file just before the previous holder
    removed it would otherwise lock a file no one else can see, while a third job creates
    and locks a new one. The holder removes the file while it still holds the lock.
    """
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = os.fstat(handle)
            try:
                named = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                named = None
        except BaseException:
            os.close(handle)
            raise
        if named is not None and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(handle)  # the file we locked was removed meanwhile: lock the new one
    try:
        yield
    finally:
        try:
            with contextlib.suppress(OSError):
                os.unlink(path)
        finally:
            os.close(handle)  # closing releases the lock


# the unique part `tempfile.mkstemp` puts in a name: side files of one output are recognised
# by an exact pattern, so that a job never takes another output's files for its own
# (``a.h5`` and ``a.h5.x.h5`` share the prefix ``.a.h5.``)
UNIQUE_PART = "[a-z0-9_]{8}"


def new_side_file(output, tag, suffix):
    """A new, empty, uniquely named file ``.<name>.<tag><random><suffix>`` beside `output`
    (``mkstemp``: created exclusively, never through a symlink), with the permissions a
    plain ``open`` would give (``mkstemp`` makes it private). Returns its path."""
    directory, name = os.path.split(os.path.abspath(output))
    handle, path = tempfile.mkstemp(prefix=f".{name}.{tag}", suffix=suffix, dir=directory)
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
    return path


def side_files(output, tag, suffix):
    """The files `new_side_file` made for `output` with this `tag` and `suffix`, by any job
    (regular files only, never a symlink)."""
    directory, name = os.path.split(os.path.abspath(output))
    pattern = re.compile(re.escape(f".{name}.{tag}") + UNIQUE_PART + re.escape(suffix) + r"\Z")
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = []
    for entry in names:
        path = os.path.join(directory, entry)
        if pattern.match(entry) and os.path.isfile(path) and not os.path.islink(path):
            found.append(path)
    return found


def remove_files(paths, keep=None):
    """Remove `paths` (but `keep`), ignoring those already gone."""
    for path in paths:
        if path != keep:
            with contextlib.suppress(OSError):
                os.remove(path)


def new_partial(output):
    """A new partial file for `output` (see the module docstring)."""
    return new_side_file(output, "", ".partial")


def find_partials(output):
    """Partial files left by earlier jobs on `output`, newest first."""
    def modified(path):
        try:
            return os.path.getmtime(path)
        except OSError:
            return 0.0  # removed meanwhile

    return sorted(side_files(output, "", ".partial"), key=modified, reverse=True)


def remove_partials(output, keep=None):
    """Remove the partial files of earlier jobs on `output` (the caller holds its lock)."""
    remove_files(find_partials(output), keep)


def check_free_space(directory, nbytes):
    """Why `nbytes` (plus metadata) will not fit in `directory`, or None."""
    try:
        stats = os.statvfs(directory)
    except OSError:
        return None  # cannot tell: the write itself will say
    free = stats.f_bavail * stats.f_frsize
    needed = int(nbytes) + OVERHEAD_BYTES
    if needed > free:
        return (f"{directory}: {needed / 2**20:.1f} MiB needed for the output, {free / 2**20:.1f} MiB free; "
                "free space (or choose another place) and run again")
    return None


def resume_problem(path, attrs, file_columns, index, plan, options, summary_names=None):
    """Why the file at `path` cannot be completed with this plan and these options, or None.

    Parameters
    ----------
    path : str
    attrs : mapping
        The file's root attributes.
    file_columns : dict
        ``{name: (dtype, per-row shape)}`` of its ``randoms`` datasets.
    index : dict
        Its ``bricks`` datasets.
    plan : job.plan.Plan
    options : job.options.DeriveOptions
    summary_names : list of str, optional
        Its ``summary`` datasets (a file of a version with other summary columns cannot
        be completed by this one).
    """
    if attrs.get("format") != FORMAT_NAME:
        return f"{path}: not an obiwan_h5 file"
    if summary_names is not None and sorted(summary_names) != sorted(SUMMARY_COLUMNS):
        return f"{path}: made by a version with other summary columns; cannot resume (derive afresh)"
    change = changed_input(attrs, options, "resume")
    if change:
        text, complete = change
        return f"{path}: {text}" if complete else f"{path}: {text}; cannot resume (derive afresh with `overwrite`)"
    names = [name.decode() for name in index["name"]]
    if names != plan.bricknames:
        return f"{path}: brick list differs from the file's; cannot resume (derive afresh with `overwrite`)"
    changed = np.flatnonzero((index["count"] != plan.counts) | (index["offset"] != plan.offsets))
    if len(changed):
        first = changed[0]
        return (f"{path}: brick {names[first]} now has {plan.counts[first]} rows, the file {index['count'][first]}; "
                "cannot resume (derive afresh with `overwrite`)")
    planned = {column.name: (np.dtype(column.dtype), tuple(column.shape)) for column in plan.columns}
    for name in sorted(set(planned) | set(file_columns)):
        if name not in file_columns:
            return f"{path}: the plan has a column {name} the file lacks; cannot resume (derive afresh)"
        if name not in planned:
            return f"{path}: the file has a column {name} the plan lacks; cannot resume (derive afresh)"
        dtype, shape = file_columns[name]
        if (np.dtype(dtype), tuple(shape)) != planned[name]:
            return (f"{path}: column {name} is {np.dtype(dtype)}{list(shape) or ''} in the file, "
                    f"{planned[name][0]}{list(planned[name][1]) or ''} in the plan; cannot resume "
                    "(values would be cut: derive afresh with `overwrite`)")
    return None


def changed_bricks(index, plan):
    """Done bricks whose input fingerprints differ from the file's (to derive again)."""
    stored = index.get("fingerprint")
    if stored is None:
        return np.zeros(len(plan.bricknames), dtype=bool)
    done = index["status"] == DONE
    return done & (np.asarray(stored, dtype=np.uint64) != plan.fingerprints)
