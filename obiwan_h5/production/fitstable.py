"""A lean reader of FITS binary tables, for the thousands of small catalogs of a production.

fitsio spends about 2 ms building Python descriptions of a 150-column Tractor HDU before
reading a byte of data — more than the read itself, and most of a derive job's time. The
catalogs of a production are plain binary tables (fixed-width columns, no heap), which
this module maps directly to a numpy record dtype from the header cards: schema from the
header alone, rows through `numpy.memmap`.

Anything outside that plain case (compressed files, variable-length or bit columns,
scaled columns, ASCII tables) raises `Unsupported`, and `inputs` falls back to fitsio.
"""

import mmap
import os

import numpy as np

from ..core.schema import column_name_problem

__all__ = ["BinaryTable", "Unsupported"]

BLOCK = 2880
CARD = 80
# bytes read by the first read of a file: the headers of a Tractor catalog (~150 columns,
# 13 blocks), and the whole of a small file (simcat, ids), in one system call
HEAD_BYTES = 64 << 10
# rows of a large table read at a time when only some columns are wanted
BLOCK_READ_BYTES = 32 << 20
# TFORM letter -> big-endian numpy type (FITS standard §7.3.1; S/U/V are cfitsio's
# signed byte / unsigned 16 / unsigned 32 codes)
TFORM_TYPES = {"L": "S1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8", "A": "S",
               "S": "i1", "U": ">u2", "V": ">u4"}
# TZERO offsets that mean "unsigned" (or signed byte) by FITS convention
UNSIGNED_BY_TZERO = {("B", -128): "i1", ("I", 32768): ">u2", ("J", 2147483648): ">u4",
                     ("K", 9223372036854775808): ">u8"}


class Unsupported(Exception):
    """The file is not a plain binary table this reader maps; use fitsio instead."""


def _parse_value(text):
    text = text.split("/", 1)[0].strip() if not text.lstrip().startswith("'") else text.strip()
    if text.startswith("'"):
        end = text.find("'", 1)
        while end != -1 and text[end + 1:end + 2] == "'":  # '' is an escaped quote
            end = text.find("'", end + 2)
        return text[1:end].replace("''", "'").rstrip()
    if text in ("T", "F"):
        return text == "T"
    try:
        return int(text)
    except ValueError:
        try:
            return float(text.replace("D", "E"))
        except ValueError:
            return text


def _header_end(raw, start):
    """Offset just past the header that starts at `start` of `raw` (the end of its END
    card's block), or None when `raw` ends before it."""
    at = _find_card(raw, b"END", start)
    if at < 0:
        return None
    end = start + ((at - start) // BLOCK + 1) * BLOCK
    return end if end <= len(raw) else None


def _find_card(raw, key, start=0):
    """Offset of the first card from `start` (a card boundary) whose keyword is `key`, or -1."""
    pattern = key.ljust(8)
    at = raw.find(pattern, start)
    while at >= 0 and (at - start) % CARD:
        at = raw.find(pattern, at + 1)
    return at


def _card(raw, key, default=None):
    """The parsed value of one card of a raw header."""
    at = _find_card(raw, key.encode())
    if at < 0 or raw[at + 8:at + 10] != b"= ":
        return default
    return _parse_value(raw[at + 10:at + CARD].decode("ascii", "replace"))


def _cards(raw):
    """Every ``KEY = value`` card of a raw header as {KEY: value bytes} (parsed by `_value`)."""
    cards = {}
    for start in range(0, len(raw), CARD):
        if raw[start + 8:start + 10] == b"= ":
            cards[raw[start:start + 8].rstrip().decode("ascii", "replace")] = raw[start + 10:start + CARD]
    return cards


def _value(cards, key, default=None):
    raw = cards.get(key)
    return default if raw is None else _parse_value(raw.decode("ascii", "replace"))


def _data_bytes(raw):
    naxis = _card(raw, "NAXIS", 0)
    if naxis == 0:
        return 0
    size = abs(_card(raw, "BITPIX")) // 8 * _card(raw, "GCOUNT", 1)
    count = 1
    for axis in range(1, naxis + 1):
        count *= _card(raw, f"NAXIS{axis}")
    return size * (count + _card(raw, "PCOUNT", 0))


def _column_dtype(cards, index, path):
    form = str(_value(cards, f"TFORM{index}")).strip()
    digits = len(form) - len(form.lstrip("0123456789"))
    repeat = int(form[:digits]) if digits else 1
    code = form[digits:digits + 1]
    if code not in TFORM_TYPES:
        raise Unsupported(f"{path}: column {index} has TFORM {form}")
    if _value(cards, f"TSCAL{index}", 1) != 1:
        raise Unsupported(f"{path}: scaled column {index}")
    zero = _value(cards, f"TZERO{index}", 0)
    base = TFORM_TYPES[code]
    if zero:
        if (code, zero) not in UNSIGNED_BY_TZERO:
            raise Unsupported(f"{path}: column {index} has TZERO {zero}")
        base = UNSIGNED_BY_TZERO[(code, zero)]
    if code == "A":
        width = repeat
        shape = ()
        if f"TDIM{index}" in cards:  # string arrays: first TDIM axis is the string width
            dims = [int(d) for d in str(_value(cards, f"TDIM{index}")).strip("() ").split(",")]
            width, shape = dims[0], tuple(reversed(dims[1:]))
        return np.dtype((f"S{max(width, 1)}", shape)) if shape else np.dtype(f"S{max(width, 1)}"), code, zero
    shape = (repeat,) if repeat != 1 else ()
    if f"TDIM{index}" in cards:
        dims = [int(d) for d in str(_value(cards, f"TDIM{index}")).strip("() ").split(",")]
        shape = tuple(reversed(dims))  # FITS lists the fastest axis first
    if repeat == 0:
        raise Unsupported(f"{path}: empty column {index}")
    return (np.dtype((base, shape)) if shape else np.dtype(base)), code, zero


_DESCRIPTIONS = {}


def _describe(raw, path):
    """Row count and ``(names, row dtype, {name: (code, zero)}, row width)`` of a table header.

    A production's catalogs share a handful of schemas: the description is cached by the
    header bytes less the NAXIS2 card, so each schema is parsed once per process.
    """
    at = _find_card(raw, b"NAXIS2")
    if at < 0:
        raise Unsupported(f"{path}: table header without NAXIS2")
    nrows = int(_parse_value(raw[at + 10:at + CARD].decode("ascii", "replace")))
    key = raw[:at] + raw[at + CARD:]
    if key not in _DESCRIPTIONS:
        cards = _cards(raw)
        if _value(cards, "XTENSION") != "BINTABLE":
            raise Unsupported(f"{path}: first extension is not a binary table")
        if _value(cards, "PCOUNT", 0):
            raise Unsupported(f"{path}: table has a heap (variable-length columns)")
        fields, codes = [], {}
        for index in range(1, int(_value(cards, "TFIELDS")) + 1):
            dtype, code, zero = _column_dtype(cards, index, path)
            name = str(_value(cards, f"TTYPE{index}", f"COL{index}"))
            fields.append((name, dtype))
            codes[name] = (code, zero)
        dtype = np.dtype(fields)
        if dtype.itemsize != _value(cards, "NAXIS1"):
            raise Unsupported(f"{path}: row width {dtype.itemsize} != NAXIS1 {_value(cards, 'NAXIS1')}")
        if len(_DESCRIPTIONS) > 256:
            _DESCRIPTIONS.clear()
        _DESCRIPTIONS[key] = _Layout([name for name, _ in fields], dtype, codes)
    return nrows, _DESCRIPTIONS[key]


class _Layout:
    """What one table schema needs, worked out once per distinct header and reused."""

    def __init__(self, names, dtype, codes):
        self.names, self.dtype, self.codes = names, dtype, codes
        self.offsets = [dtype.fields[name][1] for name in names]
        self.logical = [codes[name][0] == "L" for name in names]
        self.column_dtypes = {}
        for name in names:
            field = dtype.fields[name][0]
            base = field.base if field.shape else field
            if codes[name][0] == "L":
                base = np.dtype(bool)
            elif base.kind != "S":
                base = base.newbyteorder("=")
            self.column_dtypes[name] = (base, field.shape)
        self._records = {}
        # the same in lower case, as obiwan_h5 names columns (refused by readers if ambiguous)
        self.name_problem = column_name_problem(names)
        self.by_lower = {name.lower(): name for name in names}
        self.lower_schema = {name.lower(): self.column_dtypes[name] for name in names}

    def _layout(self, names, formats):
        return np.dtype({"names": list(names), "formats": formats, "offsets": self.offsets,
                         "itemsize": self.dtype.itemsize})

    def records(self, names):
        """(stored view, cast target, native result) record dtypes for field `names`."""
        names = tuple(names)
        if names not in self._records:
            native = [np.dtype(self.column_dtypes[old]) for old in self.names]
            # logicals are 'T'/'F' bytes: carried as uint8 through the one C-level cast
            as_bytes = [np.dtype((np.uint8, self.column_dtypes[old][1])) for old in self.names]
            stored = [as_bytes[i] if self.logical[i] else self.dtype[old] for i, old in enumerate(self.names)]
            cast = [as_bytes[i] if self.logical[i] else native[i] for i in range(len(self.names))]
            self._records[names] = (self._layout(names, stored), self._layout(names, cast),
                                    self._layout(names, native))
        return self._records[names]


class BinaryTable:
    """The first binary-table extension of a FITS file, mapped without fitsio.

    Parameters
    ----------
    path : str

    Attributes
    ----------
    names : list of str
        Column names as written (any case).
    nrows : int
    dtype : numpy.dtype
        Big-endian record dtype of one row, as stored.
    """

    def __init__(self, path, fd=None, size=None, load=None):
        """Parse the headers of `path`; `load` the data too: ``"read"`` (into memory) or
        ``"map"`` (mapped read-only: pages are read as the rows are used).

        Parameters
        ----------
        path : str
        fd : int, optional
            The file already open for reading (left open); else it is opened here.
        size : int, optional
            The file's size, known from a ``stat`` of `fd`.
        load : {None, "read", "map"}
            None reads only the headers; data are then read from `path` when asked for. A
            file that the first read holds whole is never mapped.
        """
        self.path = os.fspath(path)
        owned = fd is None
        if owned:
            fd = os.open(self.path, os.O_RDONLY)
        try:
            if size is None:
                size = os.fstat(fd).st_size
            self._parse(fd, size)
            self._stored = None
            whole = self.data_offset + self.nrows * self.dtype.itemsize <= len(self._head)
            if load == "read" or (load == "map" and whole):  # a small file was read whole already
                self._stored = self._read_data(fd)
            elif load == "map":
                self._stored = self._map_data(fd, size)
            self._head = None  # the loaded records keep what they view
        finally:
            if owned:
                os.close(fd)

    def _parse(self, fd, size):
        """Headers of the file open as `fd` (the first `HEAD_BYTES` of it in one read)."""
        raw = os.pread(fd, min(size, HEAD_BYTES), 0)
        if raw[:6] != b"SIMPLE":
            raise Unsupported(f"{self.path}: not an uncompressed FITS file")
        end = self._header_end(fd, raw, 0, size)
        raw = self._head
        skip = _data_bytes(raw[:end])
        start = end + -(-skip // BLOCK) * BLOCK
        self.data_offset = self._header_end(fd, raw, start, size)
        header = self._head[start:self.data_offset]
        self.nrows, self._layout = _describe(header, self.path)
        self.names, self.dtype, self._codes = self._layout.names, self._layout.dtype, self._layout.codes
        if size < self.data_offset + self.nrows * self.dtype.itemsize:
            raise Unsupported(f"{self.path}: file is shorter than its table")

    def _header_end(self, fd, raw, start, size):
        """End of the header at `start`, reading further blocks when the first read ended
        before it (a header longer than `HEAD_BYTES`); keeps the bytes read in ``_head``."""
        while True:
            end = _header_end(raw, start)
            if end is not None:
                self._head = raw
                return end
            if len(raw) >= size:
                raise Unsupported(f"{self.path}: truncated header")
            more = os.pread(fd, min(size - len(raw), HEAD_BYTES), len(raw))
            if not more:
                raise Unsupported(f"{self.path}: truncated header")
            raw += more

    def _read_data(self, fd):
        """The stored records (read-only), from the bytes of the first read when they hold them."""
        nbytes = self.nrows * self.dtype.itemsize
        if self.nrows == 0:
            return np.zeros(0, self.dtype)
        if self.data_offset + nbytes <= len(self._head):
            return np.frombuffer(self._head, dtype=self.dtype, count=self.nrows, offset=self.data_offset)
        data = os.pread(fd, nbytes, self.data_offset)
        if len(data) < nbytes:
            raise Unsupported(f"{self.path}: file is shorter than its table")
        return np.frombuffer(data, dtype=self.dtype, count=self.nrows)

    def _map_data(self, fd, size):
        if self.nrows == 0:
            return np.zeros(0, self.dtype)
        try:
            # the mapping lives as long as the arrays that view it; the descriptor may close
            self._mapped = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        except OSError:  # a file system that cannot map: read it instead
            return self._read_data(fd)
        return np.frombuffer(self._mapped, dtype=self.dtype, count=self.nrows, offset=self.data_offset)

    def release(self):
        """Give back the pages of a mapped table that this process has read (they stay in
        the page cache, and are read again from there if used again): a mapped catalog
        then costs the process only the pages of its current use."""
        if getattr(self, "_mapped", None) is not None:
            self._mapped.madvise(mmap.MADV_DONTNEED)

    @property
    def layout(self):
        """What the table's schema is read with: one object shared by every table of that
        schema (the same header apart from the row count)."""
        return self._layout

    def column_dtype(self, name):
        """The native dtype and per-row shape a column is returned with."""
        return self._layout.column_dtypes[name]

    @property
    def by_lower(self):
        """{lower-case name: name in the file}."""
        return self._layout.by_lower

    @property
    def name_problem(self):
        """Why the column names cannot be matched in lower case (`core.schema.column_name_problem`), or None."""
        return self._layout.name_problem

    @property
    def lower_schema(self):
        """{lower-case name: (native dtype, per-row shape)}; shared, do not modify."""
        return self._layout.lower_schema

    def _raw(self, rows=None):
        """Stored (big-endian) records, all of them or `rows`."""
        if self._stored is not None:
            return self._stored if rows is None else self._stored[rows]
        if rows is None:
            with open(self.path, "rb") as handle:
                handle.seek(self.data_offset)
                return np.fromfile(handle, dtype=self.dtype, count=self.nrows)
        # a few rows of a large table (the truth table): touch only their pages
        mapped = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.data_offset, shape=(self.nrows,))
        table = np.array(mapped[rows])  # a copy: nothing keeps the mapping alive
        del mapped
        return table

    def _fix(self, name, values):
        """Stored values of one field as returned: logicals as bool, offset integers shifted."""
        code, zero = self._codes[name]
        if code == "L":
            return values.view(np.uint8) == ord("T")
        if zero:
            # offset-binary storage (FITS unsigned convention): flip the top bit
            unsigned = values.view(f"u{values.dtype.itemsize}")
            top = np.array(1 << (8 * values.dtype.itemsize - 1), dtype=unsigned.dtype)
            return (unsigned ^ top).view(values.dtype)
        return values

    def values(self, table, name):
        """Column `name` of stored records, ready to be assigned into a native array:
        logicals as bool and offset integers shifted, other columns left in the file's byte
        order (numpy converts them as it assigns, with no intermediate copy)."""
        values = table[name]
        code, zero = self._codes[name]
        if code == "L":
            return self._fix(name, values)
        if zero:
            return self._fix(name, values.astype(values.dtype.newbyteorder("=")))
        return values

    def read(self, columns=None, rows=None):
        """Columns as ``{name: native array}``; `rows` an optional index array or slice.

        A few columns of a large table (the truth table's ids) are read in blocks of rows,
        so memory holds the columns asked for, not the whole table.
        """
        names = self.names if columns is None else list(columns)
        if self.nrows == 0:
            return {name: np.zeros((0,) + self.column_dtype(name)[1], self.column_dtype(name)[0]) for name in names}
        if rows is None and len(names) < len(self.names) and self.nrows * self.dtype.itemsize > BLOCK_READ_BYTES:
            step = max(1, BLOCK_READ_BYTES // self.dtype.itemsize)
            blocks = [self.stored_columns(self._raw(slice(lo, min(lo + step, self.nrows))), names)
                      for lo in range(0, self.nrows, step)]
            return {name: np.concatenate([block[name] for block in blocks]) for name in names}
        return self.stored_columns(self._raw(rows), names)

    def stored_columns(self, table, names):
        """Columns `names` of stored records (`read_stored`, or some of its rows) as
        ``{name: native array}``."""
        result = {}
        for name in names:
            values = table[name]
            if values.dtype.kind == "S" and self._codes[name][0] != "L":
                result[name] = np.array(values)
            else:
                result[name] = self._fix(name, values.astype(values.dtype.newbyteorder("=")))
        return result

    def read_records(self, rows=None, names=None):
        """The whole table as one native record array (one cast for every column).

        Parameters
        ----------
        rows : index array, optional
        names : list of str, optional
            New field names, in column order (e.g. lower case).
        """
        if self.nrows == 0:
            return np.zeros(0, self.record_dtype(names))
        return self.as_records(self._raw(rows), names)

    def record_dtype(self, names=None):
        """The native record dtype `as_records` returns, fields named `names` (column order)."""
        return self._layout.records(names or self.names)[2]

    def read_stored(self):
        """Every record as stored (big-endian, logicals as bytes; read-only when loaded):
        convert with `as_records` or `values`."""
        return self._raw() if self.nrows else np.zeros(0, self.dtype)

    def as_records(self, raw, names=None):
        """Stored records (`read_stored`, or some of its rows) as one native record array.

        Parameters
        ----------
        raw : numpy.ndarray
        names : list of str, optional
            New field names, in column order.
        """
        names = names or self.names
        stored, cast, native = self._layout.records(names)
        raw = raw.view(stored)
        records = raw.astype(cast)
        for old, new, is_logical in zip(self.names, names, self._layout.logical):
            if is_logical:
                records[new] = raw[new] == ord("T")
            elif self._codes[old][1]:
                records[new] = self._fix(old, records[new])
        return records.view(native)
