"""The plan phase of the derive job: the bricks shared among the ranks, each
rank scanning the bricks it will derive, and the same plan built on every rank.

1. listing   the ranks list the rsdirs of a strided share of the bricks (`brick_weights`),
             so that the bricks are shared by expected cost (`plan.assign_ranges`); each
             listing goes to the rank that scans the brick (`share_listings`);
2. scanning  each rank scans its range (`scan.Scanner`): its share of the reading halves
             with two ranks; an update recognises the bricks the old file has done whose
             input files are unchanged, by their stat fingerprint, without opening them;
3. plan      the scans are gathered (one distinct schema is sent once) and every rank builds
             the same plan (`plan.build_plan`).
"""

import contextlib
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import JobError
from ..fileformat import DONE, FAILED, INCOMPLETE, PENDING, STATUS_NAMES
from .plan import (
    assign_ranges,
    brick_cost,
    build_plan,
    detach_schemas,
    gather_scans,
    mixed_schemas,
    resolve_unchanged,
)
from .report import log_brick_problems
from .scan import OLD_SCHEMA, ScannedBricks, Scanner
from .writer import writer_mode

__all__ = ["OldIndex", "brick_weights", "make_plan", "read_old_index", "share_listings"]

log = logging.getLogger("obiwan_h5.derive")

# the cost of a brick an update copies, in derived bricks (weights of `brick_weights`):
# measured with the benchmark's update, rows read through HDF5 and written back, or copied
# byte for byte by the kernel (`job.bytecopy`: ~0.6 ms against ~10 ms to derive a brick)
COPIED_COST = 0.2
COPIED_BYTES_COST = 0.05


def make_plan(options, comm, production, bricknames, truth, bounds):
    """Share the bricks among the ranks, each rank scans the bricks it will derive, and
    every rank builds the same plan from the gathered scans.

    The bricks are shared by expected cost (`brick_weights`: the ranks list the rsdirs
    of a strided share of the bricks, and send each listing to the rank that scans the
    brick). For an update, a brick the old file has done whose input files are unchanged
    (stat fingerprint) is recognised without opening them (`scan.Scanner.unchanged`), and
    takes the old file's schema when `plan.resolve_unchanged` proves it; otherwise it is
    scanned like the others.

    Returns
    -------
    (plan.Plan, scan.ScannedBricks, numpy.ndarray)
        The plan, what this rank's scan kept, and the rank ranges (`plan.assign_ranges`).
    """
    old = read_old_index(options, comm)
    listed = {}
    ranges = assign_ranges(brick_weights(options, comm, production, bricknames, old, listed), comm.size)
    listed = share_listings(comm, listed, ranges)
    first, last = int(ranges[comm.rank]), int(ranges[comm.rank + 1])
    scanner = Scanner(production, truth, options)
    unchanged = _unchanged_candidates(options, old)
    scans, scanned, known = [], ScannedBricks(), False
    for index in range(first, last):
        brickname, rsdirs = bricknames[index], listed.get(index)
        scan = None
        if brickname in unchanged and rsdirs:
            scan = scanner.unchanged(brickname, rsdirs, *unchanged[brickname])
            if scan is not None and not known:
                # the first brick of the union must have its own schema (`resolve_unchanged`)
                scan.schema = scanner.schema_only(brickname, rsdirs)
                scan = scan if scan.schema is not None else None
        if scan is None:
            scan, inputs = scanner.scan(brickname, bounds.get(brickname), rsdirs)
            if inputs is not None:
                scanned.add(inputs)
        known = known or scan.status == PENDING
        scans.append(scan)
    gathered, distinct = gather_scans(comm.allgather(detach_schemas(scans)))
    if old is not None and not resolve_unchanged(gathered, distinct, old.columns, OLD_SCHEMA):
        # the old columns do not tell what the unchanged bricks contribute: scan them too
        log.debug("the old file's columns do not give the schema of its unchanged bricks: scanning them")
        for number, scan in enumerate(scans):
            if scan.schema is OLD_SCHEMA:
                scans[number], inputs = scanner.scan(scan.brickname, bounds.get(scan.brickname), scan.rsdirs)
                if inputs is not None:
                    scanned.add(inputs)
        gathered, distinct = gather_scans(comm.allgather(detach_schemas(scans)))
    plan = build_plan(gathered, distinct)
    # the same on every rank (the plan is): refusing here can leave no rank waiting
    error = mixed_schemas(gathered, distinct)
    if error:
        raise JobError(error)
    scanned.keep_only(scan.brickname for scan in gathered[first:last] if scan.status == PENDING)
    if comm.rank == 0:
        log_brick_problems([(scan.brickname, STATUS_NAMES[scan.status], scan.message)
                            for scan in gathered if scan.status in (FAILED, INCOMPLETE)])
        log.info("plan: %d bricks, %d rows, %d columns (%.1f KiB/row) on %d rank(s)",
                 len(bricknames), plan.total_rows, len(plan.columns), plan.row_bytes / 1024, comm.size)
    return plan, scanned, ranges


def _unchanged_candidates(options, old):
    """For an update: ``{brickname: (fingerprint, count)}`` of the old file's done bricks,
    when both its fingerprints and this job's are stat fingerprints."""
    if old is None or not options.update or old.fingerprint is None:
        return {}
    if old.fingerprint_kind != "stat" or options.fingerprint_kind != "stat":
        return {}
    return {name: (int(fingerprint), int(count)) for name, status, fingerprint, count
            in zip(old.names, old.status, old.fingerprint, old.count) if status == DONE}


@dataclass
class OldIndex:
    """The index of the file a job resumes or updates, read once by rank 0."""

    names: list
    status: np.ndarray
    count: np.ndarray
    fingerprint: np.ndarray = None
    fingerprint_kind: str = "stat"
    columns: dict = field(default_factory=dict)   # its randoms schema, in column order
    unfiltered: bool = False  # no randoms column filtered: rows can be copied byte for byte

    def position(self):
        """``{brickname: its row in the old index}``."""
        return {name: number for number, name in enumerate(self.names)}


def read_old_index(options, comm):
    """On every rank: the `OldIndex` of the output when resuming or updating it, else None.

    A file that cannot be read gives None here; reopening it later says what is wrong."""
    index = None
    if comm.rank == 0 and (options.resume or options.update) and os.path.isfile(options.output):
        with contextlib.suppress(Exception):
            import h5py

            with h5py.File(options.output, "r") as existing:
                bricks = existing["bricks"]
                randoms = existing["randoms"]
                order = str(randoms.attrs.get("column_order", ""))
                names = order.split(",") if order else sorted(randoms)
                index = OldIndex(
                    names=[name.decode() for name in bricks["name"][:]],
                    status=bricks["status"][:], count=bricks["count"][:],
                    fingerprint=bricks["fingerprint"][:] if "fingerprint" in bricks else None,
                    fingerprint_kind=str(existing.attrs.get("fingerprint_kind", "stat")),
                    columns={name: (randoms[name].dtype, randoms[name].shape[1:]) for name in names},
                    unfiltered=not any(randoms[name].id.get_create_plist().get_nfilters() for name in randoms))
    return comm.bcast(index, root=0)


def brick_weights(options, comm, production, bricknames, old=None, listed=None):
    """Expected cost of each brick, known before any scan: rows still to derive when
    resuming (from the file's own index), else `plan.brick_cost` of its rsdirs, which the
    ranks list for a strided share of the bricks each (for an update, a copied brick costs
    a fifth of a derived one, a twentieth when its rows can be copied byte for byte:
    `job.bytecopy`).

    Parameters
    ----------
    old : OldIndex, optional
        The output's index (`read_old_index`), read here when not given.
    listed : dict, optional
        Filled with ``{brick index: rsdirs}`` of the bricks this rank listed.
    """
    if old is None:
        old = read_old_index(options, comm)
    if old is not None and options.resume and old.names == list(bricknames):
        return np.where(old.status == DONE, 0.0, old.count + 1.0)
    found = np.zeros(len(bricknames))
    for index in range(comm.rank, len(bricknames), comm.size):
        try:
            rsdirs = production.rsdirs(bricknames[index])
        except Exception:  # noqa: BLE001 — only an estimate: the scan reports what is wrong with the brick
            continue
        found[index] = len(rsdirs)
        if listed is not None:
            listed[index] = rsdirs
    weights = brick_cost(comm.allreduce(found))  # each brick listed by one rank, zero elsewhere
    if old is not None and options.update:
        copied = {name for name, status in zip(old.names, old.status) if status == DONE}
        cost = COPIED_BYTES_COST if old.unfiltered and writer_mode(comm) == "parallel" else COPIED_COST
        weights *= np.array([cost if name in copied else 1.0 for name in bricknames])
    return weights


def share_listings(comm, listed, ranges):
    """Send each listing of `brick_weights` to the rank that scans the brick: that rank's
    ``{brick index: rsdirs}``."""
    if comm.size == 1:
        return dict(listed)
    outgoing = [{} for _ in range(comm.size)]
    owners = np.searchsorted(np.asarray(ranges), list(listed), side="right") - 1
    for (index, rsdirs), owner in zip(listed.items(), owners):
        outgoing[int(owner)][index] = rsdirs
    mine = {}
    for received in comm.alltoall(outgoing):
        mine.update(received)
    return mine
