"""Copying an update's unchanged rows byte for byte, from the old file into the new one.

An update copies the rows of bricks whose inputs did not change. Read through HDF5 and
written back collectively, that costs several times the copy of the same bytes by the
kernel (``copy_file_range``): here the rows of a ``randoms`` column are located in both
files (the contiguous data, or each chunk, of an unfiltered dataset) and copied file to
file. It is right only where the same rows are the same bytes: the same dtype and shape,
no filter, storage allocated in both files (parallel HDF5 allocates it at creation).

Ordering (`job.derive`): the copy runs only with the MPI-IO driver, which keeps no raw data
in memory (serial HDF5 may hold a block in its sieve buffer and write it back over copied
bytes); in the compute phase of a round, when the collective writes of the last round are
over on every rank and before those of this round start (two-phase MPI-IO may read and
rewrite the bytes between the ranges it writes, which must not race with the copy); the
round's flush then makes the copied bytes durable before their bricks are marked done.
"""

import errno
import os

import h5py
import numpy as np

__all__ = ["RowCopier", "copy_ranges"]

# errors of os.copy_file_range meaning "not between these two files": copy through memory
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}
_STEP = 64 << 20


class _Storage:
    """Where the rows of one dataset lie in its file: blocks of `block_rows` rows (one
    chunk each, or the whole contiguous data), row-major, each at a file offset."""

    def __init__(self, dataset):
        self.dataset = dataset
        nrows = dataset.shape[0] if dataset.shape else 0
        self.block_rows = dataset.chunks[0] if dataset.chunks else max(nrows, 1)
        self._offsets = {}

    def problem(self):
        """Why the rows cannot be located byte for byte, or None."""
        dataset = self.dataset
        if dataset.id.get_create_plist().get_nfilters():
            return f"{dataset.name} is filtered"
        if dataset.chunks and tuple(dataset.chunks[1:]) != tuple(dataset.shape[1:]):
            return f"{dataset.name} is chunked across a row"
        if dataset.chunks and not hasattr(h5py.h5d.DatasetID, "get_chunk_info_by_coord"):
            return f"HDF5 {h5py.version.hdf5_version} cannot locate chunks (1.10.5 and later can)"
        if dataset.shape[0] and self.offset(0) is None:
            return f"{dataset.name} has no storage in {dataset.file.filename}"
        return None

    def offset(self, block):
        """File offset of block `block` (None where HDF5 stored nothing)."""
        if block not in self._offsets:
            if self.dataset.chunks:
                coord = (block * self.block_rows,) + (0,) * (self.dataset.ndim - 1)
                try:
                    self._offsets[block] = self.dataset.id.get_chunk_info_by_coord(coord).byte_offset
                except (KeyError, RuntimeError, ValueError):  # not stored
                    self._offsets[block] = None
            else:
                self._offsets[block] = self.dataset.id.get_offset()
        return self._offsets[block]


class RowCopier:
    """The rows of the columns `names`, located in the datasets `sources` (old file) and
    `targets` (new file), both ``{name: h5py.Dataset}``; see `problem` before `ranges`."""

    def __init__(self, sources, targets, names):
        self.names = sorted(names)
        self.sources = {name: _Storage(sources[name]) for name in self.names}
        self.targets = {name: _Storage(targets[name]) for name in self.names}

    def problem(self):
        """Why these rows cannot be copied byte for byte, or None."""
        for name in self.names:
            source, target = self.sources[name].dataset, self.targets[name].dataset
            if source.dtype != target.dtype or source.shape[1:] != target.shape[1:]:
                return f"{name} is {source.dtype}{list(source.shape[1:])} in one file, {target.dtype}{list(target.shape[1:])} in the other"
            problem = self.sources[name].problem() or self.targets[name].problem()
            if problem:
                return problem
        return None

    def ranges(self, runs):
        """``(offset in the old file, offset in the new, length)`` in bytes of the rows of
        `runs` (``(first row in the new file, first row in the old, rows)``), every column."""
        ranges = []
        for name in self.names:
            source, target = self.sources[name], self.targets[name]
            width = source.dataset.dtype.itemsize * int(np.prod(source.dataset.shape[1:], dtype=np.int64))
            for new_row, old_row, nrows in runs:
                done = 0
                while done < nrows:
                    old_block, old_at = divmod(old_row + done, source.block_rows)
                    new_block, new_at = divmod(new_row + done, target.block_rows)
                    rows = min(nrows - done, source.block_rows - old_at, target.block_rows - new_at)
                    ranges.append((source.offset(old_block) + old_at * width,
                                   target.offset(new_block) + new_at * width, rows * width))
                    done += rows
        return _merged(ranges)


def _merged(ranges):
    """`ranges` with neighbours that continue each other in both files joined."""
    merged = []
    for at_source, at_target, length in ranges:
        if merged and merged[-1][0] + merged[-1][2] == at_source and merged[-1][1] + merged[-1][2] == at_target:
            merged[-1] = (merged[-1][0], merged[-1][1], merged[-1][2] + length)
        else:
            merged.append((at_source, at_target, length))
    return merged


def copy_ranges(source, target, ranges):
    """Copy byte `ranges` ``(offset in source, offset in target, length)`` from the file
    `source` into the file `target`, by the kernel where it can (``copy_file_range``: no
    trip through user memory), else through a buffer. Raises OSError."""
    source_fd = os.open(source, os.O_RDONLY)
    try:
        target_fd = os.open(target, os.O_WRONLY)
        try:
            kernel = hasattr(os, "copy_file_range")
            for at_source, at_target, length in ranges:
                done = 0
                while done < length:
                    step, copied = min(length - done, _STEP), 0
                    if kernel:
                        try:
                            copied = os.copy_file_range(source_fd, target_fd, step, at_source + done, at_target + done)
                        except OSError as err:
                            if err.errno not in _NO_KERNEL_COPY:
                                raise
                            kernel = False
                    if not kernel:
                        data = os.pread(source_fd, step, at_source + done)
                        copied = os.pwrite(target_fd, data, at_target + done) if data else 0
                    if copied <= 0:
                        raise OSError(errno.EIO, f"{source}: ends before the rows to copy")
                    done += copied
        finally:
            os.close(target_fd)
    finally:
        os.close(source_fd)
