"""Scanning a brick: row count, column schema, or why it cannot be derived.

The scan reads FITS headers, the simcat's ``id, ra, dec`` and ``sim_ids_added``: enough to
count the rows, check every injected id, and know the columns, without reading a catalog.
What it read is kept in a `BrickInputs` for the compute phase on the same rank, so no
input is read twice (the rank that scans a brick is the rank that derives it). Before the
scan, `brick_weights` lists each brick's rsdirs, so that the bricks are shared among the
ranks by expected cost.
"""

import contextlib
import hashlib
import logging
import os
import zlib
from dataclasses import dataclass

import numpy as np

from ..core.derivation import added_rows, derived_schema
from ..core.schema import union_schemas
from ..errors import BrickError, InputError
from ..fileformat import DONE, INCOMPLETE
from ..production.inputs import SIMCAT_COLUMNS, FitsTable, as_ids, read_ids_added, tractor_keep
from .plan import BrickScan, brick_cost, failed

__all__ = ["BrickInputs", "RsdirInputs", "brick_failure", "brick_weights", "input_fingerprint", "scan_brick"]

# simcat columns are copied under their own names: these would overwrite derived ones
DERIVED_NAMES = frozenset({"unique_id", "brickname", "rsdir", "obiwan_mask", "targets_mask"})
DERIVED_PREFIXES = ("psql_", "tractor_")

log = logging.getLogger("obiwan_h5.derive")


@dataclass
class RsdirInputs:
    """What the scan of one rsdir found: the open tables and the added simcat rows."""

    rsdir: str
    simcat: FitsTable
    rows: np.ndarray          # simcat rows whose id is in sim_ids_added, in simcat order
    injected: dict            # id, ra, dec of those rows
    tractor: FitsTable


@dataclass
class BrickInputs:
    """The scanned inputs of one brick, in canonical rsdir order."""

    brickname: str
    parts: list

    @property
    def ids(self):
        if not self.parts:
            return np.zeros(0, np.int64)
        return np.concatenate([part.injected["id"] for part in self.parts]).astype(np.int64)


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


def input_fingerprint(paths, kind="stat"):
    """64-bit fingerprint of input files: path, size and modification time of each, and
    with ``kind="content"`` a CRC-32 of its bytes too (reads every file once more).

    Stored per brick (``bricks/fingerprint``) with its rows; a resumed job derives again a
    done brick whose fingerprint changed, and an update derives only such bricks.
    """
    digest = hashlib.blake2b(digest_size=8)
    for path in paths:
        stats = os.stat(path)
        digest.update(f"{os.path.abspath(path)}\0{stats.st_size}\0{stats.st_mtime_ns}\n".encode())
        if kind == "content":
            crc = 0
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    crc = zlib.crc32(block, crc)
            digest.update(crc.to_bytes(4, "little"))
    return int.from_bytes(digest.digest(), "little")


def scan_brick(production, brickname, truth, bounds, expect_rsdirs=None, keep_all_apflux=False,
               fingerprint_kind="stat"):
    """Row count and column schema of one brick, or why it is incomplete or failed.

    Parameters
    ----------
    production : production.Production
    brickname : str
    truth : production.truth.TruthTable
        Every injected id must have a truth row (else the brick fails).
    bounds : tuple or None
        The brick's survey-bricks row; None fails the brick.
    expect_rsdirs : int, optional
        A brick with another number of rsdirs is incomplete.
    keep_all_apflux : bool
    fingerprint_kind : {"stat", "content"}
        See `input_fingerprint`.

    Returns
    -------
    (BrickScan, BrickInputs or None)
        Any exception (not only bad input) fails the brick alone, with a one-line message;
        the traceback goes to the debug log.
    """
    scan = BrickScan(brickname)
    try:
        return _scan(scan, production, brickname, truth, bounds, expect_rsdirs, keep_all_apflux, fingerprint_kind)
    except Exception as err:  # noqa: BLE001 — one brick's failure must never stop the job
        if not isinstance(err, (BrickError, InputError)):
            log.debug("brick %s: scan failed", brickname, exc_info=True)
        return failed(scan, brick_failure(err)), None


def _scan(scan, production, brickname, truth, bounds, expect_rsdirs, keep_all_apflux, fingerprint_kind):
    rsdirs = production.rsdirs(brickname)
    if bounds is None:
        return failed(scan, "not in survey-bricks"), None
    if not rsdirs:
        return failed(scan, f"no rsdir under {production.obiwan_dir(brickname)}"), None
    if expect_rsdirs is not None and len(rsdirs) != expect_rsdirs:
        scan.status, scan.rsdirs = INCOMPLETE, rsdirs
        scan.message = f"{len(rsdirs)} rsdir(s), expected {expect_rsdirs}: {','.join(rsdirs)}"
        return scan, None
    if not os.path.exists(production.dr_tractor(brickname)):
        raise BrickError(f"{production.dr_tractor(brickname)}: file not found (real DR catalog)")
    schemas, parts = [], []
    for rsdir in rsdirs:
        simcat = FitsTable(production.simcat(brickname, rsdir))
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
        ids_added = read_ids_added(production.ids_added(brickname, rsdir))
        rows = added_rows(injected["id"], ids_added, where=f"{rsdir}: ")
        kept = injected["id"].astype(np.int64)[rows]
        missing = truth.rows_of(kept) < 0
        if np.any(missing):
            raise BrickError(f"{rsdir}: {missing.sum()} id(s) not in the randoms truth table "
                             f"(first: {kept[missing][0]})")
        tractor = FitsTable(production.tractor(brickname, rsdir))
        tractor.require(["ra", "dec"])
        tractor_schema = {k: v for k, v in tractor.schema.items() if tractor_keep(k, keep_all_apflux)}
        schemas.append(derived_schema(simcat.schema, truth.schema, tractor_schema, 0, len(rsdir)))
        scan.count += len(kept)
        digits = max(len(str(kept.min())), len(str(kept.max()))) if len(kept) else 1
        scan.unique_id_width = max(scan.unique_id_width, digits + len(brickname) + len(rsdir) + 2)
        parts.append(RsdirInputs(rsdir, simcat, rows, {name: values[rows] for name, values in injected.items()},
                                 tractor))
    scan.schema = union_schemas(schemas, where=f"rsdirs of {brickname}")
    scan.rsdirs = rsdirs
    files = [production.dr_tractor(brickname)]
    for rsdir in rsdirs:
        files += [production.simcat(brickname, rsdir), production.ids_added(brickname, rsdir),
                  production.tractor(brickname, rsdir)]
    scan.fingerprint = input_fingerprint(files, fingerprint_kind)
    return scan, BrickInputs(brickname, parts)


def brick_weights(options, comm, production, bricknames):
    """Expected cost of each brick, known before any scan: rows still to derive when
    resuming (from the file's own index), else `plan.brick_cost` of its rsdirs, which the
    ranks list for a strided share of the bricks each (for an update, a copied brick costs
    a fifth of a derived one)."""
    resumed, copied = None, None
    if comm.rank == 0 and (options.resume or options.update) and os.path.isfile(options.output):
        # a file that cannot be resumed is refused, with its reason, once it is reopened
        with contextlib.suppress(Exception):
            import h5py

            with h5py.File(options.output, "r") as existing:
                names = [name.decode() for name in existing["bricks/name"][:]]
                done = existing["bricks/status"][:] == DONE
                if options.update:
                    copied = {name for name, flag in zip(names, done) if flag}
                elif names == list(bricknames):
                    resumed = np.where(done, 0.0, existing["bricks/count"][:] + 1.0)
    resumed = comm.bcast(resumed, root=0)
    if resumed is not None:
        return resumed
    listed = np.zeros(len(bricknames))
    for index in range(comm.rank, len(bricknames), comm.size):
        try:
            listed[index] = len(production.rsdirs(bricknames[index]))
        except Exception:  # noqa: BLE001 — only an estimate: the scan reports what is wrong with the brick
            pass
    weights = brick_cost(comm.allreduce(listed))  # each brick listed by one rank, zero elsewhere
    copied = comm.bcast(copied, root=0)
    if copied:
        weights *= np.array([0.2 if name in copied else 1.0 for name in bricknames])
    return weights
