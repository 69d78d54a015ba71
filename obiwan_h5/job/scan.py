"""Scanning bricks: row count, column schema, fingerprint, or why a brick
cannot be derived.

The scan reads each file once: the simcat and ``sim_ids_added`` whole (small files), the
Tractor catalog's headers; the real DR catalog is only stat'ed. That is enough to count the
rows, check every injected id, and know the columns without reading a catalog. What the
compute phase needs again is kept per brick in a `BrickInputs` (the rank that scans a brick
derives it): the simcat rows to keep, and the size and modification time of each file read
later, so that a file changed since its scan fails its brick instead of being derived
under the fingerprint of another. `ScannedBricks` is the one owner of that state.

An update recognises a brick the old file has done, with the same stat fingerprint, without
opening any of its files (`Scanner.unchanged`). The phase that scans every rank's bricks
and builds the plan from them is `planning`.
"""

import hashlib
import logging
import os
from dataclasses import dataclass

import numpy as np

from ..core.derivation import IDENTITY, MASKS, Piece, added_rows, derived_schema, unique_id_width
from ..core.schema import union_schemas
from ..errors import BrickError, InputError
from ..fileformat import INCOMPLETE, TRACTOR_PREFIX, TRUTH_PREFIX
from ..production.inputs import (
    SIMCAT_COLUMNS,
    FitsTable,
    as_ids,
    file_crc32,
    primary_tractor,
    read_ids_added,
    read_radec,
    simcat_rows,
    tractor_keep,
)
from .plan import BrickScan, failed

__all__ = ["BrickInputs", "RsdirInputs", "ScannedBricks", "Scanner", "brick_failure", "brick_files",
           "input_fingerprint"]

# simcat columns are copied under their own names: these would overwrite derived ones
DERIVED_NAMES = frozenset(IDENTITY + MASKS)
DERIVED_PREFIXES = (TRUTH_PREFIX, TRACTOR_PREFIX)
# the schema of a brick recognised unchanged from the old file of an update (`Scanner.unchanged`)
OLD_SCHEMA = "old"

log = logging.getLogger("obiwan_h5.derive")


@dataclass
class RsdirInputs:
    """What the compute phase reads again of one piece (one rsdir of a brick): the simcat
    rows to keep, and each file's ``(size, mtime_ns)`` when it was scanned."""

    rsdir: str
    simcat: str
    simcat_stat: tuple
    rows: np.ndarray   # simcat rows whose id is in sim_ids_added, in simcat order
    tractor: str
    tractor_stat: tuple


@dataclass
class BrickInputs:
    """The scanned inputs of one brick: its pieces' `RsdirInputs`, in canonical rsdir order."""

    brickname: str
    pieces: list
    dr: str = ""
    dr_stat: tuple = ()

    def read(self, start, keep_all_apflux=False):
        """The brick's pieces (`core.derivation.Piece`, from buffer row `start`) and the
        ``(ra, dec)`` of its real DR catalog: catalogs mapped, only their headers, the
        simcat and the positions read now."""
        pieces = []
        for inputs in self.pieces:
            simcat = _unchanged(FitsTable(inputs.simcat, load="read"), inputs.simcat_stat)
            tractor = _unchanged(FitsTable(inputs.tractor, load="map"), inputs.tractor_stat)
            pieces.append(Piece(self.brickname, inputs.rsdir, simcat_rows(simcat, inputs.rows),
                                primary_tractor(tractor, keep_all_apflux), start))
            start += len(inputs.rows)
        return pieces, read_radec(_unchanged(FitsTable(self.dr, load="map"), self.dr_stat))


def _unchanged(table, scanned):
    if (table.size, table.mtime_ns) != tuple(scanned):
        raise BrickError(f"{table.path}: changed since the scan of this job; run the job again")
    return table


class ScannedBricks:
    """The scanned inputs of this rank's bricks, by name: the only place they change."""

    def __init__(self):
        self._inputs = {}

    def add(self, inputs):
        """Keep a brick's `BrickInputs` (replacing any of the same brick)."""
        self._inputs[inputs.brickname] = inputs

    def __contains__(self, brickname):
        return brickname in self._inputs

    def __len__(self):
        return len(self._inputs)

    def get(self, brickname):
        """The `BrickInputs` of a brick, or `BrickError` when this rank did not scan it."""
        inputs = self._inputs.get(brickname)
        if inputs is None:
            raise BrickError("not scanned on this rank (internal error)")
        return inputs

    def keep_only(self, bricknames):
        """Forget every brick but `bricknames` (the ones this rank will derive)."""
        wanted = set(bricknames)
        self._inputs = {name: inputs for name, inputs in self._inputs.items() if name in wanted}

    def release(self, brickname):
        """Forget a derived brick (its rows are in the write buffers)."""
        self._inputs.pop(brickname, None)


def brick_failure(err):
    """One-line message for an exception raised while reading or deriving a brick.

    Expected input problems keep their own message (it names the file); anything else is
    prefixed with its type so that a bug reads as a bug, not as bad input.
    """
    if isinstance(err, (BrickError, InputError)):
        return str(err)
    text = " ".join(str(err).split()) or "no message"
    if isinstance(err, OSError) and err.filename:
        text = f"{err.filename}: {err.strerror or text}"
    return f"{type(err).__name__}: {text}"


def input_fingerprint(paths, kind="stat", stats=None):
    """64-bit fingerprint of input files: path, size and modification time of each, and
    with ``kind="content"`` a CRC-32 of its bytes too (reads every file once more).

    Stored per brick (``bricks/fingerprint``) with its rows; a resumed job derives again a
    done brick whose fingerprint changed, and an update derives only such bricks.
    `stats`, when given, are the files' ``(size, mtime_ns)`` already known (no ``stat``).
    """
    digest = hashlib.blake2b(digest_size=8)
    for number, path in enumerate(paths):
        if stats is None:
            status = os.stat(path)
            size, mtime_ns = status.st_size, status.st_mtime_ns
        else:
            size, mtime_ns = stats[number]
        digest.update(f"{os.path.abspath(path)}\0{size}\0{mtime_ns}\n".encode())
        if kind == "content":
            digest.update(file_crc32(path).to_bytes(4, "little"))
    return int.from_bytes(digest.digest(), "little")


def brick_files(production, brickname, rsdirs):
    """The input files of a brick, in the order of its fingerprint."""
    files = [production.dr_tractor(brickname)]
    for rsdir in rsdirs:
        files += [production.simcat(brickname, rsdir), production.ids_added(brickname, rsdir),
                  production.tractor(brickname, rsdir)]
    return files


class Scanner:
    """Scans bricks of one job; a schema is worked out once per combination of catalog
    schemas, not once per brick.

    Parameters
    ----------
    production : production.Production
    truth : truth table
        Every injected id must have a truth row (else the brick fails).
    options : job.options.DeriveOptions
        ``expect_rsdirs``, ``keep_all_apflux``, ``fingerprint_kind``.
    """

    def __init__(self, production, truth, options):
        self.production, self.truth = production, truth
        self.expect_rsdirs = options.expect_rsdirs
        self.keep_all_apflux = options.keep_all_apflux
        self.fingerprint_kind = options.fingerprint_kind
        self._pieces, self._bricks = {}, {}

    def scan(self, brickname, bounds, rsdirs=None):
        """Row count and column schema of one brick, or why it is incomplete or failed.

        Parameters
        ----------
        brickname : str
        bounds : tuple or None
            The brick's survey-bricks row; None fails the brick.
        rsdirs : list of str, optional
            The brick's rsdirs, when already listed.

        Returns
        -------
        (BrickScan, BrickInputs or None)
            Any exception (not only bad input) fails the brick alone, with a one-line
            message; the traceback goes to the debug log.
        """
        scan = BrickScan(brickname)
        try:
            return self._scan(scan, brickname, bounds, rsdirs)
        except Exception as err:  # noqa: BLE001 — one brick's failure must never stop the job
            if not isinstance(err, (BrickError, InputError)):
                log.debug("brick %s: scan failed", brickname, exc_info=True)
            return failed(scan, brick_failure(err)), None

    def _scan(self, scan, brickname, bounds, rsdirs):
        production = self.production
        if rsdirs is None:
            rsdirs = production.rsdirs(brickname)
        if bounds is None:
            return failed(scan, "not in survey-bricks"), None
        if not rsdirs:
            return failed(scan, f"no rsdir under {production.obiwan_dir(brickname)}"), None
        if self.expect_rsdirs is not None and len(rsdirs) != self.expect_rsdirs:
            scan.status, scan.rsdirs = INCOMPLETE, rsdirs
            scan.message = f"{len(rsdirs)} rsdir(s), expected {self.expect_rsdirs}: {','.join(rsdirs)}"
            return scan, None
        dr = production.dr_tractor(brickname)
        try:
            dr_status = os.stat(dr)
        except OSError:
            raise BrickError(f"{dr}: file not found (real DR catalog)") from None
        stats = [(dr_status.st_size, dr_status.st_mtime_ns)]
        keys, pieces = [], []
        for rsdir in rsdirs:
            simcat = FitsTable(production.simcat(brickname, rsdir), load="read")
            injected = _injected(simcat)
            ids_added = FitsTable(production.ids_added(brickname, rsdir), load="read")
            rows = added_rows(injected["id"], read_ids_added(ids_added), error_prefix=f"{rsdir}: ")
            kept = injected["id"][rows]
            missing = self.truth.rows_of(kept) < 0
            if np.any(missing):
                raise BrickError(f"{rsdir}: {missing.sum()} id(s) not in the randoms truth table "
                                 f"(first: {kept[missing][0]})")
            tractor = FitsTable(production.tractor(brickname, rsdir))
            tractor.require(["ra", "dec"])
            keys.append(self._piece_key(simcat, tractor, rsdir))
            scan.count += len(kept)
            scan.unique_id_width = max(scan.unique_id_width, unique_id_width(kept, brickname, rsdir))
            stats += [(table.size, table.mtime_ns) for table in (simcat, ids_added, tractor)]
            pieces.append(RsdirInputs(rsdir, simcat.path, stats[-3], rows.astype(_row_type(simcat.nrows)),
                                     tractor.path, stats[-1]))
        scan.schema = self._brick_schema(brickname, tuple(keys))
        scan.rsdirs = rsdirs
        files = brick_files(production, brickname, rsdirs)
        scan.fingerprint = input_fingerprint(files, self.fingerprint_kind, stats)
        return scan, BrickInputs(brickname, pieces, dr, stats[0])

    def _piece_key(self, simcat, tractor, rsdir):
        """A key of the derived schema of one rsdir, its schema worked out on first sight."""
        key = (simcat.schema_key, tractor.schema_key, len(rsdir))
        if key not in self._pieces:
            kept = {name: spec for name, spec in tractor.schema.items() if tractor_keep(name, self.keep_all_apflux)}
            self._pieces[key] = derived_schema(simcat.schema, self.truth.schema, kept, len(rsdir))
        return key

    def _brick_schema(self, brickname, keys):
        """The union of a brick's rsdir schemas, shared by the bricks of the same rsdir
        schemas (the plan then tells them apart by identity)."""
        if keys not in self._bricks:
            try:
                self._bricks[keys] = union_schemas([self._pieces[key] for key in keys], owners="rsdirs")
            except InputError:
                self._bricks[keys] = None
        if self._bricks[keys] is None:  # say which brick: the same union, with its name
            union_schemas([self._pieces[key] for key in keys], owners=f"rsdirs of {brickname}")
        return self._bricks[keys]

    def unchanged(self, brickname, rsdirs, old_fingerprint, old_count):
        """The scan of a brick an update copies from the old file, when none of its input
        files changed (by their stat fingerprint, without opening them), else None."""
        if self.fingerprint_kind != "stat" or not rsdirs:
            return None
        if self.expect_rsdirs is not None and len(rsdirs) != self.expect_rsdirs:
            return None
        try:
            fingerprint = input_fingerprint(brick_files(self.production, brickname, rsdirs))
        except OSError:
            return None  # a file is missing: the full scan says which
        if fingerprint != old_fingerprint:
            return None
        return BrickScan(brickname, count=int(old_count), rsdirs=list(rsdirs), schema=OLD_SCHEMA,
                         fingerprint=fingerprint)

    def schema_only(self, brickname, rsdirs):
        """The schema of a brick from its catalogs' headers alone, or None if they cannot
        be read (the full scan then says why)."""
        try:
            keys = []
            for rsdir in rsdirs:
                simcat = FitsTable(self.production.simcat(brickname, rsdir))
                tractor = FitsTable(self.production.tractor(brickname, rsdir))
                keys.append(self._piece_key(simcat, tractor, rsdir))
            return self._brick_schema(brickname, tuple(keys))
        except (InputError, OSError):
            return None


def _injected(simcat):
    """``id`` (int64), ``ra``, ``dec`` of every simcat row, checked."""
    simcat.require(SIMCAT_COLUMNS)
    colliding = [name for name in simcat.schema if name in DERIVED_NAMES or name.startswith(DERIVED_PREFIXES)]
    if colliding:
        raise BrickError(f"{simcat.path}: simcat column(s) {', '.join(colliding)} would overwrite derived "
                         "columns of the same name")
    if simcat.schema["id"][0].kind not in "iu":
        raise BrickError(f"{simcat.path}: id column is {simcat.schema['id'][0]}, expected integers")
    injected = simcat.read(["id", "ra", "dec"])
    injected["id"] = as_ids(injected["id"], simcat.path)
    bad = ~(np.isfinite(injected["ra"]) & np.isfinite(injected["dec"]))
    if np.any(bad):
        raise BrickError(f"{simcat.path}: {bad.sum()} row(s) with non-finite ra/dec (first id {injected['id'][bad][0]})")
    return injected


def _row_type(nrows):
    return np.int32 if nrows < 2 ** 31 else np.int64
