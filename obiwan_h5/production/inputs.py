"""Readers of the production's input files (docs/concepts.md).

Every reader returns *columns*: a dict mapping lower-case column name to a 1-D or 2-D
numpy array in native byte order, with FITS strings as fixed-width bytes (``S<n>``), the
form the HDF5 store keeps. Any failure becomes an `InputError` naming the file.
"""

import functools
import os
import stat
import zlib

import fitsio
import numpy as np

from ..core.schema import ArrayTable, as_records, column_name_problem
from ..errors import InputError, UnreadableFileError
from ..outputs import check_regular_file
from .fitstable import BinaryTable, Unsupported

__all__ = [
    "FitsTable",
    "fits_schema",
    "normalise_array",
    "read_columns",
    "read_ids_added",
    "read_radec",
    "read_simcat",
    "read_survey_bricks",
    "primary_tractor",
    "read_tractor",
    "simcat_rows",
    "CatalogRows",
    "open_input",
    "tractor_keep",
    "as_ids",
    "check_regular_file",
    "first_line",
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

    Plain binary tables (every catalog of a production) are read by `fitstable` without
    fitsio's per-HDU set-up cost; anything else (gzip, heaps, ASCII tables) goes through
    fitsio. The file is opened once (`open_input`): its headers, and with `load` its data,
    come from that one descriptor. Errors become `InputError` naming the file.

    Parameters
    ----------
    path : str
    load : {None, "read", "map"}
        Also load the rows: into memory (small files), or mapped read-only (large catalogs
        of which a few rows are used); None reads only the headers.

    Attributes
    ----------
    binary : fitstable.BinaryTable or None
        The mapped table, None for a file read through fitsio.
    size, mtime_ns : int
        The file's size and modification time when it was opened (its fingerprint).
    schema_key : hashable
        Equal for files of one schema (the same header apart from the row count).
    """

    def __init__(self, path, load=None):
        self.path = os.fspath(path)
        fd, status = open_input(self.path)
        self.size, self.mtime_ns = status.st_size, status.st_mtime_ns
        self.binary = None
        try:
            self.binary = BinaryTable(self.path, fd=fd, size=status.st_size, load=load)
        except Unsupported:
            names, dtypes = self._fitsio_describe()
            problem = column_name_problem(names)
            self.by_lower = {name.lower(): name for name in names}
            self.schema = {name.lower(): (normalise_dtype(dtype), shape) for name, (dtype, shape) in dtypes.items()}
            self.schema_key = tuple(self.schema.items())
        except (OSError, KeyError, ValueError) as err:
            raise UnreadableFileError(f"{self.path}: not a readable FITS table ({first_line(err)})") from None
        else:
            # shared by every file of the same schema: read-only
            self.nrows, self.by_lower, self.schema = self.binary.nrows, self.binary.by_lower, self.binary.lower_schema
            problem = self.binary.name_problem
            self.schema_key = self.binary.layout
        finally:
            os.close(fd)
        if problem:
            raise InputError(f"{self.path}: {problem}")

    def _fitsio_describe(self):
        dtype = None
        try:
            with fitsio.FITS(self.path) as fits:
                for index, hdu in enumerate(fits):
                    if hdu.get_exttype() in ("BINARY_TBL", "ASCII_TBL"):
                        self._ext = index
                        dtype = hdu.get_rec_dtype()[0]
                        self.nrows = hdu.get_nrows()
                        break
        except (OSError, ValueError) as err:  # fitsio's
            raise UnreadableFileError(f"{self.path}: not a readable FITS file ({first_line(err)})") from None
        if dtype is None:
            raise InputError(f"{self.path}: no table extension")
        described = {}
        for name in dtype.names:
            field = dtype.fields[name][0]
            described[name] = (field.base if field.shape else field, field.shape)
        return list(dtype.names), described

    def require(self, names):
        """Refuse a table that lacks one of the lower-case columns `names` (`InputError`)."""
        missing = [name for name in names if name not in self.by_lower]
        if missing:
            raise InputError(f"{self.path}: missing column(s) {', '.join(missing)}")

    def read(self, columns=None, rows=None):
        """Lower-case columns (all when None) as native arrays; `rows` an index array."""
        wanted = list(self.by_lower) if columns is None else [name for name in columns if name in self.by_lower]
        original = [self.by_lower[name] for name in wanted]
        try:
            if self.binary is not None:
                data = self.binary.read(original, rows)
                return {name: data[orig] for name, orig in zip(wanted, original)}
            if self.nrows == 0 or (rows is not None and len(rows) == 0):
                return {name: np.zeros((0,) + self.schema[name][1], self.schema[name][0]) for name in wanted}
            with fitsio.FITS(self.path) as fits:
                data = fits[self._ext].read(columns=original, rows=rows)
        except (OSError, ValueError) as err:
            raise UnreadableFileError(f"{self.path}: cannot read table ({first_line(err)})") from None
        return {name: normalise_array(data[orig]) for name, orig in zip(wanted, original)}

    def read_records(self):
        """The whole table as one native record array with lower-case field names."""
        if self.binary is not None:
            try:
                return self.binary.read_records(names=list(self.by_lower))
            except (OSError, ValueError) as err:
                raise UnreadableFileError(f"{self.path}: cannot read table ({first_line(err)})") from None
        return as_records(self.read())


def file_crc32(path):
    """CRC-32 of the bytes of the file at `path`, read 1 MiB at a time."""
    crc = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            crc = zlib.crc32(block, crc)
    return crc


def open_input(path, what="file"):
    """Open an input file for reading: ``(descriptor, os.stat_result)``.

    One ``open`` and one ``fstat`` per file: what is not a regular file is refused as
    `check_regular_file` refuses it, and a FIFO is opened without blocking (then refused).
    The caller closes the descriptor.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        check_regular_file(path, what)  # the message for what it is (missing, a socket, ...)
        raise InputError(f"{path}: cannot read {what} ({err.strerror})") from None
    status = os.fstat(fd)
    if not stat.S_ISREG(status.st_mode):
        os.close(fd)
        check_regular_file(path, what)  # says what it is: a directory, a FIFO, a device
        raise InputError(f"{path}: is not a regular {what}")
    return fd, status


def first_line(err):
    """The first line of an exception's text (or its type's name): one line for a message."""
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


def as_ids(values, path, what="id column"):
    """`values` as int64 ids, or `InputError`: ids must be integers representable in int64
    (floats, and unsigned values of 2**63 or more, are refused rather than coerced)."""
    values = np.asarray(values)
    if values.dtype.kind not in "iu":
        raise InputError(f"{path}: {what} is {values.dtype}, expected integers")
    if values.dtype.kind == "u" and values.dtype.itemsize == 8 and len(values) and values.max() >= 2 ** 63:
        raise InputError(f"{path}: {what} has values of 2**63 or more, which int64 ids cannot hold")
    return values.astype(np.int64)


def read_ids_added(path):
    """The ``id`` column of ``sim_ids_added.fits`` as int64 (`path` may be the open `FitsTable`)."""
    table = path if isinstance(path, FitsTable) else FitsTable(path, load="read")
    table.require(["id"])
    return as_ids(table.read(["id"])["id"], table.path)


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
    fields copied to the derived table (apflux pruned, docs/concepts.md).

    Parameters
    ----------
    path : str or FitsTable
        The catalog, or the table already opened (by the scan).
    keep_all_apflux : bool
    """
    table = path if isinstance(path, FitsTable) else FitsTable(path)
    table.require(["ra", "dec"])
    records = table.read_records()
    if "brick_primary" in table.by_lower:
        records = records[records["brick_primary"].astype(bool)]
    return records.view(_kept_fields(records.dtype, keep_all_apflux))


def simcat_rows(table, rows):
    """The simcat rows `rows` of `table` (a `FitsTable`, loaded) as a table the derivation
    reads (`core.derivation`): records converted only when gathered, column by column."""
    if table.binary is None:
        return ArrayTable(table.read(None, rows))
    return CatalogRows(table, rows, list(table.by_lower), key=(table.schema_key, "all"))


def primary_tractor(table, keep_all_apflux=False):
    """The brick_primary rows of a Tractor catalog (a `FitsTable`, best mapped), for
    matching: the columns `read_tractor` keeps, ``ra``, ``dec`` converted up front, the
    other columns only for the rows the match takes (`CatalogRows`). A catalog that
    `fitstable` cannot map is read whole (`read_tractor`).
    """
    table.require(["ra", "dec"])
    if table.binary is None:
        return ArrayTable(read_tractor(table, keep_all_apflux))
    names = _kept_names(table.binary.layout, keep_all_apflux)
    primary = table.by_lower.get("brick_primary")
    rows = None
    if primary:
        rows = np.flatnonzero(table.binary.values(table.binary.read_stored(), primary))
    return CatalogRows(table, rows, names, key=(table.schema_key, keep_all_apflux), coordinates=("ra", "dec"))


class CatalogRows:
    """Rows of a plain FITS table as the derivation reads a table (`core.derivation`):
    records stay as stored (big-endian, logicals as bytes) until a column of the rows a
    derivation needs is placed, converted as it is assigned.

    Parameters
    ----------
    table : FitsTable
        With `fitstable` data loaded (``load="read"`` or ``"map"``).
    rows : numpy.ndarray or None
        The table's rows this stands for (None: all).
    names : list of str
        The lower-case columns it has.
    key : hashable
        Equal for tables of the same records and names.
    coordinates : tuple of str
        Columns converted up front (the positions the match needs of every row).
    """

    def __init__(self, table, rows, names, key, coordinates=()):
        self.path, self.names, self.key = table.path, names, key
        self._binary, self._by_lower = table.binary, table.by_lower
        self._stored = table.binary.read_stored()
        self.row_bytes = self._stored.dtype.itemsize
        # records as opaque bytes: numpy takes rows of those with plain copies, where it
        # takes a structured dtype field by field (ten times slower)
        self._bytes = self._stored.view(np.dtype((np.void, self.row_bytes)))
        self._rows = rows
        self._columns = {}
        self._columns = {name: self.column(name) for name in coordinates}
        self.dtype = _kept_fields(self._binary.record_dtype(list(table.by_lower)), tuple(names))
        self._binary.release()  # until `gather`, only the coordinates are held

    def __len__(self):
        return self._binary.nrows if self._rows is None else len(self._rows)

    @property
    def schema(self):
        """{name: (dtype, shape)} of its columns, as a derived file stores them."""
        schema = self._binary.lower_schema
        return {name: schema[name] for name in self.names}

    def __getitem__(self, name):
        return self.column(name)

    def column(self, name):
        """One column of every row, as a native array."""
        if name in self._columns:
            return self._columns[name]
        values = self._binary.values(self._stored, self._by_lower[name])
        if self._rows is not None:
            values = values[self._rows]  # the column's values only, not whole records
        return values.astype(values.dtype.newbyteorder("="), copy=False) if values.dtype.kind != "S" else values

    def gather(self, index):
        """The stored records of rows `index` (a copy, for `values`)."""
        rows = np.asarray(index, dtype=np.int64) if self._rows is None else self._rows[index]
        records = self._bytes[rows].view(self._stored.dtype)
        self._binary.release()
        return records

    def values(self, records, name):
        """Column `name` of records from `gather`, assignable into a native array."""
        return self._binary.values(records, self._by_lower[name])

    def take(self, index):
        """Native records (its columns) of rows `index`, as `read_tractor` gives them."""
        return self._binary.as_records(self.gather(index), list(self._by_lower)).view(self.dtype)


@functools.lru_cache(maxsize=64)
def _kept_names(layout, keep_all_apflux):
    return [name for name in layout.by_lower if tractor_keep(name, keep_all_apflux)]


@functools.lru_cache(maxsize=64)
def _kept_fields(dtype, keep):
    """`dtype` with only the fields kept (same offsets: a free view): `keep` is the
    `keep_all_apflux` flag of `tractor_keep`, or the tuple of names to keep."""
    if isinstance(keep, tuple):
        kept = [name for name in dtype.names if name in keep]
    else:
        kept = [name for name in dtype.names if tractor_keep(name, keep)]
    return np.dtype({"names": kept, "formats": [dtype.fields[name][0] for name in kept],
                     "offsets": [dtype.fields[name][1] for name in kept], "itemsize": dtype.itemsize})


def read_radec(path):
    """``ra``, ``dec`` of a catalog (the real DR catalog of a brick; `path` may be the
    open `FitsTable`)."""
    table = path if isinstance(path, FitsTable) else FitsTable(path)
    table.require(["ra", "dec"])
    columns = table.read(["ra", "dec"])
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
