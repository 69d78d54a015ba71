"""The output file's life: built under a unique partial name, renamed into place when
complete, found again by `resume`; space checked before anything is written; a resumed
file checked against the new plan.

The partial file is the one every command writes (`outputs.Partial`):
``.<name>.partial-<random>`` beside the output, created exclusively (never through a
symlink, never shared with another run) and renamed to the output only once every brick
is written and the file closed: until that moment an existing output (``overwrite``) is
untouched. Rank 0 creates it and holds its lock for the whole job, while every rank writes
it through HDF5's ``mpio`` driver (the lock is on one byte no write reaches, so MPI-IO's
own byte-range locks never wait for it: `outputs.LOCK_OFFSET`). A job that dies leaves
its partial file, and the kernel drops the lock with rank 0; ``resume`` takes the newest
one nobody holds and completes it. What is derive's alone lives here: which file to
resume (`choose_target`), why a partial cannot be read back (`readback_problem`), the
job's lock (`output_lock`), the shared truth index's side files (`new_side_file`).
"""

import contextlib
import fcntl
import hashlib
import itertools
import json
import logging
import os
import re
import tempfile
from datetime import datetime, timezone

import numpy as np

from ..errors import InputError
from ..fileformat import DONE, FORMAT_NAME, GROUPS, SUMMARY_COLUMNS
from ..outputs import (
    PARTIAL_HDF5_LOCKING,
    UNIQUE_PART,
    Partial,
    check_free_space,
    clean_stale_partials,
    paths_matching,
    plain_mode,
    stale_partials,
)
from .mpi import agree

log = logging.getLogger("obiwan_h5.derive")

__all__ = [
    "ATTR_CREATED", "ATTR_TRUTH_FINGERPRINT", "changed_bricks", "changed_input", "changed_truth", "choose_target",
    "find_partials", "locked", "new_partial", "new_side_file", "output_lock", "readback_problem", "remove_files",
    "removed_on_failure", "resume_problem", "side_files",
]

# set once every dataset of a new file exists; a partial file without it is discarded
ATTR_CREATED = "layout_created"
# the truth table's fingerprint when the file was created (JSON; `changed_truth`)
ATTR_TRUTH_FINGERPRINT = "truth_fingerprint"
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


def changed_truth(attrs, fingerprint):
    """How the truth table (its `fingerprint` now: `truthshare.truth_fingerprint`) differs
    from the one the file with root attributes `attrs` was made from, or None.

    Only what both fingerprints hold is compared (a file fingerprinted without
    `verify_inputs` has no CRC); a file that records none is a difference: whether its
    truth changed cannot be told.
    """
    stored = attrs.get(ATTR_TRUTH_FINGERPRINT)
    if stored is None:
        return "the file does not record a fingerprint of its truth table (written by an earlier obiwan_h5)"
    stored = json.loads(stored) if isinstance(stored, (str, bytes)) else dict(stored)
    for key in sorted(set(stored) & set(fingerprint)):
        if stored[key] != fingerprint[key]:
            then, now = (_shown(key, value) for value in (stored[key], fingerprint[key]))
            label = {"mtime_ns": "modified", "size": "bytes", "crc32": "CRC-32"}.get(key, key)
            return f"the truth table changed since the file was written ({label} {then} then, {now} now)"
    if not set(stored) & set(fingerprint):
        return "the truth table cannot be compared with the file's"
    return None


def _shown(key, value):
    if key == "mtime_ns":
        return datetime.fromtimestamp(value / 1e9, timezone.utc).isoformat(timespec="microseconds")
    return f"{value:08x}" if key == "crc32" else value


def _side_name(output, kind):
    """The directory of the side files of `output` and the start of their names: a side
    file of `kind` is named by a digest of the output's path
    (``.obiwan-h5-<kind>-<digest>-<random><suffix>``), so that its name's length does not
    depend on the output's (a long output name fits the file system's); the kind
    `LEGACY_PARTIAL` is the partial file of earlier versions, ``.<name>.<random>.partial``."""
    directory, name = os.path.split(os.path.abspath(output))
    if kind == LEGACY_PARTIAL:
        return directory, f".{name}."
    real_path = os.path.join(os.path.realpath(directory), name)
    return directory, f".obiwan-h5-{kind}-{hashlib.blake2b(real_path.encode(), digest_size=6).hexdigest()}-"


def new_side_file(output, kind, suffix):
    """A new, empty, uniquely named side file of `output` (`_side_name`) beside it
    (``mkstemp``: created exclusively, never through a symlink), with the permissions a
    plain ``open`` would give (``mkstemp`` makes it private). Returns its path."""
    directory, prefix = _side_name(output, kind)
    handle, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    os.close(handle)
    plain_mode(path)
    return path


def side_files(output, kind, suffix):
    """The side files `new_side_file` made for `output` with this `kind` and `suffix`, by
    any job (regular files only, never a symlink)."""
    directory, prefix = _side_name(output, kind)
    pattern = re.compile(re.escape(prefix) + UNIQUE_PART + re.escape(suffix) + r"\Z")
    return [path for path in paths_matching(directory, pattern) if os.path.isfile(path)]


def remove_files(paths, keep=None):
    """Remove `paths` (but `keep`), ignoring those already gone."""
    for path in paths:
        if path != keep:
            with contextlib.suppress(OSError):
                os.remove(path)


# Until this version a derive's partial file was ``.<name>.<random>.partial``, not locked.
# `resume` still completes one (a job that timed out before the upgrade left it) and a new
# job removes it: only a derive wrote such files, and the caller holds the job's lock, so
# no writer of one is alive. Drop in the release after next.
LEGACY_PARTIAL = "partial"


def find_partials(output):
    """Partial files of earlier jobs on `output` that no live writer holds, newest first.

    The caller holds the job's lock, so no other derive writes one; a partial that another
    command still writes (it holds its lock) is never among them. On a file system without
    locks, every partial is (`outputs.stale_partials` with ``undecided``).
    """
    def modified(path):
        try:
            return os.path.getmtime(path)
        except OSError:
            return 0.0  # removed meanwhile

    found = stale_partials(output, undecided=True) + side_files(output, LEGACY_PARTIAL, ".partial")
    return sorted(found, key=modified, reverse=True)


def readback_problem(path):
    """Why the derived file at `path` cannot be read back and completed as it is, or None.

    A job that fails in the middle (a full disk, quota, a crash) may leave HDF5 metadata
    half written: the superblock's end of allocation short of data it indexes, an object
    header never written. Opening such a file may work while a later read or write fails
    deep in HDF5. So every attribute, every dataset's header and attributes, the brick
    index and the address of every allocated chunk (within the file's allocated space) are
    checked, without reading the rows.
    """
    import h5py

    try:
        end = _end_of_allocation(path)
        with h5py.File(path, "r", locking=PARTIAL_HDF5_LOCKING) as handle:
            if not handle.attrs.get(ATTR_CREATED, False):
                return "its datasets were not all created"
            for key in handle.attrs:
                handle.attrs[key]
            for group in GROUPS:
                for name in handle[group]:
                    dset = handle[group][name]
                    dict(dset.attrs)
                    if group == "bricks":
                        dset[...]
                    if end is not None and _allocated_end(dset) > end:
                        return f"{group}/{name} has data beyond the file's allocated space (a write that never completed)"
    except Exception as err:  # noqa: BLE001 — whatever HDF5 fails on, the file cannot be completed
        text = " ".join(str(err).split()) or type(err).__name__
        return text[:200]
    return None


def _end_of_allocation(path):
    """The end of allocated space that the file's superblock records (versions 0 to 3), or None."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    if not head.startswith(b"\x89HDF\r\n\x1a\n") or len(head) < 16:
        return None
    version = head[8]
    if version in (0, 1):
        width, at = head[13], 24 + (4 if version == 1 else 0)
    elif version in (2, 3):
        width, at = head[9], 12
    else:
        return None
    at += 2 * width  # after the base address and the free-space (or extension) address
    return int.from_bytes(head[at:at + width], "little") if len(head) >= at + width else None


def _allocated_end(dset):
    """The end of the last byte of `dset`'s data in the file (0 when none is allocated)."""
    if dset.chunks is None:
        offset = dset.id.get_offset()
        return 0 if offset is None else offset + dset.id.get_storage_size()
    end = 0
    grid = [range(0, extent, chunk) for extent, chunk in zip(dset.shape, dset.chunks)]
    for corner in itertools.product(*grid):
        info = dset.id.get_chunk_info_by_coord(corner)
        if info.byte_offset is not None:
            end = max(end, info.byte_offset + info.size)
    return end


def resume_problem(path, attrs, file_columns, index, plan, options, summary_names=None, truth_fingerprint=None):
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
    truth_fingerprint : dict, optional
        The truth table's fingerprint now; a file made from another truth table (or that
        records none) cannot be completed (`changed_truth`).
    """
    if attrs.get("format") != FORMAT_NAME:
        return f"{path}: not an obiwan_h5 file"
    if summary_names is not None and sorted(summary_names) != sorted(SUMMARY_COLUMNS):
        return f"{path}: made by a version with other summary columns; cannot resume (derive afresh)"
    change = changed_input(attrs, options, "resume")
    if change:
        text, complete = change
        return f"{path}: {text}" if complete else f"{path}: {text}; cannot resume (derive afresh with `overwrite`)"
    change = None if truth_fingerprint is None else changed_truth(attrs, truth_fingerprint)
    if change:
        return f"{path}: {change}; cannot resume (derive afresh with `overwrite`)"
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


# ----------------------------------------------------------------------------- the job's phases

@contextlib.contextmanager
def output_lock(options, comm):
    """Rank 0 holds an exclusive lock on ``<output>.lock`` for the whole job, so that a
    second job on the same output refuses instead of corrupting it (`locked`); every rank
    agrees on the refusal.

    ``flock`` locks die with their process, so a crashed or killed job never leaves the
    output locked; the lock file is removed when the job ends (one left by a killed job is
    taken over, and removed, by the next).
    """
    lock = f"{options.output}.lock"
    error = None
    with contextlib.ExitStack() as held:
        if comm.rank == 0:
            try:
                held.enter_context(locked(lock))
            except BlockingIOError:
                error = f"{options.output}: another derive job is writing it (lock {lock} is held); wait for it to end"
            except OSError as err:
                error = f"{lock}: cannot lock the output ({err.strerror})"
        agree(comm, error)
        yield


@contextlib.contextmanager
def removed_on_failure(path):
    """Remove the file at `path` if the block fails (on whichever rank fails: under MPI the
    others are ended before they could)."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(path)
        raise


def choose_target(options, plan):
    """``("new", partial)`` or ``("resume", partial or None)``, on rank 0, which holds the
    job's lock: the `outputs.Partial` to write, held (locked) until the job ends, or None
    to complete the output itself.

    To resume: the newest partial file of an earlier job that can be read back (one whose
    layout was not fully created, or that a full disk or a crash left unreadable, is
    removed, saying why: `readback_problem`), else the output itself if it has bricks left
    to derive. A new file: earlier partial files are removed and the free space checked.
    """
    output = options.output
    if options.resume:
        for path in find_partials(output):
            partial = Partial.adopt(output, path)
            if partial is None:
                continue  # taken meanwhile: another command removes or writes it
            problem = readback_problem(path)
            if problem is None:
                return "resume", partial
            log.warning("%s: the partial file of an earlier job cannot be resumed (%s); removed, starting afresh",
                        path, problem)
            partial.discard()
        if os.path.exists(output):
            problem = readback_problem(output)
            if problem:
                raise InputError(f"{output}: cannot be read back ({problem}); use `overwrite` to derive it again")
            return "resume", None
        log.info("%s does not exist yet: nothing to resume, creating it", output)
    return "new", new_partial(output, plan)


def new_partial(output, plan):
    """A new partial file for `output` (an `outputs.Partial`, held), once the partial files
    of earlier jobs are removed and the free space for `plan`'s rows checked (raises
    `OutputError` when they cannot fit)."""
    clean_stale_partials(output)
    remove_files(side_files(output, LEGACY_PARTIAL, ".partial"))
    check_free_space(output, plan.total_rows * plan.row_bytes + OVERHEAD_BYTES)
    return Partial.create(output)
