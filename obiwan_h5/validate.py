"""`obiwan-h5 validate`: check a derived file and report every problem, one line each.

    obiwan-h5 validate derived.h5            exit 0: valid; 1: problems (listed); 2: not readable

Checks (SPEC §5, docs/derive.md):

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
import sys
from collections import Counter
from collections.abc import Mapping

import h5py
import numpy as np

from .derivation import OBIWAN_BITS, targets_bits
from .plan import DONE, FAILED, INCOMPLETE, PENDING, STATUS_NAMES
from .production import BRICKNAME_RE, InputError
from .schema import rows_checksum
from .selection import TARGET_BITS
from .writer import FORMAT_NAME, FORMAT_VERSION

__all__ = ["DEFAULT_BATCH_ROWS", "DEFAULT_MAX_PER_CHECK", "add_arguments", "run", "validate"]

DEFAULT_BATCH_ROWS = 1 << 17
DEFAULT_MAX_PER_CHECK = 20
INDEX_COLUMNS = ("name", "offset", "count", "status", "message")
CREATION_ATTRS = ("software_version", "creation_time", "command_line", "match_radius_arcsec",
                  "obiwan_mask_bits", "targets_mask_bits", "nranks")
JSON_ATTRS = ("inputs", "obiwan_mask_bits", "targets_mask_bits", "selections")
RECOVERED = 1 << OBIWAN_BITS["recovered"][0]
ON_REAL = 1 << OBIWAN_BITS["on_real_source"][0]
OBIWAN_DEFINED = RECOVERED | ON_REAL
MEASURED_TARGETS = sum(1 << TARGET_BITS[name] for name in ("eboss_ngc", "eboss_sgc", "desi_elg"))
STATUS_TEXT = ", ".join(f"{code} {name}" for code, name in STATUS_NAMES.items())


def add_arguments(parser):
    parser.description = (
        "Check a derived file (or a view or subset of one): attributes, layout, the brick index "
        "(offsets, counts, statuses), every row of done bricks (unique_id, brickname, masks "
        "recomputed from the stored columns) and the summary counts. Prints one line per problem; "
        "exit status 0 when valid, 1 when there are problems, 2 when the file cannot be read.")
    parser.epilog = "example: obiwan-h5 validate demo/derived.h5"
    parser.add_argument("input", metavar="IN", help="derived file, view or subset")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="print only the problems (nothing at all for a valid file)")
    parser.add_argument("--max-per-check", type=int, default=DEFAULT_MAX_PER_CHECK, metavar="N",
                        help="list at most N problems of each kind, then count the rest "
                             f"(default {DEFAULT_MAX_PER_CHECK}; 0 lists all)")
    parser.add_argument("--deep", action="store_true",
                        help="also recompute every done brick's checksum from all its columns "
                             "(reads the whole file) and report bricks whose data changed")
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, metavar="N",
                        help=f"rows read at a time (bounds memory; default {DEFAULT_BATCH_ROWS})")


def run(args):
    notes = []
    problems = validate(args.input, batch_rows=args.batch_rows, max_per_check=args.max_per_check, notes=notes,
                        deep=args.deep)
    for problem in problems:
        print(f"{args.input}: {problem}")
    if not args.quiet:
        for note in notes:
            print(f"{args.input}: note: {note}", file=sys.stderr)
        if problems:
            print(f"{args.input}: INVALID ({_count_problems(problems)})")
        else:
            print(f"{args.input}: valid")
    return 1 if problems else 0


def _count_problems(problems):
    more = sum(int(line.split()[2]) for line in problems if line.startswith("... and "))
    total = len([line for line in problems if not line.startswith("... and ")]) + more
    return f"{total} problem{'s' if total != 1 else ''}"


def validate(path, batch_rows=DEFAULT_BATCH_ROWS, max_per_check=DEFAULT_MAX_PER_CHECK, notes=None, deep=False):
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
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 file ({err})") from None
    report = _Report(max_per_check, notes)
    with handle:
        _Validator(handle, report, max(1, int(batch_rows)), deep).run()
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


class _Rows(Mapping):
    """Rows ``[lo, hi)`` of the ``randoms`` datasets, read only when asked for (once).

    `derivation.targets_bits` takes a mapping of columns and asks only for the ones it
    needs, so recomputing the targets mask reads no column it does not use.
    """

    def __init__(self, datasets, lo, hi):
        self._datasets, self._lo, self._hi, self._cache = datasets, lo, hi, {}

    def __getitem__(self, name):
        if name not in self._cache:
            if name not in self._datasets:
                raise KeyError(name)
            self._cache[name] = self._datasets[name][self._lo:self._hi]
        return self._cache[name]

    def __contains__(self, name):
        return name in self._datasets

    def __iter__(self):
        return iter(self._datasets)

    def __len__(self):
        return len(self._datasets)


class _Validator:
    def __init__(self, handle, report, batch_rows, deep=False):
        self.file = handle
        self.deep = deep
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
            self.add("attribute", f"attribute format is {_show(fmt)}, expected {FORMAT_NAME!r}")
        version = attrs.get("format_version")
        if version is None:
            self.add("attribute", "attribute format_version is missing")
        elif not np.issubdtype(np.asarray(version).dtype, np.integer) or not 1 <= int(version) <= FORMAT_VERSION:
            self.add("attribute", f"attribute format_version is {_show(version)}; "
                                  f"this software reads 1 to {FORMAT_VERSION}")
        complete = attrs.get("complete")
        if complete is None:
            self.add("attribute", "attribute complete is missing")
        elif not bool(complete):
            self.add("attribute", "attribute complete is false: the job that wrote the file has not finished "
                                  "(finish it with obiwan-h5 derive --resume)")
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

    def open_dataset(self, group, where, name):
        try:
            dset = group[name]
        except (KeyError, OSError) as err:
            self.add("layout", f"{where}/{name} cannot be opened ({_text(err)})")
            return None
        if not isinstance(dset, h5py.Dataset):
            self.add("layout", f"{where}/{name} is not a dataset")
            return None
        if dset.ndim == 0:
            per = "source" if where == "randoms" else "brick"
            self.add("layout", f"{where}/{name} is a scalar, expected one row per {per}")
            return None
        return dset

    def check_group(self, group, where, expected_rows):
        """Datasets of `group` listed in its column_order; returns (datasets, row count)."""
        order = group.attrs.get("column_order")
        names = list(group)
        if order is None:
            self.add("layout", f"{where}: attribute column_order is missing")
            listed = sorted(names)
        else:
            listed = [name for name in str(order).split(",") if name]
            for name in listed:
                if name not in group:
                    self.add("layout", f"{where}/{name}: listed in column_order but missing")
            for name in sorted(set(names) - set(listed)):
                self.add("layout", f"{where}/{name}: dataset not listed in the group's column_order")
        datasets = {}
        for name in listed:
            if name in group:
                dset = self.open_dataset(group, where, name)
                if dset is not None:
                    datasets[name] = dset
                    if "description" not in dset.attrs:
                        self.add("layout", f"{where}/{name}: no description attribute")
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
                self.add("length", f"{where}/{name}: {len(dset)} rows, expected {expected_rows} ({reference})")
        return {name: dset for name, dset in datasets.items() if len(dset) == expected_rows}, expected_rows

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
            for i, (name, value) in enumerate(zip(names, stored)):
                if name != value:
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

    # -- rows -------------------------------------------------------------------------

    def batches(self, chosen):
        """Row ranges of whole, contiguous bricks from `chosen`, about `batch_rows` rows each."""
        offset, count = self.index["offset"], self.index["count"]
        batch = []
        for i in np.flatnonzero(chosen):
            if batch:
                rows = int(offset[i] + count[i] - offset[batch[0]])
                if offset[i] != offset[batch[-1]] + count[batch[-1]] or rows > self.batch_rows:
                    yield batch
                    batch = []
            batch.append(int(i))
        if batch:
            yield batch

    def check_rows(self):
        """Row checks of done bricks; returns the recovered rows per brick (None when unknown)."""
        status, offset, count = self.index["status"], self.index["offset"], self.index["count"]
        chosen = (status == DONE) & self.inside & (count > 0)
        have = set(self.randoms)
        skipped = (
            (("unique_id",), "unique_id not checked"),
            (("unique_id", "id", "rsdir"), "unique_id checked against its brick only, not against id and rsdir"),
            (("brickname",), "brickname not checked"),
            (("obiwan_mask", "tractor_ra"), "obiwan_mask bit 0 not checked against tractor_ra"),
            (("obiwan_mask", "targets_mask"), "targets_mask not checked against obiwan_mask"),
            (("obiwan_mask",), "summary n_rec not checked"),
        )
        for needed, text in skipped:
            missing = [name for name in needed if name not in have]
            if missing and not (needed[0] == "unique_id" and len(needed) > 1 and "unique_id" in missing):
                self.report.note(f"{text}: no column {', '.join(missing)}")
        recovered = np.zeros(len(status), np.int64) if "obiwan_mask" in have else None
        self.recompute = "targets_mask" in have
        covered = self.checksum_columns() if self.deep else None
        for bricks in self.batches(chosen):
            lo, hi = int(offset[bricks[0]]), int(offset[bricks[-1]] + count[bricks[-1]])
            rows = _Rows(self.randoms, lo, hi)
            owner = np.repeat(np.array(bricks), count[bricks])  # brick index of every row
            names = np.array([self.index["name"][b] for b in bricks], dtype="S8")[
                np.repeat(np.arange(len(bricks)), count[bricks])]
            self.check_identity(rows, lo, owner, names)
            if recovered is not None:
                mask = rows["obiwan_mask"]
                np.add.at(recovered, owner, ((mask & RECOVERED) > 0).astype(np.int64))
                self.check_masks(rows, lo, owner)
            if covered:
                self.check_checksums(rows, lo, bricks, covered)
        return recovered

    def checksum_columns(self):
        """The columns ``bricks/checksum`` covers, when this file has all of them."""
        checksum = self.file["bricks"].get("checksum") if "bricks" in self.file else None
        if checksum is None:
            self.report.note("checksums not checked: no bricks/checksum (file from an older version)")
            return None
        covered = str(checksum.attrs.get("columns", "")).split(",")
        missing = [name for name in covered if name not in self.randoms]
        if missing:
            self.report.note(f"checksums not checked: {len(missing)} column(s) they cover are not in this "
                             "file (a view or a column subset)")
            return None
        self.checksums = checksum[:]
        return covered

    def check_checksums(self, rows, lo, bricks, covered):
        offset, count = self.index["offset"], self.index["count"]
        for brick in bricks:
            start, stop = int(offset[brick]) - lo, int(offset[brick] + count[brick]) - lo
            values = {name: rows[name][start:stop] for name in covered}
            if rows_checksum(values, covered) != int(self.checksums[brick]):
                self.add("checksum", f"brick {self.index['name'][brick]}: rows differ from the "
                                     "checksum written with them (the data changed after it was written)")

    def row(self, lo, at, owner, rows=None):
        text = f"randoms row {lo + at} (brick {self.index['name'][owner[at]]}"
        if rows is not None and "unique_id" in rows:
            text += f", unique_id {rows['unique_id'][at].decode('utf-8', 'replace')}"
        return text + ")"

    def check_identity(self, rows, lo, owner, names):
        if "brickname" in rows:
            for at in np.flatnonzero(rows["brickname"] != names):
                self.add("brickname", f"{self.row(lo, at, owner)}: brickname {_show(rows['brickname'][at])}, "
                                      f"expected {_show(names[at])}")
        if "unique_id" not in rows:
            return
        unique_id = rows["unique_id"]
        if "id" in rows and "rsdir" in rows:
            ids = np.asarray(rows["id"]).astype(np.int64).astype("S21")
            expected = np.char.add(np.char.add(np.char.add(np.char.add(ids, b"_"), names), b"_"), rows["rsdir"])
            for at in np.flatnonzero(unique_id != expected):
                self.add("unique_id", f"{self.row(lo, at, owner)}: unique_id {_show(unique_id[at])}, expected "
                                      f"{_show(expected[at])} from id, brick and rsdir")
        else:
            # without id and rsdir, at least the brick part: it is what keeps unique_id
            # unique across bricks (ids are digits, so "_<brick>_" cannot occur elsewhere)
            marker = np.char.add(np.char.add(b"_", names), b"_")
            for at in np.flatnonzero(np.char.find(unique_id, marker) < 0):
                self.add("unique_id", f"{self.row(lo, at, owner)}: unique_id {_show(unique_id[at])} does not name "
                                      f"its brick {_show(names[at])}")
        values, first, counts = np.unique(unique_id, return_index=True, return_counts=True)
        for value, number in zip(values[counts > 1], counts[counts > 1]):
            where = np.flatnonzero(unique_id == value)
            shown = ", ".join(str(lo + at) for at in where[:5]) + (", ..." if len(where) > 5 else "")
            self.add("duplicate unique_id", f"randoms rows {shown} (brick {self.index['name'][owner[where[0]]]}): "
                                            f"unique_id {_show(value)} appears {number} times")

    def check_masks(self, rows, lo, owner):
        mask = np.asarray(rows["obiwan_mask"]).astype(np.int64)
        bit0 = (mask & RECOVERED) > 0
        for at in np.flatnonzero(mask & ~OBIWAN_DEFINED):
            self.add("obiwan_mask", f"{self.row(lo, at, owner, rows)}: obiwan_mask {mask[at]} sets undefined bits "
                                    f"(only {OBIWAN_DEFINED} = bits 0-1 are defined)")
        for at in np.flatnonzero(((mask & ON_REAL) > 0) & ~bit0):
            self.add("obiwan_mask", f"{self.row(lo, at, owner, rows)}: obiwan_mask bit 1 (on_real_source) is set "
                                    "without bit 0 (recovered)")
        matched = bit0
        if "tractor_ra" in rows:
            finite = np.isfinite(rows["tractor_ra"])
            for at in np.flatnonzero(bit0 != finite):
                state = "set" if bit0[at] else "not set"
                self.add("obiwan_mask", f"{self.row(lo, at, owner, rows)}: obiwan_mask bit 0 (recovered) is {state} "
                                        f"but tractor_ra is {_show(rows['tractor_ra'][at])}")
            # recompute the targets from the match itself, so that one flipped mask bit is
            # reported once (above), not again as a targets_mask difference
            matched = finite
        if "targets_mask" not in rows:
            return
        targets = np.asarray(rows["targets_mask"]).astype(np.int64)
        for at in np.flatnonzero(((targets & MEASURED_TARGETS) > 0) & ~bit0):
            self.add("targets_mask", f"{self.row(lo, at, owner, rows)}: targets_mask {targets[at]:#08b} has measured "
                                     "bits (0-2) set on a row not recovered (obiwan_mask bit 0 unset)")
        if not self.recompute:
            return
        try:
            recomputed = np.asarray(targets_bits(rows, matched)).astype(np.int64)
        except KeyError as err:
            self.recompute = False
            self.report.note(f"targets_mask not recomputed: no column {_text(err)}")
            return
        for at in np.flatnonzero(recomputed != targets):
            differ = [str(bit) for bit in range(8) if (recomputed[at] ^ targets[at]) >> bit & 1]
            self.add("targets_mask", f"{self.row(lo, at, owner, rows)}: targets_mask {targets[at]:#08b}, recomputed "
                                     f"{recomputed[at]:#08b} from the stored columns (bit {', '.join(differ)} differ)")

    def check_failed_rows(self):
        """Rows kept by bricks that failed while being computed hold fill values (docs/derive.md)."""
        status, offset, count = self.index["status"], self.index["offset"], self.index["count"]
        chosen = (status == FAILED) & self.inside & (count > 0)
        for bricks in self.batches(chosen):
            lo, hi = int(offset[bricks[0]]), int(offset[bricks[-1]] + count[bricks[-1]])
            owner = np.repeat(np.array(bricks), count[bricks])
            rows = _Rows(self.randoms, lo, hi)
            for name, filled in (("unique_id", lambda v: v == b""), ("obiwan_mask", lambda v: v == 0),
                                 ("targets_mask", lambda v: v == 0)):
                if name in rows:
                    for at in np.flatnonzero(~filled(rows[name])):
                        self.add("failed rows", f"{self.row(lo, at, owner)}: failed brick, but {name} is "
                                                f"{_show(rows[name][at])} (its rows should hold fill values)")

    # -- summary ----------------------------------------------------------------------

    def check_summary(self, recovered):
        status, count = self.index["status"], self.index["count"]
        done = np.flatnonzero(status == DONE)
        if "n_inj" in self.summary:
            n_inj = self.summary["n_inj"][:]
            for i in done[n_inj[done] != count[done]]:
                self.add("summary", f"summary/n_inj row {i} ({self.index['name'][i]}): {n_inj[i]}, "
                                    f"but bricks/count is {count[i]}")
        else:
            self.report.note("summary n_inj not checked: no summary/n_inj")
        if "n_rec" in self.summary and recovered is not None:
            n_rec = self.summary["n_rec"][:]
            checked = done[self.inside[done]]
            for i in checked[n_rec[checked] != recovered[checked]]:
                self.add("summary", f"summary/n_rec row {i} ({self.index['name'][i]}): {n_rec[i]}, but "
                                    f"{recovered[i]} of its rows have obiwan_mask bit 0")
            if "frac_recovered" in self.summary:
                # from the recount, not the stored n_rec: a wrong n_rec is then one problem
                frac = self.summary["frac_recovered"][:]
                with np.errstate(divide="ignore", invalid="ignore"):
                    expected = recovered / np.where(count > 0, count, np.nan)
                for i in checked:
                    if count[i] > 0 and not np.isclose(frac[i], expected[i], rtol=1e-6, atol=0):
                        self.add("summary", f"summary/frac_recovered row {i} ({self.index['name'][i]}): "
                                            f"{_show(frac[i])}, but {recovered[i]} of {count[i]} rows are recovered")


def _show(value):
    """A stored value for a message: text quoted, numbers plain (no numpy type names)."""
    if isinstance(value, (bytes, np.bytes_)):
        return repr(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, np.generic):
        return repr(value.item())
    return repr(value)


def _text(err):
    return str(err.args[0]) if getattr(err, "args", None) else str(err)
