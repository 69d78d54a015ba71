"""Readers of the production's input files (SPEC §2).

Every reader returns *columns*: a dict mapping lower-case column name to a 1-D or 2-D
numpy array in native byte order, with FITS strings as fixed-width bytes (``S<n>``), the
form the HDF5 store keeps. Any failure becomes an `InputError` naming the file.
"""

import contextlib
import functools
import os

import fitsio
import numpy as np

from .fitstable import BinaryTable, Unsupported
from .production import InputError

__all__ = [
    "FitsTable",
    "TruthTable",
    "as_records",
    "fits_schema",
    "normalise_array",
    "read_columns",
    "read_ids_added",
    "read_radec",
    "read_simcat",
    "read_survey_bricks",
    "read_tractor",
    "tractor_keep",
]

# what the derivation needs of a simcat (true fluxes for the selections)
SIMCAT_COLUMNS = ("id", "ra", "dec", "gflux", "rflux", "zflux",
                  "mw_transmission_g", "mw_transmission_r", "mw_transmission_z")
# apflux arrays are most of a Tractor row; the old derived tables kept only these
APFLUX_KEEP = frozenset(
    ["apflux_g", "apflux_r", "apflux_z", "apflux_resid_g", "apflux_resid_r", "apflux_resid_z",
     "decam_apflux", "decam_apflux_resid"]
)


def normalise_array(array):
    """Native byte order, and unicode strings as ASCII bytes of the same width."""
    array = np.asarray(array)
    if array.dtype.kind == "U":
        width = max(array.dtype.itemsize // 4, 1)
        return np.char.encode(array, "ascii").astype(f"S{width}")
    if not array.dtype.isnative:
        return array.astype(array.dtype.newbyteorder("="))
    return array


def normalise_dtype(dtype):
    """The dtype `normalise_array` would give an array of `dtype` (no data needed)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "U":
        return np.dtype(f"S{max(dtype.itemsize // 4, 1)}")
    return dtype if dtype.isnative else dtype.newbyteorder("=")


class FitsTable:
    """The first table of a FITS file, with lower-case column names.

    Plain binary tables (every catalog of a production) are mapped by `fitstable` without
    fitsio's per-HDU set-up cost; anything else (gzip, heaps, ASCII tables) goes through
    fitsio. Errors become `InputError` naming the file.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise InputError(f"{self.path}: file not found")
        self._lean = None
        try:
            self._lean = BinaryTable(self.path)
        except Unsupported:
            names, dtypes = self._fitsio_describe()
            self.by_lower = {name.lower(): name for name in names}
            self.schema = {name.lower(): (normalise_dtype(dtype), shape) for name, (dtype, shape) in dtypes.items()}
        except (OSError, KeyError, ValueError) as err:
            raise InputError(f"{self.path}: not a readable FITS table ({_first_line(err)})") from None
        else:
            # shared by every file of the same schema: read-only
            self.nrows, self.by_lower, self.schema = self._lean.nrows, self._lean.by_lower, self._lean.lower_schema

    def _fitsio_describe(self):
        try:
            with fitsio.FITS(self.path) as fits:
                for index, hdu in enumerate(fits):
                    if hdu.get_exttype() in ("BINARY_TBL", "ASCII_TBL"):
                        self._ext = index
                        dtype = hdu.get_rec_dtype()[0]
                        self.nrows = hdu.get_nrows()
                        break
                else:
                    raise InputError(f"{self.path}: no table extension")
        except (OSError, ValueError) as err:
            raise InputError(f"{self.path}: not a readable FITS file ({_first_line(err)})") from None
        described = {}
        for name in dtype.names:
            field = dtype.fields[name][0]
            described[name] = (field.base if field.shape else field, field.shape)
        return list(dtype.names), described

    def require(self, names):
        missing = [name for name in names if name not in self.by_lower]
        if missing:
            raise InputError(f"{self.path}: missing column(s) {', '.join(missing)}")

    def read(self, columns=None, rows=None):
        """Lower-case columns (all when None) as native arrays; `rows` an index array."""
        wanted = list(self.by_lower) if columns is None else [name for name in columns if name in self.by_lower]
        original = [self.by_lower[name] for name in wanted]
        try:
            if self._lean is not None:
                data = self._lean.read(original, rows)
                return {name: data[orig] for name, orig in zip(wanted, original)}
            if self.nrows == 0 or (rows is not None and len(rows) == 0):
                return {name: np.zeros((0,) + self.schema[name][1], self.schema[name][0]) for name in wanted}
            with fitsio.FITS(self.path) as fits:
                data = fits[self._ext].read(columns=original, rows=rows)
        except (OSError, ValueError) as err:
            raise InputError(f"{self.path}: cannot read table ({_first_line(err)})") from None
        return {name: normalise_array(data[orig]) for name, orig in zip(wanted, original)}


    def read_records(self):
        """The whole table as one native record array with lower-case field names."""
        if self._lean is not None:
            try:
                return self._lean.read_records(names=list(self.by_lower))
            except (OSError, ValueError) as err:
                raise InputError(f"{self.path}: cannot read table ({_first_line(err)})") from None
        return as_records(self.read())


def as_records(columns):
    """Columns (name -> array of equal length) as one record array."""
    names = list(columns)
    nrows = len(columns[names[0]]) if names else 0
    records = np.empty(nrows, dtype=[(name, columns[name].dtype, columns[name].shape[1:]) for name in names])
    for name in names:
        records[name] = columns[name]
    return records


def _first_line(err):
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def fits_schema(path):
    """Column schema of a FITS table from its header only: ``({name: (dtype, shape)}, nrows)``.

    Names are lower case, dtypes as the store keeps them (`normalise_dtype`), shape is
    the per-row shape (``()`` for scalars).
    """
    table = FitsTable(path)
    return dict(table.schema), table.nrows


def read_columns(path, columns=None, required=()):
    """Read a FITS table as lower-case columns.

    Parameters
    ----------
    path : str
        FITS file; the first table extension is read.
    columns : sequence of str, optional
        Lower-case names to read (case in the file does not matter); all when None.
    required : sequence of str
        Names that must be present; missing ones raise `InputError`.
    """
    table = FitsTable(path)
    table.require(required)
    return table.read(columns)


def read_ids_added(path):
    """The ``id`` column of ``sim_ids_added.fits`` as int64."""
    return read_columns(path, ["id"], required=["id"])["id"].astype(np.int64)


def read_simcat(path, columns=None):
    """A simcat table (truth of what was injected, fluxes as added to the images)."""
    return read_columns(path, columns, required=SIMCAT_COLUMNS)


def tractor_keep(name, keep_all_apflux=False):
    """Whether a Tractor column is copied into the derived table."""
    if keep_all_apflux:
        return True
    is_apflux = name.startswith("apflux_") or name.startswith("decam_apflux")
    return not is_apflux or name in APFLUX_KEEP


def read_tractor(path, keep_all_apflux=False):
    """A Tractor catalog as one record array: `brick_primary` rows only, and only the
    fields copied to the derived table (apflux pruned, SPEC §3.4)."""
    table = FitsTable(path)
    table.require(["ra", "dec"])
    records = table.read_records()
    if "brick_primary" in table.by_lower:
        records = records[records["brick_primary"].astype(bool)]
    return records.view(_kept_fields(records.dtype, keep_all_apflux))


@functools.lru_cache(maxsize=64)
def _kept_fields(dtype, keep_all_apflux):
    """`dtype` with only the fields `tractor_keep` keeps (same offsets: a free view)."""
    kept = [name for name in dtype.names if tractor_keep(name, keep_all_apflux)]
    return np.dtype({"names": kept, "formats": [dtype.fields[name][0] for name in kept],
                     "offsets": [dtype.fields[name][1] for name in kept], "itemsize": dtype.itemsize})


def read_radec(path):
    """``ra``, ``dec`` of a catalog (the real DR catalog of a brick)."""
    columns = read_columns(path, ["ra", "dec"], required=["ra", "dec"])
    return columns["ra"].astype(np.float64), columns["dec"].astype(np.float64)


def read_survey_bricks(path, bricknames=None):
    """Brick centres and bounds from survey-bricks: ``{brickname: (ra, dec, ra1, ra2, dec1, dec2)}``."""
    fields = ["brickname", "ra", "dec", "ra1", "ra2", "dec1", "dec2"]
    columns = read_columns(path, fields, required=fields)
    names = np.char.strip(columns["brickname"].astype("S8")).astype(str)
    if bricknames is not None:
        keep = np.isin(names, list(bricknames))
        names = names[keep]
        columns = {key: values[keep] for key, values in columns.items()}
    return {
        name: tuple(float(columns[key][row]) for key in fields[1:])
        for row, name in enumerate(names)
    }


class TruthTable:
    """The randoms truth table, looked up by ``id`` without loading every column.

    Only the ``id`` column is read up front; `lookup` reads just the rows asked for.
    FITS (first table HDU) and HDF5 (a group or file root with one 1-D dataset per
    column, or a single compound dataset) are accepted.

    Parameters
    ----------
    path : str
        FITS or HDF5 file with at least an ``id`` column.
    comm : communicator, optional
        With several ranks and `index_prefix`, rank 0 alone reads the ids and writes the
        sorted index to ``<index_prefix>-ids.npy`` and ``-rows.npy``; every rank maps those
        files, so the ranks of a node share one copy in the page cache instead of each
        holding its own (~24 bytes per random per rank) and re-reading the id column.
    index_prefix : str, optional
        Where the shared index goes (the derive job puts it beside its output).
    """

    def __init__(self, path, comm=None, index_prefix=None):
        self.path = os.fspath(path)
        if self.path.endswith((".h5", ".hdf5", ".hdf")):
            self._reader = _Hdf5Truth(self.path)
        else:
            self._reader = _FitsTruth(self.path)
        self.columns = self._reader.columns
        self.schema = self._reader.schema
        self.index_files = []
        if comm is not None and comm.size > 1 and index_prefix:
            self._share_index(comm, index_prefix)
        else:
            self._sorted_ids, self._order = self._build_index()

    def _build_index(self):
        ids = self._reader.ids()
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        if len(ids) and np.any(sorted_ids[1:] == sorted_ids[:-1]):
            dup = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]][0]
            raise InputError(f"{self.path}: duplicate id {dup} in the randoms truth table")
        return sorted_ids, order

    def _share_index(self, comm, prefix):
        from .parallel import agree

        self.index_files = [f"{prefix}-ids.npy", f"{prefix}-rows.npy"]
        error = None
        if comm.rank == 0:
            try:
                for filename, values in zip(self.index_files, self._build_index()):
                    np.save(filename, values)
            except InputError as err:
                error = str(err)
            except OSError as err:
                error = f"{self.index_files[0]}: cannot write the shared truth index ({err.strerror})"
        agree(comm, error)
        self._sorted_ids, self._order = (np.load(filename, mmap_mode="r") for filename in self.index_files)

    def remove_index_files(self):
        """Delete the shared index files (call on one rank, after every rank is done)."""
        for filename in self.index_files:
            with contextlib.suppress(OSError):
                os.remove(filename)

    def __len__(self):
        return len(self._sorted_ids)

    def rows_of(self, ids):
        """Row numbers of `ids` in the table; -1 where the id is absent."""
        ids = np.asarray(ids, dtype=np.int64)
        pos = np.searchsorted(self._sorted_ids, ids)
        pos = np.clip(pos, 0, max(len(self._sorted_ids) - 1, 0))
        found = (len(self._sorted_ids) > 0) & (self._sorted_ids[pos] == ids) if len(ids) else np.zeros(0, bool)
        return np.where(found, self._order[pos] if len(self._sorted_ids) else -1, -1)

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


class _FitsTruth:
    def __init__(self, path):
        self.table = FitsTable(path)
        self.table.require(["id"])
        self.schema = self.table.schema
        self.columns = list(self.schema)

    def ids(self):
        return self.table.read(["id"])["id"].astype(np.int64)

    def read_rows(self, rows):
        return self.table.read(None, np.asarray(rows, dtype=np.int64))


class _Hdf5Truth:
    def __init__(self, path):
        import h5py

        self.path = path
        try:
            self._file = h5py.File(path, "r")
        except OSError as err:
            raise InputError(f"{path}: not a readable HDF5 file ({_first_line(err)})") from None
        node = self._file
        datasets = {key.lower(): node[key] for key in node if isinstance(node[key], h5py.Dataset)}
        if len(datasets) == 1 and next(iter(datasets.values())).dtype.names:
            compound = next(iter(datasets.values()))
            self._compound = compound
            names = compound.dtype.names
            self.schema = {n.lower(): (normalise_dtype(compound.dtype[n]), ()) for n in names}
            self._names = {n.lower(): n for n in names}
        else:
            self._compound = None
            self._datasets = datasets
            self.schema = {n: (normalise_dtype(d.dtype), d.shape[1:]) for n, d in datasets.items()}
        if "id" not in self.schema:
            raise InputError(f"{path}: randoms truth table has no 'id' column")
        self.columns = list(self.schema)

    def ids(self):
        if self._compound is not None:
            return np.asarray(self._compound.fields(self._names["id"])[:], dtype=np.int64)
        return np.asarray(self._datasets["id"][:], dtype=np.int64)

    def read_rows(self, rows):
        rows = np.asarray(rows)
        if self._compound is not None:
            data = self._compound[rows] if len(rows) else self._compound[:0]
            return {name: normalise_array(data[orig]) for name, orig in self._names.items()}
        return {
            name: normalise_array(dset[rows] if len(rows) else dset[:0])
            for name, dset in self._datasets.items()
        }
