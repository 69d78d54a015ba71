"""Copying an update's rows byte for byte (`job.bytecopy`): rows located in contiguous and
chunked datasets whose chunks do not line up, copied file to file, refused where the same
rows are not the same bytes."""

import errno
import os

import h5py
import numpy as np
import pytest

from obiwan_h5.job import bytecopy
from obiwan_h5.job.bytecopy import RowCopier, copy_ranges

OLD_ROWS, NEW_ROWS = 1000, 1300
COLUMNS = {"flux": ("f4", (3,)), "name": ("S7", ()), "id": (">i8", ())}


def _values(name, nrows, seed):
    dtype, shape = COLUMNS[name]
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 10**6, size=(nrows,) + shape)
    return values.astype("S7") if dtype == "S7" else values.astype(dtype)


def _file(path, nrows, chunks, seed, **create):
    """A file with the `COLUMNS` (chunks of ``chunks`` rows, or contiguous for None), every
    row written."""
    with h5py.File(path, "w") as handle:
        for name, (dtype, shape) in COLUMNS.items():
            chunk_shape = None if chunks is None else (chunks,) + shape
            handle.create_dataset(name, data=_values(name, nrows, seed), chunks=chunk_shape, **create)


@pytest.mark.parametrize("old_chunks, new_chunks", [(None, None), (None, 64), (100, None), (64, 100), (1000, 37)])
def test_rows_are_copied_to_their_place_whatever_the_chunks(tmp_path, old_chunks, new_chunks):
    old, new = tmp_path / "old.h5", tmp_path / "new.h5"
    _file(old, OLD_ROWS, old_chunks, seed=1)
    _file(new, NEW_ROWS, new_chunks, seed=2)
    runs = [(0, 0, 1), (10, 0, 300), (500, 400, 600), (1299, 999, 1)]  # (new row, old row, rows)
    with h5py.File(old, "r") as source, h5py.File(new, "r") as target:
        copier = RowCopier({name: source[name] for name in COLUMNS}, {name: target[name] for name in COLUMNS},
                           COLUMNS)
        assert copier.problem() is None
        ranges = copier.ranges(runs)
    copy_ranges(str(old), str(new), ranges)
    with h5py.File(new, "r") as target:
        for name in COLUMNS:
            want = _values(name, NEW_ROWS, seed=2)
            source = _values(name, OLD_ROWS, seed=1)
            for new_row, old_row, nrows in runs:
                want[new_row:new_row + nrows] = source[old_row:old_row + nrows]
            assert np.array_equal(target[name][:], want), name


def test_ranges_that_continue_each_other_are_merged(tmp_path):
    old, new = tmp_path / "old.h5", tmp_path / "new.h5"
    _file(old, OLD_ROWS, None, seed=1)
    _file(new, NEW_ROWS, None, seed=2)
    with h5py.File(old, "r") as source, h5py.File(new, "r") as target:
        copier = RowCopier({"id": source["id"]}, {"id": target["id"]}, ["id"])
        ranges = copier.ranges([(0, 0, 10), (10, 10, 5), (20, 30, 5)])
        offset_old, offset_new = source["id"].id.get_offset(), target["id"].id.get_offset()
    assert ranges == [(offset_old, offset_new, 15 * 8), (offset_old + 30 * 8, offset_new + 20 * 8, 5 * 8)]


@pytest.mark.parametrize("case, words", [
    ("gzip", "is filtered"),
    ("across", "chunked across a row"),
    ("dtype", "in one file"),
])
def test_rows_that_are_not_the_same_bytes_are_refused(tmp_path, case, words):
    old, new = tmp_path / "old.h5", tmp_path / "new.h5"
    _file(old, OLD_ROWS, 100, seed=1)
    with h5py.File(new, "w") as handle:
        data = _values("flux", NEW_ROWS, seed=2)
        if case == "gzip":
            handle.create_dataset("flux", data=data, chunks=(100, 3), compression="gzip")
        elif case == "across":
            handle.create_dataset("flux", data=data, chunks=(100, 1))
        else:
            handle.create_dataset("flux", data=data.astype("f8"))
    with h5py.File(old, "r") as source, h5py.File(new, "r") as target:
        problem = RowCopier({"flux": source["flux"]}, {"flux": target["flux"]}, ["flux"]).problem()
    assert problem is not None and words in problem


def test_a_dataset_without_storage_is_refused(tmp_path):
    old, new = tmp_path / "old.h5", tmp_path / "new.h5"
    _file(old, OLD_ROWS, None, seed=1)
    with h5py.File(new, "w") as handle:
        handle.create_dataset("id", shape=(NEW_ROWS,), dtype=">i8")  # never written: no storage
    with h5py.File(old, "r") as source, h5py.File(new, "r") as target:
        problem = RowCopier({"id": source["id"]}, {"id": target["id"]}, ["id"]).problem()
    assert problem is not None and "no storage" in problem


def test_bytes_are_copied_through_memory_where_the_kernel_cannot(tmp_path, monkeypatch):
    source, target = tmp_path / "a", tmp_path / "b"
    source.write_bytes(bytes(range(256)) * 4)
    target.write_bytes(b"\0" * 1024)

    def refuse(*args):
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    monkeypatch.setattr(bytecopy, "_STEP", 100)  # several steps per range
    copy_ranges(str(source), str(target), [(10, 500, 300), (0, 0, 5)])
    data = source.read_bytes()
    got = target.read_bytes()
    assert got[500:800] == data[10:310] and got[:5] == data[:5] and got[5:500] == b"\0" * 495


def test_a_source_shorter_than_its_ranges_is_an_error(tmp_path):
    source, target = tmp_path / "a", tmp_path / "b"
    source.write_bytes(b"x" * 100)
    target.write_bytes(b"\0" * 1024)
    with pytest.raises(OSError, match="ends before the rows to copy"):
        copy_ranges(str(source), str(target), [(50, 0, 100)])
