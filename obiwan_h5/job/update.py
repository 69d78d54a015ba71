"""Growing a production (docs/derive.md): `update` derives only bricks that are new or whose
input files changed, copies the other bricks' rows from the existing file, and drops
bricks no longer listed.

The new file is built like any other (a partial file renamed over the output when
complete), from a fresh plan of the new brick list, so it equals a fresh derive of that
list dataset by dataset; the old file stays whole until the rename. A crashed update
leaves the old file untouched: run the update again (its partial file is discarded).
"""

from datetime import datetime, timezone

import numpy as np

from ..errors import InputError
from ..fileformat import (
    DONE,
    FORMAT_NAME,
    FORMAT_VERSION,
    GROUPS,
    INDEX_DTYPES,
    PENDING,
    SUMMARY_COLUMNS,
    fill_value,
    summary_columns,
)
from .output import changed_input, changed_truth

__all__ = ["BYTE_COPY_MIN_BYTES", "OldFile", "byte_copied_bricks", "copy_runs", "copy_sources", "layout_problem",
           "update_entry", "update_problem"]

# recorded inputs an update may change: the brick list is what grows
MAY_CHANGE = ("bricks",)

# A run of copied bricks this large (or a quarter of a write round's memory, if less) is
# copied byte for byte in write rounds of its own (`job.bytecopy`): reading its rows
# through HDF5 and writing them back collectively costs several times a kernel copy of the
# same bytes, and more than the round's fixed cost (a few hundred collective calls and two
# flushes) for runs of a few MB already.
BYTE_COPY_MIN_BYTES = 32 << 20


def update_problem(path, attrs, options, summary_names, truth_fingerprint):
    """Why `path` cannot be updated with these options, or None.

    `truth_fingerprint` is the truth table's now (`truthshare.truth_fingerprint`); a file
    made from another truth table, or one that does not record it, is refused.
    """
    if attrs.get("format") != FORMAT_NAME:
        return f"{path}: not an obiwan_h5 file"
    if not attrs.get("complete", False):
        return f"{path}: the file is not complete; finish it with `resume` before updating it"
    if attrs.get("format_version") != FORMAT_VERSION or sorted(summary_names) != sorted(SUMMARY_COLUMNS):
        return (f"{path}: written by another version of obiwan_h5 (format {attrs.get('format_version')}, "
                "other summary columns); derive afresh with `overwrite`")
    change = changed_input(attrs, options, "update it", skip=MAY_CHANGE)
    if change:
        text, complete = change
        return (f"{path}: {text}" if complete else
                f"{path}: {text}: that changes the rows of every brick; derive afresh with `overwrite` instead of `update`")
    change = changed_truth(attrs, truth_fingerprint)
    if change:
        return f"{path}: {change}; derive afresh with `overwrite` instead of `update`"
    return None


def layout_problem(handle, plan):
    """Why the open file `handle` is not laid out as a derive of its own bricks writes it, or None.

    Copying an unchanged brick's rows is right only from such a file: every group, index
    and summary dataset as the writer makes them, and every ``randoms`` column the job wrote
    (the names it recorded in ``bricks/checksum``), as data of this file (not a link to
    another file, as a view has), with one row per row of the bricks and a dtype a derive
    of the new brick list keeps (strings may only widen). A subset without some columns, a
    file with a dataset removed or a view would otherwise have its copied rows filled with
    fill values.
    """
    import h5py

    for group_name in GROUPS:
        if not isinstance(handle.get(group_name, getlink=True), h5py.HardLink):
            return f"{group_name} is not a group of the file"
        for name in handle[group_name]:
            link = handle[group_name].get(name, getlink=True)
            item = handle[group_name][name] if isinstance(link, h5py.HardLink) else None
            if not isinstance(item, h5py.Dataset) or item.is_virtual:
                return f"{group_name}/{name} is not data of this file (a view links to another file's)"
    bricks, summary, randoms = handle["bricks"], handle["summary"], handle["randoms"]
    nbricks = len(bricks["name"]) if "name" in bricks else 0
    expected = {"bricks": {name: (dtype, ()) for name, dtype in INDEX_DTYPES.items()},
                "summary": {column.name: (np.dtype(column.dtype), tuple(column.shape)) for column in summary_columns()}}
    for group, want in ((bricks, expected["bricks"]), (summary, expected["summary"])):
        problem = _names_problem(group, set(group), set(want))
        if problem:
            return problem
        for name, (dtype, shape) in want.items():
            if group[name].dtype != dtype or group[name].shape != (nbricks,) + shape:
                return (f"{group.name[1:]}/{name} is {group[name].dtype}{list(group[name].shape)}, "
                        f"a derive writes {dtype}{[nbricks, *shape]}")
    recorded = bricks["checksum"].attrs.get("columns", randoms.attrs.get("column_order"))
    if recorded is None:
        return "the file does not record the columns it was written with"
    problem = _names_problem(randoms, set(randoms), set(filter(None, str(recorded).split(","))))
    if problem:
        return problem
    nrows = int(np.sum(bricks["count"][:]))
    planned = {column.name: (np.dtype(column.dtype), tuple(column.shape)) for column in plan.columns}
    for name in sorted(randoms):
        dset = randoms[name]
        if dset.shape[:1] != (nrows,):
            return f"randoms/{name} has {dset.shape[0] if dset.shape else 0} rows, its bricks {nrows}"
        if name not in planned:
            continue  # only bricks no longer listed or derived again had it
        dtype, shape = planned[name]
        widens = dset.dtype.kind == dtype.kind == "S" and dset.dtype.itemsize <= dtype.itemsize
        if dset.shape[1:] != shape or (dset.dtype != dtype and not widens):
            return (f"randoms/{name} is {dset.dtype}{list(dset.shape[1:]) or ''}, "
                    f"a derive of these bricks {dtype}{list(shape) or ''}")
    return None


def _names_problem(group, present, wanted):
    missing, extra = sorted(wanted - present), sorted(present - wanted)
    if missing:
        return f"{group.name[1:]}/{missing[0]} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
    if extra:
        return f"{group.name[1:]}/{extra[0]} was not written by derive"
    return None


def copy_runs(copies, b0, b1):
    """The runs ``(first, last)`` of bricks of ``[b0, b1)`` that are copied (`copies`: brick
    of the plan -> brick of the old file) and consecutive in both files: each run is one
    contiguous range of rows in the old file and one in the new."""
    runs, brick = [], b0
    while brick < b1:
        if brick not in copies:
            brick += 1
            continue
        end = brick + 1
        while end < b1 and copies.get(end) == copies[end - 1] + 1:
            end += 1
        runs.append((brick, end))
        brick = end
    return runs


def byte_copied_bricks(copies, first, last, counts, row_bytes, min_bytes):
    """The bricks of ``[first, last)`` copied byte for byte: those of the `copy_runs` whose
    rows hold at least `min_bytes`. A set of brick indices of the plan."""
    bricks = set()
    for run_first, run_last in copy_runs(copies, first, last):
        if int(np.sum(counts[run_first:run_last])) * row_bytes >= min_bytes:
            bricks.update(range(run_first, run_last))
    return bricks


def copy_sources(old_index, old_kind, plan, new_kind):
    """For each brick of the new plan, the brick of the old file to copy, or -1 to derive.

    A brick is copied when the old file has it done, with the same input fingerprint
    (computed the same way) and the same row count, and the new scan found nothing wrong.
    """
    sources = np.full(len(plan.bricknames), -1, dtype=np.int64)
    if old_kind != new_kind or "fingerprint" not in old_index:
        return sources
    position = {name.decode(): i for i, name in enumerate(old_index["name"])}
    for i, name in enumerate(plan.bricknames):
        j = position.get(name)
        if (j is not None and plan.status[i] == PENDING and old_index["status"][j] == DONE
                and int(old_index["fingerprint"][j]) == int(plan.fingerprints[i])
                and int(old_index["count"][j]) == int(plan.counts[i])):
            sources[i] = j
    return sources


def update_entry(old_index, plan, sources):
    """One record of the ``update_history`` attribute: what this update did."""
    old_names = {name.decode() for name in old_index["name"]}
    new = [name not in old_names for name in plan.bricknames]
    derived = sources < 0
    return {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bricks": len(plan.bricknames),
        "added": int(np.sum(derived & np.array(new, dtype=bool))),
        "rederived": int(np.sum(derived & ~np.array(new, dtype=bool))),
        "copied": int(np.sum(~derived)),
        "removed": len(old_names - set(plan.bricknames)),
    }


class OldFile:
    """The complete file an update starts from, opened read-only on every rank.

    Rows are read column by column over runs of bricks that are contiguous in the old
    file, straight into the new segment's buffers (bounded by the segment's memory).
    """

    def __init__(self, path):
        import h5py

        self.path = path
        try:
            self.file = h5py.File(path, "r")
        except OSError as err:
            raise InputError(f"{path}: cannot read the file to update ({err})") from None
        self.index = {name: dset[:] for name, dset in self.file["bricks"].items()}
        self.summary = {name: dset[:] for name, dset in self.file["summary"].items()}
        self.randoms = dict(self.file["randoms"].items())  # looked up once, not per column and run

    def fill(self, rows, at, first, last, columns):
        """Copy the rows of old bricks ``[first, last)`` (contiguous) into ``rows`` at `at`."""
        start = int(self.index["offset"][first])
        stop = int(self.index["offset"][last - 1] + self.index["count"][last - 1])
        for column in columns:
            target = rows[column.name][at:at + stop - start]
            dataset = self.randoms.get(column.name)
            if dataset is None:
                target[...] = fill_value(column.dtype)
            elif dataset.dtype == target.dtype and stop > start:
                dataset.read_direct(target, np.s_[start:stop])  # straight into the buffer
            else:
                target[...] = dataset[start:stop]  # a string column widened by the new plan
        return stop - start

    def same_columns(self, columns):
        """Whether the old file's ``randoms`` columns are `columns` (names, dtypes, shapes):
        then a copied brick's rows are its old bytes, and so is their checksum."""
        randoms = self.file["randoms"]
        return (set(randoms) == {column.name for column in columns}
                and all(randoms[column.name].dtype == np.dtype(column.dtype)
                        and randoms[column.name].shape[1:] == tuple(column.shape) for column in columns))

    def close(self):
        """Close the old file."""
        self.file.close()
