"""The plan (SPEC §6.2): row counts, schemas and offsets, known before any row is written.

Scanning a brick reads only ids and FITS headers. The plan is the same on every rank:
brick i owns rows ``[offsets[i], offsets[i] + counts[i])`` of every ``randoms`` column.
Bricks are then assigned to ranks as contiguous ranges balanced by row count, and each
rank's range is cut into write segments that fit its memory budget.
"""

import os
from dataclasses import dataclass, field

import numpy as np

from .derivation import BrickError, added_rows, derived_schema
from .inputs import SIMCAT_COLUMNS, FitsTable, read_ids_added, tractor_keep
from .production import InputError
from .schema import Column, describe, union_schemas

__all__ = [
    "DONE", "FAILED", "INCOMPLETE", "PENDING", "STATUS_NAMES",
    "BrickScan", "Plan", "assign_ranges", "build_plan", "detach_schemas", "gather_scans", "scan_brick",
    "split_segments",
]

PENDING, DONE, INCOMPLETE, FAILED = 0, 1, 2, 3
STATUS_NAMES = {PENDING: "pending", DONE: "done", INCOMPLETE: "incomplete", FAILED: "failed"}


@dataclass
class BrickScan:
    """What scanning one brick found (cheap: ids and headers only)."""

    brickname: str
    status: int = PENDING
    message: str = ""
    count: int = 0
    rsdirs: list = field(default_factory=list)
    schema: dict = field(default_factory=dict)
    unique_id_width: int = 0
    schema_key: int = -1


def scan_brick(production, brickname, truth, bounds, expect_rsdirs=None, keep_all_apflux=False):
    """Row count and column schema of one brick, or why it is incomplete or failed.

    Parameters
    ----------
    production : production.Production
    brickname : str
    truth : inputs.TruthTable
        Used to check that every injected id has a truth row (else the brick fails).
    bounds : tuple or None
        The brick's survey-bricks row; None fails the brick.
    expect_rsdirs : int, optional
        A brick with another number of rsdirs is incomplete.
    """
    scan = BrickScan(brickname)
    rsdirs = production.rsdirs(brickname)
    if bounds is None:
        return _failed(scan, "not in survey-bricks")
    if not rsdirs:
        return _failed(scan, f"no rsdir under {production.obiwan_dir(brickname)}")
    if expect_rsdirs is not None and len(rsdirs) != expect_rsdirs:
        scan.status, scan.rsdirs = INCOMPLETE, rsdirs
        scan.message = f"{len(rsdirs)} rsdir(s), expected {expect_rsdirs}: {','.join(rsdirs)}"
        return scan
    schemas = []
    try:
        if not os.path.exists(production.dr_tractor(brickname)):
            raise BrickError(f"{production.dr_tractor(brickname)}: file not found (real DR catalog)")
        for rsdir in rsdirs:
            simcat = FitsTable(production.simcat(brickname, rsdir))
            simcat.require(SIMCAT_COLUMNS)
            if simcat.schema["id"][0].kind not in "iu":
                raise BrickError(f"{simcat.path}: id column is {simcat.schema['id'][0]}, expected integers")
            injected = simcat.read(["id", "ra", "dec"])
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
        scan.schema = union_schemas(schemas, where=f"rsdirs of {brickname}")
    except (BrickError, InputError) as err:
        return _failed(scan, str(err))
    scan.rsdirs = rsdirs
    return scan


def _failed(scan, message):
    scan.status, scan.message, scan.count, scan.schema = FAILED, message, 0, {}
    return scan


@dataclass
class Plan:
    """The agreed layout of the output file."""

    bricknames: list
    counts: np.ndarray
    offsets: np.ndarray
    status: np.ndarray
    messages: list
    columns: list

    @property
    def total_rows(self):
        return int(self.counts.sum())

    @property
    def row_bytes(self):
        return sum(column.row_bytes for column in self.columns)


def detach_schemas(scans):
    """The distinct schemas of `scans`, and the scans with a key into them instead.

    A production has a handful of distinct schemas, so this is what every rank sends:
    the gathered plan does not grow with one schema per brick.
    """
    distinct = []
    for scan in scans:
        if scan.status == PENDING:
            if scan.schema not in distinct:
                distinct.append(scan.schema)
            scan.schema_key = distinct.index(scan.schema)
        scan.schema = {}
    return scans, distinct


def gather_scans(parts):
    """Join per-rank ``(scans, distinct)`` pairs (rank order), re-keying the schemas."""
    scans, distinct = [], []
    for part_scans, part_distinct in parts:
        for scan in part_scans:
            if scan.schema_key >= 0:
                scan.schema_key += len(distinct)
            scans.append(scan)
        distinct.extend(part_distinct)
    return scans, distinct


def build_plan(scans, distinct=None):
    """Combine brick scans (in brick order) into a `Plan`: offsets and the union schema.

    Schemas are unioned in brick order (strings widen). A brick whose schema contradicts
    the bricks before it (a column of another type or shape) fails, with the reason; it
    does not stop the job. `distinct` comes with scans from `detach_schemas`.
    """
    if distinct is None:
        scans, distinct = detach_schemas(scans)
    schema, accepted, rejected = {}, set(), {}
    for scan in scans:
        if scan.status != PENDING:
            continue
        key = scan.schema_key
        if key not in accepted and key not in rejected:
            try:
                schema = union_schemas([schema, distinct[key]], where="bricks")
                accepted.add(key)
            except InputError as err:
                rejected[key] = f"columns differ from earlier bricks: {err}"
        if key in rejected:
            _failed(scan, rejected[key])
    counts = np.array([scan.count for scan in scans], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if len(counts) else counts
    if schema:
        width = max(scan.unique_id_width for scan in scans)
        schema["unique_id"] = (np.dtype(f"S{width}"), ())
    columns = [Column(name, dtype, shape, *describe(name)) for name, (dtype, shape) in schema.items()]
    return Plan(
        bricknames=[scan.brickname for scan in scans],
        counts=counts,
        offsets=offsets,
        status=np.array([scan.status for scan in scans], dtype=np.int8),
        messages=[scan.message for scan in scans],
        columns=columns,
    )


def assign_ranges(weights, nranks):
    """Contiguous brick ranges, one per rank, balanced by weight (e.g. rows to compute).

    Returns an array ``bounds`` of length nranks+1: rank r owns bricks
    ``[bounds[r], bounds[r+1])``. Zero-weight bricks still cost a little, so that a
    production of empty bricks is spread too.
    """
    weights = np.asarray(weights, dtype=np.float64)
    nbricks = len(weights)
    cost = weights + max(weights.mean() if nbricks else 0.0, 1.0) * 1e-3 + 1e-9
    cumulative = np.concatenate([[0.0], np.cumsum(cost)])
    targets = cumulative[-1] * np.arange(1, nranks) / nranks
    inner = np.searchsorted(cumulative, targets, side="left")
    bounds = np.concatenate([[0], np.clip(inner, 0, nbricks), [nbricks]]).astype(np.int64)
    return np.maximum.accumulate(bounds)


def split_segments(todo, first, last, counts, row_bytes, max_bytes):
    """Cut bricks ``[first, last)`` into write segments.

    A segment is a contiguous run of bricks that are all to be written (`todo` True)
    whose rows fit in `max_bytes` (a single brick larger than that is its own segment).
    Returns a list of ``(b0, b1)``.
    """
    segments = []
    start, size = None, 0
    for brick in range(first, last):
        brick_bytes = int(counts[brick]) * row_bytes
        if not todo[brick]:
            if start is not None:
                segments.append((start, brick))
            start, size = None, 0
            continue
        if start is not None and size + brick_bytes > max_bytes:
            segments.append((start, brick))
            start, size = None, 0
        if start is None:
            start = brick
        size += brick_bytes
    if start is not None:
        segments.append((start, last))
    return segments
