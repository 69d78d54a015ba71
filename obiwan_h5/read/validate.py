"""`obiwan-h5 validate`: check a derived file and report every problem, one line each.

    obiwan-h5 validate derived.h5            exit 0: valid; 1: problems (listed); 2: not readable

Checks (docs/format.md, docs/derive.md):

* attributes: ``format="obiwan_h5"``, a known ``format_version``, ``complete`` true, the
  creation attributes present, JSON attributes parseable;
* layout: groups ``randoms``, ``summary``, ``bricks``; every dataset of ``column_order``
  present (and every dataset listed), with a ``description``; all ``randoms`` datasets of
  one length N, all ``summary`` and ``bricks`` datasets of length B;
* the brick index: names are brick names, sorted and unique, equal to ``summary/brickname``;
  ``offset[0] = 0``, ``offset[i+1] = offset[i] + count[i]`` (no gap, no overlap),
  ``sum(count) = N``; statuses in {0, 1, 2, 3}; none pending in a complete file;
  incomplete bricks have no rows; failed and incomplete bricks say why; rows kept by a
  brick that failed while being computed hold fill values;
* rows of done bricks, streamed brick by brick in bounded batches: ``brickname`` is the
  brick's; ``unique_id == "<id>_<brickname>_<rsdir>"`` and unique; ``obiwan_mask`` bit 0
  set exactly where ``tractor_ra`` is finite, bit 1 only with bit 0, no undefined bits;
  measured ``targets_mask`` bits (0-2) only with bit 0; ``targets_mask`` equal to its
  recomputation (`derivation.targets_bits`) from the stored columns;
* summary of done bricks: ``n_inj == count``, ``n_rec`` = rows with bit 0,
  ``frac_recovered = n_rec / n_inj``.

``unique_id`` is checked for duplicates within each batch of whole bricks, which suffices
for the whole file: a row that passes the format check holds its own brick's name in its
``unique_id``, so rows of different bricks cannot share one.

Checks that need a column the file does not have (a subset or view without it) are skipped
and listed as notes, not problems.
"""

import json
import os
from collections import Counter

import h5py
import numpy as np

from ..errors import InputError
from ..fileformat import (
    BRICKNAME_RE,
    CREATION_ATTRS,
    FAILED,
    FORMAT_NAME,
    FORMAT_VERSION,
    INCOMPLETE,
    INDEX_COLUMNS,
    JSON_ATTRS,
    PENDING,
    STATUS_NAMES,
)
from ..outputs import check_regular_file
from .reader import DEFAULT_BATCH_ROWS, external_links
from .validate_rows import RowChecks, show

__all__ = ["DEFAULT_MAX_PER_CHECK", "validate"]

DEFAULT_MAX_PER_CHECK = 20
STATUS_TEXT = ", ".join(f"{code} {name}" for code, name in STATUS_NAMES.items())


def count_problems(problems):
    """``"<n> problem(s)"``: the problems listed plus those the ``... and N more`` lines stand for."""
    more = sum(int(line.split()[2]) for line in problems if line.startswith("... and "))
    total = len([line for line in problems if not line.startswith("... and ")]) + more
    return f"{total} problem{'s' if total != 1 else ''}"


def validate(path, batch_rows=DEFAULT_BATCH_ROWS, max_per_check=DEFAULT_MAX_PER_CHECK, notes=None, deep=False,
             progress=False):
    """Every problem of a derived file, one string each (empty list: the file is valid).

    Parameters
    ----------
    path : str
        Derived file, view or subset.
    batch_rows : int
        Rows read at a time (whole bricks are read together; a brick larger than this is
        read alone).
    max_per_check : int
        At most this many problems of one kind are listed, then ``"... and N more ..."``;
        0 lists every one.
    notes : list, optional
        Receives one line per check skipped because the file lacks what it needs.
    deep : bool
        Also recompute each done brick's ``bricks/checksum`` from every column it covers.
    progress : bool or progress.ProgressStyle
        Show the done bricks whose rows are checked on stderr (`obiwan_h5.progress`); off
        by default.

    Returns
    -------
    list of str

    Raises
    ------
    InputError
        When `path` does not exist or is not an HDF5 file at all.
    """
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    check_regular_file(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 file ({err})") from None
    report = _Report(max_per_check, notes)
    with handle:
        for _, linked in external_links(handle, path):
            if os.path.lexists(linked):
                check_regular_file(linked, "linked data file")
        _Validator(handle, report, max(1, int(batch_rows)), deep, progress).run()
    return report.finish()


class _Report:
    """Problems by kind, each kind listed up to a limit and then counted."""

    def __init__(self, limit, notes):
        self.limit = limit
        self.lines = []
        self.counts = Counter()
        self.notes = notes if notes is not None else []

    def add(self, kind, message):
        self.counts[kind] += 1
        if not self.limit or self.counts[kind] <= self.limit:
            self.lines.append(message)

    def note(self, message):
        if message not in self.notes:
            self.notes.append(message)

    def finish(self):
        for kind, count in self.counts.items():
            if self.limit and count > self.limit:
                self.lines.append(f"... and {count - self.limit} more {kind} problems")
        return self.lines


class _Validator(RowChecks):
    def __init__(self, handle, report, batch_rows, deep=False, progress=False):
        self.file = handle
        self.deep = deep
        self.progress = progress
        self.report = report
        self.batch_rows = batch_rows
        self.add = report.add
        self.randoms, self.summary, self.index = {}, {}, None
        self.nrows = self.nbricks = None
        self.complete = False

    def run(self):
        self.check_attributes()
        groups = {name: self.open_group(name) for name in ("randoms", "summary", "bricks")}
        if groups["bricks"] is not None:
            self.check_index_layout(groups["bricks"])
        if groups["randoms"] is not None:
            self.randoms, self.nrows = self.check_group(groups["randoms"], "randoms", None)
            self.check_columns_kept(groups["randoms"], groups["bricks"])
        if groups["summary"] is not None:
            self.summary, _ = self.check_group(groups["summary"], "summary", self.nbricks)
        if self.index is None:
            self.report.note("brick index unusable: offsets, statuses and rows not checked")
            return
        self.check_names()
        self.check_offsets()
        self.check_statuses()
        if self.nrows is None:
            self.report.note("no randoms datasets: rows not checked")
            return
        recovered = self.check_rows()
        self.check_failed_rows()
        self.check_summary(recovered)

    # -- attributes and layout --------------------------------------------------------

    def check_attributes(self):
        attrs = self.file.attrs
        fmt = attrs.get("format")
        if fmt is None:
            self.add("attribute", "attribute format is missing (not an obiwan_h5 derived file?)")
        elif fmt != FORMAT_NAME:
            self.add("attribute", f"attribute format is {show(fmt)}, expected {FORMAT_NAME!r}")
        version = attrs.get("format_version")
        if version is None:
            self.add("attribute", "attribute format_version is missing")
        elif not np.issubdtype(np.asarray(version).dtype, np.integer) or not 1 <= int(version) <= FORMAT_VERSION:
            self.add("attribute", f"attribute format_version is {show(version)}; "
                                  f"this software reads 1 to {FORMAT_VERSION}")
        complete = attrs.get("complete")
        if complete is None:
            self.add("attribute", "attribute complete is missing")
        elif not bool(complete):
            self.add("attribute", "attribute complete is false: the job that wrote the file has not finished "
                                  "(finish it with a derive given `resume`)")
        self.complete = bool(complete)
        for key in CREATION_ATTRS:
            if key not in attrs:
                self.add("attribute", f"attribute {key} is missing")
        for key in JSON_ATTRS:
            if key in attrs:
                try:
                    json.loads(attrs[key])
                except (TypeError, ValueError):
                    self.add("attribute", f"attribute {key} is not valid JSON")

    def open_group(self, name):
        try:
            link = self.file.get(name, getlink=True)
            if link is None:
                self.add("layout", f"group /{name} is missing")
                return None
            group = self.file[name]
        except (KeyError, OSError) as err:
            self.add("layout", f"group /{name} cannot be opened ({_text(err)})")
            return None
        if not isinstance(group, h5py.Group):
            self.add("layout", f"/{name} is not a group")
            return None
        return group

    def open_dataset(self, group, group_name, name):
        try:
            dset = group[name]
        except (KeyError, OSError) as err:
            self.add("layout", f"{group_name}/{name} cannot be opened ({_text(err)})")
            return None
        if not isinstance(dset, h5py.Dataset):
            self.add("layout", f"{group_name}/{name} is not a dataset")
            return None
        if dset.ndim == 0:
            per = "source" if group_name == "randoms" else "brick"
            self.add("layout", f"{group_name}/{name} is a scalar, expected one row per {per}")
            return None
        return dset

    def check_group(self, group, group_name, expected_rows):
        """Datasets of `group` listed in its column_order; returns (datasets, row count)."""
        order = group.attrs.get("column_order")
        names = list(group)
        if order is None:
            self.add("layout", f"{group_name}: attribute column_order is missing")
            listed = sorted(names)
        else:
            listed = [name for name in str(order).split(",") if name]
            for name in listed:
                if name not in group:
                    self.add("layout", f"{group_name}/{name}: listed in column_order but missing")
            for name in sorted(set(names) - set(listed)):
                self.add("layout", f"{group_name}/{name}: dataset not listed in the group's column_order")
        datasets = {}
        for name in listed:
            if name in group:
                dset = self.open_dataset(group, group_name, name)
                if dset is not None:
                    datasets[name] = dset
                    if "description" not in dset.attrs:
                        self.add("layout", f"{group_name}/{name}: no description attribute")
        if not datasets:
            return datasets, None
        lengths = Counter(len(dset) for dset in datasets.values())
        if expected_rows is None:
            # the length most datasets share: one bad dataset is then the one reported
            expected_rows, _ = lengths.most_common(1)[0]
            reference = "most datasets of the group"
        else:
            reference = "bricks in bricks/name"
        for name, dset in datasets.items():
            if len(dset) != expected_rows:
                self.add("length", f"{group_name}/{name}: {len(dset)} rows, expected {expected_rows} ({reference})")
        return {name: dset for name, dset in datasets.items() if len(dset) == expected_rows}, expected_rows

    def check_columns_kept(self, randoms, bricks):
        """Every column the file says it holds is there: those a view or a subset was made
        with, else those of the derive (the columns its checksums cover). A column lost
        with its name in column_order too leaves no other trace."""
        attrs = self.file.attrs
        if "view_columns" in attrs:
            said, source = str(attrs["view_columns"]).split(","), "view_columns"
        elif "subset_columns" in attrs:
            said, source = str(attrs["subset_columns"]).split(","), "subset_columns"
        elif bricks is not None and "checksum" in bricks:
            said, source = str(bricks["checksum"].attrs.get("columns", "")).split(","), "bricks/checksum columns"
        else:
            return
        listed = str(randoms.attrs.get("column_order", "")).split(",")  # reported as such already
        for name in sorted(set(filter(None, said)) - set(randoms) - set(listed)):
            self.add("layout", f"randoms/{name}: missing, though {source} lists it")

    def check_index_layout(self, group):
        index, ok = {}, True
        for name in INDEX_COLUMNS:
            if name not in group:
                self.add("layout", f"bricks/{name} is missing")
                ok = False
                continue
            dset = self.open_dataset(group, "bricks", name)
            if dset is None or dset.ndim != 1:
                if dset is not None:
                    self.add("layout", f"bricks/{name}: {dset.ndim}-D, expected 1-D")
                ok = False
                continue
            kind = dset.dtype.kind
            expected = "S" if name in ("name", "message") else "iu"
            if kind not in expected:
                self.add("layout", f"bricks/{name}: dtype {dset.dtype}, expected "
                                   f"{'fixed-width bytes' if expected == 'S' else 'integers'}")
                ok = False
                continue
            index[name] = dset[:]
        if "name" in index:
            self.nbricks = len(index["name"])
            for name, values in index.items():
                if len(values) != self.nbricks:
                    self.add("length", f"bricks/{name}: {len(values)} rows, expected {self.nbricks} "
                                       "(length of bricks/name)")
                    ok = False
        if ok:
            index["name"] = [name.decode("utf-8", "replace") for name in index["name"]]
            self.index = index

    # -- the brick index --------------------------------------------------------------

    def brick(self, i):
        return f"bricks row {i} ({self.index['name'][i]})"

    def check_names(self):
        names = self.index["name"]
        for i, name in enumerate(names):
            if not BRICKNAME_RE.match(name):
                self.add("brick name", f"bricks/name row {i}: {name!r} is not a brick name")
        first = {}
        for i, name in enumerate(names):
            if name in first:
                self.add("brick name", f"bricks/name: {name} appears twice (rows {first[name]} and {i})")
            else:
                first[name] = i
            if i and name < names[i - 1]:
                self.add("brick name", f"bricks/name rows {i - 1}-{i}: {names[i - 1]} before {name}, not sorted")
        if "brickname" in self.summary:
            stored = [value.decode("utf-8", "replace") for value in self.summary["brickname"][:]]
            status = self.index["status"]
            for i, (name, value) in enumerate(zip(names, stored)):
                # a pending brick (an interrupted job) has no summary row yet
                if name != value and status[i] != PENDING:
                    self.add("summary", f"summary/brickname row {i}: {value!r}, but bricks/name is {name!r}")

    def check_offsets(self):
        offset, count = self.index["offset"].astype(np.int64), self.index["count"].astype(np.int64)
        for i in np.flatnonzero(count < 0):
            self.add("offset", f"{self.brick(i)}: count {count[i]} is negative")
        if len(offset) and offset[0] != 0:
            self.add("offset", f"{self.brick(0)}: offset {offset[0]}, expected 0 (the first brick starts the rows)")
        ends = offset + count
        for i in range(1, len(offset)):
            expected = ends[i - 1]
            if offset[i] == expected:
                continue
            before = f"brick {self.index['name'][i - 1]} (offset {offset[i - 1]} + count {count[i - 1]} = {expected})"
            if offset[i] < expected:
                self.add("offset", f"{self.brick(i)}: offset {offset[i]} overlaps the last {expected - offset[i]} "
                                   f"row(s) of {before}")
            else:
                self.add("offset", f"{self.brick(i)}: offset {offset[i]} leaves a gap of {offset[i] - expected} "
                                   f"row(s) after {before}")
        if self.nrows is not None and int(count.sum()) != self.nrows:
            self.add("offset", f"bricks/count: sums to {int(count.sum())} rows, but the randoms datasets have "
                               f"{self.nrows} rows")
        outside = offset < 0
        if self.nrows is not None:
            outside |= ends > self.nrows
        outside = np.flatnonzero(outside)
        for i in outside:
            self.add("offset", f"{self.brick(i)}: rows [{offset[i]}, {ends[i]}) lie outside randoms [0, {self.nrows})")
        self.inside = np.ones(len(offset), bool)
        self.inside[outside] = False
        self.inside &= count >= 0
        # rows claimed by two bricks belong to neither for sure: the index problem above is
        # the finding, and checking those rows against either brick would only echo it
        overlap = np.zeros(len(offset), bool)
        if len(offset) > 1:
            clash = offset[1:] < ends[:-1]
            overlap[1:] |= clash
            overlap[:-1] |= clash
        if overlap.any():
            self.report.note(f"rows of {int(overlap.sum())} brick(s) with overlapping row ranges not checked "
                             "(correct bricks/offset and bricks/count first)")
        self.inside &= ~overlap

    def check_statuses(self):
        status, count, message = self.index["status"], self.index["count"], self.index["message"]
        for i, code in enumerate(status):
            if code not in STATUS_NAMES:
                self.add("status", f"{self.brick(i)}: status {code} is not one of {STATUS_TEXT}")
            elif code == PENDING and self.complete:
                self.add("status", f"{self.brick(i)}: pending in a file marked complete")
            elif code == INCOMPLETE and count[i] != 0:
                self.add("status", f"{self.brick(i)}: incomplete but has {count[i]} rows "
                                   "(incomplete bricks are skipped when planning and have none)")
            if code in (INCOMPLETE, FAILED) and not message[i].strip(b"\0 "):
                self.add("status", f"{self.brick(i)}: {STATUS_NAMES[code]} without a message saying why")


def _text(err):
    return str(err.args[0]) if getattr(err, "args", None) else str(err)
