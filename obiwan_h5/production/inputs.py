"""Readers of the production's input files (docs/concepts.md).

Every reader returns *columns*: a dict mapping lower-case column name to a 1-D or 2-D
numpy array in native byte order, with FITS strings as fixed-width bytes (``S<n>``), the
form the HDF5 store keeps. Any failure becomes an `InputError` naming the file.
"""

import functools
import os
import zlib

import fitsio
import numpy as np

from ..core.schema import as_records, column_name_problem
from ..errors import InputError
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

    Plain binary tables (every catalog of a production) are mapped by `fitstable` without
    fitsio's per-HDU set-up cost; anything else (gzip, heaps, ASCII tables) goes through
    fitsio. Errors become `InputError` naming the file.

    Attributes
    ----------
    binary : fitstable.BinaryTable or None
        The mapped table, None for a file read through fitsio.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        check_regular_file(self.path)
        self.binary = None
        try:
            self.binary = BinaryTable(self.path)
        except Unsupported:
            names, dtypes = self._fitsio_describe()
            problem = column_name_problem(names)
            self.by_lower = {name.lower(): name for name in names}
            self.schema = {name.lower(): (normalise_dtype(dtype), shape) for name, (dtype, shape) in dtypes.items()}
        except (OSError, KeyError, ValueError) as err:
            raise InputError(f"{self.path}: not a readable FITS table ({first_line(err)})") from None
        else:
            # shared by every file of the same schema: read-only
            self.nrows, self.by_lower, self.schema = self.binary.nrows, self.binary.by_lower, self.binary.lower_schema
            problem = self.binary.name_problem
        if problem:
            raise InputError(f"{self.path}: {problem}")

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
            raise InputError(f"{self.path}: not a readable FITS file ({first_line(err)})") from None
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
            if self.binary is not None:
                data = self.binary.read(original, rows)
                return {name: data[orig] for name, orig in zip(wanted, original)}
            if self.nrows == 0 or (rows is not None and len(rows) == 0):
                return {name: np.zeros((0,) + self.schema[name][1], self.schema[name][0]) for name in wanted}
            with fitsio.FITS(self.path) as fits:
                data = fits[self._ext].read(columns=original, rows=rows)
        except (OSError, ValueError) as err:
            raise InputError(f"{self.path}: cannot read table ({first_line(err)})") from None
        return {name: normalise_array(data[orig]) for name, orig in zip(wanted, original)}


    def read_records(self):
        """The whole table as one native record array with lower-case field names."""
        if self.binary is not None:
            try:
                return self.binary.read_records(names=list(self.by_lower))
            except (OSError, ValueError) as err:
                raise InputError(f"{self.path}: cannot read table ({first_line(err)})") from None
        return as_records(self.read())


def file_crc32(path):
    """CRC-32 of the bytes of the file at `path`, read 1 MiB at a time."""
    crc = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            crc = zlib.crc32(block, crc)
    return crc


def first_line(err):
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
    """The ``id`` column of ``sim_ids_added.fits`` as int64."""
    return as_ids(read_columns(path, ["id"], required=["id"])["id"], path)


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


def primary_tractor(table, keep_all_apflux=False):
    """The brick_primary rows of a Tractor catalog for matching: as `read_tractor`, but
    only ``ra``, ``dec`` are converted up front, and whole records only for the rows the
    match takes (`PrimaryTractor`). A catalog that `fitstable` cannot map falls back to
    `read_tractor`.

    Parameters
    ----------
    table : FitsTable
    keep_all_apflux : bool
    """
    table.require(["ra", "dec"])
    if table.binary is None:
        return read_tractor(table, keep_all_apflux)
    return PrimaryTractor(table, keep_all_apflux)


class PrimaryTractor:
    """brick_primary rows of a Tractor catalog, converted lazily.

    A derivation keeps the few hundred rows matched to injected sources out of a catalog's
    thousands: converting every record to native byte order and then copying the
    brick_primary ones cost two passes over the whole table per rsdir, for rows never used.
    Behaves as the record array of `read_tractor` where the matching needs it: ``len``,
    ``dtype``, ``["ra"]``, ``["dec"]`` and ``take``.
    """

    def __init__(self, table, keep_all_apflux=False):
        binary = table.binary
        names = list(table.by_lower)
        self._binary, self._names = binary, names
        self._stored = binary.read_stored()
        primary = table.by_lower.get("brick_primary")
        columns = binary.stored_columns(self._stored, [table.by_lower["ra"], table.by_lower["dec"]]
                                        + ([primary] if primary else []))
        self._rows = np.flatnonzero(columns[primary]) if primary else np.arange(binary.nrows)
        self._radec = {"ra": columns[table.by_lower["ra"]][self._rows],
                       "dec": columns[table.by_lower["dec"]][self._rows]}
        self.dtype = _kept_fields(binary.record_dtype(names), keep_all_apflux)

    def __len__(self):
        return len(self._rows)

    def __getitem__(self, name):
        if name not in self._radec:
            raise KeyError(f"{name}: only ra and dec are read up front; use take()")
        return self._radec[name]

    def take(self, index):
        """Native records (kept fields) of brick_primary rows `index`."""
        rows = self._rows[np.asarray(index, dtype=np.int64)]
        return self._binary.as_records(self._stored[rows], self._names).view(self.dtype)


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
