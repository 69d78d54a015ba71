"""The plan: row counts, schemas and offsets, known before any row is written.

Pure functions of what the scan found (`scan.Scanner`). The plan is the same on every
rank: brick i owns rows ``[offsets[i], offsets[i] + counts[i])`` of every ``randoms``
column. Bricks are assigned to ranks as contiguous ranges balanced by weight, and each
rank's range is cut into write segments that fit its memory budget.
"""

from dataclasses import dataclass, field, replace

import numpy as np

from ..core.schema import union_schemas
from ..errors import InputError
from ..fileformat import FAILED, PENDING, Column, describe, tractor_column

__all__ = [
    "BrickScan", "Plan", "assign_ranges", "brick_cost", "build_plan", "detach_schemas", "failed", "gather_scans",
    "mixed_schemas", "resolve_unchanged", "split_segments",
]

# Cost of deriving a brick, in units of one rsdir (measured on the simulator's productions,
# docs/performance.md): each rsdir opens three files (~0.85 ms each) and derives its few
# hundred rows (~7 us each); the brick itself reads its DR catalog and makes its summary row.
BRICK_COST_IN_RSDIRS = 0.5


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
    fingerprint: int = 0


def failed(scan, message):
    """Mark `scan` failed with `message` (no rows, no schema); returns it."""
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
    fingerprints: np.ndarray = None

    @property
    def total_rows(self):
        """Rows of the whole file: the sum of the bricks' counts."""
        return int(self.counts.sum())

    @property
    def row_bytes(self):
        """Bytes of one ``randoms`` row, every column of the plan."""
        return sum(column.row_bytes for column in self.columns)


def detach_schemas(scans):
    """The distinct schemas of `scans`, and the scans with a key into them instead.

    A production has a handful of distinct schemas, so this is what every rank sends:
    the gathered plan does not grow with one schema per brick. The scan shares one schema
    object among the bricks that have it, so most bricks are keyed by identity alone.
    `scans` are left as they are: the keyed scans are copies.
    """
    distinct, by_identity, detached = [], {}, []
    for scan in scans:
        key = -1
        if scan.status == PENDING:
            key = by_identity.get(id(scan.schema))
            if key is None:
                key = next((number for number, known in enumerate(distinct) if _same(known, scan.schema)), None)
                if key is None:
                    key = len(distinct)
                    distinct.append(scan.schema)
                by_identity[id(scan.schema)] = key
        detached.append(replace(scan, schema={}, schema_key=key))
    return detached, distinct


def _same(first, second):
    """Equal schemas, column order included."""
    if isinstance(first, str) or isinstance(second, str):
        return first == second
    return list(first.items()) == list(second.items())


def gather_scans(per_rank):
    """Join per-rank ``(scans, distinct)`` pairs (rank order), re-keying the schemas."""
    scans, distinct = [], []
    for rank_scans, rank_distinct in per_rank:
        for scan in rank_scans:
            if scan.schema_key >= 0:
                scan.schema_key += len(distinct)
            scans.append(scan)
        distinct.extend(rank_distinct)
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
                schema = union_schemas([schema, distinct[key]], owners="bricks")
                accepted.add(key)
            except InputError as err:
                rejected[key] = f"columns differ from earlier bricks: {err}"
        if key in rejected:
            failed(scan, rejected[key])
    counts = np.array([scan.count for scan in scans], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64) if len(counts) else counts
    if schema:
        # the one column whose width only the whole plan knows: the widest id, brick and rsdir
        width = max(scan.unique_id_width for scan in scans)
        schema.pop("unique_id", None)
        schema = {"unique_id": (np.dtype(f"S{width}"), ()), **schema}
    columns = [Column(name, dtype, shape, *describe(name)) for name, (dtype, shape) in schema.items()]
    return Plan(
        bricknames=[scan.brickname for scan in scans],
        counts=counts,
        offsets=offsets,
        status=np.array([scan.status for scan in scans], dtype=np.int8),
        messages=[scan.message for scan in scans],
        columns=columns,
        fingerprints=np.array([scan.fingerprint for scan in scans], dtype=np.uint64),
    )


def resolve_unchanged(scans, distinct, old_columns, marker):
    """For an update: give the bricks recognised unchanged (schema `marker`, their files not
    opened) the schema a scan of their headers would find, or return False when the old
    file's columns do not prove it (the caller then scans them).

    A brick unchanged since the old file was derived has a schema within the old file's
    columns (the union over the old bricks). The union starts from the first brick's own
    schema, so when that brick's schema is known (scanned, or read from its headers) and
    every known schema is the old file's, column for column and in order (rsdir widths
    aside: each brick's own comes from its listing), an unchanged brick adds nothing the
    known ones do not: it may take the known schema. Its ``unique_id`` width is unknown, so
    the known bricks must reach the old file's.
    """
    pending = [scan for scan in scans if scan.status == PENDING]
    if not any(distinct[scan.schema_key] == marker for scan in pending):
        return True
    old = dict(old_columns)
    old_width = np.dtype(old.pop("unique_id", ("S1", ()))[0]).itemsize
    known = [scan for scan in pending if distinct[scan.schema_key] != marker]
    if not known or pending[0] is not known[0] or max(scan.unique_id_width for scan in known) != old_width:
        return False
    reference = distinct[known[0].schema_key]
    if any(_without_rsdir(distinct[key]) != _without_rsdir(old) for key in {scan.schema_key for scan in known}):
        return False
    by_width = {}
    for scan in pending:
        if distinct[scan.schema_key] == marker:
            width = max(len(rsdir) for rsdir in scan.rsdirs)
            if width not in by_width:
                by_width[width] = len(distinct)
                distinct.append({name: ((np.dtype(f"S{width}"), ()) if name == "rsdir" else spec)
                                 for name, spec in reference.items()})
            scan.schema_key = by_width[width]
    return True


def _without_rsdir(schema):
    return [(name, (np.dtype(dtype), tuple(shape))) for name, (dtype, shape) in schema.items() if name != "rsdir"]


def mixed_schemas(scans, distinct):
    """Why the bricks cannot share one file because their Tractor catalogs mix the DR3
    schema (``decam_*`` arrays) and the DR5 schema (per-band columns), or None.

    Such a file would hold each quantity twice, half empty; its summary, validation and
    figures would read one schema and silently miss the other's rows.
    """
    first = {}
    for scan in scans:
        if scan.status != PENDING or scan.schema_key < 0:
            continue
        names = distinct[scan.schema_key]
        if tractor_column("decam_flux") in names:
            first.setdefault("DR3", scan.brickname)
        if tractor_column("flux_g") in names:
            first.setdefault("DR5", scan.brickname)
    if len(first) == 2:
        return (f"the Tractor catalogs mix the DR3 schema (decam_* arrays; first in brick {first['DR3']}) and "
                f"the DR5 schema (per-band columns; first in brick {first['DR5']}): derive each schema's bricks "
                "into its own file (`bricks`)")
    return None


def brick_cost(n_rsdirs):
    """Expected cost of deriving bricks of `n_rsdirs` rsdirs each (array), known before any scan.

    The rsdirs of a brick vary from one to tens in a production (one per few hundred randoms
    that fell in it), and so does its cost; a brick with no rsdir costs the least.
    """
    return BRICK_COST_IN_RSDIRS + np.asarray(n_rsdirs, dtype=np.float64)


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


def split_segments(todo, first, last, counts, row_bytes, max_bytes, apart=frozenset()):
    """Cut bricks ``[first, last)`` into write segments.

    A segment is a contiguous run of bricks that are all to be written (`todo` True)
    whose rows fit in `max_bytes` (a single brick larger than that is its own segment).
    Bricks in `apart` (an update's bricks copied byte for byte, which take no memory) are
    never in a segment with others, and their segments have no size limit.
    Returns a list of ``(b0, b1)``.
    """
    segments = []
    start, size, kind = None, 0, False
    for brick in range(first, last):
        brick_bytes = int(counts[brick]) * row_bytes
        if not todo[brick]:
            if start is not None:
                segments.append((start, brick))
            start, size = None, 0
            continue
        if start is not None and ((brick in apart) != kind or (not kind and size + brick_bytes > max_bytes)):
            segments.append((start, brick))
            start, size = None, 0
        if start is None:
            start, kind = brick, brick in apart
        size += brick_bytes
    if start is not None:
        segments.append((start, last))
    return segments
