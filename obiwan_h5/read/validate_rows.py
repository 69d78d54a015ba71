"""Row checks of `validate`: every row of done bricks, streamed brick by brick.

``brickname`` is the brick's; ``unique_id == "<id>_<brickname>_<rsdir>"`` and unique;
``obiwan_mask`` and ``targets_mask`` consistent and equal to their recomputation from the
stored columns; rows of bricks that failed while computed hold fill values; the summary
counts agree with the rows; with ``deep``, each brick's checksum.
"""

from collections.abc import Mapping

import numpy as np

from ..core.derivation import targets_bits
from ..fileformat import (
    DONE,
    FAILED,
    MEASURED_TARGETS,
    OBIWAN_DEFINED,
    ON_REAL_SOURCE_BIT,
    RECOVERED_BIT,
    bit_set,
    is_recovered,
    rows_checksum,
)
from ..progress import start_progress

__all__ = ["RowChecks", "show"]


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


class RowChecks:
    """The row checks, mixed into the validator (state: file, index, randoms, report, progress)."""

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
        shown = start_progress(self.progress, int(chosen.sum()), "bricks", "validate",
                               rows_total=int(count[chosen].sum()))
        for bricks in self.batches(chosen):
            lo, hi = int(offset[bricks[0]]), int(offset[bricks[-1]] + count[bricks[-1]])
            rows = _Rows(self.randoms, lo, hi)
            owner = np.repeat(np.array(bricks), count[bricks])  # brick index of every row
            names = np.array([self.index["name"][b] for b in bricks], dtype="S8")[
                np.repeat(np.arange(len(bricks)), count[bricks])]
            self.check_identity(rows, lo, owner, names)
            if recovered is not None:
                mask = rows["obiwan_mask"]
                np.add.at(recovered, owner, is_recovered(mask).astype(np.int64))
                self.check_masks(rows, lo, owner)
            if covered:
                self.check_checksums(rows, lo, bricks, covered)
            shown.update(len(bricks), rows=hi - lo)
        shown.close()
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
        """Report each brick of `bricks` whose `covered` columns no longer give the checksum
        written with them."""
        offset, count = self.index["offset"], self.index["count"]
        for brick in bricks:
            start, stop = int(offset[brick]) - lo, int(offset[brick] + count[brick]) - lo
            values = {name: rows[name][start:stop] for name in covered}
            if rows_checksum(values, covered) != int(self.checksums[brick]):
                self.add("checksum", f"brick {self.index['name'][brick]}: rows differ from the "
                                     "checksum written with them (the data changed after it was written)")

    def row(self, lo, at, owner, rows=None):
        """Where a row is, for a message: its row number, brick and (when read) unique_id."""
        text = f"randoms row {lo + at} (brick {self.index['name'][owner[at]]}"
        if rows is not None and "unique_id" in rows:
            text += f", unique_id {rows['unique_id'][at].decode('utf-8', 'replace')}"
        return text + ")"

    def check_identity(self, rows, lo, owner, names):
        """Report the rows whose ``brickname`` is not their brick's, whose ``unique_id`` is not
        ``<id>_<brickname>_<rsdir>`` (or, without id and rsdir, does not name the brick), and
        repeated unique_ids."""
        if "brickname" in rows:
            for at in np.flatnonzero(rows["brickname"] != names):
                self.add("brickname", f"{self.row(lo, at, owner)}: brickname {show(rows['brickname'][at])}, "
                                      f"expected {show(names[at])}")
        if "unique_id" not in rows:
            return
        unique_id = rows["unique_id"]
        if "id" in rows and "rsdir" in rows:
            ids = np.asarray(rows["id"]).astype(np.int64).astype("S21")
            expected = np.char.add(np.char.add(np.char.add(np.char.add(ids, b"_"), names), b"_"), rows["rsdir"])
            for at in np.flatnonzero(unique_id != expected):
                self.add("unique_id", f"{self.row(lo, at, owner)}: unique_id {show(unique_id[at])}, expected "
                                      f"{show(expected[at])} from id, brick and rsdir")
        else:
            # without id and rsdir, at least the brick part: it is what keeps unique_id
            # unique across bricks (ids are digits, so "_<brick>_" cannot occur elsewhere)
            marker = np.char.add(np.char.add(b"_", names), b"_")
            for at in np.flatnonzero(np.char.find(unique_id, marker) < 0):
                self.add("unique_id", f"{self.row(lo, at, owner)}: unique_id {show(unique_id[at])} does not name "
                                      f"its brick {show(names[at])}")
        values, first, counts = np.unique(unique_id, return_index=True, return_counts=True)
        for value, number in zip(values[counts > 1], counts[counts > 1]):
            repeats = np.flatnonzero(unique_id == value)
            shown = ", ".join(str(lo + at) for at in repeats[:5]) + (", ..." if len(repeats) > 5 else "")
            self.add("duplicate unique_id", f"randoms rows {shown} (brick {self.index['name'][owner[repeats[0]]]}): "
                                            f"unique_id {show(value)} appears {number} times")

    def check_masks(self, rows, lo, owner):
        """Report the rows whose masks are inconsistent: undefined ``obiwan_mask`` bits, on_real_source
        without recovered, recovered where ``tractor_ra`` is not finite (or the reverse),
        measured target bits on an unrecovered row, and (when it can) a ``targets_mask`` that
        differs from its recomputation from the stored columns."""
        mask = np.asarray(rows["obiwan_mask"]).astype(np.int64)
        recovered = is_recovered(mask)
        for at in np.flatnonzero(mask & ~OBIWAN_DEFINED):
            self.add("obiwan_mask", f"{self.row(lo, at, owner, rows)}: obiwan_mask {mask[at]} sets undefined bits "
                                    f"(only {OBIWAN_DEFINED} = bits 0-1 are defined)")
        for at in np.flatnonzero(bit_set(mask, ON_REAL_SOURCE_BIT) & ~recovered):
            self.add("obiwan_mask", f"{self.row(lo, at, owner, rows)}: obiwan_mask bit {ON_REAL_SOURCE_BIT} "
                                    f"(on_real_source) is set without bit {RECOVERED_BIT} (recovered)")
        matched = recovered
        if "tractor_ra" in rows:
            finite = np.isfinite(rows["tractor_ra"])
            for at in np.flatnonzero(recovered != finite):
                state = "set" if recovered[at] else "not set"
                self.add("obiwan_mask", f"{self.row(lo, at, owner, rows)}: obiwan_mask bit {RECOVERED_BIT} (recovered) "
                                        f"is {state} but tractor_ra is {show(rows['tractor_ra'][at])}")
            # recompute the targets from the match itself, so that one flipped mask bit is
            # reported once (above), not again as a targets_mask difference
            matched = finite
        if "targets_mask" not in rows:
            return
        targets = np.asarray(rows["targets_mask"]).astype(np.int64)
        for at in np.flatnonzero(((targets & MEASURED_TARGETS) > 0) & ~recovered):
            self.add("targets_mask", f"{self.row(lo, at, owner, rows)}: targets_mask {targets[at]:#08b} has measured "
                                     "bits (0-2) set on a row not recovered (obiwan_mask bit 0 unset)")
        if not self.recompute:
            return
        try:
            recomputed = np.asarray(targets_bits(rows, matched)).astype(np.int64)
        except KeyError as err:
            self.recompute = False
            self.report.note(f"targets_mask not recomputed: no column {err.args[0] if err.args else err}")
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
                                                f"{show(rows[name][at])} (its rows should hold fill values)")

    # -- summary ----------------------------------------------------------------------

    def check_summary(self, recovered):
        """Report the summary rows of done bricks that disagree with their rows: ``n_inj`` with the
        index count, and (from the recount `recovered`) ``n_rec``, ``frac_recovered`` and the
        ``nexphist_<band>`` totals."""
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
                                            f"{show(frac[i])}, but {recovered[i]} of {count[i]} rows are recovered")
            for band in "grz":
                # every recovered source is in one nobs bin (files before the column lack it)
                name = f"nexphist_{band}"
                if name in self.summary:
                    total = self.summary[name][:].sum(axis=1)
                    for i in checked[total[checked] != recovered[checked]]:
                        self.add("summary", f"summary/{name} row {i} ({self.index['name'][i]}): sums to "
                                            f"{total[i]}, but {recovered[i]} of its rows are recovered")



def show(value):
    """A stored value for a message: text quoted, numbers plain (no numpy type names)."""
    if isinstance(value, (bytes, np.bytes_)):
        return repr(bytes(value).decode("utf-8", "replace"))
    if isinstance(value, np.generic):
        return repr(value.item())
    return repr(value)

