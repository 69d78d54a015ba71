"""The randoms truth table: every column of the row of an injected id.

FITS (first table HDU) or HDF5 (one 1-D dataset per column at the file root, or a single
compound dataset); only the ``id`` column is read up front, and `lookup` reads just the
rows asked for.
"""

import os

import numpy as np

from ..core.schema import column_name_problem
from ..errors import InputError, UnreadableFileError
from .inputs import FitsTable, as_ids, check_regular_file, file_crc32, first_line, normalise_array, normalise_dtype

__all__ = ["TruthTable", "build_index", "rows_in_index"]


class TruthTable:
    """The randoms truth table, looked up by ``id`` without loading every column.

    Parameters
    ----------
    path : str
        FITS or HDF5 file with at least an ``id`` column.
    index_files : (str, str), optional
        ``.npy`` files of the sorted ids and their rows, written by `save_index`: mapped
        read-only instead of reading the id column again (the derive job writes them once
        so that the ranks of a node share one copy in the page cache).
    """

    def __init__(self, path, index_files=None):
        self.path = os.fspath(path)
        check_regular_file(self.path)
        if self.path.endswith((".h5", ".hdf5", ".hdf")):
            self._reader = _Hdf5Truth(self.path)
        else:
            self._reader = _FitsTruth(self.path)
        self.columns = self._reader.columns
        self.schema = self._reader.schema
        if index_files:
            self._sorted_ids, self._order = (np.load(name, mmap_mode="r") for name in index_files)
        else:
            self._sorted_ids, self._order = self._build_index()

    def _build_index(self):
        return build_index(as_ids(self._reader.ids(), self.path, "id column of the randoms truth table"), self.path)

    def save_index(self, ids_file, rows_file):
        """Write the sorted ids and their rows as ``.npy`` into two open binary files
        (read back with ``TruthTable(path, index_files=...)``)."""
        np.save(ids_file, np.asarray(self._sorted_ids))
        np.save(rows_file, np.asarray(self._order))

    def fingerprint(self, content=False):
        """What identifies the file's contents: ``{"size", "mtime_ns"}``, and with `content`
        a CRC-32 of its bytes (``"crc32"``: reads the whole file once more)."""
        stats = os.stat(self.path)
        found = {"size": stats.st_size, "mtime_ns": stats.st_mtime_ns}
        if content:
            found["crc32"] = file_crc32(self.path)
        return found

    def __len__(self):
        return len(self._sorted_ids)

    def rows_of(self, ids):
        """Row numbers of `ids` in the table; -1 where the id is absent."""
        return rows_in_index(self._sorted_ids, self._order, ids)

    def lookup(self, ids):
        """Every truth column for `ids`, in the order given.

        Raises `InputError` naming the first missing id: nothing is silently dropped.
        """
        rows = self.rows_of(ids)
        if np.any(rows < 0):
            missing = np.asarray(ids)[rows < 0]
            raise InputError(
                f"{self.path}: {len(missing)} id(s) not in the randoms truth table (first: {missing[0]})"
            )
        unique_rows, inverse = np.unique(rows, return_inverse=True)
        data = self._reader.read_rows(unique_rows)
        return {name: values[inverse] for name, values in data.items()}


def build_index(ids, label):
    """The sorted ids and their row numbers; no id at all, or a duplicate id, is an
    `InputError` naming `label` (a table without rows would fail every brick)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) == 0:
        raise InputError(f"{label}: the randoms truth table has no rows")
    if len(ids) < 2 or bool(np.all(ids[1:] > ids[:-1])):
        # randoms tables are usually written in id order: one O(n) pass instead of a sort,
        # which for a production's 10^8-10^9 ids is minutes of one rank while the rest wait
        return ids.copy(), np.arange(len(ids), dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    if len(ids) and np.any(sorted_ids[1:] == sorted_ids[:-1]):
        dup = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]][0]
        raise InputError(f"{label}: duplicate id {dup} in the randoms truth table")
    return sorted_ids, order


def rows_in_index(sorted_ids, order, ids):
    """Row numbers of `ids` given an index from `build_index`; -1 where the id is absent."""
    ids = np.asarray(ids, dtype=np.int64)
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.clip(pos, 0, max(len(sorted_ids) - 1, 0))
    found = (len(sorted_ids) > 0) & (sorted_ids[pos] == ids) if len(ids) else np.zeros(0, bool)
    return np.where(found, order[pos] if len(sorted_ids) else -1, -1)


class _FitsTruth:
    def __init__(self, path):
        self.table = FitsTable(path)
        self.table.require(["id"])
        self.schema = self.table.schema
        self.columns = list(self.schema)

    def ids(self):
        return self.table.read(["id"])["id"]

    def read_rows(self, rows):
        return self.table.read(None, np.asarray(rows, dtype=np.int64))


def _refuse_names(names, path):
    problem = column_name_problem(names)
    if problem:
        raise InputError(f"{path}: {problem}")


class _Hdf5Truth:
    def __init__(self, path):
        import h5py

        self.path = path
        try:
            self._file = h5py.File(path, "r")
        except OSError as err:
            raise UnreadableFileError(f"{path}: not a readable HDF5 file ({first_line(err)})") from None
        node = self._file
        found = [key for key in node if isinstance(node[key], h5py.Dataset)]
        _refuse_names(found, path)
        datasets = {key.lower(): node[key] for key in found}
        if len(datasets) == 1 and next(iter(datasets.values())).dtype.names:
            compound = next(iter(datasets.values()))
            self._compound = compound
            names = compound.dtype.names
            _refuse_names(names, path)
            self.schema = {n.lower(): (normalise_dtype(compound.dtype[n]), ()) for n in names}
            self._names = {n.lower(): n for n in names}
        else:
            self._compound = None
            self._datasets = datasets
            self.schema = {n: (normalise_dtype(d.dtype), d.shape[1:]) for n, d in datasets.items()}
        if self._compound is None:
            lengths = {name: len(dset) for name, dset in datasets.items()}
            if len(set(lengths.values())) > 1:
                short = min(lengths, key=lengths.get)
                raise InputError(f"{path}: columns of the randoms truth table differ in length "
                                 f"({short} has {lengths[short]} rows, id {lengths.get('id')})")
        if "id" not in self.schema:
            raise InputError(f"{path}: randoms truth table has no 'id' column")
        self.columns = list(self.schema)

    def ids(self):
        if self._compound is not None:
            return np.asarray(self._compound.fields(self._names["id"])[:])
        return np.asarray(self._datasets["id"][:])

    def read_rows(self, rows):
        rows = np.asarray(rows)
        if self._compound is not None:
            data = self._compound[rows] if len(rows) else self._compound[:0]
            return {name: normalise_array(data[orig]) for name, orig in self._names.items()}
        return {
            name: normalise_array(dset[rows] if len(rows) else dset[:0])
            for name, dset in self._datasets.items()
        }
