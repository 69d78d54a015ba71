"""Reading a derived file (docs/reading.md): chosen columns, bricks and rows, lazily, in batches.

>>> import obiwan_h5
>>> with obiwan_h5.open("derived.h5") as derived:
...     table = derived.read(["ra", "dec", "psql_g"], where="obiwan_mask & 1 and psql_g < 23")

Only the columns asked for (plus those a ``where`` names) are ever read: batch by batch
when rows are filtered or streamed, else each column straight into its array.
Works with a serial h5py; MPI is never needed to read.
"""

import difflib
import fnmatch
import os
import warnings

import h5py
import numpy as np

from ..core.expression import Expression
from ..errors import FormatError, IncompleteFileWarning, InputError, ObiwanError, UnknownNameError, UnreadableFileError
from ..fileformat import ATTR_COMPLETE, DONE, FORMAT_NAME, decode_attrs, index_problem
from ..outputs import check_regular_file
from .metadata import astropy_unit, table_meta

__all__ = ["DEFAULT_BATCH_ROWS", "ROW_NUMBERS", "DerivedFile", "open", "parse_columns"]

# rows per batch of every streaming reader (export, subset, validate, plot): ~64 MB of
# a full-width row, a few MB of a few columns
DEFAULT_BATCH_ROWS = 1 << 16
# the key of the rows' numbers in a batch of `DerivedFile.iter_batches` (never a column name)
ROW_NUMBERS = "#row"


def _suggest(name, choices):
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def parse_columns(spec, available, what="column"):
    """Column names from a user list: comma or space separated, globs allowed, order kept.

    Parameters
    ----------
    spec : str or sequence of str or None
        e.g. ``"ra,dec tractor_flux_*"``; None means every column.
    available : sequence of str
        Columns of the file, in file order (globs expand in this order).

    Raises
    ------
    UnknownNameError
        Naming the unknown column and suggesting close matches (also a `KeyError`).
    """
    if spec is None:
        return list(available)
    items = spec.replace(",", " ").split() if isinstance(spec, str) else [
        part for item in spec for part in str(item).replace(",", " ").split()]
    chosen = []
    for item in items:
        if any(ch in item for ch in "*?["):
            matches = [name for name in available if fnmatch.fnmatchcase(name, item)]
            if not matches:
                raise UnknownNameError(f"no {what} matches {item!r}")
        elif item in available:
            matches = [item]
        else:
            raise UnknownNameError(f"unknown {what} {item!r}{_suggest(item, available)}")
        chosen.extend(name for name in matches if name not in chosen)
    return chosen


def external_links(handle, path):
    """The files that external links of the open file `handle` (at `path`) point to (a
    view's data), one entry each, without following them.

    Returns
    -------
    list of (str, str)
        The file name as stored in the link, and that name resolved against the directory
        of `path` (the place HDF5 looks first when no prefix is set).
    """
    found = {}
    places = [("/", name) for name in ("randoms", "summary", "bricks")]
    if isinstance(handle.get("randoms", getlink=True), h5py.HardLink) and isinstance(handle["randoms"], h5py.Group):
        places += [("/randoms", name) for name in handle["randoms"]]
    for parent, name in places:
        link = handle[parent].get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink) and link.filename not in found:
            resolved = link.filename
            if not os.path.isabs(resolved):
                resolved = os.path.join(os.path.dirname(os.path.abspath(path)), resolved)
            found[link.filename] = os.path.normpath(resolved)
    return list(found.items())


class DerivedFile:
    """An open derived file. Use `open`.

    Raises
    ------
    InputError
        `path` is not a regular file (missing, a directory, a FIFO, ...).
    UnreadableFileError
        Not a readable HDF5 file (also an `OSError`).
    InputError, FormatError
        Not an obiwan_h5 file, or one whose layout is incomplete or whose index is broken
        (a view whose linked data file is gone); both are `ValueError` too.

    Attributes
    ----------
    columns : list of str
        ``randoms`` columns in derivation order.
    summary_columns : list of str
    nrows : int
    attrs : dict
        File attributes (JSON ones decoded where they are JSON).
    """

    def __init__(self, path):
        self.path = path
        # a FIFO or a device would block HDF5's open (and a view's links) forever
        check_regular_file(path)
        try:
            self._file = h5py.File(path, "r")
        except OSError as err:
            raise UnreadableFileError(f"{path}: not a readable HDF5 file ({err})") from None
        try:
            self._open_layout(path)
        except ObiwanError:
            self._file.close()
            raise
        except OSError as err:  # h5py's, on a damaged file
            self._file.close()
            raise UnreadableFileError(f"{path}: not a readable HDF5 file ({err})") from None
        except (TypeError, ValueError) as err:  # numpy's, on data of another type than the format's
            self._file.close()
            raise FormatError(f"{path}: broken obiwan_h5 layout ({err})") from None
        except BaseException:
            self._file.close()
            raise

    def _open_layout(self, path):
        """The groups, columns and brick index of the open file, checked."""
        if self._file.attrs.get("format") != FORMAT_NAME:
            raise InputError(f"{path}: not an obiwan_h5 derived file (no format='obiwan_h5' attribute)")
        for _, linked in external_links(self._file, path):
            if os.path.lexists(linked):  # a missing one is reported when its group is opened
                check_regular_file(linked, "linked data file")
        if not self._file.attrs.get(ATTR_COMPLETE, False):
            warnings.warn(f"{path}: the job that wrote this file has not finished; bricks not done "
                          "have no valid rows (see .bricks['status'])", IncompleteFileWarning, stacklevel=4)
        try:
            self._randoms = self._file["randoms"]
            self.columns = self._order(self._randoms)
            self.summary_columns = self._order(self._file["summary"])
            self.nrows = len(self._randoms[self.columns[0]]) if self.columns else 0
            self._index = {name: self._file["bricks"][name][:] for name in self._file["bricks"]}
            lengths = {name: len(self._randoms[name]) for name in self.columns}
        except KeyError as err:  # h5py's: a group is missing, or a view's linked file is gone
            raise FormatError(f"{path}: incomplete obiwan_h5 layout or a linked data file is missing ({err})") from None
        problem = index_problem(self._index, self.nrows)
        if problem is None and len(set(lengths.values())) > 1:
            short = min(lengths, key=lengths.get)
            problem = f"randoms/{short} has {lengths[short]} rows, randoms/{self.columns[0]} {self.nrows}"
        if problem is not None:
            raise FormatError(f"{path}: broken brick index: {problem} (obiwan-h5 validate lists every problem)")
        self.bricknames = [name.decode() for name in self._index["name"]]

    @staticmethod
    def _order(group):
        order = group.attrs.get("column_order", "")
        names = [name for name in order.split(",") if name in group] if order else []
        return names + sorted(name for name in group if name not in names)

    # -- metadata ----------------------------------------------------------------------

    @property
    def attrs(self):
        """The file's root attributes, those holding JSON decoded."""
        return decode_attrs(self._file.attrs)

    @property
    def bricks(self):
        """The brick index: name, offset, count, status, message (numpy arrays)."""
        return dict(self._index)

    def column_info(self, name, group="randoms"):
        """dtype, per-row shape, unit and description of a column of `group` (``randoms``
        or ``summary``)."""
        if group == "summary":
            dset = self._file["summary"][parse_columns([name], self.summary_columns)[0]]
        else:
            dset = self._randoms[self._check_columns([name])[0]]
        return {"dtype": dset.dtype, "shape": dset.shape[1:], "unit": dset.attrs.get("unit", ""),
                "description": dset.attrs.get("description", "")}

    def _check_columns(self, names, available=None):
        available = self.columns if available is None else available
        return parse_columns(names, available)

    # -- rows --------------------------------------------------------------------------

    def brick_ranges(self, bricks=None, done_only=True):
        """Row ranges ``[(start, stop), ...]`` of the chosen bricks, in file order, merged."""
        status, offset, count = self._index["status"], self._index["offset"], self._index["count"]
        if bricks is None:
            chosen = np.ones(len(status), bool)
        else:
            wanted = [bricks] if isinstance(bricks, str) else list(bricks)
            lookup = {name: i for i, name in enumerate(self.bricknames)}
            chosen = np.zeros(len(status), bool)
            for name in wanted:
                if name not in lookup:
                    raise UnknownNameError(f"unknown brick {name!r}{_suggest(name, self.bricknames)}")
                chosen[lookup[name]] = True
        if done_only:
            chosen &= status == DONE
        ranges = []
        for i in np.flatnonzero(chosen & (count > 0)):
            start, stop = int(offset[i]), int(offset[i] + count[i])
            if ranges and ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], stop)
            else:
                ranges.append((start, stop))
        return ranges

    def iter_batches(self, columns=None, bricks=None, where=None, batch_rows=DEFAULT_BATCH_ROWS,
                     done_only=True, on_read=None, row_numbers=False):
        """Yield dicts column -> array, batch by batch, rows filtered by `where`.

        Reads only `columns` and the columns `where` names; memory is bounded by
        `batch_rows` whatever the size of the file. Rows of bricks that are not done are
        skipped unless ``done_only=False``. `on_read`, when given, is called with the
        number of rows read for each batch, before `where` filters them (progress: the
        total is the length of `brick_ranges`). With `row_numbers`, each batch also holds
        the rows' numbers in the file (int64) under the key `ROW_NUMBERS`, which tell the
        brick of each row (``bricks["offset"]``).
        """
        names = self._check_columns(columns)
        expression = Expression(where) if where else None
        extra = []
        if expression is not None:
            for name in expression.names:
                if name not in self.columns:
                    raise UnknownNameError(f"unknown column {name!r} in `where`{_suggest(name, self.columns)}")
                if name not in names:
                    extra.append(name)
        for start, stop in self.brick_ranges(bricks, done_only):
            for lo in range(start, stop, batch_rows):
                hi = min(lo + batch_rows, stop)
                batch = {name: self._randoms[name][lo:hi] for name in names + extra}
                if on_read is not None:
                    on_read(hi - lo)
                if row_numbers:
                    batch[ROW_NUMBERS] = np.arange(lo, hi, dtype=np.int64)
                if expression is not None:
                    keep = expression.evaluate(batch)
                    batch = {name: values[keep] for name, values in batch.items()
                             if name in names or name == ROW_NUMBERS}
                yield batch

    def read(self, columns=None, bricks=None, where=None, as_="table", done_only=True):
        """Read chosen columns of chosen bricks, filtered by `where`.

        Parameters
        ----------
        columns : str or list of str, optional
            Names or globs (``"ra,dec,tractor_flux_*"``); all columns when None.
        bricks : str or list of str, optional
            Brick names; all bricks when None.
        where : str, optional
            Row filter, e.g. ``"obiwan_mask & 1 and psql_g < 23"`` (see `expression`).
        as_ : {"table", "numpy"}
            An astropy Table with units and descriptions, or a dict of numpy arrays.
        """
        names = self._check_columns(columns)
        if where is None:
            return self._convert(self._read_ranges(names, self.brick_ranges(bricks, done_only)), self._randoms, as_)
        parts = {name: [] for name in names}
        for batch in self.iter_batches(names, bricks, where, done_only=done_only):
            for name in names:
                parts[name].append(batch[name])
        data = {}
        for name in names:
            dset = self._randoms[name]
            data[name] = np.concatenate(parts[name]) if parts[name] else np.zeros((0,) + dset.shape[1:], dset.dtype)
        return self._convert(data, self._randoms, as_)

    def _read_ranges(self, names, ranges):
        """Columns `names` over the row `ranges`, each range read straight into its place.

        Without a row filter nothing bounds the result but its own size, so batches would
        only cost: a compressed chunk overlapped by several batches is decompressed once
        per batch (the dataset is opened anew for each), and batches are copied once more
        when joined.
        """
        total = sum(stop - start for start, stop in ranges)
        data = {}
        for name in names:
            dset = self._randoms[name]
            out = np.empty((total,) + dset.shape[1:], dtype=dset.dtype)
            at = 0
            for start, stop in ranges:
                dset.read_direct(out, np.s_[start:stop], np.s_[at:at + stop - start])
                at += stop - start
            data[name] = out
        return data

    def summary(self, columns=None, bricks=None, as_="table"):
        """The per-brick summary rows (all bricks, or the chosen ones in file order)."""
        names = parse_columns(columns, self.summary_columns)
        group = self._file["summary"]
        if bricks is None:
            rows = slice(None)
        else:
            wanted = {bricks} if isinstance(bricks, str) else set(bricks)
            unknown = sorted(wanted - set(self.bricknames))
            if unknown:
                raise UnknownNameError(f"unknown brick {unknown[0]!r}{_suggest(unknown[0], self.bricknames)}")
            rows = np.array([name in wanted for name in self.bricknames])
        data = {name: group[name][:][rows] for name in names}
        return self._convert(data, group, as_)

    def to_pandas(self, columns=None, bricks=None, where=None, done_only=True):
        """Chosen columns, bricks and rows as a pandas DataFrame (pandas is optional).

        Text columns are decoded to ``str`` (kept as stored, e.g. ``"REX "``); a 2-D column
        (N, k) becomes one column of length-k arrays. ``DataFrame.attrs`` holds the file
        attributes (`metadata.table_meta`) and, under ``"units"`` and ``"descriptions"``,
        those of the columns.
        """
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas needs pandas: pip install pandas") from None
        data = self.read(columns, bricks, where, as_="numpy", done_only=done_only)
        frame = pd.DataFrame({name: _pandas_values(values) for name, values in data.items()})
        frame.attrs.update(self._meta())
        frame.attrs["units"] = {name: self._randoms[name].attrs.get("unit", "") for name in data}
        frame.attrs["descriptions"] = {name: self._randoms[name].attrs.get("description", "") for name in data}
        return frame

    def _meta(self):
        return table_meta(self._file.attrs)

    def _convert(self, data, group, as_):
        if as_ == "numpy":
            return data
        if as_ != "table":
            raise InputError(f"`as_` must be 'table' or 'numpy', not {as_!r}")
        from astropy.table import Table

        table = Table(meta=self._meta())
        for name, values in data.items():
            attrs = group[name].attrs
            table[name] = values
            unit = astropy_unit(attrs.get("unit", ""))
            if unit is not None:
                table[name].unit = unit
            table[name].description = str(attrs.get("description", ""))
        return table

    def close(self):
        """Close the file (a `with` block does it)."""
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<obiwan_h5 file {self.path!r}: {self.nrows} rows, {len(self.columns)} columns, {len(self.bricknames)} bricks>"


def _pandas_values(values):
    """A column as pandas holds it: text decoded, a 2-D column as one array per row."""
    if values.dtype.kind == "S":
        return np.char.decode(values, "utf-8")
    if values.ndim > 1:
        out = np.empty(len(values), dtype=object)
        out[:] = list(values)
        return out
    return values


def open(path):  # noqa: A001 (the package's natural verb, like h5py.File / fitsio.FITS)
    """Open a derived file for reading; see `DerivedFile`."""
    return DerivedFile(path)
